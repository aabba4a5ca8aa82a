"""Normal operation (BOLT 2): HTLC updates, update_fee, commitment_signed and revoke_and_ack.

Local requests (`offer_htlc`, `fulfill_htlc`, `fail_htlc`, `fail_malformed_htlc`, `update_fee`) return an
`Out` or a `Refusal` (nothing changed). Peer message handlers return an `Out` or raise `PeerViolation`.
`core` turns an `Out` into a `Step` (persist first, then speak).

Commit batching: updates only mark the channel as needing a commitment (`needs_commitment`, and the
`CommitmentNeeded` event); the runtime calls `send_commitment` after its commit delay, so several updates
share one signature round.
"""
from __future__ import annotations

from itertools import repeat
from operator import is_
from typing import Callable

from ampere.ln.channel.actions import (
    AMOUNT_BELOW_MINIMUM,
    PERMANENT_CHANNEL_FAILURE,
    TEMPORARY_CHANNEL_FAILURE,
    ChannelError,
    CommitmentNeeded,
    HtlcFailed,
    HtlcFulfilled,
    IncomingHtlcSettled,
    NewPeerHtlc,
    Refusal,
    RefusalCode,
)
from ampere.ln.channel.commitment import CommitmentError, Side, commitment_fee_sat, htlc_transactions
from ampere.ln.channel.htlcs import (
    FeeUpdate,
    Htlc,
    HtlcState,
    Removal,
    RemovalKind,
    is_final,
    on_recv_commit,
    on_recv_revoke,
    on_send_commit,
    on_send_revoke,
)
from ampere.ln.channel.keys import KeyDerivationError, ecdsa_verify_compact, pubkey_from_secret, secret_index
from ampere.ln.channel.persist import Out, PeerViolation
from ampere.ln.channel.shachain import ShachainError
from ampere.ln.channel.signer import ChannelSigner
from ampere.ln.channel.state import Channel, ChannelState
from ampere.ln.channel.views import (
    View,
    available_msat,
    build_local_commitment,
    build_remote_commitment,
    next_view,
    reserve_msat,
    view,
)
from ampere.ln.channel.scripts import ANCHOR_OUTPUT_SAT
from ampere.ln.channel.values import replace
from ampere.primitives.amount import MsatInt, sat_to_msat
from ampere.primitives.crypto import sha256
from ampere.wire import messages as m

__all__ = [
    "FEERATE_FLOOR", "MAX_ACCEPTED_HTLCS_LIMIT", "CLTV_LIMIT",
    "offer_htlc", "fulfill_htlc", "fail_htlc", "fail_malformed_htlc", "update_fee",
    "needs_commitment", "send_commitment", "has_uncommitted_local_updates",
    "on_update_add_htlc", "on_update_fulfill_htlc", "on_update_fail_htlc", "on_update_fail_malformed_htlc",
    "on_update_fee", "on_commitment_signed", "on_revoke_and_ack", "retransmit_updates", "update_message",
]

FEERATE_FLOOR = 253          # sat per kw: the minimum relay feerate (BOLT 3's 253)
MAX_ACCEPTED_HTLCS_LIMIT = 483
CLTV_LIMIT = 500_000_000     # BOLT #2: "MUST set cltv_expiry less than 500000000"
BADONION = 0x8000
ONION_PACKET_LEN = 1366      # BOLT #2: [1366*byte:onion_routing_packet]

S = HtlcState
_OPERATING = (ChannelState.CHANNELD_NORMAL, ChannelState.CHANNELD_SHUTTING_DOWN)


def _violation(msg: str) -> PeerViolation:
    return PeerViolation(ChannelError.warn_and_disconnect(msg))


def _fatal(msg: str) -> PeerViolation:
    return PeerViolation(ChannelError.close(msg))


# --- "all in" views: every pending add counted, for a sender's conservative checks -------------------

_ADD_TO_IN = {S.SENT_ADD_HTLC: S.RCVD_ADD_ACK_COMMIT, S.SENT_ADD_COMMIT: S.RCVD_ADD_ACK_COMMIT,
              S.RCVD_ADD_REVOCATION: S.RCVD_ADD_ACK_COMMIT, S.RCVD_ADD_HTLC: S.SENT_ADD_ACK_COMMIT,
              S.RCVD_ADD_COMMIT: S.SENT_ADD_ACK_COMMIT, S.SENT_ADD_REVOCATION: S.SENT_ADD_ACK_COMMIT}


def _all_in(state: HtlcState) -> HtlcState:
    return _ADD_TO_IN.get(state, state)


def _max_feerate(ch: Channel) -> int:
    return max([ch.feerate_per_kw, *(f.feerate_per_kw for f in ch.fee_updates)])


def _all_in_views(ch: Channel, feerate: int | None = None) -> list[View]:
    rate = _max_feerate(ch) if feerate is None else feerate
    return [view(ch, owner, _all_in, feerate=rate) for owner in (Side.LOCAL, Side.REMOTE)]


# --- local requests ------------------------------------------------------------------------------

def _refuse(code: RefusalCode, message: str, failure: int | None = TEMPORARY_CHANNEL_FAILURE) -> Refusal:
    return Refusal(code, message, failure)


