"""The on-chain wallet against amp-chaind: addresses, deposits, withdrawals at an exact feerate,
"all", errors that change nothing, txprepare/txsend/txdiscard, reservations, a 3-block reorg."""
from __future__ import annotations

import os
import sys
from decimal import Decimal

import pytest
from pyln.client import RpcError

sys.path.insert(0, os.path.dirname(__file__))
from chainutil import fund, sync, wait_for  # noqa: E402

from ampere.primitives.script import address_to_script  # noqa: E402
from ampere.primitives.tx import Transaction  # noqa: E402
from ampere.testing.schema import validate, validate_notification  # noqa: E402

PLUGINS = os.path.join(os.path.dirname(__file__), "..", "plugins")


@pytest.fixture
def funded(node_factory_chain, chaind):
    chaind.mine(101)
    node = node_factory_chain.get_node(plugin=os.path.join(PLUGINS, "listener.py"))
    sync(node, chaind)
    return node


def _mempool_fee_rate(chaind, txid) -> tuple[int, int]:
    e = chaind.rpc("getmempoolentry", txid)
    return int(e["fees"]["base"] * 100_000_000), e["vsize"]


def test_addresses(node_factory_chain, chaind):
    node = node_factory_chain.get_node()
    a1 = node.rpc.newaddr()
    assert list(a1) == ["p2tr"] and a1["p2tr"].startswith("bcrt1p")  # CLN's default is p2tr
    a2 = node.rpc.newaddr("bech32")
    assert list(a2) == ["bech32"] and a2["bech32"].startswith("bcrt1q")
    a3 = node.rpc.newaddr("all")
    for a in (a1, a2, a3):
        validate("newaddr", a)
        for addr in a.values():
            address_to_script(addr, "regtest")
    listed = node.rpc.listaddresses()
    validate("listaddresses", listed)
    assert listed["addresses"] == [{"keyidx": 1, "p2tr": a1["p2tr"]}, {"keyidx": 2, "bech32": a2["bech32"]},
                                   {"keyidx": 3, **a3}]
    assert node.rpc.listaddresses(a2["bech32"])["addresses"] == [{"keyidx": 2, "bech32": a2["bech32"]}]
    assert node.rpc.listaddresses(start=2, limit=1)["addresses"] == [{"keyidx": 2, "bech32": a2["bech32"]}]
    with pytest.raises(RpcError) as e:
        node.rpc.newaddr("p2pkh")
    assert e.value.error["code"] == -32602
    # Addresses survive a restart (the index is persisted, not reissued).
    node.restart()
    assert node.rpc.newaddr("bech32")["bech32"] not in (a2["bech32"], a3["bech32"])
    assert node.rpc.listaddresses()["addresses"][-1]["keyidx"] == 4


def test_withdraw_exact_feerate_and_coin_movements(funded, chaind):
    node = funded
    fund(node, chaind, ["1", "0.5"], "p2tr")
    fund(node, chaind, ["0.25"], "bech32")
    funds = node.rpc.listfunds()
    validate("listfunds", funds)
    assert sorted(o["amount_msat"] for o in funds["outputs"]) == [25_000_000_000, 50_000_000_000, 100_000_000_000]
    assert all(o["status"] == "confirmed" and not o["reserved"] for o in funds["outputs"])
    dest = chaind.rpc("getnewaddress")
    for rate, sat_vb in (("7500perkw", 30), ("4000perkb", 4), ("253perkw", 1)):
        w = node.rpc.withdraw(dest, 20_000_000, rate)
        validate("withdraw", w)
        fee, vsize = _mempool_fee_rate(chaind, w["txid"])
        # The fee paid is within 1 sat/vB of the requested feerate (and never below it).
        assert sat_vb <= fee / vsize < sat_vb + 1, (rate, fee, vsize)
        tx = Transaction.parse_hex(w["tx"])
        assert all(i.sequence == 0xFFFFFFFD for i in tx.inputs)  # RBF signalled
        assert chaind.rpc("getmempoolentry", w["txid"])["bip125-replaceable"] is True
    chaind.mine(1)
    sync(node, chaind)
    wait_for(lambda: all(o["status"] == "confirmed" for o in node.rpc.listfunds()["outputs"]))
    txs = node.rpc.listtransactions()
    validate("listtransactions", txs)
    assert len(txs["transactions"]) == 6  # 3 deposits (one sendtoaddress each) + 3 withdrawals
    # coin_movement: a deposit per received output, a withdrawal per spent one, CLN's shape.
    def moves():
        return [n["coin_movement"] for n in node.rpc.call("seen")["received"] if "coin_movement" in n]
    ms = wait_for(lambda: moves() if sum(m["primary_tag"] == "withdrawal" for m in moves()) >= 3 else None)
    for m in ms:
        validate_notification("coin_movement", m)
        assert m["type"] == "chain_mvt" and m["account_id"] == "wallet" and m["coin_type"] == "bcrt"
    deposits = [m for m in ms if m["primary_tag"] == "deposit"]
    assert {100_000_000_000, 50_000_000_000, 25_000_000_000} <= {m["credit_msat"] for m in deposits}
    assert [m["created_index"] for m in ms] == sorted(m["created_index"] for m in ms)


