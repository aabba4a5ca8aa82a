"""amp-dbmigrate: a stopped node's SQLite database into PostgreSQL and back, every table compared; the node
runs on the copy with its channel, invoices and payments."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

_spec = importlib.util.spec_from_file_location("test_payments", os.path.join(os.path.dirname(__file__),
                                                                              "test_payments.py"))
tp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tp)

pytestmark = pytest.mark.postgres
DBMIGRATE = [sys.executable, "-m", "ampere.cli.dbmigrate"]


def migrate(src: str, dst: str) -> subprocess.CompletedProcess:
    return subprocess.run(DBMIGRATE + [f"--from={src}", f"--to={dst}"], capture_output=True, text=True, timeout=120)


def dump(dsn: str) -> dict:
    import asyncio

    from ampere.store.copy import dump as dump_store
    from ampere.store.dsn import parse_wallet_dsn
    from ampere.store.factory import make_store

    async def go():
        s = make_store(parse_wallet_dsn(dsn, ""), on_fatal=lambda m: None)
        await s.open()
        try:
            return await dump_store(s)
        finally:
            await s.close()

    return asyncio.run(go())


def test_sqlite_to_postgres_and_back(node_factory_chain, chaind, postgres):
    main = os.path.join(node_factory_chain.base_dir, "node.sqlite3")
    l1, l2, scid = tp.channel_pair(node_factory_chain, chaind, opts1={"wallet": f"sqlite3://{main}"})
    for i in range(3):
        inv = l2.rpc.invoice(5_000, f"m{i}", "m")
        tp.pay(l1, l2, scid, inv, amount_msat=5_000)
        assert l1.rpc.waitsendpay(inv["payment_hash"], 30)["status"] == "complete"
    l1.rpc.invoice(7_000, "unpaid", "x")
    l1.rpc.datastore(key=["a", "b"], string="kept")
    tp.wait_for(lambda: not l1.rpc.listpeerchannels()["channels"][0]["htlcs"], 30, "payments settled")
    before = {"channels": l1.rpc.listpeerchannels()["channels"][0]["to_us_msat"],
              "pays": sorted((p["payment_hash"], p["status"]) for p in l1.rpc.listsendpays()["payments"]),
              "invoices": sorted(i["label"] for i in l1.rpc.listinvoices()["invoices"])}
    l1.stop()
    sqlite_dsn = f"sqlite3://{main}"
    pg = postgres.create_db("migrated")
    r = migrate(sqlite_dsn, pg)
    assert r.returncode == 0, r.stderr
    assert "every table compared equal" in r.stdout and postgres.password not in r.stdout
    assert dump(pg) == dump(sqlite_dsn)
    assert dump(pg)["channels"] and dump(pg)["payments"]
    # Copying into a database that is not empty is refused.
    r = migrate(sqlite_dsn, pg)
    assert r.returncode == 1 and "not empty" in r.stderr

    # The node runs on the copy: same channel, payments, invoices; and pays again.
    l1.options["wallet"] = pg
    l1.start()
    assert l1.rpc.listpeerchannels()["channels"][0]["to_us_msat"] == before["channels"]
    assert sorted((p["payment_hash"], p["status"]) for p in l1.rpc.listsendpays()["payments"]) == before["pays"]
    assert sorted(i["label"] for i in l1.rpc.listinvoices()["invoices"]) == before["invoices"]
    tp.wait_for(lambda: l1.rpc.listpeerchannels()["channels"][0]["peer_connected"], 30, "reconnected")
    inv = l2.rpc.invoice(5_000, "after", "m")
    tp.pay(l1, l2, scid, inv, amount_msat=5_000)
    assert l1.rpc.waitsendpay(inv["payment_hash"], 30)["status"] == "complete"
    # While the node runs on PostgreSQL, copying from it is refused (it holds the lock).
    back = os.path.join(node_factory_chain.base_dir, "back.sqlite3")
    r = migrate(pg, f"sqlite3://{back}")
    assert r.returncode == 1 and "in use by another ampd" in r.stderr
    l1.stop()
    assert not os.path.exists(back)  # the refused copy created nothing
    r = migrate(pg, f"sqlite3://{back}")
    assert r.returncode == 0, r.stderr
    assert dump(f"sqlite3://{back}") == dump(pg)
    l1.options["wallet"] = f"sqlite3://{back}"
    l1.start()
    assert len(l1.rpc.listsendpays()["payments"]) == len(before["pays"]) + 1
