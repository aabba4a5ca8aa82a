"""amp-chaind's own index (SQLite): the blocks it knows, the active chain, UTXO set, undo data,
transaction index and faucet wallet keys.

libbitcoinkernel validates and stores blocks but offers no UTXO lookup or transaction index, so
amp-chaind derives these from the blocks the kernel connects. Everything here is replayable from
the blocks table, which is also how a kernel that lost its last blocks (kill -9) is caught up.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- every block ever mined or submitted (all branches)
CREATE TABLE IF NOT EXISTS blocks (hash BLOB PRIMARY KEY, height INTEGER NOT NULL, prev BLOB NOT NULL,
                                   raw BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_prev ON blocks (prev);
-- the active chain as indexed (mirrors the kernel's active chain after each sync)
CREATE TABLE IF NOT EXISTS chain (height INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, time INTEGER NOT NULL,
                                  ntx INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS utxos (txid BLOB NOT NULL, vout INTEGER NOT NULL, value INTEGER NOT NULL,
                                  spk BLOB NOT NULL, height INTEGER NOT NULL, coinbase INTEGER NOT NULL,
                                  PRIMARY KEY (txid, vout));
CREATE INDEX IF NOT EXISTS utxos_spk ON utxos (spk);
-- coins spent by each connected block, to disconnect it again
CREATE TABLE IF NOT EXISTS undo (block_hash BLOB NOT NULL, spender BLOB NOT NULL, vin INTEGER NOT NULL,
                                 txid BLOB NOT NULL, vout INTEGER NOT NULL, value INTEGER NOT NULL,
                                 spk BLOB NOT NULL, height INTEGER NOT NULL, coinbase INTEGER NOT NULL,
                                 PRIMARY KEY (block_hash, spender, vin));
CREATE TABLE IF NOT EXISTS txindex (txid BLOB PRIMARY KEY, block_hash BLOB NOT NULL, height INTEGER NOT NULL,
                                    pos INTEGER NOT NULL, raw BLOB NOT NULL);
-- blocks removed by invalidateblock (kept so reconsiderblock can resubmit them)
CREATE TABLE IF NOT EXISTS invalidated (hash BLOB PRIMARY KEY);
CREATE TABLE IF NOT EXISTS wallet_keys (spk BLOB PRIMARY KEY, privkey BLOB NOT NULL, address TEXT NOT NULL,
                                        kind TEXT NOT NULL, label TEXT NOT NULL DEFAULT '');
"""


@dataclass
class Coin:
    txid: bytes
    vout: int
    value: int
    spk: bytes
    height: int  # confirmation height (mempool coins: tip + 1)
    coinbase: bool


class Store:
    def __init__(self, path: str):
        # Created on the main thread, then used only by the single engine thread.
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across a process crash in WAL mode (only power loss can drop commits).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    # -- meta --
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- blocks --
    def put_block(self, block_hash: bytes, height: int, prev: bytes, raw: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO blocks (hash, height, prev, raw) VALUES (?, ?, ?, ?)",
                        (block_hash, height, prev, raw))

    def get_block_raw(self, block_hash: bytes) -> bytes | None:
        row = self.db.execute("SELECT raw FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        return row[0] if row else None

    def get_block_meta(self, block_hash: bytes) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT height, prev FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        return (row[0], row[1]) if row else None

    def children_of(self, block_hash: bytes) -> list[bytes]:
        return [r[0] for r in self.db.execute("SELECT hash FROM blocks WHERE prev=?", (block_hash,))]

    # -- active chain --
    def tip(self) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT height, hash FROM chain ORDER BY height DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None

    def hash_at(self, height: int) -> bytes | None:
        row = self.db.execute("SELECT hash FROM chain WHERE height=?", (height,)).fetchone()
        return row[0] if row else None

    def height_of(self, block_hash: bytes) -> int | None:
        """Height if the block is in the active chain, else None."""
        row = self.db.execute("SELECT height FROM chain WHERE hash=?", (block_hash,)).fetchone()
        return row[0] if row else None

    def times(self, low: int, high: int) -> list[int]:
        return [r[0] for r in self.db.execute(
            "SELECT time FROM chain WHERE height BETWEEN ? AND ? ORDER BY height", (low, high))]

    def chain_range(self, low: int, high: int) -> list[tuple[int, bytes]]:
        return list(self.db.execute("SELECT height, hash FROM chain WHERE height BETWEEN ? AND ? ORDER BY height",
                                    (low, high)))

    # -- coins --
    def get_coin(self, txid: bytes, vout: int) -> Coin | None:
        row = self.db.execute("SELECT value, spk, height, coinbase FROM utxos WHERE txid=? AND vout=?",
                              (txid, vout)).fetchone()
        return Coin(txid, vout, row[0], row[1], row[2], bool(row[3])) if row else None

    def has_any_output(self, txid: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM utxos WHERE txid=? LIMIT 1", (txid,)).fetchone() is not None

    def coins_for_spks(self, spks: list[bytes]) -> list[Coin]:
        out = []
        for i in range(0, len(spks), 500):
            chunk = spks[i:i + 500]
            q = ",".join("?" * len(chunk))
            for r in self.db.execute(
                    f"SELECT txid, vout, value, spk, height, coinbase FROM utxos WHERE spk IN ({q})", chunk):
                out.append(Coin(r[0], r[1], r[2], r[3], r[4], bool(r[5])))
        return out

    def utxo_stats(self) -> tuple[int, int]:
        row = self.db.execute("SELECT COUNT(*), COALESCE(SUM(value), 0) FROM utxos").fetchone()
        return row[0], row[1]

    # -- tx index --
    def get_tx(self, txid: bytes) -> tuple[bytes, bytes, int] | None:
        """(raw, block hash, height) of a confirmed transaction in the active chain."""
        row = self.db.execute("SELECT raw, block_hash, height FROM txindex WHERE txid=?", (txid,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def spent_outputs_of(self, block_hash: bytes, spender: bytes) -> list[tuple[int, int, bytes]]:
        """(vin, value, spk) of the coins a confirmed transaction spent."""
        return list(self.db.execute(
            "SELECT vin, value, spk FROM undo WHERE block_hash=? AND spender=? ORDER BY vin", (block_hash, spender)))

    # -- invalidated --
    def invalidated(self) -> set[bytes]:
        return {r[0] for r in self.db.execute("SELECT hash FROM invalidated")}

    def add_invalidated(self, block_hash: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO invalidated (hash) VALUES (?)", (block_hash,))

    def remove_invalidated(self, block_hash: bytes) -> None:
        self.db.execute("DELETE FROM invalidated WHERE hash=?", (block_hash,))

    # -- wallet --
    def add_wallet_key(self, spk: bytes, privkey: bytes, address: str, kind: str, label: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO wallet_keys (spk, privkey, address, kind, label) VALUES (?,?,?,?,?)",
                        (spk, privkey, address, kind, label))

    def wallet_keys(self) -> list[tuple[bytes, bytes, str, str]]:
        return list(self.db.execute("SELECT spk, privkey, address, kind FROM wallet_keys"))
