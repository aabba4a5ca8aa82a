"""The plugin host: Core Lightning's plugin protocol, so unmodified pyln-client plugins run.

Lifecycle (cln-interfaces.md 1.6-1.8, lightningd/plugin.c):
  register / register_dir / disable / clear       (the plugin options, before anything runs)
  load_manifests()      spawn every registered plugin, `getmanifest`, wait for all
  declared_options()    the node adds them to its options (`--help`, config files, listconfigs)
  init_all(values)      `init` with typed option values and the configuration, wait for all
  ...normal operation: call_method, rpc_command_hook / call_hook, notify, setconfig, check,
     start_dynamic / startdir / rescan / stop_plugin / list
  shutdown()

The host depends only on a logging callable `log(level, source, message)`; the node calls in.

Plugins are started with LIGHTNINGD_PLUGIN=1 and LIGHTNINGD_VERSION in the environment, the
network directory as working directory, stderr inherited (cln-interfaces.md 1.1).  PATH: when the
node runs from a virtual environment, that environment's bin directory is put first on the
plugins' PATH, so a plugin starting with `#!/usr/bin/env python3` runs with the interpreter that
has pyln-client installed next to Ampere (lightningd passes its environment unchanged; this only
makes a venv installation work as a system one would).

Where Ampere departs from lightningd (deliberately; see the issue):
* a plugin failing at startup (no answer to getmanifest/init in time, bad manifest, crash) is
  logged and dropped; the node keeps running unless the plugin is important (PluginFatal);
* a hook answer without `result` is logged BROKEN and that plugin skipped instead of aborting;
* a hung plugin never blocks anything: every request waits on its own future, and `hook-timeout`
  can bound a hook call (hooks.py).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import os
import stat
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from . import answer_poll
from .hooks import (HookRegistry, HookSession, HookTimeout, ContinueSession, HookError, RpcCommandSession,
                    parse_hook_timeout, plugin_paths_match, run_chain, start_chain)
from .manifest import (FEATURE_PLACES, Manifest, ManifestError, OptionValueError, PluginOption,
                       parse_manifest, parse_option_value as _parse_option_value)
from .notifications import NATIVE_TOPICS, NotificationBus, custom_message, encode, native_message
from .process import PluginProcess, id_prefix_of, new_request_id

# JSON-RPC error codes (common/jsonrpc_errors.h)
LIGHTNINGD = -1
PLUGIN_ERROR = -3
PLUGIN_TERMINATED = -4
JSONRPC2_METHOD_NOT_FOUND = -32601
JSONRPC2_INVALID_PARAMS = -32602

MANAGER_SOURCE = "plugin-manager"
NODE_SOURCE = "lightningd"


class LogFn(Protocol):
    def __call__(self, level: str, source: str, message: str) -> None: ...


class PluginFatal(Exception):
    """An important plugin failed (or plugin options clash) at startup: the node must exit 1."""


class PluginRegisterError(Exception):
    """A plugin path or directory that cannot be registered (message as lightningd's)."""


class PluginRpcError(Exception):
    """A failure to report to an RPC caller as `{"code", "message"}`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_error(self) -> dict:
        return {"code": self.code, "message": self.message}


class State(enum.IntEnum):
    UNCONFIGURED = 0
    AWAITING_GETMANIFEST_RESPONSE = 1
    NEEDS_INIT = 2
    AWAITING_INIT_RESPONSE = 3
    INIT_COMPLETE = 4
    DEAD = 5


STATE_DESC = {  # plugin.c state_desc, used in "exited ..." / "timed out ..."
    State.UNCONFIGURED: "unconfigured",
    State.AWAITING_GETMANIFEST_RESPONSE: "before replying to getmanifest",
    State.NEEDS_INIT: "before we sent init",
    State.AWAITING_INIT_RESPONSE: "before replying to init",
    State.INIT_COMPLETE: "during normal operation",
    State.DEAD: "after it died",
}

_LOG_LEVELS = {"trace": "trace", "debug": "debug", "info": "info", "unusual": "unusual",
               "broken": "broken", "warn": "unusual", "error": "broken"}


@dataclass
class PluginMethod:
    name: str
    usage: str
    description: str
    deprecated: bool
    plugin: "Plugin"


def _file_checksum(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).digest()
    except OSError:
        return b""


class Plugin:
    """One registered plugin and what it registered."""

    def __init__(self, host: "PluginHost", path: str, important: bool, index: int) -> None:
        self.host = host
        self.path = path
        self.shortname = os.path.basename(path)
        self.source = f"plugin-{self.shortname}"
        self.important = important
        self.index = index
        self.state = State.UNCONFIGURED
        self.dynamic = False
        self.can_check = False
        self.process: PluginProcess | None = None
        self.options: list[PluginOption] = []
        self.option_values: dict[str, Any] = {}  # typed values sent in `init` / set by setconfig
        self.start_params: dict[str, Any] = {}  # raw values from `plugin start`
        self.start_values: dict[str, Any] = {}
        self.methods: list[str] = []
        self.subscriptions: list[str] = []
        self.notification_topics: list[str] = []
        self.custom_msgs: list[int] = []
        self.featurebits: dict[str, int] = {}
        self.checksum: bytes = b""  # of the file when registered: a changed file is restarted by `plugin start`
        self.kill_reason: str | None = None

    @property
    def alive(self) -> bool:
        return self.state != State.DEAD

    @property
    def ready(self) -> bool:
        return self.state == State.INIT_COMPLETE

    def send_raw(self, data: bytes) -> None:
        if self.process is not None and self.alive:
            self.process.send_raw(data)

    def __repr__(self) -> str:
        return f"<Plugin {self.path} {self.state.name}>"


def _is_plugin_file(directory: str, name: str) -> str | None:
    """plugin.c plugin_fullpath: the full path if `name` in `directory` looks like a plugin."""
    for ch in name:
        if ord(ch) < 128 and not ch.isalnum() and ch not in "-_." and not ch.isspace():
            return None  # ASCII punctuation other than - _ .
        if ord(ch) < 128 and ch.isspace():
            return None
    if name == "README.md":
        return None
    full = os.path.join(directory, name)
    try:
        st = os.stat(full)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    if not st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
        return None
    return full


def plugin_env(version: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment plugins run with (plugins_init: LIGHTNINGD_PLUGIN=1, LIGHTNINGD_VERSION)."""
    env = dict(os.environ if base is None else base)
    env["LIGHTNINGD_PLUGIN"] = "1"
    env["LIGHTNINGD_VERSION"] = version
    if sys.prefix != sys.base_prefix:  # running from a venv: see the module docstring
        bindir = os.path.dirname(sys.executable)
        rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir]
        env["PATH"] = os.pathsep.join([bindir, *rest])
    return env


