"""Forced secrets for conformance tests (--developer only), with lightningd's option names and formats.

Scripted protocol tests (lnprototest) compute our signatures and keys themselves, so they need a node whose
secrets are fixed: CLN's hsmd takes `--dev-force-privkey` (node key), `--dev-force-bip32-seed` (wallet),
`--dev-force-channel-secrets` (every channel's funding key, basepoint secrets and shachain seed) and
`--dev-force-tmp-channel-id` (the temporary_channel_id of the channels we open).  This module is the one place
that reads them: the node key, wallet base and channel signer ask it for an override and use it if given.
Never use these on a real node: every channel then shares the same keys.
"""
from __future__ import annotations

import os
from typing import Any

from ampere.config import ConfigError

# (--dev-force-privkey predates these and is accepted without --developer, as pyln-testing users pass it.)
DEV_SECRET_OPTIONS = ("dev-force-bip32-seed", "dev-force-channel-secrets", "dev-force-tmp-channel-id")


def _hex32(name: str, value: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"--{name}={value}: must be 32 bytes of hex")
    return raw


def check_dev_secret_options(options: Any) -> None:
    """At start-up: every forced secret is well formed, and only given with --developer (as lightningd,
    whose dev- options exist only in developer mode)."""
    for name in DEV_SECRET_OPTIONS:
        if options.get(name) and not options.get("developer"):
            raise ConfigError(f"--{name} requires --developer")
    if options.get("dev-force-bip32-seed"):
        _hex32("dev-force-bip32-seed", options.get("dev-force-bip32-seed"))
    if options.get("dev-force-tmp-channel-id"):
        _hex32("dev-force-tmp-channel-id", options.get("dev-force-tmp-channel-id"))
    if options.get("dev-force-channel-secrets"):
        forced_channel_secrets(options)


def forced_bip32_seed(options: Any) -> bytes | None:
    value = options.get("dev-force-bip32-seed")
    return _hex32("dev-force-bip32-seed", value) if value else None


def forced_channel_secrets(options: Any) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes] | None:
    """lightningd's format: funding_key/revocation_basepoint_secret/payment_basepoint_secret/
    delayed_payment_basepoint_secret/htlc_basepoint_secret/shachain_seed, each 32 bytes of hex."""
    value = options.get("dev-force-channel-secrets")
    if not value:
        return None
    parts = value.split("/")
    if len(parts) != 6:
        raise ConfigError(f"--dev-force-channel-secrets={value}: expected 6 hex secrets separated by '/'")
    secrets = [_hex32("dev-force-channel-secrets", p) for p in parts]
    return secrets[0], secrets[1], secrets[2], secrets[3], secrets[4], secrets[5]


def new_temporary_channel_id(options: Any) -> bytes:
    """The temporary_channel_id of a channel we open: random, unless --dev-force-tmp-channel-id."""
    value = options.get("dev-force-tmp-channel-id")
    return _hex32("dev-force-tmp-channel-id", value) if value else os.urandom(32)
