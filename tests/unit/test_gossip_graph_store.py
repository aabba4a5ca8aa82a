"""The network graph (pruning, spent channels, CLN-shaped listings) and the gossip store format
(round trip, replacement, deletion, compaction, torn tails)."""

from __future__ import annotations

import os

import pytest

from ampere.ln.gossip import Graph, StoreFormatError
from ampere.ln.gossip.gossip_store import DELETED, HEADER, encode_record, iter_records
from ampere.node.gossip.store_file import GossipStore
from ampere.testing.gossip_factory import GossipFactory, random_network
from ampere.wire.bolt1 import chain_hash
from ampere.wire.types import ShortChannelId

CHAIN = chain_hash("regtest")
NOW = 1_700_000_000
F = GossipFactory(CHAIN)
A, B, C = F.node(1), F.node(2), F.node(3)
S1 = int(ShortChannelId.from_str("103x1x0"))
S2 = int(ShortChannelId.from_str("104x2x1"))
TWO_WEEKS = 1_209_600


def _two_channels(graph: Graph, ts_a: int = NOW, ts_b: int = NOW) -> None:
    for scid, x, y in ((S1, A, B), (S2, B, C)):
        ann, _ = F.channel_announcement(scid, x, y, 1_000_000)
        graph.add_channel_announcement(ann, 1_000_000, NOW)
    graph.apply_channel_update(F.channel_update(S1, A, B, timestamp=ts_a))
    graph.apply_channel_update(F.channel_update(S1, B, A, timestamp=ts_b))
    graph.apply_channel_update(F.channel_update(S2, B, C, timestamp=NOW))
    graph.apply_channel_update(F.channel_update(S2, C, B, timestamp=NOW))


# -- graph -----------------------------------------------------------------------------------------

def test_list_channels_shapes_and_filters():
    graph = Graph()
    _two_channels(graph)
    assert len(graph.list_channels()) == 4
    entries = graph.list_channels(short_channel_id=S1)
    assert {e["source"] for e in entries} == {A.pub.hex(), B.pub.hex()}
    e = next(e for e in entries if e["source"] == A.pub.hex())
    assert e["destination"] == B.pub.hex() and e["direction"] == (0 if A.pub < B.pub else 1)
    assert e["short_channel_id"] == "103x1x0" and e["amount_msat"] == 1_000_000_000
    assert (e["base_fee_millisatoshi"], e["fee_per_millionth"], e["delay"]) == (1000, 10, 6)
    assert e["active"] and e["public"] and e["last_update"] == NOW and e["message_flags"] == 1
    assert [x["short_channel_id"] for x in graph.list_channels(source=C.pub)] == ["104x2x1"]
    assert {x["short_channel_id"] for x in graph.list_channels(destination=B.pub)} == {"103x1x0", "104x2x1"}
    assert graph.list_channels(short_channel_id=12345) == []
    assert {n["nodeid"] for n in graph.list_nodes()} == {A.pub.hex(), B.pub.hex(), C.pub.hex()}
    assert graph.list_nodes(A.pub) == [{"nodeid": A.pub.hex()}]  # no node_announcement yet


def test_prune_stale_uses_the_oldest_direction():
    graph = Graph()
    # S1: one side fresh, the other three weeks old -> stale.  S2: both fresh.
    _two_channels(graph, ts_a=NOW, ts_b=NOW - 3 * 7 * 86_400)
    assert graph.prune_stale(NOW) == [S1]
    assert S1 not in graph.channels and S2 in graph.channels
    # A is left without channels: it is dropped from the node set.
    assert graph.node(A.pub) is None and graph.node(B.pub) is not None
    # Exactly two weeks old is not yet stale; one second more is.
    assert graph.prune_stale(NOW + TWO_WEEKS) == []
    assert graph.prune_stale(NOW + TWO_WEEKS + 1) == [S2]


def test_prune_keeps_our_channels_and_counts_missing_updates_from_arrival():
    graph = Graph()
    ann, _ = F.channel_announcement(S1, A, B, 1_000_000)
    graph.add_channel_announcement(ann, 1_000_000, now=NOW)  # never updated
    assert graph.prune_stale(NOW + TWO_WEEKS + 1, keep={S1}) == []
    assert graph.prune_stale(NOW + 1000) == []
    assert graph.prune_stale(NOW + TWO_WEEKS + 1) == [S1]


