"""GossipState: what the runtime drives.  Hostile gossip is rejected and nothing of it is stored;
accepted gossip survives a restart; pruning and spent channels leave the graph and the store."""

from __future__ import annotations

from dataclasses import replace

from ampere.ln.gossip import Accept, Ignore, Warn
from ampere.ln.gossip.state import GossipState
from ampere.node.gossip.store_file import open_and_load
from ampere.testing.gossip_factory import GossipFactory
from ampere.wire.bolt1 import chain_hash
from ampere.wire.messages import decode_message
from ampere.wire.types import ShortChannelId

CHAIN = chain_hash("regtest")
NOW = 1_700_000_000
F = GossipFactory(CHAIN)
A, B, C = F.node(1), F.node(2), F.node(3)
S1 = int(ShortChannelId.from_str("103x1x0"))
S2 = int(ShortChannelId.from_str("104x1x0"))


def _open(path) -> tuple[GossipState, object]:
    """A state whose store is the file at `path`, loaded (as the runtime's gossip manager does at start)."""
    state = GossipState(CHAIN)
    state.store, stats = open_and_load(str(path), state.graph)
    return state, stats


def _store_messages(state: GossipState) -> list[bytes]:
    return [r.msg for r in state.store.records() if not r.deleted]


def test_hostile_gossip_is_rejected_and_not_stored(tmp_path):
    state, _ = _open(tmp_path / "gossip_store")
    ann, utxo = F.channel_announcement(S1, A, B, 1_000_000)
    utxos = {S1: utxo}
    # A channel whose funding output does not exist.
    ghost, _ = F.channel_announcement(S2, B, C, 1_000_000)
    assert state.receive(ghost, NOW, utxos.get).verdict.code == "no_funding_output"
    # A signature that does not verify.
    msg = decode_message(ann)
    forged = replace(msg, node_signature_2=msg.node_signature_1).to_bytes()
    assert isinstance(state.receive(forged, NOW, utxos.get).verdict, Warn)
    assert _store_messages(state) == [] and len(state.graph) == 0
    # The real one.
    r = state.receive(ann, NOW, utxos.get)
    assert r.verdict == Accept(capacity_sat=1_000_000) and r.relay
    # A flood of updates: four make it, the rest are dropped unstored.
    results = [state.receive(F.channel_update(S1, A, B, timestamp=NOW - 100 + i, fee_base_msat=i), NOW)
               for i in range(100)]
    assert sum(isinstance(r.verdict, Accept) for r in results) == 4
    assert all(r.verdict.code == "rate_limited" for r in results[4:])
    live = _store_messages(state)
    assert len(live) == 3  # announcement, its amount record, the latest accepted update
    assert decode_message(live[2]).fee_base_msat == 3
    assert state.validator.stats["channel_update:rate_limited"] == 96
    state.store.close()

    again, stats = _open(tmp_path / "gossip_store")
    assert (stats.channels, stats.updates) == (1, 1)
    assert again.graph.list_channels() == state.graph.list_channels()


def test_two_step_announcement_and_forgetting(tmp_path):
    state, _ = _open(tmp_path / "gossip_store")
    ann, utxo = F.channel_announcement(S1, A, B, 1_000_000)
    r = state.receive(ann, NOW)
    assert r.need_funding is not None and len(state.graph) == 0
    done = state.receive_funding(r.need_funding, ann, utxo, NOW)
    assert isinstance(done.verdict, Accept) and S1 in state.graph.channels
    assert state.validator.stats["channel_announcement:accept"] == 1
    # Announced again while we were looking it up elsewhere: a duplicate.
    assert state.receive_funding(r.need_funding, ann, utxo, NOW).verdict.code == "duplicate"
    ann2, utxo2 = F.channel_announcement(S2, B, C, 2_000_000)
    r2 = state.receive(ann2, NOW)
    assert isinstance(state.receive_funding(r2.need_funding, ann2, None, NOW).verdict, Ignore)
    state.receive_funding(r2.need_funding, ann2, utxo2, NOW)
    for scid, x, y in ((S1, A, B), (S2, B, C)):
        assert isinstance(state.receive(F.channel_update(scid, x, y, timestamp=NOW), NOW).verdict, Accept)
        assert isinstance(state.receive(F.channel_update(scid, y, x, timestamp=NOW), NOW).verdict, Accept)
    assert isinstance(state.receive(F.node_announcement(A, timestamp=NOW, alias="a"), NOW).verdict, Accept)

    # S1's funding is spent: still there for 12 blocks, then gone from graph and store, and A
    # (left without channels) with it.
    state.funding_spent(S1, 800, NOW)
    assert state.new_block(811) == []
    assert state.new_block(812) == [S1]
    assert S1 not in state.graph.channels and state.graph.node(A.pub) is None
    kinds = sorted(int.from_bytes(m[:2], "big") for m in _store_messages(state))
    assert kinds == [256, 258, 258, 0x1101]  # only S2's announcement, amount and updates
    # Two weeks without updates: S2 is pruned from both too.
    assert state.prune_stale(NOW + 1_209_601) == [S2]
    assert _store_messages(state) == []
    state.store.close()
    reloaded, _ = _open(tmp_path / "gossip_store")
    assert len(reloaded.graph) == 0


def test_unreadable_store_is_moved_aside(tmp_path):
    path = tmp_path / "gossip_store"
    path.write_bytes(b"\x0c" + bytes(100))
    state, stats = _open(path)
    assert stats.channels == 0
    assert (tmp_path / "gossip_store.corrupt").exists()
    state.store.close()
