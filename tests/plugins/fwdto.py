#!/usr/bin/env python3
"""htlc_accepted answering `continue` with `forward_to`: forwards go out on the channel it names."""
from pyln.client import Plugin

plugin = Plugin()
plugin.target = None


@plugin.method("fwdto")
def fwdto(plugin, channel_id):
    """Send every forward out on `channel_id` from now on."""
    plugin.target = channel_id
    return {"forward_to": channel_id}


@plugin.hook("htlc_accepted")
def on_htlc_accepted(onion, htlc, plugin, **kwargs):
    if plugin.target and "short_channel_id" in onion:  # a forward, not a payment to us
        return {"result": "continue", "forward_to": plugin.target}
    return {"result": "continue"}


plugin.run()
