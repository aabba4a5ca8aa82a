"""Hook chains: registration, ordering, filters, and the sequential call of each chain.

cln-interfaces.md 2.1 ("Generic mechanics", lightningd/plugin_hook.c):
* every hook is chainable; a plugin registers a given hook at most once;
* order = topological sort of before/after constraints (names matched like disable-plugin:
  basename, or path if it has a '/'), ties broken by registration index; on a cycle the
  offending plugins are killed ("Cannot meet required hook dependencies");
* `filters` only for `rpc_command` (method names) and `custommsg` (message types);
* plugins are called one after the other; each answer goes to the hook's deserialiser, which says
  "continue to the next plugin" or "stop"; after the last plugin the final step runs; a plugin
  that dies mid-call (-4) is skipped.

Each hook kind brings its own `HookSession` (payload per plugin, deserialiser, outcome).
`rpc_command` is implemented here; later hooks (htlc_accepted, invoice_payment, peer_connected,
openchannel, custommsg...) add their own session classes and use `run_chain` unchanged.

Beyond CLN: a `HookTimeout` may bound how long one plugin may hold one hook call; when it expires
the configured answer is used as that plugin's answer and the slow plugin is named in the log.
Every wait is a per-request future, so a hung plugin holds only the event it was asked about.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Protocol

# name -> filter kind: None (no filters allowed), "str" or "int"   (REGISTER_PLUGIN_HOOK*)
HOOKS: dict[str, str | None] = {
    "htlc_accepted": None,
    "invoice_payment": None,
    "rpc_command": "str",
    "peer_connected": None,
    "openchannel": None,
    "openchannel2": None,
    "openchannel2_changed": None,
    "openchannel2_sign": None,
    "rbf_channel": None,
    "custommsg": "int",
    "db_write": None,
    "commitment_revocation": None,
    "onion_message_recv": None,
    "onion_message_recv_secret": None,
    "recover": None,
}

PLUGIN_TERMINATED = -4
CONTINUE = {"result": "continue"}


class HookError(Exception):
    """A hook registration the host refuses; the message is lightningd's."""


class HookPlugin(Protocol):
    """What the chain needs of a plugin."""

    shortname: str
    path: str
    index: int

    @property
    def alive(self) -> bool: ...


def plugin_paths_match(path: str, name: str) -> bool:
    """lightningd's plugin_paths_match: a name with '/' is a path, otherwise a basename."""
    if "/" in name:
        if path == name:
            return True
        try:
            return os.path.realpath(path) == os.path.realpath(name)
        except OSError:
            return False
    return os.path.basename(path) == name


# ---------------------------------------------------------------------------------------------
# Timeouts (Ampere extension)


@dataclass(frozen=True)
class HookTimeout:
    seconds: float
    answer: dict  # used as the slow plugin's `result`


# Named answers per hook; `continue` works for every hook.  A JSON object may be given instead.
NAMED_ANSWERS: dict[str, dict[str, dict]] = {
    # BOLT #4: temporary_node_failure = NODE|2 = 0x2002
    "htlc_accepted": {"fail": {"result": "fail", "failure_message": "2002"}},
    "invoice_payment": {"reject": {"result": "reject"}},
    "peer_connected": {"disconnect": {"result": "disconnect"}},
    "openchannel": {"reject": {"result": "reject"}},
    "openchannel2": {"reject": {"result": "reject"}},
    "rbf_channel": {"reject": {"result": "reject"}},
    "rpc_command": {"error": {"return": {"error": {"code": -1, "message": "rpc_command hook timed out"}}}},
}


