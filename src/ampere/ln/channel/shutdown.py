"""Mutual close (BOLT 2 "Channel Close"): shutdown, then legacy closing_signed fee negotiation with fee_range.

`progress` runs after every step of a channel in normal operation or closing: it sends our shutdown once no
update of ours is left uncommitted, answers the peer's shutdown, and starts the fee negotiation once the
channel is clean (no HTLCs, no pending fee update, no revocation owed). The opener proposes first.
"""
from __future__ import annotations


from ampere.ln.channel.actions import ChannelError, MutualCloseAgreed, Refusal, RefusalCode
from ampere.ln.channel.closing import (
    ClosingError,
    ClosingTx,
    build_closing_tx,
    dust_threshold_sat,
    expected_closing_weight,
)
from ampere.ln.channel.commitment import Side, commitment_fee_sat
from ampere.ln.channel.env import Env
from ampere.ln.channel.keys import KeyDerivationError, compact_to_der
from ampere.ln.channel.normal import FEERATE_FLOOR, has_uncommitted_local_updates
from ampere.ln.channel.persist import Out, PeerViolation
from ampere.ln.channel.signer import ChannelSigner
from ampere.ln.channel.state import Channel, ChannelState, ClosingNegotiation, set_state
from ampere.ln.channel.values import replace
from ampere.primitives.amount import SatInt, msat_to_sat
from ampere.primitives.tx import Transaction
from ampere.wire import messages as m

__all__ = ["valid_shutdown_script", "start_shutdown", "on_shutdown", "on_closing_signed", "progress", "is_clean"]

CS = ChannelState


def valid_shutdown_script(spk: bytes, anysegwit: bool = True) -> bool:
    """BOLT #2 shutdown scriptpubkey forms: "OP_0 20 20-bytes", "OP_0 32 32-bytes", and with
    option_shutdown_anysegwit "OP_1 through OP_16 inclusive, followed by a single push of 2 to 40 bytes"."""
    if len(spk) == 22 and spk[0] == 0 and spk[1] == 20:
        return True
    if len(spk) == 34 and spk[0] == 0 and spk[1] == 32:
        return True
    return anysegwit and len(spk) >= 4 and 0x51 <= spk[0] <= 0x60 and 2 <= spk[1] <= 40 and len(spk) == 2 + spk[1]


def is_clean(ch: Channel) -> bool:
    """No HTLC in either commitment, no pending fee update, no revocation owed."""
    return not ch.htlcs and not ch.fee_updates and not ch.awaiting_revoke


def start_shutdown(ch: Channel, scriptpubkey: bytes | None = None) -> Out | Refusal:
    """Ask for a mutual close (`close` RPC). Our shutdown goes out as soon as BOLT 2 allows it."""
    if ch.state not in (CS.CHANNELD_AWAITING_LOCKIN, CS.CHANNELD_NORMAL, CS.CHANNELD_SHUTTING_DOWN):
        return Refusal(RefusalCode.NOT_READY, f"channel is {ch.state.value}")
    script = ch.local_shutdown_script if scriptpubkey is None else bytes(scriptpubkey)
    if not valid_shutdown_script(script):
        return Refusal(RefusalCode.BAD_SCRIPT, "shutdown script must be a segwit output script")
    # BOLT #2: "if it sent a non-zero-length shutdown_scriptpubkey in open_channel or accept_channel: MUST send
    # the same value in scriptpubkey."
    if ch.local.upfront_shutdown_script and script != ch.local.upfront_shutdown_script:
        return Refusal(RefusalCode.BAD_SCRIPT, "we committed to an upfront shutdown script")
    if ch.shutdown_sent and script != ch.local_shutdown_script:
        return Refusal(RefusalCode.BAD_SCRIPT, "shutdown already sent with another script")
    return Out(replace(ch, shutdown_requested=True, local_shutdown_script=script))


