"""PostgreSQL store on a real server: one owner per database (standby), a database restart in the middle of
writes (pause, resume, nothing lost or doubled), fencing of an owner that lost the database."""

import asyncio
import threading
import time

import pytest

from ampere.store.postgres import LostOwnership, PostgresStore

pytestmark = pytest.mark.postgres


def run(coro):
    return asyncio.run(coro)


def test_second_store_waits_as_standby_then_takes_over(postgres_shared):
    dsn = postgres_shared.create_db()
    logs = []

    async def go():
        a = PostgresStore(dsn)
        await a.open()
        await a.write(lambda db: db.execute("INSERT INTO vars (name, val) VALUES ('owner', 'a')"))
        b = PostgresStore(dsn, log=lambda level, msg: logs.append(msg), standby_poll=0.05)
        opening = asyncio.ensure_future(b.open())
        await asyncio.sleep(1.0)
        assert not opening.done()  # a holds the database: b waits
        assert any("waiting as standby" in m and "ampd pid" in m for m in logs)
        with pytest.raises(RuntimeError, match="in use by another ampd"):
            await PostgresStore(dsn, standby=False).open()
        gen_a = a.generation
        t0 = time.monotonic()
        await a.close()
        await asyncio.wait_for(opening, 10)
        took = time.monotonic() - t0
        assert b.generation == gen_a + 1
        val = await b.read(lambda db: db.query("SELECT val FROM vars WHERE name = 'owner'"))
        await b.close()
        return took, val

    took, val = run(go())
    assert val == [("a",)] and took < 2


def test_standby_told_to_stop_gives_up_cleanly(postgres_shared):
    from ampere.store.postgres import StoreClosed

    dsn = postgres_shared.create_db()

    async def go():
        a = PostgresStore(dsn)
        await a.open()
        b = PostgresStore(dsn, standby_poll=0.05)
        opening = asyncio.ensure_future(b.open())
        await asyncio.sleep(0.3)
        b.abort_open()
        with pytest.raises(StoreClosed):
            await asyncio.wait_for(opening, 5)
        await a.close()

    run(go())


def test_database_restart_pauses_writes_and_loses_nothing(postgres):
    """pg_ctl restart while writes stream in: every write is answered once the database is back, each exactly
    once (an INSERT applied twice would fail on its key), and none is answered while the server is down."""
    dsn = postgres.create_db("restart")
    logs = []

    async def go():
        s = PostgresStore(dsn, log=lambda level, msg: logs.append((level, msg)))
        await s.open()
        answered = []
        restarting = threading.Event()
        restarted = threading.Event()

        def do_restart():
            restarting.set()
            postgres.restart()
            restarted.set()

        async def writer(i):
            await s.write(lambda db: db.execute("INSERT INTO vars (name, val) VALUES (?, ?)", (f"w{i}", str(i))))
            answered.append((i, restarting.is_set() and not restarted.is_set()))

        tasks = []
        for i in range(300):
            tasks.append(asyncio.ensure_future(writer(i)))
            if i == 100:
                threading.Thread(target=do_restart).start()
            await asyncio.sleep(0.005)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        rows = await s.read(lambda db: db.query("SELECT COUNT(*) FROM vars WHERE name LIKE 'w%'"))
        reconnects = s.reconnects
        await s.close()
        return answered, rows, reconnects

    answered, rows, reconnects = run(go())
    assert rows == [(300,)]
    assert len(answered) == 300
    assert reconnects >= 1
    assert any("connection lost" in m for _, m in logs) and any("re-established" in m for _, m in logs)


def test_an_owner_that_lost_the_database_stops(postgres_shared):
    """A's session is cut and B takes the database: A must not commit again, and stops (on_fatal)."""
    dsn = postgres_shared.create_db()
    fatal = []

    async def go():
        a = PostgresStore(dsn, on_fatal=fatal.append)
        await a.open()
        await a.write(lambda db: db.execute("INSERT INTO vars (name, val) VALUES ('x', 'a')"))
        dbname = dsn.rsplit("/", 1)[1]
        postgres_shared.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{dbname}'")
        b = PostgresStore(dsn)
        await b.open()
        await b.write(lambda db: db.execute("UPDATE vars SET val = 'b' WHERE name = 'x'"))
        # A's next write: its connection is gone, it reconnects, finds the lock taken -> fatal, nothing written.
        write = asyncio.ensure_future(a.write(lambda db: db.execute("UPDATE vars SET val = 'a2' WHERE name = 'x'")))
        for _ in range(100):
            if fatal:
                break
            await asyncio.sleep(0.05)
        val = await b.read(lambda db: db.query("SELECT val FROM vars WHERE name = 'x'"))
        await b.close()
        write.cancel()
        return val

    val = run(go())
    assert fatal and "another ampd" in fatal[0]
    assert val == [("b",)]


def test_every_commit_checks_the_owner_generation(postgres_shared):
    """The fence is in each transaction: once the generation is not ours, nothing more commits."""
    dsn = postgres_shared.create_db()
    dbname = dsn.rsplit("/", 1)[1]
    fatal = []

    async def go():
        a = PostgresStore(dsn, on_fatal=fatal.append)
        await a.open()
        await a.write(lambda db: db.execute("INSERT INTO vars (name, val) VALUES ('x', '1')"))
        postgres_shared.sql("UPDATE ampere_owner SET generation = generation + 1", dbname)
        with pytest.raises(LostOwnership):
            await asyncio.wait_for(a.write(lambda db: db.execute("UPDATE vars SET val = '2' WHERE name = 'x'")), 5)

    try:
        run(go())
    except Exception:
        pass
    assert fatal and "took over" in fatal[0]
    assert postgres_shared.sql("SELECT val FROM vars WHERE name = 'x'", dbname) == [("1",)]


def test_multi_host_dsn_finds_the_server_that_takes_writes(postgres_shared):
    """libpq's multi-host form: the first host is down, the second one is used (target_session_attrs)."""
    from ampere.testing.nodes import free_port

    name = postgres_shared.create_db().rsplit("/", 1)[1]
    dsn = (f"postgres://postgres@127.0.0.1:{free_port()},127.0.0.1:{postgres_shared.port}/{name}"
           "?target_session_attrs=read-write&connect_timeout=3")

    async def go():
        s = PostgresStore(dsn)
        await s.open()
        await s.write(lambda db: db.execute("INSERT INTO vars (name, val) VALUES ('multi', 'yes')"))
        await s.close()

    run(go())
    assert postgres_shared.sql("SELECT val FROM vars WHERE name = 'multi'", name) == [("yes",)]


def test_standby_waits_through_a_database_restart(postgres):
    """The standby keeps waiting when the database restarts under it, and takes over once the owner is gone."""
    dsn = postgres.create_db("standby")
    logs = []

    async def go():
        a = PostgresStore(dsn)
        await a.open()
        await a.write(lambda db: db.execute("INSERT INTO vars (name, val) VALUES ('x', 'a')"))
        b = PostgresStore(dsn, log=lambda level, msg: logs.append(msg), standby_poll=0.05)
        opening = asyncio.ensure_future(b.open())
        await asyncio.sleep(0.5)
        await asyncio.get_running_loop().run_in_executor(None, postgres.restart)
        # A's session died with the restart: B may now take the database; A then must not commit.
        await asyncio.wait_for(opening, 30)
        val = await b.read(lambda db: db.query("SELECT val FROM vars WHERE name = 'x'"))
        await b.close()
        await a.close()
        return val

    assert run(go()) == [("a",)]
    assert any("waiting as standby" in m for m in logs)
    assert any("lost while waiting as standby" in m for m in logs)
