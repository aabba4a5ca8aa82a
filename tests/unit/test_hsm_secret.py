"""hsm_secret in both of Core Lightning's formats (common/hsm_secret.c), and the keys derived from it.

Expected values were produced by Core Lightning v26.06 itself for the same files
(`lightning-hsmtool getnodeid` and `dumponchaindescriptors ... testnet`); tests/integration/test_hsm_cln.py
re-checks them against a live CLN when one is available.  The secrets are pyln-testing's for node
"lightning-1": the directory name padded to 32 bytes (legacy), and a mnemonic made from its first 16
bytes (the v25.12+ format: 32 zero bytes, then the words).
"""
import hashlib
import os
import stat

import pytest
from mnemonic import Mnemonic

from ampere.node.signer.hsm_secret import (
    HsmSecretError, bip39_seed, default_alias, derive_node_key, load_or_create_hsm_secret, parse_hsm_secret,
)
from ampere.node.onchain.wallet import bip32_base_from_hsm_secret, scripts_for_pubkey
from ampere.primitives.bip32 import HARDENED, ExtKey
from ampere.primitives.script import script_to_address

LEGACY = (b"lightning-1" + bytes(32))[:32]
WORDS = Mnemonic("english").to_mnemonic(LEGACY[:16])
MODERN = bytes(32) + WORDS.encode()


def node_id(secret: bytes) -> str:
    return derive_node_key(secret).public_key.format(compressed=True).hex()


def test_legacy_secret_is_used_as_is():
    assert parse_hsm_secret(LEGACY) == LEGACY
    assert node_id(LEGACY) == "0266e4598d1d3c415f572a8488830b60f7e744ed9235eb0b1ba93283b315c03518"
    # CLN: wpkh(tpubD6Nz.../0/0/*) -- the master of HKDF(secret, "bip32 seed"); wallet keys at m/0/0/i.
    base = bip32_base_from_hsm_secret(LEGACY, "test")
    assert base.depth == 2
    assert script_to_address(scripts_for_pubkey(base.child(1).pubkey)[0], "regtest") == \
        "bcrt1qq8adjz4u6enf0cjey9j8yt0y490tact93fzgsf"


def test_mnemonic_secret_uses_the_bip39_seed():
    secret = parse_hsm_secret(MODERN)
    assert secret == bip39_seed(WORDS) and len(secret) == 64
    # Not the first 32 bytes of the file (what Ampere used to take): those are the passphrase hash.
    assert node_id(secret) == "038194b5f32bdf0aa59812c86c4ef7ad2f294104fa027d1ace9b469bb6f88cf37b"
    # CLN: tr(tpubDCSr.../0/*): BIP86 account m/86'/0'/0' of the BIP39 seed; addresses at .../0/i.
    account = ExtKey.from_seed(secret, "test").derive([HARDENED | 86, HARDENED, HARDENED])
    assert account.neuter().to_base58() == ("tpubDCSrLRCBbiE37dZi9ecZc1PTGfRSNHhEnX1ziZjcePkwuxppahFWPA9vGJea"
                                            "tC1HZekoF9PdCvWoucjyzMCHh2tXXbNAin9BPn5D7Yt8Zzz")
    assert bip32_base_from_hsm_secret(secret, "test").pubkey == account.child(0).pubkey


def test_bip39_seed_matches_the_bip39_vector():
    # BIP39's first English vector (passphrase "TREZOR").
    words = "abandon " * 11 + "about"
    assert bip39_seed(words, "TREZOR").hex().startswith("c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e5")


def test_passphrase_protected_files_are_refused_without_passphrase():
    encrypted = os.urandom(73)
    with pytest.raises(HsmSecretError, match="^HSM initialization failed: Failed to load hsm_secret: "
                                             "Passphrase required but not provided$"):
        parse_hsm_secret(encrypted)
    with_pass = hashlib.sha256(bip39_seed(WORDS, "pw")).digest() + WORDS.encode()
    with pytest.raises(HsmSecretError, match="Passphrase required but not provided"):
        parse_hsm_secret(with_pass)
    with pytest.raises(HsmSecretError, match="Wrong passphrase"):
        parse_hsm_secret(with_pass, "nope")
    assert parse_hsm_secret(with_pass, "pw") == bip39_seed(WORDS, "pw")


def test_bad_files_are_refused():
    with pytest.raises(HsmSecretError, match="Invalid hsm_secret format"):
        parse_hsm_secret(b"short")
    bad_checksum = bytes(32) + " ".join(WORDS.split()[:-1] + ["zoo"]).encode()
    with pytest.raises(HsmSecretError, match="Invalid mnemonic"):
        parse_hsm_secret(bad_checksum)


def test_new_nodes_get_a_mnemonic_file(tmp_path):
    secret = load_or_create_hsm_secret(str(tmp_path))
    path = tmp_path / "hsm_secret"
    data = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert data[:32] == bytes(32)
    words = data[32:].decode()
    assert len(words.split()) == 12 and Mnemonic("english").check(words)
    assert secret == bip39_seed(words)
    assert load_or_create_hsm_secret(str(tmp_path)) == secret  # read back, not recreated
    assert load_or_create_hsm_secret(str(tmp_path / ".." / path.parent.name)) == secret


def test_default_alias_and_color_as_cln():
    # CLN's tests: these keys are JUNIORBEAM / SILENTARTIST / HOPPINGFIRE.
    for key, alias in [("0266e4598d1d3c415f572a8488830b60f7e744ed9235eb0b1ba93283b315c03518", "JUNIORBEAM"),
                       ("022d223620a359a47ff7f7ac447c85c46c923da53389221a0054c11c1e3ca31d59", "SILENTARTIST"),
                       ("035d2b1192dfba134e10e540875d366ebc8bc353d5aa766b80c090b39c3a5d885d", "HOPPINGFIRE")]:
        assert default_alias(bytes.fromhex(key)) == alias
    # --developer appends as much of the version's tail as fits in 32 characters.
    dev = default_alias(bytes.fromhex("0266e4598d1d3c415f572a8488830b60f7e744ed9235eb0b1ba93283b315c03518"),
                        "v26.06-ampere-0.1.0-a-very-long-suffix")
    assert dev.startswith("JUNIORBEAM-") and len(dev) == 32 and dev.endswith("long-suffix")
