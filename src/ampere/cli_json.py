"""JSON for the command-line tools (amp-cli, amp-chain-cli) without the start-up cost of `json`.

Why: Core Lightning's bcli plugin spawns amp-chain-cli for every chain query and scripts call
amp-cli in loops, so import time is paid all the time.  `import json` pulls in `re` (and with it
enum, functools, collections): about half of these tools' CPU time at start.  The C accelerator
`_json` (which `json` itself uses) needs none of that, so parsing goes straight to its scanner
and writing is a small recursive encoder producing exactly what `json.dumps` produces for the
values these tools handle (dict, list, tuple, str, int, float, bool, None).

On malformed input the C scanner imports json.decoder itself to raise `JSONDecodeError` (a
ValueError): the error path pays the import, the normal path does not.
"""

import _json

_WHITESPACE = " \t\n\r"
# json.decoder's parse_constant table: the non-standard literals Python's json accepts.
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _ScanContext:
    """The attributes _json.make_scanner reads from a JSONDecoder."""

    def __init__(self, parse_float, parse_int) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = parse_float
        self.parse_int = parse_int
        self.parse_constant = _CONSTANTS.__getitem__
        self.memo: dict = {}


_scanners: dict = {}


def _scanner(parse_float, parse_int):
    key = (parse_float, parse_int)
    scan = _scanners.get(key)
    if scan is None:
        scan = _scanners[key] = _json.make_scanner(_ScanContext(parse_float, parse_int))  # type: ignore[arg-type]
    return scan


class JSONError(ValueError):
    """Not a JSON document (raised where json.loads would raise JSONDecodeError)."""


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def raw_decode(text: str, pos: int = 0, parse_float=float, parse_int=int) -> tuple[object, int]:
    """One JSON value starting at `pos` (after whitespace): (value, end), as JSONDecoder.raw_decode."""
    try:
        return _scanner(parse_float, parse_int)(text, _skip(text, pos))
    except StopIteration as e:
        raise JSONError(f"Expecting value: char {e.value}") from None
    except ValueError as e:  # the scanner's JSONDecodeError
        raise JSONError(str(e)) from None


def loads(text: str, parse_float=float, parse_int=int) -> object:
    """json.loads for str input: one value, only whitespace around it."""
    value, end = raw_decode(text, 0, parse_float, parse_int)
    end = _skip(text, end)
    if end != len(text):
        raise JSONError(f"Extra data: char {end}")
    return value


def _float(v: float) -> str:
    # json.encoder.floatstr with allow_nan=True
    if v != v:
        return "NaN"
    if v == float("inf"):
        return "Infinity"
    if v == float("-inf"):
        return "-Infinity"
    return float.__repr__(v)


def _key(k, string) -> str:
    if isinstance(k, str):
        return string(k)
    if k is True:
        return '"true"'
    if k is False:
        return '"false"'
    if k is None:
        return '"null"'
    if isinstance(k, int):
        return '"' + int.__repr__(k) + '"'
    if isinstance(k, float):
        return '"' + _float(k) + '"'
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


def dumps(obj: object, indent: int | None = None, separators: tuple[str, str] | None = None,
          ensure_ascii: bool = True) -> str:
    """json.dumps(obj, indent=, separators=, ensure_ascii=) for plain JSON values."""
    string = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
    if separators is not None:
        item_sep, key_sep = separators
    else:
        item_sep, key_sep = ("," if indent is not None else ", "), ": "
    out: list[str] = []
    _encode(obj, string, indent, item_sep, key_sep, 0, out)
    return "".join(out)


def _encode(v, string, indent, item_sep, key_sep, level, out) -> None:
    if isinstance(v, str):
        out.append(string(v))
    elif v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(int.__repr__(v))
    elif isinstance(v, float):
        out.append(_float(v))
    elif isinstance(v, (list, tuple, dict)):
        is_dict = isinstance(v, dict)
        if not v:
            out.append("{}" if is_dict else "[]")
            return
        out.append("{" if is_dict else "[")
        if indent is not None:
            sep = item_sep + "\n" + " " * (indent * (level + 1))
            out.append(sep[len(item_sep):])
        else:
            sep = item_sep
        first = True
        for item in (v.items() if isinstance(v, dict) else v):
            if not first:
                out.append(sep)
            first = False
            if is_dict:
                out.append(_key(item[0], string))
                out.append(key_sep)
                item = item[1]
            _encode(item, string, indent, item_sep, key_sep, level + 1, out)
        if indent is not None:
            out.append("\n" + " " * (indent * level))
        out.append("}" if is_dict else "]")
    else:
        raise TypeError(f"Object of type {type(v).__name__} is not JSON serializable")
