"""Parameter parsing with Core Lightning's rules and messages (common/json_param.c).

Array params: `null` means "not given"; extra entries are "too many parameters".  Object params:
unknown names and missing required ones are errors naming the parameter.  A bad value gives
`<name>: <reason>: invalid token '<token>'` with code -32602.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..primitives.amount import AmountError, parse_msat, parse_sat
from .errors import invalid_params


def check_paging(index: str | None, start: int | None, limit: int | None) -> None:
    """CLN's rule for the paginated lists (listsendpays, listpays, listforwards): no {start}/{limit} alone."""
    if (start is not None or limit is not None) and index is None:
        raise invalid_params("Can only specify {start} or {limit} with {index}")


# The longest string any parameter may carry (characters); longer is -32602 before the command sees it. Large
# enough for any PSBT or datastore value a node handles; the request itself is bounded by the RPC framer.
MAX_PARAM_STRING = 4 * 1024 * 1024


class ParamError(ValueError):
    """Raised by a value parser: the reason, without the parameter name."""


@dataclass(frozen=True)
class Param:
    name: str
    parse: Callable[[Any], Any]
    required: bool = True
    default: Any = None


def opt(name: str, parse: Callable[[Any], Any], default: Any = None) -> Param:
    return Param(name, parse, required=False, default=default)


def req(name: str, parse: Callable[[Any], Any]) -> Param:
    return Param(name, parse, required=True)


