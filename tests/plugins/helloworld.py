#!/usr/bin/env python3
"""The tutorial's plugin (seed 001): a `hello` method, a `greeting` option, an init handler and
connect/disconnect subscriptions.  Written with the unmodified pyln-client from PyPI."""
from pyln.client import Plugin

plugin = Plugin()


@plugin.method("hello")
def hello(plugin, name="world"):
    """Greets someone with the configured greeting."""
    greeting = plugin.get_option("greeting")
    s = "{} {}".format(greeting, name)
    plugin.log(s)
    return s


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    plugin.log("Plugin helloworld.py initialized")


@plugin.subscribe("connect")
def on_connect(plugin, connect, **kwargs):
    # Notifications carry their payload in an object named after the topic.
    plugin.log("Received connect event for peer {}".format(connect["id"]))


@plugin.subscribe("disconnect")
def on_disconnect(plugin, disconnect, **kwargs):
    plugin.log("Received disconnect event for peer {}".format(disconnect["id"]))


plugin.add_option("greeting", "Hello", "The greeting I should use.")
plugin.run()