def test_withdraw_all(funded, chaind):
    node = funded
    fund(node, chaind, ["0.3", "0.2"], "bech32")
    dest = chaind.rpc("getnewaddress")
    w = node.rpc.withdraw(dest, "all", "urgent")
    tx = Transaction.parse_hex(w["tx"])
    assert len(tx.inputs) == 2 and len(tx.outputs) == 1
    assert tx.outputs[0].script_pubkey == address_to_script(dest, "regtest")
    fee, vsize = _mempool_fee_rate(chaind, w["txid"])
    assert fee + tx.outputs[0].value == 50_000_000
    assert node.rpc.listfunds()["outputs"] == []
    with pytest.raises(RpcError) as e:
        node.rpc.withdraw(dest, "all")
    assert e.value.error["code"] == 301


def test_bad_withdraw_changes_nothing(funded, chaind):
    node = funded
    fund(node, chaind, ["0.1"], "p2tr")
    before = node.rpc.listfunds()
    dest = chaind.rpc("getnewaddress")
    with pytest.raises(RpcError) as e:
        node.rpc.withdraw(dest, 20_000_000)
    assert e.value.error["code"] == 301
    assert e.value.error["message"].startswith("Could not afford 20000000sat using all 1 available UTXOs: ")
    for args, code in (([dest, 1000, "fast"], -32602), (["bcrt1qnotanaddress", 1000], -32602),
                       (["tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", 10000], -32602),
                       ([dest, "lots"], -32602), ([dest, 100], 302), ([dest, 1000, None, None, ["00:1"]], -32602)):
        with pytest.raises(RpcError) as e:
            node.rpc.call("withdraw", args)
        assert e.value.error["code"] == code, (args, e.value.error)
    assert node.rpc.listfunds() == before
    assert chaind.rpc("getrawmempool") == []


