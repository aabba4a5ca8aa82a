"""Paying fees from the wallet for anchor channels' on-chain transactions (option_anchors).

An anchor commitment carries a low fee and its HTLC transactions none: BOLT #5 lets the owner get them mined
by adding inputs of its own.

    cpfp_child(wallet, parent, parent_fee, anchor, target_perkw, sign_anchor, tip, keep=())
        -> (child Transaction, fee_sat, inputs) | None
        a child spending our anchor output (and wallet coins) to a change output, so that commitment + child pay
        `target_perkw` together (CPFP). `keep`: the wallet coins of the child it replaces (RBF keeps them, so the
        replacement conflicts with it and pays more).
    fund_htlc_txs(wallet, parts, target_perkw, tip, keep=(), replaces_fee=0, max_fee=None)
        -> (Transaction, fee_sat, inputs) | None
        zero-fee HTLC-timeout/success transactions of our anchor commitment (HtlcPart) aggregated into one: their
        (input, output) pairs first at matching indexes (the peer signed each SIGHASH_SINGLE|SIGHASH_ANYONECANPAY),
        then wallet inputs and one change output. Raises HtlcFeeTooHigh past `max_fee`.
    fund_htlc_tx(...): the same for one HTLC transaction.
    fund_htlc_tx_with_anchor(part, anchor, min_perkw) -> (Transaction, fee_sat) | None
        one HTLC transaction whose whole fee is our anchor output of the confirmed commitment, for a wallet with
        nothing to pay it.

Coins are reserved while a transaction is built and spent (wallet.record_sent) once it is broadcast. Returns
None when the wallet cannot pay (the caller logs it and retries at the next block).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ampere.node.onchain.wallet import (DUST_LIMIT, Output, base_weight, input_weight, output_weight,
                                        scripts_for_pubkey)
from ampere.primitives.amount import SatInt
from ampere.primitives.script import is_p2tr, is_p2wpkh
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut

__all__ = ["ANCHOR_INPUT_WEIGHT", "AnchorInput", "HtlcFeeTooHigh", "HtlcPart", "cpfp_child", "fund_htlc_tx",
           "fund_htlc_tx_with_anchor", "fund_htlc_txs", "htlc_txs_weight", "package_feerate", "part_weight"]

RBF_SEQUENCE = 0xFFFFFFFD
# BOLT #3 to_local_anchor spent by its owner: outpoint + empty scriptSig + sequence (41 bytes, x4), then the
# witness: item count, <local_sig> (up to 73 bytes), the 40-byte anchor script.
ANCHOR_INPUT_WEIGHT = 4 * 41 + 1 + (1 + 73) + (1 + 40)
RESERVE_BLOCKS = 72
# Bitcoin Core's -incrementalrelayfee (1 sat/vB): what a replacement pays on top of the fee it replaces.
INCREMENTAL_RELAY_PERKW = 250
_CHANGE_WEIGHT = output_weight(b"\x51\x20" + bytes(32))


def _fee(rate_perkw: int, weight: int) -> int:
    return (rate_perkw * weight + 999) // 1000


def package_feerate(parent: Transaction, parent_fee: int, child: Transaction, child_fee: int) -> int:
    """perkw of parent and child together (what a miner looking at the package sees)."""
    return (parent_fee + child_fee) * 1000 // (parent.weight() + child.weight())


async def _change_script(wallet: Any) -> bytes:
    idx, _ = await wallet.new_address("p2tr")
    return scripts_for_pubkey(wallet.pubkey(idx))[1]


def _select(wallet: Any, need: Callable[[list[Output]], int], keep: list[Output]) -> list[Output] | None:
    """Wallet coins (`keep` first, then the largest confirmed ones) until their value covers need(coins) plus a
    change output above dust."""
    chosen = list(keep)
    pool = sorted((o for o in wallet.spendable(1) if o.key not in {k.key for k in keep}),
                  key=lambda o: (-o.value, o.txid, o.outnum))
    while True:
        if chosen and sum(o.value for o in chosen) >= need(chosen) + DUST_LIMIT:
            return chosen
        if not pool:
            return None
        chosen.append(pool.pop(0))


def _sign_wallet_inputs(wallet: Any, tx: Transaction, first: int, coins: list[Output], spent: list[TxOut]) -> None:
    for o in coins:
        if not (is_p2tr(o.script) or is_p2wpkh(o.script)):
            raise ValueError(f"wallet coin {o.txid[::-1].hex()}:{o.outnum} has a script we cannot sign")
    # The signer signs them (the wallet holds no private key).
    wallet.sign_inputs(tx, {i: o for i, o in enumerate(coins, start=first)}, spent)


async def cpfp_child(wallet: Any, parent: Transaction, parent_fee: int, anchor_vout: int, anchor_script: bytes,
                     target_perkw: int, sign_anchor: Callable[[Transaction, int, bytes, int], bytes], tip: int,
                     keep: list[Output] = ()) -> tuple[Transaction, int, list[Output]] | None:
    anchor_value = parent.outputs[anchor_vout].value

    def child_weight(coins: list[Output]) -> int:
        return (base_weight(1 + len(coins), 1) + ANCHOR_INPUT_WEIGHT + sum(input_weight(o.script) for o in coins)
                + _CHANGE_WEIGHT)

    def need(coins: list[Output]) -> int:
        # BOLT #5 / CPFP: the child pays what the package lacks to reach the target, never less than its own
        # relay fee.
        w = child_weight(coins)
        return max(_fee(target_perkw, parent.weight() + w) - parent_fee, _fee(253, w)) - anchor_value

    coins = _select(wallet, need, list(keep))
    if coins is None:
        return None
    fee = need(coins) + anchor_value
    change = anchor_value + sum(o.value for o in coins) - fee
    script = await _change_script(wallet)
    ins = [TxIn(OutPoint(parent.txid(), anchor_vout), b"", RBF_SEQUENCE)]
    ins += [TxIn(o.outpoint, b"", RBF_SEQUENCE) for o in coins]
    child = Transaction(2, ins, [TxOut(change, script)], tip)
    spent = [TxOut(anchor_value, parent.outputs[anchor_vout].script_pubkey)] + [o.txout() for o in coins]
    child.inputs[0].witness = [sign_anchor(child, 0, anchor_script, anchor_value), anchor_script]
    _sign_wallet_inputs(wallet, child, 1, coins, spent)
    await wallet.set_reservation(coins, tip + RESERVE_BLOCKS)
    return child, fee, coins


class HtlcFeeTooHigh(ValueError):
    """The fee asked for is more than the HTLCs are worth (CLN: "Not spending ... in fees to get an HTLC worth
    ..."): not worth it."""


@dataclass(frozen=True)
class HtlcPart:
    """One zero-fee HTLC-timeout/success transaction of our anchor commitment, to be funded (alone or with others).
    `finish(tx, i)`: input i's witness in the final transaction `tx` (our new SIGHASH_ALL signature with the
    peer's SINGLE|ACP one)."""

    tx: Transaction            # the pre-signed 1-input 1-output transaction
    value: int                 # the commitment's HTLC output it spends
    spk: bytes
    finish: Callable[[Transaction, int], list[bytes]]


def part_weight(part: HtlcPart) -> int:
    """Weight the part adds to a transaction: its input (with the witness) and its output."""
    probe = part.tx.copy()
    probe.inputs[0].witness = part.finish(probe, 0)   # signatures at their size (~72 bytes)
    return probe.weight() - base_weight(1, 1)


def htlc_txs_weight(part_weights: list[int], coins: list[Output]) -> int:
    """The weight of the funded transaction: the parts' pairs (part_weight), the wallet inputs and one change
    output; +2 WU per part: each of its two DER signatures may be one byte longer than the probe's."""
    return (base_weight(len(part_weights) + len(coins), len(part_weights) + 1) + sum(w + 2 for w in part_weights)
            + sum(input_weight(o.script) for o in coins) + _CHANGE_WEIGHT)


async def fund_htlc_txs(wallet: Any, parts: list[HtlcPart], target_perkw: int, tip: int, keep: Sequence[Output] = (),
                        replaces_fee: int = 0, max_fee: int | None = None,
                        ) -> tuple[Transaction, int, list[Output]] | None:
    """One transaction for several HTLC transactions of the same commitment (BOLT #3: the peer's
    SIGHASH_SINGLE|SIGHASH_ANYONECANPAY signature covers its input and the output at the same index only, so
    input i / output i pairs can be combined, each at its own index): the parts' (input, output) pairs at
    indexes 0..n-1, then wallet inputs (`keep` first: a replacement reuses them), then one change output.
    `replaces_fee`: the fee of the transaction it replaces (BIP125 rules 3-4: at least that plus the
    incremental relay fee for its own size). The nLockTime is signed by the peer: the parts must share it."""
    if not parts or len({p.tx.locktime for p in parts}) != 1:
        raise ValueError("HTLC transactions aggregated together must share their nLockTime")
    weights = [part_weight(p) for p in parts]

    def need(coins: list[Output]) -> int:
        w = htlc_txs_weight(weights, coins)
        fee = _fee(target_perkw, w)
        if replaces_fee:
            fee = max(fee, replaces_fee + _fee(INCREMENTAL_RELAY_PERKW, w))
        return fee

    coins = _select(wallet, need, list(keep))
    if coins is None:
        return None
    fee = need(coins)
    if max_fee is not None and fee > max_fee:
        raise HtlcFeeTooHigh(f"not spending {fee}sat in fees to get HTLCs worth {max_fee}sat")
    script = await _change_script(wallet)
    ins = [TxIn(p.tx.inputs[0].prevout, b"", p.tx.inputs[0].sequence) for p in parts]
    ins += [TxIn(o.outpoint, b"", RBF_SEQUENCE) for o in coins]
    outs = [p.tx.outputs[0] for p in parts] + [TxOut(SatInt(sum(o.value for o in coins) - fee), script)]
    tx = Transaction(parts[0].tx.version, ins, outs, parts[0].tx.locktime)
    for i, p in enumerate(parts):
        tx.inputs[i].witness = p.finish(tx, i)
    spent = [TxOut(SatInt(p.value), p.spk) for p in parts] + [o.txout() for o in coins]
    _sign_wallet_inputs(wallet, tx, len(parts), coins, spent)
    await wallet.set_reservation(coins, tip + RESERVE_BLOCKS)
    return tx, fee, coins


async def fund_htlc_tx(wallet: Any, htlc_tx: Transaction, htlc_value: int, htlc_spk: bytes,
                       finish: Callable[[Transaction], list[bytes]], target_perkw: int,
                       tip: int) -> tuple[Transaction, int, list[Output]] | None:
    """One HTLC transaction alone (fund_htlc_txs of one part); `finish(tx)`: input 0's witness."""
    return await fund_htlc_txs(wallet, [HtlcPart(htlc_tx, htlc_value, htlc_spk, lambda tx, i: finish(tx))],
                               target_perkw, tip)


@dataclass(frozen=True)
class AnchorInput:
    """Our anchor output of our confirmed commitment. BOLT #3 to_local_anchor: "<local_funding_pubkey> OP_CHECKSIG
    OP_IFDUP OP_NOTIF OP_16 OP_CHECKSEQUENCEVERIFY OP_ENDIF": its owner spends it at once with "<local_sig>"
    (the 16-block wait is for everyone else). `sign(tx, i, witness_script, value)`: our funding key's signature."""

    outpoint: OutPoint
    value: int
    witness_script: bytes
    sign: Callable[[Transaction, int, bytes, int], bytes]


def fund_htlc_tx_with_anchor(part: HtlcPart, anchor: AnchorInput, min_perkw: int) -> tuple[Transaction, int] | None:
    """One zero-fee HTLC transaction of our anchor commitment whose fee is our anchor's whole value (330 sat, below
    the dust limit: no change output): for a wallet that has nothing to pay it with (a node that never held coins
    on-chain, paid over a channel its peer opened), so that the HTLC is claimed before it expires instead of
    waiting for coins that may never come. At ~1,000 weight units that is ~1.3 sat/vB. None when it would pay
    less than `min_perkw` (the relay floor)."""
    weight = base_weight(2, 1) + part_weight(part) + 2 + ANCHOR_INPUT_WEIGHT
    fee = anchor.value
    if fee * 1000 < min_perkw * weight:
        return None
    ins = [TxIn(part.tx.inputs[0].prevout, b"", part.tx.inputs[0].sequence),
           TxIn(anchor.outpoint, b"", RBF_SEQUENCE)]
    tx = Transaction(part.tx.version, ins, [part.tx.outputs[0]], part.tx.locktime)
    # Both our signatures are SIGHASH_ALL over the final transaction (the peer's is SINGLE|ANYONECANPAY).
    tx.inputs[1].witness = [anchor.sign(tx, 1, anchor.witness_script, anchor.value), anchor.witness_script]
    tx.inputs[0].witness = part.finish(tx, 0)
    return tx, fee
