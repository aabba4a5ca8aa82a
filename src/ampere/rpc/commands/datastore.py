"""The datastore: datastore, listdatastore, deldatastore, datastoreusage, with CLN's semantics.

A key is an array of strings.  A key holds either a value or children, never both; parents exist
implicitly while they have children.  Every write bumps `generation`, which a caller can require
(`must-replace`/`must-append` with `generation`) for compare-and-swap updates.  Keys are stored as
their parts joined by NUL bytes, so "everything under [a, b]" is a range scan.
"""

from __future__ import annotations

from typing import Any

from .. import errors as E
from ..errors import RpcError, invalid_params
from ..params import opt, p_datastore_key, p_enum, p_hex, p_string, p_u64, req
from ..registry import command

SEP = b"\x00"
MODES = ("must-create", "must-replace", "create-or-replace", "must-append", "create-or-append")


def encode_key(key: list[str]) -> bytes:
    for part in key:
        if "\x00" in part:
            raise invalid_params("key: parts may not contain NUL")
    return SEP.join(p.encode() for p in key)


def decode_key(raw: bytes) -> list[str]:
    return [p.decode() for p in raw.split(SEP)]


def key_str(key: list[str]) -> str:
    return "[" + ",".join(key) + "]"


def entry_json(key: list[str], data: bytes | None, generation: int | None) -> dict:
    out: dict[str, Any] = {"key": key}
    if data is not None:
        out["generation"] = generation
        out["hex"] = data.hex()
        try:
            out["string"] = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return out


def _children_range(prefix: bytes) -> tuple[bytes, bytes]:
    # Everything strictly under `prefix`: keys starting with prefix + SEP.
    lo = prefix + SEP
    return lo, prefix + b"\x01"


def _get(db, k: bytes):
    rows = db.query("SELECT data, generation FROM datastore WHERE key = ?", (k,))
    return rows[0] if rows else None


def _has_children(db, k: bytes) -> bool:
    lo, hi = _children_range(k)
    return bool(db.query("SELECT 1 FROM datastore WHERE key >= ? AND key < ? LIMIT 1", (lo, hi)))


@command("datastore", [req("key", p_datastore_key), opt("string", p_string), opt("hex", p_hex),
                       opt("mode", p_enum(*MODES), "must-create"), opt("generation", p_u64)],
         description="Store data under a key.")
async def datastore(ctx, key: list[str], string: str | None, hex: bytes | None, mode: str, generation: int | None) -> dict:
    if string is not None and hex is not None:
        raise invalid_params("Cannot have both hex and string")
    if string is None and hex is None:
        raise invalid_params("Must have either hex or string")
    if generation is not None and mode not in ("must-replace", "must-append"):
        raise invalid_params("generation only valid with must-replace or must-append")
    data = string.encode() if string is not None else hex
    k = encode_key(key)

    def write(db):
        # "A key can either have children or a value, never both".
        for i in range(1, len(key)):
            if _get(db, encode_key(key[:i])) is not None:
                raise RpcError(E.DATASTORE_UPDATE_NO_CHILDREN, f"Parent key {key_str(key[:i])} exists")
        if _has_children(db, k):
            raise RpcError(E.DATASTORE_UPDATE_HAS_CHILDREN, "Key has children already")
        old = _get(db, k)
        if old is None:
            if mode in ("must-replace", "must-append"):
                raise RpcError(E.DATASTORE_UPDATE_DOES_NOT_EXIST, "Key does not exist")
            new_data, gen = data, 0
            db.execute("INSERT INTO datastore (key, data, generation) VALUES (?, ?, ?)", (k, new_data, gen))
        else:
            old_data, old_gen = old
            if mode == "must-create":
                raise RpcError(E.DATASTORE_UPDATE_ALREADY_EXISTS, "Key already exists")
            if generation is not None and generation != old_gen:
                raise RpcError(E.DATASTORE_UPDATE_WRONG_GENERATION, "generation is different")
            new_data = old_data + data if mode.endswith("append") else data
            gen = old_gen + 1
            db.execute("UPDATE datastore SET data = ?, generation = ? WHERE key = ?", (new_data, gen, k))
        return entry_json(key, new_data, gen)

    if ctx.check:
        return {"key": key}
    return await ctx.node.store.write(write)


def _list(db, key: list[str] | None) -> list[dict]:
    if key:
        k = encode_key(key)
        row = _get(db, k)
        if row is not None:
            return [entry_json(key, row[0], row[1])]
        lo, hi = _children_range(k)
        rows = db.query("SELECT key, data, generation FROM datastore WHERE key >= ? AND key < ? ORDER BY key", (lo, hi))
        depth = len(key)
    else:
        rows = db.query("SELECT key, data, generation FROM datastore ORDER BY key")
        depth = 0
    out: list[dict] = []
    seen_summaries: set[tuple[str, ...]] = set()
    for raw, data, gen in rows:
        full = decode_key(raw)
        if len(full) == depth + 1:
            out.append(entry_json(full, data, gen))
        else:
            # Deeper descendants are summarised by their immediate child, without a value.
            child = tuple(full[: depth + 1])
            if child not in seen_summaries:
                seen_summaries.add(child)
                out.append({"key": list(child)})
    return out


@command("listdatastore", [opt("key", p_datastore_key)], description="List datastore entries under a key.")
async def listdatastore(ctx, key: list[str] | None) -> dict:
    return {"datastore": await ctx.node.store.read(lambda db: _list(db, key))}


@command("deldatastore", [req("key", p_datastore_key), opt("generation", p_u64)], description="Delete a datastore entry.")
async def deldatastore(ctx, key: list[str], generation: int | None) -> dict:
    k = encode_key(key)

    def write(db):
        row = _get(db, k)
        if row is None:
            raise RpcError(E.DATASTORE_DEL_DOES_NOT_EXIST, "Key does not exist")
        if generation is not None and generation != row[1]:
            raise RpcError(E.DATASTORE_DEL_WRONG_GENERATION, "generation is different")
        db.execute("DELETE FROM datastore WHERE key = ?", (k,))
        return entry_json(key, row[0], row[1])

    if ctx.check:
        return {"key": key}
    return await ctx.node.store.write(write)


@command("datastoreusage", [opt("key", p_datastore_key)], description="Bytes used by the datastore under a key.")
async def datastoreusage(ctx, key: list[str] | None) -> dict:
    def read(db):
        if key:
            k = encode_key(key)
            lo, hi = _children_range(k)
            rows = db.query("SELECT SUM(LENGTH(key) + LENGTH(data)) FROM datastore WHERE key = ? OR (key >= ? AND key < ?)",
                            (k, lo, hi))
        else:
            rows = db.query("SELECT SUM(LENGTH(key) + LENGTH(data)) FROM datastore")
        return rows[0][0] or 0

    total = await ctx.node.store.read(read)
    return {"datastoreusage": {"key": key_str(key or []), "total_bytes": total}}