def offer_htlc(ch: Channel, amount_msat: MsatInt, payment_hash: bytes, cltv_expiry: int, onion: bytes,
               path_key: bytes | None = None) -> Out | Refusal:
    """Offer an HTLC to the peer (the payments/forwarding layer's entry point)."""
    # BOLT #2: "MUST NOT send an update_add_htlc after a shutdown."
    if ch.state in (ChannelState.CHANNELD_SHUTTING_DOWN, ChannelState.CLOSINGD_SIGEXCHANGE) or (
            ch.shutdown_requested or ch.shutdown_sent or ch.remote_shutdown_script is not None):
        return _refuse(RefusalCode.SHUTTING_DOWN, "channel is shutting down", PERMANENT_CHANNEL_FAILURE)
    if ch.state is not ChannelState.CHANNELD_NORMAL or not ch.can_speak:
        return _refuse(RefusalCode.NOT_READY, f"channel is {ch.state.value}"
                       + ("" if ch.can_speak else " and the peer is not connected"))
    if len(payment_hash) != 32 or len(onion) != ONION_PACKET_LEN:
        return _refuse(RefusalCode.BAD_ONION, f"payment_hash must be 32 bytes and the onion {ONION_PACKET_LEN}", None)
    # BOLT #2: "MUST offer amount_msat greater than 0. MUST NOT offer amount_msat below the receiving node's
    # htlc_minimum_msat"
    if amount_msat <= 0:
        return _refuse(RefusalCode.BAD_AMOUNT, "amount must be positive", None)
    if amount_msat < ch.remote.htlc_minimum_msat:
        return _refuse(RefusalCode.AMOUNT_BELOW_MINIMUM,
                       f"{amount_msat} msat is below the peer's htlc_minimum_msat {ch.remote.htlc_minimum_msat}",
                       AMOUNT_BELOW_MINIMUM)
    # BOLT #2: "MUST set cltv_expiry less than 500000000."
    if not 0 <= cltv_expiry < CLTV_LIMIT:
        return _refuse(RefusalCode.BAD_CLTV, f"cltv_expiry {cltv_expiry} is not a block height")
    htlc = Htlc(Side.LOCAL, ch.next_htlc_id_local, amount_msat, payment_hash, cltv_expiry, bytes(onion),
                S.SENT_ADD_HTLC, ch.next_seq, path_key=path_key)
    new = replace(ch, htlcs=(*ch.htlcs, htlc), next_htlc_id_local=ch.next_htlc_id_local + 1,
                  next_seq=ch.next_seq + 1)
    refusal = _check_our_add(new)
    if refusal is not None:
        return refusal
    out = Out(new)
    out.send(m.UpdateAddHtlc(channel_id=ch.channel_id, id=htlc.htlc_id, amount_msat=amount_msat,
                             payment_hash=payment_hash, cltv_expiry=cltv_expiry, onion_routing_packet=htlc.onion,
                             tlvs=m.UpdateAddHtlcTlvs(blinded_path=path_key)))
    out.event(CommitmentNeeded(ch.channel_id))
    return out


def _check_our_add(new: Channel) -> Refusal | None:
    if _clearly_within_limits(new):
        return None
    return _check_our_add_exactly(new)


def _clearly_within_limits(new: Channel) -> bool:
    """Whether every check of _check_our_add_exactly is sure to pass, known without building its five views (they
    were the largest single item of a payer's CPU per payment, issue 18). Bounds that hold in each view: a side's
    balance is at least its settled balance less every HTLC it offered, whatever their state (one not yet in the
    view, failed or unsettled only leaves it more; a fulfil to it, more still); the fee is at most the fee at twice
    the highest feerate of any view (the fee spike buffer's) with every HTLC untrimmed and one more (the buffer's
    extra output), anchors included, since the fee grows with both; and the HTLCs we offered in the peer's next
    commitment are among all those we offered. When the bounds pass, so does each exact check; when they do not,
    the exact checks decide (a channel near its limits)."""
    ours_n, ours_msat, _, theirs_msat = _offered_totals(new)
    if ours_n > new.remote.max_accepted_htlcs or ours_msat > new.remote.max_htlc_value_in_flight_msat:
        return False
    fee = _fee_bound_msat(new, 2 * _max_feerate(new), len(new.htlcs) + 1)
    return (_floor_msat(new, Side.LOCAL, ours_msat, fee) >= 0
            and (new.opener is Side.LOCAL or _floor_msat(new, Side.REMOTE, theirs_msat, fee) >= 0))


def _offered_totals(ch: Channel) -> tuple[int, int, int, int]:
    """(how many HTLCs we offered, their msat, how many the peer offered, theirs), whatever their state."""
    ours_n = ours_msat = theirs_n = theirs_msat = 0
    for h in ch.htlcs:
        if h.offerer is Side.LOCAL:
            ours_n += 1
            ours_msat += h.amount_msat
        else:
            theirs_n += 1
            theirs_msat += h.amount_msat
    return ours_n, ours_msat, theirs_n, theirs_msat


