"""Issue 16 item 2 against a real ampd: 1,000 silent TCP connections held open do not lock an honest peer out."""
from __future__ import annotations

import socket
import time



def tcp_port(node) -> int:
    (binding,) = [b for b in node.rpc.getinfo()["binding"] if b["type"] == "ipv4"]
    return binding["port"]


def test_thousand_silent_connections_do_not_lock_out_an_honest_peer(node_factory):
    l1 = node_factory.get_node(**{"bind-addr": "127.0.0.1:0"})
    l2 = node_factory.get_node(autolisten=False)
    port, id1 = tcp_port(l1), l1.rpc.getinfo()["id"]
    held = []
    try:
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.append(s)
        time.sleep(3.0)   # let ampd accept them all: they are now pending handshakes that never speak
        start = time.monotonic()
        r = l2.rpc.connect(id1, "127.0.0.1", port)
        took = time.monotonic() - start
        print(f"\nhonest peer admitted in {took:.3f}s with 1000 silent connections held")
        assert r["id"] == id1 and r["direction"] == "out"
        assert took < 10, took
        # l1 is still answering its RPC and lists the honest peer
        assert any(p["id"] == l2.rpc.getinfo()["id"] for p in l1.rpc.listpeers()["peers"])
    finally:
        for s in held:
            s.close()
