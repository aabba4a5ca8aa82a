"""BOLT 4 hop payloads: the `payload` TLV stream each hop finds in its onion layer.

`encode_hop_payload` / `decode_hop_payload` convert between `HopPayload` and the TLV bytes that
`ampere.ln.onion.create_onion` takes and `peel_onion` returns (without the BigSize length prefix,
which the onion layer handles).  `check_hop_payload` applies the BOLT 4 reader rules for an
intermediate or a final hop.  Every problem is an `InvalidOnionPayload` carrying the TLV type and
byte offset that BOLT 4's `invalid_onion_payload` failure reports.

The bytes are read and written by the wire codec's generated `payload` stream (`Payload`, from
onion_wire.csv); keysend's record, which the CSV does not define, travels as one of its extra records.
"""

from __future__ import annotations

from dataclasses import dataclass

from ampere.ln.onion import InvalidOnionPayload
from ampere.primitives.amount import Msat
from ampere.wire.codec import decode_tlv_stream, encode_tlv_stream
from ampere.wire.errors import DecodeError, EncodeError, TlvError
from ampere.wire.messages import Payload, PayloadPaymentData

__all__ = [
    "TLV_AMT_TO_FORWARD",
    "TLV_OUTGOING_CLTV_VALUE",
    "TLV_SHORT_CHANNEL_ID",
    "TLV_PAYMENT_DATA",
    "TLV_ENCRYPTED_RECIPIENT_DATA",
    "TLV_CURRENT_PATH_KEY",
    "TLV_PAYMENT_METADATA",
    "TLV_TOTAL_AMOUNT_MSAT",
    "TLV_KEYSEND_PREIMAGE",
    "HopPayload",
    "encode_hop_payload",
    "decode_hop_payload",
    "check_hop_payload",
    "forward_hop_payload",
    "final_hop_payload",
]

# BOLT #4 `tlv_stream`: `payload` types.
TLV_AMT_TO_FORWARD = 2
TLV_OUTGOING_CLTV_VALUE = 4
TLV_SHORT_CHANNEL_ID = 6
TLV_PAYMENT_DATA = 8
TLV_ENCRYPTED_RECIPIENT_DATA = 10
TLV_CURRENT_PATH_KEY = 12
TLV_PAYMENT_METADATA = 16
TLV_TOTAL_AMOUNT_MSAT = 18
# Keysend (bLIP-3, what CLN's keysend plugin and lnd send): the preimage, in an *even* type, so a
# receiver that does not understand keysend fails the HTLC instead of ignoring the preimage.
TLV_KEYSEND_PREIMAGE = 5482373484


@dataclass(frozen=True)
class HopPayload:
    """The fields of a hop's `payload`; None means absent.  Amounts are Msat."""

    amt_to_forward: Msat | None = None
    outgoing_cltv_value: int | None = None
    short_channel_id: int | None = None  # the 8-byte short_channel_id as an integer
    payment_secret: bytes | None = None  # payment_data.payment_secret
    total_msat: Msat | None = None  # payment_data.total_msat (present iff payment_secret is)
    encrypted_recipient_data: bytes | None = None
    current_path_key: bytes | None = None
    payment_metadata: bytes | None = None
    total_amount_msat: Msat | None = None  # type 18, used with blinded paths
    keysend_preimage: bytes | None = None
    # Other records, as (type, value), sorted by type: unknown odd ones kept from a decode, or
    # extra records the sender wants to add (CLN's htlc_accepted `extra_tlvs`).
    extra_tlvs: tuple[tuple[int, bytes], ...] = ()

    @property
    def expected_total_msat(self) -> Msat | None:
        """BOLT #4 final node: "MUST treat `total_msat` as if it were equal to `amt_to_forward` if
        it is not present."  (total_amount_msat stands in for it on blinded paths.)"""
        if self.total_msat is not None:
            return self.total_msat
        if self.total_amount_msat is not None:
            return self.total_amount_msat
        return self.amt_to_forward

    def present_types(self) -> list[int]:
        """The TLV types this payload would encode, in order."""
        known = [t for t, name in _KNOWN_FIELDS if getattr(self, name) is not None]
        return sorted(known + [t for t, _ in self.extra_tlvs])

    def to_wire(self) -> Payload:
        """The generated `payload` stream; keysend and the extra records go in its `unknown`."""
        if (self.payment_secret is None) != (self.total_msat is None):
            raise ValueError("payment_secret and total_msat go together (payment_data)")
        extra = list(self.extra_tlvs)
        seen: set[int] = set()
        for tlv_type, value in extra:
            if not isinstance(tlv_type, int) or tlv_type < 0 or tlv_type in _KNOWN_TYPES or tlv_type in seen:
                raise ValueError(f"extra TLV type {tlv_type!r} is invalid or duplicated")
            if not isinstance(value, (bytes, bytearray)):
                raise ValueError(f"extra TLV {tlv_type} must be bytes")
            seen.add(tlv_type)
        if self.keysend_preimage is not None:
            if not isinstance(self.keysend_preimage, (bytes, bytearray)) or len(self.keysend_preimage) != 32:
                raise ValueError("keysend_preimage must be 32 bytes")
            extra.append((TLV_KEYSEND_PREIMAGE, bytes(self.keysend_preimage)))
        return Payload(
            amt_to_forward=self.amt_to_forward,
            outgoing_cltv_value=self.outgoing_cltv_value,
            short_channel_id=self.short_channel_id,
            payment_data=None if self.payment_secret is None else PayloadPaymentData(
                payment_secret=self.payment_secret, total_msat=self.total_msat),  # type: ignore[arg-type]
            encrypted_recipient_data=self.encrypted_recipient_data,
            current_path_key=self.current_path_key,
            payment_metadata=self.payment_metadata,
            total_amount_msat=self.total_amount_msat,
            unknown=tuple(sorted((t, bytes(v)) for t, v in extra)),
        )


