"""Transactions: BIP143 vectors, legacy sighash, parsing strictness, txid/weight."""
import coincurve
import pytest

from ampere.primitives.crypto import hash160, ripemd160, _ripemd160_pure, sha256d
from ampere.primitives.script import p2pkh_script_code, p2wpkh
from ampere.primitives.tx import (
    SIGHASH_ALL, SIGHASH_SINGLE, OutPoint, Transaction, TxIn, TxOut, TxParseError,
    bip143_sighash, legacy_sighash, sign_input_p2wpkh, write_compact_size,
)

# BIP143 "Native P2WPKH" example.
UNSIGNED_P2WPKH = bytes.fromhex(
    "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeffffff"
    "ef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206"
    "000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42db"
    "ee7e4dbe6a21b2d50ce2f0167faa815988ac11000000")
SIGNED_P2WPKH = bytes.fromhex(
    "01000000000102fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f00000000494830"
    "450221008b9d1dc26ba6a9cb62127b02742fa9d754cd3bebf337f7a55d114c8e5cdd30be022040529b194ba3f928"
    "1a99f2b1c0a19c0489bc22ede944ccf4ecbab4cc618ef3ed01eeffffffef51e1b804cc89d182d279655c3aa89e81"
    "5b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378db99f6"
    "6f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988"
    "ac000247304402203609e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a0220573a954c"
    "4518331561406f90300e8f3358f51928d43c212a8caed02de67eebee0121025476c2e83188368da1ff3e292e7aca"
    "fcdb3566bb0ad253f62fc70f07aeee635711000000")
P2PK_KEY = coincurve.PrivateKey(bytes.fromhex("bbc27228ddcb9209d7fd6f36b02f7dfa6252af40bb2f1cbc7a557da8027ff866"))
P2WPKH_KEY = coincurve.PrivateKey(bytes.fromhex("619c335025c7f4012e556c2a58b2506e30b8511b53ade95ea316fd8c3286feb9"))


def test_bip143_native_p2wpkh_sighash_and_signature():
    tx = Transaction.parse(UNSIGNED_P2WPKH)
    pub = P2WPKH_KEY.public_key.format()
    assert pub.hex() == "025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357"
    assert p2wpkh(pub).hex() == "00141d0f172a0ecb48aee1be1f2687d2963ae33f71a1"
    digest = bip143_sighash(tx, 1, p2pkh_script_code(hash160(pub)), 600_000_000)
    assert digest.hex() == "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670"
    # Sign both inputs: the P2PK one with the legacy sighash, the P2WPKH one with BIP143.
    # RFC6979 nonces make the signatures deterministic, so the BIP's signed tx comes out byte for byte.
    p2pk_spk = bytes.fromhex("2103c9f4836b9a4f77fc0d81f7bcb01b7f1b35916864b9476c241ce9fc198bd25432ac")
    sig0 = P2PK_KEY.sign(legacy_sighash(tx, 0, p2pk_spk, SIGHASH_ALL), hasher=None) + b"\x01"
    tx.inputs[0].script_sig = bytes([len(sig0)]) + sig0
    sign_input_p2wpkh(tx, 1, P2WPKH_KEY, 600_000_000)
    assert tx.serialize() == SIGNED_P2WPKH
    assert Transaction.parse(SIGNED_P2WPKH) == tx
    no_witness = tx.copy()
    no_witness.inputs[1].witness = []
    assert tx.txid() == no_witness.txid()  # the witness does not change the txid...
    assert tx.wtxid() == sha256d(SIGNED_P2WPKH)  # ...but it changes the wtxid
    assert tx.wtxid() != tx.txid()


def test_bip143_p2sh_p2wpkh_sighash():
    tx = Transaction.parse(bytes.fromhex(
        "0100000001db6b1b20aa0fd7b23880be2ecbd4a98130974cf4748fb66092ac4d3ceb1a54770100000000feffffff"
        "02b8b4eb0b000000001976a914a457b684d7f0d539a46a45bbc043f35b59d0d96388ac0008af2f000000001976a9"
        "14fd270b1ee6abcaea97fea7ad0402e8bd8ad6d77c88ac92040000"))
    script_code = p2pkh_script_code(bytes.fromhex("79091972186c449eb1ded22b78e40d009bdf0089"))
    digest = bip143_sighash(tx, 0, script_code, 1_000_000_000)
    assert digest.hex() == "64f3b0f4dd2bb3aa1ce8566d220cc74dda9df97d8490cc81d89d735c92e59fb6"


