"""The spec CSVs read into a schema: what every message, subtype and TLV stream is made of.

The vendored CSVs in `csv/` (peer_wire.csv, onion_wire.csv, bolt12_wire.csv, then Ampere's ampere_patches.csv)
are the one source of truth.  This module reads them into `Schema` objects; the generator
(`python -m ampere.wire.generate`) turns the schema into the committed modules of `generated/`, which is
what the daemon runs.  Nothing here is imported at run time by the daemon.

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
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .errors import EncodeError
from .types import TYPES, FieldType

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
    source: str = ""  # the CSV that defines it


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
    source: str = ""  # the CSV that defines it


@dataclass
class Schema:
    peer_messages: dict[str, MessageSpec] = dataclasses.field(default_factory=dict)
    onion_failures: dict[str, MessageSpec] = dataclasses.field(default_factory=dict)
    subtypes: dict[str, SubtypeSpec] = dataclasses.field(default_factory=dict)
    streams: dict[str, TlvStreamSpec] = dataclasses.field(default_factory=dict)
    opaque: dict[str, OpaqueRest] = dataclasses.field(default_factory=dict)
    classes: dict[str, type] = dataclasses.field(default_factory=dict)  # CamelCase name -> class


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
    files: list[str] = []
    for filename, lines in lines_by_file:
        files.append(filename)
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
                owner, fname, ftype, count = args[0], args[1], args[2], args[3] if len(args) > 3 else ""
                if owner not in messages:
                    raise SchemaError(f"{where}: msgdata for unknown message {owner}")
                messages[owner].fields.append(FieldSpec(fname, ftype, count))
            elif kind == "subtype":
                schema.subtypes[args[0]] = SubtypeSpec(name=args[0], source=filename)
            elif kind == "subtypedata":
                sub, fname, ftype, count = args[0], args[1], args[2], args[3] if len(args) > 3 else ""
                schema.subtypes[sub].fields.append(FieldSpec(fname, ftype, count))
            elif kind == "tlvtype":
                stream_name, rec_name, rec_type = args[0], args[1], int(args[2])
                stream = schema.streams.setdefault(stream_name, TlvStreamSpec(stream_name, source=filename))
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
    for override in peer_overrides:
        messages[override].namespace = "peer"
    for msg_name, msg in messages.items():
        target = schema.peer_messages if msg.namespace == "peer" else schema.onion_failures
        target[msg_name] = msg
    schema.streams[EXTENSION_STREAM] = TlvStreamSpec(EXTENSION_STREAM, source=files[0] if files else "")
    _resolve(schema)
    _check_names(schema)
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


def _check_names(schema: Schema) -> None:
    """Every generated class needs a name of its own (CSV names that camel-case alike would clash)."""
    seen: set[str] = set()
    names = [camel(m.name) for msgs in (schema.peer_messages, schema.onion_failures) for m in msgs.values()]
    names += [camel(s.name) for s in schema.subtypes.values()]
    for stream in schema.streams.values():
        names.append(stream_class_name(stream))
        if "unknown" in stream.records:
            raise SchemaError(f"{stream.name}: a record named 'unknown' clashes with the unknown-records field")
        names += [record_class_name(stream, r) for r in stream.records.values() if len(r.visible_fields()) > 1]
    for name in names:
        if name in seen:
            raise SchemaError(f"generated class name {name} used twice")
        seen.add(name)


def stream_class_name(stream: TlvStreamSpec) -> str:
    return "ExtensionTlvs" if stream.name == EXTENSION_STREAM else camel(stream.name)


def record_class_name(stream: TlvStreamSpec, rec: TlvRecordSpec) -> str:
    return stream_class_name(stream) + camel(rec.name)


def pinned_csv_lines() -> list[tuple[str, list[str]]]:
    """The vendored CSVs, in the order they are applied."""
    return [(name, resources.files("ampere.wire").joinpath("csv", name).read_text().splitlines())
            for name in CSV_FILES]


def load_pinned_schema() -> Schema:
    return load_schema(pinned_csv_lines())
