"""BOLT 4 Sphinx onions: building an onion for a route, and peeling one layer off as a hop.

Pure functions on bytes. Hop payloads here are opaque byte strings (the TLV `payload` stream,
without its BigSize length prefix: this module adds and strips that prefix); the TLV layer lives in
`ampere.ln.onion_payload`. Failure messages (the return path) live in `ampere.ln.onion_failure`.

Tour:
  - `generate_key`, `chacha20_stream`, `xor_bytes`: the three primitives BOLT 4 builds everything from.
  - `derive_hop_keys`: ECDH shared secrets and blinded ephemeral keys for each hop of a route.
  - `create_onion`: the sender's side (packet construction, with the filler).
  - `peel_onion`: a processing node's side; returns the payload for this hop and the onion for the
    next one, or raises an `OnionError` carrying the BOLT 4 failure code to answer with.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Protocol

from coincurve import PrivateKey, PublicKey
from coincurve._libsecp256k1 import ffi as _secp_ffi
from coincurve._libsecp256k1 import lib as _secp_lib
from coincurve.context import GLOBAL_CONTEXT as _SECP_CONTEXT
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from ampere.primitives.bigsize import BigSizeError, decode_bigsize, encode_bigsize
from ampere.primitives.crypto import SECP256K1_ORDER

__all__ = [
    "BlindedNodeKey",
    "NodeKey",
    "ONION_VERSION",
    "HOP_PAYLOADS_LEN",
    "ONION_PACKET_LEN",
    "HMAC_LEN",
    "HopKeys",
    "PeeledOnion",
    "OnionError",
    "OnionConstructionError",
    "BadOnionError",
    "InvalidOnionVersion",
    "InvalidOnionHmac",
    "InvalidOnionKey",
    "InvalidOnionBlinding",
    "InvalidOnionPayload",
    "generate_key",
    "chacha20_stream",
    "chacha20_xor",
    "xor_bytes",
    "derive_hop_keys",
    "hop_shift_size",
    "strip_length_prefix",
    "create_onion",
    "peel_onion",
    "blind_private_key_for_path",
]

# BOLT #4: "For this specification (_version 0_), `version` has a constant value of `0x00`."
ONION_VERSION = 0
# BOLT #4: "a 1300-byte `hop_payloads`" ... "The construction returns a single 1366-byte packet".
HOP_PAYLOADS_LEN = 1300
HMAC_LEN = 32
PUBKEY_LEN = 33
_HEADER_LEN = 1 + PUBKEY_LEN  # version byte + ephemeral public key
ONION_OVERHEAD = _HEADER_LEN + HMAC_LEN  # 66 bytes around the hop_payloads
ONION_PACKET_LEN = ONION_OVERHEAD + HOP_PAYLOADS_LEN

# Failure codes this module raises (the full table is ampere.ln.onion_failure.FAILURE_CODES; a unit
# test checks that these agree with it).  BOLT #4: BADONION=0x8000, PERM=0x4000.
_BADONION = 0x8000
_PERM = 0x4000
_INVALID_ONION_VERSION = _BADONION | _PERM | 4
_INVALID_ONION_HMAC = _BADONION | _PERM | 5
_INVALID_ONION_KEY = _BADONION | _PERM | 6
_INVALID_ONION_PAYLOAD = _PERM | 22
_INVALID_ONION_BLINDING = _BADONION | _PERM | 24

# secp256k1 group order: the blinded ephemeral private key is a product of scalars modulo n.
_CHACHA20_ZERO_NONCE = bytes(16)  # cryptography's 16-byte nonce: 4-byte LE counter 0 + 12 zero bytes
_ZERO_HMAC = bytes(HMAC_LEN)


# --- errors ------------------------------------------------------------------------------------


class OnionError(ValueError):
    """An onion this node cannot process.  `failure_code` is the BOLT 4 code to answer with."""

    failure_code: int = 0

    def failure_message(self) -> bytes:
        """The `failuremsg` bytes for this error (code plus its data)."""
        return self.failure_code.to_bytes(2, "big")


class OnionConstructionError(ValueError):
    """The sender asked for an onion that cannot be built (bad key, payloads too large, no hops)."""


class BadOnionError(OnionError):
    """An onion the sending peer mangled: answered with `update_fail_malformed_htlc`.

    BOLT #2: update_fail_malformed_htlc carries `sha256_of_onion` and a `failure_code` with the
    BADONION bit set; `sha256_of_onion` is the SHA256 of the whole onion packet as received.
    """

    def __init__(self, message: str, sha256_of_onion: bytes):
        super().__init__(message)
        self.sha256_of_onion = sha256_of_onion

    def failure_message(self) -> bytes:
        return self.failure_code.to_bytes(2, "big") + self.sha256_of_onion


class InvalidOnionVersion(BadOnionError):
    """BOLT #4: "The `version` byte was not understood by the processing node." """

    failure_code = _INVALID_ONION_VERSION


