"""BOLT #7 checks for incoming gossip, as pure functions of (message, graph, clock, chain lookup).

Every check returns a verdict instead of raising:

    Accept(relay, capacity_sat)  -- apply it to the graph and store; relay it if `relay`
    Ignore(code, reason)         -- drop it silently (old, duplicate, unknown channel, rate limited)
    Warn(code, reason)           -- drop it and send the peer a `warning` (bad signature, malformed)

so invalid gossip is dropped and counted (`GossipValidator.stats`) and never raises.  The
validator reads the graph but never changes it: the caller applies accepted messages.

The funding output of a `channel_announcement` is checked through an injected lookup:

    utxo_lookup(scid: ShortChannelId) -> (amount_sat, script_pubkey) | None   (None: no such
    output, or it is spent)

Because the runtime's lookup goes to the chain, the check comes in two steps it can await between:
`channel_announcement(msg)` (everything but the chain), then `channel_announcement_funding(msg,
utxo)`; `check_channel_announcement(msg, utxo_lookup)` does both for a synchronous lookup.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, Union

from ampere.ln.channel.scripts import funding_script
from ampere.primitives.crypto import sha256d
from ampere.primitives.script import p2wsh
from ampere.wire.codec import UnknownMessage, decode_message
from ampere.wire.errors import DecodeError
from ampere.wire.messages import ChannelAnnouncement, ChannelUpdate, NodeAnnouncement
from ampere.wire.types import ShortChannelId

from .addresses import AddressError, parse_addresses
from .graph import Graph
from .signing import (
    CHANNEL_ANNOUNCEMENT_SIGNED_FROM, CHANNEL_UPDATE_SIGNED_FROM, DONT_FORWARD, NODE_ANNOUNCEMENT_SIGNED_FROM,
    verify_compact,
)

UtxoLookup = Callable[[ShortChannelId], "tuple[int, bytes] | None"]

DAY = 86_400


@dataclass(frozen=True)
class Accept:
    relay: bool = True
    capacity_sat: int | None = None  # for a channel_announcement: its funding output's amount


@dataclass(frozen=True)
class Ignore:
    code: str
    reason: str = ""


@dataclass(frozen=True)
class Warn:
    code: str
    reason: str = ""


Verdict = Union[Accept, Ignore, Warn]


class RateLimitPolicy(Protocol):
    def allow(self, key: Hashable, now: int) -> bool:
        """Take one token for `key` at time `now` (seconds); False if none is left."""


class TokenBucket:
    """At most `burst` messages at once per key, refilled at `per_day` messages a day.

    The default follows Core Lightning's gossip rate limit ("1 per day, burst 4", gossipd), per
    channel direction for `channel_update` and per node for `node_announcement`.  Integer
    arithmetic: a token is DAY units, and each second adds `per_day` units.
    """

    def __init__(self, burst: int = 4, per_day: int = 1) -> None:
        if burst < 1 or per_day < 0:
            raise ValueError("burst must be at least 1 and per_day non-negative")
        self.burst = burst
        self.per_day = per_day
        self._state: dict[Hashable, tuple[int, int]] = {}

    def allow(self, key: Hashable, now: int) -> bool:
        full = self.burst * DAY
        units, last = self._state.get(key, (full, now))
        if now > last:
            units = min(full, units + (now - last) * self.per_day)
        if units < DAY:
            self._state[key] = (units, max(now, last))
            return False
        self._state[key] = (units - DAY, max(now, last))
        return True

    def forget(self, key: Hashable) -> None:
        self._state.pop(key, None)


class NoRateLimit:
    def allow(self, key: Hashable, now: int) -> bool:
        return True


def expected_funding_script_pubkey(bitcoin_key_1: bytes, bitcoin_key_2: bytes) -> bytes:
    """BOLT #7: the output must be "a P2WSH funding transaction output for those keys specified in
    BOLT #3" (2-of-2 multisig of the two bitcoin keys, sorted)."""
    return p2wsh(funding_script(bitcoin_key_1, bitcoin_key_2))


