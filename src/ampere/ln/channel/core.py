"""The channel core's API for the runtime: every input of a funded channel, in one place.

Each function takes the channel (a `Channel` value), the channel's `ChannelSigner` where signatures are
involved, and one input; it returns a `Step` (new channel + actions, persist first) or, for local requests
the core declines, a `Refusal` (nothing changed). Nothing here raises on peer input: misbehaviour becomes a
`ChannelError` mapped to actions by `apply_error` (the one place that decides warning / disconnect / error).

    peer message        handle_message(ch, signer, msg, env)
    connection          on_reconnect(ch, signer), on_disconnect(ch)
    HTLCs (switch)      offer_htlc, fulfill_htlc, fail_htlc, fail_malformed_htlc
    batching timer      send_commitment(ch, signer)      (after CommitmentNeeded, CLN waits 10 ms)
    fees                update_fee(ch, signer, feerate, env)
    chain               funding_depth(ch, signer, depth, short_channel_id), funding_spent(ch, txid),
                        on_block(ch, signer, blockheight)  (HTLC deadlines)
    close               start_shutdown(ch, signer, env, scriptpubkey), force_close(ch, signer, reason)
    storage             restore(snapshot) -> Channel (disconnected)
    queries             local_commitment_tx, remote_commitment_tx, pending_incoming_htlcs, known_preimages,
                        spendable_msat

Opening (before a Channel exists) is in `opening.py`.
"""
from __future__ import annotations

from typing import Any, Callable

from ampere.ln.channel import normal, reestablish, shutdown
from ampere.ln.channel.actions import (
    Broadcast,
    ChannelError,
    ChannelFailed,
    ChannelReady,
    CommitmentNeeded,
    ErrorKind,
    PeerWarning,
    Persist,
    Refusal,
    RefusalCode,
    Step,
)
from ampere.ln.channel.commitment import CommitmentError, CommitmentTx, Side
from ampere.ln.channel.env import Env
from ampere.ln.channel.htlcs import Htlc, HtlcState, RemovalKind, Status
from ampere.ln.channel.persist import Out, PeerViolation, finish
from ampere.ln.channel.signer import ChannelSigner
from ampere.ln.channel.state import Channel, ChannelState, set_state
from ampere.ln.channel.views import build_local_commitment, build_remote_commitment, view
from ampere.ln.channel.views import spendable_msat as _spendable
from ampere.ln.channel.values import replace
from ampere.primitives.amount import MsatInt
from ampere.primitives.tx import Transaction
from ampere.wire import messages as m

__all__ = [
    "Env", "handle_message", "on_reconnect", "on_disconnect", "offer_htlc", "fulfill_htlc", "fail_htlc",
    "fail_malformed_htlc", "send_commitment", "needs_commitment", "update_fee", "funding_depth", "funding_spent",
    "on_block",
    "start_shutdown", "force_close", "apply_error", "restore", "local_commitment_tx", "remote_commitment_tx",
    "pending_incoming_htlcs", "known_preimages", "spendable_msat", "local_commitment",
]

CS = ChannelState
_CLOSED_STATES = (CS.AWAITING_UNILATERAL, CS.FUNDING_SPEND_SEEN, CS.ONCHAIN, CS.CLOSED)


def restore(snapshot: bytes) -> Channel:
    """The channel from its last persisted record, as after a disconnection (call on_reconnect next)."""
    return Channel.from_bytes(snapshot)


def _complete(old: Channel, out: Out, signer: ChannelSigner, env: Env) -> Step:
    """Run the shutdown progression, then build the Step (persist first)."""
    try:
        shutdown.progress(out, signer, env)
    except PeerViolation as v:
        return apply_error(out.ch, signer, v.error, v.events)
    # Commit batching: whatever left updates waiting for a signature asks for the commit timer.
    if normal.needs_commitment(out.ch) and not any(isinstance(e, CommitmentNeeded) for e in out.events):
        out.event(CommitmentNeeded(out.ch.channel_id))
    return finish(old, out.ch, out.messages, out.events, out.broadcasts, cause=out.cause)


