"""BOLT 4 failure packets and failure messages (ampere.ln.onion_failure)."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampere.ln.onion import chacha20_stream, create_onion, generate_key, peel_onion
from ampere.ln.onion_failure import (
    BADONION,
    FAILURE_CODES,
    NODE,
    PERM,
    UPDATE,
    FailureMessage,
    FailureMessageError,
    FailurePacketError,
    UnreadableFailure,
    build_raw_failure_packet,
    create_failure_packet,
    decode_failure,
    decode_failure_message,
    encode_failure_message,
    failure_code,
    failure_code_name,
    is_badonion,
    is_node,
    is_perm,
    is_update,
    wrap_failure,
)


def _secrets(n: int) -> list[bytes]:
    return [hashlib.sha256(b"secret-%d" % i).digest() for i in range(n)]


def _return_path(secrets: list[bytes], erring: int, message: bytes, pad_to: int = 256) -> bytes:
    """The erring hop creates the packet; each hop before it wraps it on the way back."""
    packet = create_failure_packet(secrets[erring], message, pad_to)
    for secret in reversed(secrets[:erring]):
        packet = wrap_failure(secret, packet)
    return packet


# --- the code table ----------------------------------------------------------------------------


def test_failure_code_values():
    # Spot checks of the numbers, from BOLT 4 "Failure Messages".
    assert FAILURE_CODES["incorrect_or_unknown_payment_details"] == 0x400F
    assert FAILURE_CODES["temporary_channel_failure"] == 0x1007
    assert FAILURE_CODES["mpp_timeout"] == 0x17
    assert FAILURE_CODES["temporary_node_failure"] == 0x2002
    assert FAILURE_CODES["permanent_node_failure"] == 0x6002
    assert FAILURE_CODES["required_node_feature_missing"] == 0x6003
    assert FAILURE_CODES["invalid_realm"] == 0x4001
    assert FAILURE_CODES["unknown_next_peer"] == 0x400A
    assert FAILURE_CODES["amount_below_minimum"] == 0x100B
    assert FAILURE_CODES["fee_insufficient"] == 0x100C
    assert FAILURE_CODES["incorrect_cltv_expiry"] == 0x100D
    assert FAILURE_CODES["expiry_too_soon"] == 0x100E
    assert FAILURE_CODES["final_incorrect_cltv_expiry"] == 18
    assert FAILURE_CODES["final_incorrect_htlc_amount"] == 19
    assert FAILURE_CODES["channel_disabled"] == 0x1014
    assert FAILURE_CODES["expiry_too_far"] == 21
    assert FAILURE_CODES["invalid_onion_payload"] == 0x4016
    assert FAILURE_CODES["invalid_onion_blinding"] == 0xC018
    assert len(set(FAILURE_CODES.values())) == len(FAILURE_CODES)


def test_flags():
    code = FAILURE_CODES["invalid_onion_hmac"]
    assert is_badonion(code) and is_perm(code) and not is_node(code) and not is_update(code)
    code = FAILURE_CODES["temporary_channel_failure"]
    assert is_update(code) and not is_perm(code) and not is_badonion(code)
    code = FAILURE_CODES["permanent_node_failure"]
    assert is_node(code) and is_perm(code)
    assert (BADONION, PERM, NODE, UPDATE) == (0x8000, 0x4000, 0x2000, 0x1000)
    # Every UPDATE code carries a channel_update; every BADONION code carries sha256_of_onion.
    for name, value in FAILURE_CODES.items():
        empty = decode_failure_message(value.to_bytes(2, "big") + bytes(64))
        if is_update(value):
            assert "channel_update" in empty.fields, name
        if is_badonion(value):
            assert "sha256_of_onion" in empty.fields, name


def test_names():
    assert failure_code_name(0x400F) == "incorrect_or_unknown_payment_details"
    assert failure_code_name(0x1234) == "unknown_failure_0x1234"
    assert failure_code("mpp_timeout") == 23
    with pytest.raises(FailureMessageError):
        failure_code("no_such_failure")


# --- failure messages --------------------------------------------------------------------------


CHANNEL_UPDATE = bytes.fromhex("0102") + bytes(range(128))

MESSAGES = [
    ("temporary_node_failure", {}),
    ("mpp_timeout", {}),
    ("invalid_onion_hmac", {"sha256_of_onion": hashlib.sha256(b"onion").digest()}),
    ("temporary_channel_failure", {"channel_update": CHANNEL_UPDATE}),
    ("amount_below_minimum", {"htlc_msat": 999, "channel_update": CHANNEL_UPDATE}),
    ("fee_insufficient", {"htlc_msat": 2**64 - 1, "channel_update": CHANNEL_UPDATE}),
    ("incorrect_cltv_expiry", {"cltv_expiry": 800_144, "channel_update": CHANNEL_UPDATE}),
    ("channel_disabled", {"disabled_flags": 0, "channel_update": CHANNEL_UPDATE}),
    ("incorrect_or_unknown_payment_details", {"htlc_msat": 100, "height": 800_000}),
    ("final_incorrect_cltv_expiry", {"cltv_expiry": 123}),
    ("final_incorrect_htlc_amount", {"incoming_htlc_amt": 5000}),
    ("invalid_onion_payload", {"type": 5482373484, "offset": 17}),
]


@pytest.mark.parametrize("name, fields", MESSAGES)
def test_failure_message_round_trip(name, fields):
    data = encode_failure_message(name, **fields)
    assert data[:2] == FAILURE_CODES[name].to_bytes(2, "big")
    parsed = decode_failure_message(data)
    assert parsed == FailureMessage(FAILURE_CODES[name], fields, b"")
    assert parsed.name == name
    # Extra bytes after the fields (a TLV stream) are kept apart, not mistaken for fields.
    with_tlv = decode_failure_message(encode_failure_message(name, extra=b"\x01\x02zz", **fields))
    assert with_tlv.fields == fields and with_tlv.extra == b"\x01\x02zz"


def test_incorrect_or_unknown_payment_details_bytes():
    data = encode_failure_message("incorrect_or_unknown_payment_details", htlc_msat=100, height=800_000)
    assert data.hex() == "400f" + "0000000000000064" + "000c3500"


def test_channel_update_accessor():
    data = encode_failure_message("expiry_too_soon", channel_update=CHANNEL_UPDATE)
    assert decode_failure_message(data).channel_update == CHANNEL_UPDATE
    assert decode_failure_message(b"\x20\x02").channel_update is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x40",
        bytes.fromhex("400f0000"),  # truncated htlc_msat
        bytes.fromhex("400f0000000000000064000c35"),  # truncated height
        bytes.fromhex("1007"),  # no channel_update length
        bytes.fromhex("10070010" + "00" * 15),  # channel_update shorter than its length
        bytes.fromhex("c005" + "00" * 31),  # short sha256_of_onion
        bytes.fromhex("4016fd0001"),  # non-minimal bigsize type
    ],
)
def test_truncated_failure_messages(data):
    with pytest.raises(FailureMessageError):
        decode_failure_message(data)


def test_unknown_code_decodes_with_raw_data():
    parsed = decode_failure_message(bytes.fromhex("7777abcdef"))
    assert parsed.code == 0x7777 and parsed.fields == {} and parsed.extra == bytes.fromhex("abcdef")


@pytest.mark.parametrize(
    "name, fields",
    [
        ("incorrect_or_unknown_payment_details", {"htlc_msat": 100}),  # missing height
        ("mpp_timeout", {"height": 1}),  # no such field
        ("final_incorrect_cltv_expiry", {"cltv_expiry": 2**32}),  # u32 overflow
        ("final_incorrect_cltv_expiry", {"cltv_expiry": -1}),
        ("invalid_onion_hmac", {"sha256_of_onion": b"short"}),
        ("fee_insufficient", {"htlc_msat": 1, "channel_update": "text"}),
    ],
)
def test_bad_failure_message_fields(name, fields):
    with pytest.raises(FailureMessageError):
        encode_failure_message(name, **fields)


# --- failure packets ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n_hops=st.integers(min_value=1, max_value=20),
    data=st.data(),
    message=st.binary(min_size=2, max_size=600),
)
def test_failure_round_trip(n_hops, data, message):
    secrets = _secrets(n_hops)
    erring = data.draw(st.integers(min_value=0, max_value=n_hops - 1))
    decoded = decode_failure(secrets, _return_path(secrets, erring, message))
    assert decoded.erring_index == erring
    assert decoded.failure_message == message


def test_padding():
    secret = _secrets(1)[0]
    short = build_raw_failure_packet(secret, b"\x20\x02")
    # hmac + failure_len + failuremsg + pad_len + pad, with failure_len + pad_len = 256.
    assert len(short) == 32 + 2 + 256 + 2
    assert short[32:36] == b"\x00\x02\x20\x02" and short[36:38] == (254).to_bytes(2, "big")
    assert hmac.compare_digest(short[:32], hmac.new(generate_key(b"um", secret), short[32:], hashlib.sha256).digest())
    long_message = b"\x40\x0f" + bytes(400)
    assert len(build_raw_failure_packet(secret, long_message)) == 32 + 2 + 402 + 2  # no pad needed
    assert len(build_raw_failure_packet(secret, b"\x20\x02", pad_to=1024)) == 32 + 2 + 1024 + 2
    with pytest.raises(FailurePacketError):
        build_raw_failure_packet(secret, b"\x20\x02", pad_to=100)
    with pytest.raises(FailurePacketError):
        build_raw_failure_packet(secret, b"\x20")
    with pytest.raises(FailurePacketError):
        build_raw_failure_packet(b"short", b"\x20\x02")


def test_all_packets_of_a_route_look_alike():
    """Every hop returns the same size, and the packet is scrambled at each hop."""
    secrets = _secrets(5)
    packets = [_return_path(secrets, i, b"\x20\x02") for i in range(5)]
    assert {len(p) for p in packets} == {292}
    assert len(set(packets)) == 5


def test_wrap_is_its_own_inverse():
    secret = _secrets(1)[0]
    packet = os.urandom(292)
    assert wrap_failure(secret, wrap_failure(secret, packet)) == packet
    assert wrap_failure(secret, packet) != packet
    assert wrap_failure(secret, bytes(292)) == chacha20_stream(generate_key(b"ammag", secret), 292)


def test_tampered_failure_is_unreadable():
    secrets = _secrets(4)
    packet = bytearray(_return_path(secrets, 3, b"\x40\x0f" + bytes(12)))
    packet[40] ^= 0x01
    with pytest.raises(UnreadableFailure) as exc_info:
        decode_failure(secrets, bytes(packet))
    assert exc_info.value.erring_index is None


def test_failure_with_wrong_secrets_is_unreadable():
    packet = _return_path(_secrets(3), 2, b"\x20\x02")
    with pytest.raises(UnreadableFailure):
        decode_failure([hashlib.sha256(b"x%d" % i).digest() for i in range(3)], packet)
    with pytest.raises(UnreadableFailure):
        decode_failure(_secrets(3), packet[:20])
    with pytest.raises(FailurePacketError):
        decode_failure([b"short"], packet)


def test_failure_from_beyond_the_route_is_unreadable():
    # A packet built for hop 3 of a longer route, decoded with only the first 3 secrets.
    secrets = _secrets(5)
    with pytest.raises(UnreadableFailure):
        decode_failure(secrets[:3], _return_path(secrets, 3, b"\x20\x02"))


def test_authentic_but_badly_framed_failure_names_the_hop():
    """A hop that MACs a packet whose lengths do not add up is still identified."""
    secrets = _secrets(3)
    body = (300).to_bytes(2, "big") + b"\x20\x02" + bytes(254)  # failure_len overruns the packet
    mac = hmac.new(generate_key(b"um", secrets[1]), body, hashlib.sha256).digest()
    packet = wrap_failure(secrets[0], wrap_failure(secrets[1], mac + body))
    with pytest.raises(UnreadableFailure) as exc_info:
        decode_failure(secrets, packet)
    assert exc_info.value.erring_index == 1


def test_onion_and_failure_together():
    """The sender's shared secrets from create_onion decode what a hop built from peel_onion's."""
    from coincurve import PrivateKey

    privs = [PrivateKey(hashlib.sha256(b"n%d" % i).digest()) for i in range(4)]
    payment_hash = hashlib.sha256(b"p").digest()
    packet, sender_secrets = create_onion(
        os.urandom(32), [(p.public_key.format(), b"\x02\x01\x01") for p in privs], payment_hash
    )
    hop_secrets = []
    for priv in privs[:3]:  # hop 2 fails: hops 0..2 have peeled
        layer = peel_onion(priv.secret, packet, payment_hash)
        hop_secrets.append(layer.shared_secret)
        packet = layer.next_onion
    message = encode_failure_message("fee_insufficient", htlc_msat=1000, channel_update=CHANNEL_UPDATE)
    reason = create_failure_packet(hop_secrets[2], message)
    reason = wrap_failure(hop_secrets[1], reason)
    reason = wrap_failure(hop_secrets[0], reason)
    index, failure = decode_failure(sender_secrets, reason)
    assert index == 2
    assert decode_failure_message(failure).fields["htlc_msat"] == 1000
