"""BOLT 3 HTLC-timeout and HTLC-success transactions, their fees and signatures.

These second-stage transactions spend an HTLC output of a commitment transaction back to its owner,
through the same revocable, `to_self_delay`-delayed script as `to_local`. Both peers sign them: the
counterparty's signatures travel in `commitment_signed.htlc_signatures`, in commitment output order.

Functions take plain values; `ampere.ln.channel.commitment.htlc_transactions` builds them for every
untrimmed HTLC of a `CommitmentTx`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from ampere.ln.channel.keys import CommitmentKeys, ecdsa_sign, ecdsa_verify
from ampere.ln.channel.scripts import ChannelType, htlc_tx_output_script
from ampere.ln.channel.values import make
from ampere.primitives.amount import SatInt
from ampere.primitives.crypto import sha256d
from ampere.primitives.script import p2wsh
from ampere.primitives.tx import (
    SIGHASH_ALL,
    SIGHASH_ANYONECANPAY,
    SIGHASH_SINGLE,
    OutPoint,
    Transaction,
    TxIn,
    TxOut,
    bip143_sighash,
)

__all__ = [
    "HtlcTxError",
    "HtlcTxKind",
    "HtlcTx",
    "HTLC_TIMEOUT_WEIGHT",
    "HTLC_SUCCESS_WEIGHT",
    "htlc_timeout_fee_sat",
    "htlc_success_fee_sat",
    "build_htlc_tx",
    "htlc_output_script_pubkey",
]

# BOLT #3: "HTLC-timeout weight (no option_anchors): 663 / (option_anchors): 666;
#           HTLC-success weight (no option_anchors): 703 / (option_anchors): 706"
HTLC_TIMEOUT_WEIGHT = {ChannelType.STATIC_REMOTEKEY: 663, ChannelType.ANCHORS: 666}
HTLC_SUCCESS_WEIGHT = {ChannelType.STATIC_REMOTEKEY: 703, ChannelType.ANCHORS: 706}


_FAST_TYPES = (SIGHASH_ALL, SIGHASH_SINGLE | SIGHASH_ANYONECANPAY)
_ZERO32 = bytes(32)


class HtlcTxError(ValueError):
    """An HTLC transaction that cannot be built or finalised from the values given."""


class HtlcTxKind(enum.Enum):
    TIMEOUT = "htlc-timeout"  # spends an HTLC the commitment owner offered, after cltv_expiry
    SUCCESS = "htlc-success"  # spends an HTLC the commitment owner received, with the preimage


def htlc_timeout_fee_sat(feerate_per_kw: int, channel_type: ChannelType) -> int:
    """BOLT #3: "If option_anchors applies: MUST be 0. Otherwise ... Multiply feerate_per_kw by 663 and divide by
    1000 (rounding down)." """
    if channel_type.anchors:
        return 0
    return feerate_per_kw * HTLC_TIMEOUT_WEIGHT[channel_type] // 1000


def htlc_success_fee_sat(feerate_per_kw: int, channel_type: ChannelType) -> int:
    """BOLT #3: "If option_anchors applies: MUST be 0. Otherwise ... Multiply feerate_per_kw by 703 and divide by
    1000 (rounding down)." """
    if channel_type.anchors:
        return 0
    return feerate_per_kw * HTLC_SUCCESS_WEIGHT[channel_type] // 1000


