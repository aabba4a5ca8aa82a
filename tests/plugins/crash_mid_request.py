#!/usr/bin/env python3
"""Dies in the middle of answering `crash` (its caller must get -4); `alive` answers normally."""
import os

from pyln.client import Plugin

plugin = Plugin(dynamic=True)


@plugin.method("crash")
def crash(plugin):
    """Exit without answering."""
    os._exit(1)


@plugin.method("alive")
def alive(plugin):
    """Answer pong."""
    return {"pong": True}


plugin.run()
