"""The guided path finder (A* from the payee, bounded by a search from the payer: near_bounds, or
a payer's table of bounds) finds the same routes as plain Dijkstra, over random graphs and random
queries: amounts, risk factors, fee and delay limits, hop limits, our own channels, route hints,
exclusions, MPP's used amounts and fuzz.  Where two routes cost exactly the same either may be
returned: then the costs must be equal (and the guided one must be a real route)."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from ampere.ln.gossip import Graph
from ampere.ln.route import (
    HintHop, LocalChannel, RouteQuery, _search, _to_fraction, find_route,
)
from ampere.ln.route_view import RISK_DIVISOR, EdgeView, near_bounds, near_search
from ampere.testing.gossip_factory import GossipFactory, random_network
from ampere.wire.bolt1 import chain_hash

F = GossipFactory(chain_hash("regtest"))
NOW = 1_700_000_000


def route_cost(q: RouteQuery, route) -> int:
    """The finder's objective for a route without fuzz: per hop after the first (the payer charges
    itself nothing), fee * RISK_DIVISOR * den * 1000 + amount forwarded * cltv_delta * num * 1000."""
    rf = _to_fraction(q.riskfactor)
    cost = 0
    for prev, hop in zip(route, route[1:]):
        fee, delta = prev.amount_msat - hop.amount_msat, prev.delay - hop.delay
        cost += fee * RISK_DIVISOR * rf.denominator * 1000 + hop.amount_msat * delta * rf.numerator * 1000
    return cost


def check_route(g: Graph, q: RouteQuery, route) -> None:
    """Each hop is a channel of the graph (or ours, or a hint) going the right way, and amounts and
    delays follow BOLT #7's fee and CLTV rules backwards from the payee."""
    assert route[-1].node_id == q.destination and route[-1].amount_msat == q.amount_msat
    assert route[-1].delay == q.final_cltv
    hints = {(h.short_channel_id, h.node_id): h for hint in q.route_hints for h in hint}
    prev_node = q.source
    for i, hop in enumerate(route):
        scid = int(hop.short_channel_id)
        if i > 0:
            nxt = route[i]
            hint = hints.get((scid, prev_node))
            if hint is not None:
                base, ppm, delta = hint.fee_base_msat, hint.fee_proportional_millionths, hint.cltv_expiry_delta
            else:
                ch = g.channels[scid]
                assert {ch.node1, ch.node2} == {prev_node, hop.node_id}
                half = ch.halves[ch.direction_from(prev_node)]
                base, ppm, delta = half.fee_base_msat, half.fee_proportional_millionths, half.cltv_expiry_delta
            # BOLT #7 "HTLC Fees": fee_base_msat + ( amount_to_forward * fee_proportional_millionths / 1000000 )
            assert route[i - 1].amount_msat == nxt.amount_msat + base + nxt.amount_msat * ppm // 1_000_000
            assert route[i - 1].delay == nxt.delay + delta
        prev_node = hop.node_id


def random_queries(rng: random.Random, g: Graph, keys, me, count: int) -> list[RouteQuery]:
    out = []
    pubs = [k.pub for k in keys if k.pub in g.nodes]
    for _ in range(count):
        src = me.pub if rng.random() < 0.3 else rng.choice(pubs)
        dst = rng.choice([p for p in pubs if p != src])
        kw: dict = {}
        if rng.random() < 0.3:
            mine = sorted(g.nodes[src].channels)
            kw["local_channels"] = [LocalChannel(s, g.channels[s].other(src), rng.choice((100_000, 5_000_000)))
                                    for s in mine if rng.random() < 0.8]
        if rng.random() < 0.2:
            hint_node = F.node(9000 + rng.randrange(3))
            entry = rng.choice(pubs)
            dst = hint_node.pub  # a private payee reached through a hint from a public node
            kw["route_hints"] = [[HintHop(entry, 0x99 << 40 | rng.randrange(100), rng.choice((0, 1000)),
                                          rng.choice((1, 500)), rng.choice((9, 40)))]]
        if rng.random() < 0.2:
            kw["max_fee_msat"] = rng.choice((10, 1_000, 50_000))
        if rng.random() < 0.2:
            kw["max_delay"] = rng.choice((100, 300, 1000))
        if rng.random() < 0.2:
            kw["max_hops"] = rng.choice((2, 4, 6))
        if rng.random() < 0.2:
            kw["exclude_nodes"] = frozenset(rng.sample(pubs, 3)) - {src, dst}
        if rng.random() < 0.2:
            scids = rng.sample(sorted(g.channels), 10)
            kw["exclude_channels"] = frozenset((s, rng.randrange(2)) for s in scids)
        if rng.random() < 0.1:
            kw["used_msat"] = {(s, d): 100_000_000 for s in rng.sample(sorted(g.channels), 20) for d in (0, 1)}
        if rng.random() < 0.1:
            kw["fuzz_percent"], kw["fuzz_seed"] = 5, bytes([rng.randrange(256)])
        out.append(RouteQuery(source=src, destination=dst,
                              amount_msat=rng.choice((0, 1, 1_000, 100_000, 3_000_000, 150_000_000)),
                              riskfactor=rng.choice((10, 1, 0, "0.3", Fraction(7, 3), 100)), **kw))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_guided_search_finds_plain_dijkstras_routes(seed):
    rng = random.Random(seed)
    net = random_network(F, n_nodes=150, n_channels=400, now=NOW, seed=seed)
    g = Graph()
    for ann, cap in net.announcements:
        g.add_channel_announcement(ann, cap, NOW)
    for upd in net.updates:
        g.apply_channel_update(upd)
    me = net.nodes[0]
    same = tie = found = 0
    for rnd in range(4):
        queries = random_queries(rng, g, net.nodes, me, 60)
        for q in queries + [q for q in queries if q.source == me.pub] * 8:  # our own payer: its table is made
            for enforce in (True, False):
                plain = _search(g, q, enforce, guided=False)
                guided = _search(g, q, enforce, guided=True)
                if plain is None:
                    assert guided is None, q
                    continue
                assert guided is not None, q
                found += 1
                if guided == plain:
                    same += 1
                    continue
                # Two routes of exactly the same cost: either is the cheapest.
                check_route(g, q, guided)
                if not q.fuzz_percent:
                    assert route_cost(q, guided) == route_cost(q, plain), (q, guided, plain)
                tie += 1
        # Gossip keeps changing the graph (the view is updated in place, a payer's table repaired).
        for _ in range(30):
            scid, a, b = rng.choice(net.edges)
            x, y = rng.choice(((a, b), (b, a)))
            g.apply_channel_update(F.channel_update(
                scid, net.nodes[x], net.nodes[y], timestamp=NOW + 1 + rnd * 100 + _,
                fee_base_msat=rng.choice((0, 1, 1000, 5000)), fee_proportional_millionths=rng.choice((1, 100, 2000)),
                cltv_expiry_delta=rng.choice((6, 40, 144)), disabled=rng.random() < 0.1))
    assert found > 300 and same >= found * 0.9, (found, same, tie)


