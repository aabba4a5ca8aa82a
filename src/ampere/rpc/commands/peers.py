"""Peer commands: connect, disconnect, listpeers, sendcustommsg, ping (lightningd's connect_control.c,
peer_control.c and ping.c behaviour and messages)."""

from __future__ import annotations

from typing import Any

from ampere.node.net.connection import PeerDisconnected
from ampere.node.net.peers import (AddressError, ConnectError, default_port, parse_peer_address, split_host_port)
from ...wire.codec import MESSAGE_TYPES
from ...wire.noise import MAX_MESSAGE_SIZE
from ..errors import INVALID_PARAMS, INVALID_REQUEST, LIGHTNINGD, RpcError, invalid_params, to_rpc_error
from ..params import ParamError, opt, p_bool, p_enum, p_hex, p_pubkey, p_string, p_u16, req
from ..registry import command

# Spec-defined types that plugins may still send themselves (lightningd's peer_wire_is_internal
# leaves peer storage to plugins such as chanbackup).
_PLUGIN_SENDABLE = {7, 9}  # peer_storage, peer_storage_retrieval


def _manager(ctx):
    pm = ctx.node.peer_manager
    if pm is None:
        raise RpcError(LIGHTNINGD, "Peer connections are not running")
    return pm


_MAX_SOCKET_PATH = 107      # sun_path is 108 bytes with its NUL
_MAX_HOST = 253             # a DNS name (RFC 1035), the longest host part a connect can have


def _check_host(text: str) -> None:
    """A host (optionally with :port, [ipv6]:port) or unix socket path that the resolver can take: a host name of
    at most 253 characters in labels of 1 to 63 that IDNA can encode. Checked here because a 5,000-character
    name otherwise fails inside getaddrinfo's IDNA step (UnicodeError), far from the parameter."""
    if text.startswith("/"):
        if len(text.encode("utf-8")) > _MAX_SOCKET_PATH:
            raise ParamError(f"socket path longer than {_MAX_SOCKET_PATH} bytes")
        return
    host = text
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if len(host) > _MAX_HOST:
        raise ParamError(f"host name longer than {_MAX_HOST} characters")
    if ":" in host:          # an IPv6 literal: parse_peer_address checks it
        return
    try:
        host.encode("idna")
    except UnicodeError:
        raise ParamError("not a valid host name (labels must be 1 to 63 characters)") from None


def p_host(v: Any) -> str:
    host = p_string(v)
    _check_host(host)
    return host


def p_id_maybe_addr(v: Any) -> tuple[bytes, str | None]:
    """`id`, or `id@host[:port]` / `id@/socket/path`."""
    if not isinstance(v, str):
        raise ParamError("should be a node id")
    node, at, rest = v.partition("@")
    try:
        node_id = p_pubkey(node)
    except ParamError:
        raise ParamError("should be a node id") from None
    if at:
        _check_host(rest)
    return node_id, (rest if at else None)


def p_port(v: Any) -> int:
    port = p_u16(v)
    if port == 0:
        raise ParamError("should be non-zero")
    return port


@command("connect", [req("id", p_id_maybe_addr), opt("host", p_host), opt("port", p_port)], category="network",
         description="Connect to {id} at {host} (which can end in ':port' if not default). {id} can also be of "
                     "the form id@host")
async def connect(ctx, id: tuple[bytes, str | None], host: str | None, port: int | None) -> dict:
    node_id, at_addr = id
    if at_addr is not None:
        if host is not None:
            raise invalid_params("Can't specify host as both xxx@yyy and separate argument")
        if at_addr.startswith("/"):
            host = at_addr
        else:
            try:
                at_host, at_port = split_host_port(at_addr, 0)
            except AddressError:
                raise invalid_params("malformed host @part") from None
            if not at_host:
                raise invalid_params("malformed host @part")
            host = at_host
            if at_port:
                if port is not None:
                    raise invalid_params("Can't specify port as both xxx@yyy:port and separate argument")
                port = at_port
    pm = _manager(ctx)
    address = None
    if host is not None:
        try:
            address = parse_peer_address(host, port, ctx.node.network)
        except AddressError as e:
            shown = port if port is not None else default_port(ctx.node.network)
            raise RpcError(LIGHTNINGD, f"Host {host}:{shown} not valid: {e}") from None
    elif port is not None:
        raise invalid_params("Can't specify port without host")
    if ctx.check:
        return {"command_to_check": "connect"}
    try:
        peer = await pm.connect(node_id, address)
    except ConnectError as e:
        raise to_rpc_error(e) from None
    return {"id": peer.id_hex, "features": peer.features_hex, "direction": peer.direction,
            "address": peer.address.to_json()}