class InvalidOnionHmac(BadOnionError):
    """BOLT #4: "The HMAC of the onion was incorrect when it reached the processing node." """

    failure_code = _INVALID_ONION_HMAC


class InvalidOnionKey(BadOnionError):
    """BOLT #4: "The ephemeral key was unparsable by the processing node." """

    failure_code = _INVALID_ONION_KEY


class InvalidOnionBlinding(BadOnionError):
    """BOLT #4: "An error occurred within the blinded path." (here: an unusable `path_key`)."""

    failure_code = _INVALID_ONION_BLINDING


class InvalidOnionPayload(OnionError):
    """The HMAC was good but the decrypted hop data is malformed (the sender's fault, not the peer's).

    BOLT #4 invalid_onion_payload (PERM|22) data: [bigsize:type] [u16:offset].
    """

    failure_code = _INVALID_ONION_PAYLOAD

    def __init__(self, message: str, tlv_type: int = 0, offset: int = 0):
        super().__init__(message)
        self.tlv_type = tlv_type
        self.offset = offset

    def failure_message(self) -> bytes:
        return (
            self.failure_code.to_bytes(2, "big")
            + encode_bigsize(self.tlv_type)
            + min(self.offset, 0xFFFF).to_bytes(2, "big")
        )


# --- primitives --------------------------------------------------------------------------------


def generate_key(key_type: bytes, secret: bytes) -> bytes:
    """BOLT #4 Key Generation: HMAC-SHA256 with the key type ("rho", "mu", "um", "pad", "ammag")
    as the HMAC key and the 32-byte shared secret as the message (no C-style NUL terminator)."""
    # hmac.digest: OpenSSL's one-shot HMAC, without the Python-level HMAC object hmac.new builds (~1 us less each:
    # a one-hop onion derives three keys).
    return hmac.digest(key_type, secret, "sha256")


def chacha20_stream(key: bytes, length: int) -> bytes:
    """BOLT #4: ChaCha20 over `length` zero bytes with a 96-bit all-zero nonce."""
    return chacha20_xor(key, bytes(length))


def chacha20_xor(key: bytes, data: bytes) -> bytes:
    """`data` XOR chacha20_stream(key, len(data)): the cipher applies the stream itself, without the zero
    buffer, the stream and the XOR through Python ints (the sender's onion applies a 1,300-byte stream per hop)."""
    return Cipher(algorithms.ChaCha20(key, _CHACHA20_ZERO_NONCE), mode=None).encryptor().update(data)


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """XOR of two equal-length byte strings (through Python ints: one C loop, not a Python loop)."""
    n = len(a)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b[:n], "big")).to_bytes(n, "big")


def _ecdh(secret: bytes, point: PublicKey) -> bytes:
    """SHA256 of the compressed ECDH point, from a 32-byte secret scalar.

    BOLT #4 Shared Secret: "The resulting curve point is serialized to the compressed format and
    hashed using `SHA256`": exactly libsecp256k1's default ECDH hash.  This is what coincurve's
    `PrivateKey.ecdh` does; it is called directly on the scalar because building a `PrivateKey`
    first costs two extra base-point multiplications (coincurve 21 derives both public keys eagerly),
    which would double the sender's per-hop cost.
    """
    out = _secp_ffi.new("unsigned char [32]")
    if not _secp_lib.secp256k1_ecdh(_SECP_CONTEXT.ctx, out, point.public_key, secret, _secp_ffi.NULL, _secp_ffi.NULL):
        raise ValueError("ECDH failed (invalid scalar)")
    return bytes(_secp_ffi.buffer(out, 32))


