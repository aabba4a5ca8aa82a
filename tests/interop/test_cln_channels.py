"""Channel opening between Ampere and Core Lightning, each side the opener: the channel type they agree on
(option_anchors: both offer it; static_remotekey when Ampere disables it with --dev-force-features=-23), push_msat, the reserve
the opener asks of its peer, the acceptor's minimum_depth, and the acceptor's openchannel hook (the same
pyln-client plugin on both implementations) refusing a channel, then accepting one with mindepth 1."""

from __future__ import annotations

import json
import os

import pytest
from pyln.client import RpcError

from ampere.testing.nodes import wait_for

pytestmark = pytest.mark.cln

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins", "openchannel_reject.py")
FUNDING = 500_000
PUSH_MSAT = 123_456_789
RESERVE = 12_345  # sat: what the opener asks its peer to keep (default would be 1% = 5,000)


ANCHORS = {"bits": [12, 22], "names": ["static_remotekey/even", "anchors/even"]}
STATIC = {"bits": [12], "names": ["static_remotekey/even"]}


def state(a, b):
    chans = a.rpc.listpeerchannels(b.node_id)["channels"]
    return chans[-1]["state"] if chans else None


@pytest.mark.parametrize("opener_kind", ["ampere", "cln"])
def test_open_with_options_and_hook(node_factory, chaind, opener_kind):
    acceptor_kind = "cln" if opener_kind == "ampere" else "ampere"
    log = os.path.join(node_factory.base_dir, "openchannel.jsonl")
    opener = node_factory.get_node_of(opener_kind)
    acceptor = node_factory.get_node_of(acceptor_kind, plugin=PLUGIN, openchannel_log=log,
                                        openchannel_min_msat=400_000_000)
    node_factory.fund_wallet(opener, 2_000_000)
    node_factory.connect(opener, acceptor)

    # The acceptor's hook refuses a channel below 400,000 sat: the opener's fundchannel fails with its message.
    with pytest.raises(RpcError) as err:
        opener.rpc.fundchannel(acceptor.node_id, 100_000)
    assert "openchannel_reject.py says no" in str(err.value.error)
    assert state(opener, acceptor) in (None, "CLOSED")
    # (The refusal travels as a BOLT 1 error, which is what is meant to happen here.)
    opener.allow_complaints = acceptor.allow_complaints = ("openchannel_reject.py says no", "peer_out WIRE_ERROR",
                                                          "peer_in WIRE_ERROR")

    # A refusal leaves the peers able to open: the hook accepts with mindepth 1 (instead of 3).
    node_factory.connect(opener, acceptor)
    res = opener.rpc.fundchannel(acceptor.node_id, FUNDING, push_msat=PUSH_MSAT, reserve=RESERVE)
    assert res["channel_type"] == ANCHORS
    wait_for(lambda: res["txid"] in chaind.rpc("getrawmempool"), what="funding tx in the mempool")
    payloads = [json.loads(ln)["openchannel"] for ln in open(log)]
    assert [int(p["funding_msat"]) for p in payloads] == [100_000_000, FUNDING * 1000]
    assert int(payloads[-1]["push_msat"]) == PUSH_MSAT
    assert int(payloads[-1]["channel_reserve_msat"]) == RESERVE * 1000
    node_factory.mine(1, [opener, acceptor])
    for a, b in ((opener, acceptor), (acceptor, opener)):
        wait_for(lambda a=a, b=b: state(a, b) == "CHANNELD_NORMAL", 30, f"{a.implementation} normal after 1 block")

    o = opener.rpc.listpeerchannels(acceptor.node_id)["channels"][0]
    a = acceptor.rpc.listpeerchannels(opener.node_id)["channels"][0]
    for c in (o, a):
        assert c["channel_type"] == ANCHORS
        assert c["short_channel_id"] == o["short_channel_id"] and c["total_msat"] == FUNDING * 1000
        assert c["funding_txid"] == res["txid"]
    assert o["opener"] == "local" and a["opener"] == "remote"
    assert o["to_us_msat"] == FUNDING * 1000 - PUSH_MSAT and a["to_us_msat"] == PUSH_MSAT
    assert o["their_reserve_msat"] == RESERVE * 1000 and a["our_reserve_msat"] == RESERVE * 1000
    # The acceptor asks the default 1% of the opener.
    assert a["their_reserve_msat"] == o["our_reserve_msat"] == FUNDING * 10
    assert o["funding"]["pushed_msat"] == PUSH_MSAT and a["funding"]["pushed_msat"] == PUSH_MSAT

    # The channel carries payments both ways.
    inv = acceptor.rpc.invoice(5_000_000, "to-acceptor", "x")["bolt11"]
    assert opener.rpc.pay(inv)["status"] == "complete"
    inv = opener.rpc.invoice(7_000_000, "to-opener", "x")["bolt11"]
    assert acceptor.rpc.pay(inv)["status"] == "complete"
    wait_for(lambda: opener.rpc.listpeerchannels(acceptor.node_id)["channels"][0]["to_us_msat"]
             == FUNDING * 1000 - PUSH_MSAT - 5_000_000 + 7_000_000, what="balances settle")
    wait_for(lambda: acceptor.rpc.listpeerchannels(opener.node_id)["channels"][0]["to_us_msat"]
             == PUSH_MSAT + 5_000_000 - 7_000_000, what="balances settle")


def test_anchors_disabled_on_ampere_falls_back_both_ways(node_factory, chaind):
    """Ampere with --dev-force-features=-23 (CLN's option) does not offer option_anchors: CLN, which opens anchor
    channels by default, falls back to static_remotekey, and so does Ampere opening to CLN."""
    amp = node_factory.get_node(listen=True, **{"dev-force-features": "-23"})
    cln = node_factory.get_cln_node()
    node_factory.fundchannel(amp, cln, FUNDING, announce=False)
    node_factory.fundchannel(cln, amp, FUNDING, announce=False)
    for a, b in ((amp, cln), (cln, amp)):
        chans = a.rpc.listpeerchannels(b.node_id)["channels"]
        assert len(chans) == 2 and all(c["channel_type"] == STATIC for c in chans)
