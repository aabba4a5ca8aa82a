"""Where the time of a direct payment goes: py-spy samples both ampd processes while one node pays the other
(sendpay + waitsendpay over one channel), then prints, per node, the share of samples under each of a few
hot-path functions (inclusive) and the top self-time functions.  Needs py-spy (PY_SPY=path, or on PATH).

    python bench/profile_payment.py [--n 300] [--in-flight 1] [--out DIR]

Not a test: it prints a profile (docs/profile.md keeps the before/after).
"""

import argparse
import collections
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time

from common import cpu_seconds, network, run_in_flight, timed_sendpay
from pyln.client import LightningRpc

_spec = importlib.util.spec_from_file_location(
    "test_payments", os.path.join(os.path.dirname(__file__), "..", "tests", "integration", "test_payments.py"))



def warm_pair(chaind, f, n: int):
    """A payer and a payee with one channel (as tests/integration/test_payments.py makes them), 5 payments made to
    warm up, and `n` more invoices of 1,000 msat: (payer, payee, the payer's rpc, one(rpc, invoice) -> seconds
    paying by sendpay + waitsendpay, the invoices)."""
    tp = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(tp)
    opts = {"max-concurrent-htlcs": 483}
    l1, l2, scid = tp.channel_pair(f, chaind, opts1=opts, opts2=opts)
    id2 = l2.rpc.getinfo()["id"]
    r2 = LightningRpc(l2.rpc_path)
    invoices = [r2.invoice(1000, f"p{i}", "profile") for i in range(n + 5)]
    route = [{"id": id2, "channel": scid, "delay": tp.DELAY, "amount_msat": 1000}]

    def one(rpc, inv) -> float:
        return timed_sendpay(rpc, route, inv, timeout=60)

    r1 = LightningRpc(l1.rpc_path)
    for inv in invoices[:5]:
        one(r1, inv)
    return l1, l2, r1, one, invoices[5:]


# Inclusive buckets: a sample counts for the first of these (outermost-first order irrelevant: first match in
# this list, looking at the whole stack) -- so order from specific to general.
BUCKETS = [
    ("fsync / commit (db thread)", ("_commit (ampere/store",)),
    ("db write functions (db thread)", ("_run_batch (ampere/store",)),
    ("snapshot encode (to_record/encode_record)", ("to_record (ampere/ln/channel/state", "encode_record (ampere")),
    ("state diff", ("diff (ampere/ln/channel/persist",)),
    ("HTLC tx sign/verify", ("sign_htlc_txs", "htlc_transactions", "_verify_htlc", "sign_local_htlc")),
    ("commitment build", ("build_commitment_tx",)),
    ("commitment sign/verify", ("sign_commitment", "verify (ampere/ln/channel/commitment")),
    ("per-commitment keys", ("derive_pubkey", "derive_revocation", "commitment_point", "_point (")),
    ("onion (sphinx)", ("ampere/ln/onion", "sphinx")),
    ("wire decode", ("decode_message", "ampere/wire/codec")),
    ("wire encode", ("encode_message",)),
    ("noise (BOLT 8)", ("ampere/wire/noise",)),
    ("RPC server / JSON", ("ampere/rpc/",)),
    ("plugins", ("ampere/plugins/",)),
    ("rest of the event-loop thread (tasks, dispatch, payment engine, DB hand-offs)", ("asyncio/",)),
]


def summarize(path: str, top: int = 25) -> str:
    totals = collections.Counter()
    selfs = collections.Counter()
    n = 0
    idle = 0
    with open(path) as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            c = int(count)
            frames = stack.split(";")
            n += c
            leaf = frames[-1]
            if any(s in leaf for s in ("select (selectors", "_worker (concurrent", "wait (threading", "poll (selectors",
                                       "epoll")) or leaf.startswith("process "):
                idle += c
                continue
            selfs[leaf] += c
            for name, keys in BUCKETS:
                if any(k in stack for k in keys):
                    totals[name] += c
                    break
            else:
                totals["other"] += c
    busy = n - idle
    out = [f"samples {n}, idle {idle} ({100 * idle / max(n, 1):.0f}%), busy {busy}"]
    for name, c in totals.most_common():
        out.append(f"  {100 * c / max(busy, 1):5.1f}%  {name}")
    out.append("  top self time (% of busy):")
    for leaf, c in selfs.most_common(top):
        out.append(f"  {100 * c / max(busy, 1):5.1f}%  {leaf}")
    return "\n".join(out)


