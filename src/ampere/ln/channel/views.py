"""What a commitment contains: balances, HTLCs and feerate, for either side, latest or next.

A `View` is the content of one commitment computed from the channel's settled balances and the state of each
update. The "next" commitment of a side is what the next commitment_signed for it would cover: the state
transition of that event applied first (`on_send_commit` for the peer's, `on_recv_commit` for ours).

The BOLT 2 limits are checked against views (see normal.py): a sender checks its "next remote" view and a
receiver its "next local" view, which are the same set of updates (messages are delivered in order), so the
two nodes' checks agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ampere.ln.channel.commitment import (
    CommitmentTx,
    HtlcSpec,
    Side,
    build_commitment_tx,
    commitment_fee_sat,
)
from ampere.ln.channel.htlc_tx import htlc_success_fee_sat, htlc_timeout_fee_sat
from ampere.ln.channel.htlcs import Htlc, HtlcState, RemovalKind, Status, on_recv_commit, on_send_commit, status_table
from ampere.ln.channel.keys import OwnKeys
from ampere.ln.channel.scripts import ANCHOR_OUTPUT_SAT
from ampere.ln.channel.state import Channel
from ampere.ln.channel.values import ByIdentity, PrefixMemo, make
from ampere.primitives.amount import MsatInt, sat_to_msat

__all__ = ["View", "view", "next_view", "commitment_fee_msat", "build_local_commitment",
           "build_remote_commitment", "spendable_msat"]

Transition = Callable[[HtlcState], HtlcState]
LOCAL = Side.LOCAL
PENDING, IN = Status.PENDING, Status.IN


@dataclass(frozen=True)
class View:
    owner: Side
    feerate_per_kw: int
    local_msat: MsatInt   # our balance, HTLCs excluded, before fees
    remote_msat: MsatInt
    htlcs: tuple[HtlcSpec, ...]

    def balance(self, side: Side) -> MsatInt:
        return self.local_msat if side is Side.LOCAL else self.remote_msat

    def offered(self, side: Side) -> list[HtlcSpec]:
        return [h for h in self.htlcs if h.offerer is side]


def _spec_of(h: Htlc) -> HtlcSpec:
    return make(HtlcSpec, htlc_id=h.htlc_id, offerer=h.offerer, amount_msat=h.amount_msat,
                payment_hash=h.payment_hash, cltv_expiry=h.cltv_expiry)


# An HTLC's spec is fixed by its update_add_htlc; the same Htlc objects come back in every view of every step
# (several views per update: see normal._check_our_add), so keep each one's spec by identity.
_spec = ByIdentity(_spec_of, 4096)


# The HTLC part of the last view computed per (channel, owner, transition): (local delta, remote delta, specs).
# With many HTLCs in flight a channel's next step usually appends one HTLC to the tuple of the previous one (a
# burst of update_add_htlc, each checked against three views: normal._check_our_add), and the view of the longer
# tuple is that of its prefix plus the new HTLCs: O(new HTLCs) instead of O(all HTLCs) per add. An HTLC's share of
# a view depends only on its own fields, the owner and the transition, as PrefixMemo requires.
_MEMO = PrefixMemo(4096)


def _htlc_part(ch: Channel, owner: Side, transition: Transition | None) -> tuple[int, int, tuple[HtlcSpec, ...]]:
    """The HTLCs' share of `owner`'s commitment: (change to our balance, change to theirs, the HTLCs in it)."""
    htlcs = ch.htlcs
    key = (ch.channel_id, owner, transition)
    start, saved = _MEMO.resume(key, htlcs)
    if saved is not None:
        if start == len(htlcs):
            return saved
        local, remote, done = saved
        specs = list(done)
    else:
        local, remote, specs = 0, 0, []
    table = status_table(owner)
    for i in range(start, len(htlcs)):
        h = htlcs[i]
        s = table[transition(h.state) if transition else h.state]
        if s is PENDING:
            continue
        if s is IN:
            specs.append(_spec(h))
            if h.offerer is LOCAL:
                local -= h.amount_msat
            else:
                remote -= h.amount_msat
        elif h.removal is not None and h.removal.kind is RemovalKind.FULFILL:
            # fulfilled: the amount went from the offerer to the other side; failed: it went back (no change)
            if h.offerer is LOCAL:
                local -= h.amount_msat
                remote += h.amount_msat
            else:
                remote -= h.amount_msat
                local += h.amount_msat
    part = (local, remote, tuple(specs))
    _MEMO.save(key, htlcs, part)
    return part


def view(ch: Channel, owner: Side, transition: Transition | None = None, feerate: int | None = None) -> View:
    """The commitment held by `owner`, after applying `transition` to every update's state (at `feerate` if given:
    BOLT 2's "all in" checks)."""
    # Run for every update and commitment (several views per update_add_htlc): the status table of `owner` is
    # looked up by the state's value, and the balances are two ints.
    d_local, d_remote, specs = _htlc_part(ch, owner, transition)
    table = status_table(owner)
    rate = ch.feerate_per_kw
    for f in ch.fee_updates:
        st = transition(f.state) if transition else f.state
        if table[st] is IN:
            rate = f.feerate_per_kw
    if feerate is not None:
        rate = feerate
    return View(owner, rate, MsatInt(ch.balance_local_msat + d_local), MsatInt(ch.balance_remote_msat + d_remote),
                specs)


