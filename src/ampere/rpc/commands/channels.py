"""Channel commands with CLN's parameters, result shapes and errors: fundchannel, listpeerchannels,
listclosedchannels, setchannel, close; and developer-only HTLC commands (dev-offer-htlc, dev-fulfill-htlc,
dev-fail-htlc, dev-htlc-roundtrips) that drive the channel manager's HTLC interface until sendpay exists."""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

from ...ln.channel import core
from ...ln.channel.commitment import Side
from ...ln.channel.htlcs import HtlcState
from ...ln.channel.scripts import ChannelType
from ...ln.channel.state import ChannelState
from ...ln.channel.views import available_msat, next_view
from ampere.node.onchain.feerate import FEERATE_FLOOR, perkb_to_perkw
from ...primitives.amount import AmountError, parse_msat, sat_to_msat
from ...primitives.crypto import sha256
from ...primitives.script import AddressError, address_to_script, script_to_address
from ...wire.types import ShortChannelId
from ..errors import LIGHTNINGD, METHOD_NOT_FOUND, RpcError, invalid_params, to_rpc_error
from ..params import ParamError, opt, p_any, p_bool, p_hex, p_msat, p_pubkey, p_sha256, p_string, p_u32, p_u64, req
from ..registry import command
from ampere.node.channels.funding import channel_type_json
from .chain import feerate_arg
from .wallet import p_outpoints, p_sat_or_all

CS = ChannelState
_SCID = re.compile(r"^\d+x\d+x\d+$")


def _manager(ctx):
    mgr = ctx.node.channel_manager
    if mgr is None:
        raise RpcError(LIGHTNINGD, "Channels are not available (no chain backend)")
    return mgr


def _channel_type(v: Any) -> ChannelType:
    if not isinstance(v, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in v):
        raise ParamError("should be an array of feature bits")
    bits = sorted(set(v))
    if bits == [12]:
        return ChannelType.STATIC_REMOTEKEY
    if bits == [12, 22]:
        return ChannelType.ANCHORS
    raise ParamError("only static_remotekey ([12]) and anchors ([12,22]) channels can be opened")


def _explicit_feerate_floor_check(value: Any) -> None:
    """BOLT 3's floor (253 sat/kw): an explicit rate below it is an error here, not silently raised."""
    if value is None:
        return
    text = str(value)
    if text.endswith("perkw") and text[:-5].isdigit():
        rate = int(text[:-5])
    elif text.endswith("perkb") and text[:-5].isdigit():
        rate = perkb_to_perkw(int(text[:-5]))
    elif text.isdigit():
        rate = perkb_to_perkw(int(text))
    else:
        return
    if rate < FEERATE_FLOOR:
        raise invalid_params(f"feerate: {text} is below the minimum feerate of {FEERATE_FLOOR}perkw "
                             f"({FEERATE_FLOOR * 4}perkb)")



def _reserve_sat(reserve: Any) -> int | None:
    """`reserve` of fundchannel and its kin: an integer is satoshis, a string any amount (rounded down to sat)."""
    if reserve is None:
        return None
    try:
        return int(parse_msat(reserve if not isinstance(reserve, int) else f"{reserve}sat").to_sat_floor())
    except AmountError:
        raise invalid_params(f"reserve: should be a satoshi amount: invalid token '{reserve}'") from None

def _script_for(ctx, name: str, address: Any) -> bytes:
    if not isinstance(address, str):
        raise invalid_params(f"{name}: should be a string")
    try:
        return address_to_script(address, ctx.node.network)
    except AddressError:
        raise invalid_params(f"{name}: Could not parse destination address, {name} should be a valid address") from None


# ---- fundchannel ------------------------------------------------------------------------------------
@command("fundchannel", [req("id", p_pubkey), req("amount", p_any), opt("feerate", p_any), opt("announce", p_bool, True),
                         opt("minconf", p_u32, 1), opt("push_msat", p_msat), opt("close_to", p_any),
                         opt("request_amt", p_any), opt("compact_lease", p_any), opt("utxos", p_outpoints),
                         opt("mindepth", p_u32), opt("reserve", p_any), opt("channel_type", _channel_type)],
         category="channels", description="Fund channel with {id} using {amount} satoshis, spending our on-chain funds.")
