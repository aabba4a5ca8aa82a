"""fundchannel_start / fundchannel_complete / fundchannel_cancel with a funding transaction the caller builds
(here with txprepare / txsend), on pyln-testing's fixtures."""
import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, wait_for

from ampere.node.onchain.wallet_psbt import psbt_unsigned_tx


def test_fundchannel_start_complete_cancel(node_factory, bitcoind):
    l1, l2 = node_factory.line_graph(2, fundchannel=False)
    l1.fundwallet(2_000_000)
    l2_id = l2.info["id"]
    with pytest.raises(RpcError, match="No channel funding in progress"):
        l1.rpc.fundchannel_complete(l2_id, "cHNidP8BAAoCAAAAAAAAAAAAAA==")

    start = l1.rpc.fundchannel_start(l2_id, 500_000)
    assert start["funding_address"].startswith("bcrt1q") and start["mindepth"] == 1
    wrong = l1.rpc.txprepare([{start["funding_address"]: 400_000}])
    with pytest.raises(RpcError, match="expected 500000sat"):
        l1.rpc.fundchannel_complete(l2_id, wrong["psbt"])
    l1.rpc.txdiscard(wrong["txid"])
    prep = l1.rpc.txprepare([{start["funding_address"]: 500_000}])
    done = l1.rpc.fundchannel_complete(l2_id, prep["psbt"])
    assert done["commitments_secured"] is True
    chan = only_one(l1.rpc.listpeerchannels(l2_id)["channels"])
    assert chan["channel_id"] == done["channel_id"] and chan["state"] == "CHANNELD_AWAITING_LOCKIN"
    assert prep["txid"] not in bitcoind.rpc.getrawmempool()   # ampd never broadcasts it: the caller does
    l1.rpc.txsend(prep["txid"])
    bitcoind.generate_block(1, wait_for_mempool=prep["txid"])
    wait_for(lambda: l1.channel_state(l2) == "CHANNELD_NORMAL" and l2.channel_state(l1) == "CHANNELD_NORMAL")

    # A second negotiation, abandoned before the funding transaction exists.
    l1.rpc.fundchannel_start(l2_id, 300_000)
    assert l1.rpc.fundchannel_cancel(l2_id) == {"cancelled": "Channel open canceled by RPC"}
    with pytest.raises(RpcError, match="No channel funding in progress"):
        l1.rpc.fundchannel_cancel(l2_id)
    assert len(l1.rpc.listpeerchannels(l2_id)["channels"]) == 1


def test_multifundchannel(node_factory, bitcoind):
    l1, l2, l3 = node_factory.get_nodes(3)
    l1.fundwallet(3_000_000)
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    dests = [{"id": l2.info["id"], "amount": 400_000},
             {"id": f"{l3.info['id']}@localhost:{l3.port}", "amount": 300_000, "push_msat": 10_000_000}]
    res = l1.rpc.multifundchannel(dests)
    assert len(res["channel_ids"]) == 2 and res["txid"] in bitcoind.rpc.getrawmempool()
    outs = bitcoind.rpc.decoderawtransaction(res["tx"])["vout"]
    for c, amount in zip(res["channel_ids"], (400_000, 300_000)):
        assert int(outs[c["outnum"]]["value"] * 10**8) == amount
    bitcoind.generate_block(1, wait_for_mempool=res["txid"])
    for peer in (l2, l3):
        wait_for(lambda peer=peer: l1.channel_state(peer) == "CHANNELD_NORMAL")
    assert only_one(l3.rpc.listpeerchannels()["channels"])["to_us_msat"] == 10_000_000
    # A destination that cannot be funded: nothing is opened, nothing broadcast.
    with pytest.raises(RpcError, match="Unknown peer"):
        l1.rpc.multifundchannel([{"id": l2.info["id"], "amount": 100_000},
                                 {"id": "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
                                  "amount": 100_000}])   # a valid key, but no such peer: "Unknown peer"
    assert len(l1.rpc.listpeerchannels(l2.info["id"])["channels"]) == 1
    assert bitcoind.rpc.getrawmempool() == []


def test_pyln_channel_helpers(node_factory, bitcoind):
    """pyln-testing's own channel helpers: openchannel (announced, node_announcement seen) and
    fundbalancedchannel (feerate 'slow', minconf 0, half pushed)."""
    l1, l2, l3 = node_factory.get_nodes(3)
    l1.openchannel(l2, 200_000)
    assert [n.get("alias") for n in l1.rpc.listnodes(l2.info["id"])["nodes"]] == [l2.rpc.getinfo()["alias"]]
    scid = l3.fundbalancedchannel(l2, 300_000)
    wait_for(lambda: l3.is_local_channel_active(scid))
    chan = only_one(l3.rpc.listpeerchannels(l2.info["id"])["channels"])
    assert chan["short_channel_id"] == scid and chan["to_us_msat"] == 150_000_000


