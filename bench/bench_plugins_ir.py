"""Instructions per call in ampd (callgrind's Ir), for the calls bench_plugins.py times: a trivial plugin method
(`noop`), helloworld's `hello` (a log line per call), getinfo, and getinfo through a pass-through rpc_command hook.

Wall-clock rates on a shared 2-core machine swing by 2x with the load; the instructions ampd executes per call
do not (a few tenths of a percent between runs), so this compares two versions of the plugin/RPC path back to
back whatever else runs:  PYTHONPATH=<checkout>/src python bench/bench_plugins_ir.py
ampd runs under valgrind with instrumentation off; it is switched on (callgrind_control -i) for N calls only,
after a warm-up.  Kernel time (syscalls) is not counted.  Needs valgrind; about a minute.  Prints figures; not a test.
"""

import os
import shutil

from common import callgrind_nodes, callgrind_switch, callgrind_total, factory
from pyln.client import LightningRpc

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "plugins")
N = int(os.environ.get("N", "1000"))
WARMUP = 50


def measure(node, call, out: str) -> float:
    rpc = LightningRpc(node.rpc_path)
    for _ in range(WARMUP):
        call(rpc)
    pid = node.proc.pid
    callgrind_switch([pid], "-z")
    callgrind_switch([pid], "-i", "on")
    for _ in range(N):
        call(rpc)
    callgrind_switch([pid], "-i", "off")
    return callgrind_total(pid, out) / N


def main() -> None:
    out = callgrind_nodes()
    plugin = lambda name: os.path.abspath(os.path.join(PLUGINS, name))  # noqa: E731
    groups = [([plugin("trivial.py"), plugin("helloworld.py")],
               [("plugin method (trivial.py noop)", lambda r: r.call("noop")),
                ("plugin method (helloworld.py hello, logs each call)", lambda r: r.call("hello", {"name": "bench"})),
                ("getinfo without hooks", lambda r: r.getinfo())]),
              ([plugin("passthrough.py")],
               [("getinfo with a pass-through rpc_command hook", lambda r: r.getinfo())])]
    f = factory()
    try:
        for plugins, cases in groups:
            node = f.get_node(plugin=plugins, start=False)
            node.start(timeout=300)
            for label, call in cases:
                print(f"{label} [ampere]: {measure(node, call, out) / 1000:,.1f} kIr/call", flush=True)
            node.stop()
    finally:
        f.cleanup()
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
