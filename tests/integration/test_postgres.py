"""ampd on a real PostgreSQL: the DSN hidden, a database restart in the middle of payments, two ampds on one
database (only one runs), and failover by kill -9 with payments in flight."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import shutil
import sqlite3
import threading
import time

import pytest
from pyln.client import LightningRpc, RpcError

_spec = importlib.util.spec_from_file_location("test_payments", os.path.join(os.path.dirname(__file__),
                                                                              "test_payments.py"))
tp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tp)
wait_for = tp.wait_for

pytestmark = pytest.mark.postgres
AMOUNT = 10_000


def direct(l1, l2, scid, inv, rpc=None, amount=AMOUNT, dest_id=None):
    rpc = rpc or l1.rpc
    hop = [{"id": dest_id or l2.node_id, "channel": scid, "delay": tp.DELAY, "amount_msat": amount}]
    rpc.sendpay(hop, inv["payment_hash"], payment_secret=inv["payment_secret"])


def test_wallet_dsn_password_is_never_shown(node_factory, postgres):
    dsn = postgres.create_db("hidden")
    assert f":{postgres.password}@" in dsn  # the node is given a password...
    l1 = node_factory.get_node(wallet=dsn)
    shown = l1.rpc.listconfigs("wallet")["configs"]["wallet"]["value_str"]
    assert shown == dsn.replace(postgres.password, "***")
    assert postgres.password not in repr(l1.rpc.listconfigs())  # ...and shows it nowhere
    assert postgres.password not in l1.logs(since_start=False)
    assert "opening postgres://postgres:***@" in l1.logs()
    # The node's state is in PostgreSQL, not in a SQLite file.
    l1.rpc.datastore(key=["k"], string="v")
    assert postgres.sql("SELECT COUNT(*) FROM datastore", "hidden") == [(1,)]
    assert not os.path.exists(os.path.join(l1.netdir, "ampere.sqlite3"))


def test_sqlite_backup_written_and_diverged_backup_refused(node_factory, tmp_path):
    main, backup = os.path.join(node_factory.base_dir, "main.sqlite3"), str(tmp_path / "backup.sqlite3")
    l1 = node_factory.get_node(wallet=f"sqlite3://{main}:{backup}")
    l1.rpc.datastore(key=["a"], string="1")
    l1.rpc.invoice(1000, "lbl", "d")

    def table(path, name):
        c = sqlite3.connect(path)
        try:
            return c.execute(f"SELECT * FROM {name}").fetchall()
        finally:
            c.close()

    for name in ("datastore", "invoices", "vars"):  # answered, so in both files
        assert table(main, name) == table(backup, name) and table(main, name)
    l1.stop()
    saved = str(tmp_path / "saved.sqlite3")
    shutil.copy(backup, saved)
    l1.start()
    l1.rpc.datastore(key=["b"], string="2")
    l1.rpc.datastore(key=["c"], string="3")
    l1.stop()
    shutil.copy(saved, backup)  # an old backup: refused, with a clear error, and nothing changes
    l1.may_fail = True
    l1.start(wait=False)
    l1.proc.wait(30)
    assert l1.proc.returncode != 0
    assert "diverged" in l1.stderr()


def channel_on_postgres(node_factory_chain, chaind, postgres, opts2=None):
    """l1 (state in PostgreSQL) -> l2, a channel; l2 listens on a unix socket l1 reconnects to."""
    dsn = postgres.create_db("l1")
    l1, l2, scid = tp.channel_pair(node_factory_chain, chaind, opts1={"wallet": dsn, "max-concurrent-htlcs": 483},
                                   opts2={"max-concurrent-htlcs": 483, **(opts2 or {})})
    return dsn, l1, l2, scid


def balances(l1, l2):
    return tp.to_us(l1), tp.to_us(l2)


def test_database_restart_in_the_middle_of_payments(node_factory_chain, chaind, postgres):
    """pg_ctl restart while payments stream: the node pauses, resumes, and every payment completes once.

    Payments keep streaming until the restart is over (a fixed batch could be done before the restart begins:
    40 direct payments take well under 0.3 s now), so writes are in flight while the database is away."""
    dsn, l1, l2, scid = channel_on_postgres(node_factory_chain, chaind, postgres)
    before = balances(l1, l2)
    labels = iter(range(10_000))
    lock = threading.Lock()
    statuses: list[str] = []
    restarted = threading.Event()

    def restart_while_streaming():
        wait_for(lambda: len(statuses) >= 10, 60, "payments streaming")
        postgres.restart()
        restarted.set()

    def payer():
        rpc, rpc2 = LightningRpc(l1.rpc_path), LightningRpc(l2.rpc_path)  # l2's state is in SQLite: always up
        after = 0
        while after < 5:  # until five of this thread's payments began after the restart
            done = restarted.is_set()
            with lock:
                label = next(labels)
            inv = rpc2.invoice(AMOUNT, f"r{label}", "restart")
            direct(l1, l2, scid, inv, rpc)
            status = rpc.waitsendpay(inv["payment_hash"], 120)["status"]
            with lock:
                statuses.append(status)
            after += done

    restarter = threading.Thread(target=restart_while_streaming)
    restarter.start()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        for f in [ex.submit(payer) for _ in range(8)]:
            f.result()
    restarter.join()
    assert restarted.is_set()
    assert statuses == ["complete"] * len(statuses)
    l1.wait_for_log("database connection re-established")
    wait_for(lambda: not l1.rpc.listpeerchannels()["channels"][0]["htlcs"], 30, "no HTLC left")
    after = balances(l1, l2)
    assert after == (before[0] - AMOUNT * len(statuses), before[1] + AMOUNT * len(statuses))
    assert sum(1 for i in l2.rpc.listinvoices()["invoices"] if i["status"] == "paid") == len(statuses)
    # More payments after the restart still work.
    inv = l2.rpc.invoice(AMOUNT, "after", "after")
    direct(l1, l2, scid, inv)
    assert l1.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"


def test_database_down_the_node_accepts_nothing_and_signs_nothing(node_factory_chain, chaind, postgres):
    """PostgreSQL stopped: l1 sends no HTLC and does not acknowledge l2's (no revoke_and_ack without its state
    committed); when the database is back both payments complete, balances exact."""
    dsn, l1, l2, scid = channel_on_postgres(node_factory_chain, chaind, postgres)
    seed = l2.rpc.invoice(100_000_000, "seed", "x")
    direct(l1, l2, scid, seed, amount=100_000_000)
    assert l1.rpc.waitsendpay(seed["payment_hash"], 60)["status"] == "complete"
    wait_for(lambda: not l1.rpc.listpeerchannels()["channels"][0]["htlcs"], 30, "seed settled")
    before = balances(l1, l2)
    id1, id2 = l1.node_id, l2.node_id
    inv_out = l2.rpc.invoice(AMOUNT, "out", "l1 pays l2")
    inv_in = l1.rpc.invoice(AMOUNT, "in", "l2 pays l1")
    postgres.stop()
    results = {}

    def pay(name, payer, payee, inv, dest_id):
        rpc = LightningRpc(payer.rpc_path)
        try:
            direct(payer, payee, scid, inv, rpc, dest_id=dest_id)
            results[name] = rpc.waitsendpay(inv["payment_hash"], 120)["status"]
        except Exception as e:
            results[name] = repr(e)

    threads = [threading.Thread(target=pay, args=("out", l1, l2, inv_out, id2)),
               threading.Thread(target=pay, args=("in", l2, l1, inv_in, id1))]
    for t in threads:
        t.start()
    time.sleep(4)
    assert results == {}  # nothing finished while l1's database is down
    htlcs = l2.rpc.listpeerchannels()["channels"][0]["htlcs"]
    # l1 offered nothing; l2's HTLC to l1 is committed by l2 but never acknowledged by l1.
    assert [h["direction"] for h in htlcs] == ["out"], htlcs
    assert htlcs[0]["state"] in ("SENT_ADD_HTLC", "SENT_ADD_COMMIT"), htlcs
    assert [i["status"] for i in l2.rpc.listinvoices("out")["invoices"]] == ["unpaid"]
    l1.wait_for_log("database connection lost")
    postgres.start()
    for t in threads:
        t.join(120)
    assert results == {"out": "complete", "in": "complete"}
    l1.wait_for_log("database connection re-established")
    wait_for(lambda: not l1.rpc.listpeerchannels()["channels"][0]["htlcs"]
             and not l2.rpc.listpeerchannels()["channels"][0]["htlcs"], 30, "no HTLC left")
    assert balances(l1, l2) == before


def standby_of(node_factory_chain, active, dsn):
    """A second ampd on the same database and hsm_secret, in its own directory: it waits as a standby."""
    standby = node_factory_chain.get_node(wallet=dsn, start=False, **{"max-concurrent-htlcs": 483})
    os.makedirs(standby.netdir, exist_ok=True)
    shutil.copy(os.path.join(active.netdir, "hsm_secret"), os.path.join(standby.netdir, "hsm_secret"))
    standby.start(wait=False)
    standby.wait_for_log("waiting as standby")
    return standby


def test_two_ampds_on_one_database_only_one_runs(node_factory, postgres):
    dsn = postgres.create_db("two")
    l1 = node_factory.get_node(wallet=dsn)
    l2 = node_factory.get_node(wallet=dsn, start=False)
    os.makedirs(l2.netdir, exist_ok=True)
    shutil.copy(os.path.join(l1.netdir, "hsm_secret"), os.path.join(l2.netdir, "hsm_secret"))
    l2.start(wait=False)
    l2.wait_for_log("waiting as standby")
    time.sleep(1.0)
    assert "Server started" not in l2.logs() and not os.path.exists(l2.rpc_path)
    l1.rpc.datastore(key=["by"], string="l1")
    l1_id = l1.node_id
    l1.stop()  # the owner stops: the standby takes over, with the owner's state
    l2.wait_for_log("Server started", timeout=30)
    assert l2.rpc.getinfo()["id"] == l1_id
    assert l2.rpc.listdatastore(["by"])["datastore"][0]["string"] == "l1"
    # A standby told to stop exits cleanly.
    l3 = node_factory.get_node(wallet=dsn, start=False)
    l3.start(wait=False)
    l3.wait_for_log("waiting as standby")
    assert l3.stop() == 0


@pytest.mark.slow
def test_failover_kill9_with_payments_in_flight(node_factory_chain, chaind, postgres):
    """kill -9 of the active ampd with 50 payments in flight: the standby takes the database within seconds,
    reestablishes the channel, and every payment ends complete or failed on both sides, balances exact."""
    dsn, l1, l2, scid = channel_on_postgres(node_factory_chain, chaind, postgres)
    standby = standby_of(node_factory_chain, l1, dsn)
    before = balances(l1, l2)
    invs = [l2.rpc.invoice(AMOUNT, f"f{i}", "failover") for i in range(50)]

    def send(inv):
        try:
            direct(l1, l2, scid, inv, LightningRpc(l1.rpc_path))
        except (RpcError, OSError, ValueError):
            pass  # the node died under it: the payment may or may not have been recorded

    with concurrent.futures.ThreadPoolExecutor(50) as ex:
        futures = [ex.submit(send, inv) for inv in invs]
        time.sleep(0.15)
        t_kill = time.monotonic()
        l1.kill()
        concurrent.futures.wait(futures)
    standby.wait_for_log("Server started", timeout=60)
    t_started = time.monotonic()
    wait_for(lambda: (lambda chans: chans and chans[0]["peer_connected"] and chans[0]["state"] == "CHANNELD_NORMAL")(
        standby.rpc.listpeerchannels()["channels"]), 60, "channel reestablished by the standby")
    t_reestablished = time.monotonic()
    print(f"failover: kill -9 -> standby serving {t_started - t_kill:.2f}s, "
          f"-> channel reestablished {t_reestablished - t_kill:.2f}s")
    assert t_reestablished - t_kill < 30
    hashes = {inv["payment_hash"]: inv for inv in invs}
    sent = {p["payment_hash"]: p for p in standby.rpc.listsendpays()["payments"] if p["payment_hash"] in hashes}
    for h in sent:
        try:
            standby.rpc.waitsendpay(h, 60)
        except RpcError:
            pass  # failed: checked below
    wait_for(lambda: not standby.rpc.listpeerchannels()["channels"][0]["htlcs"]
             and not l2.rpc.listpeerchannels()["channels"][0]["htlcs"], 60, "no HTLC left on either side")
    final = {p["payment_hash"]: p["status"] for p in standby.rpc.listsendpays()["payments"] if p["payment_hash"] in hashes}
    assert set(final.values()) <= {"complete", "failed"}, final
    paid = {i["payment_hash"] for i in l2.rpc.listinvoices()["invoices"] if i["status"] == "paid"}
    complete = {h for h, s in final.items() if s == "complete"}
    print(f"failover: {len(sent)} payments recorded before the kill, {len(complete)} complete, "
          f"{len(final) - len(complete)} failed")
    assert paid == complete  # both sides agree on every payment
    assert len(sent) > 0
    after = balances(standby, l2)
    assert after == (before[0] - AMOUNT * len(complete), before[1] + AMOUNT * len(complete))
    # The new active node keeps working.
    inv = l2.rpc.invoice(AMOUNT, "after-failover", "x")
    direct(standby, l2, scid, inv)
    assert standby.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"


def test_server_of_a_killed_test_process_is_stopped(tmp_path):
    """A pytest worker killed with SIGKILL runs no teardown: its PostgreSQL server must still be stopped and its
    directory removed (a server left running once outlived the session that started it)."""
    import signal
    import subprocess
    import sys

    from ampere.testing.postgres import unavailable_reason
    from ampere.testing.nodes import spawn_env

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom ampere.testing.postgres import PostgresServer\n"
         "s = PostgresServer().start()\nprint(s.base, s.port, flush=True)\ntime.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True, env=spawn_env())
    try:
        base, port = child.stdout.readline().split()
        pid_file = os.path.join(base, "data", "postmaster.pid")
        postmaster = int(open(pid_file).read().split()[0])
        os.kill(postmaster, 0)  # running
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.time() + 30
    while time.time() < deadline and (os.path.exists(base) or _alive(postmaster)):
        time.sleep(0.2)
    assert not _alive(postmaster), "the killed process's PostgreSQL server is still running"
    assert not os.path.exists(base)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
