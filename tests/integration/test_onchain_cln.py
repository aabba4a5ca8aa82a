"""On-chain enforcement against a real Core Lightning peer that cheats (skipped without CLN).

Core Lightning (--developer) signs its commitment with dev-sign-last-tx, the channel moves on (a payment), and
it broadcasts the revoked commitment: Ampere takes CLN's to_local with the revocation key in the block the cheat
is seen, and sweeps its own to_remote.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from pyln.client import LightningRpc

from ampere.primitives.tx import Transaction
from ampere.testing.nodes import free_port

sys.path.insert(0, os.path.dirname(__file__))
from chainutil import sync, wait_for  # noqa: E402

LIGHTNINGD = os.environ.get("LIGHTNINGD") or shutil.which("lightningd") or "/work/cln/bin/lightningd"
pytestmark = pytest.mark.skipif(not os.path.exists(LIGHTNINGD), reason="Core Lightning (lightningd) not available")


class Cln:
    def __init__(self, directory: str, chaind) -> None:
        self.dir = directory
        self.port = free_port()
        os.makedirs(directory, exist_ok=True)
        cli = shutil.which("amp-chain-cli") or os.path.join(os.path.dirname(sys.executable), "amp-chain-cli")
        self.proc = subprocess.Popen(
            [LIGHTNINGD, "--network=regtest", f"--lightning-dir={directory}", f"--log-file={directory}/log",
             f"--bind-addr=127.0.0.1:{self.port}", f"--bitcoin-cli={cli}", "--bitcoin-rpcconnect=127.0.0.1",
             f"--bitcoin-rpcport={chaind.port}", f"--bitcoin-rpcuser={chaind.rpcuser}",
             f"--bitcoin-rpcpassword={chaind.rpcpassword}", "--developer", "--dev-bitcoind-poll=1",
             "--log-level=debug"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.rpc = LightningRpc(os.path.join(directory, "regtest", "lightning-rpc"))
        wait_for(lambda: os.path.exists(os.path.join(directory, "regtest", "lightning-rpc")), 60, "CLN's socket")
        wait_for(self._listening, 60, "CLN listening")
        self.id = self.rpc.getinfo()["id"]

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), 1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        try:
            self.rpc.stop()
            self.proc.wait(30)
        except Exception:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def cln(chaind, tmp_path):
    chaind.mine(101)
    node = Cln(str(tmp_path / "cln"), chaind)
    yield node
    node.stop()


def test_cln_cheats_ampere_takes_its_to_local(node_factory_chain, chaind, cln):
    l1 = node_factory_chain.get_node({"watchtime-blocks": 6})
    node_factory_chain.fund_wallet(l1, 1_500_000)
    l1.rpc.connect(cln.id, "127.0.0.1", cln.port)
    l1.rpc.fundchannel(cln.id, 1_000_000, push_msat=400_000_000)
    chaind.mine(6)
    sync(l1, chaind)
    wait_for(lambda: [c for c in cln.rpc.listpeerchannels()["channels"] if c["state"] == "CHANNELD_NORMAL"]
             and l1.rpc.listpeerchannels()["channels"][0]["state"] == "CHANNELD_NORMAL", 60, "CHANNELD_NORMAL")
    old = Transaction.parse_hex(cln.rpc.call("dev-sign-last-tx", {"id": l1.node_id})["tx"])
    inv = cln.rpc.invoice(20_000_000, "revoke", "revoke")["bolt11"]
    assert l1.rpc.pay(inv)["status"] == "complete"          # CLN's commitment above is now revoked
    wait_for(lambda: l1.rpc.listpeerchannels()["channels"][0]["htlcs"] == [], 30, "settled")
    before = sum(o["amount_msat"] for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed") // 1000

    chaind.rpc("sendrawtransaction", old.serialize().hex())
    chaind.mine(1)
    s = sync(l1, chaind)
    wait_for(lambda: any("taken by our penalty" in x for x in l1.rpc.listpeerchannels()["channels"][0]["status"]),
             30, "the penalty")
    assert chaind.rpc("getblockcount") == s                # in the block the cheat was seen
    cln_to_local = max(o.value for o in old.outputs if len(o.script_pubkey) == 34)
    chaind.mine(1)
    sync(l1, chaind)
    total = sum(o.value for o in old.outputs)
    wait_for(lambda: sum(o["amount_msat"] for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed")
             // 1000 - before > total - 10_000, 30, "everything in l1's wallet")
    print(f"CLN's to_local {cln_to_local} sat taken; l1 holds {total} sat of outputs less fees")
