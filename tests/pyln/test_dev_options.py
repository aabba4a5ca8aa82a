"""pyln-testing's developer options as CLN's tests use them: scripted disconnections (`disconnect=[...]`,
i.e. --dev-disconnect) and the rest."""
import re

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
    l1.rpc.fundchannel(l2.info["id"], 10**6)
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
