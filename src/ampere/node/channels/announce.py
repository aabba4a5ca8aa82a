"""Announcing our channels (BOLT #7): `announcement_signatures` with the peer, the complete
`channel_announcement`, and our `channel_update` of every channel, kept in step with the channel.

    node.channel_announcer = ChannelAnnouncer(node); announcer.start()   (before peers connect)
    announcer.settings_changed(rec)        setchannel changed fees / htlc limits: a new channel_update
    await announcer.stop()

The channel manager calls `_on_step(rec, events)` after every step of a channel (ChannelManager.on_channel_step);
each call, every block and every `announcement_signatures` re-derive what the gossip about that channel should
say from the channel as it is now (`_sync`), so no transition can be missed:

  * announce channels in CHANNELD_NORMAL whose funding is 6 blocks deep: our `announcement_signatures` goes out
    (once per connection), and once the peer's has arrived and verifies, the complete announcement goes to
    `node.gossip.announce_channel` (which also brings our node_announcement out).  The peer's signatures are
    kept in the channel's meta, so the announcement can be rebuilt after a restart.
  * our `channel_update` (our direction only: the peer signs the other): enabled while the channel is
    CHANNELD_NORMAL and reestablished with a connected peer, disabled otherwise.  A new one is made only when
    what it says changes (BOLT #7: "SHOULD NOT create redundant `channel_update`s"); a disconnection disables
    the channel only if the peer is still gone after DISABLE_DELAY, so a quick reconnection costs nothing of
    the receivers' rate limits.  Public channels' updates are relayed (gossip.add_own_update); unannounced
    ones go to the peer only (gossip.local_channel_update), again on each reconnection, for route hints.
  * `node.gossip.update_refresher` re-signs our updates before they go stale.

Closing is reported to gossip by the channel manager (gossip.channel_closed when the funding output is spent).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ampere.ln.channel.state import ChannelState
from ampere.ln.gossip.signing import (
    DISABLE_BIT,
    DONT_FORWARD,
    MUST_BE_ONE,
    announcement_signatures,
    complete_channel_announcement,
    make_channel_update,
    unsigned_channel_announcement,
)
from ampere.primitives.amount import sat_to_msat
from ampere.wire import messages as m
from ampere.wire.codec import encode_message
from ampere.wire.messages import AnnouncementSignatures, ChannelAnnouncement
from ampere.node.app.tasks import cancel_and_wait, spawn_guarded
from ampere.node.net.connection import PeerDisconnected

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node

LOG = "gossipd"
CS = ChannelState

# BOLT #7: "MUST NOT send `announcement_signatures` messages until `channel_ready` has been sent and
# received AND the funding transaction has at least six confirmations."
ANNOUNCE_DEPTH = 6
DISABLE_DELAY = 5.0  # seconds a peer may be away before its channels are announced disabled
DEV_DISABLE_DELAY = 1.0  # with --dev-fast-gossip
# States past channel_ready in which the channel still exists on the network, but is being closed:
# our update says disabled.  (Once the funding output is spent, gossip forgets the channel.)
CLOSING = (CS.CHANNELD_SHUTTING_DOWN, CS.CLOSINGD_SIGEXCHANGE, CS.CLOSINGD_COMPLETE, CS.AWAITING_UNILATERAL)
ANNOUNCEMENT_SIGNATURES_TYPE = next(t for t, c in m.MESSAGE_TYPES.items() if c is AnnouncementSignatures)


@dataclass
class _Gossiping:
    """What we have said (and heard) about one channel; in memory, rebuilt from the graph at start."""

    sigs_sent_on: Any = None       # the connection our announcement_signatures went out on
    theirs_on: Any = None          # the connection the peer's arrived on (we answer once per connection)
    pending: AnnouncementSignatures | None = None  # arrived before we sent channel_ready: handled later
    announced: bool = False
    body: tuple | None = None      # the fields of our last channel_update (everything but timestamp/signature)
    timestamp: int = 0             # ... and its timestamp
    raw: bytes | None = None       # ... and the message itself
    private_sent_on: Any = None    # the connection our unannounced update last went out on
    published: bool = False        # our update went into the public gossip (the channel is announced)
    disable_timer: asyncio.TimerHandle | None = None


class ChannelAnnouncer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.mgr = node.channel_manager
        self.gossip = node.gossip
        self._sign_node = node.signer
        self._chans: dict[int, _Gossiping] = {}  # channel dbid -> state
        self._tasks: set[asyncio.Task] = set()
        self._tip = -1
        fast = bool(_opt(node.options, "dev-fast-gossip"))
        self.disable_delay = DEV_DISABLE_DELAY if fast else DISABLE_DELAY
        self._stopping = False

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Register with the peer manager, channel manager and chain (before peers connect)."""
        self.node.peer_manager.add_message_handler([ANNOUNCEMENT_SIGNATURES_TYPE], self._on_announcement_signatures)
        self.mgr.on_channel_step(self._on_step)
        chain = self.node.chain
        if chain is not None:
            chain.add_listener(self)
            self._tip = chain.height
        self.gossip.update_refresher = self.refresh_update
        for rec in list(self.mgr.records.values()):
            try:
                self._restore(rec)
            except Exception as e:  # one bad record must not stop the node
                self.node.log.broken(LOG, f"restoring the gossip of channel {rec.channel_id.hex()}: {e!r}")

    async def stop(self) -> None:
        self._stopping = True
        for st in self._chans.values():
            if st.disable_timer is not None:
                st.disable_timer.cancel()
                st.disable_timer = None
        await cancel_and_wait(self._tasks)

    def _restore(self, rec: Any) -> None:
        """At start: what the graph (gossip_store) knows of our channel, and the announcement if the peer's
        signatures were received before the restart but the store lost it."""
        scid = rec.short_channel_id
        if scid is None or rec.state not in (CS.CHANNELD_NORMAL,) + CLOSING:
            return
        st = self._state(rec)
        gch = self.gossip.state.graph.channel(int(scid))
        if gch is not None:
            half = gch.halves[self._direction(rec)]
            if half is not None:
                st.body, st.timestamp, st.raw = _body_of(half), half.timestamp, half.raw
            st.announced = gch.public
            st.published = gch.public and half is not None
        self._sync(rec)

    # ---- what the channel says ---------------------------------------------------------------
    def _state(self, rec: Any) -> _Gossiping:
        st = self._chans.get(rec.dbid)
        if st is None:
            st = self._chans[rec.dbid] = _Gossiping()
        return st

    def _direction(self, rec: Any) -> int:
        # BOLT #7: `direction` is 0 if the origin node is node_id_1 (the lesser key), else 1.
        return 0 if self.node.node_id < rec.peer_id else 1

    def _depth(self, rec: Any) -> int:
        if rec.funding_height is None:
            return 0
        tip = max(self._tip, self.node.chain.height if self.node.chain is not None else -1,
                  self.node.blockheight or 0)
        return tip - rec.funding_height + 1

    def _enabled(self, rec: Any) -> bool:
        return rec.state is CS.CHANNELD_NORMAL and rec.core.can_speak and self.mgr.is_connected(rec.peer_id)

    def _body(self, rec: Any, enabled: bool) -> tuple:
        """The fields of our channel_update, from the channel's settings (setchannel / fee-base,
        fee-per-satoshi, cltv-delta) and what the peer allows."""
        s, ch = rec.settings, rec.core
        # BOLT #7: htlc_maximum_msat "MUST set this to less than or equal to the channel capacity" and
        # "MUST set this to less than or equal to `max_htlc_value_in_flight_msat` it received from the peer."
        htlc_max = min(int(s.htlc_max_msat), sat_to_msat(ch.funding_sat), ch.remote.max_htlc_value_in_flight_msat)
        # The peer refuses HTLCs below its htlc_minimum_msat: advertising less would only produce failures.
        htlc_min = max(int(s.htlc_min_msat), ch.remote.htlc_minimum_msat)
        htlc_min = min(htlc_min, htlc_max)  # BOLT #7: "MUST set htlc_minimum_msat <= htlc_maximum_msat"
        # BOLT #7: a node "MAY create a `channel_update` to communicate the channel parameters to the channel
        # peer, even though the channel has not yet been announced (i.e. the `announce_channel` bit was not set)
        # ... MUST set `dont_forward` to 1 in `message_flags`" -- so only when that bit is clear.  A channel we
        # will announce keeps it clear from its first (peer-only) update on: a peer that already knows the
        # channel is public refuses an update carrying it (CLN: "Do not set DONT_FORWARD on public
        # channel_updates").
        message_flags = MUST_BE_ONE | (0 if rec.core.announce else DONT_FORWARD)
        channel_flags = self._direction(rec) | (0 if enabled else DISABLE_BIT)
        return (message_flags, channel_flags, int(s.cltv_delta), htlc_min, int(s.fee_base_msat), int(s.fee_ppm),
                htlc_max)

    def _make_update(self, rec: Any, st: _Gossiping, body: tuple) -> bytes:
        message_flags, channel_flags, cltv, htlc_min, base, ppm, htlc_max = body
        # BOLT #7: "MUST set `timestamp` to greater than 0, AND to greater than any previously-sent
        # `channel_update` for this `short_channel_id`."
        ts = max(int(time.time()), st.timestamp + 1)
        raw = make_channel_update(
            chain_hash=self.gossip.chain_hash, short_channel_id=int(rec.short_channel_id), timestamp=ts,
            direction=channel_flags & 1, cltv_expiry_delta=cltv, htlc_minimum_msat=htlc_min, htlc_maximum_msat=htlc_max,
            fee_base_msat=base, fee_proportional_millionths=ppm, sign=self._sign_node,
            disabled=bool(channel_flags & DISABLE_BIT), dont_forward=bool(message_flags & DONT_FORWARD),
        ).to_bytes()
        st.body, st.timestamp, st.raw = body, ts, raw
        return raw

    def _sync(self, rec: Any, *, grace: bool = True) -> None:
        """Bring the gossip about one channel in line with the channel (synchronous: the messages go out
        in the order they were made)."""
        if self._stopping:
            return
        scid = rec.short_channel_id
        if scid is None:
            return
        st = self._state(rec)
        state = rec.state
        if state is not CS.CHANNELD_NORMAL and state not in CLOSING:
            if st.disable_timer is not None:
                st.disable_timer.cancel()
                st.disable_timer = None
            return
        if state is CS.CHANNELD_NORMAL:
            if st.pending is not None:
                msg, st.pending = st.pending, None
                self._spawn(self._handle_their_signatures(rec, msg), "announcement-signatures")
            self._announce_step(rec, st)
        self._update_step(rec, st, grace)

    # ---- announcement_signatures -------------------------------------------------------------
    def _unsigned(self, rec: Any) -> ChannelAnnouncement:
        p = rec.core.params
        return unsigned_channel_announcement(
            chain_hash=self.gossip.chain_hash, short_channel_id=int(rec.short_channel_id),
            node_id_a=self.node.node_id, node_id_b=rec.peer_id,
            bitcoin_key_a=p.local_pubkeys.funding_pubkey, bitcoin_key_b=p.remote_pubkeys.funding_pubkey,
            # BOLT #7: "MUST set `features` based on what features were negotiated for this channel":
            # no channel_announcement feature is defined.
            features=b"")

    def _our_signatures(self, rec: Any, unsigned: ChannelAnnouncement) -> tuple[bytes, bytes]:
        # The funding key never leaves the channel's signer object; this reads it for one signature.
        return announcement_signatures(unsigned, self._sign_node, rec.signer)

    @staticmethod
    def _theirs(rec: Any) -> tuple[bytes, bytes] | None:
        saved = rec.meta.get("announcement_sigs")
        if not saved or int(saved.get("scid", -1)) != int(rec.short_channel_id):
            return None
        return bytes.fromhex(saved["node"]), bytes.fromhex(saved["bitcoin"])

    def _announce_step(self, rec: Any, st: _Gossiping) -> None:
        """CHANNELD_NORMAL: send ours when due; announce once both are in hand."""
        ch = rec.core
        if st.announced and (st.sigs_sent_on is rec.conn or st.theirs_on is not rec.conn):
            return  # done, and nothing to answer on this connection (the common case: every HTLC step)
        # BOLT #7: "if the `open_channel` message has the `announce_channel` bit set AND a `shutdown`
        # message has not been sent: MUST send the `announcement_signatures` message"
        if not ch.announce or ch.shutdown_sent or not ch.channel_ready_sent or not ch.channel_ready_received:
            return
        if self._depth(rec) < ANNOUNCE_DEPTH:
            return
        theirs = self._theirs(rec)
        unsigned = None
        # BOLT #7 "upon reconnection ...: MUST respond to the first `announcement_signatures` message with its
        # own `announcement_signatures` message. if it has NOT received an `announcement_signatures` message:
        # SHOULD retransmit the `announcement_signatures` message."
        conn = rec.conn
        if ch.can_speak and conn is not None and st.sigs_sent_on is not conn \
                and (theirs is None or st.theirs_on is conn):
            unsigned = self._unsigned(rec)
            node_sig, btc_sig = self._our_signatures(rec, unsigned)
            msg = AnnouncementSignatures(channel_id=rec.channel_id, short_channel_id=int(rec.short_channel_id),
                                         node_signature=node_sig, bitcoin_signature=btc_sig)
            try:
                conn.send_nowait(encode_message(msg))
                st.sigs_sent_on = conn
                self.node.log.debug(self._src(rec), f"Sent announcement_signatures for {rec.short_channel_id}")
            except PeerDisconnected:
                pass
        if theirs is not None and not st.announced:
            unsigned = unsigned or self._unsigned(rec)
            try:
                full = complete_channel_announcement(unsigned, self.node.node_id,
                                                     self._our_signatures(rec, unsigned), theirs)
            except ValueError as e:  # checked on arrival: only a changed scid gets here
                self.node.log.unusual(self._src(rec), f"stored announcement_signatures no longer verify: {e}")
                return
            self._announce(rec, st, full.to_bytes())

    def _announce(self, rec: Any, st: _Gossiping, raw: bytes) -> None:
        st.announced = True
        scid = int(rec.short_channel_id)
        gch = self.gossip.state.graph.channel(scid)
        if gch is not None and gch.public:
            # The peer's copy reached us first through gossip: the same announcement.  Ours still has to be
            # known as ours (node_announcement goes out with our first public channel).
            self.gossip.refresh_node_announcement(only_if_changed=True)
        else:
            # BOLT #7: "if it has sent AND received a valid `announcement_signatures` message: SHOULD queue
            # the `channel_announcement` message for its peers."
            self.gossip.announce_channel(raw, rec.core.funding_sat, funding_outpoint=rec.funding_outpoint)
        self.node.log.info(self._src(rec), f"Channel {rec.short_channel_id} announced")

    async def _on_announcement_signatures(self, peer_id: bytes, msg: Any, raw: bytes) -> None:
        rec = self.mgr.by_channel_id.get(msg.channel_id)
        if rec is None or rec.peer_id != peer_id:
            self.node.log.debug(f"{peer_id.hex()}-chan", f"announcement_signatures for unknown channel "
                                                          f"{msg.channel_id.hex()}")
            return
        if not rec.core.announce:
            self.node.log.debug(self._src(rec), "announcement_signatures for an unannounced channel: ignored")
            return
        if rec.state is CS.CHANNELD_AWAITING_LOCKIN or rec.short_channel_id is None:
            # BOLT #7: "if it has not sent `channel_ready`: MAY defer handling the announcement_signatures
            # until after it has sent `channel_ready`" (and until theirs arrived: both are needed to announce)
            self._state(rec).pending = msg
            return
        if rec.state is not CS.CHANNELD_NORMAL:
            return  # closing: we no longer announce it (and are not obliged to answer)
        await self._handle_their_signatures(rec, msg)

    async def _handle_their_signatures(self, rec: Any, msg: AnnouncementSignatures) -> None:
        st = self._state(rec)
        peer = self.node.peer_manager.get(rec.peer_id)
        if int(msg.short_channel_id) != int(rec.short_channel_id):
            # BOLT #7: "if the `short_channel_id` is NOT correct: SHOULD send a `warning` and close the connection"
            self._hang_up(rec, peer, f"announcement_signatures: short_channel_id {msg.short_channel_id} is not "
                                     f"{rec.short_channel_id}")
            return
        unsigned = self._unsigned(rec)
        theirs = (bytes(msg.node_signature), bytes(msg.bitcoin_signature))
        try:
            complete_channel_announcement(unsigned, self.node.node_id, self._our_signatures(rec, unsigned), theirs)
        except ValueError as e:
            # BOLT #7: "if the `node_signature` OR the `bitcoin_signature` is NOT correct: MAY send a `warning`
            # and close the connection"
            self._hang_up(rec, peer, f"announcement_signatures: {e}")
            return
        st.theirs_on = rec.conn
        if self._theirs(rec) != theirs:
            rec.meta["announcement_sigs"] = {"scid": int(rec.short_channel_id), "node": theirs[0].hex(),
                                             "bitcoin": theirs[1].hex()}
            await self.mgr.save_meta(rec)
        self.node.log.debug(self._src(rec), f"Received announcement_signatures for {rec.short_channel_id}")
        self._sync(rec)

    def _hang_up(self, rec: Any, peer: Any, why: str) -> None:
        self.node.log.unusual(self._src(rec), why)
        if peer is not None:
            peer.close(why, warning=why)

    # ---- channel_update ----------------------------------------------------------------------
    def _update_step(self, rec: Any, st: _Gossiping, grace: bool) -> None:
        scid = int(rec.short_channel_id)
        graph = self.gossip.state.graph
        gch = graph.channel(scid)
        if gch is None:
            if rec.state is not CS.CHANNELD_NORMAL:
                return  # never usable: nothing to disable
            # Known to the graph as unannounced until announced (our updates of it are accepted, and the peer's).
            self.gossip.add_private_channel(scid, rec.peer_id, rec.core.funding_sat)
            gch = graph.channel(scid)
            if gch is None:
                return
        if gch.spent_height is not None:
            return
        if st.body is None:
            half = gch.halves[self._direction(rec)]
            if half is not None:
                st.body, st.timestamp, st.raw = _body_of(half), half.timestamp, half.raw
                st.published = gch.public
        public = gch.public
        enabled = self._enabled(rec)
        body = self._body(rec, enabled)
        if st.body is None and not enabled and rec.state is not CS.CHANNELD_NORMAL:
            return  # closing before we ever said anything about it
        # The channel just became public: what we said to the peer alone goes to everyone, freshly signed
        # (BOLT #7 orders our update after the announcement; a new timestamp makes it newer than any copy).
        if body == st.body and not (public and not st.published):
            if st.disable_timer is not None:
                st.disable_timer.cancel()
                st.disable_timer = None
            if not public and enabled and st.private_sent_on is not rec.conn and st.raw is not None:
                self._send_private(rec, st, st.raw)  # a new connection: the peer may have missed it
            return
        if (grace and not enabled and rec.state is CS.CHANNELD_NORMAL and st.body is not None
                and not st.body[1] & DISABLE_BIT and body[2:] == st.body[2:]):
            # Only the connection is gone: disable after a grace period, unless the peer is back by then.
            if st.disable_timer is None:
                st.disable_timer = asyncio.get_running_loop().call_later(
                    self.disable_delay, self._disable_due, rec)
            return
        if st.disable_timer is not None:
            st.disable_timer.cancel()
            st.disable_timer = None
        raw = self._make_update(rec, st, body)
        what = "enabled" if enabled else "disabled"
        self.node.log.debug(self._src(rec), f"channel_update for {rec.short_channel_id}/{body[1] & 1}: {what}, "
                                            f"fee {body[4]}+{body[5]}ppm, cltv {body[2]}"
                                            + (" (public)" if public else " (to peer only)"))
        if public:
            self.gossip.add_own_update(raw)
            st.published = True
        elif enabled:
            self._send_private(rec, st, raw)
        else:
            self.gossip.state.add_own_update(raw, int(time.time()))  # kept for us; the peer is not there

    def _disable_due(self, rec: Any) -> None:
        st = self._state(rec)
        st.disable_timer = None
        if self._stopping or self._enabled(rec):
            return
        # Past the grace period: say disabled.
        try:
            self._sync(rec, grace=False)
        except Exception as e:
            self.node.log.broken(LOG, f"disabling {rec.short_channel_id} failed: {e!r}")

    def _send_private(self, rec: Any, st: _Gossiping, raw: bytes) -> None:
        # BOLT #7: "MAY create a `channel_update` to communicate the channel parameters to the channel peer,
        # even though the channel has not yet been announced"
        st.private_sent_on = rec.conn
        self._spawn(self.gossip.local_channel_update(rec.peer_id, raw), "local-channel-update")

    def current_update(self, rec: Any) -> bytes | None:
        """Our latest channel_update of this channel, or None (what failures with the UPDATE bit should carry:
        one signed elsewhere could repeat its timestamp with other fields, which receivers ignore)."""
        st = self._chans.get(rec.dbid)
        return st.raw if st is not None else None

    def settings_changed(self, rec: Any) -> None:
        """setchannel changed our fees or HTLC limits: a new channel_update if it now says something else."""
        self._sync(rec)

    async def refresh_update(self, scid: int) -> bytes | None:
        """gossip.update_refresher: our update of `scid` re-signed with a new timestamp (BOLT #7: a node
        "SHOULD send a `channel_update` ... to keep the channel alive"), or None if it is not ours to refresh."""
        rec = self.mgr.find(int(scid))
        if rec is None or rec.short_channel_id is None or rec.state not in (CS.CHANNELD_NORMAL,) + CLOSING:
            return None
        gch = self.gossip.state.graph.channel(int(scid))
        if gch is None or not gch.public:
            return None
        st = self._state(rec)
        if st.body is None:
            half = gch.halves[self._direction(rec)]
            if half is not None:
                st.body, st.timestamp = _body_of(half), half.timestamp
        enabled = self._enabled(rec)
        body = self._body(rec, enabled)
        if not enabled and rec.state is CS.CHANNELD_NORMAL and st.body is not None and not st.body[1] & DISABLE_BIT:
            body = st.body  # a disconnection in its grace period does not change what we say
        if st.disable_timer is not None and body != st.body:
            st.disable_timer.cancel()
            st.disable_timer = None
        st.published = True
        return self._make_update(rec, st, body)

    # ---- inputs --------------------------------------------------------------------------------
    def _on_step(self, rec: Any, events: list) -> None:
        """ChannelManager.on_channel_step: after every step of a channel (cheap when nothing changed)."""
        if rec.short_channel_id is None or self._stopping:
            return
        try:
            self._sync(rec)
        except Exception as e:  # never let gossip break the channel manager's step
            self.node.log.broken(LOG, f"gossip of channel {rec.short_channel_id} failed: {e!r}")

    async def block_connected(self, height: int, block: Any) -> None:
        self._tip = max(self._tip, height)
        for rec in list(self.mgr.records.values()):
            if rec.state is CS.CHANNELD_NORMAL and rec.core.announce and rec.short_channel_id is not None:
                st = self._chans.get(rec.dbid)
                if st is None or not st.announced:
                    self._on_step(rec, [])

    async def block_disconnected(self, height: int, block_hash: bytes, block: Any) -> None:
        self._tip = min(self._tip, height - 1)

    # ---- helpers -------------------------------------------------------------------------------
    def _src(self, rec: Any) -> str:
        return f"{rec.peer_id.hex()}-chan#{rec.dbid}"

    def _spawn(self, coro: Any, name: str) -> asyncio.Task:
        return spawn_guarded(self._tasks, coro, name, lambda msg: self.node.log.broken(LOG, msg))


def _body_of(half: Any) -> tuple:
    return (half.message_flags, half.channel_flags, half.cltv_expiry_delta, half.htlc_minimum_msat,
            half.fee_base_msat, half.fee_proportional_millionths, half.htlc_maximum_msat)


def _opt(options: Any, name: str) -> Any:
    try:
        return options.get(name)
    except KeyError:
        return None


__all__ = ["ChannelAnnouncer", "ANNOUNCE_DEPTH"]
