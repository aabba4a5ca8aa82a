"""The Bitcoin backend as a replaceable plugin, as in CLN: `--disable-plugin bcli` plus a plugin serving
getchaininfo, getrawblockbyheight, sendrawtransaction, getutxout and estimatefees."""
import os

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, wait_for

from ampere.node.onchain.chain_backend import BCLI_PATH

BACKEND = os.path.join(os.path.dirname(__file__), "plugins", "chain_backend.py")


def backend_opts(bitcoind):
    return {"disable-plugin": "bcli", "plugin": BACKEND, "backend-rpcport": bitcoind.rpcport,
            "backend-rpcuser": "rpcuser", "backend-rpcpassword": "rpcpass"}


def test_backend_plugin_channel_and_pay(node_factory, bitcoind):
    # The chain reaches l1 only through the plugin: its funding, confirmations, the l2-l3 channel's
    # announcement (checked with getutxout), a payment over two hops.
    l1, l2, l3 = node_factory.line_graph(3, opts=[backend_opts(bitcoind), {}, {}], wait_for_announce=True)
    assert l1.daemon.is_in_log("All Bitcoin plugin commands registered")
    # --disable-plugin bcli: the built-in is not listed; the backend plugin is.
    names = [p["name"] for p in l1.rpc.plugin("list")["plugins"]]
    assert BACKEND in names and not any(n.endswith("/bcli") for n in names)
    assert any(n.endswith("/bcli") for n in [p["name"] for p in l2.rpc.plugin("list")["plugins"]])
    inv = l3.rpc.invoice(123_000, "via-backend-plugin", "desc")["bolt11"]
    assert l1.rpc.pay(inv)["status"] == "complete"
    calls = l1.rpc.call("backendcalls")
    for method in ("getchaininfo", "getrawblockbyheight", "sendrawtransaction", "getutxout", "estimatefees"):
        assert calls.get(method, 0) >= 1, (method, calls)
    # Its fee estimates are the ones in use: 7,500 sat/kvB for every target (regtest has none of its own).
    assert l1.rpc.feerates("perkb")["perkb"]["opening"] == 7500
    # A mutual close: the closing transaction goes out through the plugin's sendrawtransaction.
    sent = calls["sendrawtransaction"]
    l1.rpc.close(l2.info["id"])
    wait_for(lambda: l1.rpc.call("backendcalls")["sendrawtransaction"] > sent)
    bitcoind.generate_block(1, wait_for_mempool=1)
    wait_for(lambda: only_one(l1.rpc.listpeerchannels()["channels"] or [{"state": "gone"}])["state"]
             in ("ONCHAIN", "CLOSINGD_COMPLETE", "FUNDING_SPEND_SEEN", "gone"))


def test_incomplete_backend_refused(node_factory, bitcoind):
    l1 = node_factory.get_node(start=False, may_fail=True, broken_log="Could not access the plugin for",
                               options=backend_opts(bitcoind))
    l1.daemon.env["BACKEND_METHODS"] = "getchaininfo,getrawblockbyheight"
    l1.daemon.start(wait_for_initialized=False, stderr_redir=True)
    assert l1.daemon.wait() == 1
    assert l1.daemon.is_in_log("Missing a Bitcoin plugin command")
    assert l1.daemon.is_in_stderr(r"Could not access the plugin for sendrawtransaction, is a Bitcoin plugin "
                                  r"\(by default plugins/bcli\) registered \?")


def test_bcli_by_default_and_its_methods_taken(node_factory, bitcoind):
    # Without --disable-plugin bcli the built-in backend owns the five methods: a plugin registering
    # them is refused, as a second plugin registering a method is in CLN.
    l1 = node_factory.get_node(options={"plugin": BACKEND})
    assert l1.daemon.is_in_log('Could not register method "getchaininfo", a method with that name is already '
                               'registered by lightningd')
    listed = l1.rpc.plugin("list")["plugins"]
    assert not any(p["name"] == BACKEND for p in listed)
    # The built-in bcli is listed as CLN lists its plugins/bcli.
    assert [p for p in listed if p["name"].endswith("/bcli")] == [{"name": BCLI_PATH, "active": True, "dynamic": False}]
    with pytest.raises(RpcError, match="bcli cannot be managed when lightningd is up"):
        l1.rpc.plugin("stop", "bcli")
    assert l1.rpc.getchaininfo(last_height=0)["chain"] == "regtest"
    blk = l1.rpc.getrawblockbyheight(1)
    assert blk["blockhash"] == bitcoind.rpc.getblockhash(1) and blk["block"].startswith("0")
    assert l1.rpc.getrawblockbyheight(10_000) == {"blockhash": None, "block": None}
    assert "feerate_floor" in l1.rpc.estimatefees()
