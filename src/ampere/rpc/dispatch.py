"""JSON-RPC dispatch: a request from the socket (or from inside the node) to a built-in command or a
plugin's method, through the `rpc_command` hook.

As lightningd's jsonrpc.c: the request's envelope is checked first (each fault with CLN's message),
then plugins subscribed to `rpc_command` may let the call through, replace it, or answer it themselves
(continue / replacement / return; cln-interfaces.md, seed 002), then the command runs.  A domain error
raised by a command's handler is mapped to its CLN code here, at the edge (ampere.rpc.errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ampere.node.errors import DomainError
from ampere.node.onchain.chain_backend import BACKEND_METHODS, bcli_disabled
from ampere.rpc.errors import (
    INVALID_REQUEST,
    LIGHTNINGD_SHUTDOWN,
    METHOD_NOT_FOUND,
    RpcError,
    to_rpc_error,
)
from ampere.rpc.filter import filter_result
from ampere.rpc.params import parse_params, plugin_params_problem
from ampere.rpc.registry import COMMANDS, Command
from ampere.rpc.server import RpcConnection, error_response

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node


@dataclass
class CallContext:
    """What a command handler may use: the node, the raw request and its connection."""

    node: Node
    request: dict
    conn: RpcConnection | None
    check: bool = False

    def notify_message(self, level: str, message: str) -> None:
        if self.conn is not None and self.conn.notifications:
            self.conn.send_nowait({"jsonrpc": "2.0", "method": "message",
                                   "params": {"id": self.request.get("id"), "level": level, "message": message}})


class Dispatcher:
    """The node's command table (built-in commands, then plugins' methods) and the path of one request."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def lookup(self, method: str) -> Command | Any | None:
        cmd = COMMANDS.get(method)
        # The Bitcoin backend's methods are bcli's: with bcli disabled, a backend plugin's own answer them.
        if cmd is not None and not (method in BACKEND_METHODS and bcli_disabled(self.node.plugins)):
            return cmd
        if self.node.plugins is not None:
            return self.node.plugins.find_method(method)
        return None

    def _envelope(self, req: Any) -> dict | None:
        """The request's envelope checked as jsonrpc.c does, in its order: an error response, or None."""
        if not isinstance(req, dict):
            return error_response(None, INVALID_REQUEST, "Expected {} for json command")
        if "id" not in req:
            return error_response(None, INVALID_REQUEST, "Expected id for json command")
        req_id = req["id"]
        if isinstance(req_id, (dict, list)):
            return error_response(None, INVALID_REQUEST, "Expected string/primitive for id")
        if req.get("jsonrpc") != "2.0":
            return error_response(req_id, INVALID_REQUEST, 'jsonrpc: "2.0" must be specified in the request')
        method = req.get("method")
        if not isinstance(method, str):
            return error_response(req_id, INVALID_REQUEST, "Expected string for method")
        params = req.get("params", [])
        if not isinstance(params, (list, dict)):
            return error_response(req_id, INVALID_REQUEST, "Expected array or object for params")
        if self.node.stopping.is_set():
            return error_response(req_id, LIGHTNINGD_SHUTDOWN, "lightningd is shutting down")
        if self.lookup(method) is None:
            return error_response(req_id, METHOD_NOT_FOUND, f"Unknown command '{method}'")
        return None

    def start_fast(self, req: Any, conn: RpcConnection | None, reply: Any) -> bool:
        """Start a request without a task where it can be: a plugin's method (written to the plugin now, `reply`
        called with the answer when it comes), and any request an `rpc_command` hook looks at (the hook is asked
        now, and what follows is started from its answer: a plugin's method as above, a built-in command as a
        task then, `reply.spawn(awaitable)`).  A task and its chain of coroutines per call were a good part of
        what these cost the node.  Returns False, having done nothing, for every other request (a built-in
        command no hook looks at, a bad envelope): those take `dispatch`."""
        plugins = self.node.plugins
        if plugins is None or not isinstance(req, dict):
            return False
        method = req.get("method")
        if not isinstance(method, str):
            return False
        builtin = method in COMMANDS and not (method in BACKEND_METHODS and bcli_disabled(plugins))
        hooked = plugins.hooks.has("rpc_command", method)
        if builtin and not hooked:
            # The usual request: tested first, cheaply.  An eager command (getinfo) is run at once, without a task.
            if not COMMANDS[method].eager or self._envelope(req) is not None:
                return False
            reply.eager(self.execute(req, conn, req["id"]))
            return True
        if self._envelope(req) is not None:
            return False
        req_id = req["id"]
        if hooked:
            def hooked_done(outcome: Any) -> None:
                if isinstance(outcome, BaseException):  # a bug in the hook's code: as dispatch would answer
                    reply(error_response(req_id, -1, f"Internal error: {outcome}"))
                    return
                if self.node.stopping.is_set():
                    # Not run once the node is stopping (the hook may answer as plugins are shut down, after the
                    # RPC server stopped): answered as a request arriving now would be.
                    reply(error_response(req_id, LIGHTNINGD_SHUTDOWN, "lightningd is shutting down"))
                    return
                answer, run = self._after_rpc_command(req, req_id, outcome)
                if run is None:
                    reply(answer)
                    return
                target = self.lookup(run["method"])
                if isinstance(target, Command):
                    if target.eager:
                        reply.eager(self.execute(run, conn, req_id))
                    else:
                        reply.spawn(self.execute(run, conn, req_id))
                elif target is None or not self._start_plugin_method(run, conn, req_id, reply, known=True):
                    reply.spawn(self.execute(run, conn, req_id))
            plugins.start_rpc_command_hook(req, hooked_done)
            return True
        return self._start_plugin_method(req, conn, req_id, reply, known=True)  # (the envelope found it)

    def _start_plugin_method(self, req: dict, conn: RpcConnection | None, req_id: Any, reply: Any,
                             known: bool = False) -> bool:
        """A plugin's method whose params pass our checks, started with a callback; False (nothing done) else.
        `known`: the caller knows `req`'s method is a plugin's."""
        method = req["method"]
        plugins = self.node.plugins
        if plugins is None:
            return False
        if not known:
            target = self.lookup(method)
            if target is None or isinstance(target, Command):
                return False
        if plugin_params_problem(req.get("params")) is not None:
            return False
        relay = None
        if conn is not None:
            def relay(note: dict) -> None:
                if conn.notifications:
                    conn.send_nowait(note)

        def answered(response: dict) -> None:
            response["id"] = req_id  # freshly decoded from the plugin's output: ours to change
            response.setdefault("jsonrpc", "2.0")
            reply(response)
        plugins.start_method(method, req, req_id, relay, callback=answered)
        return True

    async def dispatch(self, req: Any, conn: RpcConnection | None) -> dict:
        bad = self._envelope(req)
        if bad is not None:
            return bad
        req_id = req["id"]

        # rpc_command hook: plugins may let the call through, replace it, or answer it themselves.
        plugins = self.node.plugins
        # Asked with the method: a plugin whose rpc_command hook has `filters` is called for those methods only
        # (asked without one, such a hook never matched and was never called).
        if plugins is not None and plugins.has_hook("rpc_command", req["method"]):
            answer, run = self._after_rpc_command(req, req_id, await plugins.rpc_command_hook(req))
            if run is None:
                return answer
            req = run
        return await self.execute(req, conn, req_id)

    def _after_rpc_command(self, req: dict, req_id: Any, outcome: tuple[str, Any]) -> tuple[Any, dict | None]:
        """What the rpc_command hook's outcome leaves to do: (None, the request to run -- `req` or the plugin's
        replacement), or (the answer, None) when a plugin answered or replaced the call by an unknown method."""
        action, value = outcome
        if action == "return":
            value = dict(value)
            value["jsonrpc"] = "2.0"
            value["id"] = req_id
            return value, None
        if value is not req:
            method = value.get("method")
            if not isinstance(method, str) or self.lookup(method) is None:
                return error_response(req_id, INVALID_REQUEST,
                                      f"Bad response to 'rpc_command' hook: unknown method '{method}'"), None
        return None, value

    async def execute(self, req: dict, conn: RpcConnection | None, req_id: Any, check: bool = False) -> dict:
        method = req["method"]
        target = self.lookup(method)
        if target is None:
            return error_response(req_id, METHOD_NOT_FOUND, f"Unknown command '{method}'")
        if not isinstance(target, Command):
            # A plugin's method: the request goes through verbatim, the answer comes back verbatim; but its
            # strings are checked here as a built-in command's are (a plugin's JSON library may not take them).
            bad = plugin_params_problem(req.get("params"))
            if bad is not None:
                return {"jsonrpc": "2.0", "id": req_id, "error": bad.to_json()}

            def relay(note: dict) -> None:
                if conn is not None and conn.notifications:
                    conn.send_nowait(note)

            assert self.node.plugins is not None  # a plugin's method was found
            response = await self.node.plugins.call_method(method, req, req_id, relay)
            response["id"] = req_id  # (a dict of our own: call_method's answer is freshly decoded)
            response.setdefault("jsonrpc", "2.0")
            return response
        ctx = CallContext(self.node, req, conn, check)
        try:
            if target.raw:
                result = await target.handler(ctx, req.get("params", []))
            else:
                params = parse_params(req.get("params", []), target.params, target.allow_extra)
                result = await target.handler(ctx, **params)
        except RpcError as e:
            return {"jsonrpc": "2.0", "id": req_id, "error": e.to_json()}
        except DomainError as e:
            return {"jsonrpc": "2.0", "id": req_id, "error": to_rpc_error(e).to_json()}
        flt = req.get("filter")
        if flt is not None and isinstance(result, dict):
            result = filter_result(result, flt)
        return {"jsonrpc": "2.0", "id": req_id, "result": result}

    async def call(self, method: str, params: Any = None) -> Any:
        """Call a command from inside the node (as a plugin would, hooks included). Raises RpcError."""
        resp = await self.dispatch({"jsonrpc": "2.0", "id": f"ampd:{method}", "method": method,
                                    "params": params if params is not None else {}}, None)
        if "error" in resp:
            err = resp["error"]
            raise RpcError(err.get("code", -1), err.get("message", ""), err.get("data"))
        return resp["result"]
