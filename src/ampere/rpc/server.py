"""The JSON-RPC 2.0 server on the `lightning-rpc` unix socket.

Framing follows lightningd: requests are a stream of JSON objects (no delimiter needed); every
response and notification we write ends in "\n\n", which pyln-client and lightning-cli rely on.
Requests on one connection run concurrently; writes to a connection are serialised.  Unparsable
input gets a -32700 answer and that connection is closed (the stream cannot be resynchronised);
other connections are unaffected.  Framing (linear, bounded) is in framing.py; back-pressure below.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from typing import Any, Awaitable, Callable, Coroutine

from .errors import INVALID_REQUEST
from .reply import reply_bytes, reply_pieces
from .framing import MAX_REQUEST_CHARS, FrameError, InvalidRequest, JsonStreamFramer, whole_request

# Per connection (docs/limits.md): unsent replies above this stop new requests from starting; at most this many
# requests run at once; framed requests beyond MAX_QUEUED stop reading from the socket.
REPLY_BUFFER_BYTES = 4 * 1024 * 1024
MAX_IN_FLIGHT = 256
MAX_QUEUED = 1024
MAX_REQUEST_BYTES = MAX_REQUEST_CHARS
# Unsent bytes at which a connection is closed outright (notifications to a client that never reads).
MAX_UNREAD_BYTES = 64 * 1024 * 1024


class RpcConnection:
    """One client connection: its transport and per-connection settings."""

    __slots__ = ("transport", "protocol", "notifications", "deprecations", "closed", "pending", "eof")

    def __init__(self, transport: asyncio.Transport, protocol: Any = None) -> None:
        self.transport = transport
        self.protocol = protocol
        self.notifications = False
        self.deprecations: bool | None = None
        self.closed = False
        self.pending = 0
        self.eof = False

    def write(self, obj: dict) -> None:
        if self.closed:
            return
        # Responses and notifications never interleave within a message: its pieces (one, or several for a
        # long list result: reply.py) are handed to the transport one after the other, nothing in between.
        data = reply_bytes(obj)
        if data is not None:
            self.transport.write(data)
        else:
            for piece in reply_pieces(obj):
                self.transport.write(piece)
        # Back-pressure bounds what requests produce; notifications (which the node produces on its own) and
        # the replies of requests already running are bounded here: a client this far behind is not reading.
        if self.transport.get_write_buffer_size() > MAX_UNREAD_BYTES:
            self.close()

    async def send(self, obj: dict) -> None:
        self.write(obj)

    def send_nowait(self, obj: dict) -> None:
        self.write(obj)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()


Dispatch = Callable[[dict, RpcConnection], Awaitable[dict]]
# Starts a request without a task (a plugin's method, a request an rpc_command hook looks at): True if it took it,
# and will then call `reply` once, or `reply.spawn(awaitable)` once to finish it in a task (_Reply).
FastStart = Callable[[Any, RpcConnection, "_Reply"], bool]


def error_response(req_id: Any, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}}


class _RpcProtocol(asyncio.Protocol):
    """Frames the request stream of one connection and answers each request as it completes.

    Back-pressure: requests are started only while the connection's unsent replies stay under REPLY_BUFFER_BYTES
    and fewer than MAX_IN_FLIGHT of its requests are running; while either holds, framed requests wait in a
    short queue and reading stops once the queue is full, so a client that never reads its replies is stopped
    by its own socket buffer rather than by our memory."""

    __slots__ = ("server", "framer", "conn", "queue", "writing_paused", "reading_paused", "pumping")

    def __init__(self, server: "RpcServer") -> None:
        self.server = server
        self.framer: JsonStreamFramer | None = None  # made when a read is not one whole request (whole_request)
        self.conn: RpcConnection | None = None
        self.queue: deque[Any] = deque()
        self.writing_paused = False
        self.reading_paused = False
        self.pumping = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn = RpcConnection(transport, self)  # type: ignore[arg-type]
        transport.set_write_buffer_limits(high=REPLY_BUFFER_BYTES)  # type: ignore[attr-defined]
        self.server.connections.add(self.conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.clear()
        if self.framer is not None:
            self.framer.reset()  # a half-received request's text is released now, not with the protocol
        conn = self.conn
        if conn is not None:
            conn.closed = True
            self.server.connections.discard(conn)
            # Break the protocol <-> connection <-> transport cycle: freed by reference counting now, not left
            # to the cyclic garbage collector (a client per call, as pyln-client and lightning-cli do, made it
            # run every hundred calls).  Requests still running hold `conn` (closed: their answers are dropped).
            conn.protocol = None
            self.conn = None

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.pump()

    def eof_received(self) -> bool:
        # The client may half-close after sending: keep the socket open until answers are written.
        conn = self.conn
        assert conn is not None
        conn.eof = True
        self.maybe_close()
        return True

    def maybe_close(self) -> None:
        conn = self.conn
        if conn is not None and conn.eof and conn.pending == 0 and not self.queue:
            conn.close()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        if conn.closed:
            return
        framer = self.framer
        requests = whole_request(data) if framer is None else None
        try:
            if requests is None:
                if framer is None:
                    framer = self.framer = JsonStreamFramer()
                requests = framer.feed(data)
        except FrameError as e:
            # The stream cannot be resynchronised: answer what was framed, then this error, then close.
            self.queue.clear()
            conn.write(error_response(None, e.code, e.message))
            conn.close()
            return
        self.queue.extend(requests)
        self.pump()

    def pump(self) -> None:
        """Start queued requests while the connection's replies are being read; pause reading otherwise."""
        conn = self.conn
        if conn is None or conn.closed or self.pumping:
            return  # (called again by a request answered at once, from start_request: this loop goes on with it)
        self.pumping = True
        try:
            while self.queue and not self.writing_paused and conn.pending < MAX_IN_FLIGHT:
                item = self.queue.popleft()
                if isinstance(item, InvalidRequest):
                    conn.write(error_response(None, INVALID_REQUEST, item.message))   # in its turn
                else:
                    self.server.start_request(item, conn)
        finally:
            self.pumping = False
        if conn.closed:
            return
        blocked = len(self.queue) >= MAX_QUEUED
        transport = conn.transport
        if blocked and not self.reading_paused:
            self.reading_paused = True
            transport.pause_reading()
        elif not blocked and self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        self.maybe_close()


