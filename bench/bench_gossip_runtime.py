"""Gossip through a real ampd on amp-chaind.  Prints figures; not a timed test.

A raw BOLT 8 peer sends gossip about channels with real funding outputs; we time until ampd has
processed it (its `dev-gossipstats` counters):
* channel_announcements + their channel_updates accepted/s (each announcement costs a funding
  lookup through the chain backend: getblockhash, getblock, gettxout);
* channel_updates accepted/s (signature check, graph, store, relay queue);
* a flood of updates for one channel: rejected (rate limit, after the signature check)/s.

    .venv/bin/python bench/bench_gossip_runtime.py [--channels 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import network, rate  # noqa: E402  (adds src/ to sys.path)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))

from test_gossip import Chan, Key, RawPeer, tcp_port  # noqa: E402


def wait_count(node, key: str, target: int, timeout: float = 300) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        counts = node.rpc.call("dev-gossipstats")["counts"]
        if counts.get(key, 0) >= target:
            return time.perf_counter()
        time.sleep(0.02)
    raise TimeoutError(f"{key} did not reach {target}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=300)
    ap.add_argument("--flood", type=int, default=5000)
    args = ap.parse_args()
    n = args.channels
    peer = None
    with network() as (chaind, f):
        try:
            chaind.mine(101)
            keys = [Key(f"bench{i}") for i in range(max(10, n // 3))]
            chans = [Chan(keys[i % len(keys)], keys[(i * 7 + 1) % len(keys)] if (i * 7 + 1) % len(keys) != i % len(keys)
                          else keys[(i + 1) % len(keys)], f"bench/{i}", 1_000_000) for i in range(n)]
            for c in chans:
                c.fund(chaind)
            chaind.mine(6)
            for c in chans:
                c.locate(chaind)
            node = f.get_node(**{"bind-addr": "127.0.0.1:0", "dev-fast-gossip": True, "log-level": "info"})
            while node.rpc.getinfo()["blockheight"] < chaind.rpc("getblockcount"):
                time.sleep(0.1)
            peer = RawPeer(tcp_port(node), node.rpc.getinfo()["id"])
            now = int(time.time()) - 3600

            msgs = [m for c in chans for m in c.gossip(now)]
            t0 = time.perf_counter()
            peer.send(msgs)
            t1 = wait_count(node, "accepted", len(msgs))
            print(f"announcements + updates, {n} channels: {len(msgs)} messages in {t1 - t0:.2f}s "
                  f"({rate(len(msgs), t1 - t0)}; {rate(n, t1 - t0)} channels with funding lookups)")

            ups = [c.update(k, timestamp=now + i) for i in range(1, 4) for c in chans for k in (c.a, c.b)]
            t0 = time.perf_counter()
            peer.send(ups)
            t1 = wait_count(node, "accepted", len(msgs) + len(ups))
            print(f"channel_updates accepted: {len(ups)} in {t1 - t0:.2f}s ({rate(len(ups), t1 - t0)})")

            flood = [chans[0].update(chans[0].a, timestamp=now + 10 + i) for i in range(args.flood)]
            received = node.rpc.call("dev-gossipstats")["counts"]["received"]
            t0 = time.perf_counter()
            peer.send(flood)
            t1 = wait_count(node, "received", received + len(flood))
            t_getinfo = time.perf_counter()
            node.rpc.getinfo()
            print(f"update flood (rate-limited): {len(flood)} in {t1 - t0:.2f}s ({rate(len(flood), t1 - t0)}); "
                  f"getinfo after it: {(time.perf_counter() - t_getinfo) * 1000:.1f}ms")
            st = node.rpc.call("dev-gossipstats")
            print(f"graph: {st['channels']} channels, {st['nodes']} nodes; store "
                  f"{os.path.getsize(os.path.join(node.netdir, 'gossip_store')):,} bytes")
            node.restart()
            print(f"restart: gossip_store loaded in {node.rpc.call('dev-gossipstats')['load_ms']}ms")
        finally:
            if peer is not None:
                peer.close()


if __name__ == "__main__":
    main()
