"""askrene layers as xpay/CLN tests use them with getroutes: create, disable a node or a channel direction,
list, remove; persistent layers survive a restart."""
import pytest
from pyln.client import RpcError
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
    l1.rpc.call("askrene-remove-layer", {"layer": "no_l2"})
    assert [x["layer"] for x in l1.rpc.call("askrene-listlayers")["layers"]] == ["no_23"]
    # Only the persistent layer comes back after a restart.
    l1.restart()
    assert [x["layer"] for x in l1.rpc.call("askrene-listlayers")["layers"]] == ["no_23"]
    with pytest.raises(RpcError, match="Could not find route"):
        routes("no_23")
