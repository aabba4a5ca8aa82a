"""A table-driven codec for the spec's message formats: the vendored CSVs are the one source of truth.

At import, the CSVs in `csv/` (peer_wire.csv, onion_wire.csv, bolt12_wire.csv, then Ampere's ampere_patches.csv) are
read into a schema, and a frozen dataclass is generated for every message, subtype, TLV stream and
multi-field TLV record.  Encoding and decoding interpret the schema.

Naming (CSV name -> Python):
  * message `update_add_htlc`        -> class `UpdateAddHtlc`, `UpdateAddHtlc.TYPE == 128`
  * onion failure `temporary_channel_failure` -> `TemporaryChannelFailure`, `.TYPE == UPDATE | 7`
  * subtype `blinded_path`           -> `BlindedPath`
  * TLV stream `init_tlvs`           -> `InitTlvs` (a field per record, None when absent, plus
                                        `unknown`: the unknown odd records as ((type, raw bytes), ...))
  * TLV record with several fields   -> `<Stream><Record>`, e.g. `ClosingSignedTlvsFeeRange`;
    a record with one field holds that field's value directly, a record with none holds `True`.
  * fields keep their CSV names.  Length fields that only give the size of a later array
    (`len`, `flen`, `num_htlcs` ...) are not stored: the encoder derives them from the array.

Every message class has `TYPE`, `NAME`, `msg.to_bytes()` and `Cls.from_bytes(data)` (type included).

Values: integers are `int`, byte arrays `bytes`, `utf8` arrays `str`, other arrays tuples,
`short_channel_id` a `ShortChannelId`, `point` 33 bytes (validated).  Every message has a `tlvs`
field (its extension stream; messages the spec gives none get a stream without known records) so
that a received message re-encodes to the same bytes, which gossip signatures need.
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from .errors import DecodeError, EncodeError, InvalidValueError, TlvError, TruncatedError
from .tlv import join_tlv_records, split_tlv_stream
from .types import TYPES, FieldType, FixedBytes, ShortChannelId

# BOLT #4 failure code flags.
BADONION = 0x8000
PERM = 0x4000
NODE = 0x2000
UPDATE = 0x1000
_FAILURE_FLAGS = {"BADONION": BADONION, "PERM": PERM, "NODE": NODE, "UPDATE": UPDATE}

CSV_FILES = ("peer_wire.csv", "onion_wire.csv", "bolt12_wire.csv", "ampere_patches.csv")

# How many elements a field has.
SINGLE, FIXED, LENFIELD, REST = "single", "fixed", "lenfield", "rest"


class SchemaError(Exception):
    """The CSVs are inconsistent (a bug in the vendored data or a patch, found at import)."""


class OpaqueRest(FieldType):
    """A type we do not model yet (patch 03): the raw bytes up to the end of the TLV record."""

    takes_rest = True

    def __init__(self, name: str) -> None:
        self.name = name

    def decode(self, data: bytes, pos: int, end: int) -> tuple[bytes, int]:
        return bytes(data[pos:end]), end

    def check(self, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise EncodeError(f"{self.name}: need bytes, got {value!r}")
        return bytes(value)

    def encode(self, value: Any) -> bytes:
        return self.check(value)


@dataclass
class FieldSpec:
    name: str  # CSV name
    type_name: str
    count_text: str  # CSV count column: "", "32", "len", "..."
    pyname: str = ""
    elem: Any = None  # FieldType | SubtypeSpec | TlvStreamSpec, resolved after loading
    kind: str = SINGLE
    count: Any = None  # int for FIXED, length field name for LENFIELD
    implicit: bool = False  # a length field, derived from its array when encoding
    is_text: bool = False  # array of utf8 -> str
    is_bytes: bool = False  # array of byte -> bytes

    @property
    def visible(self) -> bool:
        return not self.implicit


@dataclass
class StructSpec:
    """Anything with a list of fields: a message, a subtype or a multi-field TLV record."""

    name: str
    fields: list[FieldSpec] = dataclasses.field(default_factory=list)
    cls: Any = None

    def visible_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.visible]


@dataclass
class MessageSpec(StructSpec):
    type: int = 0
    namespace: str = "peer"  # "peer" or "onion_failure"
    source: str = ""


@dataclass
class SubtypeSpec(StructSpec):
    pass


@dataclass
class TlvRecordSpec(StructSpec):
    type: int = 0
    stream: str = ""
    pyname: str = ""


@dataclass
class TlvStreamSpec:
    name: str
    records: dict[str, TlvRecordSpec] = dataclasses.field(default_factory=dict)
    by_type: dict[int, TlvRecordSpec] = dataclasses.field(default_factory=dict)
    cls: Any = None


@dataclass
class Schema:
    peer_messages: dict[str, MessageSpec] = dataclasses.field(default_factory=dict)
    onion_failures: dict[str, MessageSpec] = dataclasses.field(default_factory=dict)
    subtypes: dict[str, SubtypeSpec] = dataclasses.field(default_factory=dict)
    streams: dict[str, TlvStreamSpec] = dataclasses.field(default_factory=dict)
    opaque: dict[str, OpaqueRest] = dataclasses.field(default_factory=dict)
    classes: dict[str, type] = dataclasses.field(default_factory=dict)  # CamelCase name -> class


@dataclass(frozen=True)
class UnknownMessage:
    """A message (or onion failure) whose type we do not know: the caller applies the odd/even rule."""

    type: int
    payload: bytes

    @property
    def is_odd(self) -> bool:
        return self.type % 2 == 1


EXTENSION_STREAM = "extension"  # the stream given to messages that the spec gives none


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _pyname(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) else name


# ---------------------------------------------------------------------------------------------
# Loading the CSVs


def _parse_type_number(text: str, namespace: str) -> int:
    if namespace == "onion_failure":
        value = 0
        for part in text.split("|"):
            value |= _FAILURE_FLAGS[part] if part in _FAILURE_FLAGS else int(part)
        return value
    return int(text)


def load_schema(lines_by_file: Iterable[tuple[str, Iterable[str]]]) -> Schema:
    schema = Schema()
    messages: dict[str, MessageSpec] = {}
    peer_overrides: list[str] = []
    for filename, lines in lines_by_file:
        namespace = "onion_failure" if filename == "onion_wire.csv" else "peer"
        for lineno, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(",")
            kind, args = parts[0], parts[1:]
            where = f"{filename}:{lineno}"
            if kind == "msgtype":
                name = args[0]
                if name in messages:
                    raise SchemaError(f"{where}: message {name} defined twice")
                messages[name] = MessageSpec(name=name, type=_parse_type_number(args[1], namespace),
                                             namespace=namespace, source=filename)
            elif kind == "msgdata":
                msg, fname, ftype, count = args[0], args[1], args[2], args[3] if len(args) > 3 else ""
                if msg not in messages:
                    raise SchemaError(f"{where}: msgdata for unknown message {msg}")
                messages[msg].fields.append(FieldSpec(fname, ftype, count))
            elif kind == "subtype":
                schema.subtypes[args[0]] = SubtypeSpec(name=args[0])
            elif kind == "subtypedata":
                sub, fname, ftype, count = args[0], args[1], args[2], args[3] if len(args) > 3 else ""
                schema.subtypes[sub].fields.append(FieldSpec(fname, ftype, count))
            elif kind == "tlvtype":
                stream_name, rec_name, rec_type = args[0], args[1], int(args[2])
                stream = schema.streams.setdefault(stream_name, TlvStreamSpec(stream_name))
                if rec_name in stream.records or rec_type in stream.by_type:
                    raise SchemaError(f"{where}: record {rec_name}/{rec_type} defined twice in {stream_name}")
                rec = TlvRecordSpec(name=rec_name, type=rec_type, stream=stream_name, pyname=_pyname(rec_name))
                stream.records[rec_name] = rec
                stream.by_type[rec_type] = rec
            elif kind == "tlvdata":
                stream_name, rec_name, fname, ftype = args[0], args[1], args[2], args[3]
                count = args[4] if len(args) > 4 else ""
                schema.streams[stream_name].records[rec_name].fields.append(FieldSpec(fname, ftype, count))
            elif kind == "ampere_peer_message":
                peer_overrides.append(args[0])
            elif kind == "ampere_opaque_type":
                schema.opaque[args[0]] = OpaqueRest(args[0])
            else:
                raise SchemaError(f"{where}: unknown line kind {kind!r}")
    for name in peer_overrides:
        messages[name].namespace = "peer"
    for name, msg in messages.items():
        target = schema.peer_messages if msg.namespace == "peer" else schema.onion_failures
        target[name] = msg
    schema.streams[EXTENSION_STREAM] = TlvStreamSpec(EXTENSION_STREAM)
    _resolve(schema)
    _generate_classes(schema)
    return schema


def _resolve_fields(schema: Schema, owner: str, fields: list[FieldSpec], in_tlv_record: bool) -> None:
    seen: dict[str, FieldSpec] = {}
    for i, f in enumerate(fields):
        last = i == len(fields) - 1
        f.pyname = _pyname(f.name)
        if f.type_name in TYPES:
            f.elem = TYPES[f.type_name]
        elif f.type_name in schema.subtypes:
            f.elem = schema.subtypes[f.type_name]
        elif f.type_name in schema.streams:
            f.elem = schema.streams[f.type_name]
            if not last or f.count_text:
                raise SchemaError(f"{owner}.{f.name}: a TLV stream must be the last, single field")
        elif f.type_name in schema.opaque:
            f.elem = schema.opaque[f.type_name]
        else:
            raise SchemaError(f"{owner}.{f.name}: unknown type {f.type_name}")
        text = f.count_text
        if not text:
            f.kind = SINGLE
        elif text == "...":
            f.kind = REST
        elif text.isdigit():
            f.kind, f.count = FIXED, int(text)
        else:
            if text not in seen:
                raise SchemaError(f"{owner}.{f.name}: length field {text} is not an earlier field")
            length_field = seen[text]
            if not isinstance(length_field.elem, FieldType) or length_field.kind != SINGLE:
                raise SchemaError(f"{owner}.{f.name}: length field {text} is not an integer")
            length_field.implicit = True
            f.kind, f.count = LENFIELD, text
        if f.kind != SINGLE:
            f.is_bytes = f.type_name == "byte"
            f.is_text = f.type_name == "utf8"
        # BOLT #1: truncated integers are only for "the final value in TLV records"; `...` arrays
        # likewise run to the end of their record.
        takes_rest = f.kind == REST or getattr(f.elem, "takes_rest", False)
        if takes_rest and not (in_tlv_record and last):
            raise SchemaError(f"{owner}.{f.name}: only the last field of a TLV record can take the rest")
        seen[f.name] = f


def _resolve(schema: Schema) -> None:
    for sub in schema.subtypes.values():
        _resolve_fields(schema, sub.name, sub.fields, in_tlv_record=False)
    for stream in schema.streams.values():
        for rec in stream.records.values():
            _resolve_fields(schema, f"{stream.name}.{rec.name}", rec.fields, in_tlv_record=True)
    for msgs in (schema.peer_messages, schema.onion_failures):
        for msg in msgs.values():
            _resolve_fields(schema, msg.name, msg.fields, in_tlv_record=False)
            if not msg.fields or not isinstance(msg.fields[-1].elem, TlvStreamSpec):
                ext = FieldSpec("tlvs", EXTENSION_STREAM, "", pyname="tlvs", elem=schema.streams[EXTENSION_STREAM])
                msg.fields.append(ext)
            if len({f.pyname for f in msg.fields}) != len(msg.fields):
                raise SchemaError(f"{msg.name}: duplicate field names")


# ---------------------------------------------------------------------------------------------
# Generated classes


def _normalizer(f: FieldSpec) -> Any:
    """A function normalising a constructor argument for field `f`, or None if none is needed."""
    elem = f.elem
    if f.kind == SINGLE:
        if isinstance(elem, (SubtypeSpec, TlvStreamSpec)):
            cls = elem

            def norm_struct(v: Any) -> Any:
                return cls.cls(**v) if isinstance(v, dict) else v

            return norm_struct
        if f.type_name == "short_channel_id":
            return lambda v: ShortChannelId.from_str(v) if isinstance(v, str) else (
                ShortChannelId(v) if type(v) is int else v)
        if isinstance(elem, FixedBytes):
            return lambda v: bytes(v) if isinstance(v, (bytearray, memoryview)) else v
        return None
    if f.is_bytes:
        return lambda v: bytes(v) if isinstance(v, (bytearray, memoryview, list)) else v
    if f.is_text:
        return None
    inner = _normalizer(FieldSpec(f.name, f.type_name, "", elem=elem, kind=SINGLE))

    def norm_array(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return tuple(inner(x) for x in v) if inner else tuple(v)
        return v

    return norm_array


def _make_class(schema: Schema, cls_name: str, specs: list[tuple[str, Any, Any]], namespace: dict[str, Any],
                normalizers: list[tuple[str, Any]]) -> type:
    if cls_name in schema.classes:
        raise SchemaError(f"generated class name {cls_name} used twice")

    def __post_init__(self: Any) -> None:
        for name, norm in normalizers:
            value = getattr(self, name)
            new = norm(value)
            if new is not value:
                object.__setattr__(self, name, new)

    ns = dict(namespace)
    if normalizers:
        ns["__post_init__"] = __post_init__
    cls = dataclasses.make_dataclass(cls_name, specs, frozen=True, namespace=ns)
    cls.__module__ = "ampere.wire.messages"
    schema.classes[cls_name] = cls
    return cls


def _field_entries(fields: list[FieldSpec]) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, Any]]]:
    specs: list[tuple[str, Any, Any]] = []
    norms: list[tuple[str, Any]] = []
    for f in fields:
        if f.implicit:
            continue
        if isinstance(f.elem, TlvStreamSpec):
            stream_cls = f.elem.cls
            specs.append((f.pyname, Any, field(default_factory=stream_cls)))
        else:
            specs.append((f.pyname, Any, field()))
        norm = _normalizer(f)
        if norm is not None:
            norms.append((f.pyname, norm))
    return specs, norms


def _generate_classes(schema: Schema) -> None:
    # Subtypes may contain subtypes: generate in dependency order.
    pending = dict(schema.subtypes)
    while pending:
        progressed = False
        for name, sub in list(pending.items()):
            if any(isinstance(f.elem, SubtypeSpec) and f.elem.cls is None for f in sub.fields):
                continue
            specs, norms = _field_entries(sub.fields)
            sub.cls = _make_class(schema, camel(name), specs, {"NAME": name, "_spec": sub}, norms)
            del pending[name]
            progressed = True
        if not progressed:
            raise SchemaError(f"recursive subtypes: {sorted(pending)}")
    for stream in schema.streams.values():
        stream_camel = "ExtensionTlvs" if stream.name == EXTENSION_STREAM else camel(stream.name)
        specs = []
        norms = []
        for rec in sorted(stream.records.values(), key=lambda r: r.type):
            visible = rec.visible_fields()
            if len(visible) > 1:
                rspecs, rnorms = _field_entries(rec.fields)
                rec.cls = _make_class(schema, stream_camel + camel(rec.name), rspecs,
                                      {"NAME": rec.name, "TLV_TYPE": rec.type, "_spec": rec}, rnorms)
                rec_cls = rec.cls
                norms.append((rec.pyname, lambda v, c=rec_cls: c(**v) if isinstance(v, dict) else v))
            elif len(visible) == 1:
                norm = _normalizer(visible[0])
                if norm is not None:
                    norms.append((rec.pyname, lambda v, n=norm: None if v is None else n(v)))
            specs.append((rec.pyname, Any, field(default=None)))
        if "unknown" in stream.records:
            raise SchemaError(f"{stream.name}: a record named 'unknown' clashes with the unknown-records field")
        specs.append(("unknown", Any, field(default=())))
        norms.append(("unknown", lambda v: tuple((t, bytes(b)) for t, b in v) if isinstance(v, list) else v))
        stream.cls = _make_class(schema, stream_camel, specs, {"NAME": stream.name, "_spec": stream}, norms)
    for msgs in (schema.peer_messages, schema.onion_failures):
        for msg in msgs.values():
            specs, norms = _field_entries(msg.fields)
            msg.cls = _make_class(schema, camel(msg.name), specs,
                                  {"NAME": msg.name, "TYPE": msg.type, "_spec": msg,
                                   "to_bytes": _message_to_bytes,
                                   "from_bytes": classmethod(_message_from_bytes)}, norms)


def _message_to_bytes(self: Any) -> bytes:
    """The message with its 2-byte type (peer messages) or failure code (onion failures)."""
    return _encode_typed(self._spec, self)


def _message_from_bytes(cls: Any, data: bytes) -> Any:
    spec = cls._spec
    table = _PEER_BY_TYPE if spec.namespace == "peer" else _FAILURE_BY_TYPE
    msg = _decode_in(table, data, strict_extension=spec.namespace == "peer")
    if not isinstance(msg, cls):
        raise DecodeError(f"expected {spec.name} ({spec.type}), got type {int.from_bytes(bytes(data[:2]), 'big')}")
    return msg


# ---------------------------------------------------------------------------------------------
# Decoding


def _decode_field(f: FieldSpec, data: bytes, pos: int, end: int, lengths: dict[str, int]) -> tuple[Any, int]:
    elem = f.elem
    if f.kind == SINGLE:
        if isinstance(elem, FieldType):
            return elem.decode(data, pos, end)
        if isinstance(elem, SubtypeSpec):
            return _decode_struct(elem, data, pos, end)
        return _decode_stream(elem, data, pos, end, ())
    count = f.count if f.kind == FIXED else lengths[f.count] if f.kind == LENFIELD else None
    if f.is_bytes or f.is_text:
        if count is None:
            raw, pos = data[pos:end], end
        else:
            if pos + count > end:
                raise TruncatedError(f"{f.name}: need {count} bytes, {end - pos} left")
            raw, pos = data[pos : pos + count], pos + count
        if f.is_text:
            try:
                return bytes(raw).decode("utf-8"), pos
            except UnicodeDecodeError:
                raise InvalidValueError(f"{f.name}: not valid UTF-8") from None
        return bytes(raw), pos
    items = []
    if count is None:
        size = getattr(elem, "size", None)
        if size and (end - pos) % size:
            raise DecodeError(f"{f.name}: {end - pos} bytes is not a whole number of {size}-byte {f.type_name}")
        while pos < end:
            item, pos = _decode_field_elem(elem, data, pos, end)
            items.append(item)
    else:
        for _ in range(count):
            item, pos = _decode_field_elem(elem, data, pos, end)
            items.append(item)
    return tuple(items), pos


def _decode_field_elem(elem: Any, data: bytes, pos: int, end: int) -> tuple[Any, int]:
    if isinstance(elem, FieldType):
        return elem.decode(data, pos, end)
    return _decode_struct(elem, data, pos, end)


def _decode_fields(fields: list[FieldSpec], data: bytes, pos: int, end: int) -> tuple[dict[str, Any], int]:
    values: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for f in fields:
        value, pos = _decode_field(f, data, pos, end, lengths)
        if f.implicit:
            lengths[f.name] = value
        else:
            values[f.pyname] = value
    return values, pos


def _decode_struct(spec: StructSpec, data: bytes, pos: int, end: int) -> tuple[Any, int]:
    values, pos = _decode_fields(spec.fields, data, pos, end)
    return spec.cls(**values), pos


def _decode_record(rec: TlvRecordSpec, data: bytes, pos: int, end: int) -> Any:
    visible = rec.visible_fields()
    try:
        values, new_pos = _decode_fields(rec.fields, data, pos, end)
    except TruncatedError as e:
        # BOLT #1: "if `length` is not exactly equal to that required for the known encoding for
        # `type`: MUST fail to parse the `tlv_stream`."
        raise TlvError(f"{rec.stream}.{rec.name}: record shorter than its encoding ({e})") from e
    except TlvError:
        raise
    except DecodeError as e:
        # BOLT #1: "if variable-length fields within the known encoding for `type` are not minimal:
        # MUST fail to parse the `tlv_stream`" (and likewise for any invalid value).
        raise TlvError(f"{rec.stream}.{rec.name}: {e}") from e
    if new_pos != end:
        raise TlvError(f"{rec.stream}.{rec.name}: record longer than its encoding")
    if not visible:
        return True
    if len(visible) == 1:
        return values[visible[0].pyname]
    return rec.cls(**values)


def _decode_stream(stream: TlvStreamSpec, data: bytes, pos: int, end: int,
                   extra_known: Container[int]) -> tuple[Any, int]:
    known: Container[int] = stream.by_type
    if extra_known:
        known = set(stream.by_type) | set(extra_known)  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    unknown: list[tuple[int, bytes]] = []
    for tlv_type, start, stop in split_tlv_stream(data, pos, end, known, stream.name):
        rec = stream.by_type.get(tlv_type)
        if rec is None:
            unknown.append((tlv_type, bytes(data[start:stop])))
        else:
            values[rec.pyname] = _decode_record(rec, data, start, stop)
    return stream.cls(**values, unknown=tuple(unknown)), end


# ---------------------------------------------------------------------------------------------
# Encoding


def _encode_elem(elem: Any, value: Any, where: str) -> bytes:
    if isinstance(elem, FieldType):
        return elem.encode(value)
    if isinstance(elem, SubtypeSpec):
        if not isinstance(value, elem.cls):
            raise EncodeError(f"{where}: need a {elem.cls.__name__}, got {value!r}")
        return _encode_fields(elem.fields, value, where)
    if not isinstance(value, elem.cls):
        raise EncodeError(f"{where}: need a {elem.cls.__name__}, got {value!r}")
    return _encode_stream(elem, value)


def _encode_array(f: FieldSpec, value: Any, where: str) -> bytes:
    if f.is_text:
        if not isinstance(value, str):
            raise EncodeError(f"{where}: need a str, got {value!r}")
        return value.encode("utf-8")
    if f.is_bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise EncodeError(f"{where}: need bytes, got {value!r}")
        return bytes(value)
    if not isinstance(value, (tuple, list)):
        raise EncodeError(f"{where}: need a sequence, got {value!r}")
    return b"".join(_encode_elem(f.elem, item, where) for item in value)


def _array_len(f: FieldSpec, value: Any) -> int:
    return len(value.encode("utf-8")) if f.is_text and isinstance(value, str) else len(value)


def _encode_fields(fields: list[FieldSpec], obj: Any, owner: str) -> bytes:
    lengths: dict[str, int] = {}
    for f in fields:
        if f.kind in (LENFIELD, FIXED):
            value = getattr(obj, f.pyname)
            try:
                n = _array_len(f, value)
            except TypeError:
                raise EncodeError(f"{owner}.{f.name}: need a sequence, got {value!r}") from None
            if f.kind == FIXED:
                if n != f.count:
                    raise EncodeError(f"{owner}.{f.name}: need exactly {f.count} elements, got {n}")
            elif lengths.setdefault(f.count, n) != n:
                raise EncodeError(f"{owner}.{f.name}: length {n} disagrees with another array sized by {f.count}")
    out = []
    for f in fields:
        where = f"{owner}.{f.name}"
        if f.implicit:
            try:
                out.append(f.elem.encode(lengths.get(f.name, 0)))
            except EncodeError as e:
                raise EncodeError(f"{where}: array too long for its length field ({e})") from None
            continue
        value = getattr(obj, f.pyname)
        if f.kind == SINGLE:
            out.append(_encode_elem(f.elem, value, where))
        else:
            out.append(_encode_array(f, value, where))
    return b"".join(out)


def _encode_record(rec: TlvRecordSpec, value: Any) -> bytes:
    owner = f"{rec.stream}.{rec.name}"
    visible = rec.visible_fields()
    if not visible:
        if value is not True:
            raise EncodeError(f"{owner}: a record without fields takes True (present) or None, got {value!r}")
        return b""
    if len(visible) == 1:
        return _encode_fields(rec.fields, _OneField(visible[0].pyname, value), owner)
    if not isinstance(value, rec.cls):
        raise EncodeError(f"{owner}: need a {rec.cls.__name__} (or a dict of its fields), got {value!r}")
    return _encode_fields(rec.fields, value, owner)


class _OneField:
    """Lets a single-field record's value be encoded by the generic field encoder."""

    def __init__(self, name: str, value: Any) -> None:
        setattr(self, name, value)


