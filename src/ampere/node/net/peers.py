"""Peers: listening and connecting with lightningd's options, the `init` exchange, and the registry
the rest of the node uses to talk to connected peers.

* Listening: `--addr` (listen and announce), `--bind-addr` (listen only), `--announce-addr`
  (announce only), `--autolisten` (all interfaces on the network's default port when none of the
  three is given).  IPv4, IPv6, host names and unix socket paths.
* Connecting: `host:port`, `[v6]:port`, a unix socket path, or through the SOCKS5 `--proxy`
  (always for `.onion`, for everything with `--always-use-proxy`).
* After the BOLT #8 handshake both sides send `init` (our features, the `networks` TLV, and
  `remote_addr` for incoming IP connections); then the `peer_connected` hook may refuse the peer;
  then the `connect` notification goes out and a PeerConnection (peer_conn.py) takes over.

What other components use (see the class docstring): `send`, `add_message_handler`,
`on_connect`, `on_disconnect`, `get`, `connected_ids`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ampere.config import ConfigError
from ampere.node.signer.signer import SignerUnavailable
from ampere.wire.noise import StaticKey
from ampere.wire import bolt1
from ampere.wire.codec import decode_message
from ampere.wire.errors import FeatureError, HandshakeError, TransportError, WireError
from ampere.wire.features import Features
from ampere.wire.messages import Init
from ampere.node.net.transport import Transport, accept_handshake, connect_and_handshake
from ampere.node.net.handshake_limits import HandshakeLimits, PendingHandshakes, source_key
from ampere.node.net.connection import PeerAddress, PeerConnection, PeerDisconnected, _call
from ampere.node.net.socks5 import DEFAULT_PROXY_PORT, Socks5Error, open_socks5_connection
from ampere.node.errors import DomainError, Reason

# lightningd's chainparams `ln_port`.
DEFAULT_PORTS = {"bitcoin": 9735, "testnet": 19735, "testnet4": 49735, "signet": 39735, "regtest": 19846}

# JSON-RPC error codes of `connect` (common/jsonrpc_errors.h).

SOURCE = "connectd"


def default_port(network: str) -> int:
    return DEFAULT_PORTS.get(network, DEFAULT_PORTS["bitcoin"])


class AddressError(ValueError):
    """An address option or `connect` host that cannot be used; the message says why."""


class ConnectError(DomainError):
    """`connect` failed: Reason.CONNECT_NO_KNOWN_ADDRESS, CONNECT_ALL_ADDRESSES_FAILED or CONNECT_DISCONNECTED_DURING."""


# ---------------------------------------------------------------------------------------------
# Address parsing


def _parse_port(text: str, allow_zero: bool) -> int:
    if not text.isdigit():
        raise AddressError(f"'{text}' is not a valid port")
    port = int(text)
    if port > 65535 or (port == 0 and not allow_zero):
        raise AddressError(f"port {text} out of range")
    return port


def split_host_port(text: str, default: int, *, allow_zero: bool = False) -> tuple[str, int]:
    """"host", "host:port", "[v6]", "[v6]:port", or a bare IPv6 address (several colons, no port),
    as lightningd's separate_address_and_port."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError(f"'{text}': missing ']'")
        host, rest = text[1:end], text[end + 1:]
        if rest == "":
            return host, default
        if not rest.startswith(":"):
            raise AddressError(f"'{text}': unexpected text after ']'")
        return host, _parse_port(rest[1:], allow_zero)
    if text.count(":") == 1:
        host, port_text = text.split(":")
        return host, _parse_port(port_text, allow_zero)
    return text, default


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def ip_is_public(host: str) -> bool:
    ip = _ip(host)
    return ip is not None and ip.is_global


@dataclass(frozen=True)
class ListenSpec:
    """One place to listen: kind "ip" (an IP literal), "host" (a name resolved when binding),
    "all" (every interface, IPv4 and IPv6) or "local socket"."""

    kind: str
    text: str  # as the operator wrote it, for messages
    host: str = ""
    port: int = 0
    path: str = ""
    announce: bool = False


