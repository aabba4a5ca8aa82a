"""BOLT 4 onion messages: building them along a blinded path, and peeling one as a hop.

Pure functions.  An onion message is the codec's `OnionMessage` (`path_key`, `onion_message_packet`);
each hop's payload is the `onionmsg_tlv` stream (codec class `OnionmsgTlv`), whose BOLT 12 records
(invoice_request, invoice, invoice_error) stay raw bytes here because signatures cover those bytes.

BOLT #4: "For consistency, all onion messages use Route Blinding": every hop, the sender's own
prefix included, is reached through a blinded path hop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from coincurve import PrivateKey

from ampere.ln.blinding import (
    BlindingError,
    check_allowed_features,
    create_blinded_path,
    encode_encrypted_data,
    path_key_secrets,
    unblind_hop,
)
from ampere.ln.onion import (
    HOP_PAYLOADS_LEN, OnionConstructionError, OnionError, NodeKey, create_onion, hop_shift_size, peel_onion
)
from ampere.wire import decode_tlv_stream, encode_tlv_stream
from ampere.wire.errors import DecodeError
from ampere.wire.messages import BlindedPath, OnionMessage, OnionmsgTlv
from ampere.wire.types import ShortChannelId

__all__ = [
    "LARGE_PACKET_LEN",
    "OnionMessageError",
    "Forward",
    "Received",
    "prepend_hops",
    "create_onion_message",
    "peel_onion_message",
]

# BOLT #4: the writer "SHOULD set `onion_message_packet` `len` to 1366 or 32834" (66 + payloads).
LARGE_PACKET_LEN = 32834 - 66
# onionmsg_tlv types 64 and above are final-hop payloads (BOLT #4: "Field numbers 64 and above are
# reserved for payloads for the final hop").
_FIRST_PAYLOAD_TYPE = 64


class OnionMessageError(ValueError):
    """An onion message to ignore.  BOLT #4: "If decryption fails, the result is not a valid
    `onionmsg_tlv`, or it contains unknown even types: MUST ignore the message."  Never answered."""


def prepend_hops(session_key: bytes, node_ids: list[bytes], path: BlindedPath) -> BlindedPath:
    """A blinded path from `node_ids[0]` that joins `path`: the sender's own hops to reach an
    introduction node it is not connected to.  BOLT #4 reader of a blinded_path: "MUST set
    `next_path_key_override` in the prior onion payload to `first_path_key`"."""
    if not node_ids:
        return path
    if path.first_node_id.pubkey is None:
        raise OnionConstructionError("introduction node given by scid: resolve it first")
    nexts = list(node_ids[1:]) + [path.first_node_id.pubkey]
    hops = []
    for index, (node_id, next_id) in enumerate(zip(node_ids, nexts)):
        fields = {"next_node_id": next_id}
        if index == len(node_ids) - 1:
            fields["next_path_key_override"] = path.first_path_key
        hops.append((node_id, encode_encrypted_data(**fields)))
    prefix = create_blinded_path(session_key, hops)
    return BlindedPath(first_node_id=prefix.first_node_id, first_path_key=prefix.first_path_key,
                       path=prefix.path + path.path)


def create_onion_message(
    path: BlindedPath,
    final_payload: OnionmsgTlv | dict | None = None,
    *,
    session_key: bytes | None = None,
    packet_len: int | None = None,
) -> tuple[bytes, OnionMessage]:
    """An onion message along `path` (a blinded path whose first node is our peer).

    Returns (first_node_id, message): send `message` to the peer `path.first_node_id`.
    `final_payload` holds the final hop's onionmsg_tlv fields other than encrypted_recipient_data
    (reply_path, invoice_request ...).  BOLT #4 writer: "For the non-final nodes' `onionmsg_tlv`: MUST
    NOT set fields other than `encrypted_recipient_data`"; "MUST NOT use any `associated_data`".
    """
    if path.first_node_id.pubkey is None:
        raise OnionConstructionError("introduction node given by scid: resolve it first")
    if isinstance(final_payload, OnionmsgTlv):
        final_fields = {f: getattr(final_payload, f) for f in OnionmsgTlv.__dataclass_fields__}
    else:
        final_fields = dict(final_payload or {})
    hops = []
    for index, hop in enumerate(path.path):
        fields = dict(final_fields) if index == len(path.path) - 1 else {}
        fields["encrypted_recipient_data"] = hop.encrypted_recipient_data
        hops.append((hop.blinded_node_id, encode_tlv_stream("onionmsg_tlv", fields)))
    if packet_len is None:
        needed = sum(hop_shift_size(len(payload)) for _, payload in hops)
        packet_len = HOP_PAYLOADS_LEN if needed <= HOP_PAYLOADS_LEN else LARGE_PACKET_LEN
    packet, _ = create_onion(session_key or os.urandom(32), hops, b"", packet_len)
    return path.first_node_id.pubkey, OnionMessage(path_key=path.first_path_key, onion_message_packet=packet)


