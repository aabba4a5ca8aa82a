"""Regtest blocks: header and block (de)serialization, merkle roots, and block assembly.

Block assembly follows what Bitcoin Core's miner produces, because libbitcoinkernel checks it:
- BIP34: the coinbase scriptSig starts with the height as `CScript() << height` pushes it.
- BIP141: an OP_RETURN commitment `aa21a9ed || SHA256d(witness merkle root || reserved)` and a
  coinbase witness holding the 32-byte reserved value (all zero).
- Subsidy: 50 BTC halving every 150 blocks on regtest.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ampere.primitives.crypto import sha256d
from ampere.primitives.script import push_data, push_int
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut, compact_size_at, write_compact_size

REGTEST_BITS = 0x207FFFFF
BLOCK_VERSION = 0x20000000
REGTEST_HALVING_INTERVAL = 150
COIN = 100_000_000
MAX_BLOCK_WEIGHT = 4_000_000
COINBASE_MATURITY = 100
WITNESS_COMMITMENT_HEADER = bytes.fromhex("aa21a9ed")
WITNESS_RESERVED_VALUE = b"\x00" * 32


class BlockParseError(ValueError):
    pass


def bits_to_target(bits: int) -> int:
    exponent = bits >> 24
    mantissa = bits & 0x7FFFFF
    return mantissa << (8 * (exponent - 3)) if exponent >= 3 else mantissa >> (8 * (3 - exponent))


def block_subsidy(height: int, halving_interval: int = REGTEST_HALVING_INTERVAL) -> int:
    halvings = height // halving_interval
    return 0 if halvings >= 64 else (50 * COIN) >> halvings


def merkle_root(hashes: list[bytes]) -> bytes:
    if not hashes:
        return b"\x00" * 32
    level = list(hashes)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


@dataclass
class BlockHeader:
    version: int
    prev_hash: bytes  # internal byte order
    merkle_root: bytes
    time: int
    bits: int
    nonce: int

    def serialize(self) -> bytes:
        return (self.version.to_bytes(4, "little", signed=True) + self.prev_hash + self.merkle_root
                + self.time.to_bytes(4, "little") + self.bits.to_bytes(4, "little")
                + self.nonce.to_bytes(4, "little"))

    def hash(self) -> bytes:
        return sha256d(self.serialize())

    @classmethod
    def parse(cls, raw: bytes) -> "BlockHeader":
        if len(raw) < 80:
            raise BlockParseError("block header too short")
        return cls(int.from_bytes(raw[0:4], "little", signed=True), raw[4:36], raw[36:68],
                   int.from_bytes(raw[68:72], "little"), int.from_bytes(raw[72:76], "little"),
                   int.from_bytes(raw[76:80], "little"))


@dataclass
class Block:
    header: BlockHeader
    txs: list[Transaction]

    def serialize(self) -> bytes:
        return (self.header.serialize() + write_compact_size(len(self.txs))
                + b"".join(tx.serialize() for tx in self.txs))

    def hash(self) -> bytes:
        return self.header.hash()

    @classmethod
    def parse(cls, raw: bytes) -> "Block":
        try:
            header = BlockHeader.parse(raw)
            n, pos = compact_size_at(raw, 80)
            txs = []
            for _ in range(n):
                tx, pos = Transaction.parse_from(raw, pos)
                txs.append(tx)
        except ValueError as e:
            raise BlockParseError(f"block decode failed: {e}") from None
        if pos != len(raw):
            raise BlockParseError("trailing bytes after block")
        return cls(header, txs)


def witness_commitment_script(txs_after_coinbase: list[Transaction]) -> bytes:
    """BIP141: the coinbase's wtxid counts as zero in the witness merkle tree."""
    root = merkle_root([b"\x00" * 32] + [tx.wtxid() for tx in txs_after_coinbase])
    commitment = sha256d(root + WITNESS_RESERVED_VALUE)
    return bytes([0x6A, 0x24]) + WITNESS_COMMITMENT_HEADER + commitment


def build_coinbase(height: int, value: int, script_pubkey: bytes, txs_after: list[Transaction]) -> Transaction:
    # BIP34 height, then an extra nonce so that blocks at the same height on two forks differ.
    script_sig = push_int(height) + push_data(os.urandom(4))
    cb = Transaction(
        version=2,
        inputs=[TxIn(OutPoint(b"\x00" * 32, 0xFFFFFFFF), script_sig, 0xFFFFFFFF, [WITNESS_RESERVED_VALUE])],
        outputs=[TxOut(value, script_pubkey), TxOut(0, witness_commitment_script(txs_after))],
        locktime=0,
    )
    return cb


def solve_header(header: BlockHeader) -> BlockHeader:
    """Grind the nonce until the hash meets the target (regtest: about two tries)."""
    target = bits_to_target(header.bits)
    prefix = header.serialize()[:76]
    for nonce in range(0x100000000):
        h = sha256d(prefix + nonce.to_bytes(4, "little"))
        if int.from_bytes(h, "little") <= target:
            header.nonce = nonce
            return header
    raise RuntimeError("no nonce found")


def assemble_block(prev_hash: bytes, height: int, prev_mtp: int, script_pubkey: bytes,
                   txs: list[Transaction], fees: int, block_time: int | None = None) -> Block:
    """A solved block on `prev_hash` paying subsidy + fees to `script_pubkey`."""
    cb = build_coinbase(height, block_subsidy(height) + fees, script_pubkey, txs)
    all_txs = [cb] + list(txs)
    t = max(prev_mtp + 1, int(time.time()) if block_time is None else block_time)
    header = BlockHeader(BLOCK_VERSION, prev_hash, merkle_root([tx.txid() for tx in all_txs]), t, REGTEST_BITS, 0)
    return Block(solve_header(header), all_txs)


def difficulty_from_bits(bits: int) -> float:
    """Bitcoin Core's GetDifficulty."""
    shift = (bits >> 24) & 0xFF
    diff = 0x0000FFFF / (bits & 0x00FFFFFF)
    while shift < 29:
        diff *= 256.0
        shift += 1
    while shift > 29:
        diff /= 256.0
        shift -= 1
    return diff


def block_work(bits: int) -> int:
    target = bits_to_target(bits)
    return (1 << 256) // (target + 1)
