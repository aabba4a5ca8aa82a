#!/usr/bin/env python3
"""HODL invoices (seeds 000 and 001): decide about a payment when it arrives, not when the invoice is made.

    holdinvoice amount_msat label description [expiry] [preimage]
        an ordinary invoice (the node's `invoice`), remembered as a hold invoice
    holdinvoice_lookup payment_hash
        its state (open, accepted, settled, canceled), what is held and how many HTLCs
    holdinvoice_settle payment_hash
        take the money: the held HTLCs go on to the node, which settles the invoice
    holdinvoice_cancel payment_hash
        refuse it ("out of widgets"): every held HTLC fails with incorrect_or_unknown_payment_details,
        and so will any later one

HTLCs paying a hold invoice are held in the `htlc_accepted` hook (answered later, so nothing else waits).
Once they add up to the invoice's amount the invoice is `accepted`; `holdinvoice_settle` is refused
before that.  The state lives in the node's datastore (["holdinvoice", payment_hash]), written before any
HTLC is answered, so a restart changes nothing: the node replays `htlc_accepted` for HTLCs still
unresolved and they are held (or settled, or failed) again.  An HTLC whose CLTV expiry comes within
`holdinvoice-cancel-blocks` blocks is canceled by itself, so that holding never forces a channel on-chain.

Written with the unmodified pyln-client.
"""

import json
import threading

from pyln.client import Plugin

plugin = Plugin()
lock = threading.RLock()
held = {}  # payment_hash -> {(scid, htlc id): (request, amount_msat, cltv_expiry)}
INCORRECT_OR_UNKNOWN_PAYMENT = 0x400F  # BOLT #4 PERM|15: [u64:htlc_msat] [u32:height]


def msat(value) -> int:
    return int(str(value).removesuffix("msat"))


def key(payment_hash):
    return ["holdinvoice", payment_hash]


def load(payment_hash):
    entries = plugin.rpc.listdatastore(key(payment_hash))["datastore"]
    return json.loads(entries[0]["string"]) if entries and "string" in entries[0] else None


def save(payment_hash, record) -> None:
    plugin.rpc.datastore(key(payment_hash), string=json.dumps(record), mode="create-or-replace")


def height() -> int:
    return plugin.rpc.getinfo()["blockheight"]


def failure(amount_msat: int) -> dict:
    # BOLT #4: incorrect_or_unknown_payment_details, the answer that tells the payer nothing more.
    return {"result": "fail",
            "failure_message": f"{INCORRECT_OR_UNKNOWN_PAYMENT:04x}{amount_msat:016x}{height():08x}"}


def held_msat(payment_hash) -> int:
    return sum(amount for _req, amount, _cltv in held.get(payment_hash, {}).values())


def release(payment_hash, how: str) -> int:
    """Answer every held HTLC of `payment_hash`: "settle" lets it through, "cancel" fails it."""
    with lock:
        parts = held.pop(payment_hash, {})
    for request, amount, _cltv in parts.values():
        request.set_result({"result": "continue"} if how == "settle" else failure(amount))
    return len(parts)


@plugin.method("holdinvoice")
def holdinvoice(plugin, amount_msat, label, description, expiry=None, preimage=None):
    """Create an invoice whose payment is held until holdinvoice_settle or holdinvoice_cancel."""
    params = {"amount_msat": amount_msat, "label": label, "description": description}
    if expiry is not None:
        params["expiry"] = expiry
    if preimage is not None:
        params["preimage"] = preimage
    inv = plugin.rpc.call("invoice", params)
    save(inv["payment_hash"], {"state": "open", "label": label})
    return dict(inv, state="open")


@plugin.method("holdinvoice_lookup")
def holdinvoice_lookup(plugin, payment_hash):
    """State of a hold invoice: open, accepted (fully paid, held), settled or canceled."""
    record = load(payment_hash)
    if record is None:
        raise ValueError(f"no hold invoice {payment_hash}")
    with lock:
        return {"payment_hash": payment_hash, "label": record["label"], "state": record["state"],
                "held_msat": held_msat(payment_hash), "htlcs": len(held.get(payment_hash, {}))}


