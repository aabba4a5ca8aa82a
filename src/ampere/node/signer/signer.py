"""The node's one signer: every use of a secret goes through `Signer`; `LocalSigner` holds them in-process.

What the rest of the node may ask (and nothing more: no method returns a private key):
  node key     node_id; ecdh(point) for BOLT 8 and onions, onion messages, blinded paths; sign_gossip(message)
               (channel_announcement / channel_update / node_announcement); BOLT 11 and BOLT 12 invoice
               signatures; node_hmac(data) for private deterministic values (blinded path ids and sessions).
  derived      derive_secret(info): `makesecret` and the rune master secret (hsmd's handle_derive_secret).
  channels     channel_signer(peer_id, dbid): a ChannelSigner (ampere.ln.channel.signer) for one channel.
  wallet       wallet_xpub(): the BIP32 base the wallet derives its addresses from, public only;
               sign_wallet_tx(tx, inputs): the wallet's inputs signed (p2wpkh or BIP86 key path).

Every argument and result is bytes, ints, strings or a simple record, so a signer in another process
implements the same methods over a socket (ampere.node.signer.server / client).  In-process calls are
direct method calls: the channel hot path must not pay for serialisation.
"""

from __future__ import annotations

import hashlib
import hmac
from abc import ABC, abstractmethod
from dataclasses import astuple, dataclass

import coincurve

from ampere.ln.channel.signer import ChannelSecrets, ChannelSigner, LocalChannelSigner
from ampere.ln.gossip.signing import gossip_digest
from ampere.ln.invoice import invoice_signing_hash
from ampere.ln.offers.encoding import bolt12_signature
from ampere.ln.onion import _ecdh
from ampere.node.signer.hsm_secret import channel_seed, derive_node_key, hkdf_sha256
from ampere.primitives.bip32 import HARDENED, Bip32Error, ExtKey
from ampere.primitives.script import is_p2tr, is_p2wpkh
from ampere.primitives.tx import Transaction, TxOut, sign_input_p2tr_keypath, sign_input_p2wpkh

__all__ = ["LocalSigner", "Signer", "SignerUnavailable", "WalletInput", "bip32_base_from_hsm_secret"]


class SignerUnavailable(Exception):
    """The signer could not answer (a remote signer gone or refusing): the operation is abandoned, nothing
    signed, no state advanced."""


@dataclass(frozen=True)
class WalletInput:
    """One input of a wallet transaction: the output it spends and, when it is ours to sign, its key index
    (None: another input, listed because BIP 341 commits to every spent output)."""
    keyidx: int | None
    script: bytes      # the spent output's scriptPubKey (p2wpkh or p2tr)
    amount_sat: int


class Signer(ABC):
    """Every secret of the node, behind methods that take and return plain values."""

    node_id: bytes  # 33-byte compressed public key

    @abstractmethod
    def ecdh(self, point: bytes) -> bytes:
        """SHA256 of the compressed point node_secret * point (BOLT #4 / BOLT #8 ECDH)."""

    @abstractmethod
    def sign_gossip(self, message: bytes) -> bytes:
        """64-byte compact signature by the node key of an unsigned channel_announcement, node_announcement or
        channel_update (type first): over the double-SHA256 BOLT #7 says, which the signer computes."""

    @abstractmethod
    def sign_invoice(self, hrp: str, data: bytes) -> bytes:
        """BOLT #11: the 65-byte recoverable signature over SHA256(hrp || data), data the 5-bit values."""

    @abstractmethod
    def sign_bolt12(self, message_name: str, field_name: str, merkle_root: bytes) -> bytes:
        """BOLT #12: SIG("lightning"||messagename||fieldname, merkle_root, node key), 64 bytes."""

    @abstractmethod
    def node_hmac(self, data: bytes) -> bytes:
        """HMAC-SHA256 keyed by the node secret: deterministic values only we can make (blinded path ids)."""

    @abstractmethod
    def derive_secret(self, info: bytes) -> bytes:
        """hsmd handle_derive_secret: HKDF-SHA256(the node's derived secret, no salt, info) (`makesecret`)."""

    @abstractmethod
    def channel_signer(self, peer_id: bytes, dbid: int) -> ChannelSigner:
        """The signer of channel `dbid` with `peer_id` (seeded as CLN's hsmd get_channel_seed does)."""

    @abstractmethod
    def wallet_xpub(self, network: str) -> str:
        """The wallet's BIP32 base as an extended PUBLIC key (the wallet derives child i from it)."""

    @abstractmethod
    def sign_wallet_tx(self, tx: bytes, inputs: list[WalletInput | None]) -> bytes:
        """`tx` with the inputs listed (by position; None: not ours, left as is) signed; returns it serialised.
        Every input must be listed: BIP 341 commits to all spent outputs."""


