"""BOLT 3 key derivation: per-commitment secrets and points, and the keys of each commitment.

Everything here is a pure function of byte strings (33-byte compressed public keys, 32-byte secrets).
The two sides of a channel each publish five public keys in `open_channel`/`accept_channel`
(`ChannelPubkeys`); for every commitment transaction, the owner's `per_commitment_point` tweaks them
into the keys that appear in that transaction's scripts (`CommitmentKeys`).

Vocabulary follows BOLT 3: the "local" node owns the commitment transaction being built (its outputs
to itself are delayed and revocable), the "remote" node is the other party.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import coincurve
import coincurve.ecdsa as _ecdsa
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib
from coincurve.context import GLOBAL_CONTEXT as _CTX

from ampere.primitives.crypto import SECP256K1_ORDER, sha256

__all__ = [
    "KeyDerivationError",
    "SECP256K1_ORDER",
    "MAX_SECRET_INDEX",
    "ChannelPubkeys",
    "CommitmentKeys",
    "pubkey_from_secret",
    "per_commitment_secret_from_seed",
    "per_commitment_point",
    "secret_index",
    "commitment_secret",
    "commitment_point",
    "derive_pubkey",
    "derive_privkey",
    "derive_revocation_pubkey",
    "derive_revocation_privkey",
    "commitment_keys",
    "derive_secret",
    "ecdsa_sign",
    "ecdsa_verify",
    "der_to_compact",
    "compact_to_der",
]


# BOLT #3: "Up to (2^48 - 1) per-commitment secrets can be generated."
MAX_SECRET_INDEX = (1 << 48) - 1


class KeyDerivationError(ValueError):
    """A point that is not on the curve, a secret outside [1, n-1], or an index out of range."""


@lru_cache(maxsize=4096)
def _parse(point: bytes) -> coincurve.PublicKey:
    # The basepoints and funding keys of every channel come back on each commitment, and a per_commitment_point
    # is used for several keys of its commitment: parse each once (a parsed key is never mutated: coincurve's
    # add/multiply return new objects). Invalid points raise, and exceptions are not cached.
    return coincurve.PublicKey(point)


def _pubkey(point: bytes, what: str) -> coincurve.PublicKey:
    if not isinstance(point, (bytes, bytearray)) or len(point) != 33 or point[0] not in (2, 3):
        raise KeyDerivationError(f"{what} must be a 33-byte compressed public key")
    try:
        return _parse(bytes(point))
    except ValueError as e:
        raise KeyDerivationError(f"{what} is not a valid secp256k1 point") from e


def _scalar(secret: bytes, what: str) -> int:
    if not isinstance(secret, (bytes, bytearray)) or len(secret) != 32:
        raise KeyDerivationError(f"{what} must be 32 bytes")
    value = int.from_bytes(secret, "big")
    if not 0 < value < SECP256K1_ORDER:
        raise KeyDerivationError(f"{what} is not a valid secp256k1 private key")
    return value


def pubkey_from_secret(secret: bytes) -> bytes:
    """The compressed public key `secret * G`."""
    _scalar(secret, "secret")
    # PublicKey.from_valid_secret: one multiplication (coincurve.PrivateKey also derives the x-only key).
    return coincurve.PublicKey.from_valid_secret(bytes(secret)).format(compressed=True)


# --- per-commitment secrets --------------------------------------------------------------------

def derive_secret(base: bytes, bits: int, index: int) -> bytes:
    """BOLT 3 `derive_secret(base, bits, I)`: the I'th secret from a base sharing bits..47 of I."""
    p = bytearray(base)
    new = hashlib.sha256
    for b in range(bits - 1, -1, -1):
        if (index >> b) & 1:
            # BOLT #3: "flip(B)" alternates the (B mod 8) bit of the (B div 8) byte of the value.
            p[b >> 3] ^= 1 << (b & 7)
            p = bytearray(new(p).digest())
    return bytes(p)


def per_commitment_secret_from_seed(seed: bytes, index: int) -> bytes:
    """BOLT 3 `generate_from_seed(seed, I)`.

    Note the index counts down: the secret for commitment number n is at `secret_index(n)`.
    """
    if len(seed) != 32:
        raise KeyDerivationError("per-commitment seed must be 32 bytes")
    if not 0 <= index <= MAX_SECRET_INDEX:
        raise KeyDerivationError(f"per-commitment secret index {index} out of range")
    return derive_secret(seed, 48, index)


def secret_index(commitment_number: int) -> int:
    """The shachain index of commitment number n.

    BOLT #3: "The first secret used: MUST be index 281474976710655, and from there, the index is decremented."
    """
    if not 0 <= commitment_number <= MAX_SECRET_INDEX:
        raise KeyDerivationError(f"commitment number {commitment_number} out of range")
    return MAX_SECRET_INDEX - commitment_number


