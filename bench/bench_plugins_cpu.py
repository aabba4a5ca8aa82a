"""CPU time per call, by process, for the calls bench_plugins.py times: the node (every thread), its plugins (every
child process, CLN's built-in ones included) and the client (this process), with their voluntary context
switches (sleeps: wake-ups) per call; Ampere's ampd and, when there is one, CLN's lightningd (bench/cln.py).

bench_plugins.py's wall rate is client + node + plugin in sequence; this says which of the three the time went
to.  From /proc/<pid>/task/*/schedstat (nanoseconds on a CPU: user and kernel time, not the 10 ms ticks of
/proc/<pid>/stat).  On a loaded machine the CPU time per call also grows (caches, frequency): compare runs made
back to back.  Cases as arguments (default: all):  python bench/bench_plugins_cpu.py noop hello getinfo hook
Environment: N (calls per case, 3000), NOCLN=1 (Ampere only), POLL_US (ampd's plugin-answer-poll-us).
Prints figures; not a test.
"""

import os
import sys
import time

import cln
from common import PLUGIN_BENCH_OPTIONS, network
from pyln.client import LightningRpc

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "plugins")
N = int(os.environ.get("N", "3000"))
WARMUP = 300


def plugin(name: str) -> str:
    return os.path.abspath(os.path.join(PLUGINS, name))


CASES = {"noop": ("trivial.py", lambda r: r.call("noop")),
         "hello": ("helloworld.py", lambda r: r.call("hello", {"name": "bench"})),
         "getinfo": ("trivial.py", lambda r: r.getinfo()),
         "hook": ("passthrough.py", lambda r: r.getinfo())}


def cpu(pid: int) -> tuple[float, int]:
    """(seconds on a CPU, voluntary context switches) of every thread of `pid`."""
    seconds, switches = 0.0, 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                seconds += int(f.read().split()[0]) / 1e9
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        switches += int(line.split()[1])
        except OSError:
            pass  # (a thread that just ended)
    return seconds, switches


def children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except OSError:
                pass
    return kids


def run(label: str, call, rpc: LightningRpc, pid: int) -> None:
    for _ in range(WARMUP):
        call(rpc)
    procs = {"node": [pid], "plugins": children(pid), "client": [os.getpid()]}
    before = {k: [cpu(p) for p in v] for k, v in procs.items()}
    t0 = time.perf_counter()
    for _ in range(N):
        call(rpc)
    elapsed = time.perf_counter() - t0
    after = {k: [cpu(p) for p in v] for k, v in procs.items()}
    parts = []
    for k in procs:
        us = sum(b[0] - a[0] for a, b in zip(before[k], after[k])) / N * 1e6
        sw = sum(b[1] - a[1] for a, b in zip(before[k], after[k])) / N
        parts.append(f"{k} {us:.1f} us ({sw:.1f} sleeps)")
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"{label}: {N / elapsed:,.0f}/s  " + "  ".join(parts) + f"  load {load}", flush=True)


def main() -> None:
    names = sys.argv[1:] or list(CASES)
    with_cln = cln.available() and not os.environ.get("NOCLN")
    with network(chain=with_cln, nodes_on_chain=False) as (chain, f):
        for name in names:
            script, call = CASES[name]
            node = f.get_node(plugin=[plugin(script)], options=PLUGIN_BENCH_OPTIONS)
            run(f"{name} [ampere]", call, LightningRpc(node.rpc_path), node.proc.pid)
            node.stop()
            if with_cln:
                with cln.ClnNode(chain, [plugin(script)]) as c:
                    run(f"{name} [cln]", call, LightningRpc(c.rpc_path), c.proc.pid)


if __name__ == "__main__":
    main()
