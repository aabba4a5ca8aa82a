"""The gossip store file (`<netdir>/gossip_store`): opening, loading into the graph, appending, deleting in place
and compaction. The format is ampere.ln.gossip.gossip_store's; the I/O is here, in the runtime.

`GossipStore` is the blocking file (tests and benchmarks use it directly). The daemon wraps it in a `StoreWorker`:
every write and the compaction run on one worker thread, in the order they were asked, so the event loop never
waits for the disk and compaction never races an append.
"""

from __future__ import annotations

import asyncio
import gc
import mmap
import os
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, TypeVar

from ampere.ln.gossip import graph_cache
from ampere.ln.gossip.graph import Graph
from ampere.ln.gossip.rawmsg import (
    CHANNEL_ANNOUNCEMENT, CHANNEL_UPDATE, NODE_ANNOUNCEMENT, RawMessageError, channel_announcement_fields,
    channel_update_scid_and_direction, node_announcement_node_id,
)
from ampere.ln.gossip.gossip_store import (
    DELETED, HEADER, MAGIC, PUSH, STORE_CHANNEL_AMOUNT, STORE_CHANNEL_DYING, STORE_PRIVATE_CHANNEL, VERSION, Record,
    StoreFormatError, channel_amount_record, channel_dying_record, encode_record, iter_records,
    iter_records_with_end, private_channel_record,
)
from ampere.primitives.amount import SatInt

_U16 = struct.Struct(">H")
T = TypeVar("T")


@dataclass
class LoadStats:
    channels: int = 0
    updates: int = 0
    nodes: int = 0
    deleted: int = 0
    dropped: int = 0  # live records that no longer made sense (e.g. an update without its channel)
    truncated_bytes: int = 0
    cached: bool = False  # loaded from the graph cache
    cpu_seconds: float = 0.0  # the loading thread's CPU time (set by the daemon's loader)


