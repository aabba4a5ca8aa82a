"""Incoming HTLCs inside a blinded path (BOLT 4 route blinding), for the receiver.

The receiver hands an HTLC here when its onion payload carries `encrypted_recipient_data`:

    as an intermediate node    decrypt the recipient's instructions with the path key (from
                               update_add_htlc, or `current_path_key` when we are the introduction node),
                               compute the outgoing amount and expiry from `payment_relay`, check
                               `payment_constraints`, and hand the HTLC to the switch with the next path key
    as the final node          check the `path_id` is the one we put in the invoice's path for this
                               payment_hash, then the usual final-hop checks (the receiver's `_final`)

Errors inside a blinded path do not say what went wrong: BOLT 4 "if `path_key` is set in the incoming
`update_add_htlc`: MUST return an `invalid_onion_blinding` error", and "if `current_path_key` is set in the
onion payload and it is not the final node: MUST return an `invalid_onion_blinding` error".  The receiver's
`_fail_blinded` rewrites every failure of such an HTLC accordingly (with
update_fail_malformed_htlc when the path key came in update_add_htlc).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ampere.ln.blinding import BlindingError, amount_to_forward, check_allowed_features, unblind_hop
from ampere.ln.onion_failure import encode_failure_message
from ampere.ln.onion_payload import HopPayload
from ampere.primitives.amount import Msat

INVALID_ONION_BLINDING = 0x8000 | 0x4000 | 24

# The receiver's IncomingHtlc.blinded values.
INNER = "inner"   # path_key came in update_add_htlc: fail malformed with invalid_onion_blinding
INTRO = "intro"   # we are the introduction node and not the final one: fail with invalid_onion_blinding


def payment_path_id(node: Any, payment_hash: bytes) -> bytes:
    """The `path_id` we put in the final hop of an invoice's blinded payment path: it proves the HTLC came by
    a path we built for this payment_hash (BOLT 4: "MAY store private data in `encrypted_data_tlv[r].path_id`
    to verify that the route is used in the right context and was created by them")."""
    return node.signer.node_hmac(b"ampere bolt12 payment path" + payment_hash)


def invalid_onion_blinding(onion: bytes) -> bytes:
    return encode_failure_message("invalid_onion_blinding", sha256_of_onion=hashlib.sha256(onion).digest())


async def process(rcv: Any, inc: Any, payload: HopPayload, is_final: bool, next_onion: bytes) -> None:
    node = rcv.node
    if inc.path_key is not None:
        inc.blinded = INNER
    elif not is_final:
        inc.blinded = INTRO
    path_key = inc.path_key if inc.path_key is not None else payload.current_path_key
    try:
        hop = unblind_hop(node.signer, path_key, payload.encrypted_recipient_data)
        check_allowed_features(hop.data)
    except BlindingError as e:
        rcv._log("debug", f"HTLC {inc.htlc_id}: blinded hop: {e}")
        await rcv.fail(inc, invalid_onion_blinding(inc.onion))
        return
    data = hop.data
    # BOLT 4: "If `payment_constraints` is present: MUST return an error if: the expiry is greater than
    # `max_cltv_expiry`; the amount is below `htlc_minimum_msat`."
    c = data.payment_constraints
    if c is not None and (inc.cltv_expiry > c.max_cltv_expiry or inc.amount_msat < c.htlc_minimum_msat):
        rcv._log("debug", f"HTLC {inc.htlc_id}: outside the blinded path's payment_constraints")
        await rcv.fail(inc, invalid_onion_blinding(inc.onion))
        return
    if not is_final:
        await _forward(rcv, inc, data, hop.next_path_key, next_onion)
        return
    # BOLT 4 (final recipient): "MUST ignore the message if the `path_id` does not match the blinded route
    # it created for this purpose".
    if data.path_id is None or not hmac.compare_digest(bytes(data.path_id), payment_path_id(node, inc.payment_hash)):
        rcv._log("debug", f"HTLC {inc.htlc_id}: blinded path_id is not ours for {inc.payment_hash.hex()}")
        from ampere.node.payments.receive import incorrect_or_unknown

        await rcv.fail(inc, incorrect_or_unknown(inc.amount_msat, rcv.blockheight()))
        return
    await rcv._final(inc, payload, {})


async def _forward(rcv: Any, inc: Any, data: Any, next_path_key: bytes, next_onion: bytes) -> None:
    node = rcv.node
    relay = data.payment_relay
    # BOLT 4 (not the final node): "MUST return an error if `encrypted_recipient_data` does not contain either
    # `short_channel_id` or `next_node_id`" / "does not contain `payment_relay`"; a path_id is only for us.
    if relay is None or data.path_id is not None or (data.short_channel_id is None and data.next_node_id is None):
        await rcv.fail(inc, invalid_onion_blinding(inc.onion))
        return
    scid = data.short_channel_id
    mgr = rcv.manager
    if scid is None and mgr is not None:
        for rec in mgr.peer_records(bytes(data.next_node_id)):
            if rec.short_channel_id is not None and rec.state.value == "CHANNELD_NORMAL":
                scid = rec.short_channel_id
                break
    if scid is None:
        await rcv.fail(inc, invalid_onion_blinding(inc.onion))
        return
    # "MUST use values from `encrypted_recipient_data.payment_relay` to calculate `amt_to_forward` and
    # `outgoing_cltv_value`".
    out_msat = amount_to_forward(inc.amount_msat, relay.fee_base_msat, relay.fee_proportional_millionths)
    out_cltv = inc.cltv_expiry - relay.cltv_expiry_delta
    switch = node.switch
    if switch is None or out_msat <= 0:
        await rcv.fail(inc, invalid_onion_blinding(inc.onion))
        return
    inc.status = "forwarding"
    forward_payload = HopPayload(amt_to_forward=Msat(out_msat), outgoing_cltv_value=out_cltv,
                                 short_channel_id=int(scid))
    await switch.forward(inc, forward_payload, next_onion, path_key=next_path_key)