def _token(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_strings(value: Any, depth: int = 0) -> None:
    """Every string in a parameter (nested too): no lone surrogate (JSON's "\\ud800" is valid JSON but no UTF-8
    encoder, database or log line takes it) and at most MAX_PARAM_STRING characters. Raises ParamError."""
    # (Every parameter of every call goes through here: an ASCII string -- nearly all of them -- needs no search,
    # and the scalars of a list or object are looked at in the loop, not in a call each.)
    if isinstance(value, str):
        _check_string(value)
    elif isinstance(value, list):
        for v in value:
            cls = v.__class__
            if cls is str:
                if len(v) > MAX_PARAM_STRING or not v.isascii():
                    _check_string(v)
            elif cls is not int and cls is not bool and cls is not float and v is not None:
                check_strings(v, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k.__class__ is not str or len(k) > MAX_PARAM_STRING or not k.isascii():
                check_strings(k, depth + 1)
            cls = v.__class__
            if cls is str:
                if len(v) > MAX_PARAM_STRING or not v.isascii():
                    _check_string(v)
            elif cls is not int and cls is not bool and cls is not float and v is not None:
                check_strings(v, depth + 1)


def _check_string(value: str) -> None:
    if len(value) > MAX_PARAM_STRING:
        raise ParamError(f"string of {len(value)} characters is too long (at most {MAX_PARAM_STRING})")
    if not value.isascii() and _SURROGATE.search(value):
        raise ParamError("invalid unicode: a lone surrogate is not a character")


def _shown(raw: Any) -> str:
    """The token as echoed in an error: a lone surrogate escaped (the reply must encode), and never megabytes."""
    token = _token(raw) if isinstance(raw, str) else json.dumps(raw)
    if len(token) > 1000:
        token = token[:1000] + f"...({len(token)} characters)"
    return token.encode("utf-8", "backslashreplace").decode("utf-8")


def plugin_params_problem(params: Any) -> Any:
    """check_strings for a plugin method's params (names unknown here: keys, or positions); an RpcError or None."""
    items = params.items() if isinstance(params, dict) else enumerate(params) if isinstance(params, list) else ()
    for name, value in items:
        try:
            check_strings(value)
        except ParamError as e:
            return invalid_params(f"{name}: {e}: invalid token '{_shown(value)}'")
    return None


def parse_params(params: Any, spec: list[Param], allow_extra: bool = False) -> dict[str, Any]:
    """Returns {name: parsed value or default}; with allow_extra, unknown object keys go to '__extra__'."""
    out: dict[str, Any] = {}
    given: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if params is None:
        params = []
    if isinstance(params, list):
        if len(params) > len(spec) and not allow_extra:
            raise invalid_params("too many parameters")
        for p, v in zip(spec, params):
            if v is not None:
                given[p.name] = v
        if len(params) > len(spec):
            extra["__positional__"] = params[len(spec) :]
    elif isinstance(params, dict):
        names = {p.name for p in spec}
        for k, v in params.items():
            if k not in names:
                if allow_extra:
                    extra[k] = v
                    continue
                raise invalid_params(
                    f"unknown parameter: {k}, this may be caused by a failure to autodetect key=value-style "
                    "parameters. Please try using the -k flag and explicit key=value pairs of parameters."
                )
            if v is not None:
                given[k] = v
    else:
        raise invalid_params("Expected array or object for params")
    # Values given are checked first (a bad value is the caller's real mistake), then what is missing.
    for p in spec:
        if p.name in given:
            raw = given[p.name]
            try:
                check_strings(raw)
                out[p.name] = p.parse(raw)
            except (ParamError, AmountError, ValueError, TypeError) as e:
                raise invalid_params(f"{p.name}: {e}: invalid token '{_shown(raw)}'") from None
    for p in spec:
        if p.name not in given:
            if p.required:
                raise invalid_params(f"missing required parameter: {p.name}")
            out[p.name] = p.default
    if allow_extra:
        out["__extra__"] = extra
    return out


# Value parsers.  Each raises ParamError with a reason in CLN's words.

def p_string(v: Any) -> str:
    if not isinstance(v, str):
        raise ParamError("should be a string")
    return v


def p_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v in ("true", "false"):
        return v == "true"
    raise ParamError("should be 'true' or 'false'")


def _p_uint(bits: int) -> Callable[[Any], int]:
    limit = 2**bits

    def parse(v: Any) -> int:
        if isinstance(v, bool):
            raise ParamError(f"should be an unsigned {bits} bit integer")
        if isinstance(v, str) and v.isdigit():
            v = int(v)
        if not isinstance(v, int) or v < 0 or v >= limit:
            raise ParamError(f"should be an unsigned {bits} bit integer")
        return v

    return parse


p_u16 = _p_uint(16)
p_u32 = _p_uint(32)
p_u64 = _p_uint(64)


def p_number(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str):
            try:
                return int(v, 10)
            except ValueError:
                pass
        raise ParamError("should be an integer")
    return v


def p_msat(v: Any):
    try:
        return parse_msat(v)
    except AmountError:
        raise ParamError("should be a millisatoshi amount") from None


def p_sat(v: Any):
    try:
        return parse_sat(v)
    except AmountError:
        raise ParamError("should be a satoshi amount") from None


_HEX = re.compile(r"^([0-9a-fA-F]{2})*$")


def p_hex(v: Any) -> bytes:
    # bytes.fromhex, not a regular expression (~3 us for a 32-byte hash): it takes only hex digits and
    # whitespace, and whitespace shows as fewer bytes than half the characters.
    if isinstance(v, str):
        try:
            b = bytes.fromhex(v)
        except ValueError:
            pass
        else:
            if 2 * len(b) == len(v):
                return b
    raise ParamError("should be a hex string")


def p_sha256(v: Any) -> bytes:
    b = p_hex(v)
    if len(b) != 32:
        raise ParamError("should be a 32 byte hex value")
    return b


# Pubkeys p_pubkey accepted (text -> bytes): the curve check (~20 us) is not made again for the same key (a
# payer's sendpay names the same few peers over and over).  Bounded: cleared when full.
_CHECKED_PUBKEYS: dict[str, bytes] = {}
_MAX_CHECKED_PUBKEYS = 10_000


def p_pubkey(v: Any) -> bytes:
    b = _CHECKED_PUBKEYS.get(v) if isinstance(v, str) else None
    if b is not None:
        return b
    if not isinstance(v, str) or len(v) != 66 or not _HEX.match(v):
        raise ParamError("should be a compressed pubkey")
    b = bytes.fromhex(v)
    if b[0] not in (2, 3):
        raise ParamError("should be a compressed pubkey")
    try:
        from coincurve import PublicKey

        PublicKey(b)
    except Exception:
        raise ParamError("should be a compressed pubkey") from None
    if len(_CHECKED_PUBKEYS) >= _MAX_CHECKED_PUBKEYS:
        _CHECKED_PUBKEYS.clear()
    _CHECKED_PUBKEYS[v] = b
    return b


def p_enum(*values: str) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if not isinstance(v, str) or v not in values:
            raise ParamError("should be one of " + ", ".join(values))
        return v

    return parse


def p_datastore_key(v: Any) -> list[str]:
    """A datastore key: an array of strings, or one string meaning a one-element array."""
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return list(v)
    raise ParamError("should be an array of strings or a string")


def p_any(v: Any) -> Any:
    return v