def _parse_secret(key: bytes | PrivateKey, what: str) -> bytes:
    """A valid secp256k1 secret scalar (0 < k < n) as 32 bytes."""
    if isinstance(key, PrivateKey):
        return key.secret
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise OnionConstructionError(f"{what} must be 32 bytes")
    if not 0 < int.from_bytes(key, "big") < SECP256K1_ORDER:
        raise OnionConstructionError(f"{what} is not a valid secp256k1 secret")
    return bytes(key)


def _parse_point(key: bytes) -> PublicKey | None:
    """The point for a 33-byte compressed public key, or None when it is not one."""
    if len(key) != PUBKEY_LEN or key[0] not in (2, 3):
        return None
    try:
        return PublicKey(key)
    except ValueError:
        return None


# The sender's hop keys, parsed: a node pays the same few peers over and over, and parsing a compressed key (a
# square root mod p) is ~5 us of a one-hop onion's ~100. Only node ids of routes we build (never the ephemeral
# keys of onions we receive, all different); bounded, cleared when full.
_HOP_POINTS: dict[bytes, PublicKey] = {}
_HOP_POINTS_MAX = 4096


def _hop_point(key: bytes) -> PublicKey | None:
    point = _HOP_POINTS.get(key)
    if point is None:
        point = _parse_point(key)
        if point is not None:
            if len(_HOP_POINTS) >= _HOP_POINTS_MAX:
                _HOP_POINTS.clear()
            _HOP_POINTS[key] = point
    return point


# --- sender side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HopKeys:
    """What the sender derives for one hop (BOLT #4 Packet Construction)."""

    ephemeral_pubkey: bytes  # epk_k, the key hop k sees in the packet
    shared_secret: bytes  # ss_k = SHA256(ECDH(ek_k, node_id_k))
    blinding_factor: bytes  # SHA256(epk_k || ss_k)


def derive_hop_keys(session_key: bytes, pubkeys: list[bytes]) -> list[HopKeys]:
    """Shared secrets and ephemeral keys for every hop.

    BOLT #4: "the sender initializes the ephemeral private key for the first hop `ek_1` to the
    `sessionkey` ... The ephemeral private key for the next hop `ek_{k+1}` is computed by
    multiplying the current ephemeral private key `ek_k` by the blinding factor."
    """
    ephemeral = int.from_bytes(_parse_secret(session_key, "session key"), "big")
    keys: list[HopKeys] = []
    for index, node_id in enumerate(pubkeys):
        point = _hop_point(bytes(node_id)) if isinstance(node_id, (bytes, bytearray)) else None
        if point is None:
            raise OnionConstructionError(f"hop {index}: not a compressed secp256k1 public key")
        scalar = ephemeral.to_bytes(32, "big")
        epk = PublicKey.from_valid_secret(scalar).format(compressed=True)
        shared_secret = _ecdh(scalar, point)
        blinding = hashlib.sha256(epk + shared_secret).digest()
        keys.append(HopKeys(epk, shared_secret, blinding))
        ephemeral = ephemeral * int.from_bytes(blinding, "big") % SECP256K1_ORDER
        if ephemeral == 0:  # probability 2^-256; refuse rather than build a broken onion
            raise OnionConstructionError("degenerate blinding factor; choose another session key")
    return keys


def hop_shift_size(payload_len: int) -> int:
    """BOLT #4: "`shift_size` is defined as the length of the `hop_payload` plus the bigsize
    encoding of the length and the length of that HMAC."""
    return len(encode_bigsize(payload_len)) + payload_len + HMAC_LEN


def strip_length_prefix(prefixed: bytes) -> bytes:
    """A hop payload given with its BigSize length prefix (as CLN's `createonion` takes `payload`
    and as the spec's onion-test.json lists them) -> the bare TLV stream `create_onion` takes."""
    try:
        length, offset = decode_bigsize(bytes(prefixed))
    except BigSizeError as exc:
        raise OnionConstructionError(f"payload length prefix: {exc}") from None
    if offset + length != len(prefixed):
        raise OnionConstructionError(f"payload length prefix says {length}, {len(prefixed) - offset} bytes follow")
    return bytes(prefixed[offset:])


