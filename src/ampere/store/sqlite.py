"""SQLite behind the store interface: WAL journal, FULL sync, append-only migrations.

With a backup (`--wallet=sqlite3:///main:/backup`, Core Lightning's synchronous replica), every write goes to
both files: a batch runs on the main database, the statements of its successful writes are replayed on the
backup, the backup commits first and then the main file, and only then is any caller answered.  So a write
that reached main reached the backup.  Both files carry the same random database id and a commit counter
(`vars`: db_id, db_commits); at start a backup that is missing, belongs to another database or is not at
main's commit is refused -- except one commit ahead, the trace of a crash between the two commits: that
last transaction was never acknowledged, so main is the state to keep and the backup is rewritten from it.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from typing import Any, Callable, Sequence, TypeVar

from .migrations import MIGRATIONS, migration_sql, split_sql
from .store import Db, Store

T = TypeVar("T")
_split_sql = split_sql  # the name tests and tools used before it moved to migrations.py


class BackupError(RuntimeError):
    pass


class _SqliteDb:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()


class _RecordingDb(_SqliteDb):
    """Records every statement that may change the database, to replay on the backup."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.log: list[tuple[str, Sequence[Any]]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        cur = self.conn.execute(sql, params)
        if not sql.lstrip()[:6].upper() == "SELECT":
            self.log.append((sql, params))
        return cur


def _connect(path: str) -> sqlite3.Connection:
    new = not os.path.exists(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if new:
        os.chmod(path, 0o600)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk when it returns, WAL or not (persist before you speak).
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class SqliteStore(Store):
    def __init__(self, path: str, backup: str | None = None) -> None:
        super().__init__()
        self.path = path
        self.backup_path = backup
        self.conn: sqlite3.Connection | None = None
        self.backup: sqlite3.Connection | None = None

    def _open(self) -> None:
        if self.backup_path is None:
            self.conn = _connect(self.path)
            _migrate(self.conn, self.path)
            return
        main_new, backup_new = not os.path.exists(self.path), not os.path.exists(self.backup_path)
        if backup_new and not main_new:
            raise BackupError(f"backup database {self.backup_path} is missing (main {self.path} exists): "
                              "copy main to it while the node is stopped, or remove the backup from --wallet")
        if main_new and not backup_new:
            raise BackupError(f"main database {self.path} is missing but its backup {self.backup_path} exists: "
                              "copy the backup to it while the node is stopped")
        self.conn = _connect(self.path)
        self.backup = _connect(self.backup_path)
        if main_new:
            db_id = secrets.token_hex(16)
            for c in (self.conn, self.backup):
                _migrate(c, self.path)
                c.execute("INSERT INTO vars (name, val) VALUES ('db_id', ?), ('db_commits', '0')", (db_id,))
            return
        main_id, main_n = _identity(self.conn)
        backup_id, backup_n = _identity(self.backup)
        if main_id is None or backup_id != main_id:
            raise BackupError(f"backup database {self.backup_path} does not belong to {self.path} (database ids "
                              f"{backup_id} and {main_id}): refusing to start")
        if backup_n == main_n + 1:
            # A crash between the backup's commit and main's: that transaction was never acknowledged.
            self.backup.close()
            self.backup = None
            dst = sqlite3.connect(self.backup_path)
            self.conn.backup(dst)
            dst.close()
            self.backup = _connect(self.backup_path)
        elif backup_n != main_n:
            raise BackupError(f"backup database {self.backup_path} has diverged from {self.path} (commit "
                              f"{backup_n} against {main_n}): refusing to start")
        _migrate(self.conn, self.path)
        _migrate(self.backup, self.backup_path)

    def _begin(self) -> None:
        assert self.conn is not None, "store not open"
        self.conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        assert self.conn is not None, "store not open"
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        assert self.conn is not None, "store not open"
        self.conn.execute("ROLLBACK")

    def _db(self) -> _SqliteDb:
        assert self.conn is not None, "store not open"
        return _SqliteDb(self.conn)

    def _run_batch(self, fns: list[Callable[[Db], Any]]) -> list[tuple[bool, Any]]:
        if self.backup is None:
            return super()._run_batch(fns)
        assert self.conn is not None, "store not open"
        outcomes: list[tuple[bool, Any]] = []
        replay: list[tuple[str, Sequence[Any]]] = []
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.backup.execute("BEGIN IMMEDIATE")
            for i, fn in enumerate(fns):
                db = _RecordingDb(self.conn)
                outcome = self._apply(db, i, fn)
                outcomes.append(outcome)
                if outcome[0]:
                    replay += [s for s in db.log if "SAVEPOINT" not in s[0].upper()]
            replay.append(("UPDATE vars SET val = CAST(val AS INTEGER) + 1 WHERE name = 'db_commits'", ()))
            self.conn.execute(*replay[-1])
            for sql, params in replay:
                self.backup.execute(sql, params)
            self.backup.execute("COMMIT")  # the backup first: whatever main has, the backup has
            self.conn.execute("COMMIT")
            self.batches += 1
            self.writes += len(fns)
        except BaseException as e:
            for c in (self.backup, self.conn):
                try:
                    c.execute("ROLLBACK")
                except Exception:
                    pass
            outcomes = [(False, e)] * len(fns)
        return outcomes

    def _close(self) -> None:
        for attr in ("conn", "backup"):
            c = getattr(self, attr)
            if c is not None:
                c.close()
                setattr(self, attr, None)


def _identity(conn: sqlite3.Connection) -> tuple[str | None, int]:
    try:
        rows = dict(conn.execute("SELECT name, val FROM vars WHERE name IN ('db_id', 'db_commits')").fetchall())
    except sqlite3.OperationalError:
        return None, 0
    return rows.get("db_id"), int(rows.get("db_commits", 0))


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    have = conn.execute("PRAGMA user_version").fetchone()[0]
    if have > len(MIGRATIONS):
        raise RuntimeError(f"database {path} is at version {have}, newer than this Ampere ({len(MIGRATIONS)})")
    for version in range(have, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in split_sql(migration_sql(MIGRATIONS[version], "sqlite3")):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version={version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
