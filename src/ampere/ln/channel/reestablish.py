"""Reconnection (BOLT 2 "Message Retransmission"): channel_reestablish with option_data_loss_protect.

On disconnection we forget the peer's uncommitted updates (`state.revert_peer_uncommitted`). On reconnection
both sides send channel_reestablish, and each retransmits exactly what the other says it lacks: our last
revoke_and_ack, our last commitment_signed with the updates it covered (in the original relative order), and
then our updates that no commitment_signed covered yet.
"""
from __future__ import annotations


from ampere.ln.channel.actions import ChannelError, DataLossDetected
from ampere.ln.channel.htlcs import HtlcState
from ampere.ln.channel.keys import secret_index
from ampere.ln.channel.normal import (
    commitment_signed_message,
    retransmit_updates,
    revoke_and_ack_message,
)
from ampere.ln.channel.persist import Out, PeerViolation
from ampere.ln.channel.signer import ChannelSigner
from ampere.ln.channel.state import Channel, revert_peer_uncommitted
from ampere.ln.channel.values import replace
from ampere.wire import messages as m

__all__ = ["reestablish_message", "on_reconnect", "on_disconnect", "on_channel_reestablish"]

S = HtlcState
_COMMITTED_UNACKED = frozenset({S.SENT_ADD_COMMIT, S.SENT_REMOVE_COMMIT})
_UNCOMMITTED = frozenset({S.SENT_ADD_HTLC, S.SENT_REMOVE_HTLC})


def reestablish_message(ch: Channel, signer: ChannelSigner) -> m.ChannelReestablish:
    """BOLT #2: "MUST set next_commitment_number to the commitment number of the next commitment_signed it
    expects to receive. MUST set next_revocation_number to the commitment number of the next revoke_and_ack
    message it expects to receive. ... if next_revocation_number equals 0: MUST set
    your_last_per_commitment_secret to all zeroes; otherwise: MUST set your_last_per_commitment_secret to the
    last per_commitment_secret it received." """
    next_revocation = ch.remote_ctn - 1 if ch.awaiting_revoke else ch.remote_ctn
    secret = bytes(32)
    if next_revocation > 0:
        secret = ch.remote_secrets.get_secret(secret_index(next_revocation - 1))
    return m.ChannelReestablish(channel_id=ch.channel_id, next_commitment_number=ch.local_ctn + 1,
                                next_revocation_number=next_revocation, your_last_per_commitment_secret=secret,
                                my_current_per_commitment_point=signer.commitment_point(ch.local_ctn))


def on_disconnect(ch: Channel) -> Channel:
    """BOLT #2: "upon disconnection: MUST reverse any uncommitted updates sent by the other side"; the closing
    negotiation restarts on reconnection."""
    return replace(revert_peer_uncommitted(ch), connected=False, reestablished=False, reestablish_sent=False,
                   closing=None)


def on_reconnect(ch: Channel, signer: ChannelSigner) -> Out:
    """BOLT #2: "MUST transmit channel_reestablish for each channel. MUST wait to receive the other node's
    channel_reestablish message before sending any other messages for that channel." """
    ch = replace(on_disconnect(ch), connected=True, reestablish_sent=True)
    out = Out(ch)
    out.send(reestablish_message(ch, signer))
    return out


