"""Incoming HTLCs: the onion peeled, the `htlc_accepted` chain, the final-hop checks and multi-part sets.

Every HTLC the peer irrevocably committed to reaches `Receiver.on_incoming_htlc` (from the channel manager,
and again after a restart for every HTLC still unresolved: CLN's `htlcs_resubmit`).  Each one gets ITS OWN
task, so a plugin holding its `htlc_accepted` answer (a HODL invoice) delays only that HTLC: other HTLCs,
channels and RPC calls go on.  Except the common case (`_fast`): a final-hop HTLC that alone pays an invoice the
registry has at hand, with no plugin asking, is checked at once and its fulfil (with the invoice row) queued on
its channel from the listener itself -- no task, no read of the invoice (issue 18).

    peel the onion (BOLT 4)        a BADONION is answered with update_fail_malformed_htlc at once
    htlc_accepted chain            continue (with replacements) / fail / resolve  (the approver: plugins.approval)
    forward                        handed to `node.switch.forward(...)` if there is a switch, else unknown_next_peer
    final hop                      BOLT 4 checks (amount, CLTV, payment_secret, invoice), then the HTLC joins the
                                   set of its payment_hash; when the set reaches total_msat: the invoice_payment
                                   hook, `mark_paid` (synced), then every part is fulfilled (a one-part set: the
                                   invoice row goes in the fulfil's own write, `_pay_and_fulfil`).  A set still
                                   incomplete after `dev-mpp-timeout` seconds (60) fails with mpp_timeout.

Failure messages are BOLT 4's, wrapped with the HTLC's shared secret (ampere.ln.onion_failure).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ampere.node.app.tasks import cancel_and_wait, spawn_guarded
from ampere.ln.channel.actions import Refusal
from ampere.ln.invoice_fields import scid_to_str
from ampere.ln.onion import BadOnionError, InvalidOnionPayload, OnionError, PeeledOnion, peel_onion
from ampere.ln.onion_failure import create_failure_packet, encode_failure_message, wrap_failure
from ampere.ln.onion_payload import HopPayload, check_hop_payload, decode_hop_payload
from ampere.primitives.amount import MsatInt
from ampere.primitives.bigsize import encode_bigsize

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node
    from ampere.node.payments.approval import HtlcVerdict, PaymentApprover

INCORRECT_OR_UNKNOWN = "incorrect_or_unknown_payment_details"
DEFAULT_MPP_TIMEOUT = 60.0


@dataclass
class IncomingHtlc:
    """One HTLC offered to us, from its arrival until we resolve it."""

    channel_id: bytes
    htlc_id: int
    amount_msat: MsatInt
    payment_hash: bytes
    cltv_expiry: int
    onion: bytes
    scid: int | None = None
    peer_id: bytes | None = None
    path_key: bytes | None = None
    received_at: float = field(default_factory=time.time)
    shared_secret: bytes | None = None
    status: str = "peeling"         # peeling, hook (waiting for htlc_accepted), held (MPP), forwarding, resolving
    hook_plugin: str | None = None
    resolved: bool = False
    blinded: str | None = None      # inside a blinded path: how failures are reported (node.blinded_htlcs)

    @property
    def key(self) -> tuple[bytes, int]:
        return (self.channel_id, self.htlc_id)


@dataclass
class HtlcSet:
    """The parts of one multi-part payment we hold until their sum reaches `total_msat` (lightningd/htlc_set.c)."""

    payment_hash: bytes
    total_msat: int
    invoice: Any
    parts: list[IncomingHtlc] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    settling: bool = False

    @property
    def received_msat(self) -> MsatInt:
        return MsatInt(sum(p.amount_msat for p in self.parts))

    @property
    def complete(self) -> bool:
        # BOLT #4: "if the total `amount_msat` of this HTLC set is equal to `total_msat`: SHOULD fulfill all HTLCs
        # in the HTLC set" (more than total_msat is fine: it is the payer's money).
        return self.received_msat >= self.total_msat


def incorrect_or_unknown(amount_msat: MsatInt, height: int) -> bytes:
    """BOLT #4 incorrect_or_unknown_payment_details: [u64:htlc_msat] [u32:height]."""
    return encode_failure_message(INCORRECT_OR_UNKNOWN, htlc_msat=amount_msat, height=height)


