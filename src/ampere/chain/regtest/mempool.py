"""amp-chaind's mempool: acceptance rules with Bitcoin Core's reject reasons and RPC codes.

Acceptance (Core's PreChecks/ReplacementChecks/PolicyScriptChecks order):
  1. context-free checks (bad-txns-*), no coinbase;
  2. a little standardness: version 1..3, tx-size-small, dust;
  3. finality (non-final) and BIP68 sequence locks (non-BIP68-final);
  4. inputs exist unspent in the chain or the mempool (-25 bad-txns-inputs-missingorspent);
  5. coinbase maturity, value in >= value out;
  6. fee >= min relay fee (1 sat/vB);
  7. conflicts: full replace-by-fee as in Bitcoin Core 28 (BIP125 rules 2-5, without signalling);
  8. every input's script verified by libbitcoinkernel with all spent outputs supplied.
Not enforced: ancestor/descendant package limits, sigop limits, and the policy-only script flags
(LOW_S, NULLFAIL, CLEANSTACK, ...) that the kernel API does not expose.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ampere.primitives.tx import Transaction, TxOut

if TYPE_CHECKING:
    from ampere.chain.regtest.node import ChainNode

# RPC error codes (Bitcoin Core src/rpc/protocol.h)
RPC_VERIFY_ERROR = -25
RPC_VERIFY_REJECTED = -26
RPC_VERIFY_ALREADY_IN_CHAIN = -27

MIN_RELAY_FEE_SAT_KVB = 1000
INCREMENTAL_RELAY_FEE_SAT_KVB = 1000
DUST_RELAY_FEE_SAT_KVB = 3000
MAX_MONEY = 21_000_000 * 100_000_000
MAX_STANDARD_TX_WEIGHT = 400_000
MIN_STANDARD_TX_NONWITNESS_SIZE = 65
MAX_REPLACEMENT_CANDIDATES = 100
COINBASE_MATURITY = 100
LOCKTIME_THRESHOLD = 500_000_000
SEQUENCE_FINAL = 0xFFFFFFFF
SEQUENCE_LOCKTIME_DISABLE_FLAG = 1 << 31
SEQUENCE_LOCKTIME_TYPE_FLAG = 1 << 22
SEQUENCE_LOCKTIME_MASK = 0x0000FFFF
SEQUENCE_LOCKTIME_GRANULARITY = 9


class RejectError(Exception):
    """A transaction was refused; `code` is the RPC code sendrawtransaction reports."""

    def __init__(self, code: int, reason: str, debug: str = ""):
        self.code = code
        self.reason = reason
        self.debug = debug
        super().__init__(self.message)

    @property
    def message(self) -> str:
        # TxValidationState::ToString: "<reject reason>, <debug message>"
        return f"{self.reason}, {self.debug}" if self.debug else self.reason


def format_money(sat: int) -> str:
    """Bitcoin Core's FormatMoney: 8 decimals, trailing zeros trimmed down to two."""
    neg = sat < 0
    q, r = divmod(abs(sat), 100_000_000)
    s = f"{q}.{r:08d}"
    while s.endswith("0") and len(s.split(".")[1]) > 2:
        s = s[:-1]
    return ("-" if neg else "") + s


def format_feerate(sat_kvb: int) -> str:
    """CFeeRate::ToString() in BTC/kvB."""
    q, r = divmod(sat_kvb, 100_000_000)
    return f"{q}.{r:08d} BTC/kvB"