def bip32_base_from_hsm_secret(hsm_secret: bytes, net: str = "test") -> ExtKey:
    """The parent of the wallet's keys for this secret, as CLN chooses it (lightningd/hsm_control.c): with a
    legacy 32-byte secret, m/0/0 of the tree whose seed is HKDF(hsm_secret, "bip32 seed"); with a mnemonic
    secret (its 64-byte BIP39 seed), "Using BIP86 for new addresses": m/86'/0'/0'/0 of the tree made
    from the BIP39 seed itself (hsmd derive_bip86_base_key; coin type 0' on every network, as CLN)."""
    if len(hsm_secret) == 64:
        return ExtKey.from_seed(hsm_secret, net).derive([HARDENED | 86, HARDENED, HARDENED, 0])
    salt = 0
    while True:
        # hsmd_init: HKDF over the whole secret (all 64 bytes of a mnemonic seed).
        seed = hkdf_sha256(hsm_secret, salt.to_bytes(4, "little"), b"bip32 seed")
        try:
            master = ExtKey.from_seed(seed, net)
            break
        except Bip32Error:
            salt += 1
    return master.derive([0, 0])


class LocalSigner(Signer):
    """The in-process signer, from the root secret.  `node_key`, `bip32_seed` and `channel_secrets` override
    what the root secret derives (CLN's --dev-force-privkey, --dev-force-bip32-seed and
    --dev-force-channel-secrets): the one place tests that need known keys plug them in."""

    def __init__(self, hsm_secret: bytes, *, node_key: bytes | None = None, bip32_seed: bytes | None = None,
                 channel_secrets: ChannelSecrets | None = None) -> None:
        self._hsm_secret = bytes(hsm_secret)
        key = coincurve.PrivateKey(node_key) if node_key is not None else derive_node_key(self._hsm_secret)
        self._node_key = key
        self._node_secret = key.secret
        self.node_id = key.public_key.format(compressed=True)
        # hsmd_init: the base of `makesecret` (HKDF over the whole root secret, info "derived secrets").
        self._derived_secret = hkdf_sha256(self._hsm_secret, b"", b"derived secrets")
        self._channel_secrets = channel_secrets
        self._bip32_seed = bip32_seed
        self._wallet_base: dict[str, ExtKey] = {}

    # --- node key -----------------------------------------------------------------------------------

    def ecdh(self, point: bytes) -> bytes:
        return _ecdh(self._node_secret, coincurve.PublicKey(bytes(point)))

    def sign_gossip(self, message: bytes) -> bytes:
        # sign_recoverable gives r || s || recid without a DER round trip; drop the recid.
        return self._node_key.sign_recoverable(gossip_digest(bytes(message)), hasher=None)[:64]

    def sign_invoice(self, hrp: str, data: bytes) -> bytes:
        return self._node_key.sign_recoverable(invoice_signing_hash(hrp, list(data)), hasher=None)

    def sign_bolt12(self, message_name: str, field_name: str, merkle_root: bytes) -> bytes:
        if len(merkle_root) != 32:
            raise ValueError("a merkle root is 32 bytes")
        return bolt12_signature(message_name, field_name, bytes(merkle_root), self._node_key)

    def node_hmac(self, data: bytes) -> bytes:
        return hmac.new(self._node_secret, bytes(data), hashlib.sha256).digest()

    def derive_secret(self, info: bytes) -> bytes:
        return hkdf_sha256(self._derived_secret, b"", bytes(info))

    # --- channels -------------------------------------------------------------------------------------

    def channel_signer(self, peer_id: bytes, dbid: int) -> LocalChannelSigner:
        if self._channel_secrets is not None:
            # The same keys for every channel: conformance tests only.
            return LocalChannelSigner.from_secrets(*astuple(self._channel_secrets))
        return LocalChannelSigner(channel_seed(self._hsm_secret, bytes(peer_id), int(dbid)))

    # --- wallet -----------------------------------------------------------------------------------------

    def _base(self, network: str) -> ExtKey:
        net = "main" if network == "bitcoin" else "test"
        base = self._wallet_base.get(net)
        if base is None:
            if self._bip32_seed is not None:  # --dev-force-bip32-seed: hsmd's master key from this seed; base m/0/0
                base = ExtKey.from_seed(self._bip32_seed, net).derive([0, 0])
            else:
                base = bip32_base_from_hsm_secret(self._hsm_secret, net)
            self._wallet_base[net] = base
        return base

    def wallet_xpub(self, network: str) -> str:
        return self._base(network).xpub()

    def sign_wallet_tx(self, tx: bytes, inputs: list[WalletInput | None]) -> bytes:
        t = Transaction.parse(bytes(tx))
        if len(inputs) != len(t.inputs):
            raise ValueError("every input of the transaction must be listed")
        spent = [TxOut(i.amount_sat, i.script) if i is not None else None for i in inputs]
        inputs = [i if i is not None and i.keyidx is not None else None for i in inputs]
        base = self._base("regtest")  # the network only changes how the key would be serialised
        for n, inp in enumerate(inputs):
            if inp is None:
                continue
            key = base.child(int(inp.keyidx)).private_key()
            if is_p2tr(inp.script):
                if any(s is None for s in spent):
                    raise ValueError("a taproot input needs every spent output")
                sign_input_p2tr_keypath(t, n, key, spent)  # type: ignore[arg-type]
            elif is_p2wpkh(inp.script):
                sign_input_p2wpkh(t, n, key, inp.amount_sat)
            else:
                raise ValueError(f"cannot sign input {n}: unknown script type")
        return t.serialize()