@dataclass(frozen=True)
class HtlcTx:
    """An unsigned HTLC transaction with what is needed to sign and finalise it."""

    kind: HtlcTxKind
    htlc_id: int
    commitment_output_index: int
    tx: Transaction               # unsigned: one input, one output
    witness_script: bytes         # the commitment HTLC output's script (the input's scriptCode)
    input_amount_sat: int         # that output's value, committed to by the BIP143 sighash
    channel_type: ChannelType

    @property
    def counterparty_sighash_type(self) -> int:
        """Sighash flag of the commitment counterparty's signature (the one sent in commitment_signed).

        BOLT #3: "if option_anchors applies to this commitment transaction, SIGHASH_SINGLE|SIGHASH_ANYONECANPAY is
        used" (BOLT #5 adds that this lets the owner attach fee inputs and outputs); the owner signs SIGHASH_ALL.
        """
        return SIGHASH_SINGLE | SIGHASH_ANYONECANPAY if self.channel_type.anchors else SIGHASH_ALL

    def sighash(self, sighash_type: int) -> bytes:
        """BIP143 sighash of the one input: every HTLC signature made or checked (one per HTLC per commitment)."""
        tx = self.tx
        ws = self.witness_script
        n = len(ws)
        if len(tx.inputs) != 1 or len(tx.outputs) != 1 or n >= 0xFD or sighash_type not in _FAST_TYPES:
            return bip143_sighash(tx, 0, ws, self.input_amount_sat, sighash_type)
        # primitives.tx.bip143_sighash's preimage for one input and one output, written out (the BOLT 3 vectors
        # check the signatures): SIGHASH_ALL commits to the outpoint and sequence, SINGLE|ANYONECANPAY (anchors,
        # the counterparty's signature) puts zeros there; both commit to the one output.
        txin = tx.inputs[0]
        outpoint = txin.prevout.txid + txin.prevout.vout.to_bytes(4, "little")
        sequence = txin.sequence.to_bytes(4, "little")
        if sighash_type == SIGHASH_ALL:
            hash_prevouts, hash_sequence = sha256d(outpoint), sha256d(sequence)
        else:
            hash_prevouts = hash_sequence = _ZERO32
        return sha256d(b"".join((
            tx.version.to_bytes(4, "little", signed=True), hash_prevouts, hash_sequence, outpoint, bytes((n,)), ws,
            self.input_amount_sat.to_bytes(8, "little", signed=True), sequence, sha256d(tx.outputs[0].serialize()),
            tx.locktime.to_bytes(4, "little"), sighash_type.to_bytes(4, "little"))))

    def sign_as_owner(self, owner_htlc_privkey: bytes) -> bytes:
        """The commitment owner's DER signature (SIGHASH_ALL), made with its derived local_htlc privkey."""
        return ecdsa_sign(owner_htlc_privkey, self.sighash(SIGHASH_ALL))

    def sign_as_counterparty(self, counterparty_htlc_privkey: bytes) -> bytes:
        """The counterparty's DER signature, as sent in commitment_signed.htlc_signatures."""
        return ecdsa_sign(counterparty_htlc_privkey, self.sighash(self.counterparty_sighash_type))

    def verify_counterparty_signature(self, counterparty_htlc_pubkey: bytes, der_signature: bytes) -> bool:
        return ecdsa_verify(counterparty_htlc_pubkey, der_signature, self.sighash(self.counterparty_sighash_type))

    def verify_owner_signature(self, owner_htlc_pubkey: bytes, der_signature: bytes) -> bool:
        return ecdsa_verify(owner_htlc_pubkey, der_signature, self.sighash(SIGHASH_ALL))

    def signed(self, counterparty_sig: bytes, owner_sig: bytes, payment_preimage: bytes | None = None) -> Transaction:
        """The broadcastable transaction, with DER signatures (no sighash byte) from both sides.

        BOLT #3: witness `0 <remotehtlcsig> <localhtlcsig> <payment_preimage>` for HTLC-success,
        `0 <remotehtlcsig> <localhtlcsig> <>` for HTLC-timeout (then the witness script).
        """
        if self.kind is HtlcTxKind.SUCCESS:
            if payment_preimage is None or len(payment_preimage) != 32:
                raise HtlcTxError("an HTLC-success transaction needs the 32-byte payment preimage")
            last = bytes(payment_preimage)
        else:
            if payment_preimage is not None:
                raise HtlcTxError("an HTLC-timeout transaction takes no preimage")
            last = b""
        tx = self.tx.copy()
        tx.inputs[0].witness = [b"", counterparty_sig + bytes([self.counterparty_sighash_type]),
                                owner_sig + bytes([SIGHASH_ALL]), last, self.witness_script]
        return tx


def htlc_output_script_pubkey(keys: CommitmentKeys, to_self_delay: int) -> bytes:
    """The scriptPubKey of every HTLC transaction's output on one commitment (its to_local script, P2WSH)."""
    return p2wsh(htlc_tx_output_script(keys.revocation_pubkey, to_self_delay, keys.local_delayed_pubkey))


def build_htlc_tx(kind: HtlcTxKind, *, htlc_id: int, commitment_txid: bytes, output_index: int, amount_sat: int,
                  cltv_expiry: int, witness_script: bytes, keys: CommitmentKeys, to_self_delay: int,
                  feerate_per_kw: int, channel_type: ChannelType, output_script: bytes | None = None) -> HtlcTx:
    """Build the HTLC-timeout or HTLC-success transaction spending output `output_index` of a commitment.

    `keys` and `to_self_delay` are those of the commitment transaction being spent (its owner's delayed key,
    the revocation key the counterparty can use). `output_script`: `htlc_output_script_pubkey(keys,
    to_self_delay)` when the caller has it (the same for every HTLC transaction of a commitment).
    """
    if len(commitment_txid) != 32:
        raise HtlcTxError("commitment txid must be 32 bytes (internal byte order)")
    fee = (htlc_timeout_fee_sat if kind is HtlcTxKind.TIMEOUT else htlc_success_fee_sat)(feerate_per_kw, channel_type)
    # BOLT #3: "txout[0] amount: the HTLC amount_msat divided by 1000 (rounding down) minus fees in satoshis"
    value = SatInt(amount_sat - fee)
    if value < 0:
        raise HtlcTxError(f"HTLC of {amount_sat} sat cannot pay the {fee} sat HTLC transaction fee (it is trimmed)")
    out_script = output_script if output_script is not None else htlc_output_script_pubkey(keys, to_self_delay)
    tx = Transaction(
        version=2,
        # BOLT #3: "txin[0] sequence: 0 (set to 1 for option_anchors)"
        inputs=[TxIn(OutPoint(bytes(commitment_txid), output_index), b"", 1 if channel_type.anchors else 0)],
        outputs=[TxOut(value, out_script)],
        # BOLT #3: "locktime: 0 for HTLC-success, cltv_expiry for HTLC-timeout"
        locktime=cltv_expiry if kind is HtlcTxKind.TIMEOUT else 0,
    )
    return make(HtlcTx, kind=kind, htlc_id=htlc_id, commitment_output_index=output_index, tx=tx,
                witness_script=witness_script, input_amount_sat=amount_sat, channel_type=channel_type)
