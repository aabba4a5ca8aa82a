"""Peer-level figures against real ampd processes.  Prints figures; not a timed test.

* handshakes/s: a raw client (ampere.node.net.transport) doing TCP connect + BOLT 8 + init exchange
  with one ampd, one at a time and 16 at a time; and ampd-to-ampd `connect`+`disconnect` over RPC;
* ping/pong round trips/s on one connection: a raw client pinging ampd back to back, and the
  `ping` RPC between two ampd nodes (RPC + both nodes in the path).

    .venv/bin/python bench/bench_peers.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from common import cpu_seconds, network, rate  # noqa: E402  (adds src/ to sys.path)

from ampere.wire import bolt1  # noqa: E402
from ampere.wire.codec import decode_message  # noqa: E402
from ampere.wire.features import INIT_FEATURES  # noqa: E402
from ampere.wire.messages import Init, Ping, Pong  # noqa: E402
from ampere.node.net.transport import connect_and_handshake  # noqa: E402

PONG_TYPE = Pong.TYPE.to_bytes(2, "big")
INIT = bolt1.make_init(INIT_FEATURES, [bolt1.chain_hash("regtest")]).to_bytes()


async def one_connection(port: int, node_id: bytes, key: bytes):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t = await connect_and_handshake(reader, writer, key, node_id, 30)
    t.write_message(INIT)
    assert isinstance(decode_message(await t.read_message()), Init)
    return t


async def handshakes(port: int, node_id: bytes, seconds: float, parallel: int) -> tuple[int, float]:
    key = os.urandom(32)
    done = 0
    start = time.perf_counter()

    async def worker():
        nonlocal done
        while time.perf_counter() - start < seconds:
            t = await one_connection(port, node_id, key)
            t.close()
            await t.wait_closed()
            done += 1

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return done, time.perf_counter() - start


async def ping_pong(port: int, node_id: bytes, seconds: float) -> tuple[int, float]:
    t = await one_connection(port, node_id, os.urandom(32))
    ping = Ping(num_pong_bytes=8, ignored=b"").to_bytes()
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        t.write_message(ping)
        while (await t.read_message())[:2] != PONG_TYPE:  # no full decode: measure ampd, not us
            pass
        n += 1
    t.close()
    return n, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    with network(chain=False) as (_, f):
        l1 = f.get_node(**{"bind-addr": "127.0.0.1:0"})
        l2 = f.get_node(**{"bind-addr": "127.0.0.1:0"})
        info = l1.rpc.getinfo()
        node_id = bytes.fromhex(info["id"])
        port = info["binding"][0]["port"]

        pid = l1.proc.pid
        # The raw client does as much crypto as ampd, on the same machine: the ampd CPU time per
        # handshake says what ampd alone could sustain.
        for parallel, label in ((1, "sequential:  "), (16, "16 at a time:")):
            c0 = cpu_seconds(pid)
            n, s = asyncio.run(handshakes(port, node_id, args.seconds, parallel))
            per = (cpu_seconds(pid) - c0) / n * 1000
            print(f"raw client -> ampd, TCP+BOLT8+init, {label} {rate(n, s):>10}  ({n} in {s:.1f}s; "
                  f"ampd {per:.2f} ms CPU each = {1000 / per:,.0f}/s per core)")

        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            l2.rpc.connect(info["id"], "127.0.0.1", port)
            l2.rpc.disconnect(info["id"])
            n += 1
        s = time.perf_counter() - start
        print(f"ampd -> ampd, connect+disconnect RPC round:       {rate(n, s):>10}  ({n} in {s:.1f}s)")

        c0 = cpu_seconds(pid)
        n, s = asyncio.run(ping_pong(port, node_id, args.seconds))
        per = (cpu_seconds(pid) - c0) / n * 1e6
        print(f"ping/pong round trips, raw client <-> ampd:       {rate(n, s):>10}  ({n} in {s:.1f}s; "
              f"ampd {per:.0f} us CPU each)")

        l2.rpc.connect(info["id"], "127.0.0.1", port)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            l2.rpc.ping(info["id"], 0, 8)
            n += 1
        s = time.perf_counter() - start
        print(f"ping RPC round trips, ampd <-> ampd:              {rate(n, s):>10}  ({n} in {s:.1f}s)")


if __name__ == "__main__":
    main()