async def fundchannel(ctx, id: bytes, amount: Any, feerate: Any, announce: bool, minconf: int, push_msat,
                      close_to: Any, request_amt: Any, compact_lease: Any, utxos, mindepth: int | None,
                      reserve: Any, channel_type: ChannelType | None) -> dict:
    try:
        amount = p_sat_or_all(amount)
    except ParamError as e:
        raise invalid_params(f"amount: {e}: invalid token '{amount}'") from None
    if amount != "all" and int(amount) == 0:
        raise invalid_params("amount: must be greater than 0")
    if request_amt is not None or compact_lease is not None:
        raise invalid_params("request_amt: liquidity ads (option_will_fund) are not supported")
    reserve_sat = _reserve_sat(reserve)
    script = _script_for(ctx, "close_to", close_to) if close_to is not None else None
    _explicit_feerate_floor_check(feerate)
    rate = feerate_arg(ctx, "feerate", feerate, default="opening")
    mgr = _manager(ctx)
    if ctx.check:
        return {}
    from ampere.node.channels.funding import OpenError

    try:
        return await mgr.opening.fundchannel(id, amount, rate, announce=announce, minconf=minconf, utxos=utxos,
                                             push_msat=int(push_msat or 0), mindepth=mindepth,
                                             reserve_sat=reserve_sat,
                                             channel_type=channel_type,
                                             close_to=script)
    except OpenError as e:
        raise to_rpc_error(e) from None


# ---- listing ----------------------------------------------------------------------------------------
def _htlc_json(h) -> dict:
    return {"direction": "out" if h.offerer is Side.LOCAL else "in", "id": h.htlc_id, "amount_msat": h.amount_msat,
            "expiry": h.cltv_expiry, "payment_hash": h.payment_hash.hex(), "state": HtlcState(h.state).name}


def _peer_update(mgr, rec) -> dict | None:
    """The peer's latest channel_update of this channel (CLN's `updates.remote`), from the graph: public or
    not, the peer's update of our own channel is kept there (BOLT #7: "SHOULD accept `channel_update`s for
    its own channels (even if non-public)")."""
    scid = rec.short_channel_id
    graph = mgr.node.gossip.state.graph if mgr.node.gossip is not None else None
    if scid is None or graph is None:
        return None
    gch = graph.channels.get(int(scid))
    if gch is None:
        return None
    # BOLT #7: direction 0 is node_id_1's (the lesser key): the peer's half is the other one from ours.
    half = gch.halves[0 if rec.peer_id < mgr.node.node_id else 1]
    if half is None:
        return None
    return {"htlc_minimum_msat": half.htlc_minimum_msat, "htlc_maximum_msat": half.htlc_maximum_msat,
            "cltv_expiry_delta": half.cltv_expiry_delta, "fee_base_msat": half.fee_base_msat,
            "fee_proportional_millionths": half.fee_proportional_millionths}


def _scratch_tx(rec) -> tuple[str, int] | None:
    """CLN's `scratch_txid` and `last_tx_fee_msat`: our latest commitment, the one a unilateral close now would
    broadcast (pyln-testing's wait_for_channel_onchain looks for it in the mempool), and the fee it pays."""
    ch = rec.core
    if not ch.local_commit_sig or ch.state in (ChannelState.ONCHAIN, ChannelState.CLOSED):
        return None
    try:
        ctx = core.local_commitment(ch, rec.signer)
    except ValueError:  # no commitment point yet, or keys not derivable: nothing to show
        return None
    return ctx.tx.txid()[::-1].hex(), sat_to_msat(ctx.funding_sat - sum(o.value for o in ctx.tx.outputs))


