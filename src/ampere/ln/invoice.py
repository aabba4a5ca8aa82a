"""BOLT 11 invoices: decode, encode and sign, re-sign, and CLN's `decode` JSON.

    decode(text) -> Invoice             parse, check every reader rule and the signature
    encode(inv, privkey) -> str         serialize and sign
    resign(text, privkey) -> str        sign an existing invoice string again (createinvoice/signinvoice)
    sign_hrp_and_data(hrp, data5, key)  sign raw 5-bit data and wrap it in bech32
    to_decode_json(inv) -> dict         the result of CLN's `decode` RPC for a bolt11 string

Amounts are exact integers throughout: the human-readable part is read as pico-bitcoin and must be a
whole number of millisatoshi.

On fields of the wrong length.  The current BOLT 11 text says a reader "MUST fail the payment if any
field with fixed `data_length` (`p`, `h`, `s`, `n`) does not have the correct length (52, 52, 52,
53)", yet keeps the example "Same, but including fields which must be ignored" among the *valid*
invoices, and that example carries `p`, `h`, `s` and `n` fields of lengths 51/53/52/54.  Core
Lightning resolves this by skipping such fields (they appear under `extra`) and failing only when no
valid `p` or `s` remains; we do the same, so the spec's examples all pass and we agree with CLN.
Repeats of single-valued fields are skipped likewise (BOLT #11: "SHOULD use the first `p` field").
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence, Union

import coincurve

from ampere.ln.invoice_fields import (
    CHARSET_REV,
    CURRENCY_NETWORK,
    KNOWN_INVOICE_FEATURES,
    MAX_FIELD_U5,
    NETWORK_CURRENCY,
    ROUTE_HOP_LEN,
    TAG_9,
    TAG_C,
    TAG_D,
    TAG_F,
    TAG_H,
    TAG_M,
    TAG_N,
    TAG_P,
    TAG_R,
    TAG_S,
    TAG_X,
    Fallback,
    InvoiceError,
    RouteHop,
    UnknownField,
    bytes_to_u5,
    compact_to_der,
    feature_names,
    features_to_bytes,
    features_u5_len,
    int_to_u5,
    minimal_u5,
    missing_feature_dependencies,
    u5_to_bytes,
    u5_to_int,
    unknown_even_bits,
)
from ampere.primitives.amount import Msat
from ampere.primitives.bech32 import CHARSET, Bech32Error, Encoding, bech32_decode, bech32_encode
from ampere.primitives.crypto import SECP256K1_ORDER

__all__ = [
    "Invoice",
    "InvoiceError",
    "Fallback",
    "RouteHop",
    "UnknownField",
    "decode",
    "encode",
    "resign",
    "sign_hrp_and_data",
    "to_decode_json",
    "encode_hrp",
    "parse_hrp",
    "currency_for_network",
    "DEFAULT_EXPIRY",
    "DEFAULT_MIN_FINAL_CLTV_EXPIRY",
    "KNOWN_INVOICE_FEATURES",
]

# BOLT #11: `x` ... Default is 3600 (1 hour) if not specified.
DEFAULT_EXPIRY = 3600
# BOLT #11: if the `c` field (`min_final_cltv_expiry_delta`) is not provided:
#   MUST use an expiry delta of at least 18 when making the payment
DEFAULT_MIN_FINAL_CLTV_EXPIRY = 18

# BOLT #11: `signature`: compact ECDSA/secp256k1 signature of the above
#   (520 bits: 64-byte R||S + 1-byte recovery id)
SIG_U5 = 104
TIMESTAMP_U5 = 7  # 35 bits

_U64_LIMIT = 1 << 64
# The longest invoice we read or write, in characters: a QR code's alphanumeric capacity (version 40, level L),
# the same limit lnd applies. A valid invoice is a few hundred characters; this still holds dozens of route hints.
# Checked before any decoding, so a megabyte string costs nothing.
MAX_INVOICE_LENGTH = 7089
# The longest amount a u64 msat can be written with: 2^64 msat is 1.8e22 pico-bitcoin, 23 digits.
_MAX_AMOUNT_DIGITS = 23

# pico-bitcoin per unit of the amount, by multiplier letter ("" = whole bitcoin).
# BOLT #11: `m` (milli): multiply by 0.001  `u` (micro): multiply by 0.000001
#   `n` (nano): multiply by 0.000000001  `p` (pico): multiply by 0.000000000001
_PICO_PER_UNIT = {"": 10**12, "m": 10**9, "u": 10**6, "n": 10**3, "p": 1}
_PICO_PER_MSAT = 10
_AMOUNT_RE = re.compile(r"([0-9]+)([a-z]?)")

# The order CLN writes fields in; unknown fields go last.
_CANONICAL_SINGLE_ORDER = ("s", "p", "h", "d", "m", "n", "x", "c")
UNKNOWN_MARK = "~"  # in Invoice.field_order: "the next of unknown_fields"


@dataclass
class Invoice:
    """A BOLT 11 invoice.  `payee` is the node id (from `n` or recovered from the signature).

    `n_field` says whether the payee's key is written as an `n` field.  `field_order` is the tag
    order of a decoded invoice ("~" stands for the next of `unknown_fields`), so that encoding a
    decoded invoice with the same key reproduces the original string; None means CLN's order.
    """

    currency: str
    timestamp: int
    payment_hash: bytes
    payment_secret: bytes | None = None
    amount_msat: Msat | None = None
    description: str | None = None
    description_hash: bytes | None = None
    payee: bytes | None = None
    n_field: bool = False
    expiry: int = DEFAULT_EXPIRY
    min_final_cltv_expiry: int = DEFAULT_MIN_FINAL_CLTV_EXPIRY
    fallbacks: list[Fallback] = field(default_factory=list)
    route_hints: list[list[RouteHop]] = field(default_factory=list)
    features: int = 0
    payment_metadata: bytes | None = None
    unknown_fields: list[UnknownField] = field(default_factory=list)
    signature: bytes | None = None
    field_order: tuple[str, ...] | None = None

    @property
    def network(self) -> str:
        return CURRENCY_NETWORK[self.currency]

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry

    def is_expired(self, now: int) -> bool:
        # BOLT #11: A payer: after the `timestamp` plus `expiry` has passed: SHOULD NOT attempt a payment.
        return now > self.expires_at

    def feature_names(self) -> dict[int, str]:
        return feature_names(self.features)

    def has_feature(self, even_bit: int) -> bool:
        """Whether the feature (given by its even bit) is set, compulsory or optional."""
        return bool((self.features >> (even_bit & ~1)) & 3)

    def missing_feature_dependencies(self) -> list[tuple[int, int]]:
        return missing_feature_dependencies(self.features)

    def check_description(self, description: str) -> None:
        """BOLT #11: MUST check that the SHA2 256-bit hash in the `h` field exactly matches the
        hashed description."""
        if self.description_hash is None:
            raise InvoiceError("invoice has no 'h' field to check a description against")
        if hashlib.sha256(description.encode("utf-8")).digest() != self.description_hash:
            raise InvoiceError("h: does not match description")


def currency_for_network(network: str) -> str:
    """The BOLT 11 currency ("bc", "tb", "tbs", "bcrt") for a network name ("regtest", ...)."""
    try:
        return NETWORK_CURRENCY[network]
    except KeyError:
        raise InvoiceError(f"no invoice currency for network {network!r}") from None


# --- human-readable part -------------------------------------------------------------------------


def parse_hrp(hrp: str) -> tuple[str, Msat | None]:
    """(currency, amount) from the human-readable part, e.g. "lnbc2500u" -> ("bc", 250000000)."""
    # BOLT #11: A reader: if it does NOT understand the `prefix`: MUST fail the payment.
    if not hrp.startswith("ln"):
        raise InvoiceError(f"prefix '{hrp}' does not start with 'ln'")
    i = 2
    while i < len(hrp) and not hrp[i].isdigit():
        i += 1
    currency, amount_str = hrp[2:i], hrp[i:]
    if currency not in CURRENCY_NETWORK:
        raise InvoiceError(f"unknown currency prefix 'ln{currency}'")
    # BOLT #11: if the `amount` is empty: SHOULD indicate to the payer that amount is unspecified.
    if not amount_str:
        return currency, None
    # BOLT #11: if `amount` contains a non-digit OR is followed by anything except a `multiplier`
    #   (see table above): MUST fail the payment.
    m = _AMOUNT_RE.fullmatch(amount_str)
    if not m:
        raise InvoiceError(f"invalid amount '{amount_str}'")
    digits, letter = m.groups()
    # Before int(): a 4,301-digit amount would hit Python's int-digit limit (a bare ValueError).
    if len(digits.lstrip("0")) > _MAX_AMOUNT_DIGITS:
        raise InvoiceError(f"amount of {len(digits)} digits is out of range")
    if letter not in _PICO_PER_UNIT:
        raise InvoiceError(f"invalid amount multiplier '{letter}' in '{amount_str}'")
    # BOLT #11 (writer): MUST encode `amount` as a positive decimal integer with no leading 0s.
    # A zero amount cannot be paid and a leading zero is not how any writer spells a number, so we
    # refuse both rather than guess.
    if int(digits) == 0:
        raise InvoiceError(f"amount '{amount_str}' is zero")
    if digits[0] == "0":
        raise InvoiceError(f"amount '{amount_str}' has a leading zero")
    pico = int(digits) * _PICO_PER_UNIT[letter]
    # BOLT #11: if multiplier is `p` and the last decimal of `amount` is not 0: MUST fail the payment.
    if pico % _PICO_PER_MSAT:
        raise InvoiceError(f"invalid sub-millisatoshi amount '{amount_str}'")
    msat = pico // _PICO_PER_MSAT
    if msat >= _U64_LIMIT:
        raise InvoiceError(f"amount '{amount_str}' is out of range")
    return currency, Msat(msat)


def encode_hrp(currency: str, amount_msat: int | None) -> str:
    """The human-readable part, the amount in its shortest exact form.

    BOLT #11: SHOULD use the shortest representation possible, by using the largest multiplier or
    omitting the multiplier.  If the `p` multiplier is used the last decimal of `amount` MUST be `0`.
    """
    if currency not in CURRENCY_NETWORK:
        raise InvoiceError(f"unknown currency {currency!r}")
    if amount_msat is None:
        return "ln" + currency
    if isinstance(amount_msat, bool) or not isinstance(amount_msat, int):
        raise InvoiceError(f"amount_msat must be an integer, not {type(amount_msat).__name__}")
    if not 0 < amount_msat < _U64_LIMIT:
        raise InvoiceError(f"amount_msat {int(amount_msat)} must be positive and below 2^64")
    pico = int(amount_msat) * _PICO_PER_MSAT
    for letter, per_unit in _PICO_PER_UNIT.items():  # largest unit first
        if pico % per_unit == 0:
            return f"ln{currency}{pico // per_unit}{letter}"
    raise AssertionError("unreachable: every msat amount is a whole number of pico-bitcoin")


# --- decoding ------------------------------------------------------------------------------------


def _split_bech32(text: object) -> tuple[str, list[int]]:
    if not isinstance(text, str):
        raise InvoiceError(f"invoice must be a string, not {type(text).__name__}")
    # BOLT #11: the current recommendation is to either use 'lightning:' as a prefix before the
    # BOLT-11 encoding ...  (CLN's decode accepts it, so do we.)
    if text[:10] in ("lightning:", "LIGHTNING:"):
        text = text[10:]
    if len(text) > MAX_INVOICE_LENGTH:
        raise InvoiceError(f"invoice too long: {len(text)} characters, at most {MAX_INVOICE_LENGTH}")
    # BOLT #11: A reader: MUST parse the address as Bech32, as specified in BIP-0173 (also without
    # the character limit).  if the checksum is incorrect: MUST fail the payment.
    try:
        hrp, data, encoding = bech32_decode(text, max_length=None)
    except Bech32Error as e:
        raise InvoiceError(f"bad bech32 string: {e}") from None
    if encoding is not Encoding.BECH32:
        raise InvoiceError("bad bech32 string: bech32m checksum (invoices use bech32)")
    return hrp, data


def _signing_bytes(hrp: str, data: Sequence[int]) -> bytes:
    """BOLT #11: the human-readable part (as UTF-8 bytes) concatenated with the data part
    (excluding the signature), with 0 bits appended to pad to a byte boundary."""
    nbits = len(data) * 5
    pad = -nbits % 8
    return hrp.encode("utf-8") + (u5_to_int(data) << pad).to_bytes((nbits + pad) // 8, "big")


def _signing_hash(hrp: str, data: Sequence[int]) -> bytes:
    return hashlib.sha256(_signing_bytes(hrp, data)).digest()


def invoice_signing_hash(hrp: str, data: Sequence[int]) -> bytes:
    """What BOLT #11's signature signs: SHA256(hrp || data part packed into bytes, zero-padded)."""
    parse_hrp(hrp)  # a signer only ever signs something that reads as an invoice's human-readable part
    if any(not 0 <= v < 32 for v in data):
        raise InvoiceError("data part must be 5-bit values")
    return _signing_hash(hrp, data)