@dataclass(frozen=True)
class Forward:
    """Relay `message` to the next peer, named by node id or by one of our channels."""

    next_node_id: bytes | None
    next_short_channel_id: ShortChannelId | None
    message: OnionMessage


@dataclass(frozen=True)
class Received:
    """An onion message for us."""

    payload: OnionmsgTlv  # the final hop's onionmsg_tlv
    path_id: bytes | None  # from our own encrypted_data_tlv: which of our paths it came by
    raw_payload: bytes


def peel_onion_message(node_privkey: bytes | PrivateKey | NodeKey, message: OnionMessage) -> Forward | Received:
    """Process an incoming onion message (BOLT #4 "The reader" of `onion_message`).

    Raises OnionMessageError for every message the spec says to ignore."""
    try:
        # One ECDH with the path key gives both the blinded key the onion was built for and the key of
        # encrypted_recipient_data (BOLT 4 route blinding).
        secrets = path_key_secrets(node_privkey, message.path_key)
        peeled = peel_onion(secrets[1], message.onion_message_packet, b"", packet_len=None)
    except BlindingError as exc:
        raise OnionMessageError(f"path_key: {exc}") from None
    except OnionError as exc:
        raise OnionMessageError(f"onion: {exc}") from None
    try:
        payload = decode_tlv_stream("onionmsg_tlv", peeled.payload)
    except DecodeError as exc:
        raise OnionMessageError(f"onionmsg_tlv: {exc}") from None
    if payload.encrypted_recipient_data is None:
        raise OnionMessageError("onionmsg_tlv without encrypted_recipient_data")
    try:
        hop = unblind_hop(node_privkey, message.path_key, payload.encrypted_recipient_data, secrets)
        # "if `encrypted_data_tlv` contains `allowed_features`: MUST ignore the message if ...
        # contains an unknown feature bit"
        check_allowed_features(hop.data)
    except BlindingError as exc:
        raise OnionMessageError(str(exc)) from None
    data = hop.data
    if peeled.next_onion is not None:
        # "if the `onionmsg_tlv` contains other tlv fields than `encrypted_recipient_data`: MUST
        # ignore the message.  if the `encrypted_data_tlv` contains `path_id`: MUST ignore the message."
        others = [name for name in ("reply_path", "invoice_request", "invoice", "invoice_error")
                  if getattr(payload, name) is not None]
        if others or payload.unknown:
            raise OnionMessageError("non-final onionmsg_tlv with fields other than encrypted_recipient_data")
        if data.path_id is not None:
            raise OnionMessageError("non-final encrypted_data_tlv with a path_id")
        if data.next_node_id is None and data.short_channel_id is None:
            raise OnionMessageError("non-final encrypted_data_tlv names no next hop")
        return Forward(
            next_node_id=data.next_node_id,
            next_short_channel_id=data.short_channel_id,
            message=OnionMessage(path_key=hop.next_path_key, onion_message_packet=peeled.next_onion),
        )
    # "if the `onionmsg_tlv` contains more than one payload field: MUST ignore the message."
    payload_fields = [name for name in ("invoice_request", "invoice", "invoice_error") if getattr(payload, name) is not None]
    payload_fields += [t for t, _ in payload.unknown if t >= _FIRST_PAYLOAD_TYPE]
    if len(payload_fields) > 1:
        raise OnionMessageError("onionmsg_tlv with more than one payload field")
    return Received(payload=payload, path_id=data.path_id, raw_payload=peeled.payload)
