"""Signatures of gossip messages: what is signed, verifying, and building our own messages.

Signatures on the wire are 64-byte compact (r || s).  Our own messages are signed through a
callback `sign(digest32) -> 64-byte compact signature` (`privkey_signer` makes one from a raw key: tests,
benchmarks, synthetic graphs) or by a GossipSigner that is handed the whole unsigned message (the node's
Signer), so the node key never leaves the signer and the signer sees what it signs.

Offsets below count from the start of the encoded message, its 2-byte type included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

import coincurve
from coincurve._libsecp256k1 import ffi, lib

from ampere.primitives.crypto import sha256d
from ampere.wire.messages import ChannelAnnouncement, ChannelUpdate, NodeAnnouncement

from .addresses import Address, alias_bytes, encode_addresses

SignFn = Callable[[bytes], bytes]

# BOLT #7 channel_announcement: "MUST compute the double-SHA256 hash `h` of the message, beginning
# at offset 256, up to the end of the message." (offset 256 of the payload: after the 4 signatures)
CHANNEL_ANNOUNCEMENT_SIGNED_FROM = 2 + 4 * 64
# BOLT #7 node_announcement / channel_update: "the double-SHA256 of the entire remaining packet
# after `signature`".
NODE_ANNOUNCEMENT_SIGNED_FROM = 2 + 64
CHANNEL_UPDATE_SIGNED_FROM = 2 + 64

ZERO_SIG = bytes(64)

# channel_flags / message_flags bits (BOLT #7 channel_update).
DIRECTION_BIT = 1
DISABLE_BIT = 2
MUST_BE_ONE = 1
DONT_FORWARD = 2


def channel_announcement_digest(raw: bytes) -> bytes:
    return sha256d(raw[CHANNEL_ANNOUNCEMENT_SIGNED_FROM:])


def node_announcement_digest(raw: bytes) -> bytes:
    return sha256d(raw[NODE_ANNOUNCEMENT_SIGNED_FROM:])


def channel_update_digest(raw: bytes) -> bytes:
    return sha256d(raw[CHANNEL_UPDATE_SIGNED_FROM:])


_DIGESTS = {256: channel_announcement_digest, 257: node_announcement_digest, 258: channel_update_digest}


def gossip_digest(raw: bytes) -> bytes:
    """What the signature of a gossip message (its type first) covers: BOLT #7's double-SHA256 from the first
    byte after the signature(s).  A signer computes it itself, so it only ever signs gossip."""
    digest = _DIGESTS.get(int.from_bytes(raw[:2], "big")) if len(raw) >= 2 else None
    if digest is None:
        raise ValueError("not a channel_announcement, node_announcement or channel_update")
    return digest(raw)


class GossipSigner(Protocol):
    """A key held by a signer (the node's Signer; a ChannelSigner for the funding key): signs a whole unsigned
    gossip message, so it sees what it signs."""

    def sign_gossip(self, message: bytes) -> bytes: ...


def _sign(sign: SignFn | GossipSigner, raw: bytes) -> bytes:
    if hasattr(sign, "sign_gossip"):
        return sign.sign_gossip(raw)
    return sign(gossip_digest(raw))


_CTX = coincurve.context.GLOBAL_CONTEXT.ctx


def verify_compact(pubkey: bytes, signature: bytes, digest: bytes) -> bool:
    """True if the 64-byte compact `signature` is a valid ECDSA signature of `digest` by `pubkey`.

    High-S signatures are accepted (normalised first): BOLT #7 notes "ECDSA signatures are
    malleable. So, an intermediate node ... can rebroadcast it just by changing the `s` component
    of signature with `-s`", which does not make the signature any less valid.  Malformed keys or
    signatures give False, never an exception.
    """
    if len(signature) != 64 or len(digest) != 32:
        return False
    sig = ffi.new("secp256k1_ecdsa_signature *")
    if not lib.secp256k1_ecdsa_signature_parse_compact(_CTX, sig, signature):
        return False
    lib.secp256k1_ecdsa_signature_normalize(_CTX, sig, sig)
    pub = _parsed_pubkey(bytes(pubkey))
    if pub is None:
        return False
    return bool(lib.secp256k1_ecdsa_verify(_CTX, sig, digest, pub))


# Parsing a compressed key costs a square root: gossip verifies the same node keys over and over,
# so parsed keys are kept (a bounded cache, emptied when full).
_PUBKEY_CACHE: dict[bytes, object] = {}
_PUBKEY_CACHE_MAX = 200_000


def _parsed_pubkey(pubkey: bytes):
    pub = _PUBKEY_CACHE.get(pubkey)
    if pub is None:
        pub = ffi.new("secp256k1_pubkey *")
        if not lib.secp256k1_ec_pubkey_parse(_CTX, pub, pubkey, len(pubkey)):
            return None
        if len(_PUBKEY_CACHE) >= _PUBKEY_CACHE_MAX:
            _PUBKEY_CACHE.clear()
        _PUBKEY_CACHE[pubkey] = pub
    return pub


def privkey_signer(privkey: bytes) -> SignFn:
    """A signing callback for a raw 32-byte secret (RFC6979 nonces, low-S)."""
    key = coincurve.PrivateKey(bytes(privkey))

    def sign(digest: bytes) -> bytes:
        # sign_recoverable gives r || s || recid without a DER round trip; drop the recid.
        return key.sign_recoverable(digest, hasher=None)[:64]

    return sign


# ---------------------------------------------------------------------------------------------
# channel_update


def make_channel_update(
    *,
    chain_hash: bytes,
    short_channel_id: int,
    timestamp: int,
    direction: int,
    cltv_expiry_delta: int,
    htlc_minimum_msat: int,
    htlc_maximum_msat: int,
    fee_base_msat: int,
    fee_proportional_millionths: int,
    sign: SignFn | GossipSigner,
    disabled: bool = False,
    dont_forward: bool = False,
) -> ChannelUpdate:
    """A signed `channel_update` for our side (`direction` 0 if we are node_id_1, else 1)."""
    if direction not in (0, 1):
        raise ValueError("direction must be 0 or 1")
    # BOLT #7: "MUST set `timestamp` to greater than 0"
    if timestamp <= 0:
        raise ValueError("channel_update timestamp must be greater than 0")
    # BOLT #7: "MUST set `htlc_minimum_msat` to less than or equal to `htlc_maximum_msat`."
    if htlc_minimum_msat > htlc_maximum_msat:
        raise ValueError("htlc_minimum_msat is above htlc_maximum_msat")
    unsigned = ChannelUpdate(
        signature=ZERO_SIG,
        chain_hash=chain_hash,
        short_channel_id=short_channel_id,
        timestamp=timestamp,
        # BOLT #7: "MUST set `must_be_one` in `message_flags` to 1." and for unannounced channels
        # "MUST set `dont_forward` to 1 in `message_flags`"
        message_flags=MUST_BE_ONE | (DONT_FORWARD if dont_forward else 0),
        channel_flags=direction | (DISABLE_BIT if disabled else 0),
        cltv_expiry_delta=cltv_expiry_delta,
        htlc_minimum_msat=htlc_minimum_msat,
        fee_base_msat=fee_base_msat,
        fee_proportional_millionths=fee_proportional_millionths,
        htlc_maximum_msat=htlc_maximum_msat,
    )
    return replace(unsigned, signature=_sign(sign, unsigned.to_bytes()))


# ---------------------------------------------------------------------------------------------
# node_announcement


def make_node_announcement(
    *,
    node_id: bytes,
    timestamp: int,
    sign: SignFn | GossipSigner,
    alias: str | bytes = b"",
    rgb_color: bytes = b"\x00\x00\x00",
    features: bytes = b"",
    addresses: Sequence[Address] | bytes = (),
) -> NodeAnnouncement:
    """A signed `node_announcement`.  BOLT #7: "MUST set `timestamp` to be greater than that of any
    previous `node_announcement` it has previously created" -- the caller keeps that promise."""
    alias_raw = alias_bytes(alias) if isinstance(alias, str) else bytes(alias).ljust(32, b"\x00")
    if len(alias_raw) != 32 or len(rgb_color) != 3:
        raise ValueError("alias must fit 32 bytes and rgb_color be 3 bytes")
    addr_raw = bytes(addresses) if isinstance(addresses, (bytes, bytearray)) else encode_addresses(list(addresses))
    unsigned = NodeAnnouncement(
        signature=ZERO_SIG, features=features, timestamp=timestamp, node_id=node_id,
        rgb_color=bytes(rgb_color), alias=alias_raw, addresses=addr_raw,
    )
    return replace(unsigned, signature=_sign(sign, unsigned.to_bytes()))


# ---------------------------------------------------------------------------------------------
# channel_announcement


def unsigned_channel_announcement(
    *,
    chain_hash: bytes,
    short_channel_id: int,
    node_id_a: bytes,
    node_id_b: bytes,
    bitcoin_key_a: bytes,
    bitcoin_key_b: bytes,
    features: bytes = b"",
) -> ChannelAnnouncement:
    """The announcement with zero signatures, node ids put in BOLT #7 order.

    BOLT #7: "MUST set `node_id_1` and `node_id_2` to the public keys of the two nodes operating the
    channel, such that `node_id_1` is the lexicographically-lesser of the two compressed keys" and
    "MUST set `bitcoin_key_1` and `bitcoin_key_2` to `node_id_1` and `node_id_2`'s respective
    `funding_pubkey`s."
    """
    if node_id_a == node_id_b:
        raise ValueError("a channel joins two different nodes")
    if node_id_b < node_id_a:
        node_id_a, node_id_b = node_id_b, node_id_a
        bitcoin_key_a, bitcoin_key_b = bitcoin_key_b, bitcoin_key_a
    return ChannelAnnouncement(
        node_signature_1=ZERO_SIG, node_signature_2=ZERO_SIG, bitcoin_signature_1=ZERO_SIG,
        bitcoin_signature_2=ZERO_SIG, features=features, chain_hash=chain_hash,
        short_channel_id=short_channel_id, node_id_1=node_id_a, node_id_2=node_id_b,
        bitcoin_key_1=bitcoin_key_a, bitcoin_key_2=bitcoin_key_b,
    )


def announcement_signatures(unsigned: ChannelAnnouncement, sign_node: SignFn | GossipSigner,
                            sign_bitcoin: SignFn | GossipSigner) -> tuple[bytes, bytes]:
    """Our (node_signature, bitcoin_signature) for `announcement_signatures` (BOLT #7: "created by
    constructing a `channel_announcement` message ... and signing it with the secrets matching an
    endpoint's `node_id` and `bitcoin_key`")."""
    raw = unsigned.to_bytes()
    return _sign(sign_node, raw), _sign(sign_bitcoin, raw)


def complete_channel_announcement(
    unsigned: ChannelAnnouncement,
    our_node_id: bytes,
    our_signatures: tuple[bytes, bytes],
    their_signatures: tuple[bytes, bytes],
) -> ChannelAnnouncement:
    """Put both sides' (node_signature, bitcoin_signature) pairs into their slots and check all four.

    Raises ValueError if any signature does not verify (e.g. a peer's bad `announcement_signatures`).
    """
    if our_node_id == unsigned.node_id_1:
        (n1, b1), (n2, b2) = our_signatures, their_signatures
    elif our_node_id == unsigned.node_id_2:
        (n1, b1), (n2, b2) = their_signatures, our_signatures
    else:
        raise ValueError("our node id is not in this channel_announcement")
    msg = replace(unsigned, node_signature_1=n1, node_signature_2=n2, bitcoin_signature_1=b1, bitcoin_signature_2=b2)
    digest = channel_announcement_digest(unsigned.to_bytes())
    for key, sig, what in ((msg.node_id_1, n1, "node_signature_1"), (msg.node_id_2, n2, "node_signature_2"),
                           (msg.bitcoin_key_1, b1, "bitcoin_signature_1"), (msg.bitcoin_key_2, b2, "bitcoin_signature_2")):
        if not verify_compact(key, sig, digest):
            raise ValueError(f"{what} does not verify")
    return msg


def sign_channel_announcement(unsigned: ChannelAnnouncement, node_signers: tuple[SignFn, SignFn],
                              bitcoin_signers: tuple[SignFn, SignFn]) -> ChannelAnnouncement:
    """All four signatures at once, when both sides' keys are at hand (tests, benchmarks)."""
    digest = channel_announcement_digest(unsigned.to_bytes())
    return replace(unsigned, node_signature_1=node_signers[0](digest), node_signature_2=node_signers[1](digest),
                   bitcoin_signature_1=bitcoin_signers[0](digest), bitcoin_signature_2=bitcoin_signers[1](digest))
