"""Onion messages against a real ampd (l2), from a raw BOLT 8 peer we control ("evil") and l3.

A well-formed invoice_request relayed by l2 to l3, and l3's invoice back by our blinded reply path through l2;
then hostile messages (garbage packets, a wrong path key, a path looping l2 <-> l3, a flood) are dropped
without harm: l2 answers RPC at once, rate-limits the flood, and still relays the next good message.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from coincurve import PrivateKey
from pyln.client import RpcError

from ampere.ln.blinding import create_blinded_path, encode_encrypted_data
from ampere.ln.offers import build_invoice_request, decode_string, parse_invoice
from ampere.ln.offers.fields import BITCOIN_CHAINS
from ampere.ln.onion_message import Received, create_onion_message, peel_onion_message
from ampere.node.net.transport import connect_and_handshake
from ampere.wire import bolt1
from ampere.wire.codec import decode_message
from ampere.wire.features import INIT_FEATURES
from ampere.wire.messages import Init, OnionMessage


class RawPeer:
    def __init__(self, key: PrivateKey) -> None:
        self.key = key
        self.t = None

    async def connect(self, port: int, node_id: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self.t = await connect_and_handshake(reader, writer, self.key.secret, node_id, 30)
        self.t.write_message(bolt1.make_init(INIT_FEATURES, [bolt1.chain_hash("regtest")]).to_bytes())
        while not isinstance(decode_message(await self.t.read_message()), Init):
            pass

    def send(self, msg: OnionMessage) -> None:
        self.t.write_message(msg.to_bytes())

    async def next_onion_message(self, timeout: float) -> OnionMessage:
        async def read() -> OnionMessage:
            while True:
                msg = decode_message(await self.t.read_message())
                if isinstance(msg, OnionMessage):
                    return msg
        return await asyncio.wait_for(read(), timeout)


def _request(offer_text: str, l2: bytes, l3: bytes, evil: bytes, path_id: bytes) -> OnionMessage:
    offer = decode_string(offer_text)
    invreq = build_invoice_request(offer, PrivateKey(os.urandom(32)), os.urandom(16), chain=BITCOIN_CHAINS["regtest"])
    to_l3 = create_blinded_path(os.urandom(32), [(l2, encode_encrypted_data(next_node_id=l3)),
                                                 (l3, encode_encrypted_data())])
    reply = create_blinded_path(os.urandom(32), [(l2, encode_encrypted_data(next_node_id=evil)),
                                                 (evil, encode_encrypted_data(path_id=path_id))])
    first, msg = create_onion_message(to_l3, {"invoice_request": invreq.raw, "reply_path": reply})
    assert first == l2
    return msg


def test_relay_and_hostile_messages(node_factory):
    l2 = node_factory.get_node(listen=True)
    l3 = node_factory.get_node()
    l3.rpc.connect(l2.info["id"], "127.0.0.1", l2.port)
    id2, id3 = bytes.fromhex(l2.info["id"]), bytes.fromhex(l3.info["id"])
    offer = l3.rpc.offer(1000, "relay me")["bolt12"]
    evil_key = PrivateKey(os.urandom(32))
    evil = evil_key.public_key.format()

    async def scenario() -> None:
        peer = RawPeer(evil_key)
        await peer.connect(l2.port, id2)

        async def good_round_trip() -> None:
            path_id = os.urandom(32)
            peer.send(_request(offer, id2, id3, evil, path_id))
            reply = peel_onion_message(evil_key, await peer.next_onion_message(30))
            assert isinstance(reply, Received) and reply.path_id == path_id
            invoice = parse_invoice(bytes(reply.payload.invoice))
            assert invoice.tlv.invoice_node_id == id3 and invoice.tlv.invoice_amount == 1000

        await good_round_trip()

        # Garbage: a well-formed onion_message whose packet is random bytes.
        for _ in range(3):
            peer.send(OnionMessage(path_key=PrivateKey(os.urandom(32)).public_key.format(),
                                   onion_message_packet=b"\x00" + os.urandom(1365)))
        # Wrong blinding: a good packet with another path key.
        good = _request(offer, id2, id3, evil, os.urandom(32))
        peer.send(OnionMessage(path_key=PrivateKey(os.urandom(32)).public_key.format(),
                               onion_message_packet=good.onion_message_packet))
        # A loop: l2 -> l3 -> l2 -> ... 16 hops, ending at l2 with no payload.
        hops = []
        for i in range(16):
            me, other = (id2, id3) if i % 2 == 0 else (id3, id2)
            hops.append((me, encode_encrypted_data(next_node_id=other)))
        hops.append((id2, encode_encrypted_data()))
        _, loop = create_onion_message(create_blinded_path(os.urandom(32), hops), {})
        peer.send(loop)
        # A path through l2 thirty times in a row (a 32834-byte packet): peeled at most 20 times, then dropped.
        selfloop = [(id2, encode_encrypted_data(next_node_id=id2)) for _ in range(29)] + [(id2, encode_encrypted_data())]
        _, selfloop_msg = create_onion_message(create_blinded_path(os.urandom(32), selfloop), {})
        assert len(selfloop_msg.onion_message_packet) == 32834
        peer.send(selfloop_msg)
        await asyncio.sleep(1.0)

        # A flood: 400 garbage messages as fast as we can write them.
        junk = OnionMessage(path_key=evil, onion_message_packet=b"\x00" + os.urandom(1365))
        for _ in range(400):
            peer.send(junk)
        await peer.t.writer.drain()
        start = time.monotonic()
        await asyncio.to_thread(l2.rpc.getinfo)
        assert time.monotonic() - start < 5
        await asyncio.sleep(2.0)  # the bucket refills
        await good_round_trip()
        peer.t.close()

    asyncio.run(scenario())
    logs = l2.logs()
    assert logs.count("dropped onion message from") >= 4  # the garbage and the wrong path key
    assert "rate-limiting onion messages from " + evil.hex() in logs
    # The loop went around and ended at l2, once.
    assert logs.count("onion message for us (no payload) with nobody to take it: ignored") == 1
    assert "more than 20 hops through us" in logs
    assert l2.rpc.getinfo()["id"] == l2.info["id"]


PLUGINS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins")


def test_onion_message_hooks(node_factory):
    """CLN's hooks: `onion_message_recv` for a message to us (with its reply path and unknown fields), and
    `onion_message_recv_secret` for the reply fetchinvoice waited for on its own reply path."""
    from ampere.testing.schema import validate_hook

    l2 = node_factory.get_node(listen=True, plugin=os.path.join(PLUGINS, "onion_recv.py"))
    l3 = node_factory.get_node()
    l3.rpc.connect(l2.info["id"], "127.0.0.1", l2.port)
    id2 = bytes.fromhex(l2.info["id"])
    sender = PrivateKey(os.urandom(32))
    me = sender.public_key.format()

    async def send_hello() -> None:
        peer = RawPeer(sender)
        await peer.connect(l2.port, id2)
        reply = create_blinded_path(os.urandom(32), [(id2, encode_encrypted_data(next_node_id=me)),
                                                     (me, encode_encrypted_data(path_id=b"\x05" * 32))])
        path = create_blinded_path(os.urandom(32), [(id2, encode_encrypted_data())])
        _, msg = create_onion_message(path, {"reply_path": reply, "unknown": ((1, b"hello"), (65, b"odd"))})
        peer.send(msg)
        await asyncio.sleep(1.0)
        peer.t.close()

    asyncio.run(send_hello())
    offer = l3.rpc.offer(3000, "hooks")
    l2.rpc.fetchinvoice(offer["bolt12"])
    seen = l2.rpc.call("onionmsgs")["seen"]
    assert [s["hook"] for s in seen] == ["onion_message_recv", "onion_message_recv_secret"]
    for s in seen:
        validate_hook(s["hook"], {"onion_message": s["onion_message"]})
    recv = seen[0]["onion_message"]
    assert recv["unknown_fields"] == [{"number": 1, "value": b"hello".hex()}, {"number": 65, "value": b"odd".hex()}]
    assert recv["reply_blindedpath"]["first_node_id"] == l2.info["id"]
    assert len(recv["reply_blindedpath"]["hops"]) == 2
    secret = seen[1]["onion_message"]
    assert len(secret["pathsecret"]) == 64 and "invoice" in secret


def test_invoice_request_refusals_over_onion_messages(node_factory):
    """The offerer's own checks, for a payer that does not check first: an amount below the offer's, a quantity
    the offer does not allow, an unknown offer.  Each is answered with an invoice_error on the reply path."""
    from ampere.ln.offers import build_offer
    from ampere.wire import decode_tlv_stream

    l2 = node_factory.get_node(listen=True)
    id2 = bytes.fromhex(l2.info["id"])
    offer = decode_string(l2.rpc.offer(1000, "fixed price", quantity_max=2)["bolt12"])
    unknown = build_offer(offer_amount=1000, offer_description="not l2's", offer_issuer_id=id2,
                          offer_chains=(BITCOIN_CHAINS["regtest"],))
    key = PrivateKey(os.urandom(32))
    me = key.public_key.format()
    cases = [
        (offer, {"amount_msat": 999, "quantity": 1}, "below the expected"),
        (offer, {"amount_msat": 1999, "quantity": 2}, "below the expected"),
        (offer, {"quantity": 3}, "quantity 3 not between 1 and 2"),
        (offer, {}, "quantity is missing"),
        (unknown, {}, "Unknown offer"),
        (offer, {"quantity": 2, "amount_msat": 2500}, None),  # paying more is allowed: an invoice for 2500
    ]

    async def scenario() -> list:
        peer = RawPeer(key)
        await peer.connect(l2.port, id2)
        answers = []
        for off, kwargs, _ in cases:
            invreq = build_invoice_request(off, PrivateKey(os.urandom(32)), os.urandom(16),
                                           chain=BITCOIN_CHAINS["regtest"], **kwargs)
            path_id = os.urandom(32)
            reply = create_blinded_path(os.urandom(32), [(id2, encode_encrypted_data(next_node_id=me)),
                                                         (me, encode_encrypted_data(path_id=path_id))])
            to_l2 = create_blinded_path(os.urandom(32), [(id2, encode_encrypted_data())])
            peer.send(create_onion_message(to_l2, {"invoice_request": invreq.raw, "reply_path": reply})[1])
            got = peel_onion_message(key, await peer.next_onion_message(30))
            assert got.path_id == path_id
            answers.append(got.payload)
        peer.t.close()
        return answers

    for (_, _, error), payload in zip(cases, asyncio.run(scenario())):
        if error is None:
            assert parse_invoice(bytes(payload.invoice)).tlv.invoice_amount == 2500
        else:
            assert payload.invoice is None
            assert error in decode_tlv_stream("invoice_error", bytes(payload.invoice_error)).error
    assert l2.rpc.listinvoices()["invoices"][0]["amount_msat"] == 2500


def test_fetchinvoice_without_a_way_there(node_factory):
    """No peer, no graph, no address for the offer's node: fetchinvoice says so (CLN's OFFER_ROUTE_NOT_FOUND)."""
    l1, l3 = node_factory.get_nodes(2)
    offer = l3.rpc.offer(1000, "unreachable")["bolt12"]
    with pytest.raises(RpcError) as e:
        l1.rpc.fetchinvoice(offer, timeout=5)
    assert e.value.error["code"] == 1003 and "could not route or connect" in e.value.error["message"]