def _run(ch: Channel, signer: ChannelSigner, env: Env, fn: Callable[[], Out]) -> Step:
    try:
        out = fn()
    except PeerViolation as v:
        return apply_error(ch, signer, v.error, v.events)
    return _complete(ch, out, signer, env)


def _local(ch: Channel, signer: ChannelSigner, env: Env, result: Out | Refusal, cause: str = "user") -> Step | Refusal:
    if isinstance(result, Refusal):
        return result
    result.cause = cause
    return _complete(ch, result, signer, env)


# --- errors ----------------------------------------------------------------------------------------

def apply_error(ch: Channel, signer: ChannelSigner, err: ChannelError, events: list[Any] | None = None) -> Step:
    """The one place mapping a ChannelError to what happens (style practice 6)."""
    events = list(events or [])
    text = err.message.encode()
    if err.kind is ErrorKind.IGNORE:
        return Step.build(ch, events=events, error=err)
    if err.kind is ErrorKind.WARN:
        return Step.build(ch, messages=[m.Warning(channel_id=ch.channel_id, data=text)], events=events, error=err)
    if err.kind is ErrorKind.WARN_AND_DISCONNECT:
        new = reestablish.on_disconnect(ch)
        return finish(ch, new, [m.Warning(channel_id=ch.channel_id, data=text)], events, disconnect=err.message,
                      error=err)
    # CLOSE: BOLT #1 "error": fail the channel; broadcast our latest commitment unless we proved to be behind.
    return _fail_channel(ch, signer, err.message, err.broadcast, events, send_error=True, error=err)


def _fail_channel(ch: Channel, signer: ChannelSigner, reason: str, broadcast: bool, events: list[Any],
                  send_error: bool, error: ChannelError | None = None, cause: str = "protocol") -> Step:
    messages = [m.Error(channel_id=ch.channel_id, data=reason.encode())] if send_error and ch.connected else []
    if ch.state in _CLOSED_STATES:
        return Step.build(ch, messages=messages, events=events, error=error)
    txs = [local_commitment_tx(ch, signer)] if broadcast else []
    new = set_state(replace(ch, closing=None), CS.AWAITING_UNILATERAL)
    events = [*events, ChannelFailed(ch.channel_id, reason, broadcast)]
    step = finish(ch, new, messages, events, broadcasts=txs, cause=cause, error=error)
    # As lightningd's drop_to_chain: our commitment goes to the chain before the error goes to the peer. The
    # peer fails the channel on our error and broadcasts its own commitment; sent the other way round, its
    # commitment can reach the mempool first and ours is refused as a conflicting replacement.
    first = [a for a in step.actions if isinstance(a, Persist)] + [a for a in step.actions if isinstance(a, Broadcast)]
    return replace(step, actions=tuple(first + [a for a in step.actions if not isinstance(a, (Persist, Broadcast))]))


# --- peer messages ---------------------------------------------------------------------------------

def handle_message(ch: Channel, signer: ChannelSigner, msg: Any, env: Env = Env()) -> Step:
    """Process one decoded message from the peer for this channel."""
    if getattr(msg, "channel_id", ch.channel_id) != ch.channel_id:
        return Step(ch, (), ChannelError.ignore("message for another channel"))
    if isinstance(msg, m.Error):
        # BOLT #1: "upon receiving error: if channel_id is ...: MUST fail the channel" (we broadcast ours).
        text = bytes(msg.data).decode("utf-8", "replace")
        return _fail_channel(ch, signer, f"peer sent error: {text}", True,
                             [PeerWarning(ch.channel_id, text, is_error=True)], send_error=False, cause="remote")
    if isinstance(msg, m.Warning):
        return Step.build(ch, events=[PeerWarning(ch.channel_id, bytes(msg.data).decode("utf-8", "replace"))])
    if ch.state in _CLOSED_STATES:
        # BOLT #2: "if a channel is in an error state: SHOULD retransmit the error packet and ignore any other
        # packets for that channel."
        return Step.build(ch, messages=[m.Error(channel_id=ch.channel_id, data=b"channel is closed")]
                          if isinstance(msg, m.ChannelReestablish) else [])
    if isinstance(msg, m.ChannelReestablish):
        return _run(ch, signer, env, lambda: reestablish.on_channel_reestablish(ch, signer, msg))
    if not ch.reestablished:
        return apply_error(ch, signer, ChannelError.warn_and_disconnect(
            f"{type(msg).__name__} before channel_reestablish"))
    handler = _HANDLERS.get(type(msg))
    if handler is None:
        return apply_error(ch, signer, ChannelError.warn_and_disconnect(f"unexpected {type(msg).__name__}"))
    return _run(ch, signer, env, lambda: handler(ch, signer, msg, env))


