"""--dev-force-* secrets (conformance tests, lightningd's option names and formats) take effect, and only
with --developer."""
import os

import pytest
from coincurve import PrivateKey

from ampere.config import ConfigError, Options, early_scan
from ampere.ln.channel.keys import commitment_point
from ampere.ln.channel.signer import LocalChannelSigner, SignerError
from ampere.node.signer.dev_secrets import check_dev_secret_options, new_temporary_channel_id
from ampere.node.app.options import builtin_options
from ampere.node.onchain.wallet import Wallet
from ampere.node.signer.setup import make_signer


def k(n: int) -> str:
    return f"{n:064x}"


SECRETS = "/".join([k(0x10), k(0x11), k(0x12), k(0x13), k(0x14), "FF" * 32])


def options(*argv: str) -> Options:
    o = Options()
    for s in builtin_options():
        o.add(s)
    layout = early_scan(["--lightning-dir=/nonexistent-ampere-dir", *argv], o.specs, "~/.ampere")
    o.apply(layout.entries)
    return o


def pub(n: int) -> bytes:
    return PrivateKey(n.to_bytes(32, "big")).public_key.format()


def test_forced_channel_secrets_give_every_channel_these_keys(tmp_path):
    signer = make_signer(options("--developer", f"--dev-force-channel-secrets={SECRETS}"), str(tmp_path))
    for dbid in (7, 8):
        ch = signer.channel_signer(b"\x02" * 33, dbid)
        keys = ch.pubkeys
        assert (keys.funding_pubkey, keys.revocation_basepoint, keys.payment_basepoint, keys.delayed_payment_basepoint,
                keys.htlc_basepoint) == (pub(0x10), pub(0x11), pub(0x12), pub(0x13), pub(0x14))
        assert ch.commitment_point(0) == commitment_point(b"\xff" * 32, 0)


def test_without_forced_secrets_channels_derive_their_own(tmp_path):
    signer = make_signer(options(), str(tmp_path))
    a = signer.channel_signer(b"\x02" * 33, 1).pubkeys
    b = signer.channel_signer(b"\x02" * 33, 2).pubkeys
    assert a.funding_pubkey != b.funding_pubkey and a.funding_pubkey != pub(0x10)


def test_forced_bip32_seed_gives_lnprototest_wallet_address(tmp_path):
    # lnprototest's bitcoin_utils: BIP32 seed 00..01, "P2WPKH 0/0/1: bcrt1qsdzqt93xsyewdjvagndw9523m27e52er5ca7hm"
    os.makedirs(tmp_path / "forced")
    os.makedirs(tmp_path / "plain")
    signer = make_signer(options("--developer", f"--dev-force-bip32-seed={k(1)}"), str(tmp_path / "forced"))
    wallet = Wallet(None, signer, "regtest")
    assert wallet.addresses(1)["bech32"] == "bcrt1qsdzqt93xsyewdjvagndw9523m27e52er5ca7hm"
    assert wallet.addresses(2)["bech32"] == "bcrt1qlkt93775wmf33uacykc49v2j4tayn0yj25msjn"
    plain = Wallet(None, make_signer(options(), str(tmp_path / "plain")), "regtest")
    assert plain.addresses(1)["bech32"] != wallet.addresses(1)["bech32"]


def test_forced_tmp_channel_id():
    forced = options("--developer", "--dev-force-tmp-channel-id=" + "ab" * 32)
    assert new_temporary_channel_id(forced) == bytes.fromhex("ab" * 32)
    plain = options()
    assert new_temporary_channel_id(plain) != new_temporary_channel_id(plain)


@pytest.mark.parametrize("argv,message", [
    ([f"--dev-force-channel-secrets={SECRETS}"], "requires --developer"),
    ([f"--dev-force-bip32-seed={k(1)}"], "requires --developer"),
    (["--developer", "--dev-force-channel-secrets=" + "/".join([k(0x10)] * 5)], "expected 6 hex secrets"),
    (["--developer", "--dev-force-channel-secrets=" + "/".join([k(0x10)] * 5 + ["zz"])], "32 bytes of hex"),
    (["--developer", "--dev-force-bip32-seed=0102"], "32 bytes of hex"),
    (["--developer", "--dev-force-tmp-channel-id=xyz"], "32 bytes of hex"),
])
def test_bad_forced_secrets_are_refused_at_startup(argv, message):
    with pytest.raises(ConfigError, match=message):
        check_dev_secret_options(options(*argv))


def test_forced_zero_key_is_refused():
    with pytest.raises(SignerError):
        LocalChannelSigner.from_secrets(bytes(32), *[bytes.fromhex(k(0x11))] * 4, b"\xff" * 32)
