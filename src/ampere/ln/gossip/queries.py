"""BOLT #7 gossip queries: the encodings, answering peers' queries, and our own sync session.

Everything here is I/O-free.  Functions that answer a peer return the encoded messages to send,
in order (`list[bytes]`); the sync session returns the messages to send after each reply.

    # answering
    reply_channel_range(graph, query, our_chain)         -> [reply_channel_range ...]
    reply_short_channel_ids(graph, query, our_chain)     -> [gossip ..., reply_short_channel_ids_end]
    gossip_for_filter(graph, TimestampFilter)            -> [gossip ...] (after gossip_timestamp_filter)

    # learning the graph from a newly connected peer
    session = SyncSession(graph, chain_hash, extended=peer offers gossip_queries_ex)
    send(session.start(now))                              # gossip_timestamp_filter + query_channel_range
    on reply_channel_range:         send(session.on_reply_channel_range(msg))
    on reply_short_channel_ids_end: send(session.on_reply_short_channel_ids_end(msg))
    (the gossip the peer sends in between goes through the validator and into the graph)
    session.done -> True when every wanted channel has been asked for and answered.

Protocol violations by the peer raise QueryError (action WARN: send a `warning`, may disconnect).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeGuard

from ampere.primitives.bigsize import BigSizeError, decode_bigsize, encode_bigsize
from ampere.wire.errors import Action, WireError
from ampere.wire.messages import (
    ChannelUpdateChecksums, GossipTimestampFilter, QueryChannelRange,
    QueryChannelRangeTlvs, QueryShortChannelIds, QueryShortChannelIdsTlvs, QueryShortChannelIdsTlvsQueryFlags,
    ReplyChannelRange, ReplyChannelRangeTlvs, ReplyChannelRangeTlvsTimestampsTlv, ReplyShortChannelIdsEnd,
)
from ampere.wire.types import ShortChannelId

from .crc32c import crc32c
from .graph import Graph, Half
from .signing import DONT_FORWARD

# BOLT #7 "Encoding types: `0`: uncompressed array of `short_channel_id` types, in ascending order.
# `1`: Previously used for zlib compression, this encoding MUST NOT be used."
ENCODING_UNCOMPRESSED = 0
ENCODING_ZLIB_DEPRECATED = 1

# query_flags bits (BOLT #7 query_short_channel_ids)
WANT_ANNOUNCEMENT = 1
WANT_UPDATE_1 = 2
WANT_UPDATE_2 = 4
WANT_NODE_1 = 8
WANT_NODE_2 = 16
WANT_ALL = 31

# query_option_flags bits (BOLT #7 query_channel_range)
WANT_TIMESTAMPS = 1
WANT_CHECKSUMS = 2

MAX_MESSAGE = 65535


class QueryError(WireError):
    """A query message we cannot accept.  BOLT #7 answers each such case with "MAY send a
    `warning`. MAY close the connection."."""

    action = Action.WARN


# ---------------------------------------------------------------------------------------------
# Encodings


def encode_short_ids(scids: Iterable[int]) -> bytes:
    return bytes([ENCODING_UNCOMPRESSED]) + b"".join(int(s).to_bytes(8, "big") for s in scids)


def _check_encoding(encoding: int, what: str) -> None:
    if encoding == ENCODING_ZLIB_DEPRECATED:
        raise QueryError(f"{what}: zlib encoding (1) is deprecated: BOLT #7 says it MUST NOT be used")
    if encoding != ENCODING_UNCOMPRESSED:
        raise QueryError(f"{what}: unknown encoding type {encoding}")


def decode_short_ids(data: bytes) -> list[ShortChannelId]:
    """BOLT #7 (receiver): "if the first byte of `encoded_short_ids` is not a known encoding type"
    and "if `encoded_short_ids` does not decode into a whole number of `short_channel_id`": MAY
    send a `warning`.  Both raise QueryError."""
    if not data:
        raise QueryError("encoded_short_ids is empty (no encoding byte)")
    _check_encoding(data[0], "encoded_short_ids")
    body = data[1:]
    if len(body) % 8:
        raise QueryError(f"encoded_short_ids: {len(body)} bytes is not a whole number of short_channel_ids")
    return [ShortChannelId(int.from_bytes(body[i : i + 8], "big")) for i in range(0, len(body), 8)]


