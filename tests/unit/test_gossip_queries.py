"""Gossip queries: CRC32C, the encodings, answering query_channel_range / query_short_channel_ids /
gossip_timestamp_filter, and a sync session in which a new node learns a whole graph."""

from __future__ import annotations

from collections import deque

import pytest

from ampere.ln.gossip import Accept, GossipValidator, Graph
from ampere.ln.gossip.crc32c import crc32c
from ampere.ln.gossip.queries import (
    NO_GOSSIP, QueryError, SyncSession, TimestampFilter, WANT_ALL, WANT_ANNOUNCEMENT, WANT_CHECKSUMS, WANT_NODE_1,
    WANT_NODE_2, WANT_TIMESTAMPS, WANT_UPDATE_1, WANT_UPDATE_2, channel_update_checksum, decode_short_ids, decode_timestamps,
    encode_query_flags, encode_short_ids, gossip_for_filter, query_short_channel_ids, reply_channel_range,
    reply_short_channel_ids,
)
from ampere.ln.gossip.rawmsg import msg_type
from ampere.testing.gossip_factory import GossipFactory, random_network
from ampere.wire.bolt1 import chain_hash
from ampere.wire.messages import (
    GossipTimestampFilter, QueryChannelRange, QueryChannelRangeTlvs, QueryShortChannelIds,
    QueryShortChannelIdsTlvs, ReplyChannelRange, ReplyShortChannelIdsEnd, decode_message,
)
from ampere.wire.types import ShortChannelId

CHAIN = chain_hash("regtest")
NOW = 1_700_000_000
F = GossipFactory(CHAIN)


def _full_graph(net) -> Graph:
    graph = Graph()
    for ann, cap in net.announcements:
        graph.add_channel_announcement(ann, cap, NOW)
    for upd in net.updates:
        graph.apply_channel_update(upd)
    for na in net.node_announcements:
        graph.apply_node_announcement(na)
    return graph


@pytest.fixture(scope="module")
def net():
    return random_network(F, n_nodes=30, n_channels=70, now=NOW, seed=7)


# -- CRC32C and checksums --------------------------------------------------------------------------

def test_crc32c_known_values():
    # The CRC catalogue's check value, and RFC 3720 appendix B.4.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert crc32c(b"") == 0
    assert crc32c(b"56789", crc32c(b"1234")) == 0xE3069283


def test_channel_update_checksum_ignores_signature_and_timestamp():
    a, b = F.node(1), F.node(2)
    u1 = F.channel_update(5 << 40, a, b, timestamp=NOW)
    u2 = F.channel_update(5 << 40, a, b, timestamp=NOW + 77)
    u3 = F.channel_update(5 << 40, a, b, timestamp=NOW, fee_base_msat=1)
    assert channel_update_checksum(u1) == channel_update_checksum(u2) != channel_update_checksum(u3)
    # It is the CRC32C of chain_hash..short_channel_id then message_flags..end.
    m = decode_message(u1)
    body = m.chain_hash + m.short_channel_id.to_bytes(8, "big") + u1[110:]
    assert channel_update_checksum(u1) == crc32c(body)


# -- encodings -------------------------------------------------------------------------------------

def test_short_id_encoding_errors():
    scids = [ShortChannelId.from_str("1x2x3"), ShortChannelId.from_str("4x5x6")]
    assert decode_short_ids(encode_short_ids(scids)) == scids
    for bad in (b"", b"\x00" + bytes(7), b"\x02" + bytes(8), b"\x01" + bytes(8)):
        with pytest.raises(QueryError):
            decode_short_ids(bad)


# -- answering query_channel_range -----------------------------------------------------------------

def _check_replies(replies, first, number):
    msgs = [decode_message(r) for r in replies]
    assert all(isinstance(m, ReplyChannelRange) for m in msgs)
    # BOLT #7 rules on the sequence of replies.
    assert msgs[0].first_blocknum <= first < msgs[0].first_blocknum + msgs[0].number_of_blocks or number == 0
    assert all(b.first_blocknum >= a.first_blocknum for a, b in zip(msgs, msgs[1:]))
    # (a query reaching past 2^32 - 1 is answered up to there: first_blocknum + number_of_blocks is a u32)
    assert msgs[-1].first_blocknum + msgs[-1].number_of_blocks >= min(first + number, 0xFFFFFFFF)
    assert all(m.first_blocknum + m.number_of_blocks <= 0xFFFFFFFF for m in msgs)
    assert [m.sync_complete for m in msgs] == [0] * (len(msgs) - 1) + [1]
    scids = []
    for m in msgs:
        ids = decode_short_ids(m.encoded_short_ids)
        assert all(m.first_blocknum <= s.block < m.first_blocknum + m.number_of_blocks for s in ids)
        assert len(m.to_bytes()) <= 65535
        scids += ids
    return msgs, scids


