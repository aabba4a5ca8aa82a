"""Helpers shared by the benchmarks: start real processes in a temp dir, always clean up.

    with network() as (chaind, f):      # amp-chaind + a NodeFactory whose nodes follow it
        l1, l2 = f.line_graph(2)
    with network(chain=False) as (_, f):  # nodes alone (--disable-chain)
    with chaind() as chain:             # amp-chaind alone

and the timing helpers the payment benches share (timed_pay, timed_sendpay, one_at_a_time, run_in_flight).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import ampere.testing.nodes as testing_nodes  # noqa: E402
from ampere.testing.chain import ChainD  # noqa: E402
from ampere.testing.nodes import NodeFactory, keep_test_dirs, wait_for  # noqa: E402

# BENCH_SCALE=0.1 runs a bench with a tenth of its operations (a quick check that it still works); the
# default, 1, is what the figures in README.md and docs/ were measured with.
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
# POLL_US=n: ampd's plugin-answer-poll-us for the plugin benchmarks (0: the daemon sleeps while a plugin works, as
# before session 20); unset, ampd's default.
PLUGIN_BENCH_OPTIONS = {"plugin-answer-poll-us": int(os.environ["POLL_US"])} if "POLL_US" in os.environ else {}


def scaled(n: int, least: int = 1) -> int:
    return max(least, int(n * SCALE))


def factory() -> NodeFactory:
    return NodeFactory(tempfile.mkdtemp(prefix="amp-bench-"))


@contextlib.contextmanager
def chaind() -> Iterator[ChainD]:
    """A running amp-chaind in a fresh temp dir; stopped and its dir removed on the way out."""
    tmp = tempfile.mkdtemp(prefix="amp-bench-chain-")
    chain = ChainD(tmp)
    try:
        chain.start()
        yield chain
    finally:
        chain.stop()
        if not keep_test_dirs():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def network(chain: bool = True, nodes_on_chain: bool = True) -> Iterator[tuple[ChainD | None, NodeFactory]]:
    """`with network() as (chaind, f):` an amp-chaind and a node factory whose nodes follow it; on the way out
    (an exception too) every node is stopped, then the chain, and their temp dirs removed.

    `chain=False`: no amp-chaind (chaind is None; nodes run with --disable-chain).  `nodes_on_chain=False`: the
    chain runs (for Core Lightning's bcli, or to time its own CLI) but the factory's nodes do not use it."""
    with contextlib.ExitStack() as stack:
        chain_ = stack.enter_context(chaind()) if chain else None
        f = factory()
        stack.callback(f.cleanup)  # runs before the chain's exit: nodes stop before their backend does
        if nodes_on_chain:
            f.chaind = chain_
        yield chain_, f


def timed_pay(rpc, bolt11: str) -> float:
    """Seconds one `pay` takes; the payment must complete."""
    t0 = time.perf_counter()
    done = rpc.pay(bolt11)
    assert done["status"] == "complete", done
    return time.perf_counter() - t0


def timed_sendpay(rpc, route: list[dict], inv: dict, timeout: int = 120) -> float:
    """Seconds one sendpay + waitsendpay of invoice `inv` (an `invoice` result) along `route` takes; the payment
    must complete."""
    t0 = time.perf_counter()
    rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    done = rpc.waitsendpay(inv["payment_hash"], timeout)
    assert done["status"] == "complete", done
    return time.perf_counter() - t0


def one_at_a_time(client, one, items: list, warmup: int = 5) -> tuple[list[float], float]:
    """`one(client, item)` for each item in turn, the first `warmup` as an untimed warm-up.  Returns what the timed
    calls returned (their latencies) and the seconds they took together."""
    for item in items[:warmup]:
        one(client, item)
    t0 = time.perf_counter()
    lat = [one(client, item) for item in items[warmup:]]
    return lat, time.perf_counter() - t0


def failed(errors: list[str]) -> str:
    """'N failed', with the first error when there is one (run_in_flight's error strings)."""
    return f"{len(errors)} failed{': ' + errors[0] if errors else ''}"


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def pss_mib(pid: int) -> float:
    """Proportional set size of a process and its children (what smem reports), in MiB."""
    total = 0
    pids = [pid] + _children(pid)
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def _children(pid: int) -> list[int]:
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return out
    for k in kids:
        out.append(k)
        out.extend(_children(k))
    return out


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.perf_counter() - self.t0


def latency_stats(latencies: list[float]) -> dict[str, float]:
    """mean, p50 and p99 of latencies given in seconds, in milliseconds."""
    import statistics

    lat = sorted(latencies)
    return {"mean": statistics.mean(lat) * 1000, "p50": lat[len(lat) // 2] * 1000,
            "p99": lat[int(len(lat) * 0.99) - 1] * 1000}


def run_in_flight(items: list, n_threads: int, make_client, one) -> tuple[float, list[str]]:
    """Run `one(client, item)` for every item from `n_threads` threads (each with its own
    `make_client()`), keeping that many in flight.  Returns (seconds, error strings)."""
    import threading

    todo = list(items)
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        client = make_client()
        while True:
            with lock:
                if not todo:
                    return
                item = todo.pop()
            try:
                one(client, item)
            except Exception as e:  # reported by the caller
                errors.append(repr(e)[:300])

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, errors


def proc_status_mib(pid: int, field: str) -> float:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM, ...) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def rss_mib(pid: int) -> float:
    return proc_status_mib(pid, "VmRSS")


def hwm_mib(pid: int) -> float:
    """Peak RSS (the high-water mark) of a process."""
    return proc_status_mib(pid, "VmHWM")


def _cpu_ticks(pid: int, reaped: bool = False) -> int:
    """Clock ticks of CPU from /proc/PID/stat: utime + stime (with `reaped`, also the cutime + cstime of the
    children it has waited for); with BENCH_CPU_PART=sys the system parts alone (how much of a figure is the
    kernel's: syscalls, fsync, socket wake-ups)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    parts = (12, 14) if os.environ.get("BENCH_CPU_PART") == "sys" else (11, 12, 13, 14)
    return sum(int(fields[i]) for i in parts if reaped or i < 13)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far (BENCH_CPU_PART=sys: system time alone)."""
    return _cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of a process and every process under it: its live descendants (CLN's subdaemons, a channeld per
    channel, its plugins) and, through each one's cutime/cstime, the children it has reaped (bcli's chain queries).
    A process that exits between two readings keeps counting through its parent's reaped time."""
    ticks = 0
    for p in [pid] + _children(pid):
        try:
            ticks += _cpu_ticks(p, reaped=True)
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile: its time is in its parent's reaped time once reaped
    return ticks / os.sysconf("SC_CLK_TCK")


# CLN's own default: lightningd polls bitcoind every 30 s (topology and feerates).
CLN_DEFAULT_POLL = 30


def settle_cln(nodes: list, announced: int = 0, timeout: float = 90.0) -> None:
    """Restart the Core Lightning nodes among `nodes` polling the chain as CLN does by default, and wait until
    every channel of every node in `nodes` is back in use.

    The test harness runs CLN with dev-bitcoind-poll=1, as pyln-testing does, so that setting up channels does not
    wait on blocks; each poll is a few new `amp-chain-cli` processes through CLN's bcli plugin (getblockcount,
    estimatesmartfee...), about 10% of a core per idle node on the 2-core machine (0% for an idle ampd, whose chain
    client is in process), taken from whatever is measured next to it. `announced`: wait, too, until the first
    node's graph holds that many channel halves, all active (a `pay` through them)."""
    from ampere.testing.cln import ClnNode
    from pyln.client import LightningRpc

    restarted = [n for n in nodes if isinstance(n, ClnNode)]
    if not restarted:
        return
    for n in restarted:
        n.options["dev-bitcoind-poll"] = CLN_DEFAULT_POLL
        n.restart()

    def ready() -> bool:
        for n in nodes:
            chans = LightningRpc(n.rpc_path).listpeerchannels()["channels"]
            if not all(c.get("peer_connected") and c["state"] == "CHANNELD_NORMAL" for c in chans):
                return False
        if announced:
            halves = LightningRpc(nodes[0].rpc_path).listchannels()["channels"]
            return len(halves) >= announced and all(c["active"] for c in halves)
        return True

    wait_for(ready, timeout, "every channel back in use after restarting the CLN nodes")


def write_gossip_store(path: str, net, now: int) -> None:
    """A gossip_store file holding a generated network (ampere.testing.gossip_factory.random_network), as ampd
    would have stored it on receipt."""
    from ampere.node.gossip.store_file import GossipStore

    store = GossipStore(path).open()
    for ann, cap in net.announcements:
        store.add_channel_announcement(ann, cap, now)
    for upd in net.updates:
        store.add_channel_update(upd, now)
    for na in net.node_announcements:
        store.add_node_announcement(na, now)
    store.close()


def callgrind_total(pid: int, out: str) -> int:
    """Instructions (Ir) counted so far by the valgrind --tool=callgrind process `pid`, whose dumps go to
    `out`/cg.PID.N (--callgrind-out-file=OUT/cg.%p): asks for a dump, reads its totals line."""
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
    time.sleep(0.5)
    dumps = sorted(glob.glob(f"{out}/cg.{pid}.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    with open(dumps[-1]) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[-1]}")


def callgrind_nodes() -> str:
    """From now on the factory starts ampd under valgrind --tool=callgrind with instrumentation off, to be switched
    on around what is measured (`callgrind_switch`). Returns the directory the dumps go to (the caller removes it).
    Exits, saying why, without valgrind."""
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed")
    out = tempfile.mkdtemp(prefix="amp-bench-ir-")
    testing_nodes.AMPD = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}/cg.%p",
                  sys.executable, "-m", "ampere.cli.ampd"]
    return out


def callgrind_switch(pids: list[int], *args: str) -> None:
    """callgrind_control ARGS for each process (-z: zero the counts, -i on / -i off: instrumentation)."""
    for pid in pids:
        subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=True)


def time_getroutes(rpc, pid: int, pair, seconds: float) -> tuple[int, int, float, float]:
    """getroute (100,000 msat, riskfactor 10, `fromid`) for the (payer, payee) pairs `pair()` gives, for `seconds`
    and at least 20 calls: (calls, routes found, wall seconds, CPU seconds of process `pid` and its children)."""
    from pyln.client import RpcError

    n = found = 0
    t0, c0 = time.perf_counter(), tree_cpu_seconds(pid)
    while time.perf_counter() - t0 < seconds or n < 20:
        a, b = pair()
        try:
            rpc.getroute(b.hex(), 100_000, 10, fromid=a.hex())
            found += 1
        except RpcError:
            pass
        n += 1
    return n, found, time.perf_counter() - t0, tree_cpu_seconds(pid) - c0
