"""CPU and durable commits per payment when one node pays over many channels (issue 18, the 10-channel figure).

The payer opens one channel to each of PEERS payees and sends `--n` payments (sendpay + waitsendpay), `--in-flight`
at a time, spread round-robin over the channels. Prints payments/s, the payer's CPU ms per payment, the payees'
CPU ms per payment (summed), the commitment_signed per payment each way (counted in the payer's log: how many
HTLCs a commitment round carries), and with `--syscalls` the payer's system calls per payment by kind (strace -c, so
slower): fdatasync (each SQLite commit in WAL mode with synchronous=FULL syncs the WAL once: one commit shared
by all the channels ready at the same moment, issue 18 item 2, brings it down), socket writes, thread wake-ups
(futex). Counts, unlike times, do not move with the machine's load.

    python bench/profile_channels.py [--peers 10] [--n 500] [--in-flight 50] [--syscalls] [--pyspy FILE]
                                     [--watch payer|payee] [--commit-time MS] [--cprofile DIR] [--log-level L]
                                     [--sched] [--gc | --flushes] [--perf FILE]

`--sched` prints, per thread, the share of the run it spent on a CPU and runnable but waiting for one (schedstat),
with its wake-ups per payment: whether the payer's event loop, the one serial stage every payment passes twice, is
short of CPU or of work (docs/profile.md, "Session 13"). `--gc` prints the share of the payer's and the payees' CPU
that the cyclic garbage collector took over the run, with its collections per generation (bench/gc_site; cProfile
charges a collection to whichever function allocated: docs/profile.md, "Session 14"). `--perf FILE` samples
every CPU over the run (`perf record -a -g` into FILE) and prints the machine's time by who ran (payer loop, its
database thread, the payees, the client, idle) and in what code (interpreter, libsecp256k1, the kernel by system
call, SQLite...): bench/perf_split.py, docs/profile.md "Session 15". `--flushes` prints each store's flushes (one
transaction for the writes queued meanwhile) per payment, with a flush's wall time split into its COMMIT (the fsync),
its CPU and the rest, waiting for a CPU or the interpreter's lock (bench/flush_site; docs/profile.md "Session 16").

Not a test: it prints figures. (bench/profile_payment.py does the same for one channel.)
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from common import chaind as running_chaind
from common import cpu_seconds, factory, run_in_flight
from pyln.client import LightningRpc

from ampere.testing.chain import ChainD

DELAY = 30
AMOUNT = 1_000
OPTS = {"max-concurrent-htlcs": 483}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=int, default=10)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--in-flight", type=int, default=50)
    ap.add_argument("--syscalls", action="store_true", help="count the watched node's system calls by kind (strace -c)")
    ap.add_argument("--watch", choices=("payer", "payee"), default="payer",
                    help="the node --syscalls and --pyspy look at (payee: the first payee; its counts are still per "
                         "payment of the whole run, so multiply by --peers for its own payments)")
    ap.add_argument("--commit-time", type=int, default=None, help="every node's commit-time (ms)")
    ap.add_argument("--log-level", default=None, help="every node's log-level (the test nodes' default is debug, "
                                                      "whose peer_in/peer_out lines the commitment_signed count reads)")
    # Each works through a sitecustomize on the nodes' PYTHONPATH, and Python imports only the first one it finds.
    site = ap.add_mutually_exclusive_group()
    site.add_argument("--cprofile", default=None, help="cProfile every node's event-loop and database threads over "
                      "the measured run into this directory (bench/cprofile_site); figures are then slower")
    site.add_argument("--gc", action="store_true", help="the cyclic garbage collector's share of each node's CPU "
                                                        "(bench/gc_site)")
    site.add_argument("--flushes", action="store_true", help="each store's flushes per payment and where a flush's "
                                                             "wall time goes (bench/flush_site)")
    ap.add_argument("--perf", default=None, help="sample every CPU over the run (perf record -a -g) into this file and "
                                                 "print the machine's time by process and by code (bench/perf_split.py)")
    ap.add_argument("--sched", action="store_true", help="per thread: share of the run on a CPU and waiting for one")
    ap.add_argument("--pyspy", default=None, help="also sample the payer with py-spy (--gil: CPU, not waits) into "
                                                  "this raw file")
    args = ap.parse_args()
    opts = dict(OPTS) if args.commit_time is None else {**OPTS, "commit-time": args.commit_time}
    if args.log_level is not None:
        opts["log-level"] = args.log_level
    if args.cprofile:
        os.makedirs(args.cprofile, exist_ok=True)
        os.environ["AMP_CPROFILE_DIR"] = os.path.abspath(args.cprofile)
        _nodes_import_site("cprofile_site")
    if args.gc:
        args.gc = tempfile.mkdtemp(prefix="amp-gcstat-")
        os.environ["AMP_GCSTAT_DIR"] = args.gc
        _nodes_import_site("gc_site")
    if args.flushes:
        args.flushes = tempfile.mkdtemp(prefix="amp-flushstat-")
        os.environ["AMP_FLUSHSTAT_DIR"] = args.flushes
        _nodes_import_site("flush_site")
    try:
        with running_chaind() as chaind:  # stopped, and its temp dir removed, on the way out
            run(args, opts, chaind)
    finally:
        for directory in (args.gc, args.flushes):
            if directory:
                shutil.rmtree(directory, ignore_errors=True)


def _nodes_import_site(name: str) -> None:
    """The nodes started from now on import bench/`name`/sitecustomize.py."""
    os.environ["PYTHONPATH"] = (os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
                                + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run(args: argparse.Namespace, opts: dict, chaind: ChainD) -> None:
    f = factory()
    f.chaind = chaind
    try:
        payer = f.get_node_of("ampere", dict(opts))
        payees, hops, invoices = [], [], []
        per = args.n // args.peers + 2
        for i in range(args.peers):
            payee = f.get_node_of("ampere", dict(opts))
            payees.append(payee)
            scid = f.fundchannel(payer, payee, 5_000_000, announce=False)["short_channel_id"]
            hops.append({"id": payee.node_id, "channel": scid, "delay": DELAY, "amount_msat": AMOUNT})
            rpc = LightningRpc(payee.rpc_path)
            invoices.append([rpc.invoice(AMOUNT, f"c{i}-{j}", "bench") for j in range(per)])
        work = [(hops[j % args.peers], invoices[j % args.peers][j // args.peers]) for j in range(per * args.peers)]

        def one(rpc, item) -> None:
            hop, inv = item
            rpc.sendpay([hop], inv["payment_hash"], payment_secret=inv["payment_secret"])
            assert rpc.waitsendpay(inv["payment_hash"], 120)["status"] == "complete"

        r1 = LightningRpc(payer.rpc_path)
        for item in work[:args.peers]:  # warm-up: one per channel
            one(r1, item)
        work = work[args.peers:args.peers + args.n]
        watched = payees[0] if args.watch == "payee" else payer
        strace = None
        if args.syscalls:
            out = tempfile.mktemp(prefix="amp-syscalls-")
            strace = subprocess.Popen(["strace", "-f", "-c", "-p", str(watched.proc.pid), "-o", out],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        spy = None
        if args.pyspy:
            spy = subprocess.Popen([os.environ.get("PY_SPY", "py-spy"), "record", "--pid", str(watched.proc.pid),
                                    "--format", "raw", "--rate", "500", "--threads", "--nonblocking", "--gil", "-o", args.pyspy],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)
        load = os.getloadavg()[0]
        if args.cprofile:  # cprofile_site: SIGUSR1 starts the profilers, SIGUSR2 dumps them
            for node in [payer] + payees:
                os.kill(node.proc.pid, signal.SIGUSR1)
        if args.gc:  # gc_site: SIGRTMIN+1 writes each node's totals so far
            site_totals_snapshot([payer] + payees)
        if args.flushes:  # flush_site: SIGRTMIN+2 writes each node's totals so far
            site_totals_snapshot([payer] + payees, signal.SIGRTMIN + 2)
        from profile_threads import thread_cpu, thread_sched
        threads0 = thread_cpu(payer.proc.pid)
        sched0 = [thread_sched(node.proc.pid) for node in [payer] + payees] if args.sched else None
        pthreads0 = thread_cpu(payees[0].proc.pid)
        perf = None
        if args.perf:
            import perf_split
            why = perf_split.available()
            if why is not None:
                print(f"--perf: {why}")
            else:
                perf = perf_split.record(args.perf)
                time.sleep(1.0)  # (perf maps the CPUs' buffers before it samples)
        cpu0 = cpu_seconds(payer.proc.pid), sum(cpu_seconds(p.proc.pid) for p in payees), cpu_seconds(os.getpid())
        elapsed, errors = run_in_flight(work, args.in_flight, lambda: LightningRpc(payer.rpc_path), one)
        cpu1 = cpu_seconds(payer.proc.pid), sum(cpu_seconds(p.proc.pid) for p in payees), cpu_seconds(os.getpid())
        if perf is not None:
            perf_split.stop(perf)
        sched1 = [thread_sched(node.proc.pid) for node in [payer] + payees] if args.sched else None
        if args.gc:
            site_totals_snapshot([payer] + payees)
        if args.flushes:
            site_totals_snapshot([payer] + payees, signal.SIGRTMIN + 2)
        n = len(work) - len(errors)
        if args.cprofile:
            for node in [payer] + payees:
                os.kill(node.proc.pid, signal.SIGUSR2)
            time.sleep(2)
        print(f"{n} payments over {args.peers} channels, {args.in_flight} in flight, in {elapsed:.2f}s = "
              f"{n / elapsed:.1f}/s ({len(errors)} failed{': ' + errors[0] if errors else ''}); load {load:.1f}")
        print(f"CPU per payment: payer {1000 * (cpu1[0] - cpu0[0]) / n:.2f} ms, "
              f"payees (sum) {1000 * (cpu1[1] - cpu0[1]) / n:.2f} ms, this client (pyln-client, {args.in_flight} threads) "
              f"{1000 * (cpu1[2] - cpu0[2]) / n:.2f} ms")
        per_thread = sorted(((("loop" if tid == payer.proc.pid else f"thread {tid}"),
                              1000 * (u + s_ - threads0.get(tid, ("", 0.0, 0.0))[1] - threads0.get(tid, ("", 0.0, 0.0))[2]) / n)
                             for tid, (_, u, s_) in thread_cpu(payer.proc.pid).items()), key=lambda r: -r[1])
        print("payer CPU per payment by thread: " + ", ".join(f"{k} {v:.2f} ms" for k, v in per_thread[:3]))
        _, u1, s1 = thread_cpu(payer.proc.pid)[payer.proc.pid]
        _, u0, s0 = threads0.get(payer.proc.pid, ("", 0.0, 0.0))
        print(f"payer loop user/system: {1000 * (u1 - u0) / n:.2f}/{1000 * (s1 - s0) / n:.2f} ms")
        # One payee's own payments are n / peers (round-robin); its threads by user / system time. Clock ticks are
        # 10 ms: with ~100 payments per payee, read this to +-0.1 ms.
        own = n / args.peers
        rows = []
        for tid, (name, u, s_) in thread_cpu(payees[0].proc.pid).items():
            _, u0, s0 = pthreads0.get(tid, ("", 0.0, 0.0))
            if u - u0 + s_ - s0 > 0:
                rows.append(f"{'loop' if tid == payees[0].proc.pid else name + ' ' + str(tid)} "
                            f"{1000 * (u - u0) / own:.2f}/{1000 * (s_ - s0) / own:.2f} ms")
        print("first payee's CPU per payment it received, by thread (user/system): " + ", ".join(rows))
        if sched0 is not None:
            print_sched(sched0, sched1, payer.proc.pid, elapsed, n)
        if perf is not None:
            roles = {payer.proc.pid: "payer", os.getpid(): "client"}
            roles.update((p.proc.pid, "payees") for p in payees)
            print(perf_split.summarize(args.perf, roles, whole=frozenset({os.getpid()})))
        if args.gc:
            print_gc(args.gc, payer.proc.pid, [p.proc.pid for p in payees], n)
        if args.flushes:
            print_flushes(args.flushes, payer.proc.pid, [p.proc.pid for p in payees], n)
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
            from profile_payment import summarize
            print(f"--- {args.watch}: " + summarize(args.pyspy))
        if strace is not None:
            strace.send_signal(2)
            strace.wait(60)
            calls = {}
            with open(out) as fh:
                for line in fh:
                    cols = line.split()
                    if len(cols) >= 5 and cols[3].isdigit() and cols[-1] != "total":
                        calls[cols[-1]] = int(cols[3])
            os.unlink(out)  # (strace's report: read, no longer needed in /tmp)
            top = sorted(calls.items(), key=lambda kv: -kv[1])
            print(f"{args.watch} system calls per payment of the run (under strace): all {sum(calls.values()) / n:.1f}; "
                  + ", ".join(f"{k} {v / n:.2f}" for k, v in top[:10]))
        # Messages per payment (from the debug log's peer_in/peer_out lines): how many HTLCs a commitment round
        # carries. A round per HTLC each way would be 2; one channel with 50 in flight gives ~0.07, ten channels
        # ~0.8-0.9 (5 in flight each). Timing moves it a little: a busier machine batches more.
        if args.log_level not in (None, "debug", "io", "trace"):
            return  # no peer_in/peer_out lines to count
        since = payer.logs()
        counts = {kind: since.count(f"peer_{kind} WIRE_COMMITMENT_SIGNED") for kind in ("out", "in")}
        print(f"payer commitment_signed per payment: sent {counts['out'] / n:.2f}, received {counts['in'] / n:.2f} "
              f"(whole run, warm-up included)")
    finally:
        f.cleanup()


def site_totals_snapshot(nodes: list, signum: int = signal.SIGRTMIN + 1) -> None:
    """Ask each node's sitecustomize (gc_site: SIGRTMIN+1, flush_site: SIGRTMIN+2) for its totals so far."""
    for node in nodes:
        os.kill(node.proc.pid, signum)
    time.sleep(0.5)  # (written by each node's loop at its next turn)


