"""The import contract: Ampere's layers depend one way (docs/architecture.md).

    primitives  <-  wire  <-  ln  <-  node  <-  rpc / plugins / cli
                                      node  ->  store, chain (used by the runtime only)

- The protocol core (`primitives/`, `wire/`, `ln/`) does no I/O: it imports no event loop, socket,
  database, process or file module, and nothing from the runtime or the interfaces above it.  `os` is
  allowed for `os.urandom` only (randomness, not I/O).
- Inside the core, each layer imports only those below it.
- `node/` (the runtime) never imports `rpc/` or `plugins/` (it offers interfaces that they implement or
  call), except the composition root `node/app/`, which builds everything: each of its imports of the
  layers above is declared below with its reason.
- `store/` and `chain/` (the runtime's database and bitcoind client) import nothing above them.

Every import counts: top-level, inside functions, and under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "ampere"

CORE = ("primitives", "wire", "ln")
CORE_ORDER = {"primitives": 0, "wire": 1, "ln": 2}
# Modules that do I/O (or run an event loop): none of them in the core.
IO_MODULES = {"asyncio", "socket", "sqlite3", "subprocess", "shutil", "tempfile", "select", "selectors",
              "threading", "multiprocessing", "pathlib", "glob", "fcntl", "mmap", "psycopg", "psycopg2",
              "uvloop", "http", "urllib", "ssl"}
OS_ALLOWED = {"urandom"}
ABOVE_CORE = {"node", "rpc", "plugins", "store", "chain", "cli", "testing", "config", "configfile", "log", "demo"}

# Build-time tools that live in the core's packages but never run in the node: their file I/O is allowed (they
# still import nothing above the core), and no module of src/ may import them.
BUILD_TOOLS = {
    "wire/generate.py": "writes wire/generated/ from the pinned CSVs (python -m ampere.wire.generate)",
}

# The composition root (node/app/) may import what it composes from the layers above node/: declared here.
COMPOSITION_ROOT_IMPORTS = {
    ("node/app/daemon.py", "ampere.rpc"): "registers the built-in commands (ampere.rpc.commands) at start-up",
    ("node/app/daemon.py", "ampere.rpc.dispatch"): "builds the Dispatcher the RPC server and components call",
    ("node/app/daemon.py", "ampere.rpc.errors"): "Node.error_json/cln_code: the RPC edge's table, handed to "
                                                 "components that emit CLN-shaped payloads (sendpay_failure)",
    ("node/app/daemon.py", "ampere.rpc.server"): "starts the JSON-RPC socket server",
    ("node/app/daemon.py", "ampere.plugins.approval"): "hands the Receiver the plugin host as its approver",
    ("node/app/plugin_setup.py", "ampere.plugins.host"): "builds the plugin host (lightningd's start-up order)",
    ("node/app/plugin_setup.py", "ampere.plugins.manifest"): "checks plugin option values at start-up",
    ("node/app/plugin_setup.py", "ampere.plugins.hooks"): "validates --hook-timeout at start-up",
    ("node/app/plugin_setup.py", "ampere.rpc.errors"): "the host's `setconfig` refusals as RPC errors",
    ("node/app/plugin_setup.py", "ampere.rpc.registry"): "tells the host the built-in command names",
}


def _imports(path: pathlib.Path, rel: pathlib.Path, source: str | None = None):
    """(line, module, names) for every import in the file; relative imports made absolute."""
    tree = ast.parse(source if source is not None else path.read_text(), str(rel))
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                yield n.lineno, a.name, ()
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = ["ampere", *rel.parts[:-1]]
                base = base[:len(base) - (n.level - 1)]
                module = ".".join(base + ([n.module] if n.module else []))
            else:
                module = n.module or ""
            yield n.lineno, module, tuple(a.name for a in n.names)


def _os_uses(source: str) -> set[str]:
    tree = ast.parse(source)
    return {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "os"}


def violations(rel: pathlib.Path, source: str) -> list[str]:
    """What in one module of src/ampere (path `rel` relative to it) breaks the contract."""
    top = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    out = []
    for line, module, names in _imports(SRC / rel, rel, source):
        where = f"{rel}:{line}: imports {module}"
        first = module.split(".")[0]
        layer = module.split(".")[1] if first == "ampere" and "." in module else None
        targets = [module] + [f"{module}.{name}" for name in names]  # `from package import module` too
        if any(t.startswith("ampere.") and t[len("ampere."):].replace(".", "/") + ".py" in BUILD_TOOLS
               for t in targets):
            out.append(f"{where} (a build-time tool, not for the running node)")
        if top in CORE:
            if rel.as_posix() in BUILD_TOOLS and (first in IO_MODULES or first == "os"):
                continue
            if first in IO_MODULES:
                out.append(f"{where} (I/O in the protocol core)")
            if first == "os":
                bad = (set(names) - OS_ALLOWED) if names else (_os_uses(source) - OS_ALLOWED)
                if bad:
                    out.append(f"{where} and uses os.{', os.'.join(sorted(bad))} (file/process I/O in the core)")
            if layer in ABOVE_CORE:
                out.append(f"{where} (the core imports nothing above it)")
            if layer in CORE_ORDER and CORE_ORDER[layer] > CORE_ORDER[top]:
                out.append(f"{where} ({top}/ is below {layer}/)")
        elif top == "node" and layer in ("rpc", "plugins", "cli", "testing"):
            if (rel.as_posix(), module) not in COMPOSITION_ROOT_IMPORTS:
                out.append(f"{where} (node/ must not depend on {layer}/; offer an interface in node/ instead)")
        elif top in ("store", "chain") and layer in ("node", "rpc", "plugins", "cli", "ln"):
            out.append(f"{where} ({top}/ is used by the runtime and imports nothing above it)")
    return out


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC), path.read_text()


def test_the_codebase_keeps_the_import_contract():
    found = [v for rel, source in _modules() for v in violations(rel, source)]
    assert not found, "layering broken:\n  " + "\n  ".join(found)


def test_declared_composition_root_imports_still_exist():
    # A declaration that no longer matches an import is stale: remove it so the list says what is true.
    seen = {(rel.as_posix(), module) for rel, source in _modules() if rel.parts[:2] == ("node", "app")
            for _line, module, _names in _imports(SRC / rel, rel, source)}
    stale = [key for key in COMPOSITION_ROOT_IMPORTS if key not in seen]
    assert not stale, f"declared but not imported any more: {stale}"


@pytest.mark.parametrize("rel, source, expected", [
    ("ln/x.py", "import asyncio\n", "I/O in the protocol core"),
    ("wire/x.py", "import sqlite3\n", "I/O in the protocol core"),
    ("ln/x.py", "import os\nos.urandom(32)\n", None),
    ("ln/x.py", "import os\nos.replace('a', 'b')\n", "os.replace"),
    ("ln/x.py", "from os import fsync\n", "os.fsync"),
    ("ln/x.py", "def f():\n    from ampere.node.app.daemon import Node\n", "nothing above it"),
    ("primitives/x.py", "from ampere.wire.codec import decode_message\n", "primitives/ is below wire/"),
    ("wire/x.py", "from ..ln import onion\n", "wire/ is below ln/"),
    ("node/payments/x.py", "from ampere.rpc.errors import RpcError\n", "must not depend on rpc/"),
    ("node/payments/x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ampere.plugins.host import PluginHost\n",
     "must not depend on plugins/"),
    ("node/app/daemon.py", "from ampere.plugins.hooks import HtlcAcceptedSession\n", "must not depend on plugins/"),
    ("node/app/daemon.py", "from ampere.rpc.dispatch import Dispatcher\n", None),
    ("store/x.py", "from ampere.node.errors import Reason\n", "imports nothing above it"),
    ("wire/generate.py", "import pathlib\nimport os\nos.replace('a', 'b')\n", None),
    ("wire/generate.py", "from ampere.node.errors import Reason\n", "nothing above it"),
    ("wire/codec.py", "from ampere.wire import generate\n", "build-time tool"),
    ("wire/codec.py", "from ampere.wire.generate import main\n", "build-time tool"),
])
def test_the_checker_catches_what_it_should(rel, source, expected):
    found = violations(pathlib.Path(rel), source)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found