@command("disconnect", [req("id", p_pubkey), opt("force", p_bool, False)], category="network",
         description="Disconnect from {id} that has previously been connected to using connect; with {force} "
                     "set, even if it has active channels")
async def disconnect(ctx, id: bytes, force: bool) -> dict:
    pm = _manager(ctx)
    peer = pm.get(id)
    if peer is None:
        raise RpcError(LIGHTNINGD, "Unknown peer")
    if not force:
        busy = ctx.node.channel_manager
        state = busy.active_channel_state(id) if busy is not None and hasattr(busy, "active_channel_state") else None
        if state:
            raise RpcError(LIGHTNINGD, f"Peer has (at least one) channel in state {state}")
    await pm.disconnect(id, "disconnect command" + (" (forced)" if force else ""))
    return {}


@command("listpeers", [opt("id", p_pubkey), opt("level", p_enum("io", "trace", "debug", "info", "unusual"))],
         category="network", description="Show current peers, if {level} is set, include logs for {id}")
async def listpeers(ctx, id: bytes | None, level: str | None) -> dict:
    pm = ctx.node.peer_manager
    if pm is None:
        return {"peers": []}
    peers = [pm.get(id)] if id is not None else [pm.get(i) for i in pm.connected_ids()]
    out = []
    for peer in peers:
        if peer is None:
            continue
        entry = pm.listpeers_entry(peer)
        if level is not None:
            entry["log"] = []  # per-peer log books are not kept (yet)
        out.append(entry)
    return {"peers": out}


@command("sendcustommsg", [req("node_id", p_pubkey), req("msg", p_hex)], category="utility",
         description="Send a custom message to the peer with the given {node_id}")
async def sendcustommsg(ctx, node_id: bytes, msg: bytes) -> dict:
    if len(msg) < 2:
        raise invalid_params("msg: should be a message of at least 2 bytes (type and payload)")
    if len(msg) > MAX_MESSAGE_SIZE:
        raise invalid_params(f"msg: {len(msg)} bytes is more than the largest message ({MAX_MESSAGE_SIZE})")
    msg_type = int.from_bytes(msg[:2], "big")
    known = MESSAGE_TYPES.get(msg_type)
    if known is not None and msg_type not in _PLUGIN_SENDABLE:
        raise RpcError(INVALID_REQUEST,
                       f"Cannot send messages of type {msg_type} ({known.NAME}). It is not possible to send "
                       "messages that have a type managed internally since that might cause issues with the "
                       "internal state tracking.")
    pm = _manager(ctx)
    peer = pm.get(node_id)
    if peer is None:
        raise RpcError(INVALID_REQUEST, f"No such peer: {node_id.hex()}")
    if msg_type % 2 == 0:
        ctx.node.log.log("debug", f"{node_id.hex()}-connectd",
                         f"sendcustommsg id={ctx.request.get('id')} sending a custom even message ({msg_type})")
    if ctx.check:
        return {"command_to_check": "sendcustommsg"}
    try:
        peer.send_nowait(msg)
    except PeerDisconnected:
        raise RpcError(INVALID_REQUEST, "Peer is not connected") from None
    return {"status": "Message sent to connectd for delivery"}


@command("ping", [req("id", p_pubkey), opt("len", p_u16, 128), opt("pongbytes", p_u16, 128)], category="network",
         description="Send peer {id} a ping of length {len} (default 128) asking for {pongbytes} (default 128)")
async def ping(ctx, id: bytes, len: int, pongbytes: int) -> dict:
    # ping = type(2) + num_pong_bytes(2) + byteslen(2) + ignored
    if len > MAX_MESSAGE_SIZE - 6:
        raise invalid_params("len: ping message too long")
    pm = _manager(ctx)
    peer = pm.get(id)
    if peer is None:
        raise RpcError(LIGHTNINGD, "Peer not connected")
    try:
        got = await peer.ping(pongbytes, len)
    except RuntimeError as e:
        raise RpcError(INVALID_PARAMS, str(e)) from None
    except PeerDisconnected as e:
        raise RpcError(LIGHTNINGD, f"Peer disconnected: {e}") from None
    # totlen: the pong's length with its header (type + byteslen); 0 when no reply was asked for.
    return {"totlen": got + 4 if pongbytes < 65532 else 0}
