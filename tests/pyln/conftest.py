"""tests/pyln: written against pyln-testing's fixtures, as a CLN plugin author writes tests; they run on ampd
and amp-chaind through ampere.testing.pyln.  (A plugin author's top-level conftest.py needs one line:
`pytest_plugins = ["ampere.testing.pyln"]`; pytest allows pytest_plugins only in the top-level conftest,
and this suite's top level loads ampere.testing.fixtures, so here the same fixtures are imported.)"""
import os

os.environ.setdefault("CLN_SCHEMAS", "/work/shared/cln-schemas")

from ampere.testing.pyln import *  # noqa: E402,F401,F403
