"""Every message class generated from the spec CSVs, as module attributes.

    from ampere.wire.messages import Init, Ping, UpdateAddHtlc, TemporaryChannelFailure

The classes live in `generated/` (written by `python -m ampere.wire.generate`); see schema.py for the
naming of classes, fields, TLV streams and records.  `MESSAGE_TYPES` maps peer message types to
classes, `ONION_FAILURE_TYPES` BOLT #4 failure codes (flags included) to classes, and `by_name` finds
a class by CSV or class name.
"""

from __future__ import annotations

from .codec import (
    BADONION,
    MESSAGE_TYPES,
    NODE,
    ONION_FAILURE_TYPES,
    PERM,
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
from .generated.bolt12_wire import *  # noqa: F403
from .generated.onion_wire import *  # noqa: F403
from .generated.peer_wire import *  # noqa: F403

__all__ = [
    "BADONION", "MESSAGE_TYPES", "NODE", "ONION_FAILURE_TYPES", "PERM", "UPDATE", "UnknownMessage", "by_name",
    "decode_message", "decode_onion_failure", "decode_subtype", "decode_tlv_stream", "encode_message",
    "encode_onion_failure", "encode_subtype", "encode_tlv_stream",
]
__all__ += [name for mod in ("bolt12_wire", "onion_wire", "peer_wire")
            for name in __import__(f"ampere.wire.generated.{mod}", fromlist=["__all__"]).__all__]
