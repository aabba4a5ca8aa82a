"""BOLT 3 mutual closing transactions: legacy (`closing_signed`) and simple close (`closing_complete`).

Both spend the funding output to the scripts the peers gave in `shutdown` (or `closing_complete`), with
amounts rounded down to whole satoshis and outputs in BOLT 3 order. Pure functions over plain values;
LOCAL/REMOTE are our node and the peer, as in `ampere.ln.channel.commitment`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ampere.ln.channel.commitment import ChannelParams, Side
from ampere.ln.channel.keys import ecdsa_sign, ecdsa_verify
from ampere.ln.channel.scripts import funding_witness
from ampere.primitives.amount import MsatInt, SatInt, msat_to_sat, sat_to_msat
from ampere.primitives.script import (
    OP_RETURN,
    P2A_SCRIPT,
    is_p2pkh,
    is_p2sh,
    is_p2wpkh,
    is_p2wsh,
    witness_program,
)
from ampere.primitives.tx import SIGHASH_ALL, Transaction, TxIn, TxOut, bip143_sighash

__all__ = [
    "ClosingError",
    "ClosingTx",
    "dust_threshold_sat",
    "expected_closing_weight",
    "build_closing_tx",
    "build_simple_closing_tx",
]

# Weight of the funding input's witness with 73-byte signatures (BOLT 3 expected weights use the maximum):
# count(1) + empty(1) + 2 * (len(1) + sig(73)) + len(1) + 2-of-2 script(71), plus the segwit marker and flag (2).
_FUNDING_WITNESS_WEIGHT = 1 + 1 + 2 * (1 + 73) + 1 + 71 + 2


class ClosingError(ValueError):
    """A closing transaction that cannot be built from the values given."""


def dust_threshold_sat(script_pubkey: bytes) -> int:
    """Bitcoin Core's dust threshold for an output paying `script_pubkey` (BOLT #3 "Dust Limits").

    BOLT #3: p2pkh 546, p2sh 540, p2wpkh 294, p2wsh 330, p2a 240, unknown segwit versions 354, and "OP_RETURN
    outputs: these are never dust".
    """
    if script_pubkey[:1] == bytes([OP_RETURN]):
        return 0
    if is_p2pkh(script_pubkey):
        return 546
    if is_p2sh(script_pubkey):
        return 540
    if is_p2wpkh(script_pubkey):
        return 294
    if is_p2wsh(script_pubkey):
        return 330
    if script_pubkey == P2A_SCRIPT:
        return 240
    if witness_program(script_pubkey) is not None:
        return 354
    return 546  # anything else is spent like (at least) a p2pkh


@dataclass(frozen=True)
class ClosingTx:
    """An unsigned mutual closing transaction."""

    tx: Transaction                       # unsigned; do not mutate
    funding_sat: int
    funding_script: bytes
    local_funding_pubkey: bytes
    remote_funding_pubkey: bytes
    local_output_index: int | None        # our output, if present
    remote_output_index: int | None       # the peer's output, if present

    @property
    def fee_sat(self) -> SatInt:
        return SatInt(self.funding_sat - sum(o.value for o in self.tx.outputs))

    def sighash(self) -> bytes:
        return bip143_sighash(self.tx, 0, self.funding_script, self.funding_sat, SIGHASH_ALL)

    def sign(self, funding_privkey: bytes) -> bytes:
        """DER signature (SIGHASH_ALL, no sighash byte), as closing_signed / closing_sig carry it."""
        return ecdsa_sign(funding_privkey, self.sighash())

    def verify(self, funding_pubkey: bytes, der_signature: bytes) -> bool:
        return ecdsa_verify(funding_pubkey, der_signature, self.sighash())

    def signed(self, local_sig: bytes, remote_sig: bytes) -> Transaction:
        """The broadcastable transaction (a copy) with our and the peer's DER signatures."""
        tx = self.tx.copy()
        tx.inputs[0].witness = funding_witness(self.local_funding_pubkey, local_sig + bytes([SIGHASH_ALL]),
                                               self.remote_funding_pubkey, remote_sig + bytes([SIGHASH_ALL]))
        return tx


def expected_closing_weight(tx: Transaction) -> int:
    """Weight of `tx` once its funding input carries two maximum-size (73-byte) signatures."""
    return 4 * len(tx.serialize(include_witness=False)) + _FUNDING_WITNESS_WEIGHT


def _check_balances(params: ChannelParams, local_balance_msat: MsatInt, remote_balance_msat: MsatInt,
                    fee_sat: SatInt) -> None:
    if local_balance_msat < 0 or remote_balance_msat < 0:
        raise ClosingError("balances must not be negative")
    if local_balance_msat + remote_balance_msat != sat_to_msat(params.funding_sat):
        raise ClosingError("balances do not add up to the channel capacity (are HTLCs still pending?)")
    if fee_sat < 0:
        raise ClosingError("fee_satoshis must not be negative")


