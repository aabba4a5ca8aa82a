"""A minimal SOCKS5 client (RFC 1928) for outbound peer connections through `--proxy` (Tor, usually).

Only what lightningd's connectd uses: no authentication (method 0x00), the CONNECT command, and
destinations given as IPv4, IPv6 or a domain name (the proxy resolves it: this is how `.onion`
addresses and `always-use-proxy` hostnames reach Tor without a local DNS lookup).
"""

from __future__ import annotations

import asyncio
import ipaddress

SOCKS_VERSION = 5
METHOD_NO_AUTH = 0x00
METHOD_NONE_ACCEPTABLE = 0xFF
CMD_CONNECT = 0x01
ATYP_IPV4 = 0x01
ATYP_DOMAIN = 0x03
ATYP_IPV6 = 0x04
DEFAULT_PROXY_PORT = 9050  # lightningd: "--proxy ... port default 9050"

# RFC 1928 section 6, the REP field.
REPLY_MESSAGES = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "Network unreachable",
    0x04: "Host unreachable",
    0x05: "Connection refused",
    0x06: "TTL expired",
    0x07: "Command not supported",
    0x08: "Address type not supported",
}


class Socks5Error(ConnectionError):
    """The proxy refused or broke the exchange."""


def encode_destination(host: str, port: int) -> bytes:
    """ATYP + DST.ADDR + DST.PORT for a CONNECT request."""
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        name = host.encode("idna") if not host.isascii() else host.encode()
        if not 0 < len(name) < 256:
            raise ValueError(f"host name of {len(name)} bytes cannot go through SOCKS5") from None
        return bytes([ATYP_DOMAIN, len(name)]) + name + port.to_bytes(2, "big")
    atyp = ATYP_IPV4 if ip.version == 4 else ATYP_IPV6
    return bytes([atyp]) + ip.packed + port.to_bytes(2, "big")


async def _read(reader: asyncio.StreamReader, n: int, what: str) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise Socks5Error(f"proxy closed the connection during {what}") from None


async def socks5_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int) -> None:
    """Ask the proxy on this open connection to CONNECT to host:port; returns once it has."""
    writer.write(bytes([SOCKS_VERSION, 1, METHOD_NO_AUTH]))
    await writer.drain()
    version, method = await _read(reader, 2, "method selection")
    if version != SOCKS_VERSION:
        raise Socks5Error(f"proxy speaks SOCKS version {version}, not 5")
    if method != METHOD_NO_AUTH:
        raise Socks5Error("proxy requires authentication" if method != METHOD_NONE_ACCEPTABLE
                          else "proxy accepted none of our authentication methods")
    writer.write(bytes([SOCKS_VERSION, CMD_CONNECT, 0]) + encode_destination(host, port))
    await writer.drain()
    version, rep, _rsv, atyp = await _read(reader, 4, "connect reply")
    if version != SOCKS_VERSION:
        raise Socks5Error(f"bad SOCKS version {version} in reply")
    if rep != 0:
        raise Socks5Error(f"proxy: {REPLY_MESSAGES.get(rep, f'error {rep}')}")
    # BND.ADDR and BND.PORT: read and drop.
    if atyp == ATYP_IPV4:
        await _read(reader, 4 + 2, "bound address")
    elif atyp == ATYP_IPV6:
        await _read(reader, 16 + 2, "bound address")
    elif atyp == ATYP_DOMAIN:
        (n,) = await _read(reader, 1, "bound address")
        await _read(reader, n + 2, "bound address")
    else:
        raise Socks5Error(f"bad address type {atyp} in reply")


async def open_socks5_connection(
    proxy_host: str, proxy_port: int, host: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the proxy and through it to host:port, all within `timeout` seconds."""

    async def run() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(proxy_host, proxy_port)
        try:
            await socks5_handshake(reader, writer, host, port)
        except BaseException:
            writer.close()
            raise
        return reader, writer

    try:
        return await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        raise Socks5Error(f"proxy {proxy_host}:{proxy_port} did not connect us within {timeout:g}s") from None
