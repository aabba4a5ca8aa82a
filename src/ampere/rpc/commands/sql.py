"""`sql`: a read-only SQLite query over tables made from the list commands, as CLN's sql plugin offers.

Each table is filled from its list command when the query names it (CLN's names: peers, peerchannels, channels,
nodes, invoices, forwards, sendpays, htlcs, transactions, closedchannels).  Columns are the result's fields:
nested objects are flattened (`updates_local_fee_base_msat`), arrays become sub-tables named
`<table>_<field>` with `row` (the parent's rowid) and `arrindex`; booleans are 0/1 and msat amounts integers,
as CLN stores them.  Differences from CLN: hex fields are TEXT (CLN: BLOB, shown as hex in results, so results
read the same, but `X'..'` literals do not match); columns of an empty table are those listed below.
Writing is refused, and only CLN's permitted functions may be called.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from ..errors import RpcError, invalid_params
from ..params import p_string, req
from ..registry import command

# table -> (list command, result key)
TABLES = {
    "peers": ("listpeers", "peers"), "peerchannels": ("listpeerchannels", "channels"),
    "channels": ("listchannels", "channels"), "nodes": ("listnodes", "nodes"),
    "invoices": ("listinvoices", "invoices"), "forwards": ("listforwards", "forwards"),
    "sendpays": ("listsendpays", "payments"), "htlcs": ("listhtlcs", "htlcs"),
    "transactions": ("listtransactions", "transactions"), "closedchannels": ("listclosedchannels", "closedchannels"),
}
# Columns a table has even when it is empty (so that queries naming them work on a fresh node).
EMPTY_COLUMNS = {
    "peers": ["id", "connected", "num_channels", "remote_addr", "features"],
    "peerchannels": ["peer_id", "peer_connected", "state", "short_channel_id", "channel_id", "funding_txid",
                     "funding_outnum", "to_us_msat", "total_msat", "spendable_msat", "receivable_msat", "opener",
                     "private"],
    "channels": ["source", "destination", "short_channel_id", "direction", "public", "amount_msat", "active",
                 "last_update", "base_fee_millisatoshi", "fee_per_millionth", "delay", "htlc_minimum_msat",
                 "htlc_maximum_msat", "features"],
    "nodes": ["nodeid", "last_timestamp", "alias", "color", "features"],
    "invoices": ["label", "description", "payment_hash", "status", "expires_at", "amount_msat", "bolt11",
                 "created_index", "updated_index", "pay_index", "amount_received_msat", "paid_at",
                 "payment_preimage"],
    "forwards": ["in_channel", "in_htlc_id", "in_msat", "status", "received_time", "out_channel", "out_htlc_id",
                 "style", "fee_msat", "out_msat", "resolved_time", "failcode", "failreason", "created_index"],
    "sendpays": ["created_index", "id", "groupid", "partid", "payment_hash", "status", "amount_msat",
                 "destination", "created_at", "amount_sent_msat", "label", "bolt11", "payment_preimage"],
    "htlcs": ["short_channel_id", "id", "expiry", "amount_msat", "direction", "payment_hash", "state"],
    "transactions": ["hash", "rawtx", "blockheight", "txindex", "locktime", "version"],
    "closedchannels": ["peer_id", "channel_id", "short_channel_id", "opener", "closer", "private",
                       "total_msat", "final_to_us_msat", "close_cause"],
}
PERMITTED_FUNCTIONS = {"abs", "avg", "coalesce", "count", "date", "datetime", "julianday", "hex", "quote", "length",
                       "like", "lower", "upper", "min", "max", "strftime", "sum", "total"}


def _scalar(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int) and not -(2**63) <= v < 2**63:
        return str(v)  # beyond SQLite's INTEGER (a u64 "no limit"): kept exact, as text
    if isinstance(v, (int, float, str)) or v is None:
        return v
    return str(v)


class _Builder:
    def __init__(self) -> None:
        self.tables: dict[str, list[dict]] = {}

    def add(self, table: str, entry: dict, extra: dict | None = None) -> int:
        rows = self.tables.setdefault(table, [])
        row: dict[str, Any] = {"rowid": len(rows) + 1}
        if extra:
            row.update(extra)
        rows.append(row)
        self._fill(table, row, entry, "")
        return row["rowid"]

    def _fill(self, table: str, row: dict, obj: dict, prefix: str) -> None:
        for k, v in obj.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                self._fill(table, row, v, name + "_")
            elif isinstance(v, list):
                sub = f"{table}_{name}"
                self.tables.setdefault(sub, [])
                for i, item in enumerate(v):
                    self.add(sub, item if isinstance(item, dict) else {name: item},
                             {"row": row["rowid"], "arrindex": i})
            else:
                row[name] = _scalar(v)


def _authorizer(action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_OK if (arg2 or "").lower() in PERMITTED_FUNCTIONS else sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_DENY


@command("sql", [req("query", p_string)], category="utility",
         description="Run {query} (sqlite3, read-only) over tables made from the list commands.")
async def sql(ctx, query: str) -> dict:
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query.lower()))
    wanted = [t for t in TABLES if t in words or any(w.startswith(t + "_") for w in words)]
    b = _Builder()
    for t in wanted:
        method, key = TABLES[t]
        result = await ctx.node.call(method, {})
        b.tables.setdefault(t, [])
        for entry in result.get(key, []):
            b.add(t, entry)
    db = sqlite3.connect(":memory:")
    try:
        for t, rows in b.tables.items():
            cols: list[str] = ["rowid"] + (["row", "arrindex"] if "_" in t and t.split("_")[0] in TABLES else [])
            for c in EMPTY_COLUMNS.get(t, []):
                if c not in cols:
                    cols.append(c)
            for r in rows:
                for c in r:
                    if c not in cols:
                        cols.append(c)
            db.execute(f'CREATE TABLE "{t}" ({", ".join(chr(34) + c + chr(34) for c in cols)})')
            if rows:
                db.executemany(f'INSERT INTO "{t}" VALUES ({", ".join("?" for _ in cols)})',
                               [[r.get(c) for c in cols] for r in rows])
        db.set_authorizer(_authorizer)
        try:
            cur = db.execute(query)
            out = [[_scalar(v) if not isinstance(v, bytes) else v.hex() for v in r] for r in cur.fetchall()]
        except sqlite3.Warning as e:
            raise invalid_params(f"query: {e}") from None
        except sqlite3.Error as e:
            raise RpcError(-1, f"Error: {e}") from None
    finally:
        db.close()
    return {"rows": out}