def print_flushes(directory: str, payer_pid: int, payee_pids: list[int], n: int) -> None:
    """flush_site's two snapshots per node over the measured run: the payer's store flushes per payment, writes per
    flush, a flush's mean wall time split into its COMMIT and the rest (the writes' statements, and waiting for a
    CPU or the interpreter's lock), and its CPU time; the same for the payees together (flushes per payment of the
    whole run, means over all their flushes)."""
    def delta(pid: int) -> dict[str, float]:
        with open(os.path.join(directory, f"flush-{pid}-0.json")) as f0, \
                open(os.path.join(directory, f"flush-{pid}-1.json")) as f1:
            a, b = json.load(f0), json.load(f1)
        return {k: b[k] - a[k] for k in a}

    def line(who: str, d: dict[str, float]) -> str:
        k = d["flushes"] or 1
        wall, commit, cpu = 1000 * d["wall"] / k, 1000 * d["commit"] / k, 1000 * d["cpu"] / k
        return (f"{who}: {d['flushes'] / n:.2f} flushes per payment, {d['writes'] / k:.1f} writes each; per flush "
                f"{wall:.2f} ms wall: the COMMIT {commit:.2f} ms, the rest {wall - commit:.2f} ms; {cpu:.2f} ms on a "
                "CPU in all")
    print("store flushes, " + line("payer", delta(payer_pid)))
    payees = [delta(pid) for pid in payee_pids]
    print("store flushes, " + line("payees together", {k: sum(d[k] for d in payees) for k in payees[0]}))


