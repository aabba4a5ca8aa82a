"""The graph cache: the loaded graph, the path finder's view of it and the gossip store's index, in
a compact binary form that loads several times faster than the store itself (no record parsed, the
objects made column by column), and is never trusted blindly.

A cache describes one gossip store file exactly: it holds that file's length and CRC-32, and is used
only if the file still has both (any append, deletion, compaction or outside change makes it stale;
the store is then loaded the ordinary way and the cache made again later).  The raw messages stay in
the store: the cache holds their offsets, and the loader slices them out of the file it checked.

    snap = snapshot(graph)                              # on the event loop, between two changes
    data = encode(snap, store_index, store_image)       # the store's worker: CacheMismatch if they disagree
    make_index, counts = decode(data, store_image, empty_graph)   # at start: CacheInvalid if stale or corrupt

`encode` checks every message of the snapshot against the store's live record for it (same bytes,
not deleted), so a cache never holds a channel the store has forgotten, nor misses a spent mark: a
graph that does not match its store gets no cache.  The view is stored by columns, as
EdgeView.rebuild would make it of the graph `decode` restores (_view_columns; a test compares
them), and restored by EdgeView.from_columns.  The header carries a fingerprint of that code
(code_fingerprint): a cache made by other code is refused.

Layout (little-endian): header `<8sIIQII` (MAGIC, VERSION, fingerprint, store length, store CRC-32, CRC-32 of the
body), then the body: arrays, each a typecode byte, a u32 count and the items, in a fixed order.  No
pickle: decoding builds only ints, bytes, tuples and the graph's own classes.
"""

from __future__ import annotations

import gc
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from typing import Any, Callable

from ampere.primitives.amount import MSAT_PER_SAT
from ampere.wire.types import ShortChannelId

from .gossip_store import DELETED, channel_dying_record, private_channel_record
from .graph import Channel, Graph, Half, Node, NodeInfo, routable_channel_features
from .rawmsg import channel_update_policy

MAGIC = b"AMPGRAPH"
VERSION = 1
_HEADER = struct.Struct("<8sIIQII")
_ITEMSIZE = {"B": 1, "H": 2, "I": 4, "q": 8, "Q": 8}
_BIG_ENDIAN = sys.byteorder == "big"
assert all(array(t).itemsize == n for t, n in _ITEMSIZE.items())

_REC_HEAD = 12  # a store record's header before its message (gossip_store.py): flags, length, ...
_FLAGS_LEN = struct.Struct(">HH").unpack_from


class CacheInvalid(Exception):
    """The cache is not for this store file (stale), or not a cache we read (corrupt, other version)."""


class CacheMismatch(Exception):
    """The graph and the store's live records disagree: no cache is made from them."""


@dataclass
class StoreIndex:
    """The gossip store's live records (GossipStore's index): offsets in the file."""

    ann: dict[int, tuple[int, int]] = field(default_factory=dict)  # scid -> (announcement, amount record)
    upd: dict[int, int] = field(default_factory=dict)              # scid << 1 | direction -> update
    node: dict[bytes, int] = field(default_factory=dict)           # node id -> node_announcement
    priv: dict[int, int] = field(default_factory=dict)             # scid -> private channel record
    dying: dict[int, int] = field(default_factory=dict)            # scid -> dying record
    live_bytes: int = 0
    deleted_bytes: int = 0


@dataclass
class GraphSnapshot:
    """The graph's values at one moment (the objects change afterwards, the bytes do not)."""

    # (scid, node1, node2, capacity_sat, added_at, spent_height, public, announcement, update 0, update 1)
    channels: list[tuple]
    # (node id, node_announcement or None), the nodes in the order the channels first name them
    nodes: list[tuple[bytes, bytes | None]]


