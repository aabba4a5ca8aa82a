"""Options and start-up behaviour that tools written for lightningd (pyln-testing among them) rely on:
every option pyln-testing passes to a node is accepted (those with no effect in Ampere say so in the log),
`--version` reads as the CLN release Ampere follows, `localhost` needs no DNS, `--dev-force-privkey` sets the
node key, and the default alias is CLN's."""
import subprocess

import pytest
from pyln.client import RpcError

from ampere import VERSION_STRING
from ampere.testing.nodes import AMPD, spawn_env

# What pyln-testing 26.6.9 puts on every lightningd command line (LIGHTNINGD_CONFIG and LightningNode),
# plus options its users commonly add.
PYLN_OPTIONS = {
    "log-level": "trace", "cltv-delta": 6, "cltv-final": 5, "watchtime-blocks": 5, "rescan": 1,
    "disable-dns": None, "allow-deprecated-apis": "false", "ignore-fee-limits": "false",
    "dev-fast-gossip": None, "dev-bitcoind-poll": 1, "developer": None, "dev-fail-on-subdaemon-fail": None,
    "dev-no-reconnect": None, "autoconnect-seeker-peers": 0, "grpc-port": 9736, "log-prefix": "lightningd-1 ",
    "dev-no-htlc-timeout": None, "dev-no-fake-fees": None, "xpay-handle-pay": "true", "database-upgrade": "true",
    "commit-feerate-offset": 5, "max-dust-htlc-exposure-msat": "50000sat", "wumbo": None,
    "invoices-onchain-fallback": None, "autoclean-cycle": 10, "experimental-bwatch": None,
    "bwatch-poll-interval": 100, "dev-ignore-ibd": "True", "dev-crash-after": 3600,
}


def test_pyln_testing_options_are_accepted(node_factory, tmp_path):
    plugin_io = tmp_path / "plugin-io"
    plugin_io.mkdir()
    l1 = node_factory.get_node(**PYLN_OPTIONS, **{"dev-save-plugin-io": str(plugin_io)})
    info = l1.rpc.getinfo()
    assert info["version"] == VERSION_STRING == "v26.06-ampere-0.1.0"
    # --developer: CLN appends the end of its version to the default alias.
    from ampere.node.signer.hsm_secret import default_alias
    assert info["alias"] == default_alias(bytes.fromhex(info["id"]), VERSION_STRING)
    assert info["alias"].startswith(default_alias(bytes.fromhex(info["id"])) + "-") and len(info["alias"]) <= 32
    logs = l1.logs()
    for name in ("dev-fail-on-subdaemon-fail", "autoconnect-seeker-peers", "grpc-port",
                 "experimental-bwatch", "xpay-handle-pay", "wumbo"):
        assert f"--{name} has no effect in Ampere: " in logs
    for name in ("dev-no-reconnect", "dev-save-plugin-io"):   # implemented, not ignored
        assert f"--{name} has no effect" not in logs
    assert l1.rpc.listconfigs("funding-confirms")["configs"]["funding-confirms"]["value_int"] == 1
    # An unknown option is still an error naming it.
    r = subprocess.run(AMPD + [f"--lightning-dir={tmp_path / 'x'}", "--network=regtest", "--dev-no-such-thing"],
                       capture_output=True, text=True, timeout=60, env=spawn_env())
    assert r.returncode != 0 and "--dev-no-such-thing: unrecognized option" in r.stderr


def test_version_reads_as_cln():
    r = subprocess.run(AMPD + ["--version"], capture_output=True, text=True, timeout=60, env=spawn_env())
    assert r.returncode == 0 and r.stdout.strip() == "v26.06-ampere-0.1.0"
    from pyln.client import NodeVersion
    v = NodeVersion(r.stdout.strip())
    assert v >= "v25.12" and not v >= "v26.07"   # pyln-testing: modern hsm_secret, --developer


def test_localhost_without_dns_and_forced_privkey(node_factory):
    key = "01" * 32
    l1 = node_factory.get_node(listen=True, **{"disable-dns": None})
    l2 = node_factory.get_node(listen=True, **{"disable-dns": None, "dev-force-privkey": key})
    # The node id of private key 0x0101...01, and CLN's default alias for it.
    from coincurve import PrivateKey
    from ampere.node.signer.hsm_secret import default_alias
    expected = PrivateKey(bytes.fromhex(key)).public_key.format().hex()
    assert l2.rpc.getinfo()["id"] == expected
    assert l2.rpc.getinfo()["alias"] == default_alias(bytes.fromhex(expected))
    assert l1.rpc.connect(l2.node_id, "localhost", l2.port)["id"] == expected
    # A name that needs DNS is refused, with --disable-dns.
    stranger = PrivateKey(bytes.fromhex("02" * 32)).public_key.format().hex()
    with pytest.raises(RpcError, match="DNS lookups are disabled"):
        l1.rpc.connect(stranger, "example.invalid", l2.port)


# --dev-no-reconnect: tests/pyln/test_payments.py::test_dev_no_reconnect_is_default (pyln-testing passes it).
