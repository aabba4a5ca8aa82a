"""Our feature bits, per BOLT 9, in the places CLN reports them (getinfo, plugin init).

Compulsory (even) where Core Lightning makes them compulsory: var_onion_optin, static_remotekey,
payment_secret and channel_type; option_data_loss_protect too.  Optional (odd) otherwise.
"""

from __future__ import annotations

# (bit, contexts) where contexts is a subset of "init", "node", "invoice".
_OUR_BITS = [
    (0, "init node"),          # option_data_loss_protect (compulsory)
    (7, "init node"),          # gossip_queries
    (8, "init node invoice"),  # var_onion_optin (compulsory)
    (12, "init node"),         # option_static_remotekey (compulsory)
    (14, "init node invoice"), # payment_secret (compulsory)
    (17, "init node invoice"), # basic_mpp
    (19, "init node"),         # option_support_large_channel
    (44, "init node"),         # option_channel_type (compulsory)
]


def bits_to_hex(bits: list[int]) -> str:
    if not bits:
        return ""
    value = 0
    for b in bits:
        value |= 1 << b
    length = (max(bits) // 8) + 1
    return value.to_bytes(length, "big").hex()


def our_feature_set() -> dict[str, str]:
    ctx = {"init": [], "node": [], "invoice": []}
    for bit, where in _OUR_BITS:
        for c in where.split():
            ctx[c].append(bit)
    return {
        "init": bits_to_hex(ctx["init"]),
        "node": bits_to_hex(ctx["node"]),
        "channel": "",
        "invoice": bits_to_hex(ctx["invoice"]),
    }