@plugin.method("holdinvoice_settle")
def holdinvoice_settle(plugin, payment_hash):
    """Settle a hold invoice whose HTLCs add up to its amount."""
    record = load(payment_hash)
    if record is None:
        raise ValueError(f"no hold invoice {payment_hash}")
    if record["state"] == "canceled":
        raise ValueError(f"hold invoice {payment_hash} is canceled")
    if record["state"] != "settled":
        if record["state"] != "accepted":
            raise ValueError(f"hold invoice {payment_hash} is not paid yet ({record['state']})")
        record["state"] = "settled"
        save(payment_hash, record)  # durable before any HTLC is let through
    return {"payment_hash": payment_hash, "state": "settled", "htlcs": release(payment_hash, "settle")}


@plugin.method("holdinvoice_cancel")
def holdinvoice_cancel(plugin, payment_hash):
    """Refuse a hold invoice: its held HTLCs fail (incorrect_or_unknown_payment_details), later ones too."""
    record = load(payment_hash)
    if record is None:
        raise ValueError(f"no hold invoice {payment_hash}")
    if record["state"] == "settled":
        raise ValueError(f"hold invoice {payment_hash} is already settled")
    record["state"] = "canceled"
    save(payment_hash, record)
    return {"payment_hash": payment_hash, "state": "canceled", "htlcs": release(payment_hash, "cancel")}


def on_htlc(onion, htlc, request) -> None:
    payment_hash = htlc["payment_hash"]
    amount = msat(htlc["amount_msat"])
    try:
        record = load(payment_hash)
        if record is None:
            request.set_result({"result": "continue"})
            return
        if record["state"] == "settled":
            request.set_result({"result": "continue"})
            return
        if record["state"] == "canceled":
            request.set_result(failure(amount))
            return
        inv = plugin.rpc.listinvoices(payment_hash=payment_hash)["invoices"]
        want = msat(inv[0]["amount_msat"]) if inv and "amount_msat" in inv[0] else msat(
            onion.get("total_msat", amount))
        with lock:
            held.setdefault(payment_hash, {})[(htlc.get("short_channel_id"), htlc["id"])] = (
                request, amount, htlc["cltv_expiry"])
            complete = held_msat(payment_hash) >= want
        plugin.log(f"holding HTLC {htlc['id']} of {amount}msat for {payment_hash}")
        if complete and record["state"] == "open":
            record["state"] = "accepted"
            save(payment_hash, record)
    except Exception as e:
        plugin.log(f"holdinvoice: HTLC {htlc.get('id')}: {e!r}", level="broken")
        request.set_result({"result": "continue"})


@plugin.async_hook("htlc_accepted")
def on_htlc_accepted(onion, htlc, request, plugin, **kwargs):
    # RPC calls from the hook would block the plugin's loop: answer from a thread of its own.
    threading.Thread(target=on_htlc, args=(onion, htlc, request), daemon=True).start()


@plugin.subscribe("block_added")
def on_block(plugin, block_added, **kwargs):
    tip = block_added["height"]
    margin = int(plugin.get_option("holdinvoice-cancel-blocks"))
    with lock:
        late = [h for h, parts in held.items() if any(cltv - tip <= margin for _r, _a, cltv in parts.values())]
    for payment_hash in late:
        plugin.log(f"hold invoice {payment_hash}: an HTLC expires within {margin} blocks, canceling",
                   level="unusual")
        threading.Thread(target=lambda h=payment_hash: holdinvoice_cancel(plugin, h), daemon=True).start()


plugin.add_option("holdinvoice-cancel-blocks", "10",
                  "Cancel a held payment when one of its HTLCs is this many blocks from expiring.")
plugin.run()
