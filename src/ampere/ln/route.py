"""The path finder shared by `pay` and `getroute`, and the multipath splitter.

Routes are searched backwards, from the payee to the payer (Dijkstra), because each hop's fee is
charged on the amount it forwards and each hop's CLTV delta adds to what it receives -- both are
known only once everything downstream is fixed.  BOLT #7 ("Routing Example"): "When building the
route, amounts and expiries for HTLCs need to be calculated backward from the destination to the
source."

The graph searched is the public graph (ln/gossip/graph.py), plus the payer's own channels with
their actual spendable amounts (`LocalChannel`, given by the caller: these replace the graph's
view of the payer's channels), plus an invoice's route hints (`HintHop`).

    route = find_route(graph, RouteQuery(source=me, destination=payee, amount_msat=..., ...))
    [hop.to_json() for hop in route]   # CLN getroute's shape: {id, channel, direction,
                                       #   amount_msat, delay, style: "tlv"}
    parts = split_payment(graph, query, max_parts=8)   # MPP: several routes, total fee capped

Route choice minimises fee plus CLN's risk cost (lightning-getroute(7)): "risk-fee = amount x
blocks-timeout x riskfactor / 5259600", the risk being charged per hop on the amount held for that
hop's CLTV delta.  Everything is integer arithmetic; `riskfactor` may be fractional (a Fraction or
a decimal string), as CLN allows.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from ampere.wire.types import ShortChannelId

from .gossip.graph import Graph

# CLN lightning-getroute(7): "There are 52596 blocks per year, thus per-block-cost is riskfactor
# divided by 5,259,600" (riskfactor being a percentage).
RISK_DIVISOR = 5_259_600

# Exit codes CLN's pay uses for these failures (doc/schemas/pay.json): the RPC layer maps errors.
PAY_ROUTE_NOT_FOUND = 205
PAY_ROUTE_TOO_EXPENSIVE = 206

# BOLT #9 node features are in pairs: an even bit we do not know means "don't route through".
_KNOWN_NODE_FEATURE_BITS: int | None = None


class RouteError(Exception):
    code = PAY_ROUTE_NOT_FOUND


class NoRouteError(RouteError):
    """No path can carry the amount (205)."""


class RouteTooExpensiveError(RouteError):
    """Paths exist, but not within `max_fee_msat` or `max_delay` (206)."""

    code = PAY_ROUTE_TOO_EXPENSIVE

    def __init__(self, message: str, *, fee_msat: int | None = None, delay: int | None = None) -> None:
        super().__init__(message)
        self.fee_msat = fee_msat
        self.delay = delay


@dataclass(frozen=True)
class RouteHop:
    """One hop: the channel into `node_id`, with what `node_id` receives and its CLTV."""

    node_id: bytes
    short_channel_id: ShortChannelId
    direction: int
    amount_msat: int
    delay: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.node_id.hex(), "channel": str(self.short_channel_id), "direction": self.direction,
                "amount_msat": self.amount_msat, "delay": self.delay, "style": "tlv"}


@dataclass(frozen=True)
class LocalChannel:
    """One of the payer's channels as the channel manager sees it right now.

    `spendable_msat`: what we can send over it (balance less reserve, fees, in-flight);
    `htlc_minimum_msat`: the smallest HTLC the peer accepts from us.
    """

    short_channel_id: int
    peer_id: bytes
    spendable_msat: int
    htlc_minimum_msat: int = 0


@dataclass(frozen=True)
class HintHop:
    """One hop of a BOLT #11 route hint (`r` field): the channel from `node_id` to the next hop of
    the hint (the payee for the last one), with `node_id`'s fee and CLTV delta for it."""

    node_id: bytes
    short_channel_id: int
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int
    htlc_minimum_msat: int = 0
    htlc_maximum_msat: int | None = None


def parse_exclusions(items: Iterable[str]) -> tuple[frozenset[tuple[int, int]], frozenset[bytes]]:
    """CLN's `exclude` list: "short-channel-id/direction (e.g. ['564334x877x1/0']) or node-id"."""
    chans, nodes = set(), set()
    for item in items:
        if "/" in item:
            scid_text, _, d = item.partition("/")
            if d not in ("0", "1"):
                raise ValueError(f"bad exclusion {item!r}: direction must be 0 or 1")
            chans.add((int(ShortChannelId.from_str(scid_text)), int(d)))
        else:
            try:
                node = bytes.fromhex(item)
            except ValueError:
                raise ValueError(f"bad exclusion {item!r}: not a short_channel_id/direction or node id") from None
            if len(node) != 33:
                raise ValueError(f"bad exclusion {item!r}: a node id is 33 bytes")
            nodes.add(node)
    return frozenset(chans), frozenset(nodes)


