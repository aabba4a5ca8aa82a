#!/usr/bin/env python3
"""Dies in the middle of answering `crash` (its caller must get -4); `ping` answers normally."""
import os

from pyln.client import Plugin

plugin = Plugin(dynamic=True)


@plugin.method("crash")
def crash(plugin):
    """Exit without answering."""
    os._exit(1)


@plugin.method("ping")
def ping(plugin):
    """Answer pong."""
    return {"pong": True}


plugin.run()
