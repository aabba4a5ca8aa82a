"""Payments benchmark (issue 6): direct payments over one channel between two ampd nodes on amp-chaind.

  * sendpay + waitsendpay one at a time: payments per second, mean and p99 latency of one payment;
  * 50 payments in flight at once (50 client threads, each sendpay then waitsendpay): payments per second.

Every payment is durable on both sides (SQLite, synchronous=FULL).  Prints figures; not a test.
`--db=postgres`: both nodes keep their state in a real PostgreSQL (started here, local unix socket,
synchronous_commit=on), one database each.
Reference (the issue): CLN sendpay 27.5 ms for a single hop, xpay 52 ms; Eclair 89 payments/s and CLN 61 on
8 vCPUs, LND about 22-35.  Ampere's goal: under 15 ms, over 250 payments/s with 50 in flight, on 2 cores.
BENCH_SCALE=0.1: a tenth of the payments.
"""

import argparse
import contextlib
import importlib.util
import os

from common import failed, latency_stats, network, one_at_a_time, run_in_flight, scaled, timed_sendpay

from pyln.client import LightningRpc

_spec = importlib.util.spec_from_file_location(
    "test_payments", os.path.join(os.path.dirname(__file__), "..", "tests", "integration", "test_payments.py"))

N_SEQ = scaled(200, least=6)  # the first 5 are a warm-up
N_PAR = scaled(500)
IN_FLIGHT = 50
AMOUNT = 1_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    db = ap.parse_args().db
    tp = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(tp)
    opts1, opts2 = {}, {}
    with contextlib.ExitStack() as stack:
        if db == "postgres":
            from ampere.testing.postgres import PostgresServer

            server = PostgresServer().start()
            stack.callback(server.destroy)  # after the nodes that use it have stopped (network() exits first)
            for name, o in (("bench1", opts1), ("bench2", opts2)):
                server.create_db(name)
                o["wallet"] = server.socket_dsn(name)
        print(f"database: {db}")
        chaind, f = stack.enter_context(network())
        opts = {"max-concurrent-htlcs": 483}
        l1, l2, scid = tp.channel_pair(f, chaind, opts1={**opts, **opts1}, opts2={**opts, **opts2})
        route = [{"id": l2.rpc.getinfo()["id"], "channel": scid, "delay": tp.DELAY, "amount_msat": AMOUNT}]
        r2 = LightningRpc(l2.rpc_path)
        invoices = [r2.invoice(AMOUNT, f"b{i}", "bench") for i in range(N_SEQ + N_PAR)]

        def one(rpc, inv) -> float:
            return timed_sendpay(rpc, route, inv, timeout=60)

        lat, seq_time = one_at_a_time(LightningRpc(l1.rpc_path), one, invoices[:N_SEQ])
        st = latency_stats(lat)
        print(f"one at a time: {len(lat)} payments in {seq_time:.2f}s = {len(lat) / seq_time:,.1f} payments/s; "
              f"latency mean {st['mean']:.1f} ms, p99 {st['p99']:.1f} ms (CLN sendpay 27.5 ms, xpay 52 ms; goal < 15 ms)")

        par_time, errors = run_in_flight(invoices[N_SEQ:], IN_FLIGHT, lambda: LightningRpc(l1.rpc_path), one)
        ok = N_PAR - len(errors)
        print(f"{IN_FLIGHT} in flight: {ok} payments in {par_time:.2f}s = {ok / par_time:,.1f} payments/s "
              f"({failed(errors)}) "
              f"(Eclair 89/s, CLN 61/s on 8 vCPUs, LND 22-35/s; goal > 250/s)")
        paid = sum(1 for i in r2.listinvoices()["invoices"] if i["status"] == "paid")
        print(f"invoices paid on the receiver: {paid} of {len(invoices)}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
