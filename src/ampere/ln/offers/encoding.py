"""BOLT 12 encoding: the bech32 string form without checksum, and merkle-tree signatures.

Pure functions on bytes; what the TLV records mean lives in `ampere.ln.offers.fields`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

from coincurve import PrivateKey, PublicKeyXOnly

from ampere.primitives.bech32 import CHARSET, Bech32Error, convertbits
from ampere.primitives.bigsize import encode_bigsize
from ampere.wire.errors import DecodeError
from ampere.wire.tlv import split_tlv_stream

__all__ = [
    "Bolt12StringError",
    "HRP_OFFER",
    "HRP_INVOICE_REQUEST",
    "HRP_INVOICE",
    "encode_bolt12_string",
    "decode_bolt12_string",
    "is_signature_type",
    "tlv_records",
    "merkle_root",
    "tagged_hash",
    "signature_tag",
    "sign_bolt12",
    "verify_bolt12",
]

HRP_OFFER = "lno"
HRP_INVOICE_REQUEST = "lnr"
HRP_INVOICE = "lni"
_CHARSET_REV = {c: i for i, c in enumerate(CHARSET)}
# BOLT #12: "if it encounters a `+` followed by zero or more whitespace characters between two
# bech32 characters: MUST remove the `+` and whitespace."
_JOIN = re.compile(r"(?<=[0-9a-zA-Z])\+\s*(?=[0-9a-zA-Z])")

# BOLT #12: "Each form is signed using one or more *signature TLV elements*: TLV types 240 through
# 1000 (inclusive)."
SIGNATURE_TYPES = range(240, 1001)


class Bolt12StringError(ValueError):
    """Not a well-formed BOLT 12 string."""


def encode_bolt12_string(hrp: str, data: bytes) -> str:
    """Writers "SHOULD use lower case otherwise" (than QR codes); no `+` splitting, no checksum."""
    return hrp + "1" + "".join(CHARSET[d] for d in convertbits(data, 8, 5, pad=True))


def decode_bolt12_string(text: str) -> tuple[str, bytes]:
    """(hrp, TLV bytes) of a BOLT 12 string.  BOLT #12 readers: "MUST handle strings which are all
    lowercase, or all uppercase" and remove `+` joins; there is no checksum."""
    if not isinstance(text, str) or not text.isascii():
        raise Bolt12StringError("not an ASCII string")
    joined = _JOIN.sub("", text)
    if "+" in joined or any(c.isspace() for c in joined):
        raise Bolt12StringError("'+' must be between two bech32 characters")
    if joined.lower() != joined and joined.upper() != joined:
        raise Bolt12StringError("mixed case")
    joined = joined.lower()
    pos = joined.rfind("1")
    if pos < 1:
        raise Bolt12StringError("no human-readable prefix")
    hrp = joined[:pos]
    try:
        values = [_CHARSET_REV[c] for c in joined[pos + 1 :]]
    except KeyError:
        raise Bolt12StringError("invalid bech32 character") from None
    try:
        data = bytes(convertbits(values, 5, 8, pad=False))
    except Bech32Error as exc:  # more than 4 bits of padding, or non-zero padding
        raise Bolt12StringError(f"bech32 data: {exc}") from None
    return hrp, data


def is_signature_type(tlv_type: int) -> bool:
    return tlv_type in SIGNATURE_TYPES


def tlv_records(data: bytes) -> list[tuple[int, bytes]]:
    """(type, whole record bytes) for each record of a TLV stream, after BOLT #1's structural checks
    (order, minimal encodings, lengths).  Unknown types are all returned: range rules are the caller's."""
    class _All:
        def __contains__(self, item: object) -> bool:
            return True

    records = []
    pos = 0
    for tlv_type, start, stop in split_tlv_stream(data, 0, len(data), _All(), "bolt12"):
        records.append((tlv_type, bytes(data[pos:stop])))
        pos = stop
    return records


def tagged_hash(tag: bytes, msg: bytes) -> bytes:
    """BOLT #12: H(`tag`,`msg`) = SHA256(SHA256(`tag`) || SHA256(`tag`) || `msg`)."""
    tag_hash = hashlib.sha256(tag).digest()
    return hashlib.sha256(tag_hash + tag_hash + msg).digest()


def _branch(a: bytes, b: bytes) -> bytes:
    # "inner nodes are H("LnBranch", lesser-SHA256||greater-SHA256)"
    return tagged_hash(b"LnBranch", a + b if a < b else b + a)


def merkle_root(data: bytes) -> bytes:
    """The merkle root over the non-signature records of a TLV stream (BOLT #12 Signature Calculation).

    Leaves, in TLV order: H("LnLeaf", tlv) paired with H("LnNonce"||first-tlv, tlv-type); "If there
    is not exactly a power of 2 leaves, then the tree depth will be uneven, with the deepest tree on
    the lowest-order leaves."""
    records = [(t, raw) for t, raw in tlv_records(data) if not is_signature_type(t)]
    if not records:
        raise DecodeError("no TLV records to sign")
    first = records[0][1]
    nonce_tag = b"LnNonce" + first
    level = [_branch(tagged_hash(b"LnLeaf", raw), tagged_hash(nonce_tag, encode_bigsize(t))) for t, raw in records]
    while len(level) > 1:
        paired = [_branch(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def signature_tag(message_name: str, field_name: str = "signature") -> bytes:
    """BOLT #12: "the tag is "lightning" || `messagename` || `fieldname`"."""
    return b"lightning" + message_name.encode() + field_name.encode()


class Bolt12Signer(Protocol):
    """A key that signs BOLT 12 messages without handing out its secret (the node's Signer is one):
    `sign_bolt12(message_name, field_name, merkle_root)` is SIG(tag, merkle_root, key), 64 bytes."""

    node_id: bytes

    def sign_bolt12(self, message_name: str, field_name: str, merkle_root: bytes) -> bytes: ...


def bolt12_signature(message_name: str, field_name: str, root: bytes, key: PrivateKey) -> bytes:
    """BOLT #12: SIG(tag, msg, key) = SignSchnorr(key, H(tag, msg)) with tag "lightning"||messagename||fieldname."""
    return key.sign_schnorr(tagged_hash(signature_tag(message_name, field_name), root))


def sign_bolt12(message_name: str, data: bytes, key: PrivateKey | Bolt12Signer) -> bytes:
    """SIG("lightning"||messagename||"signature", merkle_root, key): a BIP-340 signature."""
    if isinstance(key, PrivateKey):
        return bolt12_signature(message_name, "signature", merkle_root(data), key)
    return key.sign_bolt12(message_name, "signature", merkle_root(data))


def verify_bolt12(message_name: str, data: bytes, signature: bytes, pubkey: bytes) -> bool:
    if len(signature) != 64 or len(pubkey) != 33:
        return False
    try:
        return PublicKeyXOnly(bytes(pubkey[1:])).verify(
            bytes(signature), tagged_hash(signature_tag(message_name), merkle_root(data))
        )
    except (ValueError, TypeError):
        return False