def print_gc(directory: str, payer_pid: int, payee_pids: list[int], n: int) -> None:
    """The collector over the measured run, from gc_site's two snapshots per node: its share of the payer's CPU and
    of the payees' (summed), and the payer's collections per generation per 1,000 payments."""
    def delta(pid: int) -> tuple[list[list[float]], float]:
        with open(os.path.join(directory, f"gc-{pid}-0.json")) as f0, open(os.path.join(directory, f"gc-{pid}-1.json")) as f1:
            a, b = json.load(f0), json.load(f1)
        gens = [[g1[0] - g0[0], g1[1] - g0[1]] for g0, g1 in zip(a["generations"], b["generations"])]
        return gens, b["cpu"] - a["cpu"]
    gens, cpu = delta(payer_pid)
    share = sum(g[1] for g in gens) / cpu if cpu else 0.0
    payees = [delta(pid) for pid in payee_pids]
    payee_gc = sum(g[1] for gs, _ in payees for g in gs)
    payee_cpu = sum(c for _, c in payees)
    print(f"garbage collector: {100 * share:.1f}% of the payer's CPU (collections per 1,000 payments, generation 0/1/2: "
          + "/".join(f"{1000 * g[0] / n:.1f}" for g in gens)
          + f"), {100 * payee_gc / payee_cpu if payee_cpu else 0.0:.1f}% of the payees'")


