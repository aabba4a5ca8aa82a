"""Channels between real ampd processes on amp-chaind: opening (and refusing to), the RPC shapes, HTLC updates
through the channel manager's interface (developer commands), reestablish after restarts, kill -9 at exact
points of the open and of an update, and a mutual close that credits both wallets.

Every RPC result is checked against CLN's schema by the node fixture's RPC client."""
from __future__ import annotations

import json
import os

import pytest
from pyln.client import RpcError

from ampere.testing.nodes import wait_for
from ampere.testing.schema import validate_hook, validate_notification

PLUGINS = os.path.join(os.path.dirname(__file__), "..", "plugins")
DEV = {"developer": None, "dev-autofulfill": None}
CAPACITY_MSAT = 10**9


def chan(node, peer) -> dict:
    return node.rpc.listpeerchannels(peer.node_id)["channels"][-1]


def offer(l1, l2, amount_msat: int = 10_000_000, wait: bool = True) -> dict:
    return l1.rpc.call("dev-offer-htlc", {"id": l2.node_id, "amount_msat": amount_msat, "wait": wait})


def settled(l1, l2, to_l2_msat: int) -> None:
    """Both sides agree: connected, no HTLC left, and the balances say `to_l2_msat` moved from l1 to l2."""
    def ok():
        a, b = chan(l1, l2), chan(l2, l1)
        return (a.get("reestablished") and b.get("reestablished") and not a["htlcs"] and not b["htlcs"]
                and a["to_us_msat"] == CAPACITY_MSAT - to_l2_msat and b["to_us_msat"] == to_l2_msat
                and a["state"] == b["state"] == "CHANNELD_NORMAL")
    try:
        wait_for(ok, 45, f"a settled channel with {to_l2_msat}msat on l2's side")
    except TimeoutError as e:
        raise TimeoutError(f"{e}\nl1: {chan(l1, l2)}\nl2: {chan(l2, l1)}\n"
                           f"l1 log:\n{_tail(l1)}\nl2 log:\n{_tail(l2)}") from None


def _tail(node, n: int = 40) -> str:
    lines = [ln for ln in node.logs(False).splitlines() if "chainwatch" not in ln and "gossip" not in ln]
    return "\n".join(lines[-n:])


def unreserved_outputs(node) -> list:
    return sorted((o["txid"], o["output"], o["amount_msat"], o["status"], o["reserved"])
                  for o in node.rpc.listfunds()["outputs"])


