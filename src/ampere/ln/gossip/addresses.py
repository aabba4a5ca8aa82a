"""BOLT #7 `node_announcement` address descriptors: parsing, encoding, and CLN's JSON shape.

    BOLT #7: The following `address descriptor` types are defined:
       * `1`: ipv4; data = `[4:ipv4_addr][2:port]` (length 6)
       * `2`: ipv6; data = `[16:ipv6_addr][2:port]` (length 18)
       * `3`: Deprecated (length 12). Used to contain Tor v2 onion services.
       * `4`: Tor v3 onion service; data = `[35:onion_addr][2:port]` (length 37)
       * `5`: DNS hostname; data = `[1:hostname_len][hostname_len:hostname][2:port]` (length up to 258)
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass

IPV4, IPV6, TORV2, TORV3, DNS = 1, 2, 3, 4, 5
TYPE_NAMES = {IPV4: "ipv4", IPV6: "ipv6", TORV2: "torv2", TORV3: "torv3", DNS: "dns"}
_FIXED_LEN = {IPV4: 6, IPV6: 18, TORV2: 12, TORV3: 37}


class AddressError(ValueError):
    """`addresses` cannot be parsed: BOLT #7 "if `addrlen` is insufficient to hold the address
    descriptors of the known types: SHOULD send a `warning`"."""


@dataclass(frozen=True)
class Address:
    """One announced address: `type` is a BOLT #7 descriptor type, `host` its text form."""

    type: int
    host: str
    port: int

    def to_json(self) -> dict[str, object]:
        """The shape of `listnodes` `addresses` items."""
        return {"type": TYPE_NAMES[self.type], "address": self.host, "port": self.port}

    def to_bytes(self) -> bytes:
        return encode_address(self)


def parse_addresses(data: bytes) -> list[Address]:
    """The usable addresses in a `node_announcement`'s `addresses` field.

    Raises AddressError if a known descriptor does not fit.  Unknown types end the parse (their
    length is unknown): BOLT #7 "SHOULD ignore the first `address descriptor` that does NOT match
    the types defined above" (and, as descriptors are in ascending order, everything after it).
    """
    out: list[Address] = []
    pos, end = 0, len(data)
    seen_dns = False
    while pos < end:
        kind = data[pos]
        pos += 1
        if kind in _FIXED_LEN:
            size = _FIXED_LEN[kind]
        elif kind == DNS:
            if pos >= end:
                raise AddressError("dns descriptor without a length")
            size = 1 + data[pos] + 2
        else:
            break
        if pos + size > end:
            raise AddressError(f"address descriptor type {kind} needs {size} bytes, {end - pos} left")
        body = data[pos : pos + size]
        pos += size
        port = int.from_bytes(body[-2:], "big")
        if kind == IPV4:
            host = str(ipaddress.IPv4Address(body[:4]))
        elif kind == IPV6:
            host = str(ipaddress.IPv6Address(body[:16]))
        elif kind == TORV2:
            # BOLT #7: "SHOULD ignore Tor v2 onion services."
            continue
        elif kind == TORV3:
            host = base64.b32encode(body[:35]).decode().lower() + ".onion"
        else:
            name = body[1:-2]
            if not name.isascii():
                raise AddressError("dns hostname is not ASCII")
            # BOLT #7: "if more than one `type 5` address is announced: SHOULD ignore the additional data."
            if seen_dns:
                continue
            seen_dns = True
            host = name.decode("ascii")
        # BOLT #7: "if `port` is equal to 0: SHOULD ignore `ipv6_addr` OR `ipv4_addr` OR `hostname`."
        if port == 0 and kind in (IPV4, IPV6, DNS):
            continue
        out.append(Address(kind, host, port))
    return out


def encode_address(addr: Address) -> bytes:
    port = addr.port.to_bytes(2, "big")
    if addr.type == IPV4:
        return bytes([IPV4]) + ipaddress.IPv4Address(addr.host).packed + port
    if addr.type == IPV6:
        return bytes([IPV6]) + ipaddress.IPv6Address(addr.host).packed + port
    if addr.type == TORV3:
        label = addr.host.removesuffix(".onion").upper()
        raw = base64.b32decode(label)
        if len(raw) != 35:
            raise ValueError(f"not a Tor v3 address: {addr.host!r}")
        return bytes([TORV3]) + raw + port
    if addr.type == DNS:
        name = addr.host.encode("ascii")
        if not 0 < len(name) < 256:
            raise ValueError(f"bad hostname length: {addr.host!r}")
        return bytes([DNS, len(name)]) + name + port
    raise ValueError(f"cannot encode address type {addr.type}")


def address_from_host(host: str, port: int) -> Address:
    """An Address for a host given as text (an IP literal, a .onion name, or a DNS name)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host.endswith(".onion"):
            return Address(TORV3, host, port)
        return Address(DNS, host, port)
    return Address(IPV4 if ip.version == 4 else IPV6, str(ip), port)


def encode_addresses(addresses: list[Address]) -> bytes:
    """BOLT #7: the origin node "MUST place address descriptors in ascending order" and "MUST NOT
    announce more than one `type 5` DNS hostname"."""
    ordered = sorted(addresses, key=lambda a: a.type)
    if sum(1 for a in ordered if a.type == DNS) > 1:
        raise ValueError("at most one DNS hostname may be announced")
    for a in ordered:
        # BOLT #7: "MUST NOT create a `type 1`, `type 2` or `type 5` address descriptor with `port` equal to 0."
        if a.port == 0 and a.type in (IPV4, IPV6, DNS):
            raise ValueError(f"address {a.host} has port 0")
    return b"".join(encode_address(a) for a in ordered)


def alias_text(alias: bytes) -> str:
    """The alias for display: BOLT #7 says "MUST set `alias` to a valid UTF-8 string, with any
    `alias` trailing-bytes equal to 0"; we strip the zeros and replace invalid bytes."""
    return alias.rstrip(b"\x00").decode("utf-8", errors="replace")


def alias_bytes(alias: str) -> bytes:
    raw = alias.encode("utf-8")
    if len(raw) > 32:
        raise ValueError("alias is longer than 32 bytes")
    return raw + bytes(32 - len(raw))
