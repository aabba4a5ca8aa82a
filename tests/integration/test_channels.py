"""Channels between real ampd processes on amp-chaind: open, operate, reestablish, close, crash safety."""
from __future__ import annotations

import os

import pytest
from pyln.client import RpcError

from ampere.testing.nodes import wait_for
from ampere.testing.schema import validate

PLUGINS = os.path.join(os.path.dirname(__file__), "..", "plugins")
DEV = {"developer": None}


def test_open_channel(node_factory_chain):
    l1, l2 = node_factory_chain.line_graph(2, opts=DEV)
    c1 = l1.rpc.listpeerchannels()["channels"]
    c2 = l2.rpc.listpeerchannels()["channels"]
    assert c1[0]["state"] == c2[0]["state"] == "CHANNELD_NORMAL"
    assert c1[0]["short_channel_id"] == c2[0]["short_channel_id"]
