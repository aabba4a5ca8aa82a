"""ampere.ln.invoice: amounts, every reader rule's error, encode/resign, CLN's decode JSON, and
property tests that round-trip random invoices and compare them with the PyPI `bolt11` package."""

from __future__ import annotations

import hashlib
import json
import os
import random

import coincurve
import jsonschema
import pytest
from bolt11.utils import msat_to_amount
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampere.ln.invoice import (
    DEFAULT_EXPIRY,
    DEFAULT_MIN_FINAL_CLTV_EXPIRY,
    Fallback,
    Invoice,
    InvoiceError,
    RouteHop,
    UnknownField,
    currency_for_network,
    decode,
    encode,
    encode_hrp,
    parse_hrp,
    resign,
    sign_hrp_and_data,
    to_decode_json,
)
from ampere.ln.invoice_fields import (
    CHARSET_REV,
    KNOWN_INVOICE_FEATURES,
    bytes_to_u5,
    feature_bits,
    feature_names,
    features_to_bytes,
    minimal_u5,
    scid_from_str,
    scid_to_str,
)
from ampere.primitives.amount import Msat, parse_msat
from ampere.primitives.bech32 import Encoding, bech32_decode, bech32_encode
from ampere.testing.schema import validate as schema_validate

def _load_vector_tests():
    # The comparison with the bolt11 package lives beside the spec vectors; load it by path so this
    # works whatever the import mode (the test directories are not packages).
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "vectors", "test_bolt11.py")
    spec = importlib.util.spec_from_file_location("_bolt11_vector_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


assert_same_as_bolt11_package = _load_vector_tests().assert_same_as_bolt11_package

KEY = coincurve.PrivateKey(bytes.fromhex("e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734"))
NODE_ID = KEY.public_key.format()
OTHER_KEY = coincurve.PrivateKey(b"\x02" * 32)
PH = bytes(range(32))
SECRET = b"\x11" * 32
TS = 1496314658


def make(**kw) -> Invoice:
    args = dict(currency="bcrt", timestamp=TS, payment_hash=PH, payment_secret=SECRET, description="x")
    args.update(kw)
    return Invoice(**args)


# --- amounts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("hrp,msat", [
    ("lnbc", None),
    ("lnbc1", 100_000_000_000),
    ("lnbc20m", 2_000_000_000),
    ("lnbc2500u", 250_000_000),
    ("lnbc1n", 100),
    ("lnbc10p", 1),
    ("lnbc9678785340p", 967_878_534),
    ("lntbs3m", 300_000_000),
    ("lnbcrt15u", 1_500_000),
    ("lnbc21000000", 21_000_000 * 100_000_000_000),
])
def test_hrp_amounts_are_exact(hrp: str, msat: int | None) -> None:
    currency, amount = parse_hrp(hrp)
    assert amount == msat and (amount is None or type(amount) is Msat)
    assert encode_hrp(currency, msat) == hrp


@pytest.mark.parametrize("hrp,error", [
    ("lnbc1p", "sub-millisatoshi"),
    ("lnbc25p", "sub-millisatoshi"),
    ("lnbc2500x", "multiplier 'x'"),
    ("lnbc1mm", "invalid amount"),
    ("lnbc01m", "leading zero"),
    ("lnbc0", "zero"),
    ("lnbc0m", "zero"),
    ("lnxy1m", "unknown currency"),
    ("bc1m", "does not start with 'ln'"),
    ("lnbc99999999999999999999", "out of range"),
])
def test_bad_hrp_amounts_are_refused(hrp: str, error: str) -> None:
    with pytest.raises(InvoiceError, match=error):
        parse_hrp(hrp)


def test_amount_strings_come_through_parse_msat() -> None:
    assert encode_hrp("bc", parse_msat("0.002btc")) == "lnbc2m"
    assert encode_hrp("bc", parse_msat("10sat")) == "lnbc100n"
    assert encode_hrp("bc", parse_msat("1msat")) == "lnbc10p"
    assert encode_hrp("bc", parse_msat("0.00967878534btc")) == "lnbc9678785340p"


@pytest.mark.parametrize("bad", [0, -5, True, 1.5, 1 << 64])
def test_encode_hrp_refuses_non_positive_or_non_integer(bad) -> None:
    with pytest.raises(InvoiceError):
        encode_hrp("bc", bad)