def _floor_msat(ch: Channel, side: Side, offered_msat: int, fee_bound: int) -> int:
    """A lower bound of what `side` has available in any view (its balance there less its reserve and, if it opened
    the channel, the fee): its settled balance less every HTLC it offered (`offered_msat`), its reserve and, if it
    opened the channel, `fee_bound`."""
    balance = ch.balance_local_msat if side is Side.LOCAL else ch.balance_remote_msat
    return balance - offered_msat - reserve_msat(ch, side) - (fee_bound if side is ch.opener else 0)


def _fee_bound_msat(ch: Channel, feerate: int, outputs: int) -> MsatInt:
    """The opener's commitment fee at `feerate` with `outputs` untrimmed HTLC outputs, anchors included: at least the
    fee of any view whose feerate and untrimmed HTLCs are at most these (the fee grows with both)."""
    fee_sat: int = commitment_fee_sat(feerate, outputs, ch.channel_type)
    if ch.channel_type.anchors:
        fee_sat += 2 * ANCHOR_OUTPUT_SAT
    return sat_to_msat(fee_sat)


def _check_our_add_exactly(new: Channel) -> Refusal | None:
    remote_next = next_view(new, Side.REMOTE)
    ours = remote_next.offered(Side.LOCAL)
    # BOLT #2: "if result would be offering more than the remote's max_accepted_htlcs HTLCs, in the remote
    # commitment transaction: MUST NOT add an HTLC."
    if len(ours) > new.remote.max_accepted_htlcs:
        return _refuse(RefusalCode.TOO_MANY_HTLCS, f"the peer accepts at most {new.remote.max_accepted_htlcs} HTLCs")
    # BOLT #2: "if the total value of offered HTLCs would exceed the remote's max_htlc_value_in_flight_msat:
    # MUST NOT add an HTLC."
    if sum(h.amount_msat for h in ours) > new.remote.max_htlc_value_in_flight_msat:
        return _refuse(RefusalCode.MAX_IN_FLIGHT,
                       f"HTLCs in flight would exceed the peer's {new.remote.max_htlc_value_in_flight_msat} msat")
    # BOLT #2 (sender responsible for the fee): "MUST NOT offer amount_msat if, after adding that HTLC to its
    # commitment transaction, it cannot pay the fee for either the local or remote commitment transaction at
    # the current feerate_per_kw while maintaining its channel reserve" (plus the anchors), and SHOULD keep a
    # "fee spike buffer" that "can handle twice the current feerate_per_kw". Not responsible: "SHOULD NOT
    # offer amount_msat if, once the remote node adds that HTLC to its commitment transaction, it cannot pay
    # the fee ... while maintaining its channel reserve."
    all_in = _all_in_views(new)
    views = [remote_next, *all_in]
    for v in views:
        if available_msat(new, v, Side.LOCAL) < 0:
            return _refuse(RefusalCode.CANNOT_AFFORD, "our balance cannot cover this HTLC, the reserve and fees")
        if new.opener is Side.REMOTE and available_msat(new, v, Side.REMOTE) < 0:
            return _refuse(RefusalCode.FEE_PAYER_CANNOT_AFFORD,
                           "the peer could not pay the commitment fee with this HTLC added")
    if new.opener is Side.LOCAL:
        rate = 2 * _max_feerate(new)
        # the same views at twice the feerate (a view's feerate changes nothing else in it)
        for v in all_in:
            if available_msat(new, replace(v, feerate_per_kw=rate), Side.LOCAL, extra_nondust=1) < 0:
                return _refuse(RefusalCode.CANNOT_AFFORD, "this HTLC would leave no fee spike buffer")
    return None


def _their_committed_htlc(ch: Channel, htlc_id: int) -> Htlc | Refusal:
    if ch.state not in _OPERATING:
        return _refuse(RefusalCode.NOT_READY, f"channel is {ch.state.value}", None)
    h = ch.htlc(Side.REMOTE, htlc_id)
    if h is None:
        return _refuse(RefusalCode.UNKNOWN_HTLC, f"no HTLC {htlc_id} from the peer", None)
    # BOLT #2: "until the corresponding HTLC is irrevocably committed in both sides' commitment transactions:
    # MUST NOT send an update_fulfill_htlc, update_fail_htlc, or update_fail_malformed_htlc."
    if h.state is not S.RCVD_ADD_ACK_REVOCATION or h.removal is not None:
        return _refuse(RefusalCode.BAD_HTLC_STATE, f"HTLC {htlc_id} is {h.state.name}", None)
    return h


def _swapped(htlcs: tuple[Htlc, ...], old: Htlc, new: Htlc) -> tuple[Htlc, ...]:
    """`htlcs` with `old` (that very object) replaced by `new`; unchanged if it is not there. Found by identity
    and copied in C (a generator over every HTLC was a share of each fulfil with many in flight)."""
    try:
        i = list(map(is_, htlcs, repeat(old))).index(True)
    except ValueError:
        return htlcs
    return (*htlcs[:i], new, *htlcs[i + 1:])


def _remove(ch: Channel, h: Htlc, removal: Removal, msg: object) -> Out:
    new_h = replace(h, state=S.SENT_REMOVE_HTLC, removal=removal)
    new = replace(ch, htlcs=_swapped(ch.htlcs, h, new_h), next_seq=ch.next_seq + 1)
    out = Out(new)
    if new.can_speak:
        out.send(msg)
    out.event(CommitmentNeeded(ch.channel_id))
    return out


