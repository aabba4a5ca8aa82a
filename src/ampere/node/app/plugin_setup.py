"""Where the node meets the plugin host: start-up (manifests, then plugin options), init, --help.

Kept apart from daemon.py so that the order lightningd uses (getmanifest before the options are
checked; init after the RPC socket listens) reads in one place.

Plugin options (cln-interfaces.md 1.11), applied in the order they were given:
  plugin=PATH, important-plugin=PATH, plugin-dir=DIR, disable-plugin=NAME, clear-plugins;
  then the default directory `<lightning-dir>/plugins` (plus one level of subdirectories).
`plugin-timeout=SECONDS` bounds getmanifest and then init (default 120, as lightningd's
PLUGIN_STARTUP_TIMEOUT); `hook-timeout=HOOK:SECONDS[:ANSWER]` (see ampere.plugins.hooks).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ampere import VERSION_STRING
from ampere.config import ConfigError, Entry, Layout, OptionSpec, Options
from ampere.log import Logger, iso_timestamp
from ampere.plugins.host import PluginFatal, PluginHost, PluginRegisterError, PluginRpcError
from ampere.plugins.manifest import OptionValueError
from ampere.node.onchain.chain_backend import BCLI_PATH
from ampere.rpc.errors import RpcError
from ampere.node.app import features as node_features
class NodePluginHost(PluginHost):
    """The host as the node calls it: RPC-layer errors and the node's command table."""

    def __init__(self, *args: Any, method_exists=None, node_options: Options | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._method_exists = method_exists
        self._node_options = node_options

    def plugin_ready(self, p, startup: bool) -> None:
        """A plugin started with `plugin start` brings its options into listconfigs/setconfig, with
        the values given on the command as source "pluginstart"."""
        opts = self._node_options
        if opts is None or startup:
            return
        _add_specs(self, opts, p.options)
        for name, value in p.start_values.items():
            opts.values[name] = value
            opts.sources[name] = ["pluginstart"] * (len(value) if isinstance(value, list) else 1)

    def plugin_gone(self, p) -> None:
        if self._node_options is not None:
            self._node_options.remove_plugin(p.path)

    async def rpc_command_hook(self, request: dict, *, method_exists=None):  # type: ignore[override]
        return await super().rpc_command_hook(request, method_exists=method_exists or self._method_exists)

    def start_rpc_command_hook(self, request: dict, done, *, method_exists=None) -> None:  # type: ignore[override]
        super().start_rpc_command_hook(request, done, method_exists=method_exists or self._method_exists)

    async def setconfig(self, plugin_path: str, name: str, val: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """daemon's `setconfig` calls (plugin_path, name, val); refusals become RpcError."""
        try:
            return await super().setconfig(name, val, **kwargs)
        except PluginRpcError as e:
            raise RpcError(e.code, e.message) from None

    async def check_method(self, name: str, request: dict) -> dict:
        return await self.check(request, request.get("id"))


def _plugin_cwd(layout: Layout) -> str:
    for d in (layout.netdir, layout.lightning_dir):
        if os.path.isdir(d):
            return d
    return os.getcwd()


def make_host(layout: Layout, options: Options, log_fn, *, netdir: str, feature_set: dict[str, str],
              on_fatal=None, method_exists=None, node_options: Options | None = None) -> NodePluginHost:
    from ampere.rpc.registry import COMMANDS

    hook_timeouts = []
    for spec in options.get("hook-timeout") or []:
        hook_timeouts.append(spec)
    try:
        host = NodePluginHost(
            log_fn, netdir=netdir, rpc_file=options.get("rpc-file"), network=layout.network,
            lightning_dir=layout.lightning_dir, allow_deprecated_apis=bool(options.get("allow-deprecated-apis")),
            feature_set=feature_set, version=VERSION_STRING, startup_timeout=float(options.get("plugin-timeout")),
            hook_timeouts=hook_timeouts, on_fatal=on_fatal, builtin_methods=_builtin_methods(layout, COMMANDS),
            builtin_options=set(options.specs), developer=bool(options.get("developer")),
            method_exists=method_exists, node_options=node_options)
    except ValueError as e:
        bad = next((s for s in hook_timeouts if _bad_hook_timeout(s)), "")
        raise ConfigError(f"--hook-timeout={bad}: {e}") from None
    host.builtin_plugins = [BCLI_PATH]
    host.answer_poll_window = options.get("plugin-answer-poll-us") / 1e6
    save_io = options.get("dev-save-plugin-io")
    if save_io:
        os.makedirs(save_io, exist_ok=True)
        host.save_io_dir = os.path.abspath(save_io)
    return host


def _builtin_methods(layout: Layout, commands) -> set[str]:
    """Our command names, which plugins may not take; but with --disable-plugin bcli the Bitcoin
    backend's five methods are free for the plugin that replaces it."""
    from ampere.plugins.hooks import plugin_paths_match
    from ampere.node.onchain.chain_backend import BACKEND_METHODS, BCLI

    names = set(commands)
    if any(e.name == "disable-plugin" and e.value and plugin_paths_match(BCLI, e.value) for e in layout.entries):
        names -= set(BACKEND_METHODS)
    return names


def _bad_hook_timeout(spec: str) -> bool:
    from ampere.plugins.hooks import parse_hook_timeout

    try:
        parse_hook_timeout(spec)
        return False
    except ValueError:
        return True


def register_plugins(host: PluginHost, entries: list[Entry]) -> None:
    """Apply the plugin options in the order given, then the default plugin directory."""
    try:
        for e in entries:
            if e.name == "plugin":
                host.register(e.value or "")
            elif e.name == "important-plugin":
                host.register(e.value or "", important=True)
            elif e.name == "plugin-dir":
                host.register_dir(e.value or "")
            elif e.name == "disable-plugin":
                host.disable(e.value or "")
            elif e.name == "clear-plugins":
                host.clear()
        host.register_default_dir()
    except PluginRegisterError as e:
        raise ConfigError(str(e)) from None


def _add_specs(host: PluginHost, options: Options, plugin_options) -> None:
    for opt in plugin_options:
        if opt.name in options.specs:
            continue
        options.add(OptionSpec(opt.name, opt.type, opt.description, opt.default, multi=opt.multi,
                               dynamic=opt.dynamic, plugin=opt.plugin, deprecated=opt.deprecated))


def add_plugin_options(host: PluginHost, options: Options, deferred: list[Entry]) -> None:
    """Plugin options join the option table; the entries held back until now are checked."""
    _add_specs(host, options, host.declared_options())
    for e in deferred:
        popt = host.find_option(e.name)
        if popt is not None:
            try:
                host.parse_option_value(popt, e.value)
            except OptionValueError as err:
                where = "" if e.source == "cmdline" else f"{e.source}: "
                raise ConfigError(f"{where}{err}") from None
    options.apply(deferred)


def _log_listener(node):
    """`log` notifications for every line, `warning` for unusual/broken ones (cln-interfaces.md 3)."""
    def listener(level: str, source: str, message: str, ts: float) -> None:
        host = node.plugins
        if host is None:
            return
        bus = host.bus
        want_log = bus.anyone_cares("log")
        want_warning = level in ("unusual", "broken") and bus.anyone_cares("warning")
        if not (want_log or want_warning):
            return
        when = {"time": f"{int(ts)}.{int((ts % 1) * 1e9):09d}", "timestamp": iso_timestamp(ts),
                "source": source, "log": message}
        if want_log:
            host.notify("log", {"level": level, **when})
        if want_warning:
            host.notify("warning", {"level": "error" if level == "broken" else "warn", **when})
    return listener


async def setup_plugins(node, deferred: list[Entry]) -> None:
    """Start plugins, collect their manifests and options, then check the deferred option entries."""
    host = make_host(node.layout, node.options, node.log.log, netdir=node.netdir,
                     feature_set=node.feature_set(), on_fatal=lambda msg: node.request_stop(1),
                     method_exists=lambda m: node.lookup(m) is not None, node_options=node.options)
    # From now on node.feature_set() is the host's: plugins' extra feature bits show in getinfo and init
    # (featurebits in the manifest).
    node.plugins = host
    node.log.add_listener(_log_listener(node), min_level="debug")
    register_plugins(host, node.layout.entries)
    try:
        await host.load_manifests()
    except PluginFatal as e:
        raise RuntimeError(f"{e}; Could not initialize the plugins, see above for details.") from None
    add_plugin_options(host, node.options, deferred)


def _plugin_option_values(node) -> dict:
    return {opt.name: node.options.values[opt.name] for opt in node.plugins.declared_options()
            if opt.name in node.options.values}


async def init_early(node, plugins) -> None:
    """`init` for the Bitcoin backend plugins before the chain starts (lightningd's config_plugin)."""
    try:
        await node.plugins.init_some(plugins, _plugin_option_values(node))
    except OptionValueError as e:
        raise ConfigError(str(e)) from None
    except PluginFatal as e:
        raise RuntimeError(f"{e}; Could not initialize the plugins, see above for details.") from None


async def init_plugins(node) -> None:
    host = node.plugins
    if host is None:
        return
    values = _plugin_option_values(node)
    try:
        await host.init_all(values)
    except OptionValueError as e:
        raise ConfigError(str(e)) from None
    except PluginFatal as e:
        raise RuntimeError(f"{e}; Could not initialize the plugins, see above for details.") from None


async def print_help(layout: Layout, options: Options, deferred: list[Entry]) -> int:
    """`ampd --help`: the plugins answer getmanifest so their options are listed too."""
    quiet = Logger()
    host = make_host(layout, options, lambda level, source, msg: quiet.log(level, source, msg),
                     netdir=_plugin_cwd(layout), feature_set=node_features.our_feature_set())
    code = 0
    try:
        register_plugins(host, layout.entries)
        await host.load_manifests()
        _add_specs(host, options, host.declared_options())
        print("Usage: ampd [options]\n")
        print(options.help_text())
    except (ConfigError, PluginFatal) as e:
        print(f"ampd: {e}", file=sys.stderr)
        code = 1
    finally:
        await host.shutdown(grace=1.0)
    return code


__all__ = ["NodePluginHost", "setup_plugins", "init_plugins", "print_help"]