def _localhost(host: str) -> str:
    # common/wireaddr.c: "localhost" is 127.0.0.1 without asking DNS (so it works with --disable-dns).
    return "127.0.0.1" if host.lower() == "localhost" else host


def parse_listen_address(text: str, port: int, *, announce: bool) -> ListenSpec:
    """The value of `--addr` / `--bind-addr`."""
    if text.startswith("/"):
        if len(text.encode()) > 107:
            raise AddressError(f"'{text}': socket path too long")
        return ListenSpec("local socket", text, path=text, announce=False)
    for prefix in ("ws:", "autotor:", "statictor:", "dns:"):
        if text.startswith(prefix):
            raise AddressError(f"'{text}': {prefix[:-1]} addresses are not supported")
    host, p = split_host_port(text, port, allow_zero=True)
    if host == "":
        return ListenSpec("all", text, port=p, announce=announce)
    host = _localhost(host)
    if _ip(host) is not None:
        return ListenSpec("ip", text, host=str(ipaddress.ip_address(host)), port=p, announce=announce)
    if host.endswith(".onion"):
        raise AddressError(f"'{text}': cannot listen on an onion address (use announce-addr)")
    return ListenSpec("host", text, host=host, port=p, announce=announce)


def parse_announce_address(text: str, port: int) -> PeerAddress:
    """The value of `--announce-addr`: an IP, `X.onion[:port]` or `dns:HOST[:port]`."""
    if text.startswith("dns:"):
        host, p = split_host_port(text[4:], port)
        if not host or _ip(host) is not None:
            raise AddressError(f"'{text}': dns: needs a host name")
        return PeerAddress("dns", host, p)
    if text.startswith("/"):
        raise AddressError(f"'{text}': cannot announce a local socket")
    host, p = split_host_port(text, port)
    ip = _ip(host)
    if ip is not None:
        return PeerAddress("ipv4" if ip.version == 4 else "ipv6", str(ip), p)
    if host.endswith(".onion"):
        return PeerAddress("torv3", host, p)
    raise AddressError(f"'{text}': announce-addr needs an IP address, an onion address or dns:HOST")


def parse_peer_address(host: str, port: int | None, network: str) -> PeerAddress:
    """Where `connect` should go: a unix socket path, an IP, an onion address or a host name."""
    if host.startswith("/"):
        return PeerAddress("local socket", path=host)
    if port is None:
        host, port = split_host_port(host, default_port(network))
    if not host:
        raise AddressError("empty host")
    host = _localhost(host)
    ip = _ip(host.strip("[]"))
    if ip is not None:
        return PeerAddress("ipv4" if ip.version == 4 else "ipv6", str(ip), port)
    if host.endswith(".onion"):
        return PeerAddress("torv3", host, port)
    return PeerAddress("unresolved", host, port)


def _address_of_socket(writer: asyncio.StreamWriter, fallback: PeerAddress | None = None) -> PeerAddress:
    """The peer's address as the kernel reports it (getpeername), as lightningd does."""
    sock = writer.get_extra_info("socket")
    peer = writer.get_extra_info("peername")
    if sock is not None and sock.family == socket.AF_UNIX:
        return PeerAddress("local socket", path=peer if isinstance(peer, str) else "")
    if isinstance(peer, tuple) and len(peer) >= 2:
        ip = _ip(peer[0])
        if ip is not None:
            return PeerAddress("ipv4" if ip.version == 4 else "ipv6", str(ip), int(peer[1]))
    return fallback or PeerAddress("unresolved", str(peer), 0)


