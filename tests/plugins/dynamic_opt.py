#!/usr/bin/env python3
"""A dynamic option changed with `setconfig`; the value "bad" is refused."""
from pyln.client import Plugin, RpcException

plugin = Plugin(dynamic=True)


def on_change(plugin, name, value):
    if value == "bad":
        raise RpcException("I don't like bad values")


plugin.add_option("dynopt", "initial", "A dynamic string option.", dynamic=True, on_change=on_change)


@plugin.method("getdynopt")
def getdynopt(plugin):
    """The current value."""
    return {"dynopt": plugin.get_option("dynopt")}


plugin.run()
