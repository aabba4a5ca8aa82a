"""The path finder's edge view is kept up to date in place as gossip changes the graph, and its
lower bounds (A*) are repaired: after any mix of updates, removals, new channels and node
announcements, the view equals one built from scratch and routes equal a plain search's."""

from __future__ import annotations

import random

import pytest

from ampere.ln.gossip import Graph
from ampere.testing.gossip_factory import GossipFactory, random_network
from ampere.ln.route import LocalChannel, NoRouteError, RouteQuery, find_route
from ampere.ln import route_view
from ampere.ln.route_view import EdgeView
from ampere.wire.bolt1 import chain_hash
from ampere.wire.types import ShortChannelId

F = GossipFactory(chain_hash("regtest"))
NOW = 1_700_000_000
UNKNOWN_EVEN = bytes([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])  # bit 72: even, unassigned


def fresh_copy(g: Graph) -> Graph:
    """The same graph, built anew (its view and bounds will be made from scratch)."""
    out = Graph()
    for ch in g.channels.values():
        out.add_channel_announcement(ch.raw, ch.capacity_sat, NOW)
        for h in ch.halves:
            if h is not None:
                out.apply_channel_update(h.raw)
        if ch.spent_height is not None:
            out.funding_spent(ch.scid, ch.spent_height)
    for node in g.nodes.values():
        if node.info is not None:
            out.apply_node_announcement(node.info.raw)
    return out


def by_id(view: EdgeView) -> dict[bytes, list[tuple]]:
    """The view's incoming lists with node numbers turned into node ids (numbering is the view's
    own), leaving the order key out (a copy's channel order is the same, its numbers differ)."""
    out = {}
    for i, lst in enumerate(view.incoming):
        if lst:
            out[view.ids[i]] = [(view.ids[e[1]],) + e[2:] for e in lst]
    return out


def routes(g: Graph, queries: list[RouteQuery]) -> list:
    out = []
    for q in queries:
        try:
            out.append([h.to_json() for h in find_route(g, q)])
        except NoRouteError as e:
            out.append(str(e))
    return out


def line(n: int, fee: int = 1000) -> tuple[Graph, list]:
    keys = [F.node(100 + i) for i in range(n)]
    g = Graph()
    for i in range(n - 1):
        s = int(ShortChannelId.from_parts(500, i, 0))
        ann, _ = F.channel_announcement(s, keys[i], keys[i + 1], 1_000_000)
        g.add_channel_announcement(ann, 1_000_000, NOW)
        for a, b in ((keys[i], keys[i + 1]), (keys[i + 1], keys[i])):
            g.apply_channel_update(F.channel_update(s, a, b, timestamp=NOW, fee_base_msat=fee))
    return g, keys


def test_update_after_the_view_exists_is_in_the_next_route():
    # A - B - C - D, and a dearer detour B - E - C.
    g, (a, b, c, d) = line(4)
    detour = [int(ShortChannelId.from_parts(600, i, 0)) for i in range(2)]
    e = F.node(200)
    for s, (x, y) in zip(detour, ((b, e), (e, c))):
        ann, _ = F.channel_announcement(s, x, y, 1_000_000)
        g.add_channel_announcement(ann, 1_000_000, NOW)
        for p, r in ((x, y), (y, x)):
            g.apply_channel_update(F.channel_update(s, p, r, timestamp=NOW, fee_base_msat=3000))
    q = RouteQuery(source=a.pub, destination=d.pub, amount_msat=50_000)
    for _ in range(route_view._BOUNDS_AFTER_USES + 1):  # asked again: the search now runs with a table of bounds
        assert [h.node_id for h in find_route(g, q)] == [b.pub, c.pub, d.pub]
    assert EdgeView.of(g)._bounds, "the repeated query should have made bounds"
    version = g.version
    # B's fee on B -> C goes up: the detour through E is cheaper now.
    bc = int(ShortChannelId.from_parts(500, 1, 0))
    g.apply_channel_update(F.channel_update(bc, b, c, timestamp=NOW + 1, fee_base_msat=100_000))
    assert [h.node_id for h in find_route(g, q)] == [b.pub, e.pub, c.pub, d.pub]
    view = EdgeView.of(g)
    assert view.version == g.version != version
    # E's fee drops (an edge behind the payer got cheaper: the bounds must follow).
    g.apply_channel_update(F.channel_update(detour[1], e, c, timestamp=NOW + 1, fee_base_msat=0))
    g.apply_channel_update(F.channel_update(detour[0], b, e, timestamp=NOW + 1, fee_base_msat=0))
    g.apply_channel_update(F.channel_update(bc, b, c, timestamp=NOW + 2, fee_base_msat=1000))
    assert [h.node_id for h in find_route(g, q)] == [b.pub, e.pub, c.pub, d.pub]
    # E disables its direction: back to B -> C.
    g.apply_channel_update(F.channel_update(detour[1], e, c, timestamp=NOW + 3, disabled=True))
    assert [h.node_id for h in find_route(g, q)] == [b.pub, c.pub, d.pub]
    # C - D is forgotten: no route; a new channel C' - D through a node the bounds never saw.
    g.remove_channel(int(ShortChannelId.from_parts(500, 2, 0)))
    with pytest.raises(NoRouteError):
        find_route(g, q)
    f = F.node(300)
    for k, (x, y) in enumerate(((c, f), (f, d))):
        s = int(ShortChannelId.from_parts(700, k, 0))
        ann, _ = F.channel_announcement(s, x, y, 1_000_000)
        g.add_channel_announcement(ann, 1_000_000, NOW)
        for p, r in ((x, y), (y, x)):
            g.apply_channel_update(F.channel_update(s, p, r, timestamp=NOW, fee_base_msat=1))
    assert [h.node_id for h in find_route(g, q)] == [b.pub, c.pub, f.pub, d.pub]
    # A node announcing an unknown even feature is no longer routed through.
    g.apply_node_announcement(F.node_announcement(f, timestamp=NOW, features=UNKNOWN_EVEN))
    with pytest.raises(NoRouteError):
        find_route(g, q)


