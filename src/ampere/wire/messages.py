"""Every message class generated from the spec CSVs, as module attributes.

    from ampere.wire.messages import Init, Ping, UpdateAddHtlc, TemporaryChannelFailure

Classes are frozen dataclasses named in CamelCase after the CSV name; see codec.py for the naming
of fields, TLV streams and records.  `MESSAGE_TYPES` maps peer message types to classes,
`ONION_FAILURE_TYPES` BOLT #4 failure codes (flags included) to classes, and `by_name` finds a class
by CSV or class name.
"""

from __future__ import annotations

from .codec import (
    BADONION,
    MESSAGE_TYPES,
    NODE,
    ONION_FAILURE_TYPES,
    PERM,
    SCHEMA,
    UPDATE,
    UnknownMessage,
    by_name,
    decode_message,
    decode_onion_failure,
    decode_subtype,
    decode_tlv_stream,
    encode_message,
    encode_onion_failure,
    encode_subtype,
    encode_tlv_stream,
)

globals().update(SCHEMA.classes)

__all__ = [
    "BADONION", "MESSAGE_TYPES", "NODE", "ONION_FAILURE_TYPES", "PERM", "UPDATE", "UnknownMessage", "by_name",
    "decode_message", "decode_onion_failure", "decode_subtype", "decode_tlv_stream", "encode_message",
    "encode_onion_failure", "encode_subtype", "encode_tlv_stream", *sorted(SCHEMA.classes),
]

