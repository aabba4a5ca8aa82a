"""amp-regtest: a local regtest network, modelled on Core Lightning's contrib/startup_regtest.sh.

    amp-regtest [--dir BASE] start [N]   amp-chaind + N ampd nodes (default 2) in BASE/l<i>-regtest
    amp-regtest [--dir BASE] env         shell aliases: l1-cli, l2-cli, ..., bt-cli (and l<i>-log)
    amp-regtest [--dir BASE] fund        send 1 BTC to every node's wallet and mine it
    amp-regtest [--dir BASE] stop        stop the nodes and amp-chaind
    amp-regtest [--dir BASE] destroy     stop, then delete every directory start made

BASE defaults to /tmp.  The chain lives in BASE/amp-chaind-regtest; what `start` launched is
recorded in BASE/amp-regtest.json so that the other commands (from any shell) find it.

    amp-regtest [--dir BASE] connect I J      connect node I to node J (1-based)
    amp-regtest [--dir BASE] fund_nodes [SAT] connect the nodes in a row (l1-l2, l2-l3, ...) and open a channel of
                                              SAT (default 1000000) from each to the next; mine until they are normal
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal

from ..chain.bitcoind import BitcoindError, BitcoindRpc, BitcoindUnreachable

STATE_FILE = "amp-regtest.json"
RPCUSER, RPCPASSWORD = "amp-regtest", "amp-regtest"


class RegtestError(Exception):
    pass


# ---- small helpers ----------------------------------------------------------------------------
def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RegtestError("no free port")


def _state_path(base: str) -> str:
    return os.path.join(base, STATE_FILE)


def _load_state(base: str) -> dict:
    path = _state_path(base)
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        raise RegtestError(f"no network started in {base} (run: amp-regtest --dir {base} start)") from None
    except (OSError, ValueError) as e:
        raise RegtestError(f"{path} is unreadable ({e}); `amp-regtest --dir {base} start` starts afresh") from None
    if not _state_ok(state):
        raise RegtestError(f"{path} is not an amp-regtest state file; `amp-regtest --dir {base} start` starts "
                           "afresh")
    return state


def _state_ok(state: object) -> bool:
    """The shape every command relies on (a file edited by hand, or from another version, must not KeyError)."""
    if not isinstance(state, dict) or not isinstance(state.get("chaind"), dict):
        return False
    c = state["chaind"]
    if not (isinstance(c.get("datadir"), str) and isinstance(c.get("port"), int) and isinstance(c.get("user"), str)
            and isinstance(c.get("password"), str)):
        return False
    nodes = state.get("nodes")
    return isinstance(nodes, list) and all(
        isinstance(n, dict) and isinstance(n.get("dir"), str) and isinstance(n.get("port"), int) for n in nodes)


def _save_state(base: str, state: dict) -> None:
    with open(_state_path(base), "w") as f:
        json.dump(state, f, indent=1)


def _chain_call(state: dict, method: str, *params):
    c = state["chaind"]

    async def go():
        rpc = BitcoindRpc("127.0.0.1", c["port"], c["user"], c["password"], timeout=60)
        try:
            return await rpc.call(method, *params)
        finally:
            await rpc.close()

    return asyncio.run(go())


def _ampd_call(node_dir: str, method: str, params=None, timeout: float = 30.0):
    """One JSON-RPC call on a node's lightning-rpc socket."""
    path = os.path.join(node_dir, "regtest", "lightning-rpc")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode())
        buf = b""
        dec = json.JSONDecoder()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise RegtestError(f"{path}: connection closed")
            buf += chunk
            try:
                reply, _ = dec.raw_decode(buf.decode().lstrip())
                break
            except ValueError:
                continue
    if "error" in reply:
        raise RegtestError(f"{method}: {reply['error'].get('message')}")
    return reply["result"]


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _wait(pred, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = pred()
            if v:
                return v
        except (OSError, RegtestError, BitcoindUnreachable, BitcoindError):
            pass
        time.sleep(0.1)
    raise RegtestError(f"timed out waiting for {what}")


def _node_dir(base: str, i: int) -> str:
    return os.path.join(base, f"l{i}-regtest")


# ---- commands ---------------------------------------------------------------------------------
def start(base: str, n: int) -> int:
    os.makedirs(base, exist_ok=True)
    try:
        state = _load_state(base)
    except RegtestError as e:
        if os.path.exists(_state_path(base)):
            print(f"{e}: starting afresh (the chain and node directories in {base} are reused)")
        state = {}
    if state and (_alive(state["chaind"].get("pid")) or any(_alive(x.get("pid")) for x in state.get("nodes", []))):
        raise RegtestError(f"a network is already running from {base} (amp-regtest --dir {base} stop)")
    if state:
        print(f"reusing {base}: the chain and the nodes of the last run (their channels too); "
              f"`amp-regtest --dir {base} destroy` starts from nothing")
    datadir = os.path.join(base, "amp-chaind-regtest")
    os.makedirs(datadir, exist_ok=True)
    port = _free_port(18443)
    chaind = subprocess.Popen(
        [sys.executable, "-m", "ampere.chain.regtest.daemon", f"-datadir={datadir}", f"-rpcport={port}",
         f"-rpcuser={RPCUSER}", f"-rpcpassword={RPCPASSWORD}"],
        stdout=open(os.path.join(datadir, "amp-chaind.log"), "ab"), stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True)
    state = {"chaind": {"datadir": datadir, "port": port, "user": RPCUSER, "password": RPCPASSWORD,
                        "pid": chaind.pid}, "nodes": []}
    _save_state(base, state)
    _wait(lambda: _chain_call(state, "getblockcount") is not None, 60, "amp-chaind")
    # Coins for the faucet wallet: 101 blocks make the first coinbase spendable.
    height = _chain_call(state, "getblockcount")
    if height < 101:
        _chain_call(state, "generatetoaddress", 101 - height, _chain_call(state, "getnewaddress"))
    for i in range(1, n + 1):
        d = _node_dir(base, i)
        os.makedirs(d, exist_ok=True)
        p2p = _free_port(7070 + i * 101)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ampere.cli.ampd", f"--lightning-dir={d}", "--network=regtest",
             f"--log-file={os.path.join(d, 'log')}", "--log-level=debug", f"--bind-addr=127.0.0.1:{p2p}",
             "--bitcoin-rpcconnect=127.0.0.1", f"--bitcoin-rpcport={port}", f"--bitcoin-rpcuser={RPCUSER}",
             f"--bitcoin-rpcpassword={RPCPASSWORD}", f"--bitcoin-datadir={datadir}", "--dev-bitcoind-poll=1"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr"), "ab"), stdin=subprocess.DEVNULL,
            start_new_session=True)
        state["nodes"].append({"dir": d, "pid": proc.pid, "port": p2p})
        _save_state(base, state)
    for node in state["nodes"]:
        info = _wait(lambda: _ampd_call(node["dir"], "getinfo"), 60, f"ampd in {node['dir']}")
        node["id"] = info["id"]
    _save_state(base, state)
    print(f"amp-chaind: datadir {datadir}, RPC port {port} (user {RPCUSER}), height "
          f"{_chain_call(state, 'getblockcount')}")
    for i, node in enumerate(state["nodes"], 1):
        print(f"l{i}: {node['id']}@127.0.0.1:{node['port']}  (amp-cli --lightning-dir={node['dir']})")
    print(f"Shell aliases: eval \"$(amp-regtest --dir {base} env)\"   (l1-cli getinfo, bt-cli getblockcount)")
    return 0