class GossipStore:
    """One store file.  `open` it, `load(graph)` once, then add messages as they are accepted.

    The store indexes its live records by what they describe, so adding a newer `channel_update`
    or `node_announcement` deletes the one it replaces, and `delete_channel` deletes everything
    about a channel.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._f: BinaryIO | None = None
        # The live records by what they describe (offsets in the file), one dict per kind with plain
        # keys (a 10,000-channel store has some 35,000 of them, made at every start):
        self._ann: dict[int, tuple[int, int]] = {}   # scid -> (announcement, amount record)
        self._upd: dict[int, int] = {}               # scid << 1 | direction -> channel_update
        self._node: dict[bytes, int] = {}            # node id -> node_announcement
        self._priv: dict[int, int] = {}              # scid -> private channel record
        self._dying: dict[int, int] = {}             # scid -> dying record
        self.live_bytes = 0
        self.deleted_bytes = 0
        # Bumped by every change to the file (append, delete, compaction, a torn tail cut off): a
        # graph cache made at one value describes the file as it was then (see write_cache).
        self.mutations = 0
        self._index_from_cache: Callable[[], graph_cache.StoreIndex] | None = None

    # -- opening and loading -------------------------------------------------------------------
    def open(self) -> "GossipStore":
        if not os.path.exists(self.path):
            with open(self.path, "wb") as f:
                f.write(HEADER)
                f.flush()
                os.fsync(f.fileno())
        self._f = open(self.path, "r+b")
        head = self._f.read(len(HEADER))
        if head[: len(MAGIC)] != MAGIC:
            self.close()
            raise StoreFormatError(f"{self.path} is not a gossip store")
        if head[len(MAGIC):] != bytes([VERSION]):
            self.close()
            raise StoreFormatError(f"{self.path}: store version {head[len(MAGIC):].hex()} is not {VERSION}")
        return self

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> "GossipStore":
        return self if self._f is not None else self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _file(self) -> BinaryIO:
        if self._f is None:
            raise ValueError("gossip store is not open")
        return self._f

    def load(self, graph: Graph) -> LoadStats:
        """Read every live record into `graph` (which should be empty) and index them.

        The cyclic garbage collector is held off meanwhile: the load makes some 150,000 objects
        that all live on, none of them garbage, and each collection it would trigger walks the
        ones made so far (a quarter of the load's CPU on a 10,000-channel graph)."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._load(graph)
        finally:
            if enabled:
                gc.enable()

    def _clear_index(self) -> None:
        for d in (self._ann, self._upd, self._node, self._priv, self._dying):
            d.clear()

    def _load(self, graph: Graph) -> LoadStats:
        f = self._file()
        f.seek(0)
        buf = f.read()
        stats = LoadStats()
        self._clear_index()
        self.live_bytes = self.deleted_bytes = 0
        pending_ann: tuple[int, bytes, int] | None = None  # (offset, raw, timestamp)
        end = len(HEADER)
        # The common records inline (tens of thousands of them at start): the index entries set
        # directly when there is none to replace, a channel_update's channel and direction sliced
        # out (the whole message is parsed once, by the graph).
        upd_index, ann_index = self._upd, self._ann
        channels = graph.channels
        load_update = graph.load_channel_update
        drop = self._delete_offsets
        live = 0  # bytes of live records (self.live_bytes, set at the end)
        updates = 0
        for offset, flags, timestamp, msg, end in iter_records_with_end(buf, len(HEADER)):
            if flags & DELETED:
                stats.deleted += 1
                self.deleted_bytes += 12 + len(msg)
                continue
            live += 12 + len(msg)
            t = (msg[0] << 8) | msg[1] if len(msg) >= 2 else -1
            try:
                if t == CHANNEL_UPDATE:
                    scid = int.from_bytes(msg[98:106], "big")
                    ch = channels.get(scid)
                    if ch is None or len(msg) < 138:
                        drop((offset,))
                        stats.dropped += 1
                        continue
                    load_update(msg, ch)
                    key = scid << 1 | (msg[111] & 1)
                    old = upd_index.get(key)
                    if old is not None:
                        drop((old,))
                    upd_index[key] = offset
                    updates += 1
                elif t == CHANNEL_ANNOUNCEMENT:
                    if pending_ann is not None:  # an announcement without its amount: unusable
                        drop((pending_ann[0],))
                        stats.dropped += 1
                    pending_ann = (offset, msg, timestamp)
                elif t == STORE_CHANNEL_AMOUNT:
                    if pending_ann is None:
                        drop((offset,))
                        stats.dropped += 1
                        continue
                    ann_off, ann_raw, ann_ts = pending_ann
                    pending_ann = None
                    cap = int.from_bytes(msg[2:10], "big")
                    ch = graph.load_channel_announcement(ann_raw, SatInt(cap), now=ann_ts)
                    old2 = ann_index.get(ch.scid)
                    if old2 is not None:
                        drop(old2)
                    ann_index[ch.scid] = (ann_off, offset)
                    stats.channels += 1
                elif t == NODE_ANNOUNCEMENT:
                    node_id = node_announcement_node_id(msg)
                    if node_id not in graph.nodes:
                        drop((offset,))
                        stats.dropped += 1
                        continue
                    graph.load_node_announcement(node_id, msg)
                    self._put(self._node, node_id, offset)
                    stats.nodes += 1
                elif t == STORE_PRIVATE_CHANNEL:
                    m = msg
                    scid = int.from_bytes(m[2:10], "big")
                    graph.add_private_channel(scid, m[10:43], m[43:76], SatInt(int.from_bytes(m[76:84], "big")),
                                              now=timestamp)
                    self._put(self._priv, scid, offset)
                elif t == STORE_CHANNEL_DYING:
                    scid = int.from_bytes(msg[2:10], "big")
                    if graph.funding_spent(scid, int.from_bytes(msg[10:14], "big")):
                        self._put(self._dying, scid, offset)
                    else:
                        drop((offset,))
                else:
                    drop((offset,))
                    stats.dropped += 1
            except (RawMessageError, KeyError, ValueError, IndexError):
                drop((offset,))
                stats.dropped += 1
        if pending_ann is not None:
            drop((pending_ann[0],))
            stats.dropped += 1
        self.live_bytes += live
        stats.updates += updates
        graph.loaded()
        if end < len(buf):
            # A torn record at the end (we crashed while appending): cut it off.
            stats.truncated_bytes = len(buf) - end
            f.truncate(end)
            self.mutations += 1
        f.seek(0, os.SEEK_END)
        return stats

    # -- appending -----------------------------------------------------------------------------
    def _append(self, msgs: list[bytes], timestamp: int, flags: int = 0) -> list[int]:
        if self._index_from_cache is not None:
            self.build_index()
        f = self._file()
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        offsets, chunks = [], []
        for msg in msgs:
            rec = encode_record(msg, timestamp, flags)
            offsets.append(pos)
            chunks.append(rec)
            pos += len(rec)
            self.live_bytes += len(rec)
        f.write(b"".join(chunks))
        f.flush()
        self.mutations += 1
        return offsets

    def _delete_offsets(self, offsets: Iterable[int]) -> None:
        f = self._file()
        for off in offsets:
            f.seek(off)
            head = f.read(4)
            if len(head) < 4:
                continue
            flags, length = _U16.unpack_from(head, 0)[0], _U16.unpack_from(head, 2)[0]
            if flags & DELETED:
                continue
            f.seek(off)
            f.write(_U16.pack(flags | DELETED))
            self.live_bytes -= 12 + length
            self.deleted_bytes += 12 + length
            self.mutations += 1
        f.flush()

    def _put(self, index: dict, key: Any, offset: int) -> None:
        """`offset` is now the live record for `key` (the one it replaces is deleted)."""
        old = index.get(key)
        if old is not None:
            self._delete_offsets((old,))
        index[key] = offset

    def _pop(self, index: dict, key: Any) -> None:
        if self._index_from_cache is not None:
            self.build_index()
        old = index.pop(key, None)
        if old is not None:
            self._delete_offsets(old if isinstance(old, tuple) else (old,))

    def add_channel_announcement(self, raw: bytes, capacity_sat: int, timestamp: int, push: bool = False) -> None:
        scid = channel_announcement_fields(raw).short_channel_id
        ann_off, amt_off = self._append([raw, channel_amount_record(capacity_sat)], timestamp, PUSH if push else 0)
        self._pop(self._ann, scid)
        self._ann[scid] = (ann_off, amt_off)
        # An announced channel of ours is no longer private.
        self._pop(self._priv, scid)

    def add_private_channel(self, scid: int, node_a: bytes, node_b: bytes, capacity_sat: int, timestamp: int) -> None:
        n1, n2 = sorted((node_a, node_b))
        [off] = self._append([private_channel_record(scid, n1, n2, capacity_sat)], timestamp)
        self._put(self._priv, scid, off)

    def add_channel_update(self, raw: bytes, timestamp: int, push: bool = False) -> None:
        scid, direction = channel_update_scid_and_direction(raw)
        [off] = self._append([raw], timestamp, PUSH if push else 0)
        self._put(self._upd, scid << 1 | direction, off)

    def add_node_announcement(self, raw: bytes, timestamp: int, push: bool = False) -> None:
        node_id = node_announcement_node_id(raw)
        [off] = self._append([raw], timestamp, PUSH if push else 0)
        self._put(self._node, node_id, off)

    def mark_channel_dying(self, scid: int, height: int, timestamp: int) -> None:
        [off] = self._append([channel_dying_record(scid, height)], timestamp)
        self._put(self._dying, scid, off)

    def delete_channel(self, scid: int) -> None:
        self._pop(self._ann, scid)
        self._pop(self._upd, scid << 1)
        self._pop(self._upd, scid << 1 | 1)
        self._pop(self._priv, scid)
        self._pop(self._dying, scid)

    def delete_node(self, node_id: bytes) -> None:
        self._pop(self._node, node_id)

    # -- compaction ----------------------------------------------------------------------------
    def should_compact(self) -> bool:
        """Worth rewriting: at least a megabyte is dead, and as much as is alive."""
        self.build_index()
        return self.deleted_bytes >= 1_000_000 and self.deleted_bytes >= self.live_bytes

    def compact(self) -> tuple[int, int]:
        """Rewrite the file with only its live records, in their order; returns (old, new) sizes."""
        self.build_index()
        f = self._file()
        f.seek(0)
        buf = f.read()
        tmp = self.path + ".compact"
        remap: dict[int, int] = {}
        out = bytearray(HEADER)
        end = len(HEADER)
        for offset, flags, _, _, end in iter_records_with_end(buf, len(HEADER)):
            if flags & DELETED:
                continue
            remap[offset] = len(out)
            out += buf[offset:end]
        with open(tmp, "wb") as g:
            g.write(out)
            g.flush()
            os.fsync(g.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        f.close()
        self._f = open(self.path, "r+b")
        self._f.seek(0, os.SEEK_END)
        self._ann = {k: (remap[a], remap[b]) for k, (a, b) in self._ann.items() if a in remap and b in remap}
        self._upd = {k: remap[o] for k, o in self._upd.items() if o in remap}
        self._node = {k: remap[o] for k, o in self._node.items() if o in remap}
        self._priv = {k: remap[o] for k, o in self._priv.items() if o in remap}
        self._dying = {k: remap[o] for k, o in self._dying.items() if o in remap}
        self.live_bytes = len(out) - len(HEADER)
        self.deleted_bytes = 0
        self.mutations += 1
        return len(buf), len(out)

    # -- the graph cache (ampere.ln.gossip.graph_cache) -----------------------------------------
    def load_cached(self, graph: Graph, cache: bytes, defer_index: bool = False) -> LoadStats:
        """load(graph) from the graph cache `cache` of this file: CacheInvalid (nothing loaded, the
        file untouched) unless the cache is for the file as it is (its length and CRC-32).
        `defer_index`: the index of live records is made by build_index(), before the first write."""
        f = self._file()
        f.flush()
        f.seek(0, os.SEEK_END)
        # The file mapped, not read: the messages are copied out of it, and its pages leave the
        # process with the mapping (a read would leave the heap some 8 MB larger for good).
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as image:
            self._index_from_cache, (channels, updates, nodes) = graph_cache.decode(
                cache, image, graph)  # type: ignore[arg-type]
        if not defer_index:
            self.build_index()
        return LoadStats(channels=channels, updates=updates, nodes=nodes, cached=True)

    def build_index(self) -> None:
        """After load_cached(defer_index=True): make the index (before any write; StoreWorker does it first)."""
        make, self._index_from_cache = self._index_from_cache, None
        if make is not None:
            index = make()
            # (into the dicts themselves: a caller may hold one already, as _pop's argument)
            pairs: list[tuple[dict[Any, Any], dict[Any, Any]]] = [
                (self._ann, index.ann), (self._upd, index.upd), (self._node, index.node), (self._priv, index.priv),
                (self._dying, index.dying)]
            for mine, theirs in pairs:
                mine.clear()
                mine.update(theirs)
            self.live_bytes, self.deleted_bytes = index.live_bytes, index.deleted_bytes

    def write_cache(self, snap: graph_cache.GraphSnapshot, path: str,
                    before_rename: Callable[[], None] | None = None) -> int:
        """Write the graph cache of `snap` (taken after the writes asked before this call) for this
        file as it is now; returns its size.  CacheMismatch if the graph and the file disagree.
        Not fsynced: a cache lost or torn in a crash fails its checks and the store is loaded instead."""
        f = self._file()
        f.seek(0)
        image = f.read()
        f.seek(0, os.SEEK_END)
        self.build_index()
        index = graph_cache.StoreIndex(self._ann, self._upd, self._node, self._priv, self._dying,
                                       self.live_bytes, self.deleted_bytes)
        data = graph_cache.encode(snap, index, image)
        tmp = path + ".tmp"
        with open(tmp, "wb") as g:
            g.write(data)
        if before_rename is not None:
            before_rename()  # (--dev-crash-before=gossip_cache)
        os.replace(tmp, path)
        return len(data)

    def records(self) -> list[Record]:
        """Every record in the file (deleted ones included), for inspection and tests."""
        f = self._file()
        f.seek(0)
        buf = f.read()
        f.seek(0, os.SEEK_END)
        return list(iter_records(buf))


def cache_path(store_path: str) -> str:
    return store_path + ".cache"


def open_and_load(path: str, graph: Graph, use_cache: bool = False) -> tuple[GossipStore, LoadStats]:
    """Open the store at `path` and load it into `graph` (from its graph cache if `use_cache` and the
    cache is for the file as it is); a file we cannot read is moved aside to `<path>.corrupt` and a
    new store started (gossip is refetched from peers). Blocking: run it off the loop."""
    store = GossipStore(path)
    try:
        store.open()
    except StoreFormatError:
        os.replace(path, path + ".corrupt")
        store.open()
    if use_cache:
        try:
            with open(cache_path(path), "rb") as f:
                cache = f.read()
        except OSError:
            pass
        else:
            try:
                # (the index is made by the StoreWorker the daemon wraps the store in)
                return store, store.load_cached(graph, cache, defer_index=True)
            except graph_cache.CacheInvalid:
                pass
    return store, store.load(graph)


class StoreWorker:
    """One GossipStore whose file I/O all runs on one worker thread, in the order it was asked (the store is
    touched by that thread only). Writes are fire-and-forget for the caller (the graph in memory is already
    updated; a write that fails is reported to `on_error` and gossip is refetched after a restart); compaction
    and close are awaited. Crash safety is the store's own: appends go to the end, compaction writes a new file,
    fsyncs it, renames it over the old one and fsyncs the directory."""

    def __init__(self, store: GossipStore, on_error: Callable[[str], None]) -> None:
        self.store = store
        self._on_error = on_error
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gossip-store")
        self.failed = False  # a write failed: the file lacks what the graph has (no graph cache made from them)
        self._submit(store.build_index)  # (loaded from the graph cache: the index is made here, first)

    def _submit(self, fn: Callable, *args: object) -> None:
        self._pool.submit(fn, *args).add_done_callback(self._check)

    def _check(self, fut: Future) -> None:
        e = fut.exception()
        if e is not None:
            self.failed = True
            self._on_error(f"gossip_store write failed: {e!r}")

    # The writes GossipState makes (ampere.ln.gossip.state.GossipSink).
    def add_channel_announcement(self, raw: bytes, capacity_sat: int, timestamp: int, push: bool = False) -> None:
        self._submit(self.store.add_channel_announcement, raw, capacity_sat, timestamp, push)

    def add_private_channel(self, scid: int, node_a: bytes, node_b: bytes, capacity_sat: int, timestamp: int) -> None:
        self._submit(self.store.add_private_channel, scid, node_a, node_b, capacity_sat, timestamp)

    def add_channel_update(self, raw: bytes, timestamp: int, push: bool = False) -> None:
        self._submit(self.store.add_channel_update, raw, timestamp, push)

    def add_node_announcement(self, raw: bytes, timestamp: int, push: bool = False) -> None:
        self._submit(self.store.add_node_announcement, raw, timestamp, push)

    def mark_channel_dying(self, scid: int, height: int, timestamp: int) -> None:
        self._submit(self.store.mark_channel_dying, scid, height, timestamp)

    def delete_channel(self, scid: int) -> None:
        self._submit(self.store.delete_channel, scid)

    def delete_node(self, node_id: bytes) -> None:
        self._submit(self.store.delete_node, node_id)

    # Awaited work: queued when called (not when first awaited), behind the writes asked before it.
    def _run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        return asyncio.wrap_future(self._pool.submit(fn))

    def synced(self) -> asyncio.Future[None]:
        """Done once every write asked so far is in the file."""
        return self._run(lambda: None)

    def write_cache(self, snap: graph_cache.GraphSnapshot, path: str,
                    before_rename: Callable[[], None] | None = None) -> asyncio.Future[tuple[int, int]]:
        """GossipStore.write_cache on the worker, after the writes asked before (CacheMismatch, OSError):
        (its size, the store's `mutations` it is for)."""
        return self._run(lambda: (self.store.write_cache(snap, path, before_rename), self.store.mutations))

    def maybe_compact(self) -> asyncio.Future[tuple[int, int] | None]:
        """Compact if worth it (decided on the worker, after the writes queued before): (old, new) sizes."""
        def run() -> tuple[int, int] | None:
            return self.store.compact() if self.store.should_compact() else None
        return self._run(run)

    async def close(self) -> None:
        try:
            await self._run(self.store.close)
        finally:
            self._pool.shutdown(wait=False)
