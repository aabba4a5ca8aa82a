"""Persistent counters in the `vars` table (CLN-style created/updated/pay indexes), inside a write."""

from __future__ import annotations

from typing import Any


def get_counter(db: Any, name: str) -> int:
    rows = db.query("SELECT val FROM vars WHERE name = ?", (name,))
    return int(rows[0][0]) if rows else 0


def next_counter(db: Any, name: str) -> int:
    """Increment counter `name` and return its new value (the first is 1)."""
    value = get_counter(db, name) + 1
    db.execute("INSERT INTO vars (name, val) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET val = excluded.val",
               (name, str(value)))
    return value
