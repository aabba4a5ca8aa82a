"""amp-chain-cli follows bitcoin-cli's conventions; BitcoindRpc talks to amp-chaind."""
import asyncio
import json
import subprocess
import sys

import pytest

from ampere.chain.bitcoind import BitcoindAuthError, BitcoindError, BitcoindRpc, BitcoindUnreachable, btc_to_sat
from ampere.testing.chain import ChainD, free_port


@pytest.fixture(scope="module")
def cookie_chaind(tmp_path_factory):
    node = ChainD(tmp_path_factory.mktemp("cookie"), rpcuser=None, rpcpassword=None)
    node.start()
    yield node
    node.stop()


def cli(chain, *args, stdin=None, extra=None):
    cmd = [sys.executable, "-m", "ampere.chain.cli", *(extra if extra is not None else chain.cli_args()), *args]
    return subprocess.run(cmd, capture_output=True, text=True, input=stdin, timeout=60)


def test_cli_output_conventions(cookie_chaind):
    chain = cookie_chaind
    # Cookie auth: only -datadir and -rpcport.
    r = cli(chain, "getblockcount")
    assert (r.returncode, r.stdout, r.stderr) == (0, "0\n", "")
    r = cli(chain, "getnewaddress")  # a string result prints raw, no quotes
    assert r.returncode == 0 and r.stdout.startswith("bcrt1q") and r.stdout.endswith("\n")
    addr = r.stdout.strip()
    r = cli(chain, "generatetoaddress", "2", addr)  # "2" converted to a number
    hashes = json.loads(r.stdout)
    assert r.returncode == 0 and len(hashes) == 2 and r.stdout.startswith('[\n  "')
    r = cli(chain, "getblock", hashes[0])
    assert r.returncode == 0 and '\n  "hash": "' + hashes[0] + '",\n' in r.stdout
    r = cli(chain, "-named", "getblock", f"blockhash={hashes[0]}", "verbosity=0")
    assert r.returncode == 0 and len(r.stdout.strip()) > 160
    r = cli(chain, "getmempoolinfo")  # amounts print exactly as sent
    assert '"minrelaytxfee": 0.00001000' in r.stdout
    r = cli(chain, "getrawmempool")
    assert r.stdout == "[\n]\n"
    r = cli(chain, "-stdin", "getblockhash", stdin="1\n")
    assert r.stdout.strip() == hashes[0]
    # null prints nothing
    r = cli(chain, "invalidateblock", hashes[1])
    assert (r.returncode, r.stdout) == (0, "")
    chain.rpc("reconsiderblock", hashes[1])


def test_cli_errors_and_exit_codes(cookie_chaind, tmp_path):
    chain = cookie_chaind
    r = cli(chain, "getblockhash", "1000")
    assert r.returncode == 8 and r.stdout == ""
    assert r.stderr == "error code: -8\nerror message:\nBlock height out of range\n"
    r = cli(chain, "sendrawtransaction", "00")
    assert r.returncode == 22 and r.stderr.startswith("error code: -22\n")
    r = cli(chain, "nosuchmethod")
    assert r.returncode == 32601 & 0xFF and "error code: -32601" in r.stderr
    # Connection failure: exit 1, "error: Could not connect to the server ..."
    r = cli(chain, "getblockcount", extra=[f"-datadir={chain.datadir}", f"-rpcport={free_port()}"])
    assert r.returncode == 1 and r.stderr.startswith("error: Could not connect to the server 127.0.0.1:")
    # Wrong password: exit 1 with bitcoin-cli's message.
    r = cli(chain, "getblockcount", extra=[f"-rpcport={chain.port}", "-rpcuser=x", "-rpcpassword=y"])
    assert r.returncode == 1 and r.stderr.strip() == "error: Authorization failed: Incorrect rpcuser or rpcpassword"
    # -stdinrpcpass reads the password from the first line.
    user, password = open(chain.cookie_path).read().strip().split(":", 1)
    r = cli(chain, "getblockcount", stdin=password + "\n",
            extra=[f"-rpcport={chain.port}", f"-rpcuser={user}", "-stdinrpcpass"])
    assert r.returncode == 0 and r.stdout.strip().isdigit()
    # No cookie, no password.
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli(chain, "getblockcount", extra=[f"-datadir={empty}", f"-rpcport={chain.port}"])
    assert r.returncode == 1 and "Could not locate RPC credentials" in r.stderr


