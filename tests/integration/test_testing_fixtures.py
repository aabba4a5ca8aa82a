"""ampere.testing works for plugin authors outside this repository: a separate test suite that only
says `pytest_plugins = ["ampere.testing.fixtures"]` tests a plugin on a real node."""

import os
import subprocess
import sys
import textwrap

from ampere.testing.nodes import spawn_env

HELLO = os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "plugins", "helloworld.py")


def test_external_suite_uses_the_fixtures(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["ampere.testing.fixtures"]\n')
    (tmp_path / "test_hello.py").write_text(textwrap.dedent(f"""
        def test_hello(node_factory):
            l1 = node_factory.get_node(plugin={os.path.abspath(HELLO)!r}, greeting="Howdy")
            assert l1.rpc.call("hello", ["plugin author"]) == "Howdy plugin author"
            assert "hello" in [h["command"].split()[0] for h in l1.rpc.help()["help"]]
    """))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       capture_output=True, text=True, env=spawn_env(), cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
