"""After a channel closes, its funds come back on chain: real ampd nodes on amp-chaind.

- our unilateral close (`close` with unilateraltimeout=1 while the peer is away): to_local is swept to the
  wallet once to_self_delay has passed, then the channel is CLOSED after 100 blocks (listclosedchannels);
- the peer closes unilaterally: our to_remote output shows in listfunds;
- a mutual close: both wallets are credited;
- kill -9 in the middle of the resolution: the restarted node carries on and credits the sweep once.
"""
from __future__ import annotations

import os
import sys

import pytest

from ampere.primitives.tx import Transaction

sys.path.insert(0, os.path.dirname(__file__))
from chainutil import fund, sync, wait_for  # noqa: E402

DELAY = 6     # watchtime-blocks: the to_self_delay each node imposes on its peer
BURY = 100    # CLN (and the resolver) forget a channel once everything is resolved this deep
FUNDING = 1_000_000
PUSH_MSAT = 300_000_000
# Every scenario runs on both commitment formats (issue 15): static_remotekey, and option_anchors (the default).
CHANNEL_TYPES = {"static": [12], "anchors": [12, 22]}
both_types = pytest.mark.parametrize("ctype", ["static", "anchors"])


def nodes(node_factory_chain, chaind):
    chaind.mine(101)
    l1 = node_factory_chain.get_node({"watchtime-blocks": DELAY})
    l2 = node_factory_chain.get_node({"watchtime-blocks": DELAY, "bind-addr": "127.0.0.1:0"})
    fund(l1, chaind, ["0.1"])
    return l1, l2


def open_channel(l1, l2, chaind, ctype: str) -> dict:
    info2 = l2.rpc.getinfo()
    port = next(b["port"] for b in info2["binding"] if b["type"] == "ipv4")
    l1.rpc.connect(info2["id"], "127.0.0.1", port)
    r = l1.rpc.fundchannel(info2["id"], FUNDING, push_msat=PUSH_MSAT, channel_type=CHANNEL_TYPES[ctype])
    chaind.mine(6)
    for n in (l1, l2):
        sync(n, chaind)
        wait_for(lambda: channel(n)["state"] == "CHANNELD_NORMAL", 30, "CHANNELD_NORMAL")
        assert channel(n)["channel_type"]["bits"] == CHANNEL_TYPES[ctype]
    return r


def channel(node) -> dict:
    chans = node.rpc.listpeerchannels()["channels"]
    assert len(chans) == 1, chans
    return chans[0]


def outputs(node) -> dict[tuple[str, int], dict]:
    return {(o["txid"], o["output"]): o for o in node.rpc.listfunds()["outputs"]}


def mine(chaind, n: int, *nodes_) -> int:
    chaind.mine(n)
    h = chaind.rpc("getblockcount")
    for node in nodes_:
        sync(node, chaind)
    return h


def new_outputs(node, before: dict, status: str = "confirmed") -> list[dict]:
    return [o for k, o in outputs(node).items() if k not in before and o["status"] == status]


def check_commitment(chaind, txid: str, ctype: str) -> Transaction:
    """A commitment with no HTLC: to_local and to_remote, plus (option_anchors) an anchor each, of 330 sat."""
    tx = Transaction.parse_hex(chaind.rpc("getrawtransaction", txid))
    values = sorted(o.value for o in tx.outputs)
    if ctype == "anchors":
        assert len(values) == 4 and values[:2] == [330, 330], values
    else:
        assert len(values) == 2 and 330 not in values, values
    assert PUSH_MSAT // 1000 in values     # the acceptor's balance: the opener pays the fee and the anchors
    return tx


