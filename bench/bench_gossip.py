"""Benchmark: gossip validation, loading a stored graph, and getroute on it.

Generates a random network of 10,000 channels and 5,000 nodes with real signatures (once, into a
temp dir), then prints:
  - channel_updates validated per second (decode + checks + signature, as received from a peer),
  - channel_announcements validated per second (four signatures and the funding script),
  - the time to load the stored graph (gossip store file -> Graph),
  - the graph's memory (tracemalloc: the Graph with its raw messages, then the path finder's view),
  - getroute calls per second on that graph (100,000 msat, riskfactor 10): from one payer to random
    payees (what `pay` and `getroute` without `fromid` do: the node itself pays), the same with a
    fresh channel_update applied to the graph before every 10th route (the path finder's view is
    brought up to date, not rebuilt), and between random pairs (a new payer each time); each as
    calls per wall-clock second and per CPU second of this process (the machine is shared: the
    load average is printed with them),
  - the same through a real ampd's RPC (one payer, then random pairs as `fromid`), its load time
    of the store (its log) and its RSS; then, with Core Lightning at hand (bench/cln.py; NOCLN=1 skips it),
    the same calls to a lightningd whose gossip_store holds the same graph (written in CLN's format).

Prints figures; not a timed test.  Run: .venv/bin/python bench/bench_gossip.py [channels] [nodes]
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from ampere.ln.gossip import Accept, GossipValidator, Graph  # noqa: E402
from ampere.node.gossip.store_file import GossipStore  # noqa: E402
from ampere.testing.gossip_factory import GossipFactory, random_network  # noqa: E402
from ampere.ln.route import LocalChannel, RouteError, RouteQuery, find_route, split_payment  # noqa: E402
from ampere.primitives.amount import MsatInt  # noqa: E402
from ampere.wire.bolt1 import chain_hash  # noqa: E402
import cln  # noqa: E402
from common import network, rss_mib, time_getroutes, write_gossip_store  # noqa: E402
from pyln.client import LightningRpc  # noqa: E402


def main() -> None:
    n_channels = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    n_nodes = int(sys.argv[2]) if len(sys.argv) > 2 else 5_000
    chain = chain_hash("regtest")
    now = int(time.time())
    tmp = tempfile.mkdtemp(prefix="amp-bench-gossip-")
    try:
        t0 = time.perf_counter()
        net = random_network(GossipFactory(chain), n_nodes=n_nodes, n_channels=n_channels, now=now, seed=42)
        print(f"generated {n_channels:,} channels, {n_nodes:,} nodes, {len(net.updates):,} updates "
              f"(signed) in {time.perf_counter() - t0:.1f} s")

        # channel_announcements, as received (decode, 4 signatures, funding script).
        graph = Graph()
        validator = GossipValidator(graph, chain)
        t0 = time.perf_counter()
        for ann, _ in net.announcements:
            verdict, _ = validator.check_raw(ann, now, net.utxo_lookup)
            assert isinstance(verdict, Accept), verdict
            graph.add_channel_announcement(ann, verdict.capacity_sat, now)
        dt = time.perf_counter() - t0
        print(f"channel_announcement validated + applied: {len(net.announcements) / dt:,.0f}/s")

        # channel_updates, as received.
        t0 = time.perf_counter()
        for upd in net.updates:
            verdict, _ = validator.check_raw(upd, now, net.utxo_lookup)
            assert isinstance(verdict, Accept), verdict
        dt = time.perf_counter() - t0
        print(f"channel_update validated: {len(net.updates) / dt:,.0f}/s  ({dt * 1e6 / len(net.updates):.0f} us each)")
        t0 = time.perf_counter()
        for upd in net.updates:
            graph.apply_channel_update(upd)
        for na in net.node_announcements:
            graph.apply_node_announcement(na)
        print(f"channel_update applied to the graph: {len(net.updates) / (time.perf_counter() - t0):,.0f}/s")

        # Store it, then time loading it back.
        path = os.path.join(tmp, "gossip_store")
        write_gossip_store(path, net, now)
        size = os.path.getsize(path)
        best = best_cpu = None
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            loaded = Graph()
            with GossipStore(path) as s:
                stats = s.load(loaded)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            best = dt if best is None else min(best, dt)
            best_cpu = dc if best_cpu is None else min(best_cpu, dc)
        assert stats.channels == n_channels and stats.nodes == n_nodes
        print(f"load stored graph ({n_channels:,} channels, {n_nodes:,} nodes, {size / 1e6:.1f} MB): "
              f"{best * 1000:.0f} ms ({best_cpu * 1000:.0f} ms CPU; load average {os.getloadavg()[0]:.1f})")

        tracemalloc.start()
        measured = Graph()
        with GossipStore(path) as s:
            s.load(measured)
        graph_bytes = tracemalloc.get_traced_memory()[0]
        from ampere.ln.route_view import EdgeView
        EdgeView.of(measured)
        view_bytes = tracemalloc.get_traced_memory()[0] - graph_bytes
        tracemalloc.stop()
        del measured
        print(f"graph in memory: {graph_bytes / 2**20:.1f} MiB (raw messages included), "
              f"path finder's view: {view_bytes / 2**20:.1f} MiB")

        # getroute on the loaded graph.
        pubs = [k.pub for k in net.nodes]
        t0 = time.perf_counter()
        find_route(loaded, RouteQuery(source=pubs[0], destination=pubs[1], amount_msat=100_000))
        print(f"first getroute (builds the edge view): {(time.perf_counter() - t0) * 1000:.0f} ms")
        me = pubs[0]
        rng = random.Random(7)
        print("getroute from one payer: " + routes_per_second(loaded, lambda: (me, rng.choice(pubs[1:]))))

        # Gossip keeps coming: fresh channel_updates (new fees, a later timestamp) for random channels.
        factory = GossipFactory(chain)
        # (one every 10 routes: enough for both 5-second runs below together at up to 10,000 routes/s -- 2,500
        # were not once the first run passed 2,500/s, and the second then ran without gossip; applied from the end)
        changes = []
        for k in range(10_000):
            i = rng.randrange(len(net.edges))
            scid, a, b = net.edges[i]
            frm, to = (a, b) if k % 2 else (b, a)
            changes.append(factory.channel_update(scid, net.nodes[frm], net.nodes[to], timestamp=now + 1 + k,
                                                  fee_base_msat=rng.choice((0, 1, 1000)),
                                                  fee_proportional_millionths=rng.choice((1, 10, 100, 1000)),
                                                  cltv_expiry_delta=rng.choice((6, 18, 40, 144)),
                                                  htlc_maximum_msat=net.announcements[i][1] * 900))
        tick = iter(range(10**9))
        changes_before = list(changes)

        def with_gossip() -> tuple[bytes, bytes]:
            if next(tick) % 10 == 0 and changes:
                loaded.apply_channel_update(changes.pop())
            return me, rng.choice(pubs[1:])

        print("getroute from one payer, a channel_update applied every 10 routes: "
              + routes_per_second(loaded, with_gossip) + f" ({len(changes_before) - len(changes)} updates applied)")
        print("getroute between random pairs: " + routes_per_second(loaded, lambda: tuple(rng.sample(pubs, 2))))

        def random_with_gossip() -> tuple[bytes, bytes]:
            if next(tick) % 10 == 0 and changes:
                loaded.apply_channel_update(changes.pop())
            return tuple(rng.sample(pubs, 2))

        left = len(changes)

        print("getroute between random pairs, a channel_update applied every 10 routes: "
              + routes_per_second(loaded, random_with_gossip) + f" ({left - len(changes)} updates applied)")
        # pay's query: from us, with our own channels as the channel manager gives them (their
        # spendable amounts replace the graph's view of them), a fee limit, MPP's split on top.
        mine = [LocalChannel(s, loaded.channels[s].other(me), MsatInt(50_000_000))
                for s in sorted(loaded.nodes[me].channels)]
        print("pay's path finder (split_payment, our channels, maxfee 5%), one payer: "
              + routes_per_second(loaded, lambda: (me, rng.choice(pubs[1:])), local=mine))

        # Through ampd: the stored graph in a node's gossip_store, getroute over pyln-client
        # (fromid: one payer of the graph, the node itself having no channels in it). Then the same graph in
        # Core Lightning's gossip_store, the same calls to its getroute (the topology plugin), when it is at hand.
        with_cln = cln.available() and not os.environ.get("NOCLN")
        with network(chain=with_cln, nodes_on_chain=False) as (chain, f):
            node = f.get_node(start=False)
            os.makedirs(node.netdir, exist_ok=True)
            shutil.copy(path, os.path.join(node.netdir, "gossip_store"))
            node.start()
            node.wait_for_log("gossip_store: ")
            loaded_line = next(line for line in node.logs().splitlines() if "gossip_store: " in line)
            print("ampd: " + loaded_line.split("gossip_store: ", 1)[1] + f"; RSS {rss_mib(node.proc.pid):.1f} MiB")
            rpc_routes("ampd", LightningRpc(node.rpc_path), node.proc.pid, me, pubs, rng)
            print(f"ampd RSS after the routes: {rss_mib(node.proc.pid):.1f} MiB")
            node.stop()
            if with_cln:
                def store(network_dir: str) -> None:
                    cln.write_gossip_store(os.path.join(network_dir, "gossip_store"), net, now)

                with cln.ClnNode(chain, prepare=store) as c:
                    rpc_routes("CLN", LightningRpc(c.rpc_path), c.proc.pid, me, pubs, rng)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rpc_routes(who: str, rpc: LightningRpc, pid: int, me: bytes, pubs: list[bytes], rng: random.Random) -> None:
    """getroute through `who`'s RPC for 5 s each: from one payer of the graph (`me`), then between random pairs
    (`fromid`), 100,000 msat, riskfactor 10; calls per second of wall time and per CPU second of process `pid` and
    its children (CLN answers getroute in its topology plugin)."""
    for label, pair in (("one payer", lambda: (me, rng.choice(pubs[1:]))),
                        ("random pairs", lambda: tuple(rng.sample(pubs, 2)))):
        n, found, dt, dc = time_getroutes(rpc, pid, pair, 5.0)
        print(f"getroute through {who}'s RPC, {label}: {n / dt:,.1f}/s ({dt * 1000 / n:.2f} ms each; "
              f"{who} CPU {dc * 1000 / n:.2f} ms each = {n / dc if dc else 0:,.0f}/CPU s; {found}/{n} found; "
              f"load average {os.getloadavg()[0]:.1f})")


def routes_per_second(graph: Graph, pair, seconds: float = 5.0, local: list | None = None) -> str:
    calls = found = hops = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds or calls < 20:
        a, b = pair()
        try:
            if local is None:
                route = find_route(graph, RouteQuery(source=a, destination=b, amount_msat=100_000, riskfactor=10))
            else:
                route = split_payment(graph, RouteQuery(source=a, destination=b, amount_msat=100_000, riskfactor=10,
                                                        max_fee_msat=MsatInt(5_000), local_channels=local))[0]
            found += 1
            hops += len(route)
        except RouteError:
            pass
        calls += 1
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return (f"{calls / dt:,.1f}/s ({dt * 1000 / calls:.2f} ms each; {calls / dc:,.0f}/CPU s; {found}/{calls} found, "
            f"{hops / max(found, 1):.1f} hops on average; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
