"""Commando: JSON-RPC commands over the Lightning connection, authorised by runes (CLN's plugins/commando.c).

A request is JSON {"method", "params", "rune", "id"[, "filter"]} sent in custom messages of type 0x4c4d
(continues) and 0x4c4f (terminates), each `u16 type || u64 request id || up to 65000 bytes`.  The node checks
the rune for the sending peer (checkrune nodeid/method/params), runs the command and answers with the whole
JSON-RPC response (the caller's id put back) in 0x594b / 0x594d messages.  `commando` is the client side.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from typing import TYPE_CHECKING, Any

from ampere.node.app.tasks import cancel_and_wait, spawn_guarded

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node

CMD_CONTINUES, CMD_TERM, REPLY_CONTINUES, REPLY_TERM = 0x4C4D, 0x4C4F, 0x594B, 0x594D
ERROR_LOCAL, ERROR_REMOTE, ERROR_REMOTE_AUTH = 0x4C4F, 0x4C50, 0x4C51
CHUNK = 65000                   # "Limit is 64k, but there's a little overhead"
MAX_REQUEST = 1024 * 1024       # "1MB should be enough for anybody!"
MAX_REPLY = 500 * 1024 * 1024
LOG = "plugin-commando"


class CommandoError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _chunks(kind_more: int, kind_last: int, idnum: int, body: bytes) -> list[bytes]:
    parts = [body[i:i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
    return [struct.pack(">HQ", kind_more if i < len(parts) - 1 else kind_last, idnum) + p for i, p in enumerate(parts)]


class Commando:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._incoming: dict[bytes, tuple[int, bytearray | None]] = {}   # peer -> (id, buffered request)
        self._outgoing: dict[tuple[bytes, int], tuple[asyncio.Future, bytearray | None]] = {}
        self._tasks: set[asyncio.Task] = set()
        for t in (CMD_CONTINUES, CMD_TERM, REPLY_CONTINUES, REPLY_TERM):
            node.peer_manager.custom_handlers[t] = self._on_message

    def _on_message(self, peer: bytes, msg_type: int, raw: bytes) -> None:
        if len(raw) < 10:
            return
        idnum = struct.unpack(">Q", raw[2:10])[0]
        body = raw[10:]
        if msg_type in (CMD_CONTINUES, CMD_TERM):
            cur = self._incoming.get(peer)
            if cur is None or cur[0] != idnum:   # "Don't let them buffer multiple commands: discard old."
                cur = (idnum, bytearray())
            buf = cur[1]
            if buf is not None and len(buf) + len(body) <= MAX_REQUEST:
                buf += body
            else:
                buf = None
            self._incoming[peer] = (idnum, buf)
            if msg_type == CMD_TERM:
                del self._incoming[peer]
                if buf is None:
                    self.node.log.unusual(LOG, f"{peer.hex()}: ignoring oversize request")
                    return
                spawn_guarded(self._tasks, self._serve(peer, idnum, bytes(buf)), "commando request",
                              lambda m: self.node.log.broken(LOG, m))
            return
        pending = self._outgoing.get((peer, idnum))
        if pending is None:
            self.node.log.debug(LOG, f"Ignoring unexpected reply from {peer.hex()} (id {idnum})")
            return
        fut, buf = pending
        if buf is not None and len(buf) + len(body) <= MAX_REPLY:
            buf += body
        else:
            buf = None
        self._outgoing[(peer, idnum)] = (fut, buf)
        if msg_type == REPLY_TERM and not fut.done():
            fut.set_result(None if buf is None else bytes(buf))

    async def _reply(self, peer: bytes, idnum: int, body: bytes) -> None:
        for msg in _chunks(REPLY_CONTINUES, REPLY_TERM, idnum, body):
            await self.node.peer_manager.send(peer, msg)

    async def _error(self, peer: bytes, idnum: int, code: int, message: str) -> None:
        await self._reply(peer, idnum, json.dumps({"error": {"code": code, "message": message}}).encode())

    async def _serve(self, peer: bytes, idnum: int, body: bytes) -> None:
        try:
            req = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return await self._error(peer, idnum, ERROR_REMOTE, "Invalid JSON")
        if not isinstance(req, dict):
            return await self._error(peer, idnum, ERROR_REMOTE, "Not a JSON object")
        method, params = req.get("method"), req.get("params")
        if not isinstance(method, str):
            return await self._error(peer, idnum, ERROR_REMOTE, "No method")
        if params is not None and not isinstance(params, (dict, list)):
            return await self._error(peer, idnum, ERROR_REMOTE, "Params must be object or array")
        if "id" not in req:
            return await self._error(peer, idnum, ERROR_REMOTE, "missing id field")
        rune = req.get("rune")
        if not isinstance(rune, str):
            return await self._error(peer, idnum, ERROR_REMOTE, "Missing rune")
        check = {"rune": rune, "nodeid": peer.hex(), "method": method}
        if params is not None:
            check["params"] = params
        try:
            await self.node.call("checkrune", check)
        except Exception as e:   # RpcError: the rune does not allow it
            return await self._error(peer, idnum, ERROR_REMOTE_AUTH, f"Invalid rune: {getattr(e, 'message', e)}")
        call = {"jsonrpc": "2.0", "id": req["id"], "method": method, "params": params if params is not None else {}}
        if req.get("filter") is not None:
            call["filter"] = req["filter"]
        response = await self.node.dispatch(call, None)
        response["id"] = req["id"]
        await self._reply(peer, idnum, json.dumps(response).encode())

    async def call(self, peer: bytes, method: str, params: Any, rune: str | None, filter_: Any) -> Any:
        """The client: send the request, wait for the whole reply; its result, or CommandoError."""
        idnum = int.from_bytes(os.urandom(8), "big") >> 1
        req: dict[str, Any] = {"method": method, "params": params if params is not None else {},
                               "id": f"ampere:commando#{idnum}"}
        if rune is not None:
            req["rune"] = rune
        if filter_ is not None:
            req["filter"] = filter_
        fut = asyncio.get_running_loop().create_future()
        self._outgoing[(peer, idnum)] = (fut, bytearray())
        try:
            for msg in _chunks(CMD_CONTINUES, CMD_TERM, idnum, json.dumps(req).encode()):
                await self.node.peer_manager.send(peer, msg)
            body = await fut
        finally:
            self._outgoing.pop((peer, idnum), None)
        if body is None:
            raise CommandoError(ERROR_LOCAL, "Reply was oversize")
        try:
            reply = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise CommandoError(ERROR_LOCAL, f"Reply was unparsable: '{body[:200]!r}'") from None
        if not isinstance(reply, dict):
            raise CommandoError(ERROR_LOCAL, "Reply was unparsable")
        err = reply.get("error")
        if err is not None:
            if not isinstance(err, dict) or not isinstance(err.get("code"), int):
                raise CommandoError(ERROR_LOCAL, f"Error '{err}' had no valid code")
            raise CommandoError(err["code"], str(err.get("message", "")), err.get("data"))
        if "result" not in reply:
            raise CommandoError(ERROR_LOCAL, "Reply had no result")
        return reply["result"]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