def encode_query_flags(flags: Sequence[int]) -> QueryShortChannelIdsTlvsQueryFlags:
    """BOLT #7: "Each query flag is a minimally-encoded bigsize." (one per short_channel_id)"""
    return QueryShortChannelIdsTlvsQueryFlags(
        encoding_type=ENCODING_UNCOMPRESSED, encoded_query_flags=b"".join(encode_bigsize(f) for f in flags))


def decode_query_flags(record: QueryShortChannelIdsTlvsQueryFlags) -> list[int]:
    _check_encoding(record.encoding_type, "encoded_query_flags")
    data, pos, out = record.encoded_query_flags, 0, []
    try:
        while pos < len(data):
            value, pos = decode_bigsize(data, pos)
            out.append(value)
    except BigSizeError as e:
        raise QueryError(f"encoded_query_flags: {e}") from None
    return out


def encode_timestamps(pairs: Sequence[tuple[int, int]]) -> ReplyChannelRangeTlvsTimestampsTlv:
    return ReplyChannelRangeTlvsTimestampsTlv(
        encoding_type=ENCODING_UNCOMPRESSED,
        encoded_timestamps=b"".join(a.to_bytes(4, "big") + b.to_bytes(4, "big") for a, b in pairs))


def decode_timestamps(record: ReplyChannelRangeTlvsTimestampsTlv) -> list[tuple[int, int]]:
    _check_encoding(record.encoding_type, "encoded_timestamps")
    data = record.encoded_timestamps
    if len(data) % 8:
        raise QueryError("encoded_timestamps is not a whole number of timestamp pairs")
    return [(int.from_bytes(data[i : i + 4], "big"), int.from_bytes(data[i + 4 : i + 8], "big"))
            for i in range(0, len(data), 8)]


def channel_update_checksum(raw_update: bytes) -> int:
    """BOLT #7: "The checksum of a `channel_update` is the CRC32C checksum as specified in RFC3720
    of this `channel_update` without its `signature` and `timestamp` fields."  The 2-byte type is
    not part of it either (the checksum starts at `chain_hash`), as Core Lightning computes it."""
    # type(2) signature(64) | chain_hash(32) short_channel_id(8) | timestamp(4) | message_flags...
    return crc32c(raw_update[110:], crc32c(raw_update[66:106]))


# ---------------------------------------------------------------------------------------------
# Answering query_channel_range


def _max_ids_per_reply(timestamps: bool, checksums: bool) -> int:
    # type, chain_hash, first_blocknum, number_of_blocks, sync_complete, len, encoding byte
    fixed = 2 + 32 + 4 + 4 + 1 + 2 + 1
    per = 8
    if timestamps:
        fixed += 1 + 3 + 1  # TLV type, length (bigsize, up to 3 bytes here), encoding byte
        per += 8
    if checksums:
        fixed += 1 + 3
        per += 8
    return (MAX_MESSAGE - fixed) // per


