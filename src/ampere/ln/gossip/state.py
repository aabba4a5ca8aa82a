"""The gossip state the runtime owns: graph, validator and store kept consistent with one another.

Every change goes to the graph and to the store together, so a restart finds what was accepted;
nothing that validation refused is stored.  No I/O: the store is any `GossipSink` the runtime hands in (the
file and its loading are ampere.node.gossip.store_file's).

    state = GossipState(chain_hash)                   # memory only until a store is set
    state.store = sink                                # after the runtime loaded the file into state.graph
    r = state.receive(raw, now)                       # a gossip message from a peer
    if r.need_funding:                                # a channel_announcement that passed its signatures
        utxo = await chain.lookup(r.need_funding.short_channel_id)
        r = state.receive_funding(r.need_funding, raw, utxo, now)
    if r.relay: queue raw for peers;   if isinstance(r.verdict, Warn): send a warning
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ampere.primitives.amount import SatInt
from ampere.wire.codec import decode_message
from ampere.wire.errors import DecodeError
from ampere.wire.messages import ChannelAnnouncement, ChannelUpdate, NodeAnnouncement

from .graph import Graph
from .validate import Accept, GossipValidator, Ignore, RateLimitPolicy, UtxoLookup, Verdict


@dataclass(frozen=True)
class Received:
    verdict: Verdict
    msg: Any = None
    relay: bool = False  # accepted, and to be passed on to peers (per their filters)
    need_funding: ChannelAnnouncement | None = None  # look its output up, then receive_funding()


class GossipSink(Protocol):
    """Where accepted gossip is kept (the gossip store): each change to the graph, made durable by the runtime."""

    def add_channel_announcement(self, raw: bytes, capacity_sat: int, timestamp: int, push: bool = False) -> None: ...
    def add_private_channel(self, scid: int, node_a: bytes, node_b: bytes, capacity_sat: int,
                            timestamp: int) -> None: ...
    def add_channel_update(self, raw: bytes, timestamp: int, push: bool = False) -> None: ...
    def add_node_announcement(self, raw: bytes, timestamp: int, push: bool = False) -> None: ...
    def mark_channel_dying(self, scid: int, height: int, timestamp: int) -> None: ...
    def delete_channel(self, scid: int) -> None: ...
    def delete_node(self, node_id: bytes) -> None: ...


class GossipState:
    def __init__(self, chain_hash: bytes, store: GossipSink | None = None, *,
                 update_limit: RateLimitPolicy | None = None, node_limit: RateLimitPolicy | None = None) -> None:
        self.chain_hash = chain_hash
        self.graph = Graph()
        self.validator = GossipValidator(self.graph, chain_hash, update_limit=update_limit, node_limit=node_limit)
        self.store = store

    # -- received gossip -----------------------------------------------------------------------
    def receive(self, raw: bytes, now: int, utxo_lookup: UtxoLookup | None = None) -> Received:
        """Check and apply one gossip message.  Without `utxo_lookup`, a channel_announcement whose
        signatures hold comes back with `need_funding` set (nothing applied yet)."""
        if utxo_lookup is None and len(raw) >= 2 and raw[:2] == b"\x01\x00":  # channel_announcement
            try:
                ann = decode_message(raw)
            except DecodeError:
                pass  # check_raw below reports it
            else:
                first = self.validator.channel_announcement(ann, raw)
                if isinstance(first, Accept):
                    return Received(first, ann, need_funding=ann)
                return Received(first, ann)
        verdict, msg = self.validator.check_raw(raw, now, utxo_lookup or _no_output)
        if isinstance(msg, ChannelAnnouncement):
            return self._apply_announcement(msg, raw, verdict, now)
        if not isinstance(verdict, Accept):
            return Received(verdict, msg)
        if isinstance(msg, ChannelUpdate):
            self.graph.apply_channel_update(raw)
            if self.store is not None:
                self.store.add_channel_update(raw, now)
        elif isinstance(msg, NodeAnnouncement):
            self.graph.apply_node_announcement(raw)
            if self.store is not None:
                self.store.add_node_announcement(raw, now)
        return Received(verdict, msg, relay=verdict.relay)

    def receive_funding(self, msg: ChannelAnnouncement, raw: bytes, utxo: tuple[int, bytes] | None, now: int) -> Received:
        """Second step of a channel_announcement: `utxo` is the chain's answer for its scid."""
        verdict = self.validator.channel_announcement_funding(msg, utxo)
        return self._apply_announcement(msg, raw, verdict, now)

    def _apply_announcement(self, msg: ChannelAnnouncement, raw: bytes, verdict: Verdict, now: int) -> Received:
        if not isinstance(verdict, Accept):
            return Received(verdict, msg)
        if self.graph.channel(msg.short_channel_id) is not None and self.graph.channels[msg.short_channel_id].public:
            return Received(Ignore("duplicate", "announced while its funding was looked up"), msg)
        self.graph.add_channel_announcement(raw, SatInt(verdict.capacity_sat or 0), now)
        if self.store is not None:
            self.store.add_channel_announcement(raw, verdict.capacity_sat or 0, now)
        # BOLT #7 gossip_timestamp_filter: an announcement goes out with its first update, which
        # the runtime's relay queue sees next; relaying it now is harmless for peers without filters.
        return Received(verdict, msg, relay=True)

    # -- our own gossip ------------------------------------------------------------------------
    def add_own_channel(self, raw_announcement: bytes, capacity_sat: SatInt, now: int) -> None:
        self.graph.add_channel_announcement(raw_announcement, capacity_sat, now)
        if self.store is not None:
            self.store.add_channel_announcement(raw_announcement, capacity_sat, now, push=True)

    def add_private_channel(self, scid: int, node_a: bytes, node_b: bytes, capacity_sat: SatInt, now: int) -> None:
        self.graph.add_private_channel(scid, node_a, node_b, capacity_sat, now)
        if self.store is not None:
            self.store.add_private_channel(scid, node_a, node_b, capacity_sat, now)

    def add_own_update(self, raw: bytes, now: int) -> None:
        """Our own channel_update (it passed our signer: no validation, no rate limit)."""
        self.graph.apply_channel_update(raw)
        if self.store is not None:
            self.store.add_channel_update(raw, now, push=True)

    def add_own_node_announcement(self, raw: bytes, now: int) -> None:
        self.graph.apply_node_announcement(raw)
        if self.store is not None:
            self.store.add_node_announcement(raw, now, push=True)

    # -- forgetting ----------------------------------------------------------------------------
    def _forget(self, scids: list[int], nodes_before: dict[int, tuple[bytes, bytes]]) -> None:
        if self.store is None:
            return
        for scid in scids:
            self.store.delete_channel(scid)
            for node_id in nodes_before[scid]:
                if node_id not in self.graph.nodes:
                    self.store.delete_node(node_id)

    def prune_stale(self, now: int, keep: Any = ()) -> list[int]:
        ends = {s: (c.node1, c.node2) for s, c in self.graph.channels.items()}
        gone = self.graph.prune_stale(now, keep=keep)
        self._forget(gone, ends)
        return gone

    def funding_spent(self, scid: int, height: int, now: int) -> None:
        if self.graph.funding_spent(scid, height) and self.store is not None:
            self.store.mark_channel_dying(scid, height, now)

    def new_block(self, height: int, delay: int = 12) -> list[int]:
        """Forget channels spent `delay` blocks ago (BOLT #7: "SHOULD forget a channel after a
        12-block delay"); returns them."""
        ends = {s: (c.node1, c.node2) for s, c in self.graph.channels.items() if c.spent_height is not None}
        gone = self.graph.forget_spent(height, delay)
        self._forget(gone, ends)
        return gone



def _no_output(scid: Any) -> None:
    return None


__all__ = ["GossipSink", "GossipState", "Received"]
