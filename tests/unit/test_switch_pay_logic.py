"""The pure decisions of the forwarding switch (BOLT 4/7 checks) and of `pay` (fee budget, learning from failures)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from ampere.ln.gossip.signing import make_channel_update, privkey_signer
from ampere.ln.onion_failure import decode_failure_message, encode_failure_message, failure_code
from ampere.ln.route import HintHop
from ampere.ln.pay_policy import Knowledge, fee_budget, hints_from_invoice, learn_from_failure
from ampere.ln.forwarding import Policy, check_forward, failure_with_update, forward_fee
from ampere.node.payments.switch import Forward

POL = Policy(fee_base_msat=1000, fee_ppm=100, cltv_delta=40, htlc_minimum_msat=1000, htlc_maximum_msat=10**9)
HEIGHT = 500


def test_forward_fee_is_bolt7_formula():
    # fee_base_msat + amount_to_forward * fee_proportional_millionths / 1000000, rounded down.
    assert forward_fee(POL, 1_000_000) == 1100
    assert forward_fee(POL, 9_999) == 1000
    assert forward_fee(Policy(0, 1, 0, 0, 10**9), 999_999) == 0


def test_check_forward_accepts_exact_fee_and_delta():
    out = 5_000_000
    assert check_forward(POL, out + forward_fee(POL, out), HEIGHT + 100, out, HEIGHT + 60, HEIGHT) is None


@pytest.mark.parametrize("in_msat,in_cltv,out_msat,out_cltv,name", [
    (5_001_499, 700, 5_000_000, 600, "fee_insufficient"),          # one msat short of base + ppm
    (4_000_000, 700, 5_000_000, 600, "fee_insufficient"),          # less in than out
    (5_001_500, 639, 5_000_000, 600, "incorrect_cltv_expiry"),     # delta 39 < 40
    (5_001_500, 540, 5_000_000, 500, "expiry_too_soon"),           # outgoing expires at the current height
    (5_001_500, 3000, 5_000_000, 2600, "expiry_too_far"),          # beyond max-locktime-blocks (2016)
    (1_500, 700, 500, 600, "amount_below_minimum"),
    (2 * 10**9, 700, 10**9 + 1, 600, "temporary_channel_failure"),  # above our htlc maximum
])
def test_check_forward_refusals(in_msat, in_cltv, out_msat, out_cltv, name):
    r = check_forward(POL, in_msat, in_cltv, out_msat, out_cltv, HEIGHT)
    assert r is not None and r.name == name


def test_disabled_channel_refused_first():
    off = Policy(1000, 100, 40, 1000, 10**9, enabled=False)
    assert check_forward(off, 10**7, 700, 5_000_000, 600, HEIGHT).name == "channel_disabled"


def test_failure_messages_carry_our_channel_update():
    upd = make_channel_update(chain_hash=bytes(32), short_channel_id=(103 << 40) | (1 << 16), timestamp=1700000000,
                              direction=1, cltv_expiry_delta=40, htlc_minimum_msat=1000, htlc_maximum_msat=10**9,
                              fee_base_msat=1000, fee_proportional_millionths=100,
                              sign=privkey_signer(b"\x01" * 32)).to_bytes()
    refusal = check_forward(POL, 5_000_000, 700, 5_000_000, 600, HEIGHT)
    msg = decode_failure_message(failure_with_update(refusal.code, refusal.fields, upd))
    assert msg.name == "fee_insufficient" and msg.fields["htlc_msat"] == 5_000_000 and msg.channel_update == upd
    # Codes without the UPDATE bit carry no update.
    assert failure_with_update("unknown_next_peer", {}, upd) == (0x4000 | 10).to_bytes(2, "big")


def test_forward_json_shapes():
    f = Forward(created_index=3, in_channel_id=b"\x01" * 32, in_htlc_id=7, in_scid=(103 << 40) | (1 << 16),
                in_msat=1011, in_cltv=700, payment_hash=b"\x02" * 32, status="local_failed", received_time=1.5,
                out_scid=(104 << 40), out_msat=1000, failcode=failure_code("fee_insufficient"), resolved_time=2.0)
    j = f.to_json()
    assert j["in_channel"] == "103x1x0" and j["out_channel"] == "104x0x0" and j["fee_msat"] == 11
    assert j["failreason"] == "WIRE_FEE_INSUFFICIENT" and "resolved_time" not in j  # CLN: not for local_failed
    f.status = "settled"
    assert f.to_json()["resolved_time"] == 2.0 and "failcode" not in f.to_json()


def test_fee_budget():
    # maxfeepercent (default 0.5%) of the amount, but never below exemptfee (default 5000msat).
    assert fee_budget(10_000_000) == 50_000
    assert fee_budget(100_000) == 5000
    assert fee_budget(10_000_000, Fraction(1, 10), 0) == 10_000
    assert fee_budget(10_000_000, "2", 0) == 200_000
    assert fee_budget(10_000_000, maxfee=7) == 7


DEST = b"\x03" + b"\x33" * 32
MID = b"\x02" + b"\x22" * 32


def test_destination_permanent_failure_stops():
    k = Knowledge()
    d = learn_from_failure(k, {"erring_index": 2, "failcode": 0x400F, "erring_node": DEST.hex(),
                               "erring_channel": "105x1x0", "erring_direction": 0}, DEST)
    assert d.action == "stop" and not k.exclude_channels


def test_sendpay_judging_the_destination_refused_stops():
    # sendpay's PAY_DESTINATION_PERM_FAIL is final even when the failure data alone would suggest a retry.
    data = {"erring_index": 1, "failcode": 0x1007, "erring_node": MID.hex(), "erring_channel": "105x1x0",
            "erring_direction": 1}
    assert learn_from_failure(Knowledge(), dict(data), DEST).action == "retry"
    k = Knowledge()
    assert learn_from_failure(k, dict(data), DEST, destination_refused=True).action == "stop"
    assert not k.exclude_channels and not k.exclude_nodes


def test_channel_failure_excludes_that_direction_and_node_failure_the_node():
    k = Knowledge()
    d = learn_from_failure(k, {"erring_index": 1, "failcode": 0x4008, "erring_node": MID.hex(),
                               "erring_channel": "105x1x0", "erring_direction": 1}, DEST)
    assert d.action == "retry" and k.exclude_channels == {((105 << 40) | (1 << 16), 1)}
    d = learn_from_failure(k, {"erring_index": 1, "failcode": 0x2002, "erring_node": MID.hex(),
                               "erring_channel": "106x1x0", "erring_direction": 0}, DEST)
    assert d.action == "retry" and MID in k.exclude_nodes


def test_update_in_failure_corrects_route_hint_once():
    scid = (107 << 40) | (1 << 16)
    k = Knowledge(hints=[[HintHop(MID, scid, 1, 10, 34)]])
    upd = make_channel_update(chain_hash=bytes(32), short_channel_id=scid, timestamp=1700000000, direction=0,
                              cltv_expiry_delta=40, htlc_minimum_msat=1, htlc_maximum_msat=10**9, fee_base_msat=2000,
                              fee_proportional_millionths=500, sign=privkey_signer(b"\x05" * 32)).to_bytes()
    data = {"erring_index": 1, "failcode": 0x100C, "erring_node": MID.hex(), "erring_channel": "107x1x0",
            "erring_direction": 0,
            "raw_message": encode_failure_message("fee_insufficient", htlc_msat=5, channel_update=upd).hex()}
    d = learn_from_failure(k, dict(data), DEST)
    assert d.action == "retry" and not k.exclude_channels
    hop = k.hints[0][0]
    assert (hop.fee_base_msat, hop.fee_proportional_millionths, hop.cltv_expiry_delta) == (2000, 500, 40)
    # The same update again teaches nothing: the channel is excluded instead.
    d = learn_from_failure(k, dict(data), DEST)
    assert d.action == "retry" and k.exclude_channels == {(scid, 0)}


def test_local_refusal_lowers_our_channel_cap():
    k = Knowledge()
    d = learn_from_failure(k, {"erring_index": 0, "failcode": 0x1007, "erring_channel": "108x1x0",
                               "erring_direction": 0, "erring_node": MID.hex()}, DEST, first_hop_msat=1_000_000)
    assert d.action == "retry" and k.local_caps == {(108 << 40) | (1 << 16): 900_000} and not k.exclude_channels


def test_hints_from_invoice_keeps_every_hop():
    from ampere.ln.invoice_fields import RouteHop as R

    hints = hints_from_invoice([[R(MID, 5, 1, 10, 34), R(DEST, 6, 2, 20, 40)], []])
    assert len(hints) == 1 and [h.short_channel_id for h in hints[0]] == [5, 6]