def _on_channel_ready(ch: Channel, signer: ChannelSigner, msg: m.ChannelReady, env: Env) -> Out:
    out = Out(ch)
    # BOLT #2: "upon reconnection: MUST ignore any redundant channel_ready it receives."
    if ch.channel_ready_received or ch.state is not CS.CHANNELD_AWAITING_LOCKIN:
        return out
    new = replace(ch, channel_ready_received=True, remote_next_point=bytes(msg.second_per_commitment_point))
    if new.channel_ready_sent:
        new = set_state(new, CS.CHANNELD_NORMAL)
        out.event(ChannelReady(ch.channel_id, new.short_channel_id))
    out.ch = new
    out.cause = "remote"
    return out


_HANDLERS: dict[type, Callable[[Channel, ChannelSigner, Any, Env], Out]] = {
    m.ChannelReady: _on_channel_ready,
    m.UpdateAddHtlc: lambda ch, s, msg, env: normal.on_update_add_htlc(ch, msg),
    m.UpdateFulfillHtlc: lambda ch, s, msg, env: normal.on_update_fulfill_htlc(ch, msg),
    m.UpdateFailHtlc: lambda ch, s, msg, env: normal.on_update_fail_htlc(ch, msg),
    m.UpdateFailMalformedHtlc: lambda ch, s, msg, env: normal.on_update_fail_malformed_htlc(ch, msg),
    m.UpdateFee: lambda ch, s, msg, env: normal.on_update_fee(ch, msg, env.min_feerate_per_kw, env.max_feerate_per_kw),
    m.CommitmentSigned: lambda ch, s, msg, env: normal.on_commitment_signed(ch, s, msg),
    m.RevokeAndAck: lambda ch, s, msg, env: normal.on_revoke_and_ack(ch, msg),
    m.Shutdown: lambda ch, s, msg, env: shutdown.on_shutdown(ch, msg),
    m.ClosingSigned: lambda ch, s, msg, env: shutdown.on_closing_signed(ch, s, msg, env),
}


# --- connection ------------------------------------------------------------------------------------

def on_reconnect(ch: Channel, signer: ChannelSigner) -> Step:
    if ch.state in (CS.ONCHAIN, CS.CLOSED):
        return Step(ch)
    if ch.state in _CLOSED_STATES:
        new = replace(reestablish.on_disconnect(ch), connected=True)
        return Step.build(new, messages=[m.Error(channel_id=ch.channel_id, data=b"channel is closed")])
    out = reestablish.on_reconnect(ch, signer)
    return finish(ch, out.ch, out.messages)


def on_disconnect(ch: Channel) -> Step:
    return finish(ch, reestablish.on_disconnect(ch))


# --- local requests --------------------------------------------------------------------------------

def offer_htlc(ch: Channel, signer: ChannelSigner, amount_msat: MsatInt, payment_hash: bytes, cltv_expiry: int,
               onion: bytes, path_key: bytes | None = None, env: Env = Env()) -> Step | Refusal:
    return _local(ch, signer, env, normal.offer_htlc(ch, amount_msat, payment_hash, cltv_expiry, onion, path_key))


