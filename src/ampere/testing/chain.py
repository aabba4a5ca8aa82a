"""Start and stop amp-chaind for tests.

    chain = ChainD(tmp_path)          # datadir = tmp_path / "chaind" (created)
    chain.start()                     # free port, waits until RPC answers
    addr = chain.rpc("getnewaddress")
    chain.mine(101)                   # to the faucet wallet
    chain.stop()

Also usable as a context manager. `rpc` is synchronous (urllib-free: http.client) and raises
ChainRpcError(code, message) on an RPC error.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path


class ChainRpcError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChainD:
    def __init__(self, tmpdir, rpcuser: str | None = "ampere", rpcpassword: str | None = "ampere-test",
                 extra_args: list[str] | None = None, port: int | None = None):
        """`rpcuser`/`rpcpassword` None means cookie authentication."""
        self.datadir = str(Path(tmpdir) / "chaind")
        os.makedirs(self.datadir, exist_ok=True)
        self.rpcuser = rpcuser
        self.rpcpassword = rpcpassword
        self.port = port or free_port()
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self._faucet_address: str | None = None

    # -- process --
    def args(self) -> list[str]:
        a = [sys.executable, "-m", "ampere.chain.regtest.daemon", f"-datadir={self.datadir}",
             f"-rpcport={self.port}", "-rpcbind=127.0.0.1"]
        if self.rpcpassword:
            a += [f"-rpcuser={self.rpcuser}", f"-rpcpassword={self.rpcpassword}"]
        return a + self.extra_args

    def start(self, timeout: float = 30.0) -> "ChainD":
        log = open(os.path.join(self.datadir, "chaind.stdout"), "ab")
        from .nodes import die_with_parent

        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)
        log.close()
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                out = open(os.path.join(self.datadir, "chaind.stdout")).read()[-2000:]
                raise RuntimeError(f"amp-chaind exited with {self.proc.returncode}: {out}")
            try:
                self.rpc("getblockcount")
                return self
            except (OSError, ChainRpcError, http.client.HTTPException):
                if time.time() > deadline:
                    self.kill()
                    raise RuntimeError("amp-chaind did not answer RPC in time")
                time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.rpc("stop")
            except Exception:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL (for crash tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> "ChainD":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- RPC --
    @property
    def cookie_path(self) -> str:
        return os.path.join(self.datadir, "regtest", ".cookie")

    def _userpass(self) -> str:
        if self.rpcpassword:
            return f"{self.rpcuser}:{self.rpcpassword}"
        with open(self.cookie_path) as f:
            return f.read().strip()

    def rpc(self, method: str, *args, timeout: float = 120.0):
        """Call `method`; returns the result (floats as Decimal) or raises ChainRpcError."""
        body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": list(args)}, default=str)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", "/", body, {"Authorization": "Basic " + base64.b64encode(
                self._userpass().encode()).decode(), "Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status == 401:
            raise ChainRpcError(-401, "authorization failed")
        reply = json.loads(data, parse_float=Decimal)
        if reply.get("error"):
            raise ChainRpcError(reply["error"]["code"], reply["error"]["message"])
        return reply["result"]

    # -- helpers --
    def faucet_address(self) -> str:
        if self._faucet_address is None:
            self._faucet_address = self.rpc("getnewaddress")
        return self._faucet_address

    def mine(self, n: int = 1, address: str | None = None) -> list[str]:
        """Mine `n` blocks (with the mempool's transactions) to `address` or the faucet wallet."""
        return self.rpc("generatetoaddress", n, address or self.faucet_address())

    def cli_args(self) -> list[str]:
        """Arguments for amp-chain-cli to reach this node."""
        a = [f"-datadir={self.datadir}", f"-rpcport={self.port}"]
        if self.rpcpassword:
            a += [f"-rpcuser={self.rpcuser}", f"-rpcpassword={self.rpcpassword}"]
        return a
