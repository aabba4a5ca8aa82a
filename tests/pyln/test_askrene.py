"""askrene layers as xpay/CLN tests use them with getroutes: create, disable a node or a channel direction,
list, remove; persistent layers survive a restart.  A channel only a layer knows carries a route; what
askrene-inform-channel, -reserve, -age learn or hold changes what getroutes finds."""
import time

import pytest
from pyln.client import LightningRpc, RpcError
from pyln.testing.utils import only_one


def test_askrene_layers(node_factory):
    l1, l2, l3 = node_factory.line_graph(3, wait_for_announce=True, opts={"may_reconnect": True})
    l1.wait_for_route(l3)

    def routes(*layers):
        return l1.rpc.getroutes(source=l1.info["id"], destination=l3.info["id"], amount_msat=10_000,
                                layers=["auto.localchans", *layers], maxfee_msat=1000, final_cltv=18)

    assert len(only_one(routes()["routes"])["path"]) == 2
    created = l1.rpc.call("askrene-create-layer", {"layer": "no_l2"})
    assert only_one(created["layers"])["disabled_nodes"] == []
    l1.rpc.call("askrene-disable-node", {"layer": "no_l2", "node": l2.info["id"]})
    with pytest.raises(RpcError, match="Could not find route"):
        routes("no_l2")
    # A channel direction disabled in another layer (persistent) has the same effect.
    scid = only_one(l2.rpc.listpeerchannels(l3.info["id"])["channels"])["short_channel_id"]
    direction = 0 if l2.info["id"] < l3.info["id"] else 1
    l1.rpc.call("askrene-create-layer", {"layer": "no_23", "persistent": True})
    l1.rpc.call("askrene-update-channel", {"layer": "no_23", "short_channel_id_dir": f"{scid}/{direction}",
                                           "enabled": False})
    with pytest.raises(RpcError, match="Could not find route"):
        routes("no_23")
    listed = {x["layer"]: x for x in l1.rpc.call("askrene-listlayers")["layers"]}
    assert listed["no_l2"]["disabled_nodes"] == [l2.info["id"]] and not listed["no_l2"]["persistent"]
    assert listed["no_23"]["channel_updates"] == [{"short_channel_id_dir": f"{scid}/{direction}", "enabled": False}]
    with pytest.raises(RpcError, match="already exists"):
        l1.rpc.call("askrene-create-layer", {"layer": "no_l2"})
    with pytest.raises(RpcError, match="unknown layer"):
        routes("nonesuch")
    with pytest.raises(RpcError, match="auto.include_fees is not supported"):
        routes("auto.include_fees")
    with pytest.raises(RpcError, match="Unknown layer"):
        l1.rpc.call("askrene-listlayers", {"layer": "nonesuch"})
    l1.rpc.call("askrene-remove-layer", {"layer": "no_l2"})
    assert [x["layer"] for x in l1.rpc.call("askrene-listlayers")["layers"]] == ["no_23"]
    # Only the persistent layer comes back after a restart.
    l1.restart()
    assert [x["layer"] for x in l1.rpc.call("askrene-listlayers")["layers"]] == ["no_23"]
    with pytest.raises(RpcError, match="Could not find route"):
        routes("no_23")
    # xpay's `layers` go to its route searches: with l2->l3 disabled the invoice cannot be paid; without, it is.
    l1.connect(l2)
    l1.wait_for_route(l3)
    inv = l3.rpc.invoice(5_000, "layered", "xpay with layers")["bolt11"]
    with pytest.raises(RpcError, match="layers: unknown layer"):
        l1.rpc.call("xpay", {"invstring": inv, "layers": ["nonesuch"]})
    with pytest.raises(RpcError):
        l1.rpc.call("xpay", {"invstring": inv, "layers": ["no_23"], "retry_for": 5})
    assert only_one(l3.rpc.listinvoices("layered")["invoices"])["status"] == "unpaid"
    assert l1.rpc.call("xpay", {"invstring": inv, "layers": []})["amount_msat"] == 5_000


# secp256k1's generator: a valid node id no node in the test has.
FAKE = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"