def test_bitcoind_rpc_client(cookie_chaind, tmp_path):
    chain = cookie_chaind

    async def scenario():
        by_cookie = BitcoindRpc("127.0.0.1", chain.port, datadir=chain.datadir, network="regtest")
        user, password = open(chain.cookie_path).read().strip().split(":", 1)
        by_password = BitcoindRpc("127.0.0.1", chain.port, user=user, password=password)
        try:
            h1 = await by_cookie.call("getblockcount")
            assert await by_password.call("getblockcount") == h1
            info = await by_cookie.call("getnetworkinfo")
            assert info["version"] >= 270000
            assert btc_to_sat(info["relayfee"]) == 1000  # exact Decimal amounts
            # Keep-alive: many calls, one connection; concurrency is serialised safely.
            counts = await asyncio.gather(*[by_cookie.call("getblockcount") for _ in range(20)])
            assert set(counts) == {h1}
            with pytest.raises(BitcoindError) as e:
                await by_cookie.call("getblockhash", 10**6)
            assert e.value.code == -8
            out = await by_cookie.batch([("getblockcount", []), ("getblockhash", [10**6]), ("getbestblockhash", [])])
            assert out[0] == h1 and isinstance(out[1], BitcoindError) and len(out[2]) == 64
        finally:
            await by_cookie.close()
            await by_password.close()
        wrong = BitcoindRpc("127.0.0.1", chain.port, user="__cookie__", password="wrong")
        with pytest.raises(BitcoindAuthError, match="refused the credentials"):
            await wrong.call("getblockcount")
        await wrong.close()
        nobody = BitcoindRpc("127.0.0.1", free_port(), user="a", password="b", timeout=5)
        with pytest.raises(BitcoindUnreachable):
            await nobody.call("getblockcount")

    asyncio.run(scenario())


def test_http_shapes(cookie_chaind):
    """JSON-RPC 2.0 replies, batches and HTTP statuses, as bitcoind."""
    import base64
    import http.client
    chain = cookie_chaind
    auth = "Basic " + base64.b64encode(open(chain.cookie_path).read().strip().encode()).decode()

    def post(body):
        c = http.client.HTTPConnection("127.0.0.1", chain.port, timeout=10)
        c.request("POST", "/", body, {"Authorization": auth})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    status, data = post('{"jsonrpc":"2.0","id":7,"method":"getblockcount"}')
    assert status == 200 and set(json.loads(data)) == {"jsonrpc", "result", "id"}
    status, data = post('{"id":1,"method":"nosuchmethod"}')
    assert status == 404 and json.loads(data)["error"]["code"] == -32601
    status, data = post('{"id":1,"method":"getblockhash","params":[99999]}')
    assert status == 500 and json.loads(data) == {"result": None, "error": {
        "code": -8, "message": "Block height out of range"}, "id": 1}
    status, data = post('[{"id":1,"method":"getblockcount"},{"id":2,"method":"nosuchmethod"}]')
    replies = json.loads(data)
    assert status == 200 and replies[0]["error"] is None and replies[1]["error"]["code"] == -32601
    status, data = post("{not json")
    assert status == 500 and json.loads(data)["error"]["code"] == -32700


# What neither a whole query (connect, send, read, print) may import: each costs milliseconds of
# start-up, and Core Lightning's bcli plugin runs amp-chain-cli for every chain query.  getaddrinfo
# given a str host imports the idna codec (stringprep, unicodedata, re): the host goes as bytes.
HEAVY_AT_RUN = ("json", "re", "socket", "enum", "encodings.idna", "stringprep", "unicodedata", "http", "typing")


def test_a_query_imports_nothing_heavy(cookie_chaind):
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "ampere.chain.cli", *cookie_chaind.cli_args(),
                        "getblockchaininfo"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and '"chain": "regtest"' in r.stdout
    imported = {line.split("|")[2].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "ampere.cli_json" in imported  # the probe sees imports (the -m module itself runs as __main__)
    assert not imported & set(HEAVY_AT_RUN), sorted(imported & set(HEAVY_AT_RUN))
