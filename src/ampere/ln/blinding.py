"""BOLT 4 route blinding: building blinded paths, reading them as a hop, and paying to them.

Pure functions, no I/O.  A blinded path is the codec's `BlindedPath` (subtype `blinded_path`:
`first_node_id`, `first_path_key`, `path` of `BlindedPathHop`s); the per-hop instructions are the
`encrypted_data_tlv` stream (codec class `EncryptedDataTlv`).

Tour:
  - `create_blinded_path`: the recipient's side (path keys, blinded node ids, encrypted data).
  - `unblind_hop`: a hop's side: decrypt `encrypted_recipient_data` with the path key, derive the
    next path key (or take `next_path_key_override`) and the blinded private key for the onion.
  - `aggregate_payinfo`, `amount_to_forward`: the fee arithmetic of blinded payments.
  - `blinded_route_payloads`: the sender's onion payloads for the blinded part of a payment.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ampere.primitives.crypto import SECP256K1_ORDER
from ampere.ln.onion import BlindedNodeKey, NodeKey, OnionConstructionError, _ecdh, derive_hop_keys, generate_key
from ampere.wire import decode_tlv_stream, encode_tlv_stream
from ampere.wire.errors import DecodeError
from ampere.wire.messages import BlindedPath, BlindedPathHop, EncryptedDataTlv
from ampere.wire.types import SciddirOrPubkey

__all__ = [
    "BlindingError",
    "UnblindedHop",
    "BlindedPayinfo",
    "encrypt_recipient_data",
    "decrypt_recipient_data",
    "blinded_node_id",
    "next_path_key",
    "create_blinded_path",
    "unblind_hop",
    "path_key_secrets",
    "decode_encrypted_data",
    "check_allowed_features",
    "encode_encrypted_data",
    "pad_encrypted_data",
    "aggregate_payinfo",
    "amount_to_forward",
    "payinfo_fee",
    "blinded_route_payloads",
]

_NONCE = bytes(12)  # BOLT #4: "ChaCha20-Poly1305 ... and an all-zero nonce"


class BlindingError(ValueError):
    """`encrypted_recipient_data` that does not decrypt or parse: BOLT #4 "MUST return an error"
    (invalid_onion_blinding inside a payment path; drop the message for onion messages)."""


def encrypt_recipient_data(shared_secret: bytes, plaintext: bytes) -> bytes:
    """BOLT #4: "MUST encrypt each `encrypted_data_tlv[i]` with ChaCha20-Poly1305 using the
    corresponding rho_i key and an all-zero nonce"."""
    return ChaCha20Poly1305(generate_key(b"rho", shared_secret)).encrypt(_NONCE, bytes(plaintext), b"")


