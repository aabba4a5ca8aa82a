#!/usr/bin/env python3
"""Registers CLN's onion message hooks and remembers what they were given; `onionmsgs` returns it."""
from pyln.client import Plugin

plugin = Plugin()
plugin.seen = []


@plugin.hook("onion_message_recv")
def on_recv(plugin, onion_message, **kwargs):
    plugin.seen.append({"hook": "onion_message_recv", "onion_message": onion_message})
    return {"result": "continue"}


@plugin.hook("onion_message_recv_secret")
def on_recv_secret(plugin, onion_message, **kwargs):
    plugin.seen.append({"hook": "onion_message_recv_secret", "onion_message": onion_message})
    return {"result": "continue"}


@plugin.method("onionmsgs")
def onionmsgs(plugin):
    """What the hooks were given so far."""
    return {"seen": plugin.seen}


plugin.run()
