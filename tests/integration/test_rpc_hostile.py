"""Issue 16 items 3, 5 and 6 against a real ampd: the RPC socket's framing and back-pressure under hostile
clients (split UTF-8, trickled huge requests, deep nesting, huge integers, clients that never read) and a huge
invoice that must not stall the event loop."""
from __future__ import annotations

import json
import socket
import time

import pytest


def rpc_socket(node, timeout: float = 30.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(node.rpc_path)
    return s


def read_reply(s: socket.socket) -> dict:
    buf = b""
    while b"\n\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {buf[:200]!r}")
        buf += chunk
    return json.loads(buf.split(b"\n\n", 1)[0])


def closed_by_server(s: socket.socket) -> bool:
    try:
        while True:
            if not s.recv(65536):
                return True
    except socket.timeout:
        return False
    except ConnectionError:
        return True


def getinfo_latency(node) -> float:
    start = time.monotonic()
    node.rpc.getinfo()
    return time.monotonic() - start


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_multibyte_character_split_across_reads(node_factory):
    l1 = node_factory.get_node()
    s = rpc_socket(l1)
    req = json.dumps({"jsonrpc": "2.0", "id": "é€😀", "method": "getinfo", "params": {}},
                     ensure_ascii=False).encode()
    cut = req.index("é".encode()) + 1            # inside the two bytes of é
    s.sendall(req[:cut])
    time.sleep(0.2)
    s.sendall(req[cut:cut + 3])                  # and inside the four bytes of 😀 further on
    time.sleep(0.2)
    s.sendall(req[cut + 3:])
    reply = read_reply(s)
    assert reply["id"] == "é€😀" and "result" in reply, reply
    s.close()


def test_trickled_huge_request_does_not_block_the_loop(node_factory):
    l1 = node_factory.get_node()
    s = rpc_socket(l1)
    # 8 MB of a request that is not a string (the old code re-scanned all of it, bracket by bracket, per read)
    s.sendall(b'{"jsonrpc":"2.0","id":7,"method":"getinfo","params":[' + b"[1]," * 2_000_000)
    l1.rpc.getinfo()
    worst = 0.0
    for _ in range(20):
        s.sendall(b"[1],")
        time.sleep(0.02)
        worst = max(worst, getinfo_latency(l1))
    s.sendall(b"[1]]}")
    reply = read_reply(s)
    assert reply["id"] == 7 and reply["error"]["code"] == -32602, reply
    assert worst < 0.5, f"getinfo took {worst:.2f}s while a huge request trickled in"
    s.close()


@pytest.mark.parametrize("payload, code", [
    (b'{"jsonrpc":"2.0","id":1,"method":"getinfo","params":' + b"[" * 1000 + b"]" * 1000 + b"}", -32700),
    (b'{"jsonrpc":"2.0","id":1,"method":"getinfo","params":[' + b"1" * 5000 + b"]}", -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"getinfo","params":{"a":' + b"-9" * 3000 + b"}}", -32700),
    (b'\xff{"jsonrpc":"2.0","id":1,"method":"getinfo"}', -32700),
    (b'{"jsonrpc":"2.0","id":1,"method":"getinfo"} ]', -32700),
])
def test_hostile_frames_get_an_answer_and_no_traceback(node_factory, payload, code):
    l1 = node_factory.get_node()
    s = rpc_socket(l1, timeout=10)
    s.sendall(payload)
    replies = []
    buf = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    replies = [json.loads(x) for x in buf.split(b"\n\n") if x.strip()]
    assert replies and replies[-1]["error"]["code"] == code, replies
    s.close()
    assert l1.rpc.getinfo()["id"]        # the node is fine, other connections unaffected
    assert "Traceback" not in l1.stderr() and "Error" not in l1.stderr(), l1.stderr()


def test_huge_invoice_is_refused_without_stalling_the_loop(node_factory):
    from ampere.primitives.bech32 import bech32_encode
    l1 = node_factory.get_node()
    text = bech32_encode("lnbcrt", [0] * 150_000)          # 0.15 MB: stalled getinfo for 6 s before
    t0 = time.monotonic()
    with pytest.raises(Exception) as e:
        l1.rpc.decode(text)
    assert time.monotonic() - t0 < 2.0
    assert e.value.error["code"] == -32602 and "too long" in e.value.error["message"]
    big_amount = bech32_encode("lnbcrt" + "9" * 5000 + "m", [0] * 200)
    with pytest.raises(Exception) as e:
        l1.rpc.decode(big_amount)
    assert e.value.error["code"] == -32602 and "amount" in e.value.error["message"], e.value.error


def test_client_that_never_reads_is_back_pressured_and_memory_returns(node_factory):
    l1 = node_factory.get_node()
    pid = l1.proc.pid
    l1.rpc.listconfigs()
    before = rss_kb(pid)
    s = rpc_socket(l1, timeout=3)
    req = b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"listconfigs"}' % i for i in range(1000))
    sent = 0
    peak = before
    try:
        while sent < 400:                     # up to 400k requests; ampd stops reading long before
            s.sendall(req)
            sent += 1
            if sent % 20 == 0:
                peak = max(peak, rss_kb(pid))
    except socket.timeout:
        pass                                   # ampd stopped reading: the back-pressure we want
    peak = max(peak, rss_kb(pid))
    latency = getinfo_latency(l1)              # other clients are served meanwhile
    s.close()
    time.sleep(2.0)
    l1.rpc.getinfo()
    after = rss_kb(pid)
    print(f"\nRSS before {before // 1024} MB, peak {peak // 1024} MB while {sent}k requests were pipelined, "
          f"after close {after // 1024} MB; getinfo meanwhile {latency * 1000:.0f} ms")
    assert sent < 400, "ampd read every request without its replies being read"
    assert peak - before < 150 * 1024, (before, peak)
    assert after - before < 60 * 1024, (before, after)
