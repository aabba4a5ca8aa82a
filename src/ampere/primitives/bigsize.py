"""BigSize, the variable-length integer of BOLT 1 (big-endian, unlike Bitcoin's CompactSize).

BOLT #1: "The BigSize encoding ... values MUST be minimally encoded"; a non-minimal encoding is a
decoding failure.
"""

from __future__ import annotations


class BigSizeError(ValueError):
    """Malformed BigSize: truncated or not minimally encoded."""


def encode_bigsize(value: int) -> bytes:
    if value < 0 or value > 0xFFFF_FFFF_FFFF_FFFF:
        raise ValueError(f"BigSize out of range: {value}")
    if value < 0xFD:
        return bytes([value])
    if value <= 0xFFFF:
        return b"\xfd" + value.to_bytes(2, "big")
    if value <= 0xFFFF_FFFF:
        return b"\xfe" + value.to_bytes(4, "big")
    return b"\xff" + value.to_bytes(8, "big")


def decode_bigsize(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Return (value, new_offset).  Raises BigSizeError on EOF or a non-canonical encoding."""
    if offset >= len(data):
        raise BigSizeError("EOF")
    first = data[offset]
    if first < 0xFD:
        return first, offset + 1
    width, minimum = {0xFD: (2, 0xFD), 0xFE: (4, 0x1_0000), 0xFF: (8, 0x1_0000_0000)}[first]
    end = offset + 1 + width
    if end > len(data):
        raise BigSizeError("unexpected EOF")
    value = int.from_bytes(data[offset + 1 : end], "big")
    if value < minimum:
        raise BigSizeError("decoded bigsize is not canonical")
    return value, end
