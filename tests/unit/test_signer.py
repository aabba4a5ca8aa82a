"""The node's Signer: the in-process one gives the keys and signatures Ampere always made (same node id,
basepoints, makesecret, wallet keys, signatures), and the signer process (server.py over a unix socket,
client.py) gives exactly the same answers, so a channel run against it is byte-identical."""

from __future__ import annotations

import hashlib
import os
import threading

import coincurve
import pytest

from ampere.ln import invoice as bolt11
from ampere.ln.channel import core
from ampere.testing import channel_pair as pair_module
from ampere.ln.channel.keys import der_to_compact
from ampere.ln.channel.signer import ChannelSecrets, LocalChannelSigner, SignerError
from ampere.ln.gossip.signing import make_channel_update, privkey_signer, unsigned_channel_announcement
from ampere.ln.onion import create_onion, peel_onion
from ampere.ln.blinding import path_key_secrets
from ampere.ln.offers.encoding import bolt12_signature, signature_tag, tagged_hash
from ampere.node.signer.client import RemoteChannelSigner, RemoteSigner
from ampere.node.signer.hsm_secret import channel_seed, derive_node_key, hkdf_sha256
from ampere.node.signer.server import SignerService, close_listener, listen, serve_forever
from ampere.node.signer.signer import LocalSigner, SignerUnavailable, WalletInput, bip32_base_from_hsm_secret
from ampere.primitives.script import p2wpkh
from ampere.primitives.tx import SIGHASH_ALL, OutPoint, Transaction, TxIn, TxOut, bip143_sighash
from ampere.wire.noise import InitiatorHandshake, ResponderHandshake

LEGACY = (b"lightning-1" + bytes(32))[:32]
PEER = coincurve.PrivateKey(b"\x11" * 32).public_key.format()


@pytest.fixture
def remote(tmp_path):
    """A signer server for LEGACY in a thread, and a client connected to it; the listener is closed at the end."""
    path = os.path.join(str(tmp_path), "signer.sock")
    service = SignerService(LocalSigner(LEGACY))
    listener = listen(path)
    t = threading.Thread(target=serve_forever, args=(service, listener), daemon=True)
    t.start()
    client = RemoteSigner(path)
    yield client, service, listener
    client.close()
    close_listener(listener)


def _tx() -> Transaction:
    return Transaction(version=2, inputs=[TxIn(OutPoint(b"\x22" * 32, 1), b"", 0xFFFFFFFD)],
                       outputs=[TxOut(90_000, p2wpkh(b"\x33" * 20))], locktime=0)


def test_local_signer_node_key_and_derived_secrets_unchanged():
    s = LocalSigner(LEGACY)
    assert s.node_id.hex() == "0266e4598d1d3c415f572a8488830b60f7e744ed9235eb0b1ba93283b315c03518"
    assert s.node_id == derive_node_key(LEGACY).public_key.format()
    # makesecret: HKDF(HKDF(root, "derived secrets"), info), as hsmd's handle_derive_secret.
    assert s.derive_secret(b"commando") == hkdf_sha256(hkdf_sha256(LEGACY, b"", b"derived secrets"), b"", b"commando")
    # Channel basepoints: CLN's get_channel_seed, then Ampere's HKDF per key (unchanged).
    assert s.channel_signer(PEER, 7).pubkeys == LocalChannelSigner(channel_seed(LEGACY, PEER, 7)).pubkeys
    # Wallet: the xpub is the public half of the base CLN derives; nothing private leaves.
    xpub = s.wallet_xpub("regtest")
    assert xpub == bip32_base_from_hsm_secret(LEGACY, "test").xpub() and xpub.startswith("tpub")
    forced = LocalSigner(LEGACY, node_key=b"\x01" * 32)
    assert forced.node_id == coincurve.PrivateKey(b"\x01" * 32).public_key.format()


