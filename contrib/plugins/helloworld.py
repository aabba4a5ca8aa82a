#!/usr/bin/env python3
"""The hello-world plugin of seed 001, written with the unmodified pyln-client.

It adds a `hello` command, a `greeting` option, logs at init, and follows peers connecting and
disconnecting through notifications.
"""

from pyln.client import Plugin

plugin = Plugin()


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    plugin.log(f"Plugin helloworld.py initialized with greeting '{options['greeting']}'")


@plugin.method("hello")
def hello(plugin, name="world"):
    """Greets someone: `hello [name]`."""
    greeting = plugin.get_option("greeting")
    return f"{greeting} {name}"


@plugin.subscribe("connect")
def on_connect(plugin, id, address, **kwargs):
    plugin.log(f"Received connect event for peer {id}")


@plugin.subscribe("disconnect")
def on_disconnect(plugin, id, **kwargs):
    plugin.log(f"Received disconnect event for peer {id}")


plugin.add_option("greeting", "Hello", "The greeting I should use.")
plugin.run()
