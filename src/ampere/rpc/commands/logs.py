"""`getlog` and `makesecret`: node-level helpers plugins and tests use (CLN's lightningd/log.c and
lightningd/hsm_control.c)."""

from __future__ import annotations

from ...log import LEVEL_RANK
from ..errors import invalid_params
from ..params import opt, p_enum, p_hex, p_string
from ..registry import command

_TYPE = {"broken": "BROKEN", "unusual": "UNUSUAL", "info": "INFO", "debug": "DEBUG", "trace": "TRACE"}


@command("getlog", [opt("level", p_enum("broken", "unusual", "info", "debug", "trace", "io"), "info")],
         category="utility", description="Show logs, with optional log {level} (info|unusual|debug|io)")
async def getlog(ctx, level: str) -> dict:
    """The recent log lines kept in memory (lightningd's log book), at `level` or above.  Lines below the
    level, and lines trimmed from the book, are counted in SKIPPED entries as lightningd does."""
    logger = ctx.node.log
    created = getattr(logger, "created_at", None) or ctx.node.started_at
    floor = LEVEL_RANK["io" if level == "io" else level]
    out: list[dict] = []
    skipped = 0
    for when, lvl, source, message in list(logger.ring):
        if LEVEL_RANK[lvl] < floor or lvl not in _TYPE:
            skipped += 1
            continue
        if skipped:
            out.append({"type": "SKIPPED", "num_skipped": skipped})
            skipped = 0
        out.append({"type": _TYPE[lvl], "time": f"{max(0.0, when - created):.9f}", "source": source,
                    "log": message})
    if skipped:
        out.append({"type": "SKIPPED", "num_skipped": skipped})
    used = sum(len(e.get("log", "")) + len(e.get("source", "")) for e in out)
    return {"created_at": f"{created:.9f}", "bytes_used": used, "bytes_max": 10 * 1024 * 1024, "log": out}


@command("makesecret", [opt("hex", p_hex), opt("string", p_string)], category="utility",
         description="Get a pseudorandom secret key, using some {hex} info or {string}.")
async def makesecret(ctx, hex: bytes | None, string: str | None) -> dict:
    """hsmd handle_derive_secret: HKDF-SHA256(ikm = the node's derived secret, no salt, info = the input),
    where the derived secret is HKDF(root secret, no salt, "derived secrets"): the same secret as CLN's for
    the same hsm_secret and input."""
    if (hex is None) == (string is None):
        raise invalid_params("Must have either hex or string")
    info = hex if hex is not None else string.encode()
    return {"secret": ctx.node.signer.derive_secret(info).hex()}
