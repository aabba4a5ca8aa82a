"""Payment speed side by side (issue 18): the same scenarios on Ampere and on Core Lightning, in the same run, on
one amp-chaind, every payment durable on every node (SQLite synchronous=FULL / CLN's default sqlite3):

  * direct, one channel, sendpay + waitsendpay one at a time: payments/s, mean and p99 latency;
  * direct, one channel, 50 payments in flight (50 client threads): payments/s;
  * direct, 10 channels to 10 peers, 50 in flight spread over them: payments/s, and the CPU per payment of the payer
    and of the payees (each node's whole process tree);
  * two hops, `pay` (l1 -> l2 -> l3, announced channels): one at a time (mean, p99) and 50 in flight.

Needs Core Lightning (CLN_LIGHTNINGD, or /work/cln/bin/lightningd); without it only Ampere is measured.
BENCH_KINDS=ampere,cln picks the implementations; BENCH_SCALE=0.5 halves the payment counts; BENCH_PEERS=10;
BENCH_MANY=n makes the ten-channel case that many payments (default 2,000; before session 20, 400).
On a loaded machine the absolute figures drop: compare the two implementations within one run.

Core Lightning's nodes are set up polling the chain every second (the test harness's dev-bitcoind-poll=1) and
restarted polling at CLN's default before anything is measured (common.settle_cln): polling every second through
amp-chain-cli costs each idle CLN node ~10% of a core here, which figures before session 11 paid (the ten-channel
case's eleven CLN nodes: ~95% of one of the two cores).
"""

import os
import sys
import time

from common import (failed, latency_stats, network, one_at_a_time, run_in_flight, scaled, timed_pay, timed_sendpay,
                    settle_cln, tree_cpu_seconds)
from pyln.client import LightningRpc

N_SEQ = scaled(150, least=6)  # the first 5 are a warm-up
N_PAR = scaled(400)
# The ten-channel case is the rate at 50 in flight: with 400 payments (the default until session 20), under a second
# at ~450/s, the last 50 (an eighth) finished with fewer than 50 in flight, and one slow moment of the machine was a
# good part of the run (session 20, three runs: 358.7, 417.0, 304.1/s); 2,000 payments are the steady state (403.0,
# 414.3, 436.6, 446.9/s; CLN 20 s). BENCH_MANY overrides.
N_MANY = int(os.environ.get("BENCH_MANY", scaled(2000)))
N_PAY_SEQ = scaled(100, least=6)
N_PAY_PAR = scaled(300)
PEERS = int(os.environ.get("BENCH_PEERS", "10"))
IN_FLIGHT = 50
AMOUNT = 1_000
DELAY = 30
OPTS = {"max-concurrent-htlcs": 483}
NAME = {"ampere": "Ampere", "cln": "CLN"}
IDLE_SECONDS = 5


def sendpay_one(payer_rpc, hop, inv) -> float:
    return timed_sendpay(payer_rpc, [hop], inv)


def direct(f, kind: str) -> None:
    payer = f.get_node_of(kind, dict(OPTS))
    payee = f.get_node_of(kind, dict(OPTS))
    scid = f.fundchannel(payer, payee, 5_000_000, announce=False)["short_channel_id"]
    r2 = LightningRpc(payee.rpc_path)
    invoices = [r2.invoice(AMOUNT, f"d{i}", "bench") for i in range(N_SEQ + N_PAR)]
    hop = {"id": payee.node_id, "channel": scid, "delay": DELAY, "amount_msat": AMOUNT}
    settle_cln([payer, payee])

    def one(rpc, inv) -> float:
        return sendpay_one(rpc, hop, inv)

    lat, seq = one_at_a_time(LightningRpc(payer.rpc_path), one, invoices[:N_SEQ])
    st = latency_stats(lat)
    par, errors = run_in_flight(invoices[N_SEQ:], IN_FLIGHT, lambda: LightningRpc(payer.rpc_path), one)
    ok = N_PAR - len(errors)
    print(f"{NAME[kind]:>6}  direct, 1 channel: one at a time {len(lat) / seq:6.1f}/s, mean {st['mean']:6.1f} ms, "
          f"p99 {st['p99']:6.1f} ms; {IN_FLIGHT} in flight {ok / par:6.1f}/s "
          f"({failed(errors)})", flush=True)
    for n in (payer, payee):
        n.stop()