def test_reply_channel_range_splits_and_covers(net):
    graph = _full_graph(net)
    everything = sorted(graph.channels)
    query = QueryChannelRange(chain_hash=CHAIN, first_blocknum=0, number_of_blocks=0xFFFFFFFF)
    msgs, scids = _check_replies(reply_channel_range(graph, query, CHAIN), 0, 0xFFFFFFFF)
    assert len(msgs) == 1 and scids == everything
    # 70 channels, 50 per block: a split in the middle of a block is allowed.
    msgs, scids = _check_replies(reply_channel_range(graph, query, CHAIN, max_per_reply=8), 0, 0xFFFFFFFF)
    assert len(msgs) == 9 and scids == everything
    # A sub-range.
    sub = QueryChannelRange(chain_hash=CHAIN, first_blocknum=101, number_of_blocks=1)
    msgs, scids = _check_replies(reply_channel_range(graph, sub, CHAIN), 101, 1)
    assert scids == [s for s in everything if ShortChannelId(s).block == 101] and scids
    # Nothing in range: one empty, final reply.
    empty = QueryChannelRange(chain_hash=CHAIN, first_blocknum=5000, number_of_blocks=10)
    msgs, scids = _check_replies(reply_channel_range(graph, empty, CHAIN), 5000, 10)
    assert scids == [] and len(msgs) == 1
    # A range reaching past the u32 range (lnprototest's query_channel_range script asks first_blocknum 109,
    # number_of_blocks 2^32 - 1): answered up to block 2^32 - 1, not 2^32, which a u32 cannot hold.
    past = QueryChannelRange(chain_hash=CHAIN, first_blocknum=109, number_of_blocks=0xFFFFFFFF)
    msgs, scids = _check_replies(reply_channel_range(graph, past, CHAIN), 109, 0xFFFFFFFF)
    assert msgs[-1].first_blocknum + msgs[-1].number_of_blocks == 0xFFFFFFFF
    assert scids == [s for s in everything if ShortChannelId(s).block >= 109]
    # Another chain: nothing, and not complete.
    other = QueryChannelRange(chain_hash=chain_hash("bitcoin"), first_blocknum=0, number_of_blocks=10)
    (m,) = [decode_message(r) for r in reply_channel_range(graph, other, CHAIN)]
    assert decode_short_ids(m.encoded_short_ids) == [] and m.sync_complete == 0


def test_reply_channel_range_timestamps_and_checksums(net):
    graph = _full_graph(net)
    query = QueryChannelRange(chain_hash=CHAIN, first_blocknum=0, number_of_blocks=1000,
                              tlvs=QueryChannelRangeTlvs(query_option=WANT_TIMESTAMPS | WANT_CHECKSUMS))
    msgs, scids = _check_replies(reply_channel_range(graph, query, CHAIN, max_per_reply=30), 0, 1000)
    stamps = [p for m in msgs for p in decode_timestamps(m.tlvs.timestamps_tlv)]
    sums = [c for m in msgs for c in m.tlvs.checksums_tlv]
    for scid, (t1, t2), cs in zip(scids, stamps, sums):
        h = graph.channels[scid].halves
        assert (t1, t2) == (h[0].timestamp, h[1].timestamp)
        assert (cs.checksum_node_id_1, cs.checksum_node_id_2) == (channel_update_checksum(h[0].raw),
                                                                  channel_update_checksum(h[1].raw))
    # The biggest reply with both TLVs still fits a message.
    big = Graph()
    a, b = F.node(1), F.node(2)
    ann, _ = F.channel_announcement(1 << 40, a, b, 1000)
    big.add_channel_announcement(ann, 1000)
    ch = big.channels[1 << 40]
    big.channels.clear()
    for i in range(3000):  # the same channel object under many scids: enough for the size check
        big.channels[(100 << 40) | (i << 16)] = ch
    big._sorted_scids = None
    replies = reply_channel_range(big, query, CHAIN)
    assert len(replies) == 2 and all(len(r) <= 65535 for r in replies)