def test_open_channel_shapes_and_notifications(node_factory_chain):
    listener = os.path.join(PLUGINS, "listener.py")
    l1, l2 = node_factory_chain.line_graph(2, opts={**DEV, "plugin": listener})
    a, b = chan(l1, l2), chan(l2, l1)
    assert a["state"] == b["state"] == "CHANNELD_NORMAL"
    assert a["short_channel_id"] == b["short_channel_id"] and a["channel_id"] == b["channel_id"]
    assert (a["opener"], b["opener"]) == ("local", "remote")
    assert (a["to_us_msat"], b["to_us_msat"]) == (CAPACITY_MSAT, 0)
    # option_anchors by default between two Ampere nodes (issue 15), as CLN does.
    assert a["total_msat"] == CAPACITY_MSAT and a["features"] == b["features"] == ["option_static_remotekey",
                                                                                 "option_anchors"]
    assert a["channel_type"] == b["channel_type"] == {"bits": [12, 22], "names": ["static_remotekey/even",
                                                                                  "anchors/even"]}
    assert a["our_reserve_msat"] == b["their_reserve_msat"] == 10_000_000  # 1% of the funding
    assert 0 < a["spendable_msat"] < CAPACITY_MSAT - 10_000_000 and b["spendable_msat"] == 0
    assert a["direction"] != b["direction"]
    # The short channel id is the funding transaction's position in its block.
    height, txindex, outnum = map(int, a["short_channel_id"].split("x"))
    block = node_factory_chain.chaind.rpc("getblock", node_factory_chain.chaind.rpc("getblockhash", height))
    assert block["tx"][txindex] == a["funding_txid"] and outnum == a["funding_outnum"]
    funds = l1.rpc.listfunds()["channels"]
    assert funds == [{"peer_id": l2.node_id, "connected": True, "state": "CHANNELD_NORMAL",
                      "channel_id": a["channel_id"], "our_amount_msat": CAPACITY_MSAT, "amount_msat": CAPACITY_MSAT,
                      "funding_txid": a["funding_txid"], "funding_output": a["funding_outnum"],
                      "short_channel_id": a["short_channel_id"]}]
    info = l1.rpc.getinfo()
    assert (info["num_active_channels"], info["num_pending_channels"], info["num_inactive_channels"]) == (1, 0, 0)
    assert l1.rpc.listpeers(l2.node_id)["peers"][0]["num_channels"] == 1
    assert [c["new_state"] for c in a["state_changes"]] == ["CHANNELD_AWAITING_LOCKIN", "CHANNELD_NORMAL"]
    # Notifications: channel_state_changed on both, channel_opened on the acceptor.
    for node, opened in ((l1, False), (l2, True)):
        seen = wait_for(lambda node=node: [n for n in node.rpc.call("seen")["received"]
                                           if "channel_state_changed" in n or "channel_opened" in n]
                        if sum("channel_state_changed" in n for n in node.rpc.call("seen")["received"]) >= 2 else None,
                        10, "notifications")
        changes = [n["channel_state_changed"] for n in seen if "channel_state_changed" in n]
        for c in changes:
            validate_notification("channel_state_changed", c)
        assert [c["new_state"] for c in changes] == ["CHANNELD_AWAITING_LOCKIN", "CHANNELD_NORMAL"]
        assert changes[-1]["short_channel_id"] == a["short_channel_id"]
        opens = [n["channel_opened"] for n in seen if "channel_opened" in n]
        assert bool(opens) == opened
        for o in opens:
            validate_notification("channel_opened", o)
            assert o["funding_txid"] == a["funding_txid"] and o["funding_msat"] == CAPACITY_MSAT
    # setchannel: fees and HTLC limits, clamped to what the channel allows; persisted across a restart.
    r = l1.rpc.setchannel(a["short_channel_id"], feebase=7, feeppm=123, htlcmin=5, htlcmax=2 * CAPACITY_MSAT)
    e = r["channels"][0]
    assert (e["fee_base_msat"], e["fee_proportional_millionths"], e["maximum_htlc_out_msat"]) == (7, 123, CAPACITY_MSAT)
    assert "warning_htlcmax_too_high" in e
    # updates: our channel_update's values (local) and the peer's (remote), as CLN fills them.
    assert chan(l1, l2)["updates"]["local"] == {"htlc_minimum_msat": 5, "htlc_maximum_msat": CAPACITY_MSAT,
                                                "cltv_expiry_delta": l1.rpc.listconfigs("cltv-delta")["configs"]
                                                ["cltv-delta"]["value_int"],
                                                "fee_base_msat": 7, "fee_proportional_millionths": 123}
    wait_for(lambda: chan(l2, l1)["updates"].get("remote", {}).get("fee_base_msat") == 7, 20, "l1's new update at l2")
    assert chan(l2, l1)["updates"]["remote"]["fee_proportional_millionths"] == 123
    theirs, sent = chan(l1, l2)["updates"]["remote"], chan(l2, l1)["updates"]["local"]
    for k in ("fee_base_msat", "fee_proportional_millionths", "cltv_expiry_delta"):
        assert theirs[k] == sent[k]
    l1.wait_for_log(r"Received channel_update for channel %s/%d now ACTIVE" % (a["short_channel_id"], b["direction"]))
    with pytest.raises(RpcError) as err:
        l1.rpc.setchannel("1x1x1", feebase=1)
    assert err.value.error["code"] == -1
    with pytest.raises(RpcError) as err:
        offer(l1, l2, amount_msat=4)  # below our own htlc minimum now
    assert err.value.error["data"]["failcode"] == 0x1000 | 11
    l1.restart()
    wait_for(lambda: chan(l1, l2).get("reestablished"), 30, "reestablished")
    a = chan(l1, l2)
    assert (a["fee_base_msat"], a["fee_proportional_millionths"], a["minimum_htlc_out_msat"]) == (7, 123, 5)