# (TLV type, HopPayload field) of the records the spec's `payload` stream and keysend define.
_KNOWN_FIELDS = (
    (TLV_AMT_TO_FORWARD, "amt_to_forward"),
    (TLV_OUTGOING_CLTV_VALUE, "outgoing_cltv_value"),
    (TLV_SHORT_CHANNEL_ID, "short_channel_id"),
    (TLV_PAYMENT_DATA, "payment_secret"),
    (TLV_ENCRYPTED_RECIPIENT_DATA, "encrypted_recipient_data"),
    (TLV_CURRENT_PATH_KEY, "current_path_key"),
    (TLV_PAYMENT_METADATA, "payment_metadata"),
    (TLV_TOTAL_AMOUNT_MSAT, "total_amount_msat"),
    (TLV_KEYSEND_PREIMAGE, "keysend_preimage"),
)
_KNOWN_TYPES = frozenset(t for t, _ in _KNOWN_FIELDS)


def encode_hop_payload(payload: HopPayload) -> bytes:
    """The TLV stream for `payload` (no length prefix), records in increasing type order.  A bad
    value is a programming error on the sending side: ValueError."""
    try:
        return encode_tlv_stream("payload", payload.to_wire())
    except EncodeError as e:
        raise ValueError(str(e)) from None


def _tu(value: int) -> bytes:
    """BOLT 1 truncated unsigned integer: big-endian without leading zero bytes (0 is empty)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _tu_record(tlv_type: int, value: int) -> bytes:
    """One TLV record of a small type (< 0xfd: a one-byte BigSize) holding a tu32/tu64."""
    raw = _tu(value)
    return bytes((tlv_type, len(raw))) + raw


def forward_hop_payload(amt_to_forward: int, outgoing_cltv_value: int, short_channel_id: int) -> bytes:
    """An intermediate hop's payload bytes (BOLT #4: "For every non-final node: MUST include
    `short_channel_id`", with `amt_to_forward` and `outgoing_cltv_value`)."""
    return encode_hop_payload(
        HopPayload(
            amt_to_forward=Msat(amt_to_forward),
            outgoing_cltv_value=outgoing_cltv_value,
            short_channel_id=short_channel_id,
        )
    )


