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
from typing import Protocol
from weakref import ref

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
    "derive_pubkey_with_secret",
    "derive_revocation_pubkey_with_secret",
    "OwnKeys",
    "derive_revocation_privkey",
    "commitment_keys",
    "derive_secret",
    "ecdsa_sign",
    "ecdsa_sign_compact",
    "ecdsa_verify",
    "ecdsa_verify_compact",
    "der_to_compact",
    "compact_to_der",
]


# BOLT #3: "Up to (2^48 - 1) per-commitment secrets can be generated."
MAX_SECRET_INDEX = (1 << 48) - 1


class KeyDerivationError(ValueError):
    """A point that is not on the curve, a secret outside [1, n-1], or an index out of range."""


# Public keys are handled as libsecp256k1's `secp256k1_pubkey` (64 opaque bytes) through coincurve's cffi
# bindings, without coincurve's PublicKey objects (each call there allocates and re-checks in Python). A point is
# parsed (decompressed: a square root) once and kept by its 33-byte encoding; points this module computes (derived
# keys, our per-commitment points) are kept as computed, so verifying with a derived key or deriving from our own
# point never parses it. Entries are never mutated (every operation works on a copy), and a 33-byte encoding
# names exactly one point, so the cache cannot hand out another key.
_PUBKEY = "secp256k1_pubkey *"
_COMPRESSED = _lib.SECP256K1_EC_COMPRESSED
_MAX_PARSED = 4096
_parsed: dict[bytes, object] = {}


def _remember(point: bytes, pk: object) -> None:
    if len(_parsed) >= _MAX_PARSED:
        _parsed.clear()
    _parsed[point] = pk


def _load(point: bytes) -> object:
    """The parsed point of a 33-byte compressed encoding (ValueError if it is not on the curve)."""
    pk = _parsed.get(point)
    if pk is None:
        pk = _ffi.new(_PUBKEY)
        if not _lib.secp256k1_ec_pubkey_parse(_CTX.ctx, pk, point, 33):
            raise ValueError("not a valid secp256k1 point")
        _remember(point, pk)
    return pk


def _copy(pk: object) -> object:
    new = _ffi.new(_PUBKEY)
    _ffi.memmove(new, pk, 64)
    return new


def _save(pk: object) -> bytes:
    """The 33-byte compressed encoding of a computed point (kept parsed for the next use)."""
    out = _ffi.new("unsigned char[33]")
    size = _ffi.new("size_t *", 33)
    _lib.secp256k1_ec_pubkey_serialize(_CTX.ctx, out, size, pk, _COMPRESSED)
    point = bytes(_ffi.buffer(out, 33))
    _remember(point, pk)
    return point


def _pubkey(point: bytes, what: str) -> object:
    if not isinstance(point, (bytes, bytearray)) or len(point) != 33 or point[0] not in (2, 3):
        raise KeyDerivationError(f"{what} must be a 33-byte compressed public key")
    try:
        return _load(bytes(point))
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
    # secp256k1_ec_pubkey_create: one constant-time multiplication by G.
    pk = _ffi.new(_PUBKEY)
    if not _lib.secp256k1_ec_pubkey_create(_CTX.ctx, pk, bytes(secret)):
        raise KeyDerivationError("secret is not a valid secp256k1 private key")  # pragma: no cover - checked above
    return _save(pk)


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
    pk = _copy(base)
    # secp256k1_ec_pubkey_tweak_add fails if the tweak is not below n or the sum is the point at infinity:
    # negligible, but not a crash.
    if not _lib.secp256k1_ec_pubkey_tweak_add(_CTX.ctx, pk, _tweak(per_commitment_point_, basepoint)):
        raise KeyDerivationError("derived public key is invalid")
    return _save(pk)


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
    a = _copy(_pubkey(revocation_basepoint, "revocation_basepoint"))
    b = _copy(_pubkey(per_commitment_point_, "per_commitment_point"))
    ctx = _CTX.ctx
    total = _ffi.new(_PUBKEY)
    if not (_lib.secp256k1_ec_pubkey_tweak_mul(ctx, a, sha256(revocation_basepoint + per_commitment_point_))
            and _lib.secp256k1_ec_pubkey_tweak_mul(ctx, b, sha256(per_commitment_point_ + revocation_basepoint))
            and _lib.secp256k1_ec_pubkey_combine(ctx, total, _ffi.new("secp256k1_pubkey *[2]", [a, b]), 2)):
        raise KeyDerivationError("derived revocation key is invalid")
    return _save(total)


