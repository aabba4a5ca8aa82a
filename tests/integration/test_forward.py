"""Forwarding on amp-chaind: three nodes in a line (l1 -> l2 -> l3), l3's channel reached through its invoice's
route hint; l2 earns exactly its advertised fee, listforwards and forward_event agree; fee and CLTV mismatches
at l2 fail with the right error and pay learns from them; kill -9 of l2 while it holds a forward, and right after
the write that stores a forward (row, outgoing HTLC and commitment in one transaction)."""

from __future__ import annotations

import os

import pytest
from pyln.client import RpcError

from ampere.testing.nodes import wait_for
from ampere.testing.schema import validate

PLUGINS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins")
FUND = 1_000_000  # sat per channel


def fee(base: int, ppm: int, amount: int) -> int:
    # BOLT #7: fee_base_msat + ( amount_to_forward * fee_proportional_millionths / 1000000 )
    return base + amount * ppm // 1_000_000


def forward_events(node) -> list[dict]:
    return [n["forward_event"] for n in node.rpc.call("seen")["received"] if "forward_event" in n]


def test_pay_through_line_and_fees(node_factory_chain):
    l1, l2, l3 = node_factory_chain.line_graph(
        3, FUND, opts=[{}, {"plugin": os.path.join(PLUGINS, "listener.py")}, {}])
    scid12 = l1.rpc.listpeerchannels(l2.info["id"])["channels"][0]["short_channel_id"]
    scid23 = l2.rpc.listpeerchannels(l3.info["id"])["channels"][0]["short_channel_id"]

    amount = 50_000_000
    inv = l3.rpc.invoice(amount, "line-1", "through l2")
    decoded = l3.rpc.decode(inv["bolt11"])
    # The unannounced l2 -> l3 channel is in the invoice's route hint.
    assert [h["short_channel_id"] for h in decoded["routes"][0]] == [scid23]
    res = l1.rpc.pay(inv["bolt11"])
    validate("pay", res)
    assert res["status"] == "complete" and res["amount_msat"] == amount
    expected_fee = fee(1, 10, amount)  # l2's defaults: --fee-base=1, --fee-per-satoshi=10
    assert res["amount_sent_msat"] == amount + expected_fee
    assert res["destination"] == l3.info["id"]
    assert l3.rpc.listinvoices("line-1")["invoices"][0]["status"] == "paid"

    fwds = l2.rpc.listforwards()["forwards"]
    assert len(fwds) == 1
    f = fwds[0]
    assert f["status"] == "settled" and f["in_channel"] == scid12 and f["out_channel"] == scid23
    assert f["in_msat"] == amount + expected_fee and f["out_msat"] == amount and f["fee_msat"] == expected_fee
    assert f["resolved_time"] >= f["received_time"]
    assert l2.rpc.listforwards(status="settled", in_channel=scid12)["forwards"] == fwds
    assert l2.rpc.listforwards(status="failed")["forwards"] == []
    assert l2.rpc.getinfo()["fees_collected_msat"] == expected_fee
    # forward_event: offered then settled, agreeing with listforwards.
    events = wait_for(lambda: (lambda e: e if len(e) >= 2 else None)(forward_events(l2)), 10, "forward events")
    assert [e["status"] for e in events] == ["offered", "settled"]
    for e in events:
        validate("notification/forward_event", e)  # CLN keeps this notification's fields under "response"
        assert e["payment_hash"] == inv["payment_hash"]
        assert e["in_channel"] == scid12 and e["out_channel"] == scid23
        assert e["in_msat"] == f["in_msat"] and e["out_msat"] == f["out_msat"] and e["fee_msat"] == f["fee_msat"]
    assert events[1]["resolved_time"] == f["resolved_time"]

    pays = l1.rpc.listpays(inv["bolt11"])["pays"]
    assert len(pays) == 1 and pays[0]["status"] == "complete"
    assert pays[0]["preimage"] == res["payment_preimage"] and pays[0]["amount_sent_msat"] == res["amount_sent_msat"]

    # Fees: l2 now asks more than l3's hint says.  The first attempt fails at l2 with fee_insufficient
    # (carrying l2's channel_update); pay corrects the hint from it and succeeds, paying the new fee exactly.
    # (The invoice comes first: l2 tells l3 its new fees at once, and later invoices' hints carry them.)
    inv2 = l3.rpc.invoice(amount, "line-2", "higher fee")
    l2.rpc.setchannel(scid23, feebase=2000, feeppm=500)
    res2 = l1.rpc.pay(inv2["bolt11"])
    assert res2["status"] == "complete"
    assert res2["amount_sent_msat"] == amount + fee(2000, 500, amount)
    assert res2["parts"] == 2
    failed = l2.rpc.listforwards(status="local_failed")["forwards"]
    assert len(failed) == 1 and failed[0]["failreason"] == "WIRE_FEE_INSUFFICIENT"
    status = l1.rpc.paystatus(inv2["bolt11"])["pay"][0]
    assert "WIRE_FEE_INSUFFICIENT" in status["attempts"][0]["failure"]["message"]

    # CLTV: l3's hint promises less delay than l2 wants (l3 signs, through createinvoice, an invoice whose hint
    # says 6 blocks; l3's own hints carry l2's real channel_update): the first attempt fails with
    # incorrect_cltv_expiry (l2's channel_update inside), then pay succeeds.
    l2.rpc.setchannel(scid23, feebase=1, feeppm=10)  # fees back to what the hint says
    from dataclasses import replace

    from ampere.ln import invoice as bolt11_codec

    preimage = "33" * 32
    draft = bolt11_codec.decode(l3.rpc.invoice(amount, "line-3-draft", "cltv", preimage=preimage)["bolt11"])
    l3.rpc.delinvoice("line-3-draft", "unpaid")
    hop = replace(draft.route_hints[0][0], cltv_expiry_delta=6)
    draft = replace(draft, route_hints=[[hop]], payee=None, n_field=False, signature=None)
    inv3 = l3.rpc.createinvoice(bolt11_codec.encode(draft, bytes([1] * 32)), "line-3", preimage)
    assert l3.rpc.decode(inv3["bolt11"])["routes"][0][0]["cltv_expiry_delta"] == 6
    res3 = l1.rpc.pay(inv3["bolt11"])
    assert res3["status"] == "complete" and res3["amount_sent_msat"] == amount + fee(1, 10, amount)
    assert res3["parts"] == 2
    reasons = [f.get("failreason") for f in l2.rpc.listforwards(status="local_failed")["forwards"]]
    assert reasons == ["WIRE_FEE_INSUFFICIENT", "WIRE_INCORRECT_CLTV_EXPIRY"]

    # delforward removes one resolved forward; an offered or unknown one cannot be removed (1401).
    lf = l2.rpc.listforwards(status="local_failed")["forwards"][0]
    assert l2.rpc.delforward(lf["in_channel"], lf["in_htlc_id"], "local_failed") == {}
    assert len(l2.rpc.listforwards(status="local_failed")["forwards"]) == 1
    with pytest.raises(RpcError) as e:
        l2.rpc.delforward(lf["in_channel"], lf["in_htlc_id"], "local_failed")
    assert e.value.error["code"] == 1401

    # A fee limit below what l2 charges: too expensive (206), nothing sent.
    inv4 = l3.rpc.invoice(amount, "line-4", "too expensive")
    with pytest.raises(RpcError) as e:
        l1.rpc.pay(inv4["bolt11"], maxfee=100)
    assert e.value.error["code"] == 206
    assert l1.rpc.listpays(inv4["bolt11"])["pays"] == []