def _to_fraction(value: Any) -> Fraction:
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    frac = Fraction(str(value))  # floats and Decimals through their decimal text: exact
    if frac < 0:
        raise ValueError("riskfactor must not be negative")
    return frac


@dataclass(frozen=True)
class RouteQuery:
    source: bytes
    destination: bytes
    amount_msat: int
    final_cltv: int = 9  # CLN getroute's `cltv` default
    riskfactor: Any = 10  # CLN pay's default; getroute requires it
    max_fee_msat: int | None = None
    max_delay: int | None = None  # bound on the first hop's total CLTV (pay's `maxdelay`)
    max_hops: int = 20
    exclude_channels: frozenset[tuple[int, int]] = frozenset()  # (scid, direction)
    exclude_nodes: frozenset[bytes] = frozenset()
    local_channels: Sequence[LocalChannel] | None = None
    route_hints: Sequence[Sequence[HintHop]] = ()
    fuzz_percent: int = 0  # randomise the fee part of the cost by up to +/- this percentage
    fuzz_seed: bytes = b""
    used_msat: Mapping[tuple[int, int], int] = field(default_factory=dict)  # already committed (MPP)


# An edge u -> v as the search uses it:
# (u, scid, direction, fee_base, ppm, cltv_delta, htlc_min, htlc_max, capacity_msat or None)
Edge = tuple[bytes, int, int, int, int, int, int, int, "int | None"]


def _unroutable_node(features: bytes) -> bool:
    """BOLT #7: if a node's `features` "contains _unknown even bits_: ... MUST NOT route a payment
    _through_ the node."."""
    global _KNOWN_NODE_FEATURE_BITS
    if not features:
        return False
    if _KNOWN_NODE_FEATURE_BITS is None:
        from ampere.wire.features import FEATURE_BITS

        known = 0
        for bit in FEATURE_BITS.values():
            known |= 3 << bit
        _KNOWN_NODE_FEATURE_BITS = known
    bits = int.from_bytes(features, "big") & ~_KNOWN_NODE_FEATURE_BITS
    return bool(bits & int("55" * len(features), 16))


def graph_edges(graph: Graph) -> tuple[dict[bytes, list[Edge]], frozenset[bytes]]:
    """Usable directed edges grouped by their destination node, and the nodes not to route
    through.  Cached on the graph until it changes."""
    cache = graph._route_cache
    if cache is not None and cache[0] == graph.version:
        return cache[1]  # type: ignore[no-any-return]
    incoming: dict[bytes, list[Edge]] = {}
    for ch in graph.channels.values():
        if ch.spent_height is not None or not ch.routable_features:
            continue
        cap = ch.capacity_sat * 1000 if ch.capacity_sat else None
        for direction in (0, 1):
            h = ch.halves[direction]
            if h is None or h.channel_flags & 2:
                continue
            # BOLT #7: "if `htlc_maximum_msat` < `htlc_minimum_msat`: SHOULD ignore this channel during
            # route considerations." and "if `htlc_maximum_msat` is greater than channel capacity: ...
            # SHOULD ignore this channel during route considerations."
            if h.htlc_maximum_msat < h.htlc_minimum_msat or (cap is not None and h.htlc_maximum_msat > cap):
                continue
            src, dst = (ch.node1, ch.node2) if direction == 0 else (ch.node2, ch.node1)
            incoming.setdefault(dst, []).append((src, ch.scid, direction, h.fee_base_msat,
                                                 h.fee_proportional_millionths, h.cltv_expiry_delta,
                                                 h.htlc_minimum_msat, h.htlc_maximum_msat, cap))
    bad = frozenset(n.node_id for n in graph.nodes.values() if n.info is not None and _unroutable_node(n.info.features))
    result = (incoming, bad)
    graph._route_cache = (graph.version, result)
    return result


def _fuzz(seed: bytes, scid: int, direction: int, percent: int) -> int:
    """A per-channel factor in per-mille, 1000 +/- 10*percent, stable for one seed."""
    h = hashlib.sha256(seed + scid.to_bytes(8, "big") + bytes([direction])).digest()
    span = 20 * percent + 1
    return 1000 + int.from_bytes(h[:4], "big") % span - 10 * percent


