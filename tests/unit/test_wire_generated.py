"""The committed modules of ampere/wire/generated/ are exactly what the generator writes from the
vendored CSVs: editing a CSV (or a generated file by hand) without regenerating fails here."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

import ampere.wire.generated
from ampere.wire import messages
from ampere.wire.generate import write_modules
from ampere.wire.schema import load_pinned_schema

COMMITTED = Path(ampere.wire.generated.__file__).parent


def test_generated_modules_match_the_csvs(tmp_path):
    written = write_modules(tmp_path, load_pinned_schema())
    names = sorted(p.name for p in written)
    assert names == sorted(p.name for p in COMMITTED.glob("*.py")), "a generated module was added or removed"
    stale = [p.name for p in written if p.read_text() != (COMMITTED / p.name).read_text()]
    assert not stale, f"{stale} differ from the generator's output: run `python -m ampere.wire.generate`"


def test_generated_classes_are_real_classes():
    # One class per message, greppable in the source, with typed fields.
    source = (COMMITTED / "peer_wire.py").read_text()
    assert "\nclass UpdateAddHtlc(Message):" in source
    assert "    amount_msat: int\n" in source
    htlc = messages.UpdateAddHtlc(channel_id=bytes(32), id=1, amount_msat=2, payment_hash=bytes(32), cltv_expiry=3,
                                  onion_routing_packet=bytes(1366))
    # They behave as frozen dataclasses (dataclasses.replace is used on messages across the code).
    assert [f.name for f in dataclasses.fields(htlc)][:3] == ["channel_id", "id", "amount_msat"]
    again = dataclasses.replace(htlc, id=5)
    assert again.id == 5 and again != htlc and dataclasses.replace(again, id=1) == htlc
    assert hash(again) != hash(htlc) and dataclasses.asdict(htlc)["amount_msat"] == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        htlc.id = 2  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(htlc)) == htlc
    assert repr(htlc).startswith("UpdateAddHtlc(channel_id=b'\\x00")
    # A field may be named like a builtin (invalid_onion_payload's `type`).
    fail = messages.InvalidOnionPayload(type=3, offset=4)
    assert messages.InvalidOnionPayload.from_bytes(fail.to_bytes()) == fail
