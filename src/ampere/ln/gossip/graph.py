"""The in-memory network graph: channels with both directions' policies, and nodes.

The graph holds what validation accepted (validate.py decides, the graph only records), keeping
the raw messages so it can answer queries and relay them byte for byte.  It is built from raw
messages through the fast parsers in rawmsg.py, which is what makes loading a stored graph fast.

Directions follow BOLT #7: direction 0 is the policy set by `node_id_1` (the lesser node id) for
payments going from node 1 to node 2, direction 1 the reverse.

    graph = Graph()
    graph.add_channel_announcement(raw_ann, capacity_sat=1_000_000, now=...)
    graph.apply_channel_update(raw_update)
    graph.apply_node_announcement(raw_node_ann)
    graph.prune_stale(now)              # BOLT #7 two-week rule
    graph.funding_spent(scid, height)   # then graph.forget_spent(height) 12 blocks later
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Container, Iterable, Iterator
from typing import Any

from ampere.primitives.amount import SatInt, sat_to_msat
from ampere.wire.types import ShortChannelId

from .addresses import AddressError, alias_text, parse_addresses
from .rawmsg import (
    RawMessageError, channel_announcement_fields, channel_update_policy, channel_update_values, node_announcement_fields,
)

# BOLT #7: "if the `timestamp` of the latest `channel_update` in either direction is older than two
# weeks (1209600 seconds): MAY prune the channel."
STALE_SECONDS = 1_209_600
# BOLT #7: "once its funding output has been spent OR reorganized out: SHOULD forget a channel after
# a 12-block delay."
SPENT_FORGET_DELAY = 12

# Channel features (BOLT #9 context "C"): none are assigned, so any even bit is unknown.
KNOWN_CHANNEL_FEATURES = 0


class Half:
    """One direction's `channel_update`."""

    __slots__ = ("timestamp", "message_flags", "channel_flags", "cltv_expiry_delta", "htlc_minimum_msat",
                 "fee_base_msat", "fee_proportional_millionths", "htlc_maximum_msat", "raw", "_checksum")

    def __init__(self, raw: bytes) -> None:
        (_, _, _, _, self.timestamp, self.message_flags, self.channel_flags, self.cltv_expiry_delta,
         self.htlc_minimum_msat, self.fee_base_msat, self.fee_proportional_millionths,
         self.htlc_maximum_msat) = channel_update_values(raw)
        self.raw = raw
        self._checksum: int | None = None

    @classmethod
    def unparsed(cls, raw: bytes) -> Half:
        """A Half whose fields are read from `raw` when first asked for: loading a stored graph
        makes tens of thousands, and the path finder's view reads them from `raw` itself
        (`raw` must be a whole channel_update: the store's own records are)."""
        half = cls.__new__(cls)
        half.raw = raw
        half._checksum = None
        return half

    def __getattr__(self, name: str) -> Any:
        # Only for a slot not set yet: the fields of an unparsed Half.
        if name not in _HALF_FIELDS:
            raise AttributeError(name)
        (self.timestamp, self.message_flags, self.channel_flags, self.cltv_expiry_delta, self.htlc_minimum_msat,
         self.fee_base_msat, self.fee_proportional_millionths, self.htlc_maximum_msat) = channel_update_policy(self.raw)
        return object.__getattribute__(self, name)

    @property
    def enabled(self) -> bool:
        # BOLT #7 channel_flags bit 1: `disable`.
        return not self.channel_flags & 2

    @property
    def direction(self) -> int:
        return self.channel_flags & 1

    @property
    def checksum(self) -> int:
        """The BOLT #7 CRC32C checksum (computed once, on demand)."""
        if self._checksum is None:
            from .queries import channel_update_checksum

            self._checksum = channel_update_checksum(self.raw)
        return self._checksum


_new_half = object.__new__
_U32 = struct.Struct(">I").unpack_from
_HALF_FIELDS = frozenset(("timestamp", "message_flags", "channel_flags", "cltv_expiry_delta", "htlc_minimum_msat",
                          "fee_base_msat", "fee_proportional_millionths", "htlc_maximum_msat"))