def fulfill_htlc(ch: Channel, htlc_id: int, preimage: bytes) -> Out | Refusal:
    """Settle an HTLC the peer offered. The preimage is persisted before update_fulfill_htlc leaves; if the
    peer is disconnected the fulfill goes out after channel_reestablish."""
    h = _their_committed_htlc(ch, htlc_id)
    if isinstance(h, Refusal):
        return h
    if len(preimage) != 32 or sha256(preimage) != h.payment_hash:
        return _refuse(RefusalCode.BAD_PREIMAGE, "preimage does not match the payment hash", None)
    return _remove(ch, h, Removal(RemovalKind.FULFILL, ch.next_seq, preimage=bytes(preimage)),
                   m.UpdateFulfillHtlc(channel_id=ch.channel_id, id=htlc_id, payment_preimage=bytes(preimage)))


def fail_htlc(ch: Channel, htlc_id: int, reason: bytes) -> Out | Refusal:
    h = _their_committed_htlc(ch, htlc_id)
    if isinstance(h, Refusal):
        return h
    return _remove(ch, h, Removal(RemovalKind.FAIL, ch.next_seq, reason=bytes(reason)),
                   m.UpdateFailHtlc(channel_id=ch.channel_id, id=htlc_id, reason=bytes(reason)))


def fail_malformed_htlc(ch: Channel, htlc_id: int, sha256_of_onion: bytes, failure_code: int) -> Out | Refusal:
    h = _their_committed_htlc(ch, htlc_id)
    if isinstance(h, Refusal):
        return h
    if not failure_code & BADONION or len(sha256_of_onion) != 32:
        return _refuse(RefusalCode.BAD_ONION, "failure_code must have the BADONION bit", None)
    return _remove(ch, h, Removal(RemovalKind.FAIL_MALFORMED, ch.next_seq, sha256_of_onion=bytes(sha256_of_onion),
                                  failure_code=failure_code),
                   m.UpdateFailMalformedHtlc(channel_id=ch.channel_id, id=htlc_id,
                                             sha256_of_onion=bytes(sha256_of_onion), failure_code=failure_code))


def update_fee(ch: Channel, feerate_per_kw: int) -> Out | Refusal:
    """Opener only: move the commitment feerate (BOLT 2 update_fee)."""
    if ch.state not in _OPERATING or not ch.can_speak:
        return _refuse(RefusalCode.NOT_READY, f"channel is {ch.state.value}", None)
    # BOLT #2: "The node not responsible for paying the Bitcoin fee: MUST NOT send update_fee."
    if ch.opener is not Side.LOCAL:
        return _refuse(RefusalCode.NOT_OPENER, "only the opener sends update_fee", None)
    if not FEERATE_FLOOR <= feerate_per_kw <= 0xFFFFFFFF:
        return _refuse(RefusalCode.BAD_FEERATE, f"feerate {feerate_per_kw} below the {FEERATE_FLOOR} floor", None)
    if ch.state is ChannelState.CHANNELD_SHUTTING_DOWN and not ch.htlcs:
        return _refuse(RefusalCode.SHUTTING_DOWN, "no updates once shutdown has cleared the channel", None)
    fu = FeeUpdate(feerate_per_kw, S.SENT_ADD_HTLC, ch.next_seq)
    new = replace(ch, fee_updates=(*ch.fee_updates, fu), next_seq=ch.next_seq + 1)
    for v in (next_view(new, Side.REMOTE), *_all_in_views(new, max(feerate_per_kw, _max_feerate(new)))):
        if available_msat(new, v, Side.LOCAL) < 0:
            return _refuse(RefusalCode.CANNOT_AFFORD, f"we cannot afford feerate {feerate_per_kw}", None)
    out = Out(new)
    out.send(m.UpdateFee(channel_id=ch.channel_id, feerate_per_kw=feerate_per_kw))
    out.event(CommitmentNeeded(ch.channel_id))
    return out


# --- commitment_signed / revoke_and_ack ----------------------------------------------------------

_SEND_COMMIT_FROM = frozenset({S.SENT_ADD_HTLC, S.SENT_REMOVE_HTLC, S.SENT_ADD_REVOCATION, S.SENT_REMOVE_REVOCATION})


def has_changes_for_remote(ch: Channel) -> bool:
    return any(h.state in _SEND_COMMIT_FROM for h in ch.htlcs) or any(
        f.state in _SEND_COMMIT_FROM for f in ch.fee_updates)


def has_uncommitted_local_updates(ch: Channel) -> bool:
    """Updates we sent that no commitment_signed of ours covers yet."""
    return any(h.state in (S.SENT_ADD_HTLC, S.SENT_REMOVE_HTLC) for h in ch.htlcs) or any(
        f.state is S.SENT_ADD_HTLC for f in ch.fee_updates)


def needs_commitment(ch: Channel) -> bool:
    """True when send_commitment would sign something now."""
    return (ch.state in _OPERATING and ch.can_speak and not ch.awaiting_revoke
            and ch.remote_next_point is not None and has_changes_for_remote(ch))


