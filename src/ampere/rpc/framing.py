"""Splitting the JSON-RPC byte stream of one connection into requests, in time linear in the input.

lightningd's framing: requests are JSON values one after the other, no delimiter. Each read is decoded as part of
one UTF-8 stream (a character may be split across reads) and scanned once, where it left off: the scanner only
tracks strings, escapes and bracket depth, so a request trickling in a few bytes at a time costs a few bytes of
work per read, not a re-parse of everything received so far. Only a complete value is handed to `json.loads`.

Limits (docs/limits.md):
  * a request may be at most MAX_REQUEST_CHARS characters;
  * brackets may nest at most MAX_NESTING deep (json would recurse: RecursionError);
  * an integer literal longer than Python's int-digit limit (4,300 digits) makes that request invalid.
A framing error means the stream cannot be resynchronised: the caller answers -32700 and closes. A request that
is well framed but cannot be loaded for a size reason (huge integer) is answered -32600 and the stream goes on.
"""
from __future__ import annotations

import codecs
import json
import re
from itertools import accumulate
from dataclasses import dataclass
from typing import Any

__all__ = ["FrameError", "InvalidRequest", "JsonStreamFramer", "MAX_NESTING", "MAX_REQUEST_CHARS", "whole_request"]

MAX_REQUEST_CHARS = 64 * 1024 * 1024
MAX_NESTING = 100

_IN_STRING = re.compile(r'["\\]')
_BRACKET = re.compile(r"[\[\]{}]")
_NOT_BRACKET_BYTES = bytes(b for b in range(256) if b not in b"[]{}")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
_DELTA_BYTE = [0] * 256
for _c, _d in _DELTA.items():
    _DELTA_BYTE[ord(_c)] = _d
_SCALAR_END = re.compile(r'[\s\[\]{}",:]')
_WHITESPACE = " \t\r\n"
_decoder = json.JSONDecoder()
# raw_decode without its Python frame: (value, end), StopIteration if no value starts there (a turn per message).
_scan_once = _decoder.scan_once


class FrameError(Exception):
    """The stream is not JSON (or breaks a limit): answer -32700/-32600 and close the connection."""

    def __init__(self, message: str, code: int = -32700) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class InvalidRequest:
    """A complete, well-framed request that cannot be loaded (e.g. an integer literal over 4,300 digits)."""
    message: str


_Utf8Decoder = codecs.getincrementaldecoder("utf-8")  # looked up once, not per connection


