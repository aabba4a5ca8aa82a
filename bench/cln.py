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
from typing import Callable

from ampere.ln.gossip.crc32c import crc32c
from ampere.testing.chain import free_port
from ampere.testing.nodes import spawn_env

LIGHTNINGD = os.environ.get("LIGHTNINGD", "/work/cln/bin/lightningd")


def available() -> bool:
    return os.access(LIGHTNINGD, os.X_OK)


class ClnNode:
    def __init__(self, chain, plugins: list[str] = (), options: list[str] = (),
                 prepare: Callable[[str], None] | None = None) -> None:
        """`prepare(network_dir)`, if given, fills lightningd's network directory before it starts (a gossip_store);
        if it fails, the directory goes as on any other failure to start."""
        self.chain = chain
        self.prepare = prepare
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
        try:
            if self.prepare is not None:
                network_dir = os.path.join(self.dir, "regtest")
                os.makedirs(network_dir, exist_ok=True)
                self.prepare(network_dir)
            self.proc = subprocess.Popen(self.args, env=spawn_env(), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
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


# --- Core Lightning's gossip_store, for the same graph on both sides -----------------------------------------
# The format is CLN's doc/developers-guide "gossip_store" (version byte, then records): a record is a header (be16
# flags, be16 length, be32 CRC-32C of the message continued from the timestamp -- ccan's crc32c(start, buf), which
# is BOLT 7's CRC-32C continued from `start` -- be32 timestamp) and the message. Version 16 (major 0), the one
# v26.06 writes: it starts with a uuid record (type 4107), every record has the "completed" flag, and a
# channel_announcement is followed at once by its capacity (type 4101, u64 satoshis). gossipd loads such a file
# strictly (a bad checksum or an unknown record makes it start from an empty store).
_GOSSIP_STORE_VERSION = 16
_COMPLETED = 0x2000
_UUID, _CHANNEL_AMOUNT = 4107, 4101


def _record(msg: bytes, timestamp: int) -> bytes:
    return (_COMPLETED.to_bytes(2, "big") + len(msg).to_bytes(2, "big") + crc32c(msg, timestamp).to_bytes(4, "big")
            + timestamp.to_bytes(4, "big") + msg)


def write_gossip_store(path: str, net, now: int) -> None:
    """CLN's gossip_store file holding a generated network (ampere.testing.gossip_factory.random_network): what a
    lightningd that had received and validated it would have, so that its getroute runs on the same graph as ampd's.
    Every record's header says `now` (updates and node announcements carry their own timestamps inside)."""
    out = [bytes([_GOSSIP_STORE_VERSION]), _record(_UUID.to_bytes(2, "big") + os.urandom(32), 0)]
    for ann, capacity_sat in net.announcements:
        out.append(_record(ann, now))
        out.append(_record(_CHANNEL_AMOUNT.to_bytes(2, "big") + int(capacity_sat).to_bytes(8, "big"), now))
    out += [_record(upd, now) for upd in net.updates]
    out += [_record(na, now) for na in net.node_announcements]
    with open(path, "wb") as f:
        f.write(b"".join(out))
