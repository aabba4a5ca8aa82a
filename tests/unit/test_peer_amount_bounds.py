"""Issue 16 item 1: every amount a peer sends is bounded (BOLT 2, and the total supply of 21M BTC) and refused
with an error before any state exists; absurd values never reach the commitment builder (no OverflowError)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from ampere.ln.channel import core, opening
from ampere.ln.channel.actions import ErrorKind
from ampere.testing.channel_pair import REGTEST_CHAIN_HASH, Pair
from ampere.ln.channel.signer import LocalChannelSigner
from ampere.wire import messages as m

SPK_A = b"\x00\x14" + b"\xaa" * 20
SPK_B = b"\x00\x14" + b"\xbb" * 20
MAX_MONEY_SAT = 21_000_000 * 100_000_000
ABSURD = [MAX_MONEY_SAT + 1, 1 << 63, (1 << 64) - 1]
POLICY = opening.OpenPolicy(chain_hash=REGTEST_CHAIN_HASH, max_feerate_per_kw=(1 << 32) - 1,
                            max_reserve_percent=100)


def _open_msg(**changes):
    a = LocalChannelSigner(b"\x01" * 32)
    step = opening.open_channel(a, temporary_channel_id=b"\x07" * 32, chain_hash=REGTEST_CHAIN_HASH,
                                funding_sat=200_000, push_msat=0, feerate_per_kw=1000,
                                ours=opening.LocalParams(shutdown_scriptpubkey=SPK_A))
    return step.state, m.decode_message(m.encode_message(replace(step.messages[0], **changes)))


def _acceptor_step(msg, policy=POLICY):
    return opening.on_open_channel(LocalChannelSigner(b"\x02" * 32), msg,
                                   opening.LocalParams(shutdown_scriptpubkey=SPK_B), policy)


@pytest.mark.parametrize("value", ABSURD)
@pytest.mark.parametrize("field", ["funding_satoshis", "push_msat", "channel_reserve_satoshis",
                                   "dust_limit_satoshis", "htlc_minimum_msat"])
def test_open_channel_absurd_amounts_are_refused_before_any_state(field, value):
    changes = {field: value}
    _, msg = _open_msg(**changes)
    assert opening.peer_amount_problem(msg) is not None
    step = _acceptor_step(msg)
    assert step.error is not None and step.error.kind is ErrorKind.CLOSE
    assert step.state is None and step.actions == ()


def test_open_channel_at_the_supply_cap_is_bounded_not_an_overflow():
    # Funding exactly 21M BTC passes the bound, and the whole opening then works: commitments and the funding
    # output serialise (the cap keeps every later amount within the 8-byte fields of a transaction).
    _, msg = _open_msg(funding_satoshis=MAX_MONEY_SAT)
    assert opening.peer_amount_problem(msg) is None
    push = (MAX_MONEY_SAT - 1_000_000) * 1000
    pair = Pair.open(funding_sat=MAX_MONEY_SAT, push_msat=push)
    assert pair.b.ch.balance_local_msat == push


def test_funding_above_supply_never_reaches_funding_created():
    """The issue's exact trace: accept_channel was sent for 2^63 sat, funding_created then overflowed."""
    _, msg = _open_msg(funding_satoshis=1 << 63)
    step = _acceptor_step(replace(msg), POLICY)
    assert step.error is not None and "funding_satoshis" in step.error.message
    assert not step.messages


@pytest.mark.parametrize("value", ABSURD)
@pytest.mark.parametrize("field", ["channel_reserve_satoshis", "dust_limit_satoshis", "htlc_minimum_msat"])
def test_accept_channel_absurd_amounts_are_refused(field, value):
    neg_a, open_msg = _open_msg()
    acc = _acceptor_step(open_msg).messages[0]
    bad = m.decode_message(m.encode_message(replace(acc, **{field: value})))
    assert opening.peer_amount_problem(bad, 200_000) is not None
    step = neg_a.on_accept_channel(bad, POLICY)
    assert step.error is not None and step.error.kind is ErrorKind.CLOSE
    assert step.actions == ()


@pytest.mark.parametrize("value", ABSURD)
def test_update_add_htlc_absurd_amount_is_a_channel_error_not_a_crash(value):
    pair = Pair.open(funding_sat=500_000)
    a, b = pair.a, pair.b
    msg = m.UpdateAddHtlc(channel_id=a.ch.channel_id, id=0, amount_msat=value, payment_hash=b"\x11" * 32,
                          cltv_expiry=500, onion_routing_packet=b"\x00" * 1366)
    step = core.handle_message(b.ch, b.signer, m.decode_message(m.encode_message(msg)))
    assert step.error is not None


@pytest.mark.parametrize("value", ABSURD)
def test_closing_signed_absurd_fee_is_an_error_not_a_crash(value):
    pair = Pair.open(funding_sat=500_000)
    a, b = pair.a, pair.b
    a.apply(core.start_shutdown(a.ch, a.signer))
    pair.pump()
    for p in (a, b):
        if p.ch.closing is None:
            continue
        msg = m.ClosingSigned(channel_id=p.ch.channel_id, fee_satoshis=value, signature=b"\x01" * 64,
                              tlvs=m.ClosingSignedTlvs(fee_range=m.ClosingSignedTlvsFeeRange(
                                  min_fee_satoshis=value, max_fee_satoshis=value)))
        step = core.handle_message(p.ch, p.signer, msg)
        assert step.error is not None
