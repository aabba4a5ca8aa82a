"""Hop payload TLV encoding, decoding and the BOLT 4 reader rules (ampere.ln.onion_payload)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampere.ln.onion import InvalidOnionPayload
from ampere.ln.onion_payload import (
    TLV_AMT_TO_FORWARD,
    TLV_CURRENT_PATH_KEY,
    TLV_KEYSEND_PREIMAGE,
    TLV_OUTGOING_CLTV_VALUE,
    TLV_SHORT_CHANNEL_ID,
    TLV_TOTAL_AMOUNT_MSAT,
    HopPayload,
    check_hop_payload,
    decode_hop_payload,
    encode_hop_payload,
    final_hop_payload,
    forward_hop_payload,
)
from ampere.primitives.amount import Msat
from ampere.primitives.bigsize import encode_bigsize

PATH_KEY = bytes.fromhex("02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619")


def _record(tlv_type: int, value: bytes) -> bytes:
    return encode_bigsize(tlv_type) + encode_bigsize(len(value)) + value


def test_forward_payload_bytes():
    raw = forward_hop_payload(15000, 1500, 1)
    # Same bytes as hops[0] of the spec's onion-test.json.
    assert raw.hex() == "02023a98040205dc06080000000000000001"
    payload = decode_hop_payload(raw)
    assert payload.amt_to_forward == Msat(15000) and isinstance(payload.amt_to_forward, Msat)
    check_hop_payload(payload, is_final=False)


def test_final_payload_with_secret_and_metadata():
    secret = os.urandom(32)
    raw = final_hop_payload(10_000, 800_040, payment_secret=secret, total_msat=30_000, payment_metadata=b"meta")
    payload = decode_hop_payload(raw)
    assert payload.payment_secret == secret
    assert payload.total_msat == 30_000 and payload.expected_total_msat == 30_000
    assert payload.payment_metadata == b"meta"
    check_hop_payload(payload, is_final=True)
    # A single-part payment: total defaults to the amount.
    single = decode_hop_payload(final_hop_payload(10_000, 800_040, payment_secret=secret))
    assert single.total_msat == 10_000
    # BOLT 4: no payment_data -> total_msat is treated as amt_to_forward.
    assert decode_hop_payload(final_hop_payload(7, 1)).expected_total_msat == 7


def test_keysend_preimage():
    preimage = os.urandom(32)
    raw = final_hop_payload(1000, 144, keysend_preimage=preimage)
    assert _record(TLV_KEYSEND_PREIMAGE, preimage) in raw
    assert raw.endswith(_record(TLV_KEYSEND_PREIMAGE, preimage))  # the highest type goes last
    assert decode_hop_payload(raw).keysend_preimage == preimage


def test_truncated_integers_are_minimal():
    assert forward_hop_payload(0, 0, 0).hex() == "020004000608" + "00" * 8
    assert decode_hop_payload(bytes.fromhex("02000400")).amt_to_forward == 0
    assert encode_hop_payload(HopPayload(amt_to_forward=Msat(2**64 - 1))) == bytes.fromhex("0208" + "ff" * 8)


payloads = st.builds(
    HopPayload,
    amt_to_forward=st.none() | st.integers(0, 2**64 - 1).map(Msat),
    outgoing_cltv_value=st.none() | st.integers(0, 2**32 - 1),
    short_channel_id=st.none() | st.integers(0, 2**64 - 1),
    payment_metadata=st.none() | st.binary(max_size=50),
    encrypted_recipient_data=st.none() | st.binary(max_size=50),
    current_path_key=st.none() | st.just(PATH_KEY),
    total_amount_msat=st.none() | st.integers(0, 2**64 - 1).map(Msat),
    keysend_preimage=st.none() | st.binary(min_size=32, max_size=32),
    extra_tlvs=st.dictionaries(
        st.integers(19, 2**40).filter(lambda t: t % 2 == 1 and t != TLV_KEYSEND_PREIMAGE), st.binary(max_size=20), max_size=3
    ).map(lambda d: tuple(sorted(d.items()))),
)


@settings(max_examples=100, deadline=None)
@given(payload=payloads, secret=st.none() | st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 2**64 - 1)))
def test_round_trip(payload, secret):
    if secret is not None:
        payload = HopPayload(**{**payload.__dict__, "payment_secret": secret[0], "total_msat": Msat(secret[1])})
    raw = encode_hop_payload(payload)
    assert decode_hop_payload(raw) == payload
    assert encode_hop_payload(decode_hop_payload(raw)) == raw


@pytest.mark.parametrize(
    "raw, tlv_type, offset",
    [
        (_record(2, b"\x01") + _record(7, b"") + _record(20, b"x"), 20, 5),  # unknown even type
        (_record(4, b"\x01") + _record(2, b"\x01"), 2, 3),  # out of order
        (_record(2, b"\x01") + _record(2, b"\x02"), 2, 3),  # duplicate
        (_record(2, b"\x00\x01"), 2, 0),  # non-minimal tu64
        (_record(2, bytes(9)), 2, 0),  # tu64 too long
        (_record(4, b"\x01\x02\x03\x04\x05"), 4, 0),  # tu32 too long
        (_record(6, bytes(7)), 6, 0),  # short_channel_id not 8 bytes
        (_record(8, bytes(31)), 8, 0),  # payment_data without its secret
        (_record(8, bytes(32) + b"\x00\x05"), 8, 0),  # payment_data total_msat not minimal
        (_record(12, bytes(32)), 12, 0),  # path key not 33 bytes
        (_record(TLV_KEYSEND_PREIMAGE, bytes(31)), TLV_KEYSEND_PREIMAGE, 0),
        (bytes.fromhex("0205ff"), 2, 0),  # length overruns
        (_record(2, b"\x01") + b"\xfd", 2, 3),  # truncated type
        (_record(2, b"\x01") + b"\xfd\x00\x01\x00", 2, 3),  # non-minimal type encoding
    ],
)
def test_malformed_payloads(raw, tlv_type, offset):
    with pytest.raises(InvalidOnionPayload) as exc_info:
        decode_hop_payload(raw)
    err = exc_info.value
    assert (err.tlv_type, err.offset) == (tlv_type, offset)
    # BOLT 4 invalid_onion_payload: PERM|22, [bigsize:type][u16:offset].
    assert err.failure_message() == b"\x40\x16" + encode_bigsize(tlv_type) + offset.to_bytes(2, "big")


def test_unknown_odd_types_are_kept():
    raw = forward_hop_payload(1, 2, 3) + _record(1001, b"custom")
    payload = decode_hop_payload(raw)
    assert payload.extra_tlvs == ((1001, b"custom"),)
    check_hop_payload(payload, is_final=False)


def test_encode_rejects_bad_values():
    with pytest.raises(ValueError):
        encode_hop_payload(HopPayload(amt_to_forward=2**64))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_hop_payload(HopPayload(payment_secret=bytes(32)))  # no total_msat
    with pytest.raises(ValueError):
        encode_hop_payload(HopPayload(keysend_preimage=b"short"))
    with pytest.raises(ValueError):
        encode_hop_payload(HopPayload(amt_to_forward=Msat(1), extra_tlvs=((2, b"x"),)))  # collides
    with pytest.raises(ValueError):
        final_hop_payload(1, 1, total_msat=5)  # total without a secret


# --- reader rules ------------------------------------------------------------------------------


def _check_fails(payload: HopPayload, tlv_type: int, **kwargs):
    with pytest.raises(InvalidOnionPayload) as exc_info:
        check_hop_payload(payload, **kwargs)
    assert exc_info.value.tlv_type == tlv_type


def test_rules_for_unblinded_hops():
    full = HopPayload(amt_to_forward=Msat(1), outgoing_cltv_value=1, short_channel_id=1)
    check_hop_payload(full, is_final=False)
    check_hop_payload(HopPayload(amt_to_forward=Msat(1), outgoing_cltv_value=1), is_final=True)
    _check_fails(HopPayload(outgoing_cltv_value=1, short_channel_id=1), TLV_AMT_TO_FORWARD, is_final=False)
    _check_fails(HopPayload(amt_to_forward=Msat(1)), TLV_OUTGOING_CLTV_VALUE, is_final=True)
    _check_fails(HopPayload(amt_to_forward=Msat(1), outgoing_cltv_value=1), TLV_SHORT_CHANNEL_ID, is_final=False)
    # Blinding fields outside a blinded route.
    with_path_key = HopPayload(amt_to_forward=Msat(1), outgoing_cltv_value=1, current_path_key=PATH_KEY)
    _check_fails(with_path_key, TLV_CURRENT_PATH_KEY, is_final=True)
    with pytest.raises(InvalidOnionPayload):
        check_hop_payload(full, is_final=False, path_key_in_htlc=True)


def test_rules_for_blinded_hops():
    intro = HopPayload(encrypted_recipient_data=b"enc", current_path_key=PATH_KEY)
    check_hop_payload(intro, is_final=False)
    inner = HopPayload(encrypted_recipient_data=b"enc")
    check_hop_payload(inner, is_final=False, path_key_in_htlc=True)
    _check_fails(inner, TLV_CURRENT_PATH_KEY, is_final=False)  # no path key from anywhere
    _check_fails(intro, TLV_CURRENT_PATH_KEY, is_final=False, path_key_in_htlc=True)  # two path keys
    # Non-final blinded hops carry nothing else.
    _check_fails(
        HopPayload(amt_to_forward=Msat(5), encrypted_recipient_data=b"enc", current_path_key=PATH_KEY),
        TLV_AMT_TO_FORWARD,
        is_final=False,
    )
    final = HopPayload(
        amt_to_forward=Msat(5), outgoing_cltv_value=9, total_amount_msat=Msat(5), encrypted_recipient_data=b"enc"
    )
    check_hop_payload(final, is_final=True, path_key_in_htlc=True)
    assert final.expected_total_msat == 5
    _check_fails(
        HopPayload(amt_to_forward=Msat(5), outgoing_cltv_value=9, encrypted_recipient_data=b"enc"),
        TLV_TOTAL_AMOUNT_MSAT,
        is_final=True,
        path_key_in_htlc=True,
    )
    _check_fails(
        HopPayload(**{**final.__dict__, "short_channel_id": 3}), TLV_SHORT_CHANNEL_ID, is_final=True, path_key_in_htlc=True
    )


@pytest.mark.parametrize("amount, cltv, secret, total", [
    (0, 0, None, None), (1, 1, None, None), (1_000_000, 118, bytes(range(32)), None),
    (2**64 - 1, 2**32 - 1, b"\xff" * 32, 2**64 - 1), (255, 256, b"\x01" * 32, 0), (65_536, 700_000, b"\x02" * 32, 3)])
def test_final_payload_shortcut_writes_the_codecs_bytes(amount, cltv, secret, total):
    """final_hop_payload writes the usual final hop without the generated codec: byte for byte the codec's."""
    fast = final_hop_payload(amount, cltv, payment_secret=secret, total_msat=total)
    if secret is not None and total is None:
        total = amount
    assert fast == encode_hop_payload(HopPayload(
        amt_to_forward=Msat(amount), outgoing_cltv_value=cltv, payment_secret=secret,
        total_msat=None if total is None else Msat(total)))
    decoded = decode_hop_payload(fast)
    assert (decoded.amt_to_forward, decoded.outgoing_cltv_value, decoded.payment_secret) == (amount, cltv, secret)


