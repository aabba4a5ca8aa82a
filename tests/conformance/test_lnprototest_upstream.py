"""BOLT conformance: lnprototest's OWN protocol scripts (its GitHub repository's tests/) against ampd.

PyPI's lnprototest has the library but not the scripts; they live in github.com/rustyrussell/lnprototest,
tests/.  They are fetched at test time, at the pinned commit below (tag v0.0.7, the release the lnprototest venv
installs), into a cache directory outside the checkout ($XDG_CACHE_HOME/ampere or ~/.cache/ampere), and never
committed.  Offline, the test is skipped with the reason; $LNPROTOTEST_SRC may name a local clone (or a directory
holding tests/) to use instead of GitHub.  Each script file runs as one pytest process in .venv-lnprototest with
lnprototest's own conftest.py, selecting our Runner (tests/conformance/lnpt/ampere_runner.py) with --runner.

The environment matches what the scripts assume, as lnprototest's CLN runner gives it: its bitcoind on regtest has
no fee estimate, so lightningd accepts the scripts' feerate_per_kw 253 (the floor).  amp-chaind answers
estimatesmartfee with its -fallbackfee, so it is started with 1 sat/vB (250 perkw, raised to the 253 floor).

`make conformance-upstream` runs it (not part of `make test`: about 3 minutes at -n 2 on a loaded 2-core machine).  Scripts that predate
the current spec are listed in EXPECTED_FAILURES with the reason; they are run and must still fail that way
(a script that starts passing is reported, so the list stays true).
"""
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_lnprototest import ROOT, SCRIPTS, ensure_venv

if __name__ != "__main__" and not os.environ.get("LNPT_UPSTREAM"):
    pytest.skip("lnprototest's own scripts run with `make conformance-upstream` (LNPT_UPSTREAM=1)",
                allow_module_level=True)

PIN = "9e7601b11df16c5cfeb70a3db5dfb8e8cec06bce"  # rustyrussell/lnprototest tag v0.0.7
TARBALL = f"https://codeload.github.com/rustyrussell/lnprototest/tar.gz/{PIN}"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ampere" / f"lnprototest-{PIN[:12]}"

# Every script file of the repository: BOLT 1, BOLT 2 (open/accept/reestablish/close, and add-htlc), BOLT 7.
UPSTREAM_FILES = [
    "test_bolt1-01-init.py",
    "test_bolt1-02-unknown-messages.py",
    "test_bolt2-01-close_channel.py",
    "test_bolt2-01-open_channel.py",
    "test_bolt2-02-reestablish.py",
    "test_bolt2-10-add-htlc.py",
    "test_bolt2-20-open_channel_accepter.py",
    "test_bolt2-30-channel_type-open-accept-tlvs.py",
    "test_bolt7-01-channel_announcement-success.py",
    "test_bolt7-02-channel_announcement-failure.py",
    "test_bolt7-10-gossip-filter.py",
    "test_bolt7-20-query_channel_range.py",
]

# BOLT #2 (since bolts#1232): open_channel/accept_channel "MUST set `channel_type`"; the receiver, "if the message
# doesn't include a `channel_type`: MUST fail the channel".  These scripts open (or answer an open) without it:
# ampd fails the channel with an error whose text ends " without channel_type" (hex below).
NO_CHANNEL_TYPE = ("opens without channel_type, which BOLT 2 now requires (bolts#1232); ampd fails the channel",
                   "20776974686f7574206368616e6e656c5f74797065")
# "file::function" -> (why the script cannot pass against a node that follows the current spec, a text its failure
# must show: failing for another reason is a failure of this test).
EXPECTED_FAILURES = {
    "test_bolt2-01-open_channel.py::test_open_channel_from_accepter_side": NO_CHANNEL_TYPE,
    "test_bolt2-01-open_channel.py::test_open_channel_opener_side": NO_CHANNEL_TYPE,
    "test_bolt2-01-open_channel.py::test_open_channel_opener_side_wrong_announcement_signatures": NO_CHANNEL_TYPE,
    "test_bolt2-01-close_channel.py::test_close_channel_shutdown_msg_normal_case_receiver_side": NO_CHANNEL_TYPE,
    "test_bolt2-02-reestablish.py::test_reestablish": NO_CHANNEL_TYPE,
    "test_bolt2-10-add-htlc.py::test_htlc_add": NO_CHANNEL_TYPE,
    # It expects the node to dump its gossip to a peer whose init sets bit 3 (initial_routing_sync); BOLT 9 removed
    # that feature (bolts fc687e8, "BOLT 9: Remove initial_routing_sync") and BOLT 7 now sends gossip a peer asks
    # for with gossip_timestamp_filter (which the script does not send).
    "test_bolt7-01-channel_announcement-success.py::test_gossip_forget_channel_after_12_blocks": (
        "relies on initial_routing_sync (bit 3), removed from BOLT 9",
        "Did not receive a message msgtype-channel_announcement"),
}