def test_askrene_created_channel_inform_reserve_age(node_factory):
    l1, l2, l3 = node_factory.line_graph(3, wait_for_announce=True)
    l1.wait_for_route(l3)

    def routes(amount, *layers):
        return l1.rpc.getroutes(source=l1.info["id"], destination=FAKE, amount_msat=amount,
                                layers=["auto.localchans", *layers], maxfee_msat=10_000, final_cltv=18)

    l1.rpc.call("askrene-create-layer", {"layer": "fake"})
    l1.rpc.call("askrene-create-channel", {"layer": "fake", "source": l3.info["id"], "destination": FAKE,
                                           "short_channel_id": "1x2x3", "capacity_msat": 100_000})
    with pytest.raises(RpcError, match="channel already exists"):
        l1.rpc.call("askrene-create-channel", {"layer": "fake", "source": l3.info["id"], "destination": FAKE,
                                               "short_channel_id": "1x2x3", "capacity_msat": 100_000})
    scidd = f"1x2x3/{0 if l3.info['id'] < FAKE else 1}"
    # No direction has values yet: no route.
    with pytest.raises(RpcError, match="Could not find route"):
        routes(60_000, "fake")
    l1.rpc.call("askrene-update-channel", {"layer": "fake", "short_channel_id_dir": scidd, "enabled": True,
                                           "fee_base_msat": 1000, "fee_proportional_millionths": 0,
                                           "cltv_expiry_delta": 6, "htlc_minimum_msat": 0,
                                           "htlc_maximum_msat": 100_000})
    route = only_one(routes(60_000, "fake")["routes"])
    assert [h["short_channel_id_dir"] for h in route["path"]][-1] == scidd and len(route["path"]) == 3
    last = route["path"][-1]
    assert (last["node_id_in"], last["node_id_out"]) == (l3.info["id"], FAKE)
    assert (last["amount_in_msat"], last["amount_out_msat"], last["cltv_in"], last["cltv_out"]) == \
        (61_000, 60_000, 24, 18)
    listed = only_one(l1.rpc.call("askrene-listlayers", {"layer": "fake"})["layers"])
    assert listed["created_channels"] == [{"source": min(l3.info["id"], FAKE), "destination": max(l3.info["id"], FAKE),
                                           "short_channel_id": "1x2x3", "capacity_msat": 100_000}]
    # Without the layer the fake node is unreachable.
    with pytest.raises(RpcError, match="Could not find route"):
        routes(60_000)

    # Reserving the route's amounts leaves 40,000 on the fake channel: a second 60,000 does not fit.
    path = [{"short_channel_id_dir": h["short_channel_id_dir"], "amount_msat": h["amount_in_msat"]}
            for h in route["path"]]
    l1.rpc.call("askrene-reserve", {"path": path})
    held = l1.rpc.call("askrene-listreservations")["reservations"]
    assert sorted((r["short_channel_id_dir"], r["amount_msat"]) for r in held) == \
        sorted((h["short_channel_id_dir"], h["amount_msat"]) for h in path)
    with pytest.raises(RpcError, match="Could not find route"):
        routes(60_000, "fake")
    routes(30_000, "fake")
    l1.rpc.call("askrene-unreserve", {"path": path})
    assert l1.rpc.call("askrene-listreservations")["reservations"] == []
    with pytest.raises(RpcError, match="Unknown reservation for " + scidd):
        l1.rpc.call("askrene-unreserve", {"path": [path[-1]]})
    routes(60_000, "fake")

    # A failure at 50,000 bounds the channel below that; a success adds a minimum.
    started = int(time.time())
    informed = l1.rpc.call("askrene-inform-channel", {"layer": "fake", "short_channel_id_dir": scidd,
                                                      "amount_msat": 50_000, "inform": "constrained"})
    constraint = only_one(informed["constraints"])
    assert (constraint["layer"], constraint["maximum_msat"], informed["impressions"]) == ("fake", 49_999, [])
    assert started <= constraint["timestamp"] <= time.time() + 1
    with pytest.raises(RpcError, match="Could not find route"):
        routes(60_000, "fake")
    routes(49_999, "fake")
    informed = l1.rpc.call("askrene-inform-channel", {"layer": "fake", "short_channel_id_dir": scidd,
                                                      "amount_msat": 20_000, "inform": "unconstrained"})
    assert only_one(informed["constraints"])["minimum_msat"] == 20_000
    # (pyln-testing's own client refuses a request off the schema: a plain one sends it)
    with pytest.raises(RpcError, match="inform: must be constrained/unconstrained/succeeded"):
        LightningRpc(l1.rpc.socket_path).call("askrene-inform-channel", {"layer": "fake", "short_channel_id_dir": scidd,
                                                                         "amount_msat": 1, "inform": "maybe"})
    # Ageing forgets both: 60,000 fits again.
    aged = l1.rpc.call("askrene-age", {"layer": "fake", "cutoff": int(time.time()) + 2})
    assert aged == {"layer": "fake", "num_removed": 2}
    routes(60_000, "fake")
    # A success of 60,000 leaves 40,000 of the channel's 100,000 in that direction.
    informed = l1.rpc.call("askrene-inform-channel", {"layer": "fake", "short_channel_id_dir": scidd,
                                                      "amount_msat": 60_000, "inform": "succeeded"})
    assert (informed["constraints"], only_one(informed["impressions"])["amount_msat"]) == ([], 60_000)
    with pytest.raises(RpcError, match="Could not find route"):
        routes(60_000, "fake")
    routes(40_000, "fake")

    # Biases are recorded (relative ones add up, clamped at -100..100) and listed.
    scid23 = only_one(l2.rpc.listpeerchannels(l3.info["id"])["channels"])["short_channel_id"]
    dir23 = f"{scid23}/{0 if l2.info['id'] < l3.info['id'] else 1}"
    b = l1.rpc.call("askrene-bias-channel", {"layer": "fake", "short_channel_id_dir": dir23, "bias": -60,
                                             "description": "slow"})
    assert only_one(b["biases"])["bias"] == -60
    b = l1.rpc.call("askrene-bias-channel", {"layer": "fake", "short_channel_id_dir": dir23, "bias": -60,
                                             "relative": True})
    assert only_one(b["biases"])["bias"] == -100 and "description" not in only_one(b["biases"])
    with pytest.raises(RpcError, match="bias: should be a number between -100 and 100"):
        l1.rpc.call("askrene-bias-channel", {"layer": "fake", "short_channel_id_dir": dir23, "bias": 101})
    nb = only_one(l1.rpc.call("askrene-bias-node", {"layer": "fake", "node": l2.info["id"], "direction": "in",
                                                    "bias": 5})["node_biases"])
    assert (nb["in_bias"], nb["out_bias"]) == (5, 0)
    listed = only_one(l1.rpc.call("askrene-listlayers", {"layer": "fake"})["layers"])
    assert [(x["short_channel_id_dir"], x["bias"]) for x in listed["biases"]] == [(dir23, -100)]
    assert [x["node"] for x in listed["node_biases"]] == [l2.info["id"]]
    # The only path to the fake node still goes through the disfavoured channel.
    routes(10_000, "fake")
    assert l1.rpc.call("askrene-bias-channel", {"layer": "fake", "short_channel_id_dir": dir23,
                                                "bias": 0})["biases"] == []


