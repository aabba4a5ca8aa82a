#!/usr/bin/env python3
"""Seed 001's web plugin: a Flask server inside the plugin hands out invoices.

    ampd --plugin=webinvoice.py --webinvoice-port=5000
    curl http://127.0.0.1:5000/        -> a fresh BOLT 11 invoice (text/plain)

Every GET / makes a new invoice of `webinvoice-amount` msat with `webinvoice-description`, labelled with
8 random bytes in hex: labels must be unique, and that uniqueness is what makes invoice creation safe to
retry (the seed's explanation).  The server listens on 127.0.0.1 only and runs in a daemon thread, so the
plugin keeps answering the node meanwhile.  Written with the unmodified pyln-client.
"""

import logging
import secrets
import threading

from flask import Flask, Response
from pyln.client import Plugin

plugin = Plugin()
app = Flask(__name__)
app.debug = False


@app.route("/")
def get_invoice():
    label = "webinvoice-" + secrets.token_hex(8)
    invoice = plugin.rpc.invoice(int(plugin.get_option("webinvoice-amount")), label,
                                 plugin.get_option("webinvoice-description"))
    return Response(invoice["bolt11"] + "\n", mimetype="text/plain")


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    port = int(options["webinvoice-port"])
    # Flask's request log would go to stdout, which is the plugin's channel to the node: keep it quiet.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    threading.Thread(target=app.run, kwargs={"host": "127.0.0.1", "port": port, "use_reloader": False},
                     daemon=True).start()
    plugin.log(f"webinvoice: serving invoices on http://127.0.0.1:{port}/")


plugin.add_option("webinvoice-port", "5000", "Localhost port of the invoice web server.")
plugin.add_option("webinvoice-amount", "24", "Amount of each invoice, in msat.")
plugin.add_option("webinvoice-description", "An invoice from the web", "Description of each invoice.")
plugin.run()
