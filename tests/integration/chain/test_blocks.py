"""Blocks, persistence, halving, reorgs (a longer fork, invalidateblock/reconsiderblock)."""
import pytest

from ampere.chain.regtest.blocks import assemble_block
from ampere.primitives.script import address_to_script, p2wpkh

from ampere.testing.chain import ChainD, ChainRpcError

OTHER = p2wpkh(bytes(20))


def _ensure_funds(chain):
    """Tests of this module may run alone (pytest-xdist): make sure the faucet has coins."""
    if chain.rpc("getbalance") < 5:
        chain.mine(101)


def test_mine_restart_and_kill_keep_the_chain(tmp_path):
    chain = ChainD(tmp_path).start()
    try:
        hashes = chain.mine(20)
        assert chain.rpc("getblockcount") == 20
        assert chain.rpc("getbestblockhash") == hashes[-1]
        info = chain.rpc("getblockchaininfo")
        assert info["chain"] == "regtest" and info["blocks"] == 20 and info["headers"] == 20
        header = chain.rpc("getblockheader", hashes[5])
        assert header["height"] == 6 and header["confirmations"] == 15 and header["nextblockhash"] == hashes[6]
        raw_header = chain.rpc("getblockheader", hashes[5], False)
        assert len(raw_header) == 160
        raw = chain.rpc("getblock", hashes[5], 0)
        assert raw.startswith(raw_header)
        chain.stop()
        chain.start()
        assert chain.rpc("getblockcount") == 20 and chain.rpc("getbestblockhash") == hashes[-1]
        more = chain.mine(5)
        # SIGKILL: the kernel loses unflushed state; amp-chaind replays its stored blocks at start.
        chain.kill()
        chain.start()
        assert chain.rpc("getbestblockhash") == more[-1]
        assert chain.mine(1)
    finally:
        chain.stop()


def test_halving_at_150_is_enforced_by_the_kernel(chaind):
    spk = address_to_script(chaind.faucet_address(), "regtest")
    height = chaind.rpc("getblockcount")
    if height < 149:
        chaind.mine(149 - height)
    tip = chaind.rpc("getblockchaininfo")
    assert tip["blocks"] == 149
    # A block at height 150 claiming 50 BTC: the kernel refuses it (bad-cb-amount).
    prev = bytes.fromhex(tip["bestblockhash"])[::-1]
    bad = assemble_block(prev, 150, tip["mediantime"], spk, [], 0)
    bad.txs[0].outputs[0].value = 50 * 100_000_000
    from ampere.chain.regtest.blocks import merkle_root, solve_header
    bad.header.merkle_root = merkle_root([t.txid() for t in bad.txs])
    solve_header(bad.header)
    assert chaind.rpc("submitblock", bad.serialize().hex()) == "bad-cb-amount"
    assert chaind.rpc("getblockcount") == 149
    # amp-chaind's own miner pays 25 BTC from 150 on.
    [h] = chaind.mine(1)
    cb = chaind.rpc("getblock", h, 2)["tx"][0]
    assert cb["vout"][0]["value"] == 25
    assert cb["vin"][0]["coinbase"].startswith("029600")  # BIP34: push of 150
    assert cb["vout"][1]["scriptPubKey"]["hex"].startswith("6a24aa21a9ed")  # witness commitment


