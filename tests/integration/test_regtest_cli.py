"""amp-regtest: start 2 / env / fund / stop / destroy, as a user would run it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from ampere.testing.nodes import spawn_env

CMD = [sys.executable, "-m", "ampere.cli.regtest"]


def run(base, *args, timeout=120):
    return subprocess.run(CMD + ["--dir", base, *args], capture_output=True, text=True, timeout=timeout,
                          env=spawn_env())


def test_amp_regtest_lifecycle():
    base = tempfile.mkdtemp(prefix="ampr-")  # short: unix socket paths are limited
    try:
        r = run(base, "start", "2")
        assert r.returncode == 0, r.stderr
        assert "l1: 0" in r.stdout and "l2: 0" in r.stdout and "amp-chaind" in r.stdout
        assert os.path.isdir(os.path.join(base, "l1-regtest")) and os.path.isdir(os.path.join(base, "l2-regtest"))
        r = run(base, "start", "1")
        assert r.returncode == 1 and "already running" in r.stderr
        env = run(base, "env")
        assert env.returncode == 0
        assert f"alias l1-cli='amp-cli --lightning-dir={base}/l1-regtest" in env.stdout
        assert "alias l2-cli=" in env.stdout and "alias bt-cli='amp-chain-cli -regtest -datadir=" in env.stdout
        r = run(base, "fund")
        assert r.returncode == 0, r.stderr
        # Each node's wallet holds 1 BTC, confirmed (seen through amp-cli, as the aliases would).
        for i in (1, 2):
            out = subprocess.run([sys.executable, "-m", "ampere.cli.amp_cli", f"--lightning-dir={base}/l{i}-regtest",
                                  "--network=regtest", "listfunds"], capture_output=True, text=True, env=spawn_env())
            funds = json.loads(out.stdout)["outputs"]
            assert [(o["amount_msat"], o["status"]) for o in funds] == [(100_000_000_000, "confirmed")]
        with open(os.path.join(base, "amp-regtest.json")) as f:
            pids = [n["pid"] for n in json.load(f)["nodes"]]
        r = run(base, "stop")
        assert r.returncode == 0, r.stderr
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    finally:
        r = run(base, "destroy")
        os.rmdir(base) if os.path.isdir(base) and not os.listdir(base) else None
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(os.path.join(base, "l1-regtest"))
    assert not os.path.exists(os.path.join(base, "amp-chaind-regtest"))
