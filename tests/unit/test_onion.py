"""Sphinx onion construction and peeling (ampere.ln.onion): round trips and every rejection path."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ampere.ln.onion import (
    HOP_PAYLOADS_LEN,
    ONION_PACKET_LEN,
    InvalidOnionBlinding,
    InvalidOnionHmac,
    InvalidOnionKey,
    InvalidOnionPayload,
    InvalidOnionVersion,
    OnionConstructionError,
    blind_private_key_for_path,
    chacha20_stream,
    create_onion,
    generate_key,
    hop_shift_size,
    peel_onion,
    strip_length_prefix,
    xor_bytes,
)
from ampere.ln.onion_failure import FAILURE_CODES

PAYMENT_HASH = hashlib.sha256(b"preimage").digest()


def _keys(n: int, seed: int = 1) -> list[PrivateKey]:
    return [PrivateKey(hashlib.sha256(b"node-%d-%d" % (seed, i)).digest()) for i in range(n)]


def _route(privs: list[PrivateKey], payloads: list[bytes]) -> list[tuple[bytes, bytes]]:
    return [(p.public_key.format(), payload) for p, payload in zip(privs, payloads)]


def _peel_all(privs, packet, assoc_data, **kwargs):
    peeled = []
    for priv in privs:
        layer = peel_onion(priv.secret, packet, assoc_data, **kwargs)
        peeled.append(layer)
        packet = layer.next_onion
    return peeled


# --- round trips -------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    payloads=st.lists(st.binary(min_size=2, max_size=200), min_size=5, max_size=5),
    assoc_data=st.binary(min_size=0, max_size=40),
)
def test_five_hop_round_trip(seed, payloads, assoc_data):
    privs = [PrivateKey(hashlib.sha256(seed + bytes([i])).digest()) for i in range(5)]
    session_key = hashlib.sha256(b"session" + seed).digest()
    packet, secrets = create_onion(session_key, _route(privs, payloads), assoc_data)
    assert len(packet) == ONION_PACKET_LEN
    peeled = _peel_all(privs, packet, assoc_data)
    assert [p.payload for p in peeled] == payloads
    assert [p.shared_secret for p in peeled] == secrets
    assert [p.is_final for p in peeled] == [False, False, False, False, True]
    # Every forwarded packet is a fresh-looking full-size onion with a different ephemeral key.
    ephemeral_keys = {packet[1:34]} | {p.next_onion[1:34] for p in peeled[:-1]}
    assert len(ephemeral_keys) == 5


def test_single_hop_and_full_packet():
    (priv,) = _keys(1)
    # One payload filling the packet exactly: 3-byte BigSize + payload + 32-byte HMAC = 1300.
    payload = os.urandom(HOP_PAYLOADS_LEN - 3 - 32)
    assert hop_shift_size(len(payload)) == HOP_PAYLOADS_LEN
    packet, _ = create_onion(os.urandom(32), _route([priv], [payload]), PAYMENT_HASH)
    layer = peel_onion(priv.secret, packet, PAYMENT_HASH)
    assert layer.payload == payload and layer.is_final


@pytest.mark.parametrize("packet_len", [400, 32768])
def test_custom_packet_length(packet_len):
    privs = _keys(3, seed=packet_len)
    payloads = [b"\x04\x02ab", b"\x04\x02cd", os.urandom(100)]
    packet, _ = create_onion(os.urandom(32), _route(privs, payloads), b"", packet_len=packet_len)
    assert len(packet) == 66 + packet_len
    # Onion messages: the reader takes the length from the packet.
    assert [p.payload for p in _peel_all(privs, packet, b"", packet_len=None)] == payloads
    # An HTLC reader expecting 1300 bytes refuses it.
    with pytest.raises(InvalidOnionHmac):
        peel_onion(privs[0].secret, packet, b"")


def test_payloads_too_large_for_packet():
    privs = _keys(4)
    payloads = [os.urandom(300)] * 4  # 4 * (3 + 300 + 32) = 1340 > 1300
    with pytest.raises(OnionConstructionError, match="more than"):
        create_onion(os.urandom(32), _route(privs, payloads), PAYMENT_HASH)


@pytest.mark.parametrize(
    "hops, message",
    [
        ([], "at least one hop"),
        ([(b"\x02" + b"\x00" * 32, b"ab")], "not a compressed"),
        ([(_keys(1)[0].public_key.format(compressed=False), b"ab")], "not a compressed"),
        ([(_keys(1)[0].public_key.format(), b"a")], "shorter than 2"),
        ([(_keys(1)[0].public_key.format(), "text")], "must be bytes"),
    ],
)
def test_bad_routes_are_refused(hops, message):
    with pytest.raises(OnionConstructionError, match=message):
        create_onion(os.urandom(32), hops, PAYMENT_HASH)


@pytest.mark.parametrize("session_key", [b"\x00" * 32, b"\xff" * 32, b"short"])
def test_bad_session_key_is_refused(session_key):
    with pytest.raises(OnionConstructionError):
        create_onion(session_key, _route(_keys(1), [b"ab"]), PAYMENT_HASH)


# --- rejections --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onion3():
    privs = _keys(3, seed=7)
    packet, secrets = create_onion(os.urandom(32), _route(privs, [b"\x02\x01\x01"] * 3), PAYMENT_HASH)
    return privs, packet


def _assert_badonion(exc_info, packet: bytes, name: str):
    err = exc_info.value
    assert err.failure_code == FAILURE_CODES[name]
    assert err.sha256_of_onion == hashlib.sha256(packet).digest()
    # BOLT 4: failure data for the BADONION codes is [sha256:sha256_of_onion].
    assert err.failure_message() == FAILURE_CODES[name].to_bytes(2, "big") + hashlib.sha256(packet).digest()


def test_wrong_key_fails_hmac(onion3):
    privs, packet = onion3
    with pytest.raises(InvalidOnionHmac) as exc_info:
        peel_onion(privs[1].secret, packet, PAYMENT_HASH)  # hop 1's key on hop 0's layer
    _assert_badonion(exc_info, packet, "invalid_onion_hmac")


def test_wrong_associated_data_fails_hmac(onion3):
    privs, packet = onion3
    with pytest.raises(InvalidOnionHmac):
        peel_onion(privs[0].secret, packet, hashlib.sha256(b"other payment").digest())


@pytest.mark.parametrize("position", [34, 500, 1333, 1334, 1365])  # hop_payloads start/middle/end, HMAC
def test_tampered_packet_fails_hmac(onion3, position):
    privs, packet = onion3
    tampered = bytearray(packet)
    tampered[position] ^= 0x01
    with pytest.raises(InvalidOnionHmac) as exc_info:
        peel_onion(privs[0].secret, bytes(tampered), PAYMENT_HASH)
    _assert_badonion(exc_info, bytes(tampered), "invalid_onion_hmac")


def test_tampering_is_caught_at_the_next_hop_too(onion3):
    privs, packet = onion3
    forwarded = bytearray(peel_onion(privs[0].secret, packet, PAYMENT_HASH).next_onion)
    forwarded[100] ^= 0x80
    with pytest.raises(InvalidOnionHmac):
        peel_onion(privs[1].secret, bytes(forwarded), PAYMENT_HASH)


def test_unknown_version(onion3):
    privs, packet = onion3
    bad = b"\x01" + packet[1:]
    with pytest.raises(InvalidOnionVersion) as exc_info:
        peel_onion(privs[0].secret, bad, PAYMENT_HASH)
    _assert_badonion(exc_info, bad, "invalid_onion_version")


@pytest.mark.parametrize(
    "ephemeral_key",
    [
        b"\x04" + bytes(32),  # uncompressed prefix in a 33-byte field
        b"\x05" + bytes(range(32)),  # no such prefix
        bytes(33),  # point at infinity encoding
        b"\x02" + b"\xff" * 32,  # x >= field prime: not on the curve
    ],
)
def test_invalid_ephemeral_key(onion3, ephemeral_key):
    privs, packet = onion3
    bad = packet[:1] + ephemeral_key + packet[34:]
    with pytest.raises(InvalidOnionKey) as exc_info:
        peel_onion(privs[0].secret, bad, PAYMENT_HASH)
    _assert_badonion(exc_info, bad, "invalid_onion_key")


@pytest.mark.parametrize("prefix", [0x04, 0x06, 0x07, 0x00])
def test_replayed_ephemeral_key_of_wrong_form(onion3, prefix):
    """The onion's own ephemeral key replayed with an uncompressed/hybrid (or bogus) prefix byte:
    same x coordinate, wrong serialization -> invalid_onion_key, before any ECDH."""
    privs, packet = onion3
    bad = packet[:1] + bytes([prefix]) + packet[2:]
    with pytest.raises(InvalidOnionKey) as exc_info:
        peel_onion(privs[0].secret, bad, PAYMENT_HASH)
    _assert_badonion(exc_info, bad, "invalid_onion_key")


def test_ephemeral_key_of_other_parity_fails_hmac(onion3):
    """02 <-> 03 is the negated point: a valid key, but not the sender's, so the HMAC fails."""
    privs, packet = onion3
    bad = packet[:1] + bytes([packet[1] ^ 0x01]) + packet[2:]
    with pytest.raises(InvalidOnionHmac):
        peel_onion(privs[0].secret, bad, PAYMENT_HASH)