def _search(graph: Graph, q: RouteQuery, enforce_limits: bool) -> list[RouteHop] | None:
    incoming, bad_nodes = graph_edges(graph)
    source, dest, amount = q.source, q.destination, q.amount_msat
    # The extra edges: route hints (they override the graph for the same channel and direction),
    # and the payer's own channels.
    extra: dict[bytes, list[Edge]] = {}
    overridden: set[tuple[int, int]] = set()
    for hint in q.route_hints:
        for i, hop in enumerate(hint):
            nxt = hint[i + 1].node_id if i + 1 < len(hint) else dest
            d = 0 if hop.node_id < nxt else 1
            hmax = hop.htlc_maximum_msat if hop.htlc_maximum_msat is not None else 1 << 64
            extra.setdefault(nxt, []).append((hop.node_id, hop.short_channel_id, d, hop.fee_base_msat,
                                              hop.fee_proportional_millionths, hop.cltv_expiry_delta,
                                              hop.htlc_minimum_msat, hmax, None))
            overridden.add((hop.short_channel_id, d))
    local = q.local_channels
    if local is not None:
        for lc in local:
            d = 0 if source < lc.peer_id else 1
            # The first hop charges no fee and adds no delta: we are the one sending.
            extra.setdefault(lc.peer_id, []).append((source, lc.short_channel_id, d, 0, 0, 0,
                                                     lc.htlc_minimum_msat, lc.spendable_msat, lc.spendable_msat))
            overridden.add((lc.short_channel_id, d))

    rf = _to_fraction(q.riskfactor)
    risk_num, fee_mult = rf.numerator * 1000, RISK_DIVISOR * rf.denominator  # cost = fee*fee_mult*fuzz + amt*delta*risk_num
    fuzz = q.fuzz_percent if enforce_limits else 0
    ignore_min = amount == 0  # CLN getroute: "The 0 value is special: it ignores any htlc_minimum_msat"
    max_fee = q.max_fee_msat if enforce_limits else None
    max_delay = q.max_delay if enforce_limits else None
    excl_ch, excl_nodes, used = q.exclude_channels, q.exclude_nodes, q.used_msat

    # Per node: (cost, hops, amount it must receive, cltv it must receive, next hop)
    best: dict[bytes, int] = {dest: 0}
    state: dict[bytes, tuple[int, int, int, Any]] = {dest: (0, amount, q.final_cltv, None)}
    heap: list[tuple[int, int, int, bytes]] = [(0, 0, 0, dest)]
    counter = 1
    done: set[bytes] = set()
    while heap:
        cost, hops, _, v = heapq.heappop(heap)
        if v in done:
            continue
        done.add(v)
        if v == source:
            break
        _, amt_v, delay_v, _ = state[v]
        if hops >= q.max_hops:
            continue
        for edges, is_extra in ((extra.get(v, ()), True), (incoming.get(v, ()), False)):
            for u, scid, d, base, ppm, delta, hmin, hmax, cap in edges:
                if u in done:
                    continue
                if not is_extra and ((scid, d) in overridden or (local is not None and u == source)):
                    continue
                if (scid, d) in excl_ch or (u in excl_nodes and u != source):
                    continue
                if u != source and u in bad_nodes:
                    continue
                if amt_v > hmax or (amt_v < hmin and not ignore_min):
                    continue
                if cap is not None:
                    taken = used.get((scid, d), 0) if used else 0
                    if amt_v + taken > cap:
                        continue
                if u == source:
                    fee, amt_u, delay_u = 0, amt_v, delay_v
                    edge_cost = 0
                else:
                    # BOLT #7 "HTLC Fees": fee_base_msat + ( amount_to_forward * fee_proportional_millionths / 1000000 )
                    fee = base + amt_v * ppm // 1_000_000
                    amt_u, delay_u = amt_v + fee, delay_v + delta
                    fee_cost = fee * fee_mult * (_fuzz(q.fuzz_seed, scid, d, fuzz) if fuzz else 1000)
                    edge_cost = fee_cost + amt_v * delta * risk_num
                if max_fee is not None and amt_u - amount > max_fee:
                    continue
                if max_delay is not None and delay_u > max_delay:
                    continue
                new_cost = cost + edge_cost
                old = best.get(u)
                if old is not None and old <= new_cost:
                    continue
                best[u] = new_cost
                state[u] = (hops + 1, amt_u, delay_u, (v, scid, d))
                heapq.heappush(heap, (new_cost, hops + 1, counter, u))
                counter += 1
    if source not in done:
        return None
    route = []
    node = source
    while node != dest:
        v, scid, d = state[node][3]
        _, amt_v, delay_v, _ = state[v]
        route.append(RouteHop(v, ShortChannelId(scid), d, amt_v, delay_v))
        node = v
    return route


