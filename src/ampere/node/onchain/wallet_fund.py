"""CLN's `fundpsbt` and `utxopsbt` (lightningd's wallet/reservation.c): choose wallet coins for an amount the
caller will spend in a PSBT it completes itself (the funding output of `fundchannel_start`, say), with
`startweight` the weight of what the caller adds, and reserve them.

The emergency reserve (`min-emergency-msat`) applies as in CLN: when the node has an anchor channel, or the
caller says it is opening one (`opening_anchor_channel`), the coins left in the wallet plus a change output must
keep that much for fee bumping; if the rest of the wallet is short, a change output makes up the difference out of
the excess, else error 313.
"""
from __future__ import annotations

from dataclasses import dataclass

from ampere.node.errors import Reason
from ampere.primitives.amount import fee_for_weight
from ampere.primitives.script import p2tr
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut

from .wallet import DUST_LIMIT, RBF_SEQUENCE, Output, Wallet, WalletError, input_weight, output_weight

# Weight of an input without its witness: outpoint, empty scriptSig, sequence.
_INPUT_BASE_WEIGHT = 4 * (32 + 4 + 1 + 4)
_CHANGE_WEIGHT = output_weight(p2tr(b"\x00" * 32))


@dataclass
class FundedPsbt:
    tx: Transaction               # the chosen inputs, and the change output if any
    inputs: list[Output]
    feerate: int                  # perkw
    weight: int                   # estimated final weight (startweight + inputs + change)
    excess_sat: int               # left over for the caller (0 when it went to change)
    change_outnum: int | None
    reservations: list[dict] | None

    def spent_outputs(self) -> list[TxOut]:
        return [o.txout() for o in self.inputs]


def spend_weight(o: Output, min_witness_weight: int) -> int:
    """CLN's utxo_spend_weight: the input's weight with its witness at least `min_witness_weight`."""
    witness = input_weight(o.script) - _INPUT_BASE_WEIGHT
    return _INPUT_BASE_WEIGHT + max(witness, min_witness_weight)


def change_amount(excess: int, feerate: int, weight: int) -> int:
    """What a change output would carry out of `excess`, after paying for its own weight; 0 if that is dust."""
    change = excess - change_fee(feerate, weight)
    return change if change >= DUST_LIMIT else 0


def change_fee(feerate: int, weight: int) -> int:
    return fee_for_weight(feerate, weight + _CHANGE_WEIGHT) - fee_for_weight(feerate, weight)


async def fund_psbt(wallet: Wallet, amount: int | None, feerate: int, startweight: int, *, minconf: int = 1,
                    utxos: list[OutPoint] | None = None, reserved_ok: bool = False, reserve: int = 72,
                    locktime: int | None = None, min_witness_weight: int = 0, excess_as_change: bool = False,
                    opening_anchor_channel: bool = False, check_only: bool = False) -> FundedPsbt | None:
    """`amount` None is "all".  `utxos` given: utxopsbt (exactly those coins), else fundpsbt (coins chosen, largest
    first).  Raises WalletError with CLN's reasons; `check_only` validates and returns None, changing nothing."""
    emergency = wallet.emergency_sat(opening_anchors=opening_anchor_channel)
    async with wallet.selecting:
        tip = wallet.node.blockheight
        weight = startweight
        chosen: list[Output] = []
        if utxos is not None:
            chosen = wallet.named_utxos(utxos, reserved_ok)
            weight += sum(spend_weight(o, min_witness_weight) for o in chosen)
            total = sum(o.value for o in chosen)
            excess = total - (amount or 0) - fee_for_weight(feerate, weight)
            if amount is None and excess < DUST_LIMIT:
                raise WalletError(Reason.FUND_CANNOT_AFFORD, f"Could not afford anything using UTXOs totalling "
                                                             f"{total}sat with weight {weight} at feerate {feerate}")
            if excess < 0:
                raise WalletError(Reason.FUND_CANNOT_AFFORD, f"Could not afford {amount}sat using UTXOs totalling "
                                                             f"{total}sat with weight {weight} at feerate {feerate}")
        else:
            candidates = sorted(wallet.spendable(minconf), key=lambda o: (-o.value, o.txid, o.outnum))
            total = 0
            for o in candidates:
                if amount is not None and total >= amount + fee_for_weight(feerate, weight):
                    break
                w = spend_weight(o, min_witness_weight)
                if amount is not None and fee_for_weight(feerate, w) >= o.value:
                    continue   # uneconomic at this feerate (CLN skips it unless spending "all")
                chosen.append(o)
                total += o.value
                weight += w
            excess = total - (amount or 0) - fee_for_weight(feerate, weight)
            if amount is None:
                if not chosen or excess < DUST_LIMIT:
                    raise WalletError(Reason.FUND_CANNOT_AFFORD, f"All {len(chosen)} inputs could not afford fees")
            elif excess < 0:
                raise WalletError(Reason.FUND_CANNOT_AFFORD, f"Could not afford {amount}sat using all {len(chosen)} "
                                                             f"available UTXOs: {-excess}sat short")
        if amount is None:
            excess_as_change = False
        change = 0
        if excess_as_change:
            change, excess = excess, 0
        if emergency:
            # CLN's change_for_emergency: the rest of the wallet counts toward the reserve (a gross estimate, as
            # CLN's: their spending fees are not counted); what it lacks must come as change.
            chosen_keys = {o.key for o in chosen}
            needed = emergency - sum(o.value for o in wallet.outputs.values()
                                     if o.spend_txid is None and not o.reserved(tip) and o.key not in chosen_keys)
            if needed > 0 and change_amount(change, feerate, weight) < needed:
                # (With excess_as_change the excess is already in `change`, and short: nothing left to split.)
                fee = change_fee(feerate, weight)
                if excess - fee - needed < 0:
                    raise WalletError(Reason.FUND_CANNOT_AFFORD_WITH_EMERGENCY, "We would not have enough left "
                                                                                f"for min-emergency-msat {emergency}sat")
                excess -= fee + needed
                change = fee + needed
        if check_only:
            return None
        outputs: list[TxOut] = []
        change_outnum = None
        change_value = change_amount(change, feerate, weight)
        if change_value:
            outputs.append(TxOut(change_value, await wallet.new_change_script()))
            change_outnum = 0
            weight += _CHANGE_WEIGHT
        tx = Transaction(2, [TxIn(o.outpoint, b"", RBF_SEQUENCE) for o in chosen], outputs,
                         tip if locktime is None else locktime)
        reservations = await wallet.extend_reservations(chosen, reserve) if reserve else None
        return FundedPsbt(tx, chosen, feerate, weight, excess, change_outnum, reservations)
