"""Plugin benchmarks (issues 2 and 18): a trivial plugin method, and getinfo through an
rpc_command hook, on ampd and, in the same run, on Core Lightning's lightningd (when there is one:
bench/cln.py), the two measured alternately so that both see the same machine load.

Prints figures; not a test.  All calls go through pyln-client's LightningRpc, sequentially, one
call at a time, with the same plugins (tests/plugins/: pyln-client, unmodified).
"""

import os
import sys

import cln
from common import Timer, network, rate
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


ROUNDS = 3  # alternate Ampere and CLN this many times; the best round of each is reported


def plugin_paths(*names: str) -> list[str]:
    return [os.path.abspath(os.path.join(PLUGINS, n)) for n in names]


def run_cases(rpcs: dict[str, LightningRpc], cases: list[tuple[str, str, object]]) -> None:
    best: dict[tuple[str, str], float] = {}
    for _ in range(ROUNDS):
        for label, who, call in cases:
            elapsed = measure(lambda: call(rpcs[who]))
            key = (label, who)
            best[key] = min(best.get(key, elapsed), elapsed)
    for label, who, _ in cases:
        print(f"{label} [{who}]: {rate(N_CALLS, best[(label, who)])}")


def main() -> None:
    # An amp-chaind only for lightningd's bcli; ampd runs without a chain, as always in this bench.
    with network(chain=cln.available(), nodes_on_chain=False) as (chain, f):
        # Trivial methods of pyln-client plugins: `noop` (returns {}), and helloworld's `hello`
        # (which also sends a log line per call).
        plugins = plugin_paths("trivial.py", "helloworld.py")
        node = f.get_node(plugin=plugins)
        rpcs = {"ampere": LightningRpc(node.rpc_path)}
        cases = [("plugin method (trivial.py noop)", "ampere", lambda r: r.call("noop")),
                 ("plugin method (helloworld.py hello, logs each call)", "ampere",
                  lambda r: r.call("hello", {"name": "bench"})),
                 ("getinfo without hooks", "ampere", lambda r: r.getinfo())]
        if chain is not None:
            with cln.ClnNode(chain, plugins) as c:
                rpcs["cln"] = LightningRpc(c.rpc_path)
                cases = [x for case in cases for x in (case, (case[0], "cln", case[2]))]
                run_cases(rpcs, cases)
        else:
            print("(no lightningd: Ampere only)", file=sys.stderr)
            run_cases(rpcs, cases)
        node.stop()

        # getinfo with a pass-through rpc_command hook (every call visits the plugin).
        plugins = plugin_paths("passthrough.py")
        node = f.get_node(plugin=plugins)
        rpcs = {"ampere": LightningRpc(node.rpc_path)}
        cases = [("getinfo with a pass-through rpc_command hook", "ampere", lambda r: r.getinfo())]
        if chain is not None:
            with cln.ClnNode(chain, plugins) as c:
                rpcs["cln"] = LightningRpc(c.rpc_path)
                run_cases(rpcs, cases + [(cases[0][0], "cln", cases[0][2])])
        else:
            run_cases(rpcs, cases)


if __name__ == "__main__":
    main()
