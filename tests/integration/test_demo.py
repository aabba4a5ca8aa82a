"""`make demo` stays true: the demo network starts, pays an invoice, and `make stop` ends it."""

import os
import subprocess
import sys
import tempfile

from ampere.testing.nodes import spawn_env


def test_demo_start_pays_and_stop_ends_everything():
    base = tempfile.mkdtemp(prefix="amp-demo-")
    run = lambda action: subprocess.run([sys.executable, "-m", "ampere.demo", action, "--dir", base],  # noqa: E731
                                        capture_output=True, text=True, env=spawn_env(), timeout=300)
    try:
        started = run("start")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "status complete" in started.stdout
        assert ": paid, 50000000 msat" in started.stdout
        assert '"Hi demo"' in started.stdout          # the example plugin answered
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0
    leftover = subprocess.run(["pgrep", "-f", base], capture_output=True, text=True).stdout.split()
    assert [p for p in leftover if int(p) != os.getpid()] == []
