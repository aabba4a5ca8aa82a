"""`listpartialinvoices` (seed 003): the incoming parts held for multi-part payments not yet complete.

The seed's "is the payer even *trying* to pay me?": while a multi-part set has not reached its total,
its parts are held (ampere.node.payments.receive.HtlcSet) and nothing shows in `listinvoices`.  This lists them,
with the seed's fields, one entry per part:

    {"partialinvoices": [{"payment_hash": "...", "total_amount_msat": 100000, "incoming_scid": "103x1x0",
                          "partial_amount_msat": 60000, "incoming_time_unix": 1700000000,
                          "incoming_htlc_id": 0, "label": "..."}]}

Once the parts add up, the node claims them all, the invoice turns `paid` and its entries disappear
from this list (so do the parts of a set that times out).
"""

from __future__ import annotations

from ...ln.invoice_fields import scid_to_str
from ..params import opt, p_sha256
from ..registry import command


@command("listpartialinvoices", [opt("payment_hash", p_sha256)], category="payment",
         description="List the parts held for incomplete multi-part payments (optionally of {payment_hash}).")
async def listpartialinvoices(ctx, payment_hash) -> dict:
    receiver = ctx.node.receiver
    out: list[dict] = []
    if receiver is None:
        return {"partialinvoices": out}
    wanted = payment_hash.hex() if payment_hash is not None else None
    for s in list(receiver.sets.values()):
        if wanted is not None and s.payment_hash.hex() != wanted:
            continue
        label = getattr(s.invoice, "label", None)
        for part in list(s.parts):
            entry = {"payment_hash": s.payment_hash.hex(), "total_amount_msat": s.total_msat,
                     "partial_amount_msat": part.amount_msat, "incoming_time_unix": int(part.received_at),
                     "incoming_htlc_id": part.htlc_id}
            if part.scid is not None:
                entry["incoming_scid"] = scid_to_str(part.scid)
            if label is not None:
                entry["label"] = label
            out.append(entry)
    out.sort(key=lambda e: (e["incoming_time_unix"], e["payment_hash"], e["incoming_htlc_id"]))
    return {"partialinvoices": out}

