"""Forwarding decisions, without I/O: our fee for a forward, the checks a forward must pass against the policy
we advertise for the outgoing channel (BOLT 4 and 7, in lightningd's order), and the failure message we answer a
refused forward with.  The runtime that does the forwarding is ampere.node.payments.switch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ampere.ln.onion_failure import UPDATE, encode_failure_message, failure_code
from ampere.primitives.amount import MsatInt

# lightningd forward_htlc: "never offer an expired HTLC"; and `max-locktime-blocks` bounds how far away it may be.
DEFAULT_MAX_LOCKTIME = 2016


@dataclass(frozen=True)
class Policy:
    """Our channel_update values for one outgoing channel (what we advertise, so what we enforce)."""

    fee_base_msat: MsatInt
    fee_ppm: int
    cltv_delta: int
    htlc_minimum_msat: MsatInt
    htlc_maximum_msat: MsatInt
    enabled: bool = True


def forward_fee(policy: Policy, amt_to_forward: MsatInt) -> MsatInt:
    """BOLT #7 "HTLC Fees": fee_base_msat + ( amount_to_forward * fee_proportional_millionths / 1000000 )."""
    return MsatInt(policy.fee_base_msat + amt_to_forward * policy.fee_ppm // 1_000_000)


@dataclass(frozen=True)
class ForwardRefusal:
    """A forward we refuse before offering: the BOLT 4 failure name and its fields (channel_update is added by
    the switch for the UPDATE codes)."""

    name: str
    fields: dict = field(default_factory=dict)
    detail: str = ""

    @property
    def code(self) -> int:
        return failure_code(self.name)


def check_forward(policy: Policy, in_msat: MsatInt, in_cltv: int, out_msat: MsatInt, out_cltv: int, blockheight: int,
                  max_locktime: int = DEFAULT_MAX_LOCKTIME) -> ForwardRefusal | None:
    """The checks of a forward against our policy for the outgoing channel (None: all pass).

    In lightningd's order (forward_htlc): enabled, fee, CLTV delta, expiry too soon, expiry too far, HTLC
    minimum and maximum."""
    if not policy.enabled:
        # BOLT #4 channel_disabled: "The outgoing channel has been disabled."
        return ForwardRefusal("channel_disabled", {"disabled_flags": 0}, "channel disabled")
    # BOLT #4: "if the processing node ... the fee amount is less than what's required: ... fee_insufficient".
    fee = forward_fee(policy, out_msat)
    if in_msat < out_msat or in_msat - out_msat < fee:
        return ForwardRefusal("fee_insufficient", {"htlc_msat": in_msat},
                       f"fee {in_msat - out_msat}msat below {fee}msat")
    # BOLT #4 incorrect_cltv_expiry: "If the `cltv_expiry` does not comply with the `cltv_expiry_delta` required
    # by the outgoing channel".  BOLT #7: "cltv_expiry - outgoing_cltv_value >= cltv_expiry_delta".
    if in_cltv < out_cltv or in_cltv - out_cltv < policy.cltv_delta:
        return ForwardRefusal("incorrect_cltv_expiry", {"cltv_expiry": in_cltv},
                       f"cltv {in_cltv} - {out_cltv} below our delta {policy.cltv_delta}")
    # BOLT #4 expiry_too_soon: "The CLTV expiry is too close to the current block height for safe handling".
    # lightningd: never offer an HTLC that expires at or before the current block.
    if out_cltv <= blockheight:
        return ForwardRefusal("expiry_too_soon", {}, f"outgoing cltv {out_cltv} not above height {blockheight}")
    # BOLT #4 expiry_too_far: "The CLTV expiry is too far in the future."
    if out_cltv > blockheight + max_locktime:
        return ForwardRefusal("expiry_too_far", {}, f"outgoing cltv {out_cltv} beyond {blockheight} + {max_locktime}")
    # BOLT #4 amount_below_minimum: "The HTLC amount was below the `htlc_minimum_msat` of the channel".
    if out_msat < policy.htlc_minimum_msat:
        return ForwardRefusal("amount_below_minimum", {"htlc_msat": out_msat},
                       f"{out_msat}msat below our minimum {policy.htlc_minimum_msat}msat")
    if out_msat > policy.htlc_maximum_msat:
        return ForwardRefusal("temporary_channel_failure", {}, f"{out_msat}msat above our maximum {policy.htlc_maximum_msat}msat")
    return None


def failure_with_update(name_or_code: str | int, fields: dict, channel_update: bytes | None) -> bytes:
    """A failure message; the UPDATE codes carry our channel_update (BOLT #4: "encoded *with* the message type
    prefix"), empty when we have none to give."""
    code = failure_code(name_or_code) if isinstance(name_or_code, str) else name_or_code
    fields = dict(fields)
    if code & UPDATE:
        fields["channel_update"] = channel_update or b""
    try:
        return encode_failure_message(code, **fields)
    except ValueError:
        # A code from the channel core whose fields we do not have: the bare code.
        return code.to_bytes(2, "big")
