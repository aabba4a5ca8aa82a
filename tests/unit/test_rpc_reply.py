"""Replies in pieces (issue 18 item 6): a long list result goes out CHUNK entries at a time, and the pieces
joined are exactly the bytes of the whole reply encoded at once."""

import json
import random

from ampere.rpc.reply import CHUNK, reply_pieces


def whole(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def entry(rng: random.Random, i: int) -> dict:
    return {"label": f"bench-{i} \u00e9\u2603 \"q\"\\", "amount_msat": rng.randrange(1 << 60), "status": "paid",
            "paid": rng.random() < 0.5, "none": None, "ratio": rng.random(),
            "nested": {"hops": [rng.randbytes(4).hex() for _ in range(rng.randrange(3))]}}


def test_small_replies_are_one_piece_and_unchanged():
    for obj in ({"jsonrpc": "2.0", "id": 1, "result": {}},
                {"jsonrpc": "2.0", "id": "x/cln:y#1", "error": {"code": -32602, "message": "bad"}},
                {"jsonrpc": "2.0", "id": 7, "result": {"invoices": [{"a": i} for i in range(CHUNK)]}},
                {"jsonrpc": "2.0", "method": "message", "params": {"id": 1, "message": "m"}}):
        pieces = list(reply_pieces(obj))
        assert pieces == [whole(obj)]


def test_long_lists_go_out_in_pieces_identical_to_the_whole():
    rng = random.Random(5)
    for n in (CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 3, 10_000):
        obj = {"jsonrpc": "2.0", "id": "cli:listinvoices#1",
               "result": {"before": 1, "invoices": [entry(rng, i) for i in range(n)], "more": [1, 2],
                          "other": [entry(rng, i) for i in range(CHUNK + 5)]},
               "trailing": {"x": "y"}}
        pieces = list(reply_pieces(obj))
        assert b"".join(pieces) == whole(obj)
        # No piece carries more than CHUNK entries: the whole text is never built.
        assert len(pieces) >= n // CHUNK + 1
        assert max(len(p) for p in pieces) < 2 * len(whole({"e": obj["result"]["invoices"][:CHUNK]})) + 1000
        json.loads(b"".join(pieces))


def test_non_ascii_is_escaped_as_json_dumps_does():
    obj = {"jsonrpc": "2.0", "id": 1, "result": {"pays": [{"description": "\u2603\ud800"}] * (CHUNK + 1)}}
    assert b"".join(reply_pieces(obj)) == whole(obj)