def parse_hook_timeout(spec: str) -> tuple[str, HookTimeout]:
    """`HOOK:SECONDS[:ANSWER]`, the value of `--hook-timeout` (multi).

    ANSWER is `continue` (the default), a hook-specific name (htlc_accepted: `fail`;
    invoice_payment/openchannel/openchannel2/rbf_channel: `reject`; peer_connected: `disconnect`;
    rpc_command: `error`), or a JSON object used verbatim as the plugin's `result`.
    Examples: `htlc_accepted:30:fail`, `rpc_command:5`, `peer_connected:10:{"result":"disconnect"}`.
    Raises ValueError naming the problem.
    """
    hook, sep, rest = spec.partition(":")
    if not sep:
        raise ValueError(f"'{spec}' should be HOOK:SECONDS[:ANSWER]")
    if hook not in HOOKS:
        raise ValueError(f"unknown hook '{hook}'")
    secs_text, _, answer_text = rest.partition(":")
    try:
        seconds = float(secs_text)
    except ValueError:
        raise ValueError(f"'{secs_text}' is not a number of seconds") from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"'{secs_text}' must be a positive number of seconds")
    if answer_text in ("", "continue"):
        answer = dict(CONTINUE)
    elif answer_text.startswith("{"):
        try:
            answer = json.loads(answer_text)
        except ValueError:
            raise ValueError(f"answer '{answer_text}' is not valid JSON") from None
        if not isinstance(answer, dict):
            raise ValueError("answer must be a JSON object")
    else:
        named = NAMED_ANSWERS.get(hook, {})
        if answer_text not in named:
            choices = ", ".join(["continue", *named])
            raise ValueError(f"unknown answer '{answer_text}' for {hook} (one of: {choices}, or a JSON object)")
        answer = json.loads(json.dumps(named[answer_text]))
    return hook, HookTimeout(seconds, answer)


# ---------------------------------------------------------------------------------------------
# Registration and ordering


@dataclass
class HookRegistration:
    plugin: Any  # host.Plugin
    hook: str
    before: list[str]
    after: list[str]
    strfilters: frozenset[str] | None = None
    intfilters: frozenset[int] | None = None

    def callable_for(self, filter_value: Any) -> bool:
        """hook_callable: with filters, only a matching event calls the plugin."""
        if self.strfilters is not None:
            return filter_value in self.strfilters
        if self.intfilters is not None:
            return filter_value in self.intfilters
        return True


