"""BOLT 4 hop payloads: the `payload` TLV stream each hop finds in its onion layer.

`encode_hop_payload` / `decode_hop_payload` convert between `HopPayload` and the TLV bytes that
`ampere.ln.onion.create_onion` takes and `peel_onion` returns (without the BigSize length prefix,
which the onion layer handles).  `check_hop_payload` applies the BOLT 4 reader rules for an
intermediate or a final hop.  Every problem is an `InvalidOnionPayload` carrying the TLV type and
byte offset that BOLT 4's `invalid_onion_payload` failure reports.

The TLV reading here is a small hand-written codec for this one stream; it is meant to be replaced by
the generated wire codec (`ampere.wire.encode_tlv_stream("payload", ...)` /
`decode_tlv_stream("payload", raw)`) once that exists, keeping these three functions as the API.
"""

from __future__ import annotations

from dataclasses import dataclass

from ampere.ln.onion import InvalidOnionPayload
from ampere.primitives.amount import Msat
from ampere.primitives.bigsize import BigSizeError, decode_bigsize, encode_bigsize

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
        types = [t for t, _ in self._known_records()] + [t for t, _ in self.extra_tlvs]
        return sorted(types)

    def _known_records(self) -> list[tuple[int, bytes]]:
        records: list[tuple[int, bytes]] = []
        if self.amt_to_forward is not None:
            records.append((TLV_AMT_TO_FORWARD, _tu(self.amt_to_forward, 8, "amt_to_forward")))
        if self.outgoing_cltv_value is not None:
            records.append((TLV_OUTGOING_CLTV_VALUE, _tu(self.outgoing_cltv_value, 4, "outgoing_cltv_value")))
        if self.short_channel_id is not None:
            records.append((TLV_SHORT_CHANNEL_ID, _fixed_int(self.short_channel_id, 8, "short_channel_id")))
        if (self.payment_secret is None) != (self.total_msat is None):
            raise ValueError("payment_secret and total_msat go together (payment_data)")
        if self.payment_secret is not None:
            secret = _fixed_bytes(self.payment_secret, 32, "payment_secret")
            records.append((TLV_PAYMENT_DATA, secret + _tu(self.total_msat, 8, "total_msat")))
        if self.encrypted_recipient_data is not None:
            records.append((TLV_ENCRYPTED_RECIPIENT_DATA, _var_bytes(self.encrypted_recipient_data, "encrypted_recipient_data")))
        if self.current_path_key is not None:
            records.append((TLV_CURRENT_PATH_KEY, _fixed_bytes(self.current_path_key, 33, "current_path_key")))
        if self.payment_metadata is not None:
            records.append((TLV_PAYMENT_METADATA, _var_bytes(self.payment_metadata, "payment_metadata")))
        if self.total_amount_msat is not None:
            records.append((TLV_TOTAL_AMOUNT_MSAT, _tu(self.total_amount_msat, 8, "total_amount_msat")))
        if self.keysend_preimage is not None:
            records.append((TLV_KEYSEND_PREIMAGE, _fixed_bytes(self.keysend_preimage, 32, "keysend_preimage")))
        return records


# --- value encoders (sender side: bad values are programming errors, ValueError) ---------------