def test_fundchannel_bad_input_changes_nothing(node_factory_chain):
    l1, l2 = node_factory_chain.get_nodes(2, listen=True)
    node_factory_chain.fund_wallet(l1, 300_000)
    node_factory_chain.connect(l1, l2)
    before = unreserved_outputs(l1)
    stranger = "02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    cases = [
        ((l2.node_id, 10**7), 301),                 # above the wallet's balance
        ((stranger, 100_000), 306),                 # a peer we do not know
        ((l2.node_id, 0), -32602),                  # zero
        ((l2.node_id, 100_000, "100perkw"), -32602),  # below the 253 perkw floor
        ((l2.node_id, "lots"), -32602),
    ]
    for args, code in cases:
        with pytest.raises(RpcError) as err:
            l1.rpc.fundchannel(*args)
        assert err.value.error["code"] == code, (args, err.value.error)
        assert err.value.error["message"]
        assert unreserved_outputs(l1) == before
    assert l1.rpc.listpeerchannels()["channels"] == [] and l2.rpc.listpeerchannels()["channels"] == []
    assert l1.rpc.listfunds()["channels"] == []
    # A peer that disconnected is "not connected" only while we share a channel; unknown otherwise.
    l1.rpc.disconnect(l2.node_id)
    with pytest.raises(RpcError) as err:
        l1.rpc.fundchannel(l2.node_id, 100_000)
    assert err.value.error["code"] == 306


def test_openchannel_hook_rejects_then_accepts(node_factory_chain, tmp_path):
    log = tmp_path / "openchannel.jsonl"
    l1 = node_factory_chain.get_node(listen=True)
    l2 = node_factory_chain.get_node(listen=True, plugin=os.path.join(PLUGINS, "openchannel_reject.py"),
                                     **{"openchannel-log": str(log), "openchannel-min-msat": 500_000_000})
    node_factory_chain.fund_wallet(l1, 1_200_000)
    node_factory_chain.connect(l1, l2)
    before = unreserved_outputs(l1)
    with pytest.raises(RpcError) as err:
        l1.rpc.fundchannel(l2.node_id, 200_000, announce=False, push_msat=1000)
    assert "openchannel_reject.py says no" in err.value.error["message"]
    assert unreserved_outputs(l1) == before
    assert l1.rpc.listpeerchannels()["channels"] == [] and l2.rpc.listpeerchannels()["channels"] == []
    payload = json.loads(log.read_text().splitlines()[0])
    validate_hook("openchannel", payload)
    p = payload["openchannel"]
    assert (p["id"], p["funding_msat"], p["push_msat"], p["channel_flags"]) == (l1.node_id, 200_000_000, 1000, 0)
    assert p["channel_type"] == {"bits": [12, 22], "names": ["static_remotekey/even", "anchors/even"]}
    # Large enough: the hook continues (with mindepth 1), the channel opens.
    res = node_factory_chain.fundchannel(l1, l2, 600_000)
    assert chan(l2, l1)["state"] == "CHANNELD_NORMAL" and res["mindepth"] == 1


def test_anchors_disabled_falls_back_to_static_remotekey(node_factory_chain):
    """CLN's `--dev-force-features=-23`: the node stops offering option_anchors, so channels with it (either way)
    are static_remotekey; asking it for anchors explicitly is refused by it, and refused at once by the node
    that disabled them."""
    l1 = node_factory_chain.get_node(listen=True)
    l2 = node_factory_chain.get_node(listen=True, **{"dev-force-features": "-23"})
    assert "option_anchors" not in str(l2.rpc.getinfo()["our_features"]) and l2.rpc.getinfo()["our_features"]
    assert not int(l2.rpc.getinfo()["our_features"]["init"], 16) >> 22 & 3
    assert int(l1.rpc.getinfo()["our_features"]["init"], 16) >> 23 & 1
    node_factory_chain.fund_wallet(l1, 2_000_000)
    node_factory_chain.fund_wallet(l2, 2_000_000)
    node_factory_chain.connect(l1, l2)
    with pytest.raises(RpcError) as err:   # l2 has anchors off: it refuses the explicit type (nothing reserved)
        l1.rpc.fundchannel(l2.node_id, 300_000, channel_type=[12, 22])
    assert "not supported" in err.value.error["message"]
    with pytest.raises(RpcError) as err:
        l2.rpc.fundchannel(l1.node_id, 300_000, channel_type=[12, 22])
    assert err.value.error["code"] == -32602 and "channel_type" in err.value.error["message"]
    with pytest.raises(RpcError) as err:
        l1.rpc.fundchannel(l2.node_id, 300_000, channel_type=[12, 20])
    assert err.value.error["code"] == -32602 and "channel_type" in err.value.error["message"]
    node_factory_chain.fundchannel(l1, l2, 300_000)
    node_factory_chain.fundchannel(l2, l1, 300_000)
    static = {"bits": [12], "names": ["static_remotekey/even"]}
    for node, peer in ((l1, l2), (l2, l1)):
        chans = node.rpc.listpeerchannels(peer.node_id)["channels"]
        assert len(chans) == 2 and all(c["channel_type"] == static for c in chans)
        assert all(c["features"] == ["option_static_remotekey"] for c in chans)