def on_shutdown(ch: Channel, msg: m.Shutdown) -> Out:
    if ch.state is CS.CLOSINGD_COMPLETE and bytes(msg.scriptpubkey) == ch.remote_shutdown_script:
        return Out(ch)  # a retransmission after reconnection: we already agreed
    if ch.state not in (CS.CHANNELD_AWAITING_LOCKIN, CS.CHANNELD_NORMAL, CS.CHANNELD_SHUTTING_DOWN,
                        CS.CLOSINGD_SIGEXCHANGE):
        raise PeerViolation(ChannelError.warn_and_disconnect(f"shutdown in state {ch.state.value}"))
    spk = bytes(msg.scriptpubkey)
    # BOLT #2: "if the scriptpubkey is not in one of the above forms: SHOULD send a warning."
    if not valid_shutdown_script(spk):
        raise PeerViolation(ChannelError.warn_and_disconnect("shutdown scriptpubkey is not a valid form"))
    # BOLT #2: "... received a non-zero-length shutdown_scriptpubkey in open_channel or accept_channel, and that
    # shutdown_scriptpubkey is not equal to scriptpubkey: MAY send a warning. MUST fail the connection."
    if ch.remote.upfront_shutdown_script and spk != ch.remote.upfront_shutdown_script:
        raise PeerViolation(ChannelError.warn_and_disconnect("shutdown script differs from the upfront one"))
    if ch.remote_shutdown_script is not None and spk != ch.remote_shutdown_script:
        raise PeerViolation(ChannelError.warn_and_disconnect("a second shutdown with another script"))
    new = replace(ch, remote_shutdown_script=spk)
    if new.state in (CS.CHANNELD_NORMAL, CS.CHANNELD_AWAITING_LOCKIN):
        new = set_state(new, CS.CHANNELD_SHUTTING_DOWN)
    out = Out(new)
    out.cause = "remote"
    return out


def _closing_tx(ch: Channel, fee_sat: int, dust_limit_sat: SatInt) -> ClosingTx:
    # fee_sat is closing_signed's fee_satoshis (the negotiation's plain integers): typed here, where it is spent.
    assert ch.remote_shutdown_script is not None
    return build_closing_tx(ch.params, ch.local_shutdown_script, ch.remote_shutdown_script, ch.balance_local_msat,
                            ch.balance_remote_msat, SatInt(fee_sat), dust_limit_sat)