def test_getroutes_deprecated_hop_fields(node_factory):
    # allow-deprecated-apis (CLN's default): hops still carry amount_msat, next_node_id and delay (deprecated in
    # v26.06), so a getroutes path goes to askrene-reserve as it is (extra keys ignored).  pyln-testing's nodes
    # run without deprecated APIs: there the fields are absent.
    l1 = node_factory.get_node(options={"allow-deprecated-apis": True})
    l1.rpc.call("askrene-create-layer", {"layer": "own"})
    l1.rpc.call("askrene-create-channel", {"layer": "own", "source": l1.info["id"], "destination": FAKE,
                                           "short_channel_id": "1x1x1", "capacity_msat": 10**6})
    scidd = f"1x1x1/{0 if l1.info['id'] < FAKE else 1}"
    l1.rpc.call("askrene-update-channel", {"layer": "own", "short_channel_id_dir": scidd, "enabled": True})
    hop = only_one(only_one(l1.rpc.getroutes(source=l1.info["id"], destination=FAKE, amount_msat=5000,
                                             layers=["own"], maxfee_msat=100, final_cltv=9)["routes"])["path"])
    assert (hop["short_channel_id_dir"], hop["amount_msat"], hop["next_node_id"], hop["delay"]) == \
        (scidd, 5000, FAKE, 9)
    LightningRpc(l1.rpc.socket_path).call("askrene-reserve", {"path": [hop]})
    assert [(r["short_channel_id_dir"], r["amount_msat"]) for r in
            l1.rpc.call("askrene-listreservations")["reservations"]] == [(scidd, 5000)]
    l2 = node_factory.get_node()
    l2.rpc.call("askrene-create-layer", {"layer": "own"})
    l2.rpc.call("askrene-create-channel", {"layer": "own", "source": l2.info["id"], "destination": FAKE,
                                           "short_channel_id": "1x1x1", "capacity_msat": 10**6})
    l2.rpc.call("askrene-update-channel", {"layer": "own", "short_channel_id_dir":
                                           f"1x1x1/{0 if l2.info['id'] < FAKE else 1}", "enabled": True})
    hop = only_one(only_one(l2.rpc.getroutes(source=l2.info["id"], destination=FAKE, amount_msat=5000,
                                             layers=["own"], maxfee_msat=100, final_cltv=9)["routes"])["path"])
    assert not {"amount_msat", "next_node_id", "delay"} & set(hop)
