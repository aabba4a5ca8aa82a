"""Second-stage HTLC transactions of our own commitment (BOLT 5 "HTLC Output Handling: Local Commitment").

    signed_local_htlc_txs(ctx, remote_htlc_sigs, signer, preimages) -> list[(HtlcTx, Transaction | None)]

`ctx` is our commitment (ampere.ln.channel.commitment.CommitmentTx), `remote_htlc_sigs` the peer's compact
signatures from its commitment_signed (in output order), `preimages` payment_hash -> preimage we know. Each
untrimmed HTLC gives its HTLC transaction, signed by both when it can be: always for an HTLC-timeout (it is
valid once its locktime, the cltv_expiry, has passed), and for an HTLC-success only with the preimage.
"""
from __future__ import annotations

from typing import Mapping

from ampere.ln.channel.commitment import CommitmentTx, htlc_transactions
from ampere.ln.channel.htlc_tx import HtlcTx, HtlcTxKind
from ampere.ln.channel.keys import compact_to_der
from ampere.ln.channel.signer import ChannelSigner
from ampere.primitives.tx import Transaction

__all__ = ["signed_local_htlc_txs"]


def signed_local_htlc_txs(ctx: CommitmentTx, remote_htlc_sigs: tuple[bytes, ...], signer: ChannelSigner,
                          preimages: Mapping[bytes, bytes]) -> list[tuple[HtlcTx, Transaction | None]]:
    htxs = htlc_transactions(ctx)
    if len(htxs) != len(remote_htlc_sigs):
        raise ValueError(f"{len(remote_htlc_sigs)} HTLC signatures for {len(htxs)} HTLC transactions")
    out: list[tuple[HtlcTx, Transaction | None]] = []
    for htx, their_sig, h in zip(htxs, remote_htlc_sigs, ctx.htlc_outputs):
        preimage = preimages.get(h.htlc.payment_hash) if htx.kind is HtlcTxKind.SUCCESS else None
        if htx.kind is HtlcTxKind.SUCCESS and preimage is None:
            out.append((htx, None))
            continue
        ours = signer.sign_local_htlc_tx(htx, ctx.keys.per_commitment_point)
        out.append((htx, htx.signed(compact_to_der(their_sig), ours, preimage)))
    return out
