"""BOLT 3 test vectors (appendices B to F of 03-transactions.md), one test id per named case.

The vectors live in tests/vectors/bolt03/*.json, extracted from lightning/bolts at the commit named in each
file's "source". Signed transactions are also run through Bitcoin Core's script interpreter
(libbitcoinkernel, via py-bitcoinkernel) to prove they spend what they claim to.
"""
from __future__ import annotations

import json
from pathlib import Path

import pbk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampere.ln.channel.closing import (
    ClosingError,
    build_closing_tx,
    build_simple_closing_tx,
    dust_threshold_sat,
    expected_closing_weight,
)
from ampere.ln.channel.commitment import (
    ChannelParams,
    CommitmentError,
    HtlcSpec,
    Side,
    build_commitment_tx,
    commitment_fee_sat,
    htlc_transactions,
    is_htlc_trimmed,
    obscured_commitment_number,
)
from ampere.ln.channel.htlc_tx import HtlcTxError, HtlcTxKind
from ampere.ln.channel.keys import (
    ChannelPubkeys,
    KeyDerivationError,
    commitment_keys,
    commitment_point,
    commitment_secret,
    compact_to_der,
    der_to_compact,
    derive_privkey,
    derive_pubkey,
    derive_pubkey_with_secret,
    derive_revocation_privkey,
    derive_revocation_pubkey,
    derive_revocation_pubkey_with_secret,
    ecdsa_sign,
    ecdsa_verify,
    per_commitment_point,
    per_commitment_secret_from_seed,
    pubkey_from_secret,
    secret_index,
)
from ampere.ln.channel.scripts import ANCHOR_OUTPUT_SAT, ChannelType, anchor_script, funding_script, to_local_script
from ampere.ln.channel.shachain import ShachainError, ShachainStore
from ampere.primitives.crypto import hash160, sha256
from ampere.primitives.script import p2pkh, p2wpkh, p2wsh, push_data
from ampere.primitives.tx import SIGHASH_ALL, OutPoint, Transaction, TxIn, TxOut, bip143_sighash, legacy_sighash

VECTORS = Path(__file__).parent / "bolt03"
h = bytes.fromhex


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


KEYS = _load("key_derivation.json")
SECRETS = _load("per_commitment_secrets.json")
FUNDING = _load("funding.json")
LEGACY = _load("commitment_legacy.json")
ANCHORS = _load("commitment_anchors.json")
P = LEGACY["params"]
INTERNAL = P["internal"]

_CONSENSUS_FLAGS = (pbk.ScriptVerificationFlags.P2SH | pbk.ScriptVerificationFlags.DERSIG
                    | pbk.ScriptVerificationFlags.NULLDUMMY | pbk.ScriptVerificationFlags.CHECKLOCKTIMEVERIFY
                    | pbk.ScriptVerificationFlags.CHECKSEQUENCEVERIFY | pbk.ScriptVerificationFlags.WITNESS)


def assert_spends(tx: Transaction, input_index: int, script_pubkey: bytes, amount_sat: int) -> None:
    """Bitcoin Core's interpreter accepts input `input_index` of `tx` spending (script_pubkey, amount)."""
    assert pbk.ScriptPubkey(script_pubkey).verify(amount_sat, pbk.Transaction(tx.serialize()), None, input_index,
                                                  _CONSENSUS_FLAGS)


# --- Appendix E: key derivation ------------------------------------------------------------------------

def test_key_derivation_pubkey_from_basepoint():
    assert derive_pubkey(h(KEYS["base_point"]), h(KEYS["per_commitment_point"])).hex() == KEYS["localpubkey"]
    # the signer's path for its own basepoints: (secret + tweak) * G
    assert derive_pubkey_with_secret(h(KEYS["base_secret"]), h(KEYS["base_point"]),
                                     h(KEYS["per_commitment_point"])).hex() == KEYS["localpubkey"]


def test_key_derivation_privkey_from_basepoint_secret():
    privkey = derive_privkey(h(KEYS["base_secret"]), h(KEYS["per_commitment_point"]))
    assert privkey.hex() == KEYS["localprivkey"]
    assert pubkey_from_secret(privkey).hex() == KEYS["localpubkey"]


def test_key_derivation_revocation_pubkey():
    assert (derive_revocation_pubkey(h(KEYS["base_point"]), h(KEYS["per_commitment_point"])).hex()
            == KEYS["revocationpubkey"])
    # the signer's paths: with our revocation basepoint's secret (the peer's commitment), or with our
    # per-commitment secret (ours)
    for known in ({"revocation_basepoint_secret": h(KEYS["base_secret"])},
                  {"per_commitment_secret": h(KEYS["per_commitment_secret"])}):
        assert (derive_revocation_pubkey_with_secret(h(KEYS["base_point"]), h(KEYS["per_commitment_point"]),
                                                     **known).hex() == KEYS["revocationpubkey"])


def test_key_derivation_revocation_privkey():
    privkey = derive_revocation_privkey(h(KEYS["base_secret"]), h(KEYS["per_commitment_secret"]))
    assert privkey.hex() == KEYS["revocationprivkey"]
    assert pubkey_from_secret(privkey).hex() == KEYS["revocationpubkey"]


