"""BOLT 12 offers between real ampd nodes in a line l1 - l2 - l3 (announced channels).

l1 pays offers of l3: the invoice_request travels as an onion message l1 -> l2 -> l3 and the invoice comes back
by l1's blinded reply path; the invoice's blinded payment path has l2 as introduction node, and l2 only ever
sees an HTLC to forward.  Then the refusals: quantity, amount, single use, expiry, a disabled offer.
"""

from __future__ import annotations

import os
import time

import pytest
from pyln.client import RpcError

FUND = 1_000_000


def _bits(hexstr: str) -> set[int]:
    value = int(hexstr or "0", 16)
    return {i for i in range(value.bit_length()) if value >> i & 1}


@pytest.fixture
def line(node_factory_chain):
    return node_factory_chain.line_graph(3, FUND, announce_channels=True, wait_for_announce=True)


def test_pay_offer_through_blinded_path(line):
    l1, l2, l3 = line
    # option_route_blinding (25) and option_onion_messages (39), optional, in init and node features.
    for node in (l1, l2, l3):
        features = node.rpc.getinfo()["our_features"]
        assert {25, 39} <= _bits(features["init"]) and {25, 39} <= _bits(features["node"])
    peer = l2.rpc.listpeers(l1.info["id"])["peers"][0]
    assert {25, 39} <= _bits(peer["features"])

    offer = l3.rpc.offer(12_345, "coffee for two", label="coffee")
    assert offer["created"] and offer["active"] and not offer["used"] and not offer["single_use"]
    dec = l1.rpc.decode(offer["bolt12"])
    assert dec["type"] == "bolt12 offer" and dec["valid"]
    assert dec["offer_amount_msat"] == 12_345 and dec["offer_description"] == "coffee for two"
    assert dec["offer_issuer_id"] == l3.info["id"] and dec["offer_id"] == offer["offer_id"]
    # The same offer again: not created twice.
    again = l3.rpc.offer(12_345, "coffee for two", label="coffee")
    assert again["offer_id"] == offer["offer_id"] and not again["created"]

    fetched = l1.rpc.fetchinvoice(offer["bolt12"], payer_note="thanks")
    inv = l1.rpc.decode(fetched["invoice"])
    assert inv["type"] == "bolt12 invoice" and inv["valid"]
    assert inv["invoice_amount_msat"] == 12_345 and inv["invoice_node_id"] == l3.info["id"]
    assert inv["offer_id"] == offer["offer_id"] and inv["invreq_payer_note"] == "thanks"
    # The payment path starts at l2 (introduction node) and hides l3 behind a blinded id.
    paths = inv["invoice_paths"]
    assert [p["first_node_id"] for p in paths] == [l2.info["id"]]
    assert len(paths[0]["path"]) == 2
    assert l3.info["id"] not in [h["blinded_node_id"] for h in paths[0]["path"]]
    # Padded: l3's own hop (with its path_id) is no longer than l2's.
    assert len({len(h["encrypted_recipient_data"]) for h in paths[0]["path"]}) == 1

    res = l1.rpc.pay(fetched["invoice"])
    assert res["status"] == "complete" and res["amount_msat"] == 12_345
    assert res["destination"] == l3.info["id"]
    assert res["amount_sent_msat"] > 12_345  # l2's fee, as the payinfo said

    invoices = l3.rpc.listinvoices()["invoices"]
    assert len(invoices) == 1
    got = invoices[0]
    assert got["status"] == "paid" and got["bolt12"] == fetched["invoice"] and "bolt11" not in got
    assert got["local_offer_id"] == offer["offer_id"] and got["amount_received_msat"] >= 12_345
    assert l3.rpc.listinvoices(offer_id=offer["offer_id"])["invoices"] == invoices
    assert l3.rpc.listinvoices(invstring=fetched["invoice"])["invoices"] == invoices
    assert l3.rpc.waitanyinvoice(0, 10)["bolt12"] == fetched["invoice"]
    listed = l3.rpc.listoffers(offer["offer_id"])["offers"][0]
    assert listed["used"] is True and listed["description"] == "coffee for two" and listed["label"] == "coffee"

    pays = l1.rpc.listpays()["pays"]
    assert len(pays) == 1 and pays[0]["bolt12"] == fetched["invoice"] and pays[0]["status"] == "complete"
    sends = l1.rpc.listsendpays()["payments"]
    assert len(sends) == 1 and sends[0]["status"] == "complete"
    assert sends[0]["bolt12"] == fetched["invoice"] and sends[0]["payment_hash"] == inv["invoice_payment_hash"]

    # l2 forwarded an HTLC like any other and holds nothing saying l3 was the payee of an offer.
    fwds = l2.rpc.listforwards()["forwards"]
    assert len(fwds) == 1 and fwds[0]["status"] == "settled"
    assert l2.rpc.listinvoices()["invoices"] == [] and l2.rpc.listoffers()["offers"] == []
    log = l2.logs(since_start=False)
    for secret in (offer["offer_id"], inv["invoice_payment_hash"], "coffee for two", got["payment_preimage"],
                   fetched["invoice"][:60]):
        assert secret not in log


