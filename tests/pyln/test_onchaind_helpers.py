"""On-chain resolution followed as CLN's test_closing.py does it: pyln-testing's wait_for_onchaind_tx(s) (the plan
onchaind tells lightningd, with the raw transaction and how many blocks before it can go), mine_txid_or_rbf and
wait_for_onchaind_broadcast, over ampd's log."""
import os

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, sync_blockheight, wait_for

HODL = os.path.join(os.path.dirname(__file__), "plugins", "hodl_and_count.py")


def mine_to(bitcoind, height):
    """Mine until the tip is `height` (nothing if it is there already)."""
    n = height - bitcoind.rpc.getblockcount()
    if n > 0:
        bitcoind.generate_block(n)


@pytest.mark.parametrize("anchors", [True, False])
def test_unilateral_with_htlcs_each_way(node_factory, bitcoind, executor, anchors):
    # Feerates identical so that a plan made now is the transaction broadcast later (as CLN's tests set them).
    opts = {"plugin": HODL, "feerates": (7500, 7500, 7500, 7500)}
    if not anchors:
        opts["dev-force-features"] = "-23"  # as CLN's tests: no option_anchors (pre-signed HTLC txs with their fee)
    l1, l2 = node_factory.line_graph(2, opts=opts)
    assert ("option_anchors" in only_one(l1.rpc.listpeerchannels()["channels"])["features"]) == anchors
    l1.pay(l2, 200_000_000)  # so that l2 can pay too
    # An HTLC each way, both held by the receiver's plugin: l1 -> l2 and l2 -> l1.
    inv_a = l2.rpc.invoice(10**7, "hold-a", "to l2", cltv=20)  # times out after the rest is done
    fut_a = executor.submit(l1.rpc.pay, inv_a["bolt11"])
    l2.daemon.wait_for_log("holding " + inv_a["payment_hash"])
    inv_b = l1.rpc.invoice(10**7, "hold-b", "to l1")
    fut_b = executor.submit(l2.rpc.pay, inv_b["bolt11"])
    l1.daemon.wait_for_log("holding " + inv_b["payment_hash"])
    wait_for(lambda: len(only_one(l1.rpc.listpeerchannels()["channels"])["htlcs"]) == 2)
    htlcs = {h["direction"]: h for h in only_one(l1.rpc.listpeerchannels()["channels"])["htlcs"]}
    cltv_a = htlcs["out"]["expiry"]  # l1's HTLC (to l2)

    l1.rpc.dev_fail(l2.info["id"])
    l1.wait_for_channel_onchain(l2.info["id"])
    close_height = bitcoind.rpc.getblockcount() + 1
    bitcoind.generate_block(1)
    l1.daemon.wait_for_log(" to ONCHAIN")
    l2.daemon.wait_for_log(" to ONCHAIN")

    # l1 (its own commitment): to_local after to_self_delay (5), its HTLC by the HTLC-timeout tx after expiry.
    ((_, txid1, blocks1), (_, txid2, blocks2)) = \
        l1.wait_for_onchaind_txs(("OUR_DELAYED_RETURN_TO_WALLET", "OUR_UNILATERAL/DELAYED_OUTPUT_TO_US"),
                                 ("OUR_HTLC_TIMEOUT_TX", "OUR_UNILATERAL/OUR_HTLC"))
    assert blocks1 == 4
    assert blocks2 == cltv_a - close_height
    # The peer's HTLC, preimage not released yet: left to the peer's timeout, unless we learn it.
    assert l1.daemon.is_in_log("Propose ignoring OUR_UNILATERAL/THEIR_HTLC as THEIR_HTLC_TIMEOUT_TO_THEM")
    # l2 (their commitment): its own HTLC back after expiry, directly.
    _, _, blocks = l2.wait_for_onchaind_tx("OUR_HTLC_TIMEOUT_TO_US", "THEIR_UNILATERAL/OUR_HTLC")
    assert blocks > 0
    wait_for(lambda: l2.daemon.is_in_log("Propose ignoring THEIR_UNILATERAL/THEIR_HTLC as THEIR_HTLC_TIMEOUT_TO_THEM"))

    # l1 releases l2's payment: it claims it on-chain at once with its HTLC-success tx (0 more blocks).
    l1.rpc.release(inv_b["payment_hash"])
    _, txid3, blocks3 = l1.wait_for_onchaind_tx("OUR_HTLC_SUCCESS_TX", "OUR_UNILATERAL/THEIR_HTLC")
    assert blocks3 == 0
    got = l1.mine_txid_or_rbf(txid3)
    assert got in bitcoind.rpc.getblock(bitcoind.rpc.getbestblockhash())["tx"]
    height3 = bitcoind.rpc.getblockcount()
    # l2 learns the preimage from it: its payment succeeds.
    paid_b = fut_b.result(60)
    assert paid_b["status"] == "complete"
    # Its output is ours after to_self_delay.
    _, txid4, blocks4 = l1.wait_for_onchaind_tx("OUR_DELAYED_RETURN_TO_WALLET",
                                                "OUR_HTLC_SUCCESS_TX/DELAYED_OUTPUT_TO_US")
    assert blocks4 == 4

    # to_local: due 5 blocks after the close (generate_block waits for the very transaction logged).
    mine_to(bitcoind, close_height + blocks1)
    bitcoind.generate_block(1, wait_for_mempool=txid1)
    mine_to(bitcoind, height3 + blocks4)
    l1.mine_txid_or_rbf(txid4)

    # The HTLC-timeout goes once its nLockTime (cltv_expiry) is final: in block cltv_a + 1.
    mine_to(bitcoind, cltv_a)
    l1.mine_txid_or_rbf(txid2)
    _, txid5, blocks5 = l1.wait_for_onchaind_tx("OUR_DELAYED_RETURN_TO_WALLET",
                                                "OUR_HTLC_TIMEOUT_TX/DELAYED_OUTPUT_TO_US")
    assert blocks5 == 4
    # Our payment fails once the timeout is deep enough.
    bitcoind.generate_block(3)
    with pytest.raises(RpcError):
        fut_a.result(60)
    bitcoind.generate_block(blocks5 - 3)
    l1.mine_txid_or_rbf(txid5)
    sync_blockheight(bitcoind, [l1, l2])
    outs = {o["txid"] for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed"}
    assert {txid1, txid5} <= outs

    # onchaind's account of how each output ended, as CLN's tests wait for it.
    for node, line in ((l1, "Resolved FUNDING_TRANSACTION/FUNDING_OUTPUT by OUR_UNILATERAL"),
                       (l2, "Resolved FUNDING_TRANSACTION/FUNDING_OUTPUT by THEIR_UNILATERAL"),
                       (l1, "Resolved OUR_UNILATERAL/DELAYED_OUTPUT_TO_US by our proposal OUR_DELAYED_RETURN_TO_WALLET"),
                       (l1, "Resolved OUR_UNILATERAL/THEIR_HTLC by our proposal OUR_HTLC_SUCCESS_TX"),
                       (l1, "Resolved OUR_UNILATERAL/OUR_HTLC by our proposal OUR_HTLC_TIMEOUT_TX"),
                       (l1, "Resolved OUR_HTLC_TIMEOUT_TX/DELAYED_OUTPUT_TO_US by our proposal "
                            "OUR_DELAYED_RETURN_TO_WALLET"),
                       (l2, "THEIR_UNILATERAL/OUR_HTLC gave us preimage " + paid_b["payment_preimage"]),
                       (l2, "Resolved THEIR_UNILATERAL/OUR_HTLC by OUR_HTLC_FULFILL_TO_THEM"),
                       (l2, "Ignoring output .*: THEIR_UNILATERAL/THEIR_HTLC"),
                       (l2, "Resolved THEIR_UNILATERAL/THEIR_HTLC by THEIR_HTLC_TIMEOUT_TO_THEM")):
        wait_for(lambda: node.daemon.is_in_log(line))
    l1.daemon.wait_for_log("All outputs resolved: waiting 100 more blocks before forgetting channel")
    assert not l1.daemon.is_in_log("onchaind complete, forgetting peer")
    # Forgotten once the last resolving transaction (txid5, in the tip block) is 100 blocks deep.
    assert txid5 in bitcoind.rpc.getblock(bitcoind.rpc.getbestblockhash())["tx"]
    bitcoind.generate_block(98)
    sync_blockheight(bitcoind, [l1])
    assert not l1.daemon.is_in_log("onchaind complete, forgetting peer")
    bitcoind.generate_block(1)
    l1.daemon.wait_for_log("onchaind complete, forgetting peer")


def test_penalty(node_factory, bitcoind):
    # l1 cheats: it broadcasts a commitment it revoked (CLN's dev-sign-last-tx, then pays).
    opts = {"feerates": (7500, 7500, 7500, 7500)}
    l1, l2 = node_factory.line_graph(2, opts=[{**opts, "broken_log": "our REVOKED commitment"}, opts])
    old = l1.rpc.dev_sign_last_tx(l2.info["id"])["tx"]
    l1.pay(l2, 100_000_000)
    bitcoind.rpc.sendrawtransaction(old)
    bitcoind.generate_block(1)
    l2.daemon.wait_for_log(" to ONCHAIN")
    # wait_for_onchaind_broadcast: "Broadcasting NAME (rawtx) to resolve RESOLVE", then the tx in the mempool.
    l2.wait_for_onchaind_broadcast("OUR_PENALTY_TX", "THEIR_REVOKED_UNILATERAL/DELAYED_CHEAT_OUTPUT_TO_THEM")
    # The same output's plan as wait_for_onchaind_tx reads it (searched from the start of the log).
    l2.daemon.logsearch_start = 0
    _, txid, blocks = l2.wait_for_onchaind_tx("OUR_PENALTY_TX", "THEIR_REVOKED_UNILATERAL/DELAYED_CHEAT_OUTPUT_TO_THEM")
    assert blocks == 0
    assert l2.mine_txid_or_rbf(txid) == txid


def test_mutual_close_forgotten(node_factory, bitcoind):
    l1, l2 = node_factory.line_graph(2)
    l1.rpc.close(l2.info["id"])
    bitcoind.generate_block(1, wait_for_mempool=1)
    for node in (l1, l2):
        node.daemon.wait_for_log(" to ONCHAIN")
        node.daemon.wait_for_log("Resolved FUNDING_TRANSACTION/FUNDING_OUTPUT by MUTUAL_CLOSE")
    # CLN forgets the channel once the close is 100 blocks deep.
    bitcoind.generate_block(98)
    sync_blockheight(bitcoind, [l1, l2])
    assert not l1.daemon.is_in_log("onchaind complete, forgetting peer")
    bitcoind.generate_block(1)
    for node in (l1, l2):
        node.daemon.wait_for_log("onchaind complete, forgetting peer")
    wait_for(lambda: l1.rpc.listpeerchannels()["channels"] == [])