# -- answering query_short_channel_ids -------------------------------------------------------------

def test_reply_short_channel_ids(net):
    graph = _full_graph(net)
    scid, a, b = net.edges[3]
    ch = graph.channels[scid]
    unknown = int(ShortChannelId.from_str("9999x1x1"))
    # Without flags: announcement, both updates, both node announcements, then the end.
    q = decode_message(query_short_channel_ids(CHAIN, [scid, unknown]))
    out = reply_short_channel_ids(graph, q, CHAIN)
    assert out[:3] == [ch.raw, ch.halves[0].raw, ch.halves[1].raw]
    assert set(out[3:5]) == {graph.nodes[ch.node1].info.raw, graph.nodes[ch.node2].info.raw}
    assert decode_message(out[-1]) == ReplyShortChannelIdsEnd(chain_hash=CHAIN, full_information=1)
    # With flags.
    q = decode_message(query_short_channel_ids(CHAIN, [scid], [WANT_UPDATE_2 | WANT_NODE_1]))
    out = reply_short_channel_ids(graph, q, CHAIN)
    assert out[:-1] == [ch.halves[1].raw, graph.nodes[ch.node1].info.raw]
    # Node announcements are not repeated within one reply.
    scid2 = next(s for s, x, y in net.edges if s != scid and ch.node1 in (net.nodes[x].pub, net.nodes[y].pub))
    q = decode_message(query_short_channel_ids(CHAIN, [scid, scid2], [WANT_NODE_1 | WANT_NODE_2] * 2))
    out = reply_short_channel_ids(graph, q, CHAIN)
    assert len(out[:-1]) == len(set(out[:-1])) == 3
    # Malformed queries raise a typed error.
    bad = QueryShortChannelIds(chain_hash=CHAIN, encoded_short_ids=encode_short_ids([scid]),
                               tlvs=QueryShortChannelIdsTlvs(query_flags=encode_query_flags([1, 1])))
    with pytest.raises(QueryError):
        reply_short_channel_ids(graph, bad, CHAIN)
    with pytest.raises(QueryError):
        reply_short_channel_ids(graph, QueryShortChannelIds(chain_hash=CHAIN, encoded_short_ids=b"\x01"), CHAIN)
    # Another chain: just the end, without full information.
    other = QueryShortChannelIds(chain_hash=chain_hash("bitcoin"), encoded_short_ids=encode_short_ids([scid]))
    assert [decode_message(m).full_information for m in reply_short_channel_ids(graph, other, CHAIN)] == [0]


# -- gossip_timestamp_filter -----------------------------------------------------------------------

def _two_announced_channels():
    """A graph with channels a-b (s1) and b-c (s2) announced and no update yet."""
    graph = Graph()
    a, b, c = F.node(1), F.node(2), F.node(3)
    s1, s2 = 100 << 40, 101 << 40
    ann1, _ = F.channel_announcement(s1, a, b, 1000)
    ann2, _ = F.channel_announcement(s2, b, c, 1000)
    graph.add_channel_announcement(ann1, 1000)
    graph.add_channel_announcement(ann2, 1000)
    return graph, (a, b, c), (s1, s2), ann1


def test_gossip_for_filter_order_and_range():
    graph, (a, b, _c), (s1, _s2), ann1 = _two_announced_channels()   # s2 gets no update: never sent
    u_old = F.channel_update(s1, a, b, timestamp=1000)
    u_new = F.channel_update(s1, b, a, timestamp=5000)
    graph.apply_channel_update(u_old)
    graph.apply_channel_update(u_new)
    na = F.node_announcement(a, timestamp=4000)
    graph.apply_node_announcement(na)
    assert gossip_for_filter(graph, TimestampFilter(0, 0xFFFFFFFF)) == [ann1, u_old, u_new, na]
    # The announcement takes an update's timestamp (here: the newest).
    assert gossip_for_filter(graph, TimestampFilter(3000, 10_000)) == [ann1, u_new, na]
    assert gossip_for_filter(graph, TimestampFilter(0, 2000)) == [u_old]
    assert gossip_for_filter(graph, NO_GOSSIP) == []
    flt = TimestampFilter.from_message(GossipTimestampFilter(chain_hash=CHAIN, first_timestamp=10, timestamp_range=5))
    assert [flt.passes(t) for t in (9, 10, 14, 15)] == [False, True, True, False]