def peerchannel_json(mgr, rec) -> dict:
    ch = rec.core
    connected = mgr.is_connected(rec.peer_id)
    scid = rec.short_channel_id
    settings = rec.settings
    owner = {CS.CHANNELD_AWAITING_LOCKIN: "channeld", CS.CHANNELD_NORMAL: "channeld",
             CS.CHANNELD_SHUTTING_DOWN: "channeld", CS.CLOSINGD_SIGEXCHANGE: "closingd",
             CS.CLOSINGD_COMPLETE: "closingd"}.get(ch.state, "onchaind")
    pushed = int(rec.meta.get("pushed_msat", 0))
    opener_local = ch.opener is Side.LOCAL
    funding_local = sat_to_msat(ch.funding_sat) - pushed if opener_local else 0
    e: dict[str, Any] = {"peer_id": rec.peer_id.hex(), "peer_connected": connected}
    if connected:
        e["reestablished"] = bool(ch.reestablished)
    e["state"] = ch.state.value
    e["channel_type"] = channel_type_json(ch.channel_type)
    e["updates"] = {"local": {"htlc_minimum_msat": settings.htlc_min_msat, "htlc_maximum_msat": settings.htlc_max_msat,
                              "cltv_expiry_delta": settings.cltv_delta, "fee_base_msat": settings.fee_base_msat,
                              "fee_proportional_millionths": settings.fee_ppm}}
    remote = _peer_update(mgr, rec)
    if remote is not None:
        e["updates"]["remote"] = remote
    e["ignore_fee_limits"] = settings.ignore_fee_limits
    e["lost_state"] = rec.lost_state
    e["feerate"] = {"perkw": ch.feerate_per_kw, "perkb": ch.feerate_per_kw * 4}
    e["owner"] = owner
    if scid is not None:
        e["short_channel_id"] = str(scid)
        # BOLT #7: direction is 0 if our node id is the lesser one.
        e["direction"] = 0 if mgr.node.node_id < rec.peer_id else 1
    e["channel_id"] = rec.channel_id.hex()
    e["funding_txid"] = rec.funding_outpoint.txid_hex()
    e["funding_outnum"] = rec.funding_outpoint.vout
    scratch = _scratch_tx(rec)
    if scratch is not None:
        e["scratch_txid"], e["last_tx_fee_msat"] = scratch
    if ch.local.upfront_shutdown_script:
        e["close_to"] = ch.local.upfront_shutdown_script.hex()
        addr = script_to_address(ch.local.upfront_shutdown_script, mgr.node.network)
        if addr:
            e["close_to_addr"] = addr
    e["private"] = not ch.announce
    e["opener"] = "local" if opener_local else "remote"
    if rec.closer:
        e["closer"] = rec.closer
    e["features"] = ["option_static_remotekey"] + (["option_anchors"] if ch.channel_type.anchors else [])
    e["funding"] = {"local_funds_msat": funding_local, "remote_funds_msat": sat_to_msat(ch.funding_sat) - funding_local,
                    "pushed_msat": pushed}
    to_us = ch.balance_local_msat
    e["to_us_msat"] = to_us
    e["min_to_us_msat"] = min(to_us, int(rec.meta.get("min_to_us_msat", to_us)))
    e["max_to_us_msat"] = max(to_us, int(rec.meta.get("max_to_us_msat", to_us)))
    e["total_msat"] = sat_to_msat(ch.funding_sat)
    e["fee_base_msat"] = settings.fee_base_msat
    e["fee_proportional_millionths"] = settings.fee_ppm
    e["dust_limit_msat"] = sat_to_msat(ch.local.dust_limit_sat)
    e["their_max_htlc_value_in_flight_msat"] = ch.remote.max_htlc_value_in_flight_msat
    e["our_max_htlc_value_in_flight_msat"] = ch.local.max_htlc_value_in_flight_msat
    # Each side's config binds the OTHER side: our reserve is what the peer asked of us.
    e["their_reserve_msat"] = sat_to_msat(ch.local.channel_reserve_sat)
    e["our_reserve_msat"] = sat_to_msat(ch.remote.channel_reserve_sat)
    operating = ch.state in (CS.CHANNELD_NORMAL,)
    from ...ln.channel import core

    e["spendable_msat"] = core.spendable_msat(ch) if operating else 0
    receivable = 0
    if operating:
        extra = 1 if ch.opener is Side.REMOTE else 0
        receivable = max(0, available_msat(ch, next_view(ch, Side.LOCAL), Side.REMOTE, extra))
    e["receivable_msat"] = receivable
    e["minimum_htlc_in_msat"] = ch.local.htlc_minimum_msat
    e["minimum_htlc_out_msat"] = settings.htlc_min_msat
    e["maximum_htlc_out_msat"] = settings.htlc_max_msat
    e["their_to_self_delay"] = ch.remote.to_self_delay
    e["our_to_self_delay"] = ch.local.to_self_delay
    e["max_accepted_htlcs"] = ch.local.max_accepted_htlcs
    e["state_changes"] = list(rec.state_changes)
    e["status"] = [_status_line(rec, connected)]
    onchain = mgr.node.onchain
    if rec.state in (CS.FUNDING_SPEND_SEEN, CS.ONCHAIN) and onchain is not None and hasattr(onchain, "status"):
        lines = list(onchain.status(rec.channel_id))
        if lines:
            e["status"] = lines
    e["htlcs"] = [_htlc_json(h) for h in ch.htlcs]
    return e


