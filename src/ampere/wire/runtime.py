"""Run-time support for the generated message modules (`generated/`, written by `generate.py`).

The generated classes are plain slotted classes whose `__init__`, encoder and decoder are written out
in the generated source: building them at import costs almost nothing, where `@dataclass` compiles
six methods per class at run time (about 70 ms for the ~120 classes, most of the daemon's start).
They still behave as frozen dataclasses: `declare_dataclass` gives each the `__dataclass_fields__`
that `dataclasses.fields`, `replace`, `asdict` and `is_dataclass` read, and `WireStruct` supplies the
value semantics (`==`, `hash`, `repr`, immutability, pickling) from the field list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from .errors import (
    DecodeError,
    EncodeError,
    InvalidValueError,
    TlvError,
    TruncatedError,
)
from .types import SECP256K1_ORDER, TYPES, ShortChannelId

T = TypeVar("T")


class WireStruct:
    """Base of every generated class: an immutable record of `_FIELDS`."""

    __slots__ = ()
    _FIELDS: ClassVar[tuple[str, ...]] = ()
    NAME: ClassVar[str] = ""
    if TYPE_CHECKING:
        # declare_dataclass sets it on every generated class: to a type checker they are dataclasses, so
        # `dataclasses.replace` and `fields` on a message type-check.
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self._FIELDS])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{self.__class__.__qualname__}({inner})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self._values())


class Message(WireStruct):
    """A peer message or an onion failure: a 2-byte type (failure code), then its fields."""

    __slots__ = ()
    TYPE: ClassVar[int] = 0
    # BOLT #4: the origin node "MUST ignore any extra bytes in `failuremsg`": an onion failure's
    # trailing bytes that are no valid TLV stream are dropped; a peer message's are an error.
    STRICT_EXTENSION: ClassVar[bool] = True

    def to_bytes(self) -> bytes:
        """The message with its 2-byte type (peer messages) or failure code (onion failures)."""
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = bytes(data)
        if len(data) < 2:
            raise TruncatedError(f"message of {len(data)} bytes has no type")
        got = int.from_bytes(data[:2], "big")
        if got != cls.TYPE:
            raise DecodeError(f"expected {cls.NAME} ({cls.TYPE}), got type {got}")
        return cls._decode(data, 2, len(data), cls.STRICT_EXTENSION)  # type: ignore[attr-defined]


def declare_dataclass(cls: type) -> None:
    """Make `cls` (a generated class listing its fields in `_FIELDS`) a frozen dataclass to the
    `dataclasses` module's functions, without the cost of the decorator."""
    fields = {}
    for name in cls._FIELDS:  # type: ignore[attr-defined]
        f = dataclasses.field()
        f.name = name
        f.type = cls.__annotations__.get(name, Any)
        # The marker the `dataclasses` functions use to tell real fields from ClassVar/InitVar ones.
        f._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
        fields[name] = f
    cls.__dataclass_fields__ = fields  # type: ignore[attr-defined]
    cls.__match_args__ = cls._FIELDS  # type: ignore[attr-defined, misc]


# ---------------------------------------------------------------------------------------------
# Normalising constructor arguments (the decoder already gives the canonical types)


def norm_bytes(value: Any) -> Any:
    return bytes(value) if isinstance(value, (bytearray, memoryview)) else value


def norm_byte_array(value: Any) -> Any:
    return bytes(value) if isinstance(value, (bytearray, memoryview, list)) else value


def norm_scid(value: Any) -> Any:
    if isinstance(value, str):
        return ShortChannelId.from_str(value)
    return ShortChannelId(value) if type(value) is int else value


def norm_struct(cls: type[T], value: Any) -> T | Any:
    return cls(**value) if isinstance(value, dict) else value


def norm_array(value: Any, item: Callable[[Any], Any] | None) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(item(x) for x in value) if item is not None else tuple(value)
    return value


def norm_unknown(value: Any) -> Any:
    if isinstance(value, list):
        return tuple((t, bytes(b)) for t, b in value)
    return value


# ---------------------------------------------------------------------------------------------
# Decoding helpers

_set = object.__setattr__
_new = object.__new__


def make(cls: type[T], values: tuple[Any, ...]) -> T:
    """An instance of generated class `cls` from decoded values (already canonical: no normalising),
    in `_FIELDS` order."""
    obj = _new(cls)
    for name, value in zip(cls._FIELDS, values):  # type: ignore[attr-defined]
        _set(obj, name, value)
    return obj


def decode_extension(stream: Any, data: bytes, p: int, end: int, strict: bool) -> Any:
    """A message's trailing TLV stream.  `strict` is False for onion failures (BOLT #4: the origin
    node "MUST ignore any extra bytes in `failuremsg`")."""
    if p == end:
        return stream.EMPTY
    try:
        return stream._decode(data, p, end)
    except DecodeError:
        if strict:
            raise
        return stream.EMPTY