def test_spent_channel_forgotten_after_12_blocks():
    graph = Graph()
    _two_channels(graph)
    assert graph.funding_spent(S1, 500)
    assert not graph.funding_spent(999, 500)
    assert graph.list_channels(short_channel_id=S1)[0]["active"] is False
    assert graph.forget_spent(511) == []
    assert graph.forget_spent(512) == [S1]
    assert graph.channel(S1) is None and graph.node(A.pub) is None


def test_scids_in_blocks():
    graph = Graph()
    _two_channels(graph)
    assert graph.scids_in_blocks(0, 1000) == [S1, S2]
    assert graph.scids_in_blocks(104, 1) == [S2]
    assert graph.scids_in_blocks(105, 0xFFFFFFFF) == []


# -- store -----------------------------------------------------------------------------------------

def _store(tmp_path) -> GossipStore:
    return GossipStore(str(tmp_path / "gossip_store")).open()


def test_store_round_trip_and_replacement(tmp_path):
    net = random_network(F, n_nodes=20, n_channels=40, now=NOW)
    store = _store(tmp_path)
    for ann, cap in net.announcements:
        store.add_channel_announcement(ann, cap, NOW)
    for upd in net.updates:
        store.add_channel_update(upd, NOW)
    for na in net.node_announcements:
        store.add_node_announcement(na, NOW)
    # A newer update for the first channel replaces the old record.
    scid, a, b = net.edges[0]
    newer = F.channel_update(scid, net.nodes[a], net.nodes[b], timestamp=NOW + 5, fee_base_msat=4242)
    store.add_channel_update(newer, NOW + 5)
    store.add_private_channel(int(ShortChannelId.from_str("900x1x0")), F.node(1001).pub, F.node(1002).pub, 77_000, NOW)
    store.close()

    graph = Graph()
    with GossipStore(str(tmp_path / "gossip_store")) as again:
        stats = again.load(graph)
    assert (stats.channels, stats.updates, stats.nodes, stats.deleted, stats.dropped) == (40, 80, 20, 1, 0)
    assert len(graph.channels) == 41 and len(graph.nodes) == 20 + 2
    d = 0 if net.nodes[a].pub < net.nodes[b].pub else 1
    assert graph.channels[scid].halves[d].fee_base_msat == 4242
    assert graph.channels[scid].capacity_sat == dict((s, c) for (s, _, _), (_, c) in zip(net.edges, net.announcements))[scid]
    private = graph.channels[int(ShortChannelId.from_str("900x1x0"))]
    assert not private.public and private.capacity_sat == 77_000
    # The graph from the store equals the graph built directly.
    assert sorted(graph.iter_raw()) == sorted(
        [ann for ann, _ in net.announcements] + [u for u in net.updates if u != net.updates[0]] + [newer]
        + net.node_announcements)


def test_store_load_builds_the_graph_add_and_apply_build(tmp_path):
    """Loading takes a leaner path than gossip arriving (load_channel_announcement/update): the
    graph, its channel order and the path finder's view come out the same."""
    from ampere.ln.route_view import EdgeView

    net = random_network(F, n_nodes=25, n_channels=60, now=NOW, seed=3)
    priv_scid = int(ShortChannelId.from_str("900x1x0"))
    store = _store(tmp_path)
    # A private channel of ours, between two nodes of the network.
    store.add_private_channel(priv_scid, net.nodes[1].pub, net.nodes[2].pub, 5_000, NOW)
    direct = Graph()
    direct.add_private_channel(priv_scid, net.nodes[1].pub, net.nodes[2].pub, 5_000, NOW)
    for ann, cap in net.announcements:
        store.add_channel_announcement(ann, cap, NOW)
        direct.add_channel_announcement(ann, cap, NOW)
    for upd in net.updates:
        store.add_channel_update(upd, NOW)
        direct.apply_channel_update(upd)
    for na in net.node_announcements:
        store.add_node_announcement(na, NOW)
        direct.apply_node_announcement(na)
    store.close()
    graph = Graph()
    with GossipStore(str(tmp_path / "gossip_store")) as again:
        again.load(graph)
    # The view is made from the loaded policies before anything else reads them (they are parsed
    # when first asked for: Half.unparsed).
    loaded_view = [[e[1:] for e in lst] for lst in EdgeView.of(graph).incoming]
    assert graph.version > 0 and list(graph.channels) == list(direct.channels)
    fields = ("timestamp", "message_flags", "channel_flags", "cltv_expiry_delta", "htlc_minimum_msat",
              "fee_base_msat", "fee_proportional_millionths", "htlc_maximum_msat", "direction", "enabled", "checksum")
    for scid, ch in direct.channels.items():
        got = graph.channels[scid]
        assert type(got.scid) is ShortChannelId and got.scid == scid and str(got.scid) == str(ch.scid)
        assert (got.node1, got.node2, got.capacity_sat, got.features, got.raw, got.public) == (
            ch.node1, ch.node2, ch.capacity_sat, ch.features, ch.raw, ch.public)
        assert (got.bitcoin_key_1, got.bitcoin_key_2) == (ch.bitcoin_key_1, ch.bitcoin_key_2)
        assert (got.bitcoin_key_1 != b"") == got.public
        assert [h.raw if h else None for h in got.halves] == [h.raw if h else None for h in ch.halves]
        for field in fields:
            assert [getattr(h, field) if h else None for h in got.halves] == \
                [getattr(h, field) if h else None for h in ch.halves], field
    assert graph.list_channels() == direct.list_channels() and graph.list_nodes() == direct.list_nodes()
    assert not graph.channels[priv_scid].public
    assert loaded_view == [[e[1:] for e in lst] for lst in EdgeView.of(direct).incoming]


