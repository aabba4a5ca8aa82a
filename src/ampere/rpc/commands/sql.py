"""`sql` and `listsqlschemas`: a read-only SQLite query over tables made from the list commands, as CLN's sql
plugin offers them.

Tables and columns are CLN's (rpc/sql_tables.py, generated from CLN's schemas of the list commands): one table per
list command, sub-objects folded in as `<field>_<subfield>`, arrays as tables `<table>_<field>` whose `row` is the
parent's key (`created_index` where the table has one, else `rowid`) and `arrindex` the position.  Types as CLN
stores them: hex, hashes, secrets, pubkeys and txids are BLOBs (results show them as hex; compare them with
`X'..'` literals), booleans 0/1, msat amounts integers.  A table is filled from its list command when the query
names it.  Writing is refused, and only CLN's permitted functions may be called.
Differences from CLN: no chainmoves/channelmoves/networkevents/bkpr tables (Ampere has no such list commands).
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from ..errors import RpcError, invalid_params
from ..params import opt, p_string, req
from ..registry import command
from ..sql_tables import TABLES

# CLN's sql plugin: "Some functions are fairly necessary"
PERMITTED_FUNCTIONS = {"abs", "avg", "coalesce", "count", "hex", "quote", "length", "like", "lower", "upper", "min",
                       "max", "sum", "total", "date", "datetime", "julianday", "strftime", "time", "timediff",
                       "unixepoch", "json_object", "json_group_array"}
LIGHTNINGD = -1


def _value(v: Any, sqltype: str, where: str) -> Any:
    """A JSON field as CLN binds it for its column type."""
    if v is None:
        return None
    if sqltype == "BLOB":
        try:
            return bytes.fromhex(v)
        except (TypeError, ValueError):
            raise RpcError(LIGHTNINGD, f"{where} not valid hex: {v!r}") from None
    if isinstance(v, bool):
        return int(v)
    if sqltype == "INTEGER" and isinstance(v, str) and v.endswith("msat") and v[:-4].isdigit():
        v = int(v[:-4])
    if isinstance(v, int) and not -(2**63) <= v < 2**63:
        return str(v)  # beyond SQLite's INTEGER (a u64 "no limit"): kept exact, as text
    if isinstance(v, (int, float, str)):
        return v
    return str(v)


def _dig(obj: Any, path: tuple) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _columns(name: str) -> list[tuple[str, str]]:
    """(name, SQL type) of a table, in database order (listsqlschemas' order)."""
    spec = TABLES[name]
    cols = [] if spec["key"] == "created_index" else [("rowid", "INTEGER")]
    if "parent" in spec:
        cols += [("row", "INTEGER"), ("arrindex", "INTEGER")]
    return cols + [(c, t) for c, t, _ in spec["columns"]]


class _Filler:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.rowids: dict[str, int] = {}

    def add(self, table: str, entry: Any, parent_key: int | None = None, arrindex: int | None = None) -> None:
        spec = TABLES[table]
        values: list[Any] = []
        if spec["key"] == "rowid":
            key = self.rowids[table] = self.rowids.get(table, 0) + 1
            values.append(key)
        if "parent" in spec:
            values += [parent_key, arrindex]
        for i, (col, sqltype, path) in enumerate(spec["columns"]):
            raw = _dig(entry, path) if path else entry
            values.append(_value(raw, sqltype, f"column {i} row {arrindex or 0}"))
        if spec["key"] == "created_index":
            key = _dig(entry, ("created_index",))
        self.db.execute(f'INSERT INTO "{table}" VALUES ({", ".join("?" for _ in values)})', values)
        for sub, path in spec["arrays"]:
            items = _dig(entry, path)
            for j, item in enumerate(items if isinstance(items, list) else []):
                self.add(sub, item, key, j)


def _create(db: sqlite3.Connection, name: str) -> None:
    spec = TABLES[name]
    cols = []
    for col, sqltype in _columns(name):
        # CLN makes created_index (or its explicit rowid) the primary key; here only rowid is, so that a list
        # entry lacking a created_index cannot fail the whole query.
        key = col == "rowid"
        cols.append(f'"{col}" {sqltype}{" PRIMARY KEY" if key else ""}')
    db.execute(f'CREATE TABLE "{name}" ({", ".join(cols)})')
    for i, index in enumerate(spec.get("indices", [])):
        db.execute(f'CREATE INDEX "{name}_idx_{i}" ON "{name}" ({", ".join(chr(34) + c + chr(34) for c in index)})')


def _authorizer(action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_OK if (arg2 or "").lower() in PERMITTED_FUNCTIONS else sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_DENY


def _shown(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()  # CLN: "json_add_hex" for a BLOB
    return v


@command("sql", [req("query", p_string)], category="utility",
         description="Run {query} (sqlite3, read-only) over tables made from the list commands.")
async def sql(ctx, query: str) -> dict:
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query.lower()))
    tops = [t for t, spec in TABLES.items() if "command" in spec]
    wanted = [t for t in tops if t in words or any(w.startswith(t + "_") for w in words)]
    db = sqlite3.connect(":memory:")
    try:
        for name in TABLES:
            _create(db, name)
        filler = _Filler(db)
        for t in wanted:
            result = await ctx.node.call(TABLES[t]["command"], {})
            for entry in result.get(TABLES[t]["result"], []):
                filler.add(t, entry)
        db.set_authorizer(_authorizer)
        try:
            cur = db.execute(query)
            out = [[_shown(v) for v in r] for r in cur.fetchall()]
        except sqlite3.Warning as e:
            raise invalid_params(f"query: {e}") from None
        except sqlite3.Error as e:
            raise RpcError(LIGHTNINGD, f"Error: {e}") from None
    finally:
        db.close()
    return {"rows": out}


@command("listsqlschemas", [opt("table", p_string)], category="utility",
         description="The tables `sql` offers (or only {table}): columns with their SQL types, and indices.")
async def listsqlschemas(ctx, table: str | None) -> dict:
    if table is not None and table not in TABLES:
        raise invalid_params(f"table: Unknown table: invalid token '\"{table}\"'")
    out = []
    for name in sorted(TABLES) if table is None else [table]:
        entry: dict[str, Any] = {"tablename": name,
                                 "columns": [{"name": c, "type": t} for c, t in _columns(name)]}
        if TABLES[name].get("indices"):
            entry["indices"] = [list(i) for i in TABLES[name]["indices"]]
        out.append(entry)
    return {"schemas": out}
