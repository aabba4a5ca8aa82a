"""BOLT #8 Noise_XK_secp256k1_ChaChaPoly_SHA256 as a pure state machine: bytes in, bytes out.

    initiator = InitiatorHandshake(our_privkey, their_pubkey)
    act1 = initiator.act_one()                      # 50 bytes to send
    act3, session = initiator.process_act_two(act2)  # 66 bytes to send, then the session

    responder = ResponderHandshake(our_privkey)
    act2 = responder.process_act_one(act1)           # 50 bytes to send
    session = responder.process_act_three(act3)      # session.remote_pubkey is the initiator's id

    frame = session.encrypt_message(b"...")          # length ciphertext (18) || body ciphertext
    n = session.decrypt_length(frame[:18]); body = session.decrypt_body(frame[18:18 + n + 16])

No I/O here: ampere.node.net.transport reads exact lengths from a socket and feeds them in.  Failures raise
`HandshakeError` / `TransportError` whose `.reason` names the failure as the spec's vectors do
(e.g. "ACT2_BAD_TAG").
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import HandshakeError, TransportError

PROTOCOL_NAME = b"Noise_XK_secp256k1_ChaChaPoly_SHA256"
PROLOGUE = b"lightning"
ACT_ONE_SIZE = 50
ACT_TWO_SIZE = 50
ACT_THREE_SIZE = 66
LENGTH_HEADER_SIZE = 18  # 2-byte encrypted length + 16-byte MAC
MAC_SIZE = 16
MAX_MESSAGE_SIZE = 65535  # BOLT #8: "The *maximum* size of _any_ Lightning message MUST NOT exceed `65535` bytes."
KEY_ROTATION_INTERVAL = 1000
_ZERO_NONCE_PREFIX = b"\x00\x00\x00\x00"


def hkdf_two_keys(salt: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    """BOLT #8 `HKDF(salt, ikm)`: RFC 5869 extract-and-expand with an empty `info`, 64 bytes out,
    split into two 32-byte keys."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    t1 = hmac.new(prk, b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(prk, t1 + b"\x02", hashlib.sha256).digest()
    return t1, t2


def _nonce(n: int) -> bytes:
    # BOLT #8: "nonce `n` encoded as 32 zero bits, followed by a *little-endian* 64-bit value"
    return _ZERO_NONCE_PREFIX + n.to_bytes(8, "little")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _ecdh(privkey: coincurve.PrivateKey, pubkey: coincurve.PublicKey) -> bytes:
    # BOLT #8 ECDH: "The returned value is the SHA256 of the compressed format of the generated
    # point" -- which is exactly what libsecp256k1's default ECDH hash (coincurve's ecdh) returns.
    return privkey.ecdh(pubkey.format())


def _parse_pubkey(raw: bytes, reason: str) -> coincurve.PublicKey:
    try:
        if raw[0] not in (2, 3):
            raise ValueError("not a compressed key")
        return coincurve.PublicKey(raw)
    except ValueError:
        raise HandshakeError(f"{reason}: invalid public key {raw.hex()}", reason=reason) from None


class CipherState:
    """One direction of the transport: a key, its nonce, and the key rotation of BOLT #8."""

    def __init__(self, key: bytes, chaining_key: bytes) -> None:
        self._key = key
        self._ck = chaining_key
        self._aead = ChaCha20Poly1305(key)
        self.nonce = 0

    @property
    def key(self) -> bytes:
        return self._key

    def _advance(self) -> None:
        self.nonce += 1
        # BOLT #8: "A key is to be rotated after a party sends or decrypts 1000 messages with it.
        # This can be properly accounted for by rotating the key once the nonce dedicated to it
        # exceeds 1000."  Rotation: "ck', k' = HKDF(ck, k)", nonce reset to 0.
        if self.nonce == KEY_ROTATION_INTERVAL:
            self._ck, self._key = hkdf_two_keys(self._ck, self._key)
            self._aead = ChaCha20Poly1305(self._key)
            self.nonce = 0

    def encrypt(self, plaintext: bytes) -> bytes:
        out = self._aead.encrypt(_nonce(self.nonce), plaintext, None)
        self._advance()
        return out

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Raises cryptography's InvalidTag on a bad MAC (the nonce does not advance)."""
        out = self._aead.decrypt(_nonce(self.nonce), ciphertext, None)
        self._advance()
        return out


