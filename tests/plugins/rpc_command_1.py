#!/usr/bin/env python3
"""First of a chain of two rpc_command plugins (registered first, so called first).

`sendpay` is refused with a custom error, `echo1` replaced by `hello`, `dual` answered with a
result (a later plugin's attempt to modify `dual` must then be ignored), anything else continues.
"""
from pyln.client import Plugin

plugin = Plugin(dynamic=True)


@plugin.hook("rpc_command")
def on_rpc_command(plugin, rpc_command, **kwargs):
    request = rpc_command
    method = request["method"]
    if method == "sendpay":
        return {"return": {"error": {"code": 1234, "message": "sendpay is disabled by rpc_command_1"}}}
    if method == "echo1":
        new = dict(request)
        new["method"] = "hello"
        new["params"] = {"name": "replaced"}
        return {"replace": new}
    if method == "dual":
        return {"return": {"result": {"from": "rpc_command_1"}}}
    return {"result": "continue"}


plugin.run()
