"""BIP32 test vectors, and Core Lightning's wallet key derivation from hsm_secret."""
from __future__ import annotations

import hashlib
import hmac
import json
import os

import pytest

from ampere.primitives.bip32 import HARDENED, Bip32Error, ExtKey, parse_path
from ampere.primitives.script import p2wpkh, script_to_address

with open(os.path.join(os.path.dirname(__file__), "bip32", "bip32.json")) as f:
    VECTORS = json.load(f)["vectors"]
CASES = [(v["seed"], path, xpub, xprv) for v in VECTORS for path, xpub, xprv in v["chains"]]


@pytest.mark.parametrize("seed,path,xpub,xprv", CASES, ids=[f"{c[0][:6]}-{c[1]}" for c in CASES])
def test_bip32_vector(seed, path, xpub, xprv):
    key = ExtKey.from_seed(bytes.fromhex(seed)).derive(path)
    assert key.to_base58() == xprv
    assert key.xpub() == xpub
    # Round trip through the serialization.
    assert ExtKey.from_base58(xprv) == key
    assert ExtKey.from_base58(xpub) == key.neuter()


@pytest.mark.parametrize("seed,path,xpub,xprv", CASES, ids=[f"{c[0][:6]}-{c[1]}" for c in CASES])
def test_bip32_public_derivation_matches(seed, path, xpub, xprv):
    """CKDpub from the deepest hardened ancestor's xpub gives the same public keys."""
    idx = parse_path(path)
    last_hard = max([i for i, n in enumerate(idx) if n >= HARDENED], default=-1)
    parent = ExtKey.from_seed(bytes.fromhex(seed)).derive(idx[: last_hard + 1]).neuter()
    assert parent.derive(idx[last_hard + 1:]).to_base58() == xpub


def test_bip32_errors():
    m = ExtKey.from_seed(bytes(16))
    with pytest.raises(Bip32Error):
        m.neuter().child(HARDENED)
    with pytest.raises(Bip32Error):
        ExtKey.from_seed(b"short")
    with pytest.raises(Bip32Error):
        parse_path("m/x/1")
    with pytest.raises(Bip32Error):
        ExtKey.from_base58("xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHj")


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    # RFC 5869, written out here so the test does not share code with the implementation.
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_cln_wallet_derivation_from_hsm_secret():
    """hsmd: bip32 seed = HKDF(hsm_secret, salt=u32 0 LE, "bip32 seed"); wallet keys at m/0/0/i.
    Expected values published for CLN's hsmd (hsm_secret 1e14cd38...)."""
    from ampere.node.onchain.wallet import bip32_base_from_hsm_secret

    secret = bytes.fromhex("1e14cd384691a92120f6702742ca0e06951aeee57e91b5e137526c0a6c0867f4")
    seed = _hkdf_sha256(secret, (0).to_bytes(4, "little"), b"bip32 seed")
    assert seed.hex() == "5a9bed3df01abd7aa0f260120530aaf1eea3ac2744648975dc23cfb25a71045d"
    master = ExtKey.from_seed(seed)
    assert master.to_base58() == ("xprv9s21ZrQH143K4Swn4rdeRhPLPfN1qJtA6yFR5RBTpU2s614zG7ELFMN6YAW4AGH3jZRJUUQBuPt9"
                                  "pJ5D5jzq65PKWCBy6xNarQAcgofD3Xr")
    base = bip32_base_from_hsm_secret(secret, "main")
    assert base.to_base58() == ("xprv9wYsM6fW2kCzYkSeu3AFZrJ7bk4Ny3w3L5UaLDKLxLizJcacRNGCVwouqJSNNqoi4DGdA6cf3kFE"
                                "UDvmSdpCyQu8sYg4x44cpVbUFVpSXkc")


def test_cln_regtest_addresses_for_bip32_seed():
    """CLN's test_dev_force_bip32_seed: master from seed 00..01, newaddr gives m/0/0/1.. as bech32."""
    from ampere.node.onchain.wallet import Wallet

    base = ExtKey.from_seed(bytes(31) + b"\x01", "test").derive("m/0/0")
    got = [script_to_address(p2wpkh(base.child(i).pubkey), "regtest") for i in range(1, 6)]
    assert got == ["bcrt1qsdzqt93xsyewdjvagndw9523m27e52er5ca7hm", "bcrt1qlkt93775wmf33uacykc49v2j4tayn0yj25msjn",
                   "bcrt1q2ng546gs0ylfxrvwx0fauzcvhuz655en4kwe2c", "bcrt1qrdpwrlrmrnvn535l5eldt64lxm8r2nwkv0ruxq",
                   "bcrt1q622lwmdzxxterumd746eu3d3t40pq53p62zhlz"]
    # The wallet's own address function agrees with the derivation above.
    w = Wallet.__new__(Wallet)
    w.network = "regtest"
    w._base_pub = base.neuter()
    assert w.addresses(1)["bech32"] == got[0]


def test_bip86_taproot_output_key():
    """BIP86 test vector (m/86'/0'/0'/0/0): internal key cc8a4b... -> output key a60869..., the
    tweak CLN applies to wallet keys for p2tr addresses."""
    from ampere.node.onchain.wallet import taproot_output_xonly
    from ampere.primitives.script import p2tr

    internal = bytes.fromhex("cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115")
    for prefix in (b"\x02", b"\x03"):  # only the x coordinate matters
        q = taproot_output_xonly(prefix + internal)
        assert q.hex() == "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"
    assert script_to_address(p2tr(q), "bitcoin") == "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