def test_htlcs_reestablish_after_restart_of_either_side(node_factory_chain):
    l1, l2 = node_factory_chain.line_graph(2, opts=DEV)
    r = offer(l1, l2)
    assert r["status"] == "fulfilled"
    settled(l1, l2, 10_000_000)
    # An HTLC whose onion l2 cannot use is failed back (by l2's payment layer): nothing moves.
    r = l1.rpc.call("dev-offer-htlc", {"id": l2.node_id, "amount_msat": 5_000_000, "payment_hash": "00" * 32,
                                       "wait": True})
    assert r["status"] == "failed"
    settled(l1, l2, 10_000_000)
    l1.restart()  # l1 reconnects at start-up
    settled(l1, l2, 10_000_000)
    assert offer(l1, l2)["status"] == "fulfilled"
    l2.restart()  # l1 reconnects (it remembers l2's address), with backoff
    settled(l1, l2, 20_000_000)
    assert offer(l1, l2)["status"] == "fulfilled"
    r = l1.rpc.call("dev-htlc-roundtrips", {"id": l2.node_id, "count": 20, "amount_msat": 1000, "parallel": 5})
    assert r["fulfilled"] == 20
    settled(l1, l2, 30_020_000)
    # Without --developer the HTLC commands do not exist.
    with pytest.raises(RpcError) as err:
        node_factory_chain.get_node().rpc.call("dev-offer-htlc", {"id": l1.node_id, "amount_msat": 1})
    assert err.value.error["code"] == -32601


@pytest.mark.parametrize("crasher,point", [("l2", "FundingSigned"), ("l1", "broadcast")])
def test_kill9_during_open(node_factory_chain, crasher, point):
    opts = {"l1": {}, "l2": {}}
    opts[crasher] = {"dev-crash-before": point}
    l1 = node_factory_chain.get_node(listen=True, **opts["l1"])
    l2 = node_factory_chain.get_node(listen=True, **opts["l2"])
    node_factory_chain.fund_wallet(l1, 1_200_000)
    node_factory_chain.connect(l1, l2)
    before = unreserved_outputs(l1)
    victim = l1 if crasher == "l1" else l2
    try:
        l1.rpc.fundchannel(l2.node_id, 1_000_000)
    except (RpcError, OSError, ValueError):
        pass  # the opener died under its own call, or the acceptor died before funding_signed
    wait_for(lambda: not victim.is_running(), 20, "the crash")
    victim.options.pop("dev-crash-before")
    victim.start()
    if crasher == "l2":
        # The acceptor remembers a channel it signed for; the opener never got funding_signed: nothing was
        # broadcast and the opener's coins are free again (BOLT 2 lets the acceptor forget it later).
        assert unreserved_outputs(l1) == before and l1.rpc.listpeerchannels()["channels"] == []
        assert chan(l2, l1)["state"] == "CHANNELD_AWAITING_LOCKIN"
        node_factory_chain.fundchannel(l1, l2, 900_000)
        assert [c["state"] for c in l2.rpc.listpeerchannels()["channels"]] == ["CHANNELD_AWAITING_LOCKIN",
                                                                             "CHANNELD_NORMAL"]
    else:
        # The opener persisted the channel, then died before broadcasting: it broadcasts on restart.
        txid = chan(l1, l2)["funding_txid"]
        wait_for(lambda: txid in node_factory_chain.chaind.rpc("getrawmempool"), 30, "funding rebroadcast")
        node_factory_chain.mine(3, [l1, l2])
        wait_for(lambda: chan(l1, l2)["state"] == chan(l2, l1)["state"] == "CHANNELD_NORMAL", 30)
        assert chan(l1, l2)["to_us_msat"] == 10**9


