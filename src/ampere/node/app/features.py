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


# --dev-force-features (lightningd/options.c opt_force_featureset): either "+N" / "-N" (one bit on or
# off, in the places that feature lives), or eight sets "init/globalinit/node_announce/channel/bolt11/
# b12offer/b12invreq/b12inv/", each a comma-separated list of bit numbers, replacing ours.
_FORCED_PLACES = ("init", None, "node", "channel", "invoice", None, None, None)
# BOLT 9: features that also appear in invoices (var_onion_optin, payment_secret, basic_mpp,
# option_payment_metadata); every other feature we know lives in init and node_announcement.
_INVOICE_FEATURE_PAIRS = {8, 14, 16, 48}


class ForcedFeaturesError(ValueError):
    pass


def _bits_of(hexstr: str) -> set[int]:
    value = int(hexstr, 16) if hexstr else 0
    return {i for i in range(value.bit_length()) if value >> i & 1}


def force_features(fs: dict[str, str], spec: str) -> dict[str, str]:
    """`fs` with --dev-force-features applied; raises ForcedFeaturesError with lightningd's message."""
    places = {k: _bits_of(v) for k, v in fs.items()}
    parts = spec.split("/")
    if len(parts) != len(_FORCED_PLACES) + 1:
        if not spec.startswith(("-", "+")):
            raise ForcedFeaturesError("Expected 8 feature sets (init/globalinit/ node_announce/channel/bolt11/"
                                      "b12offer/b12invreq/b12inv) each terminated by / OR +/-<single_bit_num>")
        if not spec[1:].isdigit():
            raise ForcedFeaturesError("Invalid feature number")
        bit = int(spec[1:])
        where = ["init", "node"] + (["invoice"] if bit & ~1 in _INVOICE_FEATURE_PAIRS else [])
        if spec[0] == "-":
            for bits in places.values():
                bits.discard(bit)
        else:
            if all(bit in places.get(p, set()) for p in where):
                raise ForcedFeaturesError("Feature already flagged-on")
            for p in where:
                places.setdefault(p, set()).add(bit)
    else:
        for place, part in zip(_FORCED_PLACES, parts):
            bits = set()
            for b in filter(None, part.split(",")):
                if not b.isdigit():
                    raise ForcedFeaturesError(f"Invalid bit number {b}")
                bits.add(int(b))
            if place is not None:
                places[place] = bits
    return {k: bits_to_hex(sorted(v)) for k, v in places.items()}


def offers_anchors(feature_set: dict[str, str]) -> bool:
    """Whether our init features offer option_anchors (bit 22 or 23); `--dev-force-features=-23` (CLN's way)
    turns it off, and channels with us fall back to static_remotekey."""
    from ampere.wire.features import Features

    return Features.from_bytes(bytes.fromhex(feature_set.get("init", "") or "")).has("option_anchors")
