"""ampd's forced secrets for conformance tests (lightningd's --dev-force-* options), on a real ampd: they take
effect with --developer and stop the start-up with a clear error without it.  (tests/conformance drives a node
with all of them through lnprototest; tests/unit/test_dev_secrets.py checks the derivations.)"""
import os
import subprocess

from coincurve import PrivateKey

from ampere.testing.nodes import spawn_env

SECRETS = "/".join([f"{n:064x}" for n in (0x10, 0x11, 0x12, 0x13, 0x14)] + ["FF" * 32])
FORCED = {"dev-force-privkey": f"{1:064x}", "dev-force-bip32-seed": f"{1:064x}",
          "dev-force-channel-secrets": SECRETS, "dev-force-tmp-channel-id": "ab" * 32}


def test_forced_secrets_take_effect(node_factory_chain):
    l1 = node_factory_chain.get_node(developer=None, **FORCED)
    assert l1.rpc.getinfo()["id"] == PrivateKey((1).to_bytes(32, "big")).public_key.format().hex()
    # lnprototest's wallet (BIP32 seed 1, key m/0/0/1): the first address handed out.
    assert l1.rpc.newaddr("bech32")["bech32"] == "bcrt1qsdzqt93xsyewdjvagndw9523m27e52er5ca7hm"


def test_forced_secrets_need_developer(node_factory):
    l1 = node_factory.get_node(start=False, may_fail=True, **{"dev-force-channel-secrets": SECRETS})
    r = subprocess.run(l1.cmdline(), capture_output=True, text=True, timeout=60, env=spawn_env())
    assert r.returncode != 0 and "--dev-force-channel-secrets requires --developer" in r.stderr
    assert not os.path.exists(l1.rpc_path)