def test_key_derivation_points_from_secrets():
    assert pubkey_from_secret(h(KEYS["base_secret"])).hex() == KEYS["base_point"]
    assert per_commitment_point(h(KEYS["per_commitment_secret"])).hex() == KEYS["per_commitment_point"]


# --- Appendix D: per-commitment secrets ------------------------------------------------------------------

@pytest.mark.parametrize("case", SECRETS["generation"], ids=lambda c: c["name"])
def test_generate_from_seed(case):
    assert per_commitment_secret_from_seed(h(case["seed"]), case["index"]).hex() == case["output"]


@pytest.mark.parametrize("case", SECRETS["storage"], ids=lambda c: c["name"])
def test_shachain_insert(case):
    store = ShachainStore()
    for step in case["inserts"]:
        if step["ok"]:
            store = store.insert(step["index"], h(step["secret"]))
            assert store.get_secret(step["index"]).hex() == step["secret"]
        else:
            with pytest.raises(ShachainError):
                store.insert(step["index"], h(step["secret"]))
    # Every secret accepted so far is still derivable, and survives the persisted form.
    restored = ShachainStore.from_bytes(store.to_bytes())
    for step in case["inserts"]:
        if step["ok"]:
            assert restored.get_secret(step["index"]).hex() == step["secret"]


# --- Appendix B: funding transaction -------------------------------------------------------------------------

def test_funding_transaction():
    f = FUNDING
    ws = funding_script(h(f["local_funding_pubkey"]), h(f["remote_funding_pubkey"]))
    assert ws.hex() == f["funding_witness_script"]
    # Order of the keys given does not matter: they are sorted.
    assert funding_script(h(f["remote_funding_pubkey"]), h(f["local_funding_pubkey"])) == ws

    coinbase = Transaction.parse(h(f["block1_coinbase_tx"]))
    assert coinbase.txid_hex() == f["input_txid"]
    prev_spk = coinbase.outputs[f["input_index"]].script_pubkey
    privkey = h(f["coinbase_privkey"])
    pubkey = pubkey_from_secret(privkey)
    assert prev_spk == p2pkh(hash160(pubkey))
    change_spk = p2wpkh(pubkey)  # the change goes to the same key

    # Expected weight of a 1-input (P2PKH), 2-output funding transaction is 928: the fee at 15000 sat/kw.
    fee = f["input_satoshis"] - f["funding_satoshis"] - f["change_satoshis"]
    assert fee == f["feerate_per_kw"] * 928 // 1000

    outputs = sorted([TxOut(f["funding_satoshis"], p2wsh(ws)), TxOut(f["change_satoshis"], change_spk)],
                     key=lambda o: (o.value, o.script_pubkey))
    tx = Transaction(2, [TxIn(OutPoint(coinbase.txid(), f["input_index"]))], outputs, 0)
    assert tx.outputs[f["funding_output_index"]].script_pubkey == p2wsh(ws)
    sig = ecdsa_sign(privkey, legacy_sighash(tx, 0, prev_spk))
    tx.inputs[0].script_sig = push_data(sig + b"\x01") + push_data(pubkey)
    assert tx.serialize().hex() == f["funding_tx"]
    assert tx.txid_hex() == f["funding_txid"] == P["funding_tx_id"]
    assert tx.weight() == 928  # this signature happens to be the expected size
    assert_spends(tx, 0, prev_spk, f["input_satoshis"])


# --- Appendix C / F: commitment and HTLC transactions ------------------------------------------------------------

_FILLER = pubkey_from_secret(b"\x55" * 32)  # keys the vectors never use (a local revocation basepoint...)


def _pubkeys() -> tuple[ChannelPubkeys, ChannelPubkeys]:
    local = ChannelPubkeys(
        funding_pubkey=h(P["local_funding_pubkey"]), revocation_basepoint=_FILLER,
        payment_basepoint=h(P["local_payment_basepoint"]),
        delayed_payment_basepoint=h(INTERNAL["local_delayed_payment_basepoint"]),
        htlc_basepoint=h(P["local_htlc_basepoint"]))
    remote = ChannelPubkeys(
        funding_pubkey=h(P["remote_funding_pubkey"]), revocation_basepoint=h(INTERNAL["remote_revocation_basepoint"]),
        payment_basepoint=h(P["remote_payment_basepoint"]), delayed_payment_basepoint=_FILLER,
        htlc_basepoint=h(P["remote_htlc_basepoint"]))
    return local, remote


def _params(channel_type: ChannelType, dust_limit_sat: int, *, as_peer: bool = False) -> ChannelParams:
    """The vectors' channel as *local* (the opener) sees it, or as the peer sees it when `as_peer`."""
    local, remote = _pubkeys()
    ours, theirs = (remote, local) if as_peer else (local, remote)
    return ChannelParams(
        funding_outpoint=OutPoint.from_hex(P["funding_tx_id"], P["funding_output_index"]),
        funding_sat=P["funding_amount_satoshi"],
        opener=Side.REMOTE if as_peer else Side.LOCAL,
        channel_type=channel_type, local_pubkeys=ours, remote_pubkeys=theirs,
        local_dust_limit_sat=330 if as_peer else dust_limit_sat,
        remote_dust_limit_sat=dust_limit_sat if as_peer else 330,
        local_to_self_delay=6 if as_peer else P["local_delay"],
        remote_to_self_delay=P["local_delay"] if as_peer else 6)


