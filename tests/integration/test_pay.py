"""`pay`, `keysend`, `listpays` and `paystatus` on amp-chaind: multipath when no single channel can carry the
amount, an impossible amount, parameter errors (amountless, expired), keysend both ways, and seed 002's
pay-up-to.py plugin capping `pay` through the rpc_command hook, exactly as the seed shows it."""

from __future__ import annotations

import json
import os
import time

import pytest
from pyln.client import RpcError

from ampere.testing.schema import validate

PLUGINS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins")
FUND = 1_000_000  # sat per channel


# Seed 002's plugin, verbatim, as shipped in contrib/.
PAY_UP_TO = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "contrib", "plugins", "pay-up-to.py"))


def test_mpp_keysend_and_errors(node_factory_chain):
    l1, l2, l3 = node_factory_chain.line_graph(3, FUND)
    # l1's second channel toward l3's side: now l1 has two, of FUND sat each.
    node_factory_chain.fundchannel(l1, l3, FUND)
    spendable = [c["spendable_msat"] for c in l1.rpc.listpeerchannels()["channels"]]
    assert len(spendable) == 2

    # Neither channel can carry it alone; together they can: pay splits it.
    amount = max(spendable) + 300_000_000
    assert amount < sum(spendable) - 10_000_000
    inv = l3.rpc.invoice(amount, "mpp", "two routes")
    assert len(l3.rpc.decode(inv["bolt11"])["routes"]) == 2
    res = l1.rpc.pay(inv["bolt11"])
    validate("pay", res)
    assert res["status"] == "complete" and res["amount_msat"] == amount
    assert res["parts"] >= 2
    assert amount <= res["amount_sent_msat"] <= amount + amount * 5 // 1000  # within the default 0.5%
    assert l3.rpc.listinvoices("mpp")["invoices"][0]["status"] == "paid"
    sendpays = [p for p in l1.rpc.listsendpays(inv["bolt11"])["payments"] if p["status"] == "complete"]
    assert len(sendpays) >= 2 and sum(p["amount_msat"] for p in sendpays) == amount
    assert len({p["groupid"] for p in sendpays}) == 1
    pays = l1.rpc.listpays(payment_hash=inv["payment_hash"])["pays"]
    assert len(pays) == 1 and pays[0]["status"] == "complete" and pays[0]["number_of_parts"] == len(sendpays)
    # Paying it again returns the same success without sending anything.
    again = l1.rpc.pay(inv["bolt11"])
    assert again["payment_preimage"] == res["payment_preimage"]
    assert len(l1.rpc.listsendpays(inv["bolt11"])["payments"]) == len(l1.rpc.listsendpays(inv["bolt11"])["payments"])

    # More than all our channels hold: no route (205), nothing sent.
    big = l3.rpc.invoice(3 * FUND * 1000, "too-big", "impossible")
    with pytest.raises(RpcError) as e:
        l1.rpc.pay(big["bolt11"])
    assert e.value.error["code"] == 205
    assert l1.rpc.listsendpays(big["bolt11"])["payments"] == []

    # Amountless invoices need amount_msat; amounts on invoices that have one are refused.
    anyinv = l3.rpc.invoice("any", "any", "amountless")
    with pytest.raises(RpcError) as e:
        l1.rpc.pay(anyinv["bolt11"])
    assert e.value.error["code"] == -32602 and "amount_msat parameter required" in e.value.error["message"]
    with pytest.raises(RpcError) as e:
        l1.rpc.pay(inv["bolt11"], amount_msat=1000)
    assert e.value.error["code"] == -32602
    res_any = l1.rpc.pay(anyinv["bolt11"], amount_msat=12_345)
    assert res_any["amount_msat"] == 12_345 and l3.rpc.listinvoices("any")["invoices"][0]["status"] == "paid"
    # An expired invoice: 207, with now and expiry.
    old = l3.rpc.invoice(10_000, "old", "expires", expiry=1)
    time.sleep(2.1)
    with pytest.raises(RpcError) as e:
        l1.rpc.pay(old["bolt11"])
    assert e.value.error["code"] == 207 and e.value.error["data"]["expiry"] < e.value.error["data"]["now"]
    # Bad parameter combinations are refused before anything happens.
    with pytest.raises(RpcError) as e:
        l1.rpc.call("pay", {"bolt11": anyinv["bolt11"], "amount_msat": 1000, "maxfee": 10, "exemptfee": 5})
    assert e.value.error["code"] == -32602

    # keysend both ways over the l1-l2 channel (received by default, through an invoice made on the fly).
    ks = l1.rpc.keysend(l2.info["id"], 2_000_000)
    validate("keysend", ks)
    assert ks["status"] == "complete" and ks["amount_msat"] == 2_000_000 and ks["destination"] == l2.info["id"]
    got = [i for i in l2.rpc.listinvoices()["invoices"] if i["label"].startswith("keysend-")]
    assert len(got) == 1 and got[0]["status"] == "paid" and got[0]["amount_received_msat"] == 2_000_000
    assert got[0]["payment_hash"] == ks["payment_hash"]
    back = l2.rpc.keysend(l1.info["id"], 1_000_000, extratlvs={"7629169": "68656c6c6f"})
    assert back["status"] == "complete"
    got1 = [i for i in l1.rpc.listinvoices()["invoices"] if i["label"].startswith("keysend-")]
    assert len(got1) == 1 and got1[0]["status"] == "paid" and got1[0]["payment_hash"] == back["payment_hash"]
    # keysend to l3 with a route hint (l2's private channel to it); l1's own channel to l3 may serve as well.
    scid23 = l2.rpc.listpeerchannels(l3.info["id"])["channels"][0]["short_channel_id"]
    hint = [[{"id": l2.info["id"], "short_channel_id": scid23, "fee_base_msat": 1,
              "fee_proportional_millionths": 10, "cltv_expiry_delta": 34}]]
    ks3 = l1.rpc.call("keysend", {"destination": l3.info["id"], "amount_msat": 3_000_000, "routehints": hint})
    assert ks3["status"] == "complete" and ks3["amount_msat"] == 3_000_000
    assert any(i["payment_hash"] == ks3["payment_hash"] and i["status"] == "paid"
               for i in l3.rpc.listinvoices()["invoices"])

    # paystatus keeps the attempts of each pay.
    st = l1.rpc.paystatus(inv["bolt11"])["pay"]
    assert st and len(st[0]["attempts"]) == res["parts"]