def _format_descriptor(descriptor: bytes | None) -> str | None:
    if not descriptor:
        return None
    parsed = bolt1.parse_address_descriptor(descriptor)
    if parsed is None:
        return None
    host, port = parsed
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass
class PeerConfig:
    network: str
    listen: list[ListenSpec] = field(default_factory=list)
    announce: list[PeerAddress] = field(default_factory=list)
    autolisten: bool = True
    proxy: tuple[str, int] | None = None
    always_use_proxy: bool = False
    use_dns: bool = True
    allow_localhost: bool = False
    # A peer has this long from TCP accept/connect to finish BOLT #8 and send `init`.
    handshake_timeout: float = 60.0
    # Handshakes (accepted connections not yet through `init`): at most this many overall and per source
    # address; at a cap the oldest is dropped (see handshake_limits.py). From pressure_pending on, a connection
    # may stay silent only pressure_handshake_timeout. Generous enough for hundreds of honest handshakes at once
    # from one host (tests/integration/test_peers.py::test_hundreds_of_concurrent_handshakes).
    max_pending_handshakes: int = 1000
    max_pending_per_source: int = 500
    pressure_pending: int = 500
    pressure_handshake_timeout: float = 5.0
    listen_backlog: int = 1024
    # Keepalive: a ping every ~ping_interval (randomised +-25%); no pong within pong_timeout hangs up.
    ping_interval: float = 30.0
    pong_timeout: float = 30.0
    # Writes: how long a peer may take to read, and how much we queue for it at most.
    send_timeout: float = 60.0
    max_write_buffer: int = 8 * 1024 * 1024
    # Per-peer read limits (messages and bytes per second, with bursts); a peer above them is
    # slowed down, and cut off if it stays above them for flood_cutoff seconds.
    msg_rate: float = 10000.0
    msg_burst: float = 20000.0
    byte_rate: float = 8 * 1024 * 1024
    byte_burst: float = 32 * 1024 * 1024
    flood_cutoff: float = 10.0

    @classmethod
    def from_options(cls, options: Any, network: str) -> "PeerConfig":
        port = default_port(network)
        listen: list[ListenSpec] = []
        announce: list[PeerAddress] = []
        try:
            for text in options.get("addr"):
                spec = parse_listen_address(text, port, announce=True)
                listen.append(spec)
            for text in options.get("bind-addr"):
                listen.append(parse_listen_address(text, port, announce=False))
            announce_texts = options.get("announce-addr")
            for text in announce_texts:
                announce.append(parse_announce_address(text, port))
            proxy = None
            proxy_text = options.get("proxy")
            if proxy_text:
                host, p = split_host_port(proxy_text, DEFAULT_PROXY_PORT)
                proxy = (host, p)
        except AddressError as e:
            raise ConfigError(str(e)) from None
        always = bool(options.get("always-use-proxy"))
        if always and proxy is None:
            raise ConfigError("--always-use-proxy needs --proxy")
        # lightningd: any addr/bind-addr/announce-addr "disables autolisten".
        autolisten = bool(options.get("autolisten")) and not (listen or announce_texts)
        return cls(
            network=network, listen=listen, announce=announce, autolisten=autolisten, proxy=proxy,
            always_use_proxy=always, use_dns=not options.get("disable-dns"),
            allow_localhost=bool(_opt(options, "dev-allow-localhost", False)),
            handshake_timeout=float(_opt(options, "dev-handshake-timeout", 60)),
        )


def _opt(options: Any, name: str, default: Any) -> Any:
    try:
        value = options.get(name)
    except KeyError:
        return default
    return default if value is None else value


# ---------------------------------------------------------------------------------------------
# The manager


