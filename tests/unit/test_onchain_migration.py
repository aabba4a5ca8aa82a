"""Migration 10 keeps what the resolver had recorded before it (an output of the funding spend: txid x'')."""
from __future__ import annotations

import asyncio
import sqlite3

from ampere.store.migrations import MIGRATIONS
from ampere.store.sqlite import SqliteStore, _split_sql


def test_onchain_outputs_carried_over(tmp_path):
    path = str(tmp_path / "db")
    c = sqlite3.connect(path)
    for v in range(9):
        for stmt in _split_sql(MIGRATIONS[v]):
            c.execute(stmt)
    c.execute("PRAGMA user_version=9")
    c.execute("INSERT INTO onchain_channels (channel_id, funding_txid, funding_vout, spend_tx, spend_height, kind, "
              "commitment_number, closed) VALUES (x'01', x'02', 0, x'03', 5, 'local', 1, 0)")
    c.execute("INSERT INTO onchain_outputs (channel_id, vout, kind, state, value, scriptpubkey, csv, sweep_tx) "
              "VALUES (x'01', 1, 'to_local', 'sweep', 1000, x'0014', 6, x'aa')")
    c.commit()
    c.close()

    async def main():
        s = SqliteStore(path)
        await s.open()
        try:
            rows = await s.read(lambda db: db.query(
                "SELECT channel_id, txid, vout, kind, state, value, csv, sweep_tx, info FROM onchain_txouts"))
            assert [tuple(bytes(x) if isinstance(x, (bytes, memoryview)) else x for x in r) for r in rows] == [
                (b"\x01", b"", 1, "to_local", "sweep", 1000, 6, b"\xaa", None)]
            assert await s.read(lambda db: db.query("SELECT name FROM sqlite_master WHERE name = 'onchain_outputs'")) \
                == []
            for table in ("channel_htlc_stubs", "onchain_preimages"):
                assert await s.read(lambda db: db.query(f"SELECT count(*) FROM {table}")) == [(0,)]
        finally:
            await s.close()

    asyncio.run(main())