def _map_states(ch: Channel, f: Callable[[HtlcState], HtlcState], **changes: object) -> Channel:
    """The channel with `f` applied to every update's state, and `changes` to its fields (one copy)."""
    htlcs = ch.htlcs
    mapped = None
    for i, h in enumerate(htlcs):
        st = f(h.state)
        if st is not h.state:
            if mapped is None:
                mapped = list(htlcs)
            mapped[i] = replace(h, state=st)
    # Unchanged tuples stay the same objects (the record's HTLC list is then reused by identity: state._to_json),
    # and so do unchanged HTLCs (the record's per-HTLC cache and persist.diff see them as unchanged at no cost).
    if mapped is not None:
        changes["htlcs"] = tuple(mapped)
    if ch.fee_updates:
        fees = tuple(u if f(u.state) is u.state else replace(u, state=f(u.state)) for u in ch.fee_updates)
        if not _same(fees, ch.fee_updates):
            changes["fee_updates"] = fees
    return replace(ch, **changes) if changes else ch


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def commitment_signed_message(ch: Channel, signer: ChannelSigner) -> m.CommitmentSigned:
    """Sign the peer's latest commitment (number remote_ctn) as it stands: used to send and to retransmit."""
    v = view(ch, Side.REMOTE)
    ctx = build_remote_commitment(ch, ch.remote_ctn, ch.remote_point, v, signer)
    return m.CommitmentSigned(channel_id=ch.channel_id, signature=signer.sign_commitment(ctx),
                              htlc_signature=signer.sign_htlc_txs(ctx),
                              tlvs=m.CommitmentSignedTlvs(funding_txid=ch.params.funding_outpoint.txid))


def send_commitment(ch: Channel, signer: ChannelSigner) -> Out:
    """Sign the peer's next commitment with every update so far (a no-op Out when nothing is to sign)."""
    if not needs_commitment(ch):
        return Out(ch)
    # BOLT #2: the peer's next point arrived with channel_ready or its last revoke_and_ack.
    assert ch.remote_next_point is not None, "commitment before the peer's next per-commitment point"
    new = _map_states(ch, on_send_commit, remote_prev_point=ch.remote_point, remote_point=ch.remote_next_point,
                      remote_next_point=None, remote_ctn=ch.remote_ctn + 1, awaiting_revoke=True,
                      last_sent_revoke=False)
    out = Out(new)
    out.send(commitment_signed_message(new, signer))
    return out


def on_commitment_signed(ch: Channel, signer: ChannelSigner, msg: m.CommitmentSigned) -> Out:
    if ch.state not in _OPERATING:
        raise _violation(f"commitment_signed in state {ch.state.value}")
    new = _map_states(ch, on_recv_commit)
    number = ch.local_ctn + 1
    v = view(new, Side.LOCAL)
    try:
        ctx = build_local_commitment(new, number, signer.commitment_point(number), v, signer)
    except CommitmentError as e:
        raise _violation(f"commitment_signed for an impossible commitment: {e}") from e
    # BOLT #2: "if signature is not valid for its local commitment transaction OR non-compliant with LOW-S-
    # standard rule: MUST send a warning and close the connection, or send an error and fail the channel."
    # (libsecp256k1 only verifies low-S signatures.)
    if not ecdsa_verify_compact(ch.params.remote_pubkeys.funding_pubkey, msg.signature, ctx.sighash()):
        raise _violation(f"bad commitment signature for commitment {number}")
    htxs = htlc_transactions(ctx)
    # BOLT #2: "if num_htlcs is not equal to the number of HTLC outputs in the local commitment transaction"
    if len(msg.htlc_signature) != len(htxs):
        raise _violation(f"{len(msg.htlc_signature)} HTLC signatures for {len(htxs)} HTLC outputs")
    for htx, sig in zip(htxs, msg.htlc_signature):
        if not ecdsa_verify_compact(ctx.keys.remote_htlc_pubkey, sig, htx.sighash(htx.counterparty_sighash_type)):
            raise _violation(f"bad HTLC signature for HTLC {htx.htlc_id}")
    # BOLT #2: "Otherwise: MUST respond with a revoke_and_ack message."
    new = _map_states(new, on_send_revoke, local_ctn=number, local_commit_sig=bytes(msg.signature),
                      local_htlc_sigs=tuple(bytes(s) for s in msg.htlc_signature), last_sent_revoke=True)
    out = Out(new)
    out.send(revoke_and_ack_message(new, signer))
    _settle(out)
    if has_changes_for_remote(out.ch):
        out.event(CommitmentNeeded(ch.channel_id))
    return out


def revoke_and_ack_message(ch: Channel, signer: ChannelSigner) -> m.RevokeAndAck:
    """Our RAA revoking commitment local_ctn - 1. BOLT #2: "MUST set per_commitment_secret to the secret used to
    generate keys for the previous commitment transaction. MUST set next_per_commitment_point to the values for
    its next commitment transaction." """
    return m.RevokeAndAck(channel_id=ch.channel_id, per_commitment_secret=signer.commitment_secret(ch.local_ctn - 1),
                          next_per_commitment_point=signer.commitment_point(ch.local_ctn + 1))