def many_channels(f, kind: str) -> None:
    payer = f.get_node_of(kind, dict(OPTS))
    nodes = [payer]
    hops, invoices = [], []
    per = N_MANY // PEERS + 1
    for i in range(PEERS):
        payee = f.get_node_of(kind, dict(OPTS))
        nodes.append(payee)
        scid = f.fundchannel(payer, payee, 2_000_000, announce=False)["short_channel_id"]
        hop = {"id": payee.node_id, "channel": scid, "delay": DELAY, "amount_msat": AMOUNT}
        rpc = LightningRpc(payee.rpc_path)
        hops.append(hop)
        invoices.append([(hop, rpc.invoice(AMOUNT, f"m{i}-{j}", "bench")) for j in range(per)])
    work = [invoices[j % PEERS][j // PEERS] for j in range(per * PEERS)]
    settle_cln(nodes)
    r1 = LightningRpc(payer.rpc_path)
    for hop, inv in work[:PEERS]:  # warm-up: one per channel
        sendpay_one(r1, hop, inv)
    work = work[PEERS:]
    # CPU of every node (each process tree: CLN's subdaemons and plugins included) over the measured run, and what
    # the same nodes burn idle over IDLE_SECONDS just before it: background work (CLN polling the chain every
    # second, as before settle_cln) would show there and be taken from the run.
    t0, idle0 = time.perf_counter(), sum(tree_cpu_seconds(n.proc.pid) for n in nodes)
    time.sleep(IDLE_SECONDS)
    idle = (sum(tree_cpu_seconds(n.proc.pid) for n in nodes) - idle0) / (time.perf_counter() - t0)
    cpu0 = [tree_cpu_seconds(n.proc.pid) for n in nodes]
    par, errors = run_in_flight(work, IN_FLIGHT, lambda: LightningRpc(payer.rpc_path),
                                lambda rpc, item: sendpay_one(rpc, item[0], item[1]))
    cpu = [tree_cpu_seconds(n.proc.pid) - c for n, c in zip(nodes, cpu0)]
    ok = len(work) - len(errors)
    ms_each = 1000 / max(ok, 1)  # seconds of CPU over the run -> ms per payment
    print(f"{NAME[kind]:>6}  direct, {PEERS} channels to {PEERS} peers: {IN_FLIGHT} in flight {ok / par:6.1f}/s "
          f"({failed(errors)}); CPU per payment: payer {cpu[0] * ms_each:.2f} ms, payees (sum) {sum(cpu[1:]) * ms_each:.2f} ms "
          f"(the {len(nodes)} nodes idle: {100 * idle:.1f}% of a core, {idle * par * ms_each:.2f} ms per payment of it)",
          flush=True)
    for n in nodes:
        n.stop()


def two_hops(f, kind: str) -> None:
    # Announced channels (CLN puts no route hint for an unannounced channel into its invoices).
    l1, l2, l3 = f.line_graph([kind] * 3, 10**7, announce_channels=True, wait_for_announce=True, opts=dict(OPTS))
    r3 = LightningRpc(l3.rpc_path)
    invoices = [r3.invoice(10_000, f"p{i}", "bench")["bolt11"] for i in range(N_PAY_SEQ + N_PAY_PAR)]
    settle_cln([l1, l2, l3], announced=4)

    lat, seq = one_at_a_time(LightningRpc(l1.rpc_path), timed_pay, invoices[:N_PAY_SEQ])
    st = latency_stats(lat)
    par, errors = run_in_flight(invoices[N_PAY_SEQ:], IN_FLIGHT, lambda: LightningRpc(l1.rpc_path), timed_pay)
    ok = N_PAY_PAR - len(errors)
    print(f"{NAME[kind]:>6}  pay, two hops: one at a time {len(lat) / seq:6.1f}/s, mean {st['mean']:6.1f} ms, "
          f"p99 {st['p99']:6.1f} ms; {IN_FLIGHT} in flight {ok / par:6.1f}/s "
          f"({failed(errors)})", flush=True)
    for n in (l1, l2, l3):
        n.stop()


def main() -> None:
    from ampere.testing.cln import lightningd_path

    kinds = os.environ.get("BENCH_KINDS", "ampere,cln").split(",")
    if "cln" in kinds and lightningd_path() is None:
        if os.access("/work/cln/bin/lightningd", os.X_OK):
            os.environ["CLN_LIGHTNINGD"] = "/work/cln/bin/lightningd"
        else:
            print("Core Lightning not found (CLN_LIGHTNINGD): Ampere only", file=sys.stderr)
            kinds = [k for k in kinds if k != "cln"]
    scenarios = os.environ.get("BENCH_SCENARIOS", "direct,many,pay").split(",")
    with network() as (_, f):
        print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; {AMOUNT} msat payments", flush=True)
        for name, fn in (("direct", direct), ("many", many_channels), ("pay", two_hops)):
            if name in scenarios:
                for kind in kinds:
                    fn(f, kind)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
