"""The invoice registry: our invoices, durably stored, with their waiters and expiry.

This is the runtime's one place that knows which payment hashes we expect to be paid, what they
are worth and whether they have been paid.  The RPC commands (`invoice`, `listinvoices`,
`waitinvoice`, ...) and, later, the receive path (final-hop HTLCs, MPP sets, the
`invoice_payment` hook) all go through it:

    reg = node.invoices; await reg.start()
    await reg.create(NewInvoice(...))                 -> InvoiceRecord    (900 / 901 errors)
    await reg.lookup_by_hash(payment_hash)            -> InvoiceRecord | None
    await reg.check_payment(hash, total_msat, secret) -> PaymentCheck     (BOLT 4 final-node checks)
    await reg.mark_paid(payment_hash=..., amount_msat=..., preimage=...)  -> InvoiceRecord | None
    await reg.wait_one(label) / reg.wait_any(lastpay_index, timeout)
    await reg.delete(label, status, desconly)

Rules it keeps (as Core Lightning's wallet/invoices.c):
* created_index is the row id and is never reused; updated_index is one counter shared by every
  invoice, bumped when one is paid, expires or loses its description; pay_index is a counter
  assigned when an invoice is paid (waitanyinvoice walks it).
* A state change is committed (synced) before anyone hears of it: waiters wake and notifications
  go out only after the write returns ("persist before you speak").
* Expiry: an unpaid invoice is expired once `now >= expires_at`.  Listing computes that on the fly;
  a timer also writes the state (bumping updated_index) and wakes `waitinvoice` callers with 903.
* No preimage of an unpaid invoice is ever logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ampere.node.errors import DomainError, Reason
from ampere.primitives.amount import MsatInt
from ampere.store.counters import get_counter, next_counter

# CLN error codes (common/jsonrpc_errors.h) the registry raises; the RPC layer passes them on.

UNPAID, PAID, EXPIRED = 0, 1, 2
_STATE_NAMES = {UNPAID: "unpaid", PAID: "paid", EXPIRED: "expired"}

# Counters kept in the `vars` table (migration 2), so that a deleted invoice never frees an index.
_VAR_UPDATED_INDEX = "invoices.updated_index"
_VAR_PAY_INDEX = "invoices.pay_index"

_COLUMNS = ("id, label, payment_hash, preimage, payment_secret, state, amount_msat, expires_at, bolt11, "
            "description, features, min_final_cltv_expiry, created_at, pay_index, amount_received_msat, "
            "paid_at, updated_index")

# A timer may fire a hair early (asyncio's clock resolution); wait this much past the second.
_TIMER_SLACK = 0.01

# Records kept for the receive path's lookup by payment_hash (InvoiceRegistry._cache): the latest ones.
_CACHE_MAX = 2048


class InvoiceRegistryError(DomainError):
    """A refusal with CLN's error code; `data` (if any) goes in the JSON-RPC error's `data`."""


@dataclass(frozen=True)
class InvoiceRecord:
    """One stored invoice.  `state` is as stored; `status(now)` also counts overdue ones as expired."""

    created_index: int
    label: str
    payment_hash: bytes
    preimage: bytes
    payment_secret: bytes | None
    state: int
    amount_msat: int | None
    expires_at: int
    bolt11: str
    description: str | None
    features: bytes
    min_final_cltv_expiry: int
    created_at: int
    pay_index: int | None = None
    amount_received_msat: int | None = None
    paid_at: int | None = None
    updated_index: int = 0

    @property
    def local_offer_id(self) -> bytes | None:
        """For a BOLT 12 invoice: the id of the offer it answers (the offer's records it copies)."""
        if not self.bolt11.startswith("lni1"):
            return None
        from ampere.ln.offers import Bolt12Error, decode_bolt12_string, offer_id

        try:
            return offer_id(decode_bolt12_string(self.bolt11)[1])
        except (Bolt12Error, ValueError):
            return None

    def status(self, now: int | None = None) -> str:
        if self.state == UNPAID and _now(now) >= self.expires_at:
            return "expired"
        return _STATE_NAMES[self.state]

    def to_json(self, now: int | None = None) -> dict:
        """The invoice as listinvoices (and waitinvoice, delinvoice, createinvoice) show it, in CLN's
        field order (lightningd/invoice.c json_add_invoice_fields)."""
        status = self.status(now)
        out: dict[str, Any] = {"label": self.label}
        if self.bolt11.startswith("lni1"):
            # A BOLT 12 invoice answering one of our offers (node.offers): CLN shows `bolt12` and the offer's id.
            out["bolt12"] = self.bolt11
            offer = self.local_offer_id
            if offer is not None:
                out["local_offer_id"] = offer.hex()
        else:
            out["bolt11"] = self.bolt11
        out["payment_hash"] = self.payment_hash.hex()
        if self.amount_msat is not None:
            out["amount_msat"] = self.amount_msat
        out["status"] = status
        if status == "paid":
            out["pay_index"] = self.pay_index
            out["amount_received_msat"] = self.amount_received_msat
            out["paid_at"] = self.paid_at
            out["payment_preimage"] = self.preimage.hex()
        if self.description is not None:
            out["description"] = self.description
        out["expires_at"] = self.expires_at
        out["created_index"] = self.created_index
        if self.updated_index:
            out["updated_index"] = self.updated_index
        return out


@dataclass(frozen=True)
class NewInvoice:
    """What `create` stores.  `bolt11` is the signed string; the other fields repeat what it says
    (so that nothing needs decoding on the payment path)."""

    label: str
    bolt11: str
    payment_hash: bytes
    preimage: bytes
    payment_secret: bytes | None
    amount_msat: int | None
    expires_at: int
    description: str | None
    features: bytes
    min_final_cltv_expiry: int
    created_at: int


@dataclass(frozen=True)
class PaymentCheck:
    """The answer of `check_payment`: the invoice if the HTLC(s) may pay it, else why not.  Every
    refusal is answered `incorrect_or_unknown_payment_details` on the wire (BOLT #4)."""

    invoice: InvoiceRecord | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.invoice is not None


def _now(now: int | None = None) -> int:
    return int(time.time()) if now is None else now


def _row_to_record(row: tuple) -> InvoiceRecord:
    (id_, label, payment_hash, preimage, payment_secret, state, amount_msat, expires_at, bolt11, description,
     features, cltv, created_at, pay_index, received, paid_at, updated_index) = row
    return InvoiceRecord(id_, label, bytes(payment_hash), bytes(preimage),
                         None if payment_secret is None else bytes(payment_secret), state, amount_msat, expires_at,
                         bolt11, description, bytes(features or b""), cltv, created_at, pay_index, received, paid_at,
                         updated_index or 0)


_get_var = get_counter
_next_var = next_counter


def _by_label(db, label: str) -> InvoiceRecord | None:
    rows = db.query(f"SELECT {_COLUMNS} FROM invoices WHERE label = ?", (label,))
    return _row_to_record(rows[0]) if rows else None


def _by_hash(db, payment_hash: bytes) -> InvoiceRecord | None:
    rows = db.query(f"SELECT {_COLUMNS} FROM invoices WHERE payment_hash = ?", (payment_hash,))
    return _row_to_record(rows[0]) if rows else None


def _by_id(db, id_: int) -> InvoiceRecord | None:
    rows = db.query(f"SELECT {_COLUMNS} FROM invoices WHERE id = ?", (id_,))
    return _row_to_record(rows[0]) if rows else None


def _pay(db, rec: InvoiceRecord, amount_msat: int, when: int) -> InvoiceRecord | None:
    """Mark the invoice `rec` paid if its row is still unpaid (database only); None, and nothing changed, if not."""
    pay_index = _next_var(db, _VAR_PAY_INDEX)
    updated = _next_var(db, _VAR_UPDATED_INDEX)
    cur = db.execute("UPDATE invoices SET state = ?, pay_index = ?, amount_received_msat = ?, paid_at = ?,"
                     " updated_index = ? WHERE id = ? AND state = ?",
                     (PAID, pay_index, int(amount_msat), when, updated, rec.created_index, UNPAID))
    if cur.rowcount != 1:
        # Not unpaid after all: the two indexes go back (no gap in pay_index, as if nothing had been tried).
        db.execute("UPDATE vars SET val = CAST(CAST(val AS BIGINT) - 1 AS TEXT) WHERE name IN (?, ?)",
                   (_VAR_PAY_INDEX, _VAR_UPDATED_INDEX))
        return None
    return _replace(rec, state=PAID, pay_index=pay_index, amount_received_msat=int(amount_msat),
                    paid_at=when, updated_index=updated)


@dataclass
class Claim:
    """An invoice being paid in its HTLC's fulfil write (InvoiceRegistry.claim)."""

    rec: InvoiceRecord
    done: asyncio.Future
    op: Callable[[Any], None] | None = None
    result: InvoiceRecord | None = None


@dataclass
class _Waiter:
    future: asyncio.Future
    label: str | None = None       # waitinvoice: this label
    lastpay_index: int = 0         # waitanyinvoice: a payment with pay_index above this


@dataclass
class _Waiters:
    one: dict[str, list[_Waiter]] = field(default_factory=dict)
    any: list[_Waiter] = field(default_factory=list)


class InvoiceRegistry:
    """Our invoices in the node's store.  One per node (`node.invoices`, built by the daemon)."""

    def __init__(self, store: Any, notify: Callable[[str, dict], None] | None = None,
                 log: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._notify = notify or (lambda topic, payload: None)
        self._log = log or (lambda level, msg: None)
        self._clock = clock
        self._waiters = _Waiters()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._sweeping = False
        # Invoices being paid in the same write as their HTLC's fulfil (claim): payment_hash -> done future. A
        # deletion or an expiry sweep waits for them; a claim is refused while one of those is in flight.
        self._claims: dict[bytes, asyncio.Future] = {}
        self._mutating = 0
        # Group commit: writes queued while one transaction is on disk share the next one.
        # The receive path's lookup by payment_hash without a trip to the database thread (issue 18: a read is a
        # hand-off to the store's thread and back, on the payee's critical path). Every write to the invoices table
        # goes through this registry, so the records it last read or wrote stay true until it writes again: each
        # write that may change a record forgets it (or all of them) when it is queued AND once it is committed,
        # and bumps `_cache_gen`, so that a read in flight meanwhile is not kept (it may predate the write).
        self._cache: dict[bytes, InvoiceRecord] = {}
        self._cache_gen = 0

    def now(self) -> int:
        return int(self._clock())

    # ---- life cycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Expire what expired while we were down, and arm the expiry timer.  Idempotent."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            await self._sweep_expired()
            self._started = True

    def close(self) -> None:
        """Stop the timer and fail every waiter (the node is shutting down)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        err = InvoiceRegistryError(Reason.GENERIC, "lightningd is shutting down")
        for waiter in [w for ws in self._waiters.one.values() for w in ws] + self._waiters.any:
            if not waiter.future.done():
                waiter.future.set_exception(err)
        self._waiters = _Waiters()

    # ---- creation -------------------------------------------------------------------------------
    async def create(self, new: NewInvoice) -> InvoiceRecord:
        """Store a new unpaid invoice; raises 901 if its payment_hash is known, 900 if its label is.

        Durable when this returns; `invoice_creation` is emitted after the commit.
        """
        if hashlib.sha256(new.preimage).digest() != new.payment_hash:
            raise ValueError("preimage does not hash to payment_hash")

        def write(db) -> InvoiceRecord:
            # CLN checks the preimage first: "Check duplicate preimage (unlikely unless they specified it!)"
            if db.query("SELECT 1 FROM invoices WHERE payment_hash = ?", (new.payment_hash,)):
                raise InvoiceRegistryError(Reason.INVOICE_PREIMAGE_ALREADY_EXISTS, "preimage already used")
            existing = _by_label(db, new.label)
            if existing is not None:
                raise InvoiceRegistryError(Reason.INVOICE_LABEL_ALREADY_EXISTS, f"Duplicate label '{new.label}'",
                                           existing)
            cur = db.execute(
                "INSERT INTO invoices (label, payment_hash, preimage, payment_secret, state, amount_msat, expires_at,"
                " bolt11, description, features, min_final_cltv_expiry, created_at, updated_index)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (new.label, new.payment_hash, new.preimage, new.payment_secret, UNPAID, new.amount_msat,
                 new.expires_at, new.bolt11, new.description, new.features, new.min_final_cltv_expiry,
                 new.created_at))
            return InvoiceRecord(cur.lastrowid, new.label, new.payment_hash, new.preimage, new.payment_secret, UNPAID,
                                 new.amount_msat, new.expires_at, new.bolt11, new.description, new.features,
                                 new.min_final_cltv_expiry, new.created_at)

        self._forget(new.payment_hash)
        gen = self._cache_gen
        record = await self._submit(write)
        self._keep(record, gen)
        payload: dict[str, Any] = {}
        if record.amount_msat is not None:
            payload["msat"] = record.amount_msat
        payload["preimage"] = record.preimage.hex()
        payload["label"] = record.label
        self._notify("invoice_creation", payload)
        self._arm_timer(record.expires_at)
        return record

    # ---- queries --------------------------------------------------------------------------------
    async def get_by_label(self, label: str) -> InvoiceRecord | None:
        return await self.store.read(lambda db: _by_label(db, label))

    async def lookup_by_hash(self, payment_hash: bytes) -> InvoiceRecord | None:
        """The invoice with this payment_hash, whatever its state (the receive path's lookup)."""
        rec = self._cache.get(payment_hash)
        if rec is not None:
            return rec
        gen = self._cache_gen
        rec = await self.store.read(lambda db: _by_hash(db, payment_hash))
        if rec is not None:
            self._keep(rec, gen)
        return rec

    def cached_by_hash(self, payment_hash: bytes) -> InvoiceRecord | None:
        """`lookup_by_hash` when the record is at hand (None: not known here, ask lookup_by_hash)."""
        return self._cache.get(payment_hash)

    def _keep(self, rec: InvoiceRecord, gen: int) -> None:
        """Keep `rec`, read or written when the generation was `gen`, unless a write was queued since."""
        if gen != self._cache_gen:
            return
        cache = self._cache
        cache.pop(rec.payment_hash, None)
        if len(cache) >= _CACHE_MAX:
            del cache[next(iter(cache))]
        cache[rec.payment_hash] = rec

    def _forget(self, payment_hash: bytes | None = None) -> None:
        """A write that may change this invoice (None: any invoice) is queued or done."""
        self._cache_gen += 1
        if payment_hash is None:
            self._cache.clear()
        else:
            self._cache.pop(payment_hash, None)

    async def list(self, *, label: str | None = None, payment_hash: bytes | None = None,
                   index: str | None = None, start: int = 0, limit: int | None = None) -> list[InvoiceRecord]:
        """listinvoices: by label, by payment_hash, or all in `index` order ("created" or "updated")
        from `start`, at most `limit`."""
        def read(db) -> list[InvoiceRecord]:
            if label is not None:
                rec = _by_label(db, label)
                return [rec] if rec else []
            if payment_hash is not None:
                rec = _by_hash(db, payment_hash)
                return [rec] if rec else []
            # No limit: a bound both engines take (PostgreSQL refuses SQLite's negative LIMIT).
            lim = 1 << 62 if limit is None else limit
            if index == "updated":
                # Never-updated invoices have updated_index 0, so start=0 lists everything (as CLN).
                rows = db.query(f"SELECT {_COLUMNS} FROM invoices WHERE updated_index >= ?"
                                " ORDER BY updated_index, id LIMIT ?", (start, lim))
            else:
                rows = db.query(f"SELECT {_COLUMNS} FROM invoices WHERE id >= ? ORDER BY id LIMIT ?", (start, lim))
            return [_row_to_record(r) for r in rows]

        return await self.store.read(read)

    # ---- deletion -------------------------------------------------------------------------------
    async def delete(self, label: str, status: str, desconly: bool = False, check_only: bool = False) -> InvoiceRecord:
        """delinvoice: remove the invoice (or, with `desconly`, only its description) if its status is
        `status`.  Raises 905 (no such label), 906 (status differs, data says which), 908."""
        now = self.now()

        def write(db) -> InvoiceRecord:
            rec = _by_label(db, label)
            if rec is None:
                raise InvoiceRegistryError(Reason.INVOICE_NOT_FOUND, "Unknown invoice")
            # "This is time-sensitive, so only call once; otherwise error msg might not make sense"
            actual = rec.status(now)
            if actual != status:
                raise InvoiceRegistryError(Reason.INVOICE_STATUS_UNEXPECTED, f"Invoice status is {actual} not {status}",
                                           {"current_status": actual, "expected_status": status})
            if desconly:
                if rec.description is None:
                    raise InvoiceRegistryError(Reason.INVOICE_NO_DESCRIPTION, "Invoice description already removed")
                if check_only:
                    return rec
                updated = _next_var(db, _VAR_UPDATED_INDEX)
                db.execute("UPDATE invoices SET description = NULL, updated_index = ? WHERE id = ?",
                           (updated, rec.created_index))
                return _replace(rec, description=None, updated_index=updated)
            if not check_only:
                db.execute("DELETE FROM invoices WHERE id = ?", (rec.created_index,))
            return rec

        self._mutating += 1
        try:
            await self._claims_done()
            self._forget()
            rec = await self._submit(write)
        finally:
            self._mutating -= 1
            self._forget()
        if not desconly and not check_only:
            self._wake_one(label, exc=InvoiceRegistryError(Reason.GENERIC, "Invoice deleted during wait"))
        return rec

    # ---- waiting --------------------------------------------------------------------------------
    async def wait_one(self, label: str) -> InvoiceRecord:
        """waitinvoice: return the invoice once paid; raise 903 (with the invoice as data) if it
        expires first, -1 if it does not exist or is deleted meanwhile."""
        await self.start()
        # Register before looking, so a payment committed between the look and the wait is not missed.
        waiter = _Waiter(asyncio.get_running_loop().create_future(), label=label)
        self._waiters.one.setdefault(label, []).append(waiter)
        try:
            rec = await self.get_by_label(label)
            if rec is None:
                raise InvoiceRegistryError(Reason.GENERIC, "Label not found")
            status = rec.status(self.now())
            if status == "unpaid":
                rec = await waiter.future
                status = rec.status(self.now())
            if status == "paid":
                return rec
            raise InvoiceRegistryError(Reason.INVOICE_EXPIRED_DURING_WAIT, "invoice expired during wait", rec)
        finally:
            self._drop_waiter(waiter)

    async def wait_any(self, lastpay_index: int = 0, timeout: float | None = None) -> InvoiceRecord:
        """waitanyinvoice: the paid invoice with the lowest pay_index above `lastpay_index`, waiting
        for one if none yet; raises 904 after `timeout` seconds."""
        await self.start()
        waiter = _Waiter(asyncio.get_running_loop().create_future(), lastpay_index=lastpay_index)
        self._waiters.any.append(waiter)
        try:
            def read(db):
                rows = db.query(f"SELECT {_COLUMNS} FROM invoices WHERE pay_index > ? ORDER BY pay_index LIMIT 1",
                                (lastpay_index,))
                return _row_to_record(rows[0]) if rows else None

            rec = await self.store.read(read)
            if rec is not None:
                return rec
            try:
                return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
            except asyncio.TimeoutError:
                raise InvoiceRegistryError(Reason.INVOICE_WAIT_TIMED_OUT,
                                           "Timed out while waiting for invoice to be paid") from None
        finally:
            self._drop_waiter(waiter)

    # ---- the receive path -----------------------------------------------------------------------
    async def check_payment(self, payment_hash: bytes, amount_msat: MsatInt, payment_secret: bytes | None,
                            now: int | None = None) -> PaymentCheck:
        """BOLT 4 final-node checks against our invoice for `payment_hash`.

        `amount_msat` is what the payer commits to pay in total (the onion's `total_msat` for a
        multi-part payment, else the HTLC's amount).  CLTV checks need the block height and stay
        with the caller (the invoice's `min_final_cltv_expiry` is in the record).
        """
        rec = await self.lookup_by_hash(payment_hash)
        # BOLT #4: if the payment hash has already been paid: MAY treat the payment hash as unknown.
        #   if the payment hash is unknown: MUST fail the HTLC. MUST return an
        #   `incorrect_or_unknown_payment_details` error.
        if rec is None:
            return PaymentCheck(None, "unknown payment_hash")
        status = rec.status(_now(now) if now is not None else self.now())
        if status != "unpaid":
            return PaymentCheck(None, f"invoice is {status}")
        # BOLT #4: if the `payment_secret` doesn't match the expected value for that `payment_hash`,
        #   or the `payment_secret` is required and is not present: MUST fail the HTLC.
        if rec.payment_secret is not None:
            if payment_secret is None:
                return PaymentCheck(None, "payment_secret missing")
            if not hmac.compare_digest(payment_secret, rec.payment_secret):
                return PaymentCheck(None, "payment_secret mismatch")
        if rec.amount_msat is not None:
            # BOLT #4: if the amount paid is less than the amount expected: MUST fail the HTLC.
            if amount_msat < rec.amount_msat:
                return PaymentCheck(None, f"amount {amount_msat}msat below invoice {rec.amount_msat}msat")
            # BOLT #4: if the amount paid is more than twice the amount expected: SHOULD fail the HTLC.
            if amount_msat > 2 * rec.amount_msat:
                return PaymentCheck(None, f"amount {amount_msat}msat over twice invoice {rec.amount_msat}msat")
        return PaymentCheck(rec)

    async def mark_paid(self, *, amount_msat: MsatInt, label: str | None = None, payment_hash: bytes | None = None,
                        preimage: bytes | None = None, paid_at: int | None = None) -> InvoiceRecord | None:
        """Record that an unpaid invoice (by label or payment_hash) was paid `amount_msat`.

        Returns the paid record, or None if it is unknown or no longer unpaid (paid or expired in the
        meantime: the caller must then fail the HTLCs).  Committed before it returns; then
        `waitinvoice`/`waitanyinvoice` callers wake and `invoice_payment` is emitted.  `preimage`, if
        given, must be the invoice's.
        """
        if (label is None) == (payment_hash is None):
            raise ValueError("give exactly one of label and payment_hash")
        if isinstance(amount_msat, bool) or not isinstance(amount_msat, int) or amount_msat < 0:
            raise ValueError("amount_msat must be a non-negative integer")
        when = self.now() if paid_at is None else paid_at

        def write(db) -> InvoiceRecord | None:
            rec = _by_label(db, label) if label is not None else _by_hash(db, payment_hash)
            if rec is None or rec.state != UNPAID:
                return None
            if preimage is not None and not hmac.compare_digest(preimage, rec.preimage):
                raise ValueError("preimage is not this invoice's")
            return _pay(db, rec, amount_msat, when)

        self._forget(payment_hash)
        try:
            rec = await self._submit(write)
        finally:
            self._forget(payment_hash)
        if rec is None:
            return None
        self._paid(rec)
        return rec

    def claim(self, rec: InvoiceRecord, amount_msat: MsatInt) -> Claim | None:
        """For the receiver: mark `rec` (just read, unpaid) paid in the SAME transaction as the fulfil of its HTLC,
        instead of a write of its own before it (issue 18: one commit less on the payee's critical path).

        The invoice write decides whether the HTLC is fulfilled at all, and a channel write cannot be undone, so
        the decision is made here, in the event loop, and must hold when the write runs: no claim while a
        deletion or expiry sweep is in flight (they are the only other writers that could make it no longer
        unpaid; a concurrent mark_paid would make it paid, and BOLT 4 lets us take a paid invoice's HTLC), and
        those wait for the claims (_claims_done). None: pay it with mark_paid, as before. The caller passes
        `claim.op` to the fulfil's write, then calls `settled(claim, committed)` once that write is done."""
        now = self.now()
        if (self._mutating or rec.payment_hash in self._claims or rec.state != UNPAID or rec.status(now) != "unpaid"
                or not self._started):
            return None
        c = Claim(rec, asyncio.get_running_loop().create_future())
        self._claims[rec.payment_hash] = c.done
        self._forget(rec.payment_hash)

        def op(db) -> None:
            # Database only; the same on every run (the store may rerun a batch). Never raises: it is part of the
            # channel's write, which must not fail for it. The claim guarantees the row is still unpaid and as
            # `rec` has it (only a deletion or the expiry sweep could change it, and they wait for the claims), so
            # it is not read again: _pay's UPDATE checks the state in the same statement (issue 18: one statement
            # fewer per payment on the payee).
            c.result = _pay(db, rec, amount_msat, now)
        c.op = op
        return c

    def settled(self, c: Claim, committed: bool) -> None:
        """The fulfil's write carrying `c.op` is done (committed) or did not happen."""
        self._forget(c.rec.payment_hash)
        if self._claims.get(c.rec.payment_hash) is c.done:
            del self._claims[c.rec.payment_hash]
        if not c.done.done():
            c.done.set_result(None)
        if not committed:
            return
        if c.result is None:  # not expected: the claim guarantees an unpaid row
            self._log("broken", f"invoice '{c.rec.label}' was no longer unpaid when its HTLC was fulfilled")
            return
        self._paid(c.result)

    async def _claims_done(self) -> None:
        while self._claims:
            await asyncio.gather(*self._claims.values())

    def _paid(self, rec: InvoiceRecord) -> None:
        """After the commit that marked `rec` paid: the log line, the waiters, invoice_payment."""
        self._log("info", f"Resolved invoice '{rec.label}' with amount {rec.amount_received_msat}msat")
        self._wake_one(rec.label, rec=rec)
        for waiter in list(self._waiters.any):
            if rec.pay_index > waiter.lastpay_index and not waiter.future.done():
                waiter.future.set_result(rec)
        self._notify("invoice_payment", {"msat": rec.amount_received_msat, "preimage": rec.preimage.hex(),
                                         "label": rec.label})

    async def _submit(self, op: Callable[[Any], Any]) -> Any:
        """Run `op(db)` durably: the store's group commit shares one sync between concurrent writes and
        undoes a refused op (its exception comes back here) without touching the others."""
        return await self.store.write(op)

    # ---- expiry ---------------------------------------------------------------------------------
    def _arm_timer(self, expires_at: int) -> None:
        if not self._started:
            return  # start() sweeps and arms the timer from the database
        if self._timer is not None and self._timer_at is not None and self._timer_at <= expires_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, expires_at - self._clock()) + _TIMER_SLACK
        self._timer_at = expires_at
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        asyncio.get_running_loop().create_task(self._timed_sweep())

    async def _timed_sweep(self) -> None:
        try:
            await self._sweep_expired()
        except Exception as e:  # e.g. the store closed under us at shutdown: nothing to expire then
            self._log("unusual", f"invoice expiry sweep failed: {e!r}")

    async def _sweep_expired(self) -> None:
        """Mark every overdue unpaid invoice expired (each its own updated_index), wake its waiters
        with 903, and arm the timer for the next one to expire."""
        if self._sweeping:
            return
        self._sweeping = True
        self._mutating += 1
        try:
            await self._claims_done()
            self._forget()
            now = self.now()

            def write(db):
                ids = [r[0] for r in db.query("SELECT id FROM invoices WHERE state = ? AND expires_at <= ? ORDER BY id",
                                              (UNPAID, now))]
                expired = []
                for id_ in ids:
                    updated = _next_var(db, _VAR_UPDATED_INDEX)
                    db.execute("UPDATE invoices SET state = ?, updated_index = ? WHERE id = ?", (EXPIRED, updated, id_))
                    expired.append(_by_id(db, id_))
                nxt = db.query("SELECT MIN(expires_at) FROM invoices WHERE state = ?", (UNPAID,))[0][0]
                return expired, nxt

            expired, next_expiry = await self.store.write(write)
        finally:
            self._forget()
            self._sweeping = False
            self._mutating -= 1
        for rec in expired:
            self._wake_one(rec.label, rec=rec)
        self._started = True
        if next_expiry is not None:
            self._arm_timer(next_expiry)

    # ---- waiters --------------------------------------------------------------------------------
    def _wake_one(self, label: str, rec: InvoiceRecord | None = None, exc: Exception | None = None) -> None:
        for waiter in self._waiters.one.pop(label, []):
            if waiter.future.done():
                continue
            if exc is not None:
                waiter.future.set_exception(exc)
            else:
                waiter.future.set_result(rec)

    def _drop_waiter(self, waiter: _Waiter) -> None:
        if waiter.label is not None:
            lst = self._waiters.one.get(waiter.label)
            if lst and waiter in lst:
                lst.remove(waiter)
                if not lst:
                    del self._waiters.one[waiter.label]
        elif waiter in self._waiters.any:
            self._waiters.any.remove(waiter)
        if not waiter.future.done():
            waiter.future.cancel()


def _replace(rec: InvoiceRecord, **changes: Any) -> InvoiceRecord:
    from dataclasses import replace

    return replace(rec, **changes)