def _status_line(rec, connected: bool) -> str:
    st = rec.state.value
    if rec.state is CS.CHANNELD_AWAITING_LOCKIN:
        if rec.funding_height is None:
            return f"{st}:Funding transaction not yet confirmed (need {rec.mindepth} confirmations)."
        return f"{st}:Funding confirmed at block {rec.funding_height}; waiting for {rec.mindepth} confirmations."
    if rec.state is CS.CHANNELD_NORMAL:
        return f"{st}:{'Channel ready for use.' if connected else 'Peer is disconnected.'}"
    return f"{st}:{'Reconnected' if connected else 'Disconnected'}"


def _resolve_channel(mgr, ident: str, *, want_peer_ok: bool = True) -> list:
    """`id`: a peer id (its channels), a channel id, or a short channel id."""
    if len(ident) == 66:
        try:
            peer_id = bytes.fromhex(ident)
        except ValueError:
            raise invalid_params(f"id: should be a node id, channel id or short channel id: invalid token '{ident}'") from None
        return mgr.peer_records(peer_id)
    if len(ident) == 64 or _SCID.match(ident):
        rec = mgr.find(ident)
        return [rec] if rec is not None else []
    raise invalid_params(f"id: should be a node id, channel id or short channel id: invalid token '{ident}'")


def _scid(v: Any) -> ShortChannelId:
    if not isinstance(v, str) or not _SCID.match(v):
        raise ParamError("should be a short_channel_id of form NxNxN")
    return ShortChannelId.from_str(v)


@command("listpeerchannels", [opt("id", p_pubkey), opt("short_channel_id", _scid), opt("channel_id", p_sha256)],
         category="network", description="Show channels with direct peers.")
async def listpeerchannels(ctx, id: bytes | None, short_channel_id, channel_id: bytes | None) -> dict:
    mgr = ctx.node.channel_manager
    if mgr is None:
        return {"channels": []}
    out = []
    for rec in sorted(mgr.records.values(), key=lambda r: r.dbid):
        if rec.state is CS.CLOSED:
            continue
        if id is not None and rec.peer_id != id:
            continue
        if short_channel_id is not None and (rec.short_channel_id is None
                                             or int(rec.short_channel_id) != int(short_channel_id)):
            continue
        if channel_id is not None and rec.channel_id != channel_id:
            continue
        out.append(peerchannel_json(mgr, rec))
    return {"channels": out}


@command("listclosedchannels", [opt("id", p_pubkey)], category="channels",
         description="Show historical (dead) channels.")