@given(st.integers(1, (1 << 64) - 1))
def test_hrp_amount_is_shortest_and_exact(msat: int) -> None:
    hrp = encode_hrp("bc", msat)
    assert parse_hrp(hrp) == ("bc", msat)
    # The independent bolt11 package's shortener picks the same (largest exact) multiplier; it
    # divides once too often for whole-bitcoin amounts that are multiples of 1000 BTC, so only
    # below that.
    if msat < 1000 * 10**11:
        assert hrp == "lnbc" + msat_to_amount(msat)
    digits = hrp[4:].rstrip("munp")
    for letter, per_unit in {"": 10**12, "m": 10**9, "u": 10**6, "n": 10**3, "p": 1}.items():
        if msat * 10 % per_unit == 0:
            assert len(str(msat * 10 // per_unit)) >= len(digits)


def test_currency_for_network() -> None:
    assert [currency_for_network(n) for n in ("bitcoin", "testnet", "signet", "regtest")] == \
        ["bc", "tb", "tbs", "bcrt"]
    with pytest.raises(InvoiceError):
        currency_for_network("liquid")


# --- reader rules, one error each ----------------------------------------------------------------


def raw_invoice(fields: list[tuple[str, list[int]]], hrp: str = "lnbcrt1m", key=KEY) -> str:
    """Sign an invoice made of exactly these (tag, 5-bit data) fields, as a writer might."""
    data = [0, 0, 0, 0, 0, 0, 1]
    for tag, values in fields:
        data += [CHARSET_REV[tag], len(values) >> 5, len(values) & 31] + list(values)
    return sign_hrp_and_data(hrp, data, key)


P = ("p", bytes_to_u5(PH))
S = ("s", bytes_to_u5(SECRET))
D = ("d", bytes_to_u5(b"coffee"))
H = ("h", bytes_to_u5(b"\x05" * 32))


def test_raw_invoice_baseline_decodes() -> None:
    inv = decode(raw_invoice([P, S, D]))
    assert (inv.payment_hash, inv.payment_secret, inv.description, inv.payee) == (PH, SECRET, "coffee", NODE_ID)
    assert (inv.expiry, inv.min_final_cltv_expiry, inv.features) == (3600, 18, 0)


@pytest.mark.parametrize("fields,error", [
    ([S, D], "no valid 'p' field"),
    ([("p", [0] * 51), S, D], "no valid 'p' field"),
    ([P, D], "missing required payment secret"),
    ([P, ("s", [0] * 53), D], "missing required payment secret"),
    ([P, S], "must have either 'd' or 'h'"),
    ([P, S, ("h", [0] * 51)], "must have either 'd' or 'h'"),
    ([P, S, D, H], "must not have both 'd' and 'h'"),
    ([P, S, ("d", bytes_to_u5(b"\xff\xfe"))], "d: invalid utf8"),
    ([P, S, ("d", [1, 2, 3])], "does not hold whole bytes"),
    ([P, S, ("d", [0, 1])], "non-zero padding bits"),
    ([P, S, D, ("x", [0, 1])], "x: not a minimal value"),
    ([P, S, D, ("c", [0, 9])], "c: not a minimal value"),
    ([P, S, D, ("c", minimal_u5(1 << 32))], "c: 4294967296 is too large"),
    ([P, S, D, ("x", [31] * 13)], "x: .* is too large"),
    ([P, S, D, ("9", [0, 1])], "9: non-minimal length"),
    ([P, S, D, ("9", minimal_u5(1 << 20))], "9: unknown feature bit 20"),
    ([P, S, D, ("f", [])], "f: empty field"),
    ([P, S, D, ("f", [0] + bytes_to_u5(b"\x01" * 21))], "f: witness v0 bad length 21"),
    ([P, S, D, ("f", [17] + bytes_to_u5(b"\x01" * 32))], "f: pkhash length 32"),
    ([P, S, D, ("f", [3] + bytes_to_u5(b"\x01"))], "f: witness v3 bad length 1"),
    ([P, S, D, ("r", bytes_to_u5(NODE_ID + b"\x00" * 17))], "r: hop 0 truncated"),
    ([P, S, D, ("r", [])], "r: hop 0 truncated"),
    ([P, S, D, ("r", bytes_to_u5(b"\x02" + b"\x00" * 32 + b"\x00" * 18))], "r: hop 0 pubkey invalid"),
    ([P, S, D, ("n", bytes_to_u5(b"\x04" + b"\x00" * 32))], "n: invalid public key"),
    ([P, S, D, ("n", bytes_to_u5(OTHER_KEY.public_key.format()))], "does not match the 'n' field"),
])
def test_reader_rule_errors(fields, error: str) -> None:
    with pytest.raises(InvoiceError, match=error):
        decode(raw_invoice(fields))


def test_field_running_into_signature_is_truncated() -> None:
    hrp, data, _ = bech32_decode(raw_invoice([P, S, D]), max_length=None)
    # Claim the `d` field is 30 groups longer than it is: it now eats into the signature.
    i = len(data) - 104 - len(D[1]) - 3
    assert data[i] == CHARSET_REV["d"] and data[i + 1:i + 3] == [0, len(D[1])]
    data[i + 1:i + 3] = [(len(D[1]) + 30) >> 5, (len(D[1]) + 30) & 31]
    with pytest.raises(InvoiceError, match="d: truncated"):
        decode(bech32_encode(hrp, data))


def test_bad_recovery_id_and_out_of_range_signature() -> None:
    hrp, data, _ = bech32_decode(raw_invoice([P, S, D]), max_length=None)
    sig = bytearray(65)
    sig[:64] = (7).to_bytes(32, "big") * 2
    sig[64] = 4
    with pytest.raises(InvoiceError, match="invalid recovery ID: 4"):
        decode(bech32_encode(hrp, data[:-104] + bytes_to_u5(bytes(sig))))
    sig[64] = 0
    sig[:32] = b"\xff" * 32
    with pytest.raises(InvoiceError, match="r or s out of range"):
        decode(bech32_encode(hrp, data[:-104] + bytes_to_u5(bytes(sig))))


def test_tampered_data_recovers_another_key_or_fails_n_check() -> None:
    good = raw_invoice([P, S, D, ("n", bytes_to_u5(NODE_ID))])
    hrp, data, _ = bech32_decode(good, max_length=None)
    data[10] ^= 1  # inside the payment hash
    with pytest.raises(InvoiceError, match="does not match the 'n' field"):
        decode(bech32_encode(hrp, data))
    hrp, data, _ = bech32_decode(raw_invoice([P, S, D]), max_length=None)
    data[10] ^= 1
    assert decode(bech32_encode(hrp, data)).payee != NODE_ID


def test_unknown_fields_are_kept_and_skipped_ones_too() -> None:
    text = raw_invoice([P, S, D, ("q", [1, 2, 3]), ("f", [19, 0, 0]), ("p", [0] * 52), ("z", [])])
    inv = decode(text)
    assert inv.payment_hash == PH  # the first `p` wins
    assert [(u.tag, u.data) for u in inv.unknown_fields] == \
        [("q", (1, 2, 3)), ("f", (19, 0, 0)), ("p", (0,) * 52), ("z", ())]
    assert inv.field_order == ("p", "s", "d", "~", "~", "~", "~")
    assert encode(inv, KEY) == text
    assert to_decode_json(inv)["extra"] == [
        {"tag": "q", "data": "pzr"}, {"tag": "f", "data": "nqq"}, {"tag": "p", "data": "q" * 52},
        {"tag": "z", "data": ""}]


def test_unknown_odd_feature_is_accepted_unknown_even_only_when_asked() -> None:
    odd = decode(raw_invoice([P, S, D, ("9", minimal_u5(1 << 101))]))
    assert feature_bits(odd.features) == [101]
    even = raw_invoice([P, S, D, ("9", minimal_u5(1 << 100))])
    with pytest.raises(InvoiceError, match="unknown feature bit 100"):
        decode(even)
    assert feature_bits(decode(even, known_features=None).features) == [100]
    assert feature_bits(decode(even, known_features=KNOWN_INVOICE_FEATURES | {100}).features) == [100]


def test_empty_features_field_round_trips() -> None:
    text = raw_invoice([P, S, D, ("9", [])])
    inv = decode(text)
    assert inv.features == 0 and inv.field_order[-1] == "9"
    assert encode(inv, KEY) == text
    assert to_decode_json(inv)["features"] == ""


def test_decode_accepts_lightning_prefix_and_upper_case() -> None:
    text = encode(make(), KEY)
    assert decode("lightning:" + text) == decode(text)
    assert decode("LIGHTNING:" + text.upper()) == decode(text)


def test_decode_currency_restriction() -> None:
    text = encode(make(currency="tb"), KEY)
    assert decode(text, currency="tb").currency == "tb"
    with pytest.raises(InvoiceError, match="currency 'tb', not 'bcrt'"):
        decode(text, currency="bcrt")


@pytest.mark.parametrize("bad,error", [
    (None, "must be a string"),
    (b"lnbc1", "must be a string"),
    ("", "bad bech32"),
    ("lnbc1qqqqqqqqq", "bad bech32"),
    ("lnbc1pvjluez" + "é", "bad bech32"),
])
def test_garbage_is_an_invoice_error(bad, error: str) -> None:
    with pytest.raises(InvoiceError, match=error):
        decode(bad)


def test_bech32m_checksum_is_refused() -> None:
    hrp, data, _ = bech32_decode(encode(make(), KEY), max_length=None)
    with pytest.raises(InvoiceError, match="bech32m"):
        decode(bech32_encode(hrp, data, Encoding.BECH32M))


def test_decode_without_verification_keeps_the_bogus_signature() -> None:
    hrp, data, _ = bech32_decode(encode(make(), KEY), max_length=None)
    bogus = bech32_encode(hrp, data[:-104] + [31] * 104)
    with pytest.raises(InvoiceError):
        decode(bogus)
    inv = decode(bogus, verify_signature=False)
    assert inv.payee is None and inv.signature == b"\xff" * 65


# --- encoding ------------------------------------------------------------------------------------


def test_encode_new_invoice_in_clns_field_order() -> None:
    inv = make(amount_msat=Msat(1000), payment_metadata=b"\x01", n_field=True, expiry=60,
               fallbacks=[Fallback(0, b"\x07" * 20)], features=(1 << 8) | (1 << 14),
               route_hints=[[RouteHop(NODE_ID, 1, 2, 3, 4)]])
    got = decode(encode(inv, KEY))
    assert got.field_order == ("s", "p", "d", "m", "n", "x", "c", "f", "r", "9")
    assert got.min_final_cltv_expiry == DEFAULT_MIN_FINAL_CLTV_EXPIRY
    # A default expiry is left out; `c` is always written for a new invoice, as CLN does.
    assert decode(encode(make(), KEY)).field_order == ("s", "p", "d", "c")


def test_encode_with_description_hash() -> None:
    desc = "One piece of chocolate cake"
    inv = decode(encode(make(description=None, description_hash=hashlib.sha256(desc.encode()).digest()), KEY))
    inv.check_description(desc)
    with pytest.raises(InvoiceError, match="does not match description"):
        inv.check_description(desc + "!")
    with pytest.raises(InvoiceError, match="no 'h' field"):
        make().check_description(desc)


@pytest.mark.parametrize("kw,error", [
    (dict(payment_secret=None), "payment_secret is required"),
    (dict(payment_hash=b"\x00" * 31), "payment_hash must be 32 bytes"),
    (dict(description=None), "exactly one of description and description_hash"),
    (dict(description_hash=b"\x00" * 32), "exactly one of description and description_hash"),
    (dict(description="é" * 320), "d: field too long"),
    (dict(payment_metadata=b"\x00" * 640), "m: field too long"),
    (dict(route_hints=[[RouteHop(NODE_ID, 1, 2, 3, 4)] * 13]), "r: field too long"),
    (dict(route_hints=[[]]), "non-empty list of RouteHop"),
    (dict(timestamp=1 << 35), "timestamp"),
    (dict(expiry=-1), "expiry"),
    (dict(min_final_cltv_expiry=1 << 32), "min_final_cltv_expiry"),
    (dict(features=-1), "features"),
    (dict(amount_msat=0), "must be positive"),
    (dict(currency="lq"), "unknown currency"),
    (dict(payee=OTHER_KEY.public_key.format()), "payee does not match the signing key"),
])
def test_encode_refuses_bad_invoices(kw, error: str) -> None:
    with pytest.raises(InvoiceError, match=error):
        encode(make(**kw), KEY)


def test_field_limits_at_the_edge() -> None:
    # BOLT #11: the maximum length of a Tagged Field's `data` is 1023 x 5 bits, or 639 bytes.
    assert decode(encode(make(description="a" * 639), KEY)).description == "a" * 639
    assert len(decode(encode(make(route_hints=[[RouteHop(NODE_ID, 1, 2, 3, 4)] * 12]), KEY)).route_hints[0]) == 12


def test_encode_rejects_bad_private_keys() -> None:
    for bad in (b"\x00" * 32, b"\x01" * 31, "e1" * 32, None):
        with pytest.raises(InvoiceError, match="private key"):
            encode(make(), bad)


def test_bad_field_values_are_refused_at_construction() -> None:
    with pytest.raises(InvoiceError):
        Fallback(0, b"\x00" * 21)
    with pytest.raises(InvoiceError):
        Fallback(19, b"\x00" * 20)
    with pytest.raises(InvoiceError):
        RouteHop(NODE_ID, 1 << 64, 0, 0, 0)
    with pytest.raises(InvoiceError):
        RouteHop(NODE_ID[:32], 1, 0, 0, 0)
    with pytest.raises(InvoiceError):
        UnknownField("b", ())
    with pytest.raises(InvoiceError):
        UnknownField("q", (32,))


def test_fallback_addresses_by_network() -> None:
    for currency, address in [("bc", "1RustyRX2oai4EYYDpQGWvEL62BBGqN9T"),
                              ("tb", "mk2QpYatsKicvFVuTAQLBryyccRXMUaGHP"),
                              ("bcrt", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"),
                              ("tbs", "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx")]:
        fb = Fallback.from_address(address, currency)
        assert fb.address(currency) == address
        inv = decode(encode(make(currency=currency, fallbacks=[fb]), KEY))
        assert inv.fallbacks == [fb]
    with pytest.raises(InvoiceError, match="fallback"):
        Fallback.from_address("1RustyRX2oai4EYYDpQGWvEL62BBGqN9T", "bcrt")


def test_scid_strings() -> None:
    assert scid_to_str(0x0102030405060708) == "66051x263430x1800"
    assert scid_from_str("589390x3312x1") == (589390 << 40) | (3312 << 16) | 1
    for bad in ("1x2", "1x2x3x4", "ax1x1", "16777216x0x0", "1x1x65536"):
        with pytest.raises(InvoiceError):
            scid_from_str(bad)


def test_feature_names_and_dependencies() -> None:
    inv = make(features=(1 << 8) | (1 << 15) | (1 << 17) | (1 << 99))
    assert inv.feature_names() == {8: "var_onion_optin/required", 15: "payment_secret/supported",
                                   17: "basic_mpp/supported", 99: "unknown_99"}
    assert inv.has_feature(14) and inv.has_feature(16) and not inv.has_feature(48)
    assert inv.missing_feature_dependencies() == []
    assert make(features=1 << 16).missing_feature_dependencies() == [(16, 14)]
    assert feature_names(0) == {}
    assert features_to_bytes((1 << 8) | (1 << 14)).hex() == "4100"


def test_expiry_helpers() -> None:
    inv = make(expiry=60)
    assert inv.expires_at == TS + 60
    assert not inv.is_expired(TS + 60) and inv.is_expired(TS + 61)
    assert make().expiry == DEFAULT_EXPIRY and make().network == "regtest"


# --- resign --------------------------------------------------------------------------------------


def test_resign_replaces_a_bogus_signature_with_the_node_key() -> None:
    hrp, data, _ = bech32_decode(encode(make(amount_msat=5000), OTHER_KEY), max_length=None)
    assert decode(bech32_encode(hrp, data)).payee == OTHER_KEY.public_key.format()
    signed = resign(bech32_encode(hrp, data[:-104] + [0] * 104), KEY)
    inv = decode(signed)
    assert inv.payee == NODE_ID and inv.amount_msat == 5000
    assert bech32_decode(signed, max_length=None)[1][:-104] == data[:-104]  # data part untouched
    # A validly signed invoice can be re-signed by another node too (signinvoice does this).
    assert decode(resign(signed, OTHER_KEY.secret)).payee == OTHER_KEY.public_key.format()


def test_sign_hrp_and_data_refuses_non_invoices() -> None:
    with pytest.raises(InvoiceError, match="does not start with 'ln'"):
        sign_hrp_and_data("bc", [0] * 7, KEY)
    with pytest.raises(InvoiceError, match="5-bit"):
        sign_hrp_and_data("lnbc", [32] * 7, KEY)


def test_resign_refuses_n_field_of_another_node_and_malformed_invoices() -> None:
    text = encode(make(n_field=True), KEY)
    with pytest.raises(InvoiceError, match="'n' field does not match"):
        resign(text, OTHER_KEY)
    assert resign(text, KEY) == text
    with pytest.raises(InvoiceError, match="missing required payment secret"):
        resign(raw_invoice([P, D]), KEY)


# --- CLN's decode JSON against CLN's schema ------------------------------------------------------

def validate_decode_result(result: dict) -> None:
    schema_validate("decode", result)


VECTORS = os.path.join(os.path.dirname(__file__), "..", "vectors", "bolt11")


def _vector_invoices() -> list[str]:
    with open(os.path.join(VECTORS, "valid.json"), encoding="utf-8") as f:
        out = [v["invoice"] for v in json.load(f)["valid"]]
    with open(os.path.join(VECTORS, "cln_examples.json"), encoding="utf-8") as f:
        out += [e["invoice"] for e in json.load(f)["invoices"]]
    return out


def test_decode_json_validates_against_clns_schema() -> None:
    shown = 0
    for text in _vector_invoices():
        result = to_decode_json(decode(text))
        validate_decode_result(result)
        shown += 1
    assert shown > 40
    # The validator does bite: a wrong type and an unknown key are refused.
    result = to_decode_json(decode(_vector_invoices()[5]))
    for broken in ({**result, "expiry": "3600"}, {**result, "surprise": 1},
                   {**result, "routes": [[{"pubkey": "02"}]]}):
        with pytest.raises(jsonschema.ValidationError):
            validate_decode_result(broken)


def test_decode_json_fields() -> None:
    inv = make(amount_msat=Msat(1), payment_metadata=b"\xfa", fallbacks=[Fallback(17, b"\x01" * 20)],
               route_hints=[[RouteHop(NODE_ID, 0x0102030405060708, 1, 2, 3)]], features=1 << 14, expiry=5)
    got = to_decode_json(decode(encode(inv, KEY)))
    assert list(got) == ["type", "currency", "created_at", "expiry", "payee", "amount_msat", "description",
                         "min_final_cltv_expiry", "payment_secret", "features", "payment_metadata",
                         "fallbacks", "routes", "payment_hash", "signature", "valid"]
    assert got["fallbacks"] == [{"type": "P2PKH", "addr": "mfcGAzvis9JQAb6avB6WBGiGrgWzLxuGaC",
                                 "hex": "76a914" + "01" * 20 + "88ac"}]
    assert got["routes"][0][0]["short_channel_id"] == "66051x263430x1800"
    assert (got["amount_msat"], got["features"], got["payment_metadata"]) == (1, "4000", "fa")
    # The signature is shown DER-encoded, as libsecp256k1 (through coincurve) serializes it.
    from coincurve.ecdsa import cdata_to_der, deserialize_recoverable, recoverable_convert
    sig65 = decode(encode(inv, KEY)).signature
    assert got["signature"] == cdata_to_der(recoverable_convert(deserialize_recoverable(sig65))).hex()
    with pytest.raises(InvoiceError):
        to_decode_json(make())  # unsigned


# --- property tests: round trip and independent decoding -----------------------------------------

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
pubkeys = st.integers(1, _N - 1).map(lambda k: coincurve.PrivateKey.from_int(k).public_key.format())
hops = st.builds(RouteHop, pubkeys, st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 32) - 1),
                 st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 16) - 1))