def test_offer_refusals(line):
    l1, l2, l3 = line
    # Quantity.
    q = l3.rpc.offer(1000, "stickers", quantity_max=3)
    with pytest.raises(RpcError, match="quantity parameter required"):
        l1.rpc.fetchinvoice(q["bolt12"])
    with pytest.raises(RpcError, match="quantity must be between 1 and 3"):
        l1.rpc.fetchinvoice(q["bolt12"], quantity=4)
    inv = l1.rpc.decode(l1.rpc.fetchinvoice(q["bolt12"], quantity=2)["invoice"])
    assert inv["invoice_amount_msat"] == 2000 and inv["invreq_quantity"] == 2

    # Amount: "any" needs one; a fixed amount needs none.
    anyamt = l3.rpc.offer("any", "tips")
    with pytest.raises(RpcError, match="amount_msat parameter required"):
        l1.rpc.fetchinvoice(anyamt["bolt12"])
    assert l1.rpc.decode(l1.rpc.fetchinvoice(anyamt["bolt12"], amount_msat=5000)["invoice"])["invoice_amount_msat"] == 5000
    with pytest.raises(RpcError, match="amount_msat parameter unnecessary"):
        l1.rpc.fetchinvoice(q["bolt12"], quantity=1, amount_msat=1)

    # Single use: the second request after a payment is refused by l3.
    once = l3.rpc.offer(2000, "one ticket", single_use=True)
    assert once["single_use"]
    first = l1.rpc.fetchinvoice(once["bolt12"])
    assert l1.rpc.pay(first["invoice"])["status"] == "complete"
    with pytest.raises(RpcError) as e:
        l1.rpc.fetchinvoice(once["bolt12"])
    assert e.value.error["code"] == 1004 and "already" in e.value.error["message"]
    # Paying the same invoice again is not a second payment.
    assert l1.rpc.pay(first["invoice"])["payment_preimage"] == l1.rpc.listsendpays()["payments"][-1]["payment_preimage"]
    assert len([i for i in l3.rpc.listinvoices()["invoices"] if i["status"] == "paid"]) == 1

    # Disabled, then enabled again.
    l3.rpc.disableoffer(anyamt["offer_id"])
    with pytest.raises(RpcError) as e:
        l1.rpc.fetchinvoice(anyamt["bolt12"], amount_msat=5000)
    assert e.value.error["code"] == 1004
    with pytest.raises(RpcError) as e:
        l3.rpc.disableoffer(anyamt["offer_id"])
    assert e.value.error["code"] == 1001
    assert l3.rpc.enableoffer(anyamt["offer_id"])["active"] is True
    assert l3.rpc.listoffers(active_only=True)["offers"]

    # Offers and their state survive a restart; l3 still answers.
    l3.restart()
    l3.rpc.connect(l2.info["id"], "127.0.0.1", l2.port)
    assert {o["offer_id"]: o["used"] for o in l3.rpc.listoffers()["offers"]}[once["offer_id"]] is True
    assert l1.rpc.decode(l1.rpc.fetchinvoice(q["bolt12"], quantity=3)["invoice"])["invoice_amount_msat"] == 3000

    # Expired: refused by the payer before anything is sent.
    soon = l3.rpc.offer(1000, "flash sale", absolute_expiry=int(time.time()) + 2)
    time.sleep(3)
    with pytest.raises(RpcError) as e:
        l1.rpc.fetchinvoice(soon["bolt12"])
    assert e.value.error["code"] == 1002

    # Parameters.
    with pytest.raises(RpcError) as e:
        l3.rpc.offer(0, "nothing")
    assert e.value.error["code"] == -32602 and "amount" in e.value.error["message"]
    with pytest.raises(RpcError) as e:
        l3.rpc.offer(1000)
    assert e.value.error["code"] == -32602
    with pytest.raises(RpcError) as e:
        l1.rpc.fetchinvoice("lno1qqqq")
    assert e.value.error["code"] == -32602
    with pytest.raises(RpcError) as e:
        l1.rpc.call("invoicerequest", {"amount": 1000, "description": "refund"})
    assert "not supported" in e.value.error["message"]


