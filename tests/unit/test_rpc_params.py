"""The value parsers on every call's path keep their answers while taking shortcuts: p_hex without a regular
expression (whitespace, odd lengths, non-ASCII digits refused), check_strings' ASCII fast path (lone surrogates
still found in keys, values and nested lists), p_pubkey remembering the keys it accepted (and only those)."""

import pytest

from ampere.rpc.params import MAX_PARAM_STRING, ParamError, check_strings, p_hex, p_pubkey, p_sha256

G = "02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"  # the generator: on the curve


def test_p_hex():
    assert p_hex("00ff") == b"\x00\xff" and p_hex("") == b"" and p_hex("ABcd") == b"\xab\xcd"
    for bad in ("abc", "ab cd", " abcd", "abcd\n", "zz", "\u0661\u0662", 12, None, ["ab"]):
        with pytest.raises(ParamError, match="should be a hex string"):
            p_hex(bad)
    with pytest.raises(ParamError, match="32 byte"):
        p_sha256("00" * 31)


def test_check_strings():
    check_strings({"a": ["é", 1, 2.5, True, None, {"k": "ü"}], "b": "x" * 100})
    for bad in ("\ud800", ["ok", "\udfff"], {"\ud800": 1}, {"k": "\ud800"}, {"k": [{"n": ["\ud800"]}]},
                ["x" * (MAX_PARAM_STRING + 1)], {"x" * (MAX_PARAM_STRING + 1): 1}):
        with pytest.raises(ParamError):
            check_strings(bad)


def test_p_pubkey_remembers_only_valid_keys():
    assert p_pubkey(G) == bytes.fromhex(G)
    assert p_pubkey(G) == bytes.fromhex(G)  # (from the cache)
    not_on_curve = "02" + "00" * 32
    for bad in (not_on_curve, not_on_curve, "04" + G[2:], G[:-2], G.upper()[:-1] + "Z", 5):
        with pytest.raises(ParamError, match="compressed pubkey"):
            p_pubkey(bad)
