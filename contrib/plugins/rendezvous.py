#!/usr/bin/env python3
"""Seed 004: the poor man's rendez-vous.  One payment hash pays several payees in a fixed order.

Making the invoice, from the last payee back to the first:

    last payee:        amp-cli invoice AMOUNT label description          (a normal invoice)
    each earlier one:  amp-cli rendezvous_invoice NEXT_BOLT11 PAYOUT_MSAT FEE_BUDGET_MSAT DELAY_BUDGET [description]

`rendezvous_invoice` makes an invoice to ourselves for the SAME payment hash (we do not know its
preimage), for NEXT's amount + our payout + our fee budget, with NEXT's min_final_cltv_expiry + our delay
budget, and has the node sign it with `signinvoice` (signed, never stored as an invoice of ours).  The
next invoice and our terms go to the datastore (["rendezvous", payment_hash]).  The first payee hands
its invoice to the sender.

Paying (at every payee but the last, in `htlc_accepted`):
  1. an HTLC for a payment hash of ours is checked (payment_secret, total) and gathered with the others
     of that hash until they add up to our amount (multipath between payees works);
  2. then "gathered" is recorded in the datastore: after a restart (the node replays htlc_accepted for
     every unresolved HTLC) we go on without waiting for a sum again, since parts may already be gone;
  3. if there is an outgoing payment for the hash already (`listsendpays`: we restarted meanwhile), we wait
     for it: complete -> its preimage settles our parts; failed -> we fail them;
  4. otherwise we `pay` the next invoice with `maxfeepercent` from our fee budget (`exemptfee` 0, so the
     budget is a hard cap) and `maxdelay` from our delay budget and the time our incoming HTLCs leave us;
  5. the outcome is recorded in the datastore, then every gathered part is settled with the preimage (or
     failed with incorrect_or_unknown_payment_details); a part that arrives later gets the same answer.
We never settle an incoming part before our outgoing payment succeeded, and never fail one while the
outgoing payment may still succeed: a restart anywhere loses nobody money.

`rendezvous_list [payment_hash]` shows our rendez-vous and their state.  The invoices we sign carry no
route hints: the previous payee (or the sender) must reach us by a public channel or a direct one.  Written with the unmodified
pyln-client.
"""

import json
import secrets
import threading
import time

from pyln.client import Plugin, RpcError

plugin = Plugin()
lock = threading.RLock()
gathered = {}     # payment_hash -> {(scid, htlc id): (request, amount_msat, cltv_expiry)}
working = set()   # payment hashes whose outgoing payment a thread is taking care of
INCORRECT_OR_UNKNOWN_PAYMENT = 0x400F  # BOLT #4 PERM|15: [u64:htlc_msat] [u32:height]


# ---- BOLT 11 writing (the node signs; we only lay out the fields) ---------------------------------
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32_polymod(values) -> int:
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if ((top >> i) & 1) else 0
    return chk


def bech32_encode(hrp: str, data) -> str:
    expanded = [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]
    polymod = bech32_polymod(expanded + list(data) + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[d] for d in list(data) + checksum)


def to_words(data: bytes):
    """Bytes as 5-bit words, the last one zero-padded (BOLT 11's byte fields)."""
    acc, bits, out = 0, 0, []
    for b in data:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append((acc >> bits) & 31)
    if bits:
        out.append((acc << (5 - bits)) & 31)
    return out


def int_words(n: int, min_len: int = 1):
    out = []
    while n:
        out.append(n & 31)
        n >>= 5
    out += [0] * max(0, min_len - len(out))
    return out[::-1]


def tagged(code: str, words) -> list:
    # BOLT #11: type (5 bits), data_length (10 bits), data.
    return [CHARSET.index(code)] + int_words(len(words), 2) + list(words)


def hrp_amount(amount_msat: int) -> str:
    # BOLT #11 multipliers: 1 BTC = 10^11 msat; m = 10^8, u = 10^5, n = 100 msat, p = 0.1 msat.
    for unit, msat_per in (("", 10**11), ("m", 10**8), ("u", 10**5), ("n", 100)):
        if amount_msat % msat_per == 0:
            return f"{amount_msat // msat_per}{unit}"
    return f"{amount_msat * 10}p"


