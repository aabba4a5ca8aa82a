"""The node's root secret (`hsm_secret`) and what derives from it.

The node key is derived exactly as Core Lightning's hsmd does (hsmd/libhsmd.c `node_key`):
HKDF-SHA256 over the 32-byte secret, salt = a little-endian u32 counter starting at 0, info
"nodeid", retried with the next salt in the (never seen) case that the result is not a valid key.
So the same `hsm_secret` file gives the same node id in CLN and in Ampere.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata

from coincurve import PrivateKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ampere.primitives.crypto import SECP256K1_ORDER

HSM_SECRET_LEN = 32
ENCRYPTED_HSM_SECRET_LEN = 73  # libsodium secretstream header (24) + 32-byte secret + tag (17)
PASSPHRASE_HASH_LEN = 32


class HsmSecretError(Exception):
    pass


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def bip39_seed(mnemonic: str, passphrase: str = "") -> bytes:
    """BIP39: PBKDF2-HMAC-SHA512(NFKD(mnemonic), "mnemonic" + NFKD(passphrase), 2048 rounds), 64 bytes."""
    m = unicodedata.normalize("NFKD", mnemonic).encode()
    salt = ("mnemonic" + unicodedata.normalize("NFKD", passphrase)).encode()
    return hashlib.pbkdf2_hmac("sha512", m, salt, 2048, 64)


def _fsync_dir(path: str) -> None:
    dfd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def new_hsm_secret_bytes(passphrase: str | None = None) -> bytes:
    """A new `hsm_secret` in Core Lightning's v25.12+ format (hsmd.c create_hsm): 16 random bytes of
    entropy give a 12-word BIP39 mnemonic; the file is the 32-byte passphrase hash (all zeros: no
    passphrase; else sha256 of the BIP39 seed with that passphrase) followed by the mnemonic's words,
    no terminator."""
    from mnemonic import Mnemonic

    words = Mnemonic("english").to_mnemonic(os.urandom(16))
    if not passphrase:
        return bytes(PASSPHRASE_HASH_LEN) + words.encode()
    return hashlib.sha256(bip39_seed(words, passphrase)).digest() + words.encode()


def load_or_create_hsm_secret(netdir: str, passphrase: str | None = None) -> bytes:
    """The root secret CLN's hsmd derives every key from: the 32-byte legacy secret, or the 64-byte BIP39
    seed of a mnemonic `hsm_secret`.  On first start, writes a new mnemonic file with mode 0600."""
    path = os.path.join(netdir, "hsm_secret")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_hsm_secret(path, passphrase)
    try:
        data = new_hsm_secret_bytes(passphrase)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(netdir)
    return parse_hsm_secret(data, passphrase or None)


def read_hsm_secret(path: str, passphrase: str | None = None) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    return parse_hsm_secret(data, passphrase)


def _load_failed(why: str) -> HsmSecretError:
    # lightningd's words (lightningd/hsm_control.c), so operators and tests see the same failure.
    return HsmSecretError(f"HSM initialization failed: Failed to load hsm_secret: {why}")


def parse_hsm_secret(data: bytes, passphrase: str | None = None) -> bytes:
    """Read an `hsm_secret` file's bytes as CLN's common/hsm_secret.c does (detect_hsm_secret_type):
    32 bytes: the legacy plain secret; 73 bytes: the legacy encrypted secret (needs its passphrase);
    longer: a 32-byte passphrase hash (zeros: none) followed by a BIP39 mnemonic, whose 64-byte seed
    is the secret."""
    if len(data) < HSM_SECRET_LEN:
        raise _load_failed("Invalid hsm_secret format")
    if len(data) == HSM_SECRET_LEN:
        return data
    if len(data) == ENCRYPTED_HSM_SECRET_LEN:
        if passphrase is None:
            raise _load_failed("Passphrase required but not provided")
        raise _load_failed("encrypted hsm_secret files are not supported by Ampere")
    stored_hash = data[:PASSPHRASE_HASH_LEN]
    try:
        words = data[PASSPHRASE_HASH_LEN:].decode()
    except UnicodeDecodeError:
        raise _load_failed("Invalid mnemonic") from None
    if stored_hash == bytes(PASSPHRASE_HASH_LEN):
        if passphrase is not None:
            raise _load_failed("Passphrase provided but not needed")
    else:
        if passphrase is None:
            raise _load_failed("Passphrase required but not provided")
        # derive_seed_hash: sha256 of the 64-byte seed with that passphrase.
        if hashlib.sha256(bip39_seed(words, passphrase)).digest() != stored_hash:
            raise _load_failed("Wrong passphrase")
    from mnemonic import Mnemonic

    if not Mnemonic("english").check(words):
        raise _load_failed("Invalid mnemonic")
    return bip39_seed(words, passphrase or "")


def derive_node_key(hsm_secret: bytes) -> PrivateKey:
    # hsmd node_key(): "Use first 32 bytes for node key derivation" (a mnemonic seed has 64).
    salt = 0
    while True:
        key = hkdf_sha256(hsm_secret[:HSM_SECRET_LEN], salt.to_bytes(4, "little"), b"nodeid")
        if 0 < int.from_bytes(key, "big") < SECP256K1_ORDER:
            return PrivateKey(key)
        salt += 1


# lightningd's default alias (lightningd/options.c setup_color_and_alias): two words picked by the node
# id, so the same key has the same alias in CLN and Ampere (CLN's test key 0266e4... is JUNIORBEAM).
# The word lists are CLN's (duplicates included: they change the modulus).
_CODENAME_ADJECTIVES = (
    "LOUD", "RED", "BLUE", "GREEN", "YELLOW", "IRATE", "ANGRY", "PEEVED",
    "HAPPY", "SLIMY", "SLEEPY", "JUNIOR", "SLICKER", "UNITED", "SOMBER",
    "BIZARRE", "ODD", "WEIRD", "WRONG", "LATENT", "CHILLY", "STRANGE", "LOUD",
    "SILENT", "HOPPING", "ORANGE", "VIOLET", "VIOLENT", "LIGHTNING",
)
_CODENAME_NOUNS = (
    "WHISPER", "FELONY", "MOON", "SUCKER", "PENGUIN", "WAFFLE", "MAESTRO",
    "NIGHT", "TRINITY", "DEITY", "MONKEY", "ARK", "SQUIRREL", "IRON", "BOUNCE",
    "FARM", "CHEF", "TROUGH", "NET", "TRAWL", "GLEE", "WATER", "SPORK", "PLOW",
    "FEED", "SOUFFLE", "ROUTE", "BAGEL", "MONTANA", "ANALYST", "AUTO", "WATCH",
    "PHOTO", "YARD", "SOURCE", "MONKEY", "SEAGULL", "TOLL", "SPAWN", "GOPHER",
    "CHIPMUNK", "SET", "CALENDAR", "ARTIST", "CHASER", "SCAN", "TOTE", "BEAM",
    "ENTOURAGE", "GENESIS", "WALK", "SPATULA", "RAGE", "FIRE", "MASTER",
)


def default_alias(node_id: bytes, developer_version: str | None = None) -> str:
    """The adjective is chosen by bytes 3..10 of the node id and the noun by bytes 11..18, each read as a
    little-endian u64 (lightningd memcpy's them on little-endian machines).  With --developer, lightningd
    appends "-" and as much of the end of its version as fits in 32 characters."""
    adjective = int.from_bytes(node_id[3:11], "little") % len(_CODENAME_ADJECTIVES)
    noun = int.from_bytes(node_id[11:19], "little") % len(_CODENAME_NOUNS)
    name = _CODENAME_ADJECTIVES[adjective] + _CODENAME_NOUNS[noun]
    if developer_version:
        tail = min(31 - len(name), len(developer_version))
        name += "-" + developer_version[len(developer_version) - tail:]
    return name


def channel_seed(hsm_secret: bytes, peer_id: bytes, dbid: int) -> bytes:
    """The 32-byte seed of one channel's secrets, as Core Lightning's hsmd `get_channel_seed` derives it:
    base = HKDF-SHA256(ikm = hsm_secret, no salt, info "peer seed"); seed = HKDF-SHA256(ikm = base,
    salt = peer node id (33 bytes) || dbid as a little-endian u64, info "per-peer seed")."""
    if len(peer_id) != 33 or dbid <= 0:
        raise ValueError("channel_seed needs a 33-byte node id and a positive dbid")
    base = hkdf_sha256(hsm_secret[:HSM_SECRET_LEN], b"", b"peer seed")  # hsmd: "Use first 32 bytes"
    return hkdf_sha256(base, peer_id + dbid.to_bytes(8, "little"), b"per-peer seed")
