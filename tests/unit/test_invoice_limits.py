"""Issue 16 items 3 and 4: BOLT 11 decoding is linear, bounded in length, and an absurd amount is an invoice
error (not Python's int-digit limit)."""
from __future__ import annotations

import time

import coincurve
import pytest

from ampere.ln import invoice as bolt11
from ampere.ln.invoice import InvoiceError, decode, encode, Invoice
from ampere.ln.invoice_fields import u5_to_int
from ampere.primitives.bech32 import bech32_encode

KEY = bytes.fromhex("e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734")


def _padded_invoice(n_u5: int, hrp: str = "lnbcrt") -> str:
    """A checksum-valid string whose data part is n_u5 groups (an unknown field repeated): what an attacker
    sends. It is not a valid invoice, but nothing before the length check can tell."""
    return bech32_encode(hrp, [0] * n_u5)


def test_stated_length_limit_refuses_long_invoices_quickly():
    text = _padded_invoice(400_000)          # ~0.41 MB, the 50 s case
    start = time.perf_counter()
    with pytest.raises(InvoiceError, match="too long"):
        decode(text)
    assert time.perf_counter() - start < 0.5
    assert bolt11.MAX_INVOICE_LENGTH == 7089


def test_u5_to_int_is_linear():
    values = [31] * 400_000
    start = time.perf_counter()
    n = u5_to_int(values)
    assert time.perf_counter() - start < 0.5
    assert n == (1 << 2_000_000) - 1
    assert u5_to_int([1, 0, 31]) == (1 << 10) | 31
    assert u5_to_int([]) == 0


def test_an_invoice_at_the_length_limit_decodes_fast():
    # Many route hints: as long as a valid invoice can be and stay under the limit.
    hops = [bolt11.RouteHop(coincurve.PrivateKey().public_key.format(), i, 1, 1, 9) for i in range(12)]
    inv = Invoice(currency="bcrt", timestamp=1, payment_hash=b"\x01" * 32, amount_msat=1000,
                  payment_secret=b"\x02" * 32, description="x" * 500, route_hints=[hops] * 3)
    text = encode(inv, KEY)
    assert len(text) <= bolt11.MAX_INVOICE_LENGTH
    start = time.perf_counter()
    assert decode(text).payment_hash == b"\x01" * 32
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("digits", [4301, 5000, 30])
def test_huge_amount_is_an_invoice_error(digits):
    text = bech32_encode("lnbcrt" + "9" * digits + "m", [0] * 200)
    with pytest.raises(InvoiceError, match="amount"):
        decode(text)


def test_we_never_write_an_invoice_we_would_refuse_to_read():
    hops = [bolt11.RouteHop(b"\x02" + b"\x11" * 32, i, 1, 1, 9) for i in range(12)]
    inv = Invoice(currency="bcrt", timestamp=1, payment_hash=b"\x01" * 32, amount_msat=1000,
                  payment_secret=b"\x02" * 32, description="x", route_hints=[hops] * 8)
    with pytest.raises(InvoiceError, match="too long"):
        encode(inv, KEY)
