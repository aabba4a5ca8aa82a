#!/usr/bin/env python3
"""Writes src/ampere/rpc/sql_tables.py: the `sql` command's tables and columns, derived from CLN's JSON schemas
of the list commands the way CLN's sql plugin derives them (lightning-sql(7)): a table per list command
("list" dropped, "-" -> "_"), a column per field with its SQL type (hex/hash/secret/pubkey/txid: BLOB;
msat/integer/u64/u32/u16/u8/boolean: INTEGER; number: REAL; string/short_channel_id/outpoint: TEXT), sub-objects
folded in as `<field>_<subfield>`, arrays as tables `<table>_<field>` with `row` and `arrindex`, `index` named
`idx`, fields deprecated in v23.02 or before left out, `peers.log` left out.

    python3 contrib/gen_sql_tables.py [SCHEMA_DIR]   (default: the shared/cln-schemas beside the checkout, as tests find it)
"""

from __future__ import annotations

import json
import os
import pprint
import re
import sys

COMMANDS = ["listchannels", "listnodes", "listhtlcs", "listforwards", "listinvoices", "listsendpays", "listoffers",
            "listpeers", "listpeerchannels", "listclosedchannels", "listtransactions"]
SQLTYPE = {"hex": "BLOB", "hash": "BLOB", "secret": "BLOB", "pubkey": "BLOB", "txid": "BLOB", "msat": "INTEGER",
           "integer": "INTEGER", "u64": "INTEGER", "u32": "INTEGER", "u16": "INTEGER", "u8": "INTEGER",
           "boolean": "INTEGER", "s64": "INTEGER", "number": "REAL", "string": "TEXT", "short_channel_id": "TEXT", "outpoint": "TEXT"}
# CLN's sql plugin indices (table, columns).
INDICES = {"channels": [["short_channel_id"]], "forwards": [["in_channel", "in_htlc_id"]],
           "htlcs": [["short_channel_id", "id"]], "invoices": [["payment_hash"]], "nodes": [["nodeid"]],
           "offers": [["offer_id"]], "peers": [["id"]], "peerchannels": [["peer_id"]], "sendpays": [["payment_hash"]],
           "transactions": [["hash"]]}


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def table_name(cmd: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", cmd.replace("list", "", 1))


class Table:
    def __init__(self, name: str, cmdname: str, parent: Table | None, field: str | None, subobject: bool):
        self.name, self.cmdname, self.parent, self.field, self.subobject = name, cmdname, parent, field, subobject
        self.columns: list[dict] = []  # {"name", "type", "json", "sub"}


def add_object(tables: dict[str, Table], td: Table, obj: dict) -> None:
    if "properties" in obj:
        add_properties(tables, td, obj["properties"])
    for branch in obj.get("allOf", []):
        add_object(tables, td, branch)
    for key in ("then", "else"):
        if key in obj:
            add_object(tables, td, obj[key])


def column_name(td: Table, name: str) -> str:
    if name == "index":
        name = "idx"
    return f"{td.cmdname}_{name}" if td.subobject else name


def new_table(tables: dict[str, Table], parent: Table, field: str, subobject: bool) -> Table:
    td = Table(f"{parent.name}_{table_name(field)}", field, parent, field, subobject)
    if not subobject:
        tables[td.name] = td
    return td


def add_properties(tables: dict[str, Table], td: Table, props: dict) -> None:
    for field, spec in props.items():
        if td.name == "peers" and field == "log":
            continue
        typ = spec.get("type")
        if typ is None:
            continue  # a stub: the typed one is in another branch
        dep = spec.get("deprecated")
        if dep and _version(dep[0]) <= (23, 2):
            continue
        col: dict = {"name": column_name(td, field), "json": field, "sub": None, "type": None}
        if typ == "array":
            items = spec["items"]
            sub = new_table(tables, td, field, False)
            if items.get("type") != "object":
                sub.columns.append({"name": column_name(sub, field), "json": None, "sub": None,
                                    "type": SQLTYPE.get(items.get("type"), "TEXT")})
            else:
                add_object(tables, sub, items)
            col["sub"] = sub
        elif typ == "object":
            sub = new_table(tables, td, field, True)
            add_object(tables, sub, spec)
            col["sub"] = sub
        else:
            col["type"] = SQLTYPE.get(typ, "TEXT")
        if any(c["name"] == col["name"] for c in td.columns):
            continue  # schemas repeat a field in branches: the first one counts
        td.columns.append(col)


def flat_columns(td: Table, path: tuple = ()) -> list[tuple[str, str, tuple]]:
    """(db name, SQL type, JSON path from the row's object) of a table's own columns, sub-objects folded in."""
    out = []
    for c in td.columns:
        if c["sub"] is not None:
            if c["sub"].subobject:
                out.extend(flat_columns(c["sub"], path + (c["json"],)))
            continue
        out.append((c["name"], c["type"], path + ((c["json"],) if c["json"] is not None else ())))
    return out


def arrays(td: Table, path: tuple = ()) -> list[tuple[str, tuple]]:
    """(sub-table name, JSON path) of the arrays in a row's object (inside its sub-objects too)."""
    out = []
    for c in td.columns:
        if c["sub"] is None:
            continue
        if c["sub"].subobject:
            out.extend(arrays(c["sub"], path + (c["json"],)))
        else:
            out.append((c["sub"].name, path + (c["json"],)))
    return out


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    schema_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "..", "shared", "cln-schemas")
    tables: dict[str, Table] = {}
    tops = {}
    for cmd in COMMANDS:
        with open(os.path.join(schema_dir, cmd + ".json")) as f:
            schema = json.load(f)
        key, spec = next(iter(schema["response"]["properties"].items()))
        td = Table(table_name(cmd), cmd, None, None, False)
        tables[td.name] = td
        add_object(tables, td, spec["items"])
        tops[td.name] = (cmd, key)
    out = {}
    for name, td in tables.items():
        cols = flat_columns(td)
        has_created_index = td.parent is None and any(c[0] == "created_index" for c in cols)
        entry = {"columns": [(n, t, p) for n, t, p in cols], "arrays": arrays(td),
                 "key": "created_index" if has_created_index else "rowid"}
        if td.parent is None:
            entry["command"], entry["result"] = tops[name]
        else:
            entry["parent"] = td.parent.name if not td.parent.subobject else _top(td.parent).name
        if name in INDICES:
            entry["indices"] = INDICES[name]
        out[name] = entry
    target = os.path.join(here, "..", "src", "ampere", "rpc", "sql_tables.py")
    with open(target, "w") as f:
        f.write('"""The `sql` command\'s tables: generated by contrib/gen_sql_tables.py from CLN\'s JSON schemas of the\n'
                'list commands, as CLN\'s sql plugin makes them (do not edit).\n\n'
                'table -> {"command", "result" (top-level tables), "parent" (array tables), "key" (the primary key:\n'
                'created_index where the table has one, else rowid), "columns": [(name, SQL type, JSON path)],\n'
                '"arrays": [(table, JSON path)], "indices"}.\n"""\n\n')
        f.write("TABLES = " + pprint.pformat(out, width=116, sort_dicts=False) + "\n")


def _top(td: Table) -> Table:
    while td.subobject:
        td = td.parent
    return td


if __name__ == "__main__":
    main()
