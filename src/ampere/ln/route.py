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
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from ampere.primitives.amount import MsatInt, sat_to_msat
from ampere.wire.types import ShortChannelId

from .gossip.graph import Graph
from .route_view import RISK_DIVISOR, Edge, EdgeView, near_bounds, near_search

# Exit codes CLN's pay uses for these failures (doc/schemas/pay.json): the RPC layer maps errors.
PAY_ROUTE_NOT_FOUND = 205
PAY_ROUTE_TOO_EXPENSIVE = 206

# Nodes a search from the payer settles to bound a search from the payee (route_view.near_bounds):
# about where the two cost the same, on a 5,000-node graph.
_NEAR_BUDGET = 192


class RouteError(Exception):
    code = PAY_ROUTE_NOT_FOUND


class NoRouteError(RouteError):
    """No path can carry the amount (205)."""


class RouteTooExpensiveError(RouteError):
    """Paths exist, but not within `max_fee_msat` or `max_delay` (206)."""

    code = PAY_ROUTE_TOO_EXPENSIVE

    def __init__(self, message: str, *, fee_msat: MsatInt | None = None, delay: int | None = None) -> None:
        super().__init__(message)
        self.fee_msat = fee_msat
        self.delay = delay


@dataclass(frozen=True)
class RouteHop:
    """One hop: the channel into `node_id`, with what `node_id` receives and its CLTV."""

    node_id: bytes
    short_channel_id: ShortChannelId
    direction: int
    amount_msat: MsatInt
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
    spendable_msat: MsatInt
    htlc_minimum_msat: MsatInt = MsatInt(0)


