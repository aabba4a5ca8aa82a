"""Claiming HTLC outputs (BOLT 5 "HTLC Output Handling"), pure.

Our commitment: second-stage transactions, pre-signed by the peer.

    local_htlc_txs(ctx, remote_htlc_sigs, signer) -> list[LocalHtlcTx]
        every untrimmed HTLC of our commitment `ctx` with both signatures, ready to finish:
        .complete(preimage=None) -> Transaction (an HTLC-timeout needs none; an HTLC-success needs the preimage)
    signed_local_htlc_txs(ctx, remote_htlc_sigs, signer, preimages) -> list[(HtlcTx, Transaction | None)]

The peer's commitment: spent directly, to our wallet.

    build_htlc_claim(parent_txid, output, channel_type, dest_script, feerate_perkw, preimage=None) -> Transaction
    sign_htlc_claim(tx, output, signer, preimage=None) -> Transaction

BOLT #3: on the peer's commitment our HTLC key is its remote_htlcpubkey: an HTLC we offered (received by the
owner) is ours after its cltv_expiry with the witness `<remotehtlcsig> <>`, an HTLC the peer offered is ours with
`<remotehtlcsig> <payment_preimage>`. With option_anchors both carry a 1-block CSV.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ampere.ln.channel.commitment import CommitmentTx, htlc_transactions
from ampere.ln.channel.htlc_tx import HtlcTx, HtlcTxKind
from ampere.ln.channel.keys import compact_to_der
from ampere.ln.channel.scripts import ChannelType
from ampere.ln.channel.signer import ChannelSigner
from ampere.ln.onchain.classify import SWEEP_DUST_LIMIT, OurOutput, OutputKind, SweepNotWorthIt
from ampere.primitives.amount import SatInt, fee_for_weight
from ampere.primitives.tx import SIGHASH_ALL, OutPoint, Transaction, TxIn, TxOut

__all__ = ["LocalHtlcTx", "local_htlc_txs", "signed_local_htlc_txs", "build_htlc_claim", "sign_htlc_claim"]

RBF_SEQUENCE = 0xFFFFFFFD


@dataclass(frozen=True)
class LocalHtlcTx:
    """A second-stage transaction of our commitment, with both signatures (DER + sighash byte)."""

    kind: HtlcTxKind
    output_index: int              # the commitment's HTLC output it spends
    tx: Transaction                # unsigned
    witness_script: bytes
    their_sig: bytes
    our_sig: bytes

    def complete(self, preimage: bytes | None = None) -> Transaction:
        # BOLT #3: "0 <remotehtlcsig> <localhtlcsig> <payment_preimage>" (success) / "... <>" (timeout).
        if self.kind is HtlcTxKind.SUCCESS and (preimage is None or len(preimage) != 32):
            raise ValueError("an HTLC-success transaction needs the payment preimage")
        tx = self.tx.copy()
        tx.inputs[0].witness = [b"", self.their_sig, self.our_sig,
                                preimage if self.kind is HtlcTxKind.SUCCESS and preimage else b"",
                                self.witness_script]
        return tx


def local_htlc_txs(ctx: CommitmentTx, remote_htlc_sigs: tuple[bytes, ...], signer: ChannelSigner) -> list[LocalHtlcTx]:
    htxs: list[HtlcTx] = htlc_transactions(ctx)
    if len(htxs) != len(remote_htlc_sigs):
        raise ValueError(f"{len(remote_htlc_sigs)} HTLC signatures for {len(htxs)} HTLC transactions")
    out = []
    for htx, their in zip(htxs, remote_htlc_sigs):
        ours = signer.sign_local_htlc_tx(htx, ctx.keys.per_commitment_point)
        out.append(LocalHtlcTx(htx.kind, htx.commitment_output_index, htx.tx, htx.witness_script,
                               compact_to_der(their) + bytes([htx.counterparty_sighash_type]),
                               ours + bytes([SIGHASH_ALL])))
    return out


def signed_local_htlc_txs(ctx: CommitmentTx, remote_htlc_sigs: tuple[bytes, ...], signer: ChannelSigner,
                          preimages: Mapping[bytes, bytes]) -> list[tuple[HtlcTx, Transaction | None]]:
    htxs = htlc_transactions(ctx)
    out: list[tuple[HtlcTx, Transaction | None]] = []
    for htx, ltx, h in zip(htxs, local_htlc_txs(ctx, remote_htlc_sigs, signer), ctx.htlc_outputs):
        if htx.kind is HtlcTxKind.SUCCESS:
            pre = preimages.get(h.htlc.payment_hash)
            out.append((htx, ltx.complete(pre) if pre is not None else None))
        else:
            out.append((htx, ltx.complete()))
    return out


def _claim_witness(output: OurOutput, preimage: bytes | None, sig: bytes) -> list[bytes]:
    return [sig, preimage if output.kind is OutputKind.THEIR_HTLC and preimage else b"", output.witness_script or b""]


def build_htlc_claim(parent_txid: bytes, output: OurOutput, channel_type: ChannelType, dest_script: bytes,
                     feerate_perkw: int) -> Transaction:
    """The direct spend of an HTLC output of the PEER's commitment to `dest_script` (unsigned)."""
    if output.kind not in (OutputKind.OUR_HTLC, OutputKind.THEIR_HTLC) or output.htlc is None:
        raise ValueError(f"output {output.vout} ({output.kind.value}) is not an HTLC we can claim directly")
    # BOLT #3 received HTLC (ours, offered by us): "<cltv_expiry> OP_CHECKLOCKTIMEVERIFY": the locktime must be
    # at least cltv_expiry. option_anchors: "1 OP_CHECKSEQUENCEVERIFY".
    locktime = output.htlc.cltv_expiry if output.kind is OutputKind.OUR_HTLC else 0
    seq = 1 if channel_type.anchors else RBF_SEQUENCE
    tx = Transaction(2, [TxIn(OutPoint(parent_txid, output.vout), b"", seq)], [TxOut(SatInt(0), dest_script)], locktime)
    tx.inputs[0].witness = _claim_witness(output, b"\x00" * 32, b"\x00" * 73)
    fee = fee_for_weight(feerate_perkw, tx.weight())
    value = SatInt(output.value_sat - fee)
    if value < SWEEP_DUST_LIMIT:
        raise SweepNotWorthIt(f"HTLC output {output.vout} of {output.value_sat} sat cannot pay the {fee} sat fee of "
                              "its claim")
    tx.outputs[0] = TxOut(value, dest_script)
    tx.inputs[0].witness = []
    return tx


def sign_htlc_claim(tx: Transaction, output: OurOutput, signer: ChannelSigner,
                    preimage: bytes | None = None) -> Transaction:
    if output.kind is OutputKind.THEIR_HTLC and (preimage is None or len(preimage) != 32):
        raise ValueError("claiming the peer's HTLC needs its payment preimage")
    assert output.witness_script is not None and output.per_commitment_point is not None, "not an HTLC output"
    tx = tx.copy()
    sig = signer.sign_htlc_claim(tx, 0, output.witness_script, output.value_sat, output.per_commitment_point)
    tx.inputs[0].witness = _claim_witness(output, preimage, sig)
    return tx