class HookRegistry:
    def __init__(self) -> None:
        self._regs: dict[str, list[HookRegistration]] = {}
        self._ordered: dict[str, list[HookRegistration]] = {}

    def build(self, plugin: Any, requests: list) -> list[HookRegistration]:
        """Check a manifest's hook requests (plugin_hook_register); raises HookError."""
        out: list[HookRegistration] = []
        for req in requests:
            kind = HOOKS.get(req.name, "missing")
            if kind == "missing":
                raise HookError(f"Unknown hook name {req.name}")
            strf = intf = None
            if req.filters is not None:
                if kind is None:
                    raise HookError(f"Hook {req.name} does not allow filters")
                if not isinstance(req.filters, list):
                    raise HookError("filters token must be an array")
                if kind == "str":
                    for f in req.filters:
                        if not isinstance(f, str):
                            raise HookError(f"filters must be array of strings, not '{json.dumps(f)}'")
                    strf = frozenset(req.filters)
                else:
                    for f in req.filters:
                        if not isinstance(f, int) or isinstance(f, bool) or not 0 <= f < 2**64:
                            raise HookError(f"filters must be array of unsigned integers, not '{json.dumps(f)}'")
                    intf = frozenset(req.filters)
            if any(r.hook == req.name for r in out) or any(
                r.plugin is plugin for r in self._regs.get(req.name, ())
            ):
                raise HookError(f"Registered for hook {req.name} multiple times")
            out.append(HookRegistration(plugin, req.name, list(req.before), list(req.after), strf, intf))
        return out

    def add(self, regs: list[HookRegistration]) -> None:
        for r in regs:
            self._regs.setdefault(r.hook, []).append(r)

    def remove_plugin(self, plugin: Any) -> None:
        for name in list(self._regs):
            self._regs[name] = [r for r in self._regs[name] if r.plugin is not plugin]
            if name in self._ordered:
                self._ordered[name] = [r for r in self._ordered[name] if r.plugin is not plugin]

    def hooks_of(self, plugin: Any) -> list[str]:
        return [name for name, regs in self._regs.items() if any(r.plugin is plugin for r in regs)]

    def reorder(self, debug_log: Callable[[Any, str], None] | None = None) -> list[Any]:
        """Recompute every chain's order; return the plugins whose constraints form a cycle.

        plugin_hook_make_ordered: Kahn's algorithm, picking among ready nodes the lowest
        registration index.  Unknown names in before/after are ignored (logged at debug).
        """
        failed: list[Any] = []
        for name, regs in self._regs.items():
            nodes = list(regs)
            incoming = {id(r): 0 for r in nodes}
            outgoing: dict[int, list[HookRegistration]] = {id(r): [] for r in nodes}

            def find(n: str) -> HookRegistration | None:
                for r in nodes:
                    if plugin_paths_match(r.plugin.path, n):
                        return r
                return None

            for r in nodes:
                for b in r.before:
                    other = find(b)
                    if other is None:
                        if debug_log:
                            debug_log(r.plugin, f"hook {name} before unknown plugin {b}")
                        continue
                    outgoing[id(r)].append(other)
                    incoming[id(other)] += 1
                for a in r.after:
                    other = find(a)
                    if other is None:
                        if debug_log:
                            debug_log(r.plugin, f"hook {name} after unknown plugin {a}")
                        continue
                    outgoing[id(other)].append(r)
                    incoming[id(r)] += 1
            done: list[HookRegistration] = []
            finished: set[int] = set()
            while True:
                ready = [r for r in nodes if id(r) not in finished and incoming[id(r)] == 0]
                if not ready:
                    break
                best = min(ready, key=lambda r: r.plugin.index)
                finished.add(id(best))
                done.append(best)
                for o in outgoing[id(best)]:
                    incoming[id(o)] -= 1
            if len(done) != len(nodes):
                for r in nodes:
                    if id(r) not in finished and r.plugin not in failed:
                        failed.append(r.plugin)
                continue
            # A call in progress keeps the snapshot it took; new calls see the new order.
            self._ordered[name] = done
        return failed

    def chain(self, name: str, filter_value: Any = None) -> list[HookRegistration]:
        """The plugins to call for one event, in order (a snapshot)."""
        return [r for r in self._ordered.get(name, ()) if r.callable_for(filter_value)]

    def has(self, name: str, filter_value: Any = None) -> bool:
        for r in self._ordered.get(name, ()):  # (asked for every RPC request: a loop, not a generator)
            if r.callable_for(filter_value):
                return True
        return False


# ---------------------------------------------------------------------------------------------
# Sessions: per-hook payload and deserialisation


class HookSession:
    """One event travelling down one hook chain.  Subclass per hook."""

    def params_for(self, plugin: Any) -> dict:  # the request's params for this plugin
        raise NotImplementedError

    def on_result(self, plugin: Any, result: Any) -> bool:
        """Digest one plugin's `result`; True to go on to the next plugin, False to stop."""
        raise NotImplementedError

    def outcome(self) -> Any:
        """What the caller of the chain gets (the hook's final_cb)."""
        raise NotImplementedError


class ContinueSession(HookSession):
    """The common shape: `{"result":"continue"}` goes on, anything else stops the chain and is
    the outcome (peer_connected, openchannel, invoice_payment, onion_message_recv...)."""

    def __init__(self, payload: dict) -> None:
        self.payload = payload
        self.final: dict = dict(CONTINUE)

    def params_for(self, plugin: Any) -> dict:
        return self.payload

    def on_result(self, plugin: Any, result: Any) -> bool:
        if isinstance(result, dict) and result.get("result") == "continue":
            # A `continue` may carry fields the caller uses (openchannel's mindepth, close_to, reserve): keep
            # them, a later plugin's overriding an earlier one's (lightningd deserialises each answer in turn).
            self.final = {**self.final, **result}
            return True
        self.final = result if isinstance(result, dict) else {"result": result}
        return False

    def outcome(self) -> dict:
        return self.final


