"""Feerate parsing in every form CLN accepts, and the estimates table."""
from __future__ import annotations

import pytest

from ampere.node.onchain.feerate import FEERATE_FLOOR, FeeEstimates, FeerateError, NoFeeEstimates, parse_feerate
from ampere.primitives.amount import fee_for_weight


@pytest.fixture
def est():
    e = FeeEstimates()
    e.update([(2, 20000), (6, 10000), (12, 5000), (100, 1000)], 253)
    return e


def test_explicit_rates(est):
    assert parse_feerate("253perkw", est) == 253
    assert parse_feerate("10000perkb", est) == 2500
    assert parse_feerate("10000", est) == 2500  # a bare number is perkb, as in CLN
    assert parse_feerate(10000, est) == 2500
    assert parse_feerate("1perkw", est) == FEERATE_FLOOR  # raised to the floor
    assert parse_feerate("1001perkb", None) == FEERATE_FLOOR  # explicit rates need no estimates


def test_named_rates(est):
    assert parse_feerate("urgent", est) == 10000
    assert parse_feerate("normal", est) == 5000
    assert parse_feerate("slow", est) == 1000
    assert parse_feerate("minimum", est) == 253
    assert parse_feerate("opening", est) == 5000
    # Between estimates: linear interpolation (CLN's interp_feerate).
    assert parse_feerate("4blocks", est) == 15000
    assert parse_feerate("56blocks", est) == 3000
    assert parse_feerate("1000blocks", est) == 1000
    assert parse_feerate("unilateral_anchor_close", est) == 1250  # never below 5 sat/vB


@pytest.mark.parametrize("bad", ["abc", "12.5perkw", "-5", "perkw", "xblocks", "", True, 1.5, None, "99999999999"])
def test_bad_feerates(est, bad):
    with pytest.raises(FeerateError):
        parse_feerate(bad, est)


def test_no_estimates():
    with pytest.raises(NoFeeEstimates):
        parse_feerate("normal", FeeEstimates())
    with pytest.raises(NoFeeEstimates):
        parse_feerate("6blocks", None)


def test_acceptable_range_and_fee(est):
    assert est.min_acceptable() == 500
    assert est.max_acceptable() == 200000
    assert FeeEstimates().max_acceptable() == 0xFFFFFFFF
    assert fee_for_weight(253, 1000) == 253
    assert fee_for_weight(253, 1001) == 254  # rounded up: never below the rate