def _htlcs(ids: list[int], *, as_peer: bool = False) -> list[HtlcSpec]:
    out = []
    for i in ids:
        x = LEGACY["htlcs"][i]
        offered_by_local = x["direction"] == "local->remote"
        offerer = Side.LOCAL if offered_by_local != as_peer else Side.REMOTE
        out.append(HtlcSpec(i, offerer, x["amount_msat"], sha256(h(x["payment_preimage"])), x["cltv_expiry"]))
    return out


def _build(case: dict, channel_type: ChannelType, *, as_peer: bool = False):
    dust = case.get("dust_limit_sat", P["local_dust_limit_satoshi"])
    ours, theirs = case["to_local_msat"], case["to_remote_msat"]
    if as_peer:
        ours, theirs = theirs, ours
    return build_commitment_tx(_params(channel_type, dust, as_peer=as_peer), Side.REMOTE if as_peer else Side.LOCAL,
                               P["commitment_number"], h(INTERNAL["local_per_commitment_point"]),
                               case["feerate_per_kw"], ours, theirs, _htlcs(case["htlc_ids"], as_peer=as_peer))


def _witness(tx_hex: str) -> list[bytes]:
    return Transaction.parse(h(tx_hex)).inputs[0].witness


def _cases(data: dict, channel_type: ChannelType):
    return [pytest.param(c, channel_type, id=f"{data['appendix']}: {c['name']}") for c in data["cases"]]


def _htlc_cases(data: dict, channel_type: ChannelType):
    return [pytest.param(c, i, channel_type, id=f"{data['appendix']}: {c['name']} / htlc output {i}")
            for c in data["cases"] for i in range(len(c["htlc_txs"]))]


ALL_COMMITMENTS = _cases(LEGACY, ChannelType.STATIC_REMOTEKEY) + _cases(ANCHORS, ChannelType.ANCHORS)
ALL_HTLC_TXS = _htlc_cases(LEGACY, ChannelType.STATIC_REMOTEKEY) + _htlc_cases(ANCHORS, ChannelType.ANCHORS)


def test_commitment_keys_of_the_vectors():
    """The common parameters of Appendix C: keys derived from the (INTERNAL) secrets match the published keys."""
    point = per_commitment_point(h(INTERNAL["x_local_per_commitment_secret"]))
    assert point.hex() == INTERNAL["local_per_commitment_point"]
    assert pubkey_from_secret(h(INTERNAL["remote_revocation_basepoint_secret"])).hex() == \
        INTERNAL["remote_revocation_basepoint"]
    assert pubkey_from_secret(h(INTERNAL["local_payment_basepoint_secret"])).hex() == P["local_payment_basepoint"]
    assert pubkey_from_secret(h(INTERNAL["remote_payment_basepoint_secret"])).hex() == P["remote_payment_basepoint"]
    assert pubkey_from_secret(h(P["local_funding_privkey"])).hex() == P["local_funding_pubkey"]
    assert pubkey_from_secret(h(INTERNAL["remote_funding_privkey"])).hex() == P["remote_funding_pubkey"]
    ctx = _build(LEGACY["cases"][0], ChannelType.STATIC_REMOTEKEY)
    assert ctx.keys.local_htlc_pubkey.hex() == P["local_htlcpubkey"]
    assert ctx.keys.remote_htlc_pubkey.hex() == P["remote_htlcpubkey"]
    assert ctx.keys.local_delayed_pubkey.hex() == P["local_delayedpubkey"]
    assert ctx.keys.revocation_pubkey.hex() == P["local_revocation_pubkey"]
    assert ctx.keys.remote_pubkey.hex() == P["remote_payment_basepoint"]  # option_static_remotekey
    # The HTLC signing keys: local_privkey (from local_htlc_basepoint = local_payment_basepoint) and remote_privkey.
    assert derive_privkey(h(INTERNAL["local_payment_basepoint_secret"]), point).hex() == P["local_privkey"]
    assert derive_privkey(h(INTERNAL["remote_payment_basepoint_secret"]), point).hex() == INTERNAL["remote_privkey"]
    assert derive_privkey(h(INTERNAL["local_delayed_payment_basepoint_secret"]), point).hex() == \
        INTERNAL["local_delayed_privkey"]
    assert ctx.funding_script.hex() == P["funding_wscript"]


def test_obscured_commitment_number():
    # BOLT #3 Appendix C: "obscured commitment number = 0x2bb038521914 ^ 42"
    params = _params(ChannelType.STATIC_REMOTEKEY, 546)
    assert obscured_commitment_number(params, 42) == 0x2BB038521914 ^ 42
    # Both nodes compute it the same way (opener's basepoint first).
    assert obscured_commitment_number(_params(ChannelType.STATIC_REMOTEKEY, 546, as_peer=True), 42) == \
        0x2BB038521914 ^ 42


