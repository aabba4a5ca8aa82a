"""bitcoin.conf is read once, the way bitcoind reads it, by amp-chaind and amp-chain-cli alike (they used to
differ: the client ignored `regtest.key=` lines, kept only one value and read `-conf` relative to the cwd)."""

import base64
import os

from ampere.chain import cli as chain_cli
from ampere.chain.bitcoin_conf import conf_path, read_bitcoin_conf

CONF = """\
# a comment
rpcuser=alice   # trailing comment
rpcauth=one
server
main.rpcport=8332
regtest.rpcport=18999
rpcauth=two
[test]
rpcpassword=testnet-only
[regtest]
rpcpassword=secret
fallbackfee=0.0002
[main]
rpcbind=0.0.0.0
"""


def test_sections_prefixes_and_values(tmp_path):
    path = tmp_path / "bitcoin.conf"
    path.write_text(CONF)
    assert read_bitcoin_conf(str(path)) == {
        "rpcuser": ["alice"],
        "rpcauth": ["one", "two"],            # every value kept, in file order
        "server": ["1"],                      # a bare key is "1"
        "rpcport": ["18999"],                 # regtest.rpcport applies; main.rpcport does not
        "rpcpassword": ["secret"],            # [test] does not apply, [regtest] does
        "fallbackfee": ["0.0002"],
    }


def test_missing_file_is_empty(tmp_path):
    assert read_bitcoin_conf(str(tmp_path / "absent.conf")) == {}


def test_conf_path_is_relative_to_the_datadir(tmp_path):
    d = str(tmp_path)
    assert conf_path(d, None) == os.path.join(d, "bitcoin.conf")
    assert conf_path(d, "other.conf") == os.path.join(d, "other.conf")
    assert conf_path(d, "/etc/x.conf") == "/etc/x.conf"


def test_amp_chaind_options_use_it(tmp_path):
    from ampere.chain.regtest.daemon import Options

    (tmp_path / "bitcoin.conf").write_text(CONF)
    opts = Options([f"-datadir={tmp_path}"])
    assert (opts.rpcport, opts.rpcuser, opts.rpcpassword) == (18999, "alice", "secret")
    assert Options([f"-datadir={tmp_path}", "-rpcport=1234"]).rpcport == 1234      # the command line wins


def test_amp_chain_cli_uses_it(tmp_path, monkeypatch, capsys):
    """The client asks the port and credentials the conf gives, `regtest.rpcport` included."""
    (tmp_path / "bitcoin.conf").write_text(CONF)
    asked = []

    def fake_post(host, port, path, body, auth, timeout):
        asked.append((host, port, auth))
        return 200, '{"result": 7, "error": null, "id": 1}'

    monkeypatch.setattr(chain_cli, "http_post", fake_post)
    assert chain_cli.main([f"-datadir={tmp_path}", "getblockcount"]) == 0
    assert capsys.readouterr().out.strip() == "7"
    assert asked == [("127.0.0.1", 18999, base64.b64encode(b"alice:secret").decode())]
