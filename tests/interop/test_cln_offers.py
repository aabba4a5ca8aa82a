"""BOLT 12 with Core Lightning: each side pays the other's offer (fetchinvoice, then pay/xpay of the invoice),
over a direct channel, and over an intermediate node: onion messages and blinded HTLCs relayed by either
implementation, blinded paths introduced by either, and an Ampere payer routing to a CLN introduction node."""

from __future__ import annotations

import pytest

from ampere.testing.nodes import NodeFactory

if not hasattr(NodeFactory, "get_node_of"):  # the CLN fixtures come with the `interop` branch
    pytest.skip("needs ampere.testing's Core Lightning nodes (branch interop)", allow_module_level=True)

pytestmark = pytest.mark.cln

CHANNEL = 500_000


def _pay(payer, invoice: str) -> dict:
    if payer.implementation == "cln":
        return payer.rpc.call("xpay", {"invstring": invoice})
    return payer.rpc.pay(invoice)


@pytest.mark.parametrize("payer_kind", ["ampere", "cln"])
def test_offer_direct(node_factory, payer_kind):
    payee_kind = "cln" if payer_kind == "ampere" else "ampere"
    payer = node_factory.get_node_of(payer_kind)
    payee = node_factory.get_node_of(payee_kind)
    node_factory.fund_wallet(payer, CHANNEL + 100_000)
    node_factory.fundchannel(payer, payee, CHANNEL, announce=False)
    # CLN's offers plugin says so when its only channel is unannounced (it then gives itself as the path).
    payee.allow_complaints = ("so no blinded path",)
    offer = payee.rpc.offer(25_000, f"direct from {payer_kind}")
    dec = payer.rpc.decode(offer["bolt12"])
    assert dec["valid"] and dec["offer_amount_msat"] == 25_000
    fetched = payer.rpc.fetchinvoice(offer["bolt12"])
    inv = payer.rpc.decode(fetched["invoice"])
    assert inv["valid"] and inv["invoice_amount_msat"] == 25_000
    res = _pay(payer, fetched["invoice"])
    assert res.get("status", "complete") == "complete"
    paid = [i for i in payee.rpc.listinvoices()["invoices"] if i["status"] == "paid"]
    assert len(paid) == 1 and paid[0]["bolt12"] == fetched["invoice"]
    assert paid[0]["local_offer_id"] == offer["offer_id"]


@pytest.mark.parametrize("kinds", [["ampere", "cln", "ampere"], ["cln", "ampere", "cln"], ["ampere", "ampere", "cln"],
                                   ["cln", "cln", "ampere"]])
def test_offer_via_intermediate(node_factory, kinds):
    l1, l2, l3 = node_factory.line_graph(kinds, CHANNEL, announce_channels=True, wait_for_announce=True)
    offer = l3.rpc.offer(30_000, "two hops")
    fetched = l1.rpc.fetchinvoice(offer["bolt12"])
    inv = l1.rpc.decode(fetched["invoice"])
    assert inv["invoice_amount_msat"] == 30_000
    res = _pay(l1, fetched["invoice"])
    assert res.get("status", "complete") == "complete"
    paid = [i for i in l3.rpc.listinvoices()["invoices"] if i["status"] == "paid"]
    assert len(paid) == 1
