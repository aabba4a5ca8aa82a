"""A mixed five-node line, Ampere - CLN - Ampere - CLN - Ampere, with announced channels: gossip each way (every
node learns every channel and every node_announcement, whichever implementation made it), `pay` end to end in
both directions without route hints, and forwarding Ampere -> CLN -> Ampere and CLN -> Ampere -> CLN with the fees
each forwarder set with `setchannel` and the CLTV delta it was started with (`cltv-delta`), checked on the HTLCs
themselves while the payee's plugin holds them."""

from __future__ import annotations

import os

import pytest

from ampere.testing.nodes import wait_for

pytestmark = pytest.mark.cln

HODL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins", "hodl.py")
KINDS = ["ampere", "cln", "ampere", "cln", "ampere"]
CLTV = [34, 13, 17, 19, 34]  # each node's cltv-delta (the ends' do not matter)
FEES = {1: (1_000, 100), 2: (2_000, 200), 3: (3_000, 300)}  # forwarder index -> (fee_base_msat, fee_ppm)


def fee(base_ppm, amount: int) -> int:
    base, ppm = base_ppm
    return base + amount * ppm // 1_000_000


def test_mixed_line_gossip_forwarding_pay(node_factory):
    opts = [{"cltv-delta": d} for d in CLTV]
    opts[0]["plugin"] = opts[4]["plugin"] = HODL
    nodes = node_factory.line_graph(KINDS, fundamount=1_000_000, announce_channels=True, wait_for_announce=True,
                                    opts=opts)
    l1, l2, l3, l4, l5 = nodes
    ids = [n.node_id for n in nodes]

    # Gossip: every node has every channel (both directions, checked by line_graph) and every node_announcement.
    for n in nodes:
        wait_for(lambda n=n: sorted(x["nodeid"] for x in n.rpc.listnodes()["nodes"] if "last_timestamp" in x)
                 == sorted(ids), 60, f"{n.implementation} has every node_announcement")
        known = {x["nodeid"]: x for x in n.rpc.listnodes()["nodes"]}
        for other in nodes:
            assert known[other.node_id]["alias"] == other.info["alias"]

    # The forwarders set their fees for the outgoing direction of both ways through them.
    for i, (base, ppm) in FEES.items():
        r = nodes[i].rpc.setchannel("all", base, ppm)
        assert len(r["channels"]) == 2
    # ... which every node learns from the channel_updates (both directions of l2-l3 from CLN and Ampere).
    expected = {}
    for i in FEES:
        for peer in (nodes[i - 1], nodes[i + 1]):
            scid = nodes[i].rpc.listpeerchannels(peer.node_id)["channels"][0]["short_channel_id"]
            expected[(scid, ids[i])] = (FEES[i][0], FEES[i][1], CLTV[i])
    for n in nodes:
        def learned(n=n):
            seen = {(c["short_channel_id"], c["source"]): (c["base_fee_millisatoshi"], c["fee_per_millionth"],
                                                           c["delay"]) for c in n.rpc.listchannels()["channels"]}
            return all(seen.get(k) == v for k, v in expected.items())
        wait_for(learned, 60, f"{n.implementation} learns the forwarders' fees and CLTV deltas")

    # Pay each way end to end, held at the payee so the HTLCs can be read at every hop. (The channels were opened
    # from the left: the way back can carry what the first payment moved right, less the 1% reserves.)
    for payer, payee, path, amount in ((l1, l5, [0, 1, 2, 3, 4], 50_000_000), (l5, l1, [4, 3, 2, 1, 0], 20_000_000)):
        inv = payee.rpc.invoice(amount, f"hodl-{payer.info['alias']}", "across the line")
        final_cltv = payer.rpc.decode(inv["bolt11"])["min_final_cltv_expiry"]
        route = payer.rpc.getroute(payee.node_id, amount, 1, cltv=final_cltv)["route"]
        assert [h["id"] for h in route] == [ids[i] for i in path[1:]]
        sent = payer.rpc.call("sendpay", {"route": route,
                                          "payment_hash": inv["payment_hash"],
                                          "payment_secret": inv["payment_secret"], "amount_msat": amount})
        # Each forwarder's fee is on what it sends on; from the payee back to the payer, amounts grow by it.
        wanted = amount
        expect_out = {}
        for i in reversed(path[1:-1]):
            expect_out[i] = wanted
            wanted += fee(FEES[i], wanted)
        assert sent["amount_sent_msat"] == wanted
        wait_for(lambda: payee.rpc.call("listheld")["held"].get(inv["payment_hash"]) == 1, 30, "held at payee")
        for i in path[1:-1]:
            prev, nxt = nodes[path[path.index(i) - 1]], nodes[path[path.index(i) + 1]]
            hin = [h for h in nodes[i].rpc.listpeerchannels(prev.node_id)["channels"][0]["htlcs"]
                   if h["payment_hash"] == inv["payment_hash"]][0]
            hout = [h for h in nodes[i].rpc.listpeerchannels(nxt.node_id)["channels"][0]["htlcs"]
                    if h["payment_hash"] == inv["payment_hash"]][0]
            assert hout["amount_msat"] == expect_out[i]
            assert hin["amount_msat"] - hout["amount_msat"] == fee(FEES[i], expect_out[i])
            assert hin["expiry"] - hout["expiry"] == CLTV[i], (nodes[i].implementation, hin, hout)
        payee.rpc.call("release", {"payment_hash": inv["payment_hash"]})
        assert payer.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"
        for i in path[1:-1]:
            fwd = [f for f in nodes[i].rpc.listforwards(status="settled")["forwards"]
                   if f["out_msat"] == expect_out[i]]
            assert len(fwd) == 1 and fwd[0]["fee_msat"] == fee(FEES[i], expect_out[i]), fwd

    # `pay` without route hints, both ways, through every kind of hop.
    for payer, payee in ((l1, l5), (l5, l1)):
        inv = payee.rpc.invoice(10_000_000, f"pay-{payer.info['alias']}", "pay across")
        r = payer.rpc.pay(inv["bolt11"])
        assert r["status"] == "complete" and r["amount_msat"] == 10_000_000
        assert r["amount_sent_msat"] > 10_000_000  # three forwarders took their fees