def reply_channel_range(graph: Graph, query: QueryChannelRange, our_chain: bytes,
                        max_per_reply: int | None = None) -> list[bytes]:
    """The `reply_channel_range` messages answering `query`, encoded.

    BOLT #7 (receiver of query_channel_range): "MUST respond with one or more `reply_channel_range`
    ... MUST set with `chain_hash` equal to that of `query_channel_range`, MUST limit
    `number_of_blocks` to the maximum number of blocks whose results could fit in
    `encoded_short_ids`, MAY split block contents across multiple `reply_channel_range`."
    """
    first = query.first_blocknum
    # A query may ask past the u32 range (first_blocknum + number_of_blocks > 2^32 - 1); our replies stop at
    # block 2^32 - 1 so that every reply's first_blocknum + number_of_blocks still fits a u32, as peers compute
    # it (lightningd clamps the same way; lnprototest's query_channel_range script checks it).  No block that
    # high can hold a channel: a short_channel_id's block is 3 bytes.
    end = min(first + query.number_of_blocks, 0xFFFFFFFF)
    if query.chain_hash != our_chain:
        # We know nothing of that chain: one empty, final reply (and sync_complete says so).
        return [ReplyChannelRange(chain_hash=query.chain_hash, first_blocknum=first,
                                  number_of_blocks=end - first, sync_complete=0,
                                  encoded_short_ids=encode_short_ids([])).to_bytes()]
    options = query.tlvs.query_option or 0
    want_ts, want_cs = bool(options & WANT_TIMESTAMPS), bool(options & WANT_CHECKSUMS)
    limit = max_per_reply or _max_ids_per_reply(want_ts, want_cs)
    scids = graph.scids_in_blocks(first, end - first) if end > first else []
    chunks = [scids[i : i + limit] for i in range(0, len(scids), limit)] or [[]]
    out = []
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        # BOLT #7: "the first `reply_channel_range` message: MUST set `first_blocknum` less than or
        # equal to the `first_blocknum` in `query_channel_range`"; "successive `reply_channel_range`
        # message: MUST have `first_blocknum` equal or greater than the previous `first_blocknum`."
        r_first = first if i == 0 else ShortChannelId(chunk[0]).block
        if last:
            # "the final `reply_channel_range` message: MUST have `first_blocknum` plus
            # `number_of_blocks` equal or greater than the `query_channel_range` `first_blocknum`
            # plus `number_of_blocks`."
            r_end = end
        else:
            next_block = ShortChannelId(chunks[i + 1][0]).block
            # If a block is split across replies, this reply still covers its last block.
            r_end = max(next_block, ShortChannelId(chunk[-1]).block + 1)
        tlvs = ReplyChannelRangeTlvs()
        if want_ts or want_cs:
            ts_pairs, cs_pairs = [], []
            for scid in chunk:
                h = graph.channels[scid].halves
                ts_pairs.append((h[0].timestamp if h[0] else 0, h[1].timestamp if h[1] else 0))
                if want_cs:
                    cs_pairs.append(ChannelUpdateChecksums(checksum_node_id_1=h[0].checksum if h[0] else 0,
                                                           checksum_node_id_2=h[1].checksum if h[1] else 0))
            tlvs = ReplyChannelRangeTlvs(timestamps_tlv=encode_timestamps(ts_pairs) if want_ts else None,
                                         checksums_tlv=tuple(cs_pairs) if want_cs else None)
        out.append(ReplyChannelRange(
            chain_hash=query.chain_hash, first_blocknum=r_first, number_of_blocks=r_end - r_first,
            # BOLT #7: "MUST set `sync_complete` to `false` if this is not the final
            # `reply_channel_range`." and for the final one "MUST set `sync_complete` to `true`."
            sync_complete=1 if last else 0,
            encoded_short_ids=encode_short_ids(chunk), tlvs=tlvs).to_bytes())
    return out


# ---------------------------------------------------------------------------------------------
# Answering query_short_channel_ids


