"""The fundamental types of BOLT #1 ("Fundamental Types") and how each one is read and written.

Each type is a `FieldType` object: `decode(data, pos, end) -> (value, new_pos)` reads one value from
`data[pos:end]`, `encode(value) -> bytes` writes one, and `check(value)` validates and normalises a
value given to the encoder (raising `EncodeError`).  The codec (codec.py) looks them up by the name
the spec CSV uses (`TYPES["u64"]`).

Python representations:
  byte, u8, s8, u16 ... s64, tu16/tu32/tu64, bigsize      -> int
  chain_hash, channel_id, sha256, secret, point32         -> bytes (32)
  point                                                   -> bytes (33, a valid compressed point)
  signature, bip340sig                                    -> bytes (64)
  short_channel_id                                        -> ShortChannelId (an int with BxTxO helpers)
  sciddir_or_pubkey                                       -> SciddirOrPubkey
  utf8                                                    -> only in arrays, which decode to `str`
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import coincurve

from ampere.primitives.bigsize import BigSizeError, decode_bigsize, encode_bigsize
from ampere.primitives.crypto import SECP256K1_ORDER

from .errors import EncodeError, InvalidValueError, TruncatedError

# Order of the secp256k1 group: a compact signature's r and s must both be below it.


class ShortChannelId(int):
    """BOLT #7: block height (3 bytes), transaction index (3 bytes), output index (2 bytes)."""

    __slots__ = ()

    def __new__(cls, value: int = 0) -> "ShortChannelId":
        if not 0 <= value < 1 << 64:
            raise ValueError(f"short_channel_id out of range: {value}")
        return super().__new__(cls, value)

    @classmethod
    def from_parts(cls, block: int, txindex: int, output: int) -> "ShortChannelId":
        if not (0 <= block < 1 << 24 and 0 <= txindex < 1 << 24 and 0 <= output < 1 << 16):
            raise ValueError(f"short_channel_id part out of range: {block}x{txindex}x{output}")
        return cls((block << 40) | (txindex << 16) | output)

    @classmethod
    def from_str(cls, text: str) -> "ShortChannelId":
        """Parse CLN's "BLOCKxTXINDEXxOUTPUT" form, e.g. "103x1x0"."""
        parts = text.split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"not a short_channel_id: {text!r}")
        return cls.from_parts(int(parts[0]), int(parts[1]), int(parts[2]))

    @property
    def block(self) -> int:
        return int(self) >> 40

    @property
    def txindex(self) -> int:
        return (int(self) >> 16) & 0xFFFFFF

    @property
    def output(self) -> int:
        return int(self) & 0xFFFF

    def __str__(self) -> str:
        return f"{self.block}x{self.txindex}x{self.output}"

    def __repr__(self) -> str:
        return f"ShortChannelId('{self}')"


@dataclass(frozen=True)
class SciddirOrPubkey:
    """BOLT #1 `sciddir_or_pubkey`: a node named by public key, or by one end of a channel.

    Exactly one of `pubkey` (33 bytes) or (`scid`, `direction` 0/1) is set.  Direction 0 means
    `node_id_1` of the channel's `channel_announcement`, 1 means `node_id_2`.
    """

    pubkey: bytes | None = None
    scid: ShortChannelId | None = None
    direction: int | None = None

    def __post_init__(self) -> None:
        if self.pubkey is not None:
            if self.scid is not None or self.direction is not None:
                raise ValueError("sciddir_or_pubkey: give a pubkey or an scid+direction, not both")
        elif self.scid is None or self.direction not in (0, 1):
            raise ValueError("sciddir_or_pubkey: need a pubkey, or an scid and a direction of 0 or 1")
        elif not isinstance(self.scid, ShortChannelId):
            object.__setattr__(self, "scid", ShortChannelId(self.scid))


class FieldType:
    """One fundamental type.  `size` is the fixed encoded size, or None if it varies."""

    name: str = ""
    size: int | None = None
    # True for the truncated integers: they take the rest of their TLV record.
    takes_rest: bool = False

    def decode(self, data: bytes, pos: int, end: int) -> tuple[Any, int]:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def check(self, value: Any) -> Any:
        return value

    def __repr__(self) -> str:
        return f"<wire type {self.name}>"