def whole_request(data: bytes) -> list[Any] | None:
    """[the request] when the first read of a connection is exactly one whole JSON object or array (whitespace
    around it allowed): what a client sending one request per connection (pyln-client, lightning-cli) always
    sends.  None for anything else (a partial or invalid value, several values, split UTF-8): that read goes to
    a JsonStreamFramer, from the start.  The framer's own fast path decodes such a read the same way; this
    spares the framer and its incremental UTF-8 decoder for the connection."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    text = text.strip(_WHITESPACE)
    if not text or text[0] not in "{[":
        return None
    try:
        obj, end = _scan_once(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return None
    return [obj] if end == len(text) else None


class JsonStreamFramer:
    """Feed bytes, get back the complete JSON values (or InvalidRequest markers) they finish."""

    def __init__(self, max_chars: int = MAX_REQUEST_CHARS, max_nesting: int = MAX_NESTING) -> None:
        self._utf8 = _Utf8Decoder("strict")
        self.max_chars = max_chars
        self.max_nesting = max_nesting
        self._parts: list[str] = []     # the current value's text so far (before the chunk being scanned)
        self._size = 0                  # characters in _parts
        self._kind = ""                 # "" between values, "{" in an object/array, '"' a string, "s" a scalar
        self._depth = 0
        self._in_str = False
        self._esc = False

    @property
    def buffered(self) -> int:
        return self._size

    def reset(self) -> None:
        """Forget any partial value (the connection is gone)."""
        self._utf8.reset()
        self._parts = []
        self._size = 0
        self._kind = ""
        self._depth = 0
        self._in_str = self._esc = False

    def feed(self, data: bytes) -> list[Any]:
        """Raises FrameError on a stream that cannot be JSON."""
        try:
            text = self._utf8.decode(data)
        except UnicodeDecodeError:
            raise FrameError("Parse error: invalid UTF-8") from None
        out: list[Any] = []
        pos, n = 0, len(text)
        while pos < n:
            if not self._kind:
                while pos < n and text[pos] in _WHITESPACE:
                    pos += 1
                if pos >= n:
                    break
                start = pos
                c = text[pos]
                if c in "{[":
                    # Fast path for the usual case, whole requests in this read: C's decoder directly (its cost is
                    # bounded by the read, at most 256 KiB). Anything it cannot take whole (incomplete, too deep,
                    # huge integer, invalid) goes through the scanner below, which gives the precise answer.
                    try:
                        obj, end = _scan_once(text, pos)
                    except (StopIteration, ValueError, RecursionError):
                        pass
                    else:
                        out.append(obj)
                        pos = end
                        continue
                    self._kind, self._depth, self._in_str, self._esc = "{", 0, False, False
                elif c == '"':
                    self._kind, self._in_str, self._esc = '"', True, False
                    pos += 1
                elif c in "]}:,":
                    raise FrameError(f"Parse error: unexpected '{c}'")
                else:
                    self._kind = "s"
            else:
                start = 0
            end = self._scan(text, pos)
            if end < 0:
                self._keep(text[start:])
                return out
            whole = "".join(self._parts) + text[start:end] if self._parts else text[start:end]
            self._parts, self._size, self._kind = [], 0, ""
            if len(whole) > self.max_chars:
                raise FrameError("Request too large", -32600)
            out.append(_load(whole))
            pos = end
        return out

    def _keep(self, piece: str) -> None:
        self._parts.append(piece)
        self._size += len(piece)
        if self._size > self.max_chars:
            raise FrameError("Request too large", -32600)

    def _scan(self, text: str, pos: int) -> int:
        """Scan text from pos for the end of the current value; its index past the end, or -1 (need more)."""
        n = len(text)
        if self._kind == "s":
            m = _SCALAR_END.search(text, pos)
            return -1 if m is None else m.start()
        while pos < n:
            if self._in_str:
                if self._esc:
                    self._esc = False
                    pos += 1
                    continue
                m = _IN_STRING.search(text, pos)
                if m is None:
                    return -1
                pos = m.end()
                if m.group() == "\\":
                    self._esc = True
                else:
                    self._in_str = False
                    if self._kind == '"':
                        return pos
                continue
            # Outside strings up to the next quote only brackets matter. Their running depth over the whole
            # stretch is computed in C (accumulate over the bracket characters): if it neither returns to 0 nor
            # nests too deep, the stretch is passed in one step; otherwise it holds the end (or the error) and
            # is walked bracket by bracket, once.
            q = text.find('"', pos)
            q = n if q < 0 else q
            seg = text[pos:q]
            if not seg.isascii():   # outside strings JSON is ASCII only
                raise FrameError("Parse error: invalid character outside a string")
            brackets = seg.encode("ascii").translate(None, _NOT_BRACKET_BYTES)
            if brackets:
                run = list(accumulate(map(_DELTA_BYTE.__getitem__, brackets), initial=self._depth))
                if min(run) > 0 and max(run) <= self.max_nesting:
                    self._depth = run[-1]
                else:
                    for m in _BRACKET.finditer(text, pos, q):
                        self._depth += _DELTA[m.group()]
                        if self._depth > self.max_nesting:
                            raise FrameError(f"Parse error: nested deeper than {self.max_nesting} levels")
                        if self._depth == 0:
                            return m.end()
            if q >= n:
                return -1
            self._in_str = True
            pos = q + 1
        return -1


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FrameError(f"Parse error: {e.msg}") from None
    except RecursionError:
        raise FrameError("Parse error: nested too deep") from None
    except ValueError as e:   # Python's int-digit limit: the framing is intact, this request is not
        return InvalidRequest(f"Invalid request: {e}")
