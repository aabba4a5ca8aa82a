"""BOLT 11's own examples, and invoices made by Core Lightning, through ampere.ln.invoice.

Every valid example decodes to the fields its breakdown states and re-encodes, with the example
private key, to the identical string; every invalid example is refused with a specific error.  The
independent `bolt11` package from PyPI must read every one of them the same way.
"""

from __future__ import annotations

import json
import os
import re

import bolt11
import pytest

from ampere.ln.invoice import (
    InvoiceError,
    decode,
    encode,
    resign,
    to_decode_json,
)
from ampere.ln.invoice_fields import feature_bits, scid_to_str
from ampere.primitives.bech32 import bech32_decode, bech32_encode

HERE = os.path.join(os.path.dirname(__file__), "bolt11")


def _load(name: str) -> dict:
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return json.load(f)


VALID = _load("valid.json")
INVALID = _load("invalid.json")["invalid"]
CLN = _load("cln_examples.json")
PRIV_KEY = bytes.fromhex(VALID["priv_key"])


def _ids(entries: list[dict]) -> list[str]:
    return [e["title"][:50] for e in entries]


@pytest.mark.parametrize("vec", VALID["valid"], ids=_ids(VALID["valid"]))
def test_valid_example_decodes_to_stated_fields(vec: dict) -> None:
    inv = decode(vec["invoice"])
    assert inv.currency == vec["currency"]
    assert inv.amount_msat == vec["amount_msat"]
    assert inv.timestamp == vec["timestamp"]
    assert inv.payment_hash.hex() == vec["payment_hash"]
    assert inv.payment_secret.hex() == vec["payment_secret"]
    assert inv.description == vec["description"]
    assert (inv.description_hash.hex() if inv.description_hash else None) == vec["description_hash"]
    assert inv.expiry == vec["expiry"]
    assert inv.min_final_cltv_expiry == vec["min_final_cltv_expiry"]
    assert inv.payee.hex() == vec["payee"]
    assert inv.n_field == vec["n_field"]
    assert feature_bits(inv.features) == vec["features"]
    assert [fb.address(inv.currency) for fb in inv.fallbacks] == vec["fallbacks"]
    assert [[{
        "pubkey": h.pubkey.hex(), "short_channel_id": h.scid_str, "fee_base_msat": h.fee_base_msat,
        "fee_proportional_millionths": h.fee_proportional_millionths,
        "cltv_expiry_delta": h.cltv_expiry_delta,
    } for h in route] for route in inv.route_hints] == vec["routes"]
    assert (inv.payment_metadata.hex() if inv.payment_metadata is not None else None) == vec["payment_metadata"]
    assert [{"tag": u.tag, "data": u.data_str} for u in inv.unknown_fields] == vec["extra"]


@pytest.mark.parametrize("vec", [v for v in VALID["valid"] if v["reencode"]],
                         ids=_ids([v for v in VALID["valid"] if v["reencode"]]))
def test_valid_example_reencodes_identically(vec: dict) -> None:
    assert encode(decode(vec["invoice"]), PRIV_KEY) == vec["invoice"].lower()


@pytest.mark.parametrize("vec", [v for v in VALID["valid"] if v["reencode"]],
                         ids=_ids([v for v in VALID["valid"] if v["reencode"]]))
def test_valid_example_resigned_from_blank_signature(vec: dict) -> None:
    # createinvoice/signinvoice take a string whose signature is bogus: zero it, then sign again.
    hrp, data, _ = bech32_decode(vec["invoice"], max_length=None)
    blank = bech32_encode(hrp, data[:-104] + [0] * 104)
    with pytest.raises(InvoiceError):
        decode(blank)
    assert resign(blank, PRIV_KEY) == vec["invoice"].lower()


def test_high_s_example_is_accepted_for_recovery_only() -> None:
    vec = next(v for v in VALID["valid"] if "high-S" in v["title"])
    inv = decode(vec["invoice"])
    s = int.from_bytes(inv.signature[32:64], "big")
    assert s > 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2
    assert not inv.n_field


