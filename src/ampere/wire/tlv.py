"""The record layer of BOLT #1 TLV streams: splitting a stream into (type, value) records and joining
records back, with every rule that does not depend on what the records mean.  The codec decodes
record values by their stream's schema on top of this.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from ampere.primitives.bigsize import BigSizeError, decode_bigsize, encode_bigsize

from .errors import EncodeError, TlvError, TlvOrderError, UnknownEvenTlvError


def _read_bigsize(data: bytes, pos: int, end: int, what: str, stream: str) -> tuple[int, int]:
    if pos >= end:
        raise TlvError(f"{stream}: {what} truncated")
    try:
        value, new_pos = decode_bigsize(data, pos)
    except BigSizeError as e:
        # BOLT #1: "if a `type` or `length` is not minimally encoded: MUST fail to parse the `tlv_stream`."
        raise TlvError(f"{stream}: {what}: {e}") from None
    if new_pos > end:
        raise TlvError(f"{stream}: {what} truncated")
    return value, new_pos


def split_tlv_stream(
    data: bytes, pos: int, end: int, known_types: Container[int], stream: str = "tlv_stream"
) -> list[tuple[int, int, int]]:
    """Split `data[pos:end]` into records, returned as (type, value_start, value_end) offsets.

    Enforces BOLT #1's receiving rules: minimal type and length, strictly increasing types, lengths
    within the stream, and unknown even types rejected.  Unknown odd records are returned too; the
    caller keeps them (they round-trip) rather than interpreting them.
    """
    records: list[tuple[int, int, int]] = []
    last_type = -1
    start = pos
    while pos < end:  # BOLT #1: "if zero bytes remain before parsing a `type`: MUST stop parsing"
        record_at = pos - start
        if pos + 1 < end and data[pos] < 0xFD and data[pos + 1] < 0xFD:
            # The usual case, a one-byte type and a one-byte length (always minimal).
            tlv_type, length = data[pos], data[pos + 1]
            pos += 2
        else:
            try:
                tlv_type, pos = _read_bigsize(data, pos, end, "type", stream)
                length, pos = _read_bigsize(data, pos, end, "length", stream)
            except TlvError as e:
                # A record header that does not parse is blamed on the last good record (as CLN does).
                raise e.at(max(last_type, 0), record_at) from None
        # BOLT #1: "if decoded `type`s are not strictly-increasing (including situations when two or
        # more occurrences of the same `type` are met): MUST fail to parse the `tlv_stream`."
        if tlv_type <= last_type:
            raise TlvOrderError(f"{stream}: type {tlv_type} after {last_type}: not strictly increasing").at(
                tlv_type, record_at)
        last_type = tlv_type
        # BOLT #1: "if `length` exceeds the number of bytes remaining in the message: MUST fail"
        if length > end - pos:
            raise TlvError(f"{stream}: type {tlv_type} length {length} exceeds the {end - pos} bytes left").at(
                tlv_type, record_at)
        if tlv_type not in known_types and tlv_type % 2 == 0:
            raise UnknownEvenTlvError(tlv_type, stream, record_at)
        records.append((tlv_type, pos, pos + length))
        pos += length
    return records


def encode_tlv_record(tlv_type: int, value: bytes) -> bytes:
    return encode_bigsize(tlv_type) + encode_bigsize(len(value)) + value


def join_tlv_records(records: Iterable[tuple[int, bytes]]) -> bytes:
    """Serialize records, which must already be in strictly increasing type order.

    BOLT #1: the sender "MUST order `tlv_record`s in a `tlv_stream` by strictly-increasing `type`".
    """
    out = bytearray()
    last_type = -1
    for tlv_type, value in records:
        if not isinstance(tlv_type, int) or tlv_type < 0 or tlv_type >= 1 << 64:
            raise EncodeError(f"bad TLV type {tlv_type!r}")
        if tlv_type <= last_type:
            raise EncodeError(f"TLV type {tlv_type} after {last_type}: not strictly increasing")
        last_type = tlv_type
        out += encode_tlv_record(tlv_type, bytes(value))
    return bytes(out)