@pytest.mark.parametrize("case,channel_type", ALL_COMMITMENTS)
def test_commitment_tx(case, channel_type):
    ctx = _build(case, channel_type)
    remote_sig = ctx.sign(h(INTERNAL["remote_funding_privkey"]))
    local_sig = ctx.sign(h(P["local_funding_privkey"]))
    assert remote_sig.hex() == case["remote_signature"]
    expected_witness = _witness(case["commit_tx"])
    # witness: 0 <sig for pubkey1> <sig for pubkey2>; the local funding key (023da0...) sorts first.
    assert local_sig + b"\x01" == expected_witness[1]
    if case.get("local_signature"):
        assert local_sig.hex() == case["local_signature"]
    assert ctx.verify(h(P["remote_funding_pubkey"]), remote_sig)
    assert not ctx.verify(h(P["local_funding_pubkey"]), remote_sig)
    signed = ctx.signed(local_sig, remote_sig)
    assert signed.serialize().hex() == case["commit_tx"]
    assert len(ctx.htlc_outputs) == len(case["htlc_txs"])
    if "untrimmed_htlc_ids" in case:
        # The spec's comments list the untrimmed HTLCs; its HTLC transactions give their output order.
        assert sorted(o.htlc.htlc_id for o in ctx.htlc_outputs) == sorted(case["untrimmed_htlc_ids"])
        assert [o.htlc.htlc_id for o in ctx.htlc_outputs] == [t["htlc_id"] for t in case["htlc_txs"]]
        assert sorted(t.htlc_id for t in ctx.trimmed_htlcs) == sorted(
            set(case["htlc_ids"]) - set(case["untrimmed_htlc_ids"]))
    if case.get("base_fee_sat") is not None:
        assert ctx.base_fee_sat == case["base_fee_sat"]
        assert ctx.fee_sat == case["actual_fee_sat"]
    assert_spends(signed, 0, p2wsh(ctx.funding_script), ctx.funding_sat)


@pytest.mark.parametrize("case,channel_type", ALL_COMMITMENTS)
def test_commitment_tx_built_by_the_peer(case, channel_type):
    """The remote node builds local's commitment (owner=REMOTE from its view): the same transaction."""
    ours = _build(case, channel_type)
    theirs = _build(case, channel_type, as_peer=True)
    assert theirs.tx.serialize() == ours.tx.serialize()
    assert [o.htlc.htlc_id for o in theirs.htlc_outputs] == [o.htlc.htlc_id for o in ours.htlc_outputs]
    assert [o.offered_by_owner for o in theirs.htlc_outputs] == [o.offered_by_owner for o in ours.htlc_outputs]
    assert theirs.sign(h(INTERNAL["remote_funding_privkey"])).hex() == case["remote_signature"]


@pytest.mark.parametrize("case,index,channel_type", ALL_HTLC_TXS)
def test_htlc_tx(case, index, channel_type):
    ctx = _build(case, channel_type)
    expected = case["htlc_txs"][index]
    htlc_tx = htlc_transactions(ctx)[index]
    assert htlc_tx.commitment_output_index == ctx.htlc_outputs[index].output_index
    if "htlc_id" in expected:
        assert htlc_tx.htlc_id == expected["htlc_id"]
        assert htlc_tx.kind.value == "htlc-" + expected["kind"]
    remote_sig = htlc_tx.sign_as_counterparty(h(INTERNAL["remote_privkey"]))
    local_sig = htlc_tx.sign_as_owner(h(P["local_privkey"]))
    assert remote_sig.hex() == expected["remote_htlc_signature"]
    witness = _witness(expected["tx"])
    assert witness[1] == remote_sig + bytes([htlc_tx.counterparty_sighash_type])
    assert witness[2] == local_sig + b"\x01"
    if "local_htlc_signature" in expected:
        assert local_sig.hex() == expected["local_htlc_signature"]
    # SIGHASH_SINGLE|SIGHASH_ANYONECANPAY for the counterparty's signature with anchors, SIGHASH_ALL otherwise.
    assert htlc_tx.counterparty_sighash_type == (0x83 if channel_type.anchors else 0x01)
    assert htlc_tx.verify_counterparty_signature(ctx.keys.remote_htlc_pubkey, remote_sig)
    assert htlc_tx.verify_owner_signature(ctx.keys.local_htlc_pubkey, local_sig)
    preimage = (h(LEGACY["htlcs"][htlc_tx.htlc_id]["payment_preimage"])
                if htlc_tx.kind is HtlcTxKind.SUCCESS else None)
    signed = htlc_tx.signed(remote_sig, local_sig, preimage)
    assert signed.serialize().hex() == expected["tx"]
    # It spends the commitment's HTLC output under consensus rules...
    commitment = ctx.signed(ctx.sign(h(P["local_funding_privkey"])), ctx.sign(h(INTERNAL["remote_funding_privkey"])))
    assert signed.inputs[0].prevout.txid == commitment.txid()
    spent = commitment.outputs[htlc_tx.commitment_output_index]
    assert_spends(signed, 0, spent.script_pubkey, spent.value)
    # ... and pays the revocable, delayed to_local script.
    assert signed.outputs[0].script_pubkey == p2wsh(to_local_script(
        ctx.keys.revocation_pubkey, P["local_delay"], ctx.keys.local_delayed_pubkey))


