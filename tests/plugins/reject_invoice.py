#!/usr/bin/env python3
"""An `invoice_payment` hook that rejects payments of invoices labelled "reject*" (the HTLCs fail with
incorrect_or_unknown_payment_details) and accepts the others."""
from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("invoice_payment")
def on_invoice_payment(payment, plugin, **kwargs):
    if payment["label"].startswith("reject"):
        plugin.log(f"Rejecting payment of {payment['label']}")
        return {"result": "reject"}
    return {"result": "continue"}


plugin.run()
