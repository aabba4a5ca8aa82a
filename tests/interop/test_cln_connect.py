"""Connecting and reconnecting Ampere and Core Lightning, both directions, over TCP and unix sockets."""

from __future__ import annotations

import os

import pytest

from ampere.testing.nodes import wait_for

pytestmark = pytest.mark.cln


def connected(a, b) -> bool:
    peers = a.rpc.listpeers(b.node_id)["peers"]
    return bool(peers) and peers[0]["connected"]


def test_connect_tcp_both_ways(node_factory):
    amp = node_factory.get_node(listen=True)
    cln = node_factory.get_cln_node()
    # Ampere dials CLN.
    r = amp.rpc.connect(cln.node_id, "127.0.0.1", cln.port)
    assert r["id"] == cln.node_id and r["direction"] == "out"
    wait_for(lambda: connected(cln, amp), what="CLN sees Ampere")
    peer = cln.rpc.listpeers(amp.node_id)["peers"][0]
    assert peer["netaddr"][0].startswith("127.0.0.1:")
    # Feature bits each side read from the other's init.
    assert amp.rpc.listpeers(cln.node_id)["peers"][0]["features"]
    amp.rpc.disconnect(cln.node_id)
    wait_for(lambda: not cln.rpc.listpeers(amp.node_id)["peers"], what="CLN saw the disconnect")
    # CLN dials Ampere.
    r = cln.rpc.connect(amp.node_id, "127.0.0.1", amp.port)
    assert r["id"] == amp.node_id and r["direction"] == "out"
    wait_for(lambda: connected(amp, cln), what="Ampere sees CLN")
    cln.rpc.disconnect(amp.node_id)
    wait_for(lambda: not amp.rpc.listpeers(cln.node_id)["peers"], what="Ampere saw the disconnect")
    # And again (reconnect), Ampere first.
    amp.rpc.connect(cln.node_id, "127.0.0.1", cln.port)
    wait_for(lambda: connected(cln, amp), what="reconnected")
    # totlen counts the pong's type and length fields (4 bytes) besides its 20 ignored bytes.
    assert amp.rpc.ping(cln.node_id, 10, 20)["totlen"] == 24
    assert cln.rpc.ping(amp.node_id, 10, 20)["totlen"] == 24


def test_connect_unix_socket_both_ways(node_factory):
    base = node_factory.base_dir
    amp_sock, cln_sock = os.path.join(base, "amp.sock"), os.path.join(base, "cln.sock")
    amp = node_factory.get_node(**{"bind-addr": amp_sock})
    cln = node_factory.get_cln_node(**{"bind-addr": cln_sock})
    cln.rpc.connect(f"{amp.node_id}@{amp_sock}")
    wait_for(lambda: connected(amp, cln), what="Ampere sees CLN over its unix socket")
    cln.rpc.disconnect(amp.node_id)
    wait_for(lambda: not amp.rpc.listpeers(cln.node_id)["peers"], what="disconnected")
    amp.rpc.connect(f"{cln.node_id}@{cln_sock}")
    wait_for(lambda: connected(cln, amp), what="CLN sees Ampere over its unix socket")
    assert cln.rpc.ping(amp.node_id)["totlen"] > 0
