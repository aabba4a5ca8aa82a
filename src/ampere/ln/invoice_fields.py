"""BOLT 11 field types: fallback addresses, route hints, feature bits, unknown fields, 5-bit packing.

`ampere.ln.invoice` assembles these into an `Invoice` and does the bech32/signature work; this module
holds the pieces that have a meaning of their own (an address, a hop, a feature vector) so that the
codec stays readable.  Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from ampere.primitives.bech32 import CHARSET
from ampere.primitives.script import (
    AddressError,
    address_to_script,
    is_p2pkh,
    is_p2sh,
    is_p2tr,
    is_p2wpkh,
    is_p2wsh,
    p2pkh,
    p2sh,
    script_to_address,
    small_int_opcode,
    witness_program,
)


class InvoiceError(ValueError):
    """A BOLT 11 string (or an Invoice to encode) that is malformed; the message says what is wrong."""


# BOLT #11: `prefix`: `ln` + BIP-0173 currency prefix (e.g. `lnbc` for Bitcoin mainnet,
#   `lntb` for Bitcoin testnet, `lntbs` for Bitcoin signet, and `lnbcrt` for Bitcoin regtest)
CURRENCY_NETWORK = {"bc": "bitcoin", "tb": "testnet", "tbs": "signet", "bcrt": "regtest"}
NETWORK_CURRENCY = {
    "bitcoin": "bc",
    "mainnet": "bc",
    "testnet": "tb",
    "testnet4": "tb",
    "signet": "tbs",
    "regtest": "bcrt",
}

CHARSET_REV = {c: i for i, c in enumerate(CHARSET)}

# Tagged field type numbers (BOLT #11 "Currently defined tagged fields").
TAG_P, TAG_S, TAG_D, TAG_M, TAG_N, TAG_H = 1, 16, 13, 27, 19, 23
TAG_X, TAG_C, TAG_F, TAG_R, TAG_9 = 6, 24, 9, 3, 5

# BOLT #11: Note that the maximum length of a Tagged Field's `data` is constricted by the maximum
# value of `data_length`. This is 1023 x 5 bits, or 639 bytes.
MAX_FIELD_U5 = 1023


# --- 5-bit packing -------------------------------------------------------------------------------


_U5_BITS = [format(v, "05b") for v in range(32)]


def u5_to_int(values: Sequence[int]) -> int:
    """Big-endian 5-bit groups as one integer, in linear time: shifting an ever-growing int once per group is
    quadratic (a 0.4 MB data part took 50 s); a binary string converts in one linear pass (base 2 is exempt from
    Python's int-digit limit)."""
    if len(values) <= 64:
        acc = 0
        for v in values:
            acc = (acc << 5) | v
        return acc
    return int("".join([_U5_BITS[v] for v in values]), 2)


def int_to_u5(value: int, count: int) -> list[int]:
    """`value` as exactly `count` big-endian 5-bit groups."""
    return [(value >> (5 * (count - 1 - i))) & 31 for i in range(count)]


def minimal_u5(value: int) -> list[int]:
    """`value` in the fewest 5-bit groups (at least one): BOLT 11's "minimum `data_length`"."""
    count = max(1, (value.bit_length() + 4) // 5)
    return int_to_u5(value, count)


def bytes_to_u5(data: bytes) -> list[int]:
    """Bytes as 5-bit groups, the last one padded with 0 bits.

    BOLT #11: A writer ... MUST pad field data to a multiple of 5 bits, using 0s.
    """
    nbits = len(data) * 8
    count = (nbits + 4) // 5
    return int_to_u5(int.from_bytes(data, "big") << (count * 5 - nbits), count)


def u5_to_bytes(tag: str, values: Sequence[int]) -> bytes:
    """The bytes a field's 5-bit groups carry; the padding (fewer than 5 bits) must be zero."""
    nbits = len(values) * 5
    nbytes = nbits // 8
    pad = nbits - nbytes * 8
    acc = u5_to_int(values)
    if pad >= 5:
        # A writer pads to the next multiple of 5 bits only: 5 or more spare bits is not padding.
        raise InvoiceError(f"{tag}: data length {len(values)} does not hold whole bytes")
    if acc & ((1 << pad) - 1):
        raise InvoiceError(f"{tag}: non-zero padding bits")
    return (acc >> pad).to_bytes(nbytes, "big")


def u5_to_str(values: Iterable[int]) -> str:
    return "".join(CHARSET[v] for v in values)


# --- fallback addresses --------------------------------------------------------------------------

# BOLT #11: for Bitcoin payments: MUST set an `f` field to a valid witness version and program,
#   OR to `17` followed by a public key hash, OR to `18` followed by a script hash.
FALLBACK_P2PKH = 17
FALLBACK_P2SH = 18


@dataclass(frozen=True)
class Fallback:
    """An on-chain fallback: `version` 0-16 (witness program), 17 (P2PKH hash) or 18 (P2SH hash)."""

    version: int
    program: bytes

    def __post_init__(self) -> None:
        v, prog = self.version, self.program
        if v in (FALLBACK_P2PKH, FALLBACK_P2SH):
            if len(prog) != 20:
                raise InvoiceError(f"f: {'pkhash' if v == FALLBACK_P2PKH else 'p2sh'} length {len(prog)}, not 20")
        elif 0 <= v <= 16:
            # BIP141: a witness program is 2 to 40 bytes; version 0 programs are 20 or 32 bytes.
            if not 2 <= len(prog) <= 40:
                raise InvoiceError(f"f: witness v{v} bad length {len(prog)}")
            if v == 0 and len(prog) not in (20, 32):
                raise InvoiceError(f"f: witness v0 bad length {len(prog)}")
        else:
            raise InvoiceError(f"f: unknown version {v}")

    @classmethod
    def from_script(cls, spk: bytes) -> "Fallback":
        if is_p2pkh(spk):
            return cls(FALLBACK_P2PKH, spk[3:23])
        if is_p2sh(spk):
            return cls(FALLBACK_P2SH, spk[2:22])
        wp = witness_program(spk)
        if wp is None:
            raise InvoiceError(f"f: script {spk.hex()} is not an address type an invoice can carry")
        return cls(wp[0], wp[1])

    @classmethod
    def from_address(cls, address: str, currency: str) -> "Fallback":
        """Parse `address`, which must belong to the invoice's network."""
        network = CURRENCY_NETWORK.get(currency)
        if network is None:
            raise InvoiceError(f"unknown currency {currency!r}")
        try:
            spk = address_to_script(address, network)
        except AddressError as e:
            raise InvoiceError(f"fallback {e}") from None
        return cls.from_script(spk)

    def script_pubkey(self) -> bytes:
        if self.version == FALLBACK_P2PKH:
            return p2pkh(self.program)
        if self.version == FALLBACK_P2SH:
            return p2sh(self.program)
        return bytes([small_int_opcode(self.version), len(self.program)]) + self.program

    def address(self, currency: str) -> str | None:
        network = CURRENCY_NETWORK.get(currency)
        if network is None:
            return None
        return script_to_address(self.script_pubkey(), network)

    @property
    def type_name(self) -> str | None:
        """CLN's name for the address type (`decode`'s fallbacks[].type), None if it has none."""
        spk = self.script_pubkey()
        for name, test in (("P2PKH", is_p2pkh), ("P2SH", is_p2sh), ("P2WPKH", is_p2wpkh),
                           ("P2WSH", is_p2wsh), ("P2TR", is_p2tr)):
            if test(spk):
                return name
        return None

    def to_u5(self) -> list[int]:
        return [self.version] + bytes_to_u5(self.program)


# --- route hints ---------------------------------------------------------------------------------

ROUTE_HOP_LEN = 33 + 8 + 4 + 4 + 2  # pubkey, short_channel_id, fee_base, fee_prop, cltv_delta


def scid_to_str(scid: int) -> str:
    return f"{scid >> 40}x{(scid >> 16) & 0xFFFFFF}x{scid & 0xFFFF}"


def scid_from_str(text: str) -> int:
    """Parse "BLOCKxTXxOUT" into the u64 short_channel_id."""
    parts = text.split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise InvoiceError(f"short_channel_id {text!r} is not BLOCKxTXxOUTPUT")
    block, tx, out = (int(p) for p in parts)
    if block >= 1 << 24 or tx >= 1 << 24 or out >= 1 << 16:
        raise InvoiceError(f"short_channel_id {text!r} is out of range")
    return (block << 40) | (tx << 16) | out


@dataclass(frozen=True)
class RouteHop:
    """One `r` field entry.

    BOLT #11: for each entry, the `pubkey` is the node ID of the start of the channel;
    `short_channel_id` is the short channel ID field to identify the channel; and `fee_base_msat`,
    `fee_proportional_millionths`, and `cltv_expiry_delta` are as specified in BOLT #7.
    """

    pubkey: bytes
    short_channel_id: int
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int

    def __post_init__(self) -> None:
        if len(self.pubkey) != 33:
            raise InvoiceError(f"r: pubkey must be 33 bytes, not {len(self.pubkey)}")
        for name, bits in (("short_channel_id", 64), ("fee_base_msat", 32),
                           ("fee_proportional_millionths", 32), ("cltv_expiry_delta", 16)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
                raise InvoiceError(f"r: {name} {value!r} is not a u{bits}")

    @property
    def scid_str(self) -> str:
        return scid_to_str(self.short_channel_id)

    def to_bytes(self) -> bytes:
        return (self.pubkey + self.short_channel_id.to_bytes(8, "big")
                + self.fee_base_msat.to_bytes(4, "big")
                + self.fee_proportional_millionths.to_bytes(4, "big")
                + self.cltv_expiry_delta.to_bytes(2, "big"))

    @classmethod
    def from_bytes(cls, b: bytes) -> "RouteHop":
        return cls(b[:33], int.from_bytes(b[33:41], "big"), int.from_bytes(b[41:45], "big"),
                   int.from_bytes(b[45:49], "big"), int.from_bytes(b[49:51], "big"))


# --- features ------------------------------------------------------------------------------------

# BOLT 9 features whose context includes `9` (BOLT 11 invoices), by their even (compulsory) bit.
INVOICE_FEATURE_NAMES = {
    8: "var_onion_optin",
    14: "payment_secret",
    16: "basic_mpp",
    24: "option_route_blinding",
    36: "option_attribution_data",
    48: "option_payment_metadata",
}
KNOWN_INVOICE_FEATURES = frozenset(INVOICE_FEATURE_NAMES)

# BOLT 9 dependencies among invoice features: basic_mpp requires payment_secret.
INVOICE_FEATURE_DEPENDENCIES = {16: (14,)}


def feature_bits(features: int) -> list[int]:
    return [i for i in range(features.bit_length()) if (features >> i) & 1]


def unknown_even_bits(features: int, known: Iterable[int] = KNOWN_INVOICE_FEATURES) -> list[int]:
    """Set compulsory (even) bits whose feature is not in `known` (given by even bit numbers).

    BOLT #11: if the `9` field contains unknown _odd_ bits that are non-zero: MUST ignore the bit.
    if the `9` field contains unknown _even_ bits that are non-zero: MUST fail the payment.
    """
    known = frozenset(known)
    return [b for b in feature_bits(features) if b % 2 == 0 and b not in known]


def feature_names(features: int) -> dict[int, str]:
    """Bit number -> "name/required|supported" for every set bit ("unknown_<bit>" if unnamed)."""
    out = {}
    for b in feature_bits(features):
        name = INVOICE_FEATURE_NAMES.get(b & ~1)
        out[b] = f"{name}/{'required' if b % 2 == 0 else 'supported'}" if name else f"unknown_{b}"
    return out


def missing_feature_dependencies(features: int) -> list[tuple[int, int]]:
    """(feature bit, missing dependency's even bit) pairs.

    BOLT #11: if the feature vector does not set all known, transitive feature dependencies:
    MUST NOT attempt the payment.  (A payer checks this; decoding does not fail on it.)
    """
    missing = []
    for b in feature_bits(features):
        for dep in INVOICE_FEATURE_DEPENDENCIES.get(b & ~1, ()):
            if not (features >> dep) & 3:
                missing.append((b, dep))
    return missing


def features_u5_len(features: int) -> int:
    return (features.bit_length() + 4) // 5


def features_to_bytes(features: int, u5_len: int | None = None) -> bytes:
    """The feature bitmap in the bytes CLN shows: the `9` field's bits, left-padded to whole bytes."""
    if u5_len is None:
        u5_len = features_u5_len(features)
    return features.to_bytes((u5_len * 5 + 7) // 8, "big")


# --- unknown fields ------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnknownField:
    """A tagged field kept as its raw 5-bit data, so that re-encoding gives back the same string.

    BOLT #11: MUST skip over `f` fields that use an unknown `version`.  Fields with a type we do not
    know, repeats of single-valued fields, and `p`/`h`/`s`/`n` fields of the wrong length also land
    here (see `ampere.ln.invoice` on why wrong lengths are skipped rather than fatal).
    """

    tag: str
    data: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.tag) != 1 or self.tag not in CHARSET_REV:
            raise InvoiceError(f"unknown field tag {self.tag!r} is not a bech32 character")
        if len(self.data) > MAX_FIELD_U5 or any(not 0 <= v < 32 for v in self.data):
            raise InvoiceError(f"unknown field {self.tag}: data is not at most {MAX_FIELD_U5} 5-bit values")

    @property
    def data_str(self) -> str:
        return u5_to_str(self.data)


# --- signature formatting ------------------------------------------------------------------------


def _der_int(x: bytes) -> bytes:
    x = x.lstrip(b"\x00") or b"\x00"
    if x[0] & 0x80:
        x = b"\x00" + x
    return b"\x02" + bytes([len(x)]) + x


def compact_to_der(sig64: bytes) -> bytes:
    """DER encoding of an (r, s) compact signature, as given; CLN shows invoice signatures this way."""
    body = _der_int(sig64[:32]) + _der_int(sig64[32:64])
    return b"\x30" + bytes([len(body)]) + body