def test_forward_survives_kill9(node_factory_chain):
    """l2 is killed with kill -9 while it holds a forward (l3's HODL plugin holds the HTLC), then restarted: the
    forward resolves exactly once, without loss, on all three nodes."""
    from concurrent.futures import ThreadPoolExecutor

    l1, l2, l3 = node_factory_chain.line_graph(3, FUND, opts=[{}, {}, {"plugin": os.path.join(PLUGINS, "hodl.py")}])
    amount = 20_000_000
    inv = l3.rpc.invoice(amount, "hodl-kill", "held while l2 dies")
    l3_before = sum(c["to_us_msat"] for c in l3.rpc.listpeerchannels()["channels"])
    with ThreadPoolExecutor(1) as pool:
        paying = pool.submit(l1.rpc.pay, inv["bolt11"])
        wait_for(lambda: l3.rpc.call("listheld")["held"].get(inv["payment_hash"]) == 1, 30, "held at l3")
        assert [f["status"] for f in l2.rpc.listforwards()["forwards"]] == ["offered"]
        l2.kill()
        l2.killed = False  # restarted below: it must end cleanly
        l2.start()
        # After the restart the forward is still one offered forward (not offered again).
        assert [f["status"] for f in l2.rpc.listforwards()["forwards"]] == ["offered"]
        wait_for(lambda: all(c["peer_connected"] and c["state"] == "CHANNELD_NORMAL"
                             for c in l2.rpc.listpeerchannels()["channels"])
                 and len(l2.rpc.listpeerchannels()["channels"]) == 2, 30, "l2 reconnected")
        assert l3.rpc.call("release", [inv["payment_hash"]])["released"] == 1
        res = paying.result(timeout=60)
    assert res["status"] == "complete" and res["amount_msat"] == amount
    expected_fee = fee(1, 10, amount)
    assert res["amount_sent_msat"] == amount + expected_fee
    fwds = l2.rpc.listforwards()["forwards"]
    assert len(fwds) == 1 and fwds[0]["status"] == "settled" and fwds[0]["fee_msat"] == expected_fee
    assert l3.rpc.listinvoices("hodl-kill")["invoices"][0]["status"] == "paid"
    # No HTLC is left anywhere, and l3 holds exactly the amount more.
    for n in (l1, l2, l3):
        wait_for(lambda n=n: all(not c.get("htlcs") for c in n.rpc.listpeerchannels()["channels"]), 30, "no htlcs")
    assert sum(c["to_us_msat"] for c in l3.rpc.listpeerchannels()["channels"]) == l3_before + amount
    assert l2.rpc.getinfo()["fees_collected_msat"] == expected_fee


