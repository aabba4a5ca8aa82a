#!/usr/bin/env python3
"""Seed 000's approver: consulted on every incoming HTLC, it fails those above `approver-max-msat` with
temporary_node_failure and lets the others through."""
from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("htlc_accepted")
def on_htlc_accepted(onion, htlc, plugin, **kwargs):
    limit = int(plugin.get_option("approver-max-msat"))
    amount = int(str(htlc["amount_msat"]).removesuffix("msat"))
    if amount > limit:
        plugin.log(f"Refusing HTLC of {amount}msat (limit {limit}msat)")
        return {"result": "fail", "failure_message": "2002"}
    return {"result": "continue"}


plugin.add_option("approver-max-msat", "100000", "Largest HTLC accepted, in msat.")
plugin.run()