def test_store_delete_and_compact(tmp_path):
    store = _store(tmp_path)
    for scid, x, y in ((S1, A, B), (S2, B, C)):
        ann, _ = F.channel_announcement(scid, x, y, 1_000_000)
        store.add_channel_announcement(ann, 1_000_000, NOW)
        store.add_channel_update(F.channel_update(scid, x, y, timestamp=NOW), NOW)
    for i in range(50):  # many superseded updates
        store.add_channel_update(F.channel_update(S2, C, B, timestamp=NOW + i), NOW)
    store.add_node_announcement(F.node_announcement(A, timestamp=NOW), NOW)
    store.mark_channel_dying(S2, 600, NOW)
    store.delete_channel(S1)
    store.delete_node(A.pub)
    before = os.path.getsize(store.path)
    deleted = [r for r in store.records() if r.deleted]
    assert len(deleted) == 2 + 1 + 49 + 1  # S1's announcement+amount+update, 49 old updates, A's announcement
    old_size, new_size = store.compact()
    assert old_size == before and new_size < before / 3
    assert not any(r.deleted for r in store.records())
    # The index survives compaction: replacing and deleting still work on the new offsets.
    store.add_channel_update(F.channel_update(S2, C, B, timestamp=NOW + 100), NOW)
    store.delete_channel(S2)
    store.close()
    graph = Graph()
    with GossipStore(store.path) as again:
        stats = again.load(graph)
    assert len(graph) == 0 and stats.channels == 0


def test_store_load_of_spent_channel_and_torn_tail(tmp_path):
    store = _store(tmp_path)
    ann, _ = F.channel_announcement(S1, A, B, 1_000_000)
    store.add_channel_announcement(ann, 1_000_000, NOW)
    store.mark_channel_dying(S1, 700, NOW)
    store.close()
    good_size = os.path.getsize(store.path)
    with open(store.path, "ab") as f:  # a crash in the middle of an append
        f.write(encode_record(F.channel_update(S1, A, B, timestamp=NOW), NOW)[:50])
    graph = Graph()
    with GossipStore(store.path) as again:
        stats = again.load(graph)
    assert stats.truncated_bytes == 50 and os.path.getsize(store.path) == good_size
    assert graph.channels[S1].spent_height == 700


def test_store_corrupt_record_stops_the_load(tmp_path):
    store = _store(tmp_path)
    for scid, x, y in ((S1, A, B), (S2, B, C)):
        ann, _ = F.channel_announcement(scid, x, y, 1_000_000)
        store.add_channel_announcement(ann, 1_000_000, NOW)
    store.close()
    data = bytearray(open(store.path, "rb").read())
    second = [r.offset for r in iter_records(bytes(data))][2]  # S2's announcement
    data[second + 40] ^= 0xFF
    open(store.path, "wb").write(data)
    graph = Graph()
    with GossipStore(store.path) as again:
        stats = again.load(graph)
    assert list(graph.channels) == [S1] and stats.truncated_bytes > 0