def print_sched(before: list[dict], after: list[dict], payer_pid: int, elapsed: float, n: int) -> None:
    """The payer's busy threads one by one, then each payee thread kind averaged over the payees: % of the run on a
    CPU, % runnable but waiting for one, times scheduled in per payment."""
    def rows(b: dict, a: dict) -> list[tuple[str, float, float, float]]:
        out = []
        for tid, (name, run, wait, slices) in a.items():
            _, r0, w0, s0 = b.get(tid, (name, 0, 0, 0))
            out.append((name, (run - r0) / 1e9 / elapsed, (wait - w0) / 1e9 / elapsed, (slices - s0) / n, tid))
        return out
    # (Python threads keep the process's name in /proc: the busy one besides the loop is the database thread.)
    for name, run, wait, per, tid in sorted(rows(before[0], after[0]), key=lambda r: -r[1]):
        if run >= 0.005:
            print(f"sched payer {'loop' if tid == payer_pid else f'thread {tid}'}: on a CPU {100 * run:.1f}%, waiting for one "
                  f"{100 * wait:.1f}%, scheduled in {per:.2f} times per payment")
    kinds: dict[str, list[float]] = {}
    for b, a in zip(before[1:], after[1:]):
        pid = min(a)  # a process's main thread has the smallest tid: its pid
        for name, run, wait, per, tid in rows(b, a):
            k = kinds.setdefault("loop" if tid == pid else "other threads", [0.0, 0.0, 0.0])
            k[0] += run
            k[1] += wait
            k[2] += per
    peers = max(1, len(before) - 1)
    for kind, (run, wait, per) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        if run / peers >= 0.005:
            print(f"sched payee {kind} (mean of {peers}): on a CPU {100 * run / peers:.1f}%, waiting for one "
                  f"{100 * wait / peers:.1f}%, scheduled in {per / peers:.2f} times per payment of the run")


if __name__ == "__main__":
    main()
