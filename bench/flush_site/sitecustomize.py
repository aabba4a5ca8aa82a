"""Imported by every Python process started with this directory on PYTHONPATH (bench/profile_channels.py --flushes):
an `ampd` process times each flush of its store on the database thread (one transaction for the writes queued
meanwhile: store.Store._flush) -- wall time, the thread's CPU time, and the wall time of the COMMIT alone (the
fsync) -- and on SIGRTMIN+2 writes its totals so far to $AMP_FLUSHSTAT_DIR/flush-PID-N.json (N counting from 0).
The bench asks before and after the measured run.  What a flush's wall time holds beyond its CPU and its COMMIT is
waiting: for a CPU, or for the interpreter's lock, which the sqlite3 module lets go around every statement.  SQLite
stores only (the PostgreSQL store's COMMIT is not timed).  Not for production."""
import os
import sys

_dir = os.environ.get("AMP_FLUSHSTAT_DIR")
if _dir and any("ampere.cli.ampd" in a or a.endswith("/ampd") for a in sys.argv + sys.orig_argv):
    import json
    import signal
    import time

    from ampere.store import sqlite as _sqlite
    from ampere.store import store as _store

    # flushes, writes, wall seconds, thread CPU seconds, COMMIT wall seconds
    _totals = {"flushes": 0, "writes": 0, "wall": 0.0, "cpu": 0.0, "commit": 0.0}
    _dumps = [0]
    _flush = _store.Store._flush
    _commit = _sqlite.SqliteStore._commit

    def _timed_flush(self) -> None:
        with self._lock:
            writes = len(self._queue)  # (a write queued between this and _flush's swap joins the count of the next)
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        _flush(self)
        if writes:
            _totals["flushes"] += 1
            _totals["writes"] += writes
            _totals["wall"] += time.perf_counter() - wall0
            _totals["cpu"] += time.thread_time() - cpu0

    def _timed_commit(self) -> None:
        t0 = time.perf_counter()
        try:
            _commit(self)
        finally:
            _totals["commit"] += time.perf_counter() - t0

    def _dump(*_: object) -> None:
        path = os.path.join(_dir, f"flush-{os.getpid()}-{_dumps[0]}.json")
        _dumps[0] += 1
        with open(path, "w") as f:
            json.dump(_totals, f)

    _store.Store._flush = _timed_flush
    _sqlite.SqliteStore._commit = _timed_commit
    signal.signal(signal.SIGRTMIN + 2, _dump)