def decrypt_recipient_data(shared_secret: bytes, ciphertext: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(generate_key(b"rho", shared_secret)).decrypt(_NONCE, bytes(ciphertext), b"")
    except InvalidTag:
        raise BlindingError("encrypted_recipient_data does not decrypt") from None


def blinded_node_id(node_id: bytes, shared_secret: bytes) -> bytes:
    """BOLT #4: B_i = HMAC256("blinded_node_id", ss_i) * N_i."""
    tweak = hmac.new(b"blinded_node_id", shared_secret, hashlib.sha256).digest()
    return PublicKey(bytes(node_id)).multiply(tweak).format(compressed=True)


def next_path_key(path_key: bytes, shared_secret: bytes) -> bytes:
    """BOLT #4: E_{i+1} = SHA256(E_i || ss_i) * E_i."""
    factor = hashlib.sha256(bytes(path_key) + shared_secret).digest()
    return PublicKey(bytes(path_key)).multiply(factor).format(compressed=True)


def create_blinded_path(session_key: bytes, hops: list[tuple[bytes, bytes]]) -> BlindedPath:
    """A blinded path through `hops` = [(node_id, encrypted_data_tlv bytes), ...], first the
    introduction node, last the recipient.  `session_key` is e_0 (BOLT #4: "SHOULD be obtained via
    CSPRNG").  The path key chain is the Sphinx ephemeral key chain: e_{i+1} = SHA256(E_i||ss_i)*e_i."""
    if not hops:
        raise OnionConstructionError("a blinded path needs at least one hop")
    keys = derive_hop_keys(session_key, [node_id for node_id, _ in hops])
    path = tuple(
        BlindedPathHop(
            blinded_node_id=blinded_node_id(node_id, k.shared_secret),
            encrypted_recipient_data=encrypt_recipient_data(k.shared_secret, data),
        )
        for (node_id, data), k in zip(hops, keys)
    )
    return BlindedPath(
        first_node_id=SciddirOrPubkey(pubkey=bytes(hops[0][0])),
        first_path_key=keys[0].ephemeral_pubkey,
        path=path,
    )


def decode_encrypted_data(plaintext: bytes) -> EncryptedDataTlv:
    """Parse a decrypted `encrypted_data_tlv`, applying the reader rules that do not depend on the
    hop's position.  BOLT #4: "If the `encrypted_recipient_data` field ... cannot be decrypted into an
    `encrypted_data_tlv` or contains unknown even fields: MUST return an error"; "MUST return an
    error if ... `encrypted_recipient_data` contains both `short_channel_id` and `next_node_id`".
    `allowed_features` is checked by `check_allowed_features` (the route-blinding vector's final hop
    carries a bit only a test would know)."""
    try:
        data = decode_tlv_stream("encrypted_data_tlv", plaintext)
    except DecodeError as exc:
        raise BlindingError(f"encrypted_data_tlv: {exc}") from None
    if data.short_channel_id is not None and data.next_node_id is not None:
        raise BlindingError("encrypted_data_tlv has both short_channel_id and next_node_id")
    return data


def check_allowed_features(data: EncryptedDataTlv, known_bits: frozenset[int] = frozenset()) -> None:
    """BOLT #4: "MUST return an error if: `encrypted_recipient_data.allowed_features.features`
    contains an unknown feature bit (even if it is odd)"; "If `allowed_features` is missing: MUST
    process the message as if it were present and contained an empty array."  Ampere uses no
    payment features inside blinded paths, so every set bit must be one the caller knows."""
    features = data.allowed_features or b""
    as_int = int.from_bytes(features, "big")
    bit = 0
    while as_int:
        if as_int & 1 and bit not in known_bits:
            raise BlindingError(f"encrypted_data_tlv.allowed_features has unknown bit {bit}")
        as_int >>= 1
        bit += 1


@dataclass(frozen=True)
class UnblindedHop:
    """What a hop learns from its `encrypted_recipient_data`."""

    data: EncryptedDataTlv
    plaintext: bytes
    shared_secret: bytes  # ss_i (the path key ECDH, not the onion's)
    blinded_privkey: bytes | BlindedNodeKey  # b_i (32 bytes, or b_i's ECDH through the signer): peels the onion to B_i
    next_path_key: bytes  # E_{i+1}, or next_path_key_override when given


def path_key_secrets(node_privkey: bytes | PrivateKey | NodeKey,
                     path_key: bytes) -> tuple[bytes, bytes | BlindedNodeKey]:
    """(ss_i, b_i) for path key E_i: ss_i = SHA256(k_i * E_i), b_i = HMAC256("blinded_node_id", ss_i) * k_i.
    One ECDH for both (a relay does this for every onion message, so it is kept to the minimum).  With a
    key held by a signer (a NodeKey), b_i is a BlindedNodeKey that does its ECDH through the signer."""
    try:
        point = PublicKey(bytes(path_key))
    except (ValueError, TypeError):
        raise BlindingError("path_key is not a valid point") from None
    if not isinstance(node_privkey, (bytes, bytearray, PrivateKey)):
        shared = node_privkey.ecdh(point.format())
        return shared, BlindedNodeKey(node_privkey, hmac.new(b"blinded_node_id", shared, hashlib.sha256).digest())
    secret = node_privkey.secret if isinstance(node_privkey, PrivateKey) else bytes(node_privkey)
    shared_secret = _ecdh(secret, point)
    tweak = hmac.new(b"blinded_node_id", shared_secret, hashlib.sha256).digest()
    blinded = int.from_bytes(secret, "big") * int.from_bytes(tweak, "big") % SECP256K1_ORDER
    return shared_secret, blinded.to_bytes(32, "big")


def unblind_hop(node_privkey: bytes | PrivateKey | NodeKey, path_key: bytes, encrypted_recipient_data: bytes,
                secrets: tuple[bytes, bytes | BlindedNodeKey] | None = None) -> UnblindedHop:
    """BOLT #4 reader of `encrypted_recipient_data`: ss_i = SHA256(k_i * E_i), b_i =
    HMAC256("blinded_node_id", ss_i) * k_i, decrypt with rho_i; "If the `encrypted_data_tlv` contains
    a `next_path_key_override`: MUST use it as the next `path_key`".  `secrets`: `path_key_secrets`'
    result when the caller has it already."""
    shared_secret, blinded = secrets if secrets is not None else path_key_secrets(node_privkey, path_key)
    plaintext = decrypt_recipient_data(shared_secret, encrypted_recipient_data)
    data = decode_encrypted_data(plaintext)
    following = data.next_path_key_override or next_path_key(path_key, shared_secret)
    return UnblindedHop(
        data=data,
        plaintext=plaintext,
        shared_secret=shared_secret,
        blinded_privkey=blinded,
        next_path_key=following,
    )


# --- payments over blinded paths -------------------------------------------------------------


@dataclass(frozen=True)
class BlindedPayinfo:
    """The aggregate relay parameters of a blinded path (BOLT 12 `blinded_payinfo`, minus limits)."""

    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int


def aggregate_payinfo(relays: list[tuple[int, int, int]], min_final_cltv_expiry_delta: int = 0) -> BlindedPayinfo:
    """Aggregate [(fee_base_msat, fee_proportional_millionths, cltv_expiry_delta), ...] of the
    non-final hops, in path order.  BOLT #4 computes from the recipient backwards:
    total_fee_base_msat(n+1) = (fee_base_msat(n+1) * 1000000 + total_fee_base_msat(n) *
    (1000000 + fee_proportional_millionths(n+1)) + 1000000 - 1) / 1000000, and likewise
    total_fee_proportional_millionths with the product term; CLTV deltas add up."""
    base = prop = 0
    for fee_base, fee_prop, _ in reversed(relays):
        base = (fee_base * 1_000_000 + base * (1_000_000 + fee_prop) + 999_999) // 1_000_000
        prop = ((prop + fee_prop) * 1_000_000 + prop * fee_prop + 999_999) // 1_000_000
    cltv = sum(delta for _, _, delta in relays) + min_final_cltv_expiry_delta
    return BlindedPayinfo(base, prop, cltv)


def payinfo_fee(amount_msat: int, fee_base_msat: int, fee_proportional_millionths: int) -> int:
    """The fee a sender adds for a blinded path, BOLT #7's formula: fee_base_msat + (amount_to_forward *
    fee_proportional_millionths / 1000000), integer division (blinded-payment-onion-test.json: 100000
    msat over base 10100, 251 ppm is sent as 110125)."""
    return fee_base_msat + amount_msat * fee_proportional_millionths // 1_000_000


def amount_to_forward(amount_msat: int, fee_base_msat: int, fee_proportional_millionths: int) -> int:
    """BOLT #4 (non-final blinded hop): amt_to_forward = ((amount_msat - fee_base_msat) * 1000000 +
    1000000 + fee_proportional_millionths - 1) / (1000000 + fee_proportional_millionths)."""
    return ((amount_msat - fee_base_msat) * 1_000_000 + 1_000_000 + fee_proportional_millionths - 1) // (
        1_000_000 + fee_proportional_millionths
    )