@pytest.mark.parametrize("point", ["UpdateAddHtlc:1", "UpdateFulfillHtlc:1"])
def test_forward_kill9_after_its_write(node_factory_chain, point):
    """The forward's row, its outgoing HTLC and the commitment_signed covering it are one write at l2 (issue 18).
    l2 dies by kill -9 right after that write, before update_add_htlc leaves (--dev-crash-before=UpdateAddHtlc):
    after the restart the row ties the stored outgoing HTLC to the incoming one, so the HTLC is retransmitted, not
    forwarded a second time, and the payment completes once, without loss.
    UpdateFulfillHtlc: l2 dies right after the write of the incoming HTLC's fulfil, which l2 starts as soon as it
    reads l3's update_fulfill_htlc, before it writes that (switch.py, manager.on_preimage_learned): whichever of
    the two channels' writes made it, the restart settles both sides once (l3 retransmits its fulfil if needed)."""
    from concurrent.futures import ThreadPoolExecutor

    l1, l2, l3 = node_factory_chain.line_graph(3, FUND, opts=[{}, {"dev-crash-before": point}, {}])
    amount = 30_000_000
    inv = l3.rpc.invoice(amount, "crash-fwd", "l2 dies after the forward's write")
    l3_before = sum(c["to_us_msat"] for c in l3.rpc.listpeerchannels()["channels"])
    with ThreadPoolExecutor(1) as pool:
        paying = pool.submit(l1.rpc.pay, inv["bolt11"])
        wait_for(lambda: not l2.is_running(), 30, "l2's crash")
        l2.options.pop("dev-crash-before")
        l2.start()
        res = paying.result(timeout=120)
    assert res["status"] == "complete" and res["amount_msat"] == amount
    expected_fee = fee(1, 10, amount)
    assert res["amount_sent_msat"] == amount + expected_fee
    fwds = l2.rpc.listforwards()["forwards"]
    assert len(fwds) == 1 and fwds[0]["status"] == "settled" and fwds[0]["fee_msat"] == expected_fee, fwds
    assert l3.rpc.listinvoices("crash-fwd")["invoices"][0]["status"] == "paid"
    for n in (l1, l2, l3):
        wait_for(lambda n=n: all(not c.get("htlcs") for c in n.rpc.listpeerchannels()["channels"]), 30, "no htlcs")
    assert sum(c["to_us_msat"] for c in l3.rpc.listpeerchannels()["channels"]) == l3_before + amount
    assert l2.rpc.getinfo()["fees_collected_msat"] == expected_fee


def test_htlc_accepted_forward_to(node_factory_chain):
    # l2 has two channels to l3; the onion names the one in l3's route hint, and l2's plugin answers
    # htlc_accepted with `forward_to` the other: the forward goes out there, and the payment completes.
    l1, l2, l3 = node_factory_chain.line_graph(3, FUND, opts=[{}, {"plugin": os.path.join(PLUGINS, "fwdto.py")}, {}])
    node_factory_chain.fundchannel(l2, l3, FUND)
    node_factory_chain.sync(l1)  # (fundchannel waited for l2 and l3 only: l1 pays with the chain's height)
    chans = {c["short_channel_id"]: c["channel_id"] for c in l2.rpc.listpeerchannels(l3.info["id"])["channels"]
             if c["state"] == "CHANNELD_NORMAL"}
    assert len(chans) == 2
    amount = 20_000_000
    inv = l3.rpc.invoice(amount, "fwdto", "forward_to")
    hinted = l3.rpc.decode(inv["bolt11"])["routes"][0][0]["short_channel_id"]
    (other,) = [scid for scid in chans if scid != hinted]
    l2.rpc.call("fwdto", [chans[other]])
    res = l1.rpc.pay(inv["bolt11"])
    assert res["status"] == "complete"
    settled = l2.rpc.listforwards(status="settled")["forwards"]
    assert [f["out_channel"] for f in settled] == [other]
    assert l3.rpc.listinvoices("fwdto")["invoices"][0]["status"] == "paid"
