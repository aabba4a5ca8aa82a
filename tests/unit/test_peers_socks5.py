"""The SOCKS5 client against a small SOCKS5 server written here (RFC 1928, no auth, CONNECT),
and a peer connection made through it."""

from __future__ import annotations

import asyncio
import os

import pytest

from ampere.node.net.connection import PeerAddress
from ampere.node.errors import Reason
from ampere.node.net.peers import ConnectError, PeerConfig, PeerManager, parse_listen_address
from ampere.node.net.socks5 import Socks5Error, encode_destination, open_socks5_connection


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Socks5Server:
    """Accepts CONNECT to IPv4/IPv6/domain destinations; `redirect` maps a domain to a real
    host:port (as Tor maps an onion address); `refuse` answers REP=5 (connection refused)."""

    def __init__(self, redirect: dict[str, tuple[str, int]] | None = None, refuse: bool = False) -> None:
        self.redirect = redirect or {}
        self.refuse = refuse
        self.requests: list[tuple[int, str, int]] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def handle(self, reader, writer):
        try:
            ver, n = await reader.readexactly(2)
            methods = await reader.readexactly(n)
            assert ver == 5 and 0 in methods
            writer.write(b"\x05\x00")
            ver, cmd, _, atyp = await reader.readexactly(4)
            if atyp == 1:
                host = ".".join(str(b) for b in await reader.readexactly(4))
            elif atyp == 4:
                import ipaddress

                host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
            else:
                (ln,) = await reader.readexactly(1)
                host = (await reader.readexactly(ln)).decode()
            port = int.from_bytes(await reader.readexactly(2), "big")
            self.requests.append((atyp, host, port))
            if self.refuse:
                writer.write(b"\x05\x05\x00\x01" + bytes(6))
                await writer.drain()
                writer.close()
                return
            dest = self.redirect.get(host, (host, port))
            up_r, up_w = await asyncio.open_connection(*dest)
            writer.write(b"\x05\x00\x00\x01" + bytes(6))

            async def pipe(r, w):
                try:
                    while data := await r.read(65536):
                        w.write(data)
                        await w.drain()
                finally:
                    w.close()

            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def stop(self):
        self.server.close()


def test_encode_destination():
    assert encode_destination("1.2.3.4", 80) == b"\x01\x01\x02\x03\x04\x00\x50"
    assert encode_destination("::1", 1) == b"\x04" + bytes(15) + b"\x01\x00\x01"
    assert encode_destination("abc.onion", 9735) == b"\x03\x09abc.onion\x26\x07"
    with pytest.raises(ValueError):
        encode_destination("x" * 300, 1)


def test_socks5_connect_and_refusal():
    async def main():
        echo = await asyncio.start_server(lambda r, w: w.write(b"hello"), "127.0.0.1", 0)
        echo_port = echo.sockets[0].getsockname()[1]
        proxy = Socks5Server(redirect={"example.onion": ("127.0.0.1", echo_port)})
        port = await proxy.start()
        r, w = await open_socks5_connection("127.0.0.1", port, "example.onion", 9735, 5)
        assert await r.readexactly(5) == b"hello"
        assert proxy.requests == [(3, "example.onion", 9735)]
        w.close()
        refusing = Socks5Server(refuse=True)
        port2 = await refusing.start()
        with pytest.raises(Socks5Error, match="Connection refused"):
            await open_socks5_connection("127.0.0.1", port2, "1.2.3.4", 1, 5)
        await proxy.stop()
        await refusing.stop()
        echo.close()

    run(main())


def test_peer_connection_through_proxy():
    async def main():
        log = lambda *a: None  # noqa: E731
        a = PeerManager(os.urandom(32), PeerConfig("regtest", [parse_listen_address("127.0.0.1:0", 0, announce=False)],
                                                   autolisten=False), log=log)
        await a.start()
        a_port = a.bindings()[0]["port"]
        proxy = Socks5Server(redirect={"peer.onion": ("127.0.0.1", a_port)})
        proxy_port = await proxy.start()
        b = PeerManager(os.urandom(32), PeerConfig("regtest", autolisten=False, proxy=("127.0.0.1", proxy_port)),
                        log=log)
        c = PeerManager(os.urandom(32), PeerConfig("regtest", autolisten=False), log=log)
        try:
            # onion addresses always go through the proxy, unresolved
            peer = await b.connect(a.node_id, PeerAddress("torv3", "peer.onion", 9735))
            assert peer.address == PeerAddress("torv3", "peer.onion", 9735)
            assert proxy.requests == [(3, "peer.onion", 9735)]
            # without a proxy an onion address cannot be reached
            with pytest.raises(ConnectError) as e:
                await c.connect(a.node_id, PeerAddress("torv3", "peer.onion", 9735))
            assert e.value.reason == Reason.CONNECT_ALL_ADDRESSES_FAILED and "proxy" in e.value.message
            # always-use-proxy sends IP connections through it too
            b.config.always_use_proxy = True
            await b.disconnect(a.node_id)
            await b.connect(a.node_id, PeerAddress("ipv4", "127.0.0.1", a_port))
            assert proxy.requests[-1] == (1, "127.0.0.1", a_port)
        finally:
            await b.stop()
            await c.stop()
            await a.stop()
            await proxy.stop()

    run(main())