def test_txprepare_txsend_txdiscard_and_reservations(funded, chaind):
    node = funded
    fund(node, chaind, ["0.4", "0.6"], "p2tr")
    dest = chaind.rpc("getnewaddress")
    p = node.rpc.txprepare([{dest: "10000000sat"}], "2000perkw")
    validate("txprepare", p)
    reserved = [o for o in node.rpc.listfunds()["outputs"] if o["reserved"]]
    assert len(reserved) == 1 and reserved[0]["reserved_to_block"] == chaind.rpc("getblockcount") + 72
    d = node.rpc.txdiscard(p["txid"])
    validate("txdiscard", d)
    assert d == {"unsigned_tx": p["unsigned_tx"], "txid": p["txid"]}
    assert not any(o["reserved"] for o in node.rpc.listfunds()["outputs"])
    with pytest.raises(RpcError) as e:
        node.rpc.txsend(p["txid"])
    assert e.value.error["code"] == -1
    # Two outputs, one of them "all": every coin is spent, nothing left.
    p2 = node.rpc.txprepare([{dest: 5_000_000}, {node.rpc.newaddr()["p2tr"]: "all"}])
    s = node.rpc.txsend(p2["txid"])
    validate("txsend", s)
    assert s["txid"] == p2["txid"] and s["txid"] in chaind.rpc("getrawmempool")
    chaind.mine(1)
    sync(node, chaind)
    wait_for(lambda: [o for o in node.rpc.listfunds()["outputs"] if o["status"] == "confirmed"])
    # reserveinputs / unreserveinputs with a PSBT naming our output.
    utxo = node.rpc.listfunds()["outputs"][0]
    p3 = node.rpc.txprepare([{dest: 1_000_000}], utxos=[f"{utxo['txid']}:{utxo['output']}"])
    node.rpc.txdiscard(p3["txid"])
    h = chaind.rpc("getblockcount")
    r = node.rpc.reserveinputs(p3["psbt"])
    validate("reserveinputs", r)
    assert r["reservations"] == [{"txid": utxo["txid"], "vout": utxo["output"], "was_reserved": False,
                                  "reserved": True, "reserved_to_block": h + 72}]
    with pytest.raises(RpcError) as e:
        node.rpc.reserveinputs(p3["psbt"])
    assert e.value.error["code"] == -32602 and "already reserved" in e.value.error["message"]
    r = node.rpc.reserveinputs(p3["psbt"], False, 10)
    assert r["reservations"][0]["was_reserved"] is True and r["reservations"][0]["reserved_to_block"] == h + 82
    u = node.rpc.unreserveinputs(p3["psbt"], 10)
    validate("unreserveinputs", u)
    assert u["reservations"][0]["reserved_to_block"] == h + 72
    u = node.rpc.unreserveinputs(p3["psbt"])
    assert u["reservations"] == [{"txid": utxo["txid"], "vout": utxo["output"], "was_reserved": True,
                                  "reserved": False}]
    with pytest.raises(RpcError) as e:
        node.rpc.reserveinputs("not a psbt")
    assert e.value.error["code"] == -32602


def test_reorg_of_3_blocks_rolls_back_and_confirms_again(funded, chaind):
    node = funded
    addr = node.rpc.newaddr("bech32")["bech32"]
    txid = chaind.rpc("sendtoaddress", addr, Decimal("0.7"))
    raw = chaind.rpc("getrawtransaction", txid)
    [fund_block] = chaind.mine(1)
    chaind.mine(2)
    h = sync(node, chaind)
    out = wait_for(lambda: [o for o in node.rpc.listfunds()["outputs"] if o["txid"] == txid])[0]
    assert out["status"] == "confirmed" and out["blockheight"] == h - 2
    # Disconnect the funding block and the two above it.
    chaind.rpc("invalidateblock", fund_block)
    wait_for(lambda: node.rpc.getinfo()["blockheight"] == h - 3, what="rewind")
    out = wait_for(lambda: [o for o in node.rpc.listfunds()["outputs"] if o["txid"] == txid])[0]
    assert out["status"] == "unconfirmed" and "blockheight" not in out
    node.wait_for_log("Removing stale block ")
    # A longer branch (4 new blocks) confirms the same transaction again, in a different block.
    if txid not in chaind.rpc("getrawmempool"):
        chaind.rpc("sendrawtransaction", raw)  # as bitcoind returns disconnected transactions to its mempool
    new_blocks = chaind.mine(4)
    assert fund_block not in new_blocks
    assert sync(node, chaind) == h + 1
    out = wait_for(lambda: [o for o in node.rpc.listfunds()["outputs"]
                            if o["txid"] == txid and o["status"] == "confirmed"])[0]
    assert out["blockheight"] == h - 2
    # The re-confirmed output is spendable.
    w = node.rpc.withdraw(chaind.rpc("getnewaddress"), 10_000_000)
    assert w["txid"] in chaind.rpc("getrawmempool")
