import pytest
from hypothesis import given, strategies as st

from ampere.primitives.amount import AmountError, MAX_MSAT, Msat, Sat, parse_msat, parse_sat


@pytest.mark.parametrize("text,msat", [
    (123, 123), ("123", 123), ("123msat", 123), ("10sat", 10_000), ("10.000sat", 10_000), ("10.5sat", 10_500),
    ("1btc", 100_000_000_000), ("0.001btc", 100_000_000), ("0.00000010btc", 10_000),
    ("0.00000010000btc", 10_000), ("0.00000000001btc", 1), ("0.0002btc", 20_000_000),
])
def test_parse_msat_exact(text, msat):
    assert parse_msat(text) == msat and isinstance(parse_msat(text), Msat)


@pytest.mark.parametrize("bad", [
    "", "abc", "-1", -1, 1.5, "1.5", "1.5msat", "0.000000000001btc", "10.0001sat", True, None, "1 btc", "21000001btc",
])
def test_parse_msat_rejects(bad):
    with pytest.raises((AmountError, TypeError)):
        parse_msat(bad)


def test_units_never_mix():
    with pytest.raises(TypeError):
        Msat(1) + Sat(1)
    with pytest.raises(TypeError):
        Msat(10) * 1.5
    with pytest.raises(TypeError):
        Msat(10) / 2
    assert Sat(2).to_msat() + Msat(1) == Msat(2001)
    assert Msat(2500).to_sat_floor() == Sat(2)
    with pytest.raises(AmountError):
        Msat(2500).to_sat_exact()
    with pytest.raises(AmountError):
        Msat(1) - Msat(2)


def test_parse_sat():
    assert parse_sat(5) == Sat(5)
    assert parse_sat("5") == Sat(5)
    assert parse_sat("0.001btc") == Sat(100_000)
    with pytest.raises(AmountError):
        parse_sat("1500msat")


@given(st.integers(min_value=0, max_value=MAX_MSAT))
def test_btc_string_round_trip(msat):
    assert parse_msat(Msat(msat).to_btc_str()) == msat


def test_plain_int_conversions_in_one_place():
    from ampere.primitives.amount import msat_to_sat, sat_to_msat

    assert sat_to_msat(0) == 0 and sat_to_msat(21_000_000 * 100_000_000) == 21_000_000 * 100_000_000 * 1000
    assert type(sat_to_msat(5)) is int and type(msat_to_sat(5_999)) is int     # ints on the hot paths
    assert msat_to_sat(5_999) == 5 and msat_to_sat(6_000) == 6 and msat_to_sat(999) == 0   # BOLT #3: rounded down
    assert msat_to_sat(sat_to_msat(123_456)) == 123_456