def blinded_route_payloads(
    path: BlindedPath, amount_msat: int, total_amount_msat: int, final_cltv: int
) -> list[tuple[bytes, bytes]]:
    """The onion hops (pubkey, payload TLV bytes) for the blinded part of a payment.

    BOLT #4 writer: "For every node inside a blinded route: MUST include the
    `encrypted_recipient_data` provided by the recipient.  For the first node in the blinded route:
    MUST include the `path_key` provided by the recipient in `current_path_key`.  If it is the final
    node: MUST include `amt_to_forward`, `outgoing_cltv_value` and `total_amount_msat` ... MUST NOT
    include any other tlv field."  The first hop is encrypted to the unblinded introduction node
    ("SHOULD create an unblinded onion payment to `first_node_id`"); the rest to blinded ids.
    """
    from ampere.ln.onion_payload import HopPayload, encode_hop_payload
    from ampere.primitives.amount import Msat

    if path.first_node_id.pubkey is None:
        raise OnionConstructionError("blinded path introduction node given by scid: resolve it first")
    hops: list[tuple[bytes, bytes]] = []
    last = len(path.path) - 1
    for index, hop in enumerate(path.path):
        fields: dict = {"encrypted_recipient_data": hop.encrypted_recipient_data}
        if index == 0:
            fields["current_path_key"] = path.first_path_key
        if index == last:
            fields["amt_to_forward"] = Msat(amount_msat)
            fields["outgoing_cltv_value"] = final_cltv
            fields["total_amount_msat"] = Msat(total_amount_msat)
        pubkey = path.first_node_id.pubkey if index == 0 else hop.blinded_node_id
        hops.append((pubkey, encode_hop_payload(HopPayload(**fields))))
    return hops


def pad_encrypted_data(datas: list[bytes]) -> list[bytes]:
    """Give every `encrypted_data_tlv` of a path the same length with a `padding` record (type 1, the lowest,
    so it goes first).  BOLT #4: "SHOULD add padding data to ensure all `encrypted_data_tlv[i]` have the same
    length" -- otherwise the recipient's hop, with its path_id, stands out by its size."""
    if any(d[:1] == b"\x01" for d in datas):
        raise ValueError("encrypted_data_tlv already padded")
    target = max(len(d) for d in datas) + 2
    out = []
    for d in datas:
        n = target - len(d) - 2
        if n >= 253:
            raise ValueError("encrypted_data_tlv lengths too far apart to pad")
        out.append(bytes([1, n]) + bytes(n) + d)
    return out


def encode_encrypted_data(**fields) -> bytes:
    """`encrypted_data_tlv` bytes from its record values (codec names: padding, short_channel_id,
    next_node_id, path_id, next_path_key_override, payment_relay, payment_constraints, ...)."""
    return encode_tlv_stream("encrypted_data_tlv", fields)