@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_view_equals_a_rebuild_and_routes_a_plain_search(seed):
    rng = random.Random(seed)
    net = random_network(F, n_nodes=40, n_channels=110, now=NOW, seed=seed)
    held = 20  # channels announced only later, after the view exists
    g = Graph()
    for ann, cap in net.announcements[:-held]:
        g.add_channel_announcement(ann, cap, NOW)
    live = {scid for scid, _, _ in net.edges[:-held]}
    for upd in net.updates:
        if int.from_bytes(upd[98:106], "big") in live:
            g.apply_channel_update(upd)
    keys, me = net.nodes, net.nodes[0]
    ts = NOW + 100
    for step in range(30):
        # Routes from one payer (made with bounds once repeated) must equal a plain search's.
        mine = sorted(g.nodes[me.pub].channels) if me.pub in g.nodes else []
        local = [LocalChannel(s, g.channels[s].other(me.pub), 2_000_000) for s in mine]
        queries = [RouteQuery(source=me.pub, destination=rng.choice(keys[1:]).pub,
                              amount_msat=rng.choice((1_000, 60_000, 900_000)),
                              riskfactor=rng.choice((10, 1, "0.3")), local_channels=rng.choice((None, local)))
                   for _ in range(6)]
        queries = [q for q in queries if q.destination in g.nodes]
        got = routes(g, queries + queries)
        copy = fresh_copy(g)
        assert got == routes(copy, queries) * 2
        assert by_id(EdgeView.of(g)) == by_id(EdgeView.of(copy))
        # Every table of bounds stays below the true cheapest costs (a fresh table's).
        fresh_view = EdgeView.of(copy)
        for (src, seeds, amount, risk), b in EdgeView.of(g)._bounds.items():
            view = EdgeView.of(g)
            fs = fresh_view.index[view.ids[src]]
            fseeds = tuple(sorted(fresh_view.index[view.ids[s]] for s in seeds))
            for _ in range(route_view._BOUNDS_AFTER_USES):
                fd = fresh_view.bounds(fs, fseeds, amount, risk)
            for i, node_id in enumerate(view.ids):
                j = fresh_view.index.get(node_id)
                if j is not None and fd[j] is not None:
                    assert b.dist[i] is not None and b.dist[i] <= fd[j]
        # The edges priced beforehand for near_bounds follow the changes as well.
        view = EdgeView.of(g)
        price = (60_000, route_view.RISK_DIVISOR * 1000, 10_000)
        while (priced := view.weighted(*price)) is None:
            pass
        assert priced[0] == [route_view._priced(out, *price) for out in view.outgoing]
        assert priced[1] == [route_view._min_in(inc, *price) for inc in view.incoming]
        # Then a few random changes.
        for _ in range(rng.randrange(1, 6)):
            kind = rng.random()
            scid, ia, ib = rng.choice(net.edges)
            ts += 1
            if scid not in g.channels:
                if kind < 0.5:  # a held-back or forgotten channel (re)appears
                    k = [e[0] for e in net.edges].index(scid)
                    g.add_channel_announcement(*net.announcements[k], NOW)
                    for x, y in ((ia, ib), (ib, ia)):
                        g.apply_channel_update(F.channel_update(scid, keys[x], keys[y], timestamp=ts,
                                                                fee_base_msat=rng.choice((0, 10, 1000))))
            elif kind < 0.6:
                x, y = rng.choice(((ia, ib), (ib, ia)))
                g.apply_channel_update(F.channel_update(
                    scid, keys[x], keys[y], timestamp=ts, fee_base_msat=rng.choice((0, 1, 1000, 5000)),
                    fee_proportional_millionths=rng.choice((1, 100, 5000)), cltv_expiry_delta=rng.choice((6, 40, 144)),
                    disabled=rng.random() < 0.15))
            elif kind < 0.75:
                g.remove_channel(scid)
            elif kind < 0.85:
                g.funding_spent(scid, 1000 + step)
            else:
                node = keys[rng.choice((ia, ib))]
                if node.pub in g.nodes:
                    feats = rng.choice((b"", UNKNOWN_EVEN))
                    g.apply_node_announcement(F.node_announcement(node, timestamp=ts, features=feats))
