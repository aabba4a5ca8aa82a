"""sqlite3:///main:/backup: every answered write is in both files; a missing or diverged backup is refused."""

import asyncio
import shutil
import sqlite3

import pytest

from ampere.store.sqlite import BackupError, SqliteStore


def run(coro):
    return asyncio.run(coro)


def rows(path, sql="SELECT name, val FROM vars WHERE name LIKE 'k%' ORDER BY name"):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def write_some(main, backup, names, fail=None):
    async def go():
        s = SqliteStore(main, backup)
        await s.open()

        def put(n):
            def fn(db):
                db.execute("INSERT INTO vars (name, val) VALUES (?, ?)", (n, n.upper()))
                if n == fail:
                    raise ValueError("refused")
            return fn

        results = await asyncio.gather(*(s.write(put(n)) for n in names), return_exceptions=True)
        await s.close()
        return results

    return run(go())


def test_every_write_that_reached_main_reached_the_backup(tmp_path):
    main, backup = str(tmp_path / "main.sqlite3"), str(tmp_path / "backup.sqlite3")
    results = write_some(main, backup, [f"k{i:02}" for i in range(40)], fail="k13")
    assert isinstance(results[13], ValueError)
    assert rows(main) == rows(backup) and len(rows(main)) == 39
    # Identical files, table by table (not only the rows we looked at).
    for table in ("vars", "datastore", "invoices", "channels"):
        assert rows(main, f"SELECT * FROM {table}") == rows(backup, f"SELECT * FROM {table}")
    write_some(main, backup, ["k99"])  # reopening the pair is accepted
    assert rows(main) == rows(backup) and len(rows(main)) == 40


def test_missing_backup_is_refused(tmp_path):
    main, backup = str(tmp_path / "main.sqlite3"), str(tmp_path / "backup.sqlite3")
    write_some(main, backup, ["k1"])
    shutil.move(backup, str(tmp_path / "elsewhere"))
    with pytest.raises(BackupError, match="missing"):
        write_some(main, backup, ["k2"])
    assert rows(main) == [("k1", "K1")]


def test_diverged_backup_is_refused(tmp_path):
    main, backup = str(tmp_path / "main.sqlite3"), str(tmp_path / "backup.sqlite3")
    write_some(main, backup, ["k1"])
    old = str(tmp_path / "old.sqlite3")
    shutil.copy(backup, old)
    write_some(main, backup, ["k2"])
    write_some(main, backup, ["k3"])
    shutil.copy(old, backup)  # a backup two commits behind
    with pytest.raises(BackupError, match="diverged"):
        write_some(main, backup, ["k4"])
    # A backup of another database.
    other_main, other_backup = str(tmp_path / "om.sqlite3"), str(tmp_path / "ob.sqlite3")
    write_some(other_main, other_backup, ["k1"])
    shutil.copy(other_backup, backup)
    with pytest.raises(BackupError, match="does not belong"):
        write_some(main, backup, ["k4"])
    assert rows(main) == [("k1", "K1"), ("k2", "K2"), ("k3", "K3")]


def test_backup_one_commit_ahead_after_a_crash_is_rewritten_from_main(tmp_path):
    """The backup commits first: a crash between the two commits leaves it one transaction ahead, a
    transaction nobody was answered about.  Main is kept; the backup is brought back to it."""
    main, backup = str(tmp_path / "main.sqlite3"), str(tmp_path / "backup.sqlite3")
    write_some(main, backup, ["k1"])
    conn = sqlite3.connect(backup)
    conn.execute("INSERT INTO vars (name, val) VALUES ('k2', 'K2')")
    conn.execute("UPDATE vars SET val = CAST(val AS INTEGER) + 1 WHERE name = 'db_commits'")
    conn.commit()
    conn.close()
    write_some(main, backup, ["k3"])
    assert rows(main) == rows(backup) == [("k1", "K1"), ("k3", "K3")]


def test_counters_reach_the_backup(tmp_path):
    """next_counter writes through `execute` (one INSERT ... RETURNING): the backup replays it and holds the same
    value as main."""
    from ampere.store.counters import next_counter

    main, backup = str(tmp_path / "main.sqlite3"), str(tmp_path / "backup.sqlite3")

    async def go():
        s = SqliteStore(main, backup)
        await s.open()
        got = [await s.write(lambda db: next_counter(db, "kcount")) for _ in range(3)]
        await s.close()
        return got

    assert run(go()) == [1, 2, 3]
    assert rows(main) == rows(backup) == [("kcount", "3")]
