"""One connected peer: the BOLT #8 transport after the `init` exchange, its reader task, keepalive
pings, and the limits that keep a hostile peer from hurting anyone else.

The PeerManager (peers.py) creates a PeerConnection once `init` has been accepted and the
`peer_connected` hook has let it through, then calls `start()`.  From then on one task reads the
peer's messages in order and applies BOLT #1; messages for later components (channels, gossip)
go to the handlers registered with `PeerManager.add_message_handler`.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ampere.wire import bolt1
from ampere.wire.codec import MESSAGE_TYPES, UnknownMessage, decode_message
from ampere.wire.errors import Action, ConnectionClosed, TransportError, UnknownEvenMessageError, WireError
from ampere.wire.features import Features
from ampere.wire.messages import Error, Init, Ping, Pong, Warning
from ampere.node.net.dev_disconnect import wire_name
from ampere.node.net.transport import Transport

if TYPE_CHECKING:
    from ampere.node.net.peers import PeerManager


@dataclass(frozen=True)
class PeerAddress:
    """Where a connection goes (or came from), in the forms lightningd prints.

    kind: "ipv4" | "ipv6" | "local socket" | "torv3" | "dns" (announce only) | "unresolved"
    (a host name handed to the proxy unresolved).
    """

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        # lightningd's fmt_wireaddr_internal: "1.2.3.4:9735", "[::1]:9735", "/path", "host:port".
        if self.kind == "local socket":
            return self.path
        if self.kind == "ipv6":
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        """As `connect`'s result and the `connect` notification show it (json_add_address_internal)."""
        if self.kind == "local socket":
            return {"type": "local socket", "socket": self.path}
        if self.kind == "unresolved":
            return {"type": "unresolved", "name": self.host, "port": self.port}
        return {"type": self.kind, "address": self.host, "port": self.port}

    @property
    def is_ip(self) -> bool:
        return self.kind in ("ipv4", "ipv6")


