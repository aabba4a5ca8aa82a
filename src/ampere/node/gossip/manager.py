"""The gossip runtime (BOLT #7): receiving, checking, storing and relaying gossip; syncing the graph
with new peers; forgetting stale and closed channels; and our own announcements.

The protocol work is done by the I/O-free core in ampere.ln.gossip (GossipState: validator, graph
and store kept together; queries.py: gossip queries and the sync session).  This module only adds
what needs the event loop: the peers, the chain, and timers.

    node.gossip = GossipManager.for_node(node); await node.gossip.start()

Per gossip message from a peer (or `addgossip`): the core checks it; a `channel_announcement` whose
signatures hold has its funding output looked up on the chain (block -> tx -> output, then
`gettxout` says whether it is unspent); accepted messages go to the graph and the store file
(`<netdir>/gossip_store`) and are queued for relay.  Every `broadcast_interval` (60 s, 1 s with
--dev-fast-gossip) the queue goes out to each peer whose `gossip_timestamp_filter` lets it through.

For the channel manager (announcing our own channels):
    gossip.add_private_channel(scid, peer_id, capacity_sat)          an unannounced channel of ours
    await gossip.local_channel_update(peer_id, raw_update)           its update, sent only to the peer
    gossip.announce_channel(raw_announcement, capacity_sat, funding_outpoint=None)
    gossip.add_own_update(raw_update)                                our update of a public channel
    gossip.channel_closed(scid, height)                              forgotten 12 blocks later
    gossip.refresh_node_announcement()                               alias/colour/addresses/features
    gossip.update_refresher = async fn(scid) -> raw | None           re-signs our update before it goes stale
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ampere.chain.bitcoind import BitcoindError, BitcoindUnreachable
from ampere.ln.gossip.addresses import Address, address_from_host, encode_addresses
from ampere.ln.gossip.graph import STALE_SECONDS
from ampere.ln.gossip.queries import (
    QueryError, SyncSession, TimestampFilter, gossip_for_filter, reply_channel_range, reply_short_channel_ids,
    timestamp_filter_message,
)
from ampere.ln.gossip.rawmsg import (
    CHANNEL_ANNOUNCEMENT, CHANNEL_UPDATE, NODE_ANNOUNCEMENT, RawMessageError, channel_announcement_fields,
    channel_update_fields, msg_type, node_announcement_fields,
)
from ampere.ln.gossip.signing import make_node_announcement
from ampere.ln.gossip.state import GossipState, Received
from ampere.ln.gossip.validate import Accept, Ignore, Verdict, Warn
from ampere.ln.route_view import EdgeView
from ampere.primitives.tx import OutPoint
from ampere.wire import bolt1
from ampere.wire.messages import (
    ChannelAnnouncement, GossipTimestampFilter, QueryChannelRange, QueryShortChannelIds, ReplyChannelRange,
    ReplyShortChannelIdsEnd,
)
from ampere.wire.types import ShortChannelId
from ampere.ln.gossip import graph_cache
from ampere.node.gossip.store_file import StoreWorker, cache_path, open_and_load
from ampere.node.app.tasks import cancel_and_wait, spawn_guarded
from ampere.node.net.connection import PeerDisconnected

LOG = "gossipd"

GOSSIP_TYPES = (CHANNEL_ANNOUNCEMENT, NODE_ANNOUNCEMENT, CHANNEL_UPDATE)
QUERY_TYPES = (QueryShortChannelIds.TYPE, ReplyShortChannelIdsEnd.TYPE, QueryChannelRange.TYPE,
               ReplyChannelRange.TYPE, GossipTimestampFilter.TYPE)

# Ignore verdicts that addgossip reports as errors: the message is bad, or could not be checked.  The
# others (duplicate, old, rate limited, unknown channel) are the ordinary noise of a gossip network.
ADDGOSSIP_ERRORS = frozenset({"no_funding_output", "wrong_funding_script", "unknown_chain", "not_gossip",
                              "future_timestamp", "unknown_node", "lookup_failed"})

# BOLT #7: "SHOULD forget a channel after a 12-block delay" once its funding output is spent.
SPENT_DELAY = 12
SEND_CHUNK = 64  # messages queued to a peer between two waits for its socket to drain
MAX_CONCURRENT_SYNCS = 2
INITIAL_SYNC_PEERS = 3  # peers we run a full range query with after start
SYNC_STALL_SECONDS = 60.0
BLOCK_CACHE = 256  # blocks whose txids we keep for funding lookups


class GossipError(Exception):
    """`add_gossip` refused a message: `str(e)` says why."""


class FundingLookupError(Exception):
    """The chain backend could not answer (not: the output does not exist)."""


@dataclass
class PeerGossip:
    node_id: bytes
    queries: bool  # gossip_queries negotiated
    # What the peer asked to get relayed (BOLT #7 gossip_timestamp_filter).  None: nothing but our
    # own gossip (a gossip_queries peer that sent no filter).
    filter: TimestampFilter | None = None
    sync: SyncSession | None = None
    sync_progress_at: float = 0.0
    dump_task: asyncio.Task | None = None
    last_warning_at: float = 0.0


@dataclass
class RelayItem:
    raw: bytes
    timestamp: int
    source: bytes | None  # the peer it came from (not sent back to it)
    push: bool = False  # our own: goes to every peer, whatever its filter


@dataclass
class GossipConfig:
    broadcast_interval: float = 60.0
    prune_interval: float = 86_400.0
    stale_seconds: int = STALE_SECONDS
    own_refresh_age: int = STALE_SECONDS // 2  # re-sign our updates once they are a week old
    # The graph cache is written at stop and, when the store changed, every cache_interval (the
    # first time cache_first seconds after a start that could not use it).
    cache_interval: float = 600.0
    cache_first: float = 30.0
    filter_lookback: int = 600  # gossip_timestamp_filter starts this many seconds before we connect


# A loaded graph at least this large is frozen out of the GC's generations (see _load_graph).
_FREEZE_CHANNELS = 1000


def _load_graph(path: str, graph: Any) -> tuple[Any, Any]:
    """Load the store into `graph` and make the path finder's view of it (made now rather than by
    the first payment; it is then kept up to date as gossip changes the graph), off the event loop:
    from the graph cache (ln/gossip/graph_cache.py) when it is for the store as it is, else from
    the store's records.

    The cyclic garbage collector is held off meanwhile, as GossipStore.load does (the view is
    another 60,000 objects that live on), and a large graph is then frozen (gc.freeze: moved out
    of the generations the collector walks), else the first collection after it would walk all
    of it at once, on the event loop; none of it is cyclic garbage, and the node's later
    collections need not walk it again and again either.  (A small graph is not worth it: a
    process that starts many nodes, as tests do, would freeze its own garbage each time.)"""
    enabled = gc.isenabled()
    gc.disable()
    cpu = time.thread_time()
    try:
        store, stats = open_and_load(path, graph, use_cache=True)
        EdgeView.of(graph)  # (made by the cache already when loaded from it)
        if len(graph.channels) >= _FREEZE_CHANNELS:
            gc.freeze()
    finally:
        if enabled:
            gc.enable()
    stats.cpu_seconds = time.thread_time() - cpu  # (the wall time also says how loaded the machine is)
    return store, stats


class GossipManager:
    def __init__(self, node: Any, config: GossipConfig | None = None) -> None:
        self.node = node
        self.config = config or GossipConfig()
        self.chain_hash = bolt1.chain_hash(node.network)
        self.store_path = os.path.join(node.netdir, "gossip_store")
        self.state = GossipState(self.chain_hash)   # its store is set once the file is loaded (start)
        self.store: StoreWorker | None = None
        self.our_id: bytes = node.node_id
        self._sign = node.signer
        self._peers: dict[bytes, PeerGossip] = {}
        self._relay: dict[tuple, RelayItem] = {}
        self._relayed_announcements: set[int] = set()
        self._funding: dict[tuple[bytes, int], int] = {}  # funding outpoint -> scid (spend watch)
        self._block_txids: dict[int, tuple[bytes, list[str]]] = {}  # height -> (block hash, txids)
        self._lookups: dict[int, asyncio.Future] = {}  # scid -> funding lookup in progress
        self._tasks: set[asyncio.Task] = set()
        self._syncs_started = 0
        self._own_node_ann: bytes | None = None  # built, waiting for a public channel
        self.update_refresher: Callable[[int], Awaitable[bytes | None]] | None = None
        self.counts: Counter[str] = Counter()  # received / accepted / rejected / relayed ...
        self._logged: Counter[str] = Counter()
        self.load_stats: Any = None
        self.load_seconds = 0.0
        self._cache_mutations = -1  # the store's `mutations` the graph cache on disk is for (-1: none)

    @classmethod
    def for_node(cls, node: Any) -> "GossipManager":
        o = node.options
        cfg = GossipConfig()
        if _opt(o, "dev-fast-gossip"):
            cfg.broadcast_interval = 1.0
            cfg.filter_lookback = 50
        if _opt(o, "dev-fast-gossip-prune"):
            # As lightningd's --dev-fast-gossip-prune: channels go stale after two minutes.
            cfg.stale_seconds = 120
            cfg.prune_interval = 5.0
            cfg.own_refresh_age = 60
        return cls(node, cfg)

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        t0 = time.perf_counter()
        file_store, self.load_stats = await asyncio.to_thread(_load_graph, self.store_path, self.state.graph)
        self.store = StoreWorker(file_store, lambda msg: self.node.log.broken(LOG, msg))
        self.state.store = self.store
        self.load_seconds = time.perf_counter() - t0
        graph = self.state.graph
        # Everything loaded was relayed (or was not worth relaying) before the restart.
        self._relayed_announcements.update(s for s, c in graph.channels.items() if c.public)
        s = self.load_stats
        how = "graph cache" if s.cached else f"{s.deleted} deleted, {s.dropped} dropped"
        self.node.log.info(LOG, f"gossip_store: {s.channels} channels, {s.updates} updates, {s.nodes} nodes loaded "
                                f"in {self.load_seconds * 1000:.0f}ms, {s.cpu_seconds * 1000:.0f}ms CPU ({how})")
        # The cache is for the store as it is now (loaded from it), or to be made.
        self._cache_mutations = file_store.mutations if s.cached else -1
        pm = self.node.peer_manager
        pm.add_message_handler(GOSSIP_TYPES, self._on_gossip)
        pm.add_message_handler(QUERY_TYPES, self._on_query)
        pm.on_connect(self._on_connect)
        pm.on_disconnect(self._on_disconnect)
        if self.node.chain is not None:
            self.node.chain.add_listener(self)
            loaded = [s for s, c in graph.channels.items() if c.public and c.spent_height is None]
            self._spawn(self._check_loaded_funding(loaded), "gossip-check-funding")
        self._spawn(self._broadcast_loop(), "gossip-broadcast")
        self._spawn(self._prune_loop(), "gossip-prune")
        self._spawn(self._cache_loop(), "gossip-cache")

    def peers_started(self) -> None:
        """Called once the peer manager listens: our announced addresses are known now."""
        if self._own_public_channels():
            self.refresh_node_announcement(only_if_changed=True)

    async def stop(self) -> None:
        for p in self._peers.values():
            if p.dump_task is not None:
                p.dump_task.cancel()
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        if self.store is not None:
            await self.write_cache()
            self.state.store = None
            await self.store.close()

    # ---- the graph cache --------------------------------------------------------------------
    async def _cache_loop(self) -> None:
        delay = self.config.cache_interval if self._cache_mutations >= 0 else self.config.cache_first
        while True:
            await asyncio.sleep(delay)
            delay = self.config.cache_interval
            await self.write_cache()

    async def write_cache(self) -> bool:
        """Write the graph cache if the store changed since it was last written (or loaded)."""
        store = self.store
        if store is None or store.failed:
            return False
        # `mutations` moves on the worker thread as it applies the writes queued to it: read it once those asked
        # so far are applied, or a change just asked for (an `addgossip` answered a moment ago) goes unseen and a
        # clean stop leaves the cache of the store as it was before it.
        await store.synced()
        if store.store.mutations == self._cache_mutations:
            return False
        # The graph's values now (on the loop, between two changes), the store's file after the
        # writes those changes asked for: the worker runs them first.
        try:
            snap = graph_cache.snapshot(self.state.graph)
            cm = self.node.channel_manager
            crash = (lambda: cm.crash_point("gossip_cache")) if cm is not None else None
            size, self._cache_mutations = await store.write_cache(snap, cache_path(self.store_path), crash)
        except graph_cache.CacheMismatch as e:
            self.node.log.debug(LOG, f"graph cache not written: {e}")
            return False
        except OSError as e:
            self.node.log.unusual(LOG, f"graph cache not written: {e!r}")
            return False
        except Exception as e:  # a bug: say so, and carry on (the store is loaded without it)
            self.node.log.broken(LOG, f"graph cache not written: {e!r}")
            return False
        self.node.log.debug(LOG, f"graph cache written: {size} bytes")
        return True

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task:
        return spawn_guarded(self._tasks, coro, name, lambda msg: self.node.log.broken(LOG, msg))

    # ---- receiving gossip -------------------------------------------------------------------
    async def _on_gossip(self, peer_id: bytes, msg: Any, raw: bytes) -> None:
        verdict = await self.ingest(raw, source=peer_id)
        if isinstance(verdict, Warn):
            # BOLT #7: on a bad signature the receiver "SHOULD send a `warning`" (at most one a
            # second, so that a flood of bad gossip does not turn into a flood of warnings).
            p = self._peers.get(peer_id)
            now = time.monotonic()
            if p is not None and now - p.last_warning_at >= 1.0:
                p.last_warning_at = now
                peer = self.node.peer_manager.get(peer_id)
                if peer is not None:
                    try:
                        peer.send_nowait(bolt1.make_warning(f"Bad gossip: {verdict.reason}").to_bytes())
                    except PeerDisconnected:
                        pass

    async def ingest(self, raw: bytes, source: bytes | None = None) -> Verdict:
        """Check one gossip message and, if valid, apply, store and queue it for relay."""
        self.counts["received"] += 1
        now = int(time.time())
        try:
            r = self.state.receive(raw, now)
            if r.need_funding is not None:
                ann = r.need_funding
                try:
                    utxo = await self._funding_for(ann)
                except FundingLookupError as e:
                    # Not the message's fault: it is dropped uncounted by the validator (a peer
                    # will send it again, e.g. in the next sync).
                    r = Received(Ignore("lookup_failed", f"channel {ann.short_channel_id}: {e}"), ann)
                else:
                    r = self.state.receive_funding(ann, raw, utxo, now)
                    if isinstance(r.verdict, Accept):
                        self._watch_funding(ann.short_channel_id)
            elif (isinstance(r.verdict, Ignore) and r.verdict.code == "unknown_channel"
                  and msg_type(raw) == CHANNEL_UPDATE):
                # Its announcement may be waiting for the chain (from another peer): wait for it.
                scid = int.from_bytes(raw[98:106], "big")
                pending = self._lookups.get(scid)
                if pending is not None:
                    try:
                        await asyncio.shield(pending)
                    except FundingLookupError:
                        pass
                    r = self.state.receive(raw, int(time.time()))
        except (RawMessageError, ValueError, KeyError, IndexError) as e:
            # The core never raises on bad input; this is a bug, so say so and carry on.
            self.node.log.broken(LOG, f"gossip message {raw[:2].hex()} could not be processed: {e!r}")
            self.counts["rejected"] += 1
            return Warn("internal", str(e))
        v = r.verdict
        if isinstance(v, Accept):
            self.counts["accepted"] += 1
            if msg_type(raw) == CHANNEL_UPDATE:
                self._log_update(raw)
            if r.relay:
                self._queue_relay(raw, source)
        else:
            self.counts["rejected"] += 1
            self.counts[f"rejected:{v.code}"] += 1
            self._log_rejection(raw, v, source)
        return v

    def _log_update(self, raw: bytes) -> None:
        # gossipd's words (tests wait for them): "Received channel_update for channel SCID/DIR now ...".
        if len(raw) < 112:
            return
        scid = int.from_bytes(raw[98:106], "big")
        flags = raw[111]  # channel_flags: bit 0 direction, bit 1 disable
        self.node.log.debug(LOG, f"Received channel_update for channel {scid >> 40}x{(scid >> 16) & 0xFFFFFF}x"
                                 f"{scid & 0xFFFF}/{flags & 1} now {'DISABLED' if flags & 2 else 'ACTIVE'}")

    def _log_rejection(self, raw: bytes, v: Ignore | Warn, source: bytes | None) -> None:
        # One line per kind for the first few, then one in a thousand: a flood must not fill the log.
        n = self._logged[v.code] = self._logged[v.code] + 1
        if n <= 20 or n % 1000 == 0:
            who = source.hex() if source is not None else "addgossip"
            level = "unusual" if isinstance(v, Warn) else "debug"
            self.node.log.log(level, LOG, f"Rejected gossip {_type_name(raw)} from {who}: {v.code}: {v.reason}"
                                          + (f" ({n} so far)" if n > 20 else ""))

    async def add_gossip(self, raw: bytes) -> None:
        """`addgossip`: raises GossipError if the message is not valid gossip."""
        if len(raw) < 2 or msg_type(raw) not in GOSSIP_TYPES:
            t = msg_type(raw) if len(raw) >= 2 else None
            raise GossipError(f"Not a gossip message: type {t}")
        v = await self.ingest(raw)
        if isinstance(v, Warn) or (isinstance(v, Ignore) and v.code in ADDGOSSIP_ERRORS):
            raise GossipError(f"{v.code}: {v.reason}" if v.reason else v.code)

    # ---- funding outputs --------------------------------------------------------------------
    async def _funding_for(self, ann: ChannelAnnouncement) -> tuple[int, bytes] | None:
        scid = int(ann.short_channel_id)
        pending = self._lookups.get(scid)
        if pending is not None:
            result = await asyncio.shield(pending)
            return result[0] if result else None
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._lookups[scid] = fut
        try:
            found = await self.lookup_funding(scid)
            fut.set_result(found)
        except BaseException as e:
            fut.set_exception(e if isinstance(e, FundingLookupError) else FundingLookupError(repr(e)))
            fut.exception()  # retrieved here: waiters re-raise it
            raise
        finally:
            del self._lookups[scid]
        return found[0] if found else None

    async def lookup_funding(self, scid: int) -> tuple[tuple[int, bytes], OutPoint] | None:
        """((amount_sat, script_pubkey), outpoint) of the unspent output `scid` points at, or None.
        Raises FundingLookupError if the backend cannot be reached."""
        chain = self.node.chain
        if chain is None:
            return None
        s = ShortChannelId(scid)
        # BOLT #7 (origin): a channel is announced once its funding has 6 confirmations; anything
        # beyond our tip cannot be checked yet.
        if chain.height < 0 or s.block > chain.height:
            return None
        try:
            txids = await self._txids_of_block(s.block)
            if txids is None or s.txindex >= len(txids):
                return None
            outpoint = OutPoint.from_hex(txids[s.txindex], s.output)
            out = await chain.gettxout(outpoint, include_mempool=False)
        except BitcoindUnreachable as e:
            raise FundingLookupError(f"bitcoind unreachable: {e}") from None
        except (BitcoindError, ValueError, KeyError, TypeError) as e:
            self.node.log.debug(LOG, f"funding lookup of {s}: {e}")
            return None
        # The output is in block s.block (its txid is that block's s.txindex-th), at or below our tip: mined,
        # as lightningd concludes from the short_channel_id without asking the backend for confirmations.
        if out is None:
            return None
        return (out["value_sat"], out["script"]), outpoint

    async def _txids_of_block(self, height: int) -> list[str] | None:
        chain = self.node.chain
        block_hash = await chain.backend.blockhash(height)
        if block_hash is None:
            return None
        cached = self._block_txids.get(height)
        if cached is not None and cached[0] == block_hash:
            return cached[1]
        block = await chain.block_at(height)
        if block is None:
            return None
        txids = [tx.txid()[::-1].hex() for tx in block.txs]
        if len(self._block_txids) >= BLOCK_CACHE:
            self._block_txids.pop(next(iter(self._block_txids)))
        self._block_txids[height] = (block_hash, txids)
        return txids

    def _watch_funding(self, scid: int, outpoint: OutPoint | None = None) -> None:
        if outpoint is None:
            # Fill in from the lookup we just did (its block is cached).
            s = ShortChannelId(scid)
            cached = self._block_txids.get(s.block)
            if cached is None or s.txindex >= len(cached[1]):
                return
            outpoint = OutPoint.from_hex(cached[1][s.txindex], s.output)
        self._funding[(outpoint.txid, outpoint.vout)] = int(scid)

    async def _check_loaded_funding(self, scids: list[int]) -> None:
        """Channels from the store: find their funding outpoints (to see them spent), and forget
        those spent while we were not running."""
        chain = self.node.chain
        while chain.height < 0:
            await asyncio.sleep(0.5)
        spent = 0
        for scid in scids:
            ch = self.state.graph.channel(scid)
            if ch is None or ch.spent_height is not None:
                continue
            while True:
                try:
                    found = await self.lookup_funding(scid)
                    break
                except FundingLookupError:
                    await asyncio.sleep(5)  # the backend is down: the watcher says so; try again
            if found is None:
                self.state.funding_spent(scid, chain.height, int(time.time()))
                spent += 1
            else:
                self._watch_funding(scid, found[1])
        if scids:
            self.node.log.debug(LOG, f"Checked the funding of {len(scids)} stored channels: {spent} spent")

    # ---- chain listener ---------------------------------------------------------------------
    async def block_connected(self, height: int, block: Any) -> None:
        now = int(time.time())
        if self._funding:
            for tx in block.txs:
                for txin in tx.inputs:
                    scid = self._funding.pop((txin.prevout.txid, txin.prevout.vout), None)
                    if scid is not None:
                        self.node.log.debug(LOG, f"Funding output of {ShortChannelId(scid)} spent at block "
                                                 f"{height}: forgetting it after {SPENT_DELAY} blocks")
                        self.state.funding_spent(scid, height, now)
        for scid in self.state.new_block(height, SPENT_DELAY):
            self._relayed_announcements.discard(scid)
            self.node.log.info(LOG, f"Deleting channel {ShortChannelId(scid)} due to the funding outpoint being spent")

    async def block_disconnected(self, height: int, block_hash: bytes, block: Any) -> None:
        self._block_txids.pop(height, None)

    # ---- relaying ---------------------------------------------------------------------------
    def _queue_relay(self, raw: bytes, source: bytes | None, push: bool = False) -> None:
        t = msg_type(raw)
        if t == CHANNEL_UPDATE:
            f = channel_update_fields(raw)
            self._relay[("upd", f.short_channel_id, f.channel_flags & 1)] = RelayItem(raw, f.timestamp, source, push)
        elif t == NODE_ANNOUNCEMENT:
            f2 = node_announcement_fields(raw)
            self._relay[("node", f2.node_id)] = RelayItem(raw, f2.timestamp, source, push)
        elif t == CHANNEL_ANNOUNCEMENT:
            # BOLT #7: "If a `channel_announcement` has no corresponding `channel_update`s: MUST NOT
            # send the `channel_announcement`": it goes out just before the first update relayed.
            if push:
                self._relay[("ann", channel_announcement_fields(raw).short_channel_id)] = RelayItem(raw, 0, None, True)

    def _take_relay_batch(self) -> list[RelayItem]:
        """The queued messages in a receivable order: each announcement before its first update,
        channels before node announcements (BOLT #7: "MUST send the `channel_announcement` prior to
        any corresponding `channel_update`s and `node_announcement`s")."""
        queued, self._relay = self._relay, {}
        graph = self.state.graph
        out: list[RelayItem] = []
        nodes: list[RelayItem] = []
        for key, item in queued.items():
            kind = key[0]
            if kind == "node":
                nodes.append(item)
                continue
            scid = key[1]
            ch = graph.channel(scid)
            if ch is None or not ch.public or ch.raw is None:
                continue
            if kind == "ann":
                if not any(ch.halves):
                    self._relay[key] = item  # wait for its first update
                continue
            if scid not in self._relayed_announcements:
                self._relayed_announcements.add(scid)
                ann_push = queued.get(("ann", scid))
                out.append(RelayItem(ch.raw, item.timestamp, item.source if ann_push is None else None,
                                     item.push or ann_push is not None))
            out.append(item)
        return out + nodes

    async def flush_relay(self) -> int:
        """Send what was queued to every peer whose filter wants it; returns messages sent."""
        batch = self._take_relay_batch()
        if not batch:
            return 0
        sent = 0
        for peer_id, p in list(self._peers.items()):
            msgs = [it.raw for it in batch if it.source != peer_id and
                    (it.push or (p.filter is not None and p.filter.passes(it.timestamp)))]
            if msgs:
                sent += await self._send_many(peer_id, msgs)
        self.counts["relayed"] += sent
        return sent

    async def _broadcast_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.broadcast_interval)
            try:
                await self.flush_relay()
            except Exception as e:
                self.node.log.broken(LOG, f"gossip broadcast failed: {e!r}")
            self._check_stalled_syncs()

    async def _send_many(self, peer_id: bytes, msgs: Iterable[bytes]) -> int:
        """Queue messages to a peer, waiting for its socket to drain every SEND_CHUNK messages."""
        pm = self.node.peer_manager
        n = 0
        try:
            for raw in msgs:
                peer = pm.get(peer_id)
                if peer is None:
                    break
                n += 1
                if n % SEND_CHUNK == 0:
                    await peer.send(raw)
                else:
                    peer.send_nowait(raw)
        except PeerDisconnected:
            pass
        return n

    # ---- peers: filters, queries and sync ---------------------------------------------------
    async def _on_connect(self, peer: Any) -> None:
        # BOLT #7: "if the `gossip_queries` feature is negotiated: MUST NOT relay any gossip messages
        # it did not generate itself, unless explicitly requested."  Older peers get all new gossip.
        p = self._peer_state(peer.node_id)
        if p is None:
            return
        if not p.queries:
            return
        # Ask for gossip from a while back, not from now: what was made just before we connected may
        # still be on its way to this peer (as lightningd's seeker: ten gossip intervals back).
        since = max(0, int(time.time()) - self.config.filter_lookback)
        running = sum(1 for q in self._peers.values() if q.sync is not None)
        if self._syncs_started < INITIAL_SYNC_PEERS and running < MAX_CONCURRENT_SYNCS:
            # Learn the graph with range queries; the filter asks for new gossip from `since` on.
            self._syncs_started += 1
            p.sync = SyncSession(self.state.graph, self.chain_hash, extended=peer.features.has("gossip_queries_ex"))
            p.sync_progress_at = time.monotonic()
            msgs = p.sync.start(since=since)
            self.node.log.debug(LOG, f"Starting gossip sync with {peer.node_id.hex()}")
        else:
            msgs = [timestamp_filter_message(self.chain_hash, since)]
        await self._send_many(peer.node_id, msgs)
        # Our own gossip goes to every peer.
        own = self._own_gossip()
        if own:
            await self._send_many(peer.node_id, own)

    def _on_disconnect(self, peer_id: bytes, reason: str) -> None:
        p = self._peers.pop(peer_id, None)
        if p is not None and p.dump_task is not None:
            p.dump_task.cancel()

    def _peer_state(self, peer_id: bytes) -> PeerGossip | None:
        p = self._peers.get(peer_id)
        if p is None:
            # A message may beat our connect handler (other handlers run first): start the state here.
            peer = self.node.peer_manager.get(peer_id)
            if peer is None:
                return None
            queries = peer.features.has("gossip_queries")
            p = self._peers[peer_id] = PeerGossip(peer_id, queries, None if queries else TimestampFilter(0, 1 << 32))
        return p

    async def _on_query(self, peer_id: bytes, msg: Any, raw: bytes) -> None:
        p = self._peer_state(peer_id)
        if p is None:
            return
        if isinstance(msg, GossipTimestampFilter):
            if msg.chain_hash != self.chain_hash:
                # BOLT #7: "if `chain_hash` is not for a chain we know: SHOULD ignore the message"
                return
            p.filter = TimestampFilter.from_message(msg)
            if p.dump_task is not None:
                p.dump_task.cancel()
            if p.filter.first_timestamp <= int(time.time()) and p.filter.timestamp_range > 0:
                # BOLT #7: "SHOULD send all gossip messages whose `timestamp` is greater or equal to
                # `first_timestamp`, and less than `first_timestamp` plus `timestamp_range`."
                msgs = gossip_for_filter(self.state.graph, p.filter)
                if msgs:
                    p.dump_task = asyncio.get_running_loop().create_task(self._send_many(peer_id, msgs))
        elif isinstance(msg, QueryChannelRange):
            await self._send_many(peer_id, reply_channel_range(self.state.graph, msg, self.chain_hash))
        elif isinstance(msg, QueryShortChannelIds):
            await self._send_many(peer_id, reply_short_channel_ids(self.state.graph, msg, self.chain_hash))
        elif isinstance(msg, ReplyChannelRange):
            if p.sync is None:
                raise QueryError("reply_channel_range without a query in flight")
            p.sync_progress_at = time.monotonic()
            await self._sync_step(p, p.sync.on_reply_channel_range(msg))
        elif isinstance(msg, ReplyShortChannelIdsEnd):
            if p.sync is None:
                raise QueryError("reply_short_channel_ids_end without a query in flight")
            p.sync_progress_at = time.monotonic()
            await self._sync_step(p, p.sync.on_reply_short_channel_ids_end(msg))

    async def _sync_step(self, p: PeerGossip, msgs: list[bytes]) -> None:
        session = p.sync
        if msgs:
            await self._send_many(p.node_id, msgs)
        if session is not None and session.done:
            p.sync = None
            self.node.log.debug(LOG, f"Gossip sync with {p.node_id.hex()} done: {session.replies} range replies, "
                                     f"{session.queries_sent} queries; {len(self.state.graph.channels)} channels known")

    def _check_stalled_syncs(self) -> None:
        now = time.monotonic()
        for p in self._peers.values():
            if p.sync is not None and now - p.sync_progress_at > SYNC_STALL_SECONDS:
                self.node.log.debug(LOG, f"Gossip sync with {p.node_id.hex()} stalled: giving up")
                p.sync = None

    # ---- pruning ----------------------------------------------------------------------------
    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.prune_interval)
            await self.prune()

    async def prune(self) -> list[int]:
        now = int(time.time())
        await self._refresh_own_updates(now)
        # GossipState.prune_stale applies BOLT #7's two weeks; a shorter age (dev) shifts the clock.
        shifted = now + (STALE_SECONDS - self.config.stale_seconds)
        gone = self.state.prune_stale(shifted, keep=self._own_channel_scids())
        for scid in gone:
            self._relayed_announcements.discard(scid)
            self.node.log.debug(LOG, f"Pruned stale channel {ShortChannelId(scid)}")
        if gone:
            self.node.log.info(LOG, f"Pruned {len(gone)} stale channels")
        # Compaction rewrites the file (and fsyncs it twice): on the store's worker thread, after its writes.
        if self.store is not None and (sizes := await self.store.maybe_compact()) is not None:
            self.node.log.debug(LOG, f"Compacted gossip_store: {sizes[0]} -> {sizes[1]} bytes")
        return gone

    async def _refresh_own_updates(self, now: int) -> None:
        """BOLT #7: a node "SHOULD send a `channel_update` ... to keep the channel alive" before
        the two-week pruning: the channel manager re-signs (update_refresher)."""
        if self.update_refresher is None:
            return
        for scid in self._own_channel_scids():
            ch = self.state.graph.channel(scid)
            if ch is None or not ch.public or ch.spent_height is not None:
                continue
            half = ch.halves[ch.direction_from(self.our_id)]
            if half is None or half.timestamp < now - self.config.own_refresh_age:
                try:
                    raw = await self.update_refresher(scid)
                except Exception as e:
                    self.node.log.unusual(LOG, f"refreshing our update of {ShortChannelId(scid)} failed: {e!r}")
                    continue
                if raw:
                    self.add_own_update(raw)

    # ---- our own channels and node (the channel manager's API) --------------------------------
    def _own_channel_scids(self) -> set[int]:
        node = self.state.graph.node(self.our_id)
        return set(node.channels) if node is not None else set()

    def _own_public_channels(self) -> list[int]:
        g = self.state.graph
        return [s for s in self._own_channel_scids() if g.channels[s].public]

    def _own_gossip(self) -> list[bytes]:
        """Our public channels with their updates, then our node_announcement."""
        g = self.state.graph
        out: list[bytes] = []
        for scid in sorted(self._own_public_channels()):
            ch = g.channels[scid]
            halves = [h.raw for h in ch.halves if h is not None]
            if ch.raw is not None and halves and ch.spent_height is None:
                out.append(ch.raw)
                out.extend(halves)
        node = g.node(self.our_id)
        if out and node is not None and node.info is not None:
            out.append(node.info.raw)
        return out

    def add_private_channel(self, scid: int, peer_id: bytes, capacity_sat: int) -> None:
        """An unannounced channel of ours: its updates are accepted (BOLT #7: "SHOULD accept
        `channel_update`s for its own channels (even if non-public)") and never relayed."""
        self.state.add_private_channel(scid, self.our_id, peer_id, capacity_sat, int(time.time()))

    async def local_channel_update(self, peer_id: bytes, raw_update: bytes) -> bool:
        """Our update of a private channel: kept in the graph (for route hints) and sent to the peer
        only (BOLT #7: "MAY create a `channel_update` to communicate the channel parameters to the
        channel peer, even though the channel has not yet been announced").  False if the peer
        is not connected (send it again on reconnection)."""
        self.state.add_own_update(raw_update, int(time.time()))
        self._log_update(raw_update)
        return await self._send_many(peer_id, [raw_update]) == 1

    def announce_channel(self, raw_announcement: bytes, capacity_sat: int, *,
                         funding_outpoint: OutPoint | None = None) -> None:
        """Our channel_announcement with all four signatures (six confirmations reached).  It goes
        out with our first `add_own_update` of it; our node_announcement follows."""
        scid = channel_announcement_fields(raw_announcement).short_channel_id
        self.state.add_own_channel(raw_announcement, capacity_sat, int(time.time()))
        self._relayed_announcements.discard(scid)
        self._queue_relay(raw_announcement, None, push=True)
        if funding_outpoint is not None:
            self._watch_funding(scid, funding_outpoint)
        if self._own_node_ann is not None:
            self._apply_own_node_announcement(self._own_node_ann)
        else:
            self.refresh_node_announcement(only_if_changed=True)

    def add_own_update(self, raw_update: bytes) -> None:
        """Our (signed) channel_update: stored, and relayed if the channel is public."""
        self.state.add_own_update(raw_update, int(time.time()))
        self._log_update(raw_update)
        f = channel_update_fields(raw_update)
        ch = self.state.graph.channel(f.short_channel_id)
        if ch is not None and ch.public and not f.message_flags & 2:
            self._queue_relay(raw_update, None, push=True)

    def channel_closed(self, scid: int, height: int) -> None:
        """One of our channels closed on chain at `height` (forgotten SPENT_DELAY blocks later)."""
        self.state.funding_spent(scid, height, int(time.time()))

    def our_addresses(self) -> list[Address]:
        out = []
        pm = self.node.peer_manager
        for a in (pm.announced_addresses() if pm is not None else []):
            if a.get("type") in ("ipv4", "ipv6", "torv3", "dns") and a.get("port"):
                out.append(address_from_host(a["address"], int(a["port"])))
        dns = [a for a in out if a.type == 5]
        return [a for a in out if a.type != 5] + dns[:1]  # BOLT #7: at most one DNS hostname

    def build_node_announcement(self, timestamp: int | None = None) -> bytes:
        node = self.node
        prev = self.state.graph.node_timestamp(self.our_id) or 0
        if self._own_node_ann is not None:
            prev = max(prev, node_announcement_fields(self._own_node_ann).timestamp)
        # BOLT #7: "MUST set `timestamp` to be greater than that of any previous
        # `node_announcement` it has previously created."
        ts = max(timestamp or int(time.time()), prev + 1)
        features = bytes.fromhex(node.feature_set().get("node", ""))
        color = bytes.fromhex(node.color) if node.color else self.our_id[:3]
        return make_node_announcement(node_id=self.our_id, timestamp=ts, sign=self._sign, alias=node.alias,
                                      rgb_color=color, features=features,
                                      addresses=encode_addresses(self.our_addresses())).to_bytes()

    def refresh_node_announcement(self, only_if_changed: bool = False) -> bytes | None:
        """Build and sign our node_announcement; applied and relayed once we have a public channel
        (BOLT #7: nodes ignore one "if `node_id` is NOT previously known from a
        `channel_announcement`").  Returns it, or None if nothing changed."""
        raw = self.build_node_announcement()
        if only_if_changed:
            node = self.state.graph.node(self.our_id)
            old = node.info.raw if node is not None and node.info is not None else self._own_node_ann
            if old is not None and _node_ann_body(old) == _node_ann_body(raw):
                return None
        if self._own_public_channels():
            self._apply_own_node_announcement(raw)
        else:
            self._own_node_ann = raw
        return raw

    def _apply_own_node_announcement(self, raw: bytes) -> None:
        self._own_node_ann = None
        self.state.add_own_node_announcement(raw, int(time.time()))
        self._queue_relay(raw, None, push=True)

    # ---- for RPC and tests ------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "validator": dict(self.state.validator.stats),
                "channels": len(self.state.graph.channels), "nodes": len(self.state.graph.nodes),
                "peers": len(self._peers), "syncing": sum(1 for p in self._peers.values() if p.sync is not None),
                "relay_queue": len(self._relay), "watched_outpoints": len(self._funding),
                "load_ms": round(self.load_seconds * 1000, 1)}


def _node_ann_body(raw: bytes) -> tuple:
    f = node_announcement_fields(raw)
    return f.features, f.rgb_color, f.alias, f.addresses


def _type_name(raw: bytes) -> str:
    try:
        return {CHANNEL_ANNOUNCEMENT: "channel_announcement", NODE_ANNOUNCEMENT: "node_announcement",
                CHANNEL_UPDATE: "channel_update"}.get(msg_type(raw), f"type {msg_type(raw)}")
    except RawMessageError:
        return "empty message"


def _opt(options: Any, name: str) -> Any:
    try:
        return options.get(name)
    except KeyError:
        return None


__all__ = ["GossipConfig", "GossipError", "GossipManager"]