def test_store_record_format():
    rec = encode_record(b"\x01\x02abc", 0x01020304, DELETED)
    assert rec[:2] == b"\x80\x00" and rec[2:4] == b"\x00\x05" and rec[8:12] == b"\x01\x02\x03\x04"
    [parsed] = iter_records(HEADER + rec)
    assert parsed.deleted and parsed.msg == b"\x01\x02abc" and parsed.timestamp == 0x01020304
    with pytest.raises(ValueError):
        encode_record(bytes(70_000), 0)


def test_store_rejects_other_files(tmp_path):
    path = tmp_path / "not_a_store"
    path.write_bytes(b"\x0c" + bytes(20))  # e.g. a CLN gossip_store (version byte 12)
    with pytest.raises(StoreFormatError):
        GossipStore(str(path)).open()
    path.write_bytes(b"AMPGOSS\x63")
    with pytest.raises(StoreFormatError, match="version"):
        GossipStore(str(path)).open()


def test_store_worker_writes_and_compacts_off_the_loop_in_order(tmp_path):
    """The daemon's StoreWorker: writes and compaction run on its one thread, never on the loop's, in the order
    asked; writes asked while a compaction runs land in the compacted file."""
    import asyncio
    import threading

    from ampere.node.gossip.store_file import StoreWorker, open_and_load

    path = str(tmp_path / "gossip_store")
    ann, _ = F.channel_announcement(S1, A, B, 1_000_000)
    upd = F.channel_update(S1, A, B, timestamp=NOW)
    newest = F.channel_update(S1, A, B, timestamp=NOW + 1, fee_base_msat=777)
    threads: list[str] = []

    async def go():
        store, _ = open_and_load(path, Graph())
        compact = store.compact
        store.compact = lambda: (threads.append(threading.current_thread().name), compact())[1]
        errors: list[str] = []
        worker = StoreWorker(store, errors.append)
        worker.add_channel_announcement(ann, 1_000_000, NOW)
        for _ in range(8_000):                      # the same update again and again: > 1 MB of dead records
            worker.add_channel_update(upd, NOW)
        compacting = asyncio.ensure_future(worker.maybe_compact())
        worker.add_channel_update(newest, NOW + 1)  # asked after the compaction: written after it
        worker.add_node_announcement(F.node_announcement(A, timestamp=NOW), NOW)
        sizes = await compacting
        await worker.synced()
        assert store.deleted_bytes > 0              # the record `newest` replaced, in the compacted file
        await worker.close()
        assert errors == []
        return sizes

    old_size, new_size = asyncio.run(go())
    assert old_size > 1_000_000 and new_size < 1_000
    assert threads and threads[0] != threading.main_thread().name and threads[0].startswith("gossip-store")
    graph = Graph()
    with GossipStore(path) as again:
        stats = again.load(graph)
        live = [r for r in again.records() if not r.deleted]
    assert (stats.channels, stats.updates, stats.nodes) == (1, 1, 1)
    assert [r.msg for r in live] == [ann, live[1].msg, newest, live[3].msg]   # announcement, amount, update, node
    d = 0 if A.pub < B.pub else 1
    assert graph.channels[S1].halves[d].fee_base_msat == 777


def test_stored_node_announcement_parsed_when_used_and_checked_when_loaded():
    """A node_announcement loaded from the store is read when first used (NodeInfo.unparsed): the
    same fields as a parsed one, and one that does not hold together is refused at the load."""
    from ampere.ln.gossip.graph import NodeInfo
    from ampere.ln.gossip.rawmsg import RawMessageError

    net = random_network(F, n_nodes=4, n_channels=4, now=NOW, seed=2)
    raw = net.node_announcements[0]
    parsed = NodeInfo(raw)
    lazy = NodeInfo.unparsed(parsed.node_id, raw)
    for field in ("node_id", "features", "timestamp", "rgb_color", "alias", "addresses_raw", "raw"):
        assert getattr(lazy, field) == getattr(parsed, field), field
    with pytest.raises(AttributeError):
        lazy.no_such_field  # noqa: B018
    for cut in (10, len(raw) - 1):
        with pytest.raises(RawMessageError):
            NodeInfo.unparsed(parsed.node_id, raw[:cut])
