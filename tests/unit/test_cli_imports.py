"""amp-cli and amp-chain-cli start in a few milliseconds because they import only light modules
(Core Lightning's bcli plugin runs amp-chain-cli for every chain query).  This keeps it so: each
is imported in a fresh interpreter and what that adds to sys.modules is checked, no clocks."""

import ast
import json
import os
import subprocess
import sys

import pytest

from ampere import cli_json

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")

# Top-level standard modules they may pull in: C modules and __future__ (a few dozen lines).
LIGHT = {"binascii", "__future__"}
# What must never come back (each costs milliseconds: the reason for the rule).  json imports re,
# and re and socket import enum, functools, collections: half the tools' start-up CPU before
# cli_json and the C _socket replaced them.
HEAVY = {"typing", "dataclasses", "inspect", "asyncio", "http", "email", "ssl", "base64", "urllib",
         "json", "re", "socket", "selectors", "enum", "functools", "collections",
         "ampere.config", "ampere.primitives", "ampere.wire", "ampere.node", "ampere.rpc"}


def imported_by(module: str) -> set[str]:
    # The probe prints with repr, not json: json must be seen if the module imports it.
    code = "import sys; before = set(sys.modules); import " + module + "; print(sorted(set(sys.modules) - before))"
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return set(ast.literal_eval(out.stdout))


@pytest.mark.parametrize("module, ours", [
    ("ampere.cli.amp_cli", {"ampere", "ampere.cli", "ampere.cli.amp_cli", "ampere.configfile", "ampere.cli_json"}),
    ("ampere.chain.cli", {"ampere", "ampere.chain", "ampere.chain.cli", "ampere.chain.bitcoin_conf",
                          "ampere.cli_json"}),
])
def test_cli_imports_only_light_modules(module, ours):
    mods = imported_by(module)
    assert {m for m in mods if m.split(".")[0] == "ampere"} == ours
    heavy = {m for m in mods for h in HEAVY if m == h or m.startswith(h + ".")}
    assert not heavy, f"{module} imports {sorted(heavy)}"
    others = {m.split(".")[0] for m in mods if not m.startswith("ampere") and not m.startswith("_")}
    assert others <= LIGHT, f"{module} imports {sorted(others - LIGHT)}: keep the CLI's start-up light"


def test_the_probe_sees_a_heavy_import():
    # The check above must be able to fail: ampere.config (dataclasses, typing) is caught, and so is json.
    mods = imported_by("ampere.config")
    assert "dataclasses" in mods and "ampere.config" in mods
    assert {"json", "re"} <= imported_by("json")


# cli_json stands in for json in the tools: its output must be json.dumps's, byte for byte, and it
# must read what json.loads reads and refuse what json.loads refuses.
VALUES = [
    {"id": "cli:getinfo#1", "result": {"alias": "ünïcode \u2028 \"q\" \\ \n\t\x01", "num_peers": 0,
                                        "fees_collected_msat": 10**30, "ratio": 0.1, "neg": -2.5e-7,
                                        "flags": [True, False, None], "empty": {}, "none": [], "t": (1, "a")}},
    {3: "int key", 2.5: "float key", None: "null key", False: "bool key"},
    [[[]], [{}], [{"a": {"b": [1]}}]], [], {}, "", "x", 0, -1, 1.5, float("inf"), float("-inf"), None, True,
]


@pytest.mark.parametrize("kwargs", [{}, {"indent": 3, "ensure_ascii": False},
                                    {"separators": (",", ":"), "ensure_ascii": False}, {"indent": 0}])
@pytest.mark.parametrize("value", VALUES)
def test_cli_json_dumps_as_json(value, kwargs):
    assert cli_json.dumps(value, **kwargs) == json.dumps(value, **kwargs)


def test_cli_json_dumps_refuses_what_json_refuses():
    for bad in (object(), {(1, 2): 1}, b"bytes", {1, 2}):
        with pytest.raises(TypeError):
            json.dumps(bad)
        with pytest.raises(TypeError):
            cli_json.dumps(bad)


@pytest.mark.parametrize("value", VALUES[:4])
def test_cli_json_loads_as_json(value):
    text = " \n" + json.dumps(value, indent=2) + "\r\n "
    assert cli_json.loads(text) == json.loads(text)
    # bitcoin-cli prints numbers as sent: the parse hooks are honoured.
    assert cli_json.loads('[50.00000000, 7]', parse_float=str, parse_int=str) == ["50.00000000", "7"]
    assert cli_json.raw_decode(' {"a": 1} {"b"', 0) == ({"a": 1}, 9)


@pytest.mark.parametrize("text", ["", " ", "{", "[1,", '"abc', "1 2", "tru", "{'a': 1}", "[1]x", "01", '{"a" 1}'])
def test_cli_json_refuses_what_json_refuses(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(cli_json.JSONError):
        cli_json.loads(text)
