"""SQLite's SQL, rewritten for PostgreSQL.

The node's modules write one dialect (SQLite's, with `?` parameters), and the PostgreSQL backend rewrites each
statement once (cached), as Core Lightning writes its queries once and rewrites them for PostgreSQL:

- DDL: BLOB -> BYTEA, INTEGER -> BIGINT (msat and heights do not fit PostgreSQL's 32-bit INTEGER),
  REAL -> DOUBLE PRECISION, `INTEGER PRIMARY KEY AUTOINCREMENT` -> `BIGSERIAL PRIMARY KEY`, blob literals
  x'..' -> '\\x..'::bytea.
- `?` -> `%s` (and a literal `%` -> `%%`), psycopg's placeholder.
- `INSERT OR IGNORE` -> `INSERT ... ON CONFLICT DO NOTHING`.
- `INSERT OR REPLACE INTO t (cols)` -> `INSERT ... ON CONFLICT (primary key) DO UPDATE SET` every other
  column (SQLite replaces the row that has the same primary key; our tables have no other unique key that an
  OR REPLACE statement could hit).
- An INSERT into a table with a BIGSERIAL key gets `RETURNING key`, which gives `cursor.lastrowid`.
"""

from __future__ import annotations

import re

_DDL_RULES = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    # SQLite's blob literal x'0a1b' is a bit string in PostgreSQL: '\x0a1b'::bytea.
    (re.compile(r"\bx'([0-9a-f]*)'", re.I), r"'\\x\1'::bytea"),
]


def ddl_for_postgres(sql: str) -> str:
    for pattern, repl in _DDL_RULES:
        sql = pattern.sub(repl, sql)
    return sql


_INSERT = re.compile(r"^\s*INSERT\s+(?:OR\s+(?P<or>REPLACE|IGNORE)\s+)?INTO\s+(?P<table>\w+)\s*"
                     r"(?:\((?P<cols>[^)]*)\))?", re.I | re.S)


class Rewriter:
    """Rewrites DML for one schema: `primary_keys` maps a table to its key columns, `serial` a table to its
    BIGSERIAL column."""

    def __init__(self, primary_keys: dict[str, list[str]], serial: dict[str, str]) -> None:
        self.primary_keys = primary_keys
        self.serial = serial
        self._cache: dict[tuple[str, bool], tuple[str, str | None]] = {}

    def rewrite(self, sql: str, has_params: bool) -> tuple[str, str | None]:
        """(PostgreSQL statement, the table whose new serial key it returns, or None)."""
        key = (sql, has_params)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._rewrite(sql, has_params)
        return hit

    def _rewrite(self, sql: str, has_params: bool) -> tuple[str, str | None]:
        out = sql.rstrip().rstrip(";")
        if has_params:
            out = _placeholders(out)
        returning = None
        m = _INSERT.match(out)
        if m:
            table = m["table"].lower()
            action = (m["or"] or "").upper()
            plain_head = f"INSERT INTO {m['table']}" + (f" ({m['cols']})" if m["cols"] is not None else "")
            out = plain_head + out[m.end():]
            if action == "IGNORE":
                out += " ON CONFLICT DO NOTHING"
            elif action == "REPLACE":
                if m["cols"] is None:
                    raise ValueError(f"INSERT OR REPLACE needs a column list for PostgreSQL: {sql}")
                pk = self.primary_keys.get(table)
                if not pk:
                    raise ValueError(f"INSERT OR REPLACE into {table}, which has no primary key")
                cols = [c.strip() for c in m["cols"].split(",")]
                others = [c for c in cols if c.lower() not in {k.lower() for k in pk}]
                if others:
                    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in others)
                    out += f" ON CONFLICT ({', '.join(pk)}) DO UPDATE SET {sets}"
                else:
                    out += f" ON CONFLICT ({', '.join(pk)}) DO NOTHING"
            serial = self.serial.get(table)
            if serial and not re.search(r"\bRETURNING\b", out, re.I):
                out += f" RETURNING {serial}"
                returning = table
        return out, returning


def _placeholders(sql: str) -> str:
    """`?` -> `%s` outside string literals; `%` -> `%%` everywhere else (psycopg's format)."""
    out = []
    in_str = False
    for ch in sql:
        if ch == "'":
            in_str = not in_str
            out.append(ch)
        elif ch == "%":
            out.append("%%")
        elif ch == "?" and not in_str:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)
