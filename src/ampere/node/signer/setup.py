"""The node's signer from its options: in-process from `hsm_secret`, or the signer process at --signer-socket.

The one place forced secrets enter the node: `--dev-force-privkey`, `--dev-force-bip32-seed` and
`--dev-force-channel-secrets` (dev_secrets.py reads them) become LocalSigner's overrides of what hsm_secret
derives.  With a signer process they are the signer's business: ampd refuses them."""

from __future__ import annotations

from typing import Any

from ampere.config import ConfigError
from ampere.ln.channel.keys import SECP256K1_ORDER
from ampere.ln.channel.signer import ChannelSecrets
from ampere.node.signer.dev_secrets import check_dev_secret_options, forced_bip32_seed, forced_channel_secrets
from ampere.node.signer.hsm_secret import HsmSecretError, load_or_create_hsm_secret
from ampere.node.signer.signer import LocalSigner, Signer, SignerUnavailable


def make_signer(options: Any, netdir: str, passphrase: str | None = None) -> Signer:
    check_dev_secret_options(options)
    socket_path = options.get("signer-socket")
    if socket_path:
        for name in ("dev-force-privkey", "dev-force-bip32-seed", "dev-force-channel-secrets"):
            if options.get(name):
                raise ConfigError(f"--{name} cannot be used with --signer-socket (the signer process holds the keys)")
        # The keys live in another process (python -m ampere.node.signer.server): hsm_secret is never read here.
        from ampere.node.signer.client import RemoteSigner

        try:
            return RemoteSigner(socket_path)
        except SignerUnavailable as e:
            raise RuntimeError(f"--signer-socket={socket_path}: {e}") from None
    try:
        secret = load_or_create_hsm_secret(netdir, passphrase)
    except HsmSecretError as e:
        raise RuntimeError(str(e)) from None
    forced = options.get("dev-force-privkey")
    node_key = None
    if forced:
        # hsmd's --dev-force-privkey: this key instead of the derived one (tests that need a known id).
        try:
            node_key = bytes.fromhex(forced)
            if len(node_key) != 32 or not 0 < int.from_bytes(node_key, "big") < SECP256K1_ORDER:
                raise ValueError
        except ValueError:
            raise ConfigError(f"--dev-force-privkey={forced}: not a valid private key") from None
    forced = forced_channel_secrets(options)
    return LocalSigner(secret, node_key=node_key, bip32_seed=forced_bip32_seed(options),
                       channel_secrets=ChannelSecrets(*forced) if forced is not None else None)
