"""Mempool acceptance against amp-chaind: bitcoind's reject reasons and RPC codes."""
import coincurve
import pytest

from ampere.primitives.script import OP_CHECKSEQUENCEVERIFY, OP_DROP, p2tr, p2wpkh, p2wsh, push_int
from ampere.primitives.tx import (
    OutPoint, Transaction, TxIn, TxOut, sign_input_p2tr_keypath, taproot_output_key,
)
from ampere.testing.chain import ChainD, ChainRpcError

OTHER = p2wpkh(bytes(20))


@pytest.fixture(scope="module")
def funded(chaind, funder):
    return funder(chaind, 12)


def _reject(chaind, tx):
    with pytest.raises(ChainRpcError) as e:
        chaind.rpc("sendrawtransaction", tx.serialize().hex())
    return e.value


def test_valid_spend_accepted_then_mined_with_witness(chaind, funded):
    coin = funded.coins[0]
    tx = funded.spend(coin, [TxOut(coin[1] - 1000, OTHER)])
    assert chaind.rpc("sendrawtransaction", tx.serialize().hex()) == tx.txid_hex()
    # Idempotent for a transaction already in the mempool (as bitcoind).
    assert chaind.rpc("sendrawtransaction", tx.serialize().hex()) == tx.txid_hex()
    entry = chaind.rpc("getmempoolentry", tx.txid_hex())
    assert entry["vsize"] == tx.vsize() and entry["fees"]["base"] * 100_000_000 == 1000
    out = chaind.rpc("gettxout", tx.txid_hex(), 0)
    assert out["confirmations"] == 0
    assert chaind.rpc("gettxout", coin[0].txid_hex(), 0) is None  # spent in the mempool
    assert chaind.rpc("gettxout", coin[0].txid_hex(), 0, False) is not None
    [block_hash] = chaind.mine(1)
    block = chaind.rpc("getblock", block_hash, 2)
    mined = [t for t in block["tx"] if t["txid"] == tx.txid_hex()]
    assert mined and mined[0]["vin"][0]["txinwitness"]
    assert block["tx"][0]["vout"][0]["value"] * 100_000_000 == 50 * 100_000_000 + 1000  # fee to the miner
    assert chaind.rpc("getrawmempool") == []
    assert chaind.rpc("getrawtransaction", tx.txid_hex(), True)["confirmations"] == 1
    # Resending a confirmed transaction: -27.
    e = _reject(chaind, tx)
    assert (e.code, e.message) == (-27, "Transaction outputs already in utxo set")


def test_bad_signature_rejected(chaind, funded):
    coin = funded.coins[1]
    tx = funded.spend(coin, [TxOut(coin[1] - 1000, OTHER)])
    sig = bytearray(tx.inputs[0].witness[0])
    sig[10] ^= 1
    tx.inputs[0].witness[0] = bytes(sig)
    e = _reject(chaind, tx)
    assert e.code == -26 and e.message.startswith("mandatory-script-verify-flag-failed")
    res = chaind.rpc("testmempoolaccept", [tx.serialize().hex()])
    assert res[0]["allowed"] is False and res[0]["reject-reason"].startswith("mandatory-script-verify-flag-failed")


def test_missing_input_rejected(chaind, funded):
    tx = funded.spend((OutPoint(b"\x42" * 32, 0), 10_000), [TxOut(5000, OTHER)])
    e = _reject(chaind, tx)
    assert (e.code, e.message) == (-25, "bad-txns-inputs-missingorspent")


