"""amp-cli: lightning-cli's parameters, output formats and exit codes."""

import json

import pytest

from ampere.cli.amp_cli import build_params, is_literal


@pytest.mark.parametrize("word,literal", [
    ("123", True), ("0", True), ("0123", False), ("1.5", True), ("true", True), ("null", True),
    ('{"a":1}', True), ("[1,2]", True), ('"quoted"', True), ("abc", False), ("0.001btc", False),
    ("02ab", False), ("", False),
])
def test_literal_rule(word, literal):
    assert is_literal(word) == literal


def test_params_modes():
    assert build_params(["1", "abc", "[1]"], None) == [1, "abc", [1]]
    assert build_params(["a=1", "b=x"], None) == {"a": 1, "b": "x"}     # keyword mode switches on by itself
    assert build_params(["x=1"], False) == ["x=1"]


@pytest.fixture(scope="module")
def l1(request):
    import tempfile

    from ampere.testing.nodes import NodeFactory

    factory = NodeFactory(tempfile.mkdtemp(prefix="amp-cli-"))
    request.addfinalizer(factory.cleanup)
    return factory.get_node()


def test_exit_codes(l1, tmp_path):
    ok = l1.cli("getinfo")
    assert ok.returncode == 0 and json.loads(ok.stdout)["network"] == "regtest"
    err = l1.cli("nosuchcommand")
    assert err.returncode == 1 and json.loads(err.stdout)["code"] == -32601
    usage = l1.cli("-k", "datastore", "novalue")
    assert usage.returncode == 3
    from ampere.testing.nodes import AMP_CLI, spawn_env
    import subprocess
    down = subprocess.run(AMP_CLI + [f"--lightning-dir={tmp_path}", "--regtest", "getinfo"], capture_output=True,
                          text=True, env=spawn_env())
    assert down.returncode == 2


def test_keywords_and_formats(l1):
    r = l1.cli("-k", "datastore", "key=cli", "string=0123")   # "0123" stays a string
    assert r.returncode == 0 and json.loads(r.stdout)["string"] == "0123"
    r = l1.cli("datastore", "key=cli2", "string=hi")          # auto keyword mode
    assert json.loads(r.stdout)["key"] == ["cli2"]
    human = l1.cli("-H", "getinfo")
    assert "network=regtest" in human.stdout.splitlines()
    flat = l1.cli("-F", "getinfo")
    assert 'our_features.init="' in flat.stdout
    raw = l1.cli("-R", "getinfo")
    assert "\n" not in raw.stdout.strip()
    helped = l1.cli("help")
    assert "getinfo" in helped.stdout.splitlines() and "datastore key [string] [hex] [mode] [generation]" in helped.stdout
    filtered = l1.cli("-l", '{"id":true}', "getinfo")
    assert list(json.loads(filtered.stdout)) == ["id"]


def test_a_call_imports_nothing_heavy(l1):
    # Scripts call amp-cli in loops: a whole call (config, connect, request, print) stays off json,
    # re, socket, enum... (tests/unit/test_cli_imports.py checks the import alone).
    import subprocess
    import sys

    from ampere.testing.nodes import spawn_env
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "ampere.cli.amp_cli", f"--lightning-dir={l1.dir}",
                        f"--network={l1.network}", "getinfo"], capture_output=True, text=True, env=spawn_env(),
                       timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["network"] == "regtest"
    imported = {line.split("|")[2].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "ampere.cli_json" in imported  # the probe sees imports (the -m module itself runs as __main__)
    heavy = imported & {"json", "re", "socket", "enum", "encodings.idna", "typing", "dataclasses"}
    assert not heavy, sorted(heavy)