fallbacks = st.one_of(
    st.builds(Fallback, st.sampled_from([17, 18]), st.binary(min_size=20, max_size=20)),
    st.builds(Fallback, st.just(0), st.sampled_from([20, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))),
    st.builds(Fallback, st.just(1), st.binary(min_size=32, max_size=32)),
    st.builds(Fallback, st.integers(2, 16), st.binary(min_size=2, max_size=40)),
)
# Known features (one bit of a pair: BOLT 9 writers set the mandatory or the optional bit) and
# unknown optional (odd) bits.
feature_sets = st.tuples(
    st.dictionaries(st.sampled_from(sorted(KNOWN_INVOICE_FEATURES)), st.sampled_from([0, 1]), max_size=4),
    st.sets(st.integers(0, 127).map(lambda i: 2 * i + 1).filter(lambda b: b - 1 not in KNOWN_INVOICE_FEATURES),
            max_size=3),
).map(lambda t: sum(1 << (b + odd) for b, odd in t[0].items()) | sum(1 << b for b in t[1]))
unknown_tags = [c for c in "qpzry9x8gf2tvdw0s3jn54khce6mua7l" if c not in "psdmnhxcfr9"]
unknown_fields = st.builds(UnknownField, st.sampled_from(unknown_tags),
                           st.lists(st.integers(0, 31), max_size=20).map(tuple))


