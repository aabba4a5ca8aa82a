"""`decode` of BOLT 12 strings in CLN's shape: every valid offer of the spec's offers-test.json, and an
invoice_request and invoice Ampere builds, validate against CLN's decode schema and say what the strings say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from coincurve import PrivateKey

from ampere.ln.blinding import create_blinded_path, encode_encrypted_data
from ampere.ln.offers import build_invoice, build_invoice_request, build_offer
from ampere.rpc.commands.offers import decode_bolt12_json
from ampere.testing.schema import validate
from ampere.wire.messages import BlindedPayinfo

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "bolt12" / "offers-test.json").read_text())


@pytest.mark.parametrize("case", [c for c in VECTORS if c["valid"]], ids=lambda c: c["description"])
def test_valid_offers(case):
    out = decode_bolt12_json(case["bolt12"])
    validate("decode", out)
    assert out["type"] == "bolt12 offer" and out["valid"] is True
    fields = {f["type"]: f["hex"] for f in case["fields"]}
    if 22 in fields:
        assert out["offer_issuer_id"] == fields[22]
    if 2 in fields:
        assert "".join(out["offer_chains"]) == fields[2]
    if 10 in fields:
        assert out["offer_description"].encode().hex() == fields[10]


def test_invoice_request_and_invoice():
    issuer, payer = PrivateKey(bytes([1] * 32)), PrivateKey(bytes([2] * 32))
    offer = build_offer(offer_amount=500, offer_description="d", offer_issuer_id=issuer.public_key.format())
    invreq = build_invoice_request(offer, payer, b"m" * 8, quantity=None, payer_note="n")
    out = decode_bolt12_json(invreq.string())
    validate("decode", out)
    assert out["type"] == "bolt12 invoice_request" and out["invreq_payer_id"] == payer.public_key.format().hex()
    assert out["invreq_payer_note"] == "n" and out["offer_amount_msat"] == 500
    path = create_blinded_path(bytes([3] * 32), [(issuer.public_key.format(), encode_encrypted_data(path_id=b"p"))])
    info = BlindedPayinfo(fee_base_msat=1, fee_proportional_millionths=2, cltv_expiry_delta=3, htlc_minimum_msat=4,
                          htlc_maximum_msat=5, features=b"")
    invoice = build_invoice(invreq, issuer, paths=[path], payinfos=[info], payment_hash=b"\x09" * 32,
                            amount_msat=500, created_at=1_700_000_000, relative_expiry=600)
    out = decode_bolt12_json(invoice.string())
    validate("decode", out)
    assert out["type"] == "bolt12 invoice" and out["invoice_amount_msat"] == 500
    assert out["invoice_relative_expiry"] == 600 and out["invoice_payment_hash"] == "09" * 32
    assert out["invoice_paths"][0]["payinfo"]["cltv_expiry_delta"] == 3
    assert out["invoice_paths"][0]["first_node_id"] == issuer.public_key.format().hex()
