#!/usr/bin/env python3
"""A plugin as its author would write it for CLN: an option, a method, a notification subscription, and an
htlc_accepted hook that holds HTLCs of invoices labelled "hold-*" until `release` is called."""
from pyln.client import Plugin

plugin = Plugin()
plugin.held = {}
plugin.invoices_paid = []


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    plugin.greeting = options["greeting"]
    plugin.log("hodl_and_count initialized")


@plugin.method("greet")
def greet(name, plugin):
    """Greets {name}."""
    return {"message": f"{plugin.greeting} {name}"}


@plugin.subscribe("invoice_payment")
def on_invoice_payment(plugin, invoice_payment, **kwargs):
    plugin.invoices_paid.append(invoice_payment["label"])


@plugin.method("paidlabels")
def paidlabels(plugin):
    return {"labels": plugin.invoices_paid}


@plugin.async_hook("htlc_accepted")
def on_htlc_accepted(onion, htlc, request, plugin, **kwargs):
    invs = plugin.rpc.listinvoices(payment_hash=htlc["payment_hash"])["invoices"]
    if invs and invs[0]["label"].startswith("hold-"):
        plugin.log(f"holding {htlc['payment_hash']}")
        plugin.held[htlc["payment_hash"]] = request
        return
    request.set_result({"result": "continue"})


@plugin.method("release")
def release(plugin, payment_hash, fail=False):
    req = plugin.held.pop(payment_hash)
    req.set_result({"result": "fail", "failure_message": "2002"} if fail else {"result": "continue"})
    return {}


plugin.add_option("greeting", "Hello", "What to say")
plugin.run()