def final_hop_failure(htlc: IncomingHtlc, payload: HopPayload, blockheight: int, cltv_final: int) -> bytes | None:
    """The checks of lightningd's handle_localpay, before the invoice is looked at (None: all pass)."""
    amt = int(payload.amt_to_forward or 0)
    # BOLT #4 final_incorrect_htlc_amount: "The amount in the HTLC is less than the value in the onion."
    if htlc.amount_msat < amt:
        return encode_failure_message("final_incorrect_htlc_amount", incoming_htlc_amt=htlc.amount_msat)
    # BOLT #4 final_incorrect_cltv_expiry: "The CLTV expiry in the HTLC is less than the value in the onion."
    if htlc.cltv_expiry < int(payload.outgoing_cltv_value or 0):
        return encode_failure_message("final_incorrect_cltv_expiry", cltv_expiry=htlc.cltv_expiry)
    # BOLT #4: "if the `cltv_expiry` value is unreasonably near the present: MUST fail the HTLC. MUST return an
    # `incorrect_or_unknown_payment_details` error."
    if blockheight + cltv_final > htlc.cltv_expiry:
        return incorrect_or_unknown(htlc.amount_msat, blockheight)
    return None


def invoice_failure(rec: Any, htlc: IncomingHtlc, total_msat: MsatInt, payment_secret: bytes | None,
                    invoice_msat: MsatInt | None, blockheight: int, now: int) -> str | None:
    """BOLT 4's final-node checks against our invoice; the reason for incorrect_or_unknown_payment_details,
    or None.  `invoice_msat` (from htlc_accepted) replaces the invoice's amount."""
    if rec is None:
        return "unknown payment_hash"
    status = rec.status(now)
    if status == "expired":
        return "invoice is expired"
    # BOLT #4: "if the `payment_secret` doesn't match the expected value for that `payment_hash`, or the
    # `payment_secret` is required and is not present: MUST fail the HTLC."
    if rec.payment_secret is not None:
        if payment_secret is None:
            return "payment_secret missing"
        if not hmac.compare_digest(payment_secret, rec.payment_secret):
            return "payment_secret mismatch"
    expected = invoice_msat if invoice_msat is not None else rec.amount_msat
    if expected is not None:
        # BOLT #4: "if the amount paid is less than the amount expected: MUST fail the HTLC."
        if total_msat < expected:
            return f"amount {total_msat}msat below invoice {expected}msat"
        # "if the amount paid is more than twice the amount expected: SHOULD fail the HTLC."
        if total_msat > 2 * expected:
            return f"amount {total_msat}msat over twice invoice {expected}msat"
    # The invoice's own min_final_cltv_expiry (its `c` field).
    if htlc.cltv_expiry < blockheight + rec.min_final_cltv_expiry:
        return f"cltv_expiry {htlc.cltv_expiry} below {blockheight} + {rec.min_final_cltv_expiry}"
    return None


def onion_json(payload_bytes: bytes, payload: HopPayload | None, is_final: bool) -> dict:
    """The parsed members of htlc_accepted's `onion` (htlc_accepted_hook_serialize)."""
    out: dict[str, Any] = {"payload": (encode_bigsize(len(payload_bytes)) + payload_bytes).hex()}
    if payload is None:
        return out
    out["type"] = "tlv"
    if not is_final and payload.short_channel_id is not None:
        out["short_channel_id"] = scid_to_str(payload.short_channel_id)
    if payload.amt_to_forward is not None:
        out["forward_msat"] = int(payload.amt_to_forward)
    if payload.outgoing_cltv_value is not None:
        out["outgoing_cltv_value"] = payload.outgoing_cltv_value
    if payload.payment_secret is not None:
        out["total_msat"] = int(payload.total_msat)
        out["payment_secret"] = payload.payment_secret.hex()
    if payload.payment_metadata is not None:
        out["payment_metadata"] = payload.payment_metadata.hex()
    return out


def _parse_payload(raw: bytes, is_final: bool,
                   path_key_in_htlc: bool = False) -> tuple[HopPayload | None, InvalidOnionPayload | None]:
    try:
        payload = decode_hop_payload(raw)
        check_hop_payload(payload, is_final=is_final, path_key_in_htlc=path_key_in_htlc)
        return payload, None
    except InvalidOnionPayload as e:
        return None, e


