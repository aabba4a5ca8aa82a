"""amp-chaind's JSON-RPC methods: the bitcoind subset Lightning nodes use, with Bitcoin Core's
parameter names, result shapes, error codes and messages.

Deliberate differences from bitcoind (regtest only):
- estimatesmartfee answers with the fallback fee rate (-fallbackfee) instead of "Insufficient
  data or no feerate found", so Lightning nodes get a usable feerate on an empty regtest chain.
- generatefork (not in bitcoind) mines blocks on any known block, letting the kernel reorganise
  once the fork has more work.
- The faucet wallet is always loaded; wallet URLs (/wallet/<name>) all reach it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

from ampere.chain.regtest.blocks import REGTEST_BITS, Block, BlockHeader, block_work, difficulty_from_bits
from ampere.chain.regtest.jsonfmt import (
    Btc, amount_to_sat, block_sizes, header_json, script_pubkey_json, spk_descriptor, tx_to_json,
)
from ampere.chain.regtest.mempool import (
    INCREMENTAL_RELAY_FEE_SAT_KVB, MIN_RELAY_FEE_SAT_KVB, RejectError, fee_for,
)
from ampere.chain.regtest.node import ChainError, ChainNode
from ampere.chain.regtest.wallet import Wallet, WalletError
from ampere.primitives.script import AddressError, address_to_script, script_to_address
from ampere.primitives.tx import Transaction, TxOut, TxParseError

VERSION = 280000
SUBVERSION = "/Satoshi:28.0.0/"
PROTOCOL_VERSION = 70016
DEFAULT_MAX_FEERATE_SAT_KVB = 10_000_000  # 0.10 BTC/kvB, sendrawtransaction's default maxfeerate
REGTEST_WORK_PER_BLOCK = block_work(REGTEST_BITS)

# RPC error codes (Bitcoin Core src/rpc/protocol.h)
RPC_MISC_ERROR = -1
RPC_TYPE_ERROR = -3
RPC_WALLET_ERROR = -4
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_WALLET_INSUFFICIENT_FUNDS = -6
RPC_INVALID_PARAMETER = -8
RPC_DESERIALIZATION_ERROR = -22
RPC_VERIFY_ERROR = -25
RPC_VERIFY_REJECTED = -26
RPC_VERIFY_ALREADY_IN_CHAIN = -27
RPC_METHOD_NOT_FOUND = -32601
RPC_METHOD_DEPRECATED = -32
RPC_INVALID_PARAMS = -32602


class RpcError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Context:
    node: ChainNode
    wallet: Wallet
    fallback_fee_sat_kvb: int
    request_stop: Callable[[], None]
    started: float = field(default_factory=time.time)


# ------------------------------------------------------------------ parameter checking
def _json_type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float, Decimal)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _type_error(v, expected: str) -> RpcError:
    return RpcError(RPC_TYPE_ERROR, f"JSON value of type {_json_type(v)} is not of expected type {expected}")


def p_int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, Decimal, float)):
        raise _type_error(v, "number")
    if isinstance(v, (Decimal, float)) and v != int(v):
        raise _type_error(v, "number")
    return int(v)


def p_bool(v) -> bool:
    if not isinstance(v, bool):
        raise _type_error(v, "bool")
    return v


def p_str(v) -> str:
    if not isinstance(v, str):
        raise _type_error(v, "string")
    return v


def p_hash(v, name: str) -> bytes:
    """A display-order hex hash; returns internal byte order (ParseHashV)."""
    s = p_str(v)
    if len(s) != 64:
        raise RpcError(RPC_INVALID_PARAMETER, f"{name} must be of length 64 (not {len(s)}, for '{s}')")
    try:
        return bytes.fromhex(s)[::-1]
    except ValueError:
        raise RpcError(RPC_INVALID_PARAMETER, f"{name} must be hexadecimal string (not '{s}')") from None


def p_hex(v, name: str) -> bytes:
    s = p_str(v)
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise RpcError(RPC_INVALID_PARAMETER, f"{name} must be hexadecimal string (not '{s}')") from None


def p_amount(v) -> int:
    if not isinstance(v, (int, float, Decimal, str)) or isinstance(v, bool):
        raise RpcError(RPC_TYPE_ERROR, "Amount is not a number or string")
    try:
        return amount_to_sat(v)
    except ValueError as e:
        raise RpcError(RPC_TYPE_ERROR, str(e)) from None


def p_address(v) -> bytes:
    s = p_str(v)
    try:
        return address_to_script(s, "regtest")
    except AddressError:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Invalid address") from None


def p_verbosity(v, default: int) -> int:
    if v is None:
        return default
    if isinstance(v, bool):
        return int(v)
    return p_int(v)


def decode_tx(hexstring, try_witness: bool = True, try_no_witness: bool = True) -> Transaction:
    """DecodeHexTx: try the extended (witness) format, then the legacy one."""
    if not isinstance(hexstring, str):
        raise _type_error(hexstring, "string")
    try:
        raw = bytes.fromhex(hexstring)
    except ValueError:
        raise RpcError(RPC_DESERIALIZATION_ERROR, "TX decode failed") from None
    for allow_witness in ([True] if try_witness else []) + ([False] if try_no_witness else []):
        try:
            return Transaction.parse(raw, allow_witness=allow_witness)
        except TxParseError:
            continue
    raise RpcError(RPC_DESERIALIZATION_ERROR, "TX decode failed")


# ------------------------------------------------------------------ chain helpers
def _chainwork(height: int) -> int:
    return REGTEST_WORK_PER_BLOCK * (height + 1)


def _block_by_hash(ctx: Context, block_hash: bytes) -> tuple[Block, bytes, int]:
    node = ctx.node
    raw = node.store.get_block_raw(block_hash)
    meta = node.store.get_block_meta(block_hash)
    if raw is None or meta is None:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
    return Block.parse(raw), raw, meta[0]


def _header_json(ctx: Context, block: Block, height: int) -> dict:
    node = ctx.node
    block_hash = block.hash()
    active = node.store.height_of(block_hash) is not None
    tip = node.tip_height()
    confirmations = tip - height + 1 if active else -1
    next_hash = node.store.hash_at(height + 1) if active else None
    mtp = node.median_time_past(height) if active else node._branch_mtp(block_hash)
    return header_json(block.header, height, confirmations, _chainwork(height), len(block.txs), mtp, next_hash)


# ------------------------------------------------------------------ chain queries
def getblockchaininfo(ctx: Context):
    node = ctx.node
    height = node.tip_height()
    tip = node.tip_hash()
    header = BlockHeader.parse(node.store.get_block_raw(tip))
    return {
        "chain": "regtest",
        "blocks": height,
        "headers": max(height, node.kernel.headers_height()),
        "bestblockhash": tip[::-1].hex(),
        "difficulty": difficulty_from_bits(header.bits),
        "time": header.time,
        "mediantime": node.median_time_past(height),
        "verificationprogress": 1,
        "initialblockdownload": False,
        "chainwork": f"{_chainwork(height):064x}",
        "size_on_disk": 0,
        "pruned": False,
        "warnings": [],
    }


def getnetworkinfo(ctx: Context):
    return {
        "version": VERSION,
        "subversion": SUBVERSION,
        "protocolversion": PROTOCOL_VERSION,
        "localservices": "0000000000000c09",
        "localservicesnames": ["NETWORK", "WITNESS", "NETWORK_LIMITED", "P2P_V2"],
        "localrelay": True,
        "timeoffset": 0,
        "networkactive": True,
        "connections": 0,
        "connections_in": 0,
        "connections_out": 0,
        "networks": [],
        "relayfee": Btc(MIN_RELAY_FEE_SAT_KVB),
        "incrementalfee": Btc(INCREMENTAL_RELAY_FEE_SAT_KVB),
        "localaddresses": [],
        "warnings": [],
    }


def getblockcount(ctx: Context):
    return ctx.node.tip_height()


def getbestblockhash(ctx: Context):
    return ctx.node.tip_hash()[::-1].hex()


def getblockhash(ctx: Context, height):
    h = p_int(height)
    if h < 0 or h > ctx.node.tip_height():
        raise RpcError(RPC_INVALID_PARAMETER, "Block height out of range")
    return ctx.node.store.hash_at(h)[::-1].hex()


def getblockheader(ctx: Context, blockhash, verbose=True):
    block_hash = p_hash(blockhash, "hash")
    block, raw, height = _block_by_hash(ctx, block_hash)
    if verbose is not None and not p_bool(verbose):
        return raw[:80].hex()
    return _header_json(ctx, block, height)


def getblock(ctx: Context, blockhash, verbosity=None):
    block_hash = p_hash(blockhash, "blockhash")
    level = p_verbosity(verbosity, 1)
    block, raw, height = _block_by_hash(ctx, block_hash)
    if level <= 0:
        return raw.hex()
    out = _header_json(ctx, block, height)
    sizes = block_sizes(block, raw)
    out.update(sizes)
    if level == 1:
        out["tx"] = [tx.txid_hex() for tx in block.txs]
    else:
        txs = []
        for tx in block.txs:
            spent = None
            if not tx.is_coinbase():
                rows = ctx.node.store.spent_outputs_of(block_hash, tx.txid())
                if len(rows) == len(tx.inputs):
                    spent = [TxOut(v, s) for _, v, s in rows]
            txs.append(tx_to_json(tx, spent=spent, prevouts=level >= 3))
        out["tx"] = txs
    # Core orders the keys: header fields, then sizes, then tx; nextblockhash last.
    if "nextblockhash" in out:
        out["nextblockhash"] = out.pop("nextblockhash")
    return out


# ------------------------------------------------------------------ transactions
def getrawtransaction(ctx: Context, txid, verbose=None, blockhash=None):
    node = ctx.node
    t = p_hash(txid, "parameter 1")
    level = p_verbosity(verbose, 0)
    in_block = None
    if blockhash is not None:
        bh = p_hash(blockhash, "parameter 3")
        if node.store.get_block_meta(bh) is None:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block hash not found")
        block, _, height = _block_by_hash(ctx, bh)
        for tx in block.txs:
            if tx.txid() == t:
                in_block = (tx, bh, height)
                break
        if in_block is None:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY,
                           "No such transaction found in the provided block. Use gettransaction for wallet "
                           "transactions.")
    if in_block is None:
        e = node.mempool.entries.get(t)
        if e is not None:
            if level <= 0:
                return e.raw.hex()
            return tx_to_json(e.tx, spent=e.spent if level >= 2 else None, prevouts=level >= 2)
        found = node.store.get_tx(t)
        if found is None:
            if node.tip_height() >= 0 and t in {tx.txid() for tx in Block.parse(
                    node.store.get_block_raw(node.store.hash_at(0))).txs}:
                raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "The genesis block coinbase is not considered an "
                               "ordinary transaction and cannot be retrieved")
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY,
                           "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.")
        raw, bh, height = found
        in_block = (Transaction.parse(raw), bh, height)
    tx, bh, height = in_block
    if level <= 0:
        return tx.serialize().hex()
    spent = None
    if level >= 2 and not tx.is_coinbase():
        rows = node.store.spent_outputs_of(bh, tx.txid())
        if len(rows) == len(tx.inputs):
            spent = [TxOut(v, s) for _, v, s in rows]
    out = tx_to_json(tx, spent=spent, prevouts=level >= 2)
    active = node.store.height_of(bh) is not None
    if blockhash is not None:
        out = {"in_active_chain": active, **out}
    out["blockhash"] = bh[::-1].hex()
    if active:
        header = BlockHeader.parse(node.store.get_block_raw(bh))
        out["confirmations"] = node.tip_height() - height + 1
        out["time"] = header.time
        out["blocktime"] = header.time
    else:
        out["confirmations"] = 0
    return out


def decoderawtransaction(ctx: Context, hexstring, iswitness=None):
    if iswitness is None:
        tx = decode_tx(hexstring)
    else:
        w = p_bool(iswitness)
        tx = decode_tx(hexstring, try_witness=w, try_no_witness=not w)
    return tx_to_json(tx, include_hex=False)


def _max_feerate(v) -> int:
    if v is None:
        return DEFAULT_MAX_FEERATE_SAT_KVB
    return p_amount(v)  # BTC/kvB -> sat/kvB


def sendrawtransaction(ctx: Context, hexstring, maxfeerate=None, maxburnamount=None):
    node = ctx.node
    tx = decode_tx(hexstring)
    max_rate = _max_feerate(maxfeerate)
    max_burn = p_amount(maxburnamount) if maxburnamount is not None else 0
    for o in tx.outputs:
        if (o.script_pubkey[:1] == b"\x6a" or len(o.script_pubkey) > 10_000) and o.value > max_burn:
            raise RpcError(RPC_VERIFY_ERROR, "Unspendable output exceeds maximum configured by user (maxburnamount)")
    txid = tx.txid()
    # BroadcastTransaction: an already confirmed transaction is reported, a mempool one is fine.
    if any(node.store.get_coin(txid, n) is not None for n in range(len(tx.outputs))):
        raise RpcError(RPC_VERIFY_ALREADY_IN_CHAIN, "Transaction outputs already in utxo set")
    if txid in node.mempool:
        return tx.txid_hex()
    try:
        entry, _ = node.accept(tx, test_only=True)
    except RejectError as e:
        raise RpcError(e.code, e.message) from None
    if max_rate and entry.fee > fee_for(max_rate, entry.vsize):
        raise RpcError(RPC_VERIFY_ERROR, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)")
    try:
        node.accept(tx)
    except RejectError as e:
        raise RpcError(e.code, e.message) from None
    return tx.txid_hex()


def testmempoolaccept(ctx: Context, rawtxs, maxfeerate=None):
    if not isinstance(rawtxs, list):
        raise _type_error(rawtxs, "array")
    if not 1 <= len(rawtxs) <= 25:
        raise RpcError(RPC_INVALID_PARAMETER, "Array must contain between 1 and 25 transactions.")
    max_rate = _max_feerate(maxfeerate)
    txs = [decode_tx(r) for r in rawtxs]
    node = ctx.node
    results = []
    # Packages are checked in order, each seeing the earlier ones, then rolled back.
    added: list[bytes] = []
    try:
        for tx in txs:
            res = {"txid": tx.txid_hex(), "wtxid": tx.wtxid_hex()}
            if tx.txid() in node.mempool and tx.wtxid() in node.mempool.by_wtxid:
                res.update({"allowed": False, "reject-reason": "txn-already-in-mempool"})
                results.append(res)
                continue
            try:
                entry, replaced = node.accept(tx, test_only=len(txs) == 1)
            except RejectError as e:
                res.update({"allowed": False, "reject-reason": e.reason})
                if e.debug:
                    res["reject-details"] = e.message
                results.append(res)
                continue
            if len(txs) > 1:
                added.append(entry.txid)
            if max_rate and entry.fee > fee_for(max_rate, entry.vsize):
                res.update({"allowed": False, "reject-reason": "max-fee-exceeded"})
            else:
                res.update({"allowed": True, "vsize": entry.vsize,
                            "fees": {"base": Btc(entry.fee),
                                     "effective-feerate": Btc(entry.fee * 1000 // entry.vsize),
                                     "effective-includes": [entry.wtxid[::-1].hex()]}})
            results.append(res)
    finally:
        for t in reversed(added):
            node.mempool.remove(t)
    return results


def gettxout(ctx: Context, txid, n, include_mempool=True):
    node = ctx.node
    t = p_hash(txid, "txid")
    vout = p_int(n)
    use_mempool = include_mempool is None or p_bool(include_mempool)
    best = node.tip_hash()[::-1].hex()
    if use_mempool:
        if (t, vout) in node.mempool.spenders:
            return None
        out = node.mempool.output(t, vout)
        if out is not None:
            return {"bestblock": best, "confirmations": 0, "value": Btc(out.value),
                    "scriptPubKey": script_pubkey_json(out.script_pubkey), "coinbase": False}
    coin = node.store.get_coin(t, vout)
    if coin is None:
        return None
    return {"bestblock": best, "confirmations": node.tip_height() - coin.height + 1, "value": Btc(coin.value),
            "scriptPubKey": script_pubkey_json(coin.spk), "coinbase": coin.coinbase}


# ------------------------------------------------------------------ mempool
def _mempool_entry_json(ctx: Context, txid: bytes) -> dict:
    mp = ctx.node.mempool
    e = mp.entries[txid]
    anc = mp.ancestors(txid)
    desc = mp.descendants(txid)
    return {
        "vsize": e.vsize,
        "weight": e.weight,
        "time": e.time,
        "height": e.height,
        "descendantcount": len(desc),
        "descendantsize": sum(mp.entries[d].vsize for d in desc),
        "ancestorcount": len(anc),
        "ancestorsize": sum(mp.entries[a].vsize for a in anc),
        "wtxid": e.wtxid[::-1].hex(),
        "fees": {"base": Btc(e.fee), "modified": Btc(e.fee),
                 "ancestor": Btc(sum(mp.entries[a].fee for a in anc)),
                 "descendant": Btc(sum(mp.entries[d].fee for d in desc))},
        "depends": sorted(p[::-1].hex() for p in e.parents),
        "spentby": sorted(c[::-1].hex() for c in mp.children(txid)),
        "bip125-replaceable": True,  # full RBF
        "unbroadcast": False,
    }


def getrawmempool(ctx: Context, verbose=False, mempool_sequence=False):
    v = verbose is not None and p_bool(verbose)
    seq = mempool_sequence is not None and p_bool(mempool_sequence)
    if v and seq:
        raise RpcError(RPC_INVALID_PARAMETER,
                       "Verbose results cannot contain mempool sequence values. (Parameters verbose=true and "
                       "mempool_sequence=true are incompatible)")
    txids = list(ctx.node.mempool.entries)
    if v:
        return {t[::-1].hex(): _mempool_entry_json(ctx, t) for t in txids}
    if seq:
        return {"txids": [t[::-1].hex() for t in txids], "mempool_sequence": len(txids)}
    return [t[::-1].hex() for t in txids]


def getmempoolinfo(ctx: Context):
    mp = ctx.node.mempool
    return {
        "loaded": True,
        "size": len(mp),
        "bytes": sum(e.vsize for e in mp.entries.values()),
        "usage": sum(len(e.raw) * 4 for e in mp.entries.values()),
        "total_fee": Btc(sum(e.fee for e in mp.entries.values())),
        "maxmempool": 300_000_000,
        "mempoolminfee": Btc(MIN_RELAY_FEE_SAT_KVB),
        "minrelaytxfee": Btc(MIN_RELAY_FEE_SAT_KVB),
        "incrementalrelayfee": Btc(INCREMENTAL_RELAY_FEE_SAT_KVB),
        "unbroadcastcount": 0,
        "fullrbf": True,
    }


def getmempoolentry(ctx: Context, txid):
    t = p_hash(txid, "txid")
    if t not in ctx.node.mempool:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")
    return _mempool_entry_json(ctx, t)


def estimatesmartfee(ctx: Context, conf_target, estimate_mode="economical"):
    target = p_int(conf_target)
    if estimate_mode is not None:
        mode = p_str(estimate_mode).lower()
        if mode not in ("unset", "economical", "conservative"):
            raise RpcError(RPC_INVALID_PARAMETER, "Invalid estimate_mode parameter, must be one of: \"unset\", "
                           "\"economical\", \"conservative\"")
    if not 1 <= target <= 1008:
        raise RpcError(RPC_INVALID_PARAMETER, "Invalid conf_target, must be between 1 and 1008")
    # Regtest has no fee history: answer with the fallback fee rate (see the module docstring).
    return {"feerate": Btc(max(ctx.fallback_fee_sat_kvb, MIN_RELAY_FEE_SAT_KVB)), "blocks": max(target, 2)}


# ------------------------------------------------------------------ mining
def _mine(ctx: Context, n: int, spk: bytes) -> list[str]:
    hashes = []
    for _ in range(n):
        try:
            hashes.append(ctx.node.mine_block(spk)[::-1].hex())
        except ChainError as e:
            raise RpcError(e.code, e.message) from None
    return hashes


def generatetoaddress(ctx: Context, nblocks, address, maxtries=None):
    n = p_int(nblocks)
    try:
        spk = address_to_script(p_str(address), "regtest")
    except AddressError:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Error: Invalid address") from None
    return _mine(ctx, n, spk)


def generateblock(ctx: Context, output, transactions, submit=True):
    node = ctx.node
    try:
        spk = address_to_script(p_str(output), "regtest")
    except AddressError:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Error: Invalid address or descriptor") from None
    if not isinstance(transactions, list):
        raise _type_error(transactions, "array")
    txs = []
    for item in transactions:
        s = p_str(item)
        if len(s) == 64:
            try:
                t = bytes.fromhex(s)[::-1]
            except ValueError:
                t = None
            if t is not None:
                e = node.mempool.entries.get(t)
                if e is None:
                    raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Transaction {s} not in mempool.")
                txs.append(e.tx)
                continue
        try:
            txs.append(Transaction.parse(bytes.fromhex(s)))
        except (ValueError, TxParseError):
            raise RpcError(RPC_DESERIALIZATION_ERROR, f"Transaction decode failed for {s}. Make sure the tx has "
                           "at least one input.") from None
    if submit is not None and not p_bool(submit):
        raise RpcError(RPC_INVALID_PARAMETER, "submit=false is not supported by amp-chaind")
    try:
        block_hash = node.mine_block(spk, txs=txs)
    except ChainError as e:
        raise RpcError(RPC_VERIFY_ERROR, e.message) from None
    return {"hash": block_hash[::-1].hex()}


def generatefork(ctx: Context, nblocks, parent_blockhash, address=None):
    """amp-chaind only: mine `nblocks` empty blocks on top of `parent_blockhash` (any known block).
    When the branch gets more work than the active chain the kernel reorganises to it."""
    n = p_int(nblocks)
    parent = p_hash(parent_blockhash, "parent_blockhash")
    spk = p_address(address) if address is not None else address_to_script(ctx.wallet.new_address(), "regtest")
    hashes = []
    for _ in range(n):
        try:
            parent = ctx.node.mine_block(spk, parent=parent)
        except ChainError as e:
            raise RpcError(e.code, e.message) from None
        hashes.append(parent[::-1].hex())
    return hashes


def submitblock(ctx: Context, hexdata, dummy=None):
    try:
        raw = bytes.fromhex(p_str(hexdata))
    except ValueError:
        raise RpcError(RPC_DESERIALIZATION_ERROR, "Block decode failed") from None
    try:
        return ctx.node.submit_block(raw)
    except ChainError as e:
        raise RpcError(e.code, e.message) from None


def invalidateblock(ctx: Context, blockhash):
    try:
        ctx.node.invalidate_block(p_hash(blockhash, "blockhash"))
    except ChainError as e:
        raise RpcError(e.code, e.message) from None
    return None


def reconsiderblock(ctx: Context, blockhash):
    try:
        ctx.node.reconsider_block(p_hash(blockhash, "blockhash"))
    except ChainError as e:
        raise RpcError(e.code, e.message) from None
    return None


# ------------------------------------------------------------------ wallet
def getnewaddress(ctx: Context, label="", address_type=None):
    kind = "bech32" if address_type is None else p_str(address_type)
    try:
        return ctx.wallet.new_address(kind, p_str(label) if label is not None else "")
    except WalletError as e:
        raise RpcError(e.code, e.message) from None


def getbalance(ctx: Context, dummy=None, minconf=0, include_watchonly=None, avoid_reuse=None):
    if dummy is not None and dummy != "*":
        raise RpcError(RPC_METHOD_DEPRECATED, "dummy first argument must be excluded or set to \"*\".")
    mc = 0 if minconf is None else p_int(minconf)
    total = 0
    for c in ctx.wallet.coins():
        if c.mature and c.trusted and c.confirmations >= mc:
            total += c.value
    return Btc(total)


def getbalances(ctx: Context):
    b = ctx.wallet.balances()
    return {"mine": {k: Btc(v) for k, v in b.items()}, "lastprocessedblock": {
        "hash": ctx.node.tip_hash()[::-1].hex(), "height": ctx.node.tip_height()}}


def sendtoaddress(ctx: Context, address, amount, comment=None, comment_to=None, subtractfeefromamount=False,
                  replaceable=None, conf_target=None, estimate_mode=None, avoid_reuse=None, fee_rate=None,
                  verbose=False):
    spk = p_address(address)
    sat = p_amount(amount)
    if sat <= 0:
        raise RpcError(RPC_TYPE_ERROR, "Invalid amount for send")
    subtract = subtractfeefromamount is not None and p_bool(subtractfeefromamount)
    rbf = True if replaceable is None else p_bool(replaceable)
    if fee_rate is not None:
        # fee_rate is in sat/vB (may have up to 3 decimals): to sat/kvB.
        try:
            rate = int(Decimal(str(fee_rate)) * 1000)
        except Exception:
            raise RpcError(RPC_TYPE_ERROR, "Amount is not a number or string") from None
        if rate < MIN_RELAY_FEE_SAT_KVB:
            raise RpcError(RPC_WALLET_ERROR, "Fee rate (%.3f sat/vB) is lower than the minimum fee rate setting "
                           "(1.000 sat/vB)" % (rate / 1000))
    else:
        rate = max(ctx.fallback_fee_sat_kvb, MIN_RELAY_FEE_SAT_KVB)
    try:
        tx = ctx.wallet.send(spk, sat, rate, subtract, rbf)
    except WalletError as e:
        raise RpcError(e.code, e.message) from None
    if verbose is not None and verbose is not False and p_bool(verbose):
        return {"txid": tx.txid_hex(), "fee_reason": "Fallback fee" if fee_rate is None else "User-specified feerate"}
    return tx.txid_hex()


def listunspent(ctx: Context, minconf=1, maxconf=9999999, addresses=None, include_unsafe=True, query_options=None):
    lo = 1 if minconf is None else p_int(minconf)
    hi = 9999999 if maxconf is None else p_int(maxconf)
    wanted = None
    if addresses is not None:
        if not isinstance(addresses, list):
            raise _type_error(addresses, "array")
        wanted = set()
        for a in addresses:
            try:
                wanted.add(address_to_script(p_str(a), "regtest"))
            except AddressError:
                raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Invalid Bitcoin address: {a}") from None
    unsafe_ok = include_unsafe is None or p_bool(include_unsafe)
    out = []
    coins = sorted(ctx.wallet.coins(), key=lambda c: (-c.confirmations, c.txid, c.vout))
    for c in coins:
        if not c.mature or not lo <= c.confirmations <= hi:
            continue
        if wanted is not None and c.spk not in wanted:
            continue
        if not c.trusted and not unsafe_ok:
            continue
        out.append({
            "txid": c.txid[::-1].hex(), "vout": c.vout, "address": script_to_address(c.spk, "regtest"),
            "label": "", "scriptPubKey": c.spk.hex(), "amount": Btc(c.value), "confirmations": c.confirmations,
            "spendable": True, "solvable": True, "desc": spk_descriptor(c.spk), "parent_descs": [],
            "safe": c.trusted,
        })
    return out


def validateaddress(ctx: Context, address):
    s = p_str(address)
    try:
        spk = address_to_script(s, "regtest")
    except AddressError as e:
        return {"isvalid": False, "error": str(e)}
    out = {"isvalid": True, "address": s, "scriptPubKey": spk.hex(), "isscript": spk[:1] == b"\xa9" or len(spk) == 34,
           "iswitness": spk[0] == 0 or 0x51 <= spk[0] <= 0x60}
    if out["iswitness"]:
        out["witness_version"] = 0 if spk[0] == 0 else spk[0] - 0x50
        out["witness_program"] = spk[2:].hex()
    return out


# ------------------------------------------------------------------ control
def stop(ctx: Context, wait=None):
    ctx.request_stop()
    return "Bitcoin Core stopping"


def uptime(ctx: Context):
    return int(time.time() - ctx.started)


def getzmqnotifications(ctx: Context):
    return []


# One wallet: amp-chaind keeps a single wallet, and answers bitcoind's multiwallet calls for it so that tools
# which create or load a named wallet first (pyln-testing's "lightningd-tests") run unchanged.
def _wallet_names(ctx: Context) -> list[str]:
    names = getattr(ctx, "_wallet_names", None)
    if names is None:
        names = ctx._wallet_names = []
    return names


def listwallets(ctx: Context):
    return list(_wallet_names(ctx)) or [""]


def createwallet(ctx: Context, wallet_name, disable_private_keys=None, blank=None, passphrase=None,
                 avoid_reuse=None, descriptors=None, load_on_startup=None, external_signer=None):
    name = p_str(wallet_name)
    names = _wallet_names(ctx)
    if name in names:
        raise RpcError(RPC_WALLET_ERROR, f'Wallet file verification failed. Failed to create database path '
                       f'\'{name}\'. Database already exists.')
    names.append(name)
    return {"name": name}


def loadwallet(ctx: Context, filename, load_on_startup=None):
    name = p_str(filename)
    names = _wallet_names(ctx)
    if name in names:
        raise RpcError(-35, f"Wallet \"{name}\" is already loaded.")
    names.append(name)
    return {"name": name}


def restorewallet(ctx: Context, wallet_name, backup_file, load_on_startup=None):
    raise RpcError(RPC_WALLET_ERROR, "restorewallet is not supported by amp-chaind (one built-in wallet)")


def getwalletinfo(ctx: Context):
    b = ctx.wallet.balances()
    names = _wallet_names(ctx)
    return {"walletname": names[0] if names else "", "walletversion": 169900, "format": "sqlite",
            "balance": Btc(b.get("trusted", 0)), "unconfirmed_balance": Btc(b.get("untrusted_pending", 0)),
            "immature_balance": Btc(b.get("immature", 0)), "txcount": 0, "keypoolsize": 1000,
            "paytxfee": Btc(0), "private_keys_enabled": True, "avoid_reuse": False, "scanning": False,
            "descriptors": True, "external_signer": False}


def sendmany(ctx: Context, dummy, amounts, minconf=None, comment=None, subtractfeefrom=None, replaceable=None,
             conf_target=None, estimate_mode=None, fee_rate=None, verbose=False):
    if dummy not in (None, ""):
        raise RpcError(RPC_INVALID_PARAMETER, "Dummy value must be set to \"\"")
    if not isinstance(amounts, dict) or not amounts:
        raise RpcError(RPC_INVALID_PARAMETER, "Invalid parameter, amounts must be a non-empty object")
    if subtractfeefrom:
        raise RpcError(RPC_INVALID_PARAMETER, "subtractfeefrom is not supported by amp-chaind")
    outs = []
    for address, amount in amounts.items():
        sat = p_amount(amount)
        if sat <= 0:
            raise RpcError(RPC_TYPE_ERROR, "Invalid amount for send")
        outs.append(TxOut(sat, p_address(address)))
    rbf = True if replaceable is None else p_bool(replaceable)
    rate = max(ctx.fallback_fee_sat_kvb, MIN_RELAY_FEE_SAT_KVB)
    if fee_rate is not None:
        rate = max(int(Decimal(str(fee_rate)) * 1000), MIN_RELAY_FEE_SAT_KVB)
    try:
        tx = ctx.wallet.send(outs[0].script_pubkey, outs[0].value, rate, False, rbf, extra=outs[1:])
    except WalletError as e:
        raise RpcError(e.code, e.message) from None
    if verbose is not None and verbose is not False and p_bool(verbose):
        return {"txid": tx.txid_hex(), "fee_reason": "Fallback fee"}
    return tx.txid_hex()


def prioritisetransaction(ctx: Context, txid, dummy=None, fee_delta=None):
    # Block templates here take every mempool transaction: a priority cannot change what is mined.
    raise RpcError(RPC_INVALID_PARAMETER, "prioritisetransaction is not supported by amp-chaind")


def help_(ctx: Context, command=None):
    if command is not None:
        name = p_str(command)
        if name not in METHODS:
            return f"help: unknown command: {name}"
        _, params = METHODS[name]
        return f"{name} " + " ".join(f"( \"{p}\" )" for p in params)
    return "== amp-chaind (bitcoind-compatible regtest) ==\n" + "\n".join(sorted(METHODS))


def _params(fn) -> list[str]:
    code = fn.__code__
    return list(code.co_varnames[1:code.co_argcount])


_FUNCS = [
    getblockchaininfo, getnetworkinfo, getblockcount, getbestblockhash, getblockhash, getblockheader, getblock,
    getrawtransaction, decoderawtransaction, sendrawtransaction, testmempoolaccept, gettxout, getrawmempool,
    getmempoolinfo, getmempoolentry, estimatesmartfee, generatetoaddress, generateblock, generatefork, submitblock,
    invalidateblock, reconsiderblock, getnewaddress, getbalance, getbalances, sendtoaddress, listunspent,
    validateaddress, stop, uptime, getzmqnotifications, listwallets, createwallet, loadwallet, restorewallet,
    getwalletinfo, sendmany, prioritisetransaction,
]
METHODS: dict[str, tuple[Callable, list[str]]] = {f.__name__: (f, _params(f)) for f in _FUNCS}
METHODS["help"] = (help_, ["command"])


def call(ctx: Context, method: str, params) -> object:
    """Run one method with positional (list) or named (dict) parameters."""
    entry = METHODS.get(method)
    if entry is None:
        raise RpcError(RPC_METHOD_NOT_FOUND, "Method not found")
    fn, names = entry
    if params is None:
        args: list = []
    elif isinstance(params, list):
        args = list(params)
    elif isinstance(params, dict):
        unknown = [k for k in params if k not in names]
        if unknown:
            raise RpcError(RPC_INVALID_PARAMETER, f"Unknown named parameter {unknown[0]}")
        last = max((names.index(k) for k in params), default=-1)
        args = [params.get(n) for n in names[:last + 1]]
    else:
        raise RpcError(-32600, "Params must be an array or object")
    if len(args) > len(names):
        raise RpcError(RPC_MISC_ERROR, f"{method} takes at most {len(names)} arguments\n\n"
                       + help_(ctx, method))
    code = fn.__code__
    required = code.co_argcount - 1 - len(fn.__defaults__ or ())
    if len([a for a in args[:required]]) < required or any(a is None for a in args[:required]):
        raise RpcError(RPC_MISC_ERROR, f"{method} requires {required} argument(s)\n\n" + help_(ctx, method))
    # Explicit nulls mean "use the default", as in bitcoind.
    defaults = fn.__defaults__ or ()
    full = []
    for i, a in enumerate(args):
        if a is None and i >= required:
            full.append(defaults[i - required])
        else:
            full.append(a)
    return fn(ctx, *full)
