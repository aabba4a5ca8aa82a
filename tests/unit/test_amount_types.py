"""The static amount types (issue 13 item 6): MsatInt/SatInt cost nothing at run time (plain ints, in JSON too)
and mypy keeps the units apart at the boundaries of ln/ (a satoshi value where millisatoshi are expected fails
the type check)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from ampere.ln.forwarding import Policy, forward_fee
from ampere.primitives.amount import MsatInt, SatInt, fee_for_weight, msat_to_sat, sat_to_msat

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_conversions_return_plain_ints():
    for value in (sat_to_msat(21), msat_to_sat(21_999), fee_for_weight(253, 700), MsatInt(5), SatInt(5)):
        assert type(value) is int
    assert sat_to_msat(21) == 21_000 and msat_to_sat(21_999) == 21 and fee_for_weight(253, 700) == 178
    fee = forward_fee(Policy(MsatInt(1000), 10, 40, MsatInt(0), MsatInt(10**9)), MsatInt(2_000_000))
    assert type(fee) is int and fee == 1020
    assert json.dumps({"fee_msat": fee}) == '{"fee_msat": 1020}'


def _mypy(tmp_path, code: str) -> subprocess.CompletedProcess:
    here = os.path.join(os.path.dirname(sys.executable), "mypy")
    tool = here if os.access(here, os.X_OK) else shutil.which("mypy")
    if not tool:
        pytest.skip("mypy is not installed (it is in the [test] extra: pip install -e '.[test]')")
    # A config of its own: pyproject.toml names the packages to check, which mypy will not combine with -c.
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nmypy_path = {os.path.join(ROOT, 'src')}\nfollow_imports = silent\n"
                      "ignore_missing_imports = True\n")
    return subprocess.run([tool, "--config-file", str(config), "--cache-dir", str(tmp_path / "cache"), "-c", code],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_refuses_sat_where_msat_is_expected(tmp_path):
    header = ("from ampere.ln.forwarding import Policy, forward_fee\n"
              "from ampere.primitives.amount import MsatInt, SatInt, sat_to_msat\n"
              "policy = Policy(MsatInt(1000), 10, 40, MsatInt(0), MsatInt(10**9))\n")
    ok = _mypy(tmp_path, header + "fee: MsatInt = forward_fee(policy, sat_to_msat(SatInt(2000)))\n")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    mixed = _mypy(tmp_path, header + "fee = forward_fee(policy, SatInt(2000))\n")
    assert mixed.returncode == 1 and 'expected "MsatInt"' in mixed.stdout, mixed.stdout + mixed.stderr
    unit = _mypy(tmp_path, header + "sat: SatInt = forward_fee(policy, MsatInt(2000))\n")
    assert unit.returncode == 1 and 'variable has type "SatInt"' in unit.stdout, unit.stdout + unit.stderr