class NoiseSession:
    """The transport phase after a successful handshake."""

    def __init__(self, send_key: bytes, recv_key: bytes, chaining_key: bytes, remote_pubkey: bytes) -> None:
        self.sender = CipherState(send_key, chaining_key)
        self.receiver = CipherState(recv_key, chaining_key)
        self.remote_pubkey = remote_pubkey  # 33-byte compressed node id of the peer
        self._pending_length: int | None = None

    def encrypt_message(self, message: bytes) -> bytes:
        """BOLT #8 "Encrypting and Sending Messages": `lc || c`."""
        if len(message) > MAX_MESSAGE_SIZE:
            raise ValueError(f"message of {len(message)} bytes exceeds {MAX_MESSAGE_SIZE}")
        length_ct = self.sender.encrypt(len(message).to_bytes(2, "big"))
        return length_ct + self.sender.encrypt(bytes(message))

    def decrypt_length(self, header: bytes) -> int:
        """Decrypt the 18-byte length header; returns the body length (the caller then reads it
        plus the 16-byte MAC and passes that to `decrypt_body`)."""
        if len(header) != LENGTH_HEADER_SIZE:
            raise TransportError(f"length header of {len(header)} bytes", reason="SHORT_READ")
        if self._pending_length is not None:
            raise TransportError("length header decrypted twice", reason="STATE")
        try:
            plain = self.receiver.decrypt(header)
        except InvalidTag:
            raise TransportError("bad MAC on message length", reason="BAD_LENGTH_TAG") from None
        self._pending_length = int.from_bytes(plain, "big")
        return self._pending_length

    def decrypt_body(self, body: bytes) -> bytes:
        expected = self._pending_length
        if expected is None:
            raise TransportError("message body before its length", reason="STATE")
        if len(body) != expected + MAC_SIZE:
            raise TransportError(f"body of {len(body)} bytes, expected {expected + MAC_SIZE}", reason="SHORT_READ")
        try:
            plain = self.receiver.decrypt(body)
        except InvalidTag:
            raise TransportError("bad MAC on message body", reason="BAD_BODY_TAG") from None
        self._pending_length = None
        return plain

    def decrypt_frame(self, frame: bytes) -> bytes:
        """Decrypt one whole frame (`lc || c`), e.g. from an in-memory transport."""
        length = self.decrypt_length(frame[:LENGTH_HEADER_SIZE])
        return self.decrypt_body(frame[LENGTH_HEADER_SIZE : LENGTH_HEADER_SIZE + length + MAC_SIZE])


class StaticKey(Protocol):
    """Our static key as the handshake uses it, without its secret (the node's Signer is one):
    `ecdh(point)` is SHA256 of the compressed point secret*point, as libsecp256k1's ECDH returns it."""

    node_id: bytes

    def ecdh(self, point: bytes) -> bytes: ...


class _Handshake:
    def __init__(self, our_privkey: bytes | StaticKey, ephemeral_privkey: bytes | None) -> None:
        if isinstance(our_privkey, (bytes, bytearray)):
            key = coincurve.PrivateKey(bytes(our_privkey))
            self._ls: coincurve.PrivateKey | StaticKey = key
            self._ls_pub = key.public_key.format()
        else:
            self._ls = our_privkey
            self._ls_pub = bytes(our_privkey.node_id)
        self._e = coincurve.PrivateKey(ephemeral_privkey) if ephemeral_privkey else coincurve.PrivateKey()
        h = _sha256(PROTOCOL_NAME)
        self._ck = h
        self._h = _sha256(h + PROLOGUE)
        self._temp_k2 = b""
        self._done = False

    @property
    def our_pubkey(self) -> bytes:
        return self._ls_pub

    def _mix_hash(self, data: bytes) -> None:
        self._h = _sha256(self._h + data)

    def _mix_key(self, secret: bytes) -> bytes:
        self._ck, temp_k = hkdf_two_keys(self._ck, secret)
        return temp_k

    def _check_act(self, data: bytes, size: int, act: str) -> None:
        if self._done:
            raise HandshakeError(f"{act}: handshake already finished", reason="STATE")
        if len(data) != size:
            raise HandshakeError(f"{act}: read {len(data)} of {size} bytes", reason=f"{act}_READ_FAILED")
        # BOLT #8: "If `v` is an unrecognized handshake version, then the responder MUST abort the
        # connection attempt."
        if data[0] != 0:
            raise HandshakeError(f"{act}: bad version {data[0]}", reason=f"{act}_BAD_VERSION")

    def _decrypt(self, key: bytes, nonce: int, ciphertext: bytes, reason: str) -> bytes:
        try:
            return ChaCha20Poly1305(key).decrypt(_nonce(nonce), ciphertext, self._h)
        except InvalidTag:
            # BOLT #8: "If the MAC check in this operation fails ... MUST terminate the connection
            # without any further messages."
            raise HandshakeError(f"{reason}: MAC check failed", reason=reason) from None

    def _encrypt(self, key: bytes, nonce: int, plaintext: bytes) -> bytes:
        return ChaCha20Poly1305(key).encrypt(_nonce(nonce), plaintext, self._h)