# The bolt11 package reads the route hint integers as signed (bitstring's `intbe`), so values with
# the top bit set come out negative there: keep them below that for the comparison.
package_hops = st.builds(RouteHop, pubkeys, st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 31) - 1),
                         st.integers(0, (1 << 31) - 1), st.integers(0, (1 << 15) - 1))


@st.composite
def invoices(draw, with_unknown: bool = True, hop_strategy=hops) -> Invoice:
    use_hash = draw(st.booleans())
    return Invoice(
        currency=draw(st.sampled_from(["bc", "tb", "tbs", "bcrt"])),
        timestamp=draw(st.integers(0, (1 << 35) - 1)),
        payment_hash=draw(st.binary(min_size=32, max_size=32)),
        payment_secret=draw(st.binary(min_size=32, max_size=32)),
        amount_msat=draw(st.none() | st.integers(1, (1 << 64) - 1).map(Msat)),
        description=None if use_hash else draw(st.text(max_size=100)),
        description_hash=draw(st.binary(min_size=32, max_size=32)) if use_hash else None,
        n_field=draw(st.booleans()),
        expiry=draw(st.integers(0, (1 << 64) - 1)),
        min_final_cltv_expiry=draw(st.integers(0, (1 << 32) - 1)),
        fallbacks=draw(st.lists(fallbacks, max_size=3)),
        # 1-4 hops: the bolt11 package drops the last hop of routes whose bit length is a multiple
        # of 5 * 408 (5, 10... hops), a bug of its own.
        route_hints=draw(st.lists(st.lists(hop_strategy, min_size=1, max_size=4), max_size=3)),
        features=draw(feature_sets),
        payment_metadata=draw(st.none() | st.binary(max_size=64)),
        unknown_fields=draw(st.lists(unknown_fields, max_size=3)) if with_unknown else [],
    )


