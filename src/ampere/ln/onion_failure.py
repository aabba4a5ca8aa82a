"""BOLT 4 failure messages: the return path of an onion.

Two layers:
  1. The failure *packet* (pure bytes): the erring node builds `hmac || failure_len || failuremsg ||
     pad_len || pad` and obfuscates it (`create_failure_packet`); each hop on the way back XORs in
     its own `ammag` stream (`wrap_failure`); the origin peels the layers with the route's shared
     secrets until an HMAC matches, which names the erring hop (`decode_failure`).
  2. The failure *message* (`failuremsg`): a 2-byte failure code with its data, then an optional
     TLV stream.  `FAILURE_CODES` lists every code with its fields; `encode_failure_message` and
     `decode_failure_message` convert between bytes and `FailureMessage`.  This table is written
     here by hand from onion_wire.csv until the generated wire codec (`ampere.wire`) offers the same
     (`encode_onion_failure` / `decode_onion_failure`); the packet layer does not depend on it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import NamedTuple

from ampere.ln.onion import chacha20_stream, generate_key, xor_bytes
from ampere.primitives.bigsize import BigSizeError, decode_bigsize, encode_bigsize

__all__ = [
    "BADONION",
    "PERM",
    "NODE",
    "UPDATE",
    "FAILURE_CODES",
    "FAILURE_NAMES",
    "FailureCodeInfo",
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


@dataclass(frozen=True)
class FailureCodeInfo:
    name: str
    code: int
    # (field name, field type); types: u16 u32 u64 sha256 bigsize, and "channel_update" for the
    # [u16:len][len*byte:channel_update] pair.
    fields: tuple[tuple[str, str], ...] = ()


_CU = ("channel_update", "channel_update")
_SHA = ("sha256_of_onion", "sha256")

# Names, numbers and fields from BOLT #4 "Failure Messages" (onion_wire.csv at the pinned spec
# commit), plus invalid_realm (PERM|1), which the text still defines.
_TABLE = [
    FailureCodeInfo("invalid_realm", PERM | 1),
    FailureCodeInfo("temporary_node_failure", NODE | 2),
    FailureCodeInfo("permanent_node_failure", PERM | NODE | 2),
    FailureCodeInfo("required_node_feature_missing", PERM | NODE | 3),
    FailureCodeInfo("invalid_onion_version", BADONION | PERM | 4, (_SHA,)),
    FailureCodeInfo("invalid_onion_hmac", BADONION | PERM | 5, (_SHA,)),
    FailureCodeInfo("invalid_onion_key", BADONION | PERM | 6, (_SHA,)),
    FailureCodeInfo("temporary_channel_failure", UPDATE | 7, (_CU,)),
    FailureCodeInfo("permanent_channel_failure", PERM | 8),
    FailureCodeInfo("required_channel_feature_missing", PERM | 9),
    FailureCodeInfo("unknown_next_peer", PERM | 10),
    FailureCodeInfo("amount_below_minimum", UPDATE | 11, (("htlc_msat", "u64"), _CU)),
    FailureCodeInfo("fee_insufficient", UPDATE | 12, (("htlc_msat", "u64"), _CU)),
    FailureCodeInfo("incorrect_cltv_expiry", UPDATE | 13, (("cltv_expiry", "u32"), _CU)),
    FailureCodeInfo("expiry_too_soon", UPDATE | 14, (_CU,)),
    FailureCodeInfo(
        "incorrect_or_unknown_payment_details", PERM | 15, (("htlc_msat", "u64"), ("height", "u32"))
    ),
    FailureCodeInfo("final_incorrect_cltv_expiry", 18, (("cltv_expiry", "u32"),)),
    FailureCodeInfo("final_incorrect_htlc_amount", 19, (("incoming_htlc_amt", "u64"),)),
    FailureCodeInfo("channel_disabled", UPDATE | 20, (("disabled_flags", "u16"), _CU)),
    FailureCodeInfo("expiry_too_far", 21),
    FailureCodeInfo("invalid_onion_payload", PERM | 22, (("type", "bigsize"), ("offset", "u16"))),
    FailureCodeInfo("mpp_timeout", 23),
    FailureCodeInfo("invalid_onion_blinding", BADONION | PERM | 24, (_SHA,)),
]

FAILURE_CODES: dict[str, int] = {info.name: info.code for info in _TABLE}
FAILURE_NAMES: dict[int, str] = {info.code: info.name for info in _TABLE}
_BY_CODE: dict[int, FailureCodeInfo] = {info.code: info for info in _TABLE}


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


_INT_WIDTHS = {"u16": 2, "u32": 4, "u64": 8}


def encode_failure_message(code_or_name: int | str, extra: bytes = b"", **fields: int | bytes) -> bytes:
    """Serialize a failure message: `encode_failure_message("incorrect_or_unknown_payment_details",
    htlc_msat=1000, height=800000)`.  Every field the code defines is required; no others are
    accepted.  `channel_update` is the message including its 0x0102 type (BOLT #4: "It is encoded
    *with* the message type prefix")."""
    code = failure_code(code_or_name) if isinstance(code_or_name, str) else code_or_name
    if not 0 <= code <= 0xFFFF:
        raise FailureMessageError(f"failure code {code} out of range")
    info = _BY_CODE.get(code, FailureCodeInfo(failure_code_name(code), code))
    wanted = {name for name, _ in info.fields}
    if set(fields) != wanted:
        raise FailureMessageError(
            f"{info.name} takes fields {sorted(wanted)}, got {sorted(fields)}"
        )
    out = bytearray(code.to_bytes(2, "big"))
    for name, kind in info.fields:
        value = fields[name]
        if kind in _INT_WIDTHS:
            width = _INT_WIDTHS[kind]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << (8 * width):
                raise FailureMessageError(f"{info.name}.{name} must be a {kind}")
            out += int(value).to_bytes(width, "big")
        elif kind == "bigsize":
            if not isinstance(value, int) or isinstance(value, bool):
                raise FailureMessageError(f"{info.name}.{name} must be an int")
            out += encode_bigsize(value)
        elif kind == "sha256":
            if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
                raise FailureMessageError(f"{info.name}.{name} must be 32 bytes")
            out += value
        else:  # channel_update
            if not isinstance(value, (bytes, bytearray)) or len(value) > 0xFFFF:
                raise FailureMessageError(f"{info.name}.{name} must be bytes")
            out += len(value).to_bytes(2, "big") + value
    return bytes(out + extra)


def decode_failure_message(data: bytes) -> FailureMessage:
    """Parse a `failuremsg`.  Unknown codes decode with no fields (everything after the code in
    `extra`); truncated fields of a known code raise FailureMessageError."""
    data = bytes(data)
    if len(data) < 2:
        raise FailureMessageError("failure message shorter than its 2-byte code")
    code = int.from_bytes(data[:2], "big")
    info = _BY_CODE.get(code)
    if info is None:
        return FailureMessage(code, {}, data[2:])
    fields: dict[str, int | bytes] = {}
    pos = 2
    for name, kind in info.fields:
        if kind in _INT_WIDTHS:
            width = _INT_WIDTHS[kind]
            if pos + width > len(data):
                raise FailureMessageError(f"{info.name}: truncated {name}")
            fields[name] = int.from_bytes(data[pos : pos + width], "big")
            pos += width
        elif kind == "bigsize":
            try:
                fields[name], pos = decode_bigsize(data, pos)
            except BigSizeError as exc:
                raise FailureMessageError(f"{info.name}: {name}: {exc}") from None
        elif kind == "sha256":
            if pos + 32 > len(data):
                raise FailureMessageError(f"{info.name}: truncated {name}")
            fields[name] = data[pos : pos + 32]
            pos += 32
        else:  # channel_update
            if pos + 2 > len(data):
                raise FailureMessageError(f"{info.name}: truncated {name} length")
            length = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            if pos + length > len(data):
                raise FailureMessageError(f"{info.name}: truncated {name}")
            fields[name] = data[pos : pos + length]
            pos += length
    return FailureMessage(code, fields, data[pos:])


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
