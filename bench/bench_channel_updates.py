"""Channel updates per second between two local ampd nodes, persistence on (issue 5).

Two nodes on amp-chaind with one channel; l1 offers HTLCs through the channel manager's HTLC interface
(`dev-htlc-roundtrips`, developer mode) and l2 (--dev-autofulfill) fulfils each one: a round trip is
update_add_htlc, commitment_signed/revoke_and_ack both ways, update_fulfill_htlc, and the signatures again,
every step persisted (SQLite WAL, synchronous=FULL) before the message that reveals it. Prints figures for one
HTLC in flight at a time (latency-bound: ~10 fsyncs plus two 10 ms commit timers per round trip) and for
several in flight (updates share signature rounds, as CLN batches them). Not a test.  BENCH_SCALE=0.1: a tenth
of the round trips.
"""

from common import network, scaled

ROUNDS = [(1, scaled(200)), (10, scaled(1000)), (25, scaled(2000))]  # (HTLCs in flight, round trips)


def main() -> None:
    with network() as (_, f):
        opts = {"developer": None, "dev-autofulfill": None, "log-level": "info"}
        l1, l2 = f.line_graph(2, fundamount=10_000_000, opts=opts)
        print("HTLC add+fulfill round trips between two ampd nodes (persisted, commit-time 10 ms):")
        for parallel, count in ROUNDS:
            r = l1.rpc.call("dev-htlc-roundtrips", {"id": l2.node_id, "count": count, "amount_msat": 1000,
                                                    "parallel": parallel})
            assert r["fulfilled"] == count, r
            print(f"  {parallel:>3} in flight: {count:>5} round trips in {r['seconds']:.2f} s = "
                  f"{r['per_second']:,.0f} round trips/s ({r['per_second'] * 2:,.0f} updates/s)")


if __name__ == "__main__":
    main()
