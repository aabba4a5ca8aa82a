#!/usr/bin/env python3
"""Writes something that is not JSON on its protocol stream when `garbage` is called: the host
must kill it and log why."""
import os

from pyln.client import Plugin

plugin = Plugin(dynamic=True)


@plugin.method("garbage")
def garbage(plugin):
    """Print garbage straight to the real stdout."""
    os.write(1, b"this is not JSON at all\n\n")
    return {"never": "seen"}


plugin.run()
