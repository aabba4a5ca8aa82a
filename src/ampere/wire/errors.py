"""Typed wire errors that carry their protocol consequence.

Every error raised while decoding what a peer sent says what the connection should do next
(`Action`), so one place in the runtime maps errors to `warning`/`error`/disconnect
(practice 6 of the style guide).  `EncodeError` is different: it reports a bug on our side
(a value that cannot be encoded), never something a peer did, so it is a plain ValueError.
"""

from __future__ import annotations

import enum


class Action(enum.Enum):
    """What the peer connection does about an error."""

    IGNORE = "ignore"  # drop the offending message, carry on
    WARN = "warn"  # send a `warning`, carry on
    DISCONNECT = "disconnect"  # (send a warning if possible, then) close the connection


class WireError(Exception):
    """Base of all errors caused by bytes received from a peer."""

    action: Action = Action.DISCONNECT

    def __init__(self, message: str, *, action: Action | None = None) -> None:
        super().__init__(message)
        if action is not None:
            self.action = action


class DecodeError(WireError):
    """A message, TLV stream or field could not be decoded.

    BOLT #1: "upon receiving a known message with insufficient length for the contents:
    MUST close the connection."  and for an invalid `extension`: "MUST close the connection."
    """


class TruncatedError(DecodeError):
    """The data ended before a field did."""


class InvalidValueError(DecodeError):
    """A field's bytes are not a valid value of its type (bad point, non-minimal tu64, bad UTF-8...)."""


class TlvError(DecodeError):
    """A TLV stream breaks a BOLT #1 rule: "MUST fail to parse the `tlv_stream`".

    Where it is known, `tlv_type` is the record at fault and `offset` the position of that record's
    start within the stream (None for a bad value inside a known record): BOLT #4's
    `invalid_onion_payload` failure reports both.
    """

    tlv_type: int | None = None
    offset: int | None = None

    def at(self, tlv_type: int | None, offset: int | None) -> TlvError:
        self.tlv_type, self.offset = tlv_type, offset
        return self


class TlvOrderError(TlvError):
    """Record types not strictly increasing (which includes duplicates)."""


class UnknownEvenTlvError(TlvError):
    """An even record type we do not know: "if `type` is even: MUST fail to parse the `tlv_stream`"."""

    def __init__(self, tlv_type: int, stream: str, offset: int | None = None) -> None:
        super().__init__(f"unknown even TLV type {tlv_type} in stream {stream!r}")
        self.tlv_type, self.offset = tlv_type, offset


class UnknownEvenMessageError(WireError):
    """BOLT #1: "upon receiving a message of _even_, unknown type: MUST close the connection"."""

    def __init__(self, msg_type: int) -> None:
        super().__init__(f"unknown even message type {msg_type}")
        self.msg_type = msg_type


class HandshakeError(WireError):
    """BOLT #8 handshake failure: the connection is terminated without any further messages.

    `reason` names the failure as the spec's test vectors do ("ACT1_BAD_VERSION", "ACT2_BAD_TAG",
    "ACT3_READ_FAILED", ...), or "TIMEOUT".
    """

    def __init__(self, message: str, *, reason: str = "", action: Action | None = None) -> None:
        super().__init__(message, action=action)
        self.reason = reason


class TransportError(WireError):
    """BOLT #8 framing failure after the handshake (bad MAC, truncated frame)."""

    def __init__(self, message: str, *, reason: str = "", action: Action | None = None) -> None:
        super().__init__(message, action=action)
        self.reason = reason


class ConnectionClosed(TransportError):
    """The peer closed the connection cleanly between two messages."""


class FeatureError(WireError):
    """The peer's features are unacceptable (unknown even bit, missing dependency)."""


class ProtocolError(WireError):
    """A well-formed message that breaks a BOLT #1 rule (e.g. an unsolicited `pong`)."""


class EncodeError(ValueError):
    """A value given to the encoder cannot be encoded: a bug on our side, not the peer's."""
