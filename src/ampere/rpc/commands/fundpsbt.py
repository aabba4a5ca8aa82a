"""fundchannel_start / fundchannel_complete / fundchannel_cancel: opening a channel whose funding transaction
the caller builds, signs and broadcasts (CLN's lightningd/opening_control.c), as ampere.node.channels.funding_psbt
carries them out."""

from __future__ import annotations

from typing import Any

from ...ln.channel.scripts import ChannelType
from ampere.node.channels.funding import OpenError
from ...primitives.amount import AmountError, parse_msat
from ..errors import invalid_params, to_rpc_error
from ..params import ParamError, opt, p_any, p_bool, p_msat, p_pubkey, p_string, p_u32, req
from ..registry import command
from .channels import _channel_type, _explicit_feerate_floor_check, _manager, _reserve_sat, _script_for
from .chain import feerate_arg
from .wallet import p_sat_or_all


@command("fundchannel_start", [req("id", p_pubkey), req("amount", p_any), opt("feerate", p_any),
                               opt("announce", p_bool, True), opt("close_to", p_any), opt("push_msat", p_msat),
                               opt("mindepth", p_u32), opt("reserve", p_any), opt("channel_type", _channel_type)],
         category="channels", description="Start channel funding with {id} for {amount} satoshis; the funding "
                                          "transaction is the caller's (fundchannel_complete).")
async def fundchannel_start(ctx, id: bytes, amount: Any, feerate: Any, announce: bool, close_to: Any, push_msat,
                            mindepth: int | None, reserve: Any, channel_type: ChannelType | None) -> dict:
    try:
        sat = p_sat_or_all(amount)
    except ParamError as e:
        raise invalid_params(f"amount: {e}: invalid token '{amount}'") from None
    if sat == "all" or int(sat) == 0:
        raise invalid_params("amount: should be a positive amount of satoshis")
    reserve_sat = _reserve_sat(reserve)
    script = _script_for(ctx, "close_to", close_to) if close_to is not None else None
    _explicit_feerate_floor_check(feerate)
    rate = feerate_arg(ctx, "feerate", feerate, default="opening")
    mgr = _manager(ctx)
    if ctx.check:
        return {}
    from ampere.node.channels.funding_psbt import fundchannel_start as start

    try:
        return await start(mgr.opening, id, int(sat), rate, announce=announce, push_msat=int(push_msat or 0),
                           mindepth=mindepth, reserve_sat=reserve_sat,
                           channel_type=channel_type, close_to=script)
    except OpenError as e:
        raise to_rpc_error(e) from None


@command("fundchannel_complete", [req("id", p_pubkey), req("psbt", p_string),
                                  # pyln-client still sends CLN's old `withhold`: ampd never broadcasts here anyway.
                                  opt("withhold", p_bool)], category="channels",
         description="Complete channel establishment with peer {id} for the funding transaction in {psbt}.")
async def fundchannel_complete(ctx, id: bytes, psbt: str, withhold: bool | None) -> dict:
    mgr = _manager(ctx)
    if ctx.check:
        return {}
    from ampere.node.channels.funding_psbt import fundchannel_complete as complete

    try:
        return await complete(mgr.opening, id, psbt)
    except OpenError as e:
        raise to_rpc_error(e) from None


@command("fundchannel_cancel", [req("id", p_pubkey), opt("channel_id", p_string)], category="channels",
         description="Cancel inflight channel establishment with peer {id}.")
async def fundchannel_cancel(ctx, id: bytes, channel_id: str | None) -> dict:
    mgr = _manager(ctx)
    if ctx.check:
        return {}
    from ampere.node.channels.funding_psbt import fundchannel_cancel as cancel

    try:
        return cancel(mgr.opening, id)
    except OpenError as e:
        raise to_rpc_error(e) from None


def _destinations(ctx, v: Any) -> list[dict]:
    if not isinstance(v, list) or not v:
        raise ParamError("should be a non-empty array")
    out = []
    for i, d in enumerate(v):
        if not isinstance(d, dict) or "id" not in d or "amount" not in d:
            raise ParamError(f"destination {i}: should be an object with id and amount")
        if d.get("request_amt") is not None or d.get("compact_lease") is not None:
            raise ParamError(f"destination {i}: liquidity ads (request_amt) are not supported")
        ident = d["id"]
        if not isinstance(ident, str):
            raise ParamError(f"destination {i}: id should be a node id")
        node_hex, _, _where = ident.partition("@")   # id@host:port: connected first (below)
        try:
            peer = p_pubkey(node_hex)
            amount = p_sat_or_all(d["amount"])
        except ParamError as e:
            raise ParamError(f"destination {i}: {e}") from None
        if amount == "all" or int(amount) == 0:
            raise ParamError(f"destination {i}: amount should be a positive amount of satoshis")
        reserve = d.get("reserve")
        try:
            reserve_sat = None if reserve is None else int(parse_msat(
                reserve if not isinstance(reserve, int) else f"{reserve}sat").to_sat_floor())
        except AmountError:
            raise ParamError(f"destination {i}: reserve should be a satoshi amount") from None
        try:
            ctype = _channel_type(d["channel_type"]) if d.get("channel_type") is not None else None
        except ParamError as e:
            raise ParamError(f"destination {i}: channel_type {e}") from None
        out.append({"id": peer, "channel_type": ctype, "where": ident if "@" in ident else None, "amount": int(amount),
                    "announce": p_bool(d["announce"]) if "announce" in d else True,
                    "push_msat": int(p_msat(d["push_msat"])) if d.get("push_msat") is not None else 0,
                    "close_to": _script_for(ctx, "close_to", d["close_to"]) if d.get("close_to") is not None else None,
                    "mindepth": p_u32(d["mindepth"]) if d.get("mindepth") is not None else None,
                    "reserve": reserve_sat})
    return out


@command("multifundchannel", [req("destinations", p_any), opt("feerate", p_any), opt("minconf", p_u32, 1),
                              opt("utxos", p_any), opt("minchannels", p_u32), opt("commitment_feerate", p_any)],
         category="channels", description="Fund channels to {destinations} in one transaction.")
async def multifundchannel(ctx, destinations: Any, feerate: Any, minconf: int, utxos: Any, minchannels,
                           commitment_feerate: Any) -> dict:
    try:
        dests = _destinations(ctx, destinations)
    except ParamError as e:
        raise invalid_params(f"destinations: {e}") from None
    if minchannels is not None and minchannels != len(dests):
        raise invalid_params("minchannels: only all destinations at once is supported")
    outpoints = None
    if utxos is not None:
        from .wallet import p_outpoints

        try:
            outpoints = p_outpoints(utxos)
        except ParamError as e:
            raise invalid_params(f"utxos: {e}") from None
    _explicit_feerate_floor_check(feerate)
    rate = feerate_arg(ctx, "feerate", feerate, default="opening")
    mgr = _manager(ctx)
    if ctx.check:
        return {}
    for d in dests:
        if d["where"] is not None:   # CLN: "id@host:port" destinations are connected to first
            await ctx.node.call("connect", {"id": d["where"]})
    from ampere.node.channels.funding_psbt import multifundchannel as multi

    try:
        return await multi(mgr.opening, dests, rate, minconf, outpoints)
    except OpenError as e:
        raise to_rpc_error(e) from None
