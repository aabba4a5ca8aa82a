"""Core Lightning for side-by-side figures: one lightningd on an amp-chaind (CLN's bcli plugin
drives amp-chain-cli), in a temp dir, stopped on exit.  The binary: $LIGHTNINGD, or
/work/cln/bin/lightningd (see ../shared/cln/README.md); `available()` says whether there is one.

    with ClnNode(chain, plugins=[...]) as cln:
        LightningRpc(cln.rpc_path).getinfo()
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from ampere.testing.chain import free_port
from ampere.testing.nodes import spawn_env

LIGHTNINGD = os.environ.get("LIGHTNINGD", "/work/cln/bin/lightningd")


def available() -> bool:
    return os.access(LIGHTNINGD, os.X_OK)


class ClnNode:
    def __init__(self, chain, plugins: list[str] = (), options: list[str] = ()) -> None:
        self.chain = chain
        self.dir = tempfile.mkdtemp(prefix="amp-bench-cln-")
        self.rpc_path = os.path.join(self.dir, "regtest", "lightning-rpc")
        cli = os.path.join(os.path.dirname(sys.executable), "amp-chain-cli")
        self.args = [LIGHTNINGD, "--network=regtest", f"--lightning-dir={self.dir}",
                     f"--log-file={os.path.join(self.dir, 'log')}", f"--bind-addr=127.0.0.1:{free_port()}",
                     f"--bitcoin-cli={cli}", "--bitcoin-rpcconnect=127.0.0.1", f"--bitcoin-rpcport={chain.port}",
                     f"--bitcoin-rpcuser={chain.rpcuser}", f"--bitcoin-rpcpassword={chain.rpcpassword}",
                     *[f"--plugin={p}" for p in plugins], *options]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "ClnNode":
        self.proc = subprocess.Popen(self.args, env=spawn_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()  # `with` calls __exit__ only after __enter__ returned: no lightningd left behind
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        from pyln.client import LightningRpc

        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lightningd exited ({self.proc.returncode}); see {self.dir}/log")
            if os.path.exists(self.rpc_path):
                try:
                    LightningRpc(self.rpc_path).getinfo()
                    return
                except Exception:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("lightningd did not answer getinfo within 60 s")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            try:
                tail = open(os.path.join(self.dir, "log")).read()[-2000:]
            except OSError:
                tail = ""
            print(f"lightningd exited early ({self.proc.returncode}); its log ends:\n{tail}", file=sys.stderr)
        if self.proc is not None and self.proc.poll() is None:
            try:
                from pyln.client import LightningRpc

                LightningRpc(self.rpc_path).stop()
                self.proc.wait(20)
            except Exception:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