def test_local_signer_signatures_match_the_raw_key():
    s = LocalSigner(LEGACY)
    key = derive_node_key(LEGACY)
    update = dict(chain_hash=b"\x06" * 32, short_channel_id=1 << 40, timestamp=1_700_000_000, direction=0,
                  cltv_expiry_delta=34, htlc_minimum_msat=0, htlc_maximum_msat=10**9, fee_base_msat=1,
                  fee_proportional_millionths=10)
    assert make_channel_update(sign=s, **update) == make_channel_update(sign=privkey_signer(key.secret), **update)
    with pytest.raises(ValueError):  # the node key signs gossip and nothing else through sign_gossip
        s.sign_gossip(b"\x00\x12" + bytes(100))
    inv = bolt11.Invoice(currency="bcrt", amount_msat=1000, timestamp=1_700_000_000, payment_hash=b"\x01" * 32,
                         payment_secret=b"\x02" * 32, description="x")
    text = bolt11.encode(inv, key)
    assert bolt11.encode(inv, s) == text  # RFC6979: the same key signs the same bytes
    assert bolt11.resign(text, s) == text
    root = hashlib.sha256(b"root").digest()
    sig = s.sign_bolt12("invoice", "signature", root)  # BIP 340 (fresh aux randomness): verify, not compare
    assert coincurve.PublicKeyXOnly(s.node_id[1:]).verify(sig, tagged_hash(signature_tag("invoice"), root))
    assert len(bolt12_signature("invoice", "signature", root, key)) == 64
    point = coincurve.PrivateKey(b"\x05" * 32).public_key.format()
    assert s.ecdh(point) == key.ecdh(point)


def test_onion_and_blinding_through_the_signer_match_the_raw_key():
    s = LocalSigner(LEGACY)
    key = derive_node_key(LEGACY)
    packet, _ = create_onion(b"\x07" * 32, [(s.node_id, b"\x02\x02\x00\x01" + bytes(30))], b"\x09" * 32)
    peeled = peel_onion(s, packet, b"\x09" * 32)
    assert peeled.shared_secret == peel_onion(key.secret, packet, b"\x09" * 32).shared_secret
    assert peeled.payload == b"\x02\x02\x00\x01" + bytes(30)
    path_key = coincurve.PrivateKey(b"\x06" * 32).public_key.format()
    ss_raw, blinded_raw = path_key_secrets(key.secret, path_key)
    ss, blinded = path_key_secrets(s, path_key)
    assert ss == ss_raw
    other = coincurve.PrivateKey(b"\x08" * 32).public_key.format()
    assert blinded.ecdh(other) == coincurve.PrivateKey(blinded_raw).ecdh(other)


def test_bolt8_handshake_with_a_signer_key():
    s = LocalSigner(LEGACY)
    other = os.urandom(32)
    init = InitiatorHandshake(other, s.node_id)
    resp = ResponderHandshake(s)
    act2 = resp.process_act_one(init.act_one())
    act3, session_i = init.process_act_two(act2)
    session_r = resp.process_act_three(act3)
    assert session_r.remote_pubkey == coincurve.PrivateKey(other).public_key.format()
    assert session_r.decrypt_frame(session_i.encrypt_message(b"hello")) == b"hello"


def test_forced_channel_secrets_are_the_one_override():
    secrets = ChannelSecrets(*(bytes([i]) * 32 for i in range(1, 7)))
    s = LocalSigner(LEGACY, channel_secrets=secrets)
    ch = s.channel_signer(PEER, 1)
    assert ch.pubkeys.funding_pubkey == coincurve.PrivateKey(b"\x01" * 32).public_key.format()
    assert ch.pubkeys.htlc_basepoint == coincurve.PrivateKey(b"\x05" * 32).public_key.format()
    with pytest.raises(SignerError):
        LocalChannelSigner.from_secrets(*(bytes(32) for _ in range(6)))


def test_commitment_secrets_across_the_cached_prefix_boundary():
    # The signer keeps generate_from_seed's value for the top 32 bits of the index: secrets on both sides of a
    # 2^16 boundary, and far away, are BOLT 3's generate_from_seed(seed, 2^48 - 1 - n).
    from ampere.ln.channel.keys import commitment_point, commitment_secret
    ch = LocalChannelSigner(b"\x01" * 32)
    seed = ch._shachain_seed
    for n in (0, 1, 65534, 65535, 65536, 65537, 2**40 + 3, 2**48 - 1):
        assert ch.commitment_secret(n) == commitment_secret(seed, n), n
        assert ch.commitment_point(n) == commitment_point(seed, n), n