async def listclosedchannels(ctx, id: bytes | None) -> dict:
    mgr = ctx.node.channel_manager
    if mgr is None:
        return {"closedchannels": []}
    out = []
    for rec in sorted(mgr.records.values(), key=lambda r: r.dbid):
        if rec.state is not CS.CLOSED or (id is not None and rec.peer_id != id):
            continue
        ch = rec.core
        e: dict[str, Any] = {"peer_id": rec.peer_id.hex(), "channel_id": rec.channel_id.hex()}
        if rec.short_channel_id is not None:
            e["short_channel_id"] = str(rec.short_channel_id)
        e["opener"] = "local" if ch.opener is Side.LOCAL else "remote"
        if rec.closer:
            e["closer"] = rec.closer
        e["private"] = not ch.announce
        e["channel_type"] = channel_type_json(ch.channel_type)
        e["total_local_commitments"] = ch.local_ctn
        e["total_remote_commitments"] = ch.remote_ctn
        e["total_htlcs_sent"] = ch.next_htlc_id_local
        e["funding_txid"] = rec.funding_outpoint.txid_hex()
        e["funding_outnum"] = rec.funding_outpoint.vout
        e["funding_withheld"] = False
        e["leased"] = False
        e["funding_pushed_msat"] = int(rec.meta.get("pushed_msat", 0))
        e["total_msat"] = sat_to_msat(ch.funding_sat)
        e["final_to_us_msat"] = ch.balance_local_msat
        e["min_to_us_msat"] = min(ch.balance_local_msat, int(rec.meta.get("min_to_us_msat", ch.balance_local_msat)))
        e["max_to_us_msat"] = max(ch.balance_local_msat, int(rec.meta.get("max_to_us_msat", ch.balance_local_msat)))
        e["close_cause"] = rec.close_cause
        out.append(e)
    return {"closedchannels": out}


# ---- setchannel -------------------------------------------------------------------------------------
@command("setchannel", [req("id", p_string), opt("feebase", p_msat), opt("feeppm", p_u32), opt("htlcmin", p_msat),
                        opt("htlcmax", p_msat), opt("enforcedelay", p_u32, 600), opt("ignorefeelimits", p_bool)],
         category="channels", description="Sets fees and/or htlc_minimum_msat and htlc_maximum_msat for channels of "
                                          "peer with {id} (or 'all')")
async def setchannel(ctx, id: str, feebase, feeppm: int | None, htlcmin, htlcmax, enforcedelay: int,
                     ignorefeelimits: bool | None) -> dict:
    mgr = _manager(ctx)
    settable = (CS.CHANNELD_AWAITING_LOCKIN, CS.CHANNELD_NORMAL)
    if id == "all":
        recs = [r for r in mgr.records.values() if r.state in settable]
    else:
        recs = [r for r in _resolve_channel(mgr, id) if r.state in settable]
        if not recs:
            raise RpcError(LIGHTNINGD, "Could not find any active channels of peer with that id"
                           if len(id) == 66 else "Channel is not active")
    if ctx.check:
        return {}
    out = []
    for rec in sorted(recs, key=lambda r: r.dbid):
        s = rec.settings
        entry: dict[str, Any] = {}
        if feebase is not None:
            s.fee_base_msat = int(feebase)
        if feeppm is not None:
            s.fee_ppm = feeppm
        if htlcmin is not None:
            s.htlc_min_msat = int(htlcmin)
            if int(htlcmin) < rec.core.remote.htlc_minimum_msat:
                s.htlc_min_msat = rec.core.remote.htlc_minimum_msat
                entry["warning_htlcmin_too_low"] = (f"Set minimum_htlc_out_msat to minimum allowed by peer "
                                                    f"({rec.core.remote.htlc_minimum_msat}msat)")
        if htlcmax is not None:
            s.htlc_max_msat = int(htlcmax)
            cap = sat_to_msat(rec.core.funding_sat)
            if int(htlcmax) > cap:
                s.htlc_max_msat = cap
                entry["warning_htlcmax_too_high"] = f"Set maximum_htlc_out_msat to maximum possible in channel ({cap}msat)"
        if ignorefeelimits is not None:
            s.ignore_fee_limits = ignorefeelimits
        await mgr.save_meta(rec)
        announcer = ctx.node.channel_announcer
        if announcer is not None:
            announcer.settings_changed(rec)  # BOLT 7: a new channel_update with the new parameters
        e: dict[str, Any] = {"peer_id": rec.peer_id.hex(), "channel_id": rec.channel_id.hex()}
        if rec.short_channel_id is not None:
            e["short_channel_id"] = str(rec.short_channel_id)
        e.update({"fee_base_msat": s.fee_base_msat, "fee_proportional_millionths": s.fee_ppm,
                  "ignore_fee_limits": s.ignore_fee_limits, "minimum_htlc_out_msat": s.htlc_min_msat,
                  "maximum_htlc_out_msat": s.htlc_max_msat})
        e.update(entry)
        out.append(e)
    return {"channels": out}


