"""Write the message modules of `ampere/wire/generated/` from the vendored spec CSVs.

    python -m ampere.wire.generate            # rewrite src/ampere/wire/generated/
    python -m ampere.wire.generate OUTDIR     # write elsewhere (the regenerate-and-diff test does)

One module per CSV (`peer_wire.py`, `onion_wire.py`, `bolt12_wire.py`; ampere_patches.csv amends
the definitions in place).  Each message, subtype, TLV stream and multi-field TLV record becomes a
plain class with typed fields, and each gets straight-line encode and decode code: nothing
interprets the schema at run time.  The output is committed; tests/unit/test_wire_generated.py
regenerates it and fails on any difference, so edit the CSVs (or this generator) and rerun, never
the generated files.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from .schema import (
    FIXED,
    LENFIELD,
    SINGLE,
    FieldSpec,
    MessageSpec,
    OpaqueRest,
    Schema,
    StructSpec,
    SubtypeSpec,
    TlvRecordSpec,
    TlvStreamSpec,
    camel,
    load_pinned_schema,
    record_class_name,
    stream_class_name,
)
from .types import (
    FieldType,
    FixedBytes,
    PointType,
    SciddirOrPubkeyType,
    ShortChannelIdType,
    SignatureType,
    SignedInt,
    UnsignedInt,
)

RUNTIME_NAMES = {
    # local name -> name in ampere.wire.runtime
    "Message": "Message", "WireStruct": "WireStruct", "declare_dataclass": "declare_dataclass",
    "_nb": "norm_bytes", "_nbarr": "norm_byte_array", "_nscid": "norm_scid", "_nstruct": "norm_struct",
    "_narr": "norm_array", "_nunknown": "norm_unknown", "_truncated": "truncated", "_point": "validate_point",
    "_sig": "validate_signature", "_utf8": "decode_utf8", "_whole": "whole_items", "_record_error": "record_error",
    "_record_too_long": "record_too_long", "_make": "make", "_dec_ext": "decode_extension", "_need_instance": "need_instance", "_array_len": "array_len",
    "_text_len": "text_len", "_fixed_len": "fixed_len", "_same_len": "same_len", "_enc_len": "encode_length",
    "_enc_text": "encode_text", "_enc_bytes": "encode_byte_array", "_enc_items": "encode_items",
    "_enc_struct_items": "encode_struct_items", "_enc_sig": "encode_signature", "_enc_sigs": "encode_signatures", "_enc_flag": "encode_flag", "_check_unknown": "check_unknown",
}


def module_name(csv_file: str) -> str:
    return csv_file.removesuffix(".csv")


def _is_inline(elem: object) -> bool:
    """A fixed-size fundamental type the generated code reads in place."""
    return isinstance(elem, (UnsignedInt, SignedInt, FixedBytes, ShortChannelIdType))


class ModuleWriter:
    """Writes one generated module: the classes of the specs whose home is `csv_file`."""

    def __init__(self, schema: Schema, csv_file: str, home: Callable[[object], str]) -> None:
        self.schema = schema
        self.csv_file = csv_file
        self.home = home  # spec -> CSV file that defines it
        self.runtime: set[str] = set()
        self.types: set[str] = set()  # TYPES names used
        self.foreign: dict[str, set[str]] = {}  # module -> class names imported
        self.uses_scid = self.uses_sciddir = False
        self.uses_errors: set[str] = set()
        self.uses_tlv = False
        self.uses_typing: set[str] = set()
        self.out: list[str] = []
        self.classes: list[str] = []

    # -- names -------------------------------------------------------------------------------

    def rt(self, name: str) -> str:
        self.runtime.add(name)
        return name

    def ty(self, type_name: str) -> str:
        self.types.add(type_name)
        return f"_T_{type_name}"

    def enc(self, type_name: str) -> str:
        self.types.add(type_name)
        return f"_E_{type_name}"

    def cls_ref(self, spec: object, name: str) -> str:
        src = self.home(spec)
        if src != self.csv_file:
            self.foreign.setdefault(module_name(src), set()).add(name)
        return name

    def struct_name(self, spec: SubtypeSpec | TlvStreamSpec) -> str:
        if isinstance(spec, TlvStreamSpec):
            return self.cls_ref(spec, stream_class_name(spec))
        return self.cls_ref(spec, camel(spec.name))

    # -- types -------------------------------------------------------------------------------

    def elem_type(self, f: FieldSpec) -> str:
        elem = f.elem
        if isinstance(elem, (SubtypeSpec, TlvStreamSpec)):
            return self.struct_name(elem)
        if isinstance(elem, OpaqueRest):
            return "bytes"
        if isinstance(elem, ShortChannelIdType):
            self.uses_scid = True
            return "ShortChannelId"
        if isinstance(elem, SciddirOrPubkeyType):
            self.uses_sciddir = True
            return "SciddirOrPubkey"
        if isinstance(elem, FixedBytes):
            return "bytes"
        return "int"

    def attr_type(self, f: FieldSpec) -> str:
        if f.kind == SINGLE:
            return self.elem_type(f)
        if f.is_bytes:
            return "bytes"
        if f.is_text:
            return "str"
        return f"tuple[{self.elem_type(f)}, ...]"

    def elem_param_type(self, f: FieldSpec) -> str:
        t = self.elem_type(f)
        if isinstance(f.elem, (SubtypeSpec, TlvStreamSpec)):
            self.uses_typing.add("Any")
            return f"{t} | dict[str, Any]"
        if isinstance(f.elem, ShortChannelIdType):
            return "int | str"
        return t

    def param_type(self, f: FieldSpec) -> str:
        if f.kind == SINGLE:
            return self.elem_param_type(f)
        if f.is_bytes or f.is_text:
            return self.attr_type(f)
        self.uses_typing.add("Sequence")
        return f"Sequence[{self.elem_param_type(f)}]"

    def elem_norm_fn(self, f: FieldSpec) -> str | None:
        """A function normalising one element of an array field (None: nothing to do)."""
        elem = f.elem
        if isinstance(elem, (SubtypeSpec, TlvStreamSpec)):
            return f"lambda x: {self.rt('_nstruct')}({self.struct_name(elem)}, x)"
        if isinstance(elem, ShortChannelIdType):
            return self.rt("_nscid")
        if isinstance(elem, FixedBytes):
            return self.rt("_nb")
        return None

    def norm(self, f: FieldSpec, v: str) -> str:
        """An expression normalising constructor argument `v` of field `f` (bytearray -> bytes,
        dict -> class, "1x2x3" -> ShortChannelId, list -> tuple)."""
        elem = f.elem
        if f.kind == SINGLE:
            if isinstance(elem, (SubtypeSpec, TlvStreamSpec)):
                c = self.struct_name(elem)
                return f"{v} if _type({v}) is {c} else {self.rt('_nstruct')}({c}, {v})"
            if isinstance(elem, ShortChannelIdType):
                self.uses_scid = True
                return f"{v} if _type({v}) is ShortChannelId else {self.rt('_nscid')}({v})"
            if isinstance(elem, FixedBytes):
                return f"{v} if _type({v}) is _bytes else {self.rt('_nb')}({v})"
            return v
        if f.is_bytes:
            return f"{v} if _type({v}) is _bytes else {self.rt('_nbarr')}({v})"
        if f.is_text:
            return v
        return f"{self.rt('_narr')}({v}, {self.elem_norm_fn(f)})"

    # -- decoding ----------------------------------------------------------------------------

    def inline_decode(self, elem: FieldType, base: str, off: int) -> str:
        """An expression reading `elem` at data[base + off]."""
        size = elem.size
        assert size is not None
        at = lambda k: base if not k else f"{base} + {k}"
        sl = f"data[{at(off)}:{at(off + size)}]"
        if isinstance(elem, UnsignedInt):
            return f"data[{at(off)}]" if size == 1 else f"_int({sl}, 'big')"
        if isinstance(elem, SignedInt):
            return f"_int({sl}, 'big', signed=True)"
        if isinstance(elem, PointType):
            return f"{self.rt('_point')}({sl})"
        if isinstance(elem, SignatureType):
            return f"{self.rt('_sig')}({sl})"
        if isinstance(elem, FixedBytes):
            return sl
        if isinstance(elem, ShortChannelIdType):
            self.uses_scid = True
            return f"ShortChannelId(_int({sl}, 'big'))"
        raise AssertionError(elem)

    def decode_fields(self, fields: list[FieldSpec], ind: str) -> list[str]:
        """Statements reading `fields` from data[p:end] into locals f_<pyname> / n_<name>."""
        lines: list[str] = []
        i = 0
        while i < len(fields):
            f = fields[i]
            if f.kind == SINGLE and _is_inline(f.elem):
                run = [f]
                while i + len(run) < len(fields):
                    g = fields[i + len(run)]
                    if g.kind != SINGLE or not _is_inline(g.elem):
                        break
                    run.append(g)
                total = sum(g.elem.size for g in run)
                names = "/".join(g.name for g in run)
                lines.append(f"{ind}if p + {total} > end:")
                lines.append(f"{ind}    raise {self.rt('_truncated')}({names!r}, {total}, end - p)")
                off = 0
                for g in run:
                    lines.append(f"{ind}{_local(g)} = {self.inline_decode(g.elem, 'p', off)}")
                    off += g.elem.size
                lines.append(f"{ind}p += {total}")
                i += len(run)
                continue
            lines += self.decode_field(f, ind)
            i += 1
        return lines

    def decode_field(self, f: FieldSpec, ind: str) -> list[str]:
        elem, var = f.elem, _local(f)
        if f.kind == SINGLE:
            if isinstance(elem, OpaqueRest):
                return [f"{ind}{var} = data[p:end]", f"{ind}p = end"]
            if isinstance(elem, SubtypeSpec):
                return [f"{ind}{var}, p = {self.struct_name(elem)}._decode(data, p, end)"]
            if isinstance(elem, TlvStreamSpec):
                return [f"{ind}{var} = {self.struct_name(elem)}._decode(data, p, end)", f"{ind}p = end"]
            return [f"{ind}{var}, p = {self.ty(f.type_name)}.decode(data, p, end)"]
        count = str(f.count) if f.kind == FIXED else f"n_{f.count}" if f.kind == LENFIELD else None
        if f.is_bytes or f.is_text:
            raw = f"{var}_raw" if f.is_text else var
            if count is None:
                lines = [f"{ind}{raw} = data[p:end]", f"{ind}p = end"]
            else:
                lines = [f"{ind}if p + {count} > end:",
                         f"{ind}    raise {self.rt('_truncated')}({f.name!r}, {count}, end - p)",
                         f"{ind}{raw} = data[p:p + {count}]", f"{ind}p += {count}"]
            if f.is_text:
                lines.append(f"{ind}{var} = {self.rt('_utf8')}({raw}, {f.name!r})")
            return lines
        if _is_inline(elem):
            size = elem.size
            lines = []
            if count is None:
                lines.append(f"{ind}{var}_n = {self.rt('_whole')}({f.name!r}, end - p, {size}, {f.type_name!r})")
            else:
                lines.append(f"{ind}{var}_n = {count}")
                lines.append(f"{ind}if p + {var}_n * {size} > end:")
                lines.append(f"{ind}    raise {self.rt('_truncated')}({f.name!r}, {var}_n * {size}, end - p)")
            item = self.inline_decode(elem, "q", 0)
            lines.append(f"{ind}{var} = tuple([{item} for q in range(p, p + {var}_n * {size}, {size})])")
            lines.append(f"{ind}p += {var}_n * {size}")
            return lines
        if isinstance(elem, SubtypeSpec):
            dec = f"{self.struct_name(elem)}._decode(data, p, end)"
        else:
            dec = f"{self.ty(f.type_name)}.decode(data, p, end)"
        loop = f"{ind}while p < end:" if count is None else f"{ind}for _ in range({count}):"
        return [f"{ind}{var}_items = []", loop, f"{ind}    {var}_item, p = {dec}",
                f"{ind}    {var}_items.append({var}_item)", f"{ind}{var} = tuple({var}_items)"]

    # -- encoding ----------------------------------------------------------------------------

    def encode_fields(self, fields: list[FieldSpec], owner: str, value_of: Callable[[FieldSpec], str],
                      ind: str) -> tuple[list[str], list[str]]:
        """(statements, part expressions) writing `fields`; the parts are joined in order."""
        lines: list[str] = []
        set_lengths: set[str] = set()
        for f in fields:
            if f.kind not in (LENFIELD, FIXED):
                continue
            where = f"{owner}.{f.name}"
            fn = self.rt("_text_len") if f.is_text else self.rt("_array_len")
            lines.append(f"{ind}n = {fn}({value_of(f)}, {where!r})")
            if f.kind == FIXED:
                lines.append(f"{ind}if n != {f.count}:")
                lines.append(f"{ind}    {self.rt('_fixed_len')}(n, {f.count}, {where!r})")
            elif f.count in set_lengths:
                lines.append(f"{ind}if n != n_{f.count}:")
                lines.append(f"{ind}    {self.rt('_same_len')}(n, n_{f.count}, {f.count!r}, {where!r})")
            else:
                lines.append(f"{ind}n_{f.count} = n")
                set_lengths.add(f.count)
        parts: list[str] = []
        for f in fields:
            where = f"{owner}.{f.name}"
            elem = f.elem
            if f.implicit:
                parts.append(f"{self.rt('_enc_len')}({self.enc(f.type_name)}, n_{f.name}, {where!r})")
                continue
            v = value_of(f)
            if f.kind == SINGLE:
                if isinstance(elem, OpaqueRest):
                    parts.append(f"{self.rt('_enc_bytes')}({v}, {where!r})")
                elif isinstance(elem, (SubtypeSpec, TlvStreamSpec)):
                    c = self.struct_name(elem)
                    lines.append(f"{ind}if _type({v}) is not {c}:")
                    lines.append(f"{ind}    {self.rt('_need_instance')}({v}, {c}, {where!r})")
                    parts.append(f"{v}._encode()")
                elif isinstance(elem, SignatureType):
                    parts.append(f"{self.rt('_enc_sig')}({v})")
                else:
                    parts.append(f"{self.enc(f.type_name)}({v})")
            elif f.is_text:
                parts.append(f"{self.rt('_enc_text')}({v}, {where!r})")
            elif f.is_bytes:
                parts.append(f"{v} if _type({v}) is _bytes else {self.rt('_enc_bytes')}({v}, {where!r})")
            elif isinstance(elem, SignatureType):
                parts.append(f"{self.rt('_enc_sigs')}({v}, {where!r})")
            elif isinstance(elem, SubtypeSpec):
                parts.append(f"{self.rt('_enc_struct_items')}({v}, {self.struct_name(elem)}, {where!r})")
            else:
                parts.append(f"{self.rt('_enc_items')}({v}, {self.enc(f.type_name)}, {where!r})")
        return lines, parts

    # -- classes -----------------------------------------------------------------------------

    def emit(self, *lines: str) -> None:
        self.out.extend(lines)

    def class_head(self, name: str, base: str, doc: str, names: list[str], consts: list[str],
                   annotations: list[tuple[str, str]]) -> None:
        self.classes.append(name)
        self.emit("", "", f"class {name}({self.rt(base)}):", f'    """{doc}"""', "")
        slots = ", ".join(repr(n) for n in names) + ("," if len(names) == 1 else "")
        self.emit(f"    __slots__ = ({slots})", "    _FIELDS = __slots__")
        self.uses_typing.add("ClassVar")
        self.emit(*[f"    {c}" for c in consts])
        self.emit(*[f"    {n}: {t}" for n, t in annotations])

    def init(self, params: list[tuple[str, str, str | None]], sets: list[tuple[str, str]]) -> None:
        """__init__ with (name, type, default) params setting (name, expression) in order."""
        args = ["self"] + [f"{n}: {t}" + (f" = {d}" if d is not None else "") for n, t, d in params]
        self.emit("", "    def __init__(", *[f"        {a}," for a in args], "    ) -> None:")
        if not sets:
            self.emit("        pass")
        for n, expr in sets:
            self.emit(f"        _set(self, {n!r}, {expr})")

    def struct_class(self, spec: StructSpec, name: str, base: str, doc: str, consts: list[str]) -> list[FieldSpec]:
        visible = spec.visible_fields()
        names = [f.pyname for f in visible]
        self.class_head(name, base, doc, names, consts, [(f.pyname, self.attr_type(f)) for f in visible])
        params: list[tuple[str, str, str | None]] = []
        sets = []
        for f in visible:
            if isinstance(f.elem, TlvStreamSpec):
                c = self.struct_name(f.elem)
                params.append((f.pyname, f"{c} | dict[str, Any] | None", "None"))
                self.uses_typing.add("Any")
                sets.append((f.pyname, f"{c}.EMPTY if {f.pyname} is None else {self.norm(f, f.pyname)}"))
            else:
                params.append((f.pyname, self.param_type(f), None))
                sets.append((f.pyname, self.norm(f, f.pyname)))
        self.init(params, sets)
        return visible

    def construct(self, cls: str, values: list[str]) -> str:
        """An expression building `cls` from decoded locals (already canonical: no normalising)."""
        return f"{self.rt('_make')}({cls}, ({_tuple_items(values)}))"

    def subtype(self, spec: SubtypeSpec) -> None:
        name = camel(spec.name)
        visible = self.struct_class(spec, name, "WireStruct", f"Subtype `{spec.name}`.", [f"NAME = {spec.name!r}"])
        lines, parts = self.encode_fields(spec.fields, spec.name, lambda f: f"self.{f.pyname}", "        ")
        self.emit("", "    def _encode(self) -> bytes:", *lines, *_joined("        ", parts))
        self.emit("", "    @staticmethod", f"    def _decode(data: bytes, p: int, end: int) -> tuple[{name}, int]:")
        self.emit(*self.decode_fields(spec.fields, "        "))
        self.emit(f"        return {self.construct(name, [_local(f) for f in visible])}, p")

    def message(self, spec: MessageSpec) -> None:
        name = camel(spec.name)
        onion = spec.namespace == "onion_failure"
        consts = [f"TYPE = {spec.type:#06x}  # {_type_text(spec.type)}" if onion else f"TYPE = {spec.type}",
                  f"NAME = {spec.name!r}"]
        if onion:
            consts.append("STRICT_EXTENSION = False")
        what = f"Onion failure `{spec.name}` (code {_type_text(spec.type)})" if onion else \
            f"Peer message `{spec.name}` (type {spec.type})"
        visible = self.struct_class(spec, name, "Message", what + ".", consts)
        lines, parts = self.encode_fields(spec.fields, spec.name, lambda f: f"self.{f.pyname}", "        ")
        type_bytes = spec.type.to_bytes(2, "big")
        self.emit("", "    def to_bytes(self) -> bytes:", *lines, *_joined("        ", [repr(type_bytes), *parts]))
        *fields, ext = spec.fields
        assert isinstance(ext.elem, TlvStreamSpec)
        ext_cls = self.struct_name(ext.elem)
        self.uses_errors.add("DecodeError")
        self.emit("", "    @staticmethod", f"    def _decode(data: bytes, p: int, end: int, strict: bool) -> {name}:")
        body = self.decode_fields(fields, "            ")
        if body:
            self.emit("        try:", *body, "        except DecodeError as e:",
                      f"            e.args = (f'{spec.name}: {{e}}',)", "            raise")
        self.emit(f"        {_local(ext)} = {self.rt('_dec_ext')}({ext_cls}, data, p, end, strict)")
        self.emit(f"        return {self.construct(name, [_local(f) for f in visible])}")

    def stream(self, spec: TlvStreamSpec) -> None:
        name = stream_class_name(spec)
        records = sorted(spec.records.values(), key=lambda r: r.type)
        known = "{" + ", ".join(str(r.type) for r in records) + "}" if records else "()"
        consts = [f"NAME = {spec.name!r}", f"KNOWN_TYPES: ClassVar[frozenset[int]] = frozenset({known})",
                  f"EMPTY: ClassVar[{name}]"]
        annotations = []
        params: list[tuple[str, str, str | None]] = []
        sets = []
        for rec in records:
            vis = rec.visible_fields()
            if not vis:
                annotations.append((rec.pyname, "bool | None"))
                params.append((rec.pyname, "bool | None", "None"))
                sets.append((rec.pyname, rec.pyname))
            elif len(vis) == 1:
                annotations.append((rec.pyname, f"{self.attr_type(vis[0])} | None"))
                params.append((rec.pyname, f"{self.param_type(vis[0])} | None", "None"))
                norm = self.norm(vis[0], rec.pyname)
                sets.append((rec.pyname, rec.pyname if norm == rec.pyname else
                             f"None if {rec.pyname} is None else {norm}"))
            else:
                rc = self.cls_ref(spec, record_class_name(spec, rec))
                annotations.append((rec.pyname, f"{rc} | None"))
                self.uses_typing.add("Any")
                params.append((rec.pyname, f"{rc} | dict[str, Any] | None", "None"))
                sets.append((rec.pyname, (f"{rec.pyname} if {rec.pyname} is None or _type({rec.pyname}) is {rc} "
                                          f"else {self.rt('_nstruct')}({rc}, {rec.pyname})")))
        annotations.append(("unknown", "tuple[tuple[int, bytes], ...]"))
        self.uses_typing.add("Iterable")
        params.append(("unknown", "Iterable[tuple[int, bytes]]", "()"))
        sets.append(("unknown", f"unknown if _type(unknown) is _tuple else {self.rt('_nunknown')}(unknown)"))
        self.class_head(name, "WireStruct", f"TLV stream `{spec.name}`.", [r.pyname for r in records] + ["unknown"],
                        consts, annotations)
        self.init(params, sets)
        self.emit("", "    def _encode(self) -> bytes:", "        records: list[tuple[int, bytes]] = []")
        for rec in records:
            self.emit(f"        if self.{rec.pyname} is not None:",
                      f"            records.append(({rec.type}, {_rec_fn('enc', spec, rec)}(self.{rec.pyname})))")
        self.uses_tlv = True
        self.emit("        if self.unknown:",
                  f"            records += {self.rt('_check_unknown')}(self.unknown, self.KNOWN_TYPES, {spec.name!r})",
                  "            records.sort()", "        return _join(records)")
        self.emit("", "    @staticmethod",
                  f"    def _decode(data: bytes, p: int, end: int, extra_known: Iterable[int] = ()) -> {name}:",
                  "        if p == end:", f"            return {name}.EMPTY",
                  f"        known = {name}.KNOWN_TYPES.union(extra_known) if extra_known else {name}.KNOWN_TYPES")
        for rec, (_, rtype) in zip(records, annotations):
            self.emit(f"        {_local_rec(rec)}: {rtype} = None")
        self.emit("        unknown = []", f"        for t, s, e in _split(data, p, end, known, {spec.name!r}):")
        if records:
            self.emit("            try:")
            kw = "if"
            for rec in records:
                self.emit(f"                {kw} t == {rec.type}:",
                          f"                    {_local_rec(rec)} = {_rec_fn('dec', spec, rec)}(data, s, e)")
                kw = "elif"
            self.uses_errors.update(("DecodeError", "TlvError"))
            self.emit("                else:", "                    unknown.append((t, data[s:e]))",
                      "            except TlvError:", "                raise", "            except DecodeError as err:",
                      f"                raise {self.rt('_record_error')}({spec.name!r}, err, t) from err")
        else:
            self.emit("            unknown.append((t, data[s:e]))")
        self.emit(f"        return {self.construct(name, [*(_local_rec(r) for r in records), 'tuple(unknown)'])}")
        for rec in records:
            if len(rec.visible_fields()) > 1:
                rname = record_class_name(spec, rec)
                self.struct_class(rec, rname, "WireStruct", f"Record `{rec.name}` ({rec.type}) of TLV stream "
                                  f"`{spec.name}`.", [f"NAME = {rec.name!r}", f"TLV_TYPE = {rec.type}"])

    def record_functions(self, spec: TlvStreamSpec) -> None:
        for rec in sorted(spec.records.values(), key=lambda r: r.type):
            where = f"{spec.name}.{rec.name}"
            vis = rec.visible_fields()
            rtype = "bool" if not vis else self.attr_type(vis[0]) if len(vis) == 1 else record_class_name(spec, rec)
            self.uses_typing.add("Any")
            self.emit("", "", f"def {_rec_fn('enc', spec, rec)}(v: Any) -> bytes:")
            if not vis:
                self.emit(f"    return {self.rt('_enc_flag')}(v, {where!r})")
            elif len(vis) == 1:
                lines, parts = self.encode_fields(rec.fields, where, lambda f: "v", "    ")
                self.emit(*lines, *([f"    return {parts[0]}"] if len(parts) == 1 else _joined("    ", parts)))
            else:
                rc = record_class_name(spec, rec)
                lines, parts = self.encode_fields(rec.fields, where, lambda f: f"v.{f.pyname}", "    ")
                self.emit(f"    {self.rt('_need_instance')}(v, {rc}, {where!r})", *lines, *_joined("    ", parts))
            self.emit("", "", f"def {_rec_fn('dec', spec, rec)}(data: bytes, p: int, end: int) -> {rtype}:")
            # A DecodeError raised here becomes a TlvError in the stream's decoder.
            self.emit(*self.decode_fields(rec.fields, "    "))
            self.emit("    if p != end:", f"        raise {self.rt('_record_too_long')}({where!r}, {rec.type})")
            if not vis:
                self.emit("    return True")
            elif len(vis) == 1:
                self.emit(f"    return {_local(vis[0])}")
            else:
                self.emit(f"    return {self.construct(record_class_name(spec, rec), [_local(f) for f in vis])}")

    # -- module ------------------------------------------------------------------------------

    def write(self) -> str:
        s = self.schema
        mine = [x for x in s.subtypes.values() if self.home(x) == self.csv_file]
        streams = [x for x in s.streams.values() if self.home(x) == self.csv_file]
        peer = [m for m in s.peer_messages.values() if self.home(m) == self.csv_file]
        failures = [m for m in s.onion_failures.values() if self.home(m) == self.csv_file]
        for sub in mine:
            self.subtype(sub)
        for stream in streams:
            self.stream(stream)
        for msg in sorted(peer, key=lambda m: m.type):
            self.message(msg)
        for msg in sorted(failures, key=lambda m: m.type):
            self.message(msg)
        for stream in streams:
            self.record_functions(stream)
        self.emit("", "")
        for stream in streams:
            self.emit(f"{stream_class_name(stream)}.EMPTY = {stream_class_name(stream)}()")
        self.emit(f"for _cls in ({', '.join(self.classes)}{',' if len(self.classes) == 1 else ''}):",
                  f"    {self.rt('declare_dataclass')}(_cls)", "")
        self.uses_typing.add("Any")
        self.emit("MESSAGES: tuple[Any, ...] = (" + "".join(f"{camel(m.name)}, " for m in
                                                         sorted(peer, key=lambda m: m.type)).rstrip(" ") + ")")
        self.emit("ONION_FAILURES: tuple[Any, ...] = (" + "".join(f"{camel(m.name)}, " for m in
                                                               sorted(failures, key=lambda m: m.type)).rstrip(" ") + ")")
        self.emit("SUBTYPES: dict[str, Any] = {" + ", ".join(f"{x.name!r}: {camel(x.name)}" for x in mine) + "}")
        self.emit("STREAMS: dict[str, Any] = {" + ", ".join(f"{x.name!r}: {stream_class_name(x)}"
                                                          for x in streams) + "}")
        self.emit("", "__all__ = [", *[f"    {n!r}," for n in sorted(self.classes)], "]")
        return self.header() + "\n".join(_wrap(line) for line in self.out) + "\n"

    def header(self) -> str:
        h = [f'"""The {self.csv_file} messages: generated by `python -m ampere.wire.generate` from the vendored',
             'CSVs (see ampere/wire/schema.py for the naming).  Do not edit: change the CSVs or the generator."""',
             "", "# ruff: noqa", "# fmt: off", "from __future__ import annotations", ""]
        typing = sorted(self.uses_typing & {"Any", "ClassVar"})
        abc = sorted(self.uses_typing & {"Iterable", "Sequence"})
        if abc:
            h.append(f"from collections.abc import {', '.join(abc)}")
        if typing:
            h.append(f"from typing import {', '.join(typing)}")
        h.append("")
        if self.uses_errors:
            h.append(f"from ampere.wire.errors import {', '.join(sorted(self.uses_errors))}")
        rt = sorted(self.runtime, key=lambda n: RUNTIME_NAMES[n])
        h.append("from ampere.wire.runtime import (")
        h += [f"    {RUNTIME_NAMES[n]}{'' if RUNTIME_NAMES[n] == n else f' as {n}'}," for n in rt]
        h.append(")")
        if self.uses_tlv:
            h.append("from ampere.wire.tlv import join_tlv_records as _join")
            h.append("from ampere.wire.tlv import split_tlv_stream as _split")
        names = ["TYPES"] if self.types else []
        names += ["SciddirOrPubkey"] if self.uses_sciddir else []
        names += ["ShortChannelId"] if self.uses_scid else []
        if names:
            h.append(f"from ampere.wire.types import {', '.join(names)}")
        for mod in sorted(self.foreign):
            h.append(f"from .{mod} import {', '.join(sorted(self.foreign[mod]))}")
        h += ["", "# Aliases: fields named `type` or `bytes` shadow the builtins in `__init__`.",
              "_set = object.__setattr__", "_new = object.__new__", "_int = int.from_bytes", "_type = type",
              "_bytes = bytes", "_tuple = tuple"]
        for t in sorted(self.types):
            h.append(f"_T_{t} = TYPES[{t!r}]")
            h.append(f"_E_{t} = _T_{t}.encode")
        return "\n".join(h) + "\n"


