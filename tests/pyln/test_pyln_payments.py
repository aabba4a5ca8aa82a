"""Channels and payments on pyln-testing's fixtures: line_graph, pay, htlc_accepted, keysend, restarts."""
import os

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, wait_for

PLUGIN = os.path.join(os.path.dirname(__file__), "plugins", "hodl_and_count.py")


def test_direct_pay_helper_and_notifications(node_factory):
    l1, l2 = node_factory.line_graph(2, opts=[{}, {"plugin": PLUGIN}])
    l1.pay(l2, 50_000)   # pyln-testing's sendpay/waitsendpay helper over the channel
    # sendpay again for a hash already paid: "succeeds" without sending, and lightningd logs the earlier payment
    # (CLN's test_sendpay waits for "Payment: .* COMPLETE", and checks it is not there before).
    inv = l2.rpc.invoice(40_000, "twice", "sendpay twice")
    route = l1.rpc.getroute(l2.info["id"], 40_000, 1)["route"]
    l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    l1.rpc.waitsendpay(inv["payment_hash"])
    assert not l1.daemon.is_in_log("Payment: .* COMPLETE")
    assert l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])["status"] == "complete"
    l1.daemon.wait_for_log("Payment: 40000msat COMPLETE")
    inv = l2.rpc.invoice(70_000, "via-pay", "pay me")["bolt11"]
    res = l1.dev_pay(inv, dev_use_shadow=False)   # pyln-testing's developer pay
    assert res["status"] == "complete" and res["amount_msat"] == 70_000
    wait_for(lambda: "via-pay" in l2.rpc.paidlabels()["labels"])
    inv = l2.rpc.invoice(30_000, "via-xpay", "xpay me")["bolt11"]
    res = l1.rpc.xpay(inv)
    assert res["amount_msat"] == 30_000 and res["successful_parts"] >= 1 and res["failed_parts"] == 0
    wait_for(lambda: "via-xpay" in l2.rpc.paidlabels()["labels"])
    wait_for(lambda: only_one(l1.rpc.listpeerchannels(l2.info["id"])["channels"])["to_us_msat"] == 10**9 - 190_000)
    chan = only_one(l1.rpc.listpeerchannels(l2.info["id"])["channels"])
    assert "remote" in chan["updates"] and "local" in chan["updates"]
    # sql over the list commands, as CLN's sql plugin.
    assert l1.rpc.sql("SELECT id, connected FROM peers")["rows"] == [[l2.info["id"], 1]]
    assert l1.rpc.sql("SELECT short_channel_id, to_us_msat FROM peerchannels")["rows"] == \
        [[chan["short_channel_id"], 10**9 - 190_000]]
    paid = l2.rpc.sql("SELECT label, amount_received_msat FROM invoices WHERE status = 'paid' AND label LIKE 'via-%' "
                      "ORDER BY label")
    assert paid["rows"] == [["via-pay", 70_000], ["via-xpay", 30_000]]
    assert l1.rpc.sql("SELECT count(*) FROM peerchannels_state_changes")["rows"][0][0] >= 2
    # Node ids are BLOBs, as CLN stores them: shown as hex, matched by X'..' only.
    assert l1.rpc.sql(f"SELECT connected FROM peers WHERE id = X'{l2.info['id']}'")["rows"] == [[1]]
    assert l1.rpc.sql(f"SELECT connected FROM peers WHERE id = '{l2.info['id']}'")["rows"] == []
    assert only_one(l1.rpc.listsqlschemas("peers")["schemas"])["columns"][:2] == \
        [{"name": "rowid", "type": "INTEGER"}, {"name": "id", "type": "BLOB"}]
    for bad in ("DELETE FROM peers", "SELECT random() FROM peers"):
        with pytest.raises(RpcError):
            l1.rpc.sql(bad)


def test_htlc_accepted_hold_and_release(node_factory, executor):
    l1, l2 = node_factory.line_graph(2, opts=[{}, {"plugin": PLUGIN}])
    inv = l2.rpc.invoice(30_000, "hold-1", "held")
    fut = executor.submit(l1.rpc.pay, inv["bolt11"])
    l2.daemon.wait_for_log("holding " + inv["payment_hash"])
    assert not fut.done()
    l2.rpc.release(inv["payment_hash"])
    assert fut.result(30)["status"] == "complete"
    inv2 = l2.rpc.invoice(30_000, "hold-2", "held, then failed")
    fut = executor.submit(l1.rpc.pay, inv2["bolt11"])
    l2.daemon.wait_for_log("holding " + inv2["payment_hash"])
    l2.rpc.release(inv2["payment_hash"], True)
    with pytest.raises(RpcError):
        fut.result(30)


def test_keysend_and_restart(node_factory):
    l1, l2 = node_factory.line_graph(2, opts={"may_reconnect": True})
    res = l1.rpc.keysend(l2.info["id"], 12_345)
    assert res["status"] == "complete"
    # Keysend is advertised (feature bit 55) in init and node_announcement.
    features = int(only_one(l1.rpc.listpeers(l2.info["id"])["peers"])["features"], 16)
    assert features & (1 << 55)
    l2.restart()
    wait_for(lambda: only_one(l1.rpc.listpeerchannels(l2.info["id"])["channels"])["peer_connected"])
    inv = l2.rpc.invoice(1000, "after-restart", "x")["bolt11"]
    wait_for(lambda: only_one(l1.rpc.listpeerchannels(l2.info["id"])["channels"]).get("reestablished"))
    assert l1.rpc.pay(inv)["status"] == "complete"


def test_dev_no_reconnect_is_default(node_factory):
    """pyln-testing passes --dev-no-reconnect unless may_reconnect: a restarted peer stays disconnected."""
    l1, l2 = node_factory.line_graph(2)
    l2.restart()
    l1.daemon.wait_for_log("Peer transient failure in CHANNELD_NORMAL")
    import time
    time.sleep(3)
    assert not any(p["connected"] for p in l1.rpc.listpeers(l2.info["id"])["peers"])
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)   # by hand, and with --disable-dns
    wait_for(lambda: only_one(l1.rpc.listpeerchannels(l2.info["id"])["channels"]).get("reestablished"))