def on_channel_reestablish(ch: Channel, signer: ChannelSigner, msg: m.ChannelReestablish) -> Out:
    if ch.reestablished:
        raise PeerViolation(ChannelError.warn_and_disconnect("second channel_reestablish on one connection"))
    out = Out(replace(ch, connected=True))
    if not ch.reestablish_sent:
        out.send(reestablish_message(ch, signer))
    n, r = msg.next_commitment_number, msg.next_revocation_number
    # BOLT #2: "if next_commitment_number is zero: MUST immediately fail the channel and broadcast any relevant
    # latest commitment transaction."
    if n == 0:
        raise PeerViolation(ChannelError.close("channel_reestablish with next_commitment_number 0"))

    # --- their next_revocation_number against the revoke_and_acks we sent (we revoked 0..local_ctn-1) ----
    retransmit_raa = False
    if r > ch.local_ctn:
        # BOLT #2: "if next_revocation_number is greater than expected above, AND your_last_per_commitment_secret
        # is correct for that next_revocation_number minus 1: MUST NOT broadcast its commitment transaction.
        # SHOULD send an error to request the peer to fail the channel."
        if msg.your_last_per_commitment_secret == signer.commitment_secret(r - 1):
            raise PeerViolation(ChannelError.close(
                f"we lost state: the peer expects revocation {r}, we are at {ch.local_ctn}", broadcast=False),
                [DataLossDetected(ch.channel_id, n, r)])
        raise PeerViolation(ChannelError.close(f"channel_reestablish: bad next_revocation_number {r}"))
    if r == ch.local_ctn - 1 and r >= 0:
        # BOLT #2: "if next_revocation_number is equal to the commitment number of the last revoke_and_ack the
        # receiving node sent ...: MUST re-send the revoke_and_ack."
        retransmit_raa = True
    elif r != ch.local_ctn:
        # BOLT #2: "if next_revocation_number is not equal to 1 greater than the commitment number of the last
        # revoke_and_ack the receiving node has sent: SHOULD send an error and fail the channel."
        raise PeerViolation(ChannelError.close(f"channel_reestablish: next_revocation_number {r}, "
                                               f"we revoked up to {ch.local_ctn - 1}"))
    # BOLT #2: "otherwise: if your_last_per_commitment_secret does not match the expected values: SHOULD send an
    # error and fail the channel."
    if r > 0 and msg.your_last_per_commitment_secret != signer.commitment_secret(r - 1):
        raise PeerViolation(ChannelError.close("channel_reestablish: your_last_per_commitment_secret is wrong"))

    # --- their next_commitment_number against the commitment_signed we sent (last one: remote_ctn) ------
    retransmit_cs = False
    if n == ch.remote_ctn and ch.awaiting_revoke:
        # BOLT #2: "if next_commitment_number is equal to the commitment number of the last commitment_signed
        # message the receiving node has sent: MUST reuse the same commitment number for its next
        # commitment_signed." (it never got it: we send it again, with the updates it covered)
        retransmit_cs = True
    elif n > ch.remote_ctn + 1:
        raise PeerViolation(ChannelError.close(
            f"the peer expects commitment {n}, we only signed up to {ch.remote_ctn}: our state is old",
            broadcast=False))
    elif n != ch.remote_ctn + 1:
        # BOLT #2: "if next_commitment_number is not equal to the commitment number of the next
        # commitment_signed that the receiving node would send: SHOULD send an error and fail the channel."
        raise PeerViolation(ChannelError.close(f"channel_reestablish: next_commitment_number {n}, "
                                               f"our last commitment_signed was {ch.remote_ctn}"))

    ch = replace(out.ch, reestablished=True)
    out.ch = ch
    # BOLT #2: "if next_commitment_number is 1 in both the channel_reestablish it sent and received ...: MUST
    # retransmit channel_ready."
    if n == 1 and ch.local_ctn == 0 and ch.channel_ready_sent:
        out.send(m.ChannelReady(channel_id=ch.channel_id, second_per_commitment_point=signer.commitment_point(1)))
    cs_part = []
    if retransmit_cs:
        cs_part = [*retransmit_updates(ch, _COMMITTED_UNACKED), commitment_signed_message(ch, signer)]
    raa_part = [revoke_and_ack_message(ch, signer)] if retransmit_raa else []
    # BOLT #2: "MUST retransmit revoke_and_ack and commitment_signed in the same relative order as initially
    # transmitted."
    for msg_out in (cs_part + raa_part if ch.last_sent_revoke else raa_part + cs_part):
        out.send(msg_out)
    # BOLT #2: "upon reconnection: if it has sent a previous shutdown: MUST retransmit shutdown."
    if ch.shutdown_sent:
        out.send(m.Shutdown(channel_id=ch.channel_id, scriptpubkey=ch.local_shutdown_script))
    for msg_out in retransmit_updates(ch, _UNCOMMITTED):
        out.send(msg_out)
    return out
