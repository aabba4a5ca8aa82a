"""ampd with its keys in a separate signer process (python -m ampere.node.signer.server, --signer-socket):
the node opens a channel, pays and is paid, makes invoices and closes, without ever reading hsm_secret;
and when the signer dies, what needs a signature fails with an error while the node keeps running and
its channel state does not move."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from pyln.client import RpcError

from ampere.node.signer.hsm_secret import new_hsm_secret_bytes, parse_hsm_secret
from ampere.node.signer.signer import LocalSigner
from ampere.testing.nodes import keep_test_dirs, spawn_env

_spec = importlib.util.spec_from_file_location("chainutil", os.path.join(os.path.dirname(__file__), "chainutil.py"))
chainutil = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chainutil)
wait_for = chainutil.wait_for

CAPACITY_SAT = 1_000_000
DELAY = 30


class SignerProcess:
    """The signer, in its own directory (the node's lightning-dir never holds hsm_secret)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="amp-signer-")
        self.hsm_secret = os.path.join(self.dir, "hsm_secret")
        data = new_hsm_secret_bytes()
        with open(self.hsm_secret, "wb") as f:
            f.write(data)
        os.chmod(self.hsm_secret, 0o600)
        self.secret = parse_hsm_secret(data)
        self.socket = os.path.join(self.dir, "signer.sock")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ampere.node.signer.server", "--hsm-secret", self.hsm_secret, "--socket", self.socket],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=spawn_env(), text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("signer ready"), (line, self.proc.stderr.read() if self.proc.poll() is not None else "")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture
def signer():
    s = SignerProcess()
    try:
        s.start()
        yield s
    finally:
        s.stop()
        if not keep_test_dirs():  # its directory holds an hsm_secret: never left behind in /tmp
            shutil.rmtree(s.dir, ignore_errors=True)


def to_us(node) -> int:
    return node.rpc.listpeerchannels()["channels"][0]["to_us_msat"]


def pay(src, dst, scid, inv) -> dict:
    route = [{"id": dst.rpc.getinfo()["id"], "channel": scid, "delay": DELAY, "amount_msat": inv["amount_msat"]}]
    src.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    return src.rpc.waitsendpay(inv["payment_hash"], 60)


def open_channel(node_factory, chaind, signer):
    """l1 (keys in the signer process) funds a channel to l2 (an ordinary node); both CHANNELD_NORMAL."""
    sock = os.path.join(node_factory.base_dir, "peer2")
    # allow_broken_log: a node whose signer dies logs BROKEN for each operation that could not be signed.
    l1 = node_factory.get_node(options={"signer-socket": signer.socket}, allow_broken_log=True)
    l2 = node_factory.get_node(**{"bind-addr": sock})
    if chaind.rpc("getblockcount") < 101:
        chaind.mine(101)
    chainutil.fund(l1, chaind, ["0.02"])  # an address from the signer's xpub
    id2 = l2.rpc.getinfo()["id"]
    l1.rpc.connect(f"{id2}@{sock}")  # BOLT 8 with the signer's ECDH
    l1.rpc.fundchannel(id2, CAPACITY_SAT)  # the funding input signed by the signer
    chaind.mine(6)
    for n in (l1, l2):
        chainutil.sync(n, chaind)
    wait_for(lambda: all(n.rpc.listpeerchannels()["channels"] and
                         n.rpc.listpeerchannels()["channels"][0]["state"] == "CHANNELD_NORMAL" for n in (l1, l2)),
             60, "channel normal")
    return l1, l2, l1.rpc.listpeerchannels()["channels"][0]["short_channel_id"]


def test_node_runs_against_the_signer_process(node_factory_chain, chaind, signer):
    l1, l2, scid = open_channel(node_factory_chain, chaind, signer)
    # The node's identity is the signer's: the id its hsm_secret gives.
    assert l1.rpc.getinfo()["id"] == LocalSigner(signer.secret).node_id.hex()

    # l1 pays l2 (commitment and HTLC signatures from the signer), then l2 pays l1's invoice (signed by the
    # signer; l1 peels the onion with the signer's ECDH and revokes with its per-commitment secrets).
    inv2 = l2.rpc.invoice(20_000_000, "to-l2", "paid by the signer's node")
    inv2["amount_msat"] = 20_000_000
    assert pay(l1, l2, scid, inv2)["status"] == "complete"
    inv1 = l1.rpc.invoice(5_000_000, "from-signer", "paid to the signer's node")
    inv1["amount_msat"] = 5_000_000
    assert l2.rpc.decode(inv1["bolt11"])["payee"] == l1.rpc.getinfo()["id"]
    assert pay(l2, l1, scid, inv1)["status"] == "complete"
    assert l1.rpc.listinvoices("from-signer")["invoices"][0]["status"] == "paid"
    # (waitsendpay returns at the preimage; the commitments settle just after)
    wait_for(lambda: to_us(l2) == 15_000_000 and to_us(l1) == CAPACITY_SAT * 1000 - 15_000_000, 30, "settled")
    # makesecret comes from the signer too (hsmd's derive_secret, the same as in-process).
    assert l1.rpc.makesecret(string="x")["secret"] == LocalSigner(signer.secret).derive_secret(b"x").hex()

    # Mutual close: closing_signed signed by the signer; the closing transaction confirms.
    res = l1.rpc.close(l2.rpc.getinfo()["id"])
    assert res["type"] == "mutual"
    chaind.mine(1)
    for n in (l1, l2):
        chainutil.sync(n, chaind)
    wait_for(lambda: l1.rpc.listpeerchannels()["channels"] == [] or
             l1.rpc.listpeerchannels()["channels"][0]["state"] in ("ONCHAIN", "CLOSINGD_COMPLETE"), 60, "closed")
    # ... and the node never had the keys: no hsm_secret was read or created in its directory.
    assert not os.path.exists(os.path.join(l1.netdir, "hsm_secret"))
    assert not os.path.exists(os.path.join(l1.dir, "hsm_secret"))


def test_a_dead_signer_fails_cleanly(node_factory_chain, chaind, signer):
    l1, l2, scid = open_channel(node_factory_chain, chaind, signer)
    first = l2.rpc.invoice(40_000_000, "first", "so that l2 can pay back")
    first["amount_msat"] = 40_000_000
    assert pay(l1, l2, scid, first)["status"] == "complete"
    wait_for(lambda: to_us(l2) == 40_000_000 and not l1.rpc.listpeerchannels()["channels"][0]["htlcs"], 30, "settled")
    inv = l1.rpc.invoice(30_000_000, "before", "made before the signer died")
    inv["amount_msat"] = 30_000_000
    state = l1.rpc.listpeerchannels()["channels"][0]
    signer.kill()

    # A signing RPC fails with an error; the node answers on.
    with pytest.raises(RpcError):
        l1.rpc.invoice(1000, "after", "no signer")
    assert l1.rpc.listinvoices("after")["invoices"] == []
    with pytest.raises(RpcError):
        l1.rpc.makesecret(string="x")

    # A payment from l1: its HTLC is offered, but no commitment can be signed, so it stays pending.
    out = l2.rpc.invoice(1_000_000, "after-out", "l1 cannot sign")
    l1.rpc.sendpay([{"id": l2.rpc.getinfo()["id"], "channel": scid, "delay": DELAY, "amount_msat": 1_000_000}],
                   out["payment_hash"], payment_secret=out["payment_secret"])
    with pytest.raises(RpcError) as e:
        l1.rpc.waitsendpay(out["payment_hash"], 3)
    assert e.value.error["code"] == 200  # "Timed out while waiting": still pending

    # A payment to l1 needs its signatures: it does not go through, and l1's channel does not move.
    route = [{"id": l1.rpc.getinfo()["id"], "channel": scid, "delay": DELAY, "amount_msat": 30_000_000}]
    l2.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    time.sleep(3)
    assert l1.is_running()
    now = l1.rpc.listpeerchannels()["channels"][0]
    assert now["to_us_msat"] == state["to_us_msat"]
    assert l1.rpc.listinvoices("before")["invoices"][0]["status"] == "unpaid"
    assert l2.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] != "complete"

    # The signer comes back: the client reconnects on its next call, l1 reconnects to l2 (the failed message had
    # hung up on it), channel_reestablish retransmits, and the payment goes through.
    signer.start()
    wait_for(lambda: l2.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] == "complete",
             90, "payment after the signer restarted")
    assert l1.rpc.listinvoices("before")["invoices"][0]["status"] == "paid"
    assert l1.rpc.waitsendpay(out["payment_hash"], 60)["status"] == "complete"
