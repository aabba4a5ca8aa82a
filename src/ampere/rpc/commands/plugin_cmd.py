"""The `plugin` command: start, stop, startdir, rescan, list (lightningd/plugin_control.c).

Result shapes (doc/schemas/plugin.json): `{"command": sub, "plugins": [{name, active, dynamic}]}`,
and for stop `{"command": "stop", "result": "Successfully stopped <name>."}`.
Errors: -32602 for bad parameters, unknown or non-dynamic plugins and non-executable paths;
-3 (PLUGIN_ERROR) "<path>: <reason>" when a plugin fails to start.

`plugin start` takes the plugin's option values either as an `options` array of "k=v" / "flag"
strings, or (object params only) as extra keywords: `amp-cli -k plugin subcommand=start
plugin=/path/pay-up-to.py limit=0.001btc`; mixing both is an error.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ...plugins.host import PluginRpcError
from ..errors import INVALID_PARAMS, RpcError, invalid_params
from ..registry import command

SUBCOMMANDS = ("start", "stop", "startdir", "rescan", "list")
USAGE = "subcommand=start|stop|startdir|rescan|list [plugin|directory] [options]..."


def _token(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _unknown_param(name: str) -> RpcError:
    return invalid_params(
        f"unknown parameter: {name}, this may be caused by a failure to autodetect key=value-style "
        "parameters. Please try using the -k flag and explicit key=value pairs of parameters.")


def _subcommand(params: Any) -> str:
    if isinstance(params, list):
        sub = params[0] if params else None
    elif isinstance(params, dict):
        sub = params.get("subcommand")
    else:
        raise invalid_params("Expected array or object for params")
    if sub is None:
        raise invalid_params("missing required parameter: subcommand")
    sub = _token(sub)
    if sub not in SUBCOMMANDS:
        raise invalid_params(f"Unknown subcommand '{sub}'")
    return sub


def _fixed(params: Any, names: list[str]) -> dict[str, Any]:
    """param(): exactly these (all required) parameters."""
    if isinstance(params, list):
        if len(params) > len(names):
            raise invalid_params(f"too many parameters: got {len(params)}, expected {len(names)}")
        got = {n: v for n, v in zip(names, params) if v is not None}
    else:
        for k in params:
            if k not in names:
                raise _unknown_param(k)
        got = {k: v for k, v in params.items() if v is not None}
    for n in names:
        if n not in got:
            raise invalid_params(f"missing required parameter: {n}")
    return got


def _start_params(params: Any) -> tuple[str, dict[str, Any]]:
    """(plugin path, option values) for `start`, with plugin_control.c's checks."""
    if isinstance(params, list):
        path = params[1] if len(params) > 1 else None
        options = params[2] if len(params) > 2 else None
    else:
        path = params.get("plugin")
        options = params.get("options")
    if path is None:
        raise invalid_params("missing required parameter: plugin")
    path = _token(path)
    if options is not None and not isinstance(options, list):
        raise invalid_params(f"options: should be an array: invalid token '{_token(options)}'")
    if options is not None and any(not isinstance(o, str) for o in options):
        raise invalid_params("options array entries must be strings")
    values: dict[str, Any] = {}
    if isinstance(params, list):
        if len(params) > (3 if options is not None else 2):
            raise invalid_params("Extra parameters must be in object")
    else:
        extra = {k: v for k, v in params.items() if k not in ("subcommand", "plugin", "options")}
        if options is not None and extra:
            raise invalid_params("Cannot mix 'options' array with keyword options")
        for k, v in extra.items():
            values[k] = v if isinstance(v, str) else (True if v is True else _token(v))
    for o in options or []:
        name, eq, val = o.partition("=")
        values[name] = val if eq else True  # "Boolean flags are given without a value."
    return path, values


def _resolve_executable(ctx, path: str) -> str:
    if os.access(path, os.X_OK):
        return path
    host = ctx.node.plugins
    joined = os.path.join(host.default_dir, path) if host is not None else path
    if not os.access(joined, os.X_OK):
        err = "No such file or directory" if not os.path.exists(joined) else "Permission denied"
        raise RpcError(INVALID_PARAMS, f"{joined} is not executable: {err}")
    return joined


async def _validate(ctx, params: Any) -> tuple[str, Any]:
    sub = _subcommand(params)
    if sub == "stop":
        got = _fixed(params, ["subcommand", "plugin"])
        return sub, _token(got["plugin"])
    if sub == "start":
        path, values = _start_params(params)
        return sub, (_resolve_executable(ctx, path), values)
    if sub == "startdir":
        got = _fixed(params, ["subcommand", "directory"])
        directory = _token(got["directory"])
        if not os.path.exists(directory):
            raise invalid_params(f"Could not open {directory}")
        return sub, directory
    _fixed(params, ["subcommand"])
    return sub, None


@command("plugin", raw=True, usage=USAGE, description="Control plugins (start, stop, startdir, rescan, list)")
async def plugin(ctx, params: Any) -> dict:
    sub, arg = await _validate(ctx, params)
    host = ctx.node.plugins
    if host is None:
        raise RpcError(-1, "plugins are not running")
    caller = ctx.request.get("id")
    try:
        if sub == "stop":
            return await host.stop_plugin(arg)
        if sub == "start":
            path, values = arg
            plugins = await host.start_dynamic(path, values, caller_id=caller)
        elif sub == "startdir":
            plugins = await host.startdir(arg, caller_id=caller)
        elif sub == "rescan":
            plugins = await host.rescan(caller_id=caller)
        else:
            plugins = host.list()
    except PluginRpcError as e:
        raise RpcError(e.code, e.message) from None
    return {"command": sub, "plugins": plugins}


async def _check(ctx, params: Any) -> None:
    """`check plugin ...`: parameters and paths only; nothing is started or stopped."""
    await _validate(ctx, params)


plugin.check = _check  # type: ignore[attr-defined]