def fetch_scripts() -> Path:
    """The pinned scripts' tests/ directory, fetched once into CACHE."""
    tests = CACHE / "tests"
    if (tests / "conftest.py").exists():
        return tests
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="lnpt-src-", dir=CACHE.parent))  # same file system: os.replace below
    try:
        local = os.environ.get("LNPROTOTEST_SRC")
        if local and (Path(local) / "tests" / "conftest.py").exists() and not (Path(local) / ".git").exists() \
                and not (Path(local) / "HEAD").exists():
            shutil.copytree(Path(local) / "tests", tmp / "tests")
        else:
            if local:  # a clone (or bare mirror): its tree at the pin
                data = subprocess.run(["git", "--git-dir", str(Path(local) / ".git") if (Path(local) / ".git").exists()
                                       else local, "archive", "--format=tar", PIN, "tests"],
                                      check=True, capture_output=True, timeout=60).stdout
                mode, prefix = "r:", ""
            else:
                try:
                    with urllib.request.urlopen(TARBALL, timeout=30) as r:
                        data = r.read()
                except (urllib.error.URLError, OSError) as e:
                    pytest.skip(f"cannot fetch lnprototest's scripts ({TARBALL}): {e}")
                mode, prefix = "r:gz", f"lnprototest-{PIN}/"
            with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as tar:
                for m in tar.getmembers():
                    name = m.name[len(prefix):] if m.name.startswith(prefix) else None
                    if not name or not name.startswith("tests/") or not m.isfile() or ".." in name.split("/"):
                        continue
                    out = tmp / name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(tar.extractfile(m).read())
        CACHE.mkdir(exist_ok=True)
        if not (tests / "conftest.py").exists():
            shutil.rmtree(tests, ignore_errors=True)
            os.replace(tmp / "tests", tests)  # atomic: a concurrent run sees all of it or none
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tests


def run_upstream(script: str) -> subprocess.CompletedProcess:
    py = ensure_venv()
    tests = fetch_scripts()
    env = dict(os.environ)
    env["AMPERE_PYTHON"] = sys.executable
    env["AMPERE_LNPT_CHAIND_ARGS"] = "-fallbackfee=0.00001"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(SCRIPTS)])
    tmp = tempfile.mkdtemp(prefix="lnptu-", dir="/tmp")  # short: the RPC socket path must fit in sun_path
    env["TMPDIR"] = tmp
    try:
        return subprocess.run(
            [str(py), "-m", "pytest", "-c", str(tests / "pytest.ini"), "--rootdir", str(tests), "-p",
             "no:cacheprovider", "-v", "-rA", "--log-level=DEBUG", "--runner=ampere_runner.Runner",
             str(tests / script)],
            cwd=str(tests), env=env, capture_output=True, text=True, timeout=1200)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def outcomes(stdout: str, script: str) -> dict:
    """{"file::function": "PASSED"|"FAILED"|"SKIPPED"|"ERROR"} from pytest -v -rA output."""
    res = {}
    for line in stdout.splitlines():
        for word in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
            if line.startswith(word + " ") and script in line:
                nodeid = line.split()[1]
                res.setdefault(script + "::" + nodeid.split("::", 1)[-1], word)
    return res


def failure_sections(stdout: str) -> dict:
    """{"function": its failure report} from pytest's FAILURES section (headers "____ function ____")."""
    sections: dict = {}
    name = None
    for line in stdout.splitlines():
        m = re.fullmatch(r"_{3,} (test_\S+?)(\[.*\])? _{3,}", line.strip())
        if m:
            name = m.group(1)
            sections.setdefault(name, "")
        elif line.startswith("=") and "short test summary" in line:
            name = None
        elif name is not None:
            sections[name] += line + "\n"
    return sections


@pytest.mark.parametrize("script", UPSTREAM_FILES)
def test_upstream_script(script):
    proc = run_upstream(script)
    print(proc.stdout[-8000:])
    got = outcomes(proc.stdout, script)
    assert got, f"{script}: no result\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    unexpected = {k: v for k, v in got.items() if (v in ("FAILED", "ERROR")) != (k in EXPECTED_FAILURES)}
    sections = failure_sections(proc.stdout)
    for k, v in got.items():
        why, shows = EXPECTED_FAILURES.get(k, ("", ""))
        if v == "FAILED" and shows and shows not in sections.get(k.split("::")[1], ""):
            unexpected[k] = f"FAILED, but not because it {why}"
    assert not unexpected, (f"{script}: {unexpected} (expected failures: "
                            f"{ {k: v for k, v in EXPECTED_FAILURES.items() if k.startswith(script)} })\n"
                            f"{proc.stdout[-12000:]}\n{proc.stderr[-3000:]}")


if __name__ == "__main__":  # make conformance-upstream: fetch first, to say clearly when offline
    try:
        print(fetch_scripts())
    except pytest.skip.Exception as e:
        sys.exit(f"SKIP: {e}")
