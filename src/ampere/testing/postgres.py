"""Real PostgreSQL servers for tests: the machine's `initdb`/`pg_ctl`, in a temporary directory, on a free port.

    # conftest.py
    pytest_plugins = ["ampere.testing.fixtures", "ampere.testing.postgres"]

    def test_on_postgres(postgres):             # a fresh server for this test (skipped without PostgreSQL)
        dsn = postgres.create_db("x")             # postgres://postgres:secret@127.0.0.1:PORT/x

`AMPERE_TEST_DB=postgres` (as Core Lightning's TEST_DB_PROVIDER) makes every node that `NodeFactory` starts
keep its state in its own database on one shared server per test process, so the whole suite runs on
PostgreSQL.  The server runs as the `postgres` user when the tests run as root (initdb refuses root).
Every server started here is stopped at teardown or at exit.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import pytest

from .nodes import free_port

_counter = itertools.count(1)
_template_lock = threading.Lock()
_template: str | None = None


def pg_bindir() -> str | None:
    """The directory of initdb/pg_ctl: PATH first, then Debian's /usr/lib/postgresql/<v>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(found))
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


def unavailable_reason() -> str | None:
    """None if PostgreSQL tests can run, else why not (for pytest.skip)."""
    if pg_bindir() is None:
        return "PostgreSQL (initdb, pg_ctl) is not installed: apt-get install postgresql"
    try:
        import psycopg  # noqa: F401
    except ImportError as e:
        return f"psycopg cannot be imported ({e})"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser: cannot start PostgreSQL as another user"
    return None


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


def _chown(path: str) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", path], check=True)


def _initdb_template() -> str:
    """One initdb per test process; every server starts from a copy (initdb costs ~1 s, a copy ~50 ms)."""
    global _template
    with _template_lock:
        if _template is None:
            base = tempfile.mkdtemp(prefix="ampere-pgtemplate-")
            os.chmod(base, 0o755)
            data = os.path.join(base, "data")
            _chown(base)
            subprocess.run(_as_server_user([os.path.join(pg_bindir(), "initdb"), "-D", data, "-U", "postgres",
                                            "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"]),
                           check=True, capture_output=True)
            _template = data
            atexit.register(_in_this_process(shutil.rmtree), base, True)
        return _template