def unsigned_invoice(currency: str, amount_msat: int, payment_hash: str, payment_secret: str, description: str,
                     payee: str, expiry: int, min_final_cltv: int, features_hex: str) -> str:
    """A BOLT 11 string with an all-zero signature, for `signinvoice` to sign."""
    words = int_words(int(time.time()), 7)
    words += tagged("p", to_words(bytes.fromhex(payment_hash)))
    words += tagged("s", to_words(bytes.fromhex(payment_secret)))
    words += tagged("d", to_words(description.encode()))
    words += tagged("n", to_words(bytes.fromhex(payee)))
    words += tagged("x", int_words(expiry))
    words += tagged("c", int_words(min_final_cltv))
    if features_hex:
        words += tagged("9", int_words(int(features_hex, 16)))
    words += [0] * 104  # 65 bytes of signature, replaced by signinvoice
    return bech32_encode(f"ln{currency}{hrp_amount(amount_msat)}", words)


# ---- datastore --------------------------------------------------------------------------------
def ds_get(*key):
    entries = plugin.rpc.listdatastore(["rendezvous", *key])["datastore"]
    return json.loads(entries[0]["string"]) if entries and "string" in entries[0] else None


def ds_put(value, *key, mode="create-or-replace") -> None:
    plugin.rpc.datastore(["rendezvous", *key], string=json.dumps(value), mode=mode)


def msat(value) -> int:
    return int(str(value).removesuffix("msat"))


# ---- making the invoice -------------------------------------------------------------------------
@plugin.method("rendezvous_invoice")
def rendezvous_invoice(plugin, next_invoice, payout_msat, fee_budget_msat, delay_budget,
                       description="rendez-vous payment"):
    """Sign an invoice to us for {next_invoice}'s payment hash, adding {payout_msat} and {fee_budget_msat}
    to its amount and {delay_budget} blocks to its final CLTV; remember the next invoice."""
    payout, fee_budget, delay = msat(payout_msat), msat(fee_budget_msat), int(delay_budget)
    if payout < 0 or fee_budget < 0 or delay < 1:
        raise ValueError("payout and fee budget must not be negative, the delay budget at least 1 block")
    nxt = plugin.rpc.decode(next_invoice)
    if nxt.get("type") != "bolt11 invoice" or not nxt.get("valid"):
        raise ValueError("next_invoice is not a valid BOLT 11 invoice")
    if "amount_msat" not in nxt:
        raise ValueError("next_invoice has no amount")
    remaining = nxt["created_at"] + nxt["expiry"] - int(time.time())
    if remaining < 60:
        raise ValueError("next_invoice expires within a minute")
    info = plugin.rpc.getinfo()
    payment_hash = nxt["payment_hash"]
    next_amount = msat(nxt["amount_msat"])
    amount = next_amount + payout + fee_budget
    min_final = nxt["min_final_cltv_expiry"] + delay
    payment_secret = secrets.token_hex(32)
    raw = unsigned_invoice(nxt["currency"], amount, payment_hash, payment_secret, description, info["id"],
                           remaining, min_final, info["our_features"]["invoice"])
    bolt11 = plugin.rpc.call("signinvoice", {"invstring": raw})["bolt11"]
    record = {"bolt11": bolt11, "next_invoice": next_invoice, "amount_msat": amount, "next_amount_msat": next_amount,
              "payout_msat": payout, "fee_budget_msat": fee_budget, "delay_budget": delay,
              "next_min_final_cltv_expiry": nxt["min_final_cltv_expiry"], "payment_secret": payment_secret}
    try:
        ds_put(record, payment_hash, "terms", mode="must-create")
    except RpcError:
        raise ValueError(f"a rendez-vous for payment hash {payment_hash} exists already") from None
    return {"bolt11": bolt11, "payment_hash": payment_hash, "amount_msat": amount, "next_amount_msat": next_amount,
            "min_final_cltv_expiry": min_final}


