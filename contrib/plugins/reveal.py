#!/usr/bin/env python3
"""Seed 001's pay-to-reveal, the selling side: 24 bytes of text delivered by the payment itself.

A payment's preimage is 32 bytes the payer learns only by paying.  Here it is 8 random bytes (so that it
cannot be guessed) followed by 24 bytes of text (padded with NUL bytes): paying the invoice reveals the
text.  32 bytes is also enough for a decryption key, so the same trick sells files.

    ampd --plugin=reveal.py --reveal-port=5001 --reveal-text=swordfish --reveal-text=opensesame
    curl http://127.0.0.1:5001/        -> an invoice whose preimage carries one of the texts
    amp-cli revealinvoice              -> the same, over RPC (the invoice's full result)

`getword.py` is the buying side.  Written with the unmodified pyln-client.
"""

import logging
import secrets
import threading

from flask import Flask, Response
from pyln.client import Plugin

plugin = Plugin()
app = Flask(__name__)
TEXT_BYTES = 24
RANDOM_BYTES = 8


def texts():
    return [t.encode() for t in (plugin.get_option("reveal-text") or [])]


def new_invoice() -> dict:
    choices = texts()
    if not choices:
        raise ValueError("no reveal-text configured")
    text = secrets.choice(choices)
    preimage = secrets.token_bytes(RANDOM_BYTES) + text.ljust(TEXT_BYTES, b"\0")
    label = "reveal-" + secrets.token_hex(8)
    return plugin.rpc.invoice(int(plugin.get_option("reveal-price")), label,
                              plugin.get_option("reveal-description"), preimage=preimage.hex())


@app.route("/")
def get_invoice():
    return Response(new_invoice()["bolt11"] + "\n", mimetype="text/plain")


@plugin.method("revealinvoice")
def revealinvoice(plugin):
    """An invoice whose preimage reveals one of our texts."""
    return new_invoice()


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    for text in texts():
        if len(text) > TEXT_BYTES:
            return {"disable": f"reveal-text {text.decode()!r} is longer than {TEXT_BYTES} bytes"}
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = int(options["reveal-port"])
    threading.Thread(target=app.run, kwargs={"host": "127.0.0.1", "port": port, "use_reloader": False},
                     daemon=True).start()
    plugin.log(f"reveal: selling {len(texts())} texts on http://127.0.0.1:{port}/")


plugin.add_option("reveal-port", "5001", "Localhost port of the web server.")
plugin.add_option("reveal-price", "24000", "Price of a text, in msat.")
plugin.add_option("reveal-description", "24 bytes of text, revealed by paying", "Invoice description.")
plugin.add_option("reveal-text", None, "A text to sell (at most 24 bytes); may be given several times.", multi=True)
plugin.run()
