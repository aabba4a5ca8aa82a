"""tests/pyln: written against pyln-testing's fixtures, as a CLN plugin author writes tests; they run on ampd
and amp-chaind through ampere.testing.pyln.  (A plugin author's top-level conftest.py needs one line:
`pytest_plugins = ["ampere.testing.pyln"]`; pytest allows pytest_plugins only in the top-level conftest,
and this suite's top level loads ampere.testing.fixtures, so here the same fixtures are imported.)"""
import os

from ampere.testing.schema import schema_dir

# Every RPC result is checked against CLN's schema, as pyln-testing does inside CLN's tree (doc/schemas).
if schema_dir() is not None:
    os.environ.setdefault("CLN_SCHEMAS", schema_dir())

from ampere.testing.pyln import *  # noqa: E402,F401,F403
