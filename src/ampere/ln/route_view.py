"""What the path finder (route.py) searches: the graph's usable edges with nodes numbered, kept up
to date as gossip changes the graph, and lower bounds on route costs from a payer.

    view = EdgeView.of(graph)          # built once, then brought up to date from graph changes
    view.incoming[v]                   # usable edges into node number v (see Edge)
    dist = view.bounds(src, seeds, amount_ref, risk_ref)   # per-node lower bounds, or None
    dist = near_bounds(view, src, seeds, amount, fee_mult, risk_mult, budget)   # any payer, per query

The view is not rebuilt after each gossip change: the graph names the channels and nodes that
changed since the view last looked (`graph.changed_scids`, `graph.changed_nodes`), and only those
channels' edges are replaced.  Each node's edges stay in the graph's channel order, so the view
after any number of updates equals one built from scratch, and so do the routes found in it.

Lower bounds for any payer: `near_bounds()` searches out of the payer for a couple of hundred
nodes, at the query's own amount and risk factor: exact bounds near the payer, the radius where it
stopped beyond (see there).  The path finder uses them when the payer has no table of its own.
For a price (amount, risk factor) asked again and again, from any payers, the view keeps every
edge priced beforehand and each node's cheapest edge in (`weighted()`, kept up to date as the
graph changes): `near_search()` runs the same search over them and the path finder reads its
bounds node by node, beyond the radius raised by that cheapest edge in.

Lower bounds (for A*) for a payer that asks again and again: `bounds()` gives, for every node,
the cost of the cheapest path from the payer to it with every edge priced at what it costs for the
smallest amount and risk factor the bound is made for (a fee never shrinks as the amount grows).
Searching with them finds the same cheapest route while visiting a few dozen nodes instead of
thousands.  They are made for a payer that asks many times (ours, for `pay` and `getroute`),
kept for a few (payer, amount octave, risk factor) keys, and repaired in place when the graph changes: a new or cheaper edge lowers the bounds
behind it (what A* needs to stay exact); a dearer or removed edge leaves them lower than they could
be, which is still right, and after many such changes they are made again.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence
from typing import Any

from ampere.primitives.amount import MSAT_PER_SAT

from .gossip.graph import Graph
from .gossip.rawmsg import channel_update_policy

# CLN lightning-getroute(7): "There are 52596 blocks per year, thus per-block-cost is riskfactor
# divided by 5,259,600" (riskfactor being a percentage).
RISK_DIVISOR = 5_259_600

# An edge u -> v in v's list: (order, u, scid, direction, fee_base, ppm, cltv_delta, htlc_min,
# htlc_max, capacity_msat or None), u being a node's number.  `order` keeps a node's edges in the
# graph's channel order (direction 0 before 1), as a rebuild from scratch lists them; the edges a
# query adds (route hints, our own channels) have order -1.
Edge = tuple[int, int, int, int, int, int, int, int, int, "int | None"]
# The same edge in u's list, for the bounds: (v, scid, fee_base, ppm, cltv_delta).
OutEdge = tuple[int, int, int, int, int]

# Above this share of the channels changed since the view was last used, rebuilding it is cheaper
# than updating it in place.
_REBUILD_SHARE = 4
_MAX_BOUNDS = 8  # bound tables kept (each is one int per node)
_MAX_WEIGHTED = 2  # priced edge lists kept for near_bounds (each a pair per edge)
# A key asked for this many times (among the last thousand or so asked) gets a table: a payer that
# asks again and again (ourselves, for `pay` and `getroute`).  Making one costs a search of the
# whole graph; any other payer is served well enough by near_bounds.
_BOUNDS_AFTER_USES = 8

_KNOWN_NODE_FEATURE_BITS: int | None = None


def unroutable_node(features: bytes) -> bool:
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


class _Bounds:
    """Cheapest path costs from `source` (and `seeds`, reached for free) to every node number,
    each edge priced `(fee_base + amount * ppm // 10^6) * RISK_DIVISOR + amount * cltv_delta * risk`
    (edges out of the source free: the payer charges itself nothing).  None: unreachable."""

    __slots__ = ("source", "seeds", "amount", "risk", "dist", "loosened")

    def __init__(self, view: EdgeView, source: int, seeds: tuple[int, ...], amount: int, risk: int) -> None:
        self.source, self.seeds, self.amount, self.risk = source, seeds, amount, risk
        self.loosened = 0
        self.dist: list[int | None] = [None] * len(view.ids)
        heap = []
        for s in (source,) + seeds:
            self.dist[s] = 0
            heap.append((0, s))
        self._propagate(view, heap)

    def _weight(self, u: int, base: int, ppm: int, delta: int) -> int:
        if u == self.source:
            return 0
        a = self.amount
        return (base + a * ppm // 1_000_000) * RISK_DIVISOR + a * delta * self.risk

    def _propagate(self, view: EdgeView, heap: list[tuple[int, int]]) -> None:
        dist, outgoing, source = self.dist, view.outgoing, self.source
        a, risk = self.amount, self.risk
        heapq.heapify(heap)
        pop, push = heapq.heappop, heapq.heappush
        while heap:
            d, x = pop(heap)
            if d != dist[x]:
                continue  # superseded
            free = x == source
            for v, _, base, ppm, delta in outgoing[x]:
                nd = d if free else d + (base + a * ppm // 1_000_000) * RISK_DIVISOR + a * delta * risk
                old = dist[v]
                if old is None or nd < old:
                    dist[v] = nd
                    push(heap, (nd, v))

    def repair(self, view: EdgeView, added: list[tuple[int, OutEdge]], changed: int) -> None:
        """The graph changed: `added` are the (new or replaced) edges of the changed channels."""
        dist = self.dist
        if len(dist) < len(view.ids):
            dist.extend([None] * (len(view.ids) - len(dist)))
        heap = []
        for u, (v, _, base, ppm, delta) in added:
            du = dist[u]
            if du is None:
                continue
            nd = du + self._weight(u, base, ppm, delta)
            if dist[v] is None or nd < dist[v]:  # type: ignore[operator]
                dist[v] = nd
                heap.append((nd, v))
        if heap:
            self._propagate(view, heap)
        self.loosened += changed


def near_bounds(view: EdgeView, source: int, seeds: tuple[int, ...], amount: int, fee_mult: int, risk_mult: int,
                budget: int) -> list[int | None]:
    """Lower bounds of route costs from `source`, for a search from the payee: exact for the
    `budget` nodes nearest the payer (a search from it, stopped early), and for every other node
    the cost at which that search stopped (its radius), which none of them is under; None for the
    nodes it cannot reach at all (when it ran out of nodes before its budget).

    Each edge is priced `fee(amount) * fee_mult + amount * cltv_delta * risk_mult`, the least the
    path finder charges for it (a hop forwards no less than the payment), free out of `source`
    and to its `seeds` (the payer charges itself nothing).  min(cost, radius) is a consistent
    bound (the minimum of two feasible potentials is one), so the search from the payee guided by
    it finds the same route; and it meets this one half-way: each explores around its own end,
    and where the nodes within a cost grow fast with it, as in a payment network, two searches of
    half the radius visit far fewer nodes than one from the payee alone."""
    n = len(view.ids)
    dist: list[int | None] = [None] * n  # settled
    tentative: list[int | None] = [None] * n  # the best cost seen for a node not yet settled
    heap = [(0, s) for s in (source,) + seeds]
    heapq.heapify(heap)
    outgoing = view.outgoing
    pop, push = heapq.heappop, heapq.heappush
    a, a_risk = amount, amount * risk_mult
    settled: list[int] = []
    priced = view.weighted(amount, fee_mult, risk_mult)
    if priced is not None:
        weighted = priced[0]
        # The same search with each edge's price made beforehand (the view keeps them for the
        # prices asked for again and again); the payer's own edges are free.
        for v, _, _, _, _ in outgoing[source]:
            if tentative[v] is None:
                tentative[v] = 0
                push(heap, (0, v))
        dist[source] = 0
        settled.append(source)
        left = budget - 1
        while heap:
            d, x = pop(heap)
            if dist[x] is not None:
                continue
            if left <= 0:
                near: list[int | None] = [d] * n  # d: the radius
                for y in settled:
                    near[y] = dist[y]
                return near
            dist[x] = d
            settled.append(x)
            left -= 1
            for v, w in weighted[x]:
                nd = d + w
                old = tentative[v]
                if old is None or nd < old:
                    tentative[v] = nd
                    push(heap, (nd, v))
        return dist
    while heap:
        d, x = pop(heap)
        if dist[x] is not None:
            continue
        if len(settled) >= budget:
            bounds: list[int | None] = [d] * n  # d: the radius
            for y in settled:
                bounds[y] = dist[y]
            return bounds
        dist[x] = d
        settled.append(x)
        free = x == source
        for v, _, base, ppm, delta in outgoing[x]:
            # BOLT #7 "HTLC Fees", as in the path finder.  (A settled v has tentative[v] <= d.)
            nd = d if free else d + (base + a * ppm // 1_000_000) * fee_mult + delta * a_risk
            old = tentative[v]
            if old is None or nd < old:
                tentative[v] = nd
                push(heap, (nd, v))
    return dist


def near_search(view: EdgeView, priced: tuple[list[list[tuple[int, int]]], list[int | None]], source: int,
                seeds: tuple[int, ...], budget: int) -> tuple[list[int | None], list[int | None], int | None]:
    """near_bounds' search over edges priced beforehand (EdgeView.weighted), its bounds left for the
    caller to read node by node: (settled costs, tentative costs, radius; None if the search ran
    out of nodes first: then the nodes it did not settle are unreachable).  The bound of a node u
    not settled is min(tentative[u], radius + min_in[u]), `min_in[u]` being the least price of an
    edge into u (min_in[u] None: no edge leads to u): a path to u ends with an edge from a node
    settled (then it costs at least tentative[u]) or from one that was not (at least the radius,
    plus that edge).  Consistent as near_bounds' own: every node not settled is at the radius or
    beyond, and a settled node's cost is exact."""
    weighted = priced[0]
    n = len(view.ids)
    dist: list[int | None] = [None] * n
    tentative: list[int | None] = [None] * n
    heap = [(0, s) for s in seeds]
    pop, push = heapq.heappop, heapq.heappush
    for v, _, _, _, _ in view.outgoing[source]:  # the payer's own edges are free
        if tentative[v] is None:
            tentative[v] = 0
            heap.append((0, v))
    heapq.heapify(heap)
    dist[source] = tentative[source] = 0
    left = budget - 1
    while heap:
        d, x = pop(heap)
        if dist[x] is not None:
            continue
        if left <= 0:
            return dist, tentative, d
        dist[x] = d
        left -= 1
        for v, w in weighted[x]:
            nd = d + w
            old = tentative[v]
            if old is None or nd < old:
                tentative[v] = nd
                push(heap, (nd, v))
    return dist, tentative, None


