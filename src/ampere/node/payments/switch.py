"""The HTLC switch: forwarding other people's payments (`node.switch`).

An incoming HTLC whose onion names a next channel reaches `Switch.forward(inc, payload, next_onion, ...)` from the
receiver (ampere.node.payments.receive), after the onion was peeled and `htlc_accepted` said continue:

    checks (pure: ln.forwarding)     BOLT 4/7 against OUR channel_update for the outgoing channel: fee, CLTV delta,
                                     expiry too soon / too far, htlc minimum and maximum, enabled
    persist the forward              a row in `forwards` (status offered) is on disk BEFORE the HTLC is offered
    offer on the outgoing channel    channel_manager.offer_htlc; a refusal (capacity, limits) becomes our own
                                     failure, with our channel_update (temporary_channel_failure, ...)
    outcome                          fulfilled downstream -> fulfill upstream (the fee is earned); failed
                                     downstream -> the failure onion travels back with our obfuscation layer; a
                                     malformed report from downstream becomes our own invalid_onion_* failure

Exactly once, across restarts: every forward has its row (keyed by the incoming HTLC) with the outgoing HTLC's
id; when the node comes back, the receiver hands every still-unresolved incoming HTLC that has a row to
`resume()` instead of forwarding it again: a preimage the outgoing channel learnt while we were down settles it,
a failure fails it, an HTLC still in flight is waited for.

`forward_event` notifications and `listforwards` / `delforward` use Core Lightning's shapes
(lightningd/forwards.c).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ampere.node.app.tasks import cancel_and_wait, spawn_guarded
from ampere.store.counters import next_counter
from ampere.ln.channel.actions import Refusal
from ampere.ln.invoice_fields import scid_to_str
from ampere.ln.forwarding import DEFAULT_MAX_LOCKTIME, ForwardRefusal, Policy, check_forward, failure_with_update
from ampere.ln.onion_failure import BADONION, UPDATE, encode_failure_message, failure_code, failure_code_name
from ampere.primitives.amount import MsatInt

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node

OFFERED, SETTLED, FAILED, LOCAL_FAILED = "offered", "settled", "failed", "local_failed"
_STATUS_CODES = {OFFERED: 0, SETTLED: 1, FAILED: 2, LOCAL_FAILED: 3}
_STATUS_NAMES = {v: k for k, v in _STATUS_CODES.items()}
_VAR_UPDATED_INDEX = "forwards.updated_index"

# The `forwards` table is created by migration 9 (src/ampere/store/migrations.py).
_COLUMNS = ("id, in_channel_id, in_htlc_id, in_scid, in_msat, in_cltv, payment_hash, out_scid, out_channel_id, "
            "out_htlc_id, out_msat, out_cltv, status, failcode, received_time, resolved_time, shared_secret, preimage, "
            "fail_message, fail_onion, updated_index")


# ---- records -------------------------------------------------------------------------------------------------

@dataclass
class Forward:
    """One forward (a row of `forwards`), keyed by its incoming HTLC."""

    created_index: int
    in_channel_id: bytes
    in_htlc_id: int
    in_scid: int | None
    in_msat: int
    in_cltv: int
    payment_hash: bytes
    status: str
    received_time: float
    out_scid: int | None = None
    out_channel_id: bytes | None = None
    out_htlc_id: int | None = None
    out_msat: int | None = None
    out_cltv: int | None = None
    failcode: int | None = None
    resolved_time: float | None = None
    shared_secret: bytes | None = None
    preimage: bytes | None = None
    fail_message: bytes | None = None   # our own failure message (local_failed, or malformed downstream)
    fail_onion: bytes | None = None     # the downstream failure onion, before our layer
    updated_index: int = 0
    inc: Any = None                     # the receiver's IncomingHtlc, while unresolved
    resolved_upstream: bool = False

    @property
    def key(self) -> tuple[bytes, int]:
        return (self.in_channel_id, self.in_htlc_id)

    @property
    def fee_msat(self) -> MsatInt | None:
        return MsatInt(self.in_msat - self.out_msat) if self.out_msat is not None else None

    def to_json(self) -> dict:
        """lightningd/forwards.c json_add_forwarding_fields (listforwards)."""
        out: dict[str, Any] = {"created_index": self.created_index}
        if self.updated_index:
            out["updated_index"] = self.updated_index
        out["in_channel"] = scid_to_str(self.in_scid) if self.in_scid is not None else "0x0x0"
        out["in_htlc_id"] = self.in_htlc_id
        if self.out_scid is not None:
            out["out_channel"] = scid_to_str(self.out_scid)
            if self.out_htlc_id is not None:
                out["out_htlc_id"] = self.out_htlc_id
        out["in_msat"] = self.in_msat
        if self.out_msat is not None and self.out_scid is not None:
            out["out_msat"] = self.out_msat
            out["fee_msat"] = self.in_msat - self.out_msat
        out["status"] = self.status
        if self.status == LOCAL_FAILED and self.failcode is not None:
            out["failcode"] = self.failcode
            out["failreason"] = "WIRE_" + failure_code_name(self.failcode).upper()
        out["style"] = "tlv"
        out["received_time"] = self.received_time
        if self.resolved_time is not None and self.status in (SETTLED, FAILED):
            out["resolved_time"] = self.resolved_time
        return out

    def event_json(self) -> dict:
        out = self.to_json()
        out["payment_hash"] = self.payment_hash.hex()
        if self.status == SETTLED and self.preimage is not None:
            out["preimage"] = self.preimage.hex()
        return out


def _row(f: Forward) -> tuple:
    return (f.in_channel_id, f.in_htlc_id, f.in_scid, f.in_msat, f.in_cltv, f.payment_hash, f.out_scid,
            f.out_channel_id, f.out_htlc_id, f.out_msat, f.out_cltv, _STATUS_CODES[f.status], f.failcode,
            f.received_time, f.resolved_time, f.shared_secret, f.preimage, f.fail_message, f.fail_onion,
            f.updated_index)


def _from_row(r: tuple) -> Forward:
    (id_, icid, ihid, iscid, imsat, icltv, ph, oscid, ocid, ohid, omsat, ocltv, st, fc, rt, rst, ss, pre, fm, fo,
     upd) = r
    b = lambda v: bytes(v) if v is not None else None  # noqa: E731
    return Forward(created_index=id_, in_channel_id=bytes(icid), in_htlc_id=ihid, in_scid=iscid, in_msat=imsat,
                   in_cltv=icltv, payment_hash=bytes(ph), status=_STATUS_NAMES[st], received_time=rt,
                   out_scid=oscid, out_channel_id=b(ocid), out_htlc_id=ohid, out_msat=omsat, out_cltv=ocltv,
                   failcode=fc, resolved_time=rst, shared_secret=b(ss), preimage=b(pre), fail_message=b(fm),
                   fail_onion=b(fo), updated_index=upd or 0)




# ---- the switch ----------------------------------------------------------------------------------------------

class Switch:
    def __init__(self, node: Node) -> None:
        self.node = node

        # created_index -> forward, while OFFERED: a settled or failed forward leaves memory (listforwards and
        # delforward read the database), so 10,000 forwards do not stay in RAM.
        self.forwards: dict[int, Forward] = {}
        self.by_in: dict[tuple[bytes, int], Forward] = {}         # unresolved, by incoming HTLC
        self.by_out: dict[tuple[bytes, int], Forward] = {}        # in flight, by outgoing HTLC
        self._updates: dict[tuple[int, tuple], bytes] = {}        # our signed channel_updates, by (scid, policy)
        self._tasks: set[asyncio.Task] = set()
        self._started = False

    # ---- plumbing
    def _log(self, level: str, msg: str) -> None:
        log = self.node.log
        if log is not None:
            log.log(level, "switch", msg)

    @property
    def manager(self) -> Any:
        return self.node.channel_manager

    @property
    def receiver(self) -> Any:
        return self.node.receiver

    def blockheight(self) -> int:
        return self.node.current_height()

    def _option(self, name: str, default: Any) -> Any:
        return self.node.option(name, default)

    def _spawn(self, coro) -> None:
        spawn_guarded(self._tasks, coro, "forward task", lambda msg: self._log("broken", msg))

    # ---- life cycle
    async def start(self) -> None:
        """Load the forwards; listen to the channel manager (before any peer speaks)."""
        if self._started:
            return
        self._started = True

        def load(db) -> list[tuple]:
            return db.query(f"SELECT {_COLUMNS} FROM forwards ORDER BY id")

        rows = await self.node.store.write(load)
        earned = 0
        for r in rows:
            f = _from_row(r)
            if f.status == OFFERED:
                self.forwards[f.created_index] = f
            if f.status == SETTLED and f.fee_msat:
                earned += f.fee_msat
            if f.status == OFFERED or f.status in (SETTLED, FAILED, LOCAL_FAILED):
                self.by_in[f.key] = f
            if f.status == OFFERED and f.out_channel_id is not None and f.out_htlc_id is not None:
                self.by_out[(f.out_channel_id, f.out_htlc_id)] = f
        mgr = self.manager
        if mgr is not None:
            if earned:
                mgr.add_fees_collected(earned)
            mgr.on_htlc_fulfilled(self._on_fulfilled)
            # The peer's update_fulfill_htlc reaches _on_fulfilled as soon as its step is computed (before the
            # outgoing channel's write and its revoke_and_ack/commitment_signed), so the incoming HTLC's fulfil --
            # its own step, written with the preimage before it leaves -- is queued at once (issue 18).
            # The event after the write finds the forward gone from by_out and does nothing.
            mgr.on_preimage_learned(self._on_fulfilled)
            mgr.on_htlc_failed(self._on_failed)
            await self._claim_unrecorded()
        # Forwards whose incoming HTLC is already resolved need nothing more: keep only the open ones.
        pending_in = {(bytes(r.channel_id), int(h.htlc_id)) for r, h in mgr.pending_incoming_htlcs()} \
            if mgr is not None else set()
        for key in [k for k, f in self.by_in.items() if k not in pending_in and f.status != OFFERED]:
            del self.by_in[key]

    async def _claim_unrecorded(self) -> None:
        """An offered forward without its outgoing HTLC id (we stopped between the offer and the record): the
        outgoing channel's HTLC with the same hash, amount and expiry is ours; none means it never left."""
        mgr = self.manager
        for f in [f for f in self.by_in.values() if f.status == OFFERED and f.out_htlc_id is None]:
            rec = mgr.find(f.out_channel_id) if f.out_channel_id is not None else None
            claimed = {hid for (cid, hid) in self.by_out if rec is not None and cid == rec.channel_id}
            match = None
            if rec is not None:
                match = next((h for h in rec.core.htlcs if h.offerer.name == "LOCAL" and h.payment_hash ==
                              f.payment_hash and h.amount_msat == f.out_msat and h.cltv_expiry == f.out_cltv
                              and h.htlc_id not in claimed), None)
            if match is None:
                f.fail_message = failure_with_update("temporary_channel_failure", {}, None)
                f.failcode = failure_code("temporary_channel_failure")
                await self._set_status(f, LOCAL_FAILED)
                continue
            f.out_htlc_id = match.htlc_id
            self.by_out[(f.out_channel_id, f.out_htlc_id)] = f
            await self.node.store.write(self._update_op(f, bump=False))

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)

    # ---- our channel_update
    def policy_for(self, rec: Any) -> Policy:
        s = rec.settings
        return Policy(fee_base_msat=MsatInt(int(s.fee_base_msat)), fee_ppm=int(s.fee_ppm), cltv_delta=int(s.cltv_delta),
                      htlc_minimum_msat=MsatInt(int(s.htlc_min_msat)), htlc_maximum_msat=MsatInt(int(s.htlc_max_msat)),
                      enabled=not bool(rec.meta.get("disabled")) if hasattr(rec, "meta") else True)

    def channel_update_for(self, rec: Any) -> bytes | None:
        """Our current channel_update for `rec` (what failures with the UPDATE bit carry): the one in the graph if
        it says what our settings say, otherwise a freshly signed one."""
        scid = rec.short_channel_id
        if scid is None:
            return None
        # The announcer signs our updates; reuse its current one so a failure never carries a second,
        # different update with the same timestamp (receivers would drop it).
        announcer = self.node.channel_announcer
        current = announcer.current_update(rec) if announcer is not None else None
        if current is not None:
            return current
        pol = self.policy_for(rec)
        key = (int(scid), (pol.fee_base_msat, pol.fee_ppm, pol.cltv_delta, pol.htlc_minimum_msat,
                           pol.htlc_maximum_msat, pol.enabled))
        raw = self._updates.get(key)
        if raw is not None:
            return raw
        direction = 0 if self.node.node_id < rec.peer_id else 1
        gossip = self.node.gossip
        if gossip is not None:
            try:
                ch = gossip.state.graph.channels.get(int(scid))
                half = ch.halves[direction] if ch is not None else None
                if half is not None and (half.fee_base_msat, half.fee_proportional_millionths, half.cltv_expiry_delta,
                                         half.htlc_minimum_msat, half.htlc_maximum_msat, half.enabled) == key[1]:
                    self._updates[key] = half.raw
                    return half.raw
            except Exception:
                pass
        try:
            from ampere.ln.gossip.signing import make_channel_update
            from ampere.wire import bolt1

            upd = make_channel_update(
                chain_hash=bolt1.chain_hash(self.node.network), short_channel_id=int(scid),
                timestamp=int(time.time()), direction=direction, cltv_expiry_delta=pol.cltv_delta,
                htlc_minimum_msat=pol.htlc_minimum_msat, htlc_maximum_msat=pol.htlc_maximum_msat,
                fee_base_msat=pol.fee_base_msat, fee_proportional_millionths=pol.fee_ppm,
                sign=self.node.signer, disabled=not pol.enabled,
                dont_forward=not bool(getattr(rec.core, "announce", False)))
            raw = upd.to_bytes()
        except Exception as e:
            self._log("unusual", f"could not make a channel_update for {scid}: {e!r}")
            return None
        self._updates[key] = raw
        return raw

    # ---- forwarding
    async def forward(self, inc: Any, payload: Any, next_onion: bytes, forward_to: Any = None,
                      extra_tlvs: Any = None, path_key: bytes | None = None) -> None:
        """Forward `inc` (the receiver's IncomingHtlc, onion peeled) as `payload` says.  `path_key`: the next
        route-blinding path key, sent in update_add_htlc (node.blinded_htlcs)."""
        known = self.by_in.get(inc.key)
        if known is not None:
            await self.resume(inc)
            return
        mgr = self.manager
        out_msat = MsatInt(int(payload.amt_to_forward))
        out_cltv = int(payload.outgoing_cltv_value)
        f = Forward(created_index=0, in_channel_id=inc.channel_id, in_htlc_id=inc.htlc_id, in_scid=inc.scid,
                    in_msat=inc.amount_msat, in_cltv=inc.cltv_expiry, payment_hash=inc.payment_hash,
                    status=OFFERED, received_time=round(inc.received_at, 3), out_msat=out_msat, out_cltv=out_cltv,
                    shared_secret=inc.shared_secret)
        f.inc = inc
        # htlc_accepted's `forward_to` (a channel_id) replaces the onion's channel.
        target: Any = int(payload.short_channel_id)
        if forward_to:
            try:
                target = bytes.fromhex(forward_to) if isinstance(forward_to, str) else bytes(forward_to)
            except ValueError:
                pass
        rec = mgr.find(target) if mgr is not None else None
        if rec is not None:
            f.out_scid = int(rec.short_channel_id) if rec.short_channel_id is not None else int(payload.short_channel_id)
            f.out_channel_id = rec.channel_id
        else:
            f.out_scid = int(payload.short_channel_id)
        # BOLT #4: "if the receiving peer specified by the onion is NOT known: return an unknown_next_peer error."
        if rec is None or rec.state.value not in ("CHANNELD_NORMAL", "CHANNELD_AWAITING_LOCKIN",
                                                  "CHANNELD_SHUTTING_DOWN"):
            await self._local_fail(f, ForwardRefusal("unknown_next_peer", {}, "no such channel"), None)
            return
        update = None
        if rec.state.value != "CHANNELD_NORMAL" or not mgr.is_connected(rec.peer_id):
            # The channel exists but cannot take an HTLC now (peer away, shutting down).
            await self._local_fail(f, ForwardRefusal("temporary_channel_failure", {}, "channel not available"),
                                   self.channel_update_for(rec))
            return
        refusal = check_forward(self.policy_for(rec), inc.amount_msat, inc.cltv_expiry, out_msat, out_cltv,
                                self.blockheight(), int(self._option("max-locktime-blocks", DEFAULT_MAX_LOCKTIME)))
        if refusal is not None:
            await self._local_fail(f, refusal, self.channel_update_for(rec))
            return
        # The forward's row goes in the same transaction as the outgoing HTLC (`also`): after a crash, an outgoing
        # HTLC always has the row that ties it to the incoming one, and neither costs an fsync of its own.
        # sign_now: the commitment_signed covering the HTLC is signed in that write too (no commit timer's fsync).
        self.by_in[f.key] = f
        row: list[int] = []

        def insert(db, out_htlc_id: int) -> None:
            f.out_htlc_id = out_htlc_id
            row[:] = [self._insert_op(f)(db)]   # rerun safe: a rerun of the batch replaces the id

        try:
            htlc_id = await mgr.offer_htlc(rec.channel_id, out_msat, inc.payment_hash, out_cltv, next_onion,
                                           path_key=path_key, also=insert, sign_now=True)
        except Exception as e:
            f.out_htlc_id = None  # no row was committed: _local_fail inserts one
            code = getattr(e, "failure_code", None) or failure_code("temporary_channel_failure")
            if code & UPDATE:
                update = self.channel_update_for(rec)
            fields = {"htlc_msat": out_msat} if code == failure_code("amount_below_minimum") else {}
            await self._local_fail(f, ForwardRefusal(failure_code_name(code), fields, str(e)), update, code=code)
            return
        f.out_htlc_id = int(htlc_id)
        f.created_index = row[0]
        self.forwards[f.created_index] = f
        self.by_out[(rec.channel_id, f.out_htlc_id)] = f
        self._log("debug", f"forwarding HTLC {inc.htlc_id} ({inc.amount_msat}msat) as HTLC {htlc_id} "
                           f"({out_msat}msat) on {scid_to_str(f.out_scid)}")
        self._notify(f)

    async def _local_fail(self, f: Forward, refusal: ForwardRefusal, update: bytes | None, code: int | None = None) -> None:
        code = code if code is not None else refusal.code
        msg = failure_with_update(code, refusal.fields, update)
        self._log("debug", f"HTLC {f.in_htlc_id} on {scid_to_str(f.in_scid) if f.in_scid else '?'}: "
                           f"{failure_code_name(code)} ({refusal.detail})")
        f.failcode, f.fail_message = code, msg
        f.status, f.resolved_time = LOCAL_FAILED, round(time.time(), 3)
        if f.created_index:
            await self.node.store.write(self._update_op(f))
        else:
            await self._insert(f)
        self.by_in.pop(f.key, None)
        await self._fail_upstream(f, own_message=msg)
        self._notify(f)

    # ---- outcomes from the outgoing channel
    def _on_fulfilled(self, record: Any, ev: Any) -> None:
        f = self.by_out.pop((bytes(ev.channel_id), int(ev.htlc_id)), None)
        if f is None:
            return None
        preimage = bytes(ev.preimage)
        # The incoming HTLC's fulfil is queued now when its channel can take it at once (on_preimage_learned), with
        # our row (settled, the preimage) in the same write; else _settle's task does both.
        rcv = self.receiver
        if f.status == OFFERED and not f.resolved_upstream and f.inc is not None and rcv is not None:
            queued = rcv.fulfill_soon(f.inc, preimage, also=self._update_op(f))
            if queued is not None:
                # Set before the write runs (the op reads them on the database thread, after this returns).
                f.resolved_upstream = True
                f.preimage, f.status, f.resolved_time = preimage, SETTLED, round(time.time(), 3)
                queued.add_done_callback(lambda fut: self._settled_with_upstream(f, fut))
                return
        self._spawn(self._settle(f, preimage))

    def _settled_with_upstream(self, f: Forward, fut: asyncio.Future) -> None:
        """The incoming fulfil carrying our row is done: the row went with it, unless the channel refused the
        fulfil or the write failed (then the row is written on its own, as _settle does)."""
        outcome = None if fut.cancelled() else (fut.exception() or fut.result())
        if fut.cancelled() or isinstance(outcome, (BaseException, Refusal)):
            self._spawn(self._store(f))
        elif f.status != OFFERED:
            self.forwards.pop(f.created_index, None)
        mgr = self.manager
        if mgr is not None and f.fee_msat:
            mgr.add_fees_collected(f.fee_msat)
        self.by_in.pop(f.key, None)
        self._notify(f)

    def _on_failed(self, record: Any, ev: Any) -> None:
        f = self.by_out.pop((bytes(ev.channel_id), int(ev.htlc_id)), None)
        if f is not None and getattr(ev, "onchain", False):
            # The outgoing HTLC timed out on-chain: CLN fails the incoming one with permanent_channel_failure.
            self._spawn(self._downstream_failed(f, b"", failure_code("permanent_channel_failure"), b"", onchain=True))
        elif f is not None:
            self._spawn(self._downstream_failed(f, bytes(ev.reason or b""), int(ev.failure_code or 0),
                                                bytes(ev.sha256_of_onion or b"")))

    async def _settle(self, f: Forward, preimage: bytes) -> None:
        if f.status != OFFERED:
            return
        f.preimage = preimage
        f.status, f.resolved_time = SETTLED, round(time.time(), 3)
        # The preimage is in the outgoing channel's state already; the incoming fulfill and our row go together.
        await asyncio.gather(self._fulfill_upstream(f), self._store(f))
        mgr = self.manager
        if mgr is not None and f.fee_msat:
            mgr.add_fees_collected(f.fee_msat)
        self.by_in.pop(f.key, None)
        self._notify(f)

    async def _downstream_failed(self, f: Forward, reason: bytes, malformed_code: int, sha256_of_onion: bytes,
                                 onchain: bool = False) -> None:
        if f.status != OFFERED:
            return
        if onchain:
            f.fail_message = encode_failure_message(malformed_code)
            f.failcode = malformed_code
        elif malformed_code:
            # BOLT #4: an intermediate hop receiving update_fail_malformed_htlc "MUST ... return an
            # `update_fail_htlc` ... with the failure code ... and sha256_of_onion", encrypted by itself.
            code = malformed_code if malformed_code & BADONION else failure_code("invalid_onion_version")
            try:
                f.fail_message = encode_failure_message(code, sha256_of_onion=sha256_of_onion)
            except ValueError:
                f.fail_message = encode_failure_message("invalid_onion_version", sha256_of_onion=sha256_of_onion)
            f.failcode = code
        else:
            f.fail_onion = reason
        f.status, f.resolved_time = FAILED, round(time.time(), 3)
        await asyncio.gather(self._fail_upstream(f, own_message=f.fail_message, onion=f.fail_onion), self._store(f))
        self.by_in.pop(f.key, None)
        self._notify(f)

    # ---- resolving the incoming HTLC
    async def _fulfill_upstream(self, f: Forward) -> None:
        if f.resolved_upstream:
            return
        f.resolved_upstream = True
        rcv = self.receiver
        if f.inc is not None and rcv is not None:
            await rcv.fulfill(f.inc, f.preimage)
            return
        try:
            await self.manager.fulfill_htlc(f.in_channel_id, f.in_htlc_id, f.preimage)
        except Exception as e:
            self._log("unusual", f"could not fulfill incoming HTLC {f.in_htlc_id}: {e!r}")

    async def _fail_upstream(self, f: Forward, own_message: bytes | None = None, onion: bytes | None = None) -> None:
        if f.resolved_upstream:
            return
        f.resolved_upstream = True
        rcv = self.receiver
        if f.inc is not None and rcv is not None:
            if onion is not None:
                await rcv.fail_with_onion(f.inc, onion)
            else:
                await rcv.fail(f.inc, own_message)
            return
        from ampere.ln.onion_failure import create_failure_packet, wrap_failure

        if f.shared_secret is None:
            self._log("broken", f"forward {f.created_index}: no shared secret to fail the incoming HTLC with")
            return
        packet = wrap_failure(f.shared_secret, onion) if onion is not None else \
            create_failure_packet(f.shared_secret, own_message)
        try:
            await self.manager.fail_htlc(f.in_channel_id, f.in_htlc_id, packet)
        except Exception as e:
            self._log("unusual", f"could not fail incoming HTLC {f.in_htlc_id}: {e!r}")

    def knows(self, key: tuple[bytes, int]) -> bool:
        """Is this incoming HTLC one we forwarded (or refused) already? (the receiver's replay asks)"""
        return key in self.by_in

    async def resume(self, inc: Any) -> None:
        """After a restart: the incoming HTLC `inc` was forwarded before; finish it without offering again."""
        f = self.by_in.get(inc.key)
        if f is None:
            return
        f.inc = inc
        if inc.shared_secret is None:
            inc.shared_secret = f.shared_secret
        if f.status == SETTLED and f.preimage is not None:
            await self._fulfill_upstream(f)
        elif f.status == FAILED:
            await self._fail_upstream(f, own_message=f.fail_message, onion=f.fail_onion)
        elif f.status == LOCAL_FAILED:
            await self._fail_upstream(f, own_message=f.fail_message or failure_with_update(
                "temporary_channel_failure", {}, None))
        else:
            await self._resume_offered(f)
        if f.resolved_upstream:
            self.by_in.pop(f.key, None)

    async def _resume_offered(self, f: Forward) -> None:
        mgr = self.manager
        rec = mgr.find(f.out_channel_id) if f.out_channel_id is not None and mgr is not None else None
        if rec is None or f.out_htlc_id is None:
            await self._downstream_failed_local(f, rec)
            return
        for r, hid, pre in mgr.known_preimages():
            if r.channel_id == rec.channel_id and hid == f.out_htlc_id:
                self.by_out.pop((rec.channel_id, hid), None)
                await self._settle(f, pre)
                return
        h = next((h for h in rec.core.htlcs if h.offerer.name == "LOCAL" and h.htlc_id == f.out_htlc_id), None)
        if h is None:
            # Gone from a live channel and not fulfilled (a fulfill keeps its preimage): it failed while we were
            # down, its reason lost with the process.
            self.by_out.pop((rec.channel_id, f.out_htlc_id), None)
            await self._downstream_failed_local(f, rec)
            return
        removal = h.removal
        if removal is not None and h.state.name == "RCVD_REMOVE_ACK_REVOCATION":
            self.by_out.pop((rec.channel_id, f.out_htlc_id), None)
            await self._downstream_failed(f, bytes(removal.reason or b""), int(removal.failure_code or 0),
                                          bytes(removal.sha256_of_onion or b""))
            return
        # Still in flight: its fulfil or failure will come as an event.
        self.by_out[(rec.channel_id, f.out_htlc_id)] = f
        self._log("debug", f"forward {f.created_index}: outgoing HTLC {f.out_htlc_id} still in flight")

    async def _downstream_failed_local(self, f: Forward, rec: Any) -> None:
        f.fail_message = failure_with_update("temporary_channel_failure", {},
                                             self.channel_update_for(rec) if rec is not None else None)
        f.failcode = failure_code("temporary_channel_failure")
        f.status, f.resolved_time = FAILED, round(time.time(), 3)
        await asyncio.gather(self._fail_upstream(f, own_message=f.fail_message), self._store(f))
        self._notify(f)

    # ---- storage
    def _insert_op(self, f: Forward):
        # Database only: the store may run a write function more than once (PostgreSQL reruns a batch after a
        # member raised or the connection broke), so the in-memory index is updated by _insert once committed.
        def op(db) -> int:
            cur = db.execute(f"INSERT INTO forwards ({_COLUMNS.partition(', ')[2]}) VALUES ({', '.join('?' * 20)})",
                             _row(f))
            return cur.lastrowid
        return op

    async def _insert(self, f: Forward) -> None:
        f.created_index = await self.node.store.write(self._insert_op(f))
        self.forwards[f.created_index] = f

    def _update_op(self, f: Forward, bump: bool = True):
        def op(db) -> Forward:
            # Sets the in-memory updated_index inside the op, so that a later op of the same batch on the same
            # object stores it.  Safe to run again: the counter comes from the database, rolled back with the
            # undone run, so each run sets its own run's value and the last run is the one committed.
            if bump:
                f.updated_index = next_counter(db, _VAR_UPDATED_INDEX)
            db.execute("UPDATE forwards SET out_scid = ?, out_channel_id = ?, out_htlc_id = ?, status = ?, "
                       "failcode = ?, resolved_time = ?, preimage = ?, fail_message = ?, fail_onion = ?, "
                       "updated_index = ? WHERE id = ?",
                       (f.out_scid, f.out_channel_id, f.out_htlc_id, _STATUS_CODES[f.status], f.failcode,
                        f.resolved_time, f.preimage, f.fail_message, f.fail_onion, f.updated_index, f.created_index))
            return f
        return op

    async def _store(self, f: Forward, bump: bool = True) -> None:
        try:
            await self.node.store.write(self._update_op(f, bump))
        except Exception as e:
            self._log("broken", f"storing forward {f.created_index} failed: {e!r}")
            return
        if f.status != OFFERED:
            self.forwards.pop(f.created_index, None)

    async def _set_status(self, f: Forward, status: str) -> None:
        f.status, f.resolved_time = status, round(time.time(), 3)
        await self._store(f)

    def _notify(self, f: Forward) -> None:
        notify = self.node.notify
        if notify is not None:
            notify("forward_event", f.event_json())

    # ---- listforwards / delforward
    async def list(self, status: str | None = None, in_channel: int | None = None, out_channel: int | None = None,
                   index: str | None = None, start: int | None = None, limit: int | None = None) -> list[dict]:
        """From the database (which has every forward; memory keeps only the open ones), paged as
        listing.page does."""
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(_STATUS_CODES[status])
        if in_channel is not None:
            where.append("in_scid = ?")
            params.append(int(in_channel))
        if out_channel is not None:
            where.append("out_scid = ?")
            params.append(int(out_channel))
        if index == "updated":
            where.append("updated_index >= ? AND updated_index > 0")
            params.append(start or 0)
            order = "updated_index"
        else:
            where.append("id >= ?")
            params.append(start or 0)
            order = "id"
        sql = f"SELECT {_COLUMNS} FROM forwards WHERE {' AND '.join(where)} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = await self.node.store.read(lambda db: db.query(sql, params))
        return [_from_row(r).to_json() for r in rows]

    async def delete(self, in_channel: int, in_htlc_id: int, status: str) -> bool:
        def op(db) -> list[int]:
            ids = [r[0] for r in db.query("SELECT id FROM forwards WHERE in_scid = ? AND in_htlc_id = ? AND status = ?",
                                          (int(in_channel), in_htlc_id, _STATUS_CODES[status]))]
            for id_ in ids:
                db.execute("DELETE FROM forwards WHERE id = ?", (id_,))
            return ids

        ids = await self.node.store.write(op)
        for id_ in ids:
            self.forwards.pop(id_, None)
        return bool(ids)