def test_double_spend_needs_rbf_fee(chaind, funded):
    coin = funded.coins[2]
    first = funded.spend(coin, [TxOut(coin[1] - 1000, OTHER)])
    chaind.rpc("sendrawtransaction", first.serialize().hex())
    # Same fee: a conflicting spend is refused (full RBF needs a higher fee).
    second = funded.spend(coin, [TxOut(coin[1] - 1000, p2wpkh(b"\x01" * 20))])
    e = _reject(chaind, second)
    assert e.code == -26 and e.message.startswith("insufficient fee, rejecting replacement")
    # Paying more replaces it (BIP125 rules 3, 4, 6).
    third = funded.spend(coin, [TxOut(coin[1] - 5000, p2wpkh(b"\x02" * 20))])
    assert chaind.rpc("sendrawtransaction", third.serialize().hex()) == third.txid_hex()
    mempool = chaind.rpc("getrawmempool")
    assert third.txid_hex() in mempool and first.txid_hex() not in mempool
    chaind.mine(1)
    # Double spend of a confirmed coin: missing or spent.
    e = _reject(chaind, second)
    assert (e.code, e.message) == (-25, "bad-txns-inputs-missingorspent")


def test_immature_coinbase_rejected(chaind):
    key = coincurve.PrivateKey()
    spk = p2wpkh(key.public_key.format())
    from ampere.primitives.script import script_to_address
    [h] = chaind.rpc("generatetoaddress", 1, script_to_address(spk, "regtest"))
    cb = chaind.rpc("getblock", h, 2)["tx"][0]
    from ampere.primitives.tx import sign_input_p2wpkh
    tx = Transaction(2, [TxIn(OutPoint.from_hex(cb["txid"], 0))], [TxOut(49 * 100_000_000, OTHER)])
    sign_input_p2wpkh(tx, 0, key, 50 * 100_000_000)
    e = _reject(chaind, tx)
    assert e.code == -26
    assert e.message == "bad-txns-premature-spend-of-coinbase, tried to spend coinbase at depth 1"


def test_fee_too_low_and_value_out_above_in(chaind, funded):
    coin = funded.coins[3]
    no_fee = funded.spend(coin, [TxOut(coin[1], OTHER)])
    e = _reject(chaind, no_fee)
    assert e.code == -26 and e.message == f"min relay fee not met, 0 < {no_fee.vsize()}"
    too_much = funded.spend(coin, [TxOut(coin[1] + 1, OTHER)])
    e = _reject(chaind, too_much)
    assert e.code == -26 and e.message.startswith("bad-txns-in-belowout, value in (")


def test_bad_hex_and_dust(chaind, funded):
    with pytest.raises(ChainRpcError) as e:
        chaind.rpc("sendrawtransaction", "00zz")
    assert e.value.code == -22
    coin = funded.coins[4]
    dust = funded.spend(coin, [TxOut(100, OTHER), TxOut(coin[1] - 2000, OTHER)])
    assert _reject(chaind, dust).message == "dust"


def test_csv_relative_lock_and_taproot_keypath(chaind, funded):
    # A P2WSH output locked by `2 OP_CHECKSEQUENCEVERIFY OP_DROP OP_TRUE`-like script (to_self_delay shape).
    script = push_int(2) + bytes([OP_CHECKSEQUENCEVERIFY, OP_DROP]) + push_int(1)
    coin = funded.coins[5]
    fund = funded.spend(coin, [TxOut(coin[1] - 1000, p2wsh(script))])
    chaind.rpc("sendrawtransaction", fund.serialize().hex())
    chaind.mine(1)
    spend = Transaction(2, [TxIn(OutPoint(fund.txid(), 0), b"", 2, [script])],
                        [TxOut(coin[1] - 3000, OTHER)])
    e = _reject(chaind, spend)
    assert (e.code, e.message) == (-26, "non-BIP68-final")
    chaind.mine(1)
    assert chaind.rpc("sendrawtransaction", spend.serialize().hex()) == spend.txid_hex()

    # Taproot key path: the kernel needs every spent output, which amp-chaind supplies.
    internal = coincurve.PrivateKey()
    coin = funded.coins[6]
    to_tr = funded.spend(coin, [TxOut(coin[1] - 1000, p2tr(taproot_output_key(internal)))])
    chaind.rpc("sendrawtransaction", to_tr.serialize().hex())
    spent = [to_tr.outputs[0]]
    tr_spend = Transaction(2, [TxIn(OutPoint(to_tr.txid(), 0))], [TxOut(spent[0].value - 1000, OTHER)])
    sign_input_p2tr_keypath(tr_spend, 0, internal, spent)
    bad = tr_spend.copy()
    bad.inputs[0].witness = [bytes(64)]
    assert _reject(chaind, bad).code == -26
    assert chaind.rpc("sendrawtransaction", tr_spend.serialize().hex()) == tr_spend.txid_hex()
    chaind.mine(1)
    assert chaind.rpc("getrawtransaction", tr_spend.txid_hex(), 1)["confirmations"] == 1


