"""`pay`'s decisions, without I/O: the fee budget, route hints from an invoice, and what one failed part
teaches the next attempt (what to exclude, a corrected hint, a smaller amount over our own channel, or stop).
The runtime that pays is ampere.node.payments.pay.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from ampere.ln.invoice_fields import InvoiceError, scid_to_str
from ampere.ln.onion_failure import (
    NODE,
    PERM,
    UPDATE,
    decode_failure_message,
    failure_code_name,
)
from ampere.ln.route import HintHop
from ampere.primitives.amount import MsatInt

DEFAULT_MAXFEEPERCENT = Fraction(1, 2)
DEFAULT_EXEMPTFEE = 5000


def fee_budget(amount_msat: MsatInt, maxfeepercent: Any = None, exemptfee: int | None = None,
               maxfee: int | None = None) -> MsatInt:
    """The most `pay` spends on fees for `amount_msat` (integer msat).

    CLN: `maxfee` is an absolute limit; otherwise `maxfeepercent` (default 0.5) of the amount, except that a fee
    below `exemptfee` (default 5000msat) is always accepted."""
    if maxfee is not None:
        return MsatInt(int(maxfee))
    pct = Fraction(str(maxfeepercent)) if maxfeepercent is not None else DEFAULT_MAXFEEPERCENT
    if pct < 0:
        raise ValueError("maxfeepercent must not be negative")
    limit = int(amount_msat * pct / 100)
    exempt = DEFAULT_EXEMPTFEE if exemptfee is None else int(exemptfee)
    return MsatInt(max(limit, exempt))


def hints_from_invoice(route_hints: list) -> list[list[HintHop]]:
    """BOLT #11 `r` fields as the path finder's hint hops."""
    out = []
    for hint in route_hints or ():
        hops = [HintHop(h.pubkey, int(h.short_channel_id), MsatInt(int(h.fee_base_msat)), int(h.fee_proportional_millionths),
                        int(h.cltv_expiry_delta)) for h in hint]
        if hops:
            out.append(hops)
    return out


@dataclass
class Knowledge:
    """What one payment learnt from its failures: what not to use, and corrected route hints."""

    exclude_channels: set[tuple[int, int]] = field(default_factory=set)
    exclude_nodes: set[bytes] = field(default_factory=set)
    hints: list[list[HintHop]] = field(default_factory=list)
    updates_seen: set[bytes] = field(default_factory=set)
    local_caps: dict[int, int] = field(default_factory=dict)   # our channel -> most it proved able to send


@dataclass(frozen=True)
class Decision:
    """What to do after a failed part: "retry" (having learnt something), or "stop" with the error to give."""

    action: str
    note: str = ""
    update: bytes | None = None     # a channel_update to apply to the graph (not a hint channel)


def _apply_update_to_hints(k: Knowledge, raw: bytes) -> bool:
    """A channel_update for a route hint's channel replaces that hop's values (the payee's hint was stale)."""
    from ampere.ln.gossip.rawmsg import channel_update_fields

    try:
        f = channel_update_fields(raw)
    except ValueError:
        return False
    changed = False
    for hint in k.hints:
        for i, hop in enumerate(hint):
            if hop.short_channel_id == f.short_channel_id:
                new = replace(hop, fee_base_msat=MsatInt(f.fee_base_msat),
                              fee_proportional_millionths=f.fee_proportional_millionths,
                              cltv_expiry_delta=f.cltv_expiry_delta, htlc_minimum_msat=MsatInt(f.htlc_minimum_msat),
                              htlc_maximum_msat=MsatInt(f.htlc_maximum_msat))
                if new != hop:
                    hint[i] = new
                    changed = True
    return changed


def _hint_channels(k: Knowledge) -> set[int]:
    return {hop.short_channel_id for hint in k.hints for hop in hint}


def learn_from_failure(k: Knowledge, data: dict, destination: bytes, first_hop_msat: MsatInt | None = None, *,
                       destination_refused: bool = False) -> Decision:
    """Update `k` from one failed part's routing failure (waitsendpay's error `data`).  `first_hop_msat`: what
    the part offered on our own channel (a refusal there lowers what we think that channel can send).
    `destination_refused`: sendpay judged it a permanent failure at the destination (PAY_DESTINATION_PERM_FAIL)."""
    failcode = int(data.get("failcode") or 0)
    erring_node = bytes.fromhex(data["erring_node"]) if data.get("erring_node") else None
    erring_channel = data.get("erring_channel")
    direction = data.get("erring_direction")
    name = failure_code_name(failcode) if failcode else "unknown"
    if destination_refused or (erring_node == destination and failcode & PERM):
        # BOLT #4: a permanent failure from the final node: no other route will do better.
        return Decision("stop", f"destination said {name}")
    if erring_node == destination and failcode == 23:
        return Decision("retry", "mpp_timeout: the destination gave up waiting for the other parts")
    scid = None
    if erring_channel:
        from ampere.ln.invoice_fields import scid_from_str

        try:
            scid = scid_from_str(erring_channel)
        except InvoiceError:
            scid = None
    if data.get("erring_index") == 0 and scid is not None and failcode == 0x1007 and first_hop_msat:
        # Our own channel refused the amount (reserve, fee spike buffer, in-flight limits): try less over it.
        cap = min(k.local_caps.get(scid, first_hop_msat), first_hop_msat) * 9 // 10
        k.local_caps[scid] = cap
        return Decision("retry", f"our channel {scid_to_str(scid)} could not send {first_hop_msat}msat: "
                                 f"trying at most {cap}msat")
    if failcode & UPDATE and data.get("raw_message"):
        try:
            msg = decode_failure_message(bytes.fromhex(data["raw_message"]))
            update = msg.channel_update
        except ValueError:
            update = None
        if update:
            # The channel_update message may come with its 0x0102 type prefix (BOLT #4) or, from old nodes, without.
            if update[:2] != b"\x01\x02":
                update = b"\x01\x02" + update
            if update not in k.updates_seen:
                k.updates_seen.add(update)
                if _apply_update_to_hints(k, update):
                    return Decision("retry", f"{name}: route hint corrected from the channel_update")
                if scid is None or scid not in _hint_channels(k):
                    return Decision("retry", f"{name}: channel_update applied", update=update)
    if failcode & NODE and erring_node is not None and erring_node != destination:
        k.exclude_nodes.add(erring_node)
        return Decision("retry", f"{name}: excluding node {erring_node.hex()}")
    if scid is not None and direction is not None:
        k.exclude_channels.add((scid, int(direction)))
        return Decision("retry", f"{name}: excluding {scid_to_str(scid)}/{direction}")
    if erring_node is not None and erring_node != destination:
        k.exclude_nodes.add(erring_node)
        return Decision("retry", f"{name}: excluding node {erring_node.hex()}")
    return Decision("stop", f"{name}: nothing left to exclude")
