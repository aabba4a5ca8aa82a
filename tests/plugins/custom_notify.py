#!/usr/bin/env python3
"""Declares and emits a custom notification topic `ampere_custom` when `emit` is called."""
from pyln.client import Plugin

plugin = Plugin(dynamic=True)
plugin.add_notification_topic("ampere_custom")


@plugin.method("emit")
def emit(plugin, text="hi"):
    """Emit one `ampere_custom` notification carrying `text`."""
    plugin.notify("ampere_custom", {"text": text})
    # An undeclared topic: the host must drop it (and say so in the log).
    plugin.notify("undeclared_topic", {"text": text})
    return {"emitted": text}


@plugin.method("chatty")
def chatty(plugin, request):
    """Tell the caller what is going on while working: a message and two progress steps."""
    plugin.notify_message(request, "working on it")
    plugin.notify_progress(request, 0, 2)
    plugin.notify_progress(request, 1, 2)
    return {"done": True}


plugin.run()
