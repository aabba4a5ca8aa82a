"""BOLT 4 failure messages: the return path of an onion.

Two layers:
  1. The failure *packet* (pure bytes): the erring node builds `hmac || failure_len || failuremsg ||
     pad_len || pad` and obfuscates it (`create_failure_packet`); each hop on the way back XORs in
     its own `ammag` stream (`wrap_failure`); the origin peels the layers with the route's shared
     secrets until an HMAC matches, which names the erring hop (`decode_failure`).
  2. The failure *message* (`failuremsg`): a 2-byte failure code with its data, then an optional
     TLV stream.  `FAILURE_CODES` names every code; `encode_failure_message` and
     `decode_failure_message` convert between bytes and `FailureMessage`, through the wire codec's
     classes generated from onion_wire.csv (`ampere.wire.messages.IncorrectOrUnknownPaymentDetails`
     ...).  The packet layer does not depend on it.
"""

from __future__ import annotations

import hashlib
import hmac
import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ampere.ln.onion import chacha20_stream, generate_key, xor_bytes
from ampere.wire.codec import ONION_FAILURE_TYPES
from ampere.wire.errors import DecodeError, EncodeError

__all__ = [
    "BADONION",
    "PERM",
    "NODE",
    "UPDATE",
    "FAILURE_CODES",
    "FAILURE_NAMES",
    "FailureMessage",
    "FailureMessageError",
    "FailurePacketError",
    "UnreadableFailure",
    "DecodedFailure",
    "DEFAULT_FAILURE_PAD_TO",
    "MAX_ROUTE_LENGTH_FOR_DECODE",
    "failure_code_name",
    "failure_code",
    "is_badonion",
    "is_perm",
    "is_node",
    "is_update",
    "encode_failure_message",
    "decode_failure_message",
    "build_raw_failure_packet",
    "create_failure_packet",
    "wrap_failure",
    "decode_failure",
]

# BOLT #4: "The top byte of `failure_code` can be read as a set of flags:
# * 0x8000 (BADONION): unparsable onion encrypted by sending peer
# * 0x4000 (PERM): permanent failure (otherwise transient)
# * 0x2000 (NODE): node failure (otherwise channel)
# * 0x1000 (UPDATE): new channel update enclosed"
BADONION = 0x8000
PERM = 0x4000
NODE = 0x2000
UPDATE = 0x1000

# BOLT #4 erring node: "SHOULD set `pad` such that the `failure_len` plus `pad_len` is equal to 256."
DEFAULT_FAILURE_PAD_TO = 256
# BOLT #4 origin node: "SHOULD continue decrypting, until the loop has been repeated 27 times
# (maximum route length of tlv payload type)."
MAX_ROUTE_LENGTH_FOR_DECODE = 27

_HMAC_LEN = 32
# Keys for the dummy decryption rounds after the route (or the match): a fixed all-zero secret.
_DUMMY_AMMAG_KEY = generate_key(b"ammag", bytes(32))
_DUMMY_UM_KEY = generate_key(b"um", bytes(32))


# --- the failure code table --------------------------------------------------------------------


# BOLT #4 still defines invalid_realm (PERM|1, no data), which onion_wire.csv no longer lists.
_INVALID_REALM = PERM | 1
FAILURE_CODES: dict[str, int] = dict(sorted(
    [("invalid_realm", _INVALID_REALM), *((cls.NAME, code) for code, cls in ONION_FAILURE_TYPES.items())],
    key=lambda item: (item[1] & 0xFF, item[1])))
FAILURE_NAMES: dict[int, str] = {code: name for name, code in FAILURE_CODES.items()}


def _field_names(cls: Any) -> list[str]:
    """A generated failure class's data fields (its trailing `tlvs` stream is `extra` here)."""
    return [f.name for f in dataclasses.fields(cls) if f.name != "tlvs"]


_FIELD_NAMES: dict[int, list[str]] = {code: _field_names(cls) for code, cls in ONION_FAILURE_TYPES.items()}


def failure_code_name(code: int) -> str:
    """The BOLT 4 name of a failure code; unknown codes get a descriptive placeholder."""
    name = FAILURE_NAMES.get(code)
    return name if name is not None else f"unknown_failure_{code:#06x}"


def failure_code(name: str) -> int:
    try:
        return FAILURE_CODES[name]
    except KeyError:
        raise FailureMessageError(f"unknown failure name {name!r}") from None