@plugin.method("rendezvous_list")
def rendezvous_list(plugin, payment_hash=None):
    """Our rendez-vous (or the one for {payment_hash}): terms, whether gathered, outcome, parts held now."""
    key = ["rendezvous"] if payment_hash is None else ["rendezvous", payment_hash]
    out = {}
    for entry in plugin.rpc.listdatastore(key)["datastore"]:
        if "string" not in entry or len(entry["key"]) != 3:
            continue
        _, h, what = entry["key"]
        out.setdefault(h, {"payment_hash": h})[what] = json.loads(entry["string"])
    with lock:
        for h, item in out.items():
            item["held_msat"] = sum(a for _r, a, _c in gathered.get(h, {}).values())
            item["held_htlcs"] = len(gathered.get(h, {}))
            outcome = item.get("outcome")
            item["state"] = outcome["state"] if outcome else "paying" if item.get("gathered") else "open"
    return {"rendezvous": list(out.values())}


# ---- paying it forward ----------------------------------------------------------------------------
def failure(amount_msat: int) -> dict:
    height = plugin.rpc.getinfo()["blockheight"]
    return {"result": "fail", "failure_message": f"{INCORRECT_OR_UNKNOWN_PAYMENT:04x}{amount_msat:016x}{height:08x}"}


def answer(outcome, amount_msat: int) -> dict:
    if outcome["state"] == "complete":
        return {"result": "resolve", "payment_key": outcome["preimage"]}
    return failure(amount_msat)


def error_message(e: RpcError) -> str:
    return e.error.get("message", str(e.error)) if isinstance(e.error, dict) else str(e.error)


def existing_payment(payment_hash: str):
    """The outcome of our outgoing payment for the hash: "complete" (+ preimage), "failed", "pending" or None."""
    parts = plugin.rpc.listsendpays(payment_hash=payment_hash)["payments"]
    if not parts:
        return None
    for p in parts:
        if p["status"] == "complete":
            return {"state": "complete", "preimage": p["payment_preimage"]}
    if any(p["status"] == "pending" for p in parts):
        return {"state": "pending"}
    return {"state": "failed"}


def wait_outgoing(payment_hash: str):
    while True:
        found = existing_payment(payment_hash)
        if found is None or found["state"] != "pending":
            return found
        time.sleep(0.5)


def pay_forward(payment_hash: str, terms: dict) -> dict:
    """Steps 3 and 4: an outgoing payment's outcome, waiting for or making it."""
    found = wait_outgoing(payment_hash)
    if found is not None:
        plugin.log(f"rendezvous {payment_hash}: outgoing payment already {found['state']}")
        return found
    with lock:
        cltvs = [c for _r, _a, c in gathered.get(payment_hash, {}).values()]
    height = plugin.rpc.getinfo()["blockheight"]
    margin = int(plugin.get_option("rendezvous-cltv-margin"))
    # Our outgoing HTLCs must expire before the incoming ones, by `margin` blocks at least.
    maxdelay = min(terms["next_min_final_cltv_expiry"] + terms["delay_budget"],
                   (min(cltvs) if cltvs else height) - height - margin)
    if maxdelay <= terms["next_min_final_cltv_expiry"]:
        plugin.log(f"rendezvous {payment_hash}: incoming HTLCs leave {maxdelay} blocks, too few", level="unusual")
        return {"state": "failed"}
    # maxfeepercent, exactly from integers: the budget as a percentage of the next amount, rounded down to
    # 6 decimals (so never above the budget); exemptfee 0 so that small fees are capped too.
    micro = terms["fee_budget_msat"] * 100 * 10**6 // terms["next_amount_msat"]
    maxfeepercent = float(f"{micro // 10**6}.{micro % 10**6:06d}")
    try:
        res = plugin.rpc.call("pay", {"bolt11": terms["next_invoice"], "maxfeepercent": maxfeepercent,
                                      "exemptfee": 0, "maxdelay": maxdelay})
        return {"state": "complete", "preimage": res["payment_preimage"]}
    except RpcError as e:
        plugin.log(f"rendezvous {payment_hash}: pay failed: {error_message(e)}", level="info")
    # The payment may have parts still settling (or have succeeded after all): ask the node.
    return wait_outgoing(payment_hash) or {"state": "failed"}


