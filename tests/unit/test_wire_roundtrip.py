"""hypothesis round trip over every message type of both CSVs, and every TLV stream.

Strategies are derived from the same schema the codec uses, so a message added to the CSV is
covered without touching this file."""

from __future__ import annotations

from importlib import resources

import coincurve
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampere.wire import codec
from ampere.wire.codec import (
    decode_message,
    decode_onion_failure,
    decode_tlv_stream,
    encode_message,
    encode_onion_failure,
    encode_tlv_stream,
    pinned_schema,
)
from ampere.wire.schema import FIXED, SINGLE, FieldSpec, OpaqueRest, SubtypeSpec, TlvStreamSpec
from ampere.wire.types import (
    SECP256K1_ORDER,
    BigSizeType,
    FixedBytes,
    PointType,
    SciddirOrPubkey,
    SciddirOrPubkeyType,
    ShortChannelId,
    ShortChannelIdType,
    SignatureType,
    SignedInt,
    TruncatedUInt,
    UnsignedInt,
    Utf8Type,
)

# Valid points are expensive to find by search: derive them from random secrets.
points = st.integers(min_value=1, max_value=SECP256K1_ORDER - 1).map(
    lambda k: coincurve.PrivateKey(k.to_bytes(32, "big")).public_key.format()
)
scids = st.integers(min_value=0, max_value=(1 << 64) - 1).map(ShortChannelId)
signatures = st.tuples(
    st.integers(min_value=0, max_value=SECP256K1_ORDER - 1), st.integers(min_value=0, max_value=SECP256K1_ORDER - 1)
).map(lambda rs: rs[0].to_bytes(32, "big") + rs[1].to_bytes(32, "big"))
# Array lengths are bounded so a message stays far below 65535 bytes.
MAX_ITEMS = 4


def elem_strategy(elem) -> st.SearchStrategy:
    if isinstance(elem, PointType):
        return points
    if isinstance(elem, SignatureType):
        return signatures
    if isinstance(elem, FixedBytes):
        return st.binary(min_size=elem.size, max_size=elem.size)
    if isinstance(elem, (UnsignedInt, TruncatedUInt)):
        return st.integers(min_value=0, max_value=elem.limit - 1)
    if isinstance(elem, SignedInt):
        return st.integers(min_value=elem.low, max_value=elem.high - 1)
    if isinstance(elem, BigSizeType):
        return st.integers(min_value=0, max_value=(1 << 64) - 1)
    if isinstance(elem, ShortChannelIdType):
        return scids
    if isinstance(elem, SciddirOrPubkeyType):
        return st.one_of(
            points.map(lambda p: SciddirOrPubkey(pubkey=p)),
            st.tuples(scids, st.integers(0, 1)).map(lambda t: SciddirOrPubkey(scid=t[0], direction=t[1])),
        )
    if isinstance(elem, OpaqueRest):
        return st.binary(max_size=40)
    if isinstance(elem, SubtypeSpec):
        return struct_strategy(elem.fields, elem.cls)
    if isinstance(elem, TlvStreamSpec):
        return stream_strategy(elem)
    raise AssertionError(f"no strategy for {elem!r}")


def field_strategy(f: FieldSpec) -> st.SearchStrategy:
    if f.kind == SINGLE:
        return elem_strategy(f.elem)
    if f.kind == FIXED:
        size = {"min_size": f.count, "max_size": f.count}
    else:
        size = {"min_size": 0, "max_size": 64 if f.is_bytes or f.is_text else MAX_ITEMS}
    if f.is_bytes:
        return st.binary(**size)
    if isinstance(f.elem, Utf8Type):
        return st.text(max_size=20)
    return st.lists(elem_strategy(f.elem), **size).map(tuple)


def struct_strategy(fields, cls) -> st.SearchStrategy:
    return st.fixed_dictionaries({f.pyname: field_strategy(f) for f in fields if f.visible}).map(lambda d: cls(**d))


