"""`pay` benchmark (issue 7): payments across two hops, l1 -> l2 -> l3, on amp-chaind.

  * `pay` one at a time: payments per second, and the latency of one two-hop payment (mean, p50, p99);
  * 50 `pay` calls in flight at once (50 client threads): payments per second.

l3's channel to l2 is unannounced: every invoice carries it as a route hint.  Every payment is durable on all
three nodes (SQLite, synchronous=FULL) and l2 persists each forward before offering it.  Prints figures; not a
test.  Published anchors: CLN measures 111 ms for a three-node xpay (about 55 ms per extra hop); Ampere's goal is
under 25 ms for two hops on this machine.  BENCH_SCALE=0.1: a tenth of the payments.
"""

import os

from common import failed, latency_stats, network, one_at_a_time, run_in_flight, scaled, timed_pay

from pyln.client import LightningRpc

N_SEQ = scaled(200, least=6)  # the first 5 are a warm-up
N_PAR = scaled(500)
IN_FLIGHT = 50
AMOUNT = 10_000


def main() -> None:
    with network() as (_, f):
        opts = {"max-concurrent-htlcs": 483}
        l1, l2, l3 = f.line_graph(3, 10**7, opts=opts)
        r3 = LightningRpc(l3.rpc_path)
        invoices = [r3.invoice(AMOUNT, f"b{i}", "bench")["bolt11"] for i in range(N_SEQ + N_PAR)]

        lat, seq_time = one_at_a_time(LightningRpc(l1.rpc_path), timed_pay, invoices[:N_SEQ])
        st = latency_stats(lat)
        print(f"pay, one at a time, two hops: {len(lat)} payments in {seq_time:.2f}s = {len(lat) / seq_time:,.1f} "
              f"payments/s; latency mean {st['mean']:.1f} ms, p50 {st['p50']:.1f} ms, p99 {st['p99']:.1f} ms "
              f"(CLN xpay three nodes 111 ms; goal < 25 ms)")

        par_time, errors = run_in_flight(invoices[N_SEQ:], IN_FLIGHT, lambda: LightningRpc(l1.rpc_path), timed_pay)
        ok = N_PAR - len(errors)
        print(f"pay, {IN_FLIGHT} in flight, two hops: {ok} payments in {par_time:.2f}s = {ok / par_time:,.1f} "
              f"payments/s ({failed(errors)})")
        fwd = LightningRpc(l2.rpc_path).listforwards(status="settled")["forwards"]
        paid = sum(1 for i in r3.listinvoices()["invoices"] if i["status"] == "paid")
        print(f"settled forwards at l2: {len(fwd)}; invoices paid at l3: {paid} of {len(invoices)}; "
              f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