def on_revoke_and_ack(ch: Channel, msg: m.RevokeAndAck) -> Out:
    if ch.state not in _OPERATING or not ch.awaiting_revoke or ch.remote_prev_point is None:
        raise _violation("unexpected revoke_and_ack")
    # BOLT #2: "if per_commitment_secret is not a valid secret key or does not generate the previous
    # per_commitment_point: MUST send an error and fail the channel."
    try:
        point = pubkey_from_secret(msg.per_commitment_secret)
    except KeyDerivationError:
        raise _fatal("revoke_and_ack: per_commitment_secret is not a valid secret") from None
    if point != ch.remote_prev_point:
        raise _fatal(f"revoke_and_ack: secret does not match commitment {ch.remote_ctn - 1}")
    try:
        secrets = ch.remote_secrets.insert(secret_index(ch.remote_ctn - 1), msg.per_commitment_secret)
    except ShachainError as e:
        # BOLT #2: "if the per_commitment_secret was not generated by the protocol in BOLT #3: MAY ... fail"
        raise _fatal(f"revoke_and_ack: {e}") from e
    new = _map_states(ch, on_recv_revoke, remote_secrets=secrets,
                      remote_next_point=bytes(msg.next_per_commitment_point), remote_prev_point=None,
                      awaiting_revoke=False)
    out = Out(new)
    # _map_states maps the HTLCs one to one, in order: pair each with what it was (not a search per HTLC).
    for old, h in zip(ch.htlcs, new.htlcs):
        if h.state is S.RCVD_ADD_ACK_REVOCATION and old.state is not h.state:
            out.event(NewPeerHtlc(ch.channel_id, h.htlc_id, h.amount_msat, h.payment_hash, h.cltv_expiry,
                                  h.onion, h.path_key))
    _settle(out)
    if has_changes_for_remote(out.ch):
        out.event(CommitmentNeeded(ch.channel_id))
    return out


_FINAL_FEE = frozenset({S.SENT_ADD_ACK_REVOCATION, S.RCVD_ADD_ACK_REVOCATION})


def _settle(out: Out) -> None:
    """Fold HTLCs and fee updates that reached their final state into the settled balances and feerate."""
    ch = out.ch
    if not any(is_final(h.state) for h in ch.htlcs) and not any(f.state in _FINAL_FEE for f in ch.fee_updates):
        return  # nothing settled (most steps): the channel stays as it is
    bal: dict[Side, int] = {Side.LOCAL: ch.balance_local_msat, Side.REMOTE: ch.balance_remote_msat}
    keep = []
    for h in ch.htlcs:
        if not is_final(h.state):
            keep.append(h)
            continue
        assert h.removal is not None
        fulfilled = h.removal.kind is RemovalKind.FULFILL
        if fulfilled:
            bal[h.offerer] -= h.amount_msat
            bal[h.offerer.other()] += h.amount_msat
        if h.offerer is Side.LOCAL:
            if not fulfilled:
                out.event(HtlcFailed(ch.channel_id, h.htlc_id, h.removal.reason, h.removal.failure_code,
                                     h.removal.sha256_of_onion))
        else:
            out.event(IncomingHtlcSettled(ch.channel_id, h.htlc_id, fulfilled))
    rate, fees = ch.feerate_per_kw, list(ch.fee_updates)
    for i in range(len(fees) - 1, -1, -1):
        if fees[i].state in _FINAL_FEE:
            rate, fees = fees[i].feerate_per_kw, fees[i + 1:]
            break
    out.ch = replace(ch, htlcs=tuple(keep), balance_local_msat=MsatInt(bal[Side.LOCAL]),
                     balance_remote_msat=MsatInt(bal[Side.REMOTE]), feerate_per_kw=rate, fee_updates=tuple(fees))


# --- the peer's updates --------------------------------------------------------------------------

def on_update_add_htlc(ch: Channel, msg: m.UpdateAddHtlc) -> Out:
    if ch.state is not ChannelState.CHANNELD_NORMAL and not (
            ch.state is ChannelState.CHANNELD_SHUTTING_DOWN and ch.remote_shutdown_script is None):
        raise _violation(f"update_add_htlc in state {ch.state.value}")
    # BOLT #2: "MUST NOT send an update_add_htlc after a shutdown."
    if ch.remote_shutdown_script is not None:
        raise _violation("update_add_htlc after shutdown")
    if msg.id < ch.next_htlc_id_remote:
        old = ch.htlc(Side.REMOTE, msg.id)
        # BOLT #2: "if the sender did not previously acknowledge the commitment of that HTLC: MUST ignore a
        # repeated id value after a reconnection."
        if old is not None and (old.amount_msat, old.payment_hash) == (msg.amount_msat, msg.payment_hash):
            return Out(ch)
        raise _violation(f"update_add_htlc id {msg.id} reused (expected {ch.next_htlc_id_remote})")
    if msg.id != ch.next_htlc_id_remote:
        raise _violation(f"update_add_htlc id {msg.id}, expected {ch.next_htlc_id_remote}")
    # BOLT #2: "receiving an amount_msat equal to 0, OR less than its own htlc_minimum_msat: SHOULD send a
    # warning and close the connection, or send an error and fail the channel."
    if msg.amount_msat == 0 or msg.amount_msat < ch.local.htlc_minimum_msat:
        raise _violation(f"HTLC of {msg.amount_msat} msat is below our minimum {ch.local.htlc_minimum_msat}")
    # BOLT #2: "if sending node sets cltv_expiry to greater or equal to 500000000: SHOULD send a warning ..."
    if msg.cltv_expiry >= CLTV_LIMIT:
        raise _violation(f"cltv_expiry {msg.cltv_expiry} is not a block height")
    path_key = msg.tlvs.blinded_path if msg.tlvs is not None else None
    htlc = Htlc(Side.REMOTE, msg.id, MsatInt(msg.amount_msat), bytes(msg.payment_hash), msg.cltv_expiry,
                bytes(msg.onion_routing_packet), S.RCVD_ADD_HTLC, 0, path_key=path_key)
    new = replace(ch, htlcs=(*ch.htlcs, htlc), next_htlc_id_remote=msg.id + 1)
    if not _clearly_within_our_limits(new):
        problem = _their_add_problem(new)
        if problem is not None:
            raise _violation(problem)
    return Out(new)


