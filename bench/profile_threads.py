"""CPU per payment of each thread of both nodes (event loop, database thread, the rest), user and system time
apart, and bytes written to storage, while one node pays the other one payment at a time (sendpay +
waitsendpay over one channel).  Reads /proc/PID/task/TID/stat, so it costs the nodes nothing.

    python bench/profile_threads.py [--n 300] [--in-flight 1] [--cprofile DIR] [--strace FILE --keep-db FILE]

--cprofile: also cProfile each node's event-loop thread over the measured run (via bench/cprofile_site) and
print the top functions by own time; figures are then slower, read them as shares.  --strace with --keep-db:
a node's system calls into FILE, and its WAL frames per payment by b-tree (which tables a payment's writes
touch, page by page).
Not a test: it prints figures.
"""

import argparse
import os
import pstats
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def thread_cpu(pid: int) -> dict[int, tuple[str, float, float]]:
    """tid -> (name, user s, system s) for every thread of `pid`."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
            with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                name = fh.read().strip()
        except OSError:
            continue
        out[int(tid)] = (name, int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def thread_sched(pid: int) -> dict[int, tuple[str, int, int, int]]:
    """tid -> (name, ns on a CPU, ns runnable but waiting for a CPU, times scheduled in) for every thread of `pid`,
    from /proc/<pid>/task/<tid>/schedstat. The wait is what a busy event loop loses to other processes sharing the
    cores: time it could have run."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                run, wait, slices = (int(x) for x in fh.read().split())
            with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                name = fh.read().strip()
        except (OSError, ValueError):
            continue
        out[int(tid)] = (name, run, wait, slices)
    return out


def io_write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as fh:
        return int(dict(line.split(": ") for line in fh)["write_bytes"])


def wal_pages(strace_file: str, db_file: str, n: int) -> str:
    """WAL frames per payment by the b-tree their page belongs to (page numbers from the frame headers in the
    strace of the node's pwrite64 calls; owners from the copied database's dbstat; '?N' = a page free at the end,
    'sqlite_schema' = page 1, which also holds the freelist's head)."""
    import ast
    import collections
    import re
    import sqlite3
    db = sqlite3.connect(db_file)
    owner = {pg: name for name, pg in db.execute("SELECT name, pageno FROM dbstat")}
    pages = collections.Counter()
    commits = 0
    for line in open(strace_file):
        m = re.search(r'pwrite64\(\d+<[^>]*-wal>, "((?:[^"\\]|\\.)*)"\.*, 24, ', line)
        if m:
            header = ast.literal_eval('b"' + m.group(1) + '"')
            page = int.from_bytes(header[:4], "big")
            pages[owner.get(page, f"?{page}")] += 1
            commits += int.from_bytes(header[4:8], "big") != 0  # a commit frame holds the database size
    return (f"WAL: {commits / n:.2f} commits, {sum(pages.values()) / n:.2f} pages per payment: "
            + ", ".join(f"{k} {v / n:.2f}" for k, v in pages.most_common()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--in-flight", type=int, default=1)
    ap.add_argument("--cprofile", default=None)
    ap.add_argument("--keep-db", default=None, help="copy the payer's database here after the run (page by page)")
    ap.add_argument("--strace", default=None, help="write the system calls of one node (strace) to this file")
    ap.add_argument("--node", choices=("payer", "payee"), default="payer", help="the node --strace/--keep-db watch")
    args = ap.parse_args()
    if args.cprofile:
        os.makedirs(args.cprofile, exist_ok=True)
        os.environ["AMP_CPROFILE_DIR"] = os.path.abspath(args.cprofile)
        os.environ["PYTHONPATH"] = os.path.join(HERE, "cprofile_site") + os.pathsep + os.environ.get("PYTHONPATH", "")
    sys.path.insert(0, HERE)
    from common import network, run_in_flight
    from profile_payment import warm_pair
    from pyln.client import LightningRpc
    with network() as (chaind, f):
        l1, l2, r1, one, invoices = warm_pair(chaind, f, args.n)
        nodes = (("payer", l1), ("payee", l2))
        if args.cprofile:
            for _, node in nodes:
                os.kill(node.proc.pid, signal.SIGUSR1)
            time.sleep(0.2)
        tracer = None
        watched = l1 if args.node == "payer" else l2
        if args.strace:
            tracer = subprocess.Popen(["strace", "-f", "-yy", "-p",
                                       str(watched.proc.pid), "-o", args.strace],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        load = os.getloadavg()[0]
        t0 = {name: thread_cpu(node.proc.pid) for name, node in nodes}
        w0 = {name: io_write_bytes(node.proc.pid) for name, node in nodes}
        start = time.perf_counter()
        if args.in_flight == 1:
            for inv in invoices:
                one(r1, inv)
        else:
            run_in_flight(invoices, args.in_flight, lambda: LightningRpc(l1.rpc_path), one)
        elapsed = time.perf_counter() - start
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
        if args.keep_db:
            import sqlite3
            src = sqlite3.connect(os.path.join(watched.dir, "regtest", "ampere.sqlite3"))
            dst = sqlite3.connect(args.keep_db)
            src.backup(dst)
            dst.close()
            src.close()
        t1 = {name: thread_cpu(node.proc.pid) for name, node in nodes}
        w1 = {name: io_write_bytes(node.proc.pid) for name, node in nodes}
        if args.strace and args.keep_db:
            print(args.node + " " + wal_pages(args.strace, args.keep_db, args.n))
        print(f"{args.n} payments, {args.in_flight} in flight, {args.n / elapsed:.1f}/s, load {load:.2f}"
              f"{' (under cProfile)' if args.cprofile else ''}")
        for name, node in nodes:
            pid = node.proc.pid
            rows = []
            for tid, (tname, u, s) in t1[name].items():
                _, u0, s0 = t0[name].get(tid, (tname, 0.0, 0.0))
                du, ds = (u - u0) * 1000 / args.n, (s - s0) * 1000 / args.n
                if du + ds > 0:
                    rows.append(("loop" if tid == pid else f"{tname}[{tid}]", du, ds))
            rows.sort(key=lambda r: -(r[1] + r[2]))
            tot_u, tot_s = sum(r[1] for r in rows), sum(r[2] for r in rows)
            print(f"  {name}: total {tot_u + tot_s:.2f} ms/payment (user {tot_u:.2f}, sys {tot_s:.2f}); "
                  f"written {(w1[name] - w0[name]) / args.n / 1024:.1f} KiB/payment")
            for label, du, ds in rows[:6]:
                print(f"    {label:24s} {du + ds:6.2f} ms (user {du:.2f}, sys {ds:.2f})")
        if args.cprofile:
            for _, node in nodes:
                os.kill(node.proc.pid, signal.SIGUSR2)
            time.sleep(1.0)
            for name, node in nodes:
                for suffix, what in (("", "event loop"), ("-db", "database thread")):
                    path = os.path.join(args.cprofile, f"ampd-{node.proc.pid}{suffix}.prof")
                    print(f"--- {name} {what}, cProfile top by own time ({path})")
                    pstats.Stats(path).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