def is_badonion(code: int) -> bool:
    return bool(code & BADONION)


def is_perm(code: int) -> bool:
    return bool(code & PERM)


def is_node(code: int) -> bool:
    return bool(code & NODE)


def is_update(code: int) -> bool:
    return bool(code & UPDATE)


# --- failure messages (failuremsg) -------------------------------------------------------------


class FailureMessageError(ValueError):
    """A failure message that cannot be encoded or decoded."""


@dataclass(frozen=True)
class FailureMessage:
    """A decoded `failuremsg`: its code, the fields its code defines, and what follows them.

    `extra` holds the bytes after the defined fields (BOLT #4: "The message data is followed by an
    optional TLV stream"; the origin "MUST ignore any extra bytes in `failuremsg`").
    """

    code: int
    fields: dict[str, int | bytes] = field(default_factory=dict)
    extra: bytes = b""

    @property
    def name(self) -> str:
        return failure_code_name(self.code)

    @property
    def channel_update(self) -> bytes | None:
        value = self.fields.get("channel_update")
        return value if isinstance(value, bytes) else None


def encode_failure_message(code_or_name: int | str, extra: bytes = b"", **fields: int | bytes) -> bytes:
    """Serialize a failure message: `encode_failure_message("incorrect_or_unknown_payment_details",
    htlc_msat=1000, height=800000)`.  Every field the code defines is required; no others are
    accepted.  `channel_update` is the message including its 0x0102 type (BOLT #4: "It is encoded
    *with* the message type prefix")."""
    code = failure_code(code_or_name) if isinstance(code_or_name, str) else code_or_name
    if not 0 <= code <= 0xFFFF:
        raise FailureMessageError(f"failure code {code} out of range")
    cls = ONION_FAILURE_TYPES.get(code)
    wanted = set(_FIELD_NAMES[code]) if cls is not None else set()
    if set(fields) != wanted:
        raise FailureMessageError(f"{failure_code_name(code)} takes fields {sorted(wanted)}, got {sorted(fields)}")
    if cls is None:
        return code.to_bytes(2, "big") + bytes(extra)
    try:
        return cls(**fields).to_bytes() + bytes(extra)
    except EncodeError as e:
        raise FailureMessageError(f"{failure_code_name(code)}: {e}") from None


def decode_failure_message(data: bytes) -> FailureMessage:
    """Parse a `failuremsg`.  Unknown codes decode with no fields (everything after the code in
    `extra`); truncated fields of a known code raise FailureMessageError."""
    data = bytes(data)
    if len(data) < 2:
        raise FailureMessageError("failure message shorter than its 2-byte code")
    code = int.from_bytes(data[:2], "big")
    cls = ONION_FAILURE_TYPES.get(code)
    if cls is None:
        return FailureMessage(code, {}, data[2:])
    try:
        msg = cls.from_bytes(data)
    except DecodeError as e:
        raise FailureMessageError(str(e)) from None
    fields = {name: getattr(msg, name) for name in _FIELD_NAMES[code]}
    # The fields re-encode to the bytes they came from (the decoder accepts minimal encodings only),
    # so what follows them is the extra data.
    fields_end = len(cls(**fields).to_bytes())
    return FailureMessage(code, fields, data[fields_end:])


# --- failure packets (the onion return path) ---------------------------------------------------


class FailurePacketError(ValueError):
    """A failure packet that cannot be built."""


class UnreadableFailure(ValueError):
    """No hop's HMAC matched, or the matching packet is malformed.

    `erring_index` is the hop whose HMAC matched when the packet was authentic but its framing was
    broken; None when no HMAC matched at all (some hop on the path corrupted it).
    """

    def __init__(self, message: str, erring_index: int | None = None):
        super().__init__(message)
        self.erring_index = erring_index


class DecodedFailure(NamedTuple):
    erring_index: int  # 0 = the first hop of the route
    failure_message: bytes

    @property
    def failure_code(self) -> int:
        return int.from_bytes(self.failure_message[:2], "big")


