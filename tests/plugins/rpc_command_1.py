#!/usr/bin/env python3
"""First of a chain of two rpc_command plugins (registered first, so called first).

`datastoreusage` is refused with a custom error, `listdatastore` replaced by `hello`, `batching`
answered with a result (the second plugin's attempt to modify it too must be ignored), anything
else continues.
"""
from pyln.client import Plugin

plugin = Plugin(dynamic=True)


@plugin.hook("rpc_command")
def on_rpc_command(plugin, rpc_command, **kwargs):
    request = rpc_command
    method = request["method"]
    if method == "datastoreusage":
        return {"return": {"error": {"code": 1234, "message": "datastoreusage is disabled by rpc_command_1"}}}
    if method == "listdatastore":
        new = dict(request)
        new["method"] = "hello"
        new["params"] = {"name": "replaced"}
        return {"replace": new}
    if method == "batching":
        return {"return": {"result": {"from": "rpc_command_1"}}}
    return {"result": "continue"}


plugin.run()