def _generate_filler(shared_secrets: list[bytes], shift_sizes: list[int], packet_len: int) -> bytes:
    """The part of hop_payloads each forwarding hop will have appended by the time the packet reaches
    the final hop (BOLT #4 Filler Generation), computed incrementally: at hop i the filler so far
    plus `shift_i` fresh zero bytes is XORed with hop i's rho stream at the offset where those bytes
    sit in that hop's 2*packet_len deobfuscation."""
    filler = b""
    for shared_secret, shift in zip(shared_secrets[:-1], shift_sizes[:-1]):
        stream = chacha20_stream(generate_key(b"rho", shared_secret), packet_len + shift)
        start = packet_len - len(filler)
        filler = xor_bytes(filler + bytes(shift), stream[start:])
    return filler


def create_onion(
    session_key: bytes,
    hops: list[tuple[bytes, bytes]],
    assoc_data: bytes,
    packet_len: int = HOP_PAYLOADS_LEN,
) -> tuple[bytes, list[bytes]]:
    """Build a Sphinx onion for `hops` = [(node_id, payload), ...], first hop first.

    Each payload is the hop's TLV stream without its length prefix (this adds the BigSize length).
    `assoc_data` is committed to by every HMAC (the payment_hash for HTLC onions; empty for onion
    messages).  `packet_len` is the size of hop_payloads: 1300 for HTLCs, other sizes for onion
    messages.  Returns (packet, shared_secrets): the packet is 66 + packet_len bytes; the shared
    secrets (one per hop) are what `ampere.ln.onion_failure.decode_failure` needs later.
    """
    if not hops:
        raise OnionConstructionError("a route needs at least one hop")
    if packet_len <= 0:
        raise OnionConstructionError("packet_len must be positive")
    payloads: list[bytes] = []
    for index, (_, payload) in enumerate(hops):
        if not isinstance(payload, (bytes, bytearray)):
            raise OnionConstructionError(f"hop {index}: payload must be bytes")
        # BOLT #4: "Since no `payload` TLV value can ever be shorter than 2 bytes, `length` values of
        # 0 and 1 are reserved."
        if len(payload) < 2:
            raise OnionConstructionError(f"hop {index}: payload shorter than 2 bytes")
        payloads.append(bytes(payload))
    shift_sizes = [hop_shift_size(len(p)) for p in payloads]
    if sum(shift_sizes) > packet_len:
        raise OnionConstructionError(
            f"hop payloads need {sum(shift_sizes)} bytes, more than the {packet_len}-byte packet"
        )

    keys = derive_hop_keys(session_key, [node_id for node_id, _ in hops])
    shared_secrets = [k.shared_secret for k in keys]
    filler = _generate_filler(shared_secrets, shift_sizes, packet_len)

    # BOLT #4: "The packet is initialized with 1300 _random_ bytes derived from a CSPRNG (ChaCha20).
    # The _pad_ key referenced above is used to extract additional random bytes".
    session_secret = _parse_secret(session_key, "session key")
    mix_header = chacha20_stream(generate_key(b"pad", session_secret), packet_len)
    next_hmac = _ZERO_HMAC  # BOLT #4: 32 zero bytes tell the final node it is the final node
    for index in range(len(hops) - 1, -1, -1):
        shared_secret = shared_secrets[index]
        payload = payloads[index]
        # "The `hop_payload` field is right-shifted by `shift_size` bytes ... The bigsize-serialized
        # length, serialized `hop_payload` and `hmac` are copied into the following `shift_size` bytes."
        hop_data = encode_bigsize(len(payload)) + payload + next_hmac
        mix_header = hop_data + mix_header[: packet_len - len(hop_data)]
        # "The _rho_-key is used to generate 1300 bytes of pseudo-random byte stream which is then
        # applied, with `XOR`, to the `hop_payloads` field."
        mix_header = chacha20_xor(generate_key(b"rho", shared_secret), mix_header)
        # "If this is the last hop, i.e. the first iteration, then the tail of the `hop_payloads`
        # field is overwritten with the routing information `filler`."
        if index == len(hops) - 1 and filler:
            mix_header = mix_header[: packet_len - len(filler)] + filler
        # "The next HMAC is computed (with the _mu_-key as HMAC-key) over the concatenated
        # `hop_payloads` and associated data."
        next_hmac = hmac.digest(generate_key(b"mu", shared_secret), mix_header + assoc_data, "sha256")

    packet = bytes([ONION_VERSION]) + keys[0].ephemeral_pubkey + mix_header + next_hmac
    return packet, shared_secrets