def _local(f: FieldSpec) -> str:
    return f"n_{f.name}" if f.implicit else f"f_{f.pyname}"


def _local_rec(rec: TlvRecordSpec) -> str:
    return f"r_{rec.pyname}"


def _rec_fn(kind: str, stream: TlvStreamSpec, rec: TlvRecordSpec) -> str:
    return f"_{kind}_{stream.name}__{rec.name}"


def _tuple_items(values: list[str]) -> str:
    return ", ".join(values) + ("," if len(values) == 1 else "")


def _joined(ind: str, parts: list[str]) -> list[str]:
    """`return b''.join((...))` of `parts`, one per line."""
    if not parts:
        return [f"{ind}return b''"]
    return [f"{ind}return b''.join((", *[f"{ind}    {p}," for p in parts], f"{ind}))"]


def _type_text(code: int) -> str:
    flags = [name for bit, name in ((0x8000, "BADONION"), (0x4000, "PERM"), (0x2000, "NODE"), (0x1000, "UPDATE"))
             if code & bit]
    return " | ".join([*flags, str(code & 0x0FFF)])


def _wrap(line: str) -> str:
    return line


def generate(schema: Schema) -> dict[str, str]:
    """Module name -> source, one module per CSV that defines anything."""
    def home(spec: object) -> str:
        return spec.source  # type: ignore[attr-defined]

    files: list[str] = []
    for table in (schema.subtypes, schema.streams, schema.peer_messages, schema.onion_failures):
        for spec in table.values():
            if spec.source not in files:
                files.append(spec.source)
    return {module_name(f): ModuleWriter(schema, f, home).write() for f in files}


def write_modules(outdir: Path, schema: Schema | None = None) -> list[Path]:
    modules = generate(schema or load_pinned_schema())
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    init = outdir / "__init__.py"
    init.write_text('"""Message modules generated from the spec CSVs by `python -m ampere.wire.generate`: do not edit."""\n')
    written.append(init)
    for name, source in sorted(modules.items()):
        path = outdir / f"{name}.py"
        path.write_text(source)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    outdir = Path(args[0]) if args else Path(__file__).resolve().parent / "generated"
    for path in write_modules(outdir):
        print(path)


if __name__ == "__main__":
    main()
