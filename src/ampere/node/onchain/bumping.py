"""Paying fees from the wallet for anchor channels' on-chain transactions (option_anchors).

An anchor commitment carries a low fee and its HTLC transactions none: BOLT #5 lets the owner get them mined
by adding inputs of its own.

    cpfp_child(wallet, parent, parent_fee, anchor, target_perkw, sign_anchor, tip, keep=())
        -> (child Transaction, fee_sat, inputs) | None
        a child spending our anchor output (and wallet coins) to a change output, so that commitment + child pay
        `target_perkw` together (CPFP). `keep`: the wallet coins of the child it replaces (RBF keeps them, so the
        replacement conflicts with it and pays more).
    fund_htlc_tx(wallet, htlc_tx, complete, target_perkw, tip) -> (Transaction, fee_sat, inputs) | None
        the zero-fee HTLC-timeout/success of our anchor commitment with wallet inputs and a change output
        appended (input 0 / output 0 stay the HTLC's: the peer signed them SIGHASH_SINGLE|SIGHASH_ANYONECANPAY).

Coins are reserved while a transaction is built and spent (wallet.record_sent) once it is broadcast. Returns
None when the wallet cannot pay (the caller logs it and retries at the next block).
"""
from __future__ import annotations

from typing import Any, Callable

from ampere.node.onchain.wallet import (DUST_LIMIT, Output, base_weight, input_weight, output_weight,
                                        scripts_for_pubkey)
from ampere.primitives.script import is_p2tr, is_p2wpkh
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut

__all__ = ["ANCHOR_INPUT_WEIGHT", "cpfp_child", "fund_htlc_tx", "package_feerate"]

RBF_SEQUENCE = 0xFFFFFFFD
# BOLT #3 to_local_anchor spent by its owner: outpoint + empty scriptSig + sequence (41 bytes, x4), then the
# witness: item count, <local_sig> (up to 73 bytes), the 40-byte anchor script.
ANCHOR_INPUT_WEIGHT = 4 * 41 + 1 + (1 + 73) + (1 + 40)
RESERVE_BLOCKS = 72
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
    await wallet._set_reservation(coins, tip + RESERVE_BLOCKS)
    return child, fee, coins


async def fund_htlc_tx(wallet: Any, htlc_tx: Transaction, htlc_value: int, htlc_spk: bytes,
                       finish: Callable[[Transaction], list[bytes]], target_perkw: int,
                       tip: int) -> tuple[Transaction, int, list[Output]] | None:
    """`finish(tx)`: input 0's witness for the final transaction (our new SIGHASH_ALL signature with the peer's)."""
    probe = htlc_tx.copy()
    probe.inputs[0].witness = finish(probe)          # the size of the HTLC input's witness (signatures ~72 bytes)
    htlc_part = probe.weight() - base_weight(1, 1)

    def need(coins: list[Output]) -> int:
        w = (base_weight(1 + len(coins), 2) + htlc_part + sum(input_weight(o.script) for o in coins)
             + _CHANGE_WEIGHT + 4)
        return _fee(target_perkw, w)

    coins = _select(wallet, need, [])
    if coins is None:
        return None
    fee = need(coins)
    script = await _change_script(wallet)
    tx = htlc_tx.copy()
    tx.inputs[0].witness = []
    tx.inputs += [TxIn(o.outpoint, b"", RBF_SEQUENCE) for o in coins]
    tx.outputs.append(TxOut(sum(o.value for o in coins) - fee, script))
    tx.inputs[0].witness = finish(tx)
    spent = [TxOut(htlc_value, htlc_spk)] + [o.txout() for o in coins]
    _sign_wallet_inputs(wallet, tx, 1, coins, spent)
    await wallet._set_reservation(coins, tip + RESERVE_BLOCKS)
    return tx, fee, coins
