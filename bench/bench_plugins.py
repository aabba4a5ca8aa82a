"""Plugin benchmarks (issues 2 and 18): a trivial plugin method, and getinfo through an
rpc_command hook, on ampd and, in the same run, on Core Lightning's lightningd (when there is one:
bench/cln.py), the two measured alternately so that both see the same machine load.

Prints figures; not a test.  All calls go through pyln-client's LightningRpc, sequentially, one
call at a time, with the same plugins (tests/plugins/: pyln-client, unmodified), in alternated batches
(run_cases).  CLIENTS=k: each batch is k client processes calling at once (BATCH calls each), the rate theirs
together: many clients of one node, where the pyln-client plugin, one process answering one request at a time,
sets the pace on both nodes.  POLL_US=n: ampd's plugin-answer-poll-us (plugins/answer_poll.py; 0: never poll).
"""

import multiprocessing
import os
import statistics
import sys

import cln
from common import PLUGIN_BENCH_OPTIONS, Timer, network, rate
from pyln.client import LightningRpc

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "plugins")
WARMUP = 200


BATCHES = 40   # alternated batches per case and implementation
BATCH = 200    # calls per batch (per client)
CLIENTS = int(os.environ.get("CLIENTS", "1"))


def _client(path: str, call, go, done) -> None:
    rpc = LightningRpc(path)
    call(rpc)   # warm before the clock starts
    done.put(None)
    go.wait()
    for _ in range(BATCH):
        call(rpc)
    done.put(None)


def timed_batch(rpc: LightningRpc, call) -> float:
    """Seconds per call of one batch: BATCH calls in this process, or CLIENTS processes' BATCH calls each."""
    if CLIENTS == 1:
        with Timer() as t:
            for _ in range(BATCH):
                call(rpc)
        return t.elapsed / BATCH
    ctx = multiprocessing.get_context("fork")
    go, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(rpc.socket_path, call, go, done)) for _ in range(CLIENTS)]
    for p in procs:
        p.start()
    for _ in procs:
        done.get()   # each ready
    with Timer() as t:
        go.set()
        for _ in procs:
            done.get()
    for p in procs:
        p.join()
    return t.elapsed / (BATCH * CLIENTS)


def plugin_paths(*names: str) -> list[str]:
    return [os.path.abspath(os.path.join(PLUGINS, n)) for n in names]


def run_cases(rpcs: dict[str, LightningRpc], cases: list[tuple[str, str, object]]) -> None:
    """Each case's implementations measured in alternated batches of BATCH calls, the order flipped every batch,
    so that both see the same moments of the machine: a best-of-three of long rounds (sessions 9-16) let one
    side's round meet a quiet moment the other's missed (the same code gave 0.77x and 1.01x of CLN's `hello` on
    one machine within minutes). Reported: the median batch as a rate, and the fastest and first-quartile batch
    in µs per call; the ratio is of the medians."""
    by_label: dict[str, list[tuple[str, object]]] = {}
    for label, who, call in cases:
        by_label.setdefault(label, []).append((who, call))
    for label, impls in by_label.items():
        per_call: dict[str, list[float]] = {who: [] for who, _ in impls}
        for who, call in impls:
            for _ in range(WARMUP):
                call(rpcs[who])
        for b in range(BATCHES):
            for who, call in (impls if b % 2 == 0 else impls[::-1]):
                per_call[who].append(timed_batch(rpcs[who], call))
        medians = {}
        for who, _ in impls:
            ts = sorted(per_call[who])
            medians[who] = statistics.median(ts)
            print(f"{label} [{who}]: {rate(1, medians[who])} (median of {BATCHES} batches; fastest "
                  f"{ts[0] * 1e6:.1f} µs, first quartile {ts[len(ts) // 4] * 1e6:.1f} µs per call)")
        if "ampere" in medians and "cln" in medians:
            print(f"{label}: Ampere {medians['cln'] / medians['ampere']:.2f}x CLN")


def main() -> None:
    # An amp-chaind only for lightningd's bcli; ampd runs without a chain, as always in this bench.
    with network(chain=cln.available(), nodes_on_chain=False) as (chain, f):
        # Trivial methods of pyln-client plugins: `noop` (returns {}), and helloworld's `hello`
        # (which also sends a log line per call).
        plugins = plugin_paths("trivial.py", "helloworld.py")
        node = f.get_node(plugin=plugins, options=PLUGIN_BENCH_OPTIONS)
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
        node = f.get_node(plugin=plugins, options=PLUGIN_BENCH_OPTIONS)
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
