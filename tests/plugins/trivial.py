#!/usr/bin/env python3
"""The most trivial plugin method (`noop` returns {} and logs nothing): for the benchmark."""
from pyln.client import Plugin

plugin = Plugin(dynamic=True)


@plugin.method("noop")
def noop(plugin):
    """Do nothing."""
    return {}


plugin.run()