def env(base: str) -> int:
    state = _load_state(base)
    c = state["chaind"]
    print(f"alias bt-cli='amp-chain-cli -regtest -datadir={c['datadir']} -rpcport={c['port']} "
          f"-rpcuser={c['user']} -rpcpassword={c['password']}'")
    for i, node in enumerate(state["nodes"], 1):
        print(f"alias l{i}-cli='amp-cli --lightning-dir={node['dir']} --network=regtest'")
        print(f"alias l{i}-log='less {os.path.join(node['dir'], 'log')}'")
    return 0


def fund(base: str, amount_btc: str = "1") -> int:
    state = _load_state(base)
    sent = []
    for node in state["nodes"]:
        addr = _ampd_call(node["dir"], "newaddr", {"addresstype": "bech32"})["bech32"]
        sent.append((node, _chain_call(state, "sendtoaddress", addr, str(Decimal(amount_btc)))))
    _chain_call(state, "generatetoaddress", 1, _chain_call(state, "getnewaddress"))
    for node, txid in sent:
        _wait(lambda: any(o["txid"] == txid and o["status"] == "confirmed"
                          for o in _ampd_call(node["dir"], "listfunds")["outputs"]), 60, f"funds in {node['dir']}")
        print(f"{node['dir']}: funded with {amount_btc} BTC ({txid})")
    return 0


def connect(base: str, i: int, j: int) -> int:
    state = _load_state(base)
    nodes = state["nodes"]
    if not (1 <= i <= len(nodes) and 1 <= j <= len(nodes)) or i == j:
        raise RegtestError(f"I and J must be two different nodes between 1 and {len(nodes)}")
    a, b = nodes[i - 1], nodes[j - 1]
    r = _ampd_call(a["dir"], "connect", {"id": b["id"], "host": "127.0.0.1", "port": b["port"]})
    print(f"l{i} -> l{j}: connected ({r.get('direction', 'out')})")
    return 0


