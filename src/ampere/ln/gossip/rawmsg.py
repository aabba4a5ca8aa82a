"""Fast field access to raw gossip messages we already trust (validated once, or read back from
our own store), without going through the generic codec.

The layouts are BOLT #7's; every function takes the whole message, 2-byte type included, and
raises RawMessageError if it is too short or of the wrong type.  Points are not re-validated:
these are only for bytes that passed validation before.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

CHANNEL_ANNOUNCEMENT = 256
NODE_ANNOUNCEMENT = 257
CHANNEL_UPDATE = 258

_CU = struct.Struct(">H64s32sQIBBHQIIQ")  # type .. htlc_maximum_msat: 138 bytes
_U16 = struct.Struct(">H")


class RawMessageError(ValueError):
    pass


def msg_type(raw: bytes) -> int:
    if len(raw) < 2:
        raise RawMessageError("message without a type")
    return int.from_bytes(raw[:2], "big")


class UpdateFields(NamedTuple):
    short_channel_id: int
    timestamp: int
    message_flags: int
    channel_flags: int
    cltv_expiry_delta: int
    htlc_minimum_msat: int
    fee_base_msat: int
    fee_proportional_millionths: int
    htlc_maximum_msat: int
    chain_hash: bytes


def channel_update_fields(raw: bytes) -> UpdateFields:
    if len(raw) < _CU.size:
        raise RawMessageError(f"channel_update of {len(raw)} bytes")
    t, _sig, chain, scid, ts, mflags, cflags, cltv, hmin, base, ppm, hmax = _CU.unpack_from(raw)
    if t != CHANNEL_UPDATE:
        raise RawMessageError(f"type {t} is not channel_update")
    return UpdateFields(scid, ts, mflags, cflags, cltv, hmin, base, ppm, hmax, chain)


def channel_update_values(raw: bytes) -> tuple:
    """channel_update_fields' values as a plain tuple, in wire order: (type, signature, chain_hash,
    short_channel_id, timestamp, message_flags, channel_flags, cltv_expiry_delta,
    htlc_minimum_msat, fee_base_msat, fee_proportional_millionths, htlc_maximum_msat)."""
    if len(raw) < _CU.size or raw[0] != CHANNEL_UPDATE >> 8 or raw[1] != CHANNEL_UPDATE & 0xFF:
        raise RawMessageError("not a channel_update")
    return _CU.unpack_from(raw)


# The policy part of a channel_update (timestamp .. htlc_maximum_msat), the signature, chain hash
# and short_channel_id skipped (no bytes objects made for them).
_CU_POLICY = struct.Struct(">106xIBBHQIIQ")
# (timestamp, message_flags, channel_flags, cltv_expiry_delta, htlc_minimum_msat, fee_base_msat,
#  fee_proportional_millionths, htlc_maximum_msat) of a whole channel_update whose type is known.
channel_update_policy = _CU_POLICY.unpack_from


def channel_update_scid_and_direction(raw: bytes) -> tuple[int, int]:
    if len(raw) < _CU.size:
        raise RawMessageError(f"channel_update of {len(raw)} bytes")
    return int.from_bytes(raw[98:106], "big"), raw[111] & 1


class AnnouncementFields(NamedTuple):
    short_channel_id: int
    node_id_1: bytes
    node_id_2: bytes
    bitcoin_key_1: bytes
    bitcoin_key_2: bytes
    features: bytes
    chain_hash: bytes


def channel_announcement_fields(raw: bytes) -> AnnouncementFields:
    pos = 2 + 256
    if len(raw) < pos + 2 or msg_type(raw) != CHANNEL_ANNOUNCEMENT:
        raise RawMessageError("not a channel_announcement")
    (flen,) = _U16.unpack_from(raw, pos)
    pos += 2
    end = pos + flen + 32 + 8 + 4 * 33
    if len(raw) < end:
        raise RawMessageError("channel_announcement too short")
    features = bytes(raw[pos : pos + flen])
    pos += flen
    chain = bytes(raw[pos : pos + 32])
    scid = int.from_bytes(raw[pos + 32 : pos + 40], "big")
    pos += 40
    keys = [bytes(raw[pos + 33 * i : pos + 33 * (i + 1)]) for i in range(4)]
    return AnnouncementFields(scid, keys[0], keys[1], keys[2], keys[3], features, chain)


class NodeAnnFields(NamedTuple):
    node_id: bytes
    timestamp: int
    features: bytes
    rgb_color: bytes
    alias: bytes
    addresses: bytes


def node_announcement_fields(raw: bytes) -> NodeAnnFields:
    pos = 2 + 64
    if len(raw) < pos + 2 or msg_type(raw) != NODE_ANNOUNCEMENT:
        raise RawMessageError("not a node_announcement")
    (flen,) = _U16.unpack_from(raw, pos)
    pos += 2
    if len(raw) < pos + flen + 4 + 33 + 3 + 32 + 2:
        raise RawMessageError("node_announcement too short")
    features = bytes(raw[pos : pos + flen])
    pos += flen
    ts = int.from_bytes(raw[pos : pos + 4], "big")
    node_id = bytes(raw[pos + 4 : pos + 37])
    rgb = bytes(raw[pos + 37 : pos + 40])
    alias = bytes(raw[pos + 40 : pos + 72])
    (alen,) = _U16.unpack_from(raw, pos + 72)
    pos += 74
    if len(raw) < pos + alen:
        raise RawMessageError("node_announcement addresses truncated")
    return NodeAnnFields(node_id, ts, features, rgb, alias, bytes(raw[pos : pos + alen]))


def node_announcement_node_id(raw: bytes) -> bytes:
    (flen,) = _U16.unpack_from(raw, 66)
    pos = 68 + flen + 4
    return bytes(raw[pos : pos + 33])