class Channel:
    __slots__ = ("scid", "node1", "node2", "capacity_sat", "features", "raw", "public", "halves",
                 "spent_height", "added_at", "seq")

    def __init__(self, scid: int, node1: bytes, node2: bytes, capacity_sat: SatInt, features: bytes = b"",
                 raw: bytes | None = None, public: bool = True, added_at: int = 0) -> None:
        self.scid = scid if type(scid) is ShortChannelId else ShortChannelId(scid)
        self.node1 = node1
        self.node2 = node2
        self.capacity_sat = capacity_sat
        self.features = features
        self.raw = raw  # the channel_announcement; None for a private channel
        self.public = public
        self.halves: list[Half | None] = [None, None]
        self.spent_height: int | None = None
        self.added_at = added_at
        # Its place in `Graph.channels`' order (set by the graph): the path finder's edge view
        # keeps each node's edges in this order, so its updates in place equal a rebuild.
        self.seq = 0

    @property
    def bitcoin_key_1(self) -> bytes:
        return channel_announcement_fields(self.raw).bitcoin_key_1 if self.raw is not None else b""

    @property
    def bitcoin_key_2(self) -> bytes:
        return channel_announcement_fields(self.raw).bitcoin_key_2 if self.raw is not None else b""

    def node(self, direction: int) -> bytes:
        """The node whose `channel_update` has this direction (the source of that direction)."""
        return self.node2 if direction else self.node1

    def other(self, node_id: bytes) -> bytes:
        return self.node2 if node_id == self.node1 else self.node1

    def direction_from(self, node_id: bytes) -> int:
        return 0 if node_id == self.node1 else 1

    @property
    def routable_features(self) -> bool:
        return routable_channel_features(self.features)


def routable_channel_features(features: bytes) -> bool:
    """BOLT #7: "if there is an unknown even bit in the `features` field: MUST NOT attempt to
    route messages through the channel."  (an even bit is the lower bit of each pair)"""
    if not features:
        return True
    bits = int.from_bytes(features, "big") & ~KNOWN_CHANNEL_FEATURES
    return not bits & int("55" * len(features), 16)


class NodeInfo:
    """What a `node_announcement` says."""

    __slots__ = ("node_id", "timestamp", "features", "rgb_color", "alias", "addresses_raw", "raw")

    def __init__(self, raw: bytes) -> None:
        f = node_announcement_fields(raw)
        self.node_id = f.node_id
        self.timestamp = f.timestamp
        self.features = f.features
        self.rgb_color = f.rgb_color
        self.alias = f.alias
        self.addresses_raw = f.addresses
        self.raw = raw

    @classmethod
    def unparsed(cls, node_id: bytes, raw: bytes) -> NodeInfo:
        """A NodeInfo of a stored node_announcement: its node id and features now (the path
        finder's view reads the features), the rest when first asked for.  Its lengths are
        checked here (a record that does not hold together is dropped by the load, as before)."""
        if len(raw) < 68:
            raise RawMessageError("node_announcement too short")
        pos = 68 + ((raw[66] << 8) | raw[67])  # after `features`
        if len(raw) < pos + 74 or len(raw) < pos + 74 + ((raw[pos + 72] << 8) | raw[pos + 73]):
            raise RawMessageError("node_announcement too short")
        info = cls.__new__(cls)
        info.node_id, info.features, info.raw = node_id, raw[68:pos], raw
        info.timestamp = _U32(raw, pos)[0]  # (read by timestamp filters and sync replies for every node)
        return info

    def __getattr__(self, name: str) -> Any:
        # Only for a slot not set yet: the other fields of an unparsed NodeInfo.
        if name not in ("timestamp", "rgb_color", "alias", "addresses_raw"):
            raise AttributeError(name)
        f = node_announcement_fields(self.raw)
        self.timestamp, self.rgb_color, self.alias, self.addresses_raw = f.timestamp, f.rgb_color, f.alias, f.addresses
        return object.__getattribute__(self, name)


class Node:
    __slots__ = ("node_id", "channels", "info")

    def __init__(self, node_id: bytes) -> None:
        self.node_id = node_id
        self.channels: set[int] = set()
        self.info: NodeInfo | None = None