def _clearly_within_our_limits(new: Channel) -> bool:
    """Whether every check of _their_add_problem is sure to pass (a peer's HTLC far from our limits), from the
    bounds of _clearly_within_limits seen from the other side: the peer's balance in our next commitment is at least
    its settled balance less every HTLC it offered, the fee at most the fee at the highest feerate with every HTLC
    untrimmed, and the HTLCs it offered in that commitment among all those it offered."""
    _, _, theirs_n, theirs_msat = _offered_totals(new)
    if theirs_n > new.local.max_accepted_htlcs or theirs_msat > new.local.max_htlc_value_in_flight_msat:
        return False
    return _floor_msat(new, Side.REMOTE, theirs_msat, _fee_bound_msat(new, _max_feerate(new), len(new.htlcs))) >= 0


def _their_add_problem(new: Channel) -> str | None:
    """What is wrong with the peer's update_add_htlc just added to `new`, checked on our next commitment; None if
    nothing."""
    v = next_view(new, Side.LOCAL)
    theirs = v.offered(Side.REMOTE)
    # BOLT #2: "if a sending node adds more than receiver max_accepted_htlcs HTLCs to its local commitment
    # transaction, OR adds more than receiver max_htlc_value_in_flight_msat worth of offered HTLCs"
    if len(theirs) > new.local.max_accepted_htlcs:
        return f"more than our max_accepted_htlcs {new.local.max_accepted_htlcs}"
    if sum(h.amount_msat for h in theirs) > new.local.max_htlc_value_in_flight_msat:
        return f"more than our max_htlc_value_in_flight_msat {new.local.max_htlc_value_in_flight_msat}"
    # BOLT #2: "receiving an amount_msat that the sending node cannot afford at the current feerate_per_kw
    # (while maintaining its channel reserve and any to_local_anchor and to_remote_anchor costs)"
    if available_msat(new, v, Side.REMOTE) < 0:
        return "the peer cannot afford this HTLC with its reserve and fees"
    return None


def _our_committed_htlc(ch: Channel, htlc_id: int, what: str) -> Htlc:
    if ch.state not in _OPERATING:
        raise _violation(f"{what} in state {ch.state.value}")
    h = ch.htlc(Side.LOCAL, htlc_id)
    # BOLT #2: "if the id does not correspond to an HTLC in its current commitment transaction: MUST send a
    # warning and close the connection, or send an error and fail the channel."
    if h is None or h.state is not S.SENT_ADD_ACK_REVOCATION:
        raise _violation(f"{what} for HTLC {htlc_id}, which is not committed"
                         + ("" if h is None else f" ({h.state.name})"))
    return h


def _replace_htlc(ch: Channel, old: Htlc, new: Htlc) -> Channel:
    return replace(ch, htlcs=_swapped(ch.htlcs, old, new))


def on_update_fulfill_htlc(ch: Channel, msg: m.UpdateFulfillHtlc) -> Out:
    h = _our_committed_htlc(ch, msg.id, "update_fulfill_htlc")
    # BOLT #2: "if the payment_preimage value in update_fulfill_htlc doesn't SHA256 hash to the corresponding
    # HTLC payment_hash: MUST send a warning and close the connection, or send an error and fail the channel."
    if sha256(msg.payment_preimage) != h.payment_hash:
        raise _violation(f"update_fulfill_htlc {msg.id}: preimage does not match")
    new_h = replace(h, state=S.RCVD_REMOVE_HTLC, preimage_reported=True,
                    removal=Removal(RemovalKind.FULFILL, 0, preimage=bytes(msg.payment_preimage)))
    out = Out(_replace_htlc(ch, h, new_h))
    if not h.preimage_reported:
        out.event(HtlcFulfilled(ch.channel_id, h.htlc_id, bytes(msg.payment_preimage)))
    return out


def _fail_allowed(h: Htlc, what: str) -> None:
    if h.removal is not None and h.removal.kind is RemovalKind.FULFILL:
        raise _violation(f"{what} for HTLC {h.htlc_id}, which the peer already fulfilled")