def derive_pubkey_with_secret(basepoint_secret: bytes, basepoint: bytes, per_commitment_point_: bytes) -> bytes:
    """`derive_pubkey(basepoint, per_commitment_point)` for a basepoint whose secret we hold (a signer's own):
    (basepoint_secret + SHA256(per_commitment_point || basepoint)) * G, one constant-time multiplication by G
    instead of the point addition's variable-base one. Same bytes (the BOLT 3 vectors check both)."""
    return pubkey_from_secret(derive_privkey(basepoint_secret, per_commitment_point_, basepoint))


def derive_revocation_pubkey_with_secret(revocation_basepoint: bytes, per_commitment_point_: bytes, *,
                                         revocation_basepoint_secret: bytes | None = None,
                                         per_commitment_secret: bytes | None = None) -> bytes:
    """`derive_revocation_pubkey` when the secret of one of its two points is known (ours: the revocation
    basepoint on the peer's commitment, our per-commitment point on ours): that half is a constant-time
    multiplication by G of secret * hash (cheaper than a multiplication of a point), the other half one
    multiplication of the peer's point, then one addition."""
    rb = _pubkey(revocation_basepoint, "revocation_basepoint")
    pcp = _pubkey(per_commitment_point_, "per_commitment_point")
    h1 = sha256(revocation_basepoint + per_commitment_point_)
    h2 = sha256(per_commitment_point_ + revocation_basepoint)
    if revocation_basepoint_secret is not None:
        known, other, tweak = revocation_basepoint_secret, pcp, h2
        known_hash = h1
    elif per_commitment_secret is not None:
        known, other, tweak = per_commitment_secret, rb, h1
        known_hash = h2
    else:
        return derive_revocation_pubkey(revocation_basepoint, per_commitment_point_)
    value = _scalar(known, "secret") * int.from_bytes(known_hash, "big") % SECP256K1_ORDER
    ctx = _CTX.ctx
    a = _ffi.new(_PUBKEY)
    b = _copy(other)
    total = _ffi.new(_PUBKEY)
    if not (value and _lib.secp256k1_ec_pubkey_create(ctx, a, value.to_bytes(32, "big"))
            and _lib.secp256k1_ec_pubkey_tweak_mul(ctx, b, tweak)
            and _lib.secp256k1_ec_pubkey_combine(ctx, total, _ffi.new("secp256k1_pubkey *[2]", [a, b]), 2)):
        raise KeyDerivationError("derived revocation key is invalid")
    return _save(total)


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


class OwnKeys(Protocol):
    """What a signer holding our secrets offers the key derivation (ln/channel/signer.LocalChannelSigner): the
    same public keys, computed with the secret of our side's point (None: not one of ours, derive publicly)."""

    def own_derived_pubkey(self, basepoint: bytes, per_commitment_point: bytes) -> bytes | None: ...

    def own_revocation_pubkey(self, revocation_basepoint: bytes, per_commitment_point: bytes) -> bytes | None: ...


_DERIVED = ("revocation_pubkey", "local_delayed_pubkey", "local_htlc_pubkey", "remote_htlc_pubkey")
_FIELDS = ("per_commitment_point", *_DERIVED, "remote_pubkey", "local_funding_pubkey", "remote_funding_pubkey")


