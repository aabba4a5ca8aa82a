"""Our feature bits, per BOLT 9, in the places CLN reports them (getinfo, plugin init).

The sets themselves live in ampere.wire.features (one source of truth: the `init` we send to peers
carries exactly the bits getinfo reports).  Features join those sets as the code implementing
them lands.
"""

from __future__ import annotations

from ampere.wire.features import CHANNEL_FEATURES, INIT_FEATURES, INVOICE_FEATURES, NODE_FEATURES


def bits_to_hex(bits: list[int]) -> str:
    if not bits:
        return ""
    value = 0
    for b in bits:
        value |= 1 << b
    length = (max(bits) // 8) + 1
    return value.to_bytes(length, "big").hex()


def our_feature_set() -> dict[str, str]:
    return {
        "init": INIT_FEATURES.hex(),
        "node": NODE_FEATURES.hex(),
        "channel": CHANNEL_FEATURES.hex(),
        "invoice": INVOICE_FEATURES.hex(),
    }