# --- BOLT 3 fee example ("Fee Calculation", "Example") ---------------------------------------------------------

def test_fee_calculation_example():
    # feerate 5000, dust 546: offered 5000 and 1000 sat, received 7000 and 800 sat -> base fee 5340, actual 7140.
    params = ChannelParams(OutPoint(b"\x01" * 32, 0), 1_000_000, Side.LOCAL, ChannelType.STATIC_REMOTEKEY,
                           *_pubkeys(), 546, 546, 144, 144)
    htlcs = [HtlcSpec(0, Side.LOCAL, 5_000_000, b"\x00" * 32, 500),
             HtlcSpec(1, Side.LOCAL, 1_000_000, b"\x01" * 32, 500),
             HtlcSpec(0, Side.REMOTE, 7_000_000, b"\x02" * 32, 500),
             HtlcSpec(1, Side.REMOTE, 800_000, b"\x03" * 32, 500)]
    to_local = 600_000_000 - 6_000_000
    to_remote = 400_000_000 - 7_800_000
    ctx = build_commitment_tx(params, Side.LOCAL, 0, h(INTERNAL["local_per_commitment_point"]), 5000,
                              to_local, to_remote, htlcs)
    assert ctx.base_fee_sat == 5340 == commitment_fee_sat(5000, 2, ChannelType.STATIC_REMOTEKEY)
    assert ctx.fee_sat == 7140
    assert sorted(o.amount_sat for o in ctx.htlc_outputs) == [5000, 7000]
    assert sorted(h_.amount_msat for h_ in ctx.trimmed_htlcs) == [800_000, 1_000_000]


def test_commitment_rejects_unbalanced_amounts():
    params = _params(ChannelType.STATIC_REMOTEKEY, 546)
    with pytest.raises(CommitmentError):
        build_commitment_tx(params, Side.LOCAL, 42, h(INTERNAL["local_per_commitment_point"]), 253,
                            7_000_000_000, 3_000_000_000, _htlcs([0]))


# --- Beyond the vectors: the same rules on inputs the appendices do not cover ----------------------------------

LOCAL_FUNDING_PRIV = h(P["local_funding_privkey"])
REMOTE_FUNDING_PRIV = h(INTERNAL["remote_funding_privkey"])
POINT = h(INTERNAL["local_per_commitment_point"])


def test_shachain_rejects_out_of_order_and_unknown_indexes():
    seed = b"\x42" * 32
    top = (1 << 48) - 1
    store = ShachainStore().insert(top, per_commitment_secret_from_seed(seed, top))
    with pytest.raises(ShachainError, match="out of order"):
        store.insert(top - 2, per_commitment_secret_from_seed(seed, top - 2))
    with pytest.raises(ShachainError, match="not been received"):
        store.get_secret(top - 1)
    with pytest.raises(ShachainError):
        store.insert(top - 1, b"\x00" * 31)
    with pytest.raises(ShachainError):
        ShachainStore.from_bytes(store.to_bytes()[:-1])
    assert len(store) == 1 and len(ShachainStore()) == 0


def test_shachain_holds_many_secrets_in_49_buckets():
    seed = b"\x07" * 32
    store = ShachainStore()
    for n in range(300):
        store = store.insert(secret_index(n), per_commitment_secret_from_seed(seed, secret_index(n)))
    assert sum(e is not None for e in store.buckets) <= 49
    assert all(store.get_secret(secret_index(n)) == per_commitment_secret_from_seed(seed, secret_index(n))
               for n in range(300))
    assert ShachainStore.from_bytes(store.to_bytes()) == store


def test_key_errors_are_typed():
    with pytest.raises(KeyDerivationError):
        derive_pubkey(b"\x02" + b"\x00" * 32, POINT)  # x = 0 is not on the curve
    with pytest.raises(KeyDerivationError):
        derive_privkey(b"\x00" * 32, POINT)
    with pytest.raises(KeyDerivationError):
        ChannelPubkeys(b"\x04" * 33, _FILLER, _FILLER, _FILLER, _FILLER)
    with pytest.raises(KeyDerivationError):
        secret_index(1 << 48)
    assert not ecdsa_verify(_FILLER, b"\x30\x00", b"\x00" * 32)
    sig = ecdsa_sign(LOCAL_FUNDING_PRIV, b"\x11" * 32)
    assert compact_to_der(der_to_compact(sig)) == sig and len(der_to_compact(sig)) == 64