def test_final_payload_out_of_range_is_still_refused():
    with pytest.raises(ValueError):
        final_hop_payload(2**64, 1)
    with pytest.raises(ValueError):
        final_hop_payload(1, 2**32, payment_secret=bytes(32))
    with pytest.raises(ValueError):
        final_hop_payload(1, 1, payment_secret=b"short")


def _small_record(tlv_type: int, value: bytes) -> bytes:
    return bytes((tlv_type, len(value))) + value


@settings(max_examples=300, deadline=None)
@given(amount=st.binary(max_size=9), cltv=st.binary(max_size=5), secret=st.none() | st.binary(min_size=30, max_size=34),
       total=st.binary(max_size=9), tail=st.sampled_from([b"", b"\x0a\x00", b"\x10\x01\x05", b"\x01"]),
       order=st.booleans())
def test_usual_final_reader_agrees_with_the_codec(amount, cltv, secret, total, tail, order):
    """decode_hop_payload reads the usual final hop itself: whenever it does, the codec reads the same payload;
    whatever it leaves (non-minimal integers, other records, wrong order or lengths) goes to the codec."""
    from ampere.ln.onion_payload import _decode_usual_final, _decode_with_codec

    records = [_small_record(2, amount), _small_record(4, cltv)]
    if not order:
        records.reverse()
    raw = b"".join(records) + (b"" if secret is None else _small_record(8, secret + total)) + tail
    fast = _decode_usual_final(raw)
    try:
        slow = _decode_with_codec(raw)
    except InvalidOnionPayload:
        assert fast is None
        with pytest.raises(InvalidOnionPayload):
            decode_hop_payload(raw)
        return
    if fast is not None:
        assert fast == slow
    assert decode_hop_payload(raw) == slow


def test_usual_final_reader_takes_the_usual_payload():
    from ampere.ln.onion_payload import _decode_usual_final

    raw = final_hop_payload(1_000_000, 118, payment_secret=b"\x07" * 32, total_msat=3_000_000)
    assert _decode_usual_final(raw) == decode_hop_payload(raw)
    assert _decode_usual_final(raw).total_msat == 3_000_000
    assert _decode_usual_final(final_hop_payload(5, 6)) is not None
