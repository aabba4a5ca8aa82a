"""The wire layer: message codec generated from the spec CSVs, the BOLT #8 state machine (its socket wrapper
is ampere.node.net.transport), BOLT #1 logic.

The codec's entry points are re-exported here lazily (so importing `ampere.wire.noise` alone does
not build the message classes):  `from ampere.wire import decode_message, encode_message`.
"""

from __future__ import annotations

from typing import Any

_CODEC_EXPORTS = {
    "UnknownMessage", "by_name", "decode_message", "encode_message", "decode_onion_failure",
    "encode_onion_failure", "decode_tlv_stream", "encode_tlv_stream", "decode_subtype", "encode_subtype",
    "MESSAGE_TYPES", "ONION_FAILURE_TYPES",
}


def __getattr__(name: str) -> Any:
    if name in _CODEC_EXPORTS:
        from . import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'ampere.wire' has no attribute {name!r}")