def test_commitment_input_errors():
    params = _params(ChannelType.STATIC_REMOTEKEY, 546)
    total = params.funding_sat * 1000
    dup = [HtlcSpec(1, Side.LOCAL, 1_000_000, b"\x00" * 32, 500), HtlcSpec(1, Side.LOCAL, 1_000_000, b"\x01" * 32, 501)]
    with pytest.raises(CommitmentError, match="duplicate"):
        build_commitment_tx(params, Side.LOCAL, 0, POINT, 253, total - 2_000_000, 0, dup)
    # The same id from each side is fine: ids are per offerer.
    both = [dup[0], HtlcSpec(1, Side.REMOTE, 1_000_000, b"\x01" * 32, 501)]
    build_commitment_tx(params, Side.LOCAL, 0, POINT, 253, total - 2_000_000, 0, both)
    with pytest.raises(CommitmentError):
        build_commitment_tx(params, Side.LOCAL, 1 << 48, POINT, 253, total, 0, [])
    with pytest.raises(CommitmentError):
        build_commitment_tx(params, Side.LOCAL, 0, POINT, -1, total, 0, [])
    with pytest.raises(CommitmentError):
        build_commitment_tx(params, Side.LOCAL, 0, POINT, 253, total + 1000, -1000, [])


def test_anchors_when_the_opener_cannot_pay_for_them():
    """The opener's output goes to zero (and is trimmed); the other side keeps its output and its anchor only."""
    params = _params(ChannelType.ANCHORS, 546)
    total = params.funding_sat * 1000
    ctx = build_commitment_tx(params, Side.LOCAL, 0, POINT, 253, 400_000, total - 400_000, [])
    assert ctx.to_local_output_index is None and ctx.local_anchor_output_index is None
    assert ctx.remote_anchor_output_index is not None
    assert ctx.tx.outputs[ctx.remote_anchor_output_index].script_pubkey == p2wsh(anchor_script(
        h(P["remote_funding_pubkey"])))
    assert ctx.tx.outputs[ctx.remote_anchor_output_index].value == ANCHOR_OUTPUT_SAT
    # Everything the opener had went to the fee and to the remaining anchor.
    assert ctx.fee_sat == 400 - ANCHOR_OUTPUT_SAT
    # With less than one anchor's worth, there is no valid transaction: a typed error, not an invalid tx.
    with pytest.raises(CommitmentError, match="anchor"):
        build_commitment_tx(params, Side.LOCAL, 0, POINT, 253, 300_000, total - 300_000, [])


def test_remote_commitment_uses_the_peers_dust_limit_delay_and_keys():
    params = _params(ChannelType.STATIC_REMOTEKEY, 546)  # our dust 546, theirs 330; delays 144 (ours), 6 (theirs)
    total = params.funding_sat * 1000
    their_point = per_commitment_point(b"\x09" * 32)
    htlc = HtlcSpec(0, Side.LOCAL, 800_000, b"\x00" * 32, 500)  # 800 sat: received by the peer
    ctx = build_commitment_tx(params, Side.REMOTE, 7, their_point, 0, total - 800_000 - 1_000_000_000,
                              1_000_000_000, [htlc])
    assert ctx.owner is Side.REMOTE and ctx.to_self_delay == 6
    assert ctx.keys == commitment_keys(params.remote_pubkeys, params.local_pubkeys, their_point)
    assert [o.htlc for o in ctx.htlc_outputs] == [htlc] and not ctx.htlc_outputs[0].offered_by_owner
    # Our commitment with the same HTLC trims it at our 546-sat dust limit once fees apply.
    ours = build_commitment_tx(params, Side.LOCAL, 7, POINT, 1000, total - 800_000 - 1_000_000_000,
                               1_000_000_000, [htlc])
    assert ours.trimmed_htlcs == (htlc,)
    # Their to_remote pays our payment_basepoint directly (static_remotekey).
    assert ctx.tx.outputs[ctx.to_remote_output_index].script_pubkey == p2wpkh(params.local_pubkeys.payment_basepoint)


def test_htlc_tx_preimage_rules():
    ctx = _build(LEGACY["cases"][1], ChannelType.STATIC_REMOTEKEY)
    txs = htlc_transactions(ctx)
    success = next(t for t in txs if t.kind is HtlcTxKind.SUCCESS)
    timeout = next(t for t in txs if t.kind is HtlcTxKind.TIMEOUT)
    sig = b"\x30" * 70
    with pytest.raises(HtlcTxError):
        success.signed(sig, sig, None)
    with pytest.raises(HtlcTxError):
        timeout.signed(sig, sig, b"\x00" * 32)
    assert timeout.tx.locktime == LEGACY["htlcs"][timeout.htlc_id]["cltv_expiry"] and success.tx.locktime == 0


_htlc_strategy = st.lists(
    st.tuples(st.sampled_from([Side.LOCAL, Side.REMOTE]), st.integers(1, 20_000_000), st.integers(0, 3),
              st.integers(400, 410)),
    max_size=8)


@settings(max_examples=60, deadline=None)
@given(htlc_values=_htlc_strategy, local_share=st.integers(0, 1000), feerate=st.integers(0, 60_000),
       channel_type=st.sampled_from(list(ChannelType)), owner=st.sampled_from([Side.LOCAL, Side.REMOTE]))
