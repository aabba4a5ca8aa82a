"""BOLT #8 Appendix A against the pure state machine: initiator, responder (with every failure case)
and message encryption with key rotation.  Data in tests/vectors/bolt08/transport.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ampere.wire.errors import Action, HandshakeError
from ampere.wire.noise import InitiatorHandshake, NoiseSession, ResponderHandshake

VECTORS = json.loads((Path(__file__).parent / "bolt08" / "transport.json").read_text())["tests"]
INITIATOR = [t for t in VECTORS if t["name"].startswith("transport-initiator")]
RESPONDER = [t for t in VECTORS if t["name"].startswith("transport-responder")]
(MESSAGE,) = [t for t in VECTORS if t["name"] == "transport-message test"]


def test_vector_counts():
    # Guard against the extraction silently dropping cases.
    assert (len(INITIATOR), len(RESPONDER)) == (5, 10)


@pytest.mark.parametrize("vec", INITIATOR, ids=lambda v: v["name"])
def test_initiator(vec):
    hs = InitiatorHandshake(bytes.fromhex(vec["ls.priv"]), bytes.fromhex(vec["rs.pub"]), bytes.fromhex(vec["e.priv"]))
    assert hs.our_pubkey.hex() == vec["ls.pub"]
    steps = vec["steps"]
    assert hs.act_one().hex() == steps[0]["output"]
    act_two = bytes.fromhex(steps[1]["input"])
    if "error" in steps[2]:
        with pytest.raises(HandshakeError) as info:
            hs.process_act_two(act_two)
        assert info.value.reason == steps[2]["error"]
        assert info.value.action is Action.DISCONNECT
        return
    act_three, session = hs.process_act_two(act_two)
    assert act_three.hex() == steps[2]["output"]
    assert session.sender.key.hex() == vec["final_sk"]
    assert session.receiver.key.hex() == vec["final_rk"]
    assert session.remote_pubkey.hex() == vec["rs.pub"]


@pytest.mark.parametrize("vec", RESPONDER, ids=lambda v: v["name"])
def test_responder(vec):
    hs = ResponderHandshake(bytes.fromhex(vec["ls.priv"]), bytes.fromhex(vec["e.priv"]))
    assert hs.our_pubkey.hex() == vec["ls.pub"]
    steps = vec["steps"]
    act_one = bytes.fromhex(steps[0]["input"])
    if "error" in steps[1]:
        with pytest.raises(HandshakeError) as info:
            hs.process_act_one(act_one)
        assert info.value.reason == steps[1]["error"]
        return
    assert hs.process_act_one(act_one).hex() == steps[1]["output"]
    act_three = bytes.fromhex(steps[2]["input"])
    if len(steps) > 3:
        with pytest.raises(HandshakeError) as info:
            hs.process_act_three(act_three)
        assert info.value.reason == steps[3]["error"]
        return
    session = hs.process_act_three(act_three)
    assert session.receiver.key.hex() == vec["final_rk"]
    assert session.sender.key.hex() == vec["final_sk"]
    # The initiator's static key from the initiator vectors.
    assert session.remote_pubkey.hex() == INITIATOR[0]["ls.pub"]


def test_message_encryption_with_rotation():
    ck, sk, rk = (bytes.fromhex(MESSAGE[k]) for k in ("ck", "sk", "rk"))
    sender = NoiseSession(sk, rk, ck, remote_pubkey=b"")
    receiver = NoiseSession(rk, sk, ck, remote_pubkey=b"")
    expected = {int(k): v for k, v in MESSAGE["outputs"].items()}
    assert sorted(expected) == [0, 1, 500, 501, 1000, 1001]
    for i in range(1002):
        frame = sender.encrypt_message(b"hello")
        if i in expected:
            assert frame.hex() == expected[i], f"output {i}"
        assert receiver.decrypt_frame(frame) == b"hello"
