"""The offer checks' shortcut (normal._clearly_within_limits, issue 18): whenever it lets an HTLC through without
building the views, the exact BOLT 2 checks (normal._check_our_add_exactly) let it through too -- over random
channels of both kinds, opened by either side, with random HTLCs in every state, removals, feerates and pending
update_fee, many of them near the reserve, fee and HTLC limits so that both answers occur, and a third of them
built to sit within 1,000 sat of the shortcut's own bound (where a bound that forgot a term would show)."""

from __future__ import annotations

import random
from dataclasses import replace

from ampere.ln.channel import normal
from ampere.ln.channel.commitment import ChannelType, Side, commitment_fee_sat
from ampere.ln.channel.htlcs import FeeUpdate, Htlc, HtlcState, Removal, RemovalKind
from ampere.ln.channel.scripts import ANCHOR_OUTPUT_SAT
from ampere.ln.channel.views import reserve_msat
from ampere.primitives.amount import MsatInt
from ampere.testing.channel_pair import Pair

OURS = [s for s in HtlcState if s < HtlcState.RCVD_ADD_HTLC]     # states of an HTLC we offered
THEIRS = [s for s in HtlcState if s >= HtlcState.RCVD_ADD_HTLC]  # states of one they offered
REMOVED = {HtlcState.RCVD_REMOVE_HTLC, HtlcState.RCVD_REMOVE_COMMIT, HtlcState.SENT_REMOVE_REVOCATION,
           HtlcState.SENT_REMOVE_ACK_COMMIT, HtlcState.RCVD_REMOVE_ACK_REVOCATION, HtlcState.SENT_REMOVE_HTLC,
           HtlcState.SENT_REMOVE_COMMIT, HtlcState.RCVD_REMOVE_REVOCATION, HtlcState.RCVD_REMOVE_ACK_COMMIT,
           HtlcState.SENT_REMOVE_ACK_REVOCATION}