def _negotiation(ch: Channel, env: Env) -> ClosingNegotiation:
    weight = expected_closing_weight(_closing_tx(ch, 0, ch.local.dust_limit_sat).tx)
    opener_sat = msat_to_sat(ch.balance_local_msat if ch.opener is Side.LOCAL else ch.balance_remote_msat)
    cap = max(0, opener_sat - 1)
    ideal = min(cap, max(FEERATE_FLOOR, env.closing_feerate_per_kw) * weight // 1000)
    low = min(ideal, FEERATE_FLOOR * weight // 1000)
    if ch.opener is Side.LOCAL:
        # The opener pays: at most what a unilateral close of the current commitment would cost.
        high = min(cap, max(ideal, commitment_fee_sat(ch.feerate_per_kw, 0, ch.channel_type)))
    else:
        high = cap
    return ClosingNegotiation(our_min_fee_sat=low, our_max_fee_sat=high, our_fee_sat=ideal)


def _closing_signed(ch: Channel, signer: ChannelSigner, fee: int, rng: tuple[int, int]) -> m.ClosingSigned:
    sig = signer.sign_closing(_closing_tx(ch, fee, ch.local.dust_limit_sat))
    return m.ClosingSigned(channel_id=ch.channel_id, fee_satoshis=fee, signature=sig,
                           tlvs=m.ClosingSignedTlvs(fee_range=m.ClosingSignedTlvsFeeRange(
                               min_fee_satoshis=rng[0], max_fee_satoshis=rng[1])))


def progress(out: Out, signer: ChannelSigner, env: Env) -> None:
    ch = out.ch
    if ch.state not in (CS.CHANNELD_AWAITING_LOCKIN, CS.CHANNELD_NORMAL, CS.CHANNELD_SHUTTING_DOWN,
                        CS.CLOSINGD_SIGEXCHANGE) or not ch.can_speak:
        return
    # BOLT #2: "if there are updates pending on the receiving node's commitment transaction: MUST NOT send a
    # shutdown." / "once there are no outstanding updates on the peer, UNLESS it has already sent a shutdown:
    # MUST reply to a shutdown message with a shutdown"
    if (ch.shutdown_requested or ch.remote_shutdown_script is not None) and not ch.shutdown_sent \
            and not has_uncommitted_local_updates(ch):
        ch = replace(ch, shutdown_requested=True, shutdown_sent=True)
        if ch.state in (CS.CHANNELD_NORMAL, CS.CHANNELD_AWAITING_LOCKIN):
            ch = set_state(ch, CS.CHANNELD_SHUTTING_DOWN)
        out.send(m.Shutdown(channel_id=ch.channel_id, scriptpubkey=ch.local_shutdown_script))
    if ch.state is CS.CHANNELD_SHUTTING_DOWN and ch.shutdown_sent and ch.remote_shutdown_script is not None \
            and is_clean(ch) and not has_uncommitted_local_updates(ch):
        ch = set_state(ch, CS.CLOSINGD_SIGEXCHANGE)
    if ch.state is CS.CLOSINGD_SIGEXCHANGE and ch.closing is None:
        try:
            neg = _negotiation(ch, env)
        except ClosingError as e:
            out.ch = ch
            raise PeerViolation(ChannelError.close(f"cannot build a closing transaction: {e}")) from e
        # BOLT #2: "The funding node: after shutdown has been received, AND no HTLCs remain in either commitment
        # transaction: SHOULD send a closing_signed message."
        if ch.opener is Side.LOCAL:
            out.send(_closing_signed(ch, signer, neg.our_fee_sat, (neg.our_min_fee_sat, neg.our_max_fee_sat)))
            neg = replace(neg, last_sent_fee_sat=neg.our_fee_sat)
        ch = replace(ch, closing=neg)
    out.ch = ch


def _finish_close(out: Out, signer: ChannelSigner, ctx: ClosingTx, their_sig: bytes) -> None:
    tx = signer.signed_closing(ctx, their_sig)
    ch = set_state(out.ch, CS.CLOSINGD_COMPLETE)
    out.ch = replace(ch, closing_tx=tx.serialize(), closing=None)
    out.broadcasts.append(tx)
    out.event(MutualCloseAgreed(ch.channel_id, tx.txid(), ctx.fee_sat))


def _resend_agreed(ch: Channel, signer: ChannelSigner, msg: m.ClosingSigned) -> Out:
    """We agreed and broadcast, but the peer never got our last closing_signed (BOLT 2 restarts the
    negotiation on reconnection): answer its proposal of the agreed fee with our signature again."""
    agreed = Transaction.parse(ch.closing_tx)
    fee = ch.funding_sat - sum(o.value for o in agreed.outputs)
    out = Out(ch)
    if msg.fee_satoshis != fee:
        return out
    for dust in {ch.remote.dust_limit_sat, ch.local.dust_limit_sat}:
        try:
            ctx = _closing_tx(ch, fee, dust)
        except ClosingError:
            continue
        if ctx.tx.txid() == agreed.txid():
            out.send(m.ClosingSigned(channel_id=ch.channel_id, fee_satoshis=fee, signature=signer.sign_closing(ctx),
                                     tlvs=m.ClosingSignedTlvs(fee_range=m.ClosingSignedTlvsFeeRange(
                                         min_fee_satoshis=fee, max_fee_satoshis=fee))))
            break
    return out


def on_closing_signed(ch: Channel, signer: ChannelSigner, msg: m.ClosingSigned, env: Env) -> Out:
    if ch.state is CS.CLOSINGD_COMPLETE and ch.closing_tx:
        return _resend_agreed(ch, signer, msg)
    if ch.state is not CS.CLOSINGD_SIGEXCHANGE:
        raise PeerViolation(ChannelError.warn_and_disconnect(f"closing_signed in state {ch.state.value}"))
    neg = ch.closing or _negotiation(ch, env)
    fee = msg.fee_satoshis
    # BOLT #2: "if the signature is not valid for either variant of closing transaction ...: MUST send a
    # warning and close the connection, or send an error and fail the channel."
    ctx = None
    for dust in sorted({ch.remote.dust_limit_sat, ch.local.dust_limit_sat}, reverse=True):
        try:
            candidate = _closing_tx(ch, fee, dust)
            if candidate.verify(ch.params.remote_pubkeys.funding_pubkey, compact_to_der(msg.signature)):
                ctx = candidate
                break
        except (ClosingError, KeyDerivationError):
            continue
    if ctx is None:
        raise PeerViolation(ChannelError.warn_and_disconnect(f"bad closing_signed signature (fee {fee})"))
    # BOLT #2: "if one of the outputs in the closing transaction is below the dust limit for its scriptpubkey:
    # MUST fail the channel"
    if any(o.value < dust_threshold_sat(o.script_pubkey) for o in ctx.tx.outputs):
        raise PeerViolation(ChannelError.close("closing transaction output below the dust limit"))
    out = Out(ch)
    # BOLT #2: "if fee_satoshis is equal to its previously sent fee_satoshis: SHOULD sign and broadcast the final
    # closing transaction."
    if fee == neg.last_sent_fee_sat:
        _finish_close(out, signer, ctx, msg.signature)
        return out
    fr = msg.tlvs.fee_range if msg.tlvs is not None else None
    if fr is not None:
        lo, hi = max(neg.our_min_fee_sat, fr.min_fee_satoshis), min(neg.our_max_fee_sat, fr.max_fee_satoshis)
        if lo > hi:
            # BOLT #2: "if there is no overlap between that and its own fee_range: SHOULD send a warning"
            raise PeerViolation(ChannelError.warn(f"no overlap between fee ranges [{fr.min_fee_satoshis}, "
                                                  f"{fr.max_fee_satoshis}] and [{neg.our_min_fee_sat}, "
                                                  f"{neg.our_max_fee_sat}]"))
        if ch.opener is Side.LOCAL or neg.last_sent_fee_sat is not None:
            # BOLT #2 (funder): "if fee_satoshis is not in the overlap between the sent and received fee_range:
            # MUST fail the channel; otherwise: MUST reply with the same fee_satoshis." (non-funder that already
            # sent: "if fee_satoshis is not the same as the value it sent: MUST fail the channel")
            if not lo <= fee <= hi or ch.opener is not Side.LOCAL:
                raise PeerViolation(ChannelError.close(f"closing fee {fee} outside the agreed range [{lo}, {hi}]"))
            accept = fee
        elif lo <= fee <= hi:
            accept = fee
        else:
            # BOLT #2: "MUST propose a fee_satoshis in the overlap between received and (about-to-be) sent
            # fee_range."
            proposal = min(max(neg.our_fee_sat, lo), hi)
            out.send(_closing_signed(ch, signer, proposal, (lo, hi)))
            out.ch = replace(ch, closing=replace(neg, last_sent_fee_sat=proposal, last_received_fee_sat=fee,
                                                 received_range=(fr.min_fee_satoshis, fr.max_fee_satoshis)))
            return out
    else:
        if neg.our_min_fee_sat <= fee <= neg.our_max_fee_sat:
            accept = fee
        else:
            # BOLT #2: "MUST propose a value "strictly between" the received fee_satoshis and its previously-sent
            # fee_satoshis."
            target = min(max(fee, neg.our_min_fee_sat), neg.our_max_fee_sat)
            prev = neg.last_sent_fee_sat
            if prev is not None and abs(prev - fee) > 1:
                target = (prev + fee) // 2
            out.send(_closing_signed(ch, signer, target, (neg.our_min_fee_sat, neg.our_max_fee_sat)))
            out.ch = replace(ch, closing=replace(neg, last_sent_fee_sat=target, last_received_fee_sat=fee))
            return out
    # BOLT #2: "SHOULD reply with a closing_signed with the same fee_satoshis value if it is different from its
    # previously sent fee_satoshis"
    out.send(m.ClosingSigned(channel_id=ch.channel_id, fee_satoshis=accept, signature=signer.sign_closing(ctx),
                             tlvs=msg.tlvs if fr is not None else m.ClosingSignedTlvs()))
    _finish_close(out, signer, ctx, msg.signature)
    return out