def to_caller(resp: dict, caller_id: Any) -> dict:
    """A plugin's answer to a forwarded request, with the caller's id back in place.  The answer is a
    dict freshly decoded from the plugin's output (or made for it here) that nothing else holds: it is
    changed in place rather than copied."""
    resp["id"] = caller_id
    return resp


class PluginHost:
    def __init__(
        self,
        log: LogFn,
        *,
        netdir: str,
        rpc_file: str,
        network: str,
        lightning_dir: str,
        allow_deprecated_apis: bool,
        feature_set: dict[str, str],
        version: str,
        startup_timeout: float = 120.0,
        hook_timeouts: dict[str, HookTimeout] | Iterable[str] | None = None,
        shutdown_timeout: float = 30.0,
        on_fatal: Callable[[str], Any] | None = None,
        builtin_methods: Iterable[str] = (),
        builtin_options: Iterable[str] = (),
        default_dir: str | None = None,
        developer: bool = False,
    ) -> None:
        self.log = log
        self.netdir = os.path.abspath(netdir)
        self.rpc_file = rpc_file
        self.network = network
        self.lightning_dir = os.path.abspath(lightning_dir)
        self.allow_deprecated_apis = allow_deprecated_apis
        self.version = version
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.on_fatal = on_fatal
        self.builtin_methods: set[str] = set(builtin_methods)
        self.builtin_options: set[str] = set(builtin_options)
        # Built-in plugins that run inside ampd (the chain backend `bcli`): `plugin list` shows them as CLN
        # shows its own (active, not dynamic) unless disable-plugin named them.
        self.builtin_plugins: list[str] = []
        self.answer_poll_window = answer_poll.POLL_WINDOW  # seconds (plugins/answer_poll.py); 0: never poll
        self.default_dir = default_dir or os.path.join(self.lightning_dir, "plugins")
        self.argv_extra: tuple[str, ...] = ("--developer",) if developer else ()
        self.env = plugin_env(version)
        self.hook_timeouts: dict[str, HookTimeout] = {}
        if isinstance(hook_timeouts, dict):
            self.hook_timeouts.update(hook_timeouts)
        elif hook_timeouts is not None:
            for spec in hook_timeouts:
                name, ht = parse_hook_timeout(spec)
                self.hook_timeouts[name] = ht
        self._features: dict[str, bytes] = {
            place: bytes.fromhex(feature_set.get(place, "")) for place in FEATURE_PLACES}
        self._features_hex: dict[str, str] | None = None  # features() as last computed; None once they change
        self._plugins: list[Plugin] = []
        self._blacklist: list[str] = []
        self._next_index = 0
        self._methods: dict[str, PluginMethod] = {}
        self._options: dict[str, PluginOption] = {}
        self.hooks = HookRegistry()
        self.bus = NotificationBus()
        self._startup = True
        self._shutting_down = False
        self._fatal: list[str] = []
        self._processes: set[PluginProcess] = set()  # every child not yet reaped
        self.save_io_dir: str | None = None  # --dev-save-plugin-io
        self._io_count = 0

    # ------------------------------------------------------------------ registration

    def _blacklisted(self, path: str) -> bool:
        return any(plugin_paths_match(path, name) for name in self._blacklist)

    def register(self, path: str, important: bool = False) -> Plugin | None:
        """`plugin=` / `important-plugin=`.  None if already registered or disabled.

        Raises PluginRegisterError("Failed to register PATH: No such file or directory").
        """
        if self._blacklisted(path):
            self.log("info", MANAGER_SOURCE, f"{path}: disabled via disable-plugin")
            return None
        if not os.path.exists(path):
            raise PluginRegisterError(f"Failed to register {path}: No such file or directory")
        canon = os.path.realpath(path)
        for p in self._plugins:
            if p.path == canon:
                if important:  # "If added as important, upgrade to important."
                    p.important = True
                # lightningd (plugin_register): "stop and restart plugin on different checksum".
                if p.checksum != _file_checksum(canon) and not p.important:
                    self._kill(p, "info", "Plugin changed, needs restart.")
                    break
                return None
        p = Plugin(self, canon, important, self._next_index)
        p.checksum = _file_checksum(canon)
        self._next_index += 1
        self._plugins.append(p)
        return p

    def register_dir(self, directory: str, error_ok: bool = False) -> list[Plugin]:
        """`plugin-dir=`: every executable regular file (not recursive; add_plugin_dir)."""
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        except OSError as e:
            if error_ok:
                return []
            raise PluginRegisterError(f"Failed to open plugin-dir {directory}: {e.strerror}") from None
        added = []
        for name in names:
            full = _is_plugin_file(directory, name)
            if full is None:
                continue
            if self._blacklisted(full):
                self.log("info", MANAGER_SOURCE, f"{full}: disabled via disable-plugin")
                continue
            p = self.register(full)
            if p is not None:
                added.append(p)
        return added

    def register_default_dir(self) -> list[Plugin]:
        """The default dir `<lightning-dir>/plugins`, plus one level of subdirectories, errors ignored."""
        added = self.register_dir(self.default_dir, error_ok=True)
        try:
            subdirs = sorted(os.listdir(self.default_dir))
        except OSError:
            return added
        for name in subdirs:
            sub = os.path.join(self.default_dir, name)
            if os.path.isdir(sub):
                added.extend(self.register_dir(sub, error_ok=True))
        return added

    def disable(self, name_or_path: str) -> None:
        """`disable-plugin=`: drop matching registrations and refuse later ones."""
        for p in list(self._plugins):
            if plugin_paths_match(p.path, name_or_path):
                self.log("info", MANAGER_SOURCE, f"{p.path}: disabled via disable-plugin")
                p.important = False  # disable-plugin overrides important-plugin
                self._remove_quietly(p)
        self._blacklist.append(name_or_path)

    def is_disabled(self, name: str) -> bool:
        """Was `name` (e.g. the built-in `bcli`) named by disable-plugin?"""
        return any(plugin_paths_match(name, n) or n == name for n in self._blacklist)

    async def init_some(self, plugins: list[Plugin], values: dict[str, Any]) -> None:
        """`init` for these plugins ahead of the others (lightningd's config_plugin for the Bitcoin
        backend, which the node needs before it can start)."""
        todo = [p for p in plugins if p.state == State.NEEDS_INIT]
        for p in todo:
            p.option_values = self._typed_values(p, values)
        await asyncio.gather(*(self._init_phase(p, True) for p in todo))
        self._raise_if_fatal()

    def clear(self) -> None:
        """`clear-plugins`: drop everything registered so far."""
        self.log("info", MANAGER_SOURCE, "clear-plugins removing all plugins")
        for p in list(self._plugins):
            p.important = False
            self._remove_quietly(p)

    def _remove_quietly(self, p: Plugin) -> None:
        if p.process is not None and p.alive:
            self._kill(p, "debug", "removed")
        elif p in self._plugins:
            p.state = State.DEAD
            self._plugins.remove(p)

    # ------------------------------------------------------------------ startup

    async def load_manifests(self) -> None:
        """Spawn every registered plugin and get its manifest (plugins_init).

        Failures are logged and the plugin dropped; an important plugin's failure (or a plugin
        option name that is already taken) raises PluginFatal once all have answered.
        """
        self._startup = True
        todo = [p for p in self._plugins if p.state == State.UNCONFIGURED]
        await self._manifests(todo, None)
        self._raise_if_fatal()

    async def init_all(self, values: dict[str, Any] | None = None) -> None:
        """Send `init` to every plugin waiting for it and wait for all (plugins_config).

        `values` maps option names to what the user gave: a string, None for a flag given without
        value, a list of those for multi options (already-typed values are accepted too).
        Raises OptionValueError for a bad value, PluginFatal if an important plugin fails.
        """
        values = values or {}
        todo = [p for p in self._plugins if p.state == State.NEEDS_INIT]
        for p in todo:
            p.option_values = self._typed_values(p, values)
        await asyncio.gather(*(self._init_phase(p, True) for p in todo))
        self._startup = False
        self._raise_if_fatal()

    def _raise_if_fatal(self) -> None:
        if self._fatal:
            msgs, self._fatal = self._fatal, []
            raise PluginFatal("; ".join(msgs))

    async def _spawn(self, p: Plugin) -> str | None:
        proc = PluginProcess(
            p.path, cwd=self.netdir, env=self.env, argv_extra=self.argv_extra, poll_window=self.answer_poll_window,
            on_notification=lambda msg, p=p: self._on_notification(p, msg),
            on_protocol_error=lambda err, p=p: self._kill(p, "unusual", err),
            on_eof=lambda p=p: self._on_eof(p),
        )
        try:
            await proc.spawn()
        except OSError as e:
            return f"opening pipe: {e.strerror or e}"
        p.process = proc
        self._processes.add(proc)
        proc.exited_callback = self._processes.discard
        self.log("debug", MANAGER_SOURCE, f"started({proc.pid}) {p.path}")
        return None

    async def _fetch_manifest(self, p: Plugin, id_prefix: str | None) -> Manifest | None:
        """Spawn `p` and get its checked manifest; None if it failed (and was dropped)."""
        err = await self._spawn(p)
        if err is not None:
            self.log("unusual", MANAGER_SOURCE, f"error starting plugin '{p.path}': {err}")
            p.kill_reason = err
            if p.important and self._startup:
                self._fatal.append(f"error starting important plugin '{p.path}': {err}")
            p.state = State.DEAD
            if p in self._plugins:
                self._plugins.remove(p)
            return None
        assert p.process is not None
        p.state = State.AWAITING_GETMANIFEST_RESPONSE
        _, fut = p.process.request("getmanifest", {"allow-deprecated-apis": self.allow_deprecated_apis},
                                   id_prefix=id_prefix)
        try:
            resp = await asyncio.wait_for(fut, self.startup_timeout)
        except asyncio.TimeoutError:
            self._kill(p, "unusual", f"timed out {STATE_DESC[p.state]}")
            return None
        if not p.alive:
            return None
        try:
            manifest = parse_manifest(resp, path=p.path, native_topics=NATIVE_TOPICS)
        except ManifestError as e:
            self._kill(p, "unusual", str(e))
            return None
        if manifest.disabled is not None:
            p.important = False  # "Don't get upset if this was a built-in!"
            self._kill(p, "info", f"disabled itself: {manifest.disabled}")
            return None
        return manifest

    def _accept_manifest(self, p: Plugin, manifest: Manifest | None) -> bool:
        if manifest is None or not p.alive:
            return False
        err = self._apply_manifest(p, manifest)
        if err is not None:
            self._kill(p, "unusual", err)
            return False
        if not self._startup and not p.dynamic:
            self._kill(p, "info", "Not a dynamic plugin")
            return False
        p.state = State.NEEDS_INIT
        return True

    async def _manifests(self, plugins: list[Plugin], id_prefix: str | None) -> None:
        """Ask all at once; accept the answers in registration order, so which of two plugins
        gets a contested method or option name does not depend on who answered first."""
        manifests = await asyncio.gather(*(self._fetch_manifest(p, id_prefix) for p in plugins))
        for p, m in sorted(zip(plugins, manifests), key=lambda pm: pm[0].index):
            self._accept_manifest(p, m)
        self._after_manifests()

    def _apply_manifest(self, p: Plugin, m: Manifest) -> str | None:
        """Register what the manifest declares; an error string kills the plugin (and what was
        registered is removed again by _destroy)."""
        p.dynamic = m.dynamic
        p.can_check = m.cancheck
        if m.featurebits:
            for place, bits in m.featurebits.items():
                if int.from_bytes(self._features.get(place, b""), "big") & bits:
                    return "Custom featurebits already present"
            for place, bits in m.featurebits.items():
                self._or_features(place, bits)
            p.featurebits = dict(m.featurebits)
        p.custom_msgs = list(m.custommessages)
        p.notification_topics = list(m.notifications)
        self.bus.add_topics(p, p.notification_topics)
        for opt in m.options:
            if opt.name in self._options or opt.name in self.builtin_options:
                if self._startup:
                    # lightningd fails hard on startup (plugin.c plugin_opt_add).
                    msg = f"error starting plugin '{p.path}': option name '{opt.name}' is already taken"
                    self._fatal.append(msg)
                    return msg
                return f'Option "{opt.name}" already registered'
            self._options[opt.name] = opt
            p.options.append(opt)
        for spec in m.methods:
            owner = self._methods.get(spec.name)
            if owner is not None or spec.name in self.builtin_methods:
                by = f" by plugin {owner.plugin.path}" if owner is not None else " by lightningd"
                return (f'Could not register method "{spec.name}", a method with that name is '
                        f"already registered{by}")
            self._methods[spec.name] = PluginMethod(spec.name, spec.usage, spec.description, spec.deprecated, p)
            p.methods.append(spec.name)
        p.subscriptions = list(m.subscriptions)
        self.bus.subscribe(p, p.subscriptions)
        try:
            self.hooks.add(self.hooks.build(p, m.hooks))
        except HookError as e:
            return str(e)
        # Options given on `plugin start` must be this plugin's (plugin_add_params).
        for name, raw in p.start_params.items():
            opt = next((o for o in p.options if o.name == name), None)
            if opt is None:
                return f"unknown parameter {name}"
            if opt.type == "flag":  # a flag is set by being named; its value is ignored
                p.start_values[name] = True
                continue
            try:
                p.start_values[name] = self.parse_option_value(opt, raw)
            except OptionValueError as e:
                return str(e)
        return None

    def _after_manifests(self) -> None:
        """check_plugins_manifests: order the hooks, then warn about unknown subscriptions."""
        failed = self.hooks.reorder(lambda p, msg: self.log("debug", p.source, msg))
        for p in failed:
            if p.state == State.NEEDS_INIT:
                self._kill(p, "unusual", "Cannot meet required hook dependencies")
        if failed:
            self.hooks.reorder()
        for p in self._plugins:
            for topic in p.subscriptions:
                if topic != "*" and not self.bus.topic_known(topic):
                    self.log("unusual", p.source, f"topic '{topic}' is not a known notification topic")

    def _typed_values(self, p: Plugin, values: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for opt in p.options:
            if opt.name not in values:
                continue
            raw = values[opt.name]
            if opt.multi:
                raws = raw if isinstance(raw, (list, tuple)) else [raw]
                out[opt.name] = [self.parse_option_value(opt, r) for r in raws]
            else:
                if isinstance(raw, (list, tuple)):  # a single-valued option: the last one wins
                    raw = raw[-1]
                out[opt.name] = self.parse_option_value(opt, raw)
        return out

    def _init_options(self, p: Plugin) -> dict[str, Any]:
        """init.options (json_add_plugin_options): set values, else defaults; unset options
        without a default are omitted; multi options are arrays (a default as one element)."""
        out: dict[str, Any] = {}
        for opt in p.options:
            if opt.name in p.option_values:
                out[opt.name] = p.option_values[opt.name]
            elif opt.default is not None:
                out[opt.name] = [opt.default] if opt.multi else opt.default
        return out

    def configuration(self, startup: bool) -> dict[str, Any]:
        return {
            "lightning-dir": self.netdir,
            "rpc-file": self.rpc_file,
            "startup": startup,
            "network": self.network,
            "feature_set": self.features(),
        }

    async def _init_phase(self, p: Plugin, startup: bool, id_prefix: str | None = None) -> bool:
        if not p.alive or p.process is None:
            return False
        p.state = State.AWAITING_INIT_RESPONSE
        params = {"options": self._init_options(p), "configuration": self.configuration(startup)}
        _, fut = p.process.request("init", params, id_prefix=id_prefix)
        try:
            resp = await asyncio.wait_for(fut, self.startup_timeout)
        except asyncio.TimeoutError:
            self._kill(p, "unusual", f"timed out {STATE_DESC[p.state]}")
            return False
        if not p.alive:
            return False
        # Any response counts, even an error; only `result.disable` is looked at (plugin_config_cb).
        result = resp.get("result")
        if isinstance(result, dict) and "disable" in result:
            p.important = False
            d = result["disable"]
            self._kill(p, "debug", f"disabled itself at init: {d if isinstance(d, str) else json.dumps(d)}")
            return False
        p.state = State.INIT_COMPLETE
        self.plugin_ready(p, startup)
        self.notify("plugin_started", self._plugin_payload(p))
        return True

    def plugin_ready(self, p: Plugin, startup: bool) -> None:
        """Called when a plugin completed init (for a subclass: e.g. add a dynamic plugin's options)."""

    def plugin_gone(self, p: Plugin) -> None:
        """Called when a plugin's registrations were removed (for a subclass)."""

    # ------------------------------------------------------------------ death

    def _on_eof(self, p: Plugin) -> None:
        level = "debug" if self._shutting_down else "info"
        self._kill(p, level, f"exited {STATE_DESC[p.state]}")

    def _kill(self, p: Plugin, level: str, reason: str) -> None:
        """plugin_kill: log, SIGKILL, then tear down everything the plugin registered."""
        if not p.alive:
            return
        self.log(level, p.source, f"Killing plugin: {reason}")
        p.kill_reason = reason
        if p.process is not None:
            p.process.kill()
        self._destroy(p)

    def _destroy(self, p: Plugin) -> None:
        """destroy_plugin: pending callers get -4, registrations go, plugin_stopped is sent."""
        p.state = State.DEAD
        if p in self._plugins:
            self._plugins.remove(p)
        if p.process is not None:
            # lightningd drops them silently at shutdown; answering -4 lets every awaiting task end.
            p.process.fail_pending()
        for name in p.methods:
            m = self._methods.get(name)
            if m is not None and m.plugin is p:
                del self._methods[name]
        for opt in p.options:
            if self._options.get(opt.name) is opt:
                del self._options[opt.name]
        self.bus.remove_plugin(p)
        self.hooks.remove_plugin(p)
        for place, bits in p.featurebits.items():
            cur = int.from_bytes(self._features.get(place, b""), "big")
            self._set_features(place, cur & ~bits)
        self.plugin_gone(p)
        if self._shutting_down:
            return
        if p.important:
            self.log("broken", p.source, "Plugin marked as important, shutting down lightningd!")
            msg = f"Plugin {p.path} marked as important died: {p.kill_reason}"
            if self._startup:
                self._fatal.append(msg)
            elif self.on_fatal is not None:
                self.on_fatal(msg)
        self.notify("plugin_stopped", self._plugin_payload(p))

    @staticmethod
    def _plugin_payload(p: Plugin) -> dict:
        return {"plugin_name": p.shortname, "plugin_path": p.path, "methods": list(p.methods)}

    # ------------------------------------------------------------------ messages from plugins

    def _on_notification(self, p: Plugin, msg: dict) -> None:
        method = msg.get("method")
        if not isinstance(method, str) or "params" not in msg:
            self._kill(p, "unusual", 'Malformed JSON-RPC notification missing "method" or "params": '
                                     f"{json.dumps(msg)}")
            return
        params = msg["params"]
        if method == "log":
            err = self._plugin_log(p, params)
            if err:
                self._kill(p, "unusual", err)
        elif method in ("message", "progress"):
            if not isinstance(params, dict) or "id" not in params:
                self._kill(p, "unusual", 'JSON-RPC notify "id"-field is not present')
                return
            assert p.process is not None
            rid = params["id"]
            pending = p.process.pending.get(rid if isinstance(rid, str) else json.dumps(rid))
            if pending is not None and pending.notify_cb is not None:
                pending.notify_cb(msg)
        elif method not in p.notification_topics:
            self.log("unusual", p.source, f'Plugin attempted to send a notification to topic "{method}" '
                                          "it hasn't declared in its manifest, not forwarding to subscribers.")
        else:
            self.bus.publish(method, custom_message(method, p.shortname, params))

    def _plugin_log(self, p: Plugin, params: Any) -> str | None:
        """plugin_log_handle: `{"level": L?, "message": M}` -> log lines from `plugin-<name>`."""
        message = params.get("message") if isinstance(params, dict) else None
        if not isinstance(message, str):
            return 'Log notification from plugin doesn\'t have a string "message" field'
        level = "info"
        if "level" in params:
            raw = params["level"]
            level = _LOG_LEVELS.get(raw.lower(), "") if isinstance(raw, str) else ""
            if not level:
                return ('Unknown log-level ' + json.dumps(raw) + ', valid values are "trace", "debug", '
                        '"info", "warn", or "error".')
        for line in message.split("\n"):
            self.log(level, p.source, line)
        return None

    # ------------------------------------------------------------------ queries

    def plugins(self) -> list[Plugin]:
        return list(self._plugins)

    def find_plugin(self, name_or_path: str) -> Plugin | None:
        for p in self._plugins:
            if plugin_paths_match(p.path, name_or_path):
                return p
        return None

    def declared_options(self) -> list[PluginOption]:
        return list(self._options.values())

    def find_option(self, name: str) -> PluginOption | None:
        return self._options.get(name)

    def option_values(self) -> dict[str, tuple[Any, str]]:
        """Current plugin option values: name -> (typed value, source), source "pluginstart"
        for values given on `plugin start`, "setconfig" after a change, else "config"."""
        out: dict[str, tuple[Any, str]] = {}
        for p in self._plugins:
            for name, value in p.option_values.items():
                src = "pluginstart" if name in p.start_values else "config"
                out[name] = (value, src)
        return out

    def parse_option_value(self, option: PluginOption, raw: Any) -> Any:
        """Raises OptionValueError (a ValueError) with lightningd's message."""
        return _parse_option_value(option, raw, allow_deprecated_apis=self.allow_deprecated_apis)

    def find_method(self, name: str) -> PluginMethod | None:
        return self._methods.get(name)

    def methods(self) -> list[tuple[str, str, str, bool]]:
        return [(m.name, m.usage, m.description, m.deprecated) for m in self._methods.values()]

    def features(self) -> dict[str, str]:
        """Our feature bits with the plugins' added, hex per place (for init and getinfo)."""
        # Computed once per change (getinfo asks on every call; the hex of each place cost ~10 us a call).
        cached = self._features_hex
        if cached is None:
            cached = self._features_hex = {place: self._features.get(place, b"").hex() for place in FEATURE_PLACES}
        return dict(cached)

    def _set_features(self, place: str, bits: int) -> None:
        old = self._features.get(place, b"")
        length = max(len(old), (bits.bit_length() + 7) // 8)
        self._features[place] = bits.to_bytes(length, "big")
        self._features_hex = None

    def _or_features(self, place: str, bits: int) -> None:
        self._set_features(place, int.from_bytes(self._features.get(place, b""), "big") | bits)

    def custom_messages(self) -> list[int]:
        return sorted({t for p in self._plugins for t in p.custom_msgs})

    def list(self) -> list[dict]:
        """`plugin list`'s entries: {name, active, dynamic}, the built-in ones first, then in registration order."""
        return ([{"name": path, "active": True, "dynamic": False} for path in self.enabled_builtins()]
                + [{"name": p.path, "active": p.ready, "dynamic": p.dynamic} for p in self._plugins])

    def enabled_builtins(self) -> list[str]:
        return [path for path in self.builtin_plugins if not self.is_disabled(os.path.basename(path))]

    def has_hook(self, name: str, filter_value: Any = None) -> bool:
        return self.hooks.has(name, filter_value)

    # ------------------------------------------------------------------ calls into plugins

    async def call_method(
        self,
        name: str,
        request: dict,
        caller_id: Any,
        on_notification: Callable[[dict], None] | None = None,
        *,
        deprecated_ok: bool | None = None,
    ) -> dict:
        """Forward a caller's request to the plugin providing `name` (plugin_rpcmethod_dispatch).

        The request goes verbatim with its id replaced by `<caller_id>/cln:<name>#<n>`; the answer
        comes back verbatim with the caller's id restored.  `message`/`progress` notifications for
        the request reach `on_notification` with the caller's id.  If the plugin dies first the
        answer is `{"error":{"code":-4,"message":"Plugin terminated before replying to RPC call."}}`.
        """
        resp = await self.start_method(name, request, caller_id, on_notification, deprecated_ok=deprecated_ok)
        return to_caller(resp, caller_id)

    def start_method(
        self,
        name: str,
        request: dict,
        caller_id: Any,
        on_notification: Callable[[dict], None] | None = None,
        *,
        deprecated_ok: bool | None = None,
        callback: Callable[[dict], None] | None = None,
    ) -> asyncio.Future | None:
        """call_method without the coroutine: the request is written to the plugin now; the future gets the
        plugin's answer as it came (pass it to `to_caller`).  For callers that answer from a callback.
        With `callback`, no future at all: `callback(answer)` is called once (never from within this call),
        from the reader as the answer arrives, and None is returned."""
        m = self._methods.get(name)
        if m is None:
            answer = {"jsonrpc": "2.0", "id": caller_id,
                      "error": {"code": JSONRPC2_METHOD_NOT_FOUND, "message": f"Unknown command '{name}'"}}
            if callback is not None:
                asyncio.get_running_loop().call_soon(callback, answer)
                return None
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(answer)
            return fut
        p = m.plugin
        assert p.process is not None
        if (deprecated_ok is not None and deprecated_ok != self.allow_deprecated_apis
                and p.ready and self.bus.subscribed(p, "deprecated_oneshot")):
            p.send_raw(encode(native_message("deprecated_oneshot", {"deprecated_ok": deprecated_ok})))
        return self._start_forward(p, name, request, caller_id, on_notification, callback)

    async def _forward(self, p: Plugin, method: str, request: dict, caller_id: Any,
                       on_notification: Callable[[dict], None] | None) -> dict:
        return to_caller(await self._start_forward(p, method, request, caller_id, on_notification), caller_id)

    def _start_forward(self, p: Plugin, method: str, request: dict, caller_id: Any,
                       on_notification: Callable[[dict], None] | None,
                       callback: Callable[[dict], None] | None = None) -> Any:
        assert p.process is not None
        req_id = new_request_id(method, id_prefix_of(caller_id))
        msg = dict(request)
        msg["id"] = req_id
        relay = None
        if on_notification is not None:
            def relay(n: dict) -> None:  # plugin_notify_cb: the caller sees its own id
                params = dict(n.get("params") or {})
                params["id"] = caller_id
                on_notification({"jsonrpc": "2.0", "method": n["method"], "params": params})
        if callback is not None:
            p.process.send_request_cb(msg, req_id, callback, relay)
            return None
        return p.process.send_request(msg, req_id, relay)

    async def check(self, request: dict, caller_id: Any,
                    on_notification: Callable[[dict], None] | None = None) -> dict:
        """`check` of a plugin command (plugin_rpcmethod_check): forwarded whole to a plugin with
        `cancheck`, otherwise logged UNUSUAL and answered `{"command_to_check": cmd}` unasked."""
        params = request.get("params")
        if isinstance(params, dict):
            cmd = params.get("command_to_check")
        elif isinstance(params, list) and params:
            cmd = params[0]
        else:
            cmd = None
        m = self._methods.get(cmd) if isinstance(cmd, str) else None
        if m is None:
            return {"jsonrpc": "2.0", "id": caller_id,
                    "error": {"code": JSONRPC2_METHOD_NOT_FOUND, "message": f"Unknown command '{cmd}'"}}
        p = m.plugin
        if not p.can_check:
            self.log("unusual", p.source,
                     f"Plugin does not support check command for {cmd} (id {id_prefix_of(caller_id)})")
            return {"jsonrpc": "2.0", "id": caller_id, "result": {"command_to_check": cmd}}
        return await self._forward(p, "check", request, caller_id, on_notification)

    async def setconfig(self, option_name: str, val: Any = None, *, caller_id: Any = None,
                        check_only: bool = False) -> Any:
        """Change a dynamic plugin option (plugin_set_dynamic_opt).  Returns the typed value.

        `val`: a string (None for a flag), or a list of strings for a multi option.  The plugin is
        sent `setconfig {"config", "val"}` with `val` always a string (array for multi, omitted for
        flags).  Raises PluginRpcError with the plugin's code and message if it refuses.
        """
        opt = self._options.get(option_name)
        if opt is None:
            raise PluginRpcError(JSONRPC2_INVALID_PARAMS, f"Unknown config option {option_name}")
        if not opt.dynamic:
            raise PluginRpcError(JSONRPC2_INVALID_PARAMS, f"{option_name}: Not a dynamic config option")
        p = next((q for q in self._plugins if opt in q.options), None)
        if p is None or p.process is None:
            raise PluginRpcError(LIGHTNINGD, f"Missing opt {option_name} on plugin return?")
        try:
            if opt.multi:
                raws = [] if val is None else (list(val) if isinstance(val, (list, tuple)) else [val])
                typed: Any = [self.parse_option_value(opt, r) for r in raws]
                wire_val: Any = [r if isinstance(r, str) else json.dumps(r) for r in raws]
            else:
                typed = self.parse_option_value(opt, val)
                wire_val = None if opt.type == "flag" or val is None else (
                    val if isinstance(val, str) else json.dumps(val))
        except OptionValueError as e:
            raise PluginRpcError(JSONRPC2_INVALID_PARAMS, str(e)) from None
        params: dict[str, Any] = {}
        method = "setconfig"
        if check_only:
            if not p.can_check:
                return typed
            method = "check"
            params["command_to_check"] = "setconfig"
        params["config"] = option_name
        if opt.multi or wire_val is not None:
            params["val"] = wire_val
        prefix = id_prefix_of(caller_id) if caller_id is not None else None
        _, fut = p.process.request(method, params, id_prefix=prefix)
        resp = await fut
        err = resp.get("error")
        if err is not None:
            if isinstance(err, dict) and isinstance(err.get("code"), int) and "message" in err:
                msg = err["message"]
                raise PluginRpcError(err["code"], msg if isinstance(msg, str) else json.dumps(msg))
        elif "result" in resp:
            if not check_only:
                p.option_values[option_name] = typed
                p.start_values.pop(option_name, None)
            return typed
        self.log("broken", NODE_SOURCE, f"Invalid setconfig {option_name} response from plugin: {json.dumps(resp)}")
        raise PluginRpcError(LIGHTNINGD, f"Malformed setvalue {option_name} plugin return")

    # ------------------------------------------------------------------ hooks

    def _hook_send_cb(self, p: Plugin, method: str, params: dict, id_prefix: str | None,
                      callback: Callable[[dict], None]) -> str:
        """Send a hook request to `p` (run_chain, start_chain): `callback(answer)` once it comes; the request's id."""
        assert p.process is not None
        req_id = new_request_id(method, id_prefix)
        message = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
        if self.save_io_dir is not None:
            self._save_io("hook_out", method, message)
            inner = callback

            def callback(resp: dict, m: str = method) -> None:
                self._save_io("hook_in", m, resp)
                inner(resp)
        p.process.send_request_cb(message, req_id, callback)
        return req_id

    def _save_io(self, kind: str, name: str, message: Any) -> None:
        """--dev-save-plugin-io: one file per hook request/answer and notification, named as lightningd
        names them (`hook_out-<hook>-...`, `hook_in-<hook>-...`, `notification_out-<topic>-...`), for
        pyln-testing to check against CLN's schemas."""
        self._io_count += 1
        path = os.path.join(self.save_io_dir, f"{kind}-{name}-{os.getpid()}-{self._io_count}")
        try:
            with open(path, "w") as f:
                json.dump(message, f)
        except (OSError, TypeError, ValueError) as e:
            self.log("unusual", MANAGER_SOURCE, f"--dev-save-plugin-io: cannot write {path}: {e}")

    def _hook_drop(self, p: Plugin, req_id: str) -> None:
        if p.process is not None:
            p.process.drop(req_id)

    def _hook_log(self, p: Plugin | None, level: str, message: str) -> None:
        self.log(level, p.source if p is not None else NODE_SOURCE, message)

    async def call_hook(self, name: str, payload: dict | None = None, *, session: HookSession | None = None,
                        filter_value: Any = None, id_prefix: str | None = None) -> Any:
        """Run the `name` chain for one event.  Without `session`, the payload goes to each plugin
        and the first answer other than `{"result":"continue"}` stops the chain and is returned
        (`{"result":"continue"}` if every plugin continued or none is registered)."""
        if session is None:
            session = ContinueSession(payload or {})
        regs = self.hooks.chain(name, filter_value)
        if not regs:
            return session.outcome()
        return await run_chain(name, regs, session, send=self._hook_send_cb, drop=self._hook_drop,
                               log=self._hook_log, id_prefix=id_prefix, timeout=self.hook_timeouts.get(name))

    async def rpc_command_hook(self, request: dict, *,
                               method_exists: Callable[[str], bool] | None = None) -> tuple[str, dict]:
        """The `rpc_command` hook for one JSON-RPC request (cln-interfaces.md 2.2 rpc_command).

        Returns ("continue", request_to_execute) — the original, or a plugin's `replace` request
        (run it as-is, without calling the hook again, answering with the caller's original id) —
        or ("return", {"result": X} | {"error": {...}}) to send back to the caller.
        `method_exists` lets a `replace` to an unknown method be refused with -32600 as lightningd does.
        """
        method = request.get("method")
        if not self.hooks.has("rpc_command", method):
            return "continue", request
        session = RpcCommandSession(request, lambda level, msg: self.log(level, NODE_SOURCE, msg), method_exists)
        return await self.call_hook("rpc_command", session=session, filter_value=method,
                                    id_prefix=id_prefix_of(request.get("id")))

    def start_rpc_command_hook(self, request: dict, done: Callable[[tuple[str, dict]], None], *,
                               method_exists: Callable[[str], bool] | None = None) -> None:
        """rpc_command_hook driven by callbacks (no task, no coroutine chain): `done(outcome)` is called
        once, with what rpc_command_hook would return, never from within this call."""
        method = request.get("method")
        regs = self.hooks.chain("rpc_command", method)
        session = RpcCommandSession(request, lambda level, msg: self.log(level, NODE_SOURCE, msg), method_exists)
        start_chain("rpc_command", regs, session, done, send=self._hook_send_cb, drop=self._hook_drop,
                    log=self._hook_log, id_prefix=id_prefix_of(request.get("id")),
                    timeout=self.hook_timeouts.get("rpc_command"))

    # ------------------------------------------------------------------ notifications

    def notify(self, topic: str, payload: dict) -> None:
        """Emit a native notification to INIT_COMPLETE subscribers, wrapped as `{topic: payload}`.
        Never blocks: the bytes are queued on each plugin's stdin."""
        sent = self.bus.notify(topic, payload)
        if self.save_io_dir is not None and sent and topic != "log":
            self._save_io("notification_out", topic, native_message(topic, payload))

    # ------------------------------------------------------------------ dynamic plugins

    async def start_dynamic(self, path: str, options: dict[str, Any] | None = None, *,
                            caller_id: Any = None) -> list[dict]:
        """`plugin start`: returns `list()` once the plugin's init completed.

        Raises PluginRpcError: -32602 "<path>: already registered" / "<path>: <strerror>",
        -3 "<path>: <reason>" if it could not start or was killed during the handshake.
        """
        try:
            p = self.register(path)
        except PluginRegisterError:
            raise PluginRpcError(JSONRPC2_INVALID_PARAMS, f"{path}: No such file or directory") from None
        if p is None:
            raise PluginRpcError(JSONRPC2_INVALID_PARAMS, f"{path}: already registered")
        p.start_params = dict(options or {})
        prefix = id_prefix_of(caller_id) if caller_id is not None else None
        await self._start_dynamic_all([p], prefix)
        if not p.ready:
            where = path if p.process is None else p.path
            raise PluginRpcError(PLUGIN_ERROR, f"{where}: {p.kill_reason or 'failed to start'}")
        return self.list()

    async def _start_dynamic_all(self, plugins: list[Plugin], id_prefix: str | None) -> None:
        await self._manifests(plugins, id_prefix)
        todo = [p for p in plugins if p.state == State.NEEDS_INIT]
        for p in todo:
            p.option_values = dict(p.start_values)
        await asyncio.gather(*(self._init_phase(p, False, id_prefix) for p in todo))

    async def startdir(self, directory: str, *, caller_id: Any = None) -> list[dict]:
        """`plugin startdir`: register the directory's plugins, start the new ones, wait for all."""
        try:
            self.register_dir(directory)
        except PluginRegisterError as e:
            raise PluginRpcError(JSONRPC2_INVALID_PARAMS, str(e)) from None
        new = [p for p in self._plugins if p.state == State.UNCONFIGURED]
        await self._start_dynamic_all(new, id_prefix_of(caller_id) if caller_id is not None else None)
        return self.list()

    async def rescan(self, *, caller_id: Any = None) -> list[dict]:
        """`plugin rescan`: start plugins newly found in the default plugin directory."""
        self.register_default_dir()
        new = [p for p in self._plugins if p.state == State.UNCONFIGURED]
        await self._start_dynamic_all(new, id_prefix_of(caller_id) if caller_id is not None else None)
        return self.list()

    async def stop_plugin(self, name: str) -> dict:
        """`plugin stop` (plugin_dynamic_stop): `shutdown` to a subscriber and up to the shutdown
        timeout to exit, otherwise SIGKILL at once."""
        p = self.find_plugin(name)
        if p is None and any(plugin_paths_match(path, name) for path in self.enabled_builtins()):
            raise PluginRpcError(JSONRPC2_INVALID_PARAMS, f"{name} cannot be managed when lightningd is up")
        if p is None:
            raise PluginRpcError(JSONRPC2_INVALID_PARAMS, f"Could not find plugin {name}")
        if not p.dynamic:
            raise PluginRpcError(JSONRPC2_INVALID_PARAMS, f"{name} cannot be managed when lightningd is up")
        p.important = False  # "Don't freak out, even if it's a built-in"
        result = {"command": "stop", "result": f"Successfully stopped {p.shortname}."}
        if p.ready and p.process is not None and self.bus.subscribed(p, "shutdown"):
            p.send_raw(encode(native_message("shutdown", {})))
            if await p.process.wait_exited(self.shutdown_timeout):
                if p.alive:  # exited but EOF not yet seen
                    self._kill(p, "info", "stopped by lightningd via RPC")
                return result
            self.log("unusual", p.source, "Timeout on shutdown: killing anyway")
        self._kill(p, "info", "stopped by lightningd via RPC")
        if p.process is not None:
            await p.process.wait_exited(5.0)
        return result

    # ------------------------------------------------------------------ shutdown

    async def shutdown(self, grace: float | None = None) -> None:
        """shutdown_plugins: pending requests dropped; `shutdown` subscribers get the notification
        and `grace` seconds (default: shutdown_timeout, 30 s) to exit; everyone else is killed."""
        grace = self.shutdown_timeout if grace is None else grace
        self._shutting_down = True
        waiting: list[Plugin] = []
        for p in list(self._plugins):
            if p.process is not None:
                p.process.fail_pending()
            if p.ready and p.process is not None and self.bus.subscribed(p, "shutdown"):
                p.send_raw(encode(native_message("shutdown", {})))
                waiting.append(p)
            else:
                self._kill(p, "debug", "lightningd shutting down")
        if waiting:
            await asyncio.wait([asyncio.ensure_future(p.process.exited.wait()) for p in waiting if p.process],
                               timeout=grace)
        for p in waiting:
            if p.process is not None and not p.process.exited.is_set():
                self.log("debug", NODE_SOURCE, f"{p.shortname}: failed to self-terminate in time, killing.")
            if p.alive:
                self._kill(p, "debug", "lightningd shutting down")
        # Reap every child we started.
        procs = list(self._processes)
        for proc in procs:
            proc.kill()
        if procs:
            await asyncio.gather(*(proc.wait_exited(5.0) for proc in procs))