def final_hop_payload(
    amt_to_forward: int,
    outgoing_cltv_value: int,
    payment_secret: bytes | None = None,
    total_msat: int | None = None,
    payment_metadata: bytes | None = None,
    keysend_preimage: bytes | None = None,
    extra_tlvs: tuple[tuple[int, bytes], ...] = (),
) -> bytes:
    """The final hop's payload bytes.  BOLT #4: "if the recipient provided `payment_secret`: MUST
    include `payment_data` ... MUST set `total_msat` to the total amount it will send" (defaults to
    `amt_to_forward`, a single-part payment)."""
    if payment_secret is None and total_msat is not None:
        raise ValueError("total_msat travels in payment_data, which needs payment_secret")
    if payment_secret is not None and total_msat is None:
        total_msat = amt_to_forward
    if (payment_metadata is None and keysend_preimage is None and not extra_tlvs and type(amt_to_forward) is int
            and type(outgoing_cltv_value) is int and 0 <= amt_to_forward < 1 << 64
            and 0 <= outgoing_cltv_value < 1 << 32):
        # The usual final hop (a sendpay's): written out directly, ~10x cheaper than the generated TLV codec; the
        # same bytes (tests/unit/test_onion_payload.py compares the two). Anything else takes the codec.
        if payment_secret is None:
            return _tu_record(TLV_AMT_TO_FORWARD, amt_to_forward) + _tu_record(TLV_OUTGOING_CLTV_VALUE,
                                                                             outgoing_cltv_value)
        if (type(payment_secret) is bytes and len(payment_secret) == 32 and type(total_msat) is int
                and 0 <= total_msat < 1 << 64):
            total = _tu(total_msat)
            return (_tu_record(TLV_AMT_TO_FORWARD, amt_to_forward)
                    + _tu_record(TLV_OUTGOING_CLTV_VALUE, outgoing_cltv_value)
                    + bytes((TLV_PAYMENT_DATA, 32 + len(total))) + payment_secret + total)
    return encode_hop_payload(
        HopPayload(
            amt_to_forward=Msat(amt_to_forward),
            outgoing_cltv_value=outgoing_cltv_value,
            payment_secret=payment_secret,
            total_msat=None if total_msat is None else Msat(total_msat),
            payment_metadata=payment_metadata,
            keysend_preimage=keysend_preimage,
            extra_tlvs=tuple(sorted(extra_tlvs)),
        )
    )


# --- decoding (reader side: every problem is InvalidOnionPayload) ------------------------------


def decode_hop_payload(raw: bytes) -> HopPayload:
    """Parse a hop's TLV payload (as `peel_onion` returns it).

    BOLT #1 TLV rules: types strictly increasing, minimal BigSize, lengths within the stream, known
    types with their exact encodings, unknown even types rejected, unknown odd types kept in
    `extra_tlvs`.  Every failure is an InvalidOnionPayload naming the TLV type and the offset of its
    record (0 when the record's value is bad), for BOLT #4's `invalid_onion_payload`.
    """
    raw = bytes(raw)
    usual = _decode_usual_final(raw)
    if usual is not None:
        return usual
    return _decode_with_codec(raw)


def _decode_usual_final(raw: bytes) -> HopPayload | None:
    """The usual final hop -- exactly amt_to_forward, outgoing_cltv_value and optionally payment_data, each
    minimally encoded -- read directly (~5x cheaper than the generated codec: one per payment received); None
    for anything else, which the codec then reads (and refuses with its error if it must). Gives what
    _decode_with_codec gives for the same bytes (tests/unit/test_onion_payload.py compares them)."""
    n = len(raw)
    if n < 4 or raw[0] != TLV_AMT_TO_FORWARD or raw[1] > 8:
        return None
    pos = 2 + raw[1]
    amount = raw[2:pos]
    # tu64/tu32 are minimal: no leading zero byte.
    if amount[:1] == b"\x00" or pos + 2 > n or raw[pos] != TLV_OUTGOING_CLTV_VALUE or raw[pos + 1] > 4:
        return None
    start = pos + 2
    pos = start + raw[pos + 1]
    cltv = raw[start:pos]
    if pos > n or cltv[:1] == b"\x00":
        return None
    secret = total = None
    if pos < n:
        if n - pos < 2 or raw[pos] != TLV_PAYMENT_DATA or not 32 <= raw[pos + 1] <= 40 or pos + 2 + raw[pos + 1] != n:
            return None
        secret = raw[pos + 2:pos + 34]
        total_raw = raw[pos + 34:]
        if total_raw[:1] == b"\x00":
            return None
        total = Msat(int.from_bytes(total_raw, "big"))
    return HopPayload(amt_to_forward=Msat(int.from_bytes(amount, "big")),
                      outgoing_cltv_value=int.from_bytes(cltv, "big"), payment_secret=secret, total_msat=total)


def _decode_with_codec(raw: bytes) -> HopPayload:
    try:
        wire = decode_tlv_stream("payload", raw, (TLV_KEYSEND_PREIMAGE,))
    except TlvError as e:
        raise InvalidOnionPayload(str(e), e.tlv_type or 0, e.offset or 0) from None
    except DecodeError as e:  # not reached: the stream decoder reports record errors as TlvError
        raise InvalidOnionPayload(str(e), 0, 0) from None
    keysend = None
    extra = []
    for tlv_type, value in wire.unknown:
        if tlv_type == TLV_KEYSEND_PREIMAGE:
            if len(value) != 32:
                raise InvalidOnionPayload(f"TLV {tlv_type}: {len(value)} bytes, expected 32", tlv_type, 0)
            keysend = value
        else:
            extra.append((tlv_type, value))
    data = wire.payment_data

    def msat(value: int | None) -> Msat | None:
        return None if value is None else Msat(value)

    return HopPayload(
        amt_to_forward=msat(wire.amt_to_forward),
        outgoing_cltv_value=wire.outgoing_cltv_value,
        short_channel_id=None if wire.short_channel_id is None else int(wire.short_channel_id),
        payment_secret=None if data is None else data.payment_secret,
        total_msat=None if data is None else Msat(data.total_msat),
        encrypted_recipient_data=wire.encrypted_recipient_data,
        current_path_key=wire.current_path_key,
        payment_metadata=wire.payment_metadata,
        total_amount_msat=msat(wire.total_amount_msat),
        keysend_preimage=keysend,
        extra_tlvs=tuple(extra),
    )


