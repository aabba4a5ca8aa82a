"""BOLT 12 offers, invoice requests and invoices: parsing with the readers' rules, and building.

Values are the codec's generated classes for the `offer`, `invoice_request` and `invoice` TLV
streams (bolt12_wire.csv); the raw TLV bytes travel with them because signatures, offer ids and
"copy all fields (including unknown fields)" are defined on the bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from coincurve import PrivateKey

from ampere.wire import decode_tlv_stream, encode_tlv_stream
from ampere.wire.errors import DecodeError

from .encoding import (
    HRP_INVOICE,
    HRP_INVOICE_REQUEST,
    HRP_OFFER,
    Bolt12Signer,
    Bolt12StringError,
    decode_bolt12_string,
    encode_bolt12_string,
    is_signature_type,
    sign_bolt12,
    tlv_records,
    verify_bolt12,
)

__all__ = [
    "Bolt12Error",
    "BITCOIN_CHAINS",
    "Parsed",
    "parse_offer",
    "parse_invoice_request",
    "parse_invoice",
    "decode_string",
    "offer_id",
    "invreq_id",
    "build_offer",
    "build_invoice_request",
    "build_invoice",
    "expected_amount",
    "DEFAULT_INVOICE_EXPIRY",
]

# BOLT #12: "if the expiry for accepting payment is not 7200 seconds after `invoice_created_at`"
DEFAULT_INVOICE_EXPIRY = 7200
# Genesis block hashes (chain_hash byte order as in BOLT #0 / offers-test.json).
BITCOIN_CHAINS = {
    "bitcoin": bytes.fromhex("6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000"),
    "testnet": bytes.fromhex("43497fd7f826957108f4a30fd9cec3aeba79972084e90ead01ea330900000000"),
    "regtest": bytes.fromhex("06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f"),
    "signet": bytes.fromhex("f61eee3b63a380a477a063af32b2bbc97c9ff9f01f2c4225e973988108000000"),
}

_OFFER_RANGES = ((1, 79), (1_000_000_000, 1_999_999_999))
_INVREQ_RANGES = ((0, 159), (1_000_000_000, 2_999_999_999))
_INVOICE_RANGES = ((0, 159), (160, 239), (1_000_000_000, 3_999_999_999))


class Bolt12Error(ValueError):
    """A BOLT 12 object the reader must reject (the message names the rule).  `warning` is CLN's `decode` name for
    the problem when CLN still shows such an object (with `valid: false`); `parsed` is then what was read."""

    def __init__(self, message: str, warning: str | None = None, parsed: "Parsed | None" = None) -> None:
        super().__init__(message)
        self.warning = warning
        self.parsed = parsed


@dataclass(frozen=True)
class Parsed:
    """A decoded BOLT 12 object: `tlv` is the codec value, `raw` the exact TLV bytes."""

    kind: str  # "offer", "invoice_request" or "invoice"
    tlv: Any
    raw: bytes

    def __getattr__(self, name: str) -> Any:  # parsed.offer_amount etc.
        return getattr(self.tlv, name)

    def string(self) -> str:
        hrp = {"offer": HRP_OFFER, "invoice_request": HRP_INVOICE_REQUEST, "invoice": HRP_INVOICE}[self.kind]
        return encode_bolt12_string(hrp, self.raw)


def _in_ranges(tlv_type: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= tlv_type <= hi for lo, hi in ranges)


def _decode(stream: str, raw: bytes) -> Any:
    try:
        return decode_tlv_stream(stream, raw)
    except (DecodeError, ValueError) as exc:
        raise Bolt12Error(f"{stream}: {exc}") from None


def _unknown_even_feature(features: bytes | None, known: frozenset[int] = frozenset()) -> int | None:
    """The lowest unknown even bit set, if any (odd ones are ignored: "MUST ignore the bit")."""
    as_int = int.from_bytes(features or b"", "big")
    bit = 0
    while as_int:
        if as_int & 1 and bit % 2 == 0 and bit not in known:
            return bit
        as_int >>= 1
        bit += 1
    return None


def _check_paths(paths: Any, what: str) -> None:
    if paths is None:
        return
    if len(paths) == 0:
        raise Bolt12Error(f"{what} is empty")
    for path in paths:
        # "if `num_hops` is 0 in any `blinded_path` in `offer_paths`: MUST NOT respond to the offer."
        if len(path.path) == 0:
            raise Bolt12Error(f"a blinded path in {what} has no hops")


def _check_offer_fields(tlv: Any) -> None:
    """BOLT #12 reader of an offer (the parts not about time or our chain)."""
    bit = _unknown_even_feature(tlv.offer_features)
    if bit is not None:
        raise Bolt12Error(f"offer_features has unknown even bit {bit}")
    if tlv.offer_chains is not None and len(tlv.offer_chains) == 0:
        raise Bolt12Error("offer_chains has no entries")
    if tlv.offer_amount is not None and tlv.offer_description is None:
        raise Bolt12Error("offer_amount without offer_description", "warning_missing_offer_description")
    if tlv.offer_amount is not None and tlv.offer_amount <= 0:
        raise Bolt12Error("offer_amount is not greater than zero")
    if tlv.offer_currency is not None and tlv.offer_amount is None:
        raise Bolt12Error("offer_currency without offer_amount")
    _check_paths(tlv.offer_paths, "offer_paths")


