"""Bitcoin transactions: serialization (BIP144), txid/wtxid, weight, and signature hashes.

Signature hashes: legacy (pre-segwit), BIP143 (segwit v0) and BIP341 (taproot). Signing uses
coincurve: DER-encoded ECDSA with RFC6979 nonces and low-S (libsecp256k1's defaults), and BIP340
Schnorr for taproot.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import coincurve

from ampere.primitives.amount import SatInt
from ampere.primitives.crypto import SECP256K1_ORDER, hash160, sha256, sha256d, tagged_hash
from ampere.primitives.script import OP_CODESEPARATOR, ScriptError, iter_script, p2pkh_script_code

__all__ = [
    "TxParseError", "OutPoint", "TxIn", "TxOut", "Transaction",
    "SIGHASH_DEFAULT", "SIGHASH_ALL", "SIGHASH_NONE", "SIGHASH_SINGLE", "SIGHASH_ANYONECANPAY",
    "legacy_sighash", "bip143_sighash", "bip341_sighash",
    "sign_input_p2wpkh", "ecdsa_sign", "taproot_tweak_privkey", "taproot_output_key",
    "sign_input_p2tr_keypath", "write_compact_size", "read_compact_size", "compact_size_at",
]

SIGHASH_DEFAULT = 0x00  # taproot only: ALL, with a 64-byte signature
SIGHASH_ALL = 0x01
SIGHASH_NONE = 0x02
SIGHASH_SINGLE = 0x03
SIGHASH_ANYONECANPAY = 0x80

# Bitcoin Core's MAX_SIZE for compact sizes in serialized objects.
_MAX_COMPACT_SIZE = 0x02000000


class TxParseError(ValueError):
    """Raw bytes are not a well-formed transaction."""


# --- compact size ---------------------------------------------------------------------------------
def write_compact_size(n: int) -> bytes:
    if n < 0:
        raise ValueError("compact size cannot be negative")
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes):
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise TxParseError("unexpected end of data")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def i32(self) -> int:
        return int.from_bytes(self.take(4), "little", signed=True)

    def i64(self) -> int:
        return int.from_bytes(self.take(8), "little", signed=True)

    def compact_size(self) -> int:
        return read_compact_size(self)

    def var_bytes(self) -> bytes:
        return self.take(self.compact_size())


def read_compact_size(r: _Reader) -> int:
    """Read a canonical compact size (non-minimal encodings are rejected, as Bitcoin Core does)."""
    first = r.u8()
    if first < 0xFD:
        n = first
    elif first == 0xFD:
        n = int.from_bytes(r.take(2), "little")
        if n < 0xFD:
            raise TxParseError("non-canonical compact size")
    elif first == 0xFE:
        n = int.from_bytes(r.take(4), "little")
        if n < 0x10000:
            raise TxParseError("non-canonical compact size")
    else:
        n = int.from_bytes(r.take(8), "little")
        if n < 0x100000000:
            raise TxParseError("non-canonical compact size")
    if n > _MAX_COMPACT_SIZE:
        raise TxParseError("compact size too large")
    return n


def compact_size_at(raw: bytes, offset: int) -> tuple[int, int]:
    """Read a compact size at `offset`; returns (value, offset after it)."""
    r = _Reader(raw)
    r.pos = offset
    n = read_compact_size(r)
    return n, r.pos


# --- data types ---------------------------------------------------------------------------------
@dataclass
class OutPoint:
    txid: bytes  # 32 bytes, internal byte order (as serialized in a transaction)
    vout: int

    def txid_hex(self) -> str:
        """Display order (byte-reversed), as bitcoind prints txids."""
        return self.txid[::-1].hex()

    @classmethod
    def from_hex(cls, txid_hex: str, vout: int) -> "OutPoint":
        """Build from a display-order txid as printed by bitcoind."""
        return cls(bytes.fromhex(txid_hex)[::-1], vout)

    def serialize(self) -> bytes:
        return self.txid + self.vout.to_bytes(4, "little")

    def __hash__(self) -> int:
        return hash((self.txid, self.vout))


@dataclass
class TxIn:
    prevout: OutPoint
    script_sig: bytes = b""
    sequence: int = 0xFFFFFFFF
    witness: list[bytes] = field(default_factory=list)


@dataclass
class TxOut:
    value: SatInt  # satoshi
    script_pubkey: bytes

    def serialize(self) -> bytes:
        spk = self.script_pubkey
        n = len(spk)
        # (every standard scriptPubKey is shorter than 0xFD: its compact size is one byte)
        return (self.value.to_bytes(8, "little", signed=True) + (bytes((n,)) if n < 0xFD else write_compact_size(n))
                + spk)


@dataclass
class Transaction:
    version: int = 2
    inputs: list[TxIn] = field(default_factory=list)
    outputs: list[TxOut] = field(default_factory=list)
    locktime: int = 0

    # -- serialization --
    def has_witness(self) -> bool:
        return any(i.witness for i in self.inputs)

    def serialize(self, include_witness: bool = True) -> bytes:
        """BIP144 serialization when `include_witness` and any input has a witness, else legacy."""
        segwit = include_witness and self.has_witness()
        out = bytearray(self.version.to_bytes(4, "little", signed=True))
        if segwit:
            out += b"\x00\x01"
        out += write_compact_size(len(self.inputs))
        for i in self.inputs:
            out += i.prevout.serialize()
            out += write_compact_size(len(i.script_sig)) + i.script_sig
            out += i.sequence.to_bytes(4, "little")
        out += write_compact_size(len(self.outputs))
        for o in self.outputs:
            out += o.serialize()
        if segwit:
            for i in self.inputs:
                out += write_compact_size(len(i.witness))
                for item in i.witness:
                    out += write_compact_size(len(item)) + item
        out += self.locktime.to_bytes(4, "little")
        return bytes(out)

    def to_hex(self) -> str:
        return self.serialize().hex()

    @classmethod
    def parse(cls, raw: bytes, allow_witness: bool = True) -> "Transaction":
        """Parse a whole transaction; trailing bytes or malformed fields raise TxParseError.

        As in Bitcoin Core, `00 01` after the version means the BIP144 extended format when
        `allow_witness` (so a zero-input legacy transaction needs allow_witness=False).
        """
        if isinstance(raw, str):
            raise TypeError("Transaction.parse takes bytes; use parse_hex for hex strings")
        r = _Reader(bytes(raw))
        tx = cls._read(r, allow_witness)
        if r.pos != len(r.buf):
            raise TxParseError("trailing bytes after transaction")
        return tx

    @classmethod
    def parse_from(cls, raw: bytes, offset: int = 0) -> tuple["Transaction", int]:
        """Parse one transaction starting at `offset` (e.g. inside a block); returns (tx, end offset)."""
        r = _Reader(raw)
        r.pos = offset
        tx = cls._read(r, True)
        return tx, r.pos

    @classmethod
    def parse_hex(cls, text: str, allow_witness: bool = True) -> "Transaction":
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise TxParseError("transaction is not valid hex") from None
        return cls.parse(raw, allow_witness)

    @classmethod
    def _read(cls, r: _Reader, allow_witness: bool) -> "Transaction":
        version = r.i32()
        n_in = r.compact_size()
        flags = 0
        if n_in == 0 and allow_witness:
            flags = r.u8()
            if flags == 0:
                raise TxParseError("extended format marker without flag")
            n_in = r.compact_size()
        inputs = []
        for _ in range(n_in):
            prev = OutPoint(r.take(32), r.u32())
            inputs.append(TxIn(prev, r.var_bytes(), r.u32()))
        n_out = r.compact_size()
        outputs = []
        for _ in range(n_out):
            value = r.i64()
            outputs.append(TxOut(SatInt(value), r.var_bytes()))
        if flags:
            if flags != 1:
                raise TxParseError("unknown transaction optional data")
            for i in inputs:
                i.witness = [r.var_bytes() for _ in range(r.compact_size())]
            if not any(i.witness for i in inputs):
                raise TxParseError("superfluous witness record")
        locktime = r.u32()
        return cls(version, inputs, outputs, locktime)

    # -- identifiers and sizes --
    def txid(self) -> bytes:
        """Internal byte order (as used in OutPoint.txid)."""
        return sha256d(self.serialize(include_witness=False))

    def txid_hex(self) -> str:
        return self.txid()[::-1].hex()

    def wtxid(self) -> bytes:
        return sha256d(self.serialize(include_witness=True))

    def wtxid_hex(self) -> str:
        return self.wtxid()[::-1].hex()

    def weight(self) -> int:
        base = len(self.serialize(include_witness=False))
        total = len(self.serialize(include_witness=True))
        return base * 3 + total

    def vsize(self) -> int:
        return (self.weight() + 3) // 4

    def is_coinbase(self) -> bool:
        return (len(self.inputs) == 1 and self.inputs[0].prevout.txid == b"\x00" * 32
                and self.inputs[0].prevout.vout == 0xFFFFFFFF)

    def copy(self) -> "Transaction":
        return copy.deepcopy(self)


# --- signature hashes ------------------------------------------------------------------------------
def _strip_codeseparators(script: bytes) -> bytes:
    """Legacy sighash removes OP_CODESEPARATOR opcodes from scriptCode."""
    try:
        ops = list(iter_script(script))
    except ScriptError:
        return script
    if not any(o.opcode == OP_CODESEPARATOR for o in ops):
        return script
    out = bytearray()
    i = 0
    for o in iter_script(script):
        # Re-emit the exact original bytes of every op except OP_CODESEPARATOR.
        start = i
        if o.data is not None:
            if o.opcode < 0x4C:
                i += 1 + len(o.data)
            else:
                i += 1 + {0x4C: 1, 0x4D: 2, 0x4E: 4}[o.opcode] + len(o.data)
        else:
            i += 1
        if o.opcode != OP_CODESEPARATOR:
            out += script[start:i]
    return bytes(out)


def legacy_sighash(tx: Transaction, input_index: int, script_code: bytes,
                   sighash_type: int = SIGHASH_ALL) -> bytes:
    """Pre-segwit signature hash (Bitcoin Core's SignatureHash with SigVersion::BASE)."""
    if input_index >= len(tx.inputs):
        raise IndexError("input index out of range")
    base = sighash_type & 0x1F
    anyone = bool(sighash_type & SIGHASH_ANYONECANPAY)
    if base == SIGHASH_SINGLE and input_index >= len(tx.outputs):
        # The historical SIGHASH_SINGLE bug: the hash is the number one.
        return (1).to_bytes(32, "little")
    script_code = _strip_codeseparators(script_code)
    out = bytearray(tx.version.to_bytes(4, "little", signed=True))
    inputs = [input_index] if anyone else range(len(tx.inputs))
    out += write_compact_size(len(inputs))
    for idx in inputs:
        txin = tx.inputs[idx]
        out += txin.prevout.serialize()
        script = script_code if idx == input_index else b""
        out += write_compact_size(len(script)) + script
        seq = txin.sequence
        if idx != input_index and base in (SIGHASH_NONE, SIGHASH_SINGLE):
            seq = 0
        out += seq.to_bytes(4, "little")
    if base == SIGHASH_NONE:
        out += write_compact_size(0)
    elif base == SIGHASH_SINGLE:
        out += write_compact_size(input_index + 1)
        for idx in range(input_index):
            out += TxOut(SatInt(-1), b"").serialize()
        out += tx.outputs[input_index].serialize()
    else:
        out += write_compact_size(len(tx.outputs))
        for o in tx.outputs:
            out += o.serialize()
    out += tx.locktime.to_bytes(4, "little")
    out += sighash_type.to_bytes(4, "little")
    return sha256d(bytes(out))


_ZERO32 = b"\x00" * 32


def bip143_sighash(tx: Transaction, input_index: int, script_code: bytes, amount_sat: int,
                   sighash_type: int = SIGHASH_ALL) -> bytes:
    """BIP143 signature hash for segwit v0 inputs. `script_code` has no length prefix."""
    # Every commitment and HTLC signature (made or checked) computes one: written as one join of the fields.
    inputs = tx.inputs
    if input_index >= len(inputs):
        raise IndexError("input index out of range")
    base = sighash_type & 0x1F
    anyone = sighash_type & SIGHASH_ANYONECANPAY
    if anyone:
        hash_prevouts = hash_sequence = _ZERO32
    else:
        hash_prevouts = sha256d(b"".join([i.prevout.txid + i.prevout.vout.to_bytes(4, "little") for i in inputs]))
        hash_sequence = (_ZERO32 if base in (SIGHASH_SINGLE, SIGHASH_NONE)
                         else sha256d(b"".join([i.sequence.to_bytes(4, "little") for i in inputs])))
    if base not in (SIGHASH_SINGLE, SIGHASH_NONE):
        hash_outputs = sha256d(b"".join([o.serialize() for o in tx.outputs]))
    elif base == SIGHASH_SINGLE and input_index < len(tx.outputs):
        hash_outputs = sha256d(tx.outputs[input_index].serialize())
    else:
        hash_outputs = _ZERO32
    txin = inputs[input_index]
    n = len(script_code)
    return sha256d(b"".join((
        tx.version.to_bytes(4, "little", signed=True), hash_prevouts, hash_sequence,
        txin.prevout.txid, txin.prevout.vout.to_bytes(4, "little"),
        bytes((n,)) if n < 0xFD else write_compact_size(n), script_code,
        amount_sat.to_bytes(8, "little", signed=True), txin.sequence.to_bytes(4, "little"), hash_outputs,
        tx.locktime.to_bytes(4, "little"), sighash_type.to_bytes(4, "little"))))


def bip341_sighash(tx: Transaction, input_index: int, spent_outputs: Sequence[TxOut],
                   sighash_type: int = SIGHASH_DEFAULT, *, leaf_hash: bytes | None = None,
                   annex: bytes | None = None, codesep_pos: int = 0xFFFFFFFF) -> bytes:
    """BIP341 signature message hash; key path by default, script path (BIP342) with `leaf_hash`."""
    if input_index >= len(tx.inputs):
        raise IndexError("input index out of range")
    if len(spent_outputs) != len(tx.inputs):
        raise ValueError("spent_outputs must list the output spent by every input")
    if sighash_type not in (0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83):
        raise ValueError("invalid taproot sighash type")
    base = sighash_type & 0x03
    anyone = bool(sighash_type & SIGHASH_ANYONECANPAY)
    msg = bytearray([0x00, sighash_type])  # epoch 0, hash_type
    msg += tx.version.to_bytes(4, "little", signed=True)
    msg += tx.locktime.to_bytes(4, "little")
    if not anyone:
        msg += sha256(b"".join(i.prevout.serialize() for i in tx.inputs))
        msg += sha256(b"".join(o.value.to_bytes(8, "little", signed=True) for o in spent_outputs))
        msg += sha256(b"".join(write_compact_size(len(o.script_pubkey)) + o.script_pubkey
                               for o in spent_outputs))
        msg += sha256(b"".join(i.sequence.to_bytes(4, "little") for i in tx.inputs))
    if base not in (SIGHASH_NONE, SIGHASH_SINGLE):
        msg += sha256(b"".join(o.serialize() for o in tx.outputs))
    ext_flag = 1 if leaf_hash is not None else 0
    msg.append(ext_flag * 2 + (1 if annex is not None else 0))
    if anyone:
        txin = tx.inputs[input_index]
        spent = spent_outputs[input_index]
        msg += txin.prevout.serialize()
        msg += spent.serialize()
        msg += txin.sequence.to_bytes(4, "little")
    else:
        msg += input_index.to_bytes(4, "little")
    if annex is not None:
        msg += sha256(write_compact_size(len(annex)) + annex)
    if base == SIGHASH_SINGLE:
        if input_index >= len(tx.outputs):
            raise ValueError("SIGHASH_SINGLE without a matching output")
        msg += sha256(tx.outputs[input_index].serialize())
    if leaf_hash is not None:
        msg += leaf_hash + b"\x00" + codesep_pos.to_bytes(4, "little")
    return tagged_hash("TapSighash", bytes(msg))


# --- signing ----------------------------------------------------------------------------------------
def ecdsa_sign(privkey: coincurve.PrivateKey, digest32: bytes) -> bytes:
    """DER signature of a 32-byte digest (RFC6979 nonce, low-S: libsecp256k1's defaults)."""
    return privkey.sign(digest32, hasher=None)


def sign_input_p2wpkh(tx: Transaction, input_index: int, privkey: coincurve.PrivateKey, amount_sat: int,
                      sighash_type: int = SIGHASH_ALL) -> None:
    """Sign a P2WPKH input in place: witness = [DER signature + sighash byte, compressed pubkey]."""
    pubkey = privkey.public_key.format(compressed=True)
    script_code = p2pkh_script_code(hash160(pubkey))
    digest = bip143_sighash(tx, input_index, script_code, amount_sat, sighash_type)
    sig = ecdsa_sign(privkey, digest) + bytes([sighash_type])
    tx.inputs[input_index].witness = [sig, pubkey]




def taproot_tweak_privkey(privkey: coincurve.PrivateKey, merkle_root: bytes = b"") -> coincurve.PrivateKey:
    """BIP341 taproot_tweak_seckey: negate to an even-Y key, then add the TapTweak of (x-only key, root)."""
    pub = privkey.public_key.format(compressed=True)
    d = int.from_bytes(privkey.secret, "big")
    if pub[0] == 0x03:
        d = SECP256K1_ORDER - d
    t = int.from_bytes(tagged_hash("TapTweak", pub[1:] + merkle_root), "big")
    if t >= SECP256K1_ORDER:
        raise ValueError("taproot tweak out of range")
    return coincurve.PrivateKey(((d + t) % SECP256K1_ORDER).to_bytes(32, "big"))


def taproot_output_key(privkey: coincurve.PrivateKey, merkle_root: bytes = b"") -> bytes:
    """The 32-byte x-only output key Q for an internal key (BIP86 when merkle_root is empty)."""
    return taproot_tweak_privkey(privkey, merkle_root).public_key.format(compressed=True)[1:]


def sign_input_p2tr_keypath(tx: Transaction, input_index: int, internal_privkey: coincurve.PrivateKey,
                            spent_outputs: Sequence[TxOut], sighash_type: int = SIGHASH_DEFAULT,
                            merkle_root: bytes = b"") -> None:
    """Sign a taproot key-path input in place (BIP340 Schnorr with the tweaked key)."""
    digest = bip341_sighash(tx, input_index, spent_outputs, sighash_type)
    tweaked = taproot_tweak_privkey(internal_privkey, merkle_root)
    sig = tweaked.sign_schnorr(digest)
    if sighash_type != SIGHASH_DEFAULT:
        sig += bytes([sighash_type])
    tx.inputs[input_index].witness = [sig]
