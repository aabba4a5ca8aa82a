"""SQLite behind the store interface: WAL journal, FULL sync, append-only migrations."""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Sequence, TypeVar

from .migrations import MIGRATIONS
from .store import Store

T = TypeVar("T")


class _SqliteDb:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()


class SqliteStore(Store):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def _open(self) -> None:
        new = not os.path.exists(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if new:
            os.chmod(self.path, 0o600)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk when it returns, WAL or not (persist before you speak).
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        self.conn = conn
        self._migrate()

    def _migrate(self) -> None:
        assert self.conn is not None
        have = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if have > len(MIGRATIONS):
            raise RuntimeError(
                f"database {self.path} is at version {have}, newer than this Ampere ({len(MIGRATIONS)})"
            )
        for version in range(have, len(MIGRATIONS)):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _split_sql(MIGRATIONS[version]):
                    self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version={version + 1}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def _begin(self) -> None:
        assert self.conn is not None, "store not open"
        self.conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def _db(self) -> _SqliteDb:
        assert self.conn is not None, "store not open"
        return _SqliteDb(self.conn)

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
