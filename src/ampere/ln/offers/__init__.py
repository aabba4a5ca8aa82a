"""BOLT 12: offers, invoice requests and invoices (pure: no I/O).

`encoding`: the bech32 string form (no checksum, `+` joins) and merkle-tree signatures.
`fields`: parsing with the readers' rules, offer/invreq ids, and building each object.
"""

from .encoding import decode_bolt12_string, encode_bolt12_string, merkle_root, sign_bolt12, verify_bolt12
from .fields import (
    Bolt12Error,
    Parsed,
    build_invoice,
    build_invoice_request,
    build_offer,
    decode_string,
    invreq_id,
    offer_id,
    parse_invoice,
    parse_invoice_request,
    parse_offer,
)

__all__ = [
    "Bolt12Error", "Parsed", "build_invoice", "build_invoice_request", "build_offer", "decode_string",
    "decode_bolt12_string", "encode_bolt12_string", "invreq_id", "merkle_root", "offer_id", "parse_invoice",
    "parse_invoice_request", "parse_offer", "sign_bolt12", "verify_bolt12",
]
