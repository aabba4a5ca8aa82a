"""Low-level payment commands: sendpay, waitsendpay, listsendpays, sendonion, listhtlcs.

Parameters, results, messages and error codes follow Core Lightning's lightningd/pay.c and
lightningd/peer_htlcs.c (listhtlcs).  The parts themselves live in ampere.node.payments.sendpay; incoming HTLCs in
ampere.node.payments.receive.
"""

from __future__ import annotations

from typing import Any

from ...ln.invoice_fields import InvoiceError, scid_from_str, scid_to_str
from ampere.node.payments.sendpay import PaymentError, RouteHop
from ...primitives.amount import AmountError, parse_msat
from ..errors import RpcError, to_rpc_error
from ..params import ParamError, check_paging, opt, p_enum, p_hex, p_pubkey, p_sha256, p_string, p_u32, p_u64, req
from ..registry import command


def _pubkey(v: Any, what: str) -> bytes:
    try:
        return p_pubkey(v)
    except ParamError:
        raise ParamError(f"{what} should be a compressed pubkey") from None


def _scid_dir(v: Any, what: str) -> tuple[int, int | None]:
    """"BxTxO" or "BxTxO/D" (short_channel_id_dir)."""
    if isinstance(v, str):
        text, _, direction = v.partition("/")
        try:
            scid = scid_from_str(text)
        except InvoiceError:
            pass
        else:
            if direction == "":
                return scid, None
            if direction in ("0", "1"):
                return scid, int(direction)
    raise ParamError(f"{what} should be a short_channel_id")


def _msat(v: Any, what: str) -> int:
    try:
        return int(parse_msat(v))
    except (AmountError, ValueError, TypeError):
        raise ParamError(f"{what} should be a millisatoshi amount") from None


def _u32(v: Any, what: str) -> int:
    try:
        return p_u32(v)
    except ParamError:
        raise ParamError(f"{what} should be an unsigned 32 bit integer") from None


def p_route(v: Any) -> list[RouteHop]:
    """sendpay's route: hops {id, channel, delay, amount_msat} or the v26.06 names {node_id_out,
    short_channel_id_dir, cltv_out, amount_out_msat} (lightningd/pay.c param_route_hops)."""
    if not isinstance(v, list):
        raise ParamError("should be an array")
    hops = []
    for i, hop in enumerate(v):
        if not isinstance(hop, dict):
            raise ParamError(f"hop {i} should be an object")

        def get(new: str, old: str) -> Any:
            value = hop.get(new, hop.get(old))
            if value is None:
                raise ParamError(f"hop {i}: missing {old}")
            return value

        node_id = _pubkey(get("node_id_out", "id"), f"hop {i} id")
        scid, direction = _scid_dir(get("short_channel_id_dir", "channel"), f"hop {i} channel")
        delay = _u32(get("cltv_out", "delay"), f"hop {i} delay")
        amount = _msat(get("amount_out_msat", "amount_msat"), f"hop {i} amount_msat")
        hops.append(RouteHop(node_id, scid, amount, delay, direction))
    return hops


def p_msat_param(v: Any) -> int:
    return _msat(v, "amount")


def p_first_hop(v: Any) -> dict:
    if not isinstance(v, dict):
        raise ParamError("should be an object")
    for name in ("id", "amount_msat", "delay"):
        if name not in v:
            raise ParamError(f"missing {name}")
    return {"id": _pubkey(v["id"], "id"), "amount_msat": _msat(v["amount_msat"], "amount_msat"),
            "delay": _u32(v["delay"], "delay")}


def p_secrets(v: Any) -> list[bytes]:
    if not isinstance(v, list):
        raise ParamError("should be an array of secrets")
    out = []
    for s in v:
        raw = p_hex(s) if isinstance(s, str) else b""
        if len(raw) != 32:
            raise ParamError("should be an array of 32 byte secrets")
        out.append(raw)
    return out


def _rpc(e: PaymentError) -> RpcError:
    return to_rpc_error(e)


async def _ready(ctx) -> Any:
    eng = ctx.node.payments
    await eng.start()
    return eng


@command("sendpay", [req("route", p_route), req("payment_hash", p_sha256), opt("label", p_string),
                     opt("amount_msat", p_msat_param), opt("bolt11", p_string), opt("payment_secret", p_sha256),
                     opt("partid", p_u64, 0), opt("localinvreqid", p_hex), opt("groupid", p_u64, 0),
                     opt("payment_metadata", p_hex), opt("description", p_string)],
         category="payment")