def _encode_stream(stream: TlvStreamSpec, obj: Any) -> bytes:
    records: list[tuple[int, bytes]] = []
    for rec in stream.by_type.values():
        value = getattr(obj, rec.pyname)
        if value is not None:
            records.append((rec.type, _encode_record(rec, value)))
    for tlv_type, raw in obj.unknown:
        if tlv_type in stream.by_type:
            raise EncodeError(f"{stream.name}: unknown record {tlv_type} is a known type")
        records.append((tlv_type, raw))
    records.sort(key=lambda r: r[0])
    return join_tlv_records(records)


def _encode_typed(spec: MessageSpec, msg: Any) -> bytes:
    return spec.type.to_bytes(2, "big") + _encode_fields(spec.fields, msg, spec.name)


# ---------------------------------------------------------------------------------------------
# Public API

SCHEMA = load_schema(
    (name, resources.files("ampere.wire").joinpath("csv", name).read_text().splitlines()) for name in CSV_FILES
)

MESSAGE_TYPES: dict[int, type] = {m.type: m.cls for m in SCHEMA.peer_messages.values()}
ONION_FAILURE_TYPES: dict[int, type] = {m.type: m.cls for m in SCHEMA.onion_failures.values()}
if len(MESSAGE_TYPES) != len(SCHEMA.peer_messages) or len(ONION_FAILURE_TYPES) != len(SCHEMA.onion_failures):
    raise SchemaError("two messages share a type number")
