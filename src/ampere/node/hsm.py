"""The node's root secret (`hsm_secret`) and what derives from it.

The node key is derived exactly as Core Lightning's hsmd does (hsmd/libhsmd.c `node_key`):
HKDF-SHA256 over the 32-byte secret, salt = a little-endian u32 counter starting at 0, info
"nodeid", retried with the next salt in the (never seen) case that the result is not a valid key.
So the same `hsm_secret` file gives the same node id in CLN and in Ampere.
"""

from __future__ import annotations

import os

from coincurve import PrivateKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HSM_SECRET_LEN = 32
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class HsmSecretError(Exception):
    pass


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def load_or_create_hsm_secret(netdir: str) -> bytes:
    """Read `<netdir>/hsm_secret`, creating 32 random bytes with mode 0600 on first start."""
    path = os.path.join(netdir, "hsm_secret")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_hsm_secret(path)
    try:
        secret = os.urandom(HSM_SECRET_LEN)
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(netdir, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return secret


def read_hsm_secret(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if len(data) == HSM_SECRET_LEN:
        return data
    if len(data) == 73:
        raise HsmSecretError(f"{path}: encrypted hsm_secret files are not supported yet")
    # CLN's newer format keeps the 32-byte secret first, followed by a mnemonic record
    # ("Extract first 32 bytes for legacy compatibility", tools/hsmtool.c).
    if len(data) > HSM_SECRET_LEN:
        return data[:HSM_SECRET_LEN]
    raise HsmSecretError(f"{path}: {len(data)} bytes, expected {HSM_SECRET_LEN}")


def derive_node_key(hsm_secret: bytes) -> PrivateKey:
    salt = 0
    while True:
        key = hkdf_sha256(hsm_secret, salt.to_bytes(4, "little"), b"nodeid")
        if 0 < int.from_bytes(key, "big") < _SECP256K1_N:
            return PrivateKey(key)
        salt += 1


# A default alias derived from the node id, in the spirit of lightningd's codenames (our own words).
_ADJECTIVES = (
    "AMBER", "BOLD", "BRISK", "CALM", "CLEVER", "COBALT", "CRIMSON", "DARING", "EAGER", "FAINT",
    "FIERCE", "GENTLE", "GILDED", "GLOWING", "HASTY", "HOLLOW", "IVORY", "JOLLY", "KEEN", "LIVELY",
    "LUCKY", "MIGHTY", "NIMBLE", "NOBLE", "OCHRE", "PLUCKY", "PROUD", "QUIET", "RAPID", "ROYAL",
    "RUSTY", "SILENT", "SILVER", "SLEEPY", "SOLAR", "STEADY", "SWIFT", "TIMID", "UNRULY", "VIVID",
    "WANDERING", "WILD", "WINTRY", "WISE", "YELLOW", "ZEALOUS", "ZESTY", "ZIPPY",
)
_NOUNS = (
    "AMPERE", "BADGER", "BEACON", "CASCADE", "COMET", "CONDOR", "CURRENT", "DYNAMO", "EMBER", "FALCON",
    "FERRET", "FLUX", "GALE", "GALVANI", "HERON", "IBIS", "JOULE", "KESTREL", "LANTERN", "LYNX",
    "MAGNET", "MERLIN", "NEWT", "OHM", "OTTER", "PELICAN", "PHOTON", "QUASAR", "RAVEN", "SPARK",
    "STORM", "TESLA", "THUNDER", "TURBINE", "VOLT", "VOLTA", "WATT", "WEASEL", "WREN", "ZEPHYR",
)


def default_alias(node_id: bytes) -> str:
    """Two words chosen by the node id's bytes: stable for a node, unlikely to collide nearby."""
    return _ADJECTIVES[node_id[1] % len(_ADJECTIVES)] + _NOUNS[node_id[2] % len(_NOUNS)]


def channel_seed(hsm_secret: bytes, peer_id: bytes, dbid: int) -> bytes:
    """The 32-byte seed of one channel's secrets, as Core Lightning's hsmd `get_channel_seed` derives it:
    base = HKDF-SHA256(ikm = hsm_secret, no salt, info "peer seed"); seed = HKDF-SHA256(ikm = base,
    salt = peer node id (33 bytes) || dbid as a little-endian u64, info "per-peer seed")."""
    if len(peer_id) != 33 or dbid <= 0:
        raise ValueError("channel_seed needs a 33-byte node id and a positive dbid")
    base = hkdf_sha256(hsm_secret, b"", b"peer seed")
    return hkdf_sha256(base, peer_id + dbid.to_bytes(8, "little"), b"per-peer seed")