def _finish(params: ChannelParams, outputs: list[tuple[TxOut, Side]], sequence: int, locktime: int) -> ClosingTx:
    # BOLT #3 "Transaction Output Ordering": by value, then scriptpubkey.
    outputs.sort(key=lambda o: (o[0].value, o[0].script_pubkey))
    index = {side: i for i, (_, side) in enumerate(outputs)}
    tx = Transaction(version=2, inputs=[TxIn(params.funding_outpoint, b"", sequence)],
                     outputs=[o for o, _ in outputs], locktime=locktime)
    return ClosingTx(tx, params.funding_sat, params.funding_script, params.local_pubkeys.funding_pubkey,
                     params.remote_pubkeys.funding_pubkey, index.get(Side.LOCAL), index.get(Side.REMOTE))


def build_closing_tx(params: ChannelParams, local_script: bytes, remote_script: bytes, local_balance_msat: MsatInt,
                     remote_balance_msat: MsatInt, fee_sat: SatInt, dust_limit_sat: SatInt,
                     omit_local_output: bool = False) -> ClosingTx:
    """The legacy closing transaction (BOLT 2 `closing_signed` negotiation).

    `dust_limit_sat` is that of the node offering the signature. BOLT #3, each node offering a signature:
      - MUST round each output down to whole satoshis.
      - MUST subtract the fee given by `fee_satoshis` from the output to the funder.
      - MUST remove any output below its own `dust_limit_satoshis`.
      - MAY eliminate its own output (`omit_local_output`).
    """
    _check_balances(params, local_balance_msat, remote_balance_msat, fee_sat)
    amounts: dict[Side, int] = {Side.LOCAL: local_balance_msat, Side.REMOTE: remote_balance_msat}
    if amounts[params.opener] < sat_to_msat(fee_sat):
        raise ClosingError(f"the opener cannot pay a {fee_sat} sat closing fee")
    amounts[params.opener] -= sat_to_msat(fee_sat)
    scripts = {Side.LOCAL: local_script, Side.REMOTE: remote_script}
    outputs = []
    for side in (Side.LOCAL, Side.REMOTE):
        value = msat_to_sat(amounts[side])
        if value < dust_limit_sat or (side is Side.LOCAL and omit_local_output):
            continue
        outputs.append((TxOut(value, scripts[side]), side))
    if not outputs:
        raise ClosingError("every output of the closing transaction would be dust")
    # BOLT #3: "txin[0] sequence: 0xFFFFFFFF", "locktime: 0"
    return _finish(params, outputs, 0xFFFFFFFF, 0)


def build_simple_closing_tx(params: ChannelParams, closer: Side, closer_script: bytes, closee_script: bytes,
                            local_balance_msat: MsatInt, remote_balance_msat: MsatInt, fee_sat: SatInt, locktime: int,
                            closer_output: bool = True, closee_output: bool = True) -> ClosingTx:
    """The option_simple_close closing transaction (BOLT 2 `closing_complete` / `closing_sig`).

    BOLT #3: the closer pays `fee_satoshis` from its output; an output whose scriptpubkey starts with OP_RETURN has
    amount 0; "txin[0] sequence: 0xFFFFFFFD"; locktime from `closing_complete`. Which outputs are present is the
    closer's choice (`closer_output_only`, `closee_output_only`, `closer_and_closee_outputs` TLVs); an output
    that is included must not be dust.
    """
    _check_balances(params, local_balance_msat, remote_balance_msat, fee_sat)
    if not 0 <= locktime <= 0xFFFFFFFF:
        raise ClosingError("locktime out of range")
    if not (closer_output or closee_output):
        raise ClosingError("a closing transaction needs at least one output")
    closee = closer.other()
    amounts: dict[Side, int] = {Side.LOCAL: local_balance_msat, Side.REMOTE: remote_balance_msat}
    if amounts[closer] < sat_to_msat(fee_sat):
        raise ClosingError(f"the closer cannot pay a {fee_sat} sat closing fee")
    amounts[closer] -= sat_to_msat(fee_sat)
    outputs = []
    for side, script, wanted in ((closer, closer_script, closer_output), (closee, closee_script, closee_output)):
        if not wanted:
            continue
        value = SatInt(0) if script[:1] == bytes([OP_RETURN]) else msat_to_sat(amounts[side])
        if value < dust_threshold_sat(script):
            raise ClosingError(f"the {'closer' if side is closer else 'closee'} output of {value} sat is dust")
        outputs.append((TxOut(value, script), side))
    return _finish(params, outputs, 0xFFFFFFFD, locktime)