def _expected_after_decode(inv: Invoice, payee: bytes) -> Invoice:
    inv.payee = payee
    return inv


def _strip(inv: Invoice) -> Invoice:
    inv.signature = None
    inv.field_order = None
    return inv


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invoices(), st.integers(1, _N - 1))
def test_round_trip_random_invoices(inv: Invoice, secret: int) -> None:
    key = coincurve.PrivateKey.from_int(secret)
    text = encode(inv, key)
    got = decode(text)
    assert encode(got, key) == text
    assert _strip(got) == _expected_after_decode(inv, key.public_key.format())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invoices(), st.randoms(use_true_random=False))
def test_any_field_order_is_kept(inv: Invoice, rnd: random.Random) -> None:
    first = decode(encode(inv, KEY))
    order = list(first.field_order)
    rnd.shuffle(order)
    first.field_order = tuple(order)
    second = decode(encode(first, KEY))
    assert second.field_order == tuple(order)
    assert _strip(second) == _strip(first)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invoices(hop_strategy=package_hops), st.integers(1, _N - 1))
def test_bolt11_package_decodes_random_invoices_identically(inv: Invoice, secret: int) -> None:
    assert_same_as_bolt11_package(encode(inv, coincurve.PrivateKey.from_int(secret)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invoices(with_unknown=True))
def test_random_decode_json_validates(inv: Invoice) -> None:
    # CLN omits fallbacks[].type for witness versions 2-16, which its own schema requires.
    inv.fallbacks = [fb for fb in inv.fallbacks if fb.type_name]
    validate_decode_result(to_decode_json(decode(encode(inv, KEY))))


@given(st.integers(1, _N - 1), st.integers(1, _N - 1), st.integers(0, 3))
def test_der_signature_matches_libsecp256k1(r: int, s: int, recid: int) -> None:
    from coincurve.ecdsa import cdata_to_der, deserialize_recoverable, recoverable_convert
    from ampere.ln.invoice_fields import compact_to_der
    sig64 = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    expected = cdata_to_der(recoverable_convert(deserialize_recoverable(sig64 + bytes([recid]))))
    assert compact_to_der(sig64) == expected