def per_commitment_point(per_commitment_secret: bytes) -> bytes:
    """BOLT #3: per_commitment_point = per_commitment_secret * G"""
    return pubkey_from_secret(per_commitment_secret)


def commitment_secret(seed: bytes, commitment_number: int) -> bytes:
    """Our per_commitment_secret for commitment number n (revealed in revoke_and_ack once n is revoked)."""
    return per_commitment_secret_from_seed(seed, secret_index(commitment_number))


def commitment_point(seed: bytes, commitment_number: int) -> bytes:
    """Our per_commitment_point for commitment number n (sent in channel_ready / revoke_and_ack)."""
    return per_commitment_point(commitment_secret(seed, commitment_number))


# --- key tweaks --------------------------------------------------------------------------------

def _tweak(per_commitment_point_: bytes, basepoint: bytes) -> bytes:
    return sha256(per_commitment_point_ + basepoint)


def derive_pubkey(basepoint: bytes, per_commitment_point_: bytes) -> bytes:
    """localpubkey, local/remote_htlcpubkey, local/remote_delayedpubkey.

    BOLT #3: pubkey = basepoint + SHA256(per_commitment_point || basepoint) * G
    """
    base = _pubkey(basepoint, "basepoint")
    _pubkey(per_commitment_point_, "per_commitment_point")
    try:
        return base.add(_tweak(per_commitment_point_, basepoint)).format(compressed=True)
    except ValueError as e:  # the sum is the point at infinity: negligible, but not a crash
        raise KeyDerivationError("derived public key is invalid") from e


def derive_privkey(basepoint_secret: bytes, per_commitment_point_: bytes, basepoint: bytes | None = None) -> bytes:
    """BOLT #3: privkey = basepoint_secret + SHA256(per_commitment_point || basepoint)

    `basepoint`: basepoint_secret * G when the caller already knows it (a signer does), else computed."""
    secret = _scalar(basepoint_secret, "basepoint_secret")
    _pubkey(per_commitment_point_, "per_commitment_point")
    if basepoint is None:
        basepoint = pubkey_from_secret(basepoint_secret)
    value = (secret + int.from_bytes(_tweak(per_commitment_point_, basepoint), "big")) % SECP256K1_ORDER
    if value == 0:
        raise KeyDerivationError("derived private key is zero")
    return value.to_bytes(32, "big")


def derive_revocation_pubkey(revocation_basepoint: bytes, per_commitment_point_: bytes) -> bytes:
    """BOLT #3: revocationpubkey = revocation_basepoint * SHA256(revocation_basepoint || per_commitment_point)
    + per_commitment_point * SHA256(per_commitment_point || revocation_basepoint)"""
    rb = _pubkey(revocation_basepoint, "revocation_basepoint")
    pcp = _pubkey(per_commitment_point_, "per_commitment_point")
    try:
        a = rb.multiply(sha256(revocation_basepoint + per_commitment_point_))
        b = pcp.multiply(sha256(per_commitment_point_ + revocation_basepoint))
        return coincurve.PublicKey.combine_keys([a, b]).format(compressed=True)
    except ValueError as e:
        raise KeyDerivationError("derived revocation key is invalid") from e


def derive_revocation_privkey(revocation_basepoint_secret: bytes, per_commitment_secret: bytes) -> bytes:
    """BOLT #3: revocationprivkey = revocation_basepoint_secret * SHA256(revocation_basepoint || per_commitment_point)
    + per_commitment_secret * SHA256(per_commitment_point || revocation_basepoint)"""
    rb_secret = _scalar(revocation_basepoint_secret, "revocation_basepoint_secret")
    pc_secret = _scalar(per_commitment_secret, "per_commitment_secret")
    rb = pubkey_from_secret(revocation_basepoint_secret)
    pcp = pubkey_from_secret(per_commitment_secret)
    value = (rb_secret * int.from_bytes(sha256(rb + pcp), "big")
             + pc_secret * int.from_bytes(sha256(pcp + rb), "big")) % SECP256K1_ORDER
    if value == 0:
        raise KeyDerivationError("derived revocation private key is zero")
    return value.to_bytes(32, "big")


# --- the keys of one commitment transaction ----------------------------------------------------

@dataclass(frozen=True)
class ChannelPubkeys:
    """The public keys one side sends in open_channel / accept_channel (33-byte compressed each)."""

    funding_pubkey: bytes
    revocation_basepoint: bytes
    payment_basepoint: bytes
    delayed_payment_basepoint: bytes
    htlc_basepoint: bytes

    def __post_init__(self) -> None:
        for name in ("funding_pubkey", "revocation_basepoint", "payment_basepoint",
                     "delayed_payment_basepoint", "htlc_basepoint"):
            _pubkey(getattr(self, name), name)


