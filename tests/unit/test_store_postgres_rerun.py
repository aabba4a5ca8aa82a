"""PostgreSQL runs a group-commit batch again when one member raises (no per-write savepoints) and when the
connection breaks before COMMIT.  Every other member's effects must then happen exactly once: database rows,
serial ids (sequences are not rolled back), and the in-memory state of the real components that handed the
write functions to the store (the invoice registry, the forwarding switch, the payment engine, datastore)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import types

import pytest

from ampere.node.payments.invoices import InvoiceRegistry, NewInvoice
from ampere.node.payments.sendpay import PENDING, Payment, PaymentEngine
from ampere.node.payments.switch import Forward, Switch
from ampere.rpc.commands.datastore import datastore
from ampere.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


def _invoice(label: str) -> NewInvoice:
    preimage = hashlib.sha256(label.encode()).digest()
    now = int(time.time())
    return NewInvoice(label=label, bolt11=f"lnbcrt-fake-{label}", payment_hash=hashlib.sha256(preimage).digest(),
                      preimage=preimage, payment_secret=b"\x11" * 32, amount_msat=1000, expires_at=now + 3600,
                      description="d", features=bytes.fromhex("024100"), min_final_cltv_expiry=18, created_at=now)


def _forward(n: int) -> Forward:
    return Forward(0, b"\x07" * 32, n, None, 5000, 600, bytes([n]) * 32, "offered", time.time())


def _payment(n: int) -> Payment:
    return Payment(0, bytes([n]) * 32, 0, 1, PENDING, 1000, 1000, int(time.time()), amount_msat=1000,
                   destination=b"\x02" * 33)


async def _batch(store: PostgresStore, middle, expect_queued: int):
    """Hold the database thread, queue: invoice A, forward, `middle`, invoice B, payment, datastore append;
    then let them run as one batch.  Returns the components and each caller's outcome."""
    node = types.SimpleNamespace(store=store, node_id=b"\x03" * 33)
    reg = InvoiceRegistry(store)
    await reg.start()
    switch = Switch(node)
    payments = PaymentEngine(node)
    ctx = types.SimpleNamespace(node=node, check=False)
    await datastore(ctx, key=["k"], string="a", hex=None, mode="must-create", generation=None)

    gate = threading.Event()
    held = asyncio.ensure_future(store.write(lambda db: gate.wait(10)))
    await asyncio.sleep(0.1)  # the database thread now waits inside `held`
    fwd, pay = _forward(1), _payment(1)

    async def send():
        try:
            await payments._send(pay, b"", b"\x02" * 33)  # no channel manager: inserted, then failed
        except Exception as e:
            return e

    tasks = [asyncio.ensure_future(c) for c in (
        reg.create(_invoice("A")), switch._insert(fwd), store.write(middle), reg.create(_invoice("B")), send(),
        datastore(ctx, key=["k"], string="b", hex=None, mode="must-append", generation=None))]
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(store._queue) == expect_queued:
            break
    assert len(store._queue) == expect_queued  # one batch behind the held write
    gate.set()
    await held
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return reg, switch, payments, fwd, pay, results


def _check_once(store: PostgresStore, reg, switch, payments, fwd, pay, results) -> None:
    a, _ins, _middle, b, _sent, ds = results
    # Ids as if the batch had run once (as on SQLite): the first row of each table is 1, the next 2.
    assert (a.created_index, b.created_index) == (1, 2)
    assert fwd.created_index == 1 and pay.created_index == 1
    assert list(switch.forwards) == [1] and switch.forwards[1] is fwd
    assert [p.created_index for p in payments._all.values()] == [1]
    assert ds == {"key": ["k"], "generation": 1, "hex": b"ab".hex(), "string": "ab"}

    def rows(db):
        return (db.query("SELECT id, label FROM invoices ORDER BY id"), db.query("SELECT id FROM forwards"),
                db.query("SELECT id, status FROM payments"), db.query("SELECT data, generation FROM datastore"),
                db.query("SELECT val FROM vars WHERE name = 'bolt11_index' OR name LIKE '%created%' ORDER BY name"))
    inv, fw, pa, dsr, _ = store.run_sync(rows)
    assert inv == [(1, "A"), (2, "B")]
    assert fw == [(1,)]
    assert [r[0] for r in pa] == [1]
    assert [(bytes(d), g) for d, g in dsr] == [(b"ab", 1)]


async def _next_ids(store: PostgresStore, reg, switch) -> tuple[int, int]:
    c = await reg.create(_invoice("C"))
    f = _forward(2)
    await switch._insert(f)
    return c.created_index, f.created_index


def test_a_member_that_raises_leaves_the_others_applied_once(postgres_shared):
    dsn = postgres_shared.create_db()

    def refuse(db):
        db.execute("INSERT INTO vars (name, val) VALUES ('refused', 'x')")
        raise ValueError("refused")

    async def go():
        store = PostgresStore(dsn)
        await store.open()
        try:
            reg, switch, payments, fwd, pay, results = await _batch(store, refuse, 6)
            assert isinstance(results[2], ValueError)
            assert store.run_sync(lambda db: db.query("SELECT 1 FROM vars WHERE name = 'refused'")) == []
            _check_once(store, reg, switch, payments, fwd, pay, results)
            assert await _next_ids(store, reg, switch) == (3, 2)  # the sequences go on from there
            reg.close()
        finally:
            await store.close()

    asyncio.run(go())


def test_a_connection_lost_before_commit_reruns_the_batch_once(postgres_shared):
    import psycopg

    dsn = postgres_shared.create_db()
    killed = []

    def kill_own_connection(db):
        # The batch's connection dies in the middle of the transaction (as when the server restarts).
        if not killed:
            pid = db.query("SELECT pg_backend_pid()")[0][0]
            with psycopg.connect(dsn, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(pid)
        return "ran"

    async def go():
        store = PostgresStore(dsn)
        await store.open()
        try:
            reg, switch, payments, fwd, pay, results = await _batch(store, kill_own_connection, 6)
            assert killed and store.reconnects == 1
            assert results[2] == "ran"
            _check_once(store, reg, switch, payments, fwd, pay, results)
            assert await _next_ids(store, reg, switch) == (3, 2)
            reg.close()
        finally:
            await store.close()

    asyncio.run(go())


def test_a_batch_that_fails_at_commit_leaves_no_in_memory_trace(postgres_shared):
    dsn = postgres_shared.create_db()

    def violate_at_commit(db):
        # A deferred foreign key: every statement succeeds, the COMMIT itself fails, so no member is stored.
        db.execute("CREATE TABLE IF NOT EXISTS parent (id BIGINT PRIMARY KEY)")
        db.execute("CREATE TABLE IF NOT EXISTS child (pid BIGINT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
        db.execute("INSERT INTO child (pid) VALUES (1)")

    async def go():
        store = PostgresStore(dsn)
        await store.open()
        try:
            reg, switch, payments, fwd, pay, results = await _batch(store, violate_at_commit, 6)
            assert all(isinstance(r, Exception) for r in results), results
            # Nothing the callers were not told about: no forward indexed under an id that was never stored.
            assert switch.forwards == {} and fwd.created_index == 0 and pay.created_index == 0
            assert store.run_sync(lambda db: (db.query("SELECT id FROM forwards"), db.query("SELECT id FROM invoices"),
                                              db.query("SELECT id FROM payments"))) == ([], [], [])
            c, f = await _next_ids(store, reg, switch)
            assert (c, f) == (1, 1)  # the ids the failed batch drew were given back
            assert list(switch.forwards) == [1]
            reg.close()
        finally:
            await store.close()

    asyncio.run(go())