class Receiver:
    """The node's incoming-HTLC path (`node.receiver`)."""

    def __init__(self, node: Node, approver: PaymentApprover | None = None,
                 mpp_timeout: float = DEFAULT_MPP_TIMEOUT) -> None:
        self.node = node
        self.approver = approver  # asked about each HTLC and each invoice about to be paid (plugins' hooks)
        self.mpp_timeout = mpp_timeout
        self.htlcs: dict[tuple[bytes, int], IncomingHtlc] = {}
        # on_incoming_early's peeled onion of an HTLC it left to the usual path: on_incoming_htlc takes it from here
        # after the write, so a forwarded (or hooked) HTLC's onion is not peeled twice.
        self._early_peeled: dict[tuple[bytes, int], Any] = {}
        self.sets: dict[bytes, HtlcSet] = {}
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    # ---- plumbing
    def _log(self, level: str, msg: str) -> None:
        log = self.node.log
        if log is not None:
            log.log(level, "htlcs", msg)

    @property
    def manager(self) -> Any:
        return self.node.channel_manager

    def blockheight(self) -> int:
        return self.node.current_height()

    def _option(self, name: str, default: Any) -> Any:
        return self.node.option(name, default)

    def start(self) -> None:
        self.mpp_timeout = float(self._option("dev-mpp-timeout", self.mpp_timeout))
        mgr = self.manager
        if mgr is not None:
            mgr.on_incoming_htlc(self.on_incoming_htlc)
            early = getattr(mgr, "on_incoming_early", None)
            if early is not None:
                early(self.on_incoming_early)

    def replay(self) -> None:
        """After a restart: every incoming HTLC still unresolved goes through htlc_accepted again (CLN's
        htlcs_resubmit; plugins must be idempotent)."""
        mgr = self.manager
        if mgr is None:
            return
        for rec, htlc in mgr.pending_incoming_htlcs():
            self.on_incoming_htlc(rec, htlc)

    async def close(self) -> None:
        """Shutdown: stop every per-HTLC task without resolving anything (a restart replays them)."""
        self._closing = True
        for s in self.sets.values():
            if s.timer is not None:
                s.timer.cancel()
        await cancel_and_wait(self._tasks)

    @property
    def stopping(self) -> bool:
        stopping = self.node.stopping
        return self._closing or (stopping is not None and stopping.is_set())

    def _spawn(self, coro) -> asyncio.Task:
        return spawn_guarded(self._tasks, coro, "incoming HTLC task", lambda msg: self._log("broken", msg))

    # ---- arrival
    def on_incoming_htlc(self, record: Any, htlc: Any = None) -> None:
        """Listener for the manager: (channel record, Htlc/NewPeerHtlc), or one NewPeerHtlc event."""
        if htlc is None:
            htlc, record = record, None
        channel_id = bytes(getattr(htlc, "channel_id", None) or record.channel_id)
        key = (channel_id, int(htlc.htlc_id))
        if key in self.htlcs:
            return  # already being processed (a replay of something we still hold)
        scid = getattr(record, "short_channel_id", None)
        inc = IncomingHtlc(channel_id=channel_id, htlc_id=int(htlc.htlc_id), amount_msat=MsatInt(int(htlc.amount_msat)),
                           payment_hash=bytes(htlc.payment_hash), cltv_expiry=int(htlc.cltv_expiry),
                           onion=bytes(htlc.onion), scid=int(scid) if scid is not None else None,
                           peer_id=getattr(record, "peer_id", None), path_key=getattr(htlc, "path_key", None))
        self.htlcs[key] = inc
        fast = self._early_peeled.pop(key, None) if self._early_peeled else None
        if fast is None:
            try:
                fast = self._fast(inc)
            except Exception as e:  # a bug there must not lose the HTLC: the task path takes it from the start
                self._log("broken", f"HTLC {inc.htlc_id}: fast path failed: {e!r}")
                fast = None
        if fast is not True:
            self._spawn(self._process(inc, fast))

    def on_incoming_early(self, record: Any, htlc: Any) -> bool:
        """The manager's early listener (htlcs.on_incoming_early): the fast path taken while the step that committed
        the HTLC is still being computed, so the fulfil and the claim join that step's write. Only when _fast takes
        it whole (True); otherwise nothing is kept and on_incoming_htlc gets it after the write, as before."""
        channel_id = bytes(record.channel_id)
        key = (channel_id, int(htlc.htlc_id))
        if key in self.htlcs:
            return False
        scid = record.short_channel_id
        inc = IncomingHtlc(channel_id=channel_id, htlc_id=int(htlc.htlc_id), amount_msat=MsatInt(int(htlc.amount_msat)),
                           payment_hash=bytes(htlc.payment_hash), cltv_expiry=int(htlc.cltv_expiry),
                           onion=bytes(htlc.onion), scid=int(scid) if scid is not None else None,
                           peer_id=record.peer_id, path_key=getattr(htlc, "path_key", None))
        self.htlcs[key] = inc
        try:
            fast = self._fast(inc)
        except Exception as e:  # the usual path after the write takes it from the start
            self._log("broken", f"HTLC {inc.htlc_id}: early fast path failed: {e!r}")
            fast = None
        if fast is True:
            return True
        del self.htlcs[key]
        if fast is not None:  # the fast path does not apply: the usual path after the write starts from this
            if len(self._early_peeled) > 10_000:  # entries whose write failed are never taken: stay bounded
                self._early_peeled.clear()
            self._early_peeled[key] = fast
        return False

    # ---- the common case, without a task
    def _fast(self, inc: IncomingHtlc) -> bool | PeeledOnion | None:
        """A final-hop HTLC that alone pays an invoice at hand, with no plugin asking about HTLCs or invoice
        payments: the checks of _process, _final, _add_to_set and _settle_set made here, at once, then its fulfil
        (with the invoice's claim, as _pay_and_fulfil) queued by _fulfil_claimed. Issue 18: no task, no chain of
        coroutines and no read of the invoice on the database thread per payment. True: done so; otherwise the
        task path (_process) takes it, from the onion peeled here (a PeeledOnion) or from the start (None)."""
        approver = self.approver
        if self.stopping or (approver is not None and (approver.wants_htlcs() or approver.wants_invoice_payments())):
            return None
        switch = self.node.switch
        if switch is not None and switch.knows(inc.key):
            return None
        try:
            peeled = peel_onion(self.node.signer, inc.onion, inc.payment_hash, path_key=inc.path_key)
        except OnionError:
            return None  # _process answers it
        invoices, mgr = self.node.invoices, self.manager
        if not peeled.is_final or inc.path_key is not None or invoices is None or mgr is None:
            return peeled
        payload, _err = _parse_payload(peeled.payload, True)
        if payload is None or payload.encrypted_recipient_data is not None or inc.payment_hash in self.sets:
            return peeled
        rec = invoices.cached_by_hash(inc.payment_hash)
        if rec is None:
            return peeled
        height, now = self.blockheight(), invoices.now()
        total = MsatInt(int(payload.expected_total_msat))
        # A set of this one part, complete (BOLT #4: "if the total `amount_msat` of this HTLC set is equal to
        # `total_msat`: SHOULD fulfill all HTLCs in the HTLC set"), paying an unpaid invoice that passes BOLT 4's
        # final-node checks: anything else (failures included) goes the task path's way.
        if (inc.amount_msat < total or rec.status(now) != "unpaid"
                or final_hop_failure(inc, payload, height, int(self._option("cltv-final", 18))) is not None
                or invoice_failure(rec, inc, total, payload.payment_secret, None, height, now) is not None):
            return peeled
        claim = invoices.claim(rec, inc.amount_msat)
        if claim is None:
            return peeled
        inc.shared_secret = peeled.shared_secret
        inc.status = "held"
        s = HtlcSet(inc.payment_hash, total, rec, parts=[inc], settling=True)
        self.sets[inc.payment_hash] = s
        self._fulfil_claimed(s, claim)
        return True

    def _fulfil_claimed(self, s: HtlcSet, claim: Any) -> None:
        """_fast's fulfil: queued on the channel with the claim's write (manager.fulfill_htlc_soon; the channel may
        be busy -- this runs inside the step that brought the HTLC: it joins the channel's next write). When the
        channel cannot take it, refuses it or its write fails, the claim is dropped (nothing stored) and
        _settle_set does it the usual way (claim again, or mark_paid and then the fulfil)."""
        part, invoices = s.parts[0], self.node.invoices
        fut = None
        try:
            if not part.resolved and not self.stopping:
                fut = self.manager.fulfill_htlc_soon(part.channel_id, part.htlc_id, s.invoice.preimage, also=claim.op,
                                                     idle_only=False)
        except Exception as e:  # never leave the claim held (deletions and the expiry sweep wait for it)
            self._log("broken", f"HTLC {part.htlc_id}: could not queue its fulfil: {e!r}")
        if fut is None:
            invoices.settled(claim, False)
            if self.stopping:
                self._drop_set(s)  # unresolved: replayed at the next start
            else:
                self._spawn(self._settle_set(s))
            return
        part.resolved = True
        part.status = "resolving"

        def done(f: asyncio.Future) -> None:
            ok = not f.cancelled() and f.exception() is None and not isinstance(f.result(), Refusal)
            invoices.settled(claim, ok)
            if ok or f.cancelled():  # fulfilled, or the node stops (replayed at the next start)
                self.htlcs.pop(part.key, None)
                self._drop_set(s)
                return
            outcome = f.exception() or f.result()
            self._log("debug", f"HTLC {part.htlc_id}: invoice and fulfil not in one write ({outcome!r})")
            part.resolved = False
            self._spawn(self._settle_set(s))
        fut.add_done_callback(done)

    def _drop_set(self, s: HtlcSet) -> None:
        if self.sets.get(s.payment_hash) is s:
            del self.sets[s.payment_hash]

    async def _process(self, inc: IncomingHtlc, peeled: PeeledOnion | None = None) -> None:
        # BOLT #4 onion processing.
        try:
            if peeled is None:
                peeled = peel_onion(self.node.signer, inc.onion, inc.payment_hash, path_key=inc.path_key)
        except BadOnionError as e:
            # BOLT #2: "if the onion is malformed: ... MUST respond with update_fail_malformed_htlc"
            self._log("debug", f"HTLC {inc.htlc_id}: bad onion: {e}")
            # BOLT 4: "if `path_key` is set in the incoming `update_add_htlc`: MUST return an
            # `invalid_onion_blinding` error."
            code = 0x8000 | 0x4000 | 24 if inc.path_key is not None else e.failure_code
            await self._resolve(inc, "fail_malformed", e.sha256_of_onion, code)
            return
        except OnionError as e:
            await self._fail_raw_secret(inc, e.failure_message())
            return
        inc.shared_secret = peeled.shared_secret
        is_final = peeled.is_final
        payload, payload_error = _parse_payload(peeled.payload, is_final, inc.path_key is not None)
        # Inside a blinded path every failure is invalid_onion_blinding (node.blinded_htlcs): known from the HTLC's
        # path key, or from the onion's current_path_key at a non-final introduction node.  Set before a replayed
        # forward resumes, so its failure is reported the same way after a restart.
        if inc.path_key is not None:
            inc.blinded = "inner"
        elif not is_final and payload is not None and payload.current_path_key is not None:
            inc.blinded = "intro"
        switch = self.node.switch
        if switch is not None and switch.knows(inc.key):
            # Forwarded before a restart: the switch finishes it (no second htlc_accepted, no second offer).
            inc.status = "forwarding"
            await switch.resume(inc)
            return
        next_onion = peeled.next_onion if peeled.next_onion is not None else bytes(len(inc.onion))
        session = await self._run_hook(inc, peeled.payload, payload, is_final, next_onion)
        if self.stopping:
            return  # unresolved: replayed at the next start
        replacements: dict[str, Any] = {}
        if session is not None:
            replacements = session.replacements
            if session.result == "fail":
                if session.failure_onion is not None:
                    await self._resolve(inc, "fail", wrap_failure(inc.shared_secret, session.failure_onion))
                else:
                    await self.fail(inc, session.failure_message)
                return
            if session.result == "resolve":
                if hashlib.sha256(session.payment_key).digest() != inc.payment_hash:
                    await self.fail(inc, incorrect_or_unknown(inc.amount_msat, self.blockheight()))
                else:
                    # Resolved by a plugin: no final-hop check, no invoice touched (as lightningd).
                    await self.fulfill(inc, session.payment_key)
                return
            if "payload" in replacements:
                payload, payload_error = _parse_payload(replacements["payload"], is_final, inc.path_key is not None)
        if payload is None:
            await self.fail(inc, payload_error.failure_message() if payload_error is not None
                            else encode_failure_message("invalid_onion_payload", type=0, offset=0))
            return
        if payload.encrypted_recipient_data is not None:
            from ampere.node.payments import blinded_htlcs
            await blinded_htlcs.process(self, inc, payload, is_final, next_onion)
            return
        if not is_final:
            await self._forward(inc, payload, next_onion, replacements)
            return
        await self._final(inc, payload, replacements)

    def _hook_payload(self, inc: IncomingHtlc, raw: bytes, payload: HopPayload | None, is_final: bool,
                      next_onion: bytes) -> dict:
        onion = onion_json(raw, payload, is_final)
        onion["next_onion"] = next_onion.hex()
        onion["shared_secret"] = inc.shared_secret.hex()
        out: dict[str, Any] = {}
        if inc.peer_id is not None:
            out["peer_id"] = bytes(inc.peer_id).hex()
        out["onion"] = onion
        if not is_final and payload is not None and payload.short_channel_id is not None:
            mgr = self.manager
            nxt = mgr.find(int(payload.short_channel_id)) if mgr is not None else None
            if nxt is not None:
                out["forward_to"] = nxt.channel_id.hex()
        htlc: dict[str, Any] = {"short_channel_id": scid_to_str(inc.scid) if inc.scid is not None else "0x0x0",
                                "id": inc.htlc_id, "amount_msat": inc.amount_msat, "cltv_expiry": inc.cltv_expiry,
                                "cltv_expiry_relative": max(inc.cltv_expiry - self.blockheight(), 0),
                                "payment_hash": inc.payment_hash.hex()}
        out["htlc"] = htlc
        return out

    async def _run_hook(self, inc: IncomingHtlc, raw: bytes, parsed: HopPayload | None, is_final: bool,
                        next_onion: bytes) -> HtlcVerdict | None:
        approver = self.approver
        if approver is None or not approver.wants_htlcs():
            return None  # nobody asks: the question is not even built
        payload = self._hook_payload(inc, raw, parsed, is_final, next_onion)

        def reparse(raw: bytes) -> dict:
            parsed, _err = _parse_payload(raw, is_final)
            return onion_json(raw, parsed, is_final)

        inc.status = "hook"
        return await approver.htlc_accepted(payload, reparse, lambda level, msg: self._log(level, msg))

    # ---- forwards
    async def _forward(self, inc: IncomingHtlc, payload: HopPayload, next_onion: bytes,
                       replacements: dict[str, Any]) -> None:
        switch = self.node.switch
        if switch is None:
            # BOLT #4: "if the receiving peer specified by the onion is NOT known: return an unknown_next_peer error."
            await self.fail(inc, encode_failure_message("unknown_next_peer"))
            return
        inc.status = "forwarding"
        await switch.forward(inc, payload, next_onion, forward_to=replacements.get("forward_to"),
                             extra_tlvs=replacements.get("extra_tlvs"))

    # ---- final hop
    async def _final(self, inc: IncomingHtlc, payload: HopPayload, replacements: dict[str, Any]) -> None:
        height = self.blockheight()
        cltv_final = int(self._option("cltv-final", 18))
        failure = final_hop_failure(inc, payload, height, cltv_final)
        if failure is not None:
            await self.fail(inc, failure)
            return
        invoices = self.node.invoices
        rec = None
        if invoices is not None:
            # In memory for an invoice made or read lately (no trip to the database thread); else read.
            rec = invoices.cached_by_hash(inc.payment_hash) or await invoices.lookup_by_hash(inc.payment_hash)
        if rec is None and payload.keysend_preimage is not None:
            # Keysend, received by default as CLN's keysend plugin does: an invoice made on the fly (pay.py).
            from ampere.node.payments.pay import keysend_invoice

            rec, payload = await keysend_invoice(self.node, inc.payment_hash, payload)
        total = int(payload.expected_total_msat)
        # BOLT #4: "if the payment hash has already been paid: ... MAY succeed in accepting the HTLC."  We do, for a
        # part that matches the invoice: it is how a part survives a crash between marking the invoice paid and
        # fulfilling it (the replay after restart finds the invoice already paid).
        if rec is not None and rec.status() == "paid" and (
                rec.payment_secret is None or (payload.payment_secret is not None and
                                               hmac.compare_digest(payload.payment_secret, rec.payment_secret))):
            await self.fulfill(inc, rec.preimage)
            return
        reason = invoice_failure(rec, inc, MsatInt(total), payload.payment_secret, replacements.get("invoice_msat"), height,
                                 invoices.now() if invoices is not None else int(time.time()))
        if reason is not None:
            self._log("debug", f"HTLC {inc.htlc_id} for {inc.payment_hash.hex()}: {reason}")
            await self.fail(inc, incorrect_or_unknown(inc.amount_msat, height))
            return
        await self._add_to_set(inc, MsatInt(total), rec)

    async def _add_to_set(self, inc: IncomingHtlc, total_msat: MsatInt, rec: Any) -> None:
        s = self.sets.get(inc.payment_hash)
        if s is None:
            s = HtlcSet(inc.payment_hash, total_msat, rec)
            self.sets[inc.payment_hash] = s
            # lightningd/htlc_set.c: the set times out (BOLT #4 "MUST fail all HTLCs in the HTLC set after some
            # reasonable timeout ... SHOULD use mpp_timeout").
            s.timer = asyncio.get_running_loop().call_later(self.mpp_timeout, self._on_set_timeout, s)
        elif s.total_msat != total_msat:
            # BOLT #4: "if `total_msat` is not the same for all HTLCs in the set: SHOULD fail the entire HTLC set."
            self._log("unusual", f"HTLC {inc.htlc_id} for {inc.payment_hash.hex()}: total_msat {total_msat} "
                                 f"differs from the set's {s.total_msat}")
            await self.fail(inc, incorrect_or_unknown(inc.amount_msat, self.blockheight()))
            return
        if s.settling:
            await self.fail(inc, incorrect_or_unknown(inc.amount_msat, self.blockheight()))
            return
        s.parts.append(inc)
        inc.status = "held"
        if s.complete:
            s.settling = True
            if s.timer is not None:
                s.timer.cancel()
                s.timer = None
            await self._settle_set(s)

    def _on_set_timeout(self, s: HtlcSet) -> None:
        if self.sets.get(s.payment_hash) is not s or s.settling:
            return
        del self.sets[s.payment_hash]
        self._log("debug", f"MPP set for {s.payment_hash.hex()} timed out with {s.received_msat} of "
                           f"{s.total_msat}msat")
        msg = encode_failure_message("mpp_timeout")
        for part in s.parts:
            self._spawn(self.fail(part, msg))

    async def _settle_set(self, s: HtlcSet) -> None:
        try:
            failure = await self._invoice_payment_hook(s)
            if self.stopping:
                return
            rec = None
            if failure is None and len(s.parts) == 1 and await self._pay_and_fulfil(s):
                return
            if failure is None:
                rec = await self.node.invoices.mark_paid(amount_msat=s.received_msat, payment_hash=s.payment_hash)
            if rec is None:
                if failure is None:
                    self._log("unusual", f"invoice for {s.payment_hash.hex()} is no longer unpaid: failing the set")
                for part in s.parts:
                    msg = failure if failure else incorrect_or_unknown(part.amount_msat, self.blockheight())
                    await self.fail(part, msg)
                return
            await asyncio.gather(*(self.fulfill(part, rec.preimage) for part in s.parts))
        finally:
            self._drop_set(s)

    async def _pay_and_fulfil(self, s: HtlcSet) -> bool:
        """A one-part set, accepted: the invoice marked paid in the same write as the HTLC's fulfil (and the
        commitment_signed covering it) -- one commit, not two in sequence. Persist before you speak holds as
        before: the fulfil reveals the preimage only after the write holding both is on disk, and a crash before it
        leaves the invoice unpaid and the HTLC unresolved (replayed at the next start). False: nothing was done
        (the invoice or the channel cannot take it now): mark_paid, then fulfil, as for several parts."""
        invoices, mgr, part = self.node.invoices, self.manager, s.parts[0]
        claim = invoices.claim(s.invoice, s.received_msat) if invoices is not None and mgr is not None else None
        if claim is None:
            return False
        if part.resolved or self.stopping:
            invoices.settled(claim, False)
            return False
        try:
            await mgr.fulfill_htlc(part.channel_id, part.htlc_id, s.invoice.preimage, also=claim.op)
        except Exception as e:  # refused (the channel is going on-chain...) or the write failed: nothing stored
            invoices.settled(claim, False)
            self._log("debug", f"HTLC {part.htlc_id}: invoice and fulfil not in one write ({e!r})")
            return False
        part.resolved = True
        self.htlcs.pop(part.key, None)
        invoices.settled(claim, True)
        return True

    async def _invoice_payment_hook(self, s: HtlcSet) -> bytes | None:
        """None to accept; b"" (reject) or a failure message (lightningd/invoice.c invoice_payment_hook)."""
        approver = self.approver
        if approver is None or not approver.wants_invoice_payments():
            return None
        rec = s.invoice
        payload = {"payment": {"label": rec.label, "preimage": rec.preimage.hex(), "msat": s.received_msat}}
        return await approver.invoice_payment(payload, lambda level, msg: self._log(level, msg))

    # ---- resolution (also used by the switch for forwarded HTLCs)
    async def fulfill(self, inc: IncomingHtlc, preimage: bytes) -> None:
        await self._resolve(inc, "fulfill", preimage)

    def fulfill_soon(self, inc: IncomingHtlc, preimage: bytes,
                     also: Any = None) -> asyncio.Future | None:
        """`fulfill`, queued on the channel now (manager.fulfill_htlc_soon, `also(db)` in its write): the future of
        the channel step, or None if the channel cannot take it at once (nothing done: call `fulfill`)."""
        mgr = self.manager
        if inc.resolved or self.stopping or mgr is None:
            return None
        fut = mgr.fulfill_htlc_soon(inc.channel_id, inc.htlc_id, preimage, also=also)
        if fut is None:
            return None
        inc.resolved = True
        inc.status = "resolving"

        def done(f: asyncio.Future) -> None:
            outcome = None if f.cancelled() else (f.exception() or f.result())
            if isinstance(outcome, (BaseException, Refusal)):
                # Not fulfilled: the channel refused the queued step (it went on-chain meanwhile...) or its write
                # failed. We hold the preimage: fulfil the usual way, which hands it to the on-chain resolver when
                # the channel is on-chain -- never leave this HTLC to time out.
                self._log("unusual", f"could not fulfill HTLC {inc.htlc_id} on {inc.channel_id.hex()} at once "
                                     f"({outcome!r}): fulfilling it again")
                inc.resolved = False
                self._spawn(self._resolve(inc, "fulfill", preimage))
                return
            self.htlcs.pop(inc.key, None)  # fulfilled, or cancelled as the node stops (replayed at the next start)
        fut.add_done_callback(done)
        return fut

    async def fail(self, inc: IncomingHtlc, failure_message: bytes) -> None:
        """Fail with a BOLT 4 failure message from us (encrypted with the HTLC's shared secret)."""
        if inc.blinded is not None and await self._fail_blinded(inc):
            return
        if inc.shared_secret is None:
            await self._fail_raw_secret(inc, failure_message)
            return
        await self._resolve(inc, "fail", create_failure_packet(inc.shared_secret, failure_message))

    async def fail_with_onion(self, inc: IncomingHtlc, reason: bytes) -> None:
        """Fail with a failure onion from downstream: we add our obfuscation layer."""
        if inc.blinded is not None and await self._fail_blinded(inc):
            return
        await self._resolve(inc, "fail", wrap_failure(inc.shared_secret, reason))

    async def _fail_blinded(self, inc: IncomingHtlc) -> bool:
        """BOLT 4: inside a blinded path every error is `invalid_onion_blinding`.  BOLT 2: a node that got the
        path key in `update_add_htlc` answers with update_fail_malformed_htlc; the introduction node (path key
        in the onion) with an ordinary failure carrying that code."""
        onion_hash = hashlib.sha256(inc.onion).digest()
        if inc.blinded == "inner":
            await self._resolve(inc, "fail_malformed", onion_hash, 0x8000 | 0x4000 | 24)
            return True
        if inc.blinded == "intro" and inc.shared_secret is not None:
            message = encode_failure_message("invalid_onion_blinding", sha256_of_onion=onion_hash)
            await self._resolve(inc, "fail", create_failure_packet(inc.shared_secret, message))
            return True
        return False

    async def _fail_raw_secret(self, inc: IncomingHtlc, failure_message: bytes) -> None:
        # The onion's HMAC was fine but we have no shared secret at hand (e.g. a bad payload length): compute it.
        from coincurve import PublicKey

        from ampere.ln.onion import _ecdh

        secret = _ecdh(self._node_secret(), PublicKey(inc.onion[1:34]))
        inc.shared_secret = secret
        await self._resolve(inc, "fail", create_failure_packet(secret, failure_message))

    async def _resolve(self, inc: IncomingHtlc, how: str, *args: Any) -> None:
        if inc.resolved or self.stopping:
            return
        inc.resolved = True
        inc.status = "resolving"
        mgr = self.manager
        try:
            if how == "fulfill":
                await mgr.fulfill_htlc(inc.channel_id, inc.htlc_id, *args)
            elif how == "fail":
                await mgr.fail_htlc(inc.channel_id, inc.htlc_id, *args)
            else:
                await mgr.fail_malformed_htlc(inc.channel_id, inc.htlc_id, *args)
        except Exception as e:
            # The channel refused (closed, or already resolved): the HTLC stays with the channel (on-chain).
            self._log("unusual", f"could not {how} HTLC {inc.htlc_id} on {inc.channel_id.hex()}: {e!r}")
        finally:
            self.htlcs.pop(inc.key, None)

    # ---- queries
    def held_parts(self) -> list[dict]:
        """Parts of incomplete multi-part payments (seed 003's "is the payer even trying to pay me?")."""
        out = []
        for s in self.sets.values():
            for p in s.parts:
                out.append({"payment_hash": s.payment_hash.hex(), "total_msat": s.total_msat,
                            "partial_amount_msat": p.amount_msat, "incoming_time": int(p.received_at),
                            "short_channel_id": scid_to_str(p.scid) if p.scid is not None else None,
                            "htlc_id": p.htlc_id})
        return out