class RpcCommandSession(HookSession):
    """`rpc_command` (lightningd/jsonrpc.c rpc_command_hook_callback / _final).

    Answers: `{"result":"continue"}`; `{"replace": request}`; `{"return": {"result": X}}`;
    `{"return": {"error": {code, message}}}`.  The first plugin that modifies wins; the chain goes
    on, and if a later plugin also tries to modify, lightningd logs "rpc_command hook '%s' already
    modified, ignoring." and finishes at once.  Malformed answers are logged BROKEN and skipped.
    """

    def __init__(self, request: dict, log: Callable[[str, str], None],
                 method_exists: Callable[[str], bool] | None = None) -> None:
        self.request = request
        self.log = log  # (level, message) under the node's main log
        self.method_exists = method_exists
        self.custom_result: Any = None
        self.custom_error: Any = None
        self.custom_replace: Any = None
        self.modified = False

    def params_for(self, plugin: Any) -> dict:
        return {"rpc_command": self.request}

    def on_result(self, plugin: Any, result: Any) -> bool:
        error = ""
        if isinstance(result, dict):
            if "result" in result:
                if result["result"] != "continue":
                    self.log("broken", "Bad response to 'rpc_command' hook. 'result' should only be 'continue'.")
                return True
            if self.modified:
                self.log("unusual", f"rpc_command hook '{self.request.get('method')}' already modified, ignoring.")
                return False
            if "replace" in result:
                self.custom_replace = result["replace"]
                self.modified = True
                return True
            ret = result.get("return")
            if isinstance(ret, dict):
                if "result" in ret:
                    self.custom_result = ret["result"]
                    self.modified = True
                    return True
                if "error" in ret:
                    err = ret["error"]
                    code = err.get("code") if isinstance(err, dict) else None
                    if not isinstance(code, int) or isinstance(code, bool):
                        error = "'error' object does not contain a code."
                    elif "message" not in err:
                        error = "'error' object does not contain a message."
                    else:
                        self.custom_error = err
                        self.modified = True
                        return True
        # "Just log BROKEN errors. Give other plugins a chance."
        self.log("broken", f"Bad response to 'rpc_command' hook. {error}")
        return True

    def _bad_replace(self, bad: str) -> tuple[str, dict]:
        return "return", {"error": {
            "code": -32600,
            "message": f"Bad response to 'rpc_command' hook: {bad} ({json.dumps(self.custom_replace)})"}}

    def outcome(self) -> tuple[str, dict]:
        if self.custom_result is not None or (self.modified and self.custom_error is None
                                               and self.custom_replace is None):
            return "return", {"result": self.custom_result}
        if self.custom_error is not None:
            return "return", {"error": self.custom_error}
        if self.custom_replace is not None:
            rep = self.custom_replace
            if not isinstance(rep, dict):
                return self._bad_replace("'replace' must be an object")
            for member in ("method", "params", "id"):
                if member not in rep:
                    return self._bad_replace(f"missing '{member}'")
            method = rep["method"]
            if self.method_exists is not None and (not isinstance(method, str) or not self.method_exists(method)):
                shown = method if isinstance(method, str) else json.dumps(method)
                return self._bad_replace(f"redirected to unknown method '{shown}'")
            if rep.get("jsonrpc") != "2.0":
                return self._bad_replace('jsonrpc: "2.0" must be specified in the request')
            return "continue", rep
        return "continue", self.request


# ---------------------------------------------------------------------------------------------
# The chain runner

# send(plugin, method, params, id_prefix, callback): starts a request whose answer goes to `callback`; its id.
SendFn = Callable[[Any, str, dict, "str | None", Callable[[dict], None]], str]


