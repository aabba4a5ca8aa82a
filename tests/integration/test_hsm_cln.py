"""The same hsm_secret gives the same node id, wallet addresses, makesecret and runes in Core Lightning and ampd.

Needs Core Lightning: CLN_LIGHTNINGD names its lightningd (lightning-hsmtool beside it).  Both formats:
the legacy 32-byte secret and the v25.12+ mnemonic file pyln-testing writes.  CLN runs on amp-chaind
(its bcli plugin drives amp-chain-cli); ampd runs on the same chain.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from mnemonic import Mnemonic

pytestmark = pytest.mark.cln

CLN = os.environ.get("CLN_LIGHTNINGD")
if not CLN:
    pytest.skip("CLN_LIGHTNINGD is not set (path to Core Lightning's lightningd)", allow_module_level=True)

SEED = (b"lightning-1" + bytes(32))[:32]
FILES = {
    "legacy": SEED,
    "mnemonic": bytes(32) + Mnemonic("english").to_mnemonic(SEED[:16]).encode(),
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cln_first_addresses(tmp_path, chaind, data):
    ldir = tmp_path / "cln"
    (ldir / "regtest").mkdir(parents=True)
    (ldir / "regtest" / "hsm_secret").write_bytes(data)
    cli_bin = shutil.which("amp-chain-cli") or os.path.join(os.path.dirname(sys.executable), "amp-chain-cli")
    proc = subprocess.Popen([CLN, "--network=regtest", f"--lightning-dir={ldir}", f"--log-file={ldir}/log",
                             f"--bind-addr=127.0.0.1:{_free_port()}", f"--bitcoin-cli={cli_bin}",
                             "--bitcoin-rpcconnect=127.0.0.1", f"--bitcoin-rpcport={chaind.port}",
                             f"--bitcoin-rpcuser={chaind.rpcuser}", f"--bitcoin-rpcpassword={chaind.rpcpassword}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli = [os.path.join(os.path.dirname(CLN), "lightning-cli"), f"--lightning-dir={ldir}", "--network=regtest"]
    try:
        deadline = time.time() + 60
        while True:
            r = subprocess.run(cli + ["getinfo"], capture_output=True, text=True)
            if r.returncode == 0:
                break
            assert proc.poll() is None and time.time() < deadline, (ldir / "log").read_text()[-3000:]
            time.sleep(0.3)
        node_id = json.loads(r.stdout)["id"]
        addr = json.loads(subprocess.run(cli + ["newaddr", "all"], capture_output=True, text=True, check=True).stdout)
        secret = json.loads(subprocess.run(cli + ["makesecret", "-k", "string=ampere"], capture_output=True,
                                           text=True, check=True).stdout)["secret"]
        rune = json.loads(subprocess.run(cli + ["createrune", "-k", 'restrictions=[["method=getinfo","method^list"],'
                                                '["pnum<2"]]'], capture_output=True, text=True, check=True).stdout)
        return node_id, addr, secret, rune
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_node_id_and_addresses_match_cln(fmt, tmp_path, chaind, node_factory_chain):
    chaind.mine(1)
    data = FILES[fmt]
    hsmtool = os.path.join(os.path.dirname(CLN), "lightning-hsmtool")
    path = tmp_path / "hsm_secret"
    path.write_bytes(data)
    tool_id = subprocess.run([hsmtool, "getnodeid", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    cln_id, cln_addr, cln_secret, cln_rune = _cln_first_addresses(tmp_path, chaind, data)
    assert cln_id == tool_id

    node = node_factory_chain.get_node(start=False)
    os.makedirs(node.netdir, exist_ok=True)
    with open(os.path.join(node.netdir, "hsm_secret"), "wb") as f:
        f.write(data)
    node.start()
    assert node.rpc.getinfo()["id"] == cln_id
    ours = node.rpc.newaddr("all")
    assert ours["bech32"] == cln_addr["bech32"] and ours["p2tr"] == cln_addr["p2tr"]
    assert node.rpc.makesecret(string="ampere")["secret"] == cln_secret
    # The same master secret: the first rune with the same restrictions is the same rune, and each node
    # accepts the other's.
    ours = node.rpc.createrune(restrictions=[["method=getinfo", "method^list"], ["pnum<2"]])
    assert ours == {"rune": cln_rune["rune"], "unique_id": "0"}
    assert node.rpc.checkrune(rune=cln_rune["rune"], method="listpeers", params=[])["valid"] is True


def test_commando_with_cln(tmp_path, chaind, node_factory_chain):
    """Commando both ways between ampd and Core Lightning, with each side's runes."""
    chaind.mine(1)
    ldir = tmp_path / "cln"
    (ldir / "regtest").mkdir(parents=True)
    port = _free_port()
    cli_bin = shutil.which("amp-chain-cli") or os.path.join(os.path.dirname(sys.executable), "amp-chain-cli")
    proc = subprocess.Popen([CLN, "--network=regtest", f"--lightning-dir={ldir}", f"--log-file={ldir}/log",
                             f"--bind-addr=127.0.0.1:{port}", f"--bitcoin-cli={cli_bin}",
                             "--bitcoin-rpcconnect=127.0.0.1", f"--bitcoin-rpcport={chaind.port}",
                             f"--bitcoin-rpcuser={chaind.rpcuser}", f"--bitcoin-rpcpassword={chaind.rpcpassword}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli = [os.path.join(os.path.dirname(CLN), "lightning-cli"), f"--lightning-dir={ldir}", "--network=regtest"]

    def cln(*args):
        r = subprocess.run(cli + list(args), capture_output=True, text=True, timeout=60)
        return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None

    try:
        deadline = time.time() + 60
        while cln("getinfo")[0] != 0:
            assert proc.poll() is None and time.time() < deadline, (ldir / "log").read_text()[-3000:]
            time.sleep(0.3)
        cln_id = cln("getinfo")[1]["id"]
        l1 = node_factory_chain.get_node(listen=True)
        wait_until = time.time() + 30
        while True:   # CLN listens once it has synced the chain
            try:
                l1.rpc.connect(cln_id, "127.0.0.1", port)
                break
            except Exception:
                assert time.time() < wait_until
                time.sleep(0.5)
        cln_rune = cln("createrune", "-k", 'restrictions=[["method=getinfo"]]')[1]["rune"]
        assert l1.rpc.commando(peer_id=cln_id, method="getinfo", rune=cln_rune)["id"] == cln_id
        amp_rune = l1.rpc.createrune(restrictions=[["method=getinfo"]])["rune"]
        code, out = cln("commando", "-k", f"peer_id={l1.info['id']}", "method=getinfo", f"rune={amp_rune}")
        assert code == 0 and out["id"] == l1.info["id"]
        code, out = cln("commando", "-k", f"peer_id={l1.info['id']}", "method=listfunds", f"rune={amp_rune}")
        assert code != 0 and "Not permitted" in json.dumps(out)
    finally:
        proc.terminate()
        proc.wait(30)