def test_testmempoolaccept_package_and_shapes(chaind, funded):
    coin = funded.coins[7]
    parent = funded.spend(coin, [TxOut(coin[1] - 1000, OTHER)])
    res = chaind.rpc("testmempoolaccept", [parent.serialize().hex()])
    assert res[0]["allowed"] is True and res[0]["vsize"] == parent.vsize()
    assert res[0]["fees"]["base"] * 100_000_000 == 1000
    assert parent.txid_hex() not in chaind.rpc("getrawmempool")  # test only
    with pytest.raises(ChainRpcError) as e:
        chaind.rpc("getmempoolentry", parent.txid_hex())
    assert (e.value.code, e.value.message) == (-5, "Transaction not in mempool")


def test_faucet_wallet_flow(chaind):
    if chaind.rpc("getbalance") < 5:  # this test may run alone (pytest-xdist)
        chaind.mine(101)
    addr = chaind.rpc("getnewaddress")
    assert addr.startswith("bcrt1q")
    tr = chaind.rpc("getnewaddress", "", "bech32m")
    assert tr.startswith("bcrt1p")
    before = chaind.rpc("getbalance")
    txid = chaind.rpc("sendtoaddress", tr, 1)
    txid2 = chaind.rpc("sendtoaddress", addr, "0.5")  # spends unconfirmed change if needed
    assert set(chaind.rpc("getrawmempool")) >= {txid, txid2}
    chaind.mine(1)
    utxos = {(u["txid"], u["address"]): u for u in chaind.rpc("listunspent")}
    assert (txid, tr) in utxos and utxos[(txid, tr)]["amount"] == 1
    assert (txid2, addr) in utxos
    # The taproot coin is spendable by the wallet too (key path through the kernel).
    chaind.rpc("sendtoaddress", addr, "0.9", None, None, False, None, None, None, None, 2)
    chaind.mine(1)
    assert chaind.rpc("getbalance") > before  # block rewards outweigh the fees
    with pytest.raises(ChainRpcError) as e:
        chaind.rpc("sendtoaddress", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", 1)
    assert (e.value.code, e.value.message) == (-5, "Invalid address")
    with pytest.raises(ChainRpcError) as e:
        chaind.rpc("sendtoaddress", addr, 10_000_000)
    assert (e.value.code, e.value.message) == (-6, "Insufficient funds")
    fee = chaind.rpc("estimatesmartfee", 6)
    assert fee["feerate"] > 0 and fee["blocks"] == 6


def test_mempool_persists_across_restarts_unless_persistmempool_0(tmp_path):
    # bitcoind's -persistmempool: the mempool is saved at shutdown and loaded at start (default); with 0 the node
    # starts empty and leaves the saved file alone (test_anchors uses it to keep a claim out of the payer's sight).
    node = ChainD(tmp_path / "chain")
    node.start()
    try:
        node.mine(101)
        txid = node.rpc("sendtoaddress", node.rpc("getnewaddress"), 1)
        node.stop()
        node.start()
        assert node.rpc("getrawmempool") == [txid]
        node.stop()
        node.extra_args.append("-persistmempool=0")
        node.start()
        assert node.rpc("getrawmempool") == []
        node.stop()
        node.extra_args.remove("-persistmempool=0")
        node.start()
        assert node.rpc("getrawmempool") == [txid]
    finally:
        node.stop()