class TokenBucket:
    """Rate limit with a burst allowance; `take` says how long to wait before the cost is paid."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, cost: float, now: float) -> float:
        # (Every message read pays this twice: no min() call, one attribute store of tokens.)
        tokens = self.tokens + (now - self.stamp) * self.rate
        burst = self.burst
        if tokens > burst:
            tokens = burst
        self.stamp = now
        tokens -= cost
        self.tokens = tokens
        if tokens >= 0:
            return 0.0
        return -tokens / self.rate


class PeerDisconnected(ConnectionError):
    """The peer is gone (or went away while we were sending)."""


class PeerConnection:
    def __init__(self, manager: "PeerManager", transport: Transport, node_id: bytes, direction: str,
                 address: PeerAddress, their_features: Features, remote_addr: str | None) -> None:
        self.manager = manager
        self.transport = transport
        self.node_id = node_id
        self.direction = direction  # "in" | "out"
        self.address = address
        self.features = their_features
        self.remote_addr = remote_addr  # how the peer sees us ("1.2.3.4:9735"), if it said
        self.connected = False  # True once the peer_connected hook let it through
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.connected_at = time.time()
        self.log_source = f"{node_id.hex()}-connectd"
        cfg = manager.config
        self._msgs = TokenBucket(cfg.msg_rate, cfg.msg_burst)
        self._bytes = TokenBucket(cfg.byte_rate, cfg.byte_burst)
        self._throttled_since: float | None = None
        self._ping = bolt1.PingTracker(cfg.pong_timeout)
        self._pong_waiter: asyncio.Future | None = None
        self._tasks: list[asyncio.Task] = []
        self.ignored_types: set[int] = set()
        self._blackholed = False  # --dev-disconnect's "0" / "x"
        # lightningd's DEBUG "peer_out WIRE_X" / "peer_in WIRE_X" lines, which tests wait for; only
        # formatted when this connection's debug lines are kept.
        enabled = getattr(manager, "log_enabled", None)
        self._io_debug = bool(enabled is not None and enabled("debug", self.log_source))

    # ---- identity ---------------------------------------------------------------------------
    @property
    def id_hex(self) -> str:
        return self.node_id.hex()

    @property
    def features_hex(self) -> str:
        return self.features.hex()

    def log(self, level: str, message: str) -> None:
        self.manager.log(level, self.log_source, message)

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.connected = True
        self._tasks.append(asyncio.create_task(self._read_loop(), name=f"peer-read-{self.id_hex[:8]}"))
        if self.manager.config.ping_interval > 0:
            self._tasks.append(asyncio.create_task(self._keepalive(), name=f"peer-ping-{self.id_hex[:8]}"))

    def close(self, reason: str, *, warning: str | None = None, error: str | None = None) -> None:
        """Hang up (idempotent).  A `warning` or `error` text is sent first, best effort
        (BOLT #1 lets a node send a warning before it closes the connection)."""
        if self.closed.is_set():
            return
        self.close_reason = reason
        try:
            if error is not None:
                self.transport.write_message(bolt1.make_error(error).to_bytes())
            elif warning is not None:
                self.transport.write_message(bolt1.make_warning(warning).to_bytes())
        except Exception:
            pass
        self.transport.close(linger=error is not None or warning is not None)
        self.closed.set()
        if self._pong_waiter is not None and not self._pong_waiter.done():
            self._pong_waiter.set_exception(PeerDisconnected(reason))
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        self.manager._peer_closed(self)

    async def wait_closed(self) -> None:
        await self.closed.wait()
        await self.transport.wait_closed()

    # ---- sending ----------------------------------------------------------------------------
    def send_nowait(self, message: bytes) -> None:
        """Encrypt and queue one message (2-byte type + payload).  A peer that lets our queue grow
        past the limit (it does not read) is cut off."""
        if self.closed.is_set():
            raise PeerDisconnected(f"peer {self.id_hex} is not connected")
        dev = self.manager.dev_disconnect
        if dev is not None and len(message) >= 2 and self._dev_disconnect(dev, message):
            return
        if self._io_debug and len(message) >= 2:
            self.manager.log("debug", self.log_source, _io_line(_PEER_OUT, "peer_out ", message))
        self.transport.write_message(message)
        if self.transport.write_buffer_size > self.manager.config.max_write_buffer:
            self.close("peer is not reading what we send (write buffer full)")
            raise PeerDisconnected("peer is not reading what we send")

    def _dev_disconnect(self, dev, message: bytes) -> bool:
        """--dev-disconnect (net/dev_disconnect.py): True when the message must not be written."""
        from ampere.node.net.dev_disconnect import AFTER, BEFORE, BLACKHOLE, DISABLE_AFTER

        if self._blackholed:
            return True
        mode = dev.check(int.from_bytes(message[:2], "big"), self.id_hex)
        if mode == BEFORE:
            self.close("dev_disconnect")
            raise PeerDisconnected("dev_disconnect")
        if mode == AFTER:
            self.transport.write_message(message)
            self.close("dev_disconnect")
            return True
        if mode in (BLACKHOLE, DISABLE_AFTER):
            if mode == DISABLE_AFTER:
                self.transport.write_message(message)
            self._blackholed = True  # nothing more written or read; the connection stays open
            for t in self._tasks:
                if t is not asyncio.current_task() and t.get_name().startswith("peer-read"):
                    t.cancel()
            return True
        return False

    async def send(self, message: bytes) -> None:
        """Send and wait until the kernel has taken it (bounded by the send timeout)."""
        self.send_nowait(message)
        try:
            await asyncio.wait_for(self.transport.drain(), self.manager.config.send_timeout)
        except asyncio.TimeoutError:
            self.close("send timed out: peer is not reading")
            raise PeerDisconnected("send timed out") from None
        except (ConnectionError, OSError) as e:
            self.close(f"send failed: {e}")
            raise PeerDisconnected(str(e)) from None

    # ---- ping -------------------------------------------------------------------------------
    async def ping(self, num_pong_bytes: int, ignored_len: int = 0) -> int:
        """Send a ping and wait for its pong; returns the pong's `byteslen` (0 when num_pong_bytes
        asks for no reply).  Raises RuntimeError if a ping is already in flight."""
        if num_pong_bytes >= bolt1.PONG_NO_REPLY_THRESHOLD:
            await self.send(Ping(num_pong_bytes=num_pong_bytes, ignored=bytes(ignored_len)).to_bytes())
            return 0
        fut = self._start_ping(num_pong_bytes, ignored_len)
        if fut is None:
            raise RuntimeError("Ping already pending")
        await self.transport.drain()
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.manager.config.pong_timeout)
        except asyncio.TimeoutError:
            self.close("Last ping unreturned: hanging up")
            raise PeerDisconnected("no pong: peer disconnected") from None
        return num_pong_bytes

    def _start_ping(self, num_pong_bytes: int, ignored_len: int = 0) -> asyncio.Future | None:
        ping = self._ping.make_ping(time.monotonic(), num_pong_bytes)
        if ping is None:
            return None
        if ignored_len:
            ping = Ping(num_pong_bytes=num_pong_bytes, ignored=bytes(ignored_len))
        self._pong_waiter = asyncio.get_running_loop().create_future()
        self.send_nowait(ping.to_bytes())
        return self._pong_waiter

    async def _keepalive(self) -> None:
        """BOLT #1: a node "SHOULD NOT send `ping` messages more often than once every 30 seconds"
        and, without a `pong`, "MAY terminate the network connection" (channels are not failed)."""
        cfg = self.manager.config
        try:
            while not self.closed.is_set():
                await asyncio.sleep(cfg.ping_interval * random.uniform(0.75, 1.25))
                fut = self._start_ping(0)
                if fut is None:
                    continue  # an RPC ping is in flight; it has its own deadline
                try:
                    await asyncio.wait_for(asyncio.shield(fut), cfg.pong_timeout)
                except asyncio.TimeoutError:
                    self.log("debug", "Last ping unreturned: hanging up")
                    self.close("Last ping unreturned: hanging up")
                    return
        except (asyncio.CancelledError, PeerDisconnected):
            pass

    def _on_pong(self, pong: Pong) -> None:
        self._ping.on_pong(pong, time.monotonic())  # raises ProtocolError if unsolicited
        waiter, self._pong_waiter = self._pong_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(len(pong.ignored))

    # ---- reading ----------------------------------------------------------------------------
    def _throttle(self, size: int) -> float:
        """Per-peer read limits: messages and bytes per second, with bursts.  Over the limit we
        stop reading for the delay returned (the kernel then pushes back on the peer); a peer that
        stays over it for `flood_cutoff` seconds is cut off.  (Not a coroutine: the read loop
        awaits only when there is a delay, not once per message.)"""
        now = time.monotonic()
        delay = self._msgs.take(1, now)
        by_bytes = self._bytes.take(size, now)
        if by_bytes > delay:
            delay = by_bytes
        if delay <= 0:
            self._throttled_since = None
            return 0.0
        if self._throttled_since is None:
            self._throttled_since = now
        elif now - self._throttled_since > self.manager.config.flood_cutoff:
            raise WireError("peer is flooding us: over the read limits for "
                            f"{self.manager.config.flood_cutoff:g}s")
        return delay

    async def _read_loop(self) -> None:
        reason = "peer closed the connection"
        try:
            since_yield = 0
            while True:
                raw = await self.transport.read_message()
                delay = self._throttle(len(raw))
                if delay:
                    await asyncio.sleep(delay)
                try:
                    await self._dispatch(raw)
                except WireError as e:
                    if e.action is Action.IGNORE:
                        self.log("debug", f"Ignoring message: {e}")
                    elif e.action is Action.WARN:
                        self.log("unusual", f"Peer sent a bad message: {e}")
                        self.send_nowait(bolt1.make_warning(str(e)).to_bytes())
                    else:
                        raise
                # readexactly() does not yield while data is buffered: let others run now and then.
                since_yield += 1
                if since_yield >= 16:
                    since_yield = 0
                    await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        except TransportError as e:
            reason = f"transport error: {e}"
            self.log("debug", reason)
        except WireError as e:
            reason = str(e)
            self.log("unusual", f"Disconnecting: {e}")
            self.close(reason, warning=str(e))
        except PeerDisconnected:
            pass
        except (ConnectionError, OSError) as e:
            reason = f"connection lost: {e}"
        except asyncio.CancelledError:
            reason = self.close_reason or "cancelled"
            raise
        except Exception as e:  # a bug in a handler must not take the node down: drop this peer
            reason = f"internal error handling a message: {e!r}"
            self.log("broken", reason)
        finally:
            self.close(self.close_reason or reason)

    async def _dispatch(self, raw: bytes) -> None:
        if len(raw) < 2:
            raise WireError(f"message of {len(raw)} bytes has no type")
        msg_type = int.from_bytes(raw[:2], "big")
        manager = self.manager
        if self._io_debug:
            self.manager.log("debug", self.log_source, _io_line(_PEER_IN, "peer_in ", raw))
        if msg_type not in MESSAGE_TYPES:
            handlers = manager._handlers.get(msg_type)
            if handlers:
                msg = UnknownMessage(msg_type, raw[2:])
                for fn in handlers:
                    await _call(fn, self.node_id, msg, raw)
                return
            # BOLT #1: unknown odd messages are ignored, unknown even ones close the connection --
            # unless a plugin declared the type in its manifest's `custommessages`.
            if msg_type % 2 == 1 or msg_type in manager.custom_message_types():
                await manager._custommsg(self, msg_type, raw)
                return
            bolt1.check_unknown_message(UnknownMessage(msg_type, raw[2:]))  # raises for even
            raise UnknownEvenMessageError(msg_type)

        msg = decode_message(raw)  # DecodeError: "a known message with insufficient length" -> close
        if isinstance(msg, Ping):
            pong = bolt1.respond_to_ping(msg)
            if pong is not None:
                self.send_nowait(pong.to_bytes())
                await self._drain_bounded()
        elif isinstance(msg, Pong):
            self._on_pong(msg)
        elif isinstance(msg, (Error, Warning)):
            complaint = bolt1.interpret_error(msg)
            kind = "error" if complaint.is_error else "warning"
            where = "all channels" if complaint.all_channels else f"channel {complaint.channel_id.hex()}"
            self.log("info", f"Received {kind} from peer ({where}): {complaint.text}")
        elif isinstance(msg, Init):
            # BOLT #1: `init` is the first message of a connection, and only the first.
            raise WireError("init received twice", action=Action.WARN)
        handlers = manager._handlers.get(msg_type)
        if handlers:
            for fn in handlers:
                result = fn(self.node_id, msg, raw)  # (no wrapper coroutine per message: see _call)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
        elif not isinstance(msg, (Ping, Pong, Error, Warning)):
            self.log("debug", f"No handler for {type(msg).__name__} ({msg_type}): ignored")
        if isinstance(msg, Error) and msg.channel_id == bolt1.ALL_CHANNELS:
            # BOLT #1: an error for all channels fails every channel with the peer; nothing is left
            # to talk about, so we hang up (as lightningd does).
            self.close(f"peer sent error: {bolt1.printable_text(msg.data)}")
            raise PeerDisconnected("peer sent an error")

    async def _drain_bounded(self) -> None:
        # A peer that pings without reading our pongs fills our buffer: wait for it to read,
        # but not forever.
        if self.transport.write_buffer_size == 0:
            return
        try:
            await asyncio.wait_for(self.transport.drain(), self.manager.config.send_timeout)
        except asyncio.TimeoutError:
            raise WireError("peer is not reading our replies") from None


# "peer_in WIRE_X" / "peer_out WIRE_X" by the message's first two bytes: formatted once per type, not per message.
_PEER_IN: dict[bytes, str] = {}
_PEER_OUT: dict[bytes, str] = {}


def _io_line(cache: dict[bytes, str], prefix: str, message: bytes) -> str:
    key = bytes(message[:2])
    line = cache.get(key)
    if line is None:
        line = prefix + wire_name(int.from_bytes(key, "big"))
        if len(cache) < 65536:
            cache[key] = line
    return line


async def _call(fn: Any, *args: Any) -> None:
    result = fn(*args)
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        await result
