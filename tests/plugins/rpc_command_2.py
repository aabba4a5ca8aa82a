#!/usr/bin/env python3
"""Second of a chain of two rpc_command plugins: remembers every command it sees, answers
`deprecations` itself with that list, and tries to take over `batching` too (too late: the first
plugin already did)."""
from pyln.client import Plugin

plugin = Plugin(dynamic=True)
plugin.seen = []


@plugin.hook("rpc_command")
def on_rpc_command(plugin, rpc_command, **kwargs):
    plugin.seen.append(rpc_command["method"])
    if rpc_command["method"] == "deprecations":
        return {"return": {"result": {"seen": plugin.seen}}}
    if rpc_command["method"] == "batching":
        return {"return": {"result": {"from": "rpc_command_2"}}}
    return {"result": "continue"}


plugin.run()