def check_hop_payload(payload: HopPayload, *, is_final: bool, path_key_in_htlc: bool = False) -> None:
    """Apply BOLT 4's reader requirements for the TLV `payload`.

    `is_final` comes from the onion (all-zero next HMAC); `path_key_in_htlc` is whether the incoming
    `update_add_htlc` carried a `blinding_point`/`path_key`.  Decrypting `encrypted_recipient_data`
    (route blinding) is not done here; only the presence rules are checked.  Raises
    InvalidOnionPayload naming the offending (or missing) TLV type; offset 0 for a missing field.
    """
    present = set(payload.present_types())

    def missing(tlv_type: int, what: str) -> InvalidOnionPayload:
        return InvalidOnionPayload(f"{what} is missing", tlv_type, 0)

    if payload.encrypted_recipient_data is not None:
        # BOLT #4: "If `encrypted_recipient_data` is present: If `blinding_point` is set in the
        # incoming `update_add_htlc`: MUST return an error if `current_blinding_point` is present.
        # Otherwise: MUST return an error if `current_blinding_point` is not present."
        if path_key_in_htlc and payload.current_path_key is not None:
            raise InvalidOnionPayload("current_path_key alongside an HTLC path_key", TLV_CURRENT_PATH_KEY, 0)
        if not path_key_in_htlc and payload.current_path_key is None:
            raise missing(TLV_CURRENT_PATH_KEY, "current_path_key")
        if not is_final:
            # "MUST return an error if the payload contains other tlv fields than
            # `encrypted_recipient_data` and `current_blinding_point`."
            allowed = {TLV_ENCRYPTED_RECIPIENT_DATA, TLV_CURRENT_PATH_KEY}
        else:
            allowed = {
                TLV_ENCRYPTED_RECIPIENT_DATA,
                TLV_CURRENT_PATH_KEY,
                TLV_AMT_TO_FORWARD,
                TLV_OUTGOING_CLTV_VALUE,
                TLV_TOTAL_AMOUNT_MSAT,
            }
        extra = sorted(present - allowed)
        if extra:
            raise InvalidOnionPayload(f"TLV {extra[0]} not allowed in a blinded hop", extra[0], 0)
        if is_final:
            # "MUST return an error if `amt_to_forward`, `outgoing_cltv_value` or
            # `total_amount_msat` are not present."
            for tlv_type, value, what in (
                (TLV_AMT_TO_FORWARD, payload.amt_to_forward, "amt_to_forward"),
                (TLV_OUTGOING_CLTV_VALUE, payload.outgoing_cltv_value, "outgoing_cltv_value"),
                (TLV_TOTAL_AMOUNT_MSAT, payload.total_amount_msat, "total_amount_msat"),
            ):
                if value is None:
                    raise missing(tlv_type, what)
        return

    # BOLT #4: "Otherwise (it is not part of a blinded route): MUST return an error if
    # `blinding_point` is set in the incoming `update_add_htlc` or `current_blinding_point` is
    # present. MUST return an error if `amt_to_forward` or `outgoing_cltv_value` are not present."
    if path_key_in_htlc:
        raise missing(TLV_ENCRYPTED_RECIPIENT_DATA, "encrypted_recipient_data (HTLC has a path_key)")
    if payload.current_path_key is not None:
        raise InvalidOnionPayload("current_path_key outside a blinded route", TLV_CURRENT_PATH_KEY, 0)
    if payload.amt_to_forward is None:
        raise missing(TLV_AMT_TO_FORWARD, "amt_to_forward")
    if payload.outgoing_cltv_value is None:
        raise missing(TLV_OUTGOING_CLTV_VALUE, "outgoing_cltv_value")
    # "if it is not the final node: MUST return an error if: `short_channel_id` is not present"
    if not is_final and payload.short_channel_id is None:
        raise missing(TLV_SHORT_CHANNEL_ID, "short_channel_id")

