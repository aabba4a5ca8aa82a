"""The channel manager: the asyncio runtime around the I/O-free channel core (ampere.ln.channel.core).

One `ChannelRecord` per channel past funding_signed (its core `Channel` value, its `ChannelSigner`, the
runtime's own settings). Every input -- a peer message, a local request, a timer, a block -- becomes one core
call under the record's lock, and the returned `Step`'s actions are carried out in order by `_apply`:

    Persist(update)   -> await store.write(...)   (fsync: the row is on disk when the await returns)
    SendMessage(msg)  -> the peer connection       (only ever after the Persist of the same step)
    Broadcast(tx)     -> the chain backend (the funding transaction through the wallet)
    Disconnect        -> hang up
    events            -> notifications, the commit timer, and the HTLC listeners (fired after the lock)

So "persist before you speak" holds by construction: the core puts the Persist of a step first (Step refuses
any other order) and `_apply` awaits it before touching the network.

Start-up (daemon.py): `load()` reads every channel before the chain watcher starts; `attach_chain()` runs right
after the watcher was created, before it can process a block, and registers the funding watches; then
`attach_peers()` before the peer manager listens, and `start()` once it does (reconnections).

The HTLC interface for payments and forwarding (the "switch"), in htlcs.py (HtlcInterface, a mixin of the manager):

    htlc_id = await mgr.offer_htlc(channel, amount_msat, payment_hash, cltv_expiry, onion, path_key=None)
              channel: short_channel_id (int, ShortChannelId or "BxTxO") or channel_id (32 bytes);
              raises HtlcRefused(code, message, failure_code) -- failure_code is the BOLT 4 code to report
    await mgr.fulfill_htlc(channel_id, htlc_id, preimage, also=None)   also(db): a write in the fulfil's transaction
    mgr.fulfill_htlc_soon(channel_id, htlc_id, preimage) -> Future | None   queued now, on an idle channel (or any, idle_only=False)
    await mgr.fail_htlc(channel_id, htlc_id, reason_onion)
    await mgr.fail_malformed_htlc(channel_id, htlc_id, sha256_of_onion, failure_code)
              these raise ChannelOpError when the channel or HTLC is unknown or cannot be resolved now
    mgr.on_incoming_htlc(fn(record, NewPeerHtlc))        an HTLC the peer offered is irrevocably committed
    mgr.on_htlc_fulfilled(fn(record, HtlcFulfilled))     an HTLC we offered was fulfilled (preimage)
    mgr.on_preimage_learned(fn(record, HtlcFulfilled))   the same, as soon as the peer's fulfil step is computed
    mgr.on_htlc_failed(fn(record, HtlcFailed))           an HTLC we offered failed (committed)
    mgr.on_incoming_settled(fn(record, IncomingHtlcSettled))
    mgr.pending_incoming_htlcs() -> [(record, Htlc)]      replay after a restart
    mgr.known_preimages() -> [(record, htlc_id, preimage)]
  Listeners are called in event order once the step is on disk; a coroutine listener runs as its own task
  (a slow htlc_accepted hook must not stall the peer's other messages).

On-chain hand-off (ampere.node.onchain.resolver): `await node.onchain.funding_spent(record, spending_tx, height)` once,
when the funding output is spent; `await node.onchain.restore(record)` at start-up for FUNDING_SPEND_SEEN /
ONCHAIN channels; the resolver calls back `await mgr.mark_onchain(record)` / `await mgr.mark_closed(record,
cause)`.
"""
from __future__ import annotations

import asyncio
import copy
import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ampere.chain.bitcoind import BitcoindError, BitcoindUnreachable
from ampere.ln.channel import core
from ampere.ln.channel.actions import (
    Broadcast,
    ChannelFailed,
    ChannelReady,
    CommitmentNeeded,
    DataLossDetected,
    Disconnect,
    Event,
    HtlcFailed,
    HtlcFulfilled,
    IncomingHtlcSettled,
    MutualCloseAgreed,
    NewPeerHtlc,
    Persist,
    PeerWarning,
    Refusal,
    SendMessage,
    StateChanged,
    Step,
)
from ampere.ln.channel.commitment import Side
from ampere.ln.channel.env import Env
from ampere.ln.channel.persist import finish
from ampere.ln.channel.signer import ChannelSigner
from ampere.ln.channel.state import Channel, ChannelState, set_state
from ampere.primitives.amount import sat_to_msat
from ampere.primitives.crypto import sha256
from ampere.primitives.tx import OutPoint, Transaction
from ampere.wire import messages as m
from ampere.wire.codec import encode_message
from ampere.wire.types import ShortChannelId
from ampere.node.onchain.coin_moves import chain_mvt, emit as emit_movements
from ampere.node.onchain.resolver import write_htlc_stubs
from ampere.node.app.tasks import cancel_and_wait, spawn_guarded
from ampere.node.channels import storage
from ampere.node.channels.htlcs import (  # noqa: F401 -- HtlcRefused, ChannelOpError: imported from here too
    OPERATING,
    ChannelOpError,
    HtlcInterface,
    HtlcRefused,
)
from ampere.node.net.connection import PeerAddress, PeerDisconnected

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node

LOG = "channeld"
CS = ChannelState
ZERO_ID = bytes(32)
# BOLT #4: unknown_next_peer = PERM|10

# States in which the channel talks to its peer (channeld/closingd in CLN); then the on-chain ones.
LIVE = (CS.CHANNELD_AWAITING_LOCKIN, CS.CHANNELD_NORMAL, CS.CHANNELD_SHUTTING_DOWN, CS.CLOSINGD_SIGEXCHANGE,
        CS.CLOSINGD_COMPLETE)
ON_CHAIN = (CS.FUNDING_SPEND_SEEN, CS.ONCHAIN)
CHANNEL_MESSAGES = (m.ChannelReady, m.Shutdown, m.ClosingSigned, m.UpdateAddHtlc, m.UpdateFulfillHtlc,
                    m.UpdateFailHtlc, m.UpdateFailMalformedHtlc, m.CommitmentSigned, m.RevokeAndAck, m.UpdateFee,
                    m.ChannelReestablish)
# The peer's messages of normal operation, handed to the channel's queue without waiting (see _on_message).
PIPELINED_MESSAGES = (m.UpdateAddHtlc, m.UpdateFulfillHtlc, m.UpdateFailHtlc, m.UpdateFailMalformedHtlc,
                      m.CommitmentSigned, m.RevokeAndAck, m.UpdateFee)
MAX_PIPELINED = 512  # queued inputs of one channel before we stop reading its peer (more than 483 HTLCs' adds)
OPEN_MESSAGES = (m.OpenChannel, m.AcceptChannel, m.FundingCreated, m.FundingSigned)
CLOSE_CAUSES = ("unknown", "local", "user", "remote", "protocol", "onchain")
# The HTLC listeners an event goes to (_fire).
_LISTENER_KIND: dict[type, str] = {NewPeerHtlc: "incoming", HtlcFulfilled: "fulfilled", HtlcFailed: "failed",
                                   IncomingHtlcSettled: "settled"}


def _type_of(cls: type) -> int:
    for t, c in m.MESSAGE_TYPES.items():
        if c is cls:
            return t
    raise KeyError(cls)