def _parse_pubkey(tag: str, b: bytes) -> coincurve.PublicKey:
    try:
        return coincurve.PublicKey(b)
    except ValueError:
        raise InvoiceError(f"{tag}: invalid public key {b.hex()}") from None


def _parse_uint(tag: str, fd: list[int], max_bits: int) -> int:
    # BOLT #11: if a `c`, `x`, or `9` field is provided which has a non-minimal `data_length`
    #   (i.e. begins with 0 field elements): SHOULD treat the invoice as invalid.
    if len(fd) > 1 and fd[0] == 0:
        raise InvoiceError(f"{tag}: not a minimal value (begins with a 0 field element)")
    value = u5_to_int(fd)
    if value >> max_bits:
        raise InvoiceError(f"{tag}: {value} is too large")
    return value


def _parse_fallback(fd: list[int]) -> Fallback | None:
    """None for an unknown version, which the caller keeps as an unknown field."""
    if not fd:
        raise InvoiceError("f: empty field")
    version = fd[0]
    if version > 18:
        # BOLT #11: MUST skip over `f` fields that use an unknown `version`.
        return None
    return Fallback(version, u5_to_bytes("f", fd[1:]))


def _parse_route(fd: list[int]) -> list[RouteHop]:
    # BOLT #11: `r` ... One or more entries containing extra routing information for a private route
    raw = u5_to_bytes("r", fd)
    if not raw or len(raw) % ROUTE_HOP_LEN:
        raise InvoiceError(f"r: hop {len(raw) // ROUTE_HOP_LEN} truncated "
                           f"({len(raw)} bytes is not a whole number of {ROUTE_HOP_LEN}-byte hops)")
    hops = []
    for i in range(0, len(raw), ROUTE_HOP_LEN):
        hop = RouteHop.from_bytes(raw[i:i + ROUTE_HOP_LEN])
        try:
            coincurve.PublicKey(hop.pubkey)
        except ValueError:
            raise InvoiceError(f"r: hop {i // ROUTE_HOP_LEN} pubkey invalid") from None
        hops.append(hop)
    return hops


