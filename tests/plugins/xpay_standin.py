#!/usr/bin/env python3
"""A stand-in for CLN's `xpay` (invstring [amount_msat]), which Ampere does not have: it pays with `pay`.
Lets the tests show that pay-limit.py caps `xpay` calls through the rpc_command hook."""
from pyln.client import Plugin

plugin = Plugin()


@plugin.method("xpay")
def xpay(plugin, invstring, amount_msat=None):
    """Pay {invstring} (with `pay`)."""
    params = {"bolt11": invstring}
    if amount_msat is not None:
        params["amount_msat"] = amount_msat
    return plugin.rpc.call("pay", params)


plugin.run()
