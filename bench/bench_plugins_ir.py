"""Instructions per call in ampd (callgrind's Ir), for the calls bench_plugins.py times: a trivial plugin method
(`noop`), helloworld's `hello` (a log line per call), getinfo, and getinfo through a pass-through rpc_command hook.

Wall-clock rates on a shared 2-core machine swing by 2x with the load; the instructions ampd executes per call
do not (a few tenths of a percent between runs), so this compares two versions of the plugin/RPC path back to
back whatever else runs:  PYTHONPATH=<checkout>/src python bench/bench_plugins_ir.py
ampd runs under valgrind with instrumentation off; it is switched on (callgrind_control -i) for N calls only,
after a warm-up.  Kernel time (syscalls) is not counted.  Needs valgrind; about a minute.  Prints figures; not a test.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import factory
from pyln.client import LightningRpc

import ampere.testing.nodes as nodes

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "plugins")
N = int(os.environ.get("N", "1000"))
WARMUP = 50


def _ir(pid: int, out: str) -> int:
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
    time.sleep(0.5)
    dumps = sorted(glob.glob(f"{out}/cg.{pid}.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    with open(dumps[-1]) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[-1]}")


def measure(node, call, out: str) -> float:
    rpc = LightningRpc(node.rpc_path)
    for _ in range(WARMUP):
        call(rpc)
    pid = node.proc.pid
    subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)
    subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=True)
    for _ in range(N):
        call(rpc)
    subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True, check=True)
    return _ir(pid, out) / N


def main() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed")
    out = tempfile.mkdtemp(prefix="amp-bench-ir-")
    nodes.AMPD = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}/cg.%p",
                  sys.executable, "-m", "ampere.cli.ampd"]
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
