"""`make demo` stays true: the demo network starts, pays an invoice, and `make stop` ends it; and a newcomer's
`make demo`, `make stop`, `make demo` again works on the directory the first run left (issue 16 item 8)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from ampere.testing.nodes import spawn_env


def _run(base, *args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=spawn_env(),
                          timeout=300)


def test_demo_start_pays_and_stop_ends_everything_twice_in_a_row():
    base = tempfile.mkdtemp(prefix="amp-demo-")
    run = lambda action: _run(base, "ampere.demo", action, "--dir", base)  # noqa: E731
    try:
        for attempt in (1, 2):
            started = run("start")
            out = started.stdout + started.stderr
            assert started.returncode == 0, f"run {attempt}: {out}"
            assert "Traceback" not in out, f"run {attempt}: {out}"
            assert "status complete" in started.stdout
            assert ": paid, 50000000 msat" in started.stdout
            assert '"Hi demo"' in started.stdout          # the example plugin answered
            stopped = run("stop")
            assert stopped.returncode == 0 and "Traceback" not in stopped.stdout + stopped.stderr
    finally:
        run("stop")
        shutil.rmtree(base, ignore_errors=True)
    leftover = subprocess.run(["pgrep", "-f", base], capture_output=True, text=True).stdout.split()
    assert [p for p in leftover if int(p) != os.getpid()] == []


def test_regtest_commands_from_odd_states_of_the_directory_never_show_a_traceback():
    base = tempfile.mkdtemp(prefix="amp-rt-")
    rt = lambda *a: _run(base, "ampere.cli.regtest", "--dir", base, *a)  # noqa: E731
    # Nothing started: every command says so.
    for cmd in (["env"], ["fund"], ["fund_nodes"], ["connect", "1", "2"], ["stop"], ["destroy"]):
        r = rt(*cmd)
        assert r.returncode == 1 and "Traceback" not in r.stderr and "no network started" in r.stderr, (cmd, r)
    # A state file that is not JSON, or not ours: a clear error, and start begins afresh (and says so).
    with open(os.path.join(base, "amp-regtest.json"), "w") as f:
        f.write("{not json")
    r = rt("env")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "amp-regtest.json" in r.stderr, r
    with open(os.path.join(base, "amp-regtest.json"), "w") as f:
        json.dump({"nodes": [{"dir": 3}]}, f)
    r = rt("stop")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "amp-regtest.json" in r.stderr, r
    r = rt("connect", "x", "y")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r
    shutil.rmtree(base, ignore_errors=True)