def parse_offer(raw: bytes) -> Parsed:
    """An offer's TLV bytes, checked as BOLT #12's "reader of an offer" (expiry and chain are the
    caller's: they depend on the clock and the node)."""
    raw = bytes(raw)
    if not raw:
        raise Bolt12Error("offer is empty")
    tlv = _decode("offer", raw)
    for tlv_type, _ in tlv_records(raw):
        # "if the offer contains any TLV fields outside the inclusive ranges: 1 to 79 and 1000000000
        # to 1999999999: MUST NOT respond to the offer."
        if not _in_ranges(tlv_type, _OFFER_RANGES):
            raise Bolt12Error(f"offer has TLV type {tlv_type} outside the offer ranges")
    _check_offer_fields(tlv)
    # "if neither `offer_issuer_id` nor `offer_paths` are set: MUST NOT respond to the offer."
    if tlv.offer_issuer_id is None and tlv.offer_paths is None:
        raise Bolt12Error("offer has neither offer_issuer_id nor offer_paths", "warning_missing_offer_issuer_id",
                          Parsed("offer", tlv, raw))
    return Parsed("offer", tlv, raw)


def _span_hash(raw: bytes, ranges: tuple[tuple[int, int], ...]) -> bytes:
    sha = hashlib.sha256()
    for lo, hi in ranges:
        sha.update(b"".join(rec for t, rec in tlv_records(raw) if lo <= t <= hi))
    return sha.digest()


def offer_id(raw: bytes) -> bytes:
    """CLN's offer_id: SHA256 of the records in the offer ranges (1-79, then 1000000000-1999999999),
    the same for an offer and for the invoice_request / invoice that copy it."""
    return _span_hash(raw, _OFFER_RANGES)


def invreq_id(raw: bytes) -> bytes:
    """CLN's invreq_id: SHA256 of the records in the invoice_request ranges (0-159, 1000000000-2999999999)."""
    return _span_hash(raw, _INVREQ_RANGES)


