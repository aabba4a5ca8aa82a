"""pyln-testing's developer options as CLN's tests use them: scripted disconnections (`disconnect=[...]`,
i.e. --dev-disconnect) and the rest."""
import json
import os
import re
from pathlib import Path

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, wait_for


def test_dev_disconnect_opener(node_factory):
    # CLN's test_disconnect_opener: close before sending open_channel, then right after it; the third
    # attempt succeeds.
    disconnects = ["-WIRE_OPEN_CHANNEL", "+WIRE_OPEN_CHANNEL"]
    l1 = node_factory.get_node(disconnect=disconnects, may_reconnect=True)
    l2 = node_factory.get_node(may_reconnect=True)
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    l1.fundwallet(2_000_000)
    for d in disconnects:
        with pytest.raises(RpcError):
            l1.rpc.fundchannel(l2.info["id"], 10**6)
        assert l1.daemon.is_in_log(re.escape(f"dev_disconnect: {d} (WIRE_OPEN_CHANNEL)"))
        wait_for(lambda: not l1.rpc.listpeers(l2.info["id"])["peers"]
                 or not only_one(l1.rpc.listpeers(l2.info["id"])["peers"])["connected"])
        l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    funding = l1.rpc.fundchannel(l2.info["id"], 10**6)
    # lightningd's DEBUG lines for the messages, and bcli's for the broadcast, which CLN's tests wait for.
    l1.daemon.wait_for_logs(["peer_out WIRE_OPEN_CHANNEL", "peer_in WIRE_ACCEPT_CHANNEL", "peer_out WIRE_FUNDING_CREATED",
                             f"plugin-bcli: sendrawtx exit 0 .*{funding['tx']}"])
    assert only_one(l1.rpc.listpeerchannels(l2.info["id"])["channels"])["state"] == "CHANNELD_AWAITING_LOCKIN"


def test_dev_disconnect_mid_payment_then_reestablish(node_factory):
    # The payee hangs up right after its first revoke_and_ack; after reconnecting, channel_reestablish
    # finishes the payment.
    l1, l2 = node_factory.line_graph(2, opts=[{"may_reconnect": True},
                                              {"may_reconnect": True, "disconnect": ["+WIRE_REVOKE_AND_ACK"]}])
    inv = l2.rpc.invoice(50_000, "reest", "desc")["bolt11"]
    res = l1.rpc.pay(inv)
    assert res["status"] == "complete"
    assert l2.daemon.is_in_log("dev_disconnect: \\+WIRE_REVOKE_AND_ACK")
    assert l1.daemon.is_in_log("Peer transient failure")


def test_dev_force_features(node_factory):
    l1 = node_factory.get_node(options={"dev-force-features": "+201"})
    l2 = node_factory.get_node(options={"dev-force-features": "-55"})
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    init1 = int(l1.rpc.getinfo()["our_features"]["init"], 16)
    assert init1 & (1 << 201) and init1 & (1 << 55)
    # What each peer received in `init` is what the other was forced to send.
    seen_by_l2 = int(only_one(l2.rpc.listpeers(l1.info["id"])["peers"])["features"], 16)
    seen_by_l1 = int(only_one(l1.rpc.listpeers(l2.info["id"])["peers"])["features"], 16)
    assert seen_by_l2 & (1 << 201)
    assert not seen_by_l1 & (1 << 55) and seen_by_l1 & (1 << 14)   # keysend gone, payment_secret kept
    # The eight-set form replaces the sets; a bad value stops the node with lightningd's message.
    l3 = node_factory.get_node(start=False, may_fail=True, broken_log="dev-force-features",
                               options={"dev-force-features": "nonsense"})
    l3.daemon.start(wait_for_initialized=False, stderr_redir=True)
    assert l3.daemon.wait() == 1
    assert l3.daemon.is_in_stderr("Expected 8 feature sets")


def test_dev_save_plugin_io(node_factory):
    # pyln-testing gives every node --dev-save-plugin-io=<lightning-dir>/plugin-io and reads the files back
    # at teardown; here, what a hook and a notification left there.
    plugin = os.path.join(os.path.dirname(__file__), "plugins", "hodl_and_count.py")
    l1, l2 = node_factory.line_graph(2, opts=[{}, {"plugin": plugin}])
    inv = l2.rpc.invoice(10_000, "io", "desc")
    l1.rpc.pay(inv["bolt11"])
    iodir = Path(l2.daemon.lightning_dir) / "plugin-io"
    assert str(iodir) == str(l2.daemon.opts["dev-save-plugin-io"])

    def files(kind):
        return [json.loads(f.read_text()) for f in sorted(iodir.iterdir()) if f.name.startswith(kind + "-")]

    wait_for(lambda: files("notification_out-invoice_payment"))
    out = files("hook_out-htlc_accepted")
    assert [m["params"]["htlc"]["payment_hash"] for m in out] == [inv["payment_hash"]]
    assert out[0]["method"] == "htlc_accepted" and out[0]["id"]
    assert files("hook_in-htlc_accepted")[0]["result"] == {"result": "continue"}
    assert files("notification_out-invoice_payment")[0]["params"]["invoice_payment"]["label"] == "io"


def test_force_feerates(node_factory):
    # pyln-testing's force_feerates: mocked estimatesmartfee, a restart, then it waits for the opener's
    # update_fee ("peer_out WIRE_UPDATE_FEE") and for feerates to show the rate.
    l1, l2 = node_factory.line_graph(2, opts={"may_reconnect": True})
    l1.force_feerates(7500)
    wait_for(lambda: only_one(l2.rpc.listpeerchannels()["channels"])["feerate"]["perkw"] == 7500)
    inv = l2.rpc.invoice(10_000, "after-fee", "desc")["bolt11"]
    assert l1.rpc.pay(inv)["status"] == "complete"