def build_raw_failure_packet(shared_secret: bytes, failure_message: bytes, pad_to: int = DEFAULT_FAILURE_PAD_TO) -> bytes:
    """The erring node's return packet before obfuscation: hmac || failure_len || failuremsg ||
    pad_len || pad, where hmac = HMAC(um, everything after it)."""
    if len(shared_secret) != 32:
        raise FailurePacketError("shared secret must be 32 bytes")
    if len(failure_message) < 2 or len(failure_message) > 0xFFFF:
        raise FailurePacketError(f"failure message of {len(failure_message)} bytes")
    # BOLT #4: "MUST set `pad` such that the `failure_len` plus `pad_len` is at least 256."
    if pad_to < DEFAULT_FAILURE_PAD_TO or pad_to > 0xFFFF:
        raise FailurePacketError(f"pad_to {pad_to} is below the 256-byte minimum")
    pad_len = max(pad_to - len(failure_message), 0)
    body = (
        len(failure_message).to_bytes(2, "big")
        + failure_message
        + pad_len.to_bytes(2, "big")
        + bytes(pad_len)
    )
    mac = hmac.new(generate_key(b"um", shared_secret), body, hashlib.sha256).digest()
    return mac + body


def wrap_failure(shared_secret: bytes, packet: bytes) -> bytes:
    """One hop's obfuscation of a return packet with its `ammag` stream.

    BOLT #4: "Generate the node's `ammag` key, generate the pseudo-random byte streams, and apply
    the result to obfuscate the return packet."  The erring node does this once itself; every
    intermediate node does it again before passing the packet back.
    """
    if len(shared_secret) != 32:
        raise FailurePacketError("shared secret must be 32 bytes")
    return xor_bytes(packet, chacha20_stream(generate_key(b"ammag", shared_secret), len(packet)))


def create_failure_packet(shared_secret: bytes, failure_message: bytes, pad_to: int = DEFAULT_FAILURE_PAD_TO) -> bytes:
    """What an erring node puts in `update_fail_htlc.reason`: the return packet for
    `failure_message`, already obfuscated with its own `ammag` key."""
    return wrap_failure(shared_secret, build_raw_failure_packet(shared_secret, failure_message, pad_to))


def decode_failure(shared_secrets: list[bytes], packet: bytes) -> DecodedFailure:
    """At the origin: find which hop failed and what it said.

    `shared_secrets` are those `create_onion` returned, first hop first.  Raises UnreadableFailure
    when no HMAC matches or the authenticated packet is badly framed; FailurePacketError for a
    shared secret that is not 32 bytes.
    """
    packet = bytes(packet)
    if any(len(secret) != 32 for secret in shared_secrets):
        raise FailurePacketError("shared secrets must be 32 bytes each")
    if len(packet) < _HMAC_LEN + 4:
        raise UnreadableFailure(f"failure packet of {len(packet)} bytes is too short")
    found: DecodedFailure | None = None
    framing_error: UnreadableFailure | None = None
    rounds = max(len(shared_secrets), MAX_ROUTE_LENGTH_FOR_DECODE)
    for index in range(rounds):
        # BOLT #4: "SHOULD continue decrypting, until the loop has been repeated 27 times ...
        # SHOULD use constant `ammag` and `um` keys to obfuscate the route length."  After the
        # route (or the match) the remaining rounds use a fixed dummy secret: same work, no result.
        real = index < len(shared_secrets) and found is None and framing_error is None
        if real:
            ammag_key, um_key = generate_key(b"ammag", shared_secrets[index]), generate_key(b"um", shared_secrets[index])
        else:
            ammag_key, um_key = _DUMMY_AMMAG_KEY, _DUMMY_UM_KEY
        packet = xor_bytes(packet, chacha20_stream(ammag_key, len(packet)))
        mac = hmac.new(um_key, packet[_HMAC_LEN:], hashlib.sha256).digest()
        if not real or not hmac.compare_digest(mac, packet[:_HMAC_LEN]):
            continue
        body = packet[_HMAC_LEN:]
        failure_len = int.from_bytes(body[:2], "big")
        if 2 + failure_len + 2 > len(body):
            framing_error = UnreadableFailure("failure_len overruns the packet", index)
            continue
        pad_len = int.from_bytes(body[2 + failure_len : 4 + failure_len], "big")
        if 4 + failure_len + pad_len != len(body) or failure_len < 2:
            framing_error = UnreadableFailure("failure packet framing is inconsistent", index)
            continue
        found = DecodedFailure(index, body[2 : 2 + failure_len])
    if found is not None:
        return found
    if framing_error is not None:
        raise framing_error
    raise UnreadableFailure("no hop's HMAC matches the failure packet")