class InitiatorHandshake(_Handshake):
    """The side that connects: it must know the responder's static public key."""

    def __init__(self, our_privkey: bytes | StaticKey, their_pubkey: bytes, ephemeral_privkey: bytes | None = None) -> None:
        super().__init__(our_privkey, ephemeral_privkey)
        self._rs = _parse_pubkey(bytes(their_pubkey), "BAD_REMOTE_PUBKEY")
        self.remote_pubkey = self._rs.format()
        # BOLT #8: "The initiating node mixes in the responding node's static public key"
        self._mix_hash(self.remote_pubkey)
        self._sent_act_one = False

    def act_one(self) -> bytes:
        """-> e, es"""
        if self._sent_act_one:
            raise HandshakeError("act one already sent", reason="STATE")
        self._sent_act_one = True
        e_pub = self._e.public_key.format()
        self._mix_hash(e_pub)
        temp_k1 = self._mix_key(_ecdh(self._e, self._rs))
        c = self._encrypt(temp_k1, 0, b"")
        self._mix_hash(c)
        return b"\x00" + e_pub + c

    def process_act_two(self, act_two: bytes) -> tuple[bytes, NoiseSession]:
        """<- e, ee then -> s, se.  Returns act three (66 bytes) and the session."""
        if not self._sent_act_one:
            raise HandshakeError("act two before act one", reason="STATE")
        act_two = bytes(act_two)
        self._check_act(act_two, ACT_TWO_SIZE, "ACT2")
        re = _parse_pubkey(act_two[1:34], "ACT2_BAD_PUBKEY")
        c = act_two[34:]
        self._mix_hash(act_two[1:34])
        temp_k2 = self._mix_key(_ecdh(self._e, re))
        self._decrypt(temp_k2, 0, c, "ACT2_BAD_TAG")
        self._mix_hash(c)
        # Act three.
        c3 = self._encrypt(temp_k2, 1, self.our_pubkey)
        self._mix_hash(c3)
        temp_k3 = self._mix_key(self._ls.ecdh(re.format()))
        t = self._encrypt(temp_k3, 0, b"")
        sk, rk = hkdf_two_keys(self._ck, b"")
        self._done = True
        return b"\x00" + c3 + t, NoiseSession(sk, rk, self._ck, self.remote_pubkey)


class ResponderHandshake(_Handshake):
    """The side that accepts: it learns the initiator's static key in act three."""

    def __init__(self, our_privkey: bytes | StaticKey, ephemeral_privkey: bytes | None = None) -> None:
        super().__init__(our_privkey, ephemeral_privkey)
        # BOLT #8: "The responding node mixes in their local static public key"
        self._mix_hash(self.our_pubkey)
        self._re: coincurve.PublicKey | None = None

    def process_act_one(self, act_one: bytes) -> bytes:
        """<- e, es then -> e, ee.  Returns act two (50 bytes)."""
        if self._re is not None:
            raise HandshakeError("act one received twice", reason="STATE")
        act_one = bytes(act_one)
        self._check_act(act_one, ACT_ONE_SIZE, "ACT1")
        re = _parse_pubkey(act_one[1:34], "ACT1_BAD_PUBKEY")
        c = act_one[34:]
        self._mix_hash(act_one[1:34])
        temp_k1 = self._mix_key(self._ls.ecdh(re.format()))
        self._decrypt(temp_k1, 0, c, "ACT1_BAD_TAG")
        self._mix_hash(c)
        self._re = re
        # Act two.
        e_pub = self._e.public_key.format()
        self._mix_hash(e_pub)
        self._temp_k2 = self._mix_key(_ecdh(self._e, re))
        c2 = self._encrypt(self._temp_k2, 0, b"")
        self._mix_hash(c2)
        return b"\x00" + e_pub + c2

    def process_act_three(self, act_three: bytes) -> NoiseSession:
        """<- s, se.  Returns the session; `session.remote_pubkey` is the initiator's node id."""
        if self._re is None:
            raise HandshakeError("act three before act one", reason="STATE")
        act_three = bytes(act_three)
        self._check_act(act_three, ACT_THREE_SIZE, "ACT3")
        c, t = act_three[1:50], act_three[50:]
        rs_raw = self._decrypt(self._temp_k2, 1, c, "ACT3_BAD_CIPHERTEXT")
        rs = _parse_pubkey(rs_raw, "ACT3_BAD_PUBKEY")
        self._mix_hash(c)
        temp_k3 = self._mix_key(_ecdh(self._e, rs))
        self._decrypt(temp_k3, 0, t, "ACT3_BAD_TAG")
        rk, sk = hkdf_two_keys(self._ck, b"")
        self._done = True
        return NoiseSession(sk, rk, self._ck, rs.format())