@pytest.mark.parametrize("length", [0, 65, 1365, 1367])
def test_wrong_packet_length(onion3, length):
    privs, packet = onion3
    bad = (packet * 2)[:length]
    with pytest.raises(InvalidOnionHmac):
        peel_onion(privs[0].secret, bad, PAYMENT_HASH)


def test_badonion_codes_agree_with_failure_table():
    assert InvalidOnionVersion.failure_code == FAILURE_CODES["invalid_onion_version"] == 0xC004
    assert InvalidOnionHmac.failure_code == FAILURE_CODES["invalid_onion_hmac"] == 0xC005
    assert InvalidOnionKey.failure_code == FAILURE_CODES["invalid_onion_key"] == 0xC006
    assert InvalidOnionBlinding.failure_code == FAILURE_CODES["invalid_onion_blinding"] == 0xC018
    assert InvalidOnionPayload.failure_code == FAILURE_CODES["invalid_onion_payload"] == 0x4016


# --- authenticated but malformed hop data ------------------------------------------------------


def _single_hop_onion(priv: PrivateKey, plaintext: bytes, assoc_data: bytes) -> bytes:
    """A one-hop onion whose decrypted hop_payloads start with `plaintext`, with a valid HMAC: what
    a buggy or malicious *sender* could produce (create_onion refuses to)."""
    ephemeral = PrivateKey(os.urandom(32))
    secret = ephemeral.ecdh(priv.public_key.format())
    body = (plaintext + bytes(HOP_PAYLOADS_LEN))[:HOP_PAYLOADS_LEN]
    hop_payloads = xor_bytes(body, chacha20_stream(generate_key(b"rho", secret), HOP_PAYLOADS_LEN))
    mac = hmac.new(generate_key(b"mu", secret), hop_payloads + assoc_data, hashlib.sha256).digest()
    return b"\x00" + ephemeral.public_key.format() + hop_payloads + mac


