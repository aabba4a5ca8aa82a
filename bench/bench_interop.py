"""Interoperability benchmark (issue 12): direct payments over one channel, for each payer -> payee pair of
implementations on the same machine in the same run: Ampere -> CLN, CLN -> Ampere, Ampere -> Ampere, CLN -> CLN.

  * sendpay + waitsendpay one at a time: payments/s, mean and p99 latency of one payment;
  * 50 payments in flight (50 client threads, each sendpay then waitsendpay): payments/s.

Needs Core Lightning: CLN_LIGHTNINGD names its lightningd (e.g. CLN_LIGHTNINGD=$(../shared/cln/unpack)); prints
figures, not a test. On a shared machine the figures are lower bounds.
"""

import os
import sys

from common import failed, latency_stats, network, one_at_a_time, run_in_flight, settle_cln, timed_sendpay

from pyln.client import LightningRpc

from ampere.testing.cln import SKIP_REASON, lightningd_path

N_SEQ = int(os.environ.get("BENCH_N_SEQ", 150))
N_PAR = int(os.environ.get("BENCH_N_PAR", 400))
IN_FLIGHT = 50
AMOUNT = 1_000
DELAY = 30  # above both implementations' final CLTV
PAIRS = [("ampere", "cln"), ("cln", "ampere"), ("ampere", "ampere"), ("cln", "cln")]
# BENCH_PAIRS=ampere-ampere,cln-cln: only those pairs (side-by-side figures for one implementation each)
if os.environ.get("BENCH_PAIRS"):
    PAIRS = [tuple(p.split("-")) for p in os.environ["BENCH_PAIRS"].split(",")]


def bench_pair(f, payer_kind: str, payee_kind: str) -> str:
    opts = {"max-concurrent-htlcs": 483}
    payer = f.get_node_of(payer_kind, dict(opts))
    payee = f.get_node_of(payee_kind, dict(opts))
    scid = f.fundchannel(payer, payee, 5_000_000, announce=False)["short_channel_id"]
    payee_rpc = LightningRpc(payee.rpc_path)
    invoices = [payee_rpc.invoice(AMOUNT, f"b{i}", "bench") for i in range(N_SEQ + N_PAR)]
    route = [{"id": payee.node_id, "channel": scid, "delay": DELAY, "amount_msat": AMOUNT}]
    settle_cln([payer, payee])  # CLN polling the chain as by default while measured

    def one(rpc, inv) -> float:
        return timed_sendpay(rpc, route, inv)

    lat, seq_time = one_at_a_time(LightningRpc(payer.rpc_path), one, invoices[:N_SEQ])
    st = latency_stats(lat)
    par_time, errors = run_in_flight(invoices[N_SEQ:], IN_FLIGHT, lambda: LightningRpc(payer.rpc_path), one)
    ok = N_PAR - len(errors)
    paid = sum(1 for i in payee_rpc.listinvoices()["invoices"] if i["status"] == "paid")
    assert paid == ok + N_SEQ, (paid, ok)
    name = {"ampere": "Ampere", "cln": "CLN"}
    line = (f"{name[payer_kind]:>6} -> {name[payee_kind]:<6}  one at a time: {len(lat) / seq_time:6.1f} payments/s, "
            f"mean {st['mean']:6.1f} ms, p99 {st['p99']:6.1f} ms;  {IN_FLIGHT} in flight: "
            f"{ok / par_time:6.1f} payments/s ({failed(errors)})")
    print(line, flush=True)
    for n in (payer, payee):
        n.stop()
    return line


def main() -> None:
    if lightningd_path() is None:
        print(SKIP_REASON)
        sys.exit(0)
    with network() as (_, f):
        print(f"direct payments of {AMOUNT} msat over one channel, sendpay+waitsendpay: {N_SEQ - 5} one at a time, "
              f"{N_PAR} with {IN_FLIGHT} in flight; cores: {os.cpu_count()}; load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        for payer_kind, payee_kind in PAIRS:
            bench_pair(f, payer_kind, payee_kind)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
