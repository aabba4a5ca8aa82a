from __future__ import annotations

import pytest

from ampere.wire.features import (
    FEATURE_BITS,
    INIT_FEATURES,
    INVOICE_FEATURES,
    Features,
    feature_bit,
    negotiated,
)


def test_bit_numbering_and_serialization():
    f = Features.from_bit_list([0, 9])
    # Bit 0 is the least-significant bit of the last byte.
    assert f.to_bytes() == b"\x02\x01"
    assert Features.from_bytes(b"\x00\x02\x01") == f  # leading zero bytes are padding
    assert Features().to_bytes() == b""
    assert list(f) == [0, 9]


def test_names_and_pairs():
    assert FEATURE_BITS["var_onion_optin"] == 8 and FEATURE_BITS["option_channel_type"] == 44
    assert feature_bit("basic_mpp") == 16 and feature_bit(17) == 16
    f = Features().with_feature("basic_mpp").with_feature("payment_secret", compulsory=True)
    assert f.has("basic_mpp") and not f.requires("basic_mpp")
    assert f.requires("payment_secret") and f.has(15)
    assert not f.without_feature("basic_mpp").has("basic_mpp")
    with pytest.raises(ValueError):
        feature_bit("option_nonsense")
    assert "basic_mpp/odd" in f.names()


def test_default_sets_match_cln():
    # CLN: data_loss_protect, var_onion_optin, static_remotekey, payment_secret and channel_type compulsory.
    for name in ("option_data_loss_protect", "var_onion_optin", "option_static_remotekey", "payment_secret",
                 "option_channel_type"):
        assert INIT_FEATURES.requires(name), name
    for name in ("basic_mpp", "gossip_queries", "option_support_large_channel"):
        assert INIT_FEATURES.has(name) and not INIT_FEATURES.requires(name), name
    assert INVOICE_FEATURES.hex() == "024100"  # what CLN puts in its BOLT 11 invoices
    assert INIT_FEATURES.missing_dependencies() == []


def test_unknown_even_bits():
    ours = INIT_FEATURES
    assert Features.from_bit_list([1, 23, 101]).unknown_even_bits(ours) == []  # odd: fine
    assert Features.from_bit_list([100]).unknown_even_bits(ours) == [100]
    assert Features.from_bit_list([22]).unknown_even_bits(ours) == []  # anchors required: supported (issue 15)
    assert Features.from_bit_list([28]).unknown_even_bits(ours) == [28]  # dual_fund required, not supported
    assert Features.from_bit_list([16]).unknown_even_bits(ours) == []  # mpp supported as odd: known


def test_dependencies():
    assert Features.from_names(optional=["basic_mpp"]).missing_dependencies() == [("basic_mpp", "payment_secret")]
    assert Features.from_names(optional=["basic_mpp", "payment_secret"]).missing_dependencies() == []
    assert Features.from_names(compulsory=["option_zeroconf"]).missing_dependencies() == [
        ("option_zeroconf", "option_scid_alias")]


def test_negotiated():
    ours = Features.from_names(optional=["basic_mpp"], compulsory=["payment_secret"])
    assert negotiated(ours, Features.from_names(optional=["basic_mpp"]), "basic_mpp")
    assert not negotiated(ours, Features(), "basic_mpp")
    assert negotiated(ours, Features(), "payment_secret")  # we offered it as even


def test_anchors_offered_and_dev_force_features():
    from ampere.node.app.features import force_features, offers_anchors, our_feature_set

    assert INIT_FEATURES.is_set(23) and not INIT_FEATURES.is_set(22)   # optional, as CLN
    assert offers_anchors(our_feature_set())
    off = force_features(our_feature_set(), "-23")                        # CLN's way to turn anchors off
    assert not offers_anchors(off) and not Features.from_bytes(bytes.fromhex(off["node"])).has("option_anchors")