def test_own_keys_match_the_public_derivation():
    # The signer computes our side's per-commitment keys with its secrets (keys.OwnKeys): the same keys as the
    # public derivation, on our commitment (our point) and on the peer's (its point), and none for a point or
    # basepoint it does not hold.
    from ampere.ln.channel import keys
    ours, theirs = LocalChannelSigner(b"\x01" * 32), LocalChannelSigner(b"\x02" * 32)
    our_point, their_point = ours.commitment_point(7), theirs.commitment_point(9)
    cases = ((ours.pubkeys, theirs.pubkeys, our_point), (theirs.pubkeys, ours.pubkeys, their_point))
    for local, remote, point in cases:
        keys._commitment_keys.cache_clear()
        public = keys.commitment_keys(local, remote, point)
        expected = [public.revocation_pubkey, public.local_delayed_pubkey, public.local_htlc_pubkey,
                    public.remote_htlc_pubkey]
        keys._commitment_keys.cache_clear()
        with_secrets = keys.commitment_keys(local, remote, point, own=ours)
        assert [with_secrets.revocation_pubkey, with_secrets.local_delayed_pubkey, with_secrets.local_htlc_pubkey,
                with_secrets.remote_htlc_pubkey] == expected
        assert with_secrets == public
    # the secrets' path is the one taken for our side
    assert ours.own_revocation_pubkey(theirs.pubkeys.revocation_basepoint, our_point) is not None
    assert ours.own_revocation_pubkey(ours.pubkeys.revocation_basepoint, their_point) is not None
    assert ours.own_derived_pubkey(ours.pubkeys.htlc_basepoint, their_point) is not None
    assert ours.own_revocation_pubkey(theirs.pubkeys.revocation_basepoint, their_point) is None
    assert ours.own_derived_pubkey(theirs.pubkeys.htlc_basepoint, our_point) is None


def test_sign_input_refuses_a_missing_tweak():
    ch = LocalChannelSigner(b"\x01" * 32)
    with pytest.raises(SignerError):
        ch.sign_input("htlc", _tx(), 0, b"\x51", 1000, SIGHASH_ALL)
    with pytest.raises(SignerError):
        ch.sign_input("revocation", _tx(), 0, b"\x51", 1000, SIGHASH_ALL)
    with pytest.raises(SignerError):
        ch.sign_input("node", _tx(), 0, b"\x51", 1000, SIGHASH_ALL)


def test_remote_signer_answers_as_the_local_one(remote):
    client, service, _ = remote
    local = service.signer
    assert client.node_id == local.node_id
    point = coincurve.PrivateKey(b"\x05" * 32).public_key.format()
    assert client.ecdh(point) == local.ecdh(point)
    digest = hashlib.sha256(b"d").digest()
    ann = unsigned_channel_announcement(chain_hash=b"\x06" * 32, short_channel_id=1 << 40, node_id_a=local.node_id,
                                        node_id_b=PEER, bitcoin_key_a=PEER, bitcoin_key_b=PEER).to_bytes()
    assert client.sign_gossip(ann) == local.sign_gossip(ann)
    assert client.sign_invoice("lnbcrt10n", bytes(range(32))) == local.sign_invoice("lnbcrt10n", bytes(range(32)))
    assert coincurve.PublicKeyXOnly(local.node_id[1:]).verify(
        client.sign_bolt12("invoice", "signature", digest), tagged_hash(signature_tag("invoice"), digest))
    assert client.node_hmac(b"x") == local.node_hmac(b"x")
    assert client.derive_secret(b"commando") == local.derive_secret(b"commando")
    assert client.wallet_xpub("regtest") == local.wallet_xpub("regtest")
    # Wallet signing: a p2wpkh input of key 3, checked against the public key the xpub gives.
    base = bip32_base_from_hsm_secret(LEGACY, "test")
    pub = base.child(3).pubkey
    spk = p2wpkh(hashlib.new("ripemd160", hashlib.sha256(pub).digest()).digest())
    signed = Transaction.parse(client.sign_wallet_tx(_tx().serialize(), [WalletInput(3, spk, 100_000)]))
    assert signed.inputs[0].witness[1] == pub
    assert signed.serialize() == local.sign_wallet_tx(_tx().serialize(), [WalletInput(3, spk, 100_000)])
    # A refused request is an error answer, and the connection stays usable.
    with pytest.raises(SignerError):
        client.sign_gossip(b"\x00\x12 not gossip")
    with pytest.raises(SignerError):
        client._call("no_such_method")
    assert client.node_hmac(b"x") == local.node_hmac(b"x")


