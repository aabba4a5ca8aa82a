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
    res = plugin.rpc.call("pay", params)
    # xpay's result shape (CLN's xpay schema).
    return {"payment_preimage": res["payment_preimage"], "failed_parts": 0, "successful_parts": res["parts"],
            "amount_msat": res["amount_msat"], "amount_sent_msat": res["amount_sent_msat"]}


plugin.run()