def test_reorg_by_longer_fork_rolls_back_index(chaind):
    # A wallet payment confirmed 2 blocks before the tip, then a 4-block fork from 3 below the tip.
    _ensure_funds(chaind)
    dest = chaind.rpc("getnewaddress")
    txid = chaind.rpc("sendtoaddress", dest, "1.25")
    base = chaind.rpc("getblockcount")
    mined = chaind.mine(3)
    fork_parent = chaind.rpc("getblockhash", base)
    assert chaind.rpc("getrawtransaction", txid, True)["blockhash"] == mined[0]
    assert any(u["txid"] == txid for u in chaind.rpc("listunspent"))
    # 3 blocks of fork: same work, no reorg yet (first seen wins).
    fork = chaind.rpc("generatefork", 3, fork_parent)
    assert chaind.rpc("getbestblockhash") == mined[-1]
    assert chaind.rpc("getblockheader", fork[-1])["confirmations"] == -1
    # The 4th block gives the fork more work: the kernel reorganises.
    fork += chaind.rpc("generatefork", 1, fork[-1])
    assert chaind.rpc("getbestblockhash") == fork[-1]
    assert chaind.rpc("getblockcount") == base + 4
    assert chaind.rpc("getblockhash", base + 1) == fork[0]
    assert chaind.rpc("getblockheader", mined[0])["confirmations"] == -1
    # The payment went back to the mempool; the UTXO set and tx index rolled back.
    assert txid in chaind.rpc("getrawmempool")
    assert "blockhash" not in chaind.rpc("getrawtransaction", txid, True)
    assert chaind.rpc("gettxout", txid, 0, False) is None
    assert not any(u["txid"] == txid for u in chaind.rpc("listunspent"))
    assert any(u["txid"] == txid for u in chaind.rpc("listunspent", 0))
    # ...and confirms again.
    [h] = chaind.mine(1)
    assert chaind.rpc("getrawtransaction", txid, True)["blockhash"] == h
    assert any(u["txid"] == txid for u in chaind.rpc("listunspent"))


def test_invalidate_and_reconsider(chaind):
    _ensure_funds(chaind)
    dest = chaind.rpc("getnewaddress")
    txid = chaind.rpc("sendtoaddress", dest, "0.75")
    mined = chaind.mine(3)
    height = chaind.rpc("getblockcount")
    chaind.rpc("invalidateblock", mined[0])
    assert chaind.rpc("getblockcount") == height - 3
    assert txid in chaind.rpc("getrawmempool")
    assert chaind.rpc("getblockheader", mined[1])["confirmations"] == -1
    # Mine a shorter replacement, then reconsider: the kernel reorganises back to the longer chain.
    replacement = chaind.mine(1)
    assert chaind.rpc("getrawtransaction", txid, True)["blockhash"] == replacement[0]
    chaind.rpc("reconsiderblock", mined[0])
    assert chaind.rpc("getbestblockhash") == mined[-1]
    assert chaind.rpc("getrawtransaction", txid, True)["blockhash"] == mined[0]
    with pytest.raises(ChainRpcError) as e:
        chaind.rpc("invalidateblock", "00" * 32)
    assert (e.value.code, e.value.message) == (-5, "Block not found")


def test_generateblock_and_errors(chaind):
    _ensure_funds(chaind)
    addr = chaind.faucet_address()
    txid = chaind.rpc("sendtoaddress", chaind.rpc("getnewaddress"), "0.1")
    other = chaind.rpc("sendtoaddress", chaind.rpc("getnewaddress"), "0.2")
    res = chaind.rpc("generateblock", addr, [txid])
    block = chaind.rpc("getblock", res["hash"], 1)
    assert block["tx"][1:] == [txid]
    mempool = chaind.rpc("getrawmempool")
    assert other in mempool and txid not in mempool
    with pytest.raises(ChainRpcError) as e:
        chaind.rpc("getblockhash", 10**6)
    assert (e.value.code, e.value.message) == (-8, "Block height out of range")
    with pytest.raises(ChainRpcError) as e:
        chaind.rpc("getblock", "zz")
    assert e.value.code == -8 and "must be of length 64" in e.value.message
    with pytest.raises(ChainRpcError) as e:
        chaind.rpc("getrawtransaction", "11" * 32)
    assert e.value.code == -5 and e.value.message.startswith("No such mempool or blockchain transaction")
    with pytest.raises(ChainRpcError) as e:
        chaind.rpc("generatetoaddress", 1, "notanaddress")
    assert (e.value.code, e.value.message) == (-5, "Error: Invalid address")
    with pytest.raises(ChainRpcError) as e:
        chaind.rpc("nosuchmethod")
    assert (e.value.code, e.value.message) == (-32601, "Method not found")
    net = chaind.rpc("getnetworkinfo")
    assert net["version"] >= 270000 and net["subversion"] == "/Satoshi:28.0.0/"
    assert chaind.rpc("getzmqnotifications") == []
    assert chaind.rpc("uptime") >= 0
    decoded = chaind.rpc("decoderawtransaction", chaind.rpc("getrawtransaction", txid))
    assert decoded["txid"] == txid and "hex" not in decoded