class CommitmentKeys:
    """The keys in one commitment transaction's scripts, from its owner's ("local") point of view.

    per_commitment_point, revocation_pubkey (the remote node can spend local's outputs with it once revoked),
    local_delayed_pubkey (to_local and the HTLC transactions' outputs, after to_self_delay), local_htlc_pubkey,
    remote_htlc_pubkey, remote_pubkey (to_remote: option_static_remotekey's remote payment_basepoint),
    local_funding_pubkey and remote_funding_pubkey (the anchors lock to the funding keys).

    A value (equal when the eight keys are). `commitment_keys` gives one whose four tweaked keys are derived
    when first read: a commitment without HTLC outputs never needs the two HTLC keys, one without to_local and
    HTLCs neither the revocation nor the delayed key (each derivation is an EC multiplication; at one HTLC per
    commitment round, half the rounds' commitments have no HTLC).
    """

    __slots__ = ("per_commitment_point", "remote_pubkey", "local_funding_pubkey", "remote_funding_pubkey",
                 "_derived", "_local", "_remote", "_own")
    per_commitment_point: bytes
    remote_pubkey: bytes
    local_funding_pubkey: bytes
    remote_funding_pubkey: bytes
    _derived: list[bytes | None]
    _local: ChannelPubkeys | None
    _remote: ChannelPubkeys | None
    _own: ref[OwnKeys] | None

    def __init__(self, per_commitment_point: bytes, revocation_pubkey: bytes, local_delayed_pubkey: bytes,
                 local_htlc_pubkey: bytes, remote_htlc_pubkey: bytes, remote_pubkey: bytes,
                 local_funding_pubkey: bytes, remote_funding_pubkey: bytes) -> None:
        self._set(per_commitment_point, remote_pubkey, local_funding_pubkey, remote_funding_pubkey,
                  [revocation_pubkey, local_delayed_pubkey, local_htlc_pubkey, remote_htlc_pubkey], None, None)
        object.__setattr__(self, "_own", None)

    def _set(self, point: bytes, remote_pubkey: bytes, local_funding: bytes, remote_funding: bytes,
             derived: list[bytes | None], local: ChannelPubkeys | None, remote: ChannelPubkeys | None) -> None:
        init = object.__setattr__
        init(self, "per_commitment_point", point)
        init(self, "remote_pubkey", remote_pubkey)
        init(self, "local_funding_pubkey", local_funding)
        init(self, "remote_funding_pubkey", remote_funding)
        init(self, "_derived", derived)  # filled in place as the keys are first read
        init(self, "_local", local)
        init(self, "_remote", remote)

    @classmethod
    def _lazy(cls, local: ChannelPubkeys, remote: ChannelPubkeys, point: bytes,
              own: OwnKeys | None = None) -> CommitmentKeys:
        # The point is checked now (as the eager derivation did): a bad point from the peer fails here.
        _pubkey(point, "per_commitment_point")
        self = cls.__new__(cls)
        # BOLT #3: "The remotepubkey is simply the remote node's payment_basepoint."
        self._set(point, remote.payment_basepoint, local.funding_pubkey, remote.funding_pubkey,
                  [None, None, None, None], local, remote)
        # A weak reference: the keys are memoised (below) and must not keep a closed channel's signer alive.
        object.__setattr__(self, "_own", None if own is None else ref(own))
        return self

    def _derive(self, i: int) -> bytes:
        local, remote, point = self._local, self._remote, self.per_commitment_point
        assert local is not None and remote is not None
        own = self._own() if self._own is not None else None
        key = None
        if i == 0:
            # BOLT #3: the local node "uses its own revocation_basepoint and the remote node's
            # per_commitment_point" to derive the revocationpubkey of the remote's commitment; so local's
            # commitment uses remote's basepoint.
            if own is not None:
                key = own.own_revocation_pubkey(remote.revocation_basepoint, point)
            if key is None:
                key = derive_revocation_pubkey(remote.revocation_basepoint, point)
        else:
            basepoint = (local.delayed_payment_basepoint, local.htlc_basepoint, remote.htlc_basepoint)[i - 1]
            if own is not None:
                key = own.own_derived_pubkey(basepoint, point)
            if key is None:
                key = derive_pubkey(basepoint, point)
        self._derived[i] = key
        return key

    @property
    def revocation_pubkey(self) -> bytes:
        return self._derived[0] or self._derive(0)

    @property
    def local_delayed_pubkey(self) -> bytes:
        return self._derived[1] or self._derive(1)

    @property
    def local_htlc_pubkey(self) -> bytes:
        return self._derived[2] or self._derive(2)

    @property
    def remote_htlc_pubkey(self) -> bytes:
        return self._derived[3] or self._derive(3)

    def _values(self) -> tuple[bytes, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CommitmentKeys):
            return NotImplemented
        return self is other or self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return "CommitmentKeys(" + ", ".join(f"{n}={getattr(self, n).hex()}" for n in _FIELDS) + ")"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"CommitmentKeys is immutable (cannot set {name})")


def commitment_keys(local: ChannelPubkeys, remote: ChannelPubkeys, per_commitment_point_: bytes,
                    own: OwnKeys | None = None) -> CommitmentKeys:
    """Keys of the commitment transaction owned by `local`, built with local's `per_commitment_point`.

    To build the remote node's commitment, swap the arguments and pass the remote's point:
    `commitment_keys(their_pubkeys, our_pubkeys, their_point)`. `own`: our signer, when it can compute our
    side's keys with its secrets (same keys, cheaper).
    """
    point = bytes(per_commitment_point_)
    keys = _commitment_keys(local, remote, point)
    if keys is None:
        keys = CommitmentKeys._lazy(local, remote, point, own)
        _commitment_keys.put(local, remote, point, keys)
    return keys