@dataclass(frozen=True)
class HintHop:
    """One hop of a BOLT #11 route hint (`r` field): the channel from `node_id` to the next hop of
    the hint (the payee for the last one), with `node_id`'s fee and CLTV delta for it."""

    node_id: bytes
    short_channel_id: int
    fee_base_msat: MsatInt
    fee_proportional_millionths: int
    cltv_expiry_delta: int
    htlc_minimum_msat: MsatInt = MsatInt(0)
    htlc_maximum_msat: MsatInt | None = None


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
    amount_msat: MsatInt
    final_cltv: int = 9  # CLN getroute's `cltv` default
    riskfactor: Any = 10  # CLN pay's default; getroute requires it
    max_fee_msat: MsatInt | None = None
    max_delay: int | None = None  # bound on the first hop's total CLTV (pay's `maxdelay`)
    max_hops: int = 20
    exclude_channels: frozenset[tuple[int, int]] = frozenset()  # (scid, direction)
    exclude_nodes: frozenset[bytes] = frozenset()
    local_channels: Sequence[LocalChannel] | None = None
    route_hints: Sequence[Sequence[HintHop]] = ()
    fuzz_percent: int = 0  # randomise the fee part of the cost by up to +/- this percentage
    fuzz_seed: bytes = b""
    used_msat: Mapping[tuple[int, int], MsatInt] = field(default_factory=dict)  # already committed (MPP)
    # askrene layers (rpc/commands/askrene.py): channel directions added or replaced (they override the
    # graph's direction of the same scid), upper bounds on what a direction can carry (learnt, not
    # announced), and biases (-100..100, positive = preferred) scaling a direction's cost.
    extra_edges: Sequence[ExtraEdge] = ()
    capacity_msat: Mapping[tuple[int, int], int] = field(default_factory=dict)
    bias: Mapping[tuple[int, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class ExtraEdge:
    """A channel direction from `source` to `destination` the query adds (an askrene layer's)."""

    source: bytes
    destination: bytes
    short_channel_id: int
    direction: int
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int
    htlc_minimum_msat: int
    htlc_maximum_msat: int
    capacity_msat: int | None = None


def bias_factor_ppm(bias: int) -> int:
    """askrene's scaling of a biased direction's cost, e^(-bias / (100 / ln 30)) (CLN's
    lightning-askrene-bias-channel: bigger is better; +/-100 is a factor of 30), in millionths."""
    return round(math.exp(-bias * math.log(30) / 100) * 1_000_000)


def _fuzz(seed: bytes, scid: int, direction: int, percent: int) -> int:
    """A per-channel factor in per-mille, 1000 +/- 10*percent, stable for one seed."""
    h = hashlib.sha256(seed + scid.to_bytes(8, "big") + bytes([direction])).digest()
    span = 20 * percent + 1
    return 1000 + int.from_bytes(h[:4], "big") % span - 10 * percent


# The weight of one hop in a fewest-hops search's key: above any route's cost (fee times the risk divisor plus
# delta times amount times risk, well under 2^130 a hop).
_HOP_WEIGHT = 1 << 256


def _search(graph: Graph, q: RouteQuery, enforce_limits: bool, guided: bool = True, fewest_hops: bool = False,
            seen: dict[str, bool] | None = None) -> list[RouteHop] | None:
    """Dijkstra from the payee back to the payer, guided (A*) by lower bounds of the cost from the
    payer: the same route, far fewer nodes visited.  `guided` False: plain Dijkstra (tests compare
    the two).  `fewest_hops`: the route with the fewest hops, the cheapest of those (CLN getroute's
    fallback, route_score_shorter).  `seen["hop_limited"]` is set when `max_hops` stopped the search
    somewhere (a node settled at that many hops was not expanded)."""
    view = EdgeView.of(graph)
    index, incoming = view.index, view.incoming
    n = len(view.ids)
    # Nodes the view does not know (hint nodes, a payee without public channels) are numbered
    # after its own, for this query only.
    others: dict[bytes, int] = {}

    def number(node_id: bytes) -> int:
        i = index.get(node_id)
        if i is None:
            i = others.get(node_id)
            if i is None:
                i = others[node_id] = n + len(others)
        return i

    source, dest, amount = q.source, q.destination, q.amount_msat
    src, dst = number(source), number(dest)
    # The extra edges: route hints (they override the graph for the same channel and direction),
    # and the payer's own channels.
    extra: dict[int, list[Edge]] = {}
    overridden: set[tuple[int, int]] = set()
    hint_into_graph = False  # a hint leads to a public node other than the payee
    for hint in q.route_hints:
        for i, hop in enumerate(hint):
            nxt = hint[i + 1].node_id if i + 1 < len(hint) else dest
            d = 0 if hop.node_id < nxt else 1
            hmax = hop.htlc_maximum_msat if hop.htlc_maximum_msat is not None else 1 << 64
            nxt_i = number(nxt)
            hint_into_graph |= nxt_i < n and nxt_i != dst
            extra.setdefault(nxt_i, []).append((-1, number(hop.node_id), hop.short_channel_id, d,
                                                hop.fee_base_msat, hop.fee_proportional_millionths,
                                                hop.cltv_expiry_delta, hop.htlc_minimum_msat, hmax, None))
            overridden.add((hop.short_channel_id, d))
    for xe in q.extra_edges:
        to_i = number(xe.destination)
        hint_into_graph |= to_i < n and to_i != dst
        extra.setdefault(to_i, []).append((-1, number(xe.source), xe.short_channel_id, xe.direction,
                                           xe.fee_base_msat, xe.fee_proportional_millionths, xe.cltv_expiry_delta,
                                           xe.htlc_minimum_msat, xe.htlc_maximum_msat, xe.capacity_msat))
        overridden.add((xe.short_channel_id, xe.direction))
    local = q.local_channels
    skip_graph_src = local is not None  # our channels replace the graph's view of them
    peers: set[int] = set()
    if local is not None:
        for lc in local:
            d = 0 if source < lc.peer_id else 1
            peer = number(lc.peer_id)
            peers.add(peer)
            # The first hop charges no fee and adds no delta: we are the one sending.
            extra.setdefault(peer, []).append((-1, src, lc.short_channel_id, d, 0, 0, 0, lc.htlc_minimum_msat,
                                               lc.spendable_msat, lc.spendable_msat))
            overridden.add((lc.short_channel_id, d))
    graph_filter = skip_graph_src or bool(overridden)

    m = n + len(others)
    closed = view.bad + bytes(len(others))  # visited, or not to route through (features, excluded)
    for node_id in q.exclude_nodes:
        excluded = index.get(node_id, others.get(node_id))
        if excluded is not None:
            closed[excluded] = 1
    closed[src] = closed[dst] = 0  # the payer is never "routed through"; the payee is where we start

    rf = _to_fraction(q.riskfactor)
    risk_num, fee_mult = rf.numerator * 1000, RISK_DIVISOR * rf.denominator  # cost = fee*fee_mult*fuzz + amt*delta*risk_num
    fee_mult_1000 = fee_mult * 1000
    fuzz = q.fuzz_percent if enforce_limits else 0
    fuzz_seed = q.fuzz_seed
    check_min = amount != 0  # CLN getroute: "The 0 value is special: it ignores any htlc_minimum_msat"
    max_fee = q.max_fee_msat if enforce_limits else None
    max_delay = q.max_delay if enforce_limits else None
    max_hops = q.max_hops
    excl_ch, used = q.exclude_channels, q.used_msat
    caps = q.capacity_msat
    biases = {k: bias_factor_ppm(b) for k, b in q.bias.items() if b}

    # A*: a lower bound of the cost from the payer to each node.  The view's bounds price every
    # edge at `amount_ref` (the amount's power of two, or less) and the risk factor's integer
    # part, so for this query they are at most (fuzz's smallest factor / 1000) of the real cost:
    # cost >= fee * RISK_DIVISOR * den * fuzz_min + amt * delta * num * 1000 >= bound * den * fuzz_min.
    # Nodes the bounds cannot reach from the payer cannot lead to it.  Hints into the public
    # graph are edges the bounds do not know: plain Dijkstra then.
    h_of: list[int | None] | None = None
    h_mul = 0
    # Biases scale costs down as well as up: no lower bound holds then, plain Dijkstra.
    guided = guided and not biases and not fewest_hops
    if guided and src < n and not hint_into_graph and rf >= 0:
        amount_ref = 1 << (amount.bit_length() - 1) if amount > 0 else 0
        dist = view.bounds(src, tuple(sorted(p for p in peers if p < n)), amount_ref,
                           rf.numerator // rf.denominator)
        if dist is not None:
            # (read only: the table itself unless nodes new to the view, reached by our channels/hints, extend it)
            h_of = dist if m <= len(dist) else dist + [0] * (m - len(dist))
            h_mul = rf.denominator * (1000 - 10 * fuzz)
    # Any other payer (`getroute`'s `fromid`, or ours before it has a table): exact bounds for the
    # nodes nearest the payer and a flat one beyond, from a short search out of the payer
    # (near_bounds), with each edge at the least this query can charge for it.
    limits = max_fee is not None or max_delay is not None
    plain = not (extra or graph_filter or excl_ch or caps or used or biases or fuzz or limits or fewest_hops)
    # fewest_hops: the heap ordered by (hops, cost), as one integer (a route's cost is far below 2^256).
    best_key: list[int | None] | None = [None] * m if fewest_hops else None
    near: tuple | None = None  # near_search's (settled, tentative, radius), for a plain query
    if guided and h_of is None and src < n and not hint_into_graph and rf >= 0:
        near_fee_mult = fee_mult * max(0, 1000 - 10 * fuzz)
        seeds = tuple(sorted(p for p in peers if p < n))
        priced = view.weighted(amount, near_fee_mult, risk_num) if plain else None
        if priced is not None:
            near = near_search(view, priced, src, seeds, _NEAR_BUDGET)
            min_in = priced[1]
        else:
            h_of = near_bounds(view, src, seeds, amount, near_fee_mult, risk_num, _NEAR_BUDGET)
            h_of += [0] * (m - n)  # nodes new to the view: reached by our channels/hints
        h_mul = 1

    # Per node: the best cost found, and for it the hops to the payee, the amount and cltv the
    # node must receive, and the next hop (node, scid, direction).
    best: list[int | None] = [None] * m
    label: list[Any] = [None] * m  # (amount, cltv, next node, scid, direction)
    best[dst], label[dst] = 0, (amount, q.final_cltv, None, None, None)
    heap: list[tuple[int, int, int, int]] = [(0, 0, 0, dst)]
    counter = 1
    pop, push = heapq.heappop, heapq.heappush
    no_edges: list[Edge] = []
    if plain:
        # The common query (getroute's, most of pay's): only the graph's edges, nothing to filter or
        # reprice: the loop below without its tests (the same costs, the same order).
        h_all = h_of if h_of is not None else [0] * m
        if near is not None:
            near_dist, near_tentative, radius = near
        while heap:
            _, hops, _, v = pop(heap)
            if closed[v]:
                continue
            closed[v] = 1
            if v == src:
                break
            if hops >= max_hops or v >= n:
                if hops >= max_hops and seen is not None:
                    seen["hop_limited"] = True
                continue
            cost_v: int = best[v]  # type: ignore[assignment]  # (set when v was pushed)
            amt_v, delay_v = label[v][0], label[v][1]
            risk_v = amt_v * risk_num
            nhops = hops + 1
            for _, u, scid, d, base, ppm, delta, hmin, hmax, _ in incoming[v]:
                if closed[u] or amt_v > hmax or (amt_v < hmin and check_min):
                    continue
                if u == src:
                    amt_u, delay_u, new_cost = amt_v, delay_v, cost_v
                else:
                    # BOLT #7 "HTLC Fees": fee_base_msat + ( amount_to_forward * fee_proportional_millionths / 1000000 )
                    fee = base + amt_v * ppm // 1_000_000
                    amt_u, delay_u = amt_v + fee, delay_v + delta
                    new_cost = cost_v + fee * fee_mult_1000 + delta * risk_v
                old = best[u]
                if old is not None and old <= new_cost:
                    continue
                if near is None:
                    h = h_all[u]
                    if h is None:
                        continue  # the payer cannot reach u
                else:
                    # near_search's bound (see there), read for the nodes reached only.
                    h = near_dist[u]
                    if h is None:
                        if radius is None or min_in[u] is None:
                            continue  # the payer cannot reach u
                        h = radius + min_in[u]
                        t = near_tentative[u]
                        if t is not None and t < h:
                            h = t
                best[u] = new_cost
                label[u] = (amt_u, delay_u, v, scid, d)
                push(heap, (new_cost + h * h_mul, nhops, counter, u))
                counter += 1
        heap = []
    while heap:
        _, hops, _, v = pop(heap)
        if closed[v]:
            continue
        closed[v] = 1
        if v == src:
            break
        if hops >= max_hops:
            if seen is not None:
                seen["hop_limited"] = True
            continue
        cost, (amt_v, delay_v, _, _, _) = best[v], label[v]
        assert cost is not None  # a node is pushed on the heap with its cost
        risk_v = amt_v * risk_num
        nhops = hops + 1
        edges = incoming[v] if v < n else no_edges
        if extra:
            ex = extra.get(v)
            if ex:
                edges = ex + edges
        for order, u, scid, d, base, ppm, delta, hmin, hmax, cap in edges:
            if closed[u]:
                continue
            if amt_v > hmax or (amt_v < hmin and check_min):
                continue
            if graph_filter and order >= 0 and ((u == src and skip_graph_src) or (scid, d) in overridden):
                continue
            if excl_ch and (scid, d) in excl_ch:
                continue
            if caps:
                # askrene layers: what a constraint, impression or reservation says the direction can carry
                known = caps.get((scid, d))
                if known is not None and amt_v + (used.get((scid, d), 0) if used else 0) > known:
                    continue
            # (amt_v > cap alone is already out for gossiped edges: none has htlc_maximum_msat above its
            # capacity; a layer's own channel may, so extra edges are checked)
            if cap is not None and (used or order < 0) and amt_v + (used.get((scid, d), 0) if used else 0) > cap:
                continue
            if u == src:
                amt_u, delay_u, new_cost = amt_v, delay_v, cost
            else:
                # BOLT #7 "HTLC Fees": fee_base_msat + ( amount_to_forward * fee_proportional_millionths / 1000000 )
                fee = base + amt_v * ppm // 1_000_000
                amt_u, delay_u = amt_v + fee, delay_v + delta
                if fuzz:
                    new_cost = cost + fee * fee_mult * _fuzz(fuzz_seed, scid, d, fuzz) + delta * risk_v
                else:
                    new_cost = cost + fee * fee_mult_1000 + delta * risk_v
            if biases:
                factor = biases.get((scid, d))
                if factor is not None:
                    # Every hop counts at least as a 1ppm fee, so a bias also tells free hops apart.
                    floor = amt_v * fee_mult_1000 // 1_000_000 + 1
                    new_cost = cost + max(0, (new_cost - cost + floor) * factor // 1_000_000 - floor)
            if limits and ((max_fee is not None and amt_u - amount > max_fee)
                           or (max_delay is not None and delay_u > max_delay)):
                continue
            if best_key is not None:
                key = nhops * _HOP_WEIGHT + new_cost
                old_key = best_key[u]
                if old_key is not None and old_key <= key:
                    continue
                best_key[u] = key
            else:
                old = best[u]
                if old is not None and old <= new_cost:
                    continue
                if h_of is not None:
                    h = h_of[u]
                    if h is None:
                        continue  # the payer cannot reach u
                    key = new_cost + h * h_mul
                else:
                    key = new_cost
            best[u] = new_cost
            label[u] = (amt_u, delay_u, v, scid, d)
            push(heap, (key, nhops, counter, u))
            counter += 1
    if not closed[src]:
        return None
    ids = view.ids
    names = list(others)
    route = []
    node = src
    while node != dst:
        _, _, v, scid, d = label[node]
        route.append(RouteHop(ids[v] if v < n else names[v - n], ShortChannelId(scid), d, label[v][0], label[v][1]))
        node = v
    return route


def _search_within_hops(graph: Graph, query: RouteQuery, enforce_limits: bool) -> list[RouteHop] | None:
    """The cheapest route of at most `max_hops` hops if the search by cost finds one; else, if the hop limit is
    what stopped it, the route with the fewest hops (the cheapest of those).  A search by cost closes each node on
    its cheapest path from the payee, however many hops that path takes: when the cheapest route is longer than
    the limit, shorter ones are never looked at.  Core Lightning's getroute does the same ("Cheapest route N
    hops: seeking shorter", then its shortest path)."""
    seen: dict[str, bool] = {}
    route = _search(graph, query, enforce_limits, seen=seen)
    if route is None and seen.get("hop_limited"):
        route = _search(graph, query, enforce_limits, fewest_hops=True)
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
    route = _search_within_hops(graph, query, enforce_limits=True)
    if route is not None:
        return route
    if query.max_fee_msat is None and query.max_delay is None and not query.fuzz_percent:
        raise NoRouteError(f"no route to {query.destination.hex()} for {query.amount_msat}msat")
    unlimited = _search_within_hops(graph, query, enforce_limits=False)
    if unlimited is None:
        raise NoRouteError(f"no route to {query.destination.hex()} for {query.amount_msat}msat")
    fee = MsatInt(unlimited[0].amount_msat - query.amount_msat)
    delay = unlimited[0].delay
    if query.max_fee_msat is not None and fee > query.max_fee_msat:
        raise RouteTooExpensiveError(f"fee {fee}msat is above the maximum of {query.max_fee_msat}msat",
                                     fee_msat=fee, delay=delay)
    if query.max_delay is not None and delay > query.max_delay:
        raise RouteTooExpensiveError(f"route wants a delay of {delay} blocks, the limit is {query.max_delay}",
                                     fee_msat=fee, delay=delay)
    # The cheapest route breaks no limit, but the limits pruned every path the search took.
    raise RouteTooExpensiveError("no route within the fee and delay limits", fee_msat=fee, delay=delay)


def route_fee(route: Sequence[RouteHop]) -> MsatInt:
    return MsatInt(route[0].amount_msat - route[-1].amount_msat if route else 0)


# ---------------------------------------------------------------------------------------------
# Multipath


def _available(graph: Graph, query: RouteQuery, used: Mapping[tuple[int, int], MsatInt], route: Sequence[RouteHop]) -> MsatInt:
    """How much more the route's narrowest channel could carry, as the payee's amount (a lower bound:
    fees along the way are left out of the margin)."""
    local = {lc.short_channel_id: lc for lc in query.local_channels or ()}
    margin = None
    for hop in route:
        key = (int(hop.short_channel_id), hop.direction)
        ch = graph.channels.get(hop.short_channel_id)
        if key[0] in local:
            cap = local[key[0]].spendable_msat
        elif ch is not None and (h := ch.halves[hop.direction]) is not None:
            cap = min(h.htlc_maximum_msat, sat_to_msat(ch.capacity_sat) if ch.capacity_sat else h.htlc_maximum_msat)
        else:
            continue  # a route hint channel: its capacity is unknown
        room = cap - used.get(key, 0) - (hop.amount_msat - route[-1].amount_msat)
        margin = room if margin is None else min(margin, room)
    return MsatInt(margin) if margin is not None else route[-1].amount_msat


def split_payment(graph: Graph, query: RouteQuery, *, max_parts: int = 16,
                  min_part_msat: MsatInt = MsatInt(10_000)) -> list[list[RouteHop]]:
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
    used: dict[tuple[int, int], MsatInt] = dict(query.used_msat)
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
                attempt = MsatInt(attempt // 2)
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
            used[key] = MsatInt(used.get(key, 0) + hop.amount_msat)
        parts.append(route)
        remaining = MsatInt(remaining - route[-1].amount_msat)
        if fee_left is not None:
            fee_left = MsatInt(fee_left - route_fee(route))
    return parts