# --- processing-node side ----------------------------------------------------------------------


@dataclass(frozen=True)
class PeeledOnion:
    """One layer of an onion, as seen by the processing node."""

    payload: bytes  # this hop's TLV payload, length prefix removed
    next_onion: bytes | None  # the packet to forward, or None at the final node
    shared_secret: bytes  # kept with the HTLC: it encrypts any failure we return (onion_failure)

    @property
    def is_final(self) -> bool:
        return self.next_onion is None


def blind_private_key_for_path(node_privkey: bytes | PrivateKey, path_key: bytes) -> PrivateKey:
    """Route blinding: the private key for the blinded node id B_i, given the path key E_i.

    BOLT #4: "Calculate the `blinding_ss` as ECDH(`path_key`, `node_privkey`) ... Tweak its own
    `node_privkey` below by multiplying by HMAC256("blinded_node_id", blinding_ss)."
    """
    secret = _parse_secret(node_privkey, "node private key")
    point = _parse_point(bytes(path_key))
    if point is None:
        raise ValueError("path_key is not a compressed public key")
    tweak = hmac.new(b"blinded_node_id", _ecdh(secret, point), hashlib.sha256).digest()
    blinded = int.from_bytes(secret, "big") * int.from_bytes(tweak, "big") % SECP256K1_ORDER
    return PrivateKey(blinded.to_bytes(32, "big"))


class NodeKey(Protocol):
    """The node key as onion processing uses it, without its secret (the node's Signer is one; so is a
    coincurve PrivateKey): `ecdh(point)` = SHA256 of the compressed point secret*point (BOLT #4)."""

    def ecdh(self, point: bytes) -> bytes: ...


class BlindedNodeKey:
    """Route blinding's b_i = HMAC256("blinded_node_id", ss_i) * k_i, without k_i: ECDH(b_i, P) is
    ECDH(k_i, tweak*P), so the node key's own ECDH does it (as CLN's hsmd answers with its `ecdh` only)."""

    __slots__ = ("_key", "_tweak")

    def __init__(self, key: NodeKey, tweak: bytes) -> None:
        self._key = key
        self._tweak = tweak

    def ecdh(self, point: bytes) -> bytes:
        return self._key.ecdh(PublicKey(bytes(point)).multiply(self._tweak).format())


def _sha256(onion_packet: bytes) -> bytes:
    """`sha256_of_onion` for update_fail_malformed_htlc: computed only when the onion is refused."""
    return hashlib.sha256(onion_packet).digest()


def _blinding_tweak(shared_secret: bytes) -> bytes:
    return hmac.new(b"blinded_node_id", shared_secret, hashlib.sha256).digest()


