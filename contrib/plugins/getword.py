#!/usr/bin/env python3
"""Seed 001's pay-to-reveal, the buying side: `getword url [maxprice_msat]`.

Fetches a BOLT 11 invoice from `url` (a `reveal.py` server), decodes it with the node's `decode`, checks
that it is sane (an invoice for our network, with an amount, not above `maxprice_msat` or the
`getword-max-msat` option, not expired), pays it with `pay`, and returns the text carried in the
preimage's last 24 bytes:

    {"word": "swordfish", "amount_msat": 24000, "payment_hash": "...", "payment_preimage": "...", "bolt11": "..."}

The fetch and the payment run in a thread: the plugin keeps serving other calls meanwhile.
Written with the unmodified pyln-client.
"""

import threading
import time
import urllib.request

from pyln.client import Plugin, RpcError

plugin = Plugin()
RANDOM_BYTES = 8
MAX_INVOICE_BYTES = 8192


class GetwordError(Exception):
    pass


def msat(value) -> int:
    return int(str(value).removesuffix("msat"))


def error_message(e: RpcError) -> str:
    return e.error.get("message", str(e.error)) if isinstance(e.error, dict) else str(e.error)


def fetch(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise GetwordError(f"not an http(s) URL: {url!r}")
    with urllib.request.urlopen(url, timeout=int(plugin.get_option("getword-timeout"))) as resp:
        body = resp.read(MAX_INVOICE_BYTES + 1)
    if len(body) > MAX_INVOICE_BYTES:
        raise GetwordError("answer too long for an invoice")
    return body.decode("ascii", errors="replace").strip()


def getword_sync(url: str, maxprice_msat) -> dict:
    limit = int(plugin.get_option("getword-max-msat"))
    if maxprice_msat is not None:
        limit = min(limit, msat(maxprice_msat))
    try:
        bolt11 = fetch(url)
    except (OSError, ValueError) as e:
        raise GetwordError(f"cannot fetch an invoice from {url}: {e}") from None
    try:
        inv = plugin.rpc.decode(bolt11)
    except RpcError as e:
        raise GetwordError(f"{url} did not give an invoice: {error_message(e)}") from None
    if inv.get("type") != "bolt11 invoice" or not inv.get("valid", False):
        raise GetwordError(f"{url} did not give a valid BOLT 11 invoice")
    if "amount_msat" not in inv:
        raise GetwordError("the invoice has no amount: refusing to choose one")
    amount = msat(inv["amount_msat"])
    if amount > limit:
        raise GetwordError(f"the invoice asks {amount}msat, more than the {limit}msat we accept")
    if inv["created_at"] + inv["expiry"] <= time.time():
        raise GetwordError("the invoice has expired")
    paid = plugin.rpc.pay(bolt11)
    preimage = bytes.fromhex(paid["payment_preimage"])
    word = preimage[RANDOM_BYTES:].rstrip(b"\0").decode("utf-8", errors="replace")
    return {"word": word, "amount_msat": amount, "payment_hash": paid["payment_hash"],
            "payment_preimage": paid["payment_preimage"], "bolt11": bolt11}


def run(request, url, maxprice_msat) -> None:
    try:
        request.set_result(getword_sync(url, maxprice_msat))
    except GetwordError as e:
        request.set_exception(e)
    except RpcError as e:
        request.set_exception(GetwordError(f"payment failed: {error_message(e)}"))
    except Exception as e:
        request.set_exception(e)


@plugin.async_method("getword")
def getword(plugin, request, url, maxprice_msat=None):
    """Buy the text behind the invoice at {url} (at most {maxprice_msat}) and return it."""
    threading.Thread(target=run, args=(request, url, maxprice_msat), daemon=True).start()


plugin.add_option("getword-max-msat", "100000", "Never pay more than this for a word, in msat.")
plugin.add_option("getword-timeout", "10", "Seconds to wait for the web server.")
plugin.run()