class Graph:
    def __init__(self) -> None:
        self.channels: dict[int, Channel] = {}
        self.nodes: dict[bytes, Node] = {}
        # Bumped on every change.  The path finder keeps an edge view (ln/route.py) against it and
        # brings it up to date from what changed since: the channels and nodes named below, which
        # it takes (and empties) when it catches up.
        self.version = 0
        self.changed_scids: set[int] = set()
        self.changed_nodes: set[bytes] = set()
        self.route_view: Any = None
        self._next_seq = 0
        self._sorted_scids: list[int] | None = None

    # -- changes -------------------------------------------------------------------------------
    def _touch(self, scids_changed: bool = False) -> None:
        self.version += 1
        if scids_changed:
            self._sorted_scids = None

    def _attach(self, ch: Channel) -> None:
        old = self.channels.get(ch.scid)
        if old is not None:
            ch.seq = old.seq  # replacing a dict entry keeps its place
        else:
            ch.seq = self._next_seq
            self._next_seq += 1
        self.channels[ch.scid] = ch
        self.changed_scids.add(ch.scid)
        for nid in (ch.node1, ch.node2):
            node = self.nodes.get(nid)
            if node is None:
                node = self.nodes[nid] = Node(nid)
            node.channels.add(ch.scid)
        self._touch(scids_changed=True)

    def add_channel_announcement(self, raw: bytes, capacity_sat: SatInt, now: int = 0) -> Channel:
        """Record a validated `channel_announcement` with the capacity its funding output has."""
        f = channel_announcement_fields(raw)
        old = self.channels.get(f.short_channel_id)
        if old is not None and not old.public:
            # A private channel of ours being announced: keep its updates.
            self._detach_nodes(old)
        ch = Channel(f.short_channel_id, f.node_id_1, f.node_id_2, capacity_sat, f.features, raw, True, now)
        if old is not None:
            ch.halves = old.halves
        self._attach(ch)
        return ch

    def load_channel_announcement(self, raw: bytes, capacity_sat: SatInt, now: int = 0) -> Channel:
        """add_channel_announcement for bytes read back from our own store while loading it: only
        what the graph keeps is sliced out (no field tuple), and the version is bumped once, by
        `loaded()`.  A channel already known goes the ordinary way."""
        if len(raw) < 260 or raw[0] != 1 or raw[1] != 0:
            raise RawMessageError("not a channel_announcement")
        pos = 260 + ((raw[258] << 8) | raw[259])  # after `features`
        if len(raw) < pos + 172:
            raise RawMessageError("channel_announcement too short")
        scid = int.from_bytes(raw[pos + 32 : pos + 40], "big")
        channels = self.channels
        if scid in channels:
            return self.add_channel_announcement(raw, capacity_sat, now)
        n1, n2 = raw[pos + 40 : pos + 73], raw[pos + 73 : pos + 106]
        # (a ShortChannelId without its range check: eight bytes always fit)
        scid = int.__new__(ShortChannelId, scid)
        ch = Channel(scid, n1, n2, capacity_sat, raw[260:pos], raw, True, now)
        ch.seq = self._next_seq
        self._next_seq += 1
        channels[scid] = ch
        self.changed_scids.add(scid)
        nodes = self.nodes
        for nid in (n1, n2):
            node = nodes.get(nid)
            if node is None:
                node = nodes[nid] = Node(nid)
            node.channels.add(scid)
        return ch

    def load_channel_update(self, raw: bytes, ch: Channel) -> Half:
        """apply_channel_update while loading our own store (see load_channel_announcement), for
        its channel `ch`: the Half is parsed when first used (`raw` is a whole channel_update:
        checked by the caller).  (Half.unparsed written out: tens of thousands of calls.)"""
        half = _new_half(Half)
        half.raw = raw
        half._checksum = None
        # The timestamp now (the rest when first asked for): pruning, sync replies and timestamp
        # filters read every Half's, and would otherwise parse them all, on the event loop.
        half.timestamp = _U32(raw, 106)[0]
        ch.halves[raw[111] & 1] = half
        self.changed_scids.add(ch.scid)
        return half

    def loaded(self) -> None:
        """The end of a load through the load_* methods: one version bump for all of it."""
        self._touch(scids_changed=True)

    def add_private_channel(self, scid: int, node_a: bytes, node_b: bytes, capacity_sat: SatInt, now: int = 0) -> Channel:
        """A channel we know without an announcement (our own unannounced channels): BOLT #7 "SHOULD
        accept `channel_update`s for its own channels (even if non-public)"."""
        n1, n2 = sorted((node_a, node_b))
        old = self.channels.get(scid)
        if old is not None:
            return old
        ch = Channel(scid, n1, n2, capacity_sat, b"", None, False, now)
        self._attach(ch)
        return ch

    def apply_channel_update(self, raw: bytes) -> Half:
        """Record a validated `channel_update` (the channel must be known)."""
        half = Half(raw)
        scid = int.from_bytes(raw[98:106], "big")
        self.channels[scid].halves[half.direction] = half
        self.changed_scids.add(scid)
        self._touch()
        return half

    def load_node_announcement(self, node_id: bytes, raw: bytes) -> NodeInfo:
        """apply_node_announcement while loading our own store (see load_channel_announcement):
        parsed when first used (NodeInfo.unparsed)."""
        node = self.nodes.get(node_id)
        if node is None:
            raise KeyError("node_announcement for a node without channels")
        info = node.info = NodeInfo.unparsed(node_id, raw)
        self.changed_nodes.add(node_id)
        return info

    def apply_node_announcement(self, raw: bytes) -> NodeInfo:
        info = NodeInfo(raw)
        node = self.nodes.get(info.node_id)
        if node is None:
            raise KeyError("node_announcement for a node without channels")
        node.info = info
        self.changed_nodes.add(info.node_id)
        self._touch()
        return info

    def _detach_nodes(self, ch: Channel) -> None:
        for nid in (ch.node1, ch.node2):
            node = self.nodes.get(nid)
            if node is not None:
                node.channels.discard(ch.scid)
                # BOLT #7: "if the announced node no longer has any associated open channels: MAY
                # prune nodes added through `node_announcement` messages from their local view."
                if not node.channels:
                    del self.nodes[nid]
                    self.changed_nodes.add(nid)

    def remove_channel(self, scid: int) -> Channel | None:
        ch = self.channels.pop(scid, None)
        if ch is not None:
            self._detach_nodes(ch)
            self.changed_scids.add(scid)
            self._touch(scids_changed=True)
        return ch

    def funding_spent(self, scid: int, height: int) -> bool:
        """The funding output was spent at `height`: the channel is no longer routed through, and is
        forgotten by `forget_spent` once the BOLT #7 12-block delay has passed."""
        ch = self.channels.get(scid)
        if ch is None:
            return False
        if ch.spent_height is None:
            ch.spent_height = height
            self.changed_scids.add(scid)
            self._touch()
        return True

    def forget_spent(self, height: int, delay: int = SPENT_FORGET_DELAY) -> list[int]:
        """Remove the channels spent at least `delay` blocks before `height`; returns their scids."""
        gone = [s for s, ch in self.channels.items() if ch.spent_height is not None and ch.spent_height + delay <= height]
        for scid in gone:
            self.remove_channel(scid)
        return gone

    def prune_stale(self, now: int, max_age: int = STALE_SECONDS, keep: Container[int] = ()) -> list[int]:
        """Remove public channels whose oldest latest update is older than `max_age`; returns them.

        BOLT #7: "The oldest `channel_update` is used to prune the channel since both sides need to
        be active in order for the channel to be usable."  A direction with no update counts from
        when the channel was added.  `keep` names channels never to prune (our own).
        """
        cutoff = now - max_age
        gone = []
        for scid, ch in self.channels.items():
            if not ch.public or scid in keep:
                continue
            oldest = min(h.timestamp if h is not None else ch.added_at for h in ch.halves)
            if oldest < cutoff:
                gone.append(scid)
        for scid in gone:
            self.remove_channel(scid)
        return gone

    # -- lookups -------------------------------------------------------------------------------
    def channel(self, scid: int) -> Channel | None:
        return self.channels.get(scid)

    def node(self, node_id: bytes) -> Node | None:
        return self.nodes.get(node_id)

    def node_timestamp(self, node_id: bytes) -> int | None:
        node = self.nodes.get(node_id)
        return node.info.timestamp if node is not None and node.info is not None else None

    def sorted_scids(self) -> list[int]:
        if self._sorted_scids is None:
            self._sorted_scids = sorted(s for s, ch in self.channels.items() if ch.public)
        return self._sorted_scids

    def scids_in_blocks(self, first_blocknum: int, number_of_blocks: int) -> list[int]:
        """Public channels whose funding block is in [first, first + number), ascending."""
        scids = self.sorted_scids()
        lo = bisect.bisect_left(scids, first_blocknum << 40)
        end = min(first_blocknum + number_of_blocks, 1 << 24)
        hi = bisect.bisect_left(scids, end << 40)
        return scids[lo:hi]

    def __len__(self) -> int:
        return len(self.channels)

    def iter_raw(self) -> Iterator[bytes]:
        """Every public message in relay order: each announcement, then its updates, then nodes."""
        for ch in self.channels.values():
            if ch.public and ch.raw is not None:
                yield ch.raw
                for h in ch.halves:
                    if h is not None:
                        yield h.raw
        for node in self.nodes.values():
            if node.info is not None:
                yield node.info.raw

    # -- CLN-shaped listings -------------------------------------------------------------------
    def list_channels(self, short_channel_id: int | None = None, source: bytes | None = None,
                      destination: bytes | None = None) -> list[dict[str, Any]]:
        """`listchannels` entries: one per direction that has a `channel_update`."""
        if short_channel_id is not None:
            chans: Iterable[Channel] = [c for c in [self.channels.get(short_channel_id)] if c is not None]
        elif source is not None or destination is not None:
            node = self.nodes.get(source if source is not None else destination)  # type: ignore[arg-type]
            chans = [self.channels[s] for s in sorted(node.channels)] if node is not None else []
        else:
            chans = self.channels.values()
        out = []
        for ch in chans:
            for direction in (0, 1):
                h = ch.halves[direction]
                if h is None:
                    continue
                src, dst = ch.node(direction), ch.node(1 - direction)
                if (source is not None and src != source) or (destination is not None and dst != destination):
                    continue
                out.append({
                    "source": src.hex(), "destination": dst.hex(), "short_channel_id": str(ch.scid),
                    "direction": direction, "public": ch.public, "amount_msat": sat_to_msat(ch.capacity_sat),
                    "message_flags": h.message_flags, "channel_flags": h.channel_flags,
                    "active": h.enabled and ch.spent_height is None, "last_update": h.timestamp,
                    "base_fee_millisatoshi": h.fee_base_msat, "fee_per_millionth": h.fee_proportional_millionths,
                    "delay": h.cltv_expiry_delta, "htlc_minimum_msat": h.htlc_minimum_msat,
                    "htlc_maximum_msat": h.htlc_maximum_msat, "features": ch.features.hex(),
                })
        return out

    def list_nodes(self, node_id: bytes | None = None) -> list[dict[str, Any]]:
        """`listnodes` entries (nodes with a public channel)."""
        if node_id is not None:
            nodes: Iterable[Node] = [n for n in [self.nodes.get(node_id)] if n is not None]
        else:
            nodes = self.nodes.values()
        out = []
        for node in nodes:
            if not any(self.channels[s].public for s in node.channels):
                continue
            entry: dict[str, Any] = {"nodeid": node.node_id.hex()}
            info = node.info
            if info is not None:
                try:
                    addrs = [a.to_json() for a in parse_addresses(info.addresses_raw)]
                except AddressError:
                    addrs = []
                entry.update(last_timestamp=info.timestamp, alias=alias_text(info.alias),
                             color=info.rgb_color.hex(), features=info.features.hex(), addresses=addrs)
            out.append(entry)
        return out

