"""The same client code against a real bitcoind.  Runs only when $BITCOIND names a bitcoind binary
(none can be installed on CI machines here); otherwise these tests are skipped, visibly."""

import asyncio
import os
import shutil
import socket
import subprocess
import time

import pytest

from ampere.chain.bitcoind import BitcoindError, BitcoindRpc

BITCOIND = os.environ.get("BITCOIND")
pytestmark = [pytest.mark.bitcoind,
              pytest.mark.skipif(not BITCOIND or not shutil.which(BITCOIND), reason="set BITCOIND to a bitcoind binary")]


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def bitcoind(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([BITCOIND, "-regtest", f"-datadir={tmp_path}", f"-rpcport={port}", "-rpcuser=u",
                             "-rpcpassword=p", "-fallbackfee=0.0002", "-listen=0", "-txindex=1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rpc = BitcoindRpc("127.0.0.1", port, "u", "p")
    deadline = time.time() + 60
    while True:
        try:
            asyncio.run(rpc.call("getblockchaininfo"))
            break
        except Exception:
            if time.time() > deadline:
                proc.kill()
                raise
            time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(timeout=30)


def test_client_talks_to_real_bitcoind(bitcoind):
    async def go():
        rpc = BitcoindRpc("127.0.0.1", bitcoind, "u", "p")
        info = await rpc.call("getblockchaininfo")
        assert info["chain"] == "regtest"
        net = await rpc.call("getnetworkinfo")
        assert net["version"] >= 240000
        await rpc.call("createwallet", "w")
        addr = await rpc.call("getnewaddress")
        hashes = await rpc.call("generatetoaddress", 101, addr)
        assert await rpc.call("getblockcount") == 101
        block = await rpc.call("getblock", hashes[0], 2)
        assert block["height"] == 1
        with pytest.raises(BitcoindError) as e:
            await rpc.call("sendrawtransaction", "00")
        assert e.value.code == -22
        await rpc.close()

    asyncio.run(go())