# -- a newly connected node learns the graph -------------------------------------------------------

def _sync(source_graph: Graph, learner: Graph, utxos, extended: bool, max_per_reply=None, batch_size=2000):
    """Pump messages between a learner's SyncSession and a peer answering from `source_graph`."""
    validator = GossipValidator(learner, CHAIN)
    session = SyncSession(learner, CHAIN, extended=extended, batch_size=batch_size)
    to_peer = deque(session.start(since=None))
    verdicts = []
    while to_peer:
        msg = decode_message(to_peer.popleft())
        if isinstance(msg, QueryChannelRange):
            answers = reply_channel_range(source_graph, msg, CHAIN, max_per_reply=max_per_reply)
        else:
            assert isinstance(msg, QueryShortChannelIds)
            answers = reply_short_channel_ids(source_graph, msg, CHAIN)
        for raw in answers:
            if msg_type(raw) in (256, 257, 258):
                verdict, m = validator.check_raw(raw, NOW, utxos.get)
                verdicts.append(verdict)
                if isinstance(verdict, Accept):
                    if msg_type(raw) == 256:
                        learner.add_channel_announcement(raw, verdict.capacity_sat, NOW)
                    elif msg_type(raw) == 258:
                        learner.apply_channel_update(raw)
                    else:
                        learner.apply_node_announcement(raw)
                continue
            reply = decode_message(raw)
            if isinstance(reply, ReplyChannelRange):
                to_peer.extend(session.on_reply_channel_range(reply))
            else:
                to_peer.extend(session.on_reply_short_channel_ids_end(reply))
    assert session.done
    return session, verdicts


@pytest.mark.parametrize("extended", [False, True])
def test_new_node_learns_the_graph(net, extended):
    source = _full_graph(net)
    learner = Graph()
    session, verdicts = _sync(source, learner, net.utxos, extended, max_per_reply=16, batch_size=25)
    assert session.queries_sent == 3 and session.replies == 5
    # Every message is accepted, except node announcements sent again in a later batch (the
    # no-duplicates rule holds within one reply only).
    assert {v.code for v in verdicts if not isinstance(v, Accept)} <= {"old_timestamp"}
    assert sum(isinstance(v, Accept) for v in verdicts) == 70 + 140 + 30
    assert sorted(learner.iter_raw()) == sorted(source.iter_raw())
    assert learner.list_channels() == source.list_channels()


def test_sync_asks_only_for_what_changed(net):
    source = _full_graph(net)
    learner = _full_graph(net)
    scid, a, b = net.edges[5]
    # The source has a newer update for one direction of one channel, and a refresh (newer
    # timestamp, same fields) for another.
    newer = F.channel_update(scid, net.nodes[a], net.nodes[b], timestamp=NOW + 10, fee_base_msat=7)
    source.apply_channel_update(newer)
    scid2, a2, b2 = net.edges[6]
    old = source.channels[scid2].halves[0 if net.nodes[a2].pub < net.nodes[b2].pub else 1]
    refresh = F.channel_update(scid2, net.nodes[a2], net.nodes[b2], timestamp=NOW + 10,
                               fee_base_msat=old.fee_base_msat, fee_proportional_millionths=old.fee_proportional_millionths,
                               cltv_expiry_delta=old.cltv_expiry_delta, htlc_maximum_msat=old.htlc_maximum_msat)
    source.apply_channel_update(refresh)
    session, verdicts = _sync(source, learner, net.utxos, extended=True)
    assert verdicts == [Accept()]  # exactly the one changed update came over
    d = 0 if net.nodes[a].pub < net.nodes[b].pub else 1
    assert learner.channels[scid].halves[d].fee_base_msat == 7
    # Without extended queries nothing is asked (every channel is known).
    session, verdicts = _sync(source, _full_graph(net), net.utxos, extended=False)
    assert verdicts == [] and session.queries_sent == 0