def _parse_features(fd: list[int], known: frozenset[int] | None) -> int:
    if fd and fd[0] == 0:
        # BOLT #11 (see _parse_uint): non-minimal `9` is invalid.
        raise InvoiceError("9: non-minimal length (begins with a 0 field element)")
    features = u5_to_int(fd)
    if known is not None:
        bad = unknown_even_bits(features, known)
        if bad:
            # BOLT #11: if the `9` field contains unknown _even_ bits that are non-zero: MUST fail
            #   the payment.  SHOULD indicate the unknown bit to the user.
            raise InvoiceError(f"9: unknown feature bit {bad[0]}")
    return features


def _parse(text: object, verify_signature: bool, known_features: Iterable[int] | None,
           currency: str | None) -> tuple[Invoice, str, list[int]]:
    """Decode `text`; returns (invoice, hrp, data part without the signature)."""
    hrp, data = _split_bech32(text)
    cur, amount = parse_hrp(hrp)
    if currency is not None and cur != currency:
        raise InvoiceError(f"invoice is for currency '{cur}', not '{currency}'")
    if len(data) < TIMESTAMP_U5 + SIG_U5:
        raise InvoiceError("too short: the data part cannot hold a timestamp and a signature")
    known = None if known_features is None else frozenset(known_features)

    sig_start = len(data) - SIG_U5
    # BOLT #11: `timestamp`: seconds-since-1970 (35 bits, big-endian)
    inv = Invoice(currency=cur, timestamp=u5_to_int(data[:TIMESTAMP_U5]), payment_hash=b"",
                  amount_msat=amount)
    order: list[str] = []
    seen: set[int] = set()
    n_key: coincurve.PublicKey | None = None
    pos = TIMESTAMP_U5
    while pos < sig_start:
        # BOLT #11: Each Tagged Field is of the form: 1. `type` (5 bits) 2. `data_length` (10 bits,
        #   big-endian) 3. `data` (`data_length` x 5 bits)
        if pos + 3 > sig_start:
            raise InvoiceError("truncated tagged field (no room for type and length)")
        t = data[pos]
        length = data[pos + 1] << 5 | data[pos + 2]
        pos += 3
        if pos + length > sig_start:
            raise InvoiceError(f"{CHARSET[t]}: truncated (data_length {length} runs into the signature)")
        fd = data[pos:pos + length]
        pos += length

        known_field = True
        if t in seen and t not in (TAG_F, TAG_R):
            # Only `f` and `r` may repeat: BOLT #11 "MAY include one or more `f` fields", "there may
            # be more than one `r` field".  Later copies of the others are skipped.
            known_field = False
        elif t == TAG_P:
            # BOLT #11: `p` (1): `data_length` 52. 256-bit SHA256 payment_hash.
            if length == 52:
                inv.payment_hash = u5_to_bytes("p", fd)
            else:
                known_field = False
        elif t == TAG_S:
            # BOLT #11: `s` (16): `data_length` 52. This 256-bit secret prevents forwarding nodes
            #   from probing the payment recipient.
            if length == 52:
                inv.payment_secret = u5_to_bytes("s", fd)
            else:
                known_field = False
        elif t == TAG_D:
            # BOLT #11: `d` (13): `data_length` variable. Short description of purpose of payment (UTF-8)
            try:
                inv.description = u5_to_bytes("d", fd).decode("utf-8")
            except UnicodeDecodeError:
                raise InvoiceError("d: invalid utf8") from None
        elif t == TAG_H:
            # BOLT #11: `h` (23): `data_length` 52. 256-bit description of purpose of payment (SHA256).
            if length == 52:
                inv.description_hash = u5_to_bytes("h", fd)
            else:
                known_field = False
        elif t == TAG_N:
            # BOLT #11: `n` (19): `data_length` 53. 33-byte public key of the payee node
            if length == 53:
                inv.payee = u5_to_bytes("n", fd)
                n_key = _parse_pubkey("n", inv.payee)
                inv.n_field = True
            else:
                known_field = False
        elif t == TAG_X:
            # BOLT #11: `x` (6): `data_length` variable. `expiry` time in seconds (big-endian).
            inv.expiry = _parse_uint("x", fd, 64)
        elif t == TAG_C:
            # BOLT #11: `c` (24): `data_length` variable. `min_final_cltv_expiry_delta` to use for
            #   the last HTLC in the route.
            inv.min_final_cltv_expiry = _parse_uint("c", fd, 32)
        elif t == TAG_M:
            # BOLT #11: `m` (27): `data_length` variable. Additional metadata to attach to the payment.
            # BOLT #11: if an `m` field is provided: MUST use that as `payment_metadata`
            inv.payment_metadata = u5_to_bytes("m", fd)
        elif t == TAG_9:
            inv.features = _parse_features(fd, known)
        elif t == TAG_F:
            fb = _parse_fallback(fd)
            if fb is None:
                known_field = False
            else:
                inv.fallbacks.append(fb)
        elif t == TAG_R:
            inv.route_hints.append(_parse_route(fd))
        else:
            known_field = False

        if known_field:
            seen.add(t)
            order.append(CHARSET[t])
        else:
            inv.unknown_fields.append(UnknownField(CHARSET[t], tuple(fd)))
            order.append(UNKNOWN_MARK)

    if TAG_P not in seen:
        raise InvoiceError("no valid 'p' field (payment_hash) found")
    # BOLT #11: if a valid `s` field is not provided: MUST fail the payment.
    if TAG_S not in seen:
        raise InvoiceError("missing required payment secret (s field)")
    # BOLT #11: MUST fail the payment if neither a `d` field nor a `h` field is present, or if both
    #   are present.
    if TAG_D not in seen and TAG_H not in seen:
        raise InvoiceError("must have either 'd' or 'h' field")
    if TAG_D in seen and TAG_H in seen:
        raise InvoiceError("must not have both 'd' and 'h' fields")
    inv.field_order = tuple(order)

    inv.signature = u5_to_bytes("signature", data[sig_start:])
    unsigned = data[:sig_start]
    if verify_signature:
        _check_signature(inv, hrp, unsigned, n_key)
    return inv, hrp, unsigned


