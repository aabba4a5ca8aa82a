"""ampd's chain backend against a real amp-chaind: start-up order, restarts, block_added, fees."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from chainutil import sync, wait_for  # noqa: E402

from ampere.testing.chain import ChainD  # noqa: E402
from ampere.testing.schema import validate, validate_notification  # noqa: E402

PLUGINS = os.path.join(os.path.dirname(__file__), "..", "plugins")


def test_ampd_started_before_chaind_waits_then_syncs(tmp_path, node_factory):
    chaind = ChainD(tmp_path)  # not started yet: its port is known, nothing listens there
    node_factory.chaind = chaind
    try:
        node = node_factory.get_node()
        # RPC serves while the backend is down, with a warning and a retry log line.
        node.wait_for_log("Waiting for bitcoind at 127.0.0.1:")
        info = node.rpc.getinfo()
        assert "warning_bitcoind_sync" in info and "retrying" in info["warning_bitcoind_sync"].lower()
        chaind.start()
        chaind.mine(5)
        sync(node, chaind)
        node.wait_for_log("bitcoind is reachable again")
        info = wait_for(lambda: (lambda i: i if "warning_bitcoind_sync" not in i else None)(node.rpc.getinfo()))
        assert info["blockheight"] == 5
        validate("getinfo", info)
    finally:
        node_factory.killall()
        chaind.stop()


def test_chaind_killed_and_restarted_ampd_resumes(node_factory_chain, chaind):
    chaind.mine(3)
    node = node_factory_chain.get_node(plugin=os.path.join(PLUGINS, "listener.py"))
    sync(node, chaind)
    chaind.kill()
    node.wait_for_log("Waiting for bitcoind")
    assert "warning_bitcoind_sync" in node.rpc.getinfo()
    chaind.start()  # same datadir and port: the chain survived
    hashes = chaind.mine(2)
    assert sync(node, chaind) == 5
    wait_for(lambda: "warning_bitcoind_sync" not in node.rpc.getinfo())
    # block_added reached the plugin, in CLN's shape, for the new blocks.
    seen = wait_for(lambda: [n["block_added"] for n in node.rpc.call("seen")["received"] if "block_added" in n]
                    if any(n.get("block_added", {}).get("height") == 5 for n in node.rpc.call("seen")["received"])
                    else None)
    by_height = {b["height"]: b["hash"] for b in seen}
    assert by_height[4] == hashes[0] and by_height[5] == hashes[1]
    for b in seen:
        validate_notification("block_added", b)
    # A restarted ampd resumes from its stored tip and catches up on blocks mined meanwhile.
    node.stop()
    chaind.mine(3)
    node.start()
    assert sync(node, chaind) == 8


def test_feerates_and_waitblockheight(node_factory_chain, chaind):
    node = node_factory_chain.get_node()
    sync(node, chaind)
    for style in ("perkw", "perkb"):
        r = wait_for(lambda: (lambda r: r if r[style]["estimates"] else None)(node.rpc.feerates(style)))
        validate("feerates", r)
    perkw = node.rpc.feerates("perkw")["perkw"]
    assert node.rpc.feerates("perkb")["perkb"]["opening"] == perkw["opening"] * 4
    assert node.rpc.parsefeerate("253perkw") == {"perkw": 253}
    assert node.rpc.parsefeerate("4000") == {"perkw": 1000}
    assert node.rpc.parsefeerate("normal")["perkw"] == perkw["opening"]
    validate("parsefeerate", node.rpc.parsefeerate("urgent"))
    with pytest.raises(Exception) as e:
        node.rpc.parsefeerate("fast-ish")
    assert e.value.error["code"] == -32602
    with pytest.raises(Exception) as e:
        node.rpc.feerates("perbyte")
    assert e.value.error["code"] == -32602
    # waitblockheight: returns at once when reached, waits for a block, times out with 2000.
    h = chaind.rpc("getblockcount")
    assert node.rpc.waitblockheight(h) == {"blockheight": h}
    with pytest.raises(Exception) as e:
        node.rpc.waitblockheight(h + 1, 1)
    assert e.value.error["code"] == 2000
    import threading
    threading.Timer(0.5, lambda: chaind.mine(1)).start()
    r = node.rpc.waitblockheight(h + 1, 20)
    assert r == {"blockheight": h + 1}
    validate("waitblockheight", r)