def reply_short_channel_ids(graph: Graph, query: QueryShortChannelIds, our_chain: bytes) -> list[bytes]:
    """The gossip answering `query`, then `reply_short_channel_ids_end`, encoded.

    Raises QueryError for a malformed query (unknown encoding, wrong number of flags).
    """
    if query.chain_hash != our_chain:
        # BOLT #7: "if does not maintain up-to-date channel information for `chain_hash`: MUST set
        # `full_information` to 0."
        return [ReplyShortChannelIdsEnd(chain_hash=query.chain_hash, full_information=0).to_bytes()]
    scids = decode_short_ids(query.encoded_short_ids)
    if query.tlvs.query_flags is not None:
        flags = decode_query_flags(query.tlvs.query_flags)
        # BOLT #7: "if `encoded_query_flags` does not decode to exactly one flag per
        # `short_channel_id`: MAY send a `warning`. MAY close the connection."
        if len(flags) != len(scids):
            raise QueryError(f"{len(flags)} query flags for {len(scids)} short_channel_ids")
    else:
        # BOLT #7: "if the incoming message does not include `encoded_query_flags`: with a
        # `channel_announcement` and the latest `channel_update` for each end, MUST follow with any
        # `node_announcement`s for each `channel_announcement`"
        flags = [WANT_ALL] * len(scids)
    out: list[bytes] = []
    nodes_sent: set[bytes] = set()
    for scid, flag in zip(scids, flags):
        # BOLT #7: "MUST respond to each known `short_channel_id`"
        ch = graph.channels.get(scid)
        if ch is None or not ch.public or ch.raw is None:
            continue
        if flag & WANT_ANNOUNCEMENT:
            out.append(ch.raw)
        for direction, bit in ((0, WANT_UPDATE_1), (1, WANT_UPDATE_2)):
            half = ch.halves[direction]
            if flag & bit and _forwardable(half):
                out.append(half.raw)
        for node_id, bit in ((ch.node1, WANT_NODE_1), (ch.node2, WANT_NODE_2)):
            # BOLT #7: "SHOULD avoid sending duplicate `node_announcements` in response to a single
            # `query_short_channel_ids`."
            if flag & bit and node_id not in nodes_sent:
                node = graph.nodes.get(node_id)
                if node is not None and node.info is not None:
                    out.append(node.info.raw)
                    nodes_sent.add(node_id)
    # BOLT #7: "MUST follow these responses with `reply_short_channel_ids_end`."
    out.append(ReplyShortChannelIdsEnd(chain_hash=our_chain, full_information=1).to_bytes())
    return out


# ---------------------------------------------------------------------------------------------
# gossip_timestamp_filter


@dataclass(frozen=True)
class TimestampFilter:
    """A peer's `gossip_timestamp_filter`: BOLT #7 "SHOULD send all gossip messages whose `timestamp`
    is greater or equal to `first_timestamp`, and less than `first_timestamp` plus `timestamp_range`"."""

    first_timestamp: int
    timestamp_range: int

    @classmethod
    def from_message(cls, msg: GossipTimestampFilter) -> "TimestampFilter":
        return cls(msg.first_timestamp, msg.timestamp_range)

    def passes(self, timestamp: int) -> bool:
        return self.first_timestamp <= timestamp < self.first_timestamp + self.timestamp_range


# "A node which wants any gossip messages has to send this, otherwise no gossip messages would be
# received": a peer that sent none gets nothing but our own gossip.
NO_GOSSIP = TimestampFilter(0xFFFFFFFF, 0)


def _forwardable(half: Half | None) -> TypeGuard[Half]:
    """A channel_update that may go to other peers: not one marked `dont_forward`. A channel's latest update can be
    the peer-only one (BOLT #7: "MUST set `dont_forward` to 1 in `message_flags`" for a channel not announced)
    received before the channel became public; Core Lightning answers such an update about a public channel with
    a warning ("Do not set DONT_FORWARD on public channel_updates")."""
    return half is not None and not half.message_flags & DONT_FORWARD


def gossip_for_filter(graph: Graph, flt: TimestampFilter) -> list[bytes]:
    """Every public message the filter lets through, in an order that a receiver accepts.

    BOLT #7: "If a `channel_announcement` has no corresponding `channel_update`s: MUST NOT send the
    `channel_announcement`. Otherwise: MUST consider the `timestamp` of the `channel_announcement`
    to be the `timestamp` of a corresponding `channel_update`." and "MUST send the
    `channel_announcement` prior to any corresponding `channel_update`s and `node_announcement`s."
    """
    out: list[bytes] = []
    for ch in graph.channels.values():
        if not ch.public or ch.raw is None:
            continue
        halves = [h for h in ch.halves if _forwardable(h)]
        if not halves:
            continue
        if flt.passes(max(h.timestamp for h in halves)):
            out.append(ch.raw)
        out.extend(h.raw for h in halves if flt.passes(h.timestamp))
    for node in graph.nodes.values():
        if node.info is not None and flt.passes(node.info.timestamp):
            out.append(node.info.raw)
    return out