def fulfill_htlc(ch: Channel, signer: ChannelSigner, htlc_id: int, preimage: bytes, env: Env = Env()) -> Step | Refusal:
    return _local(ch, signer, env, normal.fulfill_htlc(ch, htlc_id, preimage))


def fail_htlc(ch: Channel, signer: ChannelSigner, htlc_id: int, reason: bytes, env: Env = Env()) -> Step | Refusal:
    return _local(ch, signer, env, normal.fail_htlc(ch, htlc_id, reason))


def fail_malformed_htlc(ch: Channel, signer: ChannelSigner, htlc_id: int, sha256_of_onion: bytes,
                        failure_code: int, env: Env = Env()) -> Step | Refusal:
    return _local(ch, signer, env, normal.fail_malformed_htlc(ch, htlc_id, sha256_of_onion, failure_code))


def update_fee(ch: Channel, signer: ChannelSigner, feerate_per_kw: int, env: Env = Env()) -> Step | Refusal:
    return _local(ch, signer, env, normal.update_fee(ch, feerate_per_kw))


def needs_commitment(ch: Channel) -> bool:
    return normal.needs_commitment(ch)


def send_commitment(ch: Channel, signer: ChannelSigner, env: Env = Env()) -> Step:
    """The commit timer fired: sign the peer's next commitment if there is anything to sign."""
    try:
        out = normal.send_commitment(ch, signer)
    except CommitmentError as e:  # the fee/reserve checks should make this impossible
        return apply_error(ch, signer, ChannelError.close(f"cannot build the peer's commitment: {e}"))
    return _complete(ch, out, signer, env)


def start_shutdown(ch: Channel, signer: ChannelSigner, env: Env = Env(),
                   scriptpubkey: bytes | None = None) -> Step | Refusal:
    """`close`: mutual close, our funds to `scriptpubkey` (default: the script given at opening)."""
    return _local(ch, signer, env, shutdown.start_shutdown(ch, scriptpubkey))


def force_close(ch: Channel, signer: ChannelSigner, reason: str = "forced close") -> Step | Refusal:
    """Unilateral close: broadcast our latest commitment (close with a timeout, or `close` with force)."""
    if ch.state in _CLOSED_STATES:
        return Refusal(RefusalCode.NOT_READY, f"channel is {ch.state.value}")
    return _fail_channel(ch, signer, reason, True, [], send_error=True, cause="user")


# --- chain -----------------------------------------------------------------------------------------

def funding_depth(ch: Channel, signer: ChannelSigner, depth: int, short_channel_id: int | None,
                  env: Env = Env()) -> Step:
    """The funding transaction has `depth` confirmations (0: unconfirmed)."""
    if ch.state is not CS.CHANNELD_AWAITING_LOCKIN or ch.channel_ready_sent or depth < max(1, ch.minimum_depth):
        return Step(ch)
    new = replace(ch, channel_ready_sent=True, short_channel_id=short_channel_id)
    out = Out(new)
    out.cause = "onchain"
    if new.can_speak:
        # BOLT #2: "MUST set second_per_commitment_point to the per-commitment point to be used for commitment
        # transaction #1"
        out.send(m.ChannelReady(channel_id=ch.channel_id, second_per_commitment_point=signer.commitment_point(1)))
    if new.channel_ready_received:
        out.ch = set_state(new, CS.CHANNELD_NORMAL)
        out.event(ChannelReady(ch.channel_id, short_channel_id))
    return _complete(ch, out, signer, env)


# BOLT #2 "cltv_expiry_delta Selection": the deadline for offered HTLCs "is G blocks after the HTLC's
# cltv_expiry: 1 or 2 blocks is reasonable"; for received HTLCs we fulfilled, "a deadline of 2R+G+S blocks before
# cltv_expiry: 18 blocks is reasonable".
OFFERED_HTLC_GRACE_BLOCKS = 2
FULFILLED_HTLC_DEADLINE_BLOCKS = 18