async def run_chain(
    hook: str,
    regs: list[HookRegistration],
    session: HookSession,
    *,
    send: SendFn,
    drop: Callable[[Any, str], None],
    log: Callable[[Any, str, str], None],
    id_prefix: str | None = None,
    timeout: HookTimeout | None = None,
) -> Any:
    """Call each registered plugin in turn (plugin_hook_call_next / plugin_hook_callback); the session's
    outcome.  start_chain awaited: the one engine.  If the caller is cancelled, the chain stops: the plugin being
    asked is forgotten (`drop`) and no other is asked."""
    fut: asyncio.Future = asyncio.get_running_loop().create_future()

    def done(outcome: Any) -> None:
        if not fut.done():
            if isinstance(outcome, BaseException):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)
    chain = start_chain(hook, regs, session, done, send=send, drop=drop, log=log, id_prefix=id_prefix,
                        timeout=timeout)
    try:
        return await fut
    finally:
        if not fut.done() or fut.cancelled():
            chain.abandon()


def start_chain(
    hook: str,
    regs: list[HookRegistration],
    session: HookSession,
    done: Callable[[Any], None],
    *,
    send: SendFn,
    drop: Callable[[Any, str], None],
    log: Callable[[Any, str, str], None],
    id_prefix: str | None = None,
    timeout: HookTimeout | None = None,
) -> "_Chain":
    """Run the chain driven by callbacks, for callers that answer from a callback (the RPC dispatcher): no task
    and no future per plugin asked (run_chain awaits it).  `send(plugin, method, params, id_prefix, callback)`
    starts a request whose answer goes to `callback` and returns its id; `drop(plugin, id)` forgets a request whose
    answer is no longer wanted; `log(plugin_or_None, level, message)`.
    `done(session.outcome())` is called once, never from within this call; if a step raises (a bug: run_chain
    would raise it to its caller), `done(exception)`.  Returns the chain, for `abandon()`."""
    chain = _Chain(hook, iter(regs), session, done, send, drop, log, id_prefix, timeout)
    chain.ask_next(inside=True)
    return chain


class _Chain:
    """The state of one start_chain.  An object, not closures: closures calling each other make a reference
    cycle per call, which only the cyclic garbage collector frees (it ran five times as often)."""

    __slots__ = ("hook", "todo", "session", "done", "send", "drop", "log", "id_prefix", "timeout",
                 "plugin", "req_id", "handle", "waiting")

    def __init__(self, hook: str, todo: Any, session: HookSession, done: Callable[[Any], None], send: Any,
                 drop: Callable[[Any, str], None], log: Callable[[Any, str, str], None], id_prefix: str | None,
                 timeout: HookTimeout | None) -> None:
        self.hook, self.todo, self.session, self.done = hook, todo, session, done
        self.send, self.drop, self.log, self.id_prefix, self.timeout = send, drop, log, id_prefix, timeout
        self.plugin: Any = None
        self.req_id = ""
        self.handle: asyncio.TimerHandle | None = None
        self.waiting = False  # a plugin has been asked and neither answered nor timed out

    def finish(self, outcome: Any) -> None:
        done, self.done = self.done, None  # once only, whatever happens
        if done is not None:
            done(outcome)

    def abandon(self) -> None:
        """The caller no longer wants the outcome: the plugin being asked is forgotten, no other is asked."""
        self.done = None
        self.todo = iter(())
        if self.waiting:
            self.waiting = False
            if self.handle is not None:
                self.handle.cancel()
                self.handle = None
            self.drop(self.plugin, self.req_id)

    def ask_next(self, inside: bool = False) -> None:
        for reg in self.todo:
            plugin = reg.plugin
            if not plugin.alive:
                continue
            self.plugin = plugin
            self.waiting = True
            self.req_id = self.send(plugin, self.hook, self.session.params_for(plugin), self.id_prefix,
                                    self.answered)
            if self.timeout is not None and self.waiting:
                self.handle = asyncio.get_running_loop().call_later(self.timeout.seconds, self.expired)
            return
        if inside:
            asyncio.get_running_loop().call_soon(self.finish, self.session.outcome())  # not from start_chain
        else:
            self.finish(self.session.outcome())

    def answered(self, resp: dict) -> None:
        if not self.waiting:
            return
        self.waiting = False
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        try:
            plugin = self.plugin
            if "result" not in resp:
                err = resp.get("error")
                if isinstance(err, dict) and err.get("code") == PLUGIN_TERMINATED:
                    # A plugin dying mid-hook is "plugin absent": go on with the chain.
                    self.log(None, "debug", f"Plugin died from {self.hook} hook call")
                else:
                    self.log(plugin, "broken", f"Plugin {plugin.shortname} for {self.hook} returned non-result "
                                               f"response {json.dumps(resp)}")
                self.ask_next()
            elif self.session.on_result(plugin, resp["result"]):
                self.ask_next()
            else:
                self.finish(self.session.outcome())
        except Exception as e:
            self.finish(e)

    def expired(self) -> None:
        if not self.waiting:
            return
        self.waiting = False
        self.handle = None
        timeout = self.timeout
        assert timeout is not None
        try:
            self.drop(self.plugin, self.req_id)
            self.log(self.plugin, "unusual",
                     f"{self.hook} hook did not answer within {timeout.seconds:g}s (id {self.req_id}): "
                     f"using {json.dumps(timeout.answer)}")
            if self.session.on_result(self.plugin, timeout.answer):
                self.ask_next()
            else:
                self.finish(self.session.outcome())
        except Exception as e:
            self.finish(e)