def _need(data: bytes, pos: int, end: int, n: int, what: str) -> None:
    if pos + n > end:
        raise TruncatedError(f"{what}: need {n} bytes, {max(end - pos, 0)} left")


class UnsignedInt(FieldType):
    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.limit = 1 << (8 * size)

    def decode(self, data: bytes, pos: int, end: int) -> tuple[int, int]:
        size = self.size
        assert size is not None
        _need(data, pos, end, size, self.name)
        return int.from_bytes(data[pos : pos + size], "big"), pos + size

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.limit:
            raise EncodeError(f"{self.name}: {value!r} is not an integer in [0, {self.limit})")
        return value

    def encode(self, value: int) -> bytes:
        assert self.size is not None
        return self.check(value).to_bytes(self.size, "big")


class SignedInt(FieldType):
    """BOLT #1: "Signed integers use standard big-endian two's complement representation"."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.low, self.high = -(1 << (8 * size - 1)), 1 << (8 * size - 1)

    def decode(self, data: bytes, pos: int, end: int) -> tuple[int, int]:
        size = self.size
        assert size is not None
        _need(data, pos, end, size, self.name)
        return int.from_bytes(data[pos : pos + size], "big", signed=True), pos + size

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value < self.high:
            raise EncodeError(f"{self.name}: {value!r} is not an integer in [{self.low}, {self.high})")
        return value

    def encode(self, value: int) -> bytes:
        assert self.size is not None
        return self.check(value).to_bytes(self.size, "big", signed=True)


class TruncatedUInt(FieldType):
    """BOLT #1: "For the final value in TLV records, truncated integers may be used. Leading zeros in
    truncated integers MUST be omitted" -- so a leading zero byte is a decoding failure."""

    takes_rest = True

    def __init__(self, name: str, max_size: int) -> None:
        self.name, self.max_size = name, max_size
        self.limit = 1 << (8 * max_size)

    def decode(self, data: bytes, pos: int, end: int) -> tuple[int, int]:
        n = end - pos
        if n > self.max_size:
            raise InvalidValueError(f"{self.name}: {n} bytes is longer than {self.max_size}")
        if n and data[pos] == 0:
            raise InvalidValueError(f"{self.name}: not minimally encoded (leading zero)")
        return int.from_bytes(data[pos:end], "big"), end

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.limit:
            raise EncodeError(f"{self.name}: {value!r} is not an integer in [0, {self.limit})")
        return value

    def encode(self, value: int) -> bytes:
        value = self.check(value)
        return value.to_bytes((value.bit_length() + 7) // 8, "big")


class BigSizeType(FieldType):
    name = "bigsize"

    def decode(self, data: bytes, pos: int, end: int) -> tuple[int, int]:
        if pos >= end:
            raise TruncatedError("bigsize: EOF")
        try:
            value, new_pos = decode_bigsize(data, pos)
        except BigSizeError as e:
            if "canonical" in str(e):
                raise InvalidValueError(f"bigsize: {e}") from None
            raise TruncatedError(f"bigsize: {e}") from None
        if new_pos > end:
            raise TruncatedError("bigsize: unexpected EOF")
        return value, new_pos

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
            raise EncodeError(f"bigsize: {value!r} is not an integer in [0, 2^64)")
        return value

    def encode(self, value: int) -> bytes:
        return encode_bigsize(self.check(value))


class FixedBytes(FieldType):
    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size

    def decode(self, data: bytes, pos: int, end: int) -> tuple[bytes, int]:
        size = self.size
        assert size is not None
        _need(data, pos, end, size, self.name)
        return self.validate(bytes(data[pos : pos + size])), pos + size

    def validate(self, raw: bytes) -> bytes:
        return raw

    def check(self, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != self.size:
            raise EncodeError(f"{self.name}: need {self.size} bytes, got {value!r}")
        value = bytes(value)
        try:
            return self.validate(value)
        except InvalidValueError as e:
            raise EncodeError(str(e)) from None

    def encode(self, value: bytes) -> bytes:
        return self.check(value)


class PointType(FixedBytes):
    """A 33-byte compressed secp256k1 point, checked to be on the curve (BOLT #1 appendix B:
    "`n1`s `node_id` is not a valid point" must fail)."""

    def __init__(self) -> None:
        super().__init__("point", 33)

    def validate(self, raw: bytes) -> bytes:
        if raw[0] not in (2, 3):
            raise InvalidValueError(f"point: bad prefix byte {raw[0]:#x}")
        try:
            coincurve.PublicKey(raw)
        except ValueError:
            raise InvalidValueError(f"point: {raw.hex()} is not on the curve") from None
        return raw


class SignatureType(FixedBytes):
    """A 64-byte compact ECDSA signature (r || s); r and s must be below the group order, as
    secp256k1_ecdsa_signature_parse_compact requires."""

    def __init__(self) -> None:
        super().__init__("signature", 64)

    def validate(self, raw: bytes) -> bytes:
        if int.from_bytes(raw[:32], "big") >= SECP256K1_ORDER or int.from_bytes(raw[32:], "big") >= SECP256K1_ORDER:
            raise InvalidValueError("signature: r or s overflows the group order")
        return raw


class ShortChannelIdType(FieldType):
    name = "short_channel_id"
    size = 8

    def decode(self, data: bytes, pos: int, end: int) -> tuple[ShortChannelId, int]:
        _need(data, pos, end, 8, self.name)
        return ShortChannelId(int.from_bytes(data[pos : pos + 8], "big")), pos + 8

    def check(self, value: Any) -> ShortChannelId:
        if isinstance(value, str):
            return ShortChannelId.from_str(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
            raise EncodeError(f"short_channel_id: {value!r} is not a 64-bit integer")
        return value if isinstance(value, ShortChannelId) else ShortChannelId(value)

    def encode(self, value: int) -> bytes:
        return int(self.check(value)).to_bytes(8, "big")


class SciddirOrPubkeyType(FieldType):
    name = "sciddir_or_pubkey"

    def decode(self, data: bytes, pos: int, end: int) -> tuple[SciddirOrPubkey, int]:
        _need(data, pos, end, 1, self.name)
        first = data[pos]
        if first in (0, 1):
            scid, new_pos = ShortChannelIdType().decode(data, pos + 1, end)
            return SciddirOrPubkey(scid=scid, direction=first), new_pos
        if first in (2, 3):
            point, new_pos = POINT.decode(data, pos, end)
            return SciddirOrPubkey(pubkey=point), new_pos
        raise InvalidValueError(f"sciddir_or_pubkey: bad first byte {first:#x}")

    def check(self, value: Any) -> SciddirOrPubkey:
        if not isinstance(value, SciddirOrPubkey):
            raise EncodeError(f"sciddir_or_pubkey: need a SciddirOrPubkey, got {value!r}")
        if value.pubkey is not None:
            POINT.check(value.pubkey)
        return value

    def encode(self, value: SciddirOrPubkey) -> bytes:
        value = self.check(value)
        if value.pubkey is not None:
            return value.pubkey
        assert value.scid is not None and value.direction is not None
        return bytes([value.direction]) + int(value.scid).to_bytes(8, "big")


class Utf8Type(UnsignedInt):
    """BOLT #1 `utf8`: "a byte as part of a UTF-8 string".  Arrays of it decode to `str`."""

    def __init__(self) -> None:
        super().__init__("utf8", 1)


POINT = PointType()

TYPES: dict[str, FieldType] = {
    "byte": UnsignedInt("byte", 1),
    "u8": UnsignedInt("u8", 1),
    "u16": UnsignedInt("u16", 2),
    "u32": UnsignedInt("u32", 4),
    "u64": UnsignedInt("u64", 8),
    "s8": SignedInt("s8", 1),
    "s16": SignedInt("s16", 2),
    "s32": SignedInt("s32", 4),
    "s64": SignedInt("s64", 8),
    "tu16": TruncatedUInt("tu16", 2),
    "tu32": TruncatedUInt("tu32", 4),
    "tu64": TruncatedUInt("tu64", 8),
    "bigsize": BigSizeType(),
    "chain_hash": FixedBytes("chain_hash", 32),
    "channel_id": FixedBytes("channel_id", 32),
    "sha256": FixedBytes("sha256", 32),
    "secret": FixedBytes("secret", 32),
    "point32": FixedBytes("point32", 32),
    "point": POINT,
    "signature": SignatureType(),
    "bip340sig": FixedBytes("bip340sig", 64),
    "short_channel_id": ShortChannelIdType(),
    "sciddir_or_pubkey": SciddirOrPubkeyType(),
    "utf8": Utf8Type(),
}
