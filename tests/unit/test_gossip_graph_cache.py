"""The graph cache (ln/gossip/graph_cache.py): a store loaded from its cache equals the store loaded
record by record (graph, path finder's view, routes, the store's index for later writes), and a
cache that is stale (the store changed in any way) or corrupt is refused, never used."""

from __future__ import annotations

import os

import pytest

from ampere.ln.gossip import Graph, graph_cache
from ampere.ln.route import NoRouteError, RouteQuery, find_route
from ampere.ln.route_view import EdgeView
from ampere.node.gossip.store_file import GossipStore, cache_path, open_and_load
from ampere.testing.gossip_factory import GossipFactory, random_network
from ampere.wire.bolt1 import chain_hash
from ampere.wire.types import ShortChannelId

CHAIN = chain_hash("regtest")
NOW = 1_700_000_000
F = GossipFactory(CHAIN)
PRIV = int(ShortChannelId.from_str("900x1x0"))


def _network_store(path: str, seed: int = 5):
    """A stored network with a private channel, a spent channel, replaced and deleted records."""
    net = random_network(F, n_nodes=30, n_channels=70, now=NOW, seed=seed)
    store = GossipStore(path).open()
    store.add_private_channel(PRIV, net.nodes[1].pub, net.nodes[2].pub, 5_000, NOW)
    for ann, cap in net.announcements:
        store.add_channel_announcement(ann, cap, NOW)
    for upd in net.updates:
        store.add_channel_update(upd, NOW)
    for na in net.node_announcements:
        store.add_node_announcement(na, NOW)
    scid, a, b = net.edges[3]
    store.add_channel_update(F.channel_update(scid, net.nodes[a], net.nodes[b], timestamp=NOW + 9,
                                              fee_base_msat=4321), NOW + 9)
    store.mark_channel_dying(net.edges[5][0], 640, NOW)
    store.delete_channel(net.edges[7][0])
    store.close()
    return net


def _write_cache(path: str) -> Graph:
    store, _ = open_and_load(path, graph := Graph())
    store.write_cache(graph_cache.snapshot(graph), cache_path(path))
    store.close()
    return graph


def _same_graph(got: Graph, want: Graph) -> None:
    assert list(got.channels) == list(want.channels)
    assert list(got.nodes) == list(want.nodes)
    for scid, ch in want.channels.items():
        g = got.channels[scid]
        assert type(g.scid) is ShortChannelId
        assert (g.node1, g.node2, g.capacity_sat, g.features, g.raw, g.public, g.spent_height, g.added_at) == (
            ch.node1, ch.node2, ch.capacity_sat, ch.features, ch.raw, ch.public, ch.spent_height, ch.added_at)
        assert [(h.raw, h.timestamp, h.fee_base_msat) if h else None for h in g.halves] == \
            [(h.raw, h.timestamp, h.fee_base_msat) if h else None for h in ch.halves]
    for nid, node in want.nodes.items():
        assert got.nodes[nid].channels == node.channels
        assert (got.nodes[nid].info.raw if got.nodes[nid].info else None) == (node.info.raw if node.info else None)
    assert got.list_channels() == want.list_channels() and got.list_nodes() == want.list_nodes()


def test_cache_loads_what_the_store_loads(tmp_path):
    path = str(tmp_path / "gossip_store")
    net = _network_store(path)
    direct = _write_cache(path)
    assert direct.channels[net.edges[5][0]].spent_height == 640 and net.edges[7][0] not in direct.channels

    with GossipStore(path) as store:
        cached = Graph()
        stats = store.load_cached(cached, open(cache_path(path), "rb").read())
        assert stats.cached and stats.channels == 69 and stats.updates == 138 and stats.nodes == 30
        _same_graph(cached, direct)
        # The view came with the cache, and is the one a rebuild makes.
        view = cached.route_view
        assert view is not None and view.version == cached.version
        fresh = EdgeView()
        fresh.rebuild(cached)
        assert (view.ids, view.index, view.incoming, view.outgoing, view.bad, view.ends) == (
            fresh.ids, fresh.index, fresh.incoming, fresh.outgoing, fresh.bad, fresh.ends)
        pubs = [k.pub for k in net.nodes]
        for a, b in zip(pubs, reversed(pubs)):
            q = RouteQuery(source=a, destination=b, amount_msat=100_000)
            assert find_route(cached, q) == find_route(direct, q)
        # The store's index came with it: replacing and deleting records work as after a load.
        scid, a, b = net.edges[0]
        newer = F.channel_update(scid, net.nodes[a], net.nodes[b], timestamp=NOW + 50, fee_base_msat=777)
        store.add_channel_update(newer, NOW + 50)
        store.delete_channel(net.edges[1][0])
        store.delete_node(net.nodes[0].pub)
        store.add_channel_announcement(*net.announcements[7], NOW)  # the deleted one, back
        live, dead = store.live_bytes, store.deleted_bytes
    with GossipStore(path) as store:
        again = Graph()
        stats = store.load(again)
        assert stats.dropped == 0 and (store.live_bytes, store.deleted_bytes) == (live, dead)
    assert net.edges[1][0] not in again.channels and net.edges[7][0] in again.channels
    d = 0 if net.nodes[a].pub < net.nodes[b].pub else 1
    assert again.channels[scid].halves[d].raw == newer
    assert again.nodes[net.nodes[0].pub].info is None


