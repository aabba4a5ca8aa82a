#!/usr/bin/env python3
"""An rpc_command hook that lets everything through: the cost of a hook, for the benchmark."""
from pyln.client import Plugin

plugin = Plugin(dynamic=True)


@plugin.hook("rpc_command")
def on_rpc_command(plugin, rpc_command, **kwargs):
    return {"result": "continue"}


plugin.run()