class _KeysMemo:
    """The keys of recent commitments by (local pubkeys, remote pubkeys, point): a pure function of these (the
    point names the commitment number and its owner), so a commitment rebuilt (retransmitted commitment_signed,
    force close, on-chain classification) reuses its EC operations. Nothing else keys it, so it cannot hand out
    another commitment's keys (`own` only changes how the same keys are computed)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[tuple[ChannelPubkeys, ChannelPubkeys, bytes], CommitmentKeys] = {}

    def __call__(self, local: ChannelPubkeys, remote: ChannelPubkeys, point: bytes) -> CommitmentKeys | None:
        return self.entries.get((local, remote, point))

    def put(self, local: ChannelPubkeys, remote: ChannelPubkeys, point: bytes, keys: CommitmentKeys) -> None:
        if len(self.entries) >= self.size:
            self.entries.pop(next(iter(self.entries)))  # the oldest
        self.entries[(local, remote, point)] = keys

    def cache_clear(self) -> None:
        self.entries.clear()


_commitment_keys = _KeysMemo(256)


# --- signatures --------------------------------------------------------------------------------

def _sign(privkey: bytes, digest: bytes) -> object:
    _scalar(privkey, "private key")
    if len(digest) != 32:
        raise KeyDerivationError("digest must be 32 bytes")
    # libsecp256k1's secp256k1_ecdsa_sign with its default nonce (RFC6979), as coincurve.PrivateKey.sign(digest,
    # hasher=None) calls it, without building a PrivateKey: that derives the public and x-only keys first (two
    # EC multiplications per signature, for nothing). The BOLT 3 vectors check the bytes.
    sig = _ffi.new("secp256k1_ecdsa_signature *")
    if not _lib.secp256k1_ecdsa_sign(_CTX.ctx, sig, bytes(digest), bytes(privkey), _ffi.NULL, _ffi.NULL):
        raise KeyDerivationError("signing failed")
    return sig


def ecdsa_sign(privkey: bytes, digest: bytes) -> bytes:
    """DER signature of a 32-byte digest (RFC6979 nonce, low-S), without a sighash byte."""
    return _ecdsa.cdata_to_der(_sign(privkey, digest))


def ecdsa_sign_compact(privkey: bytes, digest: bytes) -> bytes:
    """`ecdsa_sign` in the 64-byte compact form BOLT 2 messages carry (no DER round trip)."""
    return _ecdsa.serialize_compact(_sign(privkey, digest))


def ecdsa_verify(pubkey: bytes, der_signature: bytes, digest: bytes) -> bool:
    """True if `der_signature` is a valid signature of `digest` by `pubkey`; False for anything malformed."""
    sig = _ffi.new("secp256k1_ecdsa_signature *")
    try:
        der = bytes(der_signature)
        if not _lib.secp256k1_ecdsa_signature_parse_der(_CTX.ctx, sig, der, len(der)):
            return False
        return _verify_parsed(pubkey, sig, digest)
    except (ValueError, TypeError):
        return False


def ecdsa_verify_compact(pubkey: bytes, compact_signature: bytes, digest: bytes) -> bool:
    """`ecdsa_verify` of a 64-byte compact signature (r || s, as BOLT 2 messages carry it), without going
    through DER."""
    sig = _ffi.new("secp256k1_ecdsa_signature *")
    try:
        if len(compact_signature) != 64 or not _lib.secp256k1_ecdsa_signature_parse_compact(
                _CTX.ctx, sig, bytes(compact_signature)):
            return False
        return _verify_parsed(pubkey, sig, digest)
    except (ValueError, TypeError):
        return False


def _verify_parsed(pubkey: bytes, sig: object, digest: bytes) -> bool:
    if len(digest) != 32 or len(pubkey) != 33:
        return False
    # libsecp256k1 verifies lower-S signatures only: BOLT #2's "non-compliant with LOW-S-standard rule" is a
    # failed verification.
    return bool(_lib.secp256k1_ecdsa_verify(_CTX.ctx, sig, bytes(digest), _load(bytes(pubkey))))


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