def _tampered_payment(l1, l2, invoice_text: str, tamper_hop: int | None, underpay: int = 0) -> dict:
    """Send an HTLC along the invoice's blinded path with hop `tamper_hop`'s encrypted data damaged, or `underpay`
    msat short (sendonion, as a payer that is not Ampere could); return waitsendpay's error data."""
    from ampere.ln.blinding import blinded_route_payloads, payinfo_fee
    from ampere.ln.offers import decode_string
    from ampere.ln.onion import create_onion
    from ampere.wire.messages import BlindedPath, BlindedPathHop

    inv = decode_string(invoice_text).tlv
    path, info = inv.invoice_paths[0], inv.invoice_blindedpay[0]
    hops = list(path.path)
    if tamper_hop is not None:
        data = bytearray(hops[tamper_hop].encrypted_recipient_data)
        data[0] ^= 1
        hops[tamper_hop] = BlindedPathHop(blinded_node_id=hops[tamper_hop].blinded_node_id,
                                          encrypted_recipient_data=bytes(data))
    bad = BlindedPath(first_node_id=path.first_node_id, first_path_key=path.first_path_key, path=tuple(hops))
    amount = inv.invoice_amount - underpay
    base = l1.rpc.getinfo()["blockheight"] + 1
    onion, secrets = create_onion(os.urandom(32), blinded_route_payloads(bad, amount, amount, base),
                                  inv.invoice_payment_hash)
    l1.rpc.sendonion(onion.hex(), {"id": l2.info["id"], "amount_msat": amount + payinfo_fee(
        amount, info.fee_base_msat, info.fee_proportional_millionths), "delay": info.cltv_expiry_delta},
        inv.invoice_payment_hash.hex(), shared_secrets=[s.hex() for s in secrets])
    with pytest.raises(RpcError) as e:
        l1.rpc.waitsendpay(inv.invoice_payment_hash.hex(), 60)
    return e.value.error


def test_errors_inside_blinded_path(line):
    """BOLT 4: an error inside a blinded path is invalid_onion_blinding, whoever found it; the recipient's
    (l3: update_fail_malformed_htlc to l2) is turned into the introduction node's own invalid_onion_blinding."""
    l1, l2, l3 = line
    offer = l3.rpc.offer(5000, "blinded errors")
    # l3's data damaged, then l2's (the introduction node's), then an HTLC 1000 msat short of the invoice (wrong
    # amount: l3 refuses it, and says so only as invalid_onion_blinding).
    for tamper, underpay in ((1, 0), (0, 0), (None, 1000)):
        fetched = l1.rpc.fetchinvoice(offer["bolt12"])
        err = _tampered_payment(l1, l2, fetched["invoice"], tamper, underpay)
        assert err["data"]["failcode"] == 0x8000 | 0x4000 | 24, err
        assert err["data"]["failcodename"] == "WIRE_INVALID_ONION_BLINDING"
        assert err["data"]["erring_node"] == l2.info["id"]
    assert all(i["status"] == "unpaid" for i in l3.rpc.listinvoices()["invoices"])
    # Both failed forwards are l2's; the invoices stay payable.
    assert l1.rpc.pay(fetched["invoice"])["status"] == "complete"


def test_route_to_introduction_node(node_factory_chain):
    """l1 -> l2 -> l3 -> l4: l4's invoice path starts at l3, so l1 routes an ordinary onion to l3 (through l2) and
    the blinded part from there; the invoice_request also goes the long way, through the public graph."""
    l1, l2, l3, l4 = node_factory_chain.line_graph(4, FUND, announce_channels=True, wait_for_announce=True)
    offer = l4.rpc.offer(7000, "far away")
    fetched = l1.rpc.fetchinvoice(offer["bolt12"])
    assert [p["first_node_id"] for p in l1.rpc.decode(fetched["invoice"])["invoice_paths"]] == [l3.info["id"]]
    res = l1.rpc.pay(fetched["invoice"])
    assert res["status"] == "complete" and res["destination"] == l4.info["id"]
    assert l4.rpc.listinvoices()["invoices"][0]["status"] == "paid"
    assert [f["status"] for f in l2.rpc.listforwards()["forwards"]] == ["settled"]
    assert [f["status"] for f in l3.rpc.listforwards()["forwards"]] == ["settled"]


def test_private_node_offer_has_paths(node_factory_chain):
    """l3's only channel (to l2) is unannounced: its offer carries a blinded path introduced by l2, the public
    node, and l1 reaches l3 through it without ever connecting to l3."""
    f = node_factory_chain
    l1, l2, l3 = (f.get_node(listen=True, **{"dev-fast-gossip": True}) for _ in range(3))
    f.fundchannel(l1, l2, FUND, announce=True)
    f.fundchannel(l2, l3, FUND, announce=False)
    f.mine(6, [l1, l2, l3])
    f.wait_for_channels([l1, l2, l3], 2)
    offer = l3.rpc.offer(4000, "private shop")
    dec = l1.rpc.decode(offer["bolt12"])
    assert [p["first_node_id"] for p in dec["offer_paths"]] == [l2.info["id"]]
    assert dec["offer_issuer_id"] == l3.info["id"]
    # Deterministic: the same offer again is the same offer.
    assert l3.rpc.offer(4000, "private shop")["offer_id"] == offer["offer_id"]
    fetched = l1.rpc.fetchinvoice(offer["bolt12"])
    assert l1.rpc.pay(fetched["invoice"])["status"] == "complete"
    assert l3.rpc.listinvoices()["invoices"][0]["status"] == "paid"
    assert l1.rpc.listpeers(l3.info["id"])["peers"] == []  # never connected to l3