def test_stale_or_corrupt_cache_is_refused_and_the_store_loaded(tmp_path):
    """Whatever changed the store after the cache was written (an append, a record deleted in place,
    a compaction), the cache is not used: a channel closed since is not routed through."""
    path = str(tmp_path / "gossip_store")
    net = _network_store(path)
    cache = cache_path(path)
    pubs = [k.pub for k in net.nodes]

    def load() -> tuple[Graph, bool]:
        store, stats = open_and_load(path, graph := Graph(), use_cache=True)
        store.close()
        return graph, stats.cached

    _write_cache(path)
    graph, cached = load()
    assert cached
    # Loaded for the daemon (its index made when first needed): writes work as after a load.
    store, stats = open_and_load(path, Graph(), use_cache=True)
    assert stats.cached
    store.delete_channel(net.edges[0][0])
    store.close()
    assert net.edges[0][0] not in load()[0].channels
    _write_cache(path)
    graph, cached = load()
    assert cached and net.edges[0][0] not in graph.channels
    # A channel used by a route closes (its funding spent: an append to the store).
    route = find_route(graph, RouteQuery(source=pubs[0], destination=pubs[-1], amount_msat=100_000))
    closed = int(route[-1].short_channel_id)
    with GossipStore(path) as store:
        store.load(Graph())
        store.mark_channel_dying(closed, 700, NOW)
    graph, cached = load()
    assert not cached and graph.channels[closed].spent_height == 700
    try:
        again = find_route(graph, RouteQuery(source=pubs[0], destination=pubs[-1], amount_msat=100_000))
    except NoRouteError:
        again = []
    assert closed not in [int(h.short_channel_id) for h in again]

    # Deleted in place (two bytes of flags: the length does not change).
    _write_cache(path)
    with GossipStore(path) as store:
        store.load(Graph())
        size = os.path.getsize(path)
        store.delete_channel(closed)
        assert os.path.getsize(path) == size
    graph, cached = load()
    assert not cached and closed not in graph.channels

    # Compacted: same live records, other offsets.
    _write_cache(path)
    with GossipStore(path) as store:
        store.load(Graph())
        store.compact()
    graph, cached = load()
    assert not cached and closed not in graph.channels

    # Corrupt or torn caches; a cache of another store.
    _write_cache(path)
    data = open(cache, "rb").read()
    with GossipStore(path) as store:
        for bad in (data[:-1], data[:30], b"", data[:40] + bytes([data[40] ^ 1]) + data[41:],
                    b"AMPGRAPH" + (2).to_bytes(4, "little") + data[12:]):
            target = Graph()
            with pytest.raises(graph_cache.CacheInvalid):
                store.load_cached(target, bad)
            assert not target.channels and not target.nodes and target.route_view is None
    # Made by other code (say, another rule for what the view routes through): refused.
    real = graph_cache.code_fingerprint()
    try:
        graph_cache._FINGERPRINT = real ^ 1
        with GossipStore(path) as store, pytest.raises(graph_cache.CacheInvalid, match="other code"):
            store.load_cached(Graph(), data)
    finally:
        graph_cache._FINGERPRINT = real
    other = str(tmp_path / "other_store")
    _network_store(other, seed=6)
    os.replace(cache, cache_path(other))
    with GossipStore(other) as store:
        with pytest.raises(graph_cache.CacheInvalid, match="stale"):
            store.load_cached(Graph(), open(cache_path(other), "rb").read())


def test_no_cache_from_a_graph_that_differs_from_its_store(tmp_path):
    path = str(tmp_path / "gossip_store")
    net = _network_store(path)
    store, _ = open_and_load(path, graph := Graph())
    scid, a, b = net.edges[0]
    graph.apply_channel_update(F.channel_update(scid, net.nodes[a], net.nodes[b], timestamp=NOW + 99))  # not stored
    with pytest.raises(graph_cache.CacheMismatch):
        store.write_cache(graph_cache.snapshot(graph), cache_path(path))
    graph.funding_spent(net.edges[2][0], 800)  # spent in memory only
    store.delete_channel(scid)  # and forgotten by the store only
    with pytest.raises(graph_cache.CacheMismatch):
        store.write_cache(graph_cache.snapshot(graph), cache_path(path))
    store.close()
    assert not os.path.exists(cache_path(path))