def _check_signature(inv: Invoice, hrp: str, unsigned: list[int],
                     n_key: coincurve.PublicKey | None) -> None:
    # BOLT #11: A reader: MUST check that the `signature` is valid (see the `n` tagged field).
    sig = inv.signature
    assert sig is not None
    if sig[64] > 3:
        raise InvoiceError(f"invalid recovery ID: {sig[64]}")
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    if not (0 < r < SECP256K1_ORDER and 0 < s < SECP256K1_ORDER):
        raise InvoiceError("signature invalid: r or s out of range")
    msg_hash = _signing_hash(hrp, unsigned)
    if n_key is not None:
        # BOLT #11: if a valid `n` field is provided: MUST use the `n` field to validate the
        #   signature instead of performing public-key recovery.  If the signature is not compliant
        #   with the low-S standard rule: MUST fail the payment
        if int.from_bytes(sig[32:64], "big") > SECP256K1_ORDER // 2:
            raise InvoiceError("signature is not low-S, as it must be when an 'n' field is given")
        if not n_key.verify(compact_to_der(sig[:64]), msg_hash, hasher=None):
            raise InvoiceError("invalid signature: does not match the 'n' field")
    else:
        # BOLT #11: otherwise: MUST perform ECDSA public-key recovery and accept both high-S and
        #   low-S signatures.
        try:
            key = coincurve.PublicKey.from_signature_and_message(sig, msg_hash, hasher=None)
        except Exception:  # coincurve raises plain Exception when no key recovers
            raise InvoiceError("signature recovery failed: signature is not recoverable") from None
        inv.payee = key.format(compressed=True)