def record_strategy(rec) -> st.SearchStrategy:
    visible = rec.visible_fields()
    if not visible:
        return st.just(True)
    if len(visible) == 1:
        return field_strategy(visible[0])
    return struct_strategy(rec.fields, rec.cls)


unknown_odd_records = st.lists(
    st.tuples(st.integers(min_value=0, max_value=(1 << 64) - 1).map(lambda t: t | 1), st.binary(max_size=8)),
    max_size=2,
    unique_by=lambda r: r[0],
)


def stream_strategy(spec: TlvStreamSpec) -> st.SearchStrategy:
    known = {rec.pyname: st.one_of(st.none(), record_strategy(rec)) for rec in spec.records.values()}

    def build(args):
        values, unknown = args
        unknown = tuple(sorted((t, b) for t, b in unknown if t not in spec.by_type))
        return spec.cls(**values, unknown=unknown)

    return st.tuples(st.fixed_dictionaries(known), unknown_odd_records).map(build)


SCHEMA = pinned_schema()
PEER = sorted(SCHEMA.peer_messages.values(), key=lambda m: m.type)
FAILURES = sorted(SCHEMA.onion_failures.values(), key=lambda m: m.type)
STREAMS = sorted(SCHEMA.streams.values(), key=lambda s: s.name)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _csv_msgtypes(name: str) -> set[str]:
    text = resources.files("ampere.wire").joinpath("csv", name).read_text()
    return {line.split(",")[1] for line in text.splitlines() if line.startswith("msgtype,")}


def test_every_csv_message_is_covered():
    # Every msgtype line of both CSVs becomes a class; onion_message (patch 02) is a peer message.
    peer, onion = _csv_msgtypes("peer_wire.csv"), _csv_msgtypes("onion_wire.csv")
    assert {m.name for m in PEER} == peer | {"onion_message"}
    assert {m.name for m in FAILURES} == onion - {"onion_message"}
    assert len(PEER) >= 50 and len(FAILURES) >= 22


@pytest.mark.parametrize("spec", PEER, ids=lambda m: m.name)
def test_peer_message_round_trip(spec):
    @SETTINGS
    @given(struct_strategy(spec.fields, spec.cls))
    def check(msg):
        raw = encode_message(msg)
        assert raw[:2] == spec.type.to_bytes(2, "big")
        decoded = decode_message(raw)
        assert decoded == msg
        assert encode_message(decoded) == raw

    check()


@pytest.mark.parametrize("spec", FAILURES, ids=lambda m: m.name)
def test_onion_failure_round_trip(spec):
    @SETTINGS
    @given(struct_strategy(spec.fields, spec.cls))
    def check(msg):
        raw = encode_onion_failure(msg)
        decoded = decode_onion_failure(raw)
        assert decoded == msg
        assert encode_onion_failure(decoded) == raw

    check()


@pytest.mark.parametrize("spec", STREAMS, ids=lambda s: s.name)
def test_tlv_stream_round_trip(spec):
    @SETTINGS
    @given(stream_strategy(spec))
    def check(stream):
        raw = encode_tlv_stream(spec.name, stream)
        decoded = decode_tlv_stream(spec.name, raw)
        assert decoded == stream
        assert encode_tlv_stream(spec.name, decoded) == raw

    check()


@SETTINGS
@given(st.binary(max_size=300))
def test_decoding_garbage_never_crashes(data):
    # Any bytes give a message, an UnknownMessage or a typed DecodeError -- never another exception.
    for decode in (decode_message, decode_onion_failure):
        try:
            decode(data)
        except codec.DecodeError:
            pass


@SETTINGS
@given(st.sampled_from([m.type for m in PEER]), st.binary(max_size=400))
def test_known_type_with_garbage_payload_never_crashes(msg_type, payload):
    try:
        msg = decode_message(msg_type.to_bytes(2, "big") + payload)
    except codec.DecodeError:
        return
    # Whatever decoded re-encodes to the same bytes.
    assert encode_message(msg) == msg_type.to_bytes(2, "big") + payload