@pytest.mark.parametrize(
    "plaintext",
    [
        b"\x00",  # length 0: the retired legacy format
        b"\x01\xaa",  # length 1: reserved
        b"\xfd\x00\x10",  # non-minimal BigSize
        b"\xfd\x05\x00",  # 1280 + 3 + 32 > 1300: payload overruns the packet
    ],
)
def test_malformed_hop_data_is_invalid_onion_payload(plaintext):
    (priv,) = _keys(1, seed=99)
    packet = _single_hop_onion(priv, plaintext, PAYMENT_HASH)
    with pytest.raises(InvalidOnionPayload) as exc_info:
        peel_onion(priv.secret, packet, PAYMENT_HASH)
    assert exc_info.value.failure_message()[:2] == b"\x40\x16"


def test_handmade_onion_helper_is_sound():
    """The helper above builds onions peel_onion accepts when the plaintext is well formed."""
    (priv,) = _keys(1, seed=98)
    packet = _single_hop_onion(priv, b"\x02\x02\x01", PAYMENT_HASH)
    layer = peel_onion(priv.secret, packet, PAYMENT_HASH)
    assert layer.payload == b"\x02\x01" and layer.is_final  # next HMAC: the zero padding


# --- route blinding ----------------------------------------------------------------------------


def test_peel_with_path_key():
    """A sender encrypting for a blinded node id B = HMAC("blinded_node_id", ss) * N; the node peels
    with its real key plus the path key E."""
    node, path_priv = _keys(2, seed=5)
    path_key = path_priv.public_key.format()
    blinded_priv = blind_private_key_for_path(node.secret, path_key)
    # The sender only knows B (from the recipient) and E; check B from the public side too.
    ss = path_priv.ecdh(node.public_key.format())
    tweak = hmac.new(b"blinded_node_id", ss, hashlib.sha256).digest()
    blinded_id = node.public_key.multiply(tweak).format()
    assert blinded_priv.public_key.format() == blinded_id

    packet, _ = create_onion(os.urandom(32), [(blinded_id, b"\x0a\x01\x00")], PAYMENT_HASH)
    layer = peel_onion(node.secret, packet, PAYMENT_HASH, path_key=path_key)
    assert layer.payload == b"\x0a\x01\x00"
    with pytest.raises(InvalidOnionHmac):
        peel_onion(node.secret, packet, PAYMENT_HASH)  # without the path key
    with pytest.raises(InvalidOnionBlinding):
        peel_onion(node.secret, packet, PAYMENT_HASH, path_key=b"\x02" + b"\xff" * 32)


def test_strip_length_prefix():
    # CLN's createonion example payload: 0x11 = 17 bytes follow.
    prefixed = bytes.fromhex("11020203e804019706080000760000010000")
    assert strip_length_prefix(prefixed) == prefixed[1:]
    long_payload = bytes(300)
    assert strip_length_prefix(b"\xfd\x01\x2c" + long_payload) == long_payload
    for bad in (b"", b"\x05abc", b"\x02abc", b"\xfd\x00\x05abcde"):
        with pytest.raises(OnionConstructionError):
            strip_length_prefix(bad)
