"""The gossip store file (`<netdir>/gossip_store`): opening, loading into the graph, appending, deleting in place
and compaction. The format is ampere.ln.gossip.gossip_store's; the I/O is here, in the runtime.

`GossipStore` is the blocking file (tests and benchmarks use it directly). The daemon wraps it in a `StoreWorker`:
every write and the compaction run on one worker thread, in the order they were asked, so the event loop never
waits for the disk and compaction never races an append.
"""

from __future__ import annotations

import asyncio
import gc
import os
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Callable, TypeVar

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


class GossipStore:
    """One store file.  `open` it, `load(graph)` once, then add messages as they are accepted.

    The store indexes its live records by what they describe, so adding a newer `channel_update`
    or `node_announcement` deletes the one it replaces, and `delete_channel` deletes everything
    about a channel.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._f: BinaryIO | None = None
        # ("ann", scid) -> [announcement offset, amount offset]; ("upd", scid, dir), ("node", id),
        # ("priv", scid), ("dying", scid) -> [offset]
        self._index: dict[tuple, list[int]] = {}
        self.live_bytes = 0
        self.deleted_bytes = 0

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

    def _load(self, graph: Graph) -> LoadStats:
        f = self._file()
        f.seek(0)
        buf = f.read()
        stats = LoadStats()
        self._index.clear()
        self.live_bytes = self.deleted_bytes = 0
        pending_ann: tuple[int, bytes, int] | None = None  # (offset, raw, timestamp)
        end = len(HEADER)
        # The common records inline (tens of thousands of them at start): the index entries set
        # directly when there is none to replace, a channel_update's channel and direction sliced
        # out (the whole message is parsed once, by the graph).
        index = self._index
        channels = graph.channels
        load_update = graph.load_channel_update
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
                        self._delete_offsets([offset])
                        stats.dropped += 1
                        continue
                    load_update(msg, ch)
                    key: tuple = ("upd", scid, msg[111] & 1)
                    old = index.get(key)
                    if old is not None:
                        self._delete_offsets(old)
                    index[key] = [offset]
                    updates += 1
                elif t == CHANNEL_ANNOUNCEMENT:
                    if pending_ann is not None:  # an announcement without its amount: unusable
                        self._delete_offsets([pending_ann[0]])
                        stats.dropped += 1
                    pending_ann = (offset, msg, timestamp)
                elif t == STORE_CHANNEL_AMOUNT:
                    if pending_ann is None:
                        self._delete_offsets([offset])
                        stats.dropped += 1
                        continue
                    ann_off, ann_raw, ann_ts = pending_ann
                    pending_ann = None
                    cap = int.from_bytes(msg[2:10], "big")
                    ch = graph.load_channel_announcement(ann_raw, SatInt(cap), now=ann_ts)
                    key = ("ann", ch.scid)
                    old = index.get(key)
                    if old is not None:
                        self._delete_offsets(old)
                    index[key] = [ann_off, offset]
                    stats.channels += 1
                elif t == NODE_ANNOUNCEMENT:
                    node_id = node_announcement_node_id(msg)
                    if node_id not in graph.nodes:
                        self._delete_offsets([offset])
                        stats.dropped += 1
                        continue
                    graph.load_node_announcement(node_id, msg)
                    self._replace(("node", node_id), [offset])
                    stats.nodes += 1
                elif t == STORE_PRIVATE_CHANNEL:
                    m = msg
                    scid = int.from_bytes(m[2:10], "big")
                    graph.add_private_channel(scid, m[10:43], m[43:76], SatInt(int.from_bytes(m[76:84], "big")),
                                              now=timestamp)
                    self._replace(("priv", scid), [offset])
                elif t == STORE_CHANNEL_DYING:
                    scid = int.from_bytes(msg[2:10], "big")
                    if graph.funding_spent(scid, int.from_bytes(msg[10:14], "big")):
                        self._replace(("dying", scid), [offset])
                    else:
                        self._delete_offsets([offset])
                else:
                    self._delete_offsets([offset])
                    stats.dropped += 1
            except (RawMessageError, KeyError, ValueError, IndexError):
                self._delete_offsets([offset])
                stats.dropped += 1
        if pending_ann is not None:
            self._delete_offsets([pending_ann[0]])
            stats.dropped += 1
        self.live_bytes += live
        stats.updates += updates
        graph.loaded()
        if end < len(buf):
            # A torn record at the end (we crashed while appending): cut it off.
            stats.truncated_bytes = len(buf) - end
            f.truncate(end)
        f.seek(0, os.SEEK_END)
        return stats

    # -- appending -----------------------------------------------------------------------------
    def _append(self, msgs: list[bytes], timestamp: int, flags: int = 0) -> list[int]:
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
        return offsets

    def _delete_offsets(self, offsets: list[int]) -> None:
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
        f.flush()

    def _replace(self, key: tuple, offsets: list[int]) -> None:
        old = self._index.get(key)
        if old is not None:
            self._delete_offsets(old)
        self._index[key] = offsets

    def add_channel_announcement(self, raw: bytes, capacity_sat: int, timestamp: int, push: bool = False) -> None:
        scid = channel_announcement_fields(raw).short_channel_id
        offs = self._append([raw, channel_amount_record(capacity_sat)], timestamp, PUSH if push else 0)
        self._replace(("ann", scid), offs)
        # An announced channel of ours is no longer private.
        old = self._index.pop(("priv", scid), None)
        if old is not None:
            self._delete_offsets(old)

    def add_private_channel(self, scid: int, node_a: bytes, node_b: bytes, capacity_sat: int, timestamp: int) -> None:
        n1, n2 = sorted((node_a, node_b))
        offs = self._append([private_channel_record(scid, n1, n2, capacity_sat)], timestamp)
        self._replace(("priv", scid), offs)

    def add_channel_update(self, raw: bytes, timestamp: int, push: bool = False) -> None:
        scid, direction = channel_update_scid_and_direction(raw)
        offs = self._append([raw], timestamp, PUSH if push else 0)
        self._replace(("upd", scid, direction), offs)

    def add_node_announcement(self, raw: bytes, timestamp: int, push: bool = False) -> None:
        node_id = node_announcement_node_id(raw)
        offs = self._append([raw], timestamp, PUSH if push else 0)
        self._replace(("node", node_id), offs)

    def mark_channel_dying(self, scid: int, height: int, timestamp: int) -> None:
        offs = self._append([channel_dying_record(scid, height)], timestamp)
        self._replace(("dying", scid), offs)

    def delete_channel(self, scid: int) -> None:
        for key in (("ann", scid), ("upd", scid, 0), ("upd", scid, 1), ("priv", scid), ("dying", scid)):
            old = self._index.pop(key, None)
            if old is not None:
                self._delete_offsets(old)

    def delete_node(self, node_id: bytes) -> None:
        old = self._index.pop(("node", node_id), None)
        if old is not None:
            self._delete_offsets(old)

    # -- compaction ----------------------------------------------------------------------------
    def should_compact(self) -> bool:
        """Worth rewriting: at least a megabyte is dead, and as much as is alive."""
        return self.deleted_bytes >= 1_000_000 and self.deleted_bytes >= self.live_bytes

    def compact(self) -> tuple[int, int]:
        """Rewrite the file with only its live records, in their order; returns (old, new) sizes."""
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
        self._index = {k: [remap[o] for o in offs if o in remap] for k, offs in self._index.items()}
        self.live_bytes = len(out) - len(HEADER)
        self.deleted_bytes = 0
        return len(buf), len(out)

    def records(self) -> list[Record]:
        """Every record in the file (deleted ones included), for inspection and tests."""
        f = self._file()
        f.seek(0)
        buf = f.read()
        f.seek(0, os.SEEK_END)
        return list(iter_records(buf))


def open_and_load(path: str, graph: Graph) -> tuple[GossipStore, LoadStats]:
    """Open the store at `path` and load it into `graph`; a file we cannot read is moved aside to
    `<path>.corrupt` and a new store started (gossip is refetched from peers). Blocking: run it off the loop."""
    store = GossipStore(path)
    try:
        store.open()
    except StoreFormatError:
        os.replace(path, path + ".corrupt")
        store.open()
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

    def _submit(self, fn: Callable, *args: object) -> None:
        self._pool.submit(fn, *args).add_done_callback(self._check)

    def _check(self, fut: Future) -> None:
        e = fut.exception()
        if e is not None:
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