# ---- close --------------------------------------------------------------------------------------------
def _fee_step(v: Any) -> str:
    text = str(v)
    if re.fullmatch(r"\d+%?", text) is None:
        raise ParamError("should be an integer or an integer followed by %")
    n = int(text.rstrip("%"))
    if text.endswith("%") and not 0 < n <= 100:
        raise ParamError("percentage must be between 1 and 100")
    if not text.endswith("%") and n == 0:
        raise ParamError("must be a positive integer")
    return text


@command("close", [req("id", p_string), opt("unilateraltimeout", p_u32, 172800), opt("destination", p_any),
                   opt("fee_negotiation_step", _fee_step), opt("wrong_funding", p_any),
                   opt("force_lease_closed", p_bool, False), opt("feerange", p_any)],
         category="channels", description="Close the channel with {id} (either peer ID, channel ID, or short channel "
                                          "ID). Force a unilateral close after {unilateraltimeout} seconds (default 48h)")
async def close(ctx, id: str, unilateraltimeout: int, destination: Any, fee_negotiation_step: str | None,
                wrong_funding: Any, force_lease_closed: bool, feerange: Any) -> dict:
    mgr = _manager(ctx)
    script = _script_for(ctx, "destination", destination) if destination is not None else None
    if wrong_funding is not None:
        raise invalid_params("wrong_funding: shutdown_wrong_funding is not supported")
    if len(id) == 66:
        recs = [r for r in _resolve_channel(mgr, id) if r.state not in (CS.CLOSED, CS.ONCHAIN, CS.FUNDING_SPEND_SEEN)]
        if not recs:
            unopened = mgr.opening.peer_error(bytes.fromhex(id), None, "closed by user")
            if unopened:
                return {"type": "unopened"}
            raise RpcError(LIGHTNINGD, "Peer has no active channel")
    else:
        recs = _resolve_channel(mgr, id)
        if not recs:
            raise RpcError(LIGHTNINGD, f"Short channel ID not found: '{id}'" if _SCID.match(id)
                           else f"Channel ID not found: '{id}'")
    rec = recs[-1]
    if ctx.check:
        return {}
    from ampere.node.channels.close import CloseError, close_channel

    try:
        kind, txs = await close_channel(mgr, rec, unilateraltimeout, script)
    except CloseError as e:
        raise to_rpc_error(e) from None
    return {"type": kind, "txs": [t.serialize().hex() for t in txs], "txids": [t.txid_hex() for t in txs]}


# ---- developer-only HTLC commands (the channel manager's HTLC interface) -------------------------------
def _dev(ctx) -> None:
    if not ctx.node.options.get("developer"):
        raise RpcError(METHOD_NOT_FOUND, f"Unknown command '{ctx.request.get('method')}'")


def _dev_onion(preimage: bytes) -> bytes:
    # The dev onion carries the preimage first: --dev-autofulfill on the peer fulfills with it.
    return preimage + bytes(1366 - len(preimage))


async def _offer(ctx, mgr, id: str, amount_msat: int, payment_hash: bytes, cltv: int, onion: bytes) -> tuple[Any, int]:
    from ampere.node.channels.manager import HtlcRefused

    recs = [r for r in _resolve_channel(mgr, id) if r.state is not CS.CLOSED]
    if not recs:
        raise RpcError(LIGHTNINGD, "Unknown channel")
    rec = recs[-1]
    try:
        return rec, await mgr.offer_htlc(rec.channel_id, amount_msat, payment_hash, cltv, onion)
    except HtlcRefused as e:
        raise RpcError(LIGHTNINGD, e.message, {"failcode": e.failure_code}) from None


@command("dev-offer-htlc", [req("id", p_string), req("amount_msat", p_msat), opt("payment_hash", p_sha256),
                            opt("cltv_expiry", p_u32), opt("preimage", p_sha256), opt("wait", p_bool, False)],
         category="developer", description="(developer) offer an HTLC on a channel through the HTLC interface")
