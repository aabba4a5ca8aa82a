"""Bech32 and bech32m (BIP173, BIP350), and segwit addresses.

BOLT 11 invoices use plain bech32 without BIP173's 90-character limit, so `bech32_decode` takes a
`max_length` (None for no limit).
"""

from __future__ import annotations

from enum import Enum

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV = {c: i for i, c in enumerate(CHARSET)}
_BECH32M_CONST = 0x2BC830A3


class Encoding(Enum):
    BECH32 = 1
    BECH32M = 2


class Bech32Error(ValueError):
    pass


_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
# The generator XORs for every value of the 5 top bits, so each step is one lookup (BIP173's loop
# over the bits, precomputed): invoices are long and this is most of their decode time.


def _gen_for(top: int) -> int:
    acc = 0
    for i in range(5):
        if (top >> i) & 1:
            acc ^= _GEN[i]
    return acc


_GEN_TABLE = tuple(_gen_for(top) for top in range(32))


def _polymod(values) -> int:
    chk = 1
    table = _GEN_TABLE
    for v in values:
        chk = ((chk & 0x1FFFFFF) << 5) ^ v ^ table[chk >> 25]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _checksum(hrp: str, data: list[int], spec: Encoding) -> list[int]:
    const = 1 if spec is Encoding.BECH32 else _BECH32M_CONST
    pm = _polymod(_hrp_expand(hrp) + list(data) + [0] * 6) ^ const
    return [(pm >> 5 * (5 - i)) & 31 for i in range(6)]


def bech32_encode(hrp: str, data: list[int], spec: Encoding = Encoding.BECH32) -> str:
    combined = list(data) + _checksum(hrp, data, spec)
    return hrp + "1" + "".join(CHARSET[d] for d in combined)


def bech32_decode(text: str, max_length: int | None = 90) -> tuple[str, list[int], Encoding]:
    """Return (hrp, 5-bit data without checksum, encoding).  Raises Bech32Error."""
    # Characters 33..126 only: ASCII, printable, and no space.
    if not (text.isascii() and text.isprintable()) or " " in text:
        raise Bech32Error("invalid character")
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise Bech32Error("missing separator or too short")
    if max_length is not None and len(text) > max_length:
        raise Bech32Error("too long")
    hrp = text[:pos]
    try:
        data = [_CHARSET_REV[c] for c in text[pos + 1 :]]
    except KeyError:
        raise Bech32Error("invalid data character") from None
    const = _polymod(_hrp_expand(hrp) + data)
    if const == 1:
        spec = Encoding.BECH32
    elif const == _BECH32M_CONST:
        spec = Encoding.BECH32M
    else:
        raise Bech32Error("bad checksum")
    return hrp, data[:-6], spec


def convertbits(data, frombits: int, tobits: int, pad: bool = True) -> list[int]:
    acc = 0
    bits = 0
    ret: list[int] = []
    maxv = (1 << tobits) - 1
    max_acc = (1 << (frombits + tobits - 1)) - 1
    for value in data:
        if value < 0 or (value >> frombits):
            raise Bech32Error("invalid value for conversion")
        acc = ((acc << frombits) | value) & max_acc
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            ret.append((acc >> bits) & maxv)
    if pad:
        if bits:
            ret.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise Bech32Error("invalid padding")
    return ret


def decode_segwit_address(hrp: str, addr: str) -> tuple[int, bytes]:
    """Return (witness version, witness program) for an address of network `hrp`."""
    hrpgot, data, spec = bech32_decode(addr)
    if hrpgot != hrp:
        raise Bech32Error(f"address is for network '{hrpgot}', not '{hrp}'")
    if not data:
        raise Bech32Error("empty data")
    prog = bytes(convertbits(data[1:], 5, 8, False))
    ver = data[0]
    if len(prog) < 2 or len(prog) > 40 or ver > 16:
        raise Bech32Error("invalid witness program")
    if ver == 0 and len(prog) not in (20, 32):
        raise Bech32Error("invalid v0 program length")
    if (ver == 0) != (spec is Encoding.BECH32):
        raise Bech32Error("wrong checksum variant for witness version")
    return ver, prog


def encode_segwit_address(hrp: str, witver: int, witprog: bytes) -> str:
    spec = Encoding.BECH32 if witver == 0 else Encoding.BECH32M
    addr = bech32_encode(hrp, [witver] + convertbits(witprog, 8, 5), spec)
    decode_segwit_address(hrp, addr)
    return addr