def test_commitment_properties(htlc_values, local_share, feerate, channel_type, owner):
    """Value is conserved, outputs are in BOLT 3 order, every HTLC is either an output or trimmed, and both
    nodes build the identical transaction."""
    params = _params(channel_type, 546)
    counters = {Side.LOCAL: 0, Side.REMOTE: 0}
    htlcs = []
    for offerer, amount, preimage_byte, cltv in htlc_values:
        htlcs.append(HtlcSpec(counters[offerer], offerer, amount, sha256(bytes([preimage_byte]) * 32), cltv))
        counters[offerer] += 1
    rest = params.funding_sat * 1000 - sum(x.amount_msat for x in htlcs)
    local_msat = rest * local_share // 1000
    try:
        ctx = build_commitment_tx(params, owner, 5, POINT, feerate, local_msat, rest - local_msat, htlcs)
    except CommitmentError:
        # Only when the opener (LOCAL in these params) cannot pay for the anchors.
        max_fee_sat = commitment_fee_sat(feerate, len(htlcs), channel_type)
        assert channel_type.anchors and local_msat < (2 * ANCHOR_OUTPUT_SAT + max_fee_sat) * 1000
        return
    outs = ctx.tx.outputs
    assert sum(o.value for o in outs) + ctx.fee_sat == params.funding_sat and ctx.fee_sat >= 0
    keys = [(o.value, o.script_pubkey) for o in outs]
    assert keys == sorted(keys)
    htlc_by_index = {o.output_index: o for o in ctx.htlc_outputs}
    for i in range(len(outs) - 1):  # the CLTV tie-break for identical HTLC outputs
        if keys[i] == keys[i + 1] and i in htlc_by_index and i + 1 in htlc_by_index:
            assert htlc_by_index[i].htlc.cltv_expiry <= htlc_by_index[i + 1].htlc.cltv_expiry
    assert sorted([o.htlc for o in ctx.htlc_outputs] + list(ctx.trimmed_htlcs), key=repr) == sorted(htlcs, key=repr)
    dust = params.dust_limit_sat(owner)
    for x in ctx.trimmed_htlcs:  # the builder's msat thresholds trim exactly what BOLT 3's rule (is_htlc_trimmed) does
        assert is_htlc_trimmed(x.amount_msat, x.offerer is owner, dust, feerate, channel_type)
    for o in ctx.htlc_outputs:
        assert not is_htlc_trimmed(o.htlc.amount_msat, o.htlc.offerer is owner, dust, feerate, channel_type)
        assert outs[o.output_index].value == o.htlc.amount_sat
        assert outs[o.output_index].script_pubkey == p2wsh(o.witness_script)
    # The peer's view of the same commitment.
    peer_params = _params(channel_type, 546, as_peer=True)
    peer_params = ChannelParams(peer_params.funding_outpoint, peer_params.funding_sat, peer_params.opener,
                                channel_type, peer_params.local_pubkeys, peer_params.remote_pubkeys,
                                params.remote_dust_limit_sat, params.local_dust_limit_sat,
                                params.remote_to_self_delay, params.local_to_self_delay)
    flipped = [HtlcSpec(x.htlc_id, x.offerer.other(), x.amount_msat, x.payment_hash, x.cltv_expiry) for x in htlcs]
    peer = build_commitment_tx(peer_params, owner.other(), 5, POINT, feerate, rest - local_msat, local_msat, flipped)
    assert peer.tx.serialize() == ctx.tx.serialize()
    # The commitment's own sighash and txid (from the channel's fixed parts and its serialized outputs) are the
    # general BIP143 sighash and txid of its transaction.
    assert ctx.sighash() == bip143_sighash(ctx.tx, 0, params.funding_script, params.funding_sat, SIGHASH_ALL)
    assert ctx.txid == ctx.tx.txid() == peer.txid
    # Every HTLC transaction is signable and spends its output under consensus rules.
    signed_commitment = ctx.signed(ctx.sign(LOCAL_FUNDING_PRIV), ctx.sign(REMOTE_FUNDING_PRIV))
    for htlc_tx in htlc_transactions(ctx)[:2]:
        sig = htlc_tx.sign_as_counterparty(b"\x01" * 32)
        assert htlc_tx.verify_counterparty_signature(pubkey_from_secret(b"\x01" * 32), sig)
        assert htlc_tx.tx.outputs[0].value <= outs[htlc_tx.commitment_output_index].value
        assert htlc_tx.tx.inputs[0].prevout.txid == signed_commitment.txid()
        for sighash_type in (SIGHASH_ALL, htlc_tx.counterparty_sighash_type):  # its one-input sighash is BIP143's
            assert htlc_tx.sighash(sighash_type) == bip143_sighash(htlc_tx.tx, 0, htlc_tx.witness_script,
                                                                   htlc_tx.input_amount_sat, sighash_type)


def _closing_params() -> ChannelParams:
    return _params(ChannelType.STATIC_REMOTEKEY, 546)


