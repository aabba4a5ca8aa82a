"""Validation of results against Core Lightning's JSON schemas (doc/schemas), as pyln-testing does.

CLN's schemas use their own type names (u32, msat, pubkey, short_channel_id, ...); this extends a
standard JSON Schema validator with checkers for them.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import jsonschema
from jsonschema import Draft7Validator

_HEX = re.compile(r"^([0-9a-fA-F]{2})*$")
_SCID = re.compile(r"^\d+x\d+x\d+$")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _uint(bits: int):
    return lambda _c, v: _int(v) and 0 <= v < 2**bits


def _hexlen(n: int | None):
    def check(_c, v):
        return isinstance(v, str) and bool(_HEX.match(v)) and (n is None or len(v) == n)

    return check


def _pubkey(_c, v):
    return isinstance(v, str) and len(v) == 66 and bool(_HEX.match(v)) and v[:2] in ("02", "03")


_CHECKERS = {
    "u8": _uint(8), "u16": _uint(16), "u32": _uint(32), "u64": _uint(64),
    "msat": lambda _c, v: _int(v) and v >= 0,
    "sat": lambda _c, v: _int(v) and v >= 0,
    "msat_or_any": lambda _c, v: (_int(v) and v >= 0) or v == "any",
    "sat_or_all": lambda _c, v: (_int(v) and v >= 0) or v == "all",
    "msat_or_all": lambda _c, v: (_int(v) and v >= 0) or v == "all",
    "hex": _hexlen(None), "hash": _hexlen(64), "txid": _hexlen(64), "secret": _hexlen(64),
    "chain": _hexlen(64), "bip340sig": _hexlen(128), "signature": _hexlen(None),
    "pubkey": _pubkey,
    "short_channel_id": lambda _c, v: isinstance(v, str) and bool(_SCID.match(v)),
    "short_channel_id_dir": lambda _c, v: isinstance(v, str) and bool(re.match(r"^\d+x\d+x\d+/[01]$", v)),
    "outpoint": lambda _c, v: isinstance(v, str) and bool(re.match(r"^[0-9a-f]{64}:\d+$", v)),
    "feerate": lambda _c, v: _int(v) or isinstance(v, str),
    "number": lambda _c, v: (isinstance(v, (int, float)) and not isinstance(v, bool)),
    "integer": lambda _c, v: _int(v),
}
_STRINGLIKE = ("ipv4", "ipv6", "rune", "currency", "outputdesc", "onchain_fee", "mutual", "channel", "string")

_type_checker = Draft7Validator.TYPE_CHECKER
for _name, _fn in _CHECKERS.items():
    _type_checker = _type_checker.redefine(_name, _fn)
for _name in _STRINGLIKE:
    _type_checker = _type_checker.redefine(_name, lambda _c, v: isinstance(v, str))

ClnValidator = jsonschema.validators.extend(Draft7Validator, type_checker=_type_checker)


def schema_dir() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.environ.get("AMPERE_CLN_SCHEMAS"),
                 os.path.join(here, "..", "..", "..", "..", "shared", "cln-schemas"),
                 "/work/shared/cln-schemas"):
        if cand and os.path.isdir(cand):
            return os.path.abspath(cand)
    return None


def load_schema(name: str, part: str = "response") -> dict | None:
    """CLN's schema for `name`, or None when CLN has no such schema (an Ampere-only command).

    A missing schema directory is an error, not a silent pass: tests must really validate.
    """
    d = schema_dir()
    if d is None:
        raise RuntimeError("CLN schemas not found: set AMPERE_CLN_SCHEMAS or keep ../shared/cln-schemas beside the repo")
    path = os.path.join(d, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)[part] if part else json.load(f)


# Ampere's deliberate additions to CLN's results, allowed by the checks (and nothing else is).
AMPERE_EXTRA_FIELDS: dict[str, tuple[str, ...]] = {}


def validate(name: str, value: Any, part: str = "response") -> None:
    """Raise jsonschema.ValidationError if `value` does not fit CLN's schema `name` (no-op if CLN has none)."""
    schema = load_schema(name, part)
    if schema is None:
        return
    extra = AMPERE_EXTRA_FIELDS.get(name) if part == "response" else None
    if extra and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in extra}
    ClnValidator(schema).validate(value)


def validate_hook(name: str, value: Any, part: str = "request") -> None:
    schema = load_schema(os.path.join("hook", name), part)
    if schema is not None:
        ClnValidator(schema).validate(value)


def validate_notification(name: str, value: Any) -> None:
    schema = load_schema(os.path.join("notification", name), "request")
    if schema is not None:
        ClnValidator(schema).validate(value)
