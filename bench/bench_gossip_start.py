"""ampd's start with a 10,000-channel gossip_store: its "loaded in" time over several starts, from
the graph cache (written by each clean stop) and from the store itself (the cache removed), one
after the other, with the load average.  Then getroute between random pairs through its RPC.

    .venv/bin/python bench/bench_gossip_start.py [--starts 5] [--store PATH] [--routes-seconds 5]

--store: a gossip_store to use (e.g. one kept from an earlier run with --keep); else a random
network of 10,000 channels and 5,000 nodes is generated and signed (~10 s).  Prints figures; not a
timed test.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from ampere.node.gossip.store_file import GossipStore  # noqa: E402
from ampere.testing.gossip_factory import GossipFactory, random_network  # noqa: E402
from ampere.wire.bolt1 import chain_hash  # noqa: E402
from common import network, rss_mib, time_getroutes, write_gossip_store  # noqa: E402
from pyln.client import LightningRpc  # noqa: E402


def make_store(path: str) -> list[bytes]:
    now = int(time.time())
    net = random_network(GossipFactory(chain_hash("regtest")), n_nodes=5_000, n_channels=10_000, now=now, seed=42)
    write_gossip_store(path, net, now)
    return [k.pub for k in net.nodes]


def node_ids(path: str) -> list[bytes]:
    from ampere.ln.gossip import Graph

    graph = Graph()
    with GossipStore(path) as s:
        s.load(graph)
    return list(graph.nodes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--store")
    ap.add_argument("--keep", help="copy the generated store here")
    ap.add_argument("--routes-seconds", type=float, default=5.0)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="amp-bench-start-")
    try:
        path = os.path.join(tmp, "gossip_store")
        if args.store:
            shutil.copy(args.store, path)
            pubs = node_ids(path)
        else:
            pubs = make_store(path)
            if args.keep:
                shutil.copy(path, args.keep)
        with network(chain=False) as (_, f):
            node = f.get_node(start=False)
            os.makedirs(node.netdir, exist_ok=True)
            shutil.copy(path, os.path.join(node.netdir, "gossip_store"))
            cache = os.path.join(node.netdir, "gossip_store.cache")
            times: dict[str, list[str]] = {"graph cache": [], "store": []}
            for i in range(2 * args.starts + 1):
                # Alternate: the cache the last stop wrote, then the store alone (cache removed).
                use_cache = i % 2 == 1
                if not use_cache and os.path.exists(cache):
                    os.remove(cache)
                node.start()
                node.wait_for_log("gossip_store: ")
                line = [ln for ln in node.logs().splitlines() if "gossip_store: " in ln][-1]
                ms = re.search(r"loaded in (\d+ms(?:, \d+ms CPU)?)", line).group(1)
                how = "graph cache" if "(graph cache)" in line else "store"
                if i > 0:  # (the first start warms the page cache)
                    time.sleep(0.5)  # (the store's index is made on its worker just after the load)
                    times[how].append(f"{ms} (load {os.getloadavg()[0]:.1f}; RSS {rss_mib(node.proc.pid):.0f} MiB)")
                if i < 2 * args.starts:
                    node.stop()
            for how, ts in times.items():
                print(f"ampd start, loaded from the {how}: " + ", ".join(ts))
            rpc = LightningRpc(node.rpc_path)
            rng = random.Random(7)
            n, found, dt, dc = time_getroutes(rpc, node.proc.pid, lambda: tuple(rng.sample(pubs, 2)),
                                              args.routes_seconds)
            print(f"getroute through ampd's RPC, random pairs: {n / dt:,.1f}/s (ampd CPU {dc * 1000 / n:.2f} ms each; "
                  f"{found}/{n} found; load average {os.getloadavg()[0]:.1f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
