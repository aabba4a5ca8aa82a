"""BOLT #9 feature bits: names, a `Features` bitfield value, dependency rules and our default sets.

Bits are numbered from the least-significant bit of the big-endian byte string, so bit 0 is the
lowest bit of the last byte.  Every feature is a pair: the even bit means "compulsory", the odd
bit "optional".  A feature is referred to by name ("basic_mpp") or by either of its bits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# BOLT #9 (lightning/bolts a3772650) "Assigned Feature Flags": name -> even (compulsory) bit.
FEATURE_BITS: dict[str, int] = {
    "option_data_loss_protect": 0,
    "option_upfront_shutdown_script": 4,
    "gossip_queries": 6,
    "var_onion_optin": 8,
    "gossip_queries_ex": 10,
    "option_static_remotekey": 12,
    "payment_secret": 14,
    "basic_mpp": 16,
    "option_support_large_channel": 18,
    "option_anchors": 22,
    "option_route_blinding": 24,
    "option_shutdown_anysegwit": 26,
    "option_dual_fund": 28,
    "option_quiesce": 34,
    "option_attribution_data": 36,
    "option_onion_messages": 38,
    "option_provide_storage": 42,
    "option_channel_type": 44,
    "option_scid_alias": 46,
    "option_payment_metadata": 48,
    "option_zeroconf": 50,
    # Not in BOLT 9: the bit keysend senders look for (CLN's keysend plugin sets 55 in init and node).
    "keysend": 54,
    "option_simple_close": 60,
    "option_splice": 62,
}
FEATURE_NAMES: dict[int, str] = {bit: name for name, bit in FEATURE_BITS.items()}

# BOLT #9 "Dependencies" column: the origin node "MUST set all transitive feature dependencies".
DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "basic_mpp": ("payment_secret",),
    "option_zeroconf": ("option_scid_alias",),
    "option_simple_close": ("option_shutdown_anysegwit",),
}


def feature_bit(feature: str | int) -> int:
    """The even bit of a feature given by name or by either bit."""
    if isinstance(feature, str):
        try:
            return FEATURE_BITS[feature]
        except KeyError:
            raise ValueError(f"unknown feature name {feature!r}") from None
    if feature < 0:
        raise ValueError(f"negative feature bit {feature}")
    return feature & ~1


@dataclass(frozen=True)
class Features:
    """An immutable feature bitfield."""

    bits: int = 0

    # -- construction and serialization --------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes) -> "Features":
        return cls(int.from_bytes(data, "big"))

    def to_bytes(self) -> bytes:
        """Minimal length, as BOLT #1 asks: "SHOULD use the minimum length required to represent
        the `features` field" (and "MUST be padded to bytes with 0s")."""
        return self.bits.to_bytes((self.bits.bit_length() + 7) // 8, "big")

    @classmethod
    def from_bit_list(cls, bits: Iterable[int]) -> "Features":
        value = 0
        for bit in bits:
            value |= 1 << bit
        return cls(value)

    @classmethod
    def from_names(cls, compulsory: Iterable[str] = (), optional: Iterable[str] = ()) -> "Features":
        value = 0
        for name in compulsory:
            value |= 1 << feature_bit(name)
        for name in optional:
            value |= 1 << (feature_bit(name) + 1)
        return cls(value)

    def hex(self) -> str:
        return self.to_bytes().hex()

    # -- queries -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[int]:
        bits, i = self.bits, 0
        while bits:
            if bits & 1:
                yield i
            bits >>= 1
            i += 1

    def is_set(self, bit: int) -> bool:
        return bool(self.bits >> bit & 1)

    def has(self, feature: str | int) -> bool:
        """Offered, as either the compulsory or the optional bit."""
        bit = feature_bit(feature)
        return self.is_set(bit) or self.is_set(bit + 1)

    def requires(self, feature: str | int) -> bool:
        return self.is_set(feature_bit(feature))

    def __or__(self, other: "Features") -> "Features":
        return Features(self.bits | other.bits)

    def with_feature(self, feature: str | int, compulsory: bool = False) -> "Features":
        bit = feature_bit(feature)
        return Features(self.bits | (1 << (bit if compulsory else bit + 1)))

    def without_feature(self, feature: str | int) -> "Features":
        bit = feature_bit(feature)
        return Features(self.bits & ~(3 << bit))

    def unknown_even_bits(self, supported: "Features") -> list[int]:
        """Compulsory bits we do not support: BOLT #1 "upon receiving unknown _even_ feature bits
        that are non-zero: MUST close the connection".  A feature is known to us if we set either
        of its bits in `supported`."""
        return [bit for bit in self if bit % 2 == 0 and not supported.has(bit)]

    def missing_dependencies(self) -> list[tuple[str, str]]:
        """(feature, dependency) pairs where a set feature's dependency is not set.

        BOLT #1: "if the feature vector does not set all known, transitive dependencies: MUST close
        the connection."
        """
        missing: list[tuple[str, str]] = []
        for name, deps in DEPENDENCIES.items():
            if self.has(name):
                missing.extend((name, dep) for dep in deps if not self.has(dep))
        return missing

    def names(self) -> list[str]:
        """Readable names of the set bits, e.g. ["var_onion_optin/even", "basic_mpp/odd", "bit 103"]."""
        out = []
        for bit in self:
            name = FEATURE_NAMES.get(bit & ~1)
            out.append(f"{name}/{'even' if bit % 2 == 0 else 'odd'}" if name else f"bit {bit}")
        return out

    def __repr__(self) -> str:
        return f"Features(0x{self.hex() or '0'}: {', '.join(self.names())})"


def negotiated(ours: Features, theirs: Features, feature: str | int) -> bool:
    """BOLT #1: "A feature is *negotiated* if either both peers offered it, or the local node offered
    it as even"."""
    return (ours.has(feature) and theirs.has(feature)) or ours.requires(feature)


# Our defaults, modelled on Core Lightning's `default_features()`: compulsory where CLN makes
# them compulsory (data_loss_protect, var_onion_optin, static_remotekey, payment_secret), the rest
# optional.  Features join these sets as the code that implements them lands.
INIT_FEATURES = Features.from_names(
    # option_channel_type is compulsory too: Core Lightning requires it of peers (issue #5's list:
    # data_loss_protect, var_onion_optin, payment_secret, static_remotekey and channel_type).
    compulsory=["option_data_loss_protect", "var_onion_optin", "option_static_remotekey", "payment_secret",
                "option_channel_type"],
    # option_route_blinding: we forward and receive blinded HTLCs (node.blinded_htlcs); option_onion_messages:
    # we relay and receive onion messages (node.onion_messages).  Both optional, as CLN.  keysend: see above.
    # option_anchors (zero-fee HTLC txs): optional as CLN, preferred as channel_type whenever the peer offers it.
    optional=["gossip_queries", "basic_mpp", "option_support_large_channel", "option_anchors",
              "option_route_blinding", "option_onion_messages", "keysend"],
)
# BOLT #7 node_announcement carries the node's features (the "N" context); CLN advertises the same set.
NODE_FEATURES = INIT_FEATURES
# BOLT #11 invoices: the "9" context.  CLN's invoices carry 0x024100 (bits 8, 14 and 17).
INVOICE_FEATURES = Features.from_names(
    compulsory=["var_onion_optin", "payment_secret"],
    optional=["basic_mpp"],
)
# BOLT #7 channel_announcement: no channel features yet.
CHANNEL_FEATURES = Features()
