"""Issue 16 item 2 against a real ampd: 1,000 silent TCP connections held open do not lock an honest peer out."""
from __future__ import annotations

import socket
import time


def tcp_port(node) -> int:
    (binding,) = [b for b in node.rpc.getinfo()["binding"] if b["type"] == "ipv4"]
    return binding["port"]


def test_thousand_silent_connections_do_not_lock_out_an_honest_peer(node_factory):
    l1 = node_factory.get_node(**{"bind-addr": "127.0.0.1:0"})
    l2 = node_factory.get_node(autolisten=False)
    port, id1 = tcp_port(l1), l1.rpc.getinfo()["id"]
    held = []
    try:
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.append(s)
        time.sleep(3.0)   # let ampd accept them all: they are now pending handshakes that never speak
        start = time.monotonic()
        r = l2.rpc.connect(id1, "127.0.0.1", port)
        took = time.monotonic() - start
        print(f"\nhonest peer admitted in {took:.3f}s with 1000 silent connections held")
        assert r["id"] == id1 and r["direction"] == "out"
        assert took < 10, took
        # l1 is still answering its RPC and lists the honest peer (its side registers it just after l2's returns)
        id2 = l2.rpc.getinfo()["id"]
        deadline = time.monotonic() + 20
        while not any(p["id"] == id2 for p in l1.rpc.listpeers()["peers"]):
            assert time.monotonic() < deadline, l1.rpc.listpeers()
            time.sleep(0.1)
    finally:
        for s in held:
            s.close()


def test_open_channel_with_absurd_funding_is_refused_before_any_state(node_factory_chain):
    """Issue 16 item 1 against a real ampd following a chain: open_channel for 2^63 sat gets an `error` for its
    temporary channel id, nothing is created, nothing BROKEN is logged (the fixture checks at teardown), and the
    peer stays usable."""
    import asyncio
    import os
    from dataclasses import replace

    from ampere.ln.channel import opening
    from ampere.ln.channel.signer import LocalChannelSigner
    from ampere.node.net.transport import connect_and_handshake
    from ampere.wire import bolt1
    from ampere.wire import messages as m
    from ampere.wire.codec import decode_message, encode_message
    from ampere.wire.features import INIT_FEATURES

    l1 = node_factory_chain.get_node(listen=True)
    info = l1.rpc.getinfo()
    chain = bolt1.chain_hash("regtest")
    template = opening.open_channel(LocalChannelSigner(b"\x05" * 32), temporary_channel_id=b"\x07" * 32,
                                    chain_hash=chain, funding_sat=200_000, push_msat=0, feerate_per_kw=5000,
                                    ours=opening.LocalParams(shutdown_scriptpubkey=b"\x00\x14" + b"\xaa" * 20))

    async def run():
        reader, writer = await asyncio.open_connection("127.0.0.1", l1.port)
        t = await connect_and_handshake(reader, writer, os.urandom(32), bytes.fromhex(info["id"]), 20)
        t.write_message(bolt1.make_init(INIT_FEATURES, [chain]).to_bytes())
        assert isinstance(decode_message(await asyncio.wait_for(t.read_message(), 20)), m.Init)
        answers = []
        for funding in (1 << 63, (1 << 64) - 1, 21_000_000 * 10**8 + 1):
            t.write_message(encode_message(replace(template.messages[0], funding_satoshis=funding)))
            while True:
                msg = decode_message(await asyncio.wait_for(t.read_message(), 20))
                if isinstance(msg, (m.Error, m.Warning, m.AcceptChannel)):
                    answers.append(msg)
                    break
        t.close()
        return answers

    answers = asyncio.run(run())
    for msg in answers:
        assert isinstance(msg, m.Error), msg                  # never accept_channel
        assert msg.channel_id == b"\x07" * 32 and b"funding_satoshis" in msg.data, msg
    assert l1.rpc.listpeerchannels()["channels"] == []
    assert "Traceback" not in l1.stderr()
