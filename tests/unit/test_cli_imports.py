"""amp-cli and amp-chain-cli start in a few milliseconds because they import only light modules
(Core Lightning's bcli plugin runs amp-chain-cli for every chain query).  This keeps it so: each
is imported in a fresh interpreter and what that adds to sys.modules is checked, no clocks."""

import json
import os
import subprocess
import sys

import pytest

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")

# Top-level standard modules they may pull in (json needs re; socket needs enum and selectors).
LIGHT = {"json", "re", "socket", "selectors", "select", "enum", "functools", "collections", "operator",
         "itertools", "keyword", "reprlib", "types", "copyreg", "errno", "math", "array", "binascii"}
# What must never come back (each costs milliseconds: the reason for the rule).
HEAVY = {"typing", "dataclasses", "inspect", "asyncio", "http", "email", "ssl", "base64", "urllib",
         "ampere.config", "ampere.primitives", "ampere.wire", "ampere.node", "ampere.rpc"}


def imported_by(module: str) -> set[str]:
    code = ("import sys, json; before = set(sys.modules); import " + module +
            "; print(json.dumps(sorted(set(sys.modules) - before)))")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    # `json` itself is imported by the probe before `before` is taken: count it as the module's.
    return set(json.loads(out.stdout)) | {"json"}


@pytest.mark.parametrize("module, ours", [
    ("ampere.cli.amp_cli", {"ampere", "ampere.cli", "ampere.cli.amp_cli", "ampere.configfile"}),
    ("ampere.chain.cli", {"ampere", "ampere.chain", "ampere.chain.cli", "ampere.chain.bitcoin_conf"}),
])
def test_cli_imports_only_light_modules(module, ours):
    mods = imported_by(module)
    assert {m for m in mods if m.split(".")[0] == "ampere"} == ours
    heavy = {m for m in mods for h in HEAVY if m == h or m.startswith(h + ".")}
    assert not heavy, f"{module} imports {sorted(heavy)}"
    others = {m.split(".")[0] for m in mods if not m.startswith("ampere") and not m.startswith("_")}
    assert others <= LIGHT, f"{module} imports {sorted(others - LIGHT)}: keep the CLI's start-up light"


def test_the_probe_sees_a_heavy_import():
    # The check above must be able to fail: ampere.config (dataclasses, typing) is caught.
    mods = imported_by("ampere.config")
    assert "dataclasses" in mods and "ampere.config" in mods