def test_sync_session_rejects_protocol_violations():
    session = SyncSession(Graph(), CHAIN, first_blocknum=100, number_of_blocks=10)
    session.start()
    outside = ReplyChannelRange(chain_hash=CHAIN, first_blocknum=200, number_of_blocks=5, sync_complete=1,
                                encoded_short_ids=encode_short_ids([]))
    with pytest.raises(QueryError):
        session.on_reply_channel_range(outside)
    wrong_block = ReplyChannelRange(chain_hash=CHAIN, first_blocknum=100, number_of_blocks=2, sync_complete=0,
                                    encoded_short_ids=encode_short_ids([ShortChannelId.from_parts(105, 0, 0)]))
    with pytest.raises(QueryError):
        session.on_reply_channel_range(wrong_block)
    with pytest.raises(QueryError):
        session.on_reply_short_channel_ids_end(ReplyShortChannelIdsEnd(chain_hash=CHAIN, full_information=1))
    ok = ReplyChannelRange(chain_hash=CHAIN, first_blocknum=100, number_of_blocks=10, sync_complete=1,
                           encoded_short_ids=encode_short_ids([ShortChannelId.from_parts(101, 0, 0)]))
    out = session.on_reply_channel_range(ok)
    q = decode_message(out[0])
    assert decode_short_ids(q.encoded_short_ids) == [ShortChannelId.from_parts(101, 0, 0)]
    assert session.wanted == {} and not session.done
    session.on_reply_short_channel_ids_end(ReplyShortChannelIdsEnd(chain_hash=CHAIN, full_information=1))
    assert session.done
    # The opening messages: a timestamp filter and the range query (with options when extended).
    opening = [decode_message(m) for m in SyncSession(Graph(), CHAIN, extended=True).start(since=NOW)]
    assert opening[0] == GossipTimestampFilter(chain_hash=CHAIN, first_timestamp=NOW, timestamp_range=0xFFFFFFFF)
    assert opening[1].tlvs.query_option == WANT_TIMESTAMPS | WANT_CHECKSUMS
    assert WANT_ALL == WANT_ANNOUNCEMENT | 2 | WANT_UPDATE_2 | WANT_NODE_1 | WANT_NODE_2


def test_sync_session_range_past_u32_completes_at_u32_max():
    # Asking from block 109 for 2^32 - 1 blocks: a peer that answers up to block 2^32 - 1 (lightningd, and
    # Ampere) has answered everything a u32 can say; the range must count as done.
    session = SyncSession(Graph(), CHAIN, first_blocknum=109, number_of_blocks=0xFFFFFFFF)
    session.start()
    reply = ReplyChannelRange(chain_hash=CHAIN, first_blocknum=109, number_of_blocks=0xFFFFFFFF - 109,
                              sync_complete=1, encoded_short_ids=encode_short_ids([]))
    session.on_reply_channel_range(reply)
    assert session.range_done


def test_updates_marked_dont_forward_are_not_sent_to_other_peers():
    """A public channel whose latest update from one side is the peer-only kind (dont_forward, received before the
    channel was announced): neither a query's reply nor the timestamp filter's backlog carries it, and a channel
    whose only updates are such is not announced by the filter (BOLT #7: no channel_announcement without an update
    to follow it). Core Lightning answers a dont_forward update about a public channel with a warning."""
    graph, (a, b, c), (s1, s2), ann1 = _two_announced_channels()
    public = F.channel_update(s1, a, b, timestamp=1000)
    peer_only = F.channel_update(s1, b, a, timestamp=2000, dont_forward=True)
    only = F.channel_update(s2, b, c, timestamp=3000, dont_forward=True)
    for u in (public, peer_only, only):
        graph.apply_channel_update(u)
    assert graph.channels[s1].halves[1 if a.pub < b.pub else 0].raw == peer_only  # kept for routing
    assert gossip_for_filter(graph, TimestampFilter(0, 0xFFFFFFFF)) == [ann1, public]
    q = decode_message(query_short_channel_ids(CHAIN, [s1, s2], [WANT_UPDATE_1 | WANT_UPDATE_2] * 2))
    assert reply_short_channel_ids(graph, q, CHAIN)[:-1] == [public]