def decode(text: str, *, verify_signature: bool = True,
           known_features: Iterable[int] | None = KNOWN_INVOICE_FEATURES,
           currency: str | None = None) -> Invoice:
    """Decode and check a BOLT 11 string (optionally prefixed "lightning:"); raises InvoiceError.

    `known_features`: even bits of the features we understand; an unknown even bit fails the
    invoice (None accepts any bits).  `currency`: if given, the invoice must be for it.
    With verify_signature=False the signature is parsed but not checked, and `payee` is only set
    from an `n` field.
    """
    inv, _hrp, _unsigned = _parse(text, verify_signature, known_features, currency)
    return inv


# --- encoding ------------------------------------------------------------------------------------


class InvoiceSigner(Protocol):
    """The payee's node key as invoices use it, without its secret (the node's Signer is one).
    `sign_invoice(hrp, data)`: BOLT #11's 65-byte signature (R || S || recovery id) over SHA256(hrp as
    UTF-8 || the 5-bit data part packed into bytes, zero-padded); `data` is the 5-bit values, one a byte."""

    node_id: bytes

    def sign_invoice(self, hrp: str, data: bytes) -> bytes: ...


SigningKey = Union[bytes, coincurve.PrivateKey, InvoiceSigner]


def _node_id(key: coincurve.PrivateKey | InvoiceSigner) -> bytes:
    return key.public_key.format(compressed=True) if isinstance(key, coincurve.PrivateKey) else bytes(key.node_id)