async def sendpay(ctx, route, payment_hash, label, amount_msat, bolt11, payment_secret, partid, localinvreqid,
                  groupid, payment_metadata, description) -> dict:
    """Send along {route} in return for preimage of {payment_hash}"""
    eng = await _ready(ctx)
    try:
        return await eng.send_route(route, payment_hash, amount_msat=amount_msat, label=label, bolt11=bolt11,
                                    payment_secret=payment_secret, partid=partid, groupid=groupid,
                                    payment_metadata=payment_metadata, description=description)
    except PaymentError as e:
        raise _rpc(e) from None


@command("waitsendpay", [req("payment_hash", p_sha256), opt("timeout", p_u32), opt("partid", p_u64, 0),
                         opt("groupid", p_u64)], category="payment")
async def waitsendpay(ctx, payment_hash, timeout, partid, groupid) -> dict:
    """Wait for payment attempt on {payment_hash} to succeed or fail, but only up to {timeout} seconds."""
    eng = await _ready(ctx)
    try:
        return await eng.wait(payment_hash, timeout, partid, groupid)
    except PaymentError as e:
        raise _rpc(e) from None


@command("listsendpays", [opt("bolt11", p_string), opt("payment_hash", p_sha256),
                          opt("status", p_enum("pending", "complete", "failed")),
                          opt("index", p_enum("created", "updated")), opt("start", p_u64), opt("limit", p_u32)],
         category="payment")
async def listsendpays(ctx, bolt11, payment_hash, status, index, start, limit) -> dict:
    """Show sendpay, old and current, optionally limiting to {bolt11} or {payment_hash}."""
    check_paging(index, start, limit)
    eng = await _ready(ctx)
    return {"payments": eng.list(bolt11=bolt11, payment_hash=payment_hash, status=status, index=index,
                                 start=start, limit=limit)}


@command("sendonion", [req("onion", p_hex), req("first_hop", p_first_hop), req("payment_hash", p_sha256),
                       opt("label", p_string), opt("shared_secrets", p_secrets), opt("partid", p_u64, 0),
                       opt("bolt11", p_string), opt("amount_msat", p_msat_param), opt("destination", p_pubkey),
                       opt("localinvreqid", p_hex), opt("groupid", p_u64, 0), opt("description", p_string),
                       opt("total_amount_msat", p_msat_param)], category="payment")
async def sendonion(ctx, onion, first_hop, payment_hash, label, shared_secrets, partid, bolt11, amount_msat,
                    destination, localinvreqid, groupid, description, total_amount_msat) -> dict:
    """Send a payment with a pre-computed onion."""
    if len(onion) != 1366:
        raise RpcError(-32602, f"onion: Expected 1366 bytes, got {len(onion)}: invalid token '{onion.hex()}'")
    eng = await _ready(ctx)
    try:
        return await eng.send_onion(onion, first_hop["id"], first_hop["amount_msat"], first_hop["delay"],
                                    payment_hash, shared_secrets=shared_secrets, partid=partid, groupid=groupid,
                                    label=label, bolt11=bolt11, amount_msat=amount_msat, destination=destination,
                                    total_amount_msat=total_amount_msat, description=description)
    except PaymentError as e:
        raise _rpc(e) from None


@command("listhtlcs", [opt("id", p_string), opt("index", p_enum("created", "updated")), opt("start", p_u64),
                       opt("limit", p_u32)], category="channels")
async def listhtlcs(ctx, id, index, start, limit) -> dict:
    """List all known HTLCS (optionally, just for channel {id})"""
    mgr = ctx.node.channel_manager
    out: list[dict] = []
    if mgr is None:
        return {"htlcs": out}
    wanted = None
    if id is not None:
        wanted = mgr.find(id)
        if wanted is None:
            raise RpcError(-32602, f"id: Not a valid short_channel_id or channel_id: invalid token '{id}'")
    n = 0
    for rec in sorted(mgr.records.values(), key=lambda r: r.dbid):
        scid = rec.short_channel_id
        for h in sorted(rec.core.htlcs, key=lambda h: (h.offerer.name != "REMOTE", h.add_seq)):
            n += 1
            if wanted is not None and rec is not wanted:
                continue
            if start is not None and n < start:
                continue
            out.append({"short_channel_id": scid_to_str(int(scid)) if scid is not None else "0x0x0",
                        "created_index": n, "id": h.htlc_id, "expiry": h.cltv_expiry,
                        "direction": "out" if h.offerer.name == "LOCAL" else "in",
                        "amount_msat": h.amount_msat, "payment_hash": h.payment_hash.hex(), "state": h.state.name})
    if limit is not None:
        out = out[:limit]
    return {"htlcs": out}
