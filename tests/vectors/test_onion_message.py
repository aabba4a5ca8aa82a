"""BOLT 4 onion message vector: blinded-onion-message-onion-test.json.

Checks every per-hop value of the generation (encrypted_data_tlv, shared secret, blinding tweak,
blinded node id, path key E, encrypted_recipient_data), the sender joining Dave's path through Alice
(`prepend_hops`), the whole onion message, and each hop's peeling (forwarded message bytes, next
node id, the final payload).  Then the reader rules for messages to ignore.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from coincurve import PrivateKey

from ampere.ln.blinding import blinded_node_id, create_blinded_path, encrypt_recipient_data
from ampere.ln.onion_message import (
    Forward,
    OnionMessageError,
    Received,
    create_onion_message,
    peel_onion_message,
    prepend_hops,
)
from ampere.wire import decode_message, encode_message, encode_tlv_stream
from ampere.wire.messages import BlindedPath, BlindedPathHop, OnionMessage
from ampere.wire.types import SciddirOrPubkey

VECTOR = json.loads((Path(__file__).parent / "bolt04" / "blinded-onion-message-onion-test.json").read_text())
NODE_IDS = {
    hop["alias"]: PrivateKey(bytes.fromhex(hop["privkey"])).public_key.format() for hop in VECTOR["decrypt"]["hops"]
}


def _tlv_bytes(tlvs: dict) -> bytes:
    fields: dict = {}
    unknown = []
    for key, value in tlvs.items():
        if key.startswith("unknown_tag_"):
            unknown.append((int(key[len("unknown_tag_"):]), bytes.fromhex(value)))
        elif key == "path_key_override_secret":
            assert PrivateKey(bytes.fromhex(value)).public_key.format().hex() == tlvs["next_path_key_override"]
        else:
            fields[key] = bytes.fromhex(value)
    fields["unknown"] = tuple(unknown)
    return encode_tlv_stream("encrypted_data_tlv", fields)


def _vector_route() -> BlindedPath:
    route = VECTOR["route"]
    return BlindedPath(
        first_node_id=SciddirOrPubkey(pubkey=bytes.fromhex(route["first_node_id"])),
        first_path_key=bytes.fromhex(route["first_path_key"]),
        path=tuple(BlindedPathHop(blinded_node_id=bytes.fromhex(h["blinded_node_id"]),
                                  encrypted_recipient_data=bytes.fromhex(h["encrypted_recipient_data"]))
                   for h in route["hops"]),
    )


def test_generate_per_hop_values():
    for hop in VECTOR["generate"]["hops"]:
        node_id = NODE_IDS[hop["alias"]]
        assert _tlv_bytes(hop["tlvs"]).hex() == hop["encrypted_data_tlv"], hop["alias"]
        secret = PrivateKey(bytes.fromhex(hop["path_key_secret"]))
        assert secret.public_key.format().hex() == hop["E"]
        ss = secret.ecdh(node_id)
        assert ss.hex() == hop["ss"]
        assert hmac.new(b"blinded_node_id", ss, hashlib.sha256).hexdigest() == hop["HMAC256('blinded_node_id', ss)"]
        assert hashlib.sha256(bytes.fromhex(hop["E"]) + ss).hexdigest() == hop["H(E || ss)"]
        assert blinded_node_id(node_id, ss).hex() == hop["blinded_node_id"]
        assert encrypt_recipient_data(ss, bytes.fromhex(hop["encrypted_data_tlv"])).hex() == hop["encrypted_recipient_data"]


def test_sender_joins_daves_path_through_alice():
    hops = VECTOR["generate"]["hops"]
    # Dave built Bob -> Carol -> Dave from path key secret 0x01..; the sender reaches Bob via Alice.
    dave_path = create_blinded_path(
        bytes.fromhex(hops[1]["path_key_secret"]),
        [(NODE_IDS[h["alias"]], bytes.fromhex(h["encrypted_data_tlv"])) for h in hops[1:]],
    )
    joined = prepend_hops(bytes.fromhex(hops[0]["path_key_secret"]), [NODE_IDS["Alice"]], dave_path)
    assert joined == _vector_route()


def test_create_onion_message():
    final = {"unknown": ((1, bytes.fromhex(VECTOR["onionmessage"]["unknown_tag_1"])),)}
    first, message = create_onion_message(
        _vector_route(), final, session_key=bytes.fromhex(VECTOR["generate"]["session_key"])
    )
    assert first.hex() == VECTOR["route"]["first_node_id"]
    assert message.onion_message_packet.hex() == VECTOR["onionmessage"]["onion_message_packet"]
    assert encode_message(message).hex() == VECTOR["decrypt"]["hops"][0]["onion_message"]


def test_peel_each_hop():
    hops = VECTOR["decrypt"]["hops"]
    for index, hop in enumerate(hops):
        message = decode_message(bytes.fromhex(hop["onion_message"]))
        assert isinstance(message, OnionMessage)
        out = peel_onion_message(bytes.fromhex(hop["privkey"]), message)
        if "next_node_id" in hop:
            assert isinstance(out, Forward), hop["alias"]
            assert out.next_node_id.hex() == hop["next_node_id"]
            assert encode_message(out.message).hex() == hops[index + 1]["onion_message"]
        else:
            assert isinstance(out, Received)
            assert out.payload.encrypted_recipient_data.hex() == hop["tlvs"]["encrypted_recipient_data"]
            assert out.payload.unknown == ((1, bytes.fromhex(hop["tlvs"]["unknown_tag_1"])),)
            assert out.path_id.hex() == VECTOR["generate"]["hops"][-1]["tlvs"]["path_id"]


# --- messages the reader must ignore ----------------------------------------------------------


def _keys(n: int) -> list[PrivateKey]:
    return [PrivateKey(bytes([i + 1] * 32)) for i in range(n)]


def _path(keys: list[PrivateKey], final_data: dict | None = None, mid_data: dict | None = None) -> BlindedPath:
    hops = []
    for index, key in enumerate(keys):
        if index == len(keys) - 1:
            fields = final_data if final_data is not None else {"path_id": b"\x07" * 32}
        else:
            fields = mid_data if mid_data is not None else {"next_node_id": keys[index + 1].public_key.format()}
        hops.append((key.public_key.format(), encode_tlv_stream("encrypted_data_tlv", fields)))
    return create_blinded_path(bytes([0x55] * 32), hops)


def test_round_trip_and_large_packet():
    keys = _keys(3)
    _, message = create_onion_message(_path(keys), {"invoice_request": b"x" * 2000})
    assert len(message.onion_message_packet) == 32834  # too big for 1366: the large size
    for key in keys[:-1]:
        out = peel_onion_message(key, message)
        assert isinstance(out, Forward)
        message = out.message
    out = peel_onion_message(keys[-1], message)
    assert isinstance(out, Received) and out.payload.invoice_request == b"x" * 2000
    assert out.path_id == b"\x07" * 32


def test_ignored_messages():
    keys = _keys(2)
    _, message = create_onion_message(_path(keys), {})
    # Wrong key (not for us), wrong path key, tampered packet: ignored.
    with pytest.raises(OnionMessageError):
        peel_onion_message(keys[1], message)
    with pytest.raises(OnionMessageError):
        peel_onion_message(keys[0], OnionMessage(path_key=keys[1].public_key.format(),
                                                 onion_message_packet=message.onion_message_packet))
    bad = bytearray(message.onion_message_packet)
    bad[100] ^= 1
    with pytest.raises(OnionMessageError):
        peel_onion_message(keys[0], OnionMessage(path_key=message.path_key, onion_message_packet=bytes(bad)))
    # A path_id at a non-final hop; a non-final hop naming no next hop.
    for mid in ({"next_node_id": keys[1].public_key.format(), "path_id": b"1"}, {"padding": b"\0"}):
        _, msg = create_onion_message(_path(keys, mid_data=mid), {})
        with pytest.raises(OnionMessageError):
            peel_onion_message(keys[0], msg)
    # Two payload fields at the final hop.
    _, msg = create_onion_message(_path(keys[:1]), {"invoice_request": b"a", "invoice": b"b"})
    with pytest.raises(OnionMessageError, match="more than one"):
        peel_onion_message(keys[0], msg)
    # Non-final hop given a reply_path / extra field by a sender that does not follow the rules.
    path = _path(keys)
    from ampere.ln.onion import create_onion

    hops = [(h.blinded_node_id, encode_tlv_stream("onionmsg_tlv", {"encrypted_recipient_data": h.encrypted_recipient_data,
                                                                    "invoice": b"z"}))
            for h in path.path]
    packet, _ = create_onion(bytes([9] * 32), hops, b"")
    with pytest.raises(OnionMessageError, match="other than"):
        peel_onion_message(keys[0], OnionMessage(path_key=path.first_path_key, onion_message_packet=packet))
