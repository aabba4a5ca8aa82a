"""BIP173 / BIP350 test vectors for bech32, bech32m and segwit addresses."""

import pytest

from ampere.primitives.bech32 import (Bech32Error, Encoding, bech32_decode, decode_segwit_address,
                                      encode_segwit_address)

VALID_BECH32 = ["A12UEL5L", "a12uel5l", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
                "11" + "q" * 82 + "c8247j",
                "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w", "?1ezyfcl"]
VALID_BECH32M = ["A1LQFN3A", "a1lqfn3a", "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
                 "split1checkupstagehandshakeupstreamerranterredcaperredlc445v", "?1v759aa"]
INVALID = [" 1nwldj5", "\x7f1axkwrx", "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
           "pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3", "A1G7SGD8", "10a06t8", "1qzzfhee",
           "M1VUXWEZ", "qyrz8wqd2c9m", "1qyrz8wqd2c9m", "y1b0jsk6g", "lt1igcx5c0", "in1muywd", "mm1crxm3i",
           "au1s5cgom", "1p2gdwpf", "16plkw9"]


@pytest.mark.parametrize("s", VALID_BECH32)
def test_valid_bech32(s):
    assert bech32_decode(s)[2] is Encoding.BECH32


@pytest.mark.parametrize("s", VALID_BECH32M)
def test_valid_bech32m(s):
    assert bech32_decode(s)[2] is Encoding.BECH32M


@pytest.mark.parametrize("s", INVALID)
def test_invalid(s):
    with pytest.raises(Bech32Error):
        bech32_decode(s)


@pytest.mark.parametrize("addr,spk", [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
     "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"),
    ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
     "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
     "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
])
def test_segwit_addresses(addr, spk):
    hrp = addr[:2].lower()
    ver, prog = decode_segwit_address(hrp, addr)
    script = bytes([ver + 0x50 if ver else 0, len(prog)]) + prog
    assert script.hex() == spk
    assert encode_segwit_address(hrp, ver, prog) == addr.lower()


@pytest.mark.parametrize("addr", [
    "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",  # wrong hrp
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # bech32 for v1
    "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",  # bech32 for v16
    "bc1zw508d6qejxtdg4y5r3zarvaryvq5zuyut",  # bech32m for v0? (wrong checksum variant)
    "bc1pw5dgrnzv",  # program too short
    "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",  # invalid v0 length
])
def test_invalid_segwit_addresses(addr):
    with pytest.raises(Bech32Error):
        decode_segwit_address("bc", addr)
