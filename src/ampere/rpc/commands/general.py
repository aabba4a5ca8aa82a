"""Node-level commands: getinfo, help, stop, check, listconfigs, setconfig, notifications."""

from __future__ import annotations

import asyncio
from typing import Any

from ... import VERSION_STRING
from ...config import ConfigError, listconfigs_entry, parse_typed, persist_setconfig
from ..errors import INVALID_PARAMS, METHOD_NOT_FOUND, RpcError, invalid_params
from ..params import opt, p_any, p_bool, p_string, parse_params, req
from ..registry import COMMANDS, Command, command


@command("getinfo", description="Show information about this node.", eager=True)
async def getinfo(ctx) -> dict:
    node = ctx.node
    peers = node.peer_manager
    channels = node.channel_manager
    info: dict[str, Any] = {
        "id": node.node_id.hex(),
        "alias": node.alias,
        "color": node.color,
        "num_peers": peers.num_peers() if peers else 0,
        "num_pending_channels": channels.num_pending() if channels else 0,
        "num_active_channels": channels.num_active() if channels else 0,
        "num_inactive_channels": channels.num_inactive() if channels else 0,
        "address": peers.announced_addresses() if peers else [],
        "binding": peers.bindings() if peers else [],
        "version": VERSION_STRING,
        "blockheight": node.blockheight,
        "network": node.network,
        "fees_collected_msat": channels.fees_collected_msat() if channels else 0,
        "lightning-dir": node.netdir,
        "our_features": {k: v for k, v in node.feature_set().items() if k in ("init", "node", "channel", "invoice")},
    }
    info.update(node.warnings)
    return info


def _help_entry(name: str, usage: str, deprecated: bool = False) -> dict:
    text = f"{name} {usage}" if usage else name
    if deprecated:
        text += " (DEPRECATED!)"
    return {"command": text}


@command("help", [opt("command", p_string)], description="List available commands, or give verbose help on one.")
async def help_cmd(ctx, command: str | None) -> dict:
    entries: dict[str, dict] = {}
    for name, cmd in COMMANDS.items():
        entries[name] = _help_entry(name, cmd.usage_string())
    if ctx.node.plugins is not None:
        for name, usage, _desc, deprecated in ctx.node.plugins.methods():
            entries[name] = _help_entry(name, usage, deprecated)
    if command is not None:
        if command not in entries:
            raise RpcError(METHOD_NOT_FOUND, f"Unknown command '{command}'")
        return {"help": [entries[command]], "format-hint": "simple"}
    return {"help": [entries[n] for n in sorted(entries)], "format-hint": "simple"}


@command("stop", description="Shut down the node.")
async def stop(ctx) -> dict:
    # Answer first, then stop: the caller gets its reply before the socket goes away.
    asyncio.get_running_loop().call_later(0.05, ctx.node.request_stop)
    return {"result": "Shutdown complete"}


@command("check", raw=True, usage="command_to_check", description="Check a command's parameters without running it.")
async def check(ctx, params: Any) -> dict:
    if isinstance(params, list):
        if not params:
            raise invalid_params("missing required parameter: command_to_check")
        name, rest = params[0], params[1:]
    elif isinstance(params, dict):
        if "command_to_check" not in params:
            raise invalid_params("missing required parameter: command_to_check")
        rest = {k: v for k, v in params.items() if k != "command_to_check"}
        name = params["command_to_check"]
    else:
        raise invalid_params("Expected array or object for params")
    if not isinstance(name, str):
        raise invalid_params("command_to_check: should be a string")
    target = COMMANDS.get(name)
    if target is None:
        node = ctx.node
        plugin_method = node.plugins.find_method(name) if node.plugins is not None else None
        if plugin_method is None:
            raise RpcError(METHOD_NOT_FOUND, f"Unknown command '{name}'")
        resp = await node.plugins.check_method(name, ctx.request)
        if "error" in resp:
            e = resp["error"]
            raise RpcError(e.get("code", -1), e.get("message", ""), e.get("data"))
        return {"command_to_check": name}
    if target.raw:
        hook = getattr(target.handler, "check", None)
        if hook is not None:
            await hook(ctx, rest)
    else:
        parsed = parse_params(rest, target.params, target.allow_extra)
        hook = getattr(target.handler, "check", None)
        if hook is not None:
            await hook(ctx, **parsed)
    return {"command_to_check": name}


@command("listconfigs", [opt("config", p_string)], description="List all configuration options, or one.")
async def listconfigs(ctx, config: str | None) -> dict:
    opts = ctx.node.options
    if config is not None:
        if config not in opts.specs:
            raise invalid_params(f"Unknown config option {config}")
        names = [config]
    else:
        names = sorted(opts.specs)
    out = {}
    for name in names:
        entry = listconfigs_entry(opts, name)
        if entry is not None:
            out[name] = entry
    return {"configs": out}


@command("setconfig", [req("config", p_string), opt("val", p_any), opt("transient", p_bool, False)],
         description="Set a dynamic configuration option, persisting it unless transient.")
async def setconfig(ctx, config: str, val: Any, transient: bool) -> dict:
    node = ctx.node
    spec = node.options.specs.get(config)
    if spec is None:
        raise invalid_params(f"Unknown config option {config}")
    if not spec.dynamic:
        raise invalid_params(f"{config}: not a dynamic config option")
    # val may come as a JSON number or bool; options are text underneath (lightningd sends the
    # plugin a string, an array of strings for multi options).
    if spec.kind == "flag":
        if val is not None:
            raise invalid_params(f"{config}: flag options take no val")
        raw_values: list[str | None] = [None]
    elif val is None:
        raise invalid_params(f"{config} requires a value")  # lightningd's words (checked against CLN v26.06)
    elif spec.multi:
        items = val if isinstance(val, list) else [val]
        raw_values = [_as_text(v) for v in items]
    else:
        raw_values = [_as_text(val)]
    try:
        typed = [parse_typed(spec, r) for r in raw_values]
    except ConfigError as e:
        raise RpcError(INVALID_PARAMS, str(e)) from None
    if spec.plugin is not None:
        if node.plugins is None:
            raise invalid_params(f"{config}: its plugin is not running")
        send = raw_values if spec.multi else raw_values[0]
        await node.plugins.setconfig(spec.plugin, config, send)
    source = "setconfig"
    if not transient and not ctx.check:
        path, line = persist_setconfig(node.netdir, node.config_files, config, raw_values)
        source = f"{path}:{line}"
    if spec.multi:
        node.options.values[config] = typed
        node.options.sources[config] = [source] * len(typed)
    else:
        node.options.values[config] = typed[0]
        node.options.sources[config] = [source]
    node.log.info("lightningd", f"setconfig: {config} set")
    entry = listconfigs_entry(node.options, config) or {}
    return {"config": {"config": config, **entry, "dynamic": True}}


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, str)):
        return str(v)
    raise invalid_params("val: should be a string, number, bool or array of them")


@command("notifications", [req("enable", p_bool)], description="Enable notifications for this connection.")
async def notifications(ctx, enable: bool) -> dict:
    if ctx.conn is not None:
        ctx.conn.notifications = enable
    return {}


@command("batching", [req("enable", p_bool)], description="Allow database commits to be batched on this connection.")
async def batching(ctx, enable: bool) -> dict:
    return {}


@command("deprecations", [req("enable", p_bool)], description="Override allow-deprecated-apis on this connection.")
async def deprecations(ctx, enable: bool) -> dict:
    if ctx.conn is not None:
        ctx.conn.deprecations = enable
    return {}


__all__ = ["Command"]