# ---------------------------------------------------------------------------------------------
# htlc_accepted and invoice_payment (cln-interfaces.md 2.2; lightningd/peer_htlcs.c, invoice.c)

# BOLT #4: temporary_node_failure = NODE|2.  Ampere's answer to a malformed hook reply (lightningd
# would abort): the HTLC fails, the node goes on.
TEMPORARY_NODE_FAILURE = b"\x20\x02"


def _hex_field(result: dict, name: str, length: int | None = None, min_length: int = 0) -> bytes | None:
    """A hex member of a hook answer; None if absent; ValueError naming it if malformed."""
    if name not in result:
        return None
    value = result[name]
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or (length is not None and len(raw) != length) or len(raw) < min_length:
        raise ValueError(f"'{name}' is not valid hex{'' if length is None else f' of {length} bytes'}")
    return raw


def _msat_field(value: Any) -> int:
    """`invoice_msat`: an integer, or a string "123msat"/"123" (older plugins)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text = value[:-4] if value.endswith("msat") else value
        if text.isdigit():
            return int(text)
    raise ValueError("'invoice_msat' is not a msat amount")


class HtlcAcceptedSession(HookSession):
    """`htlc_accepted` for one incoming HTLC (htlc_accepted_hook_deserialize).

    Replacement members (`payload`, `forward_to`, `extra_tlvs`, `invoice_msat`) are applied for
    ANY result and are seen by the next plugin in the chain: the payload dict sent to plugins is
    updated in place (`reparse(payload_bytes)` gives the new parsed `onion` members).  Then:
    `continue` goes on; `fail` (failure_onion wins over failure_message) and `resolve`
    (payment_key) stop the chain.  A malformed answer (fatal in lightningd) is logged and fails
    the HTLC with temporary_node_failure.

    After the chain: `.result` is "continue" | "fail" | "resolve"; `.failure_message`,
    `.failure_onion`, `.payment_key` and `.replacements` (name -> parsed value) say the rest.
    """

    def __init__(self, payload: dict, log: Callable[[str, str], None],
                 reparse: Callable[[bytes], dict] | None = None) -> None:
        self.payload = payload
        self.log = log
        self.reparse = reparse
        self.result = "continue"
        self.failure_message: bytes | None = None
        self.failure_onion: bytes | None = None
        self.payment_key: bytes | None = None
        self.replacements: dict[str, Any] = {}

    def params_for(self, plugin: Any) -> dict:
        return self.payload

    def _bad(self, plugin: Any, why: str, result: Any) -> bool:
        name = getattr(plugin, "shortname", "?")
        self.log("unusual", f"Bad response to htlc_accepted hook from {name}: {why} ({json.dumps(result)[:200]}); "
                            "failing the HTLC with temporary_node_failure")
        self.result = "fail"
        self.failure_message = TEMPORARY_NODE_FAILURE
        self.failure_onion = None
        return False

    def _apply_replacements(self, result: dict) -> None:
        payload = _hex_field(result, "payload", min_length=2)
        forward_to = _hex_field(result, "forward_to", length=32)
        extra_tlvs = _hex_field(result, "extra_tlvs")
        invoice_msat = _msat_field(result["invoice_msat"]) if "invoice_msat" in result else None
        if payload is not None:
            self.replacements["payload"] = payload
            onion = dict(self.payload.get("onion", {}))
            if self.reparse is not None:
                onion = {k: v for k, v in onion.items() if k in ("next_onion", "shared_secret")}
                onion.update(self.reparse(payload))
            self.payload["onion"] = onion
        if forward_to is not None:
            self.replacements["forward_to"] = forward_to
            self.payload["forward_to"] = forward_to.hex()
        if extra_tlvs is not None:
            self.replacements["extra_tlvs"] = extra_tlvs
            self.payload.setdefault("htlc", {})["extra_tlvs"] = extra_tlvs.hex()
        if invoice_msat is not None:
            self.replacements["invoice_msat"] = invoice_msat

    def on_result(self, plugin: Any, result: Any) -> bool:
        if not isinstance(result, dict) or not isinstance(result.get("result"), str):
            return self._bad(plugin, "no 'result'", result)
        try:
            self._apply_replacements(result)
        except ValueError as e:
            return self._bad(plugin, str(e), result)
        kind = result["result"]
        if kind == "continue":
            return True
        if kind == "fail":
            try:
                onion = _hex_field(result, "failure_onion", min_length=1)
                message = _hex_field(result, "failure_message", min_length=2)
            except ValueError as e:
                return self._bad(plugin, str(e), result)
            if onion is None and message is None:
                return self._bad(plugin, "'fail' needs failure_message or failure_onion", result)
            if onion is not None and message is not None:
                self.log("unusual", "htlc_accepted hook gave both failure_onion and failure_message: "
                                    "using failure_onion")
                message = None
            self.result, self.failure_onion, self.failure_message = "fail", onion, message
            return False
        if kind == "resolve":
            try:
                key = _hex_field(result, "payment_key", length=32)
            except ValueError as e:
                return self._bad(plugin, str(e), result)
            if key is None:
                return self._bad(plugin, "'resolve' needs payment_key", result)
            self.result, self.payment_key = "resolve", key
            return False
        return self._bad(plugin, f"unknown result '{kind}'", result)

    def outcome(self) -> "HtlcAcceptedSession":
        return self


class InvoicePaymentSession(HookSession):
    """`invoice_payment` for one complete payment of one of our invoices (hook_gives_failmsg).

    `{"result":"continue"}` accepts (next plugin); `{"result":"reject"}` fails every HTLC with
    incorrect_or_unknown_payment_details; no `result` but `failure_message` (hex) fails them with
    that message.  Anything else (fatal in lightningd) is logged and rejects.
    Outcome: None to accept, else the failure message bytes (None inside means "the default").
    """

    REJECT = b""  # outcome meaning "reject with incorrect_or_unknown_payment_details"

    def __init__(self, payload: dict, log: Callable[[str, str], None]) -> None:
        self.payload = payload
        self.log = log
        self.failure: bytes | None = None

    def params_for(self, plugin: Any) -> dict:
        return self.payload

    def on_result(self, plugin: Any, result: Any) -> bool:
        if isinstance(result, dict):
            kind = result.get("result")
            if kind == "continue":
                return True
            if kind == "reject":
                self.failure = self.REJECT
                return False
            if kind is None and "failure_message" in result:
                try:
                    msg = _hex_field(result, "failure_message", min_length=2)
                except ValueError:
                    msg = None
                if msg is not None:
                    self.failure = msg
                    return False
        self.log("unusual", f"Bad response to invoice_payment hook from {getattr(plugin, 'shortname', '?')}: "
                            f"{json.dumps(result)[:200]}; rejecting the payment")
        self.failure = self.REJECT
        return False

    def outcome(self) -> bytes | None:
        return self.failure