class PostgresServer:
    """One PostgreSQL server: `start()`, `create_db(name)`, `restart()`, `stop()`."""

    password = "secret"  # accepted by trust auth; there to prove it is never shown

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="ampere-pgtest-")
        os.chmod(self.base, 0o755)
        self.data = os.path.join(self.base, "data")
        self.sockdir = self.base
        self.logfile = os.path.join(self.base, "postgres.log")
        self.port = 0
        self.running = False
        self._watchdog: subprocess.Popen | None = None

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(_as_server_user([os.path.join(pg_bindir(), "pg_ctl"), "-D", self.data, *args]),
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed ({r.returncode}): {r.stdout}{r.stderr}\n"
                               f"{self.log()[-2000:]}")
        return r

    def start(self) -> "PostgresServer":
        if not os.path.exists(self.data):
            shutil.copytree(_initdb_template(), self.data, symlinks=True)
            _chown(self.base)
        self.port = self.port or free_port()
        opts = (f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=on "
                f"-c synchronous_commit=on -c max_connections=200 -c shared_buffers=32MB")
        self._pg_ctl("-l", self.logfile, "-o", opts, "-w", "-t", "60", "start")
        self.running = True
        _running.add(self)
        if self._watchdog is None:
            self._watchdog = self._start_watchdog()
        return self

    def _start_watchdog(self) -> subprocess.Popen:
        """A shell outside this process's session that stops the server and removes its files once this process
        is gone.  atexit and pytest_sessionfinish do that on a normal exit; a SIGKILLed or SIGTERMed pytest
        worker runs neither, and its server would run on with nobody to stop it."""
        stop = shlex.join(_as_server_user([os.path.join(pg_bindir(), "pg_ctl"), "-D", self.data,
                                           "-m", "immediate", "-w", "stop"]))
        leftovers = shlex.join([self.base] + ([os.path.dirname(_template)] if _template else []))
        script = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                  f"{stop} >/dev/null 2>&1; rm -rf {leftovers}")
        return subprocess.Popen(["sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._pg_ctl("-m", mode, "-w", "stop", check=False)
            self.running = False
        _running.discard(self)

    def restart(self) -> None:
        """pg_ctl restart -m fast: every session is cut, as a database restart does."""
        opts = (f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=on "
                f"-c synchronous_commit=on -c max_connections=200 -c shared_buffers=32MB")
        self._pg_ctl("-l", self.logfile, "-o", opts, "-m", "fast", "-w", "-t", "60", "restart")

    def destroy(self) -> None:
        # Immediate: its data goes anyway, no shutdown checkpoint to sync (seconds with many databases).
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None

    # ---- databases ------------------------------------------------------------------------------------
    def admin_dsn(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def dsn(self, dbname: str, password: bool = True) -> str:
        """TCP on 127.0.0.1; with the (ignored, trust) password to check it stays hidden."""
        auth = f"postgres:{self.password}" if password else "postgres"
        return f"postgres://{auth}@127.0.0.1:{self.port}/{dbname}"

    def socket_dsn(self, dbname: str) -> str:
        """The local unix socket (the fastest path, for benchmarks)."""
        return f"postgresql://postgres@/{dbname}?host={self.sockdir}&port={self.port}"

    def create_db(self, name: str | None = None, password: bool = True) -> str:
        name = name or f"amp{next(_counter)}_{os.getpid()}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.dsn(name, password)

    def sql(self, statement: str, dbname: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.admin_dsn(dbname), autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    def alive(self) -> bool:
        """Still there (its directory removed from under it -- a /tmp cleaner -- means it is not)."""
        return self.running and os.path.exists(os.path.join(self.data, "global", "pg_filenode.map"))

    def log(self) -> str:
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


_running: set[PostgresServer] = set()
_pid = os.getpid()


def _in_this_process(fn):
    """An atexit handler that does nothing in a forked child (which must not stop its parent's servers)."""
    def run(*args):
        if os.getpid() == _pid:
            fn(*args)
    return run


@_in_this_process
def _stop_all() -> None:
    for server in list(_running):
        server.destroy()


atexit.register(_stop_all)


def pytest_sessionfinish(session, exitstatus) -> None:
    """Stop this process's servers when its session ends (xdist workers may not run atexit handlers)."""
    global _shared, _template
    _stop_all()
    _shared = None
    if _template is not None:
        shutil.rmtree(os.path.dirname(_template), ignore_errors=True)
        _template = None


# ---- AMPERE_TEST_DB=postgres: every test node on PostgreSQL ---------------------------------------------
_shared: PostgresServer | None = None


def test_db_provider() -> str:
    return os.environ.get("AMPERE_TEST_DB", "sqlite3")


def wallet_for_test_node() -> str | None:
    """The --wallet for a new test node: None (the SQLite default) unless AMPERE_TEST_DB=postgres, then a
    fresh database on this process's shared server."""
    global _shared
    if test_db_provider() != "postgres":
        return None
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"AMPERE_TEST_DB=postgres: {reason}")
    if _shared is None or not _shared.alive():
        if _shared is not None:
            _shared.destroy()
        _shared = PostgresServer().start()
    return _shared.create_db(password=False)


def _server_or_skip():
    """A started PostgreSQL server, destroyed afterwards (skips with the reason when PostgreSQL is unavailable)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres():
    """A fresh PostgreSQL server for one test."""
    yield from _server_or_skip()


@pytest.fixture(scope="session")
def postgres_shared():
    """One PostgreSQL server for the whole test process (tests take a database each: create_db())."""
    yield from _server_or_skip()
