"""Payments between Ampere and Core Lightning, each side the payer, on two channels between the pair: `pay`
(direct, then multi-part over both channels), keysend, the final node's failures (wrong amount, unknown payment
hash, expired invoice) with their BOLT 4 codes, and an HTLC held by the payee's htlc_accepted plugin (the same
pyln-client plugin on both implementations) then released."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from pyln.client import RpcError

from ampere.testing.nodes import wait_for

pytestmark = pytest.mark.cln

HODL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins", "hodl.py")
CHANNEL = 300_000  # sat, two of them
DELAY = 30
# BOLT 4: PERM|15 incorrect_or_unknown_payment_details; lightningd's PAY_TRY_OTHER_ROUTE / PAY_DESTINATION_PERM_FAIL
INCORRECT_OR_UNKNOWN = 0x400F


def balance(a, b) -> int:
    return sum(c["to_us_msat"] for c in a.rpc.listpeerchannels(b.node_id)["channels"]
               if c["state"] == "CHANNELD_NORMAL")


def no_htlcs(a, b) -> bool:
    return all(not c["htlcs"] for c in a.rpc.listpeerchannels(b.node_id)["channels"])


def settled(payer, payee) -> None:
    for x, y in ((payer, payee), (payee, payer)):
        wait_for(lambda x=x, y=y: no_htlcs(x, y), 30, f"{x.implementation}: no HTLC left")


@pytest.mark.parametrize("payer_kind", ["ampere", "cln"])
def test_payments(node_factory, payer_kind):
    payee_kind = "cln" if payer_kind == "ampere" else "ampere"
    payer = node_factory.get_node_of(payer_kind)
    payee = node_factory.get_node_of(payee_kind, plugin=HODL)
    node_factory.fund_wallet(payer, 2 * CHANNEL + 200_000)
    scids = [node_factory.fundchannel(payer, payee, CHANNEL, announce=False)["short_channel_id"] for _ in range(2)]
    assert len(set(scids)) == 2
    start = balance(payer, payee)

    # Direct.
    inv = payee.rpc.invoice(10_000_000, "direct", "direct")
    r = payer.rpc.pay(inv["bolt11"])
    assert r["status"] == "complete" and r["payment_hash"] == inv["payment_hash"]
    assert hashlib.sha256(bytes.fromhex(r["payment_preimage"])).hexdigest() == inv["payment_hash"]
    assert payee.rpc.listinvoices("direct")["invoices"][0]["status"] == "paid"

    # Held by the payee's plugin: the HTLC sits on both sides' commitments until the plugin lets it go.
    inv = payee.rpc.invoice(2_000_000, "hodl-1", "x")
    route = [{"id": payee.node_id, "channel": scids[1], "delay": DELAY, "amount_msat": 2_000_000}]
    payer.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"], amount_msat=2_000_000)
    wait_for(lambda: payee.rpc.call("listheld")["held"].get(inv["payment_hash"]) == 1, what="HTLC held")
    for x, y in ((payer, payee), (payee, payer)):
        htlcs = [h for c in x.rpc.listpeerchannels(y.node_id)["channels"] for h in c["htlcs"]]
        assert [(h["payment_hash"], h["amount_msat"]) for h in htlcs] == [(inv["payment_hash"], 2_000_000)]
    assert payer.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] == "pending"
    assert payee.rpc.call("release", {"payment_hash": inv["payment_hash"]}) == {"released": 1}
    assert payer.rpc.waitsendpay(inv["payment_hash"], 30)["status"] == "complete"
    # And one the plugin fails (temporary_node_failure, 0x2002).
    inv = payee.rpc.invoice(2_000_000, "hodl-2", "x")
    payer.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"], amount_msat=2_000_000)
    wait_for(lambda: payee.rpc.call("listheld")["held"].get(inv["payment_hash"]) == 1, what="HTLC held")
    payee.rpc.call("release", {"payment_hash": inv["payment_hash"], "result": "fail"})
    with pytest.raises(RpcError) as err:
        payer.rpc.waitsendpay(inv["payment_hash"], 30)
    assert err.value.error["data"]["failcode"] == 0x2002 and err.value.error["data"]["erring_node"] == payee.node_id
    settled(payer, payee)
    assert balance(payer, payee) == start - 10_000_000 - 2_000_000

    # Multi-part: more than either channel can carry alone (each holds < 300,000 sat on the payer's side).
    big = 400_000_000
    inv = payee.rpc.invoice(big, "mpp", "mpp")
    r = payer.rpc.pay(inv["bolt11"])
    assert r["status"] == "complete" and r["parts"] >= 2, r
    paid = payee.rpc.listinvoices("mpp")["invoices"][0]
    assert paid["status"] == "paid" and paid["amount_received_msat"] == big
    settled(payer, payee)
    ours = [c["to_us_msat"] for c in payer.rpc.listpeerchannels(payee.node_id)["channels"]]
    assert all(x < CHANNEL * 1000 - 50_000_000 for x in ours), ours  # both channels carried a part

    # Keysend.
    if payer.implementation == "cln":  # CLN v26.06 deprecates `keysend` for `xkeysend` (askrene's routing)
        r = payer.rpc.call("xkeysend", {"destination": payee.node_id, "amount_msat": 3_000_000})
        assert r["successful_parts"] >= 1 and r["amount_msat"] == 3_000_000
    else:
        assert payer.rpc.keysend(payee.node_id, 3_000_000)["status"] == "complete"
    settled(payer, payee)
    assert balance(payer, payee) == start - 12_000_000 - big - 3_000_000
    assert balance(payee, payer) == 2 * CHANNEL * 1000 - start + 12_000_000 + big + 3_000_000

    # The final node's refusals, through sendpay on one channel (so no retry hides them).
    def sendpay(inv, amount, label, payment_secret=None):
        route = [{"id": payee.node_id, "channel": scids[0], "delay": DELAY, "amount_msat": amount}]
        payer.rpc.sendpay(route, inv["payment_hash"], payment_secret=payment_secret or inv["payment_secret"],
                          label=label, amount_msat=amount)
        with pytest.raises(RpcError) as err:
            payer.rpc.waitsendpay(inv["payment_hash"], 30)
        return err.value.error

    inv = payee.rpc.invoice(5_000_000, "wrong-amount", "x")
    e = sendpay(inv, 4_000_000, "short")
    assert e["code"] == 203 and e["data"]["failcode"] == INCORRECT_OR_UNKNOWN, e  # PAY_DESTINATION_PERM_FAIL
    assert e["data"]["erring_node"] == payee.node_id
    unknown = {"payment_hash": hashlib.sha256(b"nobody knows").hexdigest(), "payment_secret": "11" * 32}
    e = sendpay(unknown, 1_000_000, "unknown")
    assert e["code"] == 203 and e["data"]["failcode"] == INCORRECT_OR_UNKNOWN, e
    inv = payee.rpc.invoice(1_000_000, "expired", "x", expiry=1)
    time.sleep(2)
    with pytest.raises(RpcError) as err:  # the payer's pay refuses an expired invoice itself
        payer.rpc.pay(inv["bolt11"])
    assert "xpire" in str(err.value.error)
    e = sendpay(inv, 1_000_000, "expired")  # the payee refuses it too
    assert e["code"] == 203 and e["data"]["failcode"] == INCORRECT_OR_UNKNOWN, e
    assert payee.rpc.listinvoices("expired")["invoices"][0]["status"] == "expired"
    settled(payer, payee)
    assert balance(payer, payee) == start - 12_000_000 - big - 3_000_000

