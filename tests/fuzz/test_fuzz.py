"""Fuzzing inside `make test`: every committed corpus entry (the issue-16 findings among them) replays through its
target in-process, and each target gets a short seeded atheris run (a few thousand inputs, seconds).
`make fuzz` runs them long (tests/fuzz/run.py)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import targets  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")
ENTRIES = sorted((t, f) for t in targets.TARGETS for f in os.listdir(os.path.join(CORPUS, t)))


@pytest.mark.parametrize("target,entry", ENTRIES, ids=[f"{t}/{f}" for t, f in ENTRIES])
def test_corpus_entry_replays_cleanly(target, entry):
    with open(os.path.join(CORPUS, target, entry), "rb") as f:
        targets.TARGETS[target](f.read())


def test_every_target_has_a_corpus_and_the_findings_are_in_it():
    for t in targets.TARGETS:
        assert os.listdir(os.path.join(CORPUS, t)), t
    findings = {f"{t}/{f}" for t, f in ENTRIES if f.startswith("finding-")}
    assert {"open_channel/finding-funding-2^63", "bolt11/finding-amount-4320-digits", "bolt11/finding-long-invoice",
            "rpc_framer/finding-split-utf8", "rpc_framer/finding-deep-nesting", "rpc_framer/finding-huge-integer",
            "rpc_params/finding-lone-surrogates", "rpc_params/finding-long-host"} <= findings


def test_short_seeded_fuzz_run_of_every_target(tmp_path):
    """One process (the instrumented import costs seconds): the first byte of an input picks the target."""
    pytest.importorskip("atheris")
    env = dict(os.environ, AMP_FUZZ_SCRATCH=str(tmp_path))
    r = subprocess.run([sys.executable, os.path.join(HERE, "run.py"), "all", "-runs=2000", "-seed=1",
                        "-max_len=4096", "-max_total_time=60"],
                       capture_output=True, text=True, env=env, timeout=300)
    crashes = [p for p in os.listdir(tmp_path) if p.startswith(("crash-", "timeout-", "oom-", "slow-unit-"))]
    assert r.returncode == 0 and not crashes, r.stderr[-4000:]
    # libFuzzer stops at the first check after the count is reached: "Done 2000 runs", or a few more (2005 seen
    # once the instrumented code had changed).
    done = re.search(r"Done (\d+) runs", r.stderr)
    assert done and 2000 <= int(done.group(1)) < 2100, r.stderr[-2000:]
