"""The table-driven codec: naming of generated classes, fields and streams, typed errors, the
extension rules, onion failures and the fundamental types."""

from __future__ import annotations

import dataclasses

import pytest

from ampere.primitives.bigsize import encode_bigsize
from ampere.wire import messages
from ampere.wire.codec import (
    UnknownMessage,
    by_name,
    decode_message,
    decode_onion_failure,
    decode_subtype,
    decode_tlv_stream,
    encode_message,
    encode_onion_failure,
    encode_subtype,
    encode_tlv_stream,
    pinned_schema,
)
from ampere.wire.errors import (
    Action,
    DecodeError,
    EncodeError,
    InvalidValueError,
    TlvError,
    TruncatedError,
    UnknownEvenTlvError,
)
from ampere.wire.messages import (
    BADONION,
    MESSAGE_TYPES,
    NODE,
    ONION_FAILURE_TYPES,
    PERM,
    UPDATE,
    BlindedPath,
    BlindedPathHop,
    ChannelUpdate,
    ClosingSigned,
    ClosingSignedTlvsFeeRange,
    CommitmentSigned,
    IncorrectOrUnknownPaymentDetails,
    Init,
    InvalidOnionVersion,
    Payload,
    PayloadPaymentData,
    Ping,
    TemporaryChannelFailure,
    TxInitRbf,
    UpdateAddHtlc,
)
from ampere.wire.generate import generate
from ampere.wire.schema import SchemaError, load_schema
from ampere.wire.types import TYPES, SciddirOrPubkey, ShortChannelId

NODE_ID = bytes.fromhex("023da092f6980e58d2c037173180e9a465476026ee50f96695963e8efe436f54eb")
CHANNEL_ID = bytes(range(32))


def test_generated_names_and_registry():
    assert MESSAGE_TYPES[16] is Init and Init.TYPE == 16 and Init.NAME == "init"
    assert MESSAGE_TYPES[128] is UpdateAddHtlc
    assert by_name("update_add_htlc") is UpdateAddHtlc is by_name("UpdateAddHtlc")
    assert by_name("temporary_channel_failure") is TemporaryChannelFailure
    assert by_name("payload") is Payload
    assert messages.ChannelAnnouncement.TYPE == 256
    assert MESSAGE_TYPES[513] is messages.OnionMessage
    with pytest.raises(KeyError):
        by_name("no_such_message")
    ping = Ping(num_pong_bytes=3, ignored=b"")
    assert Ping.from_bytes(ping.to_bytes()) == ping and ping.to_bytes() == encode_message(ping)
    with pytest.raises(DecodeError):
        Init.from_bytes(ping.to_bytes())
    fail = TemporaryChannelFailure(channel_update=b"")
    assert TemporaryChannelFailure.from_bytes(fail.to_bytes()) == fail
    assert dataclasses.is_dataclass(Init)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Ping(num_pong_bytes=1, ignored=b"").num_pong_bytes = 2  # type: ignore[misc]


def test_length_fields_are_derived_not_stored():
    fields = [f.name for f in dataclasses.fields(Init)]
    assert fields == ["globalfeatures", "features", "tlvs"]  # no gflen/flen
    assert [f.name for f in dataclasses.fields(CommitmentSigned)] == ["channel_id", "signature", "htlc_signature", "tlvs"]
    ping = Ping(num_pong_bytes=4, ignored=b"\x00\x00\x00")
    assert encode_message(ping).hex() == "0012" + "0004" + "0003" + "000000"


def test_missing_field_is_an_error():
    with pytest.raises(TypeError):
        Ping(num_pong_bytes=1)  # type: ignore[call-arg]
    full = encode_message(UpdateAddHtlc(channel_id=CHANNEL_ID, id=1, amount_msat=1000, payment_hash=bytes(32),
                                        cltv_expiry=500, onion_routing_packet=bytes(1366)))
    for cut in (2, 10, 40, len(full) - 1):
        with pytest.raises(TruncatedError) as info:
            decode_message(full[:cut])
        assert info.value.action is Action.DISCONNECT
        assert "update_add_htlc" in str(info.value)