def test_bip143_p2wsh_sighash_single_out_of_range():
    tx = Transaction.parse(bytes.fromhex(
        "0100000002fe3dc9208094f3ffd12645477b3dc56f60ec4fa8e6f5d67c565d1c6b9216b36e0000000000ffffffff"
        "0815cf020f013ed6cf91d29f4202e8a58726b1ac6c79da47c23d1bee0a6925f80000000000ffffffff0100f2052a"
        "010000001976a914a30741f8145e5acadf23f751864167f32e0963f788ac00000000"))
    full = bytes.fromhex("21026dccc749adc2a9d0d89497ac511f760f45c47dc5ed9cf352a58ac706453880aeadab210255a9626aeb"
                         "f5e29c0e6538428ba0d1dcf6ca98ffdf086aa8ced5e0d0215ea465ac")
    after_codesep = bytes.fromhex("210255a9626aebf5e29c0e6538428ba0d1dcf6ca98ffdf086aa8ced5e0d0215ea465ac")
    assert bip143_sighash(tx, 1, full, 4_900_000_000, SIGHASH_SINGLE).hex() == \
        "82dde6e4f1e94d02c2b7ad03d2115d691f48d064e9d52f58194a6637e4194391"
    assert bip143_sighash(tx, 1, after_codesep, 4_900_000_000, SIGHASH_SINGLE).hex() == \
        "fef7bd749cce710c5c052bd796df1af0d935e59cea63736268bcbe2d2134fc47"


def test_legacy_sighash_single_bug_returns_one():
    tx = Transaction(1, [TxIn(OutPoint(b"\x11" * 32, 0)), TxIn(OutPoint(b"\x22" * 32, 1))], [TxOut(5, b"\x51")])
    assert legacy_sighash(tx, 1, b"\x51", SIGHASH_SINGLE) == (1).to_bytes(32, "little")


def test_txid_display_order_and_weight():
    tx = Transaction.parse(SIGNED_P2WPKH)
    assert tx.txid_hex() == tx.txid()[::-1].hex()
    assert tx.txid() == sha256d(tx.serialize(include_witness=False))
    base = len(tx.serialize(include_witness=False))
    total = len(SIGNED_P2WPKH)
    assert tx.weight() == 3 * base + total
    assert tx.vsize() == (3 * base + total + 3) // 4
    op = OutPoint.from_hex(tx.txid_hex(), 3)
    assert op.txid == tx.txid() and op.txid_hex() == tx.txid_hex()


@pytest.mark.parametrize("raw", [
    SIGNED_P2WPKH + b"\x00",                         # trailing byte
    SIGNED_P2WPKH[:-1],                              # truncated
    SIGNED_P2WPKH[:4] + b"\x00\x02" + SIGNED_P2WPKH[6:],  # unknown flag
    b"",
])
def test_parse_rejects_malformed(raw):
    with pytest.raises(TxParseError):
        Transaction.parse(raw)


def test_parse_rejects_superfluous_witness_and_noncanonical_sizes():
    tx = Transaction.parse(UNSIGNED_P2WPKH)
    legacy = tx.serialize()
    # Marker+flag with all-empty witnesses: Core rejects it ("Superfluous witness record").
    fake = legacy[:4] + b"\x00\x01" + legacy[4:-4] + b"\x00\x00" + legacy[-4:]
    with pytest.raises(TxParseError, match="superfluous"):
        Transaction.parse(fake)
    noncanonical = legacy[:4] + b"\xfd\x02\x00" + legacy[5:]
    with pytest.raises(TxParseError, match="non-canonical"):
        Transaction.parse(noncanonical)


def test_zero_input_legacy_needs_allow_witness_false():
    tx = Transaction(2, [], [TxOut(1000, b"\x51")], 0)
    raw = tx.serialize()
    assert Transaction.parse(raw, allow_witness=False) == tx


def test_compact_size():
    assert write_compact_size(0xFC) == b"\xfc"
    assert write_compact_size(0xFD) == b"\xfd\xfd\x00"
    assert write_compact_size(0x10000) == b"\xfe\x00\x00\x01\x00"


def test_ripemd160_pure_matches_known_vectors():
    # Vectors from the RIPEMD-160 paper.
    assert _ripemd160_pure(b"").hex() == "9c1185a5c5e9fc54612808977ee8f548b2258d31"
    assert _ripemd160_pure(b"abc").hex() == "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"
    assert _ripemd160_pure(b"a" * 1_000).hex() == ripemd160(b"a" * 1_000).hex()