_PEER_BY_TYPE = {m.type: m for m in SCHEMA.peer_messages.values()}
_FAILURE_BY_TYPE = {m.type: m for m in SCHEMA.onion_failures.values()}


def by_name(name: str) -> type:
    """The generated class for a CSV name (`"update_add_htlc"`) or class name (`"UpdateAddHtlc"`)."""
    for table in (SCHEMA.peer_messages, SCHEMA.onion_failures, SCHEMA.subtypes, SCHEMA.streams):
        if name in table:
            return table[name].cls  # type: ignore[attr-defined,no-any-return]
    if name in SCHEMA.classes:
        return SCHEMA.classes[name]
    raise KeyError(name)


def encode_message(msg: Any) -> bytes:
    """2-byte type, then the payload and extension.  `UnknownMessage` encodes as-is (custom messages)."""
    if isinstance(msg, UnknownMessage):
        if not 0 <= msg.type <= 0xFFFF:
            raise EncodeError(f"message type {msg.type} out of range")
        return msg.type.to_bytes(2, "big") + bytes(msg.payload)
    spec = getattr(msg, "_spec", None)
    if not isinstance(spec, MessageSpec) or spec.namespace != "peer":
        raise EncodeError(f"not a peer message: {msg!r}")
    return _encode_typed(spec, msg)