def settle(payment_hash: str, terms: dict) -> None:
    try:
        outcome = pay_forward(payment_hash, terms)
        if outcome["state"] == "pending":
            outcome = wait_outgoing(payment_hash) or {"state": "failed"}
        ds_put(outcome, payment_hash, "outcome")  # durable before we answer any part
        with lock:
            parts = gathered.pop(payment_hash, {})
            working.discard(payment_hash)
        plugin.log(f"rendezvous {payment_hash}: {outcome['state']}, answering {len(parts)} HTLCs")
        for request, amount, _cltv in parts.values():
            request.set_result(answer(outcome, amount))
    except Exception as e:
        # Nothing is answered: the HTLCs stay held, and a restart (replay) takes it up again.  Losing the node
        # (it is shutting down: our RPC calls fail) is expected; anything else is a bug.
        expected = isinstance(e, (RpcError, OSError, ValueError))
        plugin.log(f"rendezvous {payment_hash}: {e!r}; HTLCs stay held", level="info" if expected else "broken")
        with lock:
            working.discard(payment_hash)


def on_htlc(onion, htlc, request) -> None:
    payment_hash = htlc["payment_hash"]
    amount = msat(htlc["amount_msat"])
    taken = False
    try:
        terms = ds_get(payment_hash, "terms")
        if terms is None or "short_channel_id" in onion:
            request.set_result({"result": "continue"})
            return
        # We are the final hop of this HTLC: the node's invoice checks are ours to make (BOLT #4).
        if onion.get("payment_secret") != terms["payment_secret"] or msat(onion.get("total_msat", 0)) < terms[
                "amount_msat"]:
            plugin.log(f"rendezvous {payment_hash}: HTLC {htlc['id']} with a wrong secret or total", level="info")
            request.set_result(failure(amount))
            return
        outcome = ds_get(payment_hash, "outcome")
        if outcome is not None:
            request.set_result(answer(outcome, amount))
            return
        with lock:
            parts = gathered.setdefault(payment_hash, {})
            parts[(htlc.get("short_channel_id"), htlc["id"])] = (request, amount, htlc["cltv_expiry"])
            taken = True
            total = sum(a for _r, a, _c in parts.values())
        marked = ds_get(payment_hash, "gathered") is not None
        if total < terms["amount_msat"] and not marked:
            plugin.log(f"rendezvous {payment_hash}: {total} of {terms['amount_msat']}msat gathered")
            return
        if not marked:
            ds_put({"msat": total, "at": int(time.time())}, payment_hash, "gathered")
        with lock:
            if payment_hash in working:
                return  # a thread is on it: it answers this part too
            working.add(payment_hash)
        settle(payment_hash, terms)
    except Exception as e:
        plugin.log(f"rendezvous: HTLC {htlc.get('id')} for {payment_hash}: {e!r}", level="broken")
        if not taken:
            request.set_result(failure(amount))  # nothing paid onward for it yet: failing is safe
        # Once gathered, holding it (no answer) is the safe side: our outgoing payment may be under way; a
        # restart (replay) takes it up again.


@plugin.async_hook("htlc_accepted")
def on_htlc_accepted(onion, htlc, request, plugin, **kwargs):
    # Gathering, paying and waiting all take RPC calls: each HTLC gets a thread, the plugin stays responsive.
    threading.Thread(target=on_htlc, args=(onion, htlc, request), daemon=True).start()


plugin.add_option("rendezvous-cltv-margin", "6",
                  "Blocks our outgoing payment must expire before the incoming HTLCs we hold.")
plugin.run()