def _private_key(privkey: SigningKey) -> coincurve.PrivateKey | InvoiceSigner:
    if isinstance(privkey, (bytes, bytearray)):
        if len(privkey) == 32:
            try:
                return coincurve.PrivateKey(bytes(privkey))
            except ValueError:
                pass
    elif isinstance(privkey, coincurve.PrivateKey) or hasattr(privkey, "sign_invoice"):
        return privkey
    raise InvoiceError("private key must be 32 valid secret bytes, a coincurve.PrivateKey or an InvoiceSigner")


def sign_hrp_and_data(hrp: str, data: Sequence[int], privkey: SigningKey) -> str:
    """Sign the human-readable part and unsigned 5-bit data part; return the bech32 invoice.

    BOLT #11: MUST set `signature` to a valid compact ECDSA signature over secp256k1 of the SHA-256
    hash of: the human-readable part (as UTF-8 bytes) concatenated with the data part (excluding the
    signature), with 0 bits appended to pad to a byte boundary.  The signature is encoded as 64
    bytes (R || S), followed by a trailing 1-byte recovery id in {0,1,2,3}.
    """
    key = _private_key(privkey)
    parse_hrp(hrp)  # only ever sign something that reads as an invoice's human-readable part
    if any(not 0 <= v < 32 for v in data):
        raise InvoiceError("data part must be 5-bit values")
    length = len(hrp) + 1 + len(data) + SIG_U5 + 6
    if length > MAX_INVOICE_LENGTH:
        # Never write an invoice that we (or lnd) would refuse to read.
        raise InvoiceError(f"invoice too long: {length} characters, at most {MAX_INVOICE_LENGTH}")
    if isinstance(key, coincurve.PrivateKey):
        sig = key.sign_recoverable(_signing_hash(hrp, data), hasher=None)  # RFC6979, low-S
    else:
        sig = key.sign_invoice(hrp, bytes(data))
        if len(sig) != 65:
            raise InvoiceError("the signer returned a malformed invoice signature")
    return bech32_encode(hrp, list(data) + bytes_to_u5(sig))