def timestamp_filter_message(chain_hash: bytes, first_timestamp: int,
                             timestamp_range: int = 0xFFFFFFFF) -> bytes:
    return GossipTimestampFilter(chain_hash=chain_hash, first_timestamp=first_timestamp,
                                 timestamp_range=timestamp_range).to_bytes()


# ---------------------------------------------------------------------------------------------
# Our sync session with one peer


@dataclass
class SyncSession:
    """Learn a peer's view of the graph: range query, then ask for what we lack, batch by batch.

    `extended`: the peer offers `gossip_queries_ex` (BOLT #7: "Nodes can signal that they support
    extended gossip queries with the `gossip_queries_ex` feature bit"), so we ask for timestamps
    and checksums and send per-channel query flags; otherwise we only ask for unknown channels.
    """

    graph: Graph
    chain_hash: bytes
    extended: bool = False
    first_blocknum: int = 0
    number_of_blocks: int = 0xFFFFFFFF
    batch_size: int = 2000
    # Results
    wanted: dict[int, int] = field(default_factory=dict)  # scid -> query flags still to ask
    replies: int = 0
    range_done: bool = False
    queries_sent: int = 0
    _last_first: int = -1
    _in_flight: list[int] | None = None

    @property
    def done(self) -> bool:
        return self.range_done and self._in_flight is None and not self.wanted

    def start(self, since: int | None = 0) -> list[bytes]:
        """The opening messages: a `gossip_timestamp_filter` asking for gossip from `since` on (None
        to send none), and the `query_channel_range`."""
        out = []
        if since is not None:
            out.append(timestamp_filter_message(self.chain_hash, since))
        tlvs = QueryChannelRangeTlvs(query_option=WANT_TIMESTAMPS | WANT_CHECKSUMS) if self.extended else QueryChannelRangeTlvs()
        # BOLT #7 (sender): "MUST set `number_of_blocks` to 1 or greater."
        out.append(QueryChannelRange(chain_hash=self.chain_hash, first_blocknum=self.first_blocknum,
                                     number_of_blocks=max(1, self.number_of_blocks), tlvs=tlvs).to_bytes())
        return out

    def on_reply_channel_range(self, msg: ReplyChannelRange) -> list[bytes]:
        if self.range_done:
            raise QueryError("reply_channel_range without a query in flight")
        if msg.chain_hash != self.chain_hash:
            raise QueryError("reply_channel_range for another chain")
        q_end = self.first_blocknum + self.number_of_blocks
        r_end = msg.first_blocknum + msg.number_of_blocks
        # BOLT #7: replies overlap the query, and "successive `reply_channel_range` message: MUST
        # have `first_blocknum` equal or greater than the previous `first_blocknum`."
        if r_end <= self.first_blocknum or msg.first_blocknum >= q_end and msg.number_of_blocks:
            raise QueryError(f"reply_channel_range {msg.first_blocknum}+{msg.number_of_blocks} outside the query")
        if msg.first_blocknum < self._last_first:
            raise QueryError("reply_channel_range went backwards")
        self._last_first = msg.first_blocknum
        scids = decode_short_ids(msg.encoded_short_ids)
        stamps = decode_timestamps(msg.tlvs.timestamps_tlv) if msg.tlvs.timestamps_tlv is not None else None
        sums = list(msg.tlvs.checksums_tlv) if msg.tlvs.checksums_tlv is not None else None
        if (stamps is not None and len(stamps) != len(scids)) or (sums is not None and len(sums) != len(scids)):
            raise QueryError("reply_channel_range: timestamps/checksums do not match the short_channel_ids")
        for i, scid in enumerate(scids):
            if not msg.first_blocknum <= scid.block < r_end:
                raise QueryError(f"reply_channel_range: {scid} outside its block range")
            flags = self._wanted_flags(scid, stamps[i] if stamps else None, sums[i] if sums else None)
            if flags:
                self.wanted[scid] = self.wanted.get(scid, 0) | flags
        self.replies += 1
        # BOLT #7 rationale: "the receiver can easily determine if replies are done: simply check if
        # `first_blocknum` plus `number_of_blocks` equals or exceeds the `first_blocknum` plus
        # `number_of_blocks` it asked for."
        # (A range asked past block 2^32 - 1 is complete at 2^32 - 1: replies cannot say more in a u32.)
        if r_end >= min(q_end, 0xFFFFFFFF):
            self.range_done = True
            return self._next_query()
        return []

    def _wanted_flags(self, scid: int, stamps: tuple[int, int] | None, sums: ChannelUpdateChecksums | None) -> int:
        ch = self.graph.channels.get(scid)
        if ch is None or not ch.public:
            return WANT_ALL
        if stamps is None:
            return 0
        flags = 0
        for direction, bit in ((0, WANT_UPDATE_1), (1, WANT_UPDATE_2)):
            theirs = stamps[direction]
            half = ch.halves[direction]
            if theirs == 0 or (half is not None and theirs <= half.timestamp):
                continue
            if half is not None and sums is not None:
                their_sum = sums.checksum_node_id_1 if direction == 0 else sums.checksum_node_id_2
                # Same fields, newer timestamp: nothing new to learn (a keep-alive refresh).
                if their_sum != 0 and their_sum == half.checksum:
                    continue
            flags |= bit
        return flags

    def _next_query(self) -> list[bytes]:
        if not self.wanted:
            self._in_flight = None
            return []
        batch = sorted(self.wanted)[: self.batch_size]
        flags = [self.wanted.pop(s) for s in batch]
        self._in_flight = batch
        self.queries_sent += 1
        tlvs = QueryShortChannelIdsTlvs(query_flags=encode_query_flags(flags)) if self.extended else QueryShortChannelIdsTlvs()
        return [QueryShortChannelIds(chain_hash=self.chain_hash, encoded_short_ids=encode_short_ids(batch),
                                     tlvs=tlvs).to_bytes()]

    def on_reply_short_channel_ids_end(self, msg: ReplyShortChannelIdsEnd) -> list[bytes]:
        # BOLT #7 (sender): "MUST NOT send `query_short_channel_ids` if it has sent a previous
        # `query_short_channel_ids` to this peer and not received `reply_short_channel_ids_end`."
        if self._in_flight is None:
            raise QueryError("reply_short_channel_ids_end without a query in flight")
        if msg.chain_hash != self.chain_hash:
            raise QueryError("reply_short_channel_ids_end for another chain")
        self._in_flight = None
        return self._next_query()