class EdgeView:
    """The graph's usable directed edges, by the node they lead to (`incoming`) and the node they
    leave (`outgoing`), with nodes numbered.  Numbers are never reused while the view lives (a
    forgotten node keeps its number, with no edges)."""

    __slots__ = ("version", "index", "ids", "incoming", "outgoing", "bad", "ends", "_bounds", "_asked", "_weighted")

    def __init__(self) -> None:
        self.version = -1
        self.index: dict[bytes, int] = {}
        self.ids: list[bytes] = []
        self.incoming: list[list[Edge]] = []
        self.outgoing: list[list[OutEdge]] = []
        self.bad = bytearray()  # 1: a node not to route through (unknown even feature bits)
        self.ends: dict[int, tuple[int, int]] = {}  # scid -> numbers of its node_1 and node_2
        self._bounds: dict[tuple, _Bounds] = {}
        self._asked: dict[tuple, int] = {}
        # (amount, fee_mult, risk_mult) -> per node u, [(v, price of u -> v)] (see weighted())
        self._weighted: dict[tuple, tuple[list[list[tuple[int, int]]], list[int | None]]] = {}

    @classmethod
    def of(cls, graph: Graph) -> EdgeView:
        view: EdgeView | None = graph.route_view
        if view is None:
            view = graph.route_view = cls()
            view.rebuild(graph)
        elif view.version != graph.version:
            if len(graph.changed_scids) * _REBUILD_SHARE > len(graph.channels) + 64:
                view.rebuild(graph)
            else:
                view.catch_up(graph)
        return view

    def number(self, node_id: bytes) -> int:
        i = self.index.get(node_id)
        if i is None:
            i = self.index[node_id] = len(self.ids)
            self.ids.append(node_id)
            self.incoming.append([])
            self.outgoing.append([])
            self.bad.append(0)
        return i

    def rebuild(self, graph: Graph) -> None:
        self.index.clear()
        self.ids.clear()
        self.incoming.clear()
        self.outgoing.clear()
        self.bad = bytearray()
        self.ends.clear()
        self._bounds.clear()
        self._asked.clear()
        self._weighted.clear()
        # As _add(ch, None) for each channel in `seq` order (each list comes out sorted), in one
        # pass with the nodes numbered first: this runs at start, on the whole loaded graph.
        index, ids, ends = self.index, self.ids, self.ends
        channels = list(graph.channels.values())
        for ch in channels:
            for nid in (ch.node1, ch.node2):
                if nid not in index:
                    index[nid] = len(ids)
                    ids.append(nid)
        policy = channel_update_policy
        incoming: list[list[Edge]] = [[] for _ in ids]
        outgoing: list[list[OutEdge]] = [[] for _ in ids]
        self.incoming, self.outgoing, self.bad = incoming, outgoing, bytearray(len(ids))
        for ch in channels:
            i1, i2 = index[ch.node1], index[ch.node2]
            scid = ch.scid
            ends[scid] = (i1, i2)
            if ch.spent_height is not None or (ch.features and not ch.routable_features):
                continue
            cap = ch.capacity_sat * MSAT_PER_SAT if ch.capacity_sat else None
            order, iscid = ch.seq * 2, int(scid)  # one int shared by the edges' tuples
            # The same rules as _add (BOLT #7 htlc_maximum_msat against htlc_minimum_msat and
            # capacity), each policy read from the channel_update itself (a Half loaded from the
            # store is parsed only when first asked for: see Half.unparsed).
            h = ch.halves[0]
            if h is not None:
                _, _, flags, delta, hmin, base, ppm, hmax = policy(h.raw)
                if not flags & 2 and hmax >= hmin and (cap is None or hmax <= cap):
                    incoming[i2].append((order, i1, iscid, 0, base, ppm, delta, hmin, hmax, cap))
                    outgoing[i1].append((i2, iscid, base, ppm, delta))
            h = ch.halves[1]
            if h is not None:
                _, _, flags, delta, hmin, base, ppm, hmax = policy(h.raw)
                if not flags & 2 and hmax >= hmin and (cap is None or hmax <= cap):
                    incoming[i1].append((order + 1, i2, iscid, 1, base, ppm, delta, hmin, hmax, cap))
                    outgoing[i2].append((i1, iscid, base, ppm, delta))
        for node in graph.nodes.values():
            if node.info is not None and unroutable_node(node.info.features):
                self.bad[self.number(node.node_id)] = 1
        graph.changed_scids.clear()
        graph.changed_nodes.clear()
        self.version = graph.version

    @classmethod
    def from_columns(cls, graph: Graph, ids: list[bytes], scids: Sequence[int], n1s: list[int], n2s: list[int],
                     cols: list[list[int]]) -> EdgeView:
        """The view the graph cache holds for this graph (ln/gossip/graph_cache.py, whose
        _view_columns says what each column is; restored from the same cache): its nodes are
        numbered as a rebuild numbers them, in the order the channels first name them (`ids`), and
        `n1s`/`n2s` are each channel's ends by that number.  The tuples are made by zip, the lists
        cut from them (no loop per edge)."""
        view = cls()
        n = len(ids)
        view.ids = ids
        view.index = dict(zip(ids, range(n)))
        view.ends = dict(zip(scids, zip(n1s, n2s)))
        caps: list[int | None] = [None if c < 0 else c for c in cols[9]]
        edges: list[Edge] = list(zip(*cols[:9], caps))
        starts = cols[10]
        out: list[OutEdge] = list(zip(*cols[11:16]))
        out_starts = cols[16]
        if len(starts) != n + 1 or len(out_starts) != n + 1 or len(cols[17]) != n \
                or starts[-1] != len(edges) or out_starts[-1] != len(out):
            raise ValueError("view columns do not fit the graph")
        view.incoming = [edges[a:b] for a, b in zip(starts, starts[1:])]
        view.outgoing = [out[a:b] for a, b in zip(out_starts, out_starts[1:])]
        view.bad = bytearray(cols[17])
        graph.changed_scids.clear()
        graph.changed_nodes.clear()
        view.version = graph.version
        return view

    def catch_up(self, graph: Graph) -> None:
        added: list[tuple[int, OutEdge]] = []
        touched: set[int] = set()  # nodes whose outgoing edges changed
        for scid in graph.changed_scids:
            ends = self.ends.get(scid)
            if ends is not None:
                touched.update(ends)
            self._drop(scid)
            ch = graph.channels.get(scid)
            if ch is not None:
                self._add(ch, added)
                touched.update(self.ends[scid])
        if self._weighted:
            n = len(self.ids)
            for (a, fee_mult, risk_mult), (weighted, min_in) in self._weighted.items():
                weighted.extend([] for _ in range(n - len(weighted)))
                min_in.extend([None] * (n - len(min_in)))
                for t in touched:
                    weighted[t] = _priced(self.outgoing[t], a, fee_mult, risk_mult)
                    min_in[t] = _min_in(self.incoming[t], a, fee_mult, risk_mult)
        for node_id in graph.changed_nodes:
            i = self.index.get(node_id)
            if i is not None:
                node = graph.nodes.get(node_id)
                info = node.info if node is not None else None
                self.bad[i] = 1 if info is not None and unroutable_node(info.features) else 0
        changed = len(graph.changed_scids)
        for key, b in list(self._bounds.items()):
            if b.loosened + changed > len(graph.channels) // _REBUILD_SHARE + 64:
                del self._bounds[key]  # made again when next asked for
            else:
                b.repair(self, added, changed)
        graph.changed_scids.clear()
        graph.changed_nodes.clear()
        self.version = graph.version

    def _drop(self, scid: int) -> None:
        ends = self.ends.pop(scid, None)
        if ends is not None:
            for i in set(ends):
                self.incoming[i][:] = [e for e in self.incoming[i] if e[2] != scid]
                self.outgoing[i][:] = [e for e in self.outgoing[i] if e[1] != scid]

    def _add(self, ch: Any, added: list[tuple[int, OutEdge]] | None) -> None:
        """The usable edges of one channel; `added` None: in order, at the end (a rebuild)."""
        i1, i2 = self.number(ch.node1), self.number(ch.node2)
        self.ends[ch.scid] = (i1, i2)
        if ch.spent_height is not None or not ch.routable_features:
            return
        cap = ch.capacity_sat * MSAT_PER_SAT if ch.capacity_sat else None  # (hot: no call)
        scid = int(ch.scid)
        for direction in (0, 1):
            h = ch.halves[direction]
            if h is None or h.channel_flags & 2:
                continue
            # BOLT #7: "if `htlc_maximum_msat` < `htlc_minimum_msat`: SHOULD ignore this channel during
            # route considerations." and "if `htlc_maximum_msat` is greater than channel capacity: ...
            # SHOULD ignore this channel during route considerations."
            if h.htlc_maximum_msat < h.htlc_minimum_msat or (cap is not None and h.htlc_maximum_msat > cap):
                continue
            src, dst = (i1, i2) if direction == 0 else (i2, i1)
            base, ppm, delta = h.fee_base_msat, h.fee_proportional_millionths, h.cltv_expiry_delta
            edge = (ch.seq * 2 + direction, src, scid, direction, base, ppm, delta, h.htlc_minimum_msat,
                    h.htlc_maximum_msat, cap)
            out = (dst, scid, base, ppm, delta)
            self.outgoing[src].append(out)
            if added is None:
                self.incoming[dst].append(edge)
            else:
                bisect.insort(self.incoming[dst], edge)  # orders are unique: only they get compared
                added.append((src, out))

    def bounds(self, source: int, seeds: tuple[int, ...], amount: int, risk: int) -> list[int | None] | None:
        """Lower bounds for a search from `source` (its own channels to `seeds` free), valid for
        any amount >= `amount` and risk factor >= `risk`; None until the same key is asked for
        again (a payer asking once is better served by a plain search)."""
        key = (source, seeds, amount, risk)
        b = self._bounds.get(key)
        if b is None:
            n = self._asked[key] = self._asked.get(key, 0) + 1
            if n < _BOUNDS_AFTER_USES:
                if len(self._asked) > 1024:
                    self._asked.clear()
                return None
            if len(self._bounds) >= _MAX_BOUNDS:
                del self._bounds[next(iter(self._bounds))]
            b = self._bounds[key] = _Bounds(self, source, seeds, amount, risk)
        else:
            self._bounds[key] = self._bounds.pop(key)  # most recently used last
        return b.dist

    def weighted(self, amount: int, fee_mult: int,
                 risk_mult: int) -> tuple[list[list[tuple[int, int]]], list[int | None]] | None:
        """Each node's outgoing edges as (v, price), priced as near_bounds does for these
        arguments, and each node's cheapest edge in (None: none): made once they have been asked
        for a few times (a run of queries for the same amount and risk factor, from any payers),
        kept up to date by catch_up; else None."""
        key = (amount, fee_mult, risk_mult)
        weighted = self._weighted.get(key)
        if weighted is None:
            asked = ("priced",) + key
            n = self._asked[asked] = self._asked.get(asked, 0) + 1
            if n < _BOUNDS_AFTER_USES:
                if len(self._asked) > 1024:
                    self._asked.clear()
                return None
            if len(self._weighted) >= _MAX_WEIGHTED:
                del self._weighted[next(iter(self._weighted))]
            weighted = self._weighted[key] = (
                [_priced(out, amount, fee_mult, risk_mult) for out in self.outgoing],
                [_min_in(inc, amount, fee_mult, risk_mult) for inc in self.incoming])
        return weighted


def _priced(out: list[OutEdge], a: int, fee_mult: int, risk_mult: int) -> list[tuple[int, int]]:
    # BOLT #7 "HTLC Fees", as in the path finder.
    a_risk = a * risk_mult
    return [(v, (base + a * ppm // 1_000_000) * fee_mult + delta * a_risk) for v, _, base, ppm, delta in out]


def _min_in(incoming: list[Edge], a: int, fee_mult: int, risk_mult: int) -> int | None:
    a_risk = a * risk_mult
    return min(((base + a * ppm // 1_000_000) * fee_mult + delta * a_risk for _, _, _, _, base, ppm, delta, _, _, _
                in incoming), default=None)