async def dev_offer_htlc(ctx, id: str, amount_msat, payment_hash: bytes | None, cltv_expiry: int | None,
                         preimage: bytes | None, wait: bool) -> dict:
    _dev(ctx)
    mgr = _manager(ctx)
    if preimage is None and payment_hash is None:
        preimage = os.urandom(32)
    if payment_hash is None:
        payment_hash = sha256(preimage)
    cltv = cltv_expiry if cltv_expiry is not None else ctx.node.blockheight + 100
    rec, htlc_id = await _offer(ctx, mgr, id, int(amount_msat), payment_hash, cltv,
                                _dev_onion(preimage if preimage is not None else bytes(32)))
    out: dict[str, Any] = {"channel_id": rec.channel_id.hex(), "htlc_id": htlc_id, "payment_hash": payment_hash.hex()}
    if preimage is not None:
        out["preimage"] = preimage.hex()
    if wait:
        ev = await mgr.wait_htlc(rec.channel_id, htlc_id)
        out["status"] = "fulfilled" if hasattr(ev, "preimage") else "failed"
    return out


@command("dev-fulfill-htlc", [req("channel_id", p_sha256), req("htlc_id", p_u64), req("preimage", p_sha256)],
         category="developer", description="(developer) fulfill an incoming HTLC")
async def dev_fulfill_htlc(ctx, channel_id: bytes, htlc_id: int, preimage: bytes) -> dict:
    _dev(ctx)
    from ampere.node.channels.manager import ChannelOpError

    try:
        await _manager(ctx).fulfill_htlc(channel_id, htlc_id, preimage)
    except ChannelOpError as e:
        raise RpcError(LIGHTNINGD, str(e)) from None
    return {}


@command("dev-fail-htlc", [req("channel_id", p_sha256), req("htlc_id", p_u64), opt("reason", p_hex)],
         category="developer", description="(developer) fail an incoming HTLC")
async def dev_fail_htlc(ctx, channel_id: bytes, htlc_id: int, reason: bytes | None) -> dict:
    _dev(ctx)
    from ampere.node.channels.manager import ChannelOpError

    try:
        await _manager(ctx).fail_htlc(channel_id, htlc_id, reason if reason is not None else bytes(256))
    except ChannelOpError as e:
        raise RpcError(LIGHTNINGD, str(e)) from None
    return {}


@command("dev-htlc-roundtrips", [req("id", p_string), req("count", p_u32), opt("amount_msat", p_msat),
                                 opt("parallel", p_u32, 1)],
         category="developer", description="(developer) offer {count} HTLCs ({parallel} at a time) that the peer "
                                           "fulfills (it runs with --dev-autofulfill); report round trips per second")
async def dev_htlc_roundtrips(ctx, id: str, count: int, amount_msat, parallel: int) -> dict:
    _dev(ctx)
    mgr = _manager(ctx)
    amount = int(amount_msat) if amount_msat is not None else 1_000_000
    cltv = ctx.node.blockheight + 100
    done = {"fulfilled": 0, "failed": 0}
    sem = asyncio.Semaphore(max(1, parallel))

    async def one() -> None:
        async with sem:
            preimage = os.urandom(32)
            while True:
                try:
                    rec, htlc_id = await _offer(ctx, mgr, id, amount, sha256(preimage), cltv, _dev_onion(preimage))
                    break
                except RpcError as e:
                    # HTLCs fulfilled but not yet removed from both commitments still count against the
                    # peer's max_accepted_htlcs: wait for them to settle.
                    if "at most" not in e.message:
                        raise
                    await asyncio.sleep(0.005)
            ev = await mgr.wait_htlc(rec.channel_id, htlc_id)
            done["fulfilled" if hasattr(ev, "preimage") else "failed"] += 1

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    seconds = time.perf_counter() - start
    return {"count": count, "fulfilled": done["fulfilled"], "failed": done["failed"], "seconds": round(seconds, 3),
            "per_second": round(count / seconds, 1) if seconds > 0 else 0}