@pytest.mark.parametrize("vec", INVALID, ids=_ids(INVALID))
def test_invalid_example_is_rejected(vec: dict) -> None:
    with pytest.raises(InvoiceError, match=re.escape(vec["error"])):
        decode(vec["invoice"])


@pytest.mark.parametrize("vec", INVALID, ids=_ids(INVALID))
def test_invalid_example_is_rejected_by_bolt11_package_too(vec: dict) -> None:
    # A cross-check of the vectors themselves: the independent decoder refuses them as well, except
    # where it does not implement the rule (unknown even feature bits, high-S with `n`).
    if "feature 100" in vec["title"]:
        pytest.skip("the bolt11 package does not check unknown even feature bits")
    if "sub-millisatoshi" in vec["title"]:
        pytest.skip("the bolt11 package truncates sub-millisatoshi amounts instead of failing")
    with pytest.raises(Exception):  # noqa: B017  (a third-party decoder: any error is a refusal)
        bolt11.decode(vec["invoice"])


def assert_same_as_bolt11_package(text: str) -> None:
    """Decode `text` with ours and with the PyPI `bolt11` package and compare every field."""
    ours = decode(text)
    theirs = bolt11.decode(text)
    assert theirs.currency == ours.currency
    assert theirs.amount_msat == ours.amount_msat
    assert theirs.date == ours.timestamp
    assert theirs.payment_hash == ours.payment_hash.hex()
    assert theirs.payment_secret == ours.payment_secret.hex()
    assert theirs.description == ours.description
    assert theirs.description_hash == (ours.description_hash.hex() if ours.description_hash else None)
    assert theirs.metadata == (ours.payment_metadata.hex() if ours.payment_metadata is not None else None)
    assert theirs.expiry == ours.expiry
    assert theirs.min_final_cltv_expiry == ours.min_final_cltv_expiry
    assert theirs.payee == ours.payee.hex()
    assert theirs.signature.signature_data == ours.signature
    their_bits = sorted(f.value * 2 + (s.value == 1) for f, s in theirs.features.feature_list.items()) \
        if theirs.features else []
    assert their_bits == feature_bits(ours.features)
    # The bolt11 package keeps only the first `f` field.
    if ours.fallbacks:
        fb = ours.fallbacks[0]
        assert theirs.fallback.witness_version == fb.version
        prog = theirs.fallback.data[5:]
        assert prog.tobytes()[: len(prog) // 8] == fb.program
        # Its addresses: base58 for bc/tb only, and plain bech32 for every witness version (it
        # predates BIP350's bech32m), so compare them where it gets them right.
        if ours.currency in ("bc", "tb") and fb.version in (0, 17, 18):
            assert theirs.fallback.address == fb.address(ours.currency)
    else:
        assert theirs.fallback is None
    assert [[(r.public_key, r.short_channel_id, r.base_fee, r.ppm_fee, r.cltv_expiry_delta)
             for r in hint.routes] for hint in theirs.route_hints] == \
        [[(h.pubkey.hex(), scid_to_str(h.short_channel_id), h.fee_base_msat,
           h.fee_proportional_millionths, h.cltv_expiry_delta) for h in route]
         for route in ours.route_hints]


@pytest.mark.parametrize("vec", VALID["valid"], ids=_ids(VALID["valid"]))
def test_valid_example_bolt11_package_agrees(vec: dict) -> None:
    assert_same_as_bolt11_package(vec["invoice"])


@pytest.mark.parametrize("entry", CLN["invoices"], ids=[e["schema"] for e in CLN["invoices"]])
def test_cln_made_invoice_decodes_and_package_agrees(entry: dict) -> None:
    inv = decode(entry["invoice"])
    assert inv.payee is not None and inv.payment_secret is not None
    assert_same_as_bolt11_package(entry["invoice"])


@pytest.mark.parametrize("entry", CLN["decode"])
def test_decode_json_matches_cln_exactly(entry: dict) -> None:
    got = to_decode_json(decode(entry["invoice"]))
    assert got == entry["response"]
    assert list(got) == list(entry["response"])  # and in CLN's key order
