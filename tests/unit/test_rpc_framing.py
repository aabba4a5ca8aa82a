"""The RPC stream framer (issue 16 item 5): UTF-8 across reads, linear incremental scanning, bounded nesting,
huge integers, and the framing lightningd accepts (values back to back, whitespace, several per read)."""
from __future__ import annotations

import json
import time

import pytest

from ampere.rpc.framing import MAX_NESTING, FrameError, InvalidRequest, JsonStreamFramer


def feed_bytes(data: bytes, step: int) -> list:
    f = JsonStreamFramer()
    out = []
    for i in range(0, len(data), step):
        out += f.feed(data[i:i + step])
    return out


REQS = [{"jsonrpc": "2.0", "id": i, "method": "m", "params": {"s": 'a"b\\c}{][ é€😀', "n": [1, [2, {"x": None}]]}}
        for i in range(5)]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_values_back_to_back_in_any_split(step):
    data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b" \n" for r in REQS)
    data += b'"str" 12 [1] {}'
    assert feed_bytes(data, step) == REQS + ["str", 12, [1], {}]


def test_trickle_is_linear():
    f = JsonStreamFramer()
    head = b'{"params":[' + b"[1]," * 500_000
    for i in range(0, len(head), 262144):      # the largest read asyncio hands over
        assert f.feed(head[i:i + 262144]) == []
    start = time.perf_counter()
    for _ in range(2000):
        assert f.feed(b"[1],") == []
    assert time.perf_counter() - start < 0.5
    (obj,) = f.feed(b"[1]]}")
    assert len(obj["params"]) == 502_001


@pytest.mark.parametrize("data, text", [
    (b"[" * (MAX_NESTING + 1), "nested deeper"),
    (b"\xff", "invalid UTF-8"),
    (b"]", "unexpected"),
    (b'{"a" 1}', "Parse error"),
])
def test_frame_errors(data, text):
    with pytest.raises(FrameError, match=text):
        JsonStreamFramer().feed(data)


def test_huge_integer_is_an_invalid_request_and_the_stream_goes_on():
    out = JsonStreamFramer().feed(b'{"id":[' + b"1" * 5000 + b']}{"id":2}')
    assert isinstance(out[0], InvalidRequest) and "4300" in out[0].message
    assert out[1] == {"id": 2}


def test_size_limit():
    f = JsonStreamFramer(max_chars=100)
    with pytest.raises(FrameError) as e:
        f.feed(b'{"a":"' + b"x" * 200)
    assert e.value.code == -32600


def test_connection_closed_when_its_unread_output_passes_the_hard_bound():
    """Notifications to a client that never reads are not back-pressured by its requests: a hard bound closes it."""
    from ampere.rpc.server import MAX_UNREAD_BYTES, RpcConnection

    class Transport:
        def __init__(self):
            self.buffered, self.closed = 0, False

        def write(self, data):
            self.buffered += len(data)

        def get_write_buffer_size(self):
            return self.buffered

        def close(self):
            self.closed = True

    t = Transport()
    conn = RpcConnection(t)
    note = {"jsonrpc": "2.0", "method": "log", "params": {"log": "x" * 1000}}
    for _ in range(MAX_UNREAD_BYTES // 1000 + 10):
        conn.send_nowait(note)
        if conn.closed:
            break
    assert conn.closed and t.closed
    assert MAX_UNREAD_BYTES < t.buffered < MAX_UNREAD_BYTES + 2000