def test_tlvs_on_messages():
    htlc = UpdateAddHtlc(channel_id=CHANNEL_ID, id=7, amount_msat=1, payment_hash=bytes(32), cltv_expiry=9,
                         onion_routing_packet=bytes(1366), tlvs={"blinded_path": NODE_ID})
    raw = encode_message(htlc)
    assert raw.endswith(bytes([0, 33]) + NODE_ID)  # patch 01: update_add_htlc_tlvs attached
    back = decode_message(raw)
    assert back.tlvs.blinded_path == NODE_ID and back == htlc
    # A multi-field record is its own class; a record without fields is True when present.
    closing = ClosingSigned(channel_id=CHANNEL_ID, fee_satoshis=500, signature=bytes(64),
                            tlvs={"fee_range": {"min_fee_satoshis": 1, "max_fee_satoshis": 2}})
    assert closing.tlvs.fee_range == ClosingSignedTlvsFeeRange(min_fee_satoshis=1, max_fee_satoshis=2)
    assert decode_message(encode_message(closing)) == closing
    rbf = TxInitRbf(channel_id=CHANNEL_ID, locktime=0, feerate=253,
                    tlvs={"funding_output_contribution": -5000, "require_confirmed_inputs": True})
    raw = encode_message(rbf)
    assert raw.endswith(bytes.fromhex("0008ffffffffffffec78" + "0200"))
    assert decode_message(raw) == rbf


def test_messages_without_spec_tlvs_keep_their_extension():
    # channel_update has no TLV stream in the spec; unknown odd extension records must survive
    # (the signature covers them: BOLT #1 appendix C).
    upd = ChannelUpdate(signature=bytes(64), chain_hash=bytes(32), short_channel_id="103x1x0", timestamp=1,
                        message_flags=1, channel_flags=0, cltv_expiry_delta=6, htlc_minimum_msat=0,
                        fee_base_msat=1, fee_proportional_millionths=10, htlc_maximum_msat=10**9)
    raw = encode_message(upd) + bytes.fromhex("0b01ff")
    back = decode_message(raw)
    assert back.tlvs.unknown == ((11, b"\xff"),)
    assert encode_message(back) == raw
    assert back.short_channel_id == ShortChannelId.from_parts(103, 1, 0)
    with pytest.raises(UnknownEvenTlvError):
        decode_message(encode_message(upd) + bytes.fromhex("0a01ff"))
    with pytest.raises(TlvError):
        decode_message(encode_message(upd) + b"\x0b")


def test_unknown_messages():
    msg = decode_message(bytes.fromhex("8001cafe"))
    assert msg == UnknownMessage(0x8001, b"\xca\xfe") and msg.is_odd
    assert not decode_message(bytes.fromhex("8000")).is_odd
    assert encode_message(msg) == bytes.fromhex("8001cafe")
    with pytest.raises(TruncatedError):
        decode_message(b"\x00")


def test_onion_failures():
    assert TemporaryChannelFailure.TYPE == UPDATE | 7
    assert InvalidOnionVersion.TYPE == BADONION | PERM | 4
    assert messages.PermanentNodeFailure.TYPE == PERM | NODE | 2
    assert ONION_FAILURE_TYPES[PERM | 15] is IncorrectOrUnknownPaymentDetails
    fail = IncorrectOrUnknownPaymentDetails(htlc_msat=1000, height=800)
    raw = encode_onion_failure(fail)
    assert raw.hex() == "400f" + "00000000000003e8" + "00000320"
    assert decode_onion_failure(raw) == fail
    # BOLT #4: "MUST ignore any extra bytes in `failuremsg`."
    assert decode_onion_failure(raw + b"\x02\x05") == fail
    # A failure code is not a peer message and vice versa.
    with pytest.raises(EncodeError):
        encode_message(fail)
    with pytest.raises(EncodeError):
        encode_onion_failure(Ping(num_pong_bytes=0, ignored=b""))
    # The same number in the two namespaces means different things: 18 is ping / final_incorrect_cltv_expiry.
    assert isinstance(decode_onion_failure(bytes.fromhex("0012000001f4")), messages.FinalIncorrectCltvExpiry)
    with pytest.raises(TruncatedError):
        decode_onion_failure(bytes.fromhex("400f0000"))


def test_onion_payload_stream():
    secret = bytes(range(32))
    raw = encode_tlv_stream("payload", {
        "amt_to_forward": 1000, "outgoing_cltv_value": 144, "short_channel_id": "1x2x3",
        "payment_data": {"payment_secret": secret, "total_msat": 5000},
    })
    assert raw.hex() == "0202" + "03e8" + "040190" + "0608" + "0000010000020003" + "0822" + secret.hex() + "1388"
    payload = decode_tlv_stream("payload", raw)
    assert isinstance(payload, Payload)
    assert payload.amt_to_forward == 1000 and payload.outgoing_cltv_value == 144
    assert str(payload.short_channel_id) == "1x2x3"
    assert payload.payment_data == PayloadPaymentData(payment_secret=secret, total_msat=5000)
    assert payload.total_amount_msat is None
    # Keysend's even record is rejected unless the caller says it knows it.
    keysend = raw + encode_bigsize(5482373484) + b"\x20" + bytes(32)
    with pytest.raises(UnknownEvenTlvError):
        decode_tlv_stream("payload", keysend)
    assert decode_tlv_stream("payload", keysend, extra_known_types={5482373484}).unknown == ((5482373484, bytes(32)),)
    with pytest.raises(EncodeError):
        encode_tlv_stream("payload", {"no_such_record": 1})
    with pytest.raises(KeyError):
        decode_tlv_stream("no_such_stream", b"")


