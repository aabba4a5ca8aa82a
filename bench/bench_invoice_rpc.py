"""Invoice RPC benchmarks (issue 6): `invoice` creations per second and `decode` calls per second,
through pyln-client on a real ampd (every `invoice` is signed and committed to SQLite with a full
sync before it is answered).

    .venv/bin/python bench/bench_invoice_rpc.py [--invoices 2000] [--decodes 5000] [--threads 8]

Prints figures; not a test.  The issue quotes Core Lightning on the same machine at 660 invoices/s
and 3,900 decodes/s.  "sequential" is one client waiting for each answer; "N clients" runs N
pyln-client connections at once (the store's single writer thread then sees several commits queued).
"""

from __future__ import annotations

import argparse
import threading

from common import Timer, network
from pyln.client import LightningRpc

CLN_INVOICES_PER_S = 660
CLN_DECODES_PER_S = 3900


def _parallel(path: str, threads: int, per_thread: int, fn) -> float:
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        rpc = LightningRpc(path)
        barrier.wait()
        try:
            for j in range(per_thread):
                fn(rpc, i, j)
        except BaseException as e:  # report, don't hang the barrier
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    with Timer() as t:
        for th in ts:
            th.join()
    if errors:
        raise errors[0]
    return t.elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--invoices", type=int, default=2000)
    ap.add_argument("--decodes", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    with network(chain=False) as (_, f):
        node = f.get_node()
        rpc = LightningRpc(node.rpc_path)  # plain pyln-client: no schema validation in the timing
        for i in range(100):  # warm up
            rpc.invoice(1000, f"warm-{i}", "warm up")

        n = args.invoices
        with Timer() as t:
            for i in range(n):
                rpc.invoice(1000 + i, f"seq-{i}", "benchmark invoice")
        inv_seq = n / t.elapsed

        per = max(1, n // args.threads)
        elapsed = _parallel(node.rpc_path, args.threads, per,
                            lambda r, i, j: r.invoice(1000 + j, f"par-{i}-{j}", "benchmark invoice"))
        inv_par = args.threads * per / elapsed

        bolt11 = rpc.invoice(123456789, "to-decode", "a cup of coffee", fallbacks=None)["bolt11"]
        for _ in range(200):
            rpc.decode(bolt11)
        m = args.decodes
        with Timer() as t:
            for _ in range(m):
                rpc.decode(bolt11)
        dec_seq = m / t.elapsed
        per = max(1, m // args.threads)
        elapsed = _parallel(node.rpc_path, args.threads, per, lambda r, i, j: r.decode(bolt11))
        dec_par = args.threads * per / elapsed

        total = len(rpc.listinvoices()["invoices"])
        print(f"invoice: {inv_seq:,.0f}/s sequential, {inv_par:,.0f}/s with {args.threads} clients "
              f"(CLN: {CLN_INVOICES_PER_S}/s; {inv_seq / CLN_INVOICES_PER_S:.2f}x sequential); "
              f"{total} invoices stored")
        print(f"decode:  {dec_seq:,.0f}/s sequential, {dec_par:,.0f}/s with {args.threads} clients "
              f"(CLN: {CLN_DECODES_PER_S:,}/s; {dec_seq / CLN_DECODES_PER_S:.2f}x sequential)")


if __name__ == "__main__":
    main()