@dataclass(frozen=True)
class CommitmentKeys:
    """The keys in one commitment transaction's scripts, from its owner's ("local") point of view."""

    per_commitment_point: bytes
    revocation_pubkey: bytes       # the remote node can spend local's outputs with it once revoked
    local_delayed_pubkey: bytes    # to_local and the HTLC transactions' outputs, after to_self_delay
    local_htlc_pubkey: bytes
    remote_htlc_pubkey: bytes
    remote_pubkey: bytes           # to_remote (option_static_remotekey: the remote payment_basepoint)
    local_funding_pubkey: bytes    # the anchors lock to the funding keys
    remote_funding_pubkey: bytes


def commitment_keys(local: ChannelPubkeys, remote: ChannelPubkeys, per_commitment_point_: bytes) -> CommitmentKeys:
    """Keys of the commitment transaction owned by `local`, built with local's `per_commitment_point`.

    To build the remote node's commitment, swap the arguments and pass the remote's point:
    `commitment_keys(their_pubkeys, our_pubkeys, their_point)`.
    """
    return _commitment_keys(local, remote, bytes(per_commitment_point_))


@lru_cache(maxsize=256)
def _commitment_keys(local: ChannelPubkeys, remote: ChannelPubkeys, per_commitment_point_: bytes) -> CommitmentKeys:
    # A pure function of its arguments (the point names the commitment number and its owner): a commitment
    # rebuilt (retransmitted commitment_signed, force close, on-chain classification) reuses its five EC
    # operations. Nothing else keys this cache, so it cannot hand out another commitment's keys.
    return CommitmentKeys(
        per_commitment_point=per_commitment_point_,
        # BOLT #3: the local node "uses its own revocation_basepoint and the remote node's per_commitment_point"
        # to derive the revocationpubkey of the remote's commitment; so local's commitment uses remote's basepoint.
        revocation_pubkey=derive_revocation_pubkey(remote.revocation_basepoint, per_commitment_point_),
        local_delayed_pubkey=derive_pubkey(local.delayed_payment_basepoint, per_commitment_point_),
        local_htlc_pubkey=derive_pubkey(local.htlc_basepoint, per_commitment_point_),
        remote_htlc_pubkey=derive_pubkey(remote.htlc_basepoint, per_commitment_point_),
        # BOLT #3: "The remotepubkey is simply the remote node's payment_basepoint."
        remote_pubkey=remote.payment_basepoint,
        local_funding_pubkey=local.funding_pubkey,
        remote_funding_pubkey=remote.funding_pubkey,
    )


# --- signatures --------------------------------------------------------------------------------

def ecdsa_sign(privkey: bytes, digest: bytes) -> bytes:
    """DER signature of a 32-byte digest (RFC6979 nonce, low-S), without a sighash byte."""
    _scalar(privkey, "private key")
    if len(digest) != 32:
        raise KeyDerivationError("digest must be 32 bytes")
    # libsecp256k1's secp256k1_ecdsa_sign with its default nonce (RFC6979), as coincurve.PrivateKey.sign(digest,
    # hasher=None) calls it, without building a PrivateKey: that derives the public and x-only keys first (two
    # EC multiplications per signature, for nothing). The BOLT 3 vectors check the bytes.
    sig = _ffi.new("secp256k1_ecdsa_signature *")
    if not _lib.secp256k1_ecdsa_sign(_CTX.ctx, sig, bytes(digest), bytes(privkey), _ffi.NULL, _ffi.NULL):
        raise KeyDerivationError("signing failed")
    return _ecdsa.cdata_to_der(sig)


def ecdsa_verify(pubkey: bytes, der_signature: bytes, digest: bytes) -> bool:
    """True if `der_signature` is a valid signature of `digest` by `pubkey`; False for anything malformed."""
    try:
        return _parse(bytes(pubkey)).verify(der_signature, digest, hasher=None)
    except (ValueError, TypeError):
        return False


def der_to_compact(der_signature: bytes) -> bytes:
    """The 64-byte compact form (r || s) that BOLT 2 messages carry."""
    try:
        return _ecdsa.serialize_compact(_ecdsa.der_to_cdata(der_signature))
    except (ValueError, TypeError) as e:
        raise KeyDerivationError("malformed DER signature") from e


def compact_to_der(compact_signature: bytes) -> bytes:
    """DER form of a 64-byte compact signature (as it goes into a witness, before the sighash byte)."""
    if len(compact_signature) != 64:
        raise KeyDerivationError("compact signature must be 64 bytes")
    try:
        return _ecdsa.cdata_to_der(_ecdsa.deserialize_compact(compact_signature))
    except (ValueError, TypeError) as e:
        raise KeyDerivationError("malformed compact signature") from e
