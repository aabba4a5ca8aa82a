"""Scripts: minimal pushes, templates, addresses on every network, asm and classification."""
import pytest

from ampere.primitives.script import (
    OP_0, OP_1, OP_16, OP_CHECKMULTISIG, AddressError, ScriptError, address_to_script, classify_script,
    iter_script, multisig_2of2, p2pkh, p2pkh_script_code, p2sh, p2tr, p2wpkh, p2wsh, push_data, push_int,
    script_to_address, script_to_asm, scriptnum_decode, scriptnum_encode,
)

PUB = bytes.fromhex("0250863ad64a87ae8a2fe83c1af1a8403cb53f53e486d8511dad8a04887e5b2352")


@pytest.mark.parametrize("n,encoded", [
    (0, "00"), (-1, "4f"), (1, "51"), (16, "60"), (17, "0111"), (127, "017f"), (128, "028000"),
    (-128, "028080"), (255, "02ff00"), (256, "020001"), (-255, "02ff80"), (500000, "0320a107"),
    (2**31 - 1, "04ffffff7f"), (-(2**31 - 1), "04ffffffff"),
])
def test_push_int_matches_cscript(n, encoded):
    assert push_int(n).hex() == encoded
    if len(encoded) > 2:
        assert scriptnum_decode(scriptnum_encode(n)) == n


@pytest.mark.parametrize("data,encoded", [
    (b"", "00"), (b"\x01", "51"), (b"\x10", "60"), (b"\x81", "4f"), (b"\x11", "0111"), (b"\x00", "0100"),
    (b"\xaa" * 75, "4b" + "aa" * 75), (b"\xaa" * 76, "4c4c" + "aa" * 76), (b"\xaa" * 256, "4d0001" + "aa" * 256),
])
def test_push_data_is_minimal(data, encoded):
    assert push_data(data).hex() == encoded


def test_templates():
    h = bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6")
    assert p2wpkh(h).hex() == "0014751e76e8199196d454941c45d1b3a323f1433bd6"
    assert p2wpkh(bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")) == p2wpkh(h)
    assert p2pkh(h).hex() == "76a914751e76e8199196d454941c45d1b3a323f1433bd688ac"
    assert p2pkh_script_code(h) == p2pkh(h)
    assert p2sh(h).hex() == "a914751e76e8199196d454941c45d1b3a323f1433bd687"
    assert p2tr(b"\x01" * 32) == bytes([OP_1, 32]) + b"\x01" * 32
    ms = multisig_2of2(PUB, b"\x03" + b"\x11" * 32)
    assert ms[0] == 0x52 and ms[1] == 33 and ms[-1] == OP_CHECKMULTISIG and len(ms) == 71
    # BIP141's example: the P2WSH of a 1-of-1 CHECKSIG script.
    ws = bytes.fromhex("210279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798ac")
    assert p2wsh(ws).hex() == "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"
    with pytest.raises(ScriptError):
        p2wpkh(b"\x02" * 32)
    with pytest.raises(ScriptError):
        multisig_2of2(PUB, PUB[:32])


@pytest.mark.parametrize("address,network,spk", [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "bitcoin", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", "testnet",
     "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", "bitcoin",
     "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
    ("1PMycacnJaSqwwJqjawXBErnLsZ7RkXUAs", "bitcoin", "76a914f54a5851e9372b87810a8e60cdd2e7cfd80b6e3188ac"),
    ("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "regtest", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
])
def test_address_round_trip(address, network, spk):
    assert address_to_script(address, network).hex() == spk
    expected = address.lower() if address[0] in "bBtT" else address  # bech32 encodes lower case
    assert script_to_address(bytes.fromhex(spk), network) == expected


def test_base58_test_networks_and_p2sh():
    h = bytes(range(20))
    for net in ("testnet", "signet", "regtest", "testnet4"):
        a = script_to_address(p2pkh(h), net)
        assert a[0] in "mn" and address_to_script(a, net) == p2pkh(h)
        s = script_to_address(p2sh(h), net)
        assert s[0] == "2" and address_to_script(s, net) == p2sh(h)
    assert script_to_address(p2sh(h), "bitcoin")[0] == "3"


def test_wrong_network_and_garbage_addresses_raise():
    with pytest.raises(AddressError):
        address_to_script("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "regtest")
    with pytest.raises(AddressError):
        address_to_script("1PMycacnJaSqwwJqjawXBErnLsZ7RkXUAs", "regtest")
    with pytest.raises(AddressError):
        address_to_script("1PMycacnJaSqwwJqjawXBErnLsZ7RkXUAt", "bitcoin")  # bad checksum
    with pytest.raises(AddressError):
        address_to_script("not an address", "bitcoin")
    with pytest.raises(AddressError):
        address_to_script("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "nosuchnet")
    assert script_to_address(b"\x6a\x04abcd", "regtest") is None


def test_asm_and_classification():
    h = bytes(range(20))
    assert script_to_asm(p2wpkh(h)) == "0 " + h.hex()
    assert script_to_asm(bytes.fromhex("03a08601b175")) == "100000 OP_CHECKLOCKTIMEVERIFY OP_DROP"
    assert script_to_asm(b"\x4c\x05ab") == "[error]"
    assert classify_script(p2wpkh(h)) == "witness_v0_keyhash"
    assert classify_script(p2wsh(b"x")) == "witness_v0_scripthash"
    assert classify_script(p2tr(b"\x02" * 32)) == "witness_v1_taproot"
    assert classify_script(p2pkh(h)) == "pubkeyhash"
    assert classify_script(p2sh(h)) == "scripthash"
    assert classify_script(b"\x6a\x01\x01") == "nulldata"
    assert classify_script(multisig_2of2(PUB, PUB)) == "multisig"
    assert classify_script(bytes([OP_16])) == "nonstandard"
    assert classify_script(bytes.fromhex("51024e73")) == "anchor"
    with pytest.raises(ScriptError):
        list(iter_script(bytes([0x05, 1, 2])))
    assert list(iter_script(bytes([OP_0])))[0].data == b""