def test_remote_channel_signer_matches_the_local_one(remote):
    client, service, _ = remote
    rch = client.channel_signer(PEER, 9)
    lch = service.signer.channel_signer(PEER, 9)
    assert rch.pubkeys == lch.pubkeys
    assert rch.commitment_point(5) == lch.commitment_point(5)
    assert rch.commitment_secret(5) == lch.commitment_secret(5)
    tx, script = _tx(), b"\x52" * 40
    theirs = coincurve.PrivateKey(b"\x04" * 32).public_key.format()
    for key, kw in (("funding", {}), ("payment", {}), ("htlc", {"point": theirs}),
                    ("delayed_payment", {"point": theirs}), ("revocation", {"revealed_secret": b"\x04" * 32})):
        assert rch.sign_input(key, tx, 0, script, 100_000, SIGHASH_ALL, **kw) == \
            lch.sign_input(key, tx, 0, script, 100_000, SIGHASH_ALL, **kw), key
    ann = unsigned_channel_announcement(chain_hash=b"\x06" * 32, short_channel_id=1 << 40, node_id_a=PEER,
                                        node_id_b=client.node_id, bitcoin_key_a=rch.pubkeys.funding_pubkey,
                                        bitcoin_key_b=PEER).to_bytes()
    assert rch.sign_gossip(ann) == lch.sign_gossip(ann)
    with pytest.raises(SignerError):  # the funding key signs channel_announcement only
        rch.sign_gossip(b"\x01\x02" + ann[2:])
    # The funding signature is over BIP 143 of the input: verify it with the funding key.
    sig = rch.sign_input("funding", tx, 0, script, 100_000, SIGHASH_ALL)
    assert coincurve.PublicKey(rch.pubkeys.funding_pubkey).verify(
        sig, bip143_sighash(tx, 0, script, 100_000, SIGHASH_ALL), hasher=None)
    assert len(der_to_compact(sig)) == 64


class _SeededService(SignerService):
    """The pair simulation seeds its two channels itself: serve LocalChannelSigner(seed) for dbid = seed byte."""

    def _channel(self, peer, dbid):
        key = (peer, dbid)
        if key not in self._channels:
            self._channels[key] = LocalChannelSigner(bytes([dbid]) * 32)
        return self._channels[key]


def _run_pair() -> tuple[bytes, bytes, int, tuple[bytes, ...], tuple[bytes, ...]]:
    pair = pair_module.Pair.open(push_msat=100_000_000)
    a, b = pair.a, pair.b
    preimage = b"\x42" * 32
    a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, hashlib.sha256(preimage).digest(), 700, bytes(1366)))
    pair.pump()
    # the HTLC signatures each side received (LocalChannelSigner signs them in compact form directly; the remote
    # signer through sign_input)
    htlc_sigs = (a.ch.local_htlc_sigs, b.ch.local_htlc_sigs)
    assert all(len(sigs) == 1 for sigs in htlc_sigs)
    b.apply(core.fulfill_htlc(b.ch, b.signer, 0, preimage))
    pair.pump()
    tx = core.local_commitment_tx(a.ch, a.signer)
    return tx.serialize(), b.signer.commitment_secret(2**48 - 2), a.ch.balance_local_msat, *htlc_sigs


def test_a_channel_run_against_the_signer_process_is_byte_identical(tmp_path, monkeypatch):
    expected = _run_pair()
    path = os.path.join(str(tmp_path), "s.sock")
    listener = listen(path)
    threading.Thread(target=serve_forever, args=(_SeededService(LocalSigner(LEGACY)), listener), daemon=True).start()
    client = RemoteSigner(path)
    try:
        made = []

        def remote_signer(seed: bytes) -> RemoteChannelSigner:
            made.append(seed)
            return RemoteChannelSigner(client, PEER, seed[0])

        monkeypatch.setattr(pair_module, "LocalChannelSigner", remote_signer)
        assert _run_pair() == expected
        assert made == [b"\x01" * 32, b"\x02" * 32]
    finally:
        client.close()
        close_listener(listener)


def test_a_dead_signer_fails_cleanly(remote):
    client, _, listener = remote
    rch = client.channel_signer(PEER, 3)
    close_listener(listener)
    client.close()  # the signer process is gone: no listener, the old connection closed
    with pytest.raises(SignerUnavailable):
        client.derive_secret(b"x")
    with pytest.raises(SignerUnavailable):
        rch.sign_input("funding", _tx(), 0, b"\x51", 1000, SIGHASH_ALL)
    with pytest.raises(SignerUnavailable):
        RemoteSigner("/nonexistent/signer.sock")
