"""BOLT 12 / onion message benchmark (issue 20).

  * `fetchinvoice` to an invoice in hand, one at a time, over one hop (l1 -> l2's offer) and two hops (l1 -> l2 ->
    l3's offer) on announced channels: the invoice_request goes out as an onion message, the invoice comes back by
    the blinded reply path, and the offerer stores the invoice (synced) before answering.  Mean, p50, p99.
  * onion messages relayed per second by one ampd: a raw BOLT 8 client sends pre-built onion messages whose path is
    ampd -> back to the client, pipelined, and counts what comes back (`dev-onion-message-rate` lifted).

Prints figures; not a test.  BENCH_SCALE=0.1: a tenth of the fetches and messages.
"""

import asyncio
import os
import time

from common import latency_stats, network, scaled

from coincurve import PrivateKey

N_FETCH = scaled(40)
N_RELAY = scaled(3000)


def fetch_figures() -> None:
    with network() as (_, f):
        l1, l2, l3 = f.line_graph(3, 10**6, announce_channels=True, wait_for_announce=True)
        for label, offerer in (("1 hop ", l2), ("2 hops", l3)):
            offer = offerer.rpc.offer(1000, f"bench {label}")["bolt12"]
            l1.rpc.fetchinvoice(offer)  # warm-up (and the path is known)
            lat = []
            for _ in range(N_FETCH):
                t0 = time.perf_counter()
                l1.rpc.fetchinvoice(offer)
                lat.append(time.perf_counter() - t0)
            s = latency_stats(lat)
            print(f"fetchinvoice -> invoice, {label}: mean {s['mean']:.1f} ms, p50 {s['p50']:.1f} ms, "
                  f"p99 {s['p99']:.1f} ms  ({N_FETCH} sequential)")


async def relay_rate(port: int, node_id: bytes) -> tuple[int, float]:
    from ampere.ln.blinding import create_blinded_path, encode_encrypted_data
    from ampere.ln.onion_message import create_onion_message
    from ampere.wire import bolt1
    from ampere.wire.codec import decode_message
    from ampere.wire.features import INIT_FEATURES
    from ampere.wire.messages import Init
    from ampere.node.net.transport import connect_and_handshake

    key = PrivateKey(os.urandom(32))
    me = key.public_key.format()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t = await connect_and_handshake(reader, writer, key.secret, node_id, 30)
    t.write_message(bolt1.make_init(INIT_FEATURES, [bolt1.chain_hash("regtest")]).to_bytes())
    while not isinstance(decode_message(await t.read_message()), Init):
        pass
    msgs = []
    for _ in range(N_RELAY):
        path = create_blinded_path(os.urandom(32), [(node_id, encode_encrypted_data(next_node_id=me)),
                                                    (me, encode_encrypted_data(path_id=b"\x01" * 32))])
        msgs.append(create_onion_message(path, {})[1].to_bytes())
    start = time.perf_counter()

    async def send() -> None:
        for m in msgs:
            t.write_message(m)
            await t.writer.drain()

    sender = asyncio.create_task(send())
    got = 0
    try:
        while got < N_RELAY:
            raw = await asyncio.wait_for(t.read_message(), 10)
            if raw[:2] == b"\x02\x01":
                got += 1
    except asyncio.TimeoutError:
        pass
    elapsed = time.perf_counter() - start
    await sender
    t.close()
    return got, elapsed


def relay_figures() -> None:
    with network(chain=False) as (_, f):
        l2 = f.get_node(listen=True, **{"dev-onion-message-rate": 1_000_000})
        got, s = asyncio.run(relay_rate(l2.port, bytes.fromhex(l2.info["id"])))
        print(f"onion messages relayed by one ampd: {got / s:,.0f}/s  ({got} of {N_RELAY} in {s:.2f} s)")


def main() -> None:
    relay_figures()
    fetch_figures()


if __name__ == "__main__":
    main()
