"""BOLT #1 appendix vectors: BigSize (A), TLV streams in the n1/n2 namespaces (B), message extension
(C) and signed integers (D).  Data in tests/vectors/bolt01/, extracted from the pinned spec text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ampere.primitives.bigsize import BigSizeError, decode_bigsize, encode_bigsize
from ampere.wire.codec import decode_message, decode_tlv_stream, encode_message, encode_tlv_stream
from ampere.wire.errors import Action, DecodeError, TlvError, TlvOrderError, UnknownEvenTlvError
from ampere.wire.messages import Init
from ampere.wire.types import TYPES, ShortChannelId

DATA = Path(__file__).parent / "bolt01"
BIGSIZE = json.loads((DATA / "bigsize_and_signed.json").read_text())
TLV = json.loads((DATA / "tlv.json").read_text())["cases"]
INIT_EXT = json.loads((DATA / "init_extension.json").read_text())


@pytest.mark.parametrize("case", BIGSIZE["bigsize_decoding"], ids=lambda c: c["name"])
def test_bigsize_decoding(case):
    data = bytes.fromhex(case["bytes"])
    if "exp_error" in case:
        with pytest.raises(BigSizeError, match=case["exp_error"]):
            decode_bigsize(data)
        with pytest.raises(DecodeError):
            TYPES["bigsize"].decode(data, 0, len(data))
    else:
        assert decode_bigsize(data) == (case["value"], len(data))
        assert TYPES["bigsize"].decode(data, 0, len(data)) == (case["value"], len(data))


@pytest.mark.parametrize("case", BIGSIZE["bigsize_encoding"], ids=lambda c: c["name"])
def test_bigsize_encoding(case):
    assert encode_bigsize(case["value"]).hex() == case["bytes"]
    assert TYPES["bigsize"].encode(case["value"]).hex() == case["bytes"]


@pytest.mark.parametrize("case", BIGSIZE["signed_integers"], ids=lambda c: str(c["value"]))
def test_signed_integers(case):
    # Each vector is written in the smallest of s8/s16/s32/s64 that holds it.
    size = len(case["bytes"]) // 2
    codec = TYPES[f"s{8 * size}"]
    assert codec.encode(case["value"]).hex() == case["bytes"]
    raw = bytes.fromhex(case["bytes"])
    assert codec.decode(raw, 0, len(raw)) == (case["value"], size)


def _cases(valid: bool):
    for case in TLV:
        if case["valid"] == valid:
            for ns in case["namespaces"]:
                yield pytest.param(ns, case, id=f"{ns}-{case['stream'][:24] or 'empty'}")


@pytest.mark.parametrize("ns,case", list(_cases(valid=False)))
def test_tlv_decoding_failures(ns, case):
    with pytest.raises(TlvError) as info:
        decode_tlv_stream(ns, bytes.fromhex(case["stream"]))
    assert info.value.action is Action.DISCONNECT


def _expected_value(record: str, field: str, text: str):
    if field == "scid":
        return ShortChannelId.from_str(text)  # the spec writes "0x0x550"
    if field == "node_id":
        return bytes.fromhex(text)
    return int(text)


@pytest.mark.parametrize("ns,case", list(_cases(valid=True)))
def test_tlv_decoding_successes(ns, case):
    raw = bytes.fromhex(case["stream"])
    stream = decode_tlv_stream(ns, raw)
    values = case.get("values", {})
    for record, fields in values.items():
        got = getattr(stream, record)
        if len(fields) == 1:
            ((field, text),) = fields.items()
            assert got == _expected_value(record, field, text)
        else:
            for field, text in fields.items():
                assert getattr(got, field) == _expected_value(record, field, text)
    if not values:
        # "should correctly decode, and be ignored": nothing known, unknown odd records kept
        assert all(getattr(stream, r) is None for r in ("tlv1", "tlv2"))
    # Everything round-trips byte for byte, unknown odd records included.
    assert encode_tlv_stream(ns, stream) == raw


def test_tlv_appending_rules():
    valid_n1 = [c for c in TLV if c["valid"] and c["namespaces"] == ["n1"]]
    invalid_any = [c for c in TLV if not c["valid"] and c["namespaces"] == ["n1", "n2"]]
    # "Any appending of an invalid stream to a valid stream should trigger a decoding failure."
    for good in valid_n1:
        for bad in invalid_any:
            with pytest.raises(TlvError):
                decode_tlv_stream("n1", bytes.fromhex(good["stream"] + bad["stream"]))
    # "Any appending of a higher-numbered valid stream to a lower-numbered valid stream should not
    # trigger a decoding failure."
    tlv1 = bytes.fromhex("0103010000")
    tlv2 = bytes.fromhex("02080000000000000226")
    tlv4 = bytes.fromhex("fd00fe020226")
    stream = decode_tlv_stream("n1", tlv1 + tlv2 + tlv4)
    assert (stream.tlv1, stream.tlv2, stream.tlv4) == (65536, ShortChannelId(0x226), 550)
    with pytest.raises(TlvOrderError):
        decode_tlv_stream("n1", tlv2 + tlv1)


def test_unknown_even_type_is_typed():
    with pytest.raises(UnknownEvenTlvError) as info:
        decode_tlv_stream("n2", bytes.fromhex("1200"))
    assert info.value.tlv_type == 0x12


@pytest.mark.parametrize("case", INIT_EXT["valid"], ids=lambda c: c["message"])
def test_init_extension_valid(case):
    raw = bytes.fromhex(case["message"])
    msg = decode_message(raw)
    assert isinstance(msg, Init)
    assert (msg.globalfeatures, msg.features) == (b"", b"")
    assert encode_message(msg) == raw


def test_init_extension_unknown_odd_records_kept():
    msg = decode_message(bytes.fromhex("001000000000c9012acb0104"))
    assert msg.tlvs.unknown == ((0xC9, b"\x2a"), (0xCB, b"\x04"))


@pytest.mark.parametrize("case", INIT_EXT["invalid"], ids=lambda c: c["message"])
def test_init_extension_invalid(case):
    with pytest.raises(DecodeError) as info:
        decode_message(bytes.fromhex(case["message"]))
    # BOLT #1: "if the `extension` is invalid: MUST close the connection."
    assert info.value.action is Action.DISCONNECT
