"""The message codec's entry points, over the classes generated from the spec CSVs (`generated/`).

Every message class has `TYPE`, `NAME`, `msg.to_bytes()` and `Cls.from_bytes(data)` (type included);
the functions here dispatch on the type number.  See schema.py for the naming of classes and fields
and generate.py for how the classes are written.

Values: integers are `int`, byte arrays `bytes`, `utf8` arrays `str`, other arrays tuples,
`short_channel_id` a `ShortChannelId`, `point` 33 bytes (validated).  Every message has a `tlvs`
field (its extension stream; messages the spec gives none get an `ExtensionTlvs` without known records)
so that a received message re-encodes to the same bytes, which gossip signatures need.
"""

from __future__ import annotations

import functools
from collections.abc import Container
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import DecodeError, EncodeError, TruncatedError
from .generated import bolt12_wire, onion_wire, peer_wire
from .runtime import Message, WireStruct

if TYPE_CHECKING:
    from .schema import Schema

# BOLT #4 failure code flags.
BADONION = 0x8000
PERM = 0x4000
NODE = 0x2000
UPDATE = 0x1000

_MODULES = (peer_wire, onion_wire, bolt12_wire)


@dataclass(frozen=True)
class UnknownMessage:
    """A message (or onion failure) whose type we do not know: the caller applies the odd/even rule."""

    type: int
    payload: bytes

    @property
    def is_odd(self) -> bool:
        return self.type % 2 == 1


MESSAGE_TYPES: dict[int, type[Message]] = {cls.TYPE: cls for mod in _MODULES for cls in mod.MESSAGES}
ONION_FAILURE_TYPES: dict[int, type[Message]] = {cls.TYPE: cls for mod in _MODULES for cls in mod.ONION_FAILURES}
_SUBTYPES: dict[str, type] = {name: cls for mod in _MODULES for name, cls in mod.SUBTYPES.items()}
_STREAMS: dict[str, Any] = {name: cls for mod in _MODULES for name, cls in mod.STREAMS.items()}
CLASSES: dict[str, type] = {name: getattr(mod, name) for mod in _MODULES for name in mod.__all__}


def by_name(name: str) -> type:
    """The generated class for a CSV name (`"update_add_htlc"`) or class name (`"UpdateAddHtlc"`)."""
    for cls in (*MESSAGE_TYPES.values(), *ONION_FAILURE_TYPES.values()):
        if cls.NAME == name:
            return cls
    found = _SUBTYPES.get(name) or _STREAMS.get(name) or CLASSES.get(name)
    if found is None:
        raise KeyError(name)
    return found


def encode_message(msg: Any) -> bytes:
    """2-byte type, then the payload and extension.  `UnknownMessage` encodes as-is (custom messages)."""
    if isinstance(msg, UnknownMessage):
        if not 0 <= msg.type <= 0xFFFF:
            raise EncodeError(f"message type {msg.type} out of range")
        return msg.type.to_bytes(2, "big") + bytes(msg.payload)
    if not isinstance(msg, Message) or MESSAGE_TYPES.get(msg.TYPE) is not type(msg):
        raise EncodeError(f"not a peer message: {msg!r}")
    return msg.to_bytes()


def decode_message(data: bytes) -> Any:
    """Decode a peer message; an unknown type gives `UnknownMessage` (the caller applies odd/even).

    Raises a `DecodeError` (action DISCONNECT) for a malformed known message.
    """
    return _decode_in(MESSAGE_TYPES, data, strict_extension=True)


def encode_onion_failure(msg: Any) -> bytes:
    """BOLT #4 `failuremsg`: 2-byte `failure_code` and its data."""
    if isinstance(msg, UnknownMessage):
        return encode_message(msg)
    if not isinstance(msg, Message) or ONION_FAILURE_TYPES.get(msg.TYPE) is not type(msg):
        raise EncodeError(f"not an onion failure message: {msg!r}")
    return msg.to_bytes()


def decode_onion_failure(data: bytes) -> Any:
    """Decode a BOLT #4 `failuremsg`.  BOLT #4: the origin node "MUST ignore any extra bytes in
    `failuremsg`", so trailing bytes that are not a valid TLV stream are dropped, not an error."""
    return _decode_in(ONION_FAILURE_TYPES, data, strict_extension=False)


def _decode_in(table: dict[int, Any], data: bytes, strict_extension: bool) -> Any:
    data = bytes(data)
    if len(data) < 2:
        raise TruncatedError(f"message of {len(data)} bytes has no type")
    msg_type = int.from_bytes(data[:2], "big")
    cls = table.get(msg_type)
    if cls is None:
        return UnknownMessage(msg_type, data[2:])
    return cls._decode(data, 2, len(data), strict_extension)


def _stream_class(stream: str) -> Any:
    cls = _STREAMS.get(stream)
    if cls is None:
        raise KeyError(stream)
    return cls


def encode_tlv_stream(stream: str, value: Any) -> bytes:
    """Encode a named TLV stream from its generated class or a dict {record_name: value}."""
    cls = _stream_class(stream)
    if isinstance(value, dict):
        try:
            value = cls(**value)
        except TypeError as e:
            raise EncodeError(f"{stream}: {e}") from None
    if not isinstance(value, cls):
        raise EncodeError(f"{stream}: need a {cls.__name__} or a dict, got {value!r}")
    return value._encode()


def decode_tlv_stream(stream: str, data: bytes, extra_known_types: Container[int] = ()) -> Any:
    """Decode a whole buffer as the named TLV stream.

    `extra_known_types` are record types the caller understands itself (e.g. keysend's even
    record in an onion payload): they are not rejected as unknown even, and come back in `.unknown`.
    """
    cls = _stream_class(stream)
    data = bytes(data)
    return cls._decode(data, 0, len(data), extra_known_types)


def encode_subtype(value: Any) -> bytes:
    if not isinstance(value, WireStruct) or _SUBTYPES.get(value.NAME) is not type(value):
        raise EncodeError(f"not a subtype value: {value!r}")
    return value._encode()  # type: ignore[attr-defined]


def decode_subtype(name: str, data: bytes) -> Any:
    """Decode exactly one subtype value filling `data`."""
    cls = _SUBTYPES[name]
    data = bytes(data)
    value, pos = cls._decode(data, 0, len(data))  # type: ignore[attr-defined]
    if pos != len(data):
        raise DecodeError(f"{name}: {len(data) - pos} bytes left over")
    return value


@functools.cache
def pinned_schema() -> Schema:
    """The schema of the vendored CSVs with each spec's generated class as `.cls` (for tools and tests:
    the codec itself never reads the CSVs)."""
    from .schema import load_pinned_schema, record_class_name, stream_class_name

    schema = load_pinned_schema()
    for table in (schema.peer_messages, schema.onion_failures, schema.subtypes):
        for spec in table.values():
            spec.cls = by_name(spec.name)
    for stream in schema.streams.values():
        stream.cls = CLASSES[stream_class_name(stream)]
        for rec in stream.records.values():
            if len(rec.visible_fields()) > 1:
                rec.cls = CLASSES[record_class_name(stream, rec)]
    schema.classes.update(CLASSES)
    return schema
