"""Core Lightning nodes for interoperability tests: `lightningd` from `$CLN_LIGHTNINGD` on the same amp-chaind as
the Ampere nodes (CLN's bcli plugin drives `amp-chain-cli` as it drives bitcoin-cli).

    l1 = node_factory.get_node(listen=True)            # Ampere
    l2 = node_factory.get_cln_node()                     # CLN, listening on a free port (l2.port)
    node_factory.fundchannel(l2, l1, 10**6)              # the factory's helpers take either kind

A `ClnNode` has the conveniences of an `AmpdNode` (rpc, cli, wait_for_log, restart, kill, stop) and is held to the
same teardown rules (clean exit, no BROKEN line). `protocol_complaints()` on either kind lists the log lines that
show a warning or error sent or received, or an UNUSUAL/BROKEN event, for the interop tests to assert absent.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from .nodes import AmpdNode, die_with_parent, option_args, spawn_env

ENV_VAR = "CLN_LIGHTNINGD"
SKIP_REASON = ("Core Lightning is not available: set CLN_LIGHTNINGD to a lightningd binary "
               "(e.g. CLN_LIGHTNINGD=$(../shared/cln/unpack))")

# Built-in plugins the tests never use: fewer processes to start on a busy 2-core machine.
DISABLED_PLUGINS = ("bookkeeper", "commando", "sql", "cln-renepay", "recklessrpc", "exposesecret", "autoclean",
                    "chanbackup", "recover")

# CLN's UNUSUAL lines that say nothing about the peer or the protocol.
CLN_BENIGN = (
    "HSM: created new hsm_secret file",
    "JSON-RPC shutdown",
    "is not a known notification topic",
    "lightningd: Executing hook",
)
# Lines showing a warning or error on the wire (CLN logs every message's name at debug level) or trouble.
CLN_COMPLAINT = re.compile(r"peer_(in|out) WIRE_(WARNING|ERROR)\b|\bUNUSUAL\b|\*\*BROKEN\*\*")
AMPERE_COMPLAINT = re.compile(
    r"\bUNUSUAL\b|\*\*BROKEN\*\*|Received (warning|error) from peer|Peer sent (warning|error)"
    r"|: (warn|warn_and_disconnect|close): ")


def lightningd_path() -> str | None:
    """$CLN_LIGHTNINGD if it names an executable, else None."""
    path = os.environ.get(ENV_VAR)
    return path if path and os.access(path, os.X_OK) else None


def chain_cli_path() -> str:
    """amp-chain-cli for CLN's bcli: the venv's script, or a wrapper running this interpreter's module."""
    here = os.path.join(os.path.dirname(sys.executable), "amp-chain-cli")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("amp-chain-cli")
    if found:
        return found
    raise RuntimeError("amp-chain-cli not found beside the interpreter or on PATH")


def complaints(node: Any, allow: tuple[str, ...] = ()) -> list[str]:
    """Log lines of `node` (either kind) showing a protocol warning/error or an UNUSUAL/BROKEN event, minus
    those containing any of `allow` (and CLN's benign start/stop lines)."""
    is_cln = getattr(node, "implementation", "ampere") == "cln"
    pattern = CLN_COMPLAINT if is_cln else AMPERE_COMPLAINT
    benign = (CLN_BENIGN if is_cln else ()) + tuple(allow) + tuple(getattr(node, "allow_complaints", ()))
    return [ln for ln in node.logs(since_start=False).splitlines()
            if pattern.search(ln) and not any(b in ln for b in benign)]


class ClnNode(AmpdNode):
    """A lightningd run from $CLN_LIGHTNINGD, following the factory's amp-chaind."""

    implementation = "cln"

    def __init__(self, lightningd: str, directory: str, chaind: Any, port: int | None,
                 options: dict[str, Any] | None = None, extra_args: list[str] | None = None) -> None:
        super().__init__(directory, options=options, extra_args=extra_args)
        self.lightningd = lightningd
        self.chaind = chaind
        self.port = port

    def cmdline(self) -> list[str]:
        chain = self.chaind
        opts: dict[str, Any] = {
            "lightning-dir": self.dir, "network": self.network, "log-file": self.log_path, "log-level": "debug",
            "bitcoin-cli": chain_cli_path(), "bitcoin-rpcconnect": "127.0.0.1", "bitcoin-rpcport": chain.port,
            "developer": True, "dev-bitcoind-poll": 1, "dev-fast-gossip": True, "dev-no-version-checks": True,
            # As pyln-testing: a feerate disagreement is an error, not silently accepted.
            "ignore-fee-limits": "false", "disable-dns": True,
            # A fresh node starts 30 blocks below the tip and fetches each block through a new amp-chain-cli:
            # start at the tip instead (as pyln-testing does).
            "rescan": 1, "disable-plugin": list(DISABLED_PLUGINS),
        }
        if chain.rpcpassword:
            opts["bitcoin-rpcuser"] = chain.rpcuser
            opts["bitcoin-rpcpassword"] = chain.rpcpassword
        else:
            opts["bitcoin-datadir"] = chain.datadir
        if self.port is not None:
            opts["bind-addr"] = f"127.0.0.1:{self.port}"
        for k, v in self.options.items():
            if k == "disable-plugin":
                opts[k] = list(opts[k]) + (list(v) if isinstance(v, (list, tuple)) else [v])
            else:
                opts[k] = v
        return [self.lightningd] + option_args(opts) + self.extra_args

    def start(self, wait: bool = True, timeout: float = 60.0) -> None:
        os.makedirs(self.dir, exist_ok=True)
        self._log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self._stderr = open(self.stderr_path, "ab")
        env = spawn_env()
        env.pop("LIGHTNINGD_DEV_LOG_IO", None)
        self.proc = subprocess.Popen(self.cmdline(), stdout=self._stderr, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, env=env,
                                     start_new_session=True)
        if wait:
            self.wait_for_log("Server started with public key", timeout=timeout)
            # lightningd answers getinfo before it listens for peers.
            if self.port is not None:
                deadline = time.time() + timeout
                while not _accepts(self.port):
                    if not self.is_running() or time.time() > deadline:
                        raise RuntimeError(f"lightningd in {self.dir} does not listen on {self.port}:\n"
                                           f"{self.stderr()[-2000:]}{self.logs()[-2000:]}")
                    time.sleep(0.05)

    @property
    def rpc(self):
        if self._rpc is None:
            from pyln.client import LightningRpc

            self._rpc = LightningRpc(self.rpc_path)
        return self._rpc

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        cli = os.path.join(os.path.dirname(self.lightningd), "lightning-cli")
        return subprocess.run([cli, f"--lightning-dir={self.dir}", f"--network={self.network}", *args],
                              capture_output=True, text=True, timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.rpc.stop()
            except Exception:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reap_group()
        return self.proc.returncode


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False
