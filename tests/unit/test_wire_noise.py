"""The BOLT #8 state machine beyond the spec vectors: random keys, tampering, misuse, sizes."""

from __future__ import annotations

import os

import coincurve
import pytest

from ampere.wire.errors import HandshakeError, TransportError
from ampere.wire.noise import MAX_MESSAGE_SIZE, InitiatorHandshake, NoiseSession, ResponderHandshake


def _keys():
    priv = os.urandom(32)
    return priv, coincurve.PrivateKey(priv).public_key.format()


def _pair() -> tuple[NoiseSession, NoiseSession, bytes, bytes]:
    a_priv, a_pub = _keys()
    b_priv, b_pub = _keys()
    initiator = InitiatorHandshake(a_priv, b_pub)
    responder = ResponderHandshake(b_priv)
    act2 = responder.process_act_one(initiator.act_one())
    act3, a_session = initiator.process_act_two(act2)
    b_session = responder.process_act_three(act3)
    return a_session, b_session, a_pub, b_pub


def test_random_handshake_authenticates_both_sides():
    a, b, a_pub, b_pub = _pair()
    assert a.remote_pubkey == b_pub and b.remote_pubkey == a_pub
    assert a.sender.key == b.receiver.key and a.receiver.key == b.sender.key
    for size in (0, 1, 1000, MAX_MESSAGE_SIZE):
        msg = os.urandom(size)
        assert b.decrypt_frame(a.encrypt_message(msg)) == msg
        assert a.decrypt_frame(b.encrypt_message(msg)) == msg


def test_oversized_message_refused():
    a, _, _, _ = _pair()
    with pytest.raises(ValueError):
        a.encrypt_message(bytes(MAX_MESSAGE_SIZE + 1))


def test_wrong_responder_key_fails_act_one():
    a_priv, _ = _keys()
    b_priv, _ = _keys()
    _, other_pub = _keys()
    act1 = InitiatorHandshake(a_priv, other_pub).act_one()
    with pytest.raises(HandshakeError) as info:
        ResponderHandshake(b_priv).process_act_one(act1)
    assert info.value.reason == "ACT1_BAD_TAG"


def test_tampered_frames_are_rejected():
    a, b, _, _ = _pair()
    frame = bytearray(a.encrypt_message(b"hello"))
    frame[0] ^= 1
    with pytest.raises(TransportError) as info:
        b.decrypt_frame(bytes(frame))
    assert info.value.reason == "BAD_LENGTH_TAG"
    a, b, _, _ = _pair()
    frame = bytearray(a.encrypt_message(b"hello"))
    frame[20] ^= 1
    with pytest.raises(TransportError) as info:
        b.decrypt_frame(bytes(frame))
    assert info.value.reason == "BAD_BODY_TAG"


def test_replayed_frame_is_rejected():
    a, b, _, _ = _pair()
    frame = a.encrypt_message(b"once")
    assert b.decrypt_frame(frame) == b"once"
    with pytest.raises(TransportError):
        b.decrypt_frame(frame)  # the nonce has moved on


def test_misuse_of_the_state_machine():
    a_priv, _ = _keys()
    b_priv, b_pub = _keys()
    initiator = InitiatorHandshake(a_priv, b_pub)
    with pytest.raises(HandshakeError):
        initiator.process_act_two(bytes(50))  # before act one
    initiator.act_one()
    with pytest.raises(HandshakeError):
        initiator.act_one()
    responder = ResponderHandshake(b_priv)
    with pytest.raises(HandshakeError):
        responder.process_act_three(bytes(66))
    with pytest.raises(HandshakeError) as info:
        InitiatorHandshake(a_priv, b"\x04" + bytes(32))
    assert info.value.reason == "BAD_REMOTE_PUBKEY"
    _, b_session, _, _ = _pair()
    with pytest.raises(TransportError):
        b_session.decrypt_body(bytes(16))  # body before length