# ---- developer-only commands to test on-chain enforcement (CLN's dev-sign-last-tx, dev-fail) --------------
def _active_channel(ctx, id: bytes):
    mgr = _manager(ctx)
    recs = [r for r in mgr.peer_records(id) if r.state in (CS.CHANNELD_AWAITING_LOCKIN, CS.CHANNELD_NORMAL,
                                                           CS.CHANNELD_SHUTTING_DOWN, CS.CLOSINGD_SIGEXCHANGE,
                                                           CS.CLOSINGD_COMPLETE)]
    if not recs:
        raise RpcError(LIGHTNINGD, "Could not find active channel with peer")
    return mgr, recs[-1]


@command("dev-sign-last-tx", [req("id", p_pubkey)], category="developer",
         description="(developer) sign our current commitment transaction and return it, without broadcasting it")
async def dev_sign_last_tx(ctx, id: bytes) -> dict:
    _dev(ctx)
    from ...ln.channel import core

    _, rec = _active_channel(ctx, id)
    # CLN's dev-sign-last-tx: "Sign and show the last commitment transaction with peer {id}" (a test can then
    # broadcast it once it is revoked, to cheat).
    return {"tx": core.local_commitment_tx(rec.core, rec.signer).serialize().hex()}


@command("dev-fail", [req("id", p_pubkey)], category="developer",
         description="(developer) fail the channel with peer {id}: close it unilaterally now")
async def dev_fail(ctx, id: bytes) -> dict:
    _dev(ctx)
    mgr, rec = _active_channel(ctx, id)
    await mgr.force_close(rec, "Failing due to dev-fail command")  # lightningd's words, tests wait for them
    return {}


@command("dev-reenable-commit", [req("id", p_pubkey)], category="developer",
         description="(developer) re-enable the commit timer of the channel with peer {id} (dev-disable-commit-after)")
async def dev_reenable_commit(ctx, id: bytes) -> dict:
    _dev(ctx)
    mgr, rec = _active_channel(ctx, id)
    mgr.dev_reenable_commit(rec)
    return {}


@command("dev-sign-last-htlc-txs", [req("id", p_pubkey), opt("preimages", p_any), opt("feerate", p_u32)],
         category="developer",
         description="(developer) sign the HTLC transactions of our current commitment (HTLC-timeout; HTLC-success "
                     "for the given preimages) and return them, without broadcasting (Ampere's, to cheat in tests); "
                     "on an anchor channel, {feerate} (perkw) adds wallet inputs and change to pay that rate")
async def dev_sign_last_htlc_txs(ctx, id: bytes, preimages: Any, feerate: int | None) -> dict:
    _dev(ctx)
    from ...ln.channel import core
    from ...ln.onchain.htlc import signed_local_htlc_txs

    known: dict[bytes, bytes] = {}
    for i, v in enumerate(preimages or []):
        try:
            pre = bytes.fromhex(v) if isinstance(v, str) else b""
        except ValueError:
            pre = b""
        if len(pre) != 32:
            raise invalid_params(f"preimages: element {i} should be a 32-byte hex preimage")
        known[sha256(pre)] = pre
    _, rec = _active_channel(ctx, id)
    ch = rec.core
    commit = core.local_commitment(ch, rec.signer)
    txs = signed_local_htlc_txs(commit, ch.local_htlc_sigs, rec.signer, known)
    if feerate and ch.params.channel_type.anchors:
        from ampere.node.onchain.bumping import fund_htlc_tx

        funded = []
        for htx, tx in txs:
            if tx is None:
                continue
            prev, w = commit.tx.outputs[htx.commitment_output_index], tx.inputs[0].witness

            def finish(t, w=w, htx=htx, prev=prev):
                ours = rec.signer.sign_local_htlc_input(t, 0, htx.witness_script, prev.value,
                                                         commit.keys.per_commitment_point)
                return [b"", w[1], ours, w[3], w[4]]

            res = await fund_htlc_tx(ctx.node.wallet, tx, prev.value, prev.script_pubkey, finish, feerate,
                                     ctx.node.blockheight)
            if res is None:
                raise RpcError(LIGHTNINGD, "not enough funds in the wallet to pay the HTLC transactions' fees")
            funded.append((htx, res[0]))
        txs = funded
    return {"txs": [{"type": htx.kind.value, "htlc_id": htx.htlc_id, "tx": tx.serialize().hex()}
                    for htx, tx in txs if tx is not None]}
