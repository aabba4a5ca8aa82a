#!/usr/bin/env python3
"""Run one fuzz target under atheris (libFuzzer), seeded from tests/fuzz/corpus/<target>/.

    python tests/fuzz/run.py TARGET [libFuzzer flags...]      e.g. -runs=5000 -seed=1, -max_total_time=300

New interesting inputs go to a scratch directory (never into the committed corpus); a crash leaves its input in
the scratch directory as crash-* and the process exits non-zero. `make fuzz` runs every target for a while.
"""
from __future__ import annotations

import os
import sys
import tempfile

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

with atheris.instrument_imports(include=["ampere"]):
    import targets  # noqa: E402


NAMES = sorted(targets.TARGETS)


def every_target(data: bytes) -> None:
    """"all": the first byte picks the target (one process, one instrumented import: the short run in make test)."""
    if data:
        targets.TARGETS[NAMES[data[0] % len(NAMES)]](data[1:])


def _merged_seeds(scratch: str) -> str:
    out = os.path.join(scratch, "seeds")
    os.makedirs(out, exist_ok=True)
    for i, name in enumerate(NAMES):
        d = os.path.join(HERE, "corpus", name)
        for entry in os.listdir(d):
            with open(os.path.join(d, entry), "rb") as f, open(os.path.join(out, f"{name}-{entry}"), "wb") as g:
                g.write(bytes([i]) + f.read())
    return out


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in (*targets.TARGETS, "all"):
        sys.exit(f"usage: run.py TARGET|all [libFuzzer flags]; targets: {' '.join(NAMES)}")
    name, flags = sys.argv[1], sys.argv[2:]
    scratch = os.environ.get("AMP_FUZZ_SCRATCH") or tempfile.mkdtemp(prefix=f"amp-fuzz-{name}-")
    seeds = _merged_seeds(scratch) if name == "all" else os.path.join(HERE, "corpus", name)
    work = os.path.join(scratch, "corpus")
    os.makedirs(work, exist_ok=True)
    args = [sys.argv[0], f"-artifact_prefix={scratch}/", "-max_len=16384", *flags, work, seeds]
    target = every_target if name == "all" else targets.TARGETS[name]
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
