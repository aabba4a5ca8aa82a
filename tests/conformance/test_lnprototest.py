"""BOLT conformance: lnprototest's scripted message exchanges against a real ampd on amp-chaind.

lnprototest (PyPI, pinned below) pins pyln-client < 26 while this venv has 26 (pyln-testing), so it gets its
own virtualenv, .venv-lnprototest at the top of the checkout (`make lnprototest-venv`; created here when
missing, skipped with the reason when it cannot be installed, e.g. offline).  The scripts are ours
(tests/conformance/lnpt/lnpt_*.py), written with lnprototest's events; ampere_runner.py is the Runner.
Each script file runs as one pytest process in that venv; its nodes are started with this interpreter
($AMPERE_PYTHON), so they run this checkout's code.  `make conformance` runs them all (LNPT_ALL=1), verbosely.
"""
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-lnprototest"
VENV_PY = VENV / "bin" / "python"
LNPROTOTEST = "lnprototest==0.0.7"
SCRIPTS = Path(__file__).resolve().parent / "lnpt"

# One pytest run (one ampd per script function) per file.  In make test: 21 scripts, about 3 minutes at -n 2 on
# a loaded 2-core machine (mostly waiting); LNPT_ALL=1 (make conformance) adds the longer set.
SCRIPT_FILES = ["lnpt_bolt1.py", "lnpt_bolt2_open.py", "lnpt_bolt2_opener.py", "lnpt_bolt2_channel.py",
                "lnpt_bolt7.py"]
LONG_SCRIPT_FILES = ["lnpt_bolt2_bad_updates.py"]


_install_failed = ""


def ensure_venv() -> Path:
    """.venv-lnprototest with lnprototest installed (a stamp file says it is complete)."""
    global _install_failed
    stamp = VENV / f".installed-{LNPROTOTEST}"
    if stamp.exists():
        return VENV_PY
    if _install_failed:
        pytest.skip(_install_failed)
    lock_path = ROOT / ".venv-lnprototest.lock"
    lock_path.touch()
    with open(lock_path) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # make test -n 2: one process creates it, the other waits
        if not stamp.exists():
            try:
                subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True,
                               capture_output=True, timeout=300)
                subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                LNPROTOTEST], check=True, capture_output=True, timeout=600)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
                out = getattr(e, "stderr", b"") or b""
                _install_failed = f"cannot install {LNPROTOTEST} into {VENV}: {out.decode(errors='replace')[-400:]}"
                pytest.skip(_install_failed)
            stamp.touch()
    return VENV_PY


@pytest.mark.parametrize("script", SCRIPT_FILES + (LONG_SCRIPT_FILES if os.environ.get("LNPT_ALL") else []))
def test_lnprototest_script(script):
    py = ensure_venv()
    env = dict(os.environ)
    env["AMPERE_PYTHON"] = sys.executable
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(SCRIPTS)])
    # The runner's node and chain directories (short: the RPC socket path must fit in sun_path).
    tmp = tempfile.mkdtemp(prefix="lnpt-", dir="/tmp")
    env["TMPDIR"] = tmp
    try:
        proc = subprocess.run(
            [str(py), "-m", "pytest", "-c", str(SCRIPTS / "pytest.ini"), "-v", str(SCRIPTS / script)],
            cwd=str(SCRIPTS), env=env, capture_output=True, text=True, timeout=900)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, f"{script}: {summary}\n{proc.stdout[-12000:]}\n{proc.stderr[-3000:]}"


if __name__ == "__main__":  # make lnprototest-venv
    try:
        print(ensure_venv())
    except pytest.skip.Exception as e:
        sys.exit(str(e))