def fund_nodes(base: str, amount_sat: int = 1_000_000) -> int:
    """As startup_regtest.sh's fund_nodes: each node opens a channel to the next one."""
    state = _load_state(base)
    nodes = state["nodes"]
    if len(nodes) < 2:
        raise RegtestError("fund_nodes needs at least 2 nodes (amp-regtest start 2)")
    mine_to = _chain_call(state, "getnewaddress")
    # Coins for every opener: amount plus room for fees, confirmed.
    for node in nodes[:-1]:
        addr = _ampd_call(node["dir"], "newaddr", {"addresstype": "bech32"})["bech32"]
        _chain_call(state, "sendtoaddress", addr, str(Decimal(amount_sat + 100_000) / Decimal(10**8)))
    _chain_call(state, "generatetoaddress", 1, mine_to)
    height = _chain_call(state, "getblockcount")
    for node in nodes:
        _wait(lambda node=node: _ampd_call(node["dir"], "getinfo")["blockheight"] >= height, 60, "nodes to sync")
    opened = []
    for i, (a, b) in enumerate(zip(nodes, nodes[1:]), 1):
        _ampd_call(a["dir"], "connect", {"id": b["id"], "host": "127.0.0.1", "port": b["port"]})
        _wait(lambda a=a: any(o["status"] == "confirmed" and not o["reserved"]
                              for o in _ampd_call(a["dir"], "listfunds")["outputs"]), 60, f"funds in {a['dir']}")
        r = _ampd_call(a["dir"], "fundchannel", {"id": b["id"], "amount": amount_sat}, timeout=120)
        opened.append((i, a, b, r))
        print(f"l{i} -> l{i + 1}: channel {r['channel_id']} funded by {r['txid']}")
    _chain_call(state, "generatetoaddress", 6, mine_to)
    for i, a, b, r in opened:
        # The channel just funded, by its id: on a reused directory the nodes already have channels from an
        # earlier run, which are normal long before this one (and the newest has no short_channel_id yet).
        def normal(a=a, b=b, cid=r["channel_id"]):
            chans = _ampd_call(a["dir"], "listpeerchannels", {"id": b["id"]})["channels"]
            return next((c for c in chans if c.get("channel_id") == cid and c.get("state") == "CHANNELD_NORMAL"
                         and c.get("short_channel_id")), None)
        chan = _wait(normal, 120, f"l{i} -> l{i + 1} normal")
        print(f"l{i} -> l{i + 1}: CHANNELD_NORMAL, short_channel_id {chan['short_channel_id']}")
    return 0


def stop(base: str) -> int:
    state = _load_state(base)
    for node in state["nodes"]:
        _stop_pid(node.get("pid"), lambda d=node["dir"]: _ampd_call(d, "stop", timeout=10))
    _stop_pid(state["chaind"].get("pid"), lambda: _chain_call(state, "stop"))
    print("stopped")
    return 0


def _stop_pid(pid: int | None, ask) -> None:
    if not _alive(pid):
        return
    try:
        ask()
    except Exception:
        os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 20
    while _alive(pid) and time.time() < deadline:
        try:  # our own child (same process) must be reaped, not just waited for
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            pass
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def destroy(base: str) -> int:
    state = _load_state(base)
    stop(base)
    shutil.rmtree(state["chaind"]["datadir"], ignore_errors=True)
    for node in state["nodes"]:
        shutil.rmtree(node["dir"], ignore_errors=True)
    os.unlink(_state_path(base))
    print("destroyed")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="amp-regtest", description="A local regtest network of ampd nodes.")
    ap.add_argument("--dir", default="/tmp", help="base directory (default /tmp)")
    ap.add_argument("command", choices=["start", "env", "fund", "stop", "destroy", "connect", "fund_nodes"])
    ap.add_argument("args", nargs="*")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    base = os.path.abspath(a.dir)
    try:
        if a.command == "start":
            n = int(a.args[0]) if a.args else 2
            if not 1 <= n <= 100:
                raise RegtestError("N must be between 1 and 100")
            return start(base, n)
        if a.command == "env":
            return env(base)
        if a.command == "fund":
            return fund(base, a.args[0] if a.args else "1")
        if a.command == "stop":
            return stop(base)
        if a.command == "destroy":
            return destroy(base)
        if a.command == "connect":
            if len(a.args) != 2:
                raise RegtestError("usage: amp-regtest connect I J")
            return connect(base, int(a.args[0]), int(a.args[1]))
        if a.command == "fund_nodes":
            return fund_nodes(base, int(a.args[0]) if a.args else 1_000_000)
        raise RegtestError(f"unknown command '{a.command}'")
    except (RegtestError, ValueError) as e:
        print(f"amp-regtest: {e}", file=sys.stderr)
        return 1
    except (OSError, BitcoindError, BitcoindUnreachable, KeyError) as e:
        # A node or amp-chaind that went away mid-command, a directory changed under us: say what, no traceback.
        print(f"amp-regtest: {a.command} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
