#!/usr/bin/env python3
"""`make fuzz`: every target for FUZZ_SECONDS (default 300) each, one after the other; prints inputs/s and totals.

    python tests/fuzz/long_run.py [SECONDS] [TARGET...]

A crash stops nothing else: it is reported with the path of its input (copy it into tests/fuzz/corpus/<target>/
as finding-<what> once fixed). Exit status 1 if any target crashed.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main() -> int:
    import targets
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("FUZZ_SECONDS", "300"))
    names = sys.argv[2:] or sorted(targets.TARGETS)
    rows, failed = [], False
    for name in names:
        scratch = tempfile.mkdtemp(prefix=f"amp-fuzz-{name}-")
        start = time.monotonic()
        r = subprocess.run([sys.executable, os.path.join(HERE, "run.py"), name, f"-max_total_time={seconds}",
                            "-print_final_stats=1"], capture_output=True, text=True,
                           env=dict(os.environ, AMP_FUZZ_SCRATCH=scratch))
        took = time.monotonic() - start
        runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", r.stderr)
        total = int(runs.group(1)) if runs else 0
        rate = re.search(r"stat::average_exec_per_sec:\s*(\d+)", r.stderr)
        corpus = len(os.listdir(os.path.join(scratch, "corpus")))
        crashes = [p for p in os.listdir(scratch) if p.startswith(("crash-", "timeout-", "oom-"))]
        status = "ok" if r.returncode == 0 and not crashes else f"CRASH {[os.path.join(scratch, c) for c in crashes]}"
        failed |= status != "ok"
        per_s = int(rate.group(1)) if rate else total / max(took, 1e-9)   # libFuzzer's figure: without start-up
        rows.append((name, total, per_s, corpus, status))
        print(f"{name:13} {total:>10,} inputs {per_s:>9,.0f}/s  new corpus {corpus:>5}  {status}", flush=True)
        if status != "ok":
            print(r.stderr[-3000:], file=sys.stderr)
    print(f"total         {sum(r[1] for r in rows):>10,} inputs in {len(rows)} targets x {seconds} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