def snapshot(graph: Graph) -> GraphSnapshot:
    """Take the graph's values (on the thread that changes it; ~1 us a channel)."""
    first: dict[bytes, None] = {}
    chans = []
    for ch in graph.channels.values():
        h0, h1 = ch.halves
        chans.append((int(ch.scid), ch.node1, ch.node2, ch.capacity_sat, ch.added_at, ch.spent_height, ch.public,
                      ch.raw, h0.raw if h0 is not None else None, h1.raw if h1 is not None else None))
        first[ch.node1] = None
        first[ch.node2] = None
    nodes = graph.nodes
    if len(first) != len(nodes):
        raise CacheMismatch("a node without channels")  # (the graph drops them: never seen)
    return GraphSnapshot(chans, [(nid, info.raw if (info := nodes[nid].info) is not None else None) for nid in first])


_FINGERPRINT: int | None = None


def code_fingerprint() -> int:
    """A CRC-32 of the code whose results the cache holds: the view's rules (what is routable, and
    how the view is laid out), the feature bits they know, and this module's own layout.  A cache
    made by other code (another release, a changed rule, another Python) is refused, so a cached
    view never outlives the rules that made it."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        from ampere.wire.features import FEATURE_BITS

        from ..route_view import EdgeView, unroutable_node

        funcs: tuple[Any, ...] = (
            EdgeView.rebuild, EdgeView.__dict__["from_columns"].__func__, unroutable_node, routable_channel_features,
            _view_columns, _encode, _decode_graph, _decode_index, _encode_index)
        parts = [_code_bytes(f.__code__) for f in funcs]
        parts.append(repr((sorted(FEATURE_BITS.items()), VERSION, _VIEW_CODES, _INDEX_CODES)).encode())
        _FINGERPRINT = zlib.crc32(b"".join(parts))
    return _FINGERPRINT


def _code_bytes(code: Any) -> bytes:
    """A code object's bytecode, names and constants (nested code objects alike; no addresses)."""
    consts = [_code_bytes(c) if hasattr(c, "co_code")
              else repr(sorted(map(repr, c))).encode() if isinstance(c, frozenset)  # (its order: the hash seed's)
              else repr(c).encode() for c in code.co_consts]
    return code.co_code + repr(code.co_names).encode() + b"|".join(consts)


# -- encoding -------------------------------------------------------------------------------------

def _arr(code: str, values: Any) -> bytes:
    a = array(code, values)
    if _BIG_ENDIAN:
        a.byteswap()
    return bytes([ord(code)]) + struct.pack("<I", len(a)) + a.tobytes()