class GossipValidator:
    """Checks gossip against the graph it will be applied to.

    `chain_hashes`: the chains we follow (BOLT #7: "if the specified `chain_hash` is unknown to the
    receiver: MUST ignore the message").  `update_limit`/`node_limit`: rate-limit policies (None:
    the CLN-like default).  `max_future`: how far ahead of `now` a timestamp may be.
    """

    def __init__(self, graph: Graph, chain_hashes: bytes | tuple[bytes, ...], *,
                 update_limit: RateLimitPolicy | None = None, node_limit: RateLimitPolicy | None = None,
                 max_future: int = DAY) -> None:
        self.graph = graph
        self.chain_hashes = (chain_hashes,) if isinstance(chain_hashes, bytes) else tuple(chain_hashes)
        self.update_limit = update_limit if update_limit is not None else TokenBucket()
        self.node_limit = node_limit if node_limit is not None else TokenBucket()
        self.max_future = max_future
        self.stats: Counter[str] = Counter()  # "<message>:<accept|code>" -> count

    def _count(self, kind: str, verdict: Verdict) -> Verdict:
        self.stats[f"{kind}:{'accept' if isinstance(verdict, Accept) else verdict.code}"] += 1
        return verdict

    # -- dispatch ------------------------------------------------------------------------------
    def check_raw(self, raw: bytes, now: int, utxo_lookup: UtxoLookup) -> tuple[Verdict, Any]:
        """Decode and check any gossip message; returns (verdict, decoded message or None)."""
        try:
            msg = decode_message(raw)
        except DecodeError as e:
            return self._count("malformed", Warn("malformed", str(e))), None
        if isinstance(msg, ChannelUpdate):
            return self.channel_update(msg, now, raw), msg
        if isinstance(msg, ChannelAnnouncement):
            return self.check_channel_announcement(msg, utxo_lookup, raw), msg
        if isinstance(msg, NodeAnnouncement):
            return self.node_announcement(msg, now, raw), msg
        name = "unknown" if isinstance(msg, UnknownMessage) else msg.NAME
        return self._count(name, Ignore("not_gossip", f"{name} is not a gossip message")), msg

    # -- channel_announcement ------------------------------------------------------------------
    def channel_announcement(self, msg: ChannelAnnouncement, raw: bytes | None = None) -> Verdict:
        """Every check but the funding output's.  Accept here means "now look up the output" (it is
        counted once, by the funding step)."""
        verdict = self._channel_announcement(msg, raw)
        return verdict if isinstance(verdict, Accept) else self._count("channel_announcement", verdict)

    def _channel_announcement(self, msg: ChannelAnnouncement, raw: bytes | None) -> Verdict:
        # BOLT #7: "if the specified `chain_hash` is unknown to the receiver: MUST ignore the message."
        if msg.chain_hash not in self.chain_hashes:
            return Ignore("unknown_chain", f"chain {msg.chain_hash.hex()}")
        known = self.graph.channel(msg.short_channel_id)
        if known is not None and known.public:
            return Ignore("duplicate", f"channel {msg.short_channel_id} already announced")
        if msg.node_id_1 == msg.node_id_2:
            return Warn("bad_node_ids", "node_id_1 equals node_id_2")
        raw = raw if raw is not None else msg.to_bytes()
        digest = sha256d(raw[CHANNEL_ANNOUNCEMENT_SIGNED_FROM:])
        # BOLT #7: "if `bitcoin_signature_1`, `bitcoin_signature_2`, `node_signature_1` OR
        # `node_signature_2` are invalid OR NOT correct: SHOULD send a `warning`. MAY close the
        # connection. MUST ignore the message."
        for key, sig, name in ((msg.node_id_1, msg.node_signature_1, "node_signature_1"),
                               (msg.node_id_2, msg.node_signature_2, "node_signature_2"),
                               (msg.bitcoin_key_1, msg.bitcoin_signature_1, "bitcoin_signature_1"),
                               (msg.bitcoin_key_2, msg.bitcoin_signature_2, "bitcoin_signature_2")):
            if not verify_compact(key, sig, digest):
                return Warn("bad_signature", f"channel_announcement {msg.short_channel_id}: bad {name}")
        return Accept()

    def channel_announcement_funding(self, msg: ChannelAnnouncement, utxo: tuple[int, bytes] | None) -> Verdict:
        """Second step: `utxo` is what `utxo_lookup(msg.short_channel_id)` returned."""
        return self._count("channel_announcement", self._funding(msg, utxo))

    @staticmethod
    def _funding(msg: ChannelAnnouncement, utxo: tuple[int, bytes] | None) -> Verdict:
        # BOLT #7: "if the `short_channel_id`'s output does NOT correspond to a P2WSH (using
        # `bitcoin_key_1` and `bitcoin_key_2`, as specified in BOLT #3) OR the output is spent:
        # MUST ignore the message."
        if utxo is None:
            return Ignore("no_funding_output", f"channel {msg.short_channel_id}: no unspent funding output")
        amount_sat, script_pubkey = utxo
        if bytes(script_pubkey) != expected_funding_script_pubkey(msg.bitcoin_key_1, msg.bitcoin_key_2):
            return Ignore("wrong_funding_script", f"channel {msg.short_channel_id}: output is not the 2-of-2 P2WSH")
        return Accept(capacity_sat=amount_sat)

    def check_channel_announcement(self, msg: ChannelAnnouncement, utxo_lookup: UtxoLookup,
                                   raw: bytes | None = None) -> Verdict:
        first = self._channel_announcement(msg, raw)
        if not isinstance(first, Accept):
            return self._count("channel_announcement", first)
        try:
            utxo = utxo_lookup(ShortChannelId(msg.short_channel_id))
        except Exception as e:  # a broken backend must not take gossip processing down
            return self._count("channel_announcement", Ignore("lookup_failed", f"utxo lookup failed: {e}"))
        return self.channel_announcement_funding(msg, utxo)

    # -- node_announcement ---------------------------------------------------------------------
    def node_announcement(self, msg: NodeAnnouncement, now: int, raw: bytes | None = None) -> Verdict:
        return self._count("node_announcement", self._node_announcement(msg, now, raw))

    def _node_announcement(self, msg: NodeAnnouncement, now: int, raw: bytes | None) -> Verdict:
        node = self.graph.node(msg.node_id)
        # BOLT #7: "if `node_id` is NOT previously known from a `channel_announcement` message, OR if
        # `timestamp` is NOT greater than the last-received `node_announcement` from this
        # `node_id`: SHOULD ignore the message."  (checked before the signature: cheaper)
        if node is None or not any(self.graph.channels[s].public for s in node.channels):
            return Ignore("unknown_node", "node_announcement for a node without a public channel")
        if node.info is not None and msg.timestamp <= node.info.timestamp:
            return Ignore("old_timestamp", f"timestamp {msg.timestamp} not above {node.info.timestamp}")
        if msg.timestamp > now + self.max_future:
            return Ignore("future_timestamp", f"timestamp {msg.timestamp} too far ahead of {now}")
        raw = raw if raw is not None else msg.to_bytes()
        # BOLT #7: "if `signature` is NOT a valid signature (using `node_id` of the double-SHA256 of
        # the entire message following the `signature` field, including any future fields appended
        # to the end): SHOULD send a `warning`. MAY close the connection. MUST NOT process the
        # message further."
        if not verify_compact(msg.node_id, msg.signature, sha256d(raw[NODE_ANNOUNCEMENT_SIGNED_FROM:])):
            return Warn("bad_signature", f"node_announcement {msg.node_id.hex()}: bad signature")
        # BOLT #7: "if `addrlen` is insufficient to hold the address descriptors of the known types:
        # SHOULD send a `warning`. MAY close the connection."
        try:
            parse_addresses(msg.addresses)
        except AddressError as e:
            return Warn("bad_addresses", str(e))
        if not self.node_limit.allow(msg.node_id, now):
            return Ignore("rate_limited", f"node {msg.node_id.hex()}: too many announcements")
        return Accept()

    # -- channel_update ------------------------------------------------------------------------
    def channel_update(self, msg: ChannelUpdate, now: int, raw: bytes | None = None) -> Verdict:
        return self._count("channel_update", self._channel_update(msg, now, raw))

    def _channel_update(self, msg: ChannelUpdate, now: int, raw: bytes | None) -> Verdict:
        # BOLT #7: "if the specified `chain_hash` value is unknown (meaning it isn't active on the
        # specified chain): MUST ignore the channel update."
        if msg.chain_hash not in self.chain_hashes:
            return Ignore("unknown_chain", f"chain {msg.chain_hash.hex()}")
        ch = self.graph.channel(msg.short_channel_id)
        # BOLT #7: "if the `short_channel_id` does NOT match a previous `channel_announcement`, OR if
        # the channel has been closed in the meantime: MUST ignore `channel_update`s that do NOT
        # correspond to one of its own channels."  (our own channels are in the graph as private)
        if ch is None:
            return Ignore("unknown_channel", f"channel {msg.short_channel_id} is not known")
        if ch.spent_height is not None:
            return Ignore("closed_channel", f"channel {msg.short_channel_id} is closed")
        direction = msg.channel_flags & 1
        raw = raw if raw is not None else msg.to_bytes()
        last = ch.halves[direction]
        if last is not None:
            # BOLT #7: "if the `timestamp` is equal to the last-received `channel_update` for this
            # `short_channel_id` AND `node_id`: ... if the fields below `timestamp` are equal:
            # SHOULD ignore this message" (and if they differ, MAY blacklist: we ignore it too);
            # "if `timestamp` is lower than that of the last-received `channel_update` for this
            # `short_channel_id` AND for `node_id`: SHOULD ignore the message."
            if msg.timestamp == last.timestamp:
                same = raw[110:] == last.raw[110:]
                return Ignore("duplicate" if same else "same_timestamp_different_fields",
                              f"channel {msg.short_channel_id}/{direction}: timestamp {msg.timestamp} seen")
            if msg.timestamp < last.timestamp:
                return Ignore("old_timestamp", f"channel {msg.short_channel_id}/{direction}: "
                                               f"timestamp {msg.timestamp} below {last.timestamp}")
        # BOLT #7: "if the `timestamp` is unreasonably far in the future: MAY discard the `channel_update`."
        if msg.timestamp > now + self.max_future:
            return Ignore("future_timestamp", f"timestamp {msg.timestamp} too far ahead of {now}")
        # BOLT #7: "The `node_id` for the signature verification is taken from the corresponding
        # `channel_announcement`: `node_id_1` if the least-significant bit of flags is 0 or
        # `node_id_2` otherwise."  and "if `signature` is not a valid signature ...: SHOULD send a
        # `warning` and close the connection. MUST NOT process the message further."
        if not verify_compact(ch.node(direction), msg.signature, sha256d(raw[CHANNEL_UPDATE_SIGNED_FROM:])):
            return Warn("bad_signature", f"channel_update {msg.short_channel_id}/{direction}: bad signature")
        # Rate limit last, so that forged updates cannot use up a channel's allowance.
        if ch.public and not self.update_limit.allow((ch.scid, direction), now):
            return Ignore("rate_limited", f"channel {msg.short_channel_id}/{direction}: too many updates")
        # BOLT #7 (origin): for an unannounced channel, "MUST NOT forward such a `channel_update` to
        # other peers, for privacy reasons."
        return Accept(relay=ch.public and not msg.message_flags & DONT_FORWARD)
