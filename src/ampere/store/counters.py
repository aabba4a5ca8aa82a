"""Persistent counters in the `vars` table (CLN-style created/updated/pay indexes), inside a write."""

from __future__ import annotations

import sqlite3
from typing import Any

# One statement per increment: the row made at 1 or incremented in place, and its new value returned (RETURNING:
# SQLite 3.35, PostgreSQL). A read and then a write cost two statements on the database thread, and a payment
# bumps one counter on the payer and two on the payee (issue 18). The same SQL on both databases: `vars.val` is
# TEXT, so the value goes through BIGINT and back. An older SQLite library (Ubuntu 20.04 has 3.31) takes the two.
_INCREMENT = ("INSERT INTO vars (name, val) VALUES (?, '1') ON CONFLICT(name) DO UPDATE SET "
              "val = CAST(CAST(vars.val AS BIGINT) + 1 AS TEXT) RETURNING val")
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)


def get_counter(db: Any, name: str) -> int:
    rows = db.query("SELECT val FROM vars WHERE name = ?", (name,))
    return int(rows[0][0]) if rows else 0


def next_counter(db: Any, name: str) -> int:
    """Increment counter `name` and return its new value (the first is 1). Through `execute`, not `query`: it
    writes (a backup database replays what `execute` ran)."""
    if not _HAS_RETURNING:
        value = get_counter(db, name) + 1
        db.execute("INSERT INTO vars (name, val) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET val = excluded.val",
                   (name, str(value)))
        return value
    rows = db.execute(_INCREMENT, (name,)).fetchall()  # (to the statement's end: SQLite's is then done)
    return int(rows[0][0])
