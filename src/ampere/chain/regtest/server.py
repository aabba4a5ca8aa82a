"""bitcoind's HTTP JSON-RPC server shape, on asyncio streams.

- HTTP/1.1 with keep-alive, POST only, Basic auth (401 with an empty body on failure, after a
  short delay as bitcoind does to slow down password guessing).
- JSON-RPC 1.0-style replies {"result", "error", "id"} with bitcoind's HTTP statuses (500 on
  error, 404 for an unknown method, 400 for an invalid request), JSON-RPC 2.0 replies when the
  request says "jsonrpc": "2.0" (always 200, notifications get 204), and batches (arrays).
- Every method runs on one worker thread (the chain engine is single-threaded), so the event
  loop keeps serving other connections while a long generatetoaddress runs.
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from ampere.chain.regtest import methods
from ampere.chain.regtest.jsonfmt import dumps

log = logging.getLogger("amp-chaind")

RPC_PARSE_ERROR = -32700
RPC_INVALID_REQUEST = -32600
RPC_INTERNAL_ERROR = -32603
MAX_BODY = 32 * 1024 * 1024
_STATUS_TEXT = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                404: "Not Found", 405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
                500: "Internal Server Error", 503: "Service Unavailable"}


class RpcServer:
    def __init__(self, ctx: methods.Context, user: str, password: str):
        self.ctx = ctx
        self._auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain")
        self.servers: list[asyncio.base_events.Server] = []
        self.stopping = asyncio.Event()
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self._serve, host, port, limit=MAX_BODY + 65536, reuse_address=True)
        self.servers.append(server)

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for w in list(self._connections):
            w.close()
        for s in self.servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass

    async def run_in_engine(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # -------------------------------------------------------------- HTTP
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while not self.stopping.is_set():
                request_line = await reader.readline()
                if not request_line:
                    break
                try:
                    verb, _path, version = request_line.decode("latin-1").strip().split(" ", 2)
                except ValueError:
                    await self._respond(writer, 400, b"", close=True)
                    break
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if not line or line in (b"\r\n", b"\n"):
                        break
                    k, _, v = line.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                keep_alive = (version == "HTTP/1.1" and headers.get("connection", "").lower() != "close") or (
                    version == "HTTP/1.0" and headers.get("connection", "").lower() == "keep-alive")
                length = headers.get("content-length")
                if length is None or not length.isdigit():
                    await self._respond(writer, 411 if verb == "POST" else 405, b"", close=True)
                    break
                if int(length) > MAX_BODY:
                    await self._respond(writer, 413, b"", close=True)
                    break
                body = await reader.readexactly(int(length))
                if not self._authorized(headers.get("authorization", "")):
                    await asyncio.sleep(0.25)
                    await self._respond(writer, 401, b"", close=not keep_alive,
                                        extra={"WWW-Authenticate": 'Basic realm="jsonrpc"'})
                    if not keep_alive:
                        break
                    continue
                if verb != "POST":
                    await self._respond(writer, 405, b"JSONRPC server handles only POST requests", close=True)
                    break
                status, payload = await self._handle_body(body)
                await self._respond(writer, status, payload, close=not keep_alive)
                if not keep_alive:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._connections.discard(writer)
            try:
                writer.close()
            except Exception:
                pass

    def _authorized(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        return hmac.compare_digest(header[6:].strip().encode(), self._auth.encode())

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, close: bool,
                       extra: dict | None = None) -> None:
        head = [f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, 'Error')}"]
        if body or status not in (204, 401):
            head.append("Content-Type: application/json")
        head.append(f"Content-Length: {len(body)}")
        head.append("Connection: close" if close else "Connection: keep-alive")
        for k, v in (extra or {}).items():
            head.append(f"{k}: {v}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()

    # -------------------------------------------------------------- JSON-RPC
    async def _handle_body(self, body: bytes) -> tuple[int, bytes]:
        try:
            req = json.loads(body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            return 500, (dumps({"result": None, "error": {"code": RPC_PARSE_ERROR, "message": "Parse error"},
                                "id": None}) + "\n").encode()
        if isinstance(req, list):
            replies = []
            for item in req:
                status, reply = await self._handle_one(item)
                if reply is not None:
                    replies.append(reply)
            return 200, (dumps(replies) + "\n").encode()
        if not isinstance(req, dict):
            return 400, (dumps({"result": None, "error": {"code": RPC_PARSE_ERROR,
                                                          "message": "Top-level object parse error"},
                                "id": None}) + "\n").encode()
        status, reply = await self._handle_one(req)
        if reply is None:
            return 204, b""
        return status, (dumps(reply) + "\n").encode()

    async def _handle_one(self, req) -> tuple[int, dict | None]:
        if not isinstance(req, dict):
            return 400, {"result": None, "error": {"code": RPC_INVALID_REQUEST, "message": "Invalid Request object"},
                         "id": None}
        v2 = req.get("jsonrpc") == "2.0"
        rid = req.get("id")
        notification = v2 and "id" not in req
        method = req.get("method")
        try:
            if not isinstance(method, str):
                raise methods.RpcError(RPC_INVALID_REQUEST, "Method must be a string" if method is not None
                                       else "Missing method")
            params = req.get("params")
            if params is not None and not isinstance(params, (list, dict)):
                raise methods.RpcError(RPC_INVALID_REQUEST, "Params must be an array or object")
            result = await self.run_in_engine(methods.call, self.ctx, method, params)
        except methods.RpcError as e:
            if notification:
                return 204, None
            err = {"code": e.code, "message": e.message}
            if v2:
                return 200, {"jsonrpc": "2.0", "error": err, "id": rid}
            status = 404 if e.code == methods.RPC_METHOD_NOT_FOUND else 400 if e.code == RPC_INVALID_REQUEST else 500
            return status, {"result": None, "error": err, "id": rid}
        except Exception as e:  # a bug: report it as bitcoind reports internal errors, keep serving
            log.exception("internal error in %s", method)
            err = {"code": RPC_INTERNAL_ERROR, "message": f"Internal error: {e}"}
            if notification:
                return 204, None
            if v2:
                return 200, {"jsonrpc": "2.0", "error": err, "id": rid}
            return 500, {"result": None, "error": err, "id": rid}
        if notification:
            return 204, None
        if v2:
            return 200, {"jsonrpc": "2.0", "result": result, "id": rid}
        return 200, {"result": result, "error": None, "id": rid}