def test_legacy_closing_tx():
    params = _closing_params()
    ours, theirs = p2wpkh(b"\x01" * 20), p2wpkh(b"\x02" * 20)
    total = params.funding_sat * 1000
    ctx = build_closing_tx(params, ours, theirs, 6_000_000_999, total - 6_000_000_999, fee_sat=700,
                           dust_limit_sat=546)
    # The opener (we) pays the fee; amounts are rounded down; BIP69 order puts the smaller (theirs) first.
    assert [(o.value, o.script_pubkey) for o in ctx.tx.outputs] == [(3_999_999, theirs), (6_000_000 - 700, ours)]
    assert (ctx.remote_output_index, ctx.local_output_index) == (0, 1)
    assert ctx.tx.locktime == 0 and ctx.tx.inputs[0].sequence == 0xFFFFFFFF
    assert ctx.fee_sat == 701  # the fee plus the rounded-off millisatoshis
    local_sig, remote_sig = ctx.sign(LOCAL_FUNDING_PRIV), ctx.sign(REMOTE_FUNDING_PRIV)
    assert ctx.verify(h(P["remote_funding_pubkey"]), remote_sig)
    signed = ctx.signed(local_sig, remote_sig)
    assert_spends(signed, 0, p2wsh(params.funding_script), params.funding_sat)
    assert signed.weight() <= expected_closing_weight(ctx.tx)
    # Outputs below the signer's dust limit are removed; a node may drop its own output.
    dusty = build_closing_tx(params, ours, theirs, total - 500_000, 500_000, fee_sat=700, dust_limit_sat=546)
    assert dusty.remote_output_index is None and len(dusty.tx.outputs) == 1
    mine_dropped = build_closing_tx(params, ours, theirs, 6_000_000_000, total - 6_000_000_000, 700, 546,
                                    omit_local_output=True)
    assert mine_dropped.local_output_index is None and mine_dropped.tx.outputs[0].script_pubkey == theirs
    with pytest.raises(ClosingError):
        build_closing_tx(params, ours, theirs, 600_000, total - 600_000, fee_sat=700, dust_limit_sat=546)
    with pytest.raises(ClosingError):
        build_closing_tx(params, ours, theirs, 1, total, fee_sat=0, dust_limit_sat=546)


def test_simple_closing_tx():
    params = _closing_params()
    total = params.funding_sat * 1000
    closer_spk, closee_spk = p2wpkh(b"\x03" * 20), bytes([0x6A, 4]) + b"bye!"
    # The peer closes: it pays the fee; our output is an OP_RETURN of amount 0.
    ctx = build_simple_closing_tx(params, Side.REMOTE, closer_spk, closee_spk, 1_000_000, total - 1_000_000,
                                  fee_sat=500, locktime=800_000)
    assert ctx.tx.inputs[0].sequence == 0xFFFFFFFD and ctx.tx.locktime == 800_000
    assert ctx.tx.outputs[ctx.local_output_index].value == 0
    assert ctx.tx.outputs[ctx.remote_output_index].value == (total - 1_000_000) // 1000 - 500
    signed = ctx.signed(ctx.sign(LOCAL_FUNDING_PRIV), ctx.sign(REMOTE_FUNDING_PRIV))
    assert_spends(signed, 0, p2wsh(params.funding_script), params.funding_sat)
    # An included output must not be dust; the closer can leave its own out.
    # We close with 700 sat: after a 500 sat fee our P2WPKH output (dust below 294 sat) is dust: we leave it out.
    closee_spk = p2wpkh(b"\x04" * 20)
    with pytest.raises(ClosingError, match="closer output of 200 sat is dust"):
        build_simple_closing_tx(params, Side.LOCAL, closer_spk, closee_spk, 700_000, total - 700_000,
                                fee_sat=500, locktime=0)
    only_closee = build_simple_closing_tx(params, Side.LOCAL, closer_spk, closee_spk, 700_000, total - 700_000,
                                          fee_sat=500, locktime=0, closer_output=False)
    assert only_closee.local_output_index is None and only_closee.remote_output_index == 0
    assert only_closee.tx.outputs[0].value == (total - 700_000) // 1000 and only_closee.fee_sat == 700
    with pytest.raises(ClosingError, match="cannot pay"):
        build_simple_closing_tx(params, Side.LOCAL, closer_spk, closee_spk, 400_000, total - 400_000, fee_sat=500,
                                locktime=0)
    with pytest.raises(ClosingError):
        build_simple_closing_tx(params, Side.LOCAL, closer_spk, closee_spk, 800_000, total - 800_000, 500, 0,
                                closer_output=False, closee_output=False)


@pytest.mark.parametrize("spk,threshold", [
    (p2pkh(b"\x00" * 20), 546), (bytes([0xA9, 20]) + b"\x00" * 20 + b"\x87", 540), (p2wpkh(b"\x00" * 20), 294),
    (p2wsh(b""), 330), (bytes([0x51, 2, 0x4E, 0x73]), 240), (bytes([0x52, 4]) + b"\x00" * 4, 354),
    (bytes([0x6A]), 0)])
def test_dust_thresholds(spk, threshold):
    assert dust_threshold_sat(spk) == threshold


def test_commitment_secret_numbering():
    # BOLT #3: "The first secret used: MUST be index 281474976710655, and from there, the index is decremented."
    first = SECRETS["generation"][0]  # "generate_from_seed 0 final node": index 2^48 - 1
    assert first["index"] == (1 << 48) - 1
    assert commitment_secret(h(first["seed"]), 0).hex() == first["output"]
    assert commitment_point(h(first["seed"]), 0) == per_commitment_point(h(first["output"]))
    last = SECRETS["generation"][4]  # "generate_from_seed 01 last nontrivial node": index 1
    assert commitment_secret(h(last["seed"]), (1 << 48) - 2).hex() == last["output"]
