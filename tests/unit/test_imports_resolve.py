"""Every `from ampere... import name` in the code resolves, including imports deferred inside functions, which
no other test reaches until that code path runs (a module move once broke one that only a blinded HTLC hits)."""
import ast
import importlib
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "ampere"


def _imports():
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("ampere"):
                yield path.relative_to(SRC.parent), node


def test_every_absolute_ampere_import_resolves():
    unresolved = []
    for where, node in _imports():
        try:
            module = importlib.import_module(node.module)
        except ImportError as e:
            unresolved.append(f"{where}:{node.lineno}: {node.module}: {e}")
            continue
        for alias in node.names:
            if alias.name == "*" or hasattr(module, alias.name):
                continue
            try:
                importlib.import_module(f"{node.module}.{alias.name}")
            except ImportError:
                unresolved.append(f"{where}:{node.lineno}: {node.module} has no {alias.name}")
    assert unresolved == []


@pytest.mark.parametrize("broken", ["from ampere.node.payments.sendpay import blinded_htlcs"])
def test_the_check_sees_a_broken_deferred_import(broken):
    node = ast.parse(f"def f():\n    {broken}\n").body[0].body[0]
    module = importlib.import_module(node.module)
    assert not hasattr(module, node.names[0].name)