def decode_message(data: bytes) -> Any:
    """Decode a peer message; an unknown type gives `UnknownMessage` (the caller applies odd/even).

    Raises a `DecodeError` (action DISCONNECT) for a malformed known message.
    """
    return _decode_in(_PEER_BY_TYPE, data, strict_extension=True)


def encode_onion_failure(msg: Any) -> bytes:
    """BOLT #4 `failuremsg`: 2-byte `failure_code` and its data."""
    if isinstance(msg, UnknownMessage):
        return encode_message(msg)
    spec = getattr(msg, "_spec", None)
    if not isinstance(spec, MessageSpec) or spec.namespace != "onion_failure":
        raise EncodeError(f"not an onion failure message: {msg!r}")
    return _encode_typed(spec, msg)


def decode_onion_failure(data: bytes) -> Any:
    """Decode a BOLT #4 `failuremsg`.  BOLT #4: the origin node "MUST ignore any extra bytes in
    `failuremsg`", so trailing bytes that are not a valid TLV stream are dropped, not an error."""
    return _decode_in(_FAILURE_BY_TYPE, data, strict_extension=False)


def _decode_in(table: dict[int, MessageSpec], data: bytes, strict_extension: bool) -> Any:
    data = bytes(data)
    if len(data) < 2:
        raise TruncatedError(f"message of {len(data)} bytes has no type")
    msg_type = int.from_bytes(data[:2], "big")
    spec = table.get(msg_type)
    if spec is None:
        return UnknownMessage(msg_type, data[2:])
    *fields, ext = spec.fields
    try:
        values, pos = _decode_fields(fields, data, 2, len(data))
    except DecodeError as e:
        e.args = (f"{spec.name}: {e}",)
        raise
    try:
        values[ext.pyname], _ = _decode_stream(ext.elem, data, pos, len(data), ())
    except DecodeError:
        if strict_extension:
            raise
        values[ext.pyname] = ext.elem.cls()
    return spec.cls(**values)


