"""On-chain enforcement against a real Core Lightning peer that cheats (skipped without CLN).

- Core Lightning (--developer) signs its commitment with dev-sign-last-tx, the channel moves on (a payment),
  and it broadcasts the revoked commitment: Ampere takes CLN's to_local with the revocation key in the block
  the cheat is seen, and sweeps its own to_remote;
- Core Lightning force-closes (dev-fail) with an HTLC in flight each way (held by the HODL plugin on both):
  Ampere claims CLN's HTLC on CLN's commitment with the preimage, times its own out after cltv_expiry, and its
  payment fails only once that is 3 deep.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest
from pyln.client import LightningRpc

from ampere.primitives.tx import Transaction
from ampere.testing.nodes import free_port

sys.path.insert(0, os.path.dirname(__file__))
from chainutil import sync, wait_for  # noqa: E402

LIGHTNINGD = os.environ.get("LIGHTNINGD") or shutil.which("lightningd") or "/work/cln/bin/lightningd"
pytestmark = pytest.mark.skipif(not os.path.exists(LIGHTNINGD), reason="Core Lightning (lightningd) not available")


class Cln:
    def __init__(self, directory: str, chaind, *extra: str) -> None:
        self.dir = directory
        self.port = free_port()
        os.makedirs(directory, exist_ok=True)
        cli = shutil.which("amp-chain-cli") or os.path.join(os.path.dirname(sys.executable), "amp-chain-cli")
        self.proc = subprocess.Popen(
            [LIGHTNINGD, "--network=regtest", f"--lightning-dir={directory}", f"--log-file={directory}/log",
             f"--bind-addr=127.0.0.1:{self.port}", f"--bitcoin-cli={cli}", "--bitcoin-rpcconnect=127.0.0.1",
             f"--bitcoin-rpcport={chaind.port}", f"--bitcoin-rpcuser={chaind.rpcuser}",
             f"--bitcoin-rpcpassword={chaind.rpcpassword}", "--developer", "--dev-bitcoind-poll=1",
             "--log-level=debug", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Plugins (#!/usr/bin/env python3) run with the Python that has pyln-client.
            env={**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")})
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


HODL = os.path.join(os.path.dirname(__file__), "..", "plugins", "hodl.py")


def normal(l1, cln, chaind) -> None:
    """Both sides in CHANNELD_NORMAL (CLN sees blocks by polling: mine until it does)."""
    def both():
        theirs = [c["state"] for c in cln.rpc.listpeerchannels()["channels"]]
        ours = [c["state"] for c in l1.rpc.listpeerchannels()["channels"]]
        return theirs == ["CHANNELD_NORMAL"] and ours == ["CHANNELD_NORMAL"]
    try:
        wait_for(both, 90, "CHANNELD_NORMAL")
    except TimeoutError:
        raise AssertionError(f"CLN: {cln.rpc.listpeerchannels()['channels']}\nampd: "
                             f"{l1.rpc.listpeerchannels()['channels']}\nCLN height "
                             f"{cln.rpc.getinfo()['blockheight']}, chain {chaind.rpc('getblockcount')}") from None


@pytest.fixture
def cln(chaind, tmp_path):
    chaind.mine(101)
    node = Cln(str(tmp_path / "cln"), chaind, f"--plugin={HODL}")   # the same pyln HODL plugin runs on CLN
    yield node
    node.stop()


def test_cln_cheats_ampere_takes_its_to_local(node_factory_chain, chaind, cln):
    l1 = node_factory_chain.get_node({"watchtime-blocks": 6})
    node_factory_chain.fund_wallet(l1, 1_500_000)
    l1.rpc.connect(cln.id, "127.0.0.1", cln.port)
    l1.rpc.fundchannel(cln.id, 1_000_000, push_msat=400_000_000)
    chaind.mine(6)
    sync(l1, chaind)
    normal(l1, cln, chaind)
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


def test_cln_force_closes_with_htlcs_both_ways(node_factory_chain, chaind, cln):
    l1 = node_factory_chain.get_node({"plugin": HODL})
    node_factory_chain.fund_wallet(l1, 1_500_000)
    l1.rpc.connect(cln.id, "127.0.0.1", cln.port)
    l1.rpc.fundchannel(cln.id, 1_000_000, push_msat=400_000_000)
    chaind.mine(6)
    sync(l1, chaind)
    normal(l1, cln, chaind)
    scid = l1.rpc.listpeerchannels()["channels"][0]["short_channel_id"]
    # l1 -> CLN, held by CLN's HODL plugin; CLN -> l1, held by l1's.
    inv_c = cln.rpc.invoice(30_000_000, "hodl-c", "c")
    l1.rpc.sendpay([{"id": cln.id, "channel": scid, "amount_msat": 30_000_000, "delay": 18}], inv_c["payment_hash"],
                   payment_secret=inv_c["payment_secret"])
    inv_l = l1.rpc.invoice(50_000_000, "hodl-l", "l")
    cln.rpc.sendpay([{"id": l1.node_id, "channel": scid, "amount_msat": 50_000_000, "delay": 18}],
                    inv_l["payment_hash"], payment_secret=inv_l["payment_secret"])
    wait_for(lambda: inv_c["payment_hash"] in cln.rpc.call("listheld")["held"]
             and inv_l["payment_hash"] in l1.rpc.call("listheld")["held"], 30, "both held")
    wait_for(lambda: len(l1.rpc.listpeerchannels()["channels"][0]["htlcs"]) == 2
             and all(h["state"] in ("SENT_ADD_ACK_REVOCATION", "RCVD_ADD_ACK_REVOCATION")
                     for h in l1.rpc.listpeerchannels()["channels"][0]["htlcs"]), 30, "HTLCs committed")
    expiry = next(h["expiry"] for h in l1.rpc.listpeerchannels()["channels"][0]["htlcs"] if h["direction"] == "out")

    cln.rpc.call("dev-fail", {"id": l1.node_id})
    wait_for(lambda: len(chaind.rpc("getrawmempool")) == 1, 30, "CLN's commitment")
    chaind.mine(1)
    sync(l1, chaind)
    wait_for(lambda: l1.rpc.listpeerchannels()["channels"][0]["state"] == "ONCHAIN", 30, "ONCHAIN")
    # l1 learns the preimage of CLN's HTLC (its invoice): claimed on CLN's commitment directly.
    l1.rpc.call("release", {"payment_hash": inv_l["payment_hash"]})
    l1.wait_for_log("claiming it there")
    wait_for(lambda: any("being claimed by our" in x for x in l1.rpc.listpeerchannels()["channels"][0]["status"]),
             30, "the preimage claim")
    # l1's own HTLC: CLN does not know the preimage (held, never released); l1 takes it back after expiry.
    chaind.mine(expiry - chaind.rpc("getblockcount"))
    sync(l1, chaind)
    wait_for(lambda: sum("timed out by our" in x or "being claimed by our" in x
                         for x in l1.rpc.listpeerchannels()["channels"][0]["status"]) >= 1, 30, "timeout claim")
    chaind.mine(1)
    sync(l1, chaind)
    assert l1.rpc.listsendpays(payment_hash=inv_c["payment_hash"])["payments"][0]["status"] == "pending"
    chaind.mine(2)
    sync(l1, chaind)
    wait_for(lambda: l1.rpc.listsendpays(payment_hash=inv_c["payment_hash"])["payments"][0]["status"] == "failed",
             30, "our payment failed once the timeout is 3 deep")
    status = l1.rpc.listpeerchannels()["channels"][0]["status"]
    assert any("claimed with the preimage by our" in x for x in status), status
    assert any("timed out by our" in x for x in status), status