def next_view(ch: Channel, owner: Side) -> View:
    """What the next commitment_signed for `owner`'s commitment would cover."""
    return view(ch, owner, on_send_commit if owner is Side.REMOTE else on_recv_commit)


def untrimmed_count(ch: Channel, v: View, extra_nondust: int = 0) -> int:
    # is_htlc_trimmed for each HTLC, with its two thresholds computed once: "amount minus the HTLC-timeout
    # (offered by the owner) or HTLC-success (received) fee less than dust_limit_satoshis" is, in whole msat,
    # amount_msat < (dust_limit + fee) * 1000 (the amount rounds down to whole satoshis first).
    dust = ch.params.dust_limit_sat(v.owner)
    ctype, rate, owner = ch.channel_type, v.feerate_per_kw, v.owner
    offered_min = sat_to_msat(dust + htlc_timeout_fee_sat(rate, ctype))
    received_min = sat_to_msat(dust + htlc_success_fee_sat(rate, ctype))
    n = 0
    for h in v.htlcs:
        if h.amount_msat >= (offered_min if h.offerer is owner else received_min):
            n += 1
    return n + extra_nondust


def commitment_fee_msat(ch: Channel, v: View, extra_nondust: int = 0, feerate: int | None = None) -> MsatInt:
    """What the opener pays for this commitment: the base fee and, with anchors, the two anchors.

    BOLT #3: "Subtract this base fee from the funder ... If option_anchors applies ..., also subtract two times
    the fixed anchor size of 330 sats from the funder"."""
    rate = v.feerate_per_kw if feerate is None else feerate
    fee: int = commitment_fee_sat(rate, untrimmed_count(ch, v, extra_nondust), ch.channel_type)
    if ch.channel_type.anchors:
        fee += 2 * ANCHOR_OUTPUT_SAT
    return sat_to_msat(fee)


def reserve_msat(ch: Channel, side: Side) -> MsatInt:
    """The reserve `side` must keep: set by the OTHER side's channel_reserve_satoshis."""
    return sat_to_msat((ch.remote if side is Side.LOCAL else ch.local).channel_reserve_sat)


def available_msat(ch: Channel, v: View, side: Side, extra_nondust: int = 0, feerate: int | None = None) -> MsatInt:
    """`side`'s balance in the view minus its reserve and (if it is the opener) the commitment fee."""
    avail = v.balance(side) - reserve_msat(ch, side)
    if side is ch.opener:
        avail -= commitment_fee_msat(ch, v, extra_nondust, feerate)
    return MsatInt(avail)


def spendable_msat(ch: Channel) -> MsatInt:
    """About how much we could offer right now (for listpeerchannels' spendable_msat); 0 if nothing."""
    v = next_view(ch, Side.REMOTE)
    extra = 1 if ch.opener is Side.LOCAL else 0
    return MsatInt(max(0, available_msat(ch, v, Side.LOCAL, extra)))


def build_local_commitment(ch: Channel, number: int, point: bytes, v: View,
                           own: OwnKeys | None = None) -> CommitmentTx:
    return build_commitment_tx(ch.params, Side.LOCAL, number, point, v.feerate_per_kw, v.local_msat,
                               v.remote_msat, v.htlcs, own)


def build_remote_commitment(ch: Channel, number: int, point: bytes, v: View,
                            own: OwnKeys | None = None) -> CommitmentTx:
    return build_commitment_tx(ch.params, Side.REMOTE, number, point, v.feerate_per_kw, v.local_msat,
                               v.remote_msat, v.htlcs, own)