def encode_tlv_stream(stream: str, value: Any) -> bytes:
    """Encode a named TLV stream from its generated class or a dict {record_name: value}."""
    spec = SCHEMA.streams.get(stream)
    if spec is None:
        raise KeyError(stream)
    if isinstance(value, dict):
        try:
            value = spec.cls(**value)
        except TypeError as e:
            raise EncodeError(f"{stream}: {e}") from None
    if not isinstance(value, spec.cls):
        raise EncodeError(f"{stream}: need a {spec.cls.__name__} or a dict, got {value!r}")
    return _encode_stream(spec, value)


def decode_tlv_stream(stream: str, data: bytes, extra_known_types: Container[int] = ()) -> Any:
    """Decode a whole buffer as the named TLV stream.

    `extra_known_types` are record types the caller understands itself (e.g. keysend's even
    record in an onion payload): they are not rejected as unknown even, and come back in `.unknown`.
    """
    spec = SCHEMA.streams.get(stream)
    if spec is None:
        raise KeyError(stream)
    data = bytes(data)
    return _decode_stream(spec, data, 0, len(data), extra_known_types)[0]


def encode_subtype(value: Any) -> bytes:
    spec = getattr(value, "_spec", None)
    if not isinstance(spec, SubtypeSpec):
        raise EncodeError(f"not a subtype value: {value!r}")
    return _encode_fields(spec.fields, value, spec.name)


def decode_subtype(name: str, data: bytes) -> Any:
    """Decode exactly one subtype value filling `data`."""
    spec = SCHEMA.subtypes[name]
    data = bytes(data)
    value, pos = _decode_struct(spec, data, 0, len(data))
    if pos != len(data):
        raise DecodeError(f"{name}: {len(data) - pos} bytes left over")
    return value
