"""pytest plugin for the lnprototest scripts in this directory (loaded with `-p lnpt_plugin` inside
.venv-lnprototest): the `runner` fixture (--runner, default Ampere's) and `namespaceoverride`."""
import importlib
from typing import Any

import lnprototest
import pytest


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--runner", action="store", default="ampere_runner.Runner", help="runner class, module.Class")
    parser.addoption("--runner-args", action="append", default=[], help="extra option for the node (no --)")


@pytest.fixture()
def runner(pytestconfig: Any) -> Any:
    module, _, name = pytestconfig.getoption("runner").rpartition(".")
    r = getattr(importlib.import_module(module), name)(pytestconfig)
    yield r
    r.teardown()


@pytest.fixture()
def namespaceoverride() -> Any:
    """Use a smaller message namespace for one script (restored afterwards)."""
    yield lnprototest.assign_namespace
    lnprototest.assign_namespace(lnprototest.peer_message_namespace())