def find_route(graph: Graph, query: RouteQuery) -> list[RouteHop]:
    """The cheapest route (fee plus risk) within the query's limits.

    Raises NoRouteError (205) when no path carries the amount, RouteTooExpensiveError (206) when
    paths exist but none within `max_fee_msat` / `max_delay`.
    """
    if query.source == query.destination:
        raise NoRouteError("source and destination are the same node")
    if query.amount_msat < 0:
        raise ValueError("negative amount")
    route = _search(graph, query, enforce_limits=True)
    if route is not None:
        return route
    if query.max_fee_msat is None and query.max_delay is None and not query.fuzz_percent:
        raise NoRouteError(f"no route to {query.destination.hex()} for {query.amount_msat}msat")
    unlimited = _search(graph, query, enforce_limits=False)
    if unlimited is None:
        raise NoRouteError(f"no route to {query.destination.hex()} for {query.amount_msat}msat")
    fee = unlimited[0].amount_msat - query.amount_msat
    delay = unlimited[0].delay
    if query.max_fee_msat is not None and fee > query.max_fee_msat:
        raise RouteTooExpensiveError(f"fee {fee}msat is above the maximum of {query.max_fee_msat}msat",
                                     fee_msat=fee, delay=delay)
    if query.max_delay is not None and delay > query.max_delay:
        raise RouteTooExpensiveError(f"route wants a delay of {delay} blocks, the limit is {query.max_delay}",
                                     fee_msat=fee, delay=delay)
    # The cheapest route breaks no limit, but the limits pruned every path the search took.
    raise RouteTooExpensiveError("no route within the fee and delay limits", fee_msat=fee, delay=delay)


def route_fee(route: Sequence[RouteHop]) -> int:
    return route[0].amount_msat - route[-1].amount_msat if route else 0


# ---------------------------------------------------------------------------------------------
# Multipath


def _available(graph: Graph, query: RouteQuery, used: Mapping[tuple[int, int], int], route: Sequence[RouteHop]) -> int:
    """How much more the route's narrowest channel could carry, as the payee's amount (a lower bound:
    fees along the way are left out of the margin)."""
    local = {lc.short_channel_id: lc for lc in query.local_channels or ()}
    margin = None
    for hop in route:
        key = (int(hop.short_channel_id), hop.direction)
        ch = graph.channels.get(hop.short_channel_id)
        if key[0] in local:
            cap = local[key[0]].spendable_msat
        elif ch is not None and ch.halves[hop.direction] is not None:
            h = ch.halves[hop.direction]
            cap = min(h.htlc_maximum_msat, ch.capacity_sat * 1000 if ch.capacity_sat else h.htlc_maximum_msat)
        else:
            continue  # a route hint channel: its capacity is unknown
        room = cap - used.get(key, 0) - (hop.amount_msat - route[-1].amount_msat)
        margin = room if margin is None else min(margin, room)
    return margin if margin is not None else route[-1].amount_msat


def split_payment(graph: Graph, query: RouteQuery, *, max_parts: int = 16,
                  min_part_msat: int = 10_000) -> list[list[RouteHop]]:
    """Routes whose final amounts add up to `query.amount_msat`, all fees together within
    `query.max_fee_msat`: one route if one can carry it all, otherwise successive cheapest paths,
    each taking what its narrowest channel has left (capacities reduced as parts are placed).

    Raises NoRouteError / RouteTooExpensiveError when the amount cannot be placed.
    """
    try:
        return [find_route(graph, query)]
    except RouteTooExpensiveError:
        raise
    except NoRouteError:
        pass
    used: dict[tuple[int, int], int] = dict(query.used_msat)
    remaining = query.amount_msat
    fee_left = query.max_fee_msat
    parts: list[list[RouteHop]] = []
    while remaining > 0:
        if len(parts) >= max_parts:
            raise NoRouteError(f"could not split {query.amount_msat}msat into {max_parts} parts")
        attempt = remaining
        route = None
        last_error: RouteError | None = None
        while attempt >= min(min_part_msat, remaining):
            q = replace(query, amount_msat=attempt, used_msat=used, max_fee_msat=fee_left)
            try:
                route = find_route(graph, q)
                break
            except RouteError as e:
                last_error = e
                attempt //= 2
        if route is None:
            placed = query.amount_msat - remaining
            if isinstance(last_error, RouteTooExpensiveError):
                raise RouteTooExpensiveError(f"placed {placed}msat of {query.amount_msat}msat within the fee limit")
            raise NoRouteError(f"could only route {placed}msat of {query.amount_msat}msat")
        # Grow the part to what the path can still carry.
        room = _available(graph, query, used, route)
        if room > attempt:
            bigger = min(remaining, room)
            try:
                route = find_route(graph, replace(query, amount_msat=bigger, used_msat=used, max_fee_msat=fee_left))
            except RouteError:
                pass
        for hop in route:
            key = (int(hop.short_channel_id), hop.direction)
            used[key] = used.get(key, 0) + hop.amount_msat
        parts.append(route)
        remaining -= route[-1].amount_msat
        if fee_left is not None:
            fee_left -= route_fee(route)
    return parts
