#!/usr/bin/env python3
"""Subscribes to `*` and remembers every notification it receives; `seen` returns them.
`*` includes `shutdown`: then it exits, as a well-behaved plugin does."""
import sys

from pyln.client import Plugin

plugin = Plugin(dynamic=True)
plugin.received = []


@plugin.subscribe("*")
def on_any(plugin, **kwargs):
    kwargs.pop("request", None)
    if "shutdown" in kwargs:
        sys.exit(0)
    plugin.received.append(kwargs)


@plugin.method("seen")
def seen(plugin):
    """Everything received so far."""
    return {"received": plugin.received}


plugin.run()