def _random_channel(rng: random.Random, base) -> object:
    capacity = base.funding_sat * 1000
    htlcs = []
    for i in range(rng.randrange(0, 14)):
        offerer = rng.choice((Side.LOCAL, Side.REMOTE))
        state = rng.choice(OURS if offerer is Side.LOCAL else THEIRS)
        removal = None
        if state in REMOVED:
            removal = Removal(rng.choice(list(RemovalKind)), i, preimage=b"\x01" * 32)
        amount = rng.choice((1_000, 354_000, 600_000, 5_000_000, rng.randrange(1, capacity // 10)))
        htlcs.append(Htlc(offerer, i, MsatInt(amount), b"\x02" * 32, 700, bytes(1366), state, i, removal))
    # Balances from nearly all on one side to nearly all on the other, the HTLCs' amounts taken out of them.
    local = rng.randrange(0, capacity)
    fees = tuple(FeeUpdate(rng.choice((253, 2_500, 20_000, 100_000)), rng.choice(OURS[:5] + THEIRS[:5]), 100 + k)
                 for k in range(rng.choice((0, 0, 1, 2))))
    remote_cfg = replace(base.remote, max_accepted_htlcs=rng.choice((3, 10, 483)),
                         max_htlc_value_in_flight_msat=rng.choice((20_000_000, capacity)))
    local_cfg = replace(base.local, max_accepted_htlcs=rng.choice((3, 10, 483)),
                        max_htlc_value_in_flight_msat=rng.choice((20_000_000, capacity)))
    return replace(base, htlcs=tuple(htlcs), balance_local_msat=MsatInt(local),
                   balance_remote_msat=MsatInt(capacity - local), feerate_per_kw=rng.choice((253, 2_500, 15_000, 60_000)),
                   fee_updates=fees, remote=remote_cfg, local=local_cfg)


def _fee_msat(ch, feerate: int, outputs: int) -> int:
    """BOLT 3's commitment fee with `outputs` untrimmed HTLC outputs, plus the two anchors on an anchor channel."""
    fee_sat = commitment_fee_sat(feerate, outputs, ch.channel_type)
    return 1000 * (fee_sat + (2 * ANCHOR_OUTPUT_SAT if ch.channel_type.anchors else 0))


def _tight_channel(rng: random.Random, base) -> object:
    """A channel where the shortcut's bounds are reached exactly: every HTLC on the balance's side, committed and
    above the dust limit, no update_fee pending, and that side's balance within 1,000 sat of the bound."""
    ours = base.opener
    state = HtlcState.SENT_ADD_ACK_REVOCATION if ours is Side.LOCAL else HtlcState.RCVD_ADD_ACK_REVOCATION
    htlcs = tuple(Htlc(ours, i, MsatInt(rng.choice((5_000_000, 20_000_000))), b"\x02" * 32, 700, bytes(1366), state, i)
                  for i in range(rng.randrange(0, 6)))
    rate = rng.choice((253, 2_500, 15_000))
    ch = replace(base, htlcs=htlcs, feerate_per_kw=rate, fee_updates=(),
                 remote=replace(base.remote, max_accepted_htlcs=483, max_htlc_value_in_flight_msat=10**12))
    bound = sum(h.amount_msat for h in htlcs) + _fee_msat(ch, 2 * rate, len(htlcs) + 1) + reserve_msat(ch, ours)
    balance = bound + rng.randrange(-1_000_000, 1_000_000)
    capacity = base.funding_sat * 1000
    if ours is Side.LOCAL:
        return replace(ch, balance_local_msat=MsatInt(balance), balance_remote_msat=MsatInt(capacity - balance))
    return replace(ch, balance_remote_msat=MsatInt(balance), balance_local_msat=MsatInt(capacity - balance))


def test_the_shortcut_never_lets_through_what_the_exact_checks_refuse():
    rng = random.Random(18)
    bases = []
    for channel_type in (ChannelType.STATIC_REMOTEKEY, ChannelType.ANCHORS):
        pair = Pair.open(funding_sat=1_000_000, push_msat=400_000_000, channel_type=channel_type)
        bases += [pair.a.ch, pair.b.ch]  # opened by us, and by the peer
    assert {b.opener for b in bases} == {Side.LOCAL, Side.REMOTE}
    shortcut = refused = passed_exactly = 0
    for i in range(6000):
        base = rng.choice(bases)
        ch = _tight_channel(rng, base) if i % 3 == 0 else _random_channel(rng, base)
        exact = normal._check_our_add_exactly(ch)
        if normal._clearly_within_limits(ch):
            shortcut += 1
            assert exact is None, (exact, ch.opener, ch.balance_local_msat, ch.htlcs)
        elif exact is None:
            passed_exactly += 1  # the shortcut's bounds are loose near the limits: the exact checks decide
        else:
            refused += 1
    # Every outcome occurred often: the property was exercised, not vacuous.
    assert shortcut > 1000 and refused > 1000 and passed_exactly > 100, (shortcut, refused, passed_exactly)


def test_offer_htlc_goes_through_the_shortcut_on_a_roomy_channel_and_still_refuses_near_the_reserve():
    """offer_htlc's answer is unchanged: a small HTLC on a roomy channel passes (by the shortcut), one that would
    cut into the reserve is refused (the exact checks), as before."""
    from ampere.ln.channel import core
    from ampere.ln.channel.actions import Refusal, RefusalCode

    pair = Pair.open(funding_sat=1_000_000, push_msat=20_000_000)
    b = pair.b  # not the opener: 20k sat, reserve 10k sat
    assert normal._clearly_within_limits(replace(b.ch, htlcs=()))
    assert not isinstance(core.offer_htlc(b.ch, b.signer, 1_000_000, b"\x03" * 32, 700, bytes(1366)), Refusal)
    r = core.offer_htlc(b.ch, b.signer, 10_000_001, b"\x03" * 32, 700, bytes(1366))
    assert isinstance(r, Refusal) and r.code is RefusalCode.CANNOT_AFFORD


def _tight_for_their_add(rng: random.Random, base) -> object:
    """A channel the peer opened where the receiver's bound is reached exactly: every HTLC the peer's, committed
    and above the dust limit, and the peer's balance within 1,000 sat of reserve + HTLCs + fee."""
    htlcs = tuple(Htlc(Side.REMOTE, i, MsatInt(rng.choice((5_000_000, 20_000_000))), b"\x02" * 32, 700, bytes(1366),
                       HtlcState.RCVD_ADD_ACK_REVOCATION, i) for i in range(1, rng.randrange(1, 7)))
    rate = rng.choice((253, 2_500, 15_000))
    ch = replace(base, htlcs=htlcs, feerate_per_kw=rate, fee_updates=(),
                 local=replace(base.local, max_accepted_htlcs=483, max_htlc_value_in_flight_msat=10**12))
    bound = sum(h.amount_msat for h in htlcs) + _fee_msat(ch, rate, len(htlcs)) + reserve_msat(ch, Side.REMOTE)
    balance = bound + rng.randrange(-1_000_000, 1_000_000)
    capacity = base.funding_sat * 1000
    return replace(ch, balance_remote_msat=MsatInt(balance), balance_local_msat=MsatInt(capacity - balance))


def test_the_receivers_shortcut_never_accepts_what_the_exact_checks_refuse():
    """The same for a peer's update_add_htlc (normal._clearly_within_our_limits against normal._their_add_problem):
    a peer that cannot afford its HTLC, or exceeds our HTLC limits, is never let through by the shortcut."""
    rng = random.Random(1802)
    bases, peer_opened = [], []
    for channel_type in (ChannelType.STATIC_REMOTEKEY, ChannelType.ANCHORS):
        pair = Pair.open(funding_sat=1_000_000, push_msat=400_000_000, channel_type=channel_type)
        bases += [pair.a.ch, pair.b.ch]
        peer_opened.append(pair.b.ch)  # B's view: A, the peer, opened it and pays the fee
    shortcut = refused = passed_exactly = 0
    for i in range(6000):
        ch = (_tight_for_their_add(rng, rng.choice(peer_opened)) if i % 3 == 0
              else _random_channel(rng, rng.choice(bases)))
        exact = normal._their_add_problem(ch)
        if normal._clearly_within_our_limits(ch):
            shortcut += 1
            assert exact is None, (exact, ch.opener, ch.balance_remote_msat, ch.htlcs)
        elif exact is None:
            passed_exactly += 1
        else:
            refused += 1
    assert shortcut > 1000 and refused > 1000 and passed_exactly > 100, (shortcut, refused, passed_exactly)
