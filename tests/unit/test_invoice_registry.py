"""The invoice registry (ampere.node.payments.invoices) on a real SQLite store: creation rules, indexes,
waiters, expiry, the receive path's calls, and durability before anything is announced."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time

import pytest

from ampere.node.errors import Reason
from ampere.node.payments.invoices import (
    InvoiceRegistry,
    InvoiceRegistryError,
    NewInvoice,
)
from ampere.store.sqlite import SqliteStore


def new_invoice(label: str, amount: int | None = 1000, expiry: int = 3600, preimage: bytes | None = None,
                secret: bytes | None = b"\x11" * 32, description: str | None = "d") -> NewInvoice:
    preimage = preimage or os.urandom(32)
    now = int(time.time())
    return NewInvoice(label=label, bolt11=f"lnbcrt-fake-{label}", payment_hash=hashlib.sha256(preimage).digest(),
                      preimage=preimage, payment_secret=secret, amount_msat=amount, expires_at=now + expiry,
                      description=description, features=bytes.fromhex("024100"), min_final_cltv_expiry=18,
                      created_at=now)


class Harness:
    def __init__(self, path: str) -> None:
        self.path = path
        self.notes: list[tuple[str, dict]] = []
        self.store: SqliteStore | None = None
        self.reg: InvoiceRegistry | None = None

    async def open(self) -> InvoiceRegistry:
        self.store = SqliteStore(self.path)
        await self.store.open()
        self.reg = InvoiceRegistry(self.store, notify=lambda t, p: self.notes.append((t, p)))
        await self.reg.start()
        return self.reg

    async def close(self) -> None:
        self.reg.close()
        await self.store.close()


def run(tmp_path, body):
    async def main():
        h = Harness(str(tmp_path / "db.sqlite3"))
        await h.open()
        try:
            return await body(h)
        finally:
            await h.close()

    return asyncio.run(main())


def code_of(excinfo) -> int:
    return excinfo.value.reason


def test_create_duplicate_label_and_preimage_change_nothing(tmp_path):
    async def body(h):
        reg = h.reg
        first = new_invoice("a")
        rec = await reg.create(first)
        assert rec.created_index == 1 and rec.status() == "unpaid"
        assert h.notes == [("invoice_creation", {"msat": 1000, "preimage": first.preimage.hex(), "label": "a"})]
        with pytest.raises(InvoiceRegistryError) as e:
            await reg.create(new_invoice("a"))
        assert code_of(e) == Reason.INVOICE_LABEL_ALREADY_EXISTS and e.value.message == "Duplicate label 'a'"
        assert e.value.data.payment_hash == first.payment_hash  # the clashing invoice, for createinvoice
        with pytest.raises(InvoiceRegistryError) as e:
            await reg.create(new_invoice("b", preimage=first.preimage))
        assert code_of(e) == Reason.INVOICE_PREIMAGE_ALREADY_EXISTS
        assert [r.label for r in await reg.list()] == ["a"]
        assert len(h.notes) == 1
        # An "any" invoice: no amount, and no msat in the notification.
        rec = await reg.create(new_invoice("any", amount=None))
        assert rec.amount_msat is None and "msat" not in h.notes[-1][1]
        assert "amount_msat" not in rec.to_json()
        with pytest.raises(ValueError):
            bad = new_invoice("c")
            await reg.create(NewInvoice(**{**bad.__dict__, "payment_hash": b"\0" * 32}))

    run(tmp_path, body)


def test_list_by_label_hash_and_indexes(tmp_path):
    async def body(h):
        reg = h.reg
        recs = [await reg.create(new_invoice(str(i))) for i in range(1, 8)]
        assert [r.created_index for r in recs] == list(range(1, 8))
        assert [r.label for r in await reg.list(label="3")] == ["3"]
        assert [r.label for r in await reg.list(payment_hash=recs[4].payment_hash)] == ["5"]
        assert await reg.list(label="nope") == []
        assert [r.label for r in await reg.list(index="created", start=3, limit=2)] == ["3", "4"]
        assert await reg.list(index="created", start=100) == []
        # Pay 6 then 2, drop 4's description: the "updated" index orders those three last, in that order.
        await reg.mark_paid(label="6", amount_msat=1000)
        await reg.mark_paid(payment_hash=recs[1].payment_hash, amount_msat=1500)
        await reg.delete("4", "unpaid", desconly=True)
        updated = await reg.list(index="updated", start=1)
        assert [(r.label, r.updated_index) for r in updated] == [("6", 1), ("2", 2), ("4", 3)]
        assert len(await reg.list(index="updated")) == 7  # start 0: never-updated ones too
        assert [r.label for r in await reg.list(index="updated", start=2, limit=1)] == ["2"]
        paid = (await reg.list(label="2"))[0].to_json()
        assert paid["status"] == "paid" and paid["pay_index"] == 2 and paid["amount_received_msat"] == 1500
        assert paid["payment_preimage"] == recs[1].preimage.hex() and paid["updated_index"] == 2
        unpaid = (await reg.list(label="1"))[0].to_json()
        assert "payment_preimage" not in unpaid and "updated_index" not in unpaid

    run(tmp_path, body)


def test_mark_paid_durable_before_waiters_and_notification(tmp_path):
    db_path = str(tmp_path / "db.sqlite3")
    seen_on_disk = []

    async def body(h):
        reg = h.reg

        def notify(topic, payload):
            h.notes.append((topic, payload))
            if topic == "invoice_payment":
                # Another connection, as a crash-restarted node would see the file.
                with sqlite3.connect(db_path) as conn:
                    seen_on_disk.append(conn.execute("SELECT state, pay_index FROM invoices WHERE label = ?",
                                                     (payload["label"],)).fetchone())

        reg._notify = notify
        inv = new_invoice("x", amount=5000)
        await reg.create(inv)
        one = asyncio.ensure_future(reg.wait_one("x"))
        anyw = asyncio.ensure_future(reg.wait_any(0))
        await asyncio.sleep(0.05)
        assert not one.done() and not anyw.done()
        with pytest.raises(ValueError):
            await reg.mark_paid(label="x", amount_msat=5000, preimage=b"\x01" * 32)
        rec = await reg.mark_paid(label="x", amount_msat=5001, preimage=inv.preimage, paid_at=1234)
        assert rec.pay_index == 1 and rec.paid_at == 1234 and rec.amount_received_msat == 5001
        assert (await one).label == "x" and (await anyw).pay_index == 1
        assert seen_on_disk == [(1, 1)]
        assert h.notes[-1] == ("invoice_payment", {"msat": 5001, "preimage": inv.preimage.hex(), "label": "x"})
        # Paid already: a second resolution is refused (the receive path then fails the HTLCs).
        assert await reg.mark_paid(label="x", amount_msat=5000) is None
        assert await reg.mark_paid(payment_hash=b"\0" * 32, amount_msat=1) is None
        with pytest.raises(ValueError):
            await reg.mark_paid(amount_msat=1)

    run(tmp_path, body)


def test_wait_any_order_timeout_and_lastpay_index(tmp_path):
    async def body(h):
        reg = h.reg
        for label in ("a", "b", "c"):
            await reg.create(new_invoice(label))
        with pytest.raises(InvoiceRegistryError) as e:
            await reg.wait_any(0, timeout=0)
        assert code_of(e) == Reason.INVOICE_WAIT_TIMED_OUT
        await reg.mark_paid(label="b", amount_msat=1000)
        await reg.mark_paid(label="a", amount_msat=1000)
        assert (await reg.wait_any(0, timeout=0)).label == "b"
        assert (await reg.wait_any(1, timeout=0)).label == "a"
        # A waiter beyond every pay_index so far is woken only by a later payment.
        waiter = asyncio.ensure_future(reg.wait_any(2, timeout=5))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await reg.mark_paid(label="c", amount_msat=1000)
        got = await waiter
        assert (got.label, got.pay_index) == ("c", 3)
        assert not reg._waiters.any and not reg._waiters.one  # nothing left behind

    run(tmp_path, body)


def test_wait_one_expires_during_wait_and_deleted_during_wait(tmp_path):
    async def body(h):
        reg = h.reg
        await reg.create(new_invoice("soon", expiry=1))
        await reg.create(new_invoice("later"))
        start = time.monotonic()
        with pytest.raises(InvoiceRegistryError) as e:
            await reg.wait_one("soon")
        assert code_of(e) == Reason.INVOICE_EXPIRED_DURING_WAIT
        assert e.value.data.status() == "expired"
        assert time.monotonic() - start < 2.5
        # The timer writes the expiry (with an updated_index), not just the listing's view.  Under
        # load the waiter may see the clock pass expiry just before the timer fires: allow it a moment.
        for _ in range(100):
            rec = (await reg.list(label="soon"))[0]
            if rec.state == 2:
                break
            await asyncio.sleep(0.02)
        assert rec.state == 2 and rec.updated_index == 1
        with pytest.raises(InvoiceRegistryError) as e:
            await reg.wait_one("soon")  # already expired: at once
        assert code_of(e) == Reason.INVOICE_EXPIRED_DURING_WAIT
        waiter = asyncio.ensure_future(reg.wait_one("later"))
        await asyncio.sleep(0.05)
        await reg.delete("later", "unpaid")
        with pytest.raises(InvoiceRegistryError) as e:
            await waiter
        assert (code_of(e), e.value.message) == (Reason.GENERIC, "Invoice deleted during wait")
        with pytest.raises(InvoiceRegistryError) as e:
            await reg.wait_one("never-made")
        assert (code_of(e), e.value.message) == (Reason.GENERIC, "Label not found")

    run(tmp_path, body)


def test_delete_rules(tmp_path):
    async def body(h):
        reg = h.reg
        await reg.create(new_invoice("u"))
        with pytest.raises(InvoiceRegistryError) as e:
            await reg.delete("u", "paid")
        assert code_of(e) == Reason.INVOICE_STATUS_UNEXPECTED
        assert e.value.message == "Invoice status is unpaid not paid"
        assert e.value.data == {"current_status": "unpaid", "expected_status": "paid"}
        with pytest.raises(InvoiceRegistryError) as e:
            await reg.delete("nope", "unpaid")
        assert code_of(e) == Reason.INVOICE_NOT_FOUND
        # check_only validates and keeps everything.
        await reg.delete("u", "unpaid", check_only=True)
        assert len(await reg.list()) == 1
        rec = await reg.delete("u", "unpaid", desconly=True)
        assert rec.description is None and "description" not in rec.to_json()
        with pytest.raises(InvoiceRegistryError) as e:
            await reg.delete("u", "unpaid", desconly=True)
        assert code_of(e) == Reason.INVOICE_NO_DESCRIPTION
        await reg.delete("u", "unpaid")
        assert await reg.list() == []

    run(tmp_path, body)


def test_claim_pays_in_the_callers_write_and_excludes_deletion(tmp_path):
    """The receiver's one-write path (claim): the invoice row is marked paid by the op the caller puts in its own
    transaction (the HTLC's fulfil); waiters and invoice_payment only after that commit; a delinvoice arriving
    meanwhile waits for it (then finds the invoice paid); no claim while a deletion is in flight, nor twice."""
    async def body(h):
        reg = h.reg
        inv = new_invoice("c", amount=7000)
        rec = await reg.create(inv)
        one = asyncio.ensure_future(reg.wait_one("c"))
        claim = reg.claim(rec, 7000)
        assert claim is not None and reg.claim(rec, 7000) is None  # one claim per invoice
        deleting = asyncio.ensure_future(reg.delete("c", "unpaid"))
        await asyncio.sleep(0.05)
        assert not deleting.done() and not one.done()  # the deletion waits for the claim
        await h.store.write(claim.op)  # the caller's write (the fulfil's, in the receiver)
        assert not one.done() and not [t for t, _p in h.notes if t == "invoice_payment"]
        reg.settled(claim, True)
        assert (await one).status() == "paid"
        assert h.notes[-1] == ("invoice_payment", {"msat": 7000, "preimage": inv.preimage.hex(), "label": "c"})
        with pytest.raises(InvoiceRegistryError) as e:
            await deleting
        assert code_of(e) == Reason.INVOICE_STATUS_UNEXPECTED
        # A deletion in flight: no claim (the receiver then uses mark_paid); a claim not written changes nothing.
        other = await reg.create(new_invoice("d"))
        reg._mutating += 1
        assert reg.claim(other, 1000) is None
        reg._mutating -= 1
        c2 = reg.claim(other, 1000)
        reg.settled(c2, False)
        assert (await reg.get_by_label("d")).status() == "unpaid"
        c3 = reg.claim(other, 1000)
        assert c3 is not None
        reg.settled(c3, False)

    run(tmp_path, body)


def test_claim_op_on_a_row_no_longer_unpaid_changes_nothing(tmp_path):
    """The claim's op does not read the row again (issue 18): its UPDATE checks the state itself. Should the row not
    be unpaid after all (the claim rules it out: here it is paid behind the registry's back), the op reports None
    and leaves the row and both indexes as they were, so the next payment takes the next pay_index."""
    async def body(h):
        reg = h.reg
        a = await reg.create(new_invoice("a"))
        await reg.create(new_invoice("b"))
        claim = reg.claim(a, 1000)
        await h.store.write(lambda db: db.execute("UPDATE invoices SET state = 1, pay_index = 99 WHERE label = 'a'"))
        await h.store.write(claim.op)
        assert claim.result is None
        reg.settled(claim, True)  # logged as broken; nothing announced
        assert not [t for t, _p in h.notes if t == "invoice_payment"]
        assert (await reg.get_by_label("a")).pay_index == 99
        paid = await reg.mark_paid(amount_msat=1000, label="b")
        assert paid.pay_index == 1 and paid.updated_index == 1

    run(tmp_path, body)


def test_lookup_by_hash_at_hand_follows_every_write(tmp_path):
    """The receive path's lookup is answered from memory (no database read) for an invoice made or read lately,
    and never with a record a write has changed since: paid by mark_paid or by a claim, deleted; a read that was
    in flight while a write was queued is not kept."""
    async def body(h):
        reg = h.reg
        rec = await reg.create(new_invoice("k"))
        ph = rec.payment_hash
        assert reg.cached_by_hash(ph) is rec and await reg.lookup_by_hash(ph) is rec
        await reg.mark_paid(label="k", amount_msat=1000)
        assert reg.cached_by_hash(ph) is None and (await reg.lookup_by_hash(ph)).status() == "paid"
        assert reg.cached_by_hash(ph).status() == "paid"  # read back, then at hand
        # A claim: forgotten while its write is pending and once settled (the write decides).
        m = await reg.create(new_invoice("m"))
        claim = reg.claim(m, 1000)
        assert reg.cached_by_hash(m.payment_hash) is None
        assert (await reg.lookup_by_hash(m.payment_hash)).status() == "unpaid"  # the claim's write is not in yet
        await h.store.write(claim.op)
        reg.settled(claim, True)
        assert reg.cached_by_hash(m.payment_hash) is None
        assert (await reg.lookup_by_hash(m.payment_hash)).status() == "paid"
        # A read in flight when a write is queued: its (older) answer is not kept.
        n = await reg.create(new_invoice("n"))
        reg._forget()
        reading = asyncio.ensure_future(reg.lookup_by_hash(n.payment_hash))
        await asyncio.sleep(0)  # the read is queued
        paying = asyncio.ensure_future(reg.mark_paid(payment_hash=n.payment_hash, amount_msat=1000))
        await asyncio.sleep(0)  # the write is queued behind it
        assert (await reading).status() == "unpaid" and reg.cached_by_hash(n.payment_hash) is None
        await paying
        assert (await reg.lookup_by_hash(n.payment_hash)).status() == "paid"
        # Deleted: gone from memory too.
        d = await reg.create(new_invoice("d"))
        assert reg.cached_by_hash(d.payment_hash) is d
        await reg.delete("d", "unpaid")
        assert reg.cached_by_hash(d.payment_hash) is None and await reg.lookup_by_hash(d.payment_hash) is None

    run(tmp_path, body)


def test_check_payment_bolt4_final_node_rules(tmp_path):
    async def body(h):
        reg = h.reg
        secret = b"\x22" * 32
        inv = await reg.create(new_invoice("p", amount=10_000, secret=secret))
        anyinv = await reg.create(new_invoice("any", amount=None, secret=secret))
        ph = inv.payment_hash
        assert (await reg.check_payment(ph, 10_000, secret)).invoice.label == "p"
        assert (await reg.check_payment(ph, 20_000, secret)).ok        # up to twice is fine
        assert not (await reg.check_payment(ph, 20_001, secret)).ok    # BOLT 4: SHOULD fail above 2x
        assert not (await reg.check_payment(ph, 9_999, secret)).ok     # MUST fail below
        assert (await reg.check_payment(ph, 10_000, b"\x23" * 32)).reason == "payment_secret mismatch"
        assert (await reg.check_payment(ph, 10_000, None)).reason == "payment_secret missing"
        assert (await reg.check_payment(b"\x09" * 32, 1, secret)).reason == "unknown payment_hash"
        assert (await reg.check_payment(anyinv.payment_hash, 1, secret)).ok
        assert (await reg.check_payment(ph, 10_000, secret, now=inv.expires_at)).reason == "invoice is expired"
        await reg.mark_paid(payment_hash=ph, amount_msat=10_000)
        assert (await reg.check_payment(ph, 10_000, secret)).reason == "invoice is paid"
        assert (await reg.lookup_by_hash(ph)).status() == "paid"

    run(tmp_path, body)


def test_survives_restart_and_indexes_continue(tmp_path):
    path = str(tmp_path / "db.sqlite3")

    async def main():
        h = Harness(path)
        reg = await h.open()
        await reg.create(new_invoice("a"))
        await reg.create(new_invoice("b"))
        await reg.mark_paid(label="a", amount_msat=1000)
        await reg.delete("b", "unpaid")
        await reg.create(new_invoice("gone-while-down", expiry=0))
        await h.close()  # before its expiry timer fires: the state on disk is still unpaid
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT state FROM invoices WHERE label = 'gone-while-down'").fetchone() == (0,)

        h2 = Harness(path)
        reg = await h2.open()   # start() expires what expired while we were down
        labels = {r.label: r for r in await reg.list()}
        assert set(labels) == {"a", "gone-while-down"}
        assert labels["a"].status() == "paid" and labels["a"].pay_index == 1
        assert labels["gone-while-down"].state == 2 and labels["gone-while-down"].updated_index == 2
        # created_index is never reused (b was 2 and is gone), pay_index carries on.
        c = await reg.create(new_invoice("c"))
        assert c.created_index == 4
        assert (await reg.mark_paid(label="c", amount_msat=1000)).pay_index == 2
        await h2.close()

    asyncio.run(main())


def test_concurrent_writes_share_a_commit_and_refusals_stay_isolated(tmp_path):
    async def body(h):
        reg = h.reg
        first = await reg.create(new_invoice("first"))
        batches0, writes0 = h.store.batches, h.store.writes
        news = [new_invoice(f"c{i}") for i in range(20)]
        dup_label = new_invoice("c3")
        dup_preimage = new_invoice("other", preimage=first.preimage)
        results = await asyncio.gather(*(reg.create(n) for n in news + [dup_label, dup_preimage]),
                                       return_exceptions=True)
        assert [r.label for r in results[:20]] == [f"c{i}" for i in range(20)]
        assert isinstance(results[20], InvoiceRegistryError) and results[20].reason == Reason.INVOICE_LABEL_ALREADY_EXISTS
        assert isinstance(results[21], InvoiceRegistryError) and results[21].reason == Reason.INVOICE_PREIMAGE_ALREADY_EXISTS
        # The store's group commit: 22 concurrent writes took fewer transactions (and syncs) than writes.
        assert h.store.writes - writes0 == 22 and h.store.batches - batches0 < 22
        assert sorted(r.created_index for r in results[:20]) == list(range(2, 22))
        stored = {r.label: r for r in await reg.list()}
        assert len(stored) == 21 and stored["c3"].payment_hash == news[3].payment_hash
        # A refused mark_paid inside a batch does not undo its neighbours.
        paid = await asyncio.gather(reg.mark_paid(label="c1", amount_msat=1000, preimage=b"\7" * 32),
                                    reg.mark_paid(label="c2", amount_msat=1000), return_exceptions=True)
        assert isinstance(paid[0], ValueError) and paid[1].pay_index == 1
        assert (await reg.get_by_label("c1")).status() == "unpaid"

    run(tmp_path, body)


def test_paid_and_expired_shapes_fit_cln_schemas(tmp_path):
    """Payments cannot arrive over RPC yet, so check the paid shapes here: waitinvoice,
    waitanyinvoice, listinvoices and delinvoice results, and the invoice_payment notification."""
    from ampere.testing.schema import ClnValidator, load_schema, validate

    async def body(h):
        reg = h.reg
        await reg.create(new_invoice("paid", amount=None))
        await reg.create(new_invoice("old", expiry=0))
        rec = await reg.mark_paid(label="paid", amount_msat=4242)
        paid = rec.to_json()
        for name in ("waitinvoice", "waitanyinvoice", "delinvoice"):
            validate(name, paid)
        validate("listinvoices", {"invoices": [r.to_json() for r in await reg.list()]})
        expired = (await reg.get_by_label("old")).to_json()
        assert expired["status"] == "expired"
        validate("delinvoice", expired)
        topic, payload = h.notes[-1]
        assert topic == "invoice_payment"
        ClnValidator(load_schema("notification/invoice_payment", "response")).validate(payload)
        ClnValidator(load_schema("notification/invoice_creation", "response")).validate(h.notes[0][1])

    run(tmp_path, body)
