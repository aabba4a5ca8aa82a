#!/usr/bin/env python3
"""A HODL plugin (seed 001): holds `htlc_accepted` for invoices whose label starts with "hodl" until the
`release` RPC says what to answer.  Written with the unmodified pyln-client from PyPI; it keeps no state
across restarts, so a held HTLC replayed after a restart is simply held again."""
from pyln.client import Plugin

plugin = Plugin()
plugin.held = {}  # payment_hash -> [request]


@plugin.async_hook("htlc_accepted")
def on_htlc_accepted(onion, htlc, request, plugin, **kwargs):
    payment_hash = htlc["payment_hash"]
    invoices = plugin.rpc.listinvoices(payment_hash=payment_hash)["invoices"]
    if invoices and invoices[0]["label"].startswith("hodl"):
        plugin.log(f"Holding HTLC {htlc['id']} for {payment_hash}")
        plugin.held.setdefault(payment_hash, []).append(request)
        return
    request.set_result({"result": "continue"})


@plugin.method("listheld")
def listheld(plugin):
    """The payment hashes held, with how many HTLCs each."""
    return {"held": {h: len(reqs) for h, reqs in plugin.held.items()}}


@plugin.method("release")
def release(plugin, payment_hash, result="continue"):
    """Answer the held HTLCs of {payment_hash}: continue (settle through the invoice) or fail."""
    reqs = plugin.held.pop(payment_hash, [])
    answer = {"result": "continue"} if result == "continue" else {"result": "fail", "failure_message": "2002"}
    for req in reqs:
        req.set_result(answer)
    return {"released": len(reqs)}


plugin.run()
