"""Address options and `connect` hosts, parsed as lightningd parses them."""

from __future__ import annotations

import pytest

from ampere.config import ConfigError, Options
from ampere.node.app.options import builtin_options
from ampere.node.net.connection import PeerAddress
from ampere.node.net.peers import (AddressError, PeerConfig, default_port, parse_announce_address,
                               parse_listen_address, parse_peer_address, split_host_port)


def options(**values) -> Options:
    opts = Options()
    for spec in builtin_options():
        opts.add(spec)
    for k, v in values.items():
        opts.values[k.replace("_", "-")] = v
    return opts


def test_default_ports_match_lightningd():
    assert default_port("bitcoin") == 9735
    assert default_port("testnet") == 19735
    assert default_port("testnet4") == 49735
    assert default_port("signet") == 39735
    assert default_port("regtest") == 19846


@pytest.mark.parametrize("text,expected", [
    ("1.2.3.4", ("1.2.3.4", 9735)),
    ("1.2.3.4:1000", ("1.2.3.4", 1000)),
    ("[::1]:1000", ("::1", 1000)),
    ("[::1]", ("::1", 9735)),
    ("::1", ("::1", 9735)),
    ("example.com:42", ("example.com", 42)),
])
def test_split_host_port(text, expected):
    assert split_host_port(text, 9735) == expected


@pytest.mark.parametrize("text", ["1.2.3.4:", "1.2.3.4:x", "1.2.3.4:70000", "[::1", "[::1]x", "1.2.3.4:0"])
def test_split_host_port_rejects(text):
    with pytest.raises(AddressError):
        split_host_port(text, 9735)


def test_listen_addresses():
    assert parse_listen_address("/tmp/l2/peer", 19846, announce=False).kind == "local socket"
    s = parse_listen_address("127.0.0.1:0", 19846, announce=True)
    assert (s.kind, s.host, s.port, s.announce) == ("ip", "127.0.0.1", 0, True)
    s = parse_listen_address("[::]:9999", 19846, announce=False)
    assert (s.kind, s.host, s.port) == ("ip", "::", 9999)
    assert parse_listen_address(":9999", 1, announce=True).kind == "all"
    # lightningd takes "localhost" as 127.0.0.1 without DNS (so it works with --disable-dns).
    s = parse_listen_address("localhost", 19846, announce=False)
    assert (s.kind, s.host) == ("ip", "127.0.0.1")
    assert parse_listen_address("node.example:9735", 19846, announce=False).kind == "host"
    from ampere.node.net.peers import parse_peer_address
    a = parse_peer_address("localhost", 9735, "regtest")
    assert (a.kind, a.host, a.port) == ("ipv4", "127.0.0.1", 9735)
    assert parse_peer_address("node.example", 9735, "regtest").kind == "unresolved"
    for bad in ("ws:127.0.0.1:1", "autotor:127.0.0.1:9051", "statictor:1.2.3.4", "x.onion:1", "/" + "a" * 120):
        with pytest.raises(AddressError):
            parse_listen_address(bad, 19846, announce=True)


def test_announce_addresses():
    assert parse_announce_address("1.2.3.4", 9735) == PeerAddress("ipv4", "1.2.3.4", 9735)
    assert parse_announce_address("dns:example.com:1", 9735).to_json() == {"type": "dns", "address": "example.com",
                                                                           "port": 1}
    assert parse_announce_address("abc.onion", 9735).kind == "torv3"
    for bad in ("/tmp/x", "example.com", "dns:1.2.3.4"):
        with pytest.raises(AddressError):
            parse_announce_address(bad, 9735)


def test_peer_addresses_and_their_printed_forms():
    a = parse_peer_address("/tmp/l2/peer", None, "regtest")
    assert (str(a), a.to_json()) == ("/tmp/l2/peer", {"type": "local socket", "socket": "/tmp/l2/peer"})
    a = parse_peer_address("127.0.0.1", None, "regtest")
    assert str(a) == "127.0.0.1:19846"
    a = parse_peer_address("::1", 5, "regtest")
    assert str(a) == "[::1]:5" and a.to_json() == {"type": "ipv6", "address": "::1", "port": 5}
    assert parse_peer_address("[::ffff:1.2.3.4]:7", None, "bitcoin") == PeerAddress("ipv4", "1.2.3.4", 7)
    assert parse_peer_address("node.example:7", None, "bitcoin").kind == "unresolved"
    assert parse_peer_address("xyz.onion", 9, "bitcoin").kind == "torv3"


def test_config_from_options():
    cfg = PeerConfig.from_options(options(), "regtest")
    assert cfg.autolisten and cfg.listen == [] and cfg.use_dns and cfg.handshake_timeout == 60
    cfg = PeerConfig.from_options(options(addr=["127.0.0.1:1"], bind_addr=["/tmp/x"], dev_handshake_timeout=3,
                                          disable_dns=True, proxy="127.0.0.1", always_use_proxy=True), "regtest")
    assert not cfg.autolisten  # any address option disables autolisten, as in lightningd
    assert [s.kind for s in cfg.listen] == ["ip", "local socket"] and cfg.listen[0].announce
    assert cfg.proxy == ("127.0.0.1", 9050) and cfg.always_use_proxy and not cfg.use_dns
    assert cfg.handshake_timeout == 3
    assert not PeerConfig.from_options(options(announce_addr=["1.2.3.4"]), "regtest").autolisten
    with pytest.raises(ConfigError):
        PeerConfig.from_options(options(always_use_proxy=True), "regtest")
    with pytest.raises(ConfigError):
        PeerConfig.from_options(options(bind_addr=["ws:1.2.3.4"]), "regtest")