@pytest.mark.parametrize("crasher,point", [("l1", "CommitmentSigned"), ("l2", "RevokeAndAck"),
                                           ("l2", "UpdateFulfillHtlc"), ("l1", "RevokeAndAck:2")])
def test_kill9_during_htlc_update(node_factory_chain, crasher, point):
    l1, l2 = node_factory_chain.line_graph(2, opts=DEV)
    victim = l1 if crasher == "l1" else l2
    victim.stop()
    victim.options["dev-crash-before"] = point
    victim.start()
    wait_for(lambda: chan(l1, l2).get("reestablished") and chan(l2, l1).get("reestablished"), 30, "reestablish")
    try:
        offer(l1, l2, 30_000_000, wait=False)
    except (RpcError, OSError, ValueError):
        pass
    wait_for(lambda: not victim.is_running(), 20, "the crash")
    victim.options.pop("dev-crash-before")
    victim.start()
    # Reestablish retransmits what was lost; l2 (--dev-autofulfill) fulfils; both end with the same balances.
    settled(l1, l2, 30_000_000)
    offer(l1, l2, 1_000_000)
    settled(l1, l2, 31_000_000)


def test_mutual_close_credits_both_wallets(node_factory_chain):
    l1, l2 = node_factory_chain.line_graph(2, opts=DEV)
    offer(l1, l2, 300_000_000)
    settled(l1, l2, 300_000_000)
    l2_before = sum(o["amount_msat"] for o in l2.rpc.listfunds()["outputs"])
    res = l1.rpc.close(l2.node_id)
    assert res["type"] == "mutual" and len(res["txids"]) == 1
    txid = res["txids"][0]
    assert chan(l1, l2)["state"] in ("CLOSINGD_COMPLETE", "FUNDING_SPEND_SEEN", "ONCHAIN")
    wait_for(lambda: txid in node_factory_chain.chaind.rpc("getrawmempool"), 30, "closing tx in the mempool")
    node_factory_chain.mine(1, [l1, l2])

    def credited(node):
        return [o for o in node.rpc.listfunds()["outputs"] if o["txid"] == txid and o["status"] == "confirmed"]

    o2 = wait_for(lambda: credited(l2), 30, "l2's wallet credited")
    o1 = wait_for(lambda: credited(l1), 30, "l1's wallet credited")
    # The opener pays the closing fee; the acceptor gets exactly its balance.
    assert [o["amount_msat"] for o in o2] == [300_000_000]
    fee_msat = CAPACITY_MSAT - 300_000_000 - o1[0]["amount_msat"]
    assert 0 < fee_msat < 10_000_000
    assert sum(o["amount_msat"] for o in l2.rpc.listfunds()["outputs"]) == l2_before + 300_000_000
    wait_for(lambda: chan(l1, l2)["state"] in ("FUNDING_SPEND_SEEN", "ONCHAIN"), 30)
    assert l1.rpc.listfunds()["channels"][0]["state"] in ("FUNDING_SPEND_SEEN", "ONCHAIN")
    # Once the resolver has seen it buried, the channel moves to listclosedchannels.
    node_factory_chain.mine(100, [l1, l2])
    wait_for(lambda: l1.rpc.listclosedchannels()["closedchannels"], 30, "listclosedchannels")
    closed = l1.rpc.listclosedchannels()["closedchannels"][0]
    assert (closed["opener"], closed["closer"], closed["close_cause"]) == ("local", "local", "user")
    assert closed["final_to_us_msat"] == CAPACITY_MSAT - 300_000_000
    assert l1.rpc.listpeerchannels()["channels"] == []
    assert l1.rpc.getinfo()["num_active_channels"] == 0


def test_close_unilateral_after_timeout(node_factory_chain):
    l1, l2 = node_factory_chain.line_graph(2, opts=DEV)
    l2.stop()
    res = l1.rpc.close(l2.node_id, unilateraltimeout=1)
    assert res["type"] == "unilateral" and len(res["txs"]) == 1
    assert chan(l1, l2)["state"] == "AWAITING_UNILATERAL"
    wait_for(lambda: res["txids"][0] in node_factory_chain.chaind.rpc("getrawmempool"), 30, "commitment broadcast")
    with pytest.raises(RpcError):
        l1.rpc.close(l2.node_id)
