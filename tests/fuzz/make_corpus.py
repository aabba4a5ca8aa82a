#!/usr/bin/env python3
"""Write the seed corpora under tests/fuzz/corpus/<target>/ (deterministic: rerunning rewrites the same files).

Seeds are valid inputs of each kind (so the fuzzer starts deep inside the decoders) and, named finding-*, the
inputs behind every issue-16 finding, so that each stays a regression test in `make test`.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import targets  # noqa: E402

from ampere.ln import invoice as bolt11  # noqa: E402
from ampere.ln.channel import core  # noqa: E402
from ampere.testing.channel_pair import REGTEST_CHAIN_HASH, Pair  # noqa: E402
from ampere.ln.gossip.queries import encode_short_ids  # noqa: E402
from ampere.testing.gossip_factory import GossipFactory  # noqa: E402
from ampere.wire import bolt1  # noqa: E402
from ampere.wire import messages as m  # noqa: E402
from ampere.wire.codec import encode_message  # noqa: E402
from ampere.wire.features import INIT_FEATURES  # noqa: E402


def write(target: str, data: bytes, name: str | None = None) -> None:
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def channel_messages() -> list[bytes]:
    """Every message of an opening, a payment and a close, as the wire carries them."""
    seen: list[bytes] = []

    class Tap(Pair):
        def deliver(self, src):
            if src.outbox:
                seen.append(encode_message(src.outbox[0]))
            return super().deliver(src)

    pair = Tap.open(funding_sat=500_000, push_msat=10_000_000)
    a = pair.a
    preimage = b"\x05" * 32
    a.apply(core.offer_htlc(a.ch, a.signer, 1_000_000, hashlib.sha256(preimage).digest(), 600, b"\x00" * 1366))
    pair.commit(a)
    pair.pump()
    a.apply(core.start_shutdown(a.ch, a.signer))
    pair.pump()
    return seen


def main() -> None:
    # wire: an init, a ping, gossip and a channel's whole life
    gf = GossipFactory(REGTEST_CHAIN_HASH)
    n1, n2 = gf.node(1), gf.node(2)
    scid = (600 << 40) | (1 << 16)
    ann, _ = gf.channel_announcement(scid, n1, n2, 1_000_000)
    upd = gf.channel_update(scid, n1, n2, timestamp=targets.NOW)
    nann = gf.node_announcement(n1, timestamp=targets.NOW, alias="fuzz")
    gossip = [ann, upd, nann]
    wire = [bolt1.make_init(INIT_FEATURES, [bolt1.chain_hash("regtest")]).to_bytes(),
            encode_message(m.Ping(num_pong_bytes=4, ignored=b"\x00" * 4)), *gossip, *channel_messages()]
    for raw in wire:
        write("wire", raw)
    for raw in gossip:
        kind = targets._GOSSIP_TYPES.index(int.from_bytes(raw[:2], "big"))
        write("gossip", bytes([kind]) + raw[2:])
    write("gossip", b"\x80" + encode_short_ids([scid, scid + 1, scid + 7]))

    # bolt11: the spec's shapes (raw text) and a signed invoice
    inv = bolt11.Invoice(currency="bcrt", timestamp=1, payment_hash=b"\x01" * 32, amount_msat=1000,
                         payment_secret=b"\x02" * 32, description="coffee",
                         route_hints=[[bolt11.RouteHop(n2.pub, scid, 1, 10, 9)]])
    text = bolt11.encode(inv, targets.NODE_KEY)
    write("bolt11", b"\x01" + text.encode())
    write("bolt11", b"\x01" + ("lightning:" + text).encode())
    # finding (item 3): a very long checksum-valid invoice (linear time, refused by length)
    write("bolt11", b"\x00" + bytes(12000), "finding-long-invoice")
    # finding (item 4): an amount of 4,320 digits
    write("bolt11", bytes([0x80]) + bytes([216]) + b"\x09" * 4320 + bytes(300), "finding-amount-4320-digits")

    # onion: a valid final-hop onion (mode 1 wraps the payload) and raw packets
    from ampere.ln.onion_payload import final_hop_payload
    write("onion", b"\x01" + final_hop_payload(1000, 600, b"\x02" * 32, 1000))
    write("onion", b"\x00" + bytes(1366))
    write("onion", b"\x02" + bytes.fromhex("400f") + bytes(12))

    # bolt8: a valid act one, a valid act three, and frames
    init, act1 = targets._valid_act1()
    write("bolt8", b"\x00" + act1)
    write("bolt8", b"\x01" + bytes(66))
    write("bolt8", b"\x02" + bytes(18 + 16))

    # rpc_framer: requests as clients send them, and the findings of item 5
    reqs = b"".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "getinfo", "params": {"x": "é€😀"}},
                               ensure_ascii=False).encode() + b"\n" for i in range(3))
    write("rpc_framer", b"\x40" + reqs)
    write("rpc_framer", b"\x03" + reqs, "finding-split-utf8")          # every multi-byte character split
    write("rpc_framer", b"\x05" + b'{"id":1,"params":' + b"[" * 1000 + b"]" * 1000 + b"}", "finding-deep-nesting")
    write("rpc_framer", b"\x07" + b'{"id":1,"params":[' + b"1" * 5000 + b"]}", "finding-huge-integer")
    write("rpc_framer", b"\x05" + b'{"params":[' + b"[1]," * 2000 + b"[1]]}", "finding-trickle")

    # rpc_params: the strings of item 7
    write("rpc_params", json.dumps({"label": "\ud800", "description": "\udfff", "key": ["a", "\ud800"]}).encode(),
          "finding-lone-surrogates")
    write("rpc_params", json.dumps({"id": "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
                                    "host": "a" * 5000}).encode(), "finding-long-host")
    write("rpc_params", json.dumps({"amount_msat": 1000, "label": "x", "description": "y"}).encode())

    # offers: an offer as TLVs, as a string, and an onion message to us carrying an invoice_request-ish payload
    from ampere.ln import offers as b12
    from ampere.ln.blinding import create_blinded_path, encode_encrypted_data
    from ampere.ln.onion_message import create_onion_message
    offer = b12.build_offer(offer_description="coffee", offer_amount=1000, offer_issuer_id=targets.NODE_PUB)
    write("offers", b"\x02" + offer.raw)
    write("offers", b"\x01" + offer.raw)
    write("offers", b"\x00" + offer.string().encode())
    path = create_blinded_path(hashlib.sha256(b"path").digest(),
                               [(targets.NODE_PUB, encode_encrypted_data(path_id=b"\x01" * 32))])
    _, om = create_onion_message(path, {}, session_key=hashlib.sha256(b"om").digest())
    write("offers", b"\x05" + encode_message(om)[2:])

    # open_channel: the template, and item 1's absurd amounts (field index, then the big-endian value)
    write("open_channel", b"", "template")
    write("open_channel", b"\x00" + (1 << 63).to_bytes(8, "big"), "finding-funding-2^63")
    write("open_channel", b"\x00" + ((1 << 64) - 1).to_bytes(8, "big"), "finding-funding-2^64-1")
    write("open_channel", b"\x00" + (21_000_000 * 10**8 + 1).to_bytes(8, "big"), "finding-funding-above-supply")
    write("open_channel", b"\xff" + encode_message(targets._template_open())[2:])


if __name__ == "__main__":
    main()
