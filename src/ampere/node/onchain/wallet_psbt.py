"""The small part of BIP174 (PSBT version 0) the wallet RPCs need: write a PSBT for a transaction
with each input's witness UTXO (and final witness once signed), and read back a PSBT's unsigned
transaction (reserveinputs / unreserveinputs take one).

BIP174: "<magic> <global-map> <input-map>* <output-map>*", magic = 0x70736274 0xFF; each map is
<keypair>* 0x00, keypair = <compact size keylen><keytype><keydata> <compact size valuelen><value>.
"""
from __future__ import annotations

import base64
import binascii

from ampere.primitives.tx import Transaction, TxOut, TxParseError, compact_size_at, write_compact_size

MAGIC = b"psbt\xff"
PSBT_GLOBAL_UNSIGNED_TX = 0x00
PSBT_GLOBAL_VERSION = 0xFB
PSBT_IN_WITNESS_UTXO = 0x01
PSBT_IN_FINAL_SCRIPTWITNESS = 0x08


class PsbtError(ValueError):
    pass


def _kv(keytype: int, value: bytes, keydata: bytes = b"") -> bytes:
    key = bytes([keytype]) + keydata
    return write_compact_size(len(key)) + key + write_compact_size(len(value)) + value


def _witness_stack(items: list[bytes]) -> bytes:
    return write_compact_size(len(items)) + b"".join(write_compact_size(len(i)) + i for i in items)


def to_psbt(tx: Transaction, spent: list[TxOut]) -> str:
    """Base64 PSBT v0 of `tx`; `spent[i]` is the output input i spends.  Signed inputs carry their
    final witness."""
    unsigned = tx.copy()
    for i in unsigned.inputs:
        i.witness = []
        i.script_sig = b""
    out = bytearray(MAGIC)
    out += _kv(PSBT_GLOBAL_UNSIGNED_TX, unsigned.serialize(include_witness=False))
    out += b"\x00"
    for txin, prev in zip(tx.inputs, spent):
        out += _kv(PSBT_IN_WITNESS_UTXO, prev.serialize())
        if txin.witness:
            out += _kv(PSBT_IN_FINAL_SCRIPTWITNESS, _witness_stack(txin.witness))
        out += b"\x00"
    for _ in tx.outputs:
        out += b"\x00"
    return base64.b64encode(bytes(out)).decode()


def _read_map(raw: bytes, pos: int) -> tuple[list[tuple[bytes, bytes]], int]:
    pairs = []
    while True:
        if pos >= len(raw):
            raise PsbtError("truncated map")
        klen, pos = compact_size_at(raw, pos)
        if klen == 0:
            return pairs, pos
        key = raw[pos:pos + klen]
        pos += klen
        vlen, pos = compact_size_at(raw, pos)
        value = raw[pos:pos + vlen]
        if len(key) != klen or len(value) != vlen:
            raise PsbtError("truncated key or value")
        pos += vlen
        pairs.append((key, value))


def psbt_unsigned_tx(text: str) -> Transaction:
    """The unsigned transaction of a base64 PSBT (v0).  Raises PsbtError."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise PsbtError("not base64") from None
    if not raw.startswith(MAGIC):
        raise PsbtError("bad PSBT magic")
    try:
        pairs, _ = _read_map(raw, len(MAGIC))
    except (TxParseError, IndexError) as e:
        raise PsbtError(f"malformed PSBT: {e}") from None
    for key, value in pairs:
        if key == bytes([PSBT_GLOBAL_UNSIGNED_TX]):
            try:
                return Transaction.parse(value, allow_witness=False)
            except TxParseError as e:
                raise PsbtError(f"bad unsigned transaction: {e}") from None
        if key == bytes([PSBT_GLOBAL_VERSION]) and value != b"\x00\x00\x00\x00":
            raise PsbtError("only PSBT version 0 is supported")
    raise PsbtError("PSBT has no unsigned transaction")
