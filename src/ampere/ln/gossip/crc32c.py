"""CRC32C (Castagnoli), as BOLT #7 uses it for `channel_update` checksums.

BOLT #7: "The checksum of a `channel_update` is the CRC32C checksum as specified in
[RFC3720](https://tools.ietf.org/html/rfc3720#appendix-B.4) of this `channel_update` without its
`signature` and `timestamp` fields."

A table-driven, reflected implementation of the polynomial 0x1EDC6F41 (reversed 0x82F63B78), with
the usual initial value and final xor of 0xFFFFFFFF.  Checked against RFC 3720 appendix B.4 and
the "123456789" check value 0xE3069283 in tests/unit/test_gossip_queries.py.
"""

from __future__ import annotations

_POLY_REVERSED = 0x82F63B78


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY_REVERSED if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C of `data`; pass a previous result as `crc` to continue over several pieces."""
    table = _TABLE
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