def _psbt_outputs(bitcoind, psbt: str) -> list[int]:
    # (amp-chaind has no decodepsbt: the PSBT's unsigned transaction, read by ampere's own reader.)
    return [o.value for o in psbt_unsigned_tx(psbt).outputs]


def _fee(feerate_perkw: int, weight: int) -> int:
    return (feerate_perkw * weight + 999) // 1000


def fundpsbt(node, satoshi, feerate, startweight, **kw):
    # (the installed pyln-client's fundpsbt() predates `opening_anchor_channel`: the raw call.)
    return node.rpc.call("fundpsbt", {"satoshi": satoshi, "feerate": feerate, "startweight": startweight, **kw})


def utxopsbt(node, satoshi, feerate, startweight, utxos, **kw):
    return node.rpc.call("utxopsbt", {"satoshi": satoshi, "feerate": feerate, "startweight": startweight,
                                      "utxos": utxos, **kw})


def test_fundpsbt_utxopsbt_opening_anchor_channel(node_factory, bitcoind):
    """`opening_anchor_channel` (CLN): the PSBT's change keeps min-emergency-msat (25,000 sat) in the wallet when
    the rest of the wallet would not; without it (and no anchor channel yet) nothing is kept; what cannot leave the
    reserve is refused with 313.  utxopsbt does the same with the coins it is given."""
    l1 = node_factory.get_node()
    l1.fundwallet(100_000)
    [utxo] = [f"{o['txid']}:{o['output']}" for o in l1.rpc.listfunds()["outputs"]]
    rate, start = 1000, 600

    plain = fundpsbt(l1, 50_000, f"{rate}perkw", start)
    assert "change_outnum" not in plain and _psbt_outputs(bitcoind, plain["psbt"]) == []
    assert plain["excess_msat"] == (100_000 - 50_000 - _fee(rate, plain["estimated_final_weight"])) * 1000
    assert [(r["was_reserved"], r["reserved"]) for r in plain["reservations"]] == [(False, True)]
    with pytest.raises(RpcError, match="already reserved"):
        utxopsbt(l1, 50_000, f"{rate}perkw", start, [utxo])
    l1.rpc.unreserveinputs(plain["psbt"])

    kept = fundpsbt(l1, 50_000, f"{rate}perkw", start, opening_anchor_channel=True)
    assert kept["change_outnum"] == 0 and _psbt_outputs(bitcoind, kept["psbt"]) == [25_000]
    assert kept["excess_msat"] == (100_000 - 50_000 - 25_000 - _fee(rate, kept["estimated_final_weight"])) * 1000
    assert kept["estimated_final_weight"] == plain["estimated_final_weight"] + 172   # + the P2TR change output
    l1.rpc.unreserveinputs(kept["psbt"])

    # 80,000 sat leave less than 25,000: fine for a static_remotekey channel, refused for an anchor one.
    with pytest.raises(RpcError, match="We would not have enough left for min-emergency-msat 25000sat") as err:
        fundpsbt(l1, 80_000, f"{rate}perkw", start, opening_anchor_channel=True)
    assert err.value.error["code"] == 313
    with pytest.raises(RpcError, match="min-emergency-msat") as err:
        utxopsbt(l1, 80_000, f"{rate}perkw", start, [utxo], opening_anchor_channel=True)
    assert err.value.error["code"] == 313
    assert all(not o["reserved"] for o in l1.rpc.listfunds()["outputs"])   # the refusals reserved nothing
    ok = utxopsbt(l1, 80_000, f"{rate}perkw", start, [utxo], reserve=0)
    assert "reservations" not in ok and "change_outnum" not in ok

    # utxopsbt: excess as change is enough on its own; "all" leaves exactly the reserve as change.
    change = utxopsbt(l1, 50_000, f"{rate}perkw", start, [utxo], excess_as_change=True,
                             opening_anchor_channel=True, reserve=0)
    [value] = _psbt_outputs(bitcoind, change["psbt"])
    assert change["excess_msat"] == 0 and value == 100_000 - 50_000 - _fee(rate, change["estimated_final_weight"])
    everything = utxopsbt(l1, "all", f"{rate}perkw", start, [utxo], opening_anchor_channel=True, reserve=0)
    assert _psbt_outputs(bitcoind, everything["psbt"]) == [25_000]
    assert everything["excess_msat"] == (75_000 - _fee(rate, everything["estimated_final_weight"])) * 1000

    # A second coin covers the reserve: no change needed any more.
    l1.fundwallet(30_000)
    two = fundpsbt(l1, 50_000, f"{rate}perkw", start, opening_anchor_channel=True, reserve=0)
    assert "change_outnum" not in two and len(psbt_unsigned_tx(two["psbt"]).inputs) == 1