def on_block(ch: Channel, signer: ChannelSigner, blockheight: int) -> Step:
    """A new chain tip: fail the channel if an HTLC is past its deadline.

    BOLT #2: "if an HTLC which it offered is in either node's current commitment transaction, AND is past this
    timeout deadline: SHOULD send an error to the receiving peer (if connected). MUST fail the channel." and "if
    an HTLC it has fulfilled is in either node's current commitment transaction, AND is past this fulfillment
    deadline: SHOULD send an error to the offering peer (if connected). MUST fail the channel."
    """
    if ch.state not in (CS.CHANNELD_NORMAL, CS.CHANNELD_SHUTTING_DOWN, CS.CLOSINGD_SIGEXCHANGE):
        return Step(ch)
    for h in ch.htlcs:
        committed = Status.IN in (h.status(Side.LOCAL), h.status(Side.REMOTE))
        if not committed:
            continue
        if h.offerer is Side.LOCAL and blockheight >= h.cltv_expiry + OFFERED_HTLC_GRACE_BLOCKS:
            return _fail_channel(ch, signer, f"offered HTLC {h.htlc_id} timed out at block {h.cltv_expiry}", True,
                                 [], send_error=True, cause="protocol")
        fulfilled = (h.offerer is Side.REMOTE and h.removal is not None and h.removal.kind is RemovalKind.FULFILL)
        if fulfilled and blockheight >= h.cltv_expiry - FULFILLED_HTLC_DEADLINE_BLOCKS:
            return _fail_channel(ch, signer, f"fulfilled HTLC {h.htlc_id} is close to its expiry {h.cltv_expiry}",
                                 True, [], send_error=True, cause="protocol")
    return Step(ch)


def funding_spent(ch: Channel, spending_txid: bytes) -> Step:
    """A transaction spending the funding output was seen (mutual close, ours or theirs unilateral)."""
    if ch.state in (CS.FUNDING_SPEND_SEEN, CS.ONCHAIN, CS.CLOSED):
        return Step(ch)
    new = set_state(replace(ch, closing=None), CS.FUNDING_SPEND_SEEN)
    return finish(ch, new, cause="onchain")


# --- queries ---------------------------------------------------------------------------------------

def local_commitment(ch: Channel, signer: ChannelSigner) -> CommitmentTx:
    return build_local_commitment(ch, ch.local_ctn, signer.commitment_point(ch.local_ctn), view(ch, Side.LOCAL),
                                  signer)


def local_commitment_tx(ch: Channel, signer: ChannelSigner) -> Transaction:
    """Our latest commitment, signed by both: what a unilateral close broadcasts."""
    return signer.signed_local_commitment(local_commitment(ch, signer), ch.local_commit_sig)


def remote_commitment_tx(ch: Channel) -> CommitmentTx:
    """The peer's latest commitment as we signed it (unsigned form)."""
    return build_remote_commitment(ch, ch.remote_ctn, ch.remote_point, view(ch, Side.REMOTE))


def pending_incoming_htlcs(ch: Channel) -> list[Htlc]:
    """HTLCs the peer offered that are irrevocably committed and not yet resolved by us (replay after restart)."""
    return [h for h in ch.htlcs if h.offerer is Side.REMOTE and h.state is HtlcState.RCVD_ADD_ACK_REVOCATION
            and h.removal is None]


def known_preimages(ch: Channel) -> list[tuple[int, bytes]]:
    """(htlc_id, preimage) of HTLCs we offered that the peer fulfilled and that are not settled yet: after a
    restart the switch replays these (HtlcFulfilled may have been lost with the process)."""
    return [(h.htlc_id, h.removal.preimage) for h in ch.htlcs if h.offerer is Side.LOCAL
            and h.removal is not None and h.removal.kind is RemovalKind.FULFILL]


def spendable_msat(ch: Channel) -> int:
    return _spendable(ch)
