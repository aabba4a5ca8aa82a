"""Instructions per commitment round in the channel core (callgrind's Ir): bench_channel_steps.py run under
valgrind twice, with N and 3N rounds, the difference divided by 2N (start-up and opening cancel). Repeatable
whatever the machine's load, unlike CPU time: compare two source trees back to back with --src.

    python bench/bench_channel_steps_ir.py [--k 1] [--rounds 20] [--src DIR]...   (DIR: a tree's src/)
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def instructions(src: str, k: int, rounds: int) -> int:
    env = dict(os.environ, PYTHONPATH=src)
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                          os.path.join(HERE, "bench_channel_steps.py"), "--rounds", str(rounds), "--k", str(k)],
                         env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", out.stderr)
    assert found, out.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=1, help="HTLCs per round")
    ap.add_argument("--rounds", type=int, default=20, help="N (the runs have N and 3N rounds)")
    ap.add_argument("--src", action="append", help="source tree(s) to measure (default: this tree's src/)")
    args = ap.parse_args()
    # bench_channel_steps runs max(10, rounds // k) rounds for k > 1: ask for what gives N and 3N.
    n = args.rounds
    asked = (n, 3 * n) if args.k == 1 else (n * args.k, 3 * n * args.k)
    for src in args.src or [os.path.join(HERE, "..", "src")]:
        low, high = (instructions(src, args.k, r) for r in asked)
        print(f"{src}: K={args.k}: {(high - low) / (2 * n) / 1e6:.2f} M instructions per round")


if __name__ == "__main__":
    main()
