"""Graph commands: listchannels, listnodes, getroute (CLN's topology plugin) and addgossip
(lightningd's gossip_control.c), with their parameters, result shapes, messages and error codes.
`dev-gossipstats` (Ampere only) shows what the gossip runtime received, accepted and rejected."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from ...ln.route import NoRouteError, RouteError, RouteQuery, find_route
from ...wire.types import ShortChannelId
from ..errors import (
    INVALID_PARAMS,
    LIGHTNINGD,
    PAY_ROUTE_NOT_FOUND,
    RpcError,
    invalid_params,
)
from ..params import ParamError, opt, p_hex, p_msat, p_pubkey, p_u32, req
from ..registry import command

ROUTING_MAX_HOPS = 20


def _gossip(ctx):
    g = ctx.node.gossip
    if g is None:
        raise RpcError(LIGHTNINGD, "Gossip is not running")
    return g


# Node ids getroute was given and p_pubkey accepted (a point on the curve: the costly part of the
# check, ~30 us, twice a call): asked again, they are not checked again.
_CHECKED_NODE_IDS: dict[str, bytes] = {}
_MAX_CHECKED_NODE_IDS = 8192


def p_node_id(v: Any) -> bytes:
    """p_pubkey, remembering the ids it accepted (the same errors for the others)."""
    b = _CHECKED_NODE_IDS.get(v) if isinstance(v, str) else None
    if b is None:
        b = p_pubkey(v)
        if len(_CHECKED_NODE_IDS) >= _MAX_CHECKED_NODE_IDS:
            _CHECKED_NODE_IDS.clear()
        _CHECKED_NODE_IDS[v] = b
    return b


def p_scid(v: Any) -> ShortChannelId:
    if not isinstance(v, str):
        raise ParamError("should be a short_channel_id of form NxNxN")
    try:
        return ShortChannelId.from_str(v)
    except ValueError:
        raise ParamError("should be a short_channel_id of form NxNxN") from None


def p_millionths(v: Any) -> Fraction:
    """A non-negative decimal number (CLN's param_millionths: at most six decimal places)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str, Decimal)):
        raise ParamError("should be a non-negative floating-point number")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise ParamError("should be a non-negative floating-point number") from None
    if not d.is_finite() or d < 0:
        raise ParamError("should be a non-negative floating-point number")
    millionths = d * 1_000_000
    if millionths != millionths.to_integral_value():
        raise ParamError("should be a non-negative floating-point number")
    return Fraction(int(millionths), 1_000_000)


def p_array(v: Any) -> list:
    if not isinstance(v, list):
        raise ParamError("should be an array")
    return v


def p_number(v: Any) -> int:
    return p_u32(v)


@command("listchannels", [opt("short_channel_id", p_scid), opt("source", p_pubkey), opt("destination", p_pubkey)],
         category="channels", description="Show all known channels or filter by optional {short_channel_id}, "
                                          "{source} or {destination}.")
async def listchannels(ctx, short_channel_id: ShortChannelId | None, source: bytes | None,
                       destination: bytes | None) -> dict:
    if (short_channel_id is not None) + (source is not None) + (destination is not None) > 1:
        raise invalid_params("Can only specify one of `short_channel_id`, `source` or `destination`")
    graph = _gossip(ctx).state.graph
    return {"channels": graph.list_channels(short_channel_id=short_channel_id, source=source,
                                            destination=destination)}


@command("listnodes", [opt("id", p_pubkey)], category="network",
         description="Show node {id} (or all known nodes, if not specified).")
async def listnodes(ctx, id: bytes | None) -> dict:
    graph = _gossip(ctx).state.graph
    return {"nodes": graph.list_nodes(node_id=id)}


def _exclusions(items: list) -> tuple[frozenset[tuple[int, int]], frozenset[bytes]]:
    chans, nodes = set(), set()
    for item in items:
        if isinstance(item, str) and "/" in item:
            scid_text, _, d = item.partition("/")
            try:
                scid = ShortChannelId.from_str(scid_text)
            except ValueError:
                scid = None
            if scid is not None and d in ("0", "1"):
                chans.add((int(scid), int(d)))
                continue
        else:
            try:
                nodes.add(p_pubkey(item))
                continue
            except ParamError:
                pass
        tok = item if isinstance(item, str) else repr(item)
        raise invalid_params(f"exclude: should be short_channel_id or node_id: invalid token '{tok}'")
    return frozenset(chans), frozenset(nodes)


@command("getroute", [req("id", p_node_id), req("amount_msat", p_msat), req("riskfactor", p_millionths),
                      opt("cltv", p_number, 9), opt("fromid", p_node_id), opt("fuzzpercent", p_millionths),
                      opt("exclude", p_array), opt("maxhops", p_number, ROUTING_MAX_HOPS)],
         category="channels",
         description="Show route to {id} for {amount_msat}, using {riskfactor} and optional {cltv} (default 9). "
                     "If specified search from {fromid} otherwise use this node as source. Randomize the route "
                     "with up to {fuzzpercent} (ignored)). If you want to exclude a set of channels or nodes "
                     "pass an array of short-channel-id/direction (e.g. [ '564334x877x1/0', '564195x1292x0/1' ]) "
                     "or node-id in {exclude}. Limit the number of hops in the route to {maxhops}.")
async def getroute(ctx, id: bytes, amount_msat: Any, riskfactor: Fraction, cltv: int, fromid: bytes | None,
                   fuzzpercent: Fraction | None, exclude: list | None, maxhops: int) -> dict:
    if fuzzpercent is not None and fuzzpercent > 100:
        raise invalid_params(f"fuzzpercent: should be <= 100: invalid token '{fuzzpercent}'")
    excl_chans, excl_nodes = _exclusions(exclude or [])
    source = fromid if fromid is not None else ctx.node.node_id
    graph = _gossip(ctx).state.graph
    # CLN: the ends must be in the graph ("no public channels?").
    if graph.node(source) is None:
        raise RpcError(INVALID_PARAMS, f"{source.hex()}: unknown source node_id (no public channels?)")
    if graph.node(id) is None:
        raise RpcError(INVALID_PARAMS, f"{id.hex()}: unknown destination node_id (no public channels?)")
    query = RouteQuery(source=source, destination=id, amount_msat=int(amount_msat), final_cltv=cltv,
                       riskfactor=riskfactor, max_hops=maxhops, exclude_channels=excl_chans,
                       exclude_nodes=excl_nodes)
    try:
        route = find_route(graph, query)
    except NoRouteError:
        raise RpcError(PAY_ROUTE_NOT_FOUND, "Could not find a route") from None
    except RouteError as e:
        raise RpcError(PAY_ROUTE_NOT_FOUND, f"Could not find a route: {e}") from None
    return {"route": [hop.to_json() for hop in route]}


@command("addgossip", [req("message", p_hex)], category="utility",
         description="Inject gossip {message} into the gossip store (channel_announcement, channel_update "
                     "or node_announcement, hex-encoded).")
async def addgossip(ctx, message: bytes) -> dict:
    from ampere.node.gossip.manager import GossipError

    gossip = _gossip(ctx)
    try:
        await gossip.add_gossip(message)
    except GossipError as e:
        raise RpcError(LIGHTNINGD, str(e)) from None
    return {}


@command("dev-gossipstats", [], category="developer",
         description="Gossip runtime counters: messages received, accepted, rejected (by reason), relayed.")
async def dev_gossipstats(ctx) -> dict:
    return _gossip(ctx).stats()
