"""amp-chaind as the `bitcoind` test frameworks drive: its one wallet answers the multiwallet calls, sendmany
pays several addresses in one transaction, and bitcoind's log lines tools wait for are printed."""
import os
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from ampere.testing.chain import ChainRpcError, free_port


def test_wallet_calls_and_sendmany(chaind):
    assert chaind.rpc("listwallets") == [""]
    assert chaind.rpc("createwallet", "lightningd-tests") == {"name": "lightningd-tests"}
    with pytest.raises(ChainRpcError, match="already exists"):
        chaind.rpc("createwallet", "lightningd-tests")
    with pytest.raises(ChainRpcError, match="already loaded"):
        chaind.rpc("loadwallet", "lightningd-tests")
    assert chaind.rpc("listwallets") == ["lightningd-tests"]
    chaind.mine(101)
    info = chaind.rpc("getwalletinfo")
    assert info["walletname"] == "lightningd-tests" and info["balance"] > 0
    a, b = chaind.rpc("getnewaddress"), chaind.rpc("getnewaddress")
    txid = chaind.rpc("sendmany", "", {a: Decimal("0.1"), b: 0.25})
    tx = chaind.rpc("getrawtransaction", txid, True)
    paid = {o["scriptPubKey"]["address"]: o["value"] for o in tx["vout"]}
    assert paid[a] == Decimal("0.1") and paid[b] == Decimal("0.25")
    with pytest.raises(ChainRpcError, match="Dummy value"):
        chaind.rpc("sendmany", "x", {a: 0.1})
    with pytest.raises(ChainRpcError, match="Invalid amount"):
        chaind.rpc("sendmany", "", {a: 0})


def test_bitcoind_log_lines(tmp_path):
    """pyln-testing waits for "Done loading" on stdout, and greps UpdateTip / InvalidChainFound lines."""
    datadir = tmp_path / "d"
    datadir.mkdir()
    port = free_port()
    (datadir / "bitcoin.conf").write_text(f"regtest=1\nrpcuser=u\nrpcpassword=p\n[regtest]\nrpcport={port}\n")
    out = open(tmp_path / "stdout", "w")
    proc = subprocess.Popen([sys.executable, "-m", "ampere.chain.regtest.daemon", f"-datadir={datadir}",
                             "-printtoconsole", "-server", "-nowallet", "-txindex", "-debug=rpc"],
                            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.time() + 60
        while "Done loading" not in (tmp_path / "stdout").read_text():
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "stdout").read_text()
            time.sleep(0.1)
        from ampere.testing.chain import ChainD
        c = ChainD(tmp_path, rpcuser="u", rpcpassword="p", port=port)
        [h1, h2] = c.rpc("generatetoaddress", 2, c.rpc("getnewaddress"))
        c.rpc("invalidateblock", h2)
        text = (tmp_path / "stdout").read_text()
        assert f"UpdateTip: new best={h1} height=1 " in text and f"UpdateTip: new best={h2} height=2 " in text
        assert f"InvalidChainFound: invalid block={h2}  height=2" in text
        c.rpc("stop")
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