class PeerManager:
    """Owns every peer connection.

    For other components:
      * `await send(node_id, msg_bytes)` -- send one message (2-byte type + payload); raises
        PeerDisconnected if the peer is not connected or goes away.
      * `add_message_handler(types, fn)` -- `fn(peer_id: bytes, msg, raw: bytes)` (sync or async)
        gets every message of those types, decoded (unknown types as `UnknownMessage`), in the
        order the peer sent them; the peer's next message waits until it returns.
      * `on_connect(fn)` -- `fn(peer: PeerConnection)` after a peer is through `init` and hooks;
        `on_disconnect(fn)` -- `fn(peer_id: bytes, reason: str)`.
      * `get(node_id)` -> PeerConnection | None; `connected_ids()`; `channel_count` (a function
        node_id -> int the channel manager may replace, shown by listpeers).
      * `await connect(node_id, address)`, `await disconnect(node_id)`.
    """

    def __init__(self, static_key: bytes | StaticKey, config: PeerConfig, *,
                 log: Callable[[str, str, str], None],
                 notify: Callable[[str, dict], None] | None = None,
                 plugins: Callable[[], Any] | None = None,
                 features: Callable[[], Features] | None = None) -> None:
        import coincurve

        # Our static key for BOLT 8: the node's Signer (which does the handshake's ECDH), or raw key bytes (tests).
        self._static_key = static_key
        self.node_id = (coincurve.PrivateKey(static_key).public_key.format(compressed=True)
                        if isinstance(static_key, (bytes, bytearray)) else bytes(static_key.node_id))
        self.config = config
        self.log = log
        self._notify = notify or (lambda topic, payload: None)
        self._plugins = plugins or (lambda: None)
        self._features = features
        self._chain = bolt1.chain_hash(config.network)
        self._peers: dict[bytes, PeerConnection] = {}
        self._handlers: dict[int, list[Callable]] = {}
        self._connect_handlers: list[Callable] = []
        self._disconnect_handlers: list[Callable] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._socket_paths: list[str] = []
        self._bindings: list[dict] = []
        self._announced: list[dict] = []
        self._handshaking = PendingHandshakes(HandshakeLimits(
            config.max_pending_handshakes, config.max_pending_per_source, config.handshake_timeout,
            config.pressure_pending, min(config.pressure_handshake_timeout, config.handshake_timeout)))
        self._handshake_tasks: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self._outgoing: dict[bytes, asyncio.Task] = {}
        self._stopping = False
        self.channel_count: Callable[[bytes], int] = lambda node_id: 0
        # Built-in consumers of custom (odd, unknown to the BOLTs) message types, e.g. commando: each gets
        # (peer id, type, whole message) after the custommsg notification; plugins' hooks still run.
        self.custom_handlers: dict[int, Callable[[bytes, int, bytes], None]] = {}
        self.stats = {"handshakes_in": 0, "handshakes_failed": 0, "handshakes_dropped": 0}
        self.dev_disconnect: Any = None  # --dev-disconnect's DevDisconnect (net/dev_disconnect.py)
        self.log_enabled: Any = None  # (level, source) -> bool: are such lines kept (node.log.enabled)

    @classmethod
    def for_node(cls, node: Any) -> "PeerManager":
        config = PeerConfig.from_options(node.options, node.network)

        def features() -> Features:
            fs = node.feature_set()
            return Features.from_bytes(bytes.fromhex(fs.get("init", "")))

        manager = cls(node.signer, config, log=node.log.log, notify=node.notify,
                      plugins=lambda: node.plugins, features=features)
        manager.log_enabled = node.log.enabled
        path = node.options.get("dev-disconnect")
        if path:
            from ampere.node.net.dev_disconnect import DevDisconnect

            manager.dev_disconnect = DevDisconnect(path, node.log.log)
        return manager

    # ---- queries ----------------------------------------------------------------------------
    def our_features(self) -> Features:
        if self._features is not None:
            return self._features()
        from ampere.wire.features import INIT_FEATURES

        return INIT_FEATURES

    def num_peers(self) -> int:
        return len(self._peers)

    def get(self, node_id: bytes) -> PeerConnection | None:
        return self._peers.get(node_id)

    def connected_ids(self) -> list[bytes]:
        return list(self._peers)

    def flush_all(self) -> None:
        """Write every connection's queued frames now (transport.py writes them at the end of the loop's turn):
        a --dev-crash-before point is about to kill the process, and what was sent before it must be out."""
        for peer in self._peers.values():
            peer.transport.flush()

    def bindings(self) -> list[dict]:
        return [dict(b) for b in self._bindings]

    def announced_addresses(self) -> list[dict]:
        return [dict(a) for a in self._announced]

    def listpeers_entry(self, peer: PeerConnection) -> dict:
        entry: dict[str, Any] = {
            "id": peer.id_hex,
            "connected": True,
            "num_channels": self.channel_count(peer.node_id),
            "netaddr": [str(peer.address)],
            "features": peer.features_hex,
        }
        if peer.remote_addr:
            entry["remote_addr"] = peer.remote_addr
        return entry

    def custom_message_types(self) -> frozenset[int]:
        plugins = self._plugins()
        if plugins is None or not hasattr(plugins, "custom_messages"):
            return frozenset()
        return frozenset(plugins.custom_messages())

    # ---- registrations ----------------------------------------------------------------------
    def add_message_handler(self, types: Iterable[int], fn: Callable) -> None:
        for t in types:
            self._handlers.setdefault(int(t), []).append(fn)

    def on_connect(self, fn: Callable) -> None:
        self._connect_handlers.append(fn)

    def on_disconnect(self, fn: Callable) -> None:
        self._disconnect_handlers.append(fn)

    # ---- listening --------------------------------------------------------------------------
    async def start(self) -> None:
        for spec in self.config.listen:
            await self._listen(spec, mayfail=False)
        if self.config.autolisten:
            # lightningd binds the wildcard on the default port; failing that is not fatal here
            # (several test nodes on one machine would otherwise fight over the port).
            await self._listen(ListenSpec("all", "", port=default_port(self.config.network)), mayfail=True)
        for addr in self.config.announce:
            self._announced.append(addr.to_json())
        for b in self._bindings:
            self.log("debug", SOURCE, f"Listening on {b.get('socket') or _fmt_binding(b)}")

    async def _listen(self, spec: ListenSpec, mayfail: bool) -> None:
        try:
            if spec.kind == "local socket":
                _remove_stale_socket(spec.path)
                server = await asyncio.start_unix_server(self._on_incoming, spec.path,
                                                         backlog=self.config.listen_backlog)
                self._socket_paths.append(spec.path)
                self._bindings.append({"type": "local socket", "socket": spec.path})
            else:
                if spec.kind == "host" and not self.config.use_dns:
                    raise AddressError("DNS lookups are disabled (--disable-dns)")
                host = None if spec.kind == "all" else spec.host
                server = await asyncio.start_server(self._on_incoming, host, spec.port, reuse_address=True,
                                                    backlog=self.config.listen_backlog)
                for sock in server.sockets:
                    name = sock.getsockname()
                    kind = "ipv6" if sock.family == socket.AF_INET6 else "ipv4"
                    self._bindings.append({"type": kind, "address": name[0], "port": name[1]})
                    if spec.announce and (self.config.allow_localhost or ip_is_public(name[0])):
                        self._announced.append({"type": kind, "address": name[0], "port": name[1]})
        except (OSError, AddressError) as e:
            what = spec.text or f"port {spec.port}"
            if mayfail:
                self.log("unusual", SOURCE, f"Failed to bind on {what}: {_strerror(e)}; not listening there")
                return
            raise RuntimeError(f"Failed to bind on {what}: {_strerror(e)}") from None
        self._servers.append(server)

    async def stop(self) -> None:
        self._stopping = True
        for server in self._servers:
            server.close()
        for task in list(self._handshake_tasks) + list(self._outgoing.values()):
            task.cancel()
        peers = list(self._peers.values())
        for peer in peers:
            peer.close("shutting down")
        waits = [p.wait_closed() for p in peers] + [s.wait_closed() for s in self._servers]
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=2)
        for path in self._socket_paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._servers.clear()

    async def _on_incoming(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        address = _address_of_socket(writer)
        loop = asyncio.get_running_loop()
        timeout, drop = self._handshaking.admit(task, source_key(address.host if address.is_ip else None),
                                                loop.time())
        self._handshake_tasks[task] = writer
        if drop:
            self.stats["handshakes_dropped"] += len(drop)
            n = self.stats["handshakes_dropped"]
            if n == len(drop) or n // 1000 != (n - len(drop)) // 1000:
                self.log("unusual", SOURCE, f"{len(self._handshaking)} handshakes in progress: dropped the oldest "
                         f"silent ones ({n} so far)")
            for t in drop:
                t.cancel()
        deadline = loop.time() + timeout
        try:
            try:
                transport = await accept_handshake(reader, writer, self._static_key, timeout)
            except (HandshakeError, SignerUnavailable) as e:  # the signer's ECDH failed: no connection
                self.stats["handshakes_failed"] += 1
                self.log("debug", SOURCE, f"Connect IN from {address}: handshake failed: {e}")
                writer.close()
                return
            except BaseException:
                writer.close()
                raise
            self.stats["handshakes_in"] += 1
            try:
                await self._setup_peer(transport, "in", address, deadline)
            except ConnectError as e:
                self.log("debug", transport_source(transport), f"Connect IN from {address} failed: {e.message}")
            except asyncio.CancelledError:
                transport.close()
                raise
        finally:
            self._handshake_done(task)

    def _handshake_done(self, task: asyncio.Task) -> None:
        self._handshaking.done(task)
        self._handshake_tasks.pop(task, None)

    # ---- connecting -------------------------------------------------------------------------
    async def connect(self, node_id: bytes, address: PeerAddress | None) -> PeerConnection:
        """Connect (or return the existing connection).  Raises ConnectError(400|401|402, msg)."""
        existing = self._peers.get(node_id)
        if existing is not None and not existing.closed.is_set():
            self.log("debug", SOURCE, f"Already connected via {existing.address}")
            return existing
        if address is None:
            raise ConnectError(Reason.CONNECT_NO_KNOWN_ADDRESS, "Unable to connect, no address known for peer")
        if self._stopping:
            raise ConnectError(Reason.CONNECT_DISCONNECTED_DURING, "disconnected during connection: shutting down")
        task = self._outgoing.get(node_id)
        if task is None:
            task = asyncio.create_task(self._connect_out(node_id, address), name=f"connect-{node_id.hex()[:8]}")
            self._outgoing[node_id] = task

            def done(t: asyncio.Task, node_id: bytes = node_id) -> None:
                if self._outgoing.get(node_id) is t:
                    del self._outgoing[node_id]
                if not t.cancelled():
                    t.exception()  # retrieved: no "never retrieved" warning

            task.add_done_callback(done)
        try:
            return await asyncio.shield(task)
        except ConnectError:
            # The peer may have connected to us meanwhile (lightningd answers with that connection).
            peer = self._peers.get(node_id)
            if peer is not None and not peer.closed.is_set():
                return peer
            raise
        except asyncio.CancelledError:
            if task.cancelled():
                raise ConnectError(Reason.CONNECT_DISCONNECTED_DURING, "disconnected during connection") from None
            raise

    async def _connect_out(self, node_id: bytes, address: PeerAddress) -> PeerConnection:
        loop = asyncio.get_running_loop()
        timeout = self.config.handshake_timeout
        deadline = loop.time() + timeout
        self.log("debug", SOURCE, f"Connecting to {node_id.hex()} at {address}")
        try:
            reader, writer = await self._open_stream(address, timeout)
        except (OSError, Socks5Error, AddressError, asyncio.TimeoutError) as e:
            raise ConnectError(Reason.CONNECT_ALL_ADDRESSES_FAILED,
                               f"All addresses failed: {address}: Connection establishment: {_strerror(e)}. ") from None
        if address.kind != "local socket" and (self.config.proxy is None or not self._use_proxy(address)):
            address = _address_of_socket(writer, address)
        try:
            transport = await connect_and_handshake(reader, writer, self._static_key, node_id,
                                                    max(0.1, deadline - loop.time()))
        except (HandshakeError, SignerUnavailable) as e:  # SignerUnavailable: act three needs the signer's ECDH
            writer.close()
            raise ConnectError(Reason.CONNECT_ALL_ADDRESSES_FAILED,
                               f"All addresses failed: {address}: Cryptographic handshake: {e}. ") from None
        except asyncio.CancelledError:
            writer.close()
            raise
        try:
            return await self._setup_peer(transport, "out", address, deadline)
        except asyncio.CancelledError:
            transport.close()
            raise

    def _use_proxy(self, address: PeerAddress) -> bool:
        return address.kind == "torv3" or (self.config.always_use_proxy and address.kind != "local socket")

    async def _open_stream(self, address: PeerAddress, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if address.kind == "local socket":
            return await asyncio.wait_for(asyncio.open_unix_connection(address.path), timeout)
        if self._use_proxy(address):
            if self.config.proxy is None:
                raise AddressError("need a --proxy for onion addresses")
            proxy_host, proxy_port = self.config.proxy
            return await open_socks5_connection(proxy_host, proxy_port, address.host, address.port, timeout)
        if address.kind == "unresolved" and not self.config.use_dns:
            raise AddressError("DNS lookups are disabled (--disable-dns)")
        return await asyncio.wait_for(asyncio.open_connection(address.host, address.port), timeout)

    # ---- after the handshake: init, hook, registration --------------------------------------
    async def _setup_peer(self, transport: Transport, direction: str, address: PeerAddress,
                          deadline: float) -> PeerConnection:
        """Exchange `init`, run the peer_connected hook, register the peer.  Raises ConnectError
        (402) and closes the transport if anything goes wrong."""
        loop = asyncio.get_running_loop()
        their_id = transport.remote_pubkey
        source = f"{their_id.hex()}-connectd"
        ours = self.our_features()
        remote_addr = None
        if direction == "in" and address.is_ip and (self.config.allow_localhost or ip_is_public(address.host)):
            # BOLT #1: the receiver "SHOULD set `remote_addr` to reflect the remote IP address (and
            # port) of an incoming connection" and "SHOULD NOT set private addresses".
            remote_addr = bolt1.address_descriptor(address.host, address.port)
        try:
            # BOLT #1: "MUST send `init` as the first Lightning message for any connection."
            transport.write_message(bolt1.make_init(ours, [self._chain], remote_addr).to_bytes())
            remaining = max(0.1, deadline - loop.time())
            try:
                raw = await asyncio.wait_for(transport.read_message(), remaining)
            except asyncio.TimeoutError:
                raise WireError(f"no init within {self.config.handshake_timeout:g}s") from None
            msg = decode_message(raw)
            if not isinstance(msg, Init):
                # BOLT #1: the receiver "MUST wait to receive `init` before sending any other messages".
                raise WireError(f"expected init, got message type {int.from_bytes(raw[:2], 'big')}")
            peer_init = bolt1.check_init(msg, ours, [self._chain])
        except bolt1.NetworkMismatchError as e:
            self._close_transport(transport, e.error_message.to_bytes())
            raise self._failed(source, f"{e}") from None
        except FeatureError as e:
            self._close_transport(transport, bolt1.make_warning(str(e)).to_bytes())
            raise self._failed(source, str(e)) from None
        except TransportError as e:
            transport.close()
            raise self._failed(source, f"during init: {e}") from None
        except WireError as e:
            self._close_transport(transport, bolt1.make_warning(str(e)).to_bytes())
            raise self._failed(source, str(e)) from None
        except (ConnectionError, OSError) as e:
            transport.close()
            raise self._failed(source, f"during init: {e}") from None

        peer = PeerConnection(self, transport, their_id, direction, address, peer_init.features,
                              _format_descriptor(peer_init.remote_addr))
        old = self._peers.get(their_id)
        if old is not None:
            # The newest connection wins (lightningd: the old one is closed as "reconnected").
            old.close("reconnected")
        if not await self._peer_connected_hook(peer):
            raise self._failed(source, "rejected by a peer_connected hook")
        if self._stopping:
            peer.close("shutting down")
            raise self._failed(source, "shutting down")
        old = self._peers.get(their_id)
        if old is not None:
            old.close("reconnected")
        self._peers[their_id] = peer
        peer.start()
        self.log("debug", source, f"Peer connected ({direction}, {address}), features {peer.features_hex}")
        self._notify("connect", {"id": peer.id_hex, "direction": direction, "address": address.to_json()})
        for fn in list(self._connect_handlers):
            try:
                await _call(fn, peer)
            except SignerUnavailable as e:
                # No channel_reestablish without the signer's points: hang up, the reconnect loop tries again.
                self.log("broken", source, f"connect handler failed: {e}")
                peer.close(f"signer unavailable: {e}")
                break
            except Exception as e:
                self.log("broken", source, f"connect handler failed: {e!r}")
        return peer

    def _failed(self, source: str, why: str) -> ConnectError:
        self.log("debug", source, f"Disconnected during connection: {why}")
        return ConnectError(Reason.CONNECT_DISCONNECTED_DURING, f"disconnected during connection: {why}")

    @staticmethod
    def _close_transport(transport: Transport, last_message: bytes | None) -> None:
        try:
            if last_message is not None:
                transport.write_message(last_message)
        except Exception:
            last_message = None
        transport.close(linger=last_message is not None)

    async def _peer_connected_hook(self, peer: PeerConnection) -> bool:
        plugins = self._plugins()
        if plugins is None or not plugins.has_hook("peer_connected"):
            return True
        info: dict[str, Any] = {"id": peer.id_hex, "direction": peer.direction, "addr": str(peer.address)}
        if peer.remote_addr:
            info["remote_addr"] = peer.remote_addr
        info["features"] = peer.features_hex
        outcome = await plugins.call_hook("peer_connected", {"peer": info})
        result = outcome.get("result") if isinstance(outcome, dict) else None
        if result == "continue":
            return True
        if result == "disconnect":
            text = outcome.get("error_message")
            self.log("info", peer.log_source, "peer_connected hook rejected the peer"
                     + (f": {text}" if isinstance(text, str) else ""))
            # error_message is sent as a BOLT #1 warning before we hang up.
            peer.close("rejected by peer_connected hook", warning=text if isinstance(text, str) else None)
            return False
        self.log("broken", peer.log_source, f"Bad response to peer_connected hook: {outcome!r}")
        peer.close("bad peer_connected hook response")
        return False

    # ---- while connected --------------------------------------------------------------------
    async def send(self, node_id: bytes, message: bytes) -> None:
        peer = self._peers.get(node_id)
        if peer is None:
            raise PeerDisconnected(f"peer {node_id.hex()} is not connected")
        await peer.send(message)

    async def disconnect(self, node_id: bytes, reason: str = "disconnect requested") -> bool:
        """Hang up on a peer; False if it was not connected."""
        peer = self._peers.get(node_id)
        if peer is None:
            return False
        peer.close(reason)
        await peer.wait_closed()
        return True

    async def _custommsg(self, peer: PeerConnection, msg_type: int, raw: bytes) -> None:
        """A message for plugins: the `custommsg` notification, then the hook chain (filtered by
        type).  The peer's next message waits for the chain, as in lightningd."""
        payload = {"peer_id": peer.id_hex, "payload": raw.hex()}
        self._notify("custommsg", payload)
        builtin = self.custom_handlers.get(msg_type)
        if builtin is not None:
            builtin(peer.node_id, msg_type, raw)
        plugins = self._plugins()
        if builtin is not None and (plugins is None or not plugins.has_hook("custommsg", msg_type)):
            return
        if plugins is None or not plugins.has_hook("custommsg", msg_type):
            if msg_type not in peer.ignored_types:  # once per type: a flood must not flood the log
                peer.ignored_types.add(msg_type)
                peer.log("debug", f"Ignoring custom message of type {msg_type}")
            return
        outcome = await plugins.call_hook("custommsg", payload, filter_value=msg_type)
        if not (isinstance(outcome, dict) and outcome.get("result") == "continue"):
            self.log("broken", peer.log_source, f"Plugin returned an invalid response to the custommsg hook: {outcome!r}")

    def _peer_closed(self, peer: PeerConnection) -> None:
        if self._peers.get(peer.node_id) is peer:
            del self._peers[peer.node_id]
        if not peer.connected:
            return
        peer.connected = False
        self.log("debug", peer.log_source, f"Peer disconnected: {peer.close_reason}")
        self._notify("disconnect", {"id": peer.id_hex})
        for fn in list(self._disconnect_handlers):
            try:
                result = fn(peer.node_id, peer.close_reason)
                if asyncio.iscoroutine(result):
                    asyncio.ensure_future(result)
            except Exception as e:
                self.log("broken", peer.log_source, f"disconnect handler failed: {e!r}")


def transport_source(transport: Transport) -> str:
    return f"{transport.remote_pubkey.hex()}-connectd"


def _fmt_binding(b: dict) -> str:
    return f"[{b['address']}]:{b['port']}" if b["type"] == "ipv6" else f"{b['address']}:{b['port']}"


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a crashed run would make bind fail; anything else at that path stays."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def _strerror(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "Connection timed out"
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


__all__ = [
    "AddressError", "ConnectError", "DEFAULT_PORTS", "ListenSpec", "PeerAddress", "PeerConfig",
    "PeerConnection", "PeerDisconnected", "PeerManager", "default_port", "parse_announce_address",
    "parse_listen_address", "parse_peer_address", "split_host_port",
]