def peel_onion(
    privkey: bytes | PrivateKey | NodeKey,
    onion_packet: bytes,
    assoc_data: bytes,
    *,
    path_key: bytes | None = None,
    packet_len: int | None = HOP_PAYLOADS_LEN,
) -> PeeledOnion:
    """Process one onion layer (BOLT #4 Onion Decryption) with this node's private key.

    `packet_len` is the expected hop_payloads size (1300 for HTLC onions); None accepts any size
    (onion messages).  `path_key` is the route-blinding point from `update_add_htlc` / the onion
    message, when there is one.  Raises InvalidOnionVersion / InvalidOnionKey / InvalidOnionHmac
    (BADONION: answer with update_fail_malformed_htlc and `exc.sha256_of_onion`),
    InvalidOnionBlinding, or InvalidOnionPayload (authenticated but malformed hop data).
    """
    onion_packet = bytes(onion_packet)
    payloads_len = len(onion_packet) - ONION_OVERHEAD
    if payloads_len <= 0 or (packet_len is not None and payloads_len != packet_len):
        # The HMAC cannot cover a packet of the wrong size: treat it as an HMAC failure.
        raise InvalidOnionHmac(f"onion packet is {len(onion_packet)} bytes", _sha256(onion_packet))

    # BOLT #4: "if `version` is not 0: MUST abort processing the packet and fail."
    if onion_packet[0] != ONION_VERSION:
        raise InvalidOnionVersion(f"unknown onion version {onion_packet[0]}", _sha256(onion_packet))
    # BOLT #4: "if `public_key` is not a valid pubkey: MUST abort processing the packet and fail."
    ephemeral_pubkey = onion_packet[1:_HEADER_LEN]
    ephemeral_point = _parse_point(ephemeral_pubkey)
    if ephemeral_point is None:
        raise InvalidOnionKey("onion ephemeral key is not a valid compressed point", _sha256(onion_packet))
    hop_payloads = onion_packet[_HEADER_LEN : _HEADER_LEN + payloads_len]
    packet_hmac = onion_packet[_HEADER_LEN + payloads_len :]

    if path_key is not None and _parse_point(bytes(path_key)) is None:
        raise InvalidOnionBlinding("path_key is not a valid compressed point", _sha256(onion_packet))
    if isinstance(privkey, (bytes, bytearray, PrivateKey)):
        node_secret = _parse_secret(privkey, "node private key")
        if path_key is not None:
            node_secret = blind_private_key_for_path(node_secret, bytes(path_key)).secret
        shared_secret = _ecdh(node_secret, ephemeral_point)
    else:
        # The key stays in the signer: one ECDH (two with a path key, the second on the tweaked point).
        key: NodeKey = privkey
        if path_key is not None:
            key = BlindedNodeKey(key, _blinding_tweak(key.ecdh(bytes(path_key))))
        shared_secret = key.ecdh(ephemeral_pubkey)
    # BOLT #4: "Derive the HMAC as HMAC256(mu, hop_payloads || associated_data). MUST use a
    # constant time comparison of the computed HMAC and `hmac`."
    expected = hmac.digest(generate_key(b"mu", shared_secret), hop_payloads + assoc_data, "sha256")
    if not hmac.compare_digest(expected, packet_hmac):
        raise InvalidOnionHmac("onion HMAC mismatch", _sha256(onion_packet))

    # "Derive `bytestream` of twice the length of `hop_payloads` using `rho` ... Set
    # `unwrapped_payloads` to the XOR of `hop_payloads` and `bytestream`."  The cipher XORs the first half
    # itself; the second half (XORed with zeros: the stream itself) is drawn from the same cipher only when the
    # onion goes on: the final hop's payload and next_hmac lie in the first half (checked below).
    rho = Cipher(algorithms.ChaCha20(generate_key(b"rho", shared_secret), _CHACHA20_ZERO_NONCE), mode=None).encryptor()
    unwrapped = rho.update(hop_payloads)
    try:
        payload_length, offset = decode_bigsize(unwrapped)
    except BigSizeError as exc:
        raise InvalidOnionPayload(f"hop payload length: {exc}") from None
    # "If the `payload_length` is less than two: MUST abort processing the packet and fail."
    if payload_length < 2:
        raise InvalidOnionPayload(f"hop payload length {payload_length} is reserved")
    # "If `unwrapped_payloads` is smaller than `hop_payloads`" (after removing payload and HMAC).
    if offset + payload_length + HMAC_LEN > payloads_len:
        raise InvalidOnionPayload(f"hop payload length {payload_length} overruns the packet")
    payload = unwrapped[offset : offset + payload_length]
    next_hmac = unwrapped[offset + payload_length : offset + payload_length + HMAC_LEN]

    # "Otherwise (all-zero `next_hmac`): This is the final destination of the onion."
    if next_hmac == _ZERO_HMAC:
        return PeeledOnion(payload, None, shared_secret)
    rest = unwrapped[offset + payload_length + HMAC_LEN :] + rho.update(bytes(payloads_len))

    # "`public_key` set to the incoming `public_key` multiplied by `blinding_tweak`" where
    # blinding_tweak = SHA256(public_key || ss); "`hop_payloads` set to the `unwrapped_payloads`,
    # truncated to the incoming `hop_payloads` size."
    blinding = hashlib.sha256(ephemeral_pubkey + shared_secret).digest()
    try:
        next_pubkey = ephemeral_point.multiply(blinding).format(compressed=True)
    except ValueError:  # blinding factor 0 or >= n: cannot happen for honest senders
        raise InvalidOnionKey("cannot blind the ephemeral key for the next hop", _sha256(onion_packet)) from None
    next_onion = bytes([ONION_VERSION]) + next_pubkey + rest[:payloads_len] + next_hmac
    return PeeledOnion(payload, next_onion, shared_secret)
