"""The JSON-RPC 2.0 server on the `lightning-rpc` unix socket.

Framing follows lightningd: requests are a stream of JSON objects (no delimiter needed); every
response and notification we write ends in "\n\n", which pyln-client and lightning-cli rely on.
Requests on one connection run concurrently; writes to a connection are serialised.  Unparsable
input gets a -32700 answer and that connection is closed (the stream cannot be resynchronised);
other connections are unaffected.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any, Awaitable, Callable

from .errors import INVALID_REQUEST, PARSE_ERROR

_decoder = json.JSONDecoder()
# A request larger than this without completing is refused (memory bound per connection).
MAX_REQUEST_BYTES = 64 * 1024 * 1024


class RpcConnection:
    """One client connection: its transport and per-connection settings."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.notifications = False
        self.deprecations: bool | None = None
        self.closed = False
        self.pending = 0
        self.eof = False

    def write(self, obj: dict) -> None:
        if self.closed:
            return
        # One write per message: responses and notifications never interleave within a message.
        self.transport.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")

    async def send(self, obj: dict) -> None:
        self.write(obj)

    def send_nowait(self, obj: dict) -> None:
        self.write(obj)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()


Dispatch = Callable[[dict, RpcConnection], Awaitable[dict]]


def error_response(req_id: Any, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}}


class _RpcProtocol(asyncio.Protocol):
    """Parses the request stream of one connection and answers each request as it completes."""

    def __init__(self, server: "RpcServer") -> None:
        self.server = server
        self.buf = ""
        self.conn: RpcConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn = RpcConnection(transport)  # type: ignore[arg-type]
        self.server.connections.add(self.conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.conn.closed = True
            self.server.connections.discard(self.conn)

    def eof_received(self) -> bool:
        # The client may half-close after sending: keep the socket open until answers are written.
        conn = self.conn
        assert conn is not None
        conn.eof = True
        if conn.pending == 0:
            conn.close()
        return True

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        if conn.closed:
            return
        try:
            self.buf += data.decode("utf-8")
        except UnicodeDecodeError:
            conn.write(error_response(None, PARSE_ERROR, "Parse error: invalid UTF-8"))
            conn.close()
            return
        buf = self.buf
        pos = 0
        n = len(buf)
        while True:
            while pos < n and buf[pos] in " \t\r\n":
                pos += 1
            if pos >= n:
                self.buf = ""
                return
            try:
                obj, end = _decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as e:
                if _could_be_incomplete(buf, pos, e):
                    self.buf = buf[pos:]
                    if len(self.buf) > MAX_REQUEST_BYTES:
                        conn.write(error_response(None, INVALID_REQUEST, "Request too large"))
                        conn.close()
                    return
                # The stream cannot be resynchronised: answer, then close this connection only.
                conn.write(error_response(None, PARSE_ERROR, f"Parse error: {e.msg}"))
                conn.close()
                return
            pos = end
            self.server.start_request(obj, conn)


class RpcServer:
    def __init__(self, path: str, dispatch: Dispatch, log: Callable[[str, str], None]) -> None:
        self.path = path
        self.dispatch = dispatch
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
        task = asyncio.get_running_loop().create_task(self._handle(obj, conn))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, obj: Any, conn: RpcConnection) -> None:
        try:
            response = await self.dispatch(obj, conn)
        except asyncio.CancelledError:
            return
        except Exception as e:  # a bug in a handler must not take the server down
            self.log("broken", f"RPC dispatch failed: {e!r}")
            req_id = obj.get("id") if isinstance(obj, dict) else None
            response = error_response(req_id, -1, f"Internal error: {e}")
        finally:
            conn.pending -= 1
        if response is not None:
            conn.write(response)
        if conn.eof and conn.pending == 0:
            conn.close()


def _could_be_incomplete(buf: str, pos: int, err: json.JSONDecodeError) -> bool:
    """True when the parse failed only because the object has not fully arrived."""
    if err.pos >= len(buf):
        return True
    # "Unterminated string" and friends point inside the text but mean "need more".
    if err.msg.startswith("Unterminated string"):
        return True
    return buf[pos] in "{[" and _unbalanced(buf[pos:])


def _unbalanced(text: str) -> bool:
    depth = 0
    in_str = False
    esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return False
    return depth > 0


def _socket_alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