class _Reply(tuple):
    """How a request started by `fast` is finished: `reply(response)` (None: no answer), or `reply.spawn(aw)`
    to run the awaitable of the response in a task, as the general path does (errors answered the same way).
    (server, conn, request id): a tuple, made without a Python-level __init__ (one per request)."""

    __slots__ = ()

    def __call__(self, response: dict | None) -> None:
        self[0]._finish(self[1], response)

    def spawn(self, awaitable: Awaitable[dict]) -> None:
        server, conn, req_id = self
        task = asyncio.get_running_loop().create_task(server._complete(awaitable, conn, req_id))
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)

    def eager(self, coro: Coroutine[Any, Any, dict]) -> None:
        """spawn, but the coroutine's first step runs now, outside any task: a response it returns without
        waiting is answered at once (no task, no turn of the loop); if it waits, the rest runs in a task
        (_resume), as it would have.  Only for coroutines that need no task of their own (registry: eager)."""
        try:
            step = coro.send(None)
        except StopIteration as e:
            self(e.value)
            return
        except Exception as e:  # as _complete: a bug in a handler must not take the server down
            self[0].log("broken", f"RPC dispatch failed: {e!r}")
            self(error_response(self[2], -1, f"Internal error: {e}"))
            return
        self.spawn(_resume(coro, step))


async def _resume(coro: Coroutine[Any, Any, Any], step: Any) -> Any:
    """Run `coro` to its end from where it first waited (`step`: what it yielded), as the task it would have run
    in does: each future it waits on is awaited here, then it is resumed and sees the outcome itself.  If this
    task is cancelled while the future is not done, the cancellation is thrown into `coro`."""
    while True:
        thrown: BaseException | None = None
        try:
            if step is None:  # a bare yield (sleep(0)): one turn of the loop
                await asyncio.sleep(0)
            else:
                step._asyncio_future_blocking = False  # as a task does with what it is given (else: "await wasn't used")
                await step
        except BaseException as e:
            if step is None or not step.done():
                thrown = e
        try:
            step = coro.send(None) if thrown is None else coro.throw(thrown)
        except StopIteration as e:
            return e.value


class RpcServer:
    def __init__(self, path: str, dispatch: Dispatch, log: Callable[[str, str], None],
                 fast: FastStart | None = None) -> None:
        self.path = path
        self.dispatch = dispatch
        self.fast = fast
        self.log = log
        self.server: asyncio.base_events.Server | None = None
        self.connections: set[RpcConnection] = set()
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        if os.path.exists(self.path):
            if _socket_alive(self.path):
                raise RuntimeError(f"rpc filename '{self.path}' in use")
            os.unlink(self.path)
        old = os.umask(0o177)  # socket created 0600: only our user may drive the node
        try:
            loop = asyncio.get_running_loop()
            self.server = await loop.create_unix_server(lambda: _RpcProtocol(self), path=self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.connections):
            conn.close()
        for t in list(self.tasks):
            t.cancel()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def start_request(self, obj: Any, conn: RpcConnection) -> None:
        conn.pending += 1
        if self.fast is not None:
            try:
                if self.fast(obj, conn, _Reply((self, conn, obj.get("id") if isinstance(obj, dict) else None))):
                    return
            except Exception as e:  # as in _handle: a bug must not take the server down
                self.log("broken", f"RPC dispatch failed: {e!r}")
                req_id = obj.get("id") if isinstance(obj, dict) else None
                self._finish(conn, error_response(req_id, -1, f"Internal error: {e}"))
                return
        task = asyncio.get_running_loop().create_task(self._handle(obj, conn))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _finish(self, conn: RpcConnection, response: dict | None) -> None:
        conn.pending -= 1
        if response is not None:
            conn.write(response)
        if conn.protocol is not None:
            conn.protocol.pump()
        elif conn.eof and conn.pending == 0:
            conn.close()

    async def _handle(self, obj: Any, conn: RpcConnection) -> None:
        await self._complete(self.dispatch(obj, conn), conn, obj.get("id") if isinstance(obj, dict) else None)

    async def _complete(self, awaitable: Awaitable[dict], conn: RpcConnection, req_id: Any) -> None:
        try:
            response = await awaitable
        except asyncio.CancelledError:
            conn.pending -= 1
            return
        except Exception as e:  # a bug in a handler must not take the server down
            self.log("broken", f"RPC dispatch failed: {e!r}")
            response = error_response(req_id, -1, f"Internal error: {e}")
        self._finish(conn, response)


def _socket_alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