def query_short_channel_ids(chain_hash: bytes, scids: Sequence[int], flags: Sequence[int] | None = None) -> bytes:
    """A one-off query, e.g. BOLT #7 "MAY send this if it receives a `channel_update` for a
    `short_channel_id` for which it has no `channel_announcement`."."""
    tlvs = QueryShortChannelIdsTlvs(query_flags=encode_query_flags(flags)) if flags is not None else QueryShortChannelIdsTlvs()
    return QueryShortChannelIds(chain_hash=chain_hash, encoded_short_ids=encode_short_ids(sorted(scids)),
                                tlvs=tlvs).to_bytes()


__all__ = [
    "ENCODING_UNCOMPRESSED", "ENCODING_ZLIB_DEPRECATED", "NO_GOSSIP", "QueryError", "SyncSession", "TimestampFilter",
    "WANT_ALL", "WANT_ANNOUNCEMENT", "WANT_CHECKSUMS", "WANT_NODE_1", "WANT_NODE_2", "WANT_TIMESTAMPS",
    "WANT_UPDATE_1", "WANT_UPDATE_2", "channel_update_checksum", "decode_query_flags",
    "decode_short_ids", "decode_timestamps", "encode_query_flags", "encode_short_ids", "encode_timestamps",
    "gossip_for_filter", "query_short_channel_ids", "reply_channel_range", "reply_short_channel_ids",
    "timestamp_filter_message",
]
