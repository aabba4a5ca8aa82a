"""createrune / checkrune / showrunes with CLN's parameters, results and errors (lightningd/runes.c).

Runes are made and checked by ampere.node.commando.runes; the master secret is makesecret("commando"), so for the same
hsm_secret Ampere and CLN make the same runes.  Runes are stored in the store's `vars` table (`rune:<id>`,
`runes_uniqueid`, `runes_blacklist`: the blacklist's [start, end] ranges, sorted, merged).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ampere.node.commando import runes as R
from ..errors import RpcError, invalid_params
from ..params import opt, p_any, p_bool, p_pubkey, p_string, p_u64, req
from ..registry import command

RUNE_NOT_AUTHORIZED = 1501
RUNE_NOT_PERMITTED = 1502
RUNE_BLACKLISTED = 1503
_NSEC = 1_000_000_000
# lightningd/runes.c per_time_check: the suffixes of `per`.
_PER_UNITS = {"": _NSEC, "sec": _NSEC, "nsec": 1, "usec": 1000, "msec": 1_000_000, "min": 60 * _NSEC,
              "hour": 3600 * _NSEC, "day": 86400 * _NSEC}
UNRESTRICTED_WARNING = ("WARNING: This rune has no restrictions! Anyone who has access to this rune could drain "
                        "funds from your node. Be careful when giving this to apps that you don't trust. Consider "
                        "using the restrictions parameter to only allow access to specific rpc methods.")
READONLY = [[("method", "^", "list"), ("method", "^", "get"), ("method", "=", "summary")],
            [("method", "/", "listdatastore")]]


def _master(ctx) -> R.Rune:
    m = ctx.node.master_rune
    if m is None:
        # lightningd runes_early_init: "Runes came out of commando, hence the derivation key is 'commando'".
        m = ctx.node.master_rune = R.master_rune(ctx.node.signer.derive_secret(b"commando"))
    return m


def _restrictions(v: Any) -> list[list[R.Altern]]:
    if v == "readonly":
        return [list(r) for r in READONLY]
    items = v if isinstance(v, list) and v and all(isinstance(x, list) for x in v) else [v]
    out = []
    for item in items:
        if not isinstance(item, list) or not item or not all(isinstance(s, str) for s in item):
            raise invalid_params("restrictions: not a valid restriction (should be array)")
        alterns = []
        for s in item:
            n = R.fieldname_len(s)
            if n == 0 or n >= len(s) or s[n] not in R.CONDITIONS:
                raise invalid_params("restrictions: not a valid restriction (should be array)")
            alterns.append((s[:n], s[n], s[n + 1:]))
        out.append(alterns)
    return out


def _p_rune(v: Any) -> str:
    if not isinstance(v, str):
        raise invalid_params("rune: should be base64 string")
    try:
        _, restrs = R.rune_from_base64(v)
    except R.RuneError:
        raise invalid_params("rune: should be base64 string") from None
    uid = restrs[0][0][2] if restrs and len(restrs[0]) == 1 and restrs[0][0][0] == "" else None
    if uid is None or not uid.split("-")[0].isdigit():
        raise invalid_params("rune: should have valid numeric unique_id")
    return v


async def _read_runes(ctx) -> list[dict]:
    rows = await ctx.node.store.read(lambda db: db.query("SELECT name, val FROM vars WHERE name LIKE 'rune:%'"))
    runes = [json.loads(v) for _, v in rows]
    return sorted(runes, key=lambda r: int(r["unique_id"]))


async def _blacklist(ctx) -> list[list[int]]:
    rows = await ctx.node.store.read(lambda db: db.query("SELECT val FROM vars WHERE name = 'runes_blacklist'"))
    return json.loads(rows[0][0]) if rows else []


def _blacklisted(blacklist: list[list[int]], uid: str | None) -> bool:
    if uid is None or not uid.isdigit():
        return False
    n = int(uid)
    return any(start <= n <= end for start, end in blacklist)


def _rune_json(master: R.Rune, text: str, stored: bool, last_used: float | None,
               blacklist: list[list[int]] | None = None) -> dict:
    _, restrs = R.rune_from_base64(text)
    ours, _ = R.is_ours(master, text)
    e: dict[str, Any] = {"rune": text}
    if not stored:
        e["stored"] = False
    uid0 = restrs[0][0][2].split("-")[0] if restrs and restrs[0][0][0] == "" else None
    if blacklist and _blacklisted(blacklist, uid0):
        e["blacklisted"] = True
    if ours is None:
        e["our_rune"] = False
    if last_used:
        e["last_used"] = last_used
    uid = restrs[0][0][2].split("-")[0] if restrs and restrs[0][0][0] == "" else ""
    e["unique_id"] = uid
    out, english_all = [], []
    for i, alterns in enumerate(restrs):
        if i == 0 and len(alterns) == 1 and alterns[0][0] == "":
            continue
        alts = [{"fieldname": f, "value": v, "condition": c, "english": R.altern_english((f, c, v))}
                for f, c, v in alterns]
        english = " OR ".join(a["english"] for a in alts)
        out.append({"alternatives": alts, "english": english})
        english_all.append(english)
    e["restrictions"] = out
    e["restrictions_as_english"] = " AND ".join(english_all)
    return e


@command("createrune", [opt("rune", p_any), opt("restrictions", p_any)], category="utility",
         description="Create or restrict an optional {rune} with optional {restrictions} and returns {rune}")
async def createrune(ctx, rune: Any, restrictions: Any) -> dict:
    master = _master(ctx)
    restrs = _restrictions(restrictions) if restrictions is not None else []
    if rune is not None:
        text = _p_rune(rune)
        r, why = R.is_ours(master, text)
        if r is None:
            # CLN adds to any well-formed rune; ours are the only ones whose authcode we can continue.
            raise RpcError(RUNE_NOT_AUTHORIZED, f"Not authorized: {why}")
        for alterns in restrs:
            r.add(alterns)
        out = {"rune": r.to_base64(), "unique_id": r.unique_id}
    else:
        if ctx.check:
            return {}
        rows = await ctx.node.store.read(lambda db: db.query("SELECT val FROM vars WHERE name = 'runes_uniqueid'"))
        uid = int(rows[0][0]) if rows else 0
        r = R.derive(master, [[("", "=", str(uid))]])
        for alterns in restrs:
            r.add(alterns)
        text = r.to_base64()
        record = json.dumps({"unique_id": str(uid), "rune": text, "last_used": None})

        def write(db):
            db.execute("INSERT OR REPLACE INTO vars (name, val) VALUES ('runes_uniqueid', ?)", (str(uid + 1),))
            db.execute("INSERT OR REPLACE INTO vars (name, val) VALUES (?, ?)", (f"rune:{uid}", record))

        await ctx.node.store.write(write)
        out = {"rune": text, "unique_id": str(uid)}
    if len(r.restrictions) <= 1:
        out["warning_unrestricted_rune"] = UNRESTRICTED_WARNING
    return out


@command("showrunes", [opt("rune", _p_rune)], category="utility",
         description="Show the list of runes or decode an optional {rune}.")
async def showrunes(ctx, rune: str | None) -> dict:
    master = _master(ctx)
    stored = await _read_runes(ctx)
    blacklist = await _blacklist(ctx)
    if rune is not None:
        _, restrs = R.rune_from_base64(rune)
        uid = restrs[0][0][2].split("-")[0]
        rec = next((s for s in stored if s["unique_id"] == uid), None)
        return {"runes": [_rune_json(master, rune, rec is not None and rec["rune"] == rune,
                                     rec["last_used"] if rec else None, blacklist)]}
    return {"runes": [_rune_json(master, s["rune"], True, s["last_used"], blacklist) for s in stored]}


def _merge(ranges: list[list[int]]) -> list[list[int]]:
    """Sorted ranges with overlapping or adjacent ones joined (lightningd's blacklist_merge)."""
    out: list[list[int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


@command("blacklistrune", [opt("start", p_u64), opt("end", p_u64), opt("relist", p_bool, False)], category="utility",
         description="Blacklist a rune or range of runes by taking an optional {start} and an optional {end} and "
                     "returns {blacklist} array containing {start}, {end}")
async def blacklistrune(ctx, start: int | None, end: int | None, relist: bool) -> dict:
    if end is not None and start is None:
        raise invalid_params("Can not specify end without start")
    if start is not None and end is not None and end < start:
        raise invalid_params("end: must be greater than or equal to start")
    if ctx.check:
        return {}
    blacklist = await _blacklist(ctx)
    if start is not None:
        end = start if end is None else end
        if relist:
            # Take [start, end] out of every range, splitting the ones it cuts.
            kept: list[list[int]] = []
            for s, e in blacklist:
                if s < start:
                    kept.append([s, min(e, start - 1)])
                if e > end:
                    kept.append([max(s, end + 1), e])
            blacklist = _merge(kept)
        else:
            blacklist = _merge(blacklist + [[start, end]])
        text = json.dumps(blacklist)
        await ctx.node.store.write(lambda db: db.execute(
            "INSERT OR REPLACE INTO vars (name, val) VALUES ('runes_blacklist', ?)", (text,)))
    return {"blacklist": [{"start": s, "end": e} for s, e in blacklist]}


@command("destroyrune", [opt("start", p_u64), opt("end", p_u64)], category="utility",
         description="Destroy a rune or range of runes by taking an optional {start} and an optional {end} and "
                     "returns {blacklist} array containing {start}, {end}")
async def destroyrune(ctx, start: int | None, end: int | None) -> dict:
    # lightningd's older name for blacklistrune (same handler).
    return await blacklistrune(ctx, start, end, False)


def _time_check(alt: R.Altern, last_used: float | None, now: float) -> str | None:
    """lightningd's rate_limit_check / per_time_check: "too soon" if the rune was last used less than
    60s/rate (or `per`) ago.  Only stored runes have a last use; the others pass."""
    field, cond, value = alt
    if cond != "=":
        return f"{field} operator must be ="
    if field == "rate":
        if not value.isdigit() or not 0 < int(value) < 0xFFFFFFFF:
            return "malformed rate"
        interval = 60 * _NSEC // int(value)
    else:
        digits = len(value) - len(value.lstrip("0123456789"))
        if digits == 0 or not 0 < int(value[:digits]) < 0xFFFFFFFF:
            return "malformed per"
        unit = _PER_UNITS.get(value[digits:])
        if unit is None:
            return "malformed suffix"
        interval = int(value[:digits]) * unit
    if last_used is None:
        return None
    elapsed = max(0, int((now - last_used) * _NSEC))
    return "too soon" if elapsed < interval else None


def _field_value(field: str, nodeid: bytes | None, method: str | None, params: Any) -> Any:
    if field == "time":
        return int(time.time())
    if field == "id":
        return nodeid.hex() if nodeid is not None else None
    if field == "method":
        return method
    if field == "pnum":
        return len(params) if isinstance(params, (list, dict)) else 0
    value: Any = None
    if isinstance(params, dict):
        for k, v in params.items():
            if field == "pname" + "".join(ch for ch in k if not (ch.isascii() and not ch.isalnum() and 32 < ord(ch) < 127)):
                value = v
                break
        else:
            return None
    elif isinstance(params, list) and field.startswith("parr") and field[4:].isdigit():
        i = int(field[4:])
        if i >= len(params):
            return None
        value = params[i]
    else:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


@command("checkrune", [req("rune", _p_rune), opt("nodeid", p_pubkey), opt("method", p_string), opt("params", p_any)],
         category="utility",
         description="Checks rune for validity with required {rune} and optional {nodeid}, {method}, {params} "
                     "and returns {valid: true} or error message")
async def checkrune(ctx, rune: str, nodeid: bytes | None, method: str | None, params: Any) -> dict:
    if params is not None and not isinstance(params, (dict, list)):
        raise invalid_params("params: must be object or array")
    master = _master(ctx)
    _, restrs0 = R.rune_from_base64(rune)
    uid0 = restrs0[0][0][2].split("-")[0] if restrs0 and restrs0[0][0][0] == "" else None
    if _blacklisted(await _blacklist(ctx), uid0):
        raise RpcError(RUNE_BLACKLISTED, "Not authorized: Blacklisted rune")
    r, why = R.is_ours(master, rune)
    if r is None:
        raise RpcError(RUNE_NOT_AUTHORIZED, f"Not authorized: {why}")
    now = time.time()
    last_used: float | None = None
    if any(alt[0] in ("rate", "per") for alterns in r.restrictions for alt in alterns):
        rows = await ctx.node.store.read(lambda db: db.query("SELECT val FROM vars WHERE name = ?",
                                                             (f"rune:{r.unique_id}",)))
        last_used = json.loads(rows[0][0]).get("last_used") if rows else None
    for i, alterns in enumerate(r.restrictions):
        if i == 0 and alterns[0][0] == "":
            continue   # the unique id is not checked
        errs = []
        for alt in alterns:
            if alt[0] in ("rate", "per"):
                err = _time_check(alt, last_used, now)
            else:
                err = R.check_altern(alt, _field_value(alt[0], nodeid, method, params))
            if err is None:
                break
            errs.append(err)
        else:
            raise RpcError(RUNE_NOT_PERMITTED, "Not permitted: " + " AND ".join(errs))
    uid = r.unique_id
    rows = await ctx.node.store.read(lambda db: db.query("SELECT val FROM vars WHERE name = ?", (f"rune:{uid}",)))
    if rows:
        rec = json.loads(rows[0][0])
        rec["last_used"] = round(now, 3)
        await ctx.node.store.write(lambda db: db.execute("UPDATE vars SET val = ? WHERE name = ?",
                                                         (json.dumps(rec), f"rune:{uid}")))
    return {"valid": True}


@command("commando", [req("peer_id", p_pubkey), req("method", p_string), opt("params", p_any), opt("rune", p_string),
                      opt("filter", p_any)], category="utility",
         description="Send a command {method} with optional {params} to {peer_id}, authorised by {rune}.")
async def commando(ctx, peer_id: bytes, method: str, params: Any, rune: str | None, filter: Any) -> Any:
    if params is not None and not isinstance(params, (dict, list)):
        raise invalid_params("params: must be object or array")
    c = ctx.node.commando
    if c is None:
        raise RpcError(-1, "commando is not running")
    if ctx.check:
        return {}
    from ampere.node.commando.server import CommandoError
    from ampere.node.net.connection import PeerDisconnected

    try:
        return await c.call(peer_id, method, params, rune, filter)
    except CommandoError as e:
        raise RpcError(e.code, e.message, e.data) from None
    except PeerDisconnected:
        raise RpcError(-1, "Peer is not connected") from None