def on_update_fail_htlc(ch: Channel, msg: m.UpdateFailHtlc) -> Out:
    h = _our_committed_htlc(ch, msg.id, "update_fail_htlc")
    _fail_allowed(h, "update_fail_htlc")
    new_h = replace(h, state=S.RCVD_REMOVE_HTLC, removal=Removal(RemovalKind.FAIL, 0, reason=bytes(msg.reason)))
    return Out(_replace_htlc(ch, h, new_h))


def on_update_fail_malformed_htlc(ch: Channel, msg: m.UpdateFailMalformedHtlc) -> Out:
    h = _our_committed_htlc(ch, msg.id, "update_fail_malformed_htlc")
    _fail_allowed(h, "update_fail_malformed_htlc")
    # BOLT #2: "if the BADONION bit in failure_code is not set for update_fail_malformed_htlc: MUST send a
    # warning and close the connection, or send an error and fail the channel."
    if not msg.failure_code & BADONION:
        raise _violation(f"update_fail_malformed_htlc {msg.id} without the BADONION bit")
    new_h = replace(h, state=S.RCVD_REMOVE_HTLC,
                    removal=Removal(RemovalKind.FAIL_MALFORMED, 0, sha256_of_onion=bytes(msg.sha256_of_onion),
                                    failure_code=msg.failure_code))
    return Out(_replace_htlc(ch, h, new_h))


def on_update_fee(ch: Channel, msg: m.UpdateFee, min_feerate: int, max_feerate: int) -> Out:
    if ch.state not in _OPERATING:
        raise _violation(f"update_fee in state {ch.state.value}")
    # BOLT #2: "if the sender is not responsible for paying the Bitcoin fee: MUST send a warning and close the
    # connection, or send an error and fail the channel."
    if ch.opener is not Side.REMOTE:
        raise _violation("update_fee from the node that does not pay the fee")
    # BOLT #2: "if the update_fee is too low for timely processing, OR is unreasonably large: MUST send a
    # warning and close the connection, or send an error and fail the channel."
    # option_anchors: the opener may keep the commitment low (it is CPFP'd through its anchors when it must
    # confirm): only the relay floor binds from below.
    low = FEERATE_FLOOR if ch.params.channel_type.anchors else max(min_feerate, FEERATE_FLOOR)
    if not low <= msg.feerate_per_kw <= max_feerate:
        raise _violation(f"update_fee {msg.feerate_per_kw} outside [{low}, {max_feerate}]")
    new = replace(ch, fee_updates=(*ch.fee_updates, FeeUpdate(msg.feerate_per_kw, S.RCVD_ADD_HTLC, 0)))
    # BOLT #2: "if the sender cannot afford the new fee rate on the receiving node's current commitment
    # transaction: SHOULD send a warning and close the connection, or send an error and fail the channel."
    if available_msat(new, next_view(new, Side.LOCAL), Side.REMOTE) < 0:
        raise _violation(f"the peer cannot afford feerate {msg.feerate_per_kw}")
    return Out(new)


# --- retransmission ------------------------------------------------------------------------------

def update_message(ch: Channel, item: Htlc | FeeUpdate) -> object:
    """The update message we sent for one of our updates (to retransmit it identically)."""
    if isinstance(item, FeeUpdate):
        return m.UpdateFee(channel_id=ch.channel_id, feerate_per_kw=item.feerate_per_kw)
    if item.offerer is Side.LOCAL:
        return m.UpdateAddHtlc(channel_id=ch.channel_id, id=item.htlc_id, amount_msat=item.amount_msat,
                               payment_hash=item.payment_hash, cltv_expiry=item.cltv_expiry,
                               onion_routing_packet=item.onion, tlvs=m.UpdateAddHtlcTlvs(blinded_path=item.path_key))
    r = item.removal
    assert r is not None
    if r.kind is RemovalKind.FULFILL:
        return m.UpdateFulfillHtlc(channel_id=ch.channel_id, id=item.htlc_id, payment_preimage=r.preimage)
    if r.kind is RemovalKind.FAIL:
        return m.UpdateFailHtlc(channel_id=ch.channel_id, id=item.htlc_id, reason=r.reason)
    return m.UpdateFailMalformedHtlc(channel_id=ch.channel_id, id=item.htlc_id, sha256_of_onion=r.sha256_of_onion,
                                     failure_code=r.failure_code)


def retransmit_updates(ch: Channel, states: frozenset[HtlcState]) -> list[object]:
    """Our updates whose state is in `states`, as messages in the order first sent."""
    items: list[tuple[int, Htlc | FeeUpdate]] = []
    for h in ch.htlcs:
        if h.state in states:
            if h.offerer is Side.LOCAL and h.state < S.RCVD_REMOVE_HTLC:
                items.append((h.add_seq, h))
            elif h.offerer is Side.REMOTE and h.removal is not None:
                items.append((h.removal.seq, h))
    items += [(f.seq, f) for f in ch.fee_updates if f.state in states]
    items.sort(key=lambda x: x[0])
    return [update_message(ch, it) for _, it in items]