def test_subtypes_and_sciddir():
    hop = BlindedPathHop(blinded_node_id=NODE_ID, encrypted_recipient_data=b"abc")
    path = BlindedPath(first_node_id=SciddirOrPubkey(scid=ShortChannelId(5), direction=1),
                       first_path_key=NODE_ID, path=[hop, hop])
    raw = encode_subtype(path)
    assert raw[:9] == b"\x01" + (5).to_bytes(8, "big")
    back = decode_subtype("blinded_path", raw)
    assert back == path and back.path == (hop, hop)
    with pytest.raises(DecodeError):
        decode_subtype("blinded_path", raw + b"\x00")
    with pytest.raises(InvalidValueError):
        TYPES["sciddir_or_pubkey"].decode(b"\x05" + bytes(32), 0, 33)
    with pytest.raises(ValueError):
        SciddirOrPubkey(scid=ShortChannelId(1), direction=2)


def test_encode_errors_are_ours_not_the_peers():
    with pytest.raises(EncodeError):
        encode_message(Ping(num_pong_bytes=70000, ignored=b""))
    with pytest.raises(EncodeError):
        encode_message(Ping(num_pong_bytes=1, ignored=bytes(70000)))  # too long for its u16 length
    with pytest.raises(EncodeError):
        encode_message(UpdateAddHtlc(channel_id=bytes(31), id=1, amount_msat=1, payment_hash=bytes(32),
                                     cltv_expiry=1, onion_routing_packet=bytes(1366)))
    with pytest.raises(EncodeError):
        encode_message(UpdateAddHtlc(channel_id=bytes(32), id=1, amount_msat=1, payment_hash=bytes(32),
                                     cltv_expiry=1, onion_routing_packet=bytes(1365)))
    with pytest.raises(EncodeError):  # not a point
        encode_message(messages.RevokeAndAck(channel_id=bytes(32), per_commitment_secret=bytes(32),
                                             next_per_commitment_point=b"\x02" + bytes(32)))
    with pytest.raises(EncodeError):
        encode_message("not a message")


def test_fundamental_types():
    assert TYPES["tu32"].encode(0) == b"" and TYPES["tu32"].encode(256) == b"\x01\x00"
    with pytest.raises(InvalidValueError):
        TYPES["tu16"].decode(b"\x00\x01", 0, 2)
    with pytest.raises(InvalidValueError):  # r >= group order
        TYPES["signature"].decode(b"\xff" * 64, 0, 64)
    with pytest.raises(InvalidValueError):
        TYPES["point"].decode(b"\x02" + bytes(32), 0, 33)
    assert TYPES["s64"].encode(-1) == b"\xff" * 8
    assert TYPES["u8"].decode(b"\x07", 0, 1) == (7, 1)
    with pytest.raises(TruncatedError):
        TYPES["u64"].decode(bytes(7), 0, 7)
    scid = ShortChannelId.from_str("539268x845x1")
    assert (scid.block, scid.txindex, scid.output) == (539268, 845, 1)
    assert str(scid) == "539268x845x1" and int(scid) == (539268 << 40) | (845 << 16) | 1
    for bad in ("1x2", "axbxc", "16777216x0x0"):
        with pytest.raises(ValueError):
            ShortChannelId.from_str(bad)


def test_utf8_arrays_decode_to_str():
    text = "caf\u00e9 \u26a1"
    # The generator works on any schema: compile a one-stream module and use its class.
    schema = load_schema([("t.csv", ["tlvtype,t,desc,1", "tlvdata,t,desc,text,utf8,..."])])
    module: dict = {"__name__": "t"}
    exec(compile(generate(schema)["t"], "t.py", "exec"), module)
    stream = module["T"]
    raw = stream(desc=text)._encode()
    assert raw[2:] == text.encode()
    assert stream._decode(raw, 0, len(raw)).desc == text
    with pytest.raises(TlvError):
        stream._decode(b"\x01\x01\xff", 0, 3)


def test_schema_errors_are_caught_at_load():
    with pytest.raises(SchemaError):  # `...` only at the end of a TLV record
        load_schema([("t.csv", ["msgtype,m,1", "msgdata,m,a,byte,...", "msgdata,m,b,u16,"])])
    with pytest.raises(SchemaError):  # length field must come first
        load_schema([("t.csv", ["msgtype,m,1", "msgdata,m,a,byte,len", "msgdata,m,len,u16,"])])
    with pytest.raises(SchemaError):
        load_schema([("t.csv", ["msgtype,m,1", "msgdata,m,a,nosuchtype,"])])
    assert "update_add_htlc_tlvs" in pinned_schema().streams