def _tu(value: object, width: int, name: str) -> bytes:
    """BOLT #1 truncated unsigned integer: big-endian with leading zero bytes removed."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << (8 * width):
        raise ValueError(f"{name} must be an integer in [0, 2^{8 * width})")
    return int(value).to_bytes(width, "big").lstrip(b"\x00")


def _fixed_int(value: object, width: int, name: str) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << (8 * width):
        raise ValueError(f"{name} must be an integer in [0, 2^{8 * width})")
    return int(value).to_bytes(width, "big")


def _fixed_bytes(value: object, width: int, name: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != width:
        raise ValueError(f"{name} must be {width} bytes")
    return bytes(value)


def _var_bytes(value: object, name: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError(f"{name} must be bytes")
    return bytes(value)


def encode_hop_payload(payload: HopPayload) -> bytes:
    """The TLV stream for `payload` (no length prefix), records in increasing type order."""
    records = payload._known_records()
    known = {t for t, _ in records}
    seen_extra: set[int] = set()
    for tlv_type, value in payload.extra_tlvs:
        if not isinstance(tlv_type, int) or tlv_type < 0 or tlv_type in known or tlv_type in seen_extra:
            raise ValueError(f"extra TLV type {tlv_type!r} is invalid or duplicated")
        seen_extra.add(tlv_type)
        records.append((tlv_type, _var_bytes(value, f"extra TLV {tlv_type}")))
    records.sort(key=lambda record: record[0])
    out = bytearray()
    for tlv_type, value in records:
        out += encode_bigsize(tlv_type) + encode_bigsize(len(value)) + value
    return bytes(out)


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


def _read_tu(value: bytes, width: int, tlv_type: int, offset: int) -> int:
    # BOLT #1: "if `length` is not exactly equal to that required for the known encoding for
    # `type`": fail; for truncated integers the encoding MUST be minimal (no leading zero).
    if len(value) > width:
        raise InvalidOnionPayload(f"TLV {tlv_type}: {len(value)} bytes for a tu{8 * width}", tlv_type, offset)
    if value[:1] == b"\x00":
        raise InvalidOnionPayload(f"TLV {tlv_type}: truncated integer is not minimal", tlv_type, offset)
    return int.from_bytes(value, "big")


def _read_fixed(value: bytes, width: int, tlv_type: int, offset: int) -> bytes:
    if len(value) != width:
        raise InvalidOnionPayload(f"TLV {tlv_type}: {len(value)} bytes, expected {width}", tlv_type, offset)
    return value


def decode_hop_payload(raw: bytes) -> HopPayload:
    """Parse a hop's TLV payload (as `peel_onion` returns it).

    BOLT #1 TLV rules: types strictly increasing, minimal BigSize, lengths within the stream, known
    types with their exact encodings, unknown even types rejected, unknown odd types kept in
    `extra_tlvs`.
    """
    raw = bytes(raw)
    values: dict[str, object] = {}
    extra: list[tuple[int, bytes]] = []
    pos = 0
    last_type = -1
    while pos < len(raw):
        record_start = pos
        try:
            tlv_type, pos = decode_bigsize(raw, pos)
            length, pos = decode_bigsize(raw, pos)
        except BigSizeError as exc:
            raise InvalidOnionPayload(f"TLV record header: {exc}", max(last_type, 0), record_start) from None
        if tlv_type <= last_type:
            # BOLT #1: "if decoded `type`s are not strictly-increasing (including situations when two
            # or more occurrences of the same `type` are met): MUST fail to parse the `tlv_stream`."
            raise InvalidOnionPayload(f"TLV type {tlv_type} out of order", tlv_type, record_start)
        if length > len(raw) - pos:
            raise InvalidOnionPayload(f"TLV {tlv_type}: length {length} overruns the payload", tlv_type, record_start)
        value = raw[pos : pos + length]
        pos += length
        last_type = tlv_type
        if tlv_type == TLV_AMT_TO_FORWARD:
            values["amt_to_forward"] = Msat(_read_tu(value, 8, tlv_type, record_start))
        elif tlv_type == TLV_OUTGOING_CLTV_VALUE:
            values["outgoing_cltv_value"] = _read_tu(value, 4, tlv_type, record_start)
        elif tlv_type == TLV_SHORT_CHANNEL_ID:
            values["short_channel_id"] = int.from_bytes(_read_fixed(value, 8, tlv_type, record_start), "big")
        elif tlv_type == TLV_PAYMENT_DATA:
            if len(value) < 32:
                raise InvalidOnionPayload("payment_data shorter than its payment_secret", tlv_type, record_start)
            values["payment_secret"] = value[:32]
            values["total_msat"] = Msat(_read_tu(value[32:], 8, tlv_type, record_start))
        elif tlv_type == TLV_ENCRYPTED_RECIPIENT_DATA:
            values["encrypted_recipient_data"] = value
        elif tlv_type == TLV_CURRENT_PATH_KEY:
            values["current_path_key"] = _read_fixed(value, 33, tlv_type, record_start)
        elif tlv_type == TLV_PAYMENT_METADATA:
            values["payment_metadata"] = value
        elif tlv_type == TLV_TOTAL_AMOUNT_MSAT:
            values["total_amount_msat"] = Msat(_read_tu(value, 8, tlv_type, record_start))
        elif tlv_type == TLV_KEYSEND_PREIMAGE:
            values["keysend_preimage"] = _read_fixed(value, 32, tlv_type, record_start)
        elif tlv_type % 2 == 0:
            # BOLT #1: "if `type` is even: MUST fail to parse the `tlv_stream`" (unknown even type).
            raise InvalidOnionPayload(f"unknown even TLV type {tlv_type}", tlv_type, record_start)
        else:
            extra.append((tlv_type, value))
    return HopPayload(**values, extra_tlvs=tuple(extra))  # type: ignore[arg-type]


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

