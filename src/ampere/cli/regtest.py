"""amp-regtest: a local regtest network, modelled on Core Lightning's contrib/startup_regtest.sh.

    amp-regtest [--dir BASE] start [N]   amp-chaind + N ampd nodes (default 2) in BASE/l<i>-regtest
    amp-regtest [--dir BASE] env         shell aliases: l1-cli, l2-cli, ..., bt-cli (and l<i>-log)
    amp-regtest [--dir BASE] fund        send 1 BTC to every node's wallet and mine it
    amp-regtest [--dir BASE] stop        stop the nodes and amp-chaind
    amp-regtest [--dir BASE] destroy     stop, then delete every directory start made

BASE defaults to /tmp.  The chain lives in BASE/amp-chaind-regtest; what `start` launched is
recorded in BASE/amp-regtest.json so that the other commands (from any shell) find it.
`connect` and `fund_nodes` (channels) come with the channels work.
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
    try:
        with open(_state_path(base)) as f:
            return json.load(f)
    except FileNotFoundError:
        raise RegtestError(f"no network started in {base} (run: amp-regtest --dir {base} start)") from None


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
    except RegtestError:
        state = {}
    if state and (_alive(state["chaind"].get("pid")) or any(_alive(x.get("pid")) for x in state.get("nodes", []))):
        raise RegtestError(f"a network is already running from {base} (amp-regtest --dir {base} stop)")
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
        raise RegtestError(f"'{a.command}' needs channels, which are not implemented yet")
    except (RegtestError, ValueError) as e:
        print(f"amp-regtest: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
