#!/usr/bin/env python3
"""Takes `init_delay` seconds (default 1) to answer init."""
import time

from pyln.client import Plugin

plugin = Plugin(dynamic=True)
plugin.add_option("init_delay", "1", "Seconds to sleep in init.")


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    time.sleep(float(options["init_delay"]))


@plugin.method("slowping")
def slowping(plugin):
    """Answer once initialised."""
    return {"pong": True}


plugin.run()
