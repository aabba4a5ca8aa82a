"""The bytes of one JSON-RPC reply, in pieces when the result is large.

A reply is compact JSON followed by the blank line pyln-client and lightning-cli split on.  A list command
answering 10,000 entries (listinvoices, listsendpays, listpays, listforwards) would otherwise exist three
times over at once besides its dicts: the whole JSON text, its UTF-8 bytes, and those bytes with "\\n\\n"
appended.  Here a result member that is a long list is encoded CHUNK entries at a time, each piece handed to
the transport before the next is made, so only the transport's unsent buffer grows with the answer.

The pieces joined are byte for byte what `json.dumps(obj, separators=(",", ":"))` gives (the same C encoder
encodes every piece; tests/unit/test_rpc_reply.py compares them).
"""

from __future__ import annotations

import json
from typing import Any, Iterator



def _compact_encoder() -> Any:
    """`json.JSONEncoder(separators=(",", ":")).encode`, the same text, without its two Python-level frames and
    the C encoder it builds anew on every call: built once, without the circular-reference check (replies are
    trees; a cycle would raise RecursionError rather than ValueError)."""
    c_make = getattr(json.encoder, "c_make_encoder", None)
    if c_make is None:  # no C accelerator: json's own path
        return json.JSONEncoder(separators=(",", ":")).encode

    def default(o: Any) -> Any:
        raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")
    chunks = c_make(None, default, json.encoder.c_encode_basestring_ascii, None, ":", ",", False, False, True)
    join = "".join
    return lambda obj: join(chunks(obj, 0))


# Replies are written compactly; one encoder built once (json.dumps with options builds one per call).
encode_reply = _compact_encoder()

# Entries of a list encoded at once; a list longer than this makes the reply go out in pieces.
CHUNK = 256


def _long_lists(result: Any) -> bool:
    if not isinstance(result, dict):
        return False
    for key, value in result.items():
        if type(value) is list and len(value) > CHUNK:
            return type(key) is str
    return False


def reply_bytes(obj: Any) -> bytes | None:
    """The reply's bytes, "\n\n" included, when they go in one piece (the usual case: no generator for it);
    None when `obj["result"]` has a long list (then reply_pieces)."""
    result = obj.get("result") if type(obj) is dict else None
    if result and type(result) is dict and _long_lists(result):
        return None
    return encode_reply(obj).encode() + b"\n\n"


def reply_pieces(obj: Any) -> Iterator[bytes]:
    """The reply's bytes, "\\n\\n" included: one piece, or several when `obj["result"]` has a long list."""
    result = obj.get("result") if type(obj) is dict else None
    if not _long_lists(result) or not all(type(k) is str for k in obj) or not all(type(k) is str for k in result):
        yield encode_reply(obj).encode() + b"\n\n"
        return
    head: list[str] = []
    tail: list[str] = []  # members after "result" (a reply has none today, but the dict's order is kept)
    seen = False
    for key, value in obj.items():
        if key == "result":
            seen = True
        else:
            (tail if seen else head).append(f"{encode_reply(key)}:{encode_reply(value)}")
    head.append('"result":{')
    yield ("{" + ",".join(head)).encode()
    first = True
    for key, value in result.items():
        prefix = ("" if first else ",") + encode_reply(key) + ":"
        first = False
        if type(value) is not list or len(value) <= CHUNK:
            yield (prefix + encode_reply(value)).encode()
            continue
        yield (prefix + "[").encode()
        for i in range(0, len(value), CHUNK):
            text = encode_reply(value[i:i + CHUNK])[1:-1]  # the entries, without the slice's brackets
            yield (text if i == 0 else "," + text).encode()
        yield b"]"
    yield ("}" + "".join("," + t for t in tail) + "}\n\n").encode()