@dataclass
class ChannelSettings:
    """What the operator sets per channel (setchannel): our channel_update values and fee policy."""

    fee_base_msat: int
    fee_ppm: int
    htlc_min_msat: int
    htlc_max_msat: int
    ignore_fee_limits: bool = False
    cltv_delta: int = 34

    @classmethod
    def from_json(cls, text: str) -> "ChannelSettings":
        return cls(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(vars(self), sort_keys=True)  # (asdict's deep copy, for flat fields, cost ~20 us a write)


class ChannelRecord:
    """One channel as the runtime keeps it. `core` is only ever replaced under `lock`."""

    def __init__(self, dbid: int, peer_id: bytes, signer: ChannelSigner, ch: Channel, *, mindepth: int,
                 settings: ChannelSettings, funding_tx: Transaction | None = None,
                 funding_height: int | None = None, funding_txindex: int | None = None,
                 state_changes: list[dict] | None = None, meta: dict | None = None,
                 created_at: int | None = None) -> None:
        self.dbid = dbid
        self.peer_id = peer_id
        self.signer = signer
        self.core = ch
        self.mindepth = mindepth
        self.settings = settings
        self.funding_tx = funding_tx
        self.funding_height = funding_height
        self.funding_txindex = funding_txindex
        self.state_changes: list[dict] = list(state_changes or [])
        self.meta: dict[str, Any] = dict(meta or {})
        self.created_at = created_at or int(time.time())
        self.written: storage.Written | None = None  # the record's parts as last committed; None: no row yet
        self._cold_key: tuple = ()
        self._cold: tuple = ()
        self._meta_seen: dict | None = None
        self._meta_json = ""
        self.also: list[Callable[[Any], Any]] = []  # other writes that go in the channel's next write (offer_htlc)
        self.prepared: Any = None         # opener: the wallet's PreparedTx until the funding tx is broadcast
        self.lock = asyncio.Lock()
        self.commit_handle: asyncio.TimerHandle | None = None
        self.conn: Any = None             # the PeerConnection the core's connection state belongs to
        self.close_waiters: list[asyncio.Future] = []
        self.stubbed: set[tuple[Any, int]] = set()  # HTLCs already in channel_htlc_stubs (this process)
        self.commits_sent = 0              # --dev-disable-commit-after
        self.commit_reenabled = False
        # Inputs waiting for the channel (see ChannelManager.run): (fn, reestablish, connection, sign_now, future).
        self.pending: list[tuple[Callable[[Channel], Step | Refusal], bool, Any, bool, asyncio.Future]] = []
        self.drainer: asyncio.Task | None = None

    # --- identity --------------------------------------------------------------------------------
    @property
    def channel_id(self) -> bytes:
        return self.core.channel_id

    @property
    def state(self) -> ChannelState:
        return self.core.state

    @property
    def funding_outpoint(self) -> OutPoint:
        return self.core.params.funding_outpoint

    @property
    def short_channel_id(self) -> ShortChannelId | None:
        if self.core.short_channel_id is not None:
            return ShortChannelId(self.core.short_channel_id)
        if self.funding_height is not None and self.funding_txindex is not None:
            return ShortChannelId.from_parts(self.funding_height, self.funding_txindex, self.funding_outpoint.vout)
        return None

    # --- runtime-owned durable fields ----------------------------------------------------------------
    @property
    def lost_state(self) -> bool:
        return bool(self.meta.get("lost_state"))

    @property
    def spend_txid(self) -> bytes | None:
        v = self.meta.get("spend_txid")
        return bytes.fromhex(v) if v else None

    @property
    def spend_tx(self) -> Transaction | None:
        v = self.meta.get("spend_tx")
        return Transaction.parse(bytes.fromhex(v)) if v else None

    @property
    def spend_height(self) -> int | None:
        return self.meta.get("spend_height")

    @property
    def closer(self) -> str | None:
        return self.meta.get("closer")

    @property
    def close_cause(self) -> str:
        return self.meta.get("close_cause") or "unknown"

    def record(self) -> dict[str, Any]:
        """The core's durable record as last computed (what a write stores)."""
        rec = self.core.persisted_record
        return rec if rec is not None else self.core.to_record()

    def cold(self) -> tuple:
        """The channels row's own columns that change after insertion (written only when one of them changed).
        Encoded again only when one of them changed: settings are compared field by field, state_changes
        by length (entries are only ever appended) and meta (small, holding dicts changed in place) with a deep
        copy of the value last encoded (a comparison is cheaper than encoding it on every write)."""
        if self.meta != self._meta_seen:
            self._meta_seen = copy.deepcopy(self.meta)
            self._meta_json = json.dumps(self.meta, sort_keys=True)
        meta = self._meta_json
        key = (self.state.value, self.funding_height, self.funding_txindex, tuple(vars(self.settings).values()),
               len(self.state_changes), meta)
        if key != self._cold_key:
            self._cold_key = key
            self._cold = (key[0], key[1], key[2], self.settings.to_json(), json.dumps(self.state_changes), meta)
        return self._cold

    def row(self, static: bytes) -> tuple:
        return (self.dbid, self.peer_id, self.channel_id, self.state.value, self.core.update_id, static,
                self.funding_tx.serialize() if self.funding_tx is not None else None, self.funding_height,
                self.funding_txindex, self.mindepth, self.settings.to_json(), json.dumps(self.state_changes),
                json.dumps(self.meta, sort_keys=True), self.created_at, storage.LAYOUT_PARTS)


_COLUMNS = ("dbid, peer_id, channel_id, state, update_id, snapshot, funding_tx, funding_height, funding_txindex, "
            "mindepth, settings, state_changes, meta, created_at, layout")


def _iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ChannelManager(HtlcInterface):
    def __init__(self, node: Node) -> None:
        self.node = node
        self.records: dict[int, ChannelRecord] = {}          # dbid -> record (CLOSED ones too)
        self._by_scid: dict[int, ChannelRecord] = {}         # find()'s last answer per short_channel_id (checked)
        self.by_channel_id: dict[bytes, ChannelRecord] = {}
        self.peer_addresses: dict[bytes, PeerAddress] = {}   # stored: peers we share channels with
        self._seen_addresses: dict[bytes, PeerAddress] = {}  # outgoing connections of this run
        self._next_dbid = 1
        self._listeners: dict[str, list[Callable]] = {"incoming": [], "fulfilled": [], "failed": [], "settled": [],
                                                      "step": [], "preimage": [], "incoming_early": []}
        self._htlc_waiters: dict[tuple[bytes, int], list[asyncio.Future]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._reconnecting: dict[bytes, asyncio.Task] = {}
        self._stopping = False
        self._fees_collected_msat = 0
        self._bump_tasks: set = set()  # option_anchors: resolver follow-ups of our broadcast commitments
        from ampere.node.channels.funding import OpenFlows

        self.opening = OpenFlows(self)
        self._dev_autofulfill_on = bool(node.options.get("dev-autofulfill"))
        self._env_cache: tuple | None = None  # env(): the last Env and what it was computed from
        # --dev-disable-commit-after=N (developer): each channel stops sending commitment_signed after N of them,
        # until dev-reenable-commit (CLN's, to freeze a commitment in tests).
        limit = node.options.get("dev-disable-commit-after")
        self._dev_commit_limit = limit if (node.options.get("developer") and limit is not None and limit >= 0) \
            else None
        crash = node.options.get("dev-crash-before")
        self._crash_at: list = crash.split(":") + ["1"] if crash else []

    # =============================================================================================
    # start-up and shut-down

    def signer_for(self, peer_id: bytes, dbid: int) -> ChannelSigner:
        return self.node.signer.channel_signer(peer_id, dbid)

    async def load(self) -> None:
        """Read every channel from the store (before the chain watcher starts)."""
        def read(db):
            rows = db.query(f"SELECT {_COLUMNS} FROM channels ORDER BY dbid")
            parts = storage.read_parts(db)
            peers = db.query("SELECT peer_id, address FROM channel_peers")
            top = db.query("SELECT val FROM vars WHERE name = 'next_channel_dbid'")
            return rows, parts, peers, top

        rows, parts, peers, top = await self.node.store.read(read)
        self._next_dbid = int(top[0][0]) if top else 1
        whole: list[ChannelRecord] = []   # stored whole by an earlier version: converted below
        for r in rows:
            dbid, peer_id = int(r[0]), bytes(r[1])
            if int(r[14]) == storage.LAYOUT_PARTS:
                if dbid not in parts:
                    raise RuntimeError(f"channel {dbid}: its channel_state row is missing (damaged database)")
                try:
                    ch, written = storage.restore(bytes(r[5]), parts[dbid], ())
                except ValueError as e:
                    raise RuntimeError(f"channel {dbid}: {e} (damaged database)") from None
            else:
                ch, written = core.restore(bytes(r[5])), None
            rec = ChannelRecord(dbid, peer_id, self.signer_for(peer_id, dbid), ch,
                                mindepth=int(r[9]), settings=ChannelSettings.from_json(r[10]),
                                funding_tx=Transaction.parse(bytes(r[6])) if r[6] is not None else None,
                                funding_height=r[7], funding_txindex=r[8], state_changes=json.loads(r[11]),
                                meta=json.loads(r[12]), created_at=int(r[13]))
            if written is not None:
                written.cold = rec.cold()
                rec.written = written
            else:
                whole.append(rec)
            self._index(rec)
            self._next_dbid = max(self._next_dbid, dbid + 1)
        if whole:
            await self._convert(whole)
        for peer_id, text in peers:
            try:
                self.peer_addresses[bytes(peer_id)] = PeerAddress(**json.loads(text))
            except (ValueError, TypeError):
                continue
        if self.records:
            self.node.log.info(LOG, f"Loaded {len(self.records)} channels")

    def attach_chain(self) -> None:
        """Register the chain listener and funding watches. Synchronous, called right after the watcher was
        created and before it can process any block: nothing confirmed meanwhile is missed."""
        chain = self.node.chain
        if chain is None:
            return
        chain.add_listener(self)
        for rec in self.records.values():
            if rec.state in LIVE:
                self._watch(rec)

    async def restore_onchain(self) -> None:
        """Hand FUNDING_SPEND_SEEN / ONCHAIN channels back to the on-chain resolver (start-up)."""
        onchain = self.node.onchain
        for rec in list(self.records.values()):
            # (AWAITING_UNILATERAL too when the resolver follows our anchor commitment from the mempool)
            if onchain is not None and (rec.state in ON_CHAIN or (
                    rec.state is CS.AWAITING_UNILATERAL and getattr(onchain, "follows", lambda _: False)(
                        rec.channel_id))):
                try:
                    await onchain.restore(rec)
                except Exception as e:  # the resolver's bug must not stop the node
                    self.node.log.broken(LOG, f"onchain restore of {rec.channel_id.hex()} failed: {e!r}")

    def attach_peers(self, pm: Any) -> None:
        """Message handlers and connection callbacks (before the peer manager listens)."""
        types = [_type_of(c) for c in CHANNEL_MESSAGES + OPEN_MESSAGES] + [_type_of(m.Error), _type_of(m.Warning)]
        pm.add_message_handler(types, self._on_message)
        pm.on_connect(self._on_connect)
        pm.on_disconnect(self._on_disconnect)
        pm.channel_count = self.channel_count

    async def start(self) -> None:
        """The peer manager is up: reconnect to peers we share channels with; rebroadcast what may be lost."""
        for peer_id in {r.peer_id for r in self.records.values() if r.state in LIVE}:
            self._schedule_reconnect(peer_id, delay=0)
        for rec in list(self.records.values()):
            await self._rebroadcast(rec)

    async def stop(self) -> None:
        self._stopping = True
        for rec in self.records.values():
            if rec.commit_handle is not None:
                rec.commit_handle.cancel()
                rec.commit_handle = None
            for fut in rec.close_waiters:
                if not fut.done():
                    fut.cancel()
        self.opening.stop()
        await cancel_and_wait(list(self._reconnecting.values()) + list(self._tasks))

    # =============================================================================================
    # bookkeeping

    def _index(self, rec: ChannelRecord) -> None:
        self.records[rec.dbid] = rec
        self.by_channel_id[rec.channel_id] = rec

    async def allocate_dbid(self) -> int:
        """A fresh channel database id (it keys the channel's secrets: never reused, so persisted first)."""
        dbid = self._next_dbid
        self._next_dbid += 1
        await self.node.store.write(lambda db: db.execute(
            "INSERT OR REPLACE INTO vars (name, val) VALUES ('next_channel_dbid', ?)", (str(dbid + 1),)))
        return dbid

    def find(self, ident: Any) -> ChannelRecord | None:
        """A channel by channel_id (bytes / 64 hex), short_channel_id (int, ShortChannelId, "BxTxO")."""
        if isinstance(ident, (bytes, bytearray)) and len(ident) == 32:
            return self.by_channel_id.get(bytes(ident))
        if isinstance(ident, str):
            if len(ident) == 64:
                try:
                    return self.by_channel_id.get(bytes.fromhex(ident))
                except ValueError:
                    return None
            try:
                ident = ShortChannelId.from_str(ident)
            except (ValueError, TypeError):
                return None
        if isinstance(ident, int):
            # Every offer and forward asks by short_channel_id: the channel last found for it is checked first
            # (still live, still that scid) before a scan of every record, which built a ShortChannelId each.
            n = int(ident)
            hit = self._by_scid.get(n)
            if hit is not None and hit.state is not CS.CLOSED and _scid_int(hit) == n:
                return hit
            best = None
            for rec in self.records.values():
                if _scid_int(rec) == n:
                    if best is None or rec.state is not CS.CLOSED:
                        best = rec
            if best is not None:
                self._by_scid[n] = best
            return best
        return None

    def peer_records(self, peer_id: bytes, states: Iterable[ChannelState] | None = None) -> list[ChannelRecord]:
        wanted = tuple(states) if states is not None else None
        return [r for r in self.records.values() if r.peer_id == peer_id and (wanted is None or r.state in wanted)]

    def channel_count(self, peer_id: bytes) -> int:
        return sum(1 for r in self.records.values() if r.peer_id == peer_id and r.state is not CS.CLOSED)

    def num_pending(self) -> int:
        return sum(1 for r in self.records.values() if r.state is CS.CHANNELD_AWAITING_LOCKIN)

    def num_active(self) -> int:
        return sum(1 for r in self.records.values() if r.state is CS.CHANNELD_NORMAL)

    def num_inactive(self) -> int:
        return sum(1 for r in self.records.values()
                   if r.state not in (CS.CHANNELD_AWAITING_LOCKIN, CS.CHANNELD_NORMAL, CS.CLOSED))

    def fees_collected_msat(self) -> int:
        return self._fees_collected_msat

    def add_fees_collected(self, msat: int) -> None:
        """For the forwarding switch: fees earned by a settled forward."""
        self._fees_collected_msat += int(msat)

    def active_channel_state(self, peer_id: bytes) -> str | None:
        """`disconnect` refuses (without force) while a channel with the peer is being operated."""
        for r in self.peer_records(peer_id, (CS.CHANNELD_AWAITING_LOCKIN, CS.CHANNELD_NORMAL,
                                             CS.CHANNELD_SHUTTING_DOWN, CS.CLOSINGD_SIGEXCHANGE)):
            return r.state.value
        return None

    def is_connected(self, peer_id: bytes) -> bool:
        pm = self.node.peer_manager
        return pm is not None and pm.get(peer_id) is not None

    def listfunds_channels(self) -> list[dict]:
        out = []
        for r in sorted(self.records.values(), key=lambda r: r.dbid):
            if r.state is CS.CLOSED:
                continue
            e: dict[str, Any] = {"peer_id": r.peer_id.hex(), "connected": self.is_connected(r.peer_id),
                                 "state": r.state.value, "channel_id": r.channel_id.hex(),
                                 "our_amount_msat": r.core.balance_local_msat, "amount_msat": sat_to_msat(r.core.funding_sat),
                                 "funding_txid": r.funding_outpoint.txid_hex(),
                                 "funding_output": r.funding_outpoint.vout}
            if r.short_channel_id is not None:
                e["short_channel_id"] = str(r.short_channel_id)
            out.append(e)
        return out

    def env(self, rec: ChannelRecord | None = None) -> Env:
        chain = self.node.chain
        fees = chain.fees if chain is not None else None
        ignore = bool(self.node.options.get("ignore-fee-limits") or (rec is not None and rec.settings.ignore_fee_limits))
        # Every channel step asks; the answer changes only with the tip or the estimates (FeeEstimates.update
        # installs a new `estimates` list each time: the cache holds the list, so its identity cannot be reused).
        # (min/max_acceptable read the history of estimates, which moves with every update: hence `is`.)
        estimates = fees.estimates if fees is not None else None
        floor = fees.floor if fees is not None else None
        cached = self._env_cache
        if cached is not None:
            height, c_fees, c_estimates, c_floor, c_ignore, env = cached
            if (height == self.node.blockheight and c_fees is fees and c_estimates is estimates and c_floor == floor
                    and c_ignore == ignore):
                return env
        lo, hi = 253, 100_000
        closing = 253
        if fees is not None:
            lo, hi = fees.min_acceptable(), fees.max_acceptable()
            closing = fees.named("mutual_close") or fees.floor
        if ignore:
            lo, hi = 253, 0xFFFFFFFF
        env = Env(blockheight=self.node.blockheight, min_feerate_per_kw=lo, max_feerate_per_kw=hi,
                  closing_feerate_per_kw=closing)
        self._env_cache = (self.node.blockheight, fees, estimates, floor, ignore, env)
        return env

    # =============================================================================================
    # running steps

    async def run(self, rec: ChannelRecord, fn: Callable[[Channel], Step | Refusal],
                  reestablish: bool = False, conn: Any = None) -> Step | Refusal | None:
        """Compute one core step on the channel's current value and carry it out, under the lock.
        `reestablish`: the input is the peer's channel_reestablish on its current connection. `conn`: the input
        is a message from that connection (None once it has gone: BOLT 2 forgets what a lost connection said)."""
        return await self._enqueue(rec, fn, reestablish, conn)

    def _enqueue(self, rec: ChannelRecord, fn: Callable[[Channel], Step | Refusal], reestablish: bool = False,
                 conn: Any = None, sign_now: bool = True, wait: bool = True) -> asyncio.Future | None:
        """Queue an input for the channel; the future resolves with its Step (or Refusal) once carried out.

        Group commit per channel: every input that arrives while the channel is busy (its last step being
        written) is computed next, one after the other on the in-memory state, and the whole group is persisted
        by ONE write of the final state before any of its messages leaves (see _apply_group). 50 offers queued
        behind one fsync cost one more fsync, not 50; the peer's revoke_and_ack and commitment_signed arriving
        together cost one. `sign_now` False: a group holding this input leaves the commitment to the commit timer.
        `wait` False: nobody waits for the outcome (the peer's pipelined messages), so no future is made; an input
        that raised is reported by `_pipelined_failed`.
        """
        fut = asyncio.get_running_loop().create_future() if wait else None
        rec.pending.append((fn, reestablish, conn, sign_now, fut))
        if rec.drainer is None:
            rec.drainer = self._spawn(self._drain(rec), "channel-steps")
        return fut

    async def _drain(self, rec: ChannelRecord) -> None:
        batch: list = []
        try:
            while rec.pending:
                async with rec.lock:
                    batch, rec.pending = rec.pending, []
                    try:
                        events, done = await self._run_batch(rec, batch)
                    except Exception as e:  # noqa: BLE001 -- the store failed: each caller gets the error
                        events, done = [], [(fut, e, item[2]) for *item, fut in batch]
                        rec.also.clear()  # their callers are told it failed: no later write may store them
                self._fire(rec, events)
                for fut, value, conn in done:
                    if isinstance(value, Step) and value.error is not None:
                        self.node.log.info(self._src(rec), f"{value.error.kind.value}: {value.error.message}")
                    if fut is None:
                        if isinstance(value, BaseException):
                            self._pipelined_failed(rec.peer_id, conn, value)
                        continue
                    if fut.done():
                        continue
                    if isinstance(value, BaseException):
                        fut.set_exception(value)
                    else:
                        fut.set_result(value)
                batch = []
        finally:
            rec.drainer = None
            for *_item, fut in batch + rec.pending if self._stopping else batch:
                if fut is not None and not fut.done():
                    fut.cancel()
            if self._stopping:
                rec.pending = []
            elif rec.pending:
                rec.drainer = self._spawn(self._drain(rec), "channel-steps")

    async def _run_batch(self, rec: ChannelRecord, batch: list) -> tuple[list[Event], list[tuple[Any, Any, Any]]]:
        """Compute the batch's steps in order (rec.lock held); carry them out a group at a time. Returns the events
        and, per input, (its future or None, its Step / Refusal / exception / None, its connection)."""
        events: list[Event] = []
        done: list[tuple[asyncio.Future | None, Any, Any]] = []
        group: list[Step] = []
        hung_up = False
        sign_now = True
        for fn, reestablish, conn, item_sign_now, fut in batch:
            if conn is not None and (hung_up or conn is not self._current_peer(rec.peer_id)):
                done.append((fut, None, conn))  # said on a connection that has gone
                continue
            if not group:
                events += await self._drop_stale(rec)
            if reestablish and rec.conn is None:
                rec.conn = self._current_peer(rec.peer_id)
            try:
                step = fn(rec.core)
            except Exception as e:  # noqa: BLE001 -- a bug in one input: its caller gets it, the others go on
                done.append((fut, e, conn))
                continue
            done.append((fut, step, conn))
            if isinstance(step, Refusal):
                continue
            if self._listeners["preimage"]:
                self._early_preimages(rec, step)
            if _groupable(step):
                rec.core = step.state
                group.append(step)
                sign_now = sign_now and item_sign_now
                if self._listeners["incoming_early"] and self._early_incoming(rec, step) and rec.pending:
                    # The payee's fulfil of an HTLC this step committed (receive.py's fast path) joins THIS group:
                    # one write holds the step that committed the HTLC, the fulfil and the invoice's claim, and
                    # no message leaves before it (a write and a round of the database thread fewer per payment).
                    # (Appended to the list being iterated: _drain's list, so a stop cancels them as before.)
                    batch.extend(rec.pending)
                    rec.pending = []
                continue
            # A step that changes the channel's state, broadcasts or hangs up goes alone, after the group.
            events += await self._apply_group(rec, group, sign_now)
            group, sign_now = [], True
            events += await self._apply(rec, step)
            hung_up = hung_up or any(isinstance(a, Disconnect) for a in step.actions)
        events += await self._apply_group(rec, group, sign_now)
        if rec.also:  # a step that carried a write but persisted nothing itself: its callers wait for that write
            await self._persist(rec)
        return events, done

    async def _apply_group(self, rec: ChannelRecord, steps: list[Step], sign_now: bool = True) -> list[Event]:
        """Carry out steps computed one after the other, with one write (rec.lock held). Every step of a group has
        only Persist, SendMessage and plain events (_groupable), so: persist the final state, then speak in order.
        Durability is what each step alone would give: no message leaves before the state it reveals -- a later
        one, which includes it -- is on disk, and a crash in between leaves a state each step alone could leave
        (messages still unsent), which channel_reestablish retransmits."""
        if not steps:
            return []
        if sign_now and any(step.persists for step in steps) and self._inline_commit(rec):
            steps.append(core.send_commitment(rec.core, rec.signer, self.env(rec)))
        if len(steps) == 1:
            return await self._apply(rec, steps[0])
        rec.core = steps[-1].state
        if any(step.persists for step in steps):
            await self._persist(rec)
        events: list[Event] = []
        for step in steps:
            for a in step.actions:
                if isinstance(a, SendMessage):
                    self.crash_point(type(a.msg).__name__)
                    self._send_on(rec, a.msg)
                elif isinstance(a, Event):
                    self._on_event(rec, a, [])
                    events.append(a)
        return events

    def _inline_commit(self, rec: ChannelRecord) -> bool:
        """Sign the peer's next commitment in the same write as the updates it covers (rec.lock held)? With the
        default commit-time the timer would only add an fsync and a millisecond; updates that arrive meanwhile
        still batch, behind the peer's revoke_and_ack (BOLT 2 pacing: one unrevoked commitment at a time)."""
        if int(self.node.options.get("commit-time") or 0) > 1 or not core.needs_commitment(rec.core):
            return False
        if not self._may_commit(rec):
            return False
        if rec.commit_handle is not None:
            rec.commit_handle.cancel()
            rec.commit_handle = None
        return True

    def _current_peer(self, peer_id: bytes) -> Any:
        pm = self.node.peer_manager
        return pm.get(peer_id) if pm is not None else None

    async def _drop_stale(self, rec: ChannelRecord) -> list[Event]:
        """The connection the core thinks it is on has gone (or was replaced): BOLT 2 disconnection first.
        (rec.lock held.) Messages computed for an old connection never reach a new one (see _send)."""
        if rec.conn is None or rec.conn is self._current_peer(rec.peer_id):
            return []
        rec.conn = None
        if rec.commit_handle is not None:
            rec.commit_handle.cancel()
            rec.commit_handle = None
        return await self._apply(rec, core.on_disconnect(rec.core))

    async def adopt(self, rec: ChannelRecord, step: Step) -> None:
        """A channel just created by an opening flow: watch its funding, insert its row, then speak."""
        rec.core = step.state
        rec.conn = self._current_peer(rec.peer_id)
        self._index(rec)
        self._watch(rec)
        seen = self._seen_addresses.get(rec.peer_id)
        if seen is not None:
            await self.remember_address(rec.peer_id, seen)  # before the channel exists: we can always reconnect
        async with rec.lock:
            events = await self._apply(rec, step)
        self._fire(rec, events)

    def _src(self, rec: ChannelRecord) -> str:
        return f"{rec.peer_id.hex()}-chan#{rec.dbid}"

    async def _apply(self, rec: ChannelRecord, step: Step) -> list[Event]:
        """Carry out a step's actions in order (rec.lock held). Returns the events for the listeners."""
        rec.core = step.state
        changes = [a for a in step.actions if isinstance(a, StateChanged)]
        for a in step.actions:
            if isinstance(a, DataLossDetected):
                rec.meta["lost_state"] = True
        for sc in changes:
            rec.state_changes.append({"timestamp": _iso_now(), "old_state": sc.old or "OPENINGD",
                                      "new_state": sc.new, "cause": sc.cause if sc.cause in CLOSE_CAUSES else "unknown",
                                      "message": sc.message or _default_message(sc)})
        persisted = False
        broadcasts: list[Transaction] = []
        events: list[Event] = []
        for a in step.actions:
            if isinstance(a, Persist):
                await self._persist(rec)
                persisted = True
            elif isinstance(a, SendMessage):
                self.crash_point(type(a.msg).__name__)
                self._send_on(rec, a.msg)
            elif isinstance(a, Broadcast):
                self.crash_point("broadcast")
                broadcasts.append(a.tx)
                await self._broadcast(rec, a.tx)
            elif isinstance(a, Disconnect):
                self._hang_up(rec.peer_id, a.reason)
            elif isinstance(a, Event):
                self._on_event(rec, a, broadcasts)
                events.append(a)
        if (changes or any(isinstance(a, DataLossDetected) for a in step.actions)) and not persisted:
            await self._persist(rec)
        return events

    async def _convert(self, recs: list[ChannelRecord]) -> None:
        """Channels stored whole (layout 0, before issue 18) into parts, all in one transaction: a crash leaves
        them all as they were, and the next start converts again."""
        deltas = []
        for rec in recs:
            d = storage.first_write(rec.dbid, rec.record(), rec.cold())
            d.statements.append(("UPDATE channels SET layout=?, snapshot=? WHERE dbid=?",
                                 (storage.LAYOUT_PARTS, d.after.static, rec.dbid)))
            deltas.append((rec, d))

        def write(db):
            for _rec, d in deltas:
                d.apply(db)
        await self.node.store.write(write)
        for rec, d in deltas:
            rec.written = d.after
        self.node.log.info(LOG, f"Converted {len(recs)} channels to the stored-in-parts layout")

    def _delta(self, rec: ChannelRecord) -> storage.Delta:
        """The statements of this channel's next write: only the parts that changed (see storage.py). A channel
        has a Written once its row exists: `load` gives one to every stored channel (converting those stored
        whole first), and `_persist` to a new channel with its first write, the INSERT below."""
        record, cold = rec.record(), rec.cold()
        if rec.written is not None:
            sql = ("UPDATE channels SET state=?, update_id=?, funding_height=?, funding_txindex=?, settings=?, "
                   "state_changes=?, meta=? WHERE dbid=?", (cold[0], rec.core.update_id, *cold[1:], rec.dbid))
            return storage.delta(rec.dbid, record, rec.written, sql, cold)
        d = storage.first_write(rec.dbid, record, cold)
        d.statements.insert(0, (f"INSERT INTO channels ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                rec.row(d.after.static)))
        return d

    async def _persist(self, rec: ChannelRecord) -> None:
        d = self._delta(rec)
        # Every HTLC the channel ever held, in the same transaction as the state that holds it (so before any
        # commitment holding it is signed): a revoked commitment of the peer may show it long after the state
        # forgot it, and the penalty must rebuild its script.
        new_htlcs = [h for h in rec.core.htlcs if (h.offerer, h.htlc_id) not in rec.stubbed]
        if len(rec.stubbed) > 2 * len(rec.core.htlcs) + 64:  # forget what the state itself forgot
            rec.stubbed &= {(h.offerer, h.htlc_id) for h in rec.core.htlcs}
        cid = rec.channel_id
        # --dev-crash-before=channel_state: killed inside the write, after the HTLC rows and before the channel's
        # own row, so the kill -9 tests check that a record is committed whole or not at all.
        between = (lambda: self.crash_point("channel_state")) if self._crash_at else None
        also, rec.also = rec.also, []

        def write(db):
            d.apply(db, between)
            write_htlc_stubs(db, cid, new_htlcs)
            for op in also:
                op(db)
        await self.node.store.write(write)
        rec.stubbed.update((h.offerer, h.htlc_id) for h in new_htlcs)
        rec.written = d.after

    async def save_meta(self, rec: ChannelRecord) -> None:
        """Persist the runtime's fields (settings, meta, funding position) without a core step."""
        async with rec.lock:
            await self._persist(rec)

    def crash_point(self, what: str) -> None:
        """--dev-crash-before: die as kill -9 would, at an exact point (after the step's Persist)."""
        if self._crash_at and self._crash_at[0] == what:
            n = int(self._crash_at[1]) - 1
            if n <= 0:
                import os
                import signal

                pm = self.node.peer_manager
                if pm is not None and _on_loop_thread():  # (channel_state's point is on the database thread)
                    pm.flush_all()  # the messages of this turn before `what` go out, as if written one by one
                self.node.log.info(LOG, f"dev-crash-before {what}: killing ourselves")
                self.node.log.close()
                os.kill(os.getpid(), signal.SIGKILL)
            self._crash_at[1] = str(n)

    def _send(self, peer_id: bytes, msg: Any) -> None:
        self.crash_point(type(msg).__name__)
        peer = self._current_peer(peer_id)
        if peer is None:
            return  # channel_reestablish retransmits whatever the peer lacks
        try:
            peer.send_nowait(encode_message(msg))
        except PeerDisconnected:
            pass

    def _send_on(self, rec: ChannelRecord, msg: Any) -> None:
        peer = rec.conn
        if peer is None or peer is not self._current_peer(rec.peer_id):
            return  # computed for a connection that is gone: the next reestablish retransmits
        try:
            peer.send_nowait(encode_message(msg))
        except PeerDisconnected:
            pass

    def send_to_peer(self, peer_id: bytes, msg: Any) -> None:
        self._send(peer_id, msg)

    def _hang_up(self, peer_id: bytes, reason: str) -> None:
        pm = self.node.peer_manager
        peer = pm.get(peer_id) if pm is not None else None
        if peer is not None:
            peer.close(reason)

    def _bump_own_commitment(self, rec: ChannelRecord, tx: Transaction) -> None:
        """option_anchors: our commitment carries a low fee; the on-chain resolver follows it from the mempool and
        CPFPs it through our anchor (BOLT #3 anchors). Started as a task: the resolver calls back into the manager
        (mark_onchain), which must not wait for the channel lock held around this broadcast."""
        onchain = self.node.onchain
        op = rec.funding_outpoint
        if onchain is None or not rec.core.params.channel_type.anchors \
                or not any(i.prevout == op for i in tx.inputs) or rec.spend_txid is not None:
            return
        task = asyncio.get_running_loop().create_task(onchain.funding_spent(rec, tx, None))
        self._bump_tasks.add(task)
        task.add_done_callback(self._bump_tasks.discard)

    async def _broadcast(self, rec: ChannelRecord, tx: Transaction) -> None:
        chain, wallet = self.node.chain, self.node.wallet
        if chain is None:
            return
        txid = tx.txid()
        try:
            if rec.funding_tx is not None and txid == rec.funding_outpoint.txid and wallet is not None:
                if rec.prepared is not None:
                    prepared, rec.prepared = rec.prepared, None
                    await wallet.send_tx(prepared, tx)
                else:
                    await chain.broadcast(tx)
                    await wallet.record_sent(tx)
            else:
                await chain.broadcast(tx)
            chain.wake()
        except (BitcoindError, BitcoindUnreachable) as e:
            self.node.log.debug(self._src(rec), f"broadcast of {tx.txid_hex()} failed: {e}")
            if isinstance(e, BitcoindError) and "already" in e.message:
                self._bump_own_commitment(rec, tx)   # ours, in the mempool already (a rebroadcast)
        except Exception as e:  # WalletError
            self.node.log.unusual(self._src(rec), f"broadcast of {tx.txid_hex()} failed: {getattr(e, 'message', e)}")
        else:
            self._bump_own_commitment(rec, tx)

    async def _rebroadcast(self, rec: ChannelRecord) -> None:
        """What must reach the chain but may have been lost (a crash after persisting, a mempool eviction)."""
        if self.node.chain is None:
            return
        st = rec.state
        if st is CS.CHANNELD_AWAITING_LOCKIN and rec.funding_tx is not None and rec.funding_height is None:
            await self._broadcast(rec, rec.funding_tx)
        elif st is CS.CLOSINGD_COMPLETE and rec.core.closing_tx:
            await self._broadcast(rec, Transaction.parse(rec.core.closing_tx))
        elif st is CS.AWAITING_UNILATERAL and not rec.lost_state:
            await self._broadcast(rec, core.local_commitment_tx(rec.core, rec.signer))

    # --- events ------------------------------------------------------------------------------------
    def _on_event(self, rec: ChannelRecord, ev: Event, broadcasts: list[Transaction]) -> None:
        log = self.node.log
        if isinstance(ev, StateChanged):
            log.info(self._src(rec), f"State changed from {ev.old or 'OPENINGD'} to {ev.new}")
            payload: dict[str, Any] = {"peer_id": rec.peer_id.hex(), "channel_id": rec.channel_id.hex(),
                                       "timestamp": _iso_now(), "new_state": ev.new,
                                       "cause": ev.cause if ev.cause in CLOSE_CAUSES else "unknown",
                                       "message": ev.message or _default_message(ev)}
            payload["old_state"] = ev.old or "OPENINGD"
            if rec.short_channel_id is not None:
                payload["short_channel_id"] = str(rec.short_channel_id)
            self.node.notify("channel_state_changed", payload)
            if ev.new in (CS.CHANNELD_SHUTTING_DOWN.value, CS.AWAITING_UNILATERAL.value) and not rec.closer:
                rec.meta["closer"] = "remote" if ev.cause == "remote" else "local"
                rec.meta.setdefault("close_cause", ev.cause if ev.cause in CLOSE_CAUSES else "unknown")
        elif isinstance(ev, CommitmentNeeded):
            if core.needs_commitment(rec.core):  # not when signed in the same write (_inline_commit)
                self._schedule_commit(rec)
        elif isinstance(ev, ChannelReady):
            log.info(self._src(rec), f"Channel ready: short_channel_id {rec.short_channel_id}")
            gossip = self.node.gossip
            if gossip is not None and rec.short_channel_id is not None and not rec.core.announce:
                try:
                    gossip.add_private_channel(int(rec.short_channel_id), rec.peer_id, rec.core.funding_sat)
                except Exception as e:
                    log.debug(self._src(rec), f"gossip: {e!r}")
        elif isinstance(ev, MutualCloseAgreed):
            log.info(self._src(rec), f"Mutual close agreed: fee {ev.fee_sat} sat, tx {ev.txid[::-1].hex()}")
            tx = Transaction.parse(rec.core.closing_tx) if rec.core.closing_tx else None
            self._resolve_close(rec, "mutual", [tx] if tx is not None else [])
        elif isinstance(ev, ChannelFailed):
            log.unusual(self._src(rec), f"Channel failed: {ev.reason}")
            rec.meta.setdefault("close_cause", "protocol")
            self._resolve_close(rec, "unilateral", list(broadcasts) if ev.broadcast else [])
        elif isinstance(ev, DataLossDetected):
            log.broken(self._src(rec), "The peer proved we lost channel state: we must not broadcast our commitment")
        elif isinstance(ev, PeerWarning):
            log.info(self._src(rec), f"Peer sent {'error' if ev.is_error else 'warning'}: {ev.text}")
            if ev.is_error:
                rec.meta.setdefault("close_cause", "remote")

    def _resolve_close(self, rec: ChannelRecord, kind: str, txs: list[Transaction]) -> None:
        waiters, rec.close_waiters = rec.close_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result((kind, txs))

    def _fire(self, rec: ChannelRecord, events: list[Event]) -> None:
        for fn in self._listeners["step"]:
            try:
                fn(rec, events)
            except Exception as e:
                self.node.log.broken(LOG, f"channel step listener failed: {e!r}")
        for ev in events:
            kind = _LISTENER_KIND.get(type(ev))
            if kind is None:
                continue
            if kind in ("fulfilled", "failed"):
                for fut in self._htlc_waiters.pop((rec.channel_id, ev.htlc_id), []):
                    if not fut.done():
                        fut.set_result(ev)
            if kind == "incoming" and self._dev_autofulfill_on and sha256(bytes(ev.onion[:32])) == ev.payment_hash:
                # --dev-autofulfill: this HTLC is the developer's, not the payment layer's.
                self._spawn(self._dev_autofulfill(rec, ev), "dev-autofulfill")
                continue
            for fn in list(self._listeners[kind]):
                try:
                    result = fn(rec, ev)
                except Exception as e:
                    self.node.log.broken(LOG, f"HTLC listener failed: {e!r}")
                    continue
                if asyncio.iscoroutine(result):
                    self._spawn(result, f"htlc-{kind}")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task:
        return spawn_guarded(self._tasks, coro, name, lambda msg: self.node.log.broken(LOG, msg))

    # --- commit batching ---------------------------------------------------------------------------
    def _schedule_commit(self, rec: ChannelRecord) -> None:
        """CLN batches updates: commitment_signed goes out `commit-time` ms after the first pending change."""
        if rec.commit_handle is not None or self._stopping:
            return
        delay = max(0, int(self.node.options.get("commit-time") or 0)) / 1000
        loop = asyncio.get_running_loop()
        rec.commit_handle = loop.call_later(delay, lambda: self._spawn(self._commit(rec), "commit"))

    async def _commit(self, rec: ChannelRecord) -> None:
        rec.commit_handle = None
        if not core.needs_commitment(rec.core) or not rec.core.can_speak:
            return
        if not self._may_commit(rec):
            return
        await self.run(rec, lambda ch: core.send_commitment(ch, rec.signer, self.env(rec))
                       if core.needs_commitment(ch) else Step(ch))

    def _may_commit(self, rec: ChannelRecord) -> bool:
        """--dev-disable-commit-after: counts the commitment_signed about to be sent; False once over the limit."""
        if self._dev_commit_limit is not None and not rec.commit_reenabled:
            if rec.commits_sent >= self._dev_commit_limit:
                self.node.log.debug(self._src(rec), "dev-disable-commit-after: not sending commitment_signed")
                return False
            rec.commits_sent += 1
        return True

    # =============================================================================================
    # peers

    async def _on_message(self, peer_id: bytes, msg: Any, raw: bytes) -> None:
        if isinstance(msg, OPEN_MESSAGES):
            await self.opening.on_message(peer_id, msg)
            return
        cid = getattr(msg, "channel_id", None)
        if isinstance(msg, (m.Error, m.Warning)):
            if cid == ZERO_ID:
                if isinstance(msg, m.Error):
                    # BOLT #1: "if channel_id is all zero: MUST fail all channels with the sending node."
                    for rec in self.peer_records(peer_id, LIVE):
                        await self.run(rec, lambda ch, msg=replace(msg, channel_id=rec.channel_id):
                                       core.handle_message(ch, rec.signer, msg, self.env(rec)))
                    self.opening.peer_error(peer_id, None, _text(msg.data))
                return
            if self.opening.peer_error(peer_id, cid, _text(msg.data), is_error=isinstance(msg, m.Error)):
                return
        rec = self.by_channel_id.get(cid) if cid is not None else None
        if rec is None or rec.peer_id != peer_id:
            if isinstance(msg, m.ChannelReestablish):
                self._send(peer_id, m.Warning(channel_id=cid, data=b"Unknown channel for channel_reestablish"))
            elif not isinstance(msg, (m.Error, m.Warning)):
                self.node.log.debug(f"{peer_id.hex()}-chan", f"{type(msg).__name__} for unknown channel {cid.hex()}")
            return
        conn = self._current_peer(peer_id)

        def fn(ch: Channel) -> Step:
            return core.handle_message(ch, rec.signer, msg, self.env(rec))

        if isinstance(msg, PIPELINED_MESSAGES):
            # Not awaited: the next message of the peer (its commitment_signed right after its revoke_and_ack, or
            # many update_add_htlc) joins the same write. The channel's queue keeps them in order.
            if len(rec.pending) + 1 < MAX_PIPELINED:
                self._enqueue(rec, fn, conn=conn, wait=False)  # no future per message: nobody waits for it
                return
            # Back-pressure: stop reading this peer until this message is carried out.
            fut = self._enqueue(rec, fn, conn=conn)
            fut.add_done_callback(lambda f: f.cancelled() or f.exception() is None
                                  or self._pipelined_failed(peer_id, conn, f.exception()))
            await asyncio.wait([fut])
            return
        await self.run(rec, fn, reestablish=isinstance(msg, m.ChannelReestablish), conn=conn)
        if isinstance(msg, m.ChannelReestablish):
            # As lightningd's channeld on reconnection: bring the commitment feerate to the chain's now,
            # not only at the next block (estimates may have moved while we were apart or down).
            await self._follow_fees()

    def _pipelined_failed(self, peer_id: bytes, conn: Any, exc: BaseException) -> None:
        # As the read loop does for a handler that raised: a bug must not take the node down; drop this peer.
        reason = f"internal error handling a message: {exc!r}"
        self.node.log.broken(f"{peer_id.hex()}-chan", reason)
        if conn is not None and conn is self._current_peer(peer_id):
            self._hang_up(peer_id, reason)

    async def _on_connect(self, peer: Any) -> None:
        peer_id = peer.node_id
        task = self._reconnecting.pop(peer_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if peer.direction == "out":
            # Where we reached it: kept in memory, stored once we share a channel (reconnection).
            self._seen_addresses[peer_id] = peer.address
            if self.peer_records(peer_id):
                await self.remember_address(peer_id, peer.address)
        # BOLT #2: "MUST transmit channel_reestablish for each channel" (a closed one answers with an error).
        for rec in self.peer_records(peer_id, LIVE + ON_CHAIN):
            async with rec.lock:
                events = await self._drop_stale(rec)
                if rec.conn is None and peer is self._current_peer(peer_id):
                    rec.conn = peer
                    events += await self._apply(rec, core.on_reconnect(rec.core, rec.signer))
            self._fire(rec, events)

    async def remember_address(self, peer_id: bytes, address: PeerAddress) -> None:
        if self.peer_addresses.get(peer_id) == address:
            return
        self.peer_addresses[peer_id] = address
        text = json.dumps({"kind": address.kind, "host": address.host, "port": address.port, "path": address.path})
        await self.node.store.write(lambda db: db.execute(
            "INSERT OR REPLACE INTO channel_peers (peer_id, address) VALUES (?, ?)", (peer_id, text)))

    async def _on_disconnect(self, peer_id: bytes, reason: str) -> None:
        self.opening.peer_gone(peer_id, reason)
        for rec in self.peer_records(peer_id):
            if rec.state is CS.CHANNELD_NORMAL or rec.state is CS.CHANNELD_AWAITING_LOCKIN:
                # lightningd's words (channel_fail_transient), which tests wait for.
                self.node.log.info(self._src(rec), f"Peer transient failure in {rec.state.value}: {reason}")
            async with rec.lock:
                events = await self._drop_stale(rec)
            self._fire(rec, events)
            pm = self.node.peer_manager
            dev = pm.dev_disconnect if pm is not None else None
            if dev is not None and rec.state in (CS.CHANNELD_NORMAL, CS.CHANNELD_AWAITING_LOCKIN) and dev.permanent():
                # --dev-disconnect's "permfail" line (lightningd's channel_err): fail the channel, go on-chain.
                await self.force_close(rec, "dev_disconnect permfail")
        self._schedule_reconnect(peer_id)

    def _schedule_reconnect(self, peer_id: bytes, delay: float = 1.0) -> None:
        if self._stopping or peer_id in self._reconnecting or self.is_connected(peer_id):
            return
        if self.node.option("dev-no-reconnect", False):
            # lightningd's --dev-no-reconnect: no automatic reconnection attempts (incoming ones are accepted).
            return
        if not self.peer_records(peer_id, LIVE) or peer_id not in self.peer_addresses:
            return
        self._reconnecting[peer_id] = self._spawn(self._reconnect_loop(peer_id, delay), "reconnect")

    async def _reconnect_loop(self, peer_id: bytes, delay: float) -> None:
        from ampere.node.net.peers import ConnectError

        cap = 10.0 if self.node.network == "regtest" else 300.0
        try:
            while not self._stopping and self.peer_records(peer_id, LIVE):
                if delay:
                    await asyncio.sleep(delay)
                if self.is_connected(peer_id):
                    return
                addr = self.peer_addresses.get(peer_id)
                if addr is None:
                    return
                try:
                    await self.node.peer_manager.connect(peer_id, addr)
                    return
                except ConnectError as e:
                    self.node.log.debug(f"{peer_id.hex()}-chan", f"Reconnect failed ({e.message}); retrying")
                delay = min(max(1.0, delay * 2), cap)
        finally:
            if self._reconnecting.get(peer_id) is asyncio.current_task():
                del self._reconnecting[peer_id]

    # =============================================================================================
    # chain

    def _watch(self, rec: ChannelRecord) -> None:
        chain = self.node.chain
        if chain is None:
            return
        op = rec.funding_outpoint

        async def seen(txid: bytes, height: int | None, block: Any, tx: Any) -> None:
            await self._funding_seen(rec, height, block)

        async def spent(outpoint: OutPoint, tx: Transaction | None, height: int | None) -> None:
            await self._funding_spent(rec, tx, height)

        if rec.funding_height is None or rec.state is CS.CHANNELD_AWAITING_LOCKIN:
            chain.watch_txid(op.txid, seen)
        chain.watch_outpoint(op, spent)

    async def _funding_seen(self, rec: ChannelRecord, height: int | None, block: Any) -> None:
        if height is None:
            if rec.state is CS.CHANNELD_AWAITING_LOCKIN:
                self.node.log.unusual(self._src(rec), "Funding transaction was reorganised out")
                rec.funding_height = rec.funding_txindex = None
                await self.save_meta(rec)
            else:
                self.node.log.broken(self._src(rec), "Funding transaction of an operating channel was reorganised out")
            return
        txid = rec.funding_outpoint.txid
        index = next((i for i, t in enumerate(block.txs) if t.txid() == txid), None)
        if index is None:
            return
        if (rec.funding_height, rec.funding_txindex) != (height, index):
            rec.funding_height, rec.funding_txindex = height, index
            await self.save_meta(rec)
            self.node.log.info(self._src(rec), f"Funding transaction confirmed at block {height} (index {index})")
            if "open_mvt" not in rec.meta:
                await self._channel_open_movement(rec, height)
        await self._check_depth(rec, height)

    async def _channel_open_movement(self, rec: ChannelRecord, height: int) -> None:
        """CLN's `channel_open` chain_mvt: our contribution credited to the channel's account once the funding
        transaction confirms (the push, like payments, is an off-chain movement). Marked before it is sent:
        a crash in between loses it rather than repeating it."""
        ch = rec.core
        ours = sat_to_msat(ch.funding_sat) if ch.opener is Side.LOCAL else 0
        rec.meta["open_mvt"] = height
        await self.save_meta(rec)
        op = rec.funding_outpoint
        await emit_movements(self.node, [chain_mvt(self.node, rec.channel_id.hex(), "channel_open", (op.txid, op.vout),
                                                   ch.funding_sat, height, credit_msat=ours, peer_id=rec.peer_id)])

    async def _check_depth(self, rec: ChannelRecord, tip: int) -> None:
        if rec.state is not CS.CHANNELD_AWAITING_LOCKIN or rec.funding_height is None or rec.core.channel_ready_sent:
            return
        depth = tip - rec.funding_height + 1
        if depth < max(1, rec.mindepth):
            return
        scid = ShortChannelId.from_parts(rec.funding_height, rec.funding_txindex, rec.funding_outpoint.vout)
        await self.run(rec, lambda ch: core.funding_depth(ch, rec.signer, depth, int(scid), self.env(rec)))

    async def _funding_spent(self, rec: ChannelRecord, tx: Transaction | None, height: int | None) -> None:
        if tx is None:
            # The on-chain resolver re-broadcasts (or follows a different spend): worth noting, not broken.
            self.node.log.unusual(self._src(rec), "The funding spend was reorganised out")
            return
        if rec.spend_txid is not None:
            return  # reported once; the resolver owns it from here (and at start-up through restore)
        txid = tx.txid()
        async with rec.lock:
            rec.meta.update(spend_txid=txid.hex(), spend_tx=tx.serialize().hex(), spend_height=height)
            mutual = bool(rec.core.closing_tx) and Transaction.parse(rec.core.closing_tx).txid() == txid
            if not mutual and not rec.closer:
                rec.meta["closer"] = "remote"
                rec.meta.setdefault("close_cause", "onchain")
            if rec.commit_handle is not None:
                rec.commit_handle.cancel()
                rec.commit_handle = None
            step = core.funding_spent(rec.core, txid)
            events = await self._apply(rec, step)
            if not step.persists:
                await self._persist(rec)
        self._fire(rec, events)
        self.node.log.info(self._src(rec), f"Funding output spent by {tx.txid_hex()} at block {height}")
        self._resolve_close(rec, "mutual" if mutual else "unilateral", [tx])
        gossip = self.node.gossip
        if gossip is not None and rec.short_channel_id is not None and height is not None:
            try:
                gossip.channel_closed(int(rec.short_channel_id), height)
            except Exception as e:
                self.node.log.debug(self._src(rec), f"gossip: {e!r}")
        onchain = self.node.onchain
        if onchain is not None:
            try:
                await onchain.funding_spent(rec, tx, height)
            except Exception as e:
                self.node.log.broken(self._src(rec), f"onchain resolver failed: {e!r}")
        elif mutual:
            await self.mark_closed(rec, rec.close_cause)

    async def mark_onchain(self, rec: ChannelRecord) -> None:
        """The resolver identified the spend: FUNDING_SPEND_SEEN -> ONCHAIN."""
        await self.run(rec, lambda ch: finish(ch, set_state(ch, CS.ONCHAIN), cause="onchain")
                       if ch.state is CS.FUNDING_SPEND_SEEN else Step(ch))

    async def mark_closed(self, rec: ChannelRecord, cause: str | None = None) -> None:
        """Everything on chain is resolved: the channel is CLOSED (listed by listclosedchannels)."""
        if cause in CLOSE_CAUSES and "close_cause" not in rec.meta:
            rec.meta["close_cause"] = cause
        await self.mark_onchain(rec)
        await self.run(rec, lambda ch: finish(ch, set_state(ch, CS.CLOSED), cause="onchain")
                       if ch.state is CS.ONCHAIN else Step(ch))
        self.node.log.info(self._src(rec), "Channel closed")

    # --- chain listener -----------------------------------------------------------------------------
    async def block_connected(self, height: int, block: Any) -> None:
        for rec in list(self.records.values()):
            try:
                await self._channel_block(rec, height)
            except (BitcoindError, BitcoindUnreachable):
                raise   # the chain backend's trouble: the chain watcher redoes the block
            except Exception as e:
                # A bug in one channel must not keep the others from their HTLC deadlines: raised to the chain
                # watcher, the block would be redone at every poll and no later block would ever be seen.
                self.node.log.broken(self._src(rec), f"At block {height}: {e!r}; again at the next block")
        await self._follow_fees()

    async def _channel_block(self, rec: ChannelRecord, height: int) -> None:
        st = rec.state
        if st is CS.CHANNELD_AWAITING_LOCKIN:
            await self._check_depth(rec, height)
        elif st in OPERATING and rec.core.htlcs:
            await self.run(rec, lambda ch: core.on_block(ch, rec.signer, height))
        if st in (CS.CHANNELD_AWAITING_LOCKIN, CS.CLOSINGD_COMPLETE, CS.AWAITING_UNILATERAL) and height % 6 == 0:
            await self._rebroadcast(rec)

    async def block_disconnected(self, height: int, block_hash: bytes, block: Any) -> None:
        return None

    async def _follow_fees(self) -> None:
        """As the opener, keep the commitment feerate near the chain's (BOLT 2 update_fee)."""
        chain = self.node.chain
        if chain is None or not chain.fees.known:
            return
        from ampere.ln.channel.commitment import Side

        for rec in list(self.records.values()):
            ch = rec.core
            if rec.state is not CS.CHANNELD_NORMAL or ch.opener is not Side.LOCAL or not ch.can_speak \
                    or ch.fee_updates:
                continue
            # Anchor commitments follow the low `unilateral_anchor_close` estimate (CLN's choice): BOLT #2 lets
            # the opener rely on CPFP through its anchor, and a low commitment fee keeps balances spendable.
            target = chain.fees.named("unilateral_anchor_close" if ch.params.channel_type.anchors
                                      else "unilateral_close")
            if not target:
                continue
            current = ch.feerate_per_kw
            if current and abs(target - current) * 10 < current:  # within 10%: not worth a signature round
                continue
            try:
                step = await self.run(rec, lambda c: core.update_fee(c, rec.signer, target, self.env(rec)))
            except Exception as e:   # (as in block_connected: one channel's bug is that channel's)
                self.node.log.broken(self._src(rec), f"update_fee to {target}: {e!r}")
                continue
            if isinstance(step, Refusal):
                self.node.log.debug(self._src(rec), f"update_fee to {target}: {step.message}")

    # =============================================================================================
    # local requests used by the RPC layer

    async def start_close(self, rec: ChannelRecord, scriptpubkey: bytes | None) -> Step | Refusal:
        return await self.run(rec, lambda ch: core.start_shutdown(ch, rec.signer, self.env(rec), scriptpubkey))

    def dev_reenable_commit(self, rec: ChannelRecord) -> None:
        rec.commit_reenabled = True
        self._schedule_commit(rec)

    async def force_close(self, rec: ChannelRecord, reason: str) -> Step | Refusal:
        return await self.run(rec, lambda ch: core.force_close(ch, rec.signer, reason))


def _scid_int(rec: ChannelRecord) -> int | None:
    """`int(rec.short_channel_id)` without building the ShortChannelId (the same value: BOLT 7's block << 40 |
    txindex << 16 | output)."""
    scid = rec.core.short_channel_id
    if scid is not None:
        return int(scid)
    if rec.funding_height is not None and rec.funding_txindex is not None:
        return (rec.funding_height << 40) | (rec.funding_txindex << 16) | rec.funding_outpoint.vout
    return None


def _on_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _groupable(step: Step) -> bool:
    """May this step share one write with the steps around it? Only if it neither changes the channel's state,
    nor broadcasts, nor hangs up, nor answers a misbehaviour: those are carried out alone."""
    if step.error is not None:
        return False
    return not any(isinstance(a, (Broadcast, Disconnect, StateChanged, DataLossDetected)) for a in step.actions)


def _text(data: bytes) -> str:
    return bytes(data).decode("utf-8", "replace")


def _default_message(sc: StateChanged) -> str:
    return {"user": "User or plugin invoked", "remote": "Peer request", "onchain": "Onchain event",
            "protocol": "Protocol event", "local": "Local event"}.get(sc.cause, "state change")