def test_near_bounds_are_lower_bounds_and_exact_near_the_payer():
    net = random_network(F, n_nodes=120, n_channels=300, now=NOW, seed=5)
    g = Graph()
    for ann, cap in net.announcements:
        g.add_channel_announcement(ann, cap, NOW)
    for upd in net.updates:
        g.apply_channel_update(upd)
    view = EdgeView.of(g)
    amount, fee_mult, risk_mult = 50_000, RISK_DIVISOR * 1000, 10 * 1000
    # Once with the edges priced in the search, then with them priced beforehand (the view keeps
    # them for a price asked again and again): the same costs.
    assert view.weighted(amount, fee_mult, risk_mult) is None
    fulls = {}
    for src in (0, 7, 33, 0, 7, 33):
        if src in fulls:
            while view.weighted(amount, fee_mult, risk_mult) is None:
                pass
        full = near_bounds(view, src, (), amount, fee_mult, risk_mult, 10**9)  # the whole table
        assert fulls.setdefault(src, full) == full
        assert full[src] == 0 and sum(d is not None for d in full) > 100
        near = near_bounds(view, src, (), amount, fee_mult, risk_mult, 20)
        radius = max(near)
        exact = [i for i, d in enumerate(near) if d != radius]
        assert 10 < len(exact) <= 20
        assert all(near[i] == full[i] for i in exact)  # exact where the search from the payer got
        assert sorted(d for d in full if d is not None)[len(exact)] >= radius
        for i, d in enumerate(full):  # and everywhere a lower bound (the radius beyond)
            if d is not None:
                assert near[i] <= d
        # Out of the payer is free: its neighbours are at 0.
        for v, *_ in view.outgoing[src]:
            assert full[v] == 0 == near[v]
        # near_search (the plain queries' form): exact where it settled, the radius plus the
        # cheapest edge in (or the cost seen so far) elsewhere, never above the true cost.
        priced = view.weighted(amount, fee_mult, risk_mult)
        if priced is not None:
            settled, tentative, radius = near_search(view, priced, src, (), 20)
            assert radius is not None and sum(d is not None for d in settled) == 20
            for i, d in enumerate(full):
                if d is None:
                    continue
                bound = settled[i]
                if bound is None:
                    bound = radius + priced[1][i]
                    if tentative[i] is not None:
                        bound = min(bound, tentative[i])
                else:
                    assert bound == d
                assert bound <= d


def test_guided_search_is_exercised(monkeypatch):
    """The guided search really runs (and finds the plain route) for a payer that never asked before."""
    net = random_network(F, n_nodes=150, n_channels=400, now=NOW, seed=9)
    g = Graph()
    for ann, cap in net.announcements:
        g.add_channel_announcement(ann, cap, NOW)
    for upd in net.updates:
        g.apply_channel_update(upd)
    import ampere.ln.route as route_mod

    calls = []
    real = route_mod.near_bounds

    def spy(*a, **kw):
        calls.append(a[1])
        return real(*a, **kw)

    monkeypatch.setattr(route_mod, "near_bounds", spy)
    q = RouteQuery(source=net.nodes[3].pub, destination=net.nodes[77].pub, amount_msat=10_000)
    assert find_route(g, q) == _search(g, q, True, guided=False)
    assert calls == [EdgeView.of(g).index[net.nodes[3].pub]]
