"""Real `ampd` processes for tests: start, talk to over RPC (pyln-client's LightningRpc), stop.

`NodeFactory.get_node(**options)` starts a node in a fresh directory and waits for its RPC; every
node it made is stopped (SIGTERM, then SIGKILL of its whole process group) by `killall()`, which
the pytest fixture calls at teardown, so no test leaves a process behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

AMPD = [sys.executable, "-m", "ampere.cli.ampd"]
DEFAULT_FUNDAMOUNT = 10**6
AMP_CLI = [sys.executable, "-m", "ampere.cli.amp_cli"]


def keep_test_dirs() -> bool:
    """AMPERE_KEEP_TEST_DIRS set: temporary directories (nodes', chains', signers') are left in place, to read the
    logs after a failure."""
    return bool(os.environ.get("AMPERE_KEEP_TEST_DIRS"))


def spawn_env() -> dict[str, str]:
    env = dict(os.environ)
    # Plugins with `#!/usr/bin/env python3` must find the interpreter that has pyln-client.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def validating_rpc(path: str):
    """A pyln-client LightningRpc whose every result is checked against CLN's schema of the same name
    (as pyln-testing does), so each test checks the shape of everything it calls."""
    from pyln.client import LightningRpc

    from .schema import validate

    class ValidatingRpc(LightningRpc):
        def call(self, method, payload=None, cmdprefix=None, filter=None):
            result = super().call(method, payload, cmdprefix, filter)
            if filter is None and isinstance(result, dict):
                validate(method, result)
            return result

    return ValidatingRpc(path)


def die_with_parent() -> None:
    """preexec_fn: if the test process dies without cleaning up (killed by a timeout, say), the kernel
    sends this child SIGTERM, so no ampd or amp-chaind outlives the test run (Linux prctl)."""
    try:
        import ctypes
        import signal as _signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(_signal.SIGTERM))
    except Exception:
        pass



def option_args(options: dict[str, Any]) -> list[str]:
    """lightningd-style command-line options: a list repeats the option, True/None is a bare flag, False
    leaves it out."""
    args: list[str] = []
    for k, v in options.items():
        if isinstance(v, (list, tuple)):
            args += [f"--{k}={x}" for x in v]
        elif v is True or v is None:
            args.append(f"--{k}")
        elif v is False:
            continue
        else:
            args.append(f"--{k}={v}")
    return args

class AmpdNode:
    implementation = "ampere"

    def __init__(self, directory: str, network: str = "regtest", options: dict[str, Any] | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.dir = directory
        self.network = network
        self.options = dict(options or {})
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(directory, "log")
        self.stderr_path = os.path.join(directory, "stderr")
        self._stderr = None
        self._rpc = None
        self._log_offset = 0
        self.port: int | None = None  # the TCP port it listens on (get_node(listen=True))
        self._info: dict | None = None

    @property
    def info(self) -> dict:
        """getinfo, cached (the node id never changes)."""
        if self._info is None:
            self._info = self.rpc.getinfo()
        return self._info

    @property
    def node_id(self) -> str:
        return self.info["id"]

    def channel_state(self, peer: "AmpdNode") -> str | None:
        chans = self.rpc.listpeerchannels(peer.node_id)["channels"]
        return chans[-1]["state"] if chans else None

    @property
    def netdir(self) -> str:
        return os.path.join(self.dir, self.network)

    @property
    def rpc_path(self) -> str:
        return os.path.join(self.netdir, "lightning-rpc")

    def cmdline(self) -> list[str]:
        args = [f"--lightning-dir={self.dir}", f"--network={self.network}", f"--log-file={self.log_path}",
                "--log-level=debug"]
        return AMPD + args + option_args(self.options) + self.extra_args

    def start(self, wait: bool = True, timeout: float = 30.0) -> None:
        os.makedirs(self.dir, exist_ok=True)
        self._log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.cmdline(), stdout=subprocess.DEVNULL, stderr=self._stderr,
                                     preexec_fn=die_with_parent,
                                     env=spawn_env(), start_new_session=True)
        if wait:
            self.wait_for_log("Server started with public key", timeout=timeout)

    @property
    def rpc(self):
        if self._rpc is None:
            self._rpc = validating_rpc(self.rpc_path)
        return self._rpc

    def call(self, method: str, params: Any = None) -> Any:
        return self.rpc.call(method, params)

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run(AMP_CLI + [f"--lightning-dir={self.dir}", f"--network={self.network}", *args],
                              capture_output=True, text=True, timeout=timeout, env=spawn_env())

    def logs(self, since_start: bool = True) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            return ""
        return text[self._log_offset:] if since_start else text

    def wait_for_log(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            logs = self.logs()
            if text in logs:
                return logs
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ampd exited ({self.proc.returncode}) waiting for {text!r}:\n"
                                   f"{self.stderr()}\n{logs[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"no log line {text!r} in {timeout}s:\n{self.logs()[-3000:]}")

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reap_group()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self.killed = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reap_group()

    def _reap_group(self) -> None:
        # Plugins and anything else the node started live in its session: make sure none survive.
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._rpc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def chain_options(chaind: Any) -> dict[str, Any]:
    """ampd options to follow an amp-chaind (ChainD), polling every second."""
    opts: dict[str, Any] = {"bitcoin-rpcconnect": "127.0.0.1", "bitcoin-rpcport": chaind.port,
                            "bitcoin-datadir": chaind.datadir, "dev-bitcoind-poll": 1}
    if chaind.rpcpassword:
        opts["bitcoin-rpcuser"] = chaind.rpcuser
        opts["bitcoin-rpcpassword"] = chaind.rpcpassword
    return opts


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `pred` every 50 ms until it returns something true; TimeoutError after `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


class NodeFactory:
    def __init__(self, base_dir: str, chaind: Any = None) -> None:
        self.base_dir = base_dir
        self.nodes: list[AmpdNode] = []
        # An ampere.testing.chain.ChainD: nodes then follow it instead of running --disable-chain.
        self.chaind = chaind

    def get_node(self, options: dict[str, Any] | None = None, start: bool = True, may_fail: bool = False,
                 extra_args: list[str] | None = None, allow_broken_log: bool = False, listen: bool = False,
                 **kwargs: Any) -> AmpdNode:
        """`listen`: listen on a free TCP port of 127.0.0.1 (node.port), as nodes with channels need."""
        opts = dict(options or {})
        port = None
        if listen and not any(k in opts or k.replace("-", "_") in kwargs for k in ("addr", "bind-addr")):
            port = free_port()
            opts["bind-addr"] = f"127.0.0.1:{port}"
        opts.update({k.replace("_", "-"): v for k, v in kwargs.items()})
        if self.chaind is not None and not opts.get("disable-chain"):
            opts.pop("disable-chain", None)
            for k, v in chain_options(self.chaind).items():
                opts.setdefault(k, v)
        else:
            opts.setdefault("disable-chain", True)
        # Tests listen only where they ask to: parallel nodes must not fight over the default port.
        if not any(k in opts for k in ("addr", "bind-addr", "autolisten")):
            opts["autolisten"] = "false"
        if "wallet" not in opts:  # AMPERE_TEST_DB=postgres: each node in its own PostgreSQL database
            from .postgres import wallet_for_test_node

            wallet = wallet_for_test_node()
            if wallet:
                opts["wallet"] = wallet
        node = AmpdNode(os.path.join(self.base_dir, f"l{len(self.nodes) + 1}"), options=opts, extra_args=extra_args)
        # At teardown a node must exit cleanly and have logged nothing BROKEN, unless the test expects
        # trouble (may_fail: it is meant to die; allow_broken_log: it provokes broken behaviour).
        node.may_fail = may_fail
        node.allow_broken_log = allow_broken_log
        node.port = port
        self.nodes.append(node)
        if start:
            node.start(wait=not may_fail)
        return node

    def get_cln_node(self, options: dict[str, Any] | None = None, start: bool = True, may_fail: bool = False,
                     allow_broken_log: bool = False, listen: bool = True, extra_args: list[str] | None = None,
                     **kwargs: Any) -> AmpdNode:
        """A Core Lightning node ($CLN_LIGHTNINGD) on this factory's amp-chaind, listening on a free port of
        127.0.0.1 (node.port) unless `listen=False` or an address is given. Options are lightningd's
        (`dev-disable-commit-after=1`, ...). The test is skipped when CLN_LIGHTNINGD is unset."""
        from .cln import SKIP_REASON, ClnNode, lightningd_path

        lightningd = lightningd_path()
        if lightningd is None:
            import pytest

            pytest.skip(SKIP_REASON)
        chaind = self._chain()
        height = chaind.rpc("getblockcount")
        if height < 101:
            # lightningd listens only once its chain is above genesis, and it fetches each block through a new
            # amp-chain-cli process (~6 blocks/s): mine the faucet's first spendable coinbase before it starts,
            # so it begins near the tip instead of catching up later.
            chaind.mine(101 - height)
            for node in self.nodes:
                if node.is_running() and node.implementation == "ampere" and not node.options.get("disable-chain"):
                    self.sync(node)
        opts = dict(options or {})
        opts.update({k.replace("_", "-"): v for k, v in kwargs.items()})
        port = free_port() if listen and not any(k in opts for k in ("addr", "bind-addr")) else None
        node = ClnNode(lightningd, os.path.join(self.base_dir, f"l{len(self.nodes) + 1}"), chaind, port,
                       options=opts, extra_args=extra_args)
        node.may_fail = may_fail
        node.allow_broken_log = allow_broken_log
        self.nodes.append(node)
        if start:
            node.start(wait=not may_fail)
        return node

    def get_node_of(self, implementation: str, options: dict[str, Any] | None = None, **kwargs: Any) -> AmpdNode:
        """get_node ("ampere") or get_cln_node ("cln"), listening."""
        if implementation == "cln":
            return self.get_cln_node(options, **kwargs)
        if implementation == "ampere":
            return self.get_node(options, listen=True, **kwargs)
        raise ValueError(f"unknown implementation {implementation!r} ('ampere' or 'cln')")

    def protocol_complaints(self, allow: tuple[str, ...] = ()) -> list[str]:
        """Every node's log lines showing a warning or error sent or received, or an UNUSUAL/BROKEN event
        (see ampere.testing.cln.complaints), prefixed with the node's directory."""
        from .cln import complaints

        return [f"{os.path.basename(n.dir)} ({n.implementation}): {ln}" for n in self.nodes
                for ln in complaints(n, allow)]

    def get_nodes(self, n: int, **kwargs: Any) -> list[AmpdNode]:
        return [self.get_node(**kwargs) for _ in range(n)]

    # ---- channels (need a chaind: NodeFactory(base, chaind=...)) ------------------------------------
    def _chain(self) -> Any:
        if self.chaind is None:
            raise RuntimeError("channel helpers need a NodeFactory with a chaind (the node_factory_chain fixture)")
        return self.chaind

    def sync(self, node: AmpdNode, timeout: float = 30.0) -> int:
        """Wait until `node` has processed the chain's tip; returns the height."""
        height = self._chain().rpc("getblockcount")
        wait_for(lambda: node.rpc.getinfo()["blockheight"] >= height, timeout, f"{node.dir} at height {height}")
        return height

    def mine(self, n: int = 1, nodes: list[AmpdNode] | None = None) -> list[str]:
        """Mine n blocks and wait until `nodes` (default: every running node) have seen them."""
        hashes = self._chain().mine(n)
        for node in nodes if nodes is not None else [x for x in self.nodes if x.is_running()]:
            self.sync(node)
        return hashes

    def fund_wallet(self, node: AmpdNode, sat: int, confirm: bool = True) -> str:
        """Send `sat` from chaind's faucet to a fresh address of `node`; with `confirm`, mine it and wait until
        the wallet lists it as confirmed. Returns the txid."""
        from decimal import Decimal

        chain = self._chain()
        height = chain.rpc("getblockcount")
        if height < 101:
            chain.mine(101 - height)
        addr = node.rpc.newaddr("bech32")["bech32"]
        txid = chain.rpc("sendtoaddress", addr, Decimal(sat) / Decimal(10**8))
        if confirm:
            chain.mine(1)
            wait_for(lambda: any(o["txid"] == txid and o["status"] == "confirmed"
                                 for o in node.rpc.listfunds()["outputs"]), 30, f"{sat} sat in {node.dir}'s wallet")
            self.sync(node)
        return txid

    def connect(self, a: AmpdNode, b: AmpdNode) -> None:
        if b.port is None:
            raise RuntimeError(f"{b.dir} does not listen (get_node(listen=True))")
        if not a.rpc.listpeers(b.node_id)["peers"]:
            a.rpc.connect(b.node_id, "127.0.0.1", b.port)

    def fundchannel(self, a: AmpdNode, b: AmpdNode, amount: int = DEFAULT_FUNDAMOUNT, wait_normal: bool = True,
                    **kwargs: Any) -> dict:
        """Connect a to b, fund a's wallet if needed, open a channel of `amount` sat, mine it deep enough and
        (wait_normal) wait until both sides are CHANNELD_NORMAL. Returns fundchannel's result plus
        `short_channel_id` (once normal)."""
        self.connect(a, b)
        have = sum(o["amount_msat"] for o in a.rpc.listfunds()["outputs"]
                   if o["status"] == "confirmed" and not o["reserved"]) // 1000
        if have < amount + 50_000:
            self.fund_wallet(a, amount + 100_000)
        res = a.rpc.fundchannel(b.node_id, amount, **kwargs)
        wait_for(lambda: res["txid"] in self._chain().rpc("getrawmempool"), 30, "funding tx in the mempool")
        self.mine(max(int(res.get("mindepth", 3)), 3), [a, b])
        if wait_normal:
            for x, y in ((a, b), (b, a)):
                wait_for(lambda x=x, y=y: x.channel_state(y) == "CHANNELD_NORMAL", 30,
                         f"{x.dir}: channel with {y.dir} in CHANNELD_NORMAL")
            res = dict(res, short_channel_id=a.rpc.listpeerchannels(b.node_id)["channels"][-1]["short_channel_id"])
        return res

    def line_graph(self, n: int | list[str], fundamount: int = DEFAULT_FUNDAMOUNT, announce_channels: bool = False,
                   wait_for_announce: bool = False, opts: dict[str, Any] | list[dict[str, Any]] | None = None,
                   **kwargs: Any) -> list[AmpdNode]:
        """n nodes in a row, l1 -> l2 -> ... -> ln, each pair with a channel of `fundamount` sat opened by the
        left one (as pyln-testing's line_graph). `opts`: options for every node, or a list, one per node.
        announce_channels: the nodes run with --dev-fast-gossip (unless opts say otherwise).
        wait_for_announce: mine 6 blocks, then (announce_channels) wait until every node's listchannels shows
        every channel in both directions (as pyln-testing's wait_for_channel_announcements).
        `n` may list implementations instead of a count, e.g. ["ampere", "cln", "ampere"] (CLN nodes need
        $CLN_LIGHTNINGD; the test is skipped without it)."""
        kinds = list(n) if isinstance(n, (list, tuple)) else ["ampere"] * n
        n = len(kinds)
        per_node = opts if isinstance(opts, list) else [dict(opts or {}) for _ in range(n)]
        if announce_channels:
            per_node = [dict(o) for o in per_node]
            for o in per_node:
                o.setdefault("dev-fast-gossip", True)
        nodes = [self.get_node_of(kinds[i], dict(per_node[i]), **kwargs) for i in range(n)]
        for a, b in zip(nodes, nodes[1:]):
            self.fund_wallet(a, fundamount + 100_000)
        for a, b in zip(nodes, nodes[1:]):
            self.fundchannel(a, b, fundamount, announce=announce_channels)
        # Each fundchannel waits for its own two nodes only: l1 may still be a few blocks behind the blocks mined
        # for the later channels, and a payment it sends at once then carries a final CLTV the payee refuses.
        for node in nodes:
            self.sync(node)
        if wait_for_announce:
            self.mine(6, nodes)
            if announce_channels:
                self.wait_for_channels(nodes, 2 * (n - 1))
        return nodes

    @staticmethod
    def wait_for_channels(nodes: list[AmpdNode], halves: int, timeout: float = 60.0) -> None:
        """Wait until each node's listchannels has exactly `halves` public channel directions, all active."""
        for node in nodes:
            wait_for(lambda node=node: (lambda chans: len(chans) == halves and all(c["active"] for c in chans))(
                [c for c in node.rpc.listchannels()["channels"] if c["public"]]), timeout,
                f"{node.dir}: {halves} announced channel directions")

    def killall(self) -> None:
        for node in self.nodes:
            try:
                node.stop(timeout=5)
            except Exception:
                node.kill()

    def check_clean_exit(self) -> list[str]:
        """Stop every node; return what went wrong: a non-zero exit or a BROKEN log line."""
        problems = []
        for node in self.nodes:
            was_running = node.is_running()
            try:
                code = node.stop(timeout=10)
            except Exception as e:
                node.kill()
                problems.append(f"{node.dir}: stop failed: {e!r}")
                continue
            if getattr(node, "may_fail", False) or getattr(node, "killed", False):
                continue
            if not was_running and code not in (0, None):
                continue  # it died during the test, which the test itself provoked and checked
            if was_running and code not in (0, None):
                problems.append(f"{node.dir}: exited with {code}: {node.stderr()[-2000:]}")
            if not getattr(node, "allow_broken_log", False):
                broken = [ln for ln in node.logs(since_start=False).splitlines() if "**BROKEN**" in ln]
                if broken:
                    problems.append(f"{node.dir}: BROKEN log lines: {broken[:5]}")
        return problems

    def cleanup(self) -> None:
        self.killall()
        if keep_test_dirs():
            print(f"node directories kept in {self.base_dir}")
            return
        shutil.rmtree(self.base_dir, ignore_errors=True)