def _check_bytes(name: str, value: object, size: int) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != size:
        raise InvoiceError(f"{name} must be {size} bytes")
    return bytes(value)


def _check_uint(name: str, value: object, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise InvoiceError(f"{name} {value!r} is not an integer in [0, 2^{bits})")
    return value


def _encode_fields(inv: Invoice, payee: bytes | None) -> list[int]:
    """The data part without its signature: timestamp then tagged fields."""
    singles: dict[str, list[int]] = {}
    # BOLT #11: A writer: MUST include exactly one `p` field.  MUST include exactly one `s` field.
    singles["p"] = bytes_to_u5(_check_bytes("payment_hash", inv.payment_hash, 32))
    if inv.payment_secret is None:
        raise InvoiceError("payment_secret is required (BOLT 11: MUST include exactly one `s` field)")
    singles["s"] = bytes_to_u5(_check_bytes("payment_secret", inv.payment_secret, 32))
    # BOLT #11: MUST include either exactly one `d` or exactly one `h` field.
    if (inv.description is None) == (inv.description_hash is None):
        raise InvoiceError("set exactly one of description and description_hash")
    if inv.description is not None:
        if not isinstance(inv.description, str):
            raise InvoiceError("description must be a string")
        singles["d"] = bytes_to_u5(inv.description.encode("utf-8"))
    else:
        singles["h"] = bytes_to_u5(_check_bytes("description_hash", inv.description_hash, 32))
    if inv.payment_metadata is not None:
        if not isinstance(inv.payment_metadata, (bytes, bytearray)):
            raise InvoiceError("payment_metadata must be bytes")
        singles["m"] = bytes_to_u5(bytes(inv.payment_metadata))
    if payee is not None:
        # BOLT #11: MAY include one `n` field.  MUST set `n` to the public key used to create the
        #   `signature`.
        singles["n"] = bytes_to_u5(payee)

    listed = set(inv.field_order or ())
    # BOLT #11: if `x` is included: MUST use the minimum `data_length` possible.
    _check_uint("expiry", inv.expiry, 64)
    if inv.expiry != DEFAULT_EXPIRY or "x" in listed:
        singles["x"] = minimal_u5(inv.expiry)
    # BOLT #11: SHOULD include one `c` field (`min_final_cltv_expiry_delta`).  MUST use the minimum
    #   `data_length` possible.  (New invoices always carry `c`, as CLN's do; a decoded invoice
    #   keeps it only if it had it or its value is no longer the default.)
    _check_uint("min_final_cltv_expiry", inv.min_final_cltv_expiry, 32)
    if (inv.field_order is None or "c" in listed
            or inv.min_final_cltv_expiry != DEFAULT_MIN_FINAL_CLTV_EXPIRY):
        singles["c"] = minimal_u5(inv.min_final_cltv_expiry)
    # BOLT #11: if `9` contains non-zero bits: MUST use the minimum `data_length` possible to encode
    #   the non-zero bits with no 0 field-elements at the start.  otherwise: MUST omit the `9` field.
    features = inv.features
    if isinstance(features, bool) or not isinstance(features, int) or features < 0:
        raise InvoiceError(f"features {features!r} must be a non-negative integer bitfield")
    if features or "9" in listed:  # an empty `9` only to reproduce a decoded invoice exactly
        singles["9"] = int_to_u5(features, features_u5_len(features))

    for fb in inv.fallbacks:
        if not isinstance(fb, Fallback):
            raise InvoiceError("fallbacks must be Fallback objects")
    for route in inv.route_hints:
        if not route or not all(isinstance(h, RouteHop) for h in route):
            raise InvoiceError("each route hint must be a non-empty list of RouteHop")

    out = int_to_u5(_check_uint("timestamp", inv.timestamp, 35), TIMESTAMP_U5)

    def push(tag: str, values: Sequence[int]) -> None:
        if len(values) > MAX_FIELD_U5:
            raise InvoiceError(f"{tag}: field too long ({len(values)} 5-bit groups, at most {MAX_FIELD_U5})")
        out.extend((CHARSET_REV[tag], len(values) >> 5, len(values) & 31))
        out.extend(values)

    fallbacks = deque(inv.fallbacks)
    routes = deque(inv.route_hints)
    unknown = deque(inv.unknown_fields)
    for tag in inv.field_order or ():
        if tag in singles:
            push(tag, singles.pop(tag))
        elif tag == "f" and fallbacks:
            push("f", fallbacks.popleft().to_u5())
        elif tag == "r" and routes:
            push("r", bytes_to_u5(b"".join(h.to_bytes() for h in routes.popleft())))
        elif tag == UNKNOWN_MARK and unknown:
            u = unknown.popleft()
            push(u.tag, u.data)
    # BOLT #11: if a writer offers more than one of any field type, it: MUST specify the
    #   most-preferred field first, followed by less-preferred fields, in order.
    for tag in _CANONICAL_SINGLE_ORDER:
        if tag in singles:
            push(tag, singles.pop(tag))
    for fb in fallbacks:
        push("f", fb.to_u5())
    for route in routes:
        push("r", bytes_to_u5(b"".join(h.to_bytes() for h in route)))
    if "9" in singles:
        push("9", singles.pop("9"))
    for u in unknown:
        push(u.tag, u.data)
    return out


def encode(inv: Invoice, privkey: SigningKey) -> str:
    """Serialize `inv` and sign it with `privkey` (the payee's node key); returns the lowercase string.

    If `inv.payee` is set it must be the key's public key; `inv.n_field` adds an `n` field.
    """
    key = _private_key(privkey)
    node_id = _node_id(key)
    if inv.payee is not None and bytes(inv.payee) != node_id:
        raise InvoiceError("payee does not match the signing key")
    hrp = encode_hrp(inv.currency, inv.amount_msat)
    data = _encode_fields(inv, node_id if inv.n_field else None)
    return sign_hrp_and_data(hrp, data, key)


def resign(text: str, privkey: SigningKey, *,
           known_features: Iterable[int] | None = KNOWN_INVOICE_FEATURES) -> str:
    """Sign an invoice string again with `privkey`, keeping its human-readable and data parts.

    The string must be valid bech32 and a well-formed invoice, but its signature may be anything
    (CLN's `createinvoice` and `signinvoice` take such strings).  An `n` field must name `privkey`.
    """
    inv, hrp, unsigned = _parse(text, False, known_features, None)
    key = _private_key(privkey)
    if inv.n_field and inv.payee != _node_id(key):
        raise InvoiceError("'n' field does not match the signing key")
    return sign_hrp_and_data(hrp, unsigned, key)


# --- CLN's decode JSON ---------------------------------------------------------------------------


def to_decode_json(inv: Invoice) -> dict:
    """The result of CLN's `decode` RPC for this invoice (keys in CLN's order)."""
    if inv.payee is None or inv.signature is None:
        raise InvoiceError("only a signed invoice with a known payee can be shown")
    out: dict = {
        "type": "bolt11 invoice",
        "currency": inv.currency,
        "created_at": inv.timestamp,
        "expiry": inv.expiry,
        "payee": inv.payee.hex(),
    }
    if inv.amount_msat is not None:
        out["amount_msat"] = int(inv.amount_msat)
    if inv.description is not None:
        out["description"] = inv.description
    if inv.description_hash is not None:
        out["description_hash"] = inv.description_hash.hex()
    out["min_final_cltv_expiry"] = inv.min_final_cltv_expiry
    if inv.payment_secret is not None:
        out["payment_secret"] = inv.payment_secret.hex()
    out["features"] = features_to_bytes(inv.features).hex()
    if inv.payment_metadata is not None:
        out["payment_metadata"] = inv.payment_metadata.hex()
    if inv.fallbacks:
        fallbacks = []
        for fb in inv.fallbacks:
            entry: dict = {}
            if fb.type_name is not None:
                entry["type"] = fb.type_name
            addr = fb.address(inv.currency)
            if addr is not None:
                entry["addr"] = addr
            entry["hex"] = fb.script_pubkey().hex()
            fallbacks.append(entry)
        out["fallbacks"] = fallbacks
    if inv.route_hints:
        out["routes"] = [[{
            "pubkey": hop.pubkey.hex(),
            "short_channel_id": hop.scid_str,
            "fee_base_msat": hop.fee_base_msat,
            "fee_proportional_millionths": hop.fee_proportional_millionths,
            "cltv_expiry_delta": hop.cltv_expiry_delta,
        } for hop in route] for route in inv.route_hints]
    if inv.unknown_fields:
        out["extra"] = [{"tag": u.tag, "data": u.data_str} for u in inv.unknown_fields]
    out["payment_hash"] = inv.payment_hash.hex()
    out["signature"] = compact_to_der(inv.signature[:64]).hex()
    out["valid"] = True
    return out
