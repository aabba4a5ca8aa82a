"""The channel manager's HTLC interface: offer, fulfil and fail HTLCs, and the listeners of what happens to them
(incoming HTLCs, fulfils, failures, settlements, preimages learned early, every channel step).

A mixin of `ChannelManager` (node/channels/manager.py), apart so the manager's step machinery stays readable:
these methods run the manager's steps (`_enqueue`, `run`) and see its records; the payment runtime
(node/payments) and the switch call them on the manager as before.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable

from ampere.ln.channel import core
from ampere.ln.channel.actions import Event, HtlcFailed, HtlcFulfilled, NewPeerHtlc, Refusal, RefusalCode, Step
from ampere.ln.channel.commitment import Side
from ampere.ln.channel.htlcs import Htlc
from ampere.ln.channel.state import Channel, ChannelState
from ampere.primitives.crypto import sha256

if TYPE_CHECKING:
    from ampere.node.channels.manager import ChannelRecord

LOG = "channeld"
CS = ChannelState
OPERATING = (CS.CHANNELD_NORMAL, CS.CHANNELD_SHUTTING_DOWN, CS.CLOSINGD_SIGEXCHANGE)
UNKNOWN_NEXT_PEER = 0x4000 | 10
TEMPORARY_CHANNEL_FAILURE = 0x1000 | 7
AMOUNT_BELOW_MINIMUM = 0x1000 | 11


class HtlcRefused(Exception):
    """offer_htlc declined: nothing changed. `failure_code` is the BOLT 4 failure to report upstream."""

    def __init__(self, code: RefusalCode | None, message: str, failure_code: int | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.failure_code = failure_code if failure_code is not None else TEMPORARY_CHANNEL_FAILURE


class ChannelOpError(Exception):
    """A local request on a channel that cannot be done (unknown channel, HTLC, or state)."""


class HtlcInterface:
    """Mixed into ChannelManager (which provides _listeners, node, find, run, _enqueue, env, _fire, _src)."""

    _listeners: dict[str, list[Callable]]
    _htlc_waiters: dict[tuple[bytes, int], list[asyncio.Future]]
    records: dict
    node: Any
    find: Callable[..., Any]
    run: Callable[..., Any]
    _enqueue: Callable[..., Any]
    env: Callable[..., Any]
    _fire: Callable[..., Any]
    _src: Callable[..., str]
    _dev_autofulfill_on: bool

    def on_incoming_htlc(self, fn: Callable) -> None:
        self._listeners["incoming"].append(fn)

    def on_htlc_fulfilled(self, fn: Callable) -> None:
        self._listeners["fulfilled"].append(fn)

    def on_htlc_failed(self, fn: Callable) -> None:
        self._listeners["failed"].append(fn)

    def on_incoming_settled(self, fn: Callable) -> None:
        self._listeners["settled"].append(fn)

    def on_preimage_learned(self, fn: Callable) -> None:
        """fn(record, HtlcFulfilled), synchronously as soon as a step that takes the peer's update_fulfill_htlc is
        COMPUTED, before that step's write (the usual on_htlc_fulfilled listeners still get the event after it).

        For the switch: a preimage checked against the payment_hash is good whatever happens to this channel, and
        the incoming HTLC's fulfil is its own step on its own channel, written (with the preimage) before it
        leaves, so it may be queued now instead of after this channel's write, revoke_and_ack and
        commitment_signed. (This channel does not wait for it: measured, waiting cost throughput with 50 in
        flight and gained nothing one at a time on 2 shared cores.)"""
        self._listeners["preimage"].append(fn)

    def _early_preimages(self, rec: ChannelRecord, step: Step) -> None:
        for a in step.actions:
            if isinstance(a, HtlcFulfilled):
                for fn in self._listeners["preimage"]:
                    try:
                        fn(rec, a)
                    except Exception as e:
                        self.node.log.broken(LOG, f"preimage listener failed: {e!r}")

    def on_incoming_early(self, fn: Callable) -> None:
        """fn(record, NewPeerHtlc) -> bool, synchronously as soon as a step that irrevocably commits an HTLC the peer
        offered is COMPUTED, before that step's write. For the payee's fast path only (receive.py): True means it
        took the HTLC and its only effects are inputs queued on this same channel (its fulfil, with the invoice's
        claim as the fulfil's `also`), which join the same write (_run_batch) -- nothing leaves, and nothing is
        stored, before the state holding the HTLC is. False: untouched, the usual `on_incoming_htlc` listeners get
        it after the write (they get it then anyway; the receiver ignores one it holds already)."""
        self._listeners["incoming_early"].append(fn)

    def _early_incoming(self, rec: ChannelRecord, step: Step) -> bool:
        if self._dev_autofulfill_on:  # --dev-autofulfill takes the developer's HTLCs after the write (_fire)
            return False
        taken = False
        for a in step.actions:
            if isinstance(a, NewPeerHtlc):
                for fn in self._listeners["incoming_early"]:
                    try:
                        taken = bool(fn(rec, a)) or taken
                    except Exception as e:
                        self.node.log.broken(LOG, f"early HTLC listener failed: {e!r}")
        return taken

    def fulfill_htlc_soon(self, channel_id: Any, htlc_id: int, preimage: bytes,
                          also: Callable[[Any], Any] | None = None, idle_only: bool = True) -> asyncio.Future | None:
        """fulfill_htlc queued now, without a coroutine: the future of its Step (or Refusal), resolved once the step
        is written and its messages sent; `also(db)` joins that write unless refused. Only on a channel in normal
        operation with nothing running or queued (None otherwise: use fulfill_htlc), so the step and its write
        are the next thing that channel does. `idle_only` False: a busy channel takes it too, after what it has
        queued (in the group of its next write, as fulfill_htlc would): for the payee's own fulfil (receive.py)."""
        rec = self.find(channel_id)
        if rec is None or rec.state not in OPERATING or (
                idle_only and (rec.drainer is not None or rec.pending or rec.lock.locked())):
            return None
        return self._enqueue(rec, self._fulfil_step(rec, htlc_id, preimage, also))

    def _fulfil_step(self, rec: ChannelRecord, htlc_id: int, preimage: bytes,
                     also: Callable[[Any], Any] | None) -> Callable[[Channel], Step | Refusal]:
        """The channel input fulfilling `htlc_id`; `also(db)` joins the channel's next write (_persist) unless
        the fulfil is refused."""
        def fulfil(ch: Channel) -> Step | Refusal:
            step = core.fulfill_htlc(ch, rec.signer, htlc_id, preimage, self.env(rec))
            if also is not None and not isinstance(step, Refusal):
                rec.also.append(also)
            return step
        return fulfil

    def on_channel_step(self, fn: Callable) -> None:
        """fn(record, events), synchronously after every step of a channel (connection changes included):
        the gossip of our channels (channel_announce.py) follows the channel's state from here."""
        self._listeners["step"].append(fn)

    def pending_incoming_htlcs(self) -> list[tuple[ChannelRecord, Htlc]]:
        return [(r, h) for r in self.records.values() if r.state is not CS.CLOSED
                for h in core.pending_incoming_htlcs(r.core)]

    def known_preimages(self) -> list[tuple[ChannelRecord, int, bytes]]:
        return [(r, hid, pre) for r in self.records.values() if r.state is not CS.CLOSED
                for hid, pre in core.known_preimages(r.core)]

    def wait_htlc(self, channel_id: bytes, htlc_id: int) -> asyncio.Future:
        """A future resolved with the HtlcFulfilled / HtlcFailed event of an HTLC we offered."""
        fut = asyncio.get_running_loop().create_future()
        self._htlc_waiters.setdefault((channel_id, htlc_id), []).append(fut)
        return fut

    async def offer_htlc(self, channel: Any, amount_msat: int, payment_hash: bytes, cltv_expiry: int, onion: bytes,
                         path_key: bytes | None = None, also: Callable[[Any, int], Any] | None = None,
                         sign_now: bool = False) -> int:
        """Offer an HTLC; its id once it is stored. `also(db, htlc_id)`: a database write (the payment's row) made in
        the same transaction as the HTLC, so neither is on disk without the other (not run if refused).
        `sign_now`: sign the commitment in the HTLC's own write (a forward: nobody waits for the offer's answer,
        so the commit timer would only add an fsync to every hop) instead of leaving it to the commit timer."""
        rec = self.find(channel)
        if rec is None or rec.state is CS.CLOSED:
            raise HtlcRefused(None, f"unknown channel {channel}", UNKNOWN_NEXT_PEER)
        s = rec.settings
        if amount_msat < s.htlc_min_msat:
            raise HtlcRefused(RefusalCode.AMOUNT_BELOW_MINIMUM,
                              f"{amount_msat}msat is below our htlc minimum {s.htlc_min_msat}msat", AMOUNT_BELOW_MINIMUM)
        if amount_msat > s.htlc_max_msat:
            raise HtlcRefused(RefusalCode.BAD_AMOUNT,
                              f"{amount_msat}msat is above our htlc maximum {s.htlc_max_msat}msat",
                              TEMPORARY_CHANNEL_FAILURE)
        ids: list[int] = []

        def offer(ch: Channel) -> Step | Refusal:
            ids.append(ch.next_htlc_id_local)
            step = core.offer_htlc(ch, rec.signer, amount_msat, payment_hash, cltv_expiry, onion, path_key,
                                   self.env(rec))
            if also is not None and not isinstance(step, Refusal):
                htlc_id = ids[0]
                rec.also.append(lambda db: also(db, htlc_id))   # joins this channel's next write (_persist)
            return step

        # Our own offers wait for the commit timer (sign_now=False): sendpay answers once the HTLC is stored, and
        # HTLCs offered within commit-time share one commitment_signed.
        step = await self._enqueue(rec, offer, sign_now=sign_now)
        if isinstance(step, Refusal):
            raise HtlcRefused(step.code, step.message, step.failure_code)
        return ids[0]

    async def _resolve(self, channel_id: Any, fn: Callable[[ChannelRecord, Channel], Step | Refusal]) -> None:
        rec = self.find(channel_id)
        if rec is None:
            raise ChannelOpError(f"unknown channel {channel_id.hex() if isinstance(channel_id, bytes) else channel_id}")
        step = await self.run(rec, lambda ch: fn(rec, ch))
        if isinstance(step, Refusal):
            raise ChannelOpError(step.message)

    async def fulfill_htlc(self, channel_id: Any, htlc_id: int, preimage: bytes,
                           also: Callable[[Any], Any] | None = None) -> None:
        """`also(db)`: a database write made in the same transaction as the fulfil (the payee's invoice row), run
        only if the channel takes the fulfil (else ChannelOpError, and nothing was written; never on-chain)."""
        rec = self.find(channel_id)
        if also is not None and (rec is None or rec.state not in OPERATING):
            raise ChannelOpError(f"cannot fulfill HTLC {htlc_id} with a write attached now")
        if rec is not None and rec.state in (CS.AWAITING_UNILATERAL, CS.FUNDING_SPEND_SEEN, CS.ONCHAIN):
            # BOLT #5: the channel is (going) on-chain: the preimage claims the HTLC output there.
            onchain = self.node.onchain
            h = rec.core.htlc(Side.REMOTE, htlc_id)
            if onchain is not None and h is not None and sha256(preimage) == h.payment_hash:
                await onchain.add_preimage(h.payment_hash, preimage)
                self.node.log.info(self._src(rec), f"HTLC {htlc_id} fulfilled while the channel is on-chain: "
                                                   "claiming it there")
                return
        await self._resolve(channel_id, lambda r, ch: self._fulfil_step(r, htlc_id, preimage, also)(ch))

    def onchain_htlc_resolved(self, rec: ChannelRecord, htlc_id: int, preimage: bytes | None) -> bool:
        """The on-chain resolver's report on an HTLC we offered: the peer claimed it with `preimage`, or (None)
        it timed out on-chain and the timeout is buried deep enough. Goes to the same listeners (payments,
        switch) as the peer's update_fulfill_htlc / update_fail_htlc. False: nobody listens yet (start-up,
        before the payment runtime): the resolver reports again later."""
        if not self._listeners["fulfilled"] or not self._listeners["failed"]:
            return False
        if preimage is not None:
            ev: Event = HtlcFulfilled(rec.channel_id, htlc_id, preimage)
        else:
            ev = HtlcFailed(rec.channel_id, htlc_id, onchain=True)
        self._fire(rec, [ev])
        return True

    async def fail_htlc(self, channel_id: Any, htlc_id: int, reason: bytes) -> None:
        await self._resolve(channel_id, lambda r, ch: core.fail_htlc(ch, r.signer, htlc_id, reason, self.env(r)))

    async def fail_malformed_htlc(self, channel_id: Any, htlc_id: int, sha256_of_onion: bytes,
                                  failure_code: int) -> None:
        await self._resolve(channel_id, lambda r, ch: core.fail_malformed_htlc(
            ch, r.signer, htlc_id, sha256_of_onion, failure_code, self.env(r)))

    async def _dev_autofulfill(self, rec: ChannelRecord, ev: NewPeerHtlc) -> None:
        """--dev-autofulfill: an onion whose first 32 bytes hash to the payment_hash is fulfilled with them."""
        preimage = bytes(ev.onion[:32])
        if sha256(preimage) == ev.payment_hash:
            try:
                await self.fulfill_htlc(rec.channel_id, ev.htlc_id, preimage)
            except ChannelOpError as e:
                self.node.log.debug(self._src(rec), f"dev-autofulfill of HTLC {ev.htlc_id}: {e}")
