"""Plugin benchmarks (issue 2): a trivial plugin method, and getinfo through an rpc_command hook.

Prints figures; not a test.  Both go through pyln-client's LightningRpc, sequentially, one call
at a time, against a real ampd.  Core Lightning v26.06 on the same kind of machine:
plugin method 3,500-4,000 calls/s; getinfo with an rpc_command hook 2,670-3,010 calls/s.
"""

import os

from common import Timer, factory, rate
from pyln.client import LightningRpc

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "plugins")
N_CALLS = 3000
WARMUP = 200


def measure(call, n: int = N_CALLS) -> float:
    for _ in range(WARMUP):
        call()
    with Timer() as t:
        for _ in range(n):
            call()
    return t.elapsed


def main() -> None:
    f = factory()
    try:
        # Trivial methods of pyln-client plugins: `noop` (returns {}), and helloworld's `hello`
        # (which also sends a log line per call).
        node = f.get_node(plugin=[os.path.abspath(os.path.join(PLUGINS, "trivial.py")),
                                  os.path.abspath(os.path.join(PLUGINS, "helloworld.py"))])
        rpc = LightningRpc(node.rpc_path)
        elapsed = measure(lambda: rpc.call("noop"))
        print(f"plugin method (trivial.py noop, pyln-client LightningRpc, sequential): {rate(N_CALLS, elapsed)}")
        elapsed = measure(lambda: rpc.call("hello", {"name": "bench"}))
        print(f"plugin method (helloworld.py hello, logs each call): {rate(N_CALLS, elapsed)}")
        base = measure(lambda: rpc.getinfo())
        print(f"getinfo without hooks (same node, for reference): {rate(N_CALLS, base)}")
        node.stop()

        # getinfo with a pass-through rpc_command hook (every call visits the plugin).
        node = f.get_node(plugin=os.path.abspath(os.path.join(PLUGINS, "passthrough.py")))
        rpc = LightningRpc(node.rpc_path)
        elapsed = measure(lambda: rpc.getinfo())
        print(f"getinfo with a pass-through rpc_command hook plugin: {rate(N_CALLS, elapsed)}")
    finally:
        f.cleanup()


if __name__ == "__main__":
    main()