def parse_invoice_request(raw: bytes) -> Parsed:
    """BOLT #12 reader of an invoice_request: the checks that need no offer (fields present, ranges,
    features, signature, paths, bip_353 name)."""
    raw = bytes(raw)
    tlv = _decode("invoice_request", raw)
    # "MUST reject the invoice request if `invreq_payer_id` or `invreq_metadata` are not present."
    if tlv.invreq_payer_id is None or tlv.invreq_metadata is None:
        raise Bolt12Error("invoice_request lacks invreq_payer_id or invreq_metadata")
    for tlv_type, _ in tlv_records(raw):
        if not is_signature_type(tlv_type) and not _in_ranges(tlv_type, _INVREQ_RANGES):
            raise Bolt12Error(f"invoice_request has TLV type {tlv_type} outside its ranges")
    bit = _unknown_even_feature(tlv.invreq_features)
    if bit is not None:
        raise Bolt12Error(f"invreq_features has unknown even bit {bit}")
    if tlv.offer_issuer_id is not None or tlv.offer_paths is not None:
        _check_offer_fields(tlv)
    if tlv.signature is None:
        raise Bolt12Error("invoice_request has no signature", "warning_missing_invoice_request_signature",
                          Parsed("invoice_request", tlv, raw))
    if not verify_bolt12("invoice_request", raw, tlv.signature, tlv.invreq_payer_id):
        raise Bolt12Error("invoice_request signature is not valid for invreq_payer_id",
                          "warning_invalid_invoice_request_signature", Parsed("invoice_request", tlv, raw))
    _check_paths(tlv.invreq_paths, "invreq_paths")
    if tlv.invreq_bip_353_name is not None:
        allowed = set(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.")
        name = tlv.invreq_bip_353_name
        if not set(name.name) <= allowed or not set(name.domain) <= allowed:
            raise Bolt12Error("invreq_bip_353_name has characters outside [0-9a-zA-Z-_.]")
    return Parsed("invoice_request", tlv, raw)


def parse_invoice(raw: bytes) -> Parsed:
    """BOLT #12 reader of an invoice: required fields, features, paths and payinfo, signature.
    Expiry and matching the invoice_request we sent are the caller's."""
    raw = bytes(raw)
    tlv = _decode("invoice", raw)
    for name in ("invoice_amount", "invoice_created_at", "invoice_payment_hash", "invoice_node_id"):
        if getattr(tlv, name) is None:
            raise Bolt12Error(f"invoice lacks {name}")
    for tlv_type, _ in tlv_records(raw):
        if not is_signature_type(tlv_type) and not _in_ranges(tlv_type, _INVOICE_RANGES):
            raise Bolt12Error(f"invoice has TLV type {tlv_type} outside its ranges")
    bit = _unknown_even_feature(tlv.invoice_features)
    if bit is not None:
        raise Bolt12Error(f"invoice_features has unknown even bit {bit}")
    if not tlv.invoice_paths:
        raise Bolt12Error("invoice_paths is missing or empty")
    _check_paths(tlv.invoice_paths, "invoice_paths")
    if tlv.invoice_blindedpay is None or len(tlv.invoice_blindedpay) != len(tlv.invoice_paths):
        raise Bolt12Error("invoice_blindedpay does not have one payinfo per path")
    # "MUST NOT use the corresponding path if `payinfo`.`features` has any unknown even bits set.
    # MUST reject the invoice if this leaves no usable paths."
    if all(_unknown_even_feature(p.features) is not None for p in tlv.invoice_blindedpay):
        raise Bolt12Error("no invoice path is usable (unknown even payinfo features)")
    if tlv.signature is None:
        raise Bolt12Error("invoice has no signature", "warning_missing_invoice_signature", Parsed("invoice", tlv, raw))
    if not verify_bolt12("invoice", raw, tlv.signature, tlv.invoice_node_id):
        raise Bolt12Error("invoice signature is not valid for invoice_node_id", "warning_invalid_invoice_signature",
                          Parsed("invoice", tlv, raw))
    return Parsed("invoice", tlv, raw)


_PARSERS = {HRP_OFFER: parse_offer, HRP_INVOICE_REQUEST: parse_invoice_request, HRP_INVOICE: parse_invoice}


def decode_string(text: str) -> Parsed:
    """An `lno1`/`lnr1`/`lni1` string, parsed with its reader's rules."""
    try:
        hrp, raw = decode_bolt12_string(text)
    except Bolt12StringError as exc:
        raise Bolt12Error(str(exc)) from None
    parser = _PARSERS.get(hrp)
    if parser is None:
        raise Bolt12Error(f"unknown BOLT 12 prefix {hrp!r}")
    return parser(raw)


# --- building ----------------------------------------------------------------------------------


def _merge(base_records: list[tuple[int, bytes]], stream: str, fields: dict) -> bytes:
    """`base_records` plus the records encoding `fields` in `stream`, in type order."""
    added = tlv_records(encode_tlv_stream(stream, fields))
    types = {t for t, _ in added}
    records = [r for r in base_records if r[0] not in types] + added
    records.sort(key=lambda r: r[0])
    return b"".join(rec for _, rec in records)


def build_offer(**fields: Any) -> Parsed:
    """An offer from `offer` record values (codec names, e.g. offer_amount=1000, offer_description=...)."""
    return parse_offer(encode_tlv_stream("offer", fields))


def expected_amount(offer: Any, quantity: int | None) -> int | None:
    """BOLT #12 *expected amount* in msat (None when the offer has no amount).  Currency offers are
    refused by the callers: Ampere has no exchange rate source."""
    if offer.offer_amount is None:
        return None
    return offer.offer_amount * (quantity if quantity is not None else 1)


def build_invoice_request(
    offer: Parsed,
    payer_key: PrivateKey,
    metadata: bytes,
    *,
    amount_msat: int | None = None,
    quantity: int | None = None,
    payer_note: str | None = None,
    chain: bytes | None = None,
) -> Parsed:
    """BOLT #12 writer of an invoice_request responding to an offer: "MUST copy all fields from the
    offer (including unknown fields)", "MUST set `invreq_payer_id` to a transient public key",
    "MUST set `signature`.`sig` ... using the `invreq_payer_id`"."""
    fields: dict[str, Any] = {"invreq_metadata": metadata, "invreq_payer_id": payer_key.public_key.format()}
    if chain is not None:
        fields["invreq_chain"] = chain
    if amount_msat is not None:
        fields["invreq_amount"] = amount_msat
    if quantity is not None:
        fields["invreq_quantity"] = quantity
    if payer_note is not None:
        fields["invreq_payer_note"] = payer_note
    unsigned = _merge(tlv_records(offer.raw), "invoice_request", fields)
    signature = sign_bolt12("invoice_request", unsigned, payer_key)
    return parse_invoice_request(_merge(tlv_records(unsigned), "invoice_request", {"signature": signature}))


def build_invoice(
    invreq: Parsed,
    node_key: PrivateKey | Bolt12Signer,
    *,
    paths: list[Any],
    payinfos: list[Any],
    payment_hash: bytes,
    amount_msat: int,
    created_at: int,
    relative_expiry: int | None = None,
    features: bytes | None = None,
) -> Parsed:
    """BOLT #12 writer of an invoice responding to an invoice_request: "MUST copy all non-signature
    fields from the invoice request (including unknown fields)", sign with `invoice_node_id`."""
    base = [(t, rec) for t, rec in tlv_records(invreq.raw) if not is_signature_type(t)]
    fields: dict[str, Any] = {
        "invoice_paths": tuple(paths),
        "invoice_blindedpay": tuple(payinfos),
        "invoice_created_at": created_at,
        "invoice_payment_hash": payment_hash,
        "invoice_amount": amount_msat,
        "invoice_node_id": node_key.public_key.format() if isinstance(node_key, PrivateKey) else node_key.node_id,
    }
    if relative_expiry is not None and relative_expiry != DEFAULT_INVOICE_EXPIRY:
        fields["invoice_relative_expiry"] = relative_expiry
    if features:
        fields["invoice_features"] = features
    unsigned = _merge(base, "invoice", fields)
    signature = sign_bolt12("invoice", unsigned, node_key)
    return parse_invoice(_merge(tlv_records(unsigned), "invoice", {"signature": signature}))
