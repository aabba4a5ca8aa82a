"""BIP32 hierarchical deterministic keys: master key from a seed, private and public child
derivation, and the xprv/xpub (tprv/tpub) serialization.

BIP32: "Generate a seed byte sequence S ... Calculate I = HMAC-SHA512(Key = "Bitcoin seed", Data = S);
split I into two 32-byte sequences, IL and IR; use parse256(IL) as master secret key, and IR as
master chain code.  In case parse256(IL) is 0 or parse256(IL) >= n, the master key is invalid."
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import coincurve

from ampere.primitives.base58 import Base58Error, b58check_decode, b58check_encode
from ampere.primitives.crypto import SECP256K1_ORDER, hash160

__all__ = ["Bip32Error", "ExtKey", "HARDENED", "VERSIONS", "parse_path"]

HARDENED = 0x80000000

# Serialization version bytes: (private, public).  BIP32: mainnet 0x0488ADE4 / 0x0488B21E,
# testnet 0x04358394 / 0x043587CF (every test network, regtest included, uses the testnet pair).
VERSIONS = {"main": (0x0488ADE4, 0x0488B21E), "test": (0x04358394, 0x043587CF)}
_PRIVATE_VERSIONS = {v[0]: k for k, v in VERSIONS.items()}
_PUBLIC_VERSIONS = {v[1]: k for k, v in VERSIONS.items()}


class Bip32Error(ValueError):
    """An invalid seed, derivation (IL >= n or a zero key), path or serialized key."""


def _hmac512(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha512).digest()


@dataclass(frozen=True)
class ExtKey:
    chain_code: bytes
    pubkey: bytes  # 33-byte compressed public key
    privkey: bytes | None = None  # 32 bytes, or None for an extended public key
    depth: int = 0
    parent_fingerprint: bytes = b"\x00\x00\x00\x00"
    child_number: int = 0
    net: str = "main"  # "main" or "test": only the serialization's version bytes depend on it

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_seed(cls, seed: bytes, net: str = "main") -> "ExtKey":
        # BIP32: the seed is between 128 and 512 bits.
        if not 16 <= len(seed) <= 64:
            raise Bip32Error("seed must be 16 to 64 bytes")
        i = _hmac512(b"Bitcoin seed", seed)
        il, ir = i[:32], i[32:]
        k = int.from_bytes(il, "big")
        if k == 0 or k >= SECP256K1_ORDER:
            raise Bip32Error("invalid master key (IL is 0 or >= n)")
        return cls(ir, coincurve.PrivateKey(il).public_key.format(compressed=True), il, net=net)

    @property
    def is_private(self) -> bool:
        return self.privkey is not None

    def neuter(self) -> "ExtKey":
        """The extended public key (N() in BIP32)."""
        return ExtKey(self.chain_code, self.pubkey, None, self.depth, self.parent_fingerprint,
                      self.child_number, self.net)

    def fingerprint(self) -> bytes:
        """BIP32: "the first 32 bits of the identifier", identifier = HASH160(serP(K))."""
        return hash160(self.pubkey)[:4]

    # ---- derivation ---------------------------------------------------------------------
    def child(self, index: int) -> "ExtKey":
        """CKDpriv for a private key, CKDpub for a public one (hardened needs the private key)."""
        if not 0 <= index <= 0xFFFFFFFF:
            raise Bip32Error("child index out of range")
        hardened = index >= HARDENED
        if hardened:
            if self.privkey is None:
                raise Bip32Error("cannot derive a hardened child from a public key")
            data = b"\x00" + self.privkey + index.to_bytes(4, "big")
        else:
            data = self.pubkey + index.to_bytes(4, "big")
        i = _hmac512(self.chain_code, data)
        il, ir = i[:32], i[32:]
        tweak = int.from_bytes(il, "big")
        # BIP32: "In case parse256(IL) >= n or ki = 0 [Ki is the point at infinity], the resulting
        # key is invalid, and one should proceed with the next value for i."  Callers decide.
        if tweak >= SECP256K1_ORDER:
            raise Bip32Error(f"invalid child {index} (IL >= n)")
        fpr = self.fingerprint()
        if self.privkey is not None:
            k = (tweak + int.from_bytes(self.privkey, "big")) % SECP256K1_ORDER
            if k == 0:
                raise Bip32Error(f"invalid child {index} (zero key)")
            priv = k.to_bytes(32, "big")
            pub = coincurve.PrivateKey(priv).public_key.format(compressed=True)
        else:
            priv = None
            try:
                pub = coincurve.PublicKey(self.pubkey).add(il).format(compressed=True)
            except ValueError:
                raise Bip32Error(f"invalid child {index} (point at infinity)") from None
        return ExtKey(ir, pub, priv, self.depth + 1, fpr, index, self.net)

    def derive(self, path: str | list[int]) -> "ExtKey":
        """Derive along "m/0'/1/2h" (or a list of indexes) from this key."""
        key = self
        for index in (parse_path(path) if isinstance(path, str) else path):
            key = key.child(index)
        return key

    def private_key(self) -> coincurve.PrivateKey:
        if self.privkey is None:
            raise Bip32Error("extended public key has no private key")
        return coincurve.PrivateKey(self.privkey)

    # ---- serialization ------------------------------------------------------------------
    def serialize(self) -> bytes:
        priv_v, pub_v = VERSIONS[self.net]
        if self.privkey is not None:
            version, key = priv_v, b"\x00" + self.privkey
        else:
            version, key = pub_v, self.pubkey
        return (version.to_bytes(4, "big") + bytes([self.depth]) + self.parent_fingerprint
                + self.child_number.to_bytes(4, "big") + self.chain_code + key)

    def to_base58(self) -> str:
        return b58check_encode(self.serialize())

    def xpub(self) -> str:
        return self.neuter().to_base58()

    @classmethod
    def from_base58(cls, text: str) -> "ExtKey":
        try:
            raw = b58check_decode(text)
        except Base58Error as e:
            raise Bip32Error(f"invalid extended key: {e}") from None
        if len(raw) != 78:
            raise Bip32Error("invalid extended key length")
        version = int.from_bytes(raw[:4], "big")
        depth, fpr, child = raw[4], raw[5:9], int.from_bytes(raw[9:13], "big")
        chain, key = raw[13:45], raw[45:]
        if depth == 0 and (fpr != b"\x00" * 4 or child != 0):
            raise Bip32Error("master key with a parent fingerprint or child number")
        if version in _PRIVATE_VERSIONS:
            if key[0] != 0:
                raise Bip32Error("private key data must start with 0x00")
            k = int.from_bytes(key[1:], "big")
            if not 0 < k < SECP256K1_ORDER:
                raise Bip32Error("private key out of range")
            pub = coincurve.PrivateKey(key[1:]).public_key.format(compressed=True)
            return cls(chain, pub, key[1:], depth, fpr, child, _PRIVATE_VERSIONS[version])
        if version in _PUBLIC_VERSIONS:
            try:
                coincurve.PublicKey(key)
            except ValueError:
                raise Bip32Error("invalid public key") from None
            if key[0] not in (2, 3):
                raise Bip32Error("invalid public key prefix")
            return cls(chain, key, None, depth, fpr, child, _PUBLIC_VERSIONS[version])
        raise Bip32Error(f"unknown extended key version {version:#010x}")


def parse_path(path: str) -> list[int]:
    """"m/0'/1/2h" -> [0x80000000, 1, 0x80000002]; a leading "m" is optional."""
    parts = [p for p in path.strip().split("/") if p != ""]
    if parts and parts[0] in ("m", "M"):
        parts = parts[1:]
    out = []
    for p in parts:
        hardened = p[-1:] in ("'", "h", "H")
        digits = p[:-1] if hardened else p
        if not digits.isdigit():
            raise Bip32Error(f"bad path element {p!r}")
        n = int(digits)
        if n >= HARDENED:
            raise Bip32Error(f"path element {p!r} out of range")
        out.append(n + HARDENED if hardened else n)
    return out