def test_seed002_pay_up_to(node_factory_chain):
    """Seed 002 exactly: `l1-cli -k plugin subcommand=start plugin=$(pwd)/pay-up-to.py limit=0.001btc`, then an
    invoice of 0.002btc is refused by the plugin and one of 0.0001btc is paid."""
    l1, l2 = node_factory_chain.line_graph(2, FUND)
    plugin = PAY_UP_TO
    r = l1.cli("-k", "plugin", "subcommand=start", f"plugin={plugin}", "limit=0.001btc")
    assert r.returncode == 0, r.stderr
    assert any(p["name"] == plugin and p["active"] for p in json.loads(r.stdout)["plugins"])

    inv = l2.rpc.invoice("0.002btc", "inv", "too expensive pizza")
    r = l1.cli("pay", inv["bolt11"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"invoice_too_high": "0.002btc", "maximum_is": "0.001btc", "bolt11": inv["bolt11"]}
    assert l1.rpc.listpays(inv["bolt11"])["pays"] == []

    inv5 = l2.rpc.invoice("0.0001btc", "inv-5", "foo")
    r = l1.cli("pay", inv5["bolt11"])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "complete" and out["parts"] == 1
    assert out["amount_msat"] == 10_000_000 and out["amount_sent_msat"] == 10_000_000
    assert out["destination"] == l2.info["id"] and out["payment_hash"] == inv5["payment_hash"]
    assert l2.rpc.listinvoices("inv-5")["invoices"][0]["status"] == "paid"
