"""`sql`'s tables as CLN's sql plugin makes them: listsqlschemas answers CLN's own documented examples
(lightning-listsqlschemas), BLOB columns hold bytes shown as hex and match X'..' literals, sub-tables join
on `row`.  The list commands are answered by a stand-in node here (the pyln suite runs them on real nodes)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from ampere.rpc.commands.sql import listsqlschemas, sql
from ampere.rpc.sql_tables import TABLES
from ampere.testing.schema import schema_dir, validate

pytestmark = pytest.mark.skipif(schema_dir() is None, reason="CLN's schemas (../shared/cln-schemas) not found")

PEER = "02" + "11" * 32
CHANNEL_ID = "ab" * 32


class _Node:
    async def call(self, method: str, params: dict) -> dict:
        if method == "listpeerchannels":
            return {"channels": [{"peer_id": PEER, "peer_connected": True, "state": "CHANNELD_NORMAL",
                                  "channel_id": CHANNEL_ID, "short_channel_id": "103x1x0", "to_us_msat": 5000,
                                  "updates": {"local": {"fee_base_msat": 1, "htlc_minimum_msat": 0,
                                                        "htlc_maximum_msat": 9, "cltv_expiry_delta": 6,
                                                        "fee_proportional_millionths": 10}},
                                  "status": ["one", "two"]}]}
        if method == "listinvoices":
            return {"invoices": [{"label": "a", "payment_hash": "cd" * 32, "status": "paid", "created_index": 7,
                                  "amount_msat": 1000, "expires_at": 1, "description": "d"}]}
        return {}


class _Ctx:
    node = _Node()
    check = False


def run(coro):
    return asyncio.run(coro)


def test_listsqlschemas_matches_clns_examples():
    with open(os.path.join(schema_dir(), "listsqlschemas.json")) as f:
        examples = json.load(f)["examples"]
    for ex in examples:
        params = ex["request"]["params"]
        table = params["table"] if isinstance(params, dict) else params[0]
        assert run(listsqlschemas(_Ctx(), table)) == ex["response"]
    everything = run(listsqlschemas(_Ctx(), None))
    validate("listsqlschemas", everything)
    names = [s["tablename"] for s in everything["schemas"]]
    assert names == sorted(TABLES) and "peerchannels_status" in names


def test_blob_columns_hex_and_literals():
    rows = run(sql(_Ctx(), "SELECT peer_id, channel_id FROM peerchannels"))["rows"]
    assert rows == [[PEER, CHANNEL_ID]]
    # A BLOB compares with X'..', not with the hex text.
    assert run(sql(_Ctx(), f"SELECT short_channel_id FROM peerchannels WHERE peer_id = X'{PEER}'"))["rows"] == \
        [["103x1x0"]]
    assert run(sql(_Ctx(), f"SELECT short_channel_id FROM peerchannels WHERE peer_id = '{PEER}'"))["rows"] == []
    assert run(sql(_Ctx(), "SELECT hex(channel_id), length(channel_id) FROM peerchannels"))["rows"] == \
        [[CHANNEL_ID.upper(), 32]]
    # Sub-objects folded as CLN names them; arrays are tables joined on row.
    assert run(sql(_Ctx(), "SELECT local_fee_base_msat, to_us_msat FROM peerchannels"))["rows"] == [[1, 5000]]
    assert run(sql(_Ctx(), "SELECT peerchannels_status.status FROM peerchannels INNER JOIN peerchannels_status "
                           "ON peerchannels_status.row = peerchannels.rowid ORDER BY arrindex"))["rows"] == \
        [["one"], ["two"]]
    # A table keyed by created_index has no rowid column.
    assert run(sql(_Ctx(), "SELECT created_index, payment_hash FROM invoices"))["rows"] == [[7, "cd" * 32]]
    with pytest.raises(Exception, match="not authorized"):
        run(sql(_Ctx(), "SELECT random() FROM invoices"))