def io_counters(pid: int) -> dict[str, int]:
    """/proc/PID/io: write_bytes (what reached the block layer) and wchar (bytes passed to write(), sockets too)."""
    with open(f"/proc/{pid}/io") as fh:
        return {k: int(v) for k, v in (line.split(": ") for line in fh)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--in-flight", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--cpu-only", action="store_true", help="no sampling: CPU time per payment of each node only")
    ap.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL: CPU, not waiting")
    ap.add_argument("--fsyncs", action="store_true",
                    help="count fsync/fdatasync calls per payment of each node with strace instead of profiling")
    args = ap.parse_args()
    pyspy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    assert pyspy or args.fsyncs or args.cpu_only, "py-spy not found: pip install py-spy, or PY_SPY=path"
    out_dir = args.out or tempfile.mkdtemp(prefix="amp-profile-")
    os.makedirs(out_dir, exist_ok=True)
    with network() as (chaind, f):
        l1, l2, r1, one, invoices = warm_pair(chaind, f, args.n)
        spies = []
        cpu0 = {name: cpu_seconds(node.proc.pid) for name, node in (("payer", l1), ("payee", l2))}
        io0 = {name: io_counters(node.proc.pid) for name, node in (("payer", l1), ("payee", l2))}
        for name, node in (("payer", l1), ("payee", l2)) if not args.cpu_only else ():
            raw = os.path.join(out_dir, f"{name}.txt")
            if args.fsyncs:
                spies.append((name, raw, subprocess.Popen(
                    ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-p", str(node.proc.pid), "-o", raw],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
                continue
            spies.append((name, raw, subprocess.Popen(
                [pyspy, "record", "--pid", str(node.proc.pid), "--format", "raw", "--rate", "500", "--threads",
                 "--nonblocking", *(["--gil"] if args.gil else []), "-o", raw], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        time.sleep(1.5)
        t0 = time.perf_counter()
        if args.in_flight == 1:
            lat = [one(r1, inv) for inv in invoices]
        else:
            run_in_flight(invoices, args.in_flight, lambda: LightningRpc(l1.rpc_path), one)
            lat = []
        elapsed = time.perf_counter() - t0
        cpu = {name: cpu_seconds(node.proc.pid) - cpu0[name] for name, node in (("payer", l1), ("payee", l2))}
        io = {name: {k: v - io0[name][k] for k, v in io_counters(node.proc.pid).items()}
              for name, node in (("payer", l1), ("payee", l2))}
        for _, _, p in spies:
            p.send_signal(2)
        for _, _, p in spies:
            p.wait(60)
        print(f"{args.n} payments, {args.in_flight} in flight, in {elapsed:.2f}s = {args.n / elapsed:.1f}/s"
              + (f"; mean {1000 * sum(lat) / len(lat):.1f} ms" if lat else "") + f"; raw stacks in {out_dir}")
        print("CPU per payment: " + ", ".join(f"{name} {1000 * c / args.n:.2f} ms" for name, c in cpu.items())
              + (" (under the profiler)" if not args.cpu_only else ""))
        print("Bytes written per payment (write_bytes to storage / wchar all write() calls incl. sockets): "
              + ", ".join(f"{name} {io[name]['write_bytes'] / args.n:.0f} / {io[name]['wchar'] / args.n:.0f}"
                          for name in io))
        for name, raw, _ in spies:
            if args.fsyncs:
                calls = sum(int(line.split()[3]) for line in open(raw)
                            if line.split() and line.split()[-1] in ("fsync", "fdatasync"))
                print(f"--- {name}: {calls} fsync/fdatasync calls = {calls / args.n:.1f} per payment")
            else:
                print(f"--- {name}: " + summarize(raw))


if __name__ == "__main__":
    main()
