"""Command-line start-up (issue 18 item 7): `amp-cli getinfo` against a real ampd and
`amp-chain-cli getblockcount` against a real amp-chaind, each a fresh process from spawn to exit,
as scripts and Core Lightning's bcli plugin (once per chain query) run them.  Goal: < 30 ms.

For reference, in the same run: the interpreter alone (`python -c pass`, the floor for any Python
tool) and Core Lightning's `lightning-cli getinfo` (C) against the same ampd, when /work/cln (or
$LIGHTNING_CLI) has it.  Prints median and 90th percentile wall time; not a test.

    .venv/bin/python bench/bench_cli.py [runs]
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

from common import network

BIN = os.path.dirname(sys.executable)
SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src"))


def timed(cmd: list[str], runs: int, env: dict[str, str]) -> str:
    """Wall time from spawn to exit, and the process's own CPU time (user + system: what a loaded
    machine changes least)."""
    subprocess.run(cmd, env=env, capture_output=True, check=True)  # warm the page cache
    times = []
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / runs
    times.sort()
    return (f"median {statistics.median(times) * 1000:.1f} ms, p90 {times[int(len(times) * 0.9) - 1] * 1000:.1f} ms,"
            f" CPU {cpu * 1000:.1f} ms per run ({runs} runs)")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    env = dict(os.environ, PYTHONPATH=SRC)  # the console scripts then run these sources
    print(f"python -c pass (the interpreter's own start-up): {timed([sys.executable, '-c', 'pass'], runs, env)}")
    # The node does not follow the chain (as before): only amp-chain-cli talks to it.
    with network(nodes_on_chain=False) as (chain, f):
        cli = [os.path.join(BIN, "amp-chain-cli"), *chain.cli_args()]
        print(f"amp-chain-cli getblockcount: {timed(cli + ['getblockcount'], runs, env)}")
        node = f.get_node()
        amp = [os.path.join(BIN, "amp-cli"), f"--lightning-dir={node.dir}", f"--network={node.network}"]
        print(f"amp-cli getinfo: {timed(amp + ['getinfo'], runs, env)}")
        lcli = os.environ.get("LIGHTNING_CLI", "/work/cln/bin/lightning-cli")
        if shutil.which(lcli):
            ln = [lcli, f"--lightning-dir={node.dir}", f"--network={node.network}", "getinfo"]
            print(f"lightning-cli (CLN, C) getinfo, same ampd: {timed(ln, runs, env)}")


if __name__ == "__main__":
    main()