def fee_for(sat_kvb: int, vsize: int) -> int:
    """CFeeRate::GetFee: rounded up."""
    return -(-sat_kvb * vsize // 1000)


def dust_threshold(out: TxOut) -> int:
    spk = out.script_pubkey
    if (spk[:1] == b"\x6a") or len(spk) > 10_000:
        return 0
    size = len(out.serialize())
    is_witness = (len(spk) >= 4 and len(spk) <= 42 and (spk[0] == 0 or 0x51 <= spk[0] <= 0x60)
                  and spk[1] + 2 == len(spk))
    size += (32 + 4 + 1 + (107 // 4) + 4) if is_witness else (32 + 4 + 1 + 107 + 4)
    return fee_for(DUST_RELAY_FEE_SAT_KVB, size)


@dataclass
class MempoolEntry:
    tx: Transaction
    raw: bytes
    txid: bytes
    wtxid: bytes
    fee: int
    vsize: int
    weight: int
    time: int
    height: int
    spent: list[TxOut]
    parents: set[bytes] = field(default_factory=set)

    @property
    def feerate_sat_kvb(self) -> int:
        return self.fee * 1000 // self.vsize


class Mempool:
    def __init__(self) -> None:
        self.entries: dict[bytes, MempoolEntry] = {}  # insertion order is a topological order
        self.spenders: dict[tuple[bytes, int], bytes] = {}
        self.by_wtxid: dict[bytes, bytes] = {}

    def __contains__(self, txid: bytes) -> bool:
        return txid in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def output(self, txid: bytes, vout: int) -> TxOut | None:
        e = self.entries.get(txid)
        if e is None or vout >= len(e.tx.outputs):
            return None
        return e.tx.outputs[vout]

    def children(self, txid: bytes) -> set[bytes]:
        e = self.entries.get(txid)
        if e is None:
            return set()
        out = set()
        for n in range(len(e.tx.outputs)):
            s = self.spenders.get((txid, n))
            if s is not None:
                out.add(s)
        return out

    def descendants(self, txid: bytes) -> set[bytes]:
        seen = {txid}
        stack = [txid]
        while stack:
            for c in self.children(stack.pop()):
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return seen

    def ancestors(self, txid: bytes) -> set[bytes]:
        seen = {txid}
        stack = [txid]
        while stack:
            e = self.entries.get(stack.pop())
            if e is None:
                continue
            for p in e.parents:
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen

    def add(self, e: MempoolEntry) -> None:
        self.entries[e.txid] = e
        self.by_wtxid[e.wtxid] = e.txid
        for txin in e.tx.inputs:
            self.spenders[(txin.prevout.txid, txin.prevout.vout)] = e.txid

    def remove(self, txid: bytes) -> MempoolEntry | None:
        e = self.entries.pop(txid, None)
        if e is None:
            return None
        self.by_wtxid.pop(e.wtxid, None)
        for txin in e.tx.inputs:
            key = (txin.prevout.txid, txin.prevout.vout)
            if self.spenders.get(key) == txid:
                del self.spenders[key]
        return e

    def remove_with_descendants(self, txid: bytes) -> list[bytes]:
        gone = self.descendants(txid) if txid in self.entries else set()
        # children before parents is not needed for dict removal; keep it simple
        for t in gone:
            self.remove(t)
        return list(gone)

    def clear(self) -> list[MempoolEntry]:
        old = list(self.entries.values())
        self.entries.clear()
        self.spenders.clear()
        self.by_wtxid.clear()
        return old


def _check_transaction(tx: Transaction, raw_stripped_len: int) -> None:
    """Consensus::CheckTransaction."""
    bad = RPC_VERIFY_REJECTED
    if not tx.inputs:
        raise RejectError(bad, "bad-txns-vin-empty")
    if not tx.outputs:
        raise RejectError(bad, "bad-txns-vout-empty")
    if raw_stripped_len * 4 > 4_000_000:
        raise RejectError(bad, "bad-txns-oversize")
    total = 0
    for o in tx.outputs:
        if o.value < 0:
            raise RejectError(bad, "bad-txns-vout-negative")
        if o.value > MAX_MONEY:
            raise RejectError(bad, "bad-txns-vout-toolarge")
        total += o.value
        if total > MAX_MONEY:
            raise RejectError(bad, "bad-txns-txouttotal-toolarge")
    seen = set()
    for i in tx.inputs:
        key = (i.prevout.txid, i.prevout.vout)
        if key in seen:
            raise RejectError(bad, "bad-txns-inputs-duplicate")
        seen.add(key)
    if tx.is_coinbase():
        raise RejectError(bad, "coinbase")
    for i in tx.inputs:
        if i.prevout.txid == b"\x00" * 32 and i.prevout.vout == 0xFFFFFFFF:
            raise RejectError(bad, "bad-txns-prevout-null")


def is_final_tx(tx: Transaction, block_height: int, block_time: int) -> bool:
    if tx.locktime == 0:
        return True
    limit = block_height if tx.locktime < LOCKTIME_THRESHOLD else block_time
    if tx.locktime < limit:
        return True
    return all(i.sequence == SEQUENCE_FINAL for i in tx.inputs)


def accept_to_mempool(node: "ChainNode", tx: Transaction, *, test_only: bool = False, bypass_fees: bool = False,
                      now: int | None = None) -> tuple[MempoolEntry, list[bytes]]:
    """Validate `tx` against the active chain + mempool. Adds it unless `test_only`.
    Returns (entry, txids it replaced). Raises RejectError."""
    mempool = node.mempool
    rej = RPC_VERIFY_REJECTED
    raw = tx.serialize()
    stripped_len = len(tx.serialize(include_witness=False))
    _check_transaction(tx, stripped_len)
    weight = stripped_len * 3 + len(raw)
    vsize = (weight + 3) // 4
    txid = tx.txid()
    wtxid = tx.wtxid()

    # -- standardness (the part Lightning transactions meet) --
    if not 1 <= tx.version <= 3:
        raise RejectError(rej, "version")
    if weight > MAX_STANDARD_TX_WEIGHT:
        raise RejectError(rej, "tx-size")
    if stripped_len < MIN_STANDARD_TX_NONWITNESS_SIZE:
        raise RejectError(rej, "tx-size-small")
    for o in tx.outputs:
        if o.value < dust_threshold(o):
            raise RejectError(rej, "dust")

    tip_height = node.tip_height()
    tip_mtp = node.median_time_past(tip_height)
    if not is_final_tx(tx, tip_height + 1, tip_mtp):
        raise RejectError(rej, "non-final")

    if wtxid in mempool.by_wtxid:
        raise RejectError(rej, "txn-already-in-mempool")
    if txid in mempool:
        raise RejectError(rej, "txn-same-nonwitness-data-in-mempool")

    # -- conflicts (replacement candidates) --
    direct_conflicts: set[bytes] = set()
    for txin in tx.inputs:
        s = mempool.spenders.get((txin.prevout.txid, txin.prevout.vout))
        if s is not None:
            direct_conflicts.add(s)

    # -- inputs --
    spent: list[TxOut] = []
    heights: list[int] = []
    parents: set[bytes] = set()
    value_in = 0
    for txin in tx.inputs:
        op = txin.prevout
        coin = node.store.get_coin(op.txid, op.vout)
        if coin is not None:
            if coin.coinbase and tip_height + 1 - coin.height < COINBASE_MATURITY:
                raise RejectError(rej, "bad-txns-premature-spend-of-coinbase",
                                  f"tried to spend coinbase at depth {tip_height + 1 - coin.height}")
            spent.append(TxOut(coin.value, coin.spk))
            heights.append(coin.height)
        else:
            out = mempool.output(op.txid, op.vout)
            if out is None:
                if node.store.has_any_output(txid):
                    raise RejectError(rej, "txn-already-known")
                raise RejectError(RPC_VERIFY_ERROR, "bad-txns-inputs-missingorspent")
            spent.append(out)
            heights.append(tip_height + 1)
            parents.add(op.txid)
        value_in += spent[-1].value

    # -- BIP68 --
    if tx.version >= 2:
        min_height = -1
        min_time = -1
        for txin, h in zip(tx.inputs, heights):
            seq = txin.sequence
            if seq & SEQUENCE_LOCKTIME_DISABLE_FLAG:
                continue
            if seq & SEQUENCE_LOCKTIME_TYPE_FLAG:
                coin_time = node.median_time_past(max(h - 1, 0))
                min_time = max(min_time,
                               coin_time + ((seq & SEQUENCE_LOCKTIME_MASK) << SEQUENCE_LOCKTIME_GRANULARITY) - 1)
            else:
                min_height = max(min_height, h + (seq & SEQUENCE_LOCKTIME_MASK) - 1)
        if min_height >= tip_height + 1 or min_time >= tip_mtp:
            raise RejectError(rej, "non-BIP68-final")

    value_out = sum(o.value for o in tx.outputs)
    if value_in > MAX_MONEY:
        raise RejectError(rej, "bad-txns-inputvalues-outofrange")
    if value_in < value_out:
        raise RejectError(rej, "bad-txns-in-belowout",
                          f"value in ({format_money(value_in)}) < value out ({format_money(value_out)})")
    fee = value_in - value_out

    if not bypass_fees:
        min_fee = fee_for(MIN_RELAY_FEE_SAT_KVB, vsize)
        if fee < min_fee:
            raise RejectError(rej, "min relay fee not met", f"{fee} < {min_fee}")

    # -- replace-by-fee (full RBF, as Bitcoin Core 28's default) --
    replaced: list[bytes] = []
    if direct_conflicts:
        all_conflicts: set[bytes] = set()
        for c in direct_conflicts:
            all_conflicts |= mempool.descendants(c)
        txid_hex = txid[::-1].hex()
        if len(all_conflicts) > MAX_REPLACEMENT_CANDIDATES:
            raise RejectError(rej, "too many potential replacements",
                              f"rejecting replacement {txid_hex}; too many potential replacements "
                              f"({len(all_conflicts)} > {MAX_REPLACEMENT_CANDIDATES})")
        if parents & all_conflicts:
            raise RejectError(rej, "bad-txns-spends-conflicting-tx",
                              f"{txid_hex} spends conflicting transaction")
        conflict_parents: set[bytes] = set()
        for c in direct_conflicts:
            conflict_parents |= mempool.entries[c].parents
        for p in parents:
            if p not in conflict_parents:
                raise RejectError(rej, "replacement-adds-unconfirmed",
                                  f"replacement {txid_hex} adds unconfirmed input")
        new_rate = fee * 1000 // vsize
        for c in direct_conflicts:
            old = mempool.entries[c]
            if new_rate <= old.feerate_sat_kvb:
                raise RejectError(rej, "insufficient fee",
                                  f"rejecting replacement {txid_hex}; new feerate {format_feerate(new_rate)} <= "
                                  f"old feerate {format_feerate(old.feerate_sat_kvb)}")
        conflict_fees = sum(mempool.entries[c].fee for c in all_conflicts)
        if fee < conflict_fees:
            raise RejectError(rej, "insufficient fee",
                              f"rejecting replacement {txid_hex}, less fees than conflicting txs; "
                              f"{format_money(fee)} < {format_money(conflict_fees)}")
        additional = fee - conflict_fees
        relay = fee_for(INCREMENTAL_RELAY_FEE_SAT_KVB, vsize)
        if additional < relay:
            raise RejectError(rej, "insufficient fee",
                              f"rejecting replacement {txid_hex}, not enough additional fees to relay; "
                              f"{format_money(additional)} < {format_money(relay)}")
        replaced = sorted(all_conflicts)

    # -- scripts: libbitcoinkernel decides --
    bad_input = node.kernel.verify_inputs(raw, [(o.value, o.script_pubkey) for o in spent])
    if bad_input is not None:
        raise RejectError(rej, f"mandatory-script-verify-flag-failed (script verification failed for input "
                               f"{bad_input} in libbitcoinkernel)")

    entry = MempoolEntry(tx, raw, txid, wtxid, fee, vsize, weight, now or int(time.time()), tip_height, spent,
                         parents)
    if not test_only:
        for c in replaced:
            mempool.remove(c)
        mempool.add(entry)
    return entry, replaced