def truncated(where: str, need: int, left: int) -> TruncatedError:
    return TruncatedError(f"{where}: need {need} bytes, {max(left, 0)} left")


validate_point = TYPES["point"].validate  # type: ignore[attr-defined]
_check_signature = TYPES["signature"].validate  # type: ignore[attr-defined]
# Big-endian byte strings of equal length compare as the numbers they encode.
_ORDER = SECP256K1_ORDER.to_bytes(32, "big")


def validate_signature(raw: bytes) -> bytes:
    """A compact signature's r and s must be below the group order (as the codec's `signature` type)."""
    if raw[:32] < _ORDER and raw[32:] < _ORDER:
        return raw
    return _check_signature(raw)


def decode_utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidValueError(f"{where}: not valid UTF-8") from None


def whole_items(where: str, left: int, size: int, type_name: str) -> int:
    if left % size:
        raise DecodeError(f"{where}: {left} bytes is not a whole number of {size}-byte {type_name}")
    return left // size


def record_error(stream: str, error: DecodeError, tlv_type: int) -> TlvError:
    """A known TLV record that does not decode.  BOLT #1: "if `length` is not exactly equal to that
    required for the known encoding for `type`: MUST fail to parse the `tlv_stream`", and likewise
    for non-minimal or otherwise invalid values."""
    if isinstance(error, TruncatedError):
        return TlvError(f"{stream}: record {tlv_type} shorter than its encoding ({error})").at(tlv_type, None)
    return TlvError(f"{stream}: record {tlv_type}: {error}").at(tlv_type, None)


def record_too_long(where: str, tlv_type: int) -> TlvError:
    return TlvError(f"{where}: record longer than its encoding").at(tlv_type, None)


# ---------------------------------------------------------------------------------------------
# Encoding helpers


def need_instance(value: Any, cls: type, where: str) -> None:
    if not isinstance(value, cls):
        raise EncodeError(f"{where}: need a {cls.__name__}, got {value!r}")


def array_len(value: Any, where: str) -> int:
    try:
        return len(value)
    except TypeError:
        raise EncodeError(f"{where}: need a sequence, got {value!r}") from None


def text_len(value: Any, where: str) -> int:
    return len(value.encode("utf-8")) if isinstance(value, str) else array_len(value, where)


def fixed_len(n: int, count: int, where: str) -> None:
    if n != count:
        raise EncodeError(f"{where}: need exactly {count} elements, got {n}")


def same_len(n: int, other: int, length_field: str, where: str) -> None:
    if n != other:
        raise EncodeError(f"{where}: length {n} disagrees with another array sized by {length_field}")


def encode_length(encode: Callable[[int], bytes], n: int, where: str) -> bytes:
    try:
        return encode(n)
    except EncodeError as e:
        raise EncodeError(f"{where}: array too long for its length field ({e})") from None


def encode_text(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise EncodeError(f"{where}: need a str, got {value!r}")
    return value.encode("utf-8")


def encode_byte_array(value: Any, where: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise EncodeError(f"{where}: need bytes, got {value!r}")
    return bytes(value)


def encode_items(value: Any, encode: Callable[[Any], bytes], where: str) -> bytes:
    if not isinstance(value, (tuple, list)):
        raise EncodeError(f"{where}: need a sequence, got {value!r}")
    return b"".join([encode(item) for item in value])


def encode_struct_items(value: Any, cls: type, where: str) -> bytes:
    if not isinstance(value, (tuple, list)):
        raise EncodeError(f"{where}: need a sequence, got {value!r}")
    out = []
    for item in value:
        need_instance(item, cls, where)
        out.append(item._encode())
    return b"".join(out)


_encode_signature = TYPES["signature"].encode


def encode_signature(value: Any) -> bytes:
    if type(value) is bytes and len(value) == 64 and value[:32] < _ORDER and value[32:] < _ORDER:
        return value
    return _encode_signature(value)  # the general check: normalising, or raising EncodeError


def encode_signatures(value: Any, where: str) -> bytes:
    if type(value) is tuple:
        return b"".join([encode_signature(item) for item in value])
    return encode_items(value, encode_signature, where)


def encode_flag(value: Any, where: str) -> bytes:
    if value is not True:
        raise EncodeError(f"{where}: a record without fields takes True (present) or None, got {value!r}")
    return b""


def check_unknown(unknown: Iterable[tuple[int, bytes]], known: frozenset[int], stream: str) -> list[tuple[int, bytes]]:
    records = []
    for tlv_type, raw in unknown:
        if tlv_type in known:
            raise EncodeError(f"{stream}: unknown record {tlv_type} is a known type")
        records.append((tlv_type, raw))
    return records