@both_types
def test_unilateral_close_funds_back_after_delay_then_closed(node_factory_chain, chaind, ctype):
    l1, l2 = nodes(node_factory_chain, chaind)
    open_channel(l1, l2, chaind, ctype)
    before = outputs(l1)
    channel_id = channel(l1)["channel_id"]
    l2.stop()
    r = l1.rpc.close(channel(l1)["peer_id"], 1)
    assert r["type"] == "unilateral"
    commitment_txid = r["txids"][0]
    commitment = check_commitment(chaind, commitment_txid, ctype)
    [to_local] = [o.value for o in commitment.outputs if o.value not in (330, PUSH_MSAT // 1000)]
    s = mine(chaind, 1, l1)
    wait_for(lambda: channel(l1)["state"] == "ONCHAIN", 30, "ONCHAIN")
    status = channel(l1)["status"]
    assert any("Tracking our own unilateral close" in x and commitment_txid in x for x in status), status
    assert any(f"spendable by us in {DELAY - 1} blocks" in x for x in status), status

    # One block before the delay allows it: nothing new in the wallet.
    mine(chaind, DELAY - 2, l1)
    assert new_outputs(l1, before, "unconfirmed") == [] and new_outputs(l1, before) == []
    mine(chaind, 1, l1)                       # tip = S + DELAY - 1: the sweep can go in the next block
    wait_for(lambda: new_outputs(l1, before, "unconfirmed"), 30, "the sweep in listfunds")
    mine(chaind, 1, l1)
    wait_for(lambda: new_outputs(l1, before), 30, "the sweep confirmed")
    [swept] = new_outputs(l1, before)
    assert swept["blockheight"] == s + DELAY
    # The opener's balance minus the commitment fee (and the anchors), minus the sweep's fee.
    assert FUNDING * 1000 - PUSH_MSAT - 10_000_000 < swept["amount_msat"] < FUNDING * 1000 - PUSH_MSAT
    assert (to_local - 5_000) * 1000 < swept["amount_msat"] < to_local * 1000
    assert any("being swept" not in x and "swept to our wallet by" in x for x in channel(l1)["status"])

    # Irrevocably resolved 100 blocks later: CLOSED, in listclosedchannels.
    mine(chaind, BURY - 2, l1)
    assert channel(l1)["state"] == "ONCHAIN"
    mine(chaind, 1, l1)
    wait_for(lambda: l1.rpc.listpeerchannels()["channels"] == [] or channel(l1)["state"] == "CLOSED", 30, "CLOSED")
    closed = l1.rpc.listclosedchannels()["closedchannels"]
    assert len(closed) == 1 and closed[0]["channel_id"] == channel_id


@both_types
def test_peer_unilateral_close_to_remote_joins_wallet(node_factory_chain, chaind, ctype):
    l1, l2 = nodes(node_factory_chain, chaind)
    open_channel(l1, l2, chaind, ctype)
    before = outputs(l2)
    id2 = l2.rpc.getinfo()["id"]
    l2.stop()
    r = l1.rpc.close(id2, 1)
    assert r["type"] == "unilateral"
    check_commitment(chaind, r["txids"][0], ctype)
    mine(chaind, 1, l1)
    # l2 comes back, sees its peer's commitment in the chain, and sweeps its to_remote to its wallet.
    l2.start()
    sync(l2, chaind)
    wait_for(lambda: channel(l2)["state"] == "ONCHAIN", 30, "ONCHAIN")
    assert any("Tracking their unilateral close" in x for x in channel(l2)["status"])
    wait_for(lambda: new_outputs(l2, before, "unconfirmed"), 30, "to_remote in listfunds")
    mine(chaind, 1, l2)
    wait_for(lambda: new_outputs(l2, before), 30, "to_remote confirmed")
    [out] = new_outputs(l2, before)
    assert PUSH_MSAT - 5_000_000 < out["amount_msat"] < PUSH_MSAT
    # Spendable by the wallet: withdraw it all.
    addr = chaind.rpc("getnewaddress")
    w = l2.rpc.withdraw(addr, "all")
    assert w["txid"]


@both_types
def test_mutual_close_credits_both_wallets(node_factory_chain, chaind, ctype):
    l1, l2 = nodes(node_factory_chain, chaind)
    open_channel(l1, l2, chaind, ctype)
    b1, b2 = outputs(l1), outputs(l2)
    r = l1.rpc.close(l2.rpc.getinfo()["id"])
    assert r["type"] == "mutual"
    mine(chaind, 1, l1, l2)
    wait_for(lambda: new_outputs(l1, b1) and new_outputs(l2, b2), 30, "closing outputs in listfunds")
    [o1], [o2] = new_outputs(l1, b1), new_outputs(l2, b2)
    assert o1["txid"] == o2["txid"] == r["txids"][0]
    assert o2["amount_msat"] == PUSH_MSAT                       # the acceptor pays no closing fee
    assert FUNDING * 1000 - PUSH_MSAT - 5_000_000 < o1["amount_msat"] < FUNDING * 1000 - PUSH_MSAT
    for n in (l1, l2):
        wait_for(lambda: channel(n)["state"] == "ONCHAIN", 30, "ONCHAIN")
        assert any("Tracking mutual close" in x and "pays our wallet" not in x for x in channel(n)["status"])
        assert any("mutual output" in x and "pays our wallet" in x for x in channel(n)["status"])
    mine(chaind, BURY - 1, l1, l2)
    for n in (l1, l2):
        wait_for(lambda: len(n.rpc.listclosedchannels()["closedchannels"]) == 1, 30, "listclosedchannels")


@both_types
def test_kill_during_resolution_continues(node_factory_chain, chaind, ctype):
    l1, l2 = nodes(node_factory_chain, chaind)
    open_channel(l1, l2, chaind, ctype)
    before = outputs(l1)
    id2 = l2.rpc.getinfo()["id"]
    l2.stop()
    r = l1.rpc.close(id2, 1)
    assert r["type"] == "unilateral"
    check_commitment(chaind, r["txids"][0], ctype)
    s = mine(chaind, 1, l1)
    wait_for(lambda: channel(l1)["state"] == "ONCHAIN", 30, "ONCHAIN")
    # kill -9 while waiting for the delay; blocks go by while it is down.
    l1.kill()
    chaind.mine(DELAY - 1)
    l1.start()
    sync(l1, chaind)
    wait_for(lambda: new_outputs(l1, before, "unconfirmed"), 30, "the sweep after the restart")
    [pending] = new_outputs(l1, before, "unconfirmed")
    # kill -9 again with the sweep in the mempool: after the restart it is the same sweep, credited once.
    l1.kill()
    chaind.mine(1)
    l1.start()
    sync(l1, chaind)
    wait_for(lambda: new_outputs(l1, before), 30, "the sweep confirmed")
    [swept] = new_outputs(l1, before)
    assert (swept["txid"], swept["amount_msat"], swept["blockheight"]) == (pending["txid"], pending["amount_msat"],
                                                                           s + DELAY)
    assert len([o for o in outputs(l1).values() if o["txid"] == swept["txid"]]) == 1
