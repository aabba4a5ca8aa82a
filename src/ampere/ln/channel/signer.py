"""ChannelSigner: every signature one channel's secrets make; LocalChannelSigner holds those secrets.

`ChannelSigner` is the interface the channel core and the on-chain resolver use.  Its one primitive is
`sign_input` (which key, the transaction, the input's script code and amount, the sighash type, and the
per-commitment point or revealed secret that tweaks the key): every commitment, HTLC, closing and sweep
signature below is built on it, so a signer in another process (ampere.node.signer.client) implements
four methods over bytes and ints and inherits the rest.  `LocalChannelSigner` is the in-process one:
direct calls, no serialisation (the channel hot path signs on every commitment).

The channel core never stores secrets: the persisted channel state holds public keys only, and the runtime
hands the core the channel's signer on each call (it derives the channel seed from hsm_secret, e.g. per
peer and channel database id, as CLN's hsmd does). Everything here is deterministic: the same seed gives the
same keys, and RFC6979 signatures, so a retransmitted commitment_signed is byte-identical.

Derivation: HKDF-SHA256(ikm=channel_seed, salt="ampere channel v1", info=<key name>), 32 bytes per key, with
a counter appended to the info in the (negligible) case the result is not a valid secp256k1 scalar.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ampere.ln.channel.closing import ClosingTx
from ampere.ln.channel.commitment import CommitmentTx, htlc_transactions
from ampere.ln.channel.htlc_tx import HtlcTx
from ampere.ln.channel.keys import (
    SECP256K1_ORDER,
    ChannelPubkeys,
    compact_to_der,
    der_to_compact,
    derive_privkey,
    derive_pubkey_with_secret,
    derive_revocation_privkey,
    derive_revocation_pubkey_with_secret,
    derive_secret,
    ecdsa_sign,
    ecdsa_sign_compact,
    per_commitment_point,
    per_commitment_secret_from_seed,
    pubkey_from_secret,
    secret_index,
)
from ampere.primitives.tx import SIGHASH_ALL, Transaction, bip143_sighash

__all__ = ["CHANNEL_KEYS", "ChannelSecrets", "ChannelSigner", "LocalChannelSigner", "SignerError"]

_SALT = b"ampere channel v1"
_LOW_BITS = 16   # per-commitment secrets: the bits derived per commitment (see LocalChannelSigner._secret)
_NAMES = ("funding", "revocation", "payment", "delayed_payment", "htlc", "shachain_seed")


# The keys `sign_input` can sign with: the funding key untweaked; htlc and delayed_payment tweaked by a
# per_commitment_point (BOLT #3 "privkey = basepoint_secret + SHA256(per_commitment_point || basepoint)");
# payment untweaked (option_static_remotekey); revocation combined with the secret the peer revealed.
CHANNEL_ANNOUNCEMENT_TYPE = (256).to_bytes(2, "big")
CHANNEL_KEYS = ("funding", "revocation", "payment", "delayed_payment", "htlc")


class SignerError(ValueError):
    """A seed of the wrong size, or a request the signer refuses (or, for a remote signer, cannot answer)."""


@dataclass(frozen=True)
class ChannelSecrets:
    """One channel's base secrets (32 bytes each), as CLN's --dev-force-channel-secrets gives them."""
    funding: bytes
    revocation: bytes
    payment: bytes
    delayed_payment: bytes
    htlc: bytes
    shachain_seed: bytes


def _derive(seed: bytes, name: str) -> bytes:
    for counter in range(256):
        info = name.encode() + (bytes([counter]) if counter else b"")
        out = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(seed)
        if 0 < int.from_bytes(out, "big") < SECP256K1_ORDER:
            return out
    raise SignerError("could not derive a valid key")  # pragma: no cover - probability ~2^-32000


class ChannelSigner(ABC):
    """The signatures of one channel.  Subclasses give `pubkeys` and the four primitives."""

    pubkeys: ChannelPubkeys

    # --- the primitives -------------------------------------------------------------------------------

    @abstractmethod
    def commitment_point(self, n: int) -> bytes:
        """Our per_commitment_point for commitment number n."""

    @abstractmethod
    def commitment_secret(self, n: int) -> bytes:
        """Our per_commitment_secret for commitment number n: only ever revealed to revoke commitment n."""

    @abstractmethod
    def sign_input(self, key: str, tx: Transaction, input_index: int, script_code: bytes, amount_sat: int,
                   sighash_type: int, *, point: bytes | None = None, revealed_secret: bytes | None = None) -> bytes:
        """DER signature (no sighash byte) of input `input_index` of `tx` (BIP 143) with channel key `key`
        (one of CHANNEL_KEYS): htlc and delayed_payment tweaked by `point`, revocation combined with
        `revealed_secret`."""

    @abstractmethod
    def sign_gossip(self, message: bytes) -> bytes:
        """BOLT 7 `bitcoin_signature`: the funding key's signature of an unsigned channel_announcement (type
        first; 64-byte compact, over the double-SHA256 the signer computes), so the funding secret never leaves
        the signer and it signs nothing but a channel_announcement with it."""

    # --- keys.OwnKeys: a signer that can compute our side's per-commitment keys with its secrets overrides these

    def own_derived_pubkey(self, basepoint: bytes, per_commitment_point: bytes) -> bytes | None:
        return None

    def own_revocation_pubkey(self, revocation_basepoint: bytes, per_commitment_point: bytes) -> bytes | None:
        return None

    # --- signatures (compact 64-byte, as BOLT 2 messages carry them) --------------------------------

    def sign_commitment(self, ctx: CommitmentTx) -> bytes:
        """Our funding signature on a commitment transaction (the peer's, for commitment_signed/funding_*)."""
        return der_to_compact(self.sign_input("funding", ctx.tx, 0, ctx.funding_script, ctx.funding_sat,
                                              SIGHASH_ALL))

    def sign_htlc_txs(self, remote_ctx: CommitmentTx) -> tuple[bytes, ...]:
        """Our signatures on the HTLC transactions of the PEER's commitment, in output order.

        On the peer's commitment our HTLC key is its `remote_htlc_pubkey`, derived from our htlc_basepoint and
        the peer's per_commitment_point.
        """
        point = remote_ctx.keys.per_commitment_point
        return tuple(der_to_compact(self.sign_input("htlc", htx.tx, 0, htx.witness_script, htx.input_amount_sat,
                                                    htx.counterparty_sighash_type, point=point))
                     for htx in htlc_transactions(remote_ctx))

    def sign_closing(self, closing: ClosingTx) -> bytes:
        return der_to_compact(self._sign_closing_der(closing))

    def _sign_closing_der(self, closing: ClosingTx) -> bytes:
        return self.sign_input("funding", closing.tx, 0, closing.funding_script, closing.funding_sat, SIGHASH_ALL)

    def signed_local_commitment(self, local_ctx: CommitmentTx, remote_sig: bytes) -> Transaction:
        """Our commitment, ready to broadcast: our signature plus the peer's (compact) one."""
        ours = self.sign_input("funding", local_ctx.tx, 0, local_ctx.funding_script, local_ctx.funding_sat,
                               SIGHASH_ALL)
        return local_ctx.signed(ours, compact_to_der(remote_sig))

    def signed_closing(self, closing: ClosingTx, remote_sig: bytes) -> Transaction:
        return closing.signed(self._sign_closing_der(closing), compact_to_der(remote_sig))

    # --- on-chain sweeps (ampere.node.onchain.resolver): DER signature + SIGHASH_ALL byte, as a witness carries it ------

    def sign_to_local_sweep(self, tx: Transaction, input_index: int, witness_script: bytes, amount_sat: int,
                            per_commitment_point: bytes) -> bytes:
        """Spend OUR commitment's to_local output (after to_self_delay) with local_delayedprivkey.

        BOLT #3: "local_delayedprivkey = delayed_payment_basepoint_secret + SHA256(per_commitment_point ||
        delayed_payment_basepoint)"."""
        return self.sign_input("delayed_payment", tx, input_index, witness_script, amount_sat, SIGHASH_ALL,
                               point=per_commitment_point) + bytes([SIGHASH_ALL])

    def sign_to_remote_sweep(self, tx: Transaction, input_index: int, script_code: bytes, amount_sat: int) -> bytes:
        """Spend our to_remote output on the PEER's commitment.

        BOLT #3 (option_static_remotekey): "The remotepubkey is simply the remote node's payment_basepoint", so
        the key is our payment_basepoint secret itself. `script_code`: the P2WPKH script code, or (anchors) the
        to_remote witness script."""
        return self.sign_input("payment", tx, input_index, script_code, amount_sat, SIGHASH_ALL) + bytes([SIGHASH_ALL])

    def sign_with_revocation_key(self, tx: Transaction, input_index: int, witness_script: bytes, amount_sat: int,
                                 per_commitment_secret: bytes) -> bytes:
        """Spend an output of the peer's REVOKED commitment (or of its second-stage HTLC transaction) with the
        revocation key, from our revocation_basepoint secret and the secret the peer revealed.

        BOLT #3: "revocationprivkey = revocation_basepoint_secret * SHA256(revocation_basepoint ||
        per_commitment_point) + per_commitment_secret * SHA256(per_commitment_point || revocation_basepoint)"."""
        return self.sign_input("revocation", tx, input_index, witness_script, amount_sat, SIGHASH_ALL,
                               revealed_secret=per_commitment_secret) + bytes([SIGHASH_ALL])

    def sign_local_htlc_tx(self, htx: HtlcTx, per_commitment_point: bytes) -> bytes:
        """Our DER signature (SIGHASH_ALL) on the HTLC-timeout/success transaction of OUR commitment built with
        our `per_commitment_point`: the local_htlcpubkey half of its 2-of-2."""
        return self.sign_input("htlc", htx.tx, 0, htx.witness_script, htx.input_amount_sat, SIGHASH_ALL,
                               point=per_commitment_point)

    def sign_anchor(self, tx: Transaction, input_index: int, witness_script: bytes, amount_sat: int) -> bytes:
        """Spend our anchor output (CPFP of our commitment, or its sweep). BOLT #3 to_local_anchor: "Spending of
        the output requires the following witness: <local_sig>" with "<local_funding_pubkey> OP_CHECKSIG ...": the
        funding key signs."""
        return self.sign_input("funding", tx, input_index, witness_script, amount_sat, SIGHASH_ALL) + bytes([SIGHASH_ALL])

    def sign_local_htlc_input(self, tx: Transaction, input_index: int, witness_script: bytes, amount_sat: int,
                              per_commitment_point: bytes) -> bytes:
        """Our SIGHASH_ALL signature on an HTLC-timeout/success of OUR anchor commitment after wallet inputs and a
        change output were added (BOLT #5: the peer's SIGHASH_SINGLE|SIGHASH_ANYONECANPAY signature "allows the
        local node to attach additional inputs and outputs"; ours covers the whole transaction)."""
        return self.sign_input("htlc", tx, input_index, witness_script, amount_sat, SIGHASH_ALL,
                               point=per_commitment_point) + bytes([SIGHASH_ALL])

    def sign_htlc_claim(self, tx: Transaction, input_index: int, witness_script: bytes, amount_sat: int,
                        their_point: bytes) -> bytes:
        """Spend an HTLC output of the PEER's commitment directly: on it our HTLC key is its remote_htlcpubkey,
        "remote_htlcpubkey = htlc_basepoint + SHA256(per_commitment_point || htlc_basepoint) * G" with the
        peer's point (BOLT #3)."""
        return self.sign_input("htlc", tx, input_index, witness_script, amount_sat, SIGHASH_ALL,
                               point=their_point) + bytes([SIGHASH_ALL])


class LocalChannelSigner(ChannelSigner):
    """Secrets of one channel, in this process. Never serialised: rebuild it from the channel seed."""

    def __init__(self, channel_seed: bytes) -> None:
        if not isinstance(channel_seed, (bytes, bytearray)) or len(channel_seed) != 32:
            raise SignerError("channel seed must be 32 bytes")
        keys = {name: _derive(bytes(channel_seed), name) for name in _NAMES}
        self._init(ChannelSecrets(**keys))

    @classmethod
    def from_secrets(cls, funding: bytes, revocation: bytes, payment: bytes, delayed_payment: bytes, htlc: bytes,
                     shachain_seed: bytes) -> LocalChannelSigner:
        """A signer with these secrets instead of derived ones (--dev-force-channel-secrets, conformance tests)."""
        secrets = ChannelSecrets(funding, revocation, payment, delayed_payment, htlc, shachain_seed)
        for name in _NAMES:
            value = getattr(secrets, name)
            if not isinstance(value, (bytes, bytearray)) or len(value) != 32 or not (
                    name == "shachain_seed" or 0 < int.from_bytes(value, "big") < SECP256K1_ORDER):
                raise SignerError(f"forced {name} secret is not a valid 32-byte key")
        self = cls.__new__(cls)
        self._init(secrets)
        return self

    def _init(self, secrets: ChannelSecrets) -> None:
        self._keys = {name: bytes(getattr(secrets, name)) for name in CHANNEL_KEYS}
        self._shachain_seed = bytes(secrets.shachain_seed)
        self.pubkeys = ChannelPubkeys(
            funding_pubkey=pubkey_from_secret(self._keys["funding"]),
            revocation_basepoint=pubkey_from_secret(self._keys["revocation"]),
            payment_basepoint=pubkey_from_secret(self._keys["payment"]),
            delayed_payment_basepoint=pubkey_from_secret(self._keys["delayed_payment"]),
            htlc_basepoint=pubkey_from_secret(self._keys["htlc"]),
        )
        self._point_cache = lru_cache(maxsize=64)(self._point)
        # The secret of commitment n is derived (48 SHA256) for its point, then again to revoke n: once.
        self._secret_cache = lru_cache(maxsize=64)(self._secret)
        self._secret_prefix = lru_cache(maxsize=2)(self._prefix_secret)
        self._basepoints = {"htlc": self.pubkeys.htlc_basepoint,
                            "delayed_payment": self.pubkeys.delayed_payment_basepoint}
        # A commitment's HTLC signatures all use one tweaked key: derive it once (an EC multiplication).
        self._tweaked = lru_cache(maxsize=16)(self._tweak_key)
        self._secret_by_basepoint = {self.pubkeys.htlc_basepoint: self._keys["htlc"],
                                     self.pubkeys.delayed_payment_basepoint: self._keys["delayed_payment"]}
        # Our recent per-commitment points -> their commitment numbers (own_revocation_pubkey).
        self._number_of_point: dict[bytes, int] = {}

    # --- per-commitment secrets and points (BOLT 3) ------------------------------------------------

    def _secret(self, n: int) -> bytes:
        # BOLT 3 generate_from_seed(seed, I) flips and hashes I's bits from 47 down to 0: the value after bits
        # 47..16 is generate_from_seed(seed, I with its low 16 bits cleared), shared by 65,536 consecutive
        # commitments. Keep it, and derive only the last 16 bits per commitment (<= 16 SHA256, not ~48).
        index = secret_index(n)
        return derive_secret(self._secret_prefix(index >> _LOW_BITS), _LOW_BITS, index)

    def _prefix_secret(self, prefix: int) -> bytes:
        return per_commitment_secret_from_seed(self._shachain_seed, prefix << _LOW_BITS)

    def _point(self, n: int) -> bytes:
        point = per_commitment_point(self._secret_cache(n))
        if len(self._number_of_point) >= 128:
            self._number_of_point.clear()
        self._number_of_point[point] = n
        return point

    def commitment_point(self, n: int) -> bytes:
        return self._point_cache(n)

    def commitment_secret(self, n: int) -> bytes:
        return self._secret_cache(n)

    # --- our side's per-commitment keys (keys.OwnKeys): the same public keys, cheaper with our secrets ------

    def own_derived_pubkey(self, basepoint: bytes, per_commitment_point: bytes) -> bytes | None:
        secret = self._secret_by_basepoint.get(basepoint)
        if secret is None:
            return None
        return derive_pubkey_with_secret(secret, basepoint, per_commitment_point)

    def own_revocation_pubkey(self, revocation_basepoint: bytes, per_commitment_point: bytes) -> bytes | None:
        if revocation_basepoint == self.pubkeys.revocation_basepoint:
            # the peer's commitment: our revocation basepoint
            return derive_revocation_pubkey_with_secret(revocation_basepoint, per_commitment_point,
                                                        revocation_basepoint_secret=self._keys["revocation"])
        n = self._number_of_point.get(per_commitment_point)
        if n is None:
            return None
        # our commitment number n: our per-commitment point (checked against the secret's point: the map is a
        # cache of what _point computed, never trusted for another point)
        secret = self._secret_cache(n)
        if self._point_cache(n) != per_commitment_point:
            return None
        return derive_revocation_pubkey_with_secret(revocation_basepoint, per_commitment_point,
                                                    per_commitment_secret=secret)

    # --- signatures -----------------------------------------------------------------------------------

    def _tweak_key(self, key: str, point: bytes) -> bytes:
        return derive_privkey(self._keys[key], point, self._basepoints[key])

    def sign_commitment(self, ctx: CommitmentTx) -> bytes:
        # the same signature as the base class's, made in compact form directly (commitment_signed carries it so)
        return ecdsa_sign_compact(self._keys["funding"], ctx.sighash())

    def sign_htlc_txs(self, remote_ctx: CommitmentTx) -> tuple[bytes, ...]:
        htxs = htlc_transactions(remote_ctx)
        if not htxs:
            return ()
        privkey = self._tweaked("htlc", bytes(remote_ctx.keys.per_commitment_point))
        return tuple(ecdsa_sign_compact(privkey, htx.sighash(htx.counterparty_sighash_type)) for htx in htxs)

    def sign_input(self, key: str, tx: Transaction, input_index: int, script_code: bytes, amount_sat: int,
                   sighash_type: int, *, point: bytes | None = None, revealed_secret: bytes | None = None) -> bytes:
        if key in ("htlc", "delayed_payment"):
            if point is None:
                raise SignerError(f"the {key} key needs a per_commitment_point")
            privkey = self._tweaked(key, bytes(point))
        elif key == "revocation":
            if revealed_secret is None:
                raise SignerError("the revocation key needs the revealed per_commitment_secret")
            privkey = derive_revocation_privkey(self._keys["revocation"], revealed_secret)
        elif key in ("funding", "payment"):
            privkey = self._keys[key]
        else:
            raise SignerError(f"unknown channel key {key!r}")
        return ecdsa_sign(privkey, bip143_sighash(tx, input_index, script_code, amount_sat, sighash_type))

    def sign_gossip(self, message: bytes) -> bytes:
        from coincurve import PrivateKey

        from ampere.ln.gossip.signing import channel_announcement_digest

        if message[:2] != CHANNEL_ANNOUNCEMENT_TYPE:
            raise SignerError("the funding key signs channel_announcement only")
        digest = channel_announcement_digest(bytes(message))
        return der_to_compact(PrivateKey(self._keys["funding"]).sign(digest, hasher=None))