def _blob(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def _record_at(image: bytes, offset: int, msg: bytes, what: str) -> int:
    """`offset`, checked to be a live record of exactly `msg` in the store image."""
    try:
        flags, length = _FLAGS_LEN(image, offset)
    except struct.error:
        flags, length = DELETED, -1
    if flags & DELETED or length != len(msg) or not image.startswith(msg, offset + _REC_HEAD):
        raise CacheMismatch(f"{what}: the store's live record differs")
    return offset


def encode(snap: GraphSnapshot, index: StoreIndex, image: bytes) -> bytes:
    """The cache of `snap` for the store file whose bytes are `image` and live records `index`
    (taken together, on the store's worker, after the writes the snapshot's changes asked for).

    The cyclic garbage collector is held off meanwhile, as the store's load does (this makes a
    graph and a view of it, some 100,000 objects, none of them garbage until the end)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _encode(snap, index, image)
    finally:
        if enabled:
            gc.enable()


def _encode(snap: GraphSnapshot, index: StoreIndex, image: bytes) -> bytes:
    nodes = snap.nodes
    number = {nid: i for i, (nid, _) in enumerate(nodes)}
    # Each message is found by where it starts and ends in the store file (-1, -1: none).
    info_at: list[int] = []
    for nid, raw in nodes:
        if raw is None:
            info_at += (-1, -1)
        else:
            off = index.node.get(nid)
            if off is None:
                raise CacheMismatch("node_announcement not in the store")
            start = _record_at(image, off, raw, "node_announcement") + _REC_HEAD
            info_at += (start, start + len(raw))
    scids, n1s, n2s, caps, added, spent, public = [], [], [], [], [], [], []
    ann_at: list[int] = []
    h_at: list[int] = []
    h_ts: list[int] = []
    for scid, n1, n2, cap, added_at, spent_height, pub, ann, r0, r1 in snap.channels:
        scids.append(scid)
        n1s.append(number[n1])
        n2s.append(number[n2])
        caps.append(cap)
        added.append(added_at)
        public.append(1 if pub else 0)
        if ann is not None:
            offs = index.ann.get(scid)
            if offs is None:
                raise CacheMismatch("channel_announcement not in the store")
            start = _record_at(image, offs[0], ann, "channel_announcement") + _REC_HEAD
            ann_at += (start, start + len(ann))
        else:
            off = index.priv.get(scid)
            if pub or off is None:
                raise CacheMismatch("private channel not in the store")
            _record_at(image, off, private_channel_record(scid, n1, n2, cap), "private channel")
            ann_at += (-1, -1)
        # The spent mark as the store has it (its height is what a load from the store would give).
        dying = index.dying.get(scid)
        if (dying is None) != (spent_height is None):
            raise CacheMismatch("spent mark differs")
        if dying is not None:
            height = int.from_bytes(image[dying + _REC_HEAD + 10 : dying + _REC_HEAD + 14], "big")
            _record_at(image, dying, channel_dying_record(scid, height), "dying record")
            spent_height = height
        spent.append(-1 if spent_height is None else spent_height)
        for d, raw in ((0, r0), (1, r1)):
            if raw is None:
                h_at += (-1, -1)
                h_ts.append(0)
            else:
                off = index.upd.get(scid << 1 | d)
                if off is None:
                    raise CacheMismatch("channel_update not in the store")
                start = _record_at(image, off, raw, "channel_update") + _REC_HEAD
                h_at += (start, start + len(raw))
                h_ts.append(int.from_bytes(raw[106:110], "big"))
    body = [
        _blob(b"".join(nid for nid, _ in nodes)), _arr("q", info_at),
        _arr("Q", scids), _arr("I", n1s), _arr("I", n2s), _arr("Q", caps), _arr("q", added), _arr("q", spent),
        _arr("B", public), _arr("q", ann_at), _arr("q", h_at), _arr("I", h_ts),
    ]
    body += [_arr(code, col) for code, col in zip(_VIEW_CODES, _view_columns(snap, number))]
    body += _encode_index(index)  # (last: decoded when first needed, on the store's worker)
    data = b"".join(body)
    return _HEADER.pack(MAGIC, VERSION, code_fingerprint(), len(image), zlib.crc32(image), zlib.crc32(data)) + data


def _view_columns(snap: GraphSnapshot, number: dict[bytes, int]) -> list[Any]:
    """The path finder's view of the snapshot's graph by columns (see _VIEW_CODES): what
    EdgeView.rebuild makes of the graph decode() restores (its nodes numbered in the order the
    channels first name them, a channel's edges ordered by its place), without making that graph
    (some 25 MiB for 10,000 channels, which the process would keep).  The rules are rebuild's (a
    test compares the two)."""
    from ..route_view import unroutable_node

    order, src, scid_c, dirs, base_c, ppm_c, delta_c, hmin_c, hmax_c, cap_c, dst = (
        array("q") for _ in range(11))
    for i, (scid, n1, n2, cap, _, spent_height, _, ann, r0, r1) in enumerate(snap.channels):
        if spent_height is not None:
            continue
        if ann is not None and not routable_channel_features(ann[260 : 260 + (ann[258] << 8 | ann[259])]):
            continue
        cap_msat = cap * MSAT_PER_SAT if cap else None
        i1, i2 = number[n1], number[n2]
        for d, raw in ((0, r0), (1, r1)):
            if raw is None:
                continue
            _, _, flags, delta, hmin, base, ppm, hmax = channel_update_policy(raw)
            # BOLT #7: a disabled direction, or htlc_maximum_msat below htlc_minimum_msat or above
            # the capacity: not routed through (EdgeView._add).
            if flags & 2 or hmax < hmin or (cap_msat is not None and hmax > cap_msat):
                continue
            order.append(2 * i + d)
            src.append(i1 if d == 0 else i2)
            dst.append(i2 if d == 0 else i1)
            scid_c.append(scid)
            dirs.append(d)
            base_c.append(base)
            ppm_c.append(ppm)
            delta_c.append(delta)
            hmin_c.append(hmin)
            hmax_c.append(hmax)
            cap_c.append(-1 if cap_msat is None else cap_msat)
    n = len(number)
    # Each node's edges in, and out, in their order (a stable sort of edges already in order).
    by_dst = sorted(range(len(order)), key=dst.__getitem__)
    by_src = sorted(range(len(order)), key=src.__getitem__)

    def starts(ends: array) -> list[int]:
        counts = [0] * (n + 1)
        for e in ends:
            counts[e + 1] += 1
        return list(accumulate(counts))

    def permuted(col: array, perm: list[int]) -> list[int]:
        return list(map(col.__getitem__, perm))

    bad = [1 if raw is not None and unroutable_node(raw[68 : 68 + (raw[66] << 8 | raw[67])]) else 0
           for _, raw in snap.nodes]
    return [*(permuted(c, by_dst) for c in (order, src, scid_c, dirs, base_c, ppm_c, delta_c, hmin_c, hmax_c, cap_c)),
            starts(dst), *(permuted(c, by_src) for c in (dst, scid_c, base_c, ppm_c, delta_c)), starts(src), bad]


def _encode_index(index: StoreIndex) -> list[bytes]:
    ann = index.ann
    return [
        _arr("Q", list(ann)), _arr("q", [a for a, _ in ann.values()]), _arr("q", [b for _, b in ann.values()]),
        _arr("Q", list(index.upd)), _arr("q", list(index.upd.values())),
        _blob(b"".join(index.node)), _arr("q", list(index.node.values())),
        _arr("Q", list(index.priv)), _arr("q", list(index.priv.values())),
        _arr("Q", list(index.dying)), _arr("q", list(index.dying.values())),
        _arr("q", [index.live_bytes, index.deleted_bytes]),
    ]


# The view's columns (EdgeView.columns): incoming edges (order, src, scid, direction, base, ppm, cltv
# delta, htlc_min, htlc_max, capacity or -1) by destination, their starts, outgoing edges (dst, scid,
# base, ppm, cltv delta) by source, their starts, and the nodes not to route through.
_VIEW_CODES = ("I", "I", "Q", "B", "I", "I", "I", "Q", "Q", "q", "I", "I", "Q", "I", "I", "I", "I", "B")


# The store index's sections (_encode_index), the node ids' blob as "B".
_INDEX_CODES = ("Q", "q", "q", "Q", "q", "B", "q", "Q", "q", "Q", "q", "q")


# -- decoding -------------------------------------------------------------------------------------

class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data, self.pos = data, 0

    def blob(self) -> bytes:
        data, pos = self.data, self.pos
        if data[pos : pos + 1] != b"B":
            raise CacheInvalid("bad section")
        (n,) = struct.unpack_from("<I", data, pos + 1)
        self.pos = pos + 5 + n
        if self.pos > len(data):
            raise CacheInvalid("truncated")
        return bytes(data[pos + 5 : self.pos])

    def skip(self, code: str) -> None:
        data, pos = self.data, self.pos
        if data[pos : pos + 1] != code.encode():
            raise CacheInvalid("bad section")
        (n,) = struct.unpack_from("<I", data, pos + 1)
        self.pos = pos + 5 + n * _ITEMSIZE[code]
        if self.pos > len(data):
            raise CacheInvalid("truncated")

    def ints(self, code: str) -> list[int]:
        data, pos = self.data, self.pos
        if data[pos : pos + 1] != code.encode():
            raise CacheInvalid("bad section")
        (n,) = struct.unpack_from("<I", data, pos + 1)
        end = pos + 5 + n * _ITEMSIZE[code]
        if end > len(data):
            raise CacheInvalid("truncated")
        a = array(code)
        a.frombytes(data[pos + 5 : end])
        if _BIG_ENDIAN:
            a.byteswap()
        self.pos = end
        return a.tolist()


def decode(data: bytes, image: bytes, graph: Graph) -> tuple[Callable[[], StoreIndex], tuple[int, int, int]]:
    """Fill the empty `graph` (its path finder's view included) from the cache `data` of the store
    file whose bytes are `image`; returns what makes the store's index (some 35,000 dict entries
    for 10,000 channels: made on the store's worker, when it first writes) and the numbers of
    public channels, channel_updates and node_announcements loaded.  CacheInvalid (and `graph`
    left empty) if the cache is not for this file or does not hold together."""
    if len(data) < _HEADER.size:
        raise CacheInvalid("too short")
    magic, version, fingerprint, store_len, store_crc, body_crc = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise CacheInvalid("not a graph cache of this version")
    if fingerprint != code_fingerprint():
        raise CacheInvalid("made by other code (the view's rules may differ)")
    if store_len != len(image) or store_crc != zlib.crc32(image):
        raise CacheInvalid("stale: the gossip store changed")
    body = memoryview(data)[_HEADER.size :]
    if zlib.crc32(body) != body_crc:
        raise CacheInvalid("corrupt")
    try:
        r = _Reader(body)  # (a view of `data`: no copy)
        ids, scid_objs, n1s, n2s, counts = _decode_graph(r, image, graph)
        cols = [r.ints(code) for code in _VIEW_CODES]
        index_at = r.pos
        for code in _INDEX_CODES:  # the index's sections framed right (their contents: the CRC)
            r.skip(code)
        if r.pos != len(r.data):
            raise CacheInvalid("trailing bytes")
        from ..route_view import EdgeView

        graph.route_view = EdgeView.from_columns(graph, ids, scid_objs, n1s, n2s, cols)
        r.pos = index_at
        return (lambda: _decode_index(r)), counts
    except CacheInvalid:
        graph.__init__()  # type: ignore[misc]
        raise
    except Exception as e:  # (a bug, or a cache its CRC missed): the store is loaded instead, never a failed start
        graph.__init__()  # type: ignore[misc]
        raise CacheInvalid(f"does not hold together: {e!r}") from None


def _decode_graph(r: _Reader, image: bytes, graph: Graph) -> tuple[
        list[bytes], list[ShortChannelId], list[int], list[int], tuple[int, int, int]]:
    """The graph part of the cache into the empty `graph`: (node ids, scids, node numbers of ends,
    (public channels, updates, node announcements))."""
    blob = r.blob()
    ids = [blob[i : i + 33] for i in range(0, len(blob), 33)]
    info_at = r.ints("q")
    scids, n1s, n2s, caps, added, spent, public, ann_at, h_at, h_ts = (
        r.ints("Q"), r.ints("I"), r.ints("I"), r.ints("Q"), r.ints("q"), r.ints("q"), r.ints("B"), r.ints("q"),
        r.ints("q"), r.ints("I"))
    n = len(scids)
    if not (len(info_at) == 2 * len(ids) and len(n1s) == len(n2s) == len(caps) == len(added) == len(spent)
            == len(public) == n and len(ann_at) == len(h_ts) == 2 * n and len(h_at) == 4 * n):
        raise CacheInvalid("columns of different lengths")
    node_objs = [Node(nid) for nid in ids]
    graph.nodes.update(zip(ids, node_objs))
    adds = [node.channels.add for node in node_objs]
    channels = graph.channels
    new = object.__new__
    channel_cls, half_cls = Channel, Half
    # (ShortChannelId without its range check: a u64 column always fits)
    scid_objs = list(map(int.__new__, repeat(ShortChannelId), scids))
    seq = 0
    for scid, i1, i2, cap, added_at, spent_height, pub, a0, a1, s0, e0, t0, s1, e1, t1 in zip(
            scid_objs, n1s, n2s, caps, added, spent, public, ann_at[0::2], ann_at[1::2], h_at[0::4], h_at[1::4],
            h_ts[0::2], h_at[2::4], h_at[3::4], h_ts[1::2]):
        ch = new(channel_cls)
        ch.scid = scid
        ch.node1 = ids[i1]
        ch.node2 = ids[i2]
        ch.capacity_sat = cap
        if a0 >= 0:
            raw = ch.raw = image[a0:a1]
            ch.features = raw[260 : 260 + (raw[258] << 8 | raw[259])]
        else:
            ch.raw = None
            ch.features = b""
        ch.public = pub == 1
        ch.spent_height = None if spent_height < 0 else spent_height
        ch.added_at = added_at
        ch.seq = seq
        seq += 1
        h0 = h1 = None
        if s0 >= 0:
            h0 = new(half_cls)
            h0.raw = image[s0:e0]
            h0._checksum = None
            h0.timestamp = t0
        if s1 >= 0:
            h1 = new(half_cls)
            h1.raw = image[s1:e1]
            h1._checksum = None
            h1.timestamp = t1
        ch.halves = [h0, h1]
        channels[scid] = ch
        adds[i1](scid)
        adds[i2](scid)
    for node, start, end in zip(node_objs, info_at[0::2], info_at[1::2]):
        if start >= 0:
            # NodeInfo.unparsed without its length checks: these bytes passed them before the
            # cache was written, and the file is the same (its CRC).
            info = node.info = new(NodeInfo)
            info.node_id = node.node_id
            info.raw = raw = image[start:end]
            pos = 68 + (raw[66] << 8 | raw[67])
            info.features = raw[68:pos]
            info.timestamp = int.from_bytes(raw[pos : pos + 4], "big")
    graph._next_seq = seq
    graph.changed_scids.clear()
    graph.changed_nodes.clear()
    graph.loaded()
    return ids, scid_objs, n1s, n2s, (sum(public), 2 * n - h_at.count(-1) // 2, len(ids) - info_at.count(-1) // 2)


def _decode_index(r: _Reader) -> StoreIndex:
    ann_scid, ann_off, amt_off = r.ints("Q"), r.ints("q"), r.ints("q")
    upd_key, upd_off = r.ints("Q"), r.ints("q")
    blob = r.blob()
    node_off = r.ints("q")
    priv_scid, priv_off = r.ints("Q"), r.ints("q")
    dying_scid, dying_off = r.ints("Q"), r.ints("q")
    live, deleted = r.ints("q")
    node_ids = [blob[i : i + 33] for i in range(0, len(blob), 33)]
    if not (len(ann_scid) == len(ann_off) == len(amt_off) and len(upd_key) == len(upd_off)
            and len(node_ids) == len(node_off) and len(priv_scid) == len(priv_off) and len(dying_scid) == len(dying_off)):
        raise CacheInvalid("index columns of different lengths")
    return StoreIndex(dict(zip(ann_scid, zip(ann_off, amt_off))), dict(zip(upd_key, upd_off)),
                      dict(zip(node_ids, node_off)), dict(zip(priv_scid, priv_off)),
                      dict(zip(dying_scid, dying_off)), live, deleted)


__all__ = ["CacheInvalid", "CacheMismatch", "GraphSnapshot", "StoreIndex", "decode", "encode", "snapshot"]
