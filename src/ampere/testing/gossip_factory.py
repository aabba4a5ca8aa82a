"""Really signed gossip for tests, simulations and benchmarks: deterministic keys, channels with
their funding outputs, updates and node announcements, and random networks.

    f = GossipFactory(chain_hash("regtest"))
    a, b = f.node(1), f.node(2)                      # Key(priv, pub)
    ann, utxo = f.channel_announcement(scid, a, b, capacity_sat=1_000_000)
    upd = f.channel_update(scid, a, b, timestamp=..., fee_base_msat=1000, ...)   # a's direction
    net = random_network(f, n_nodes=50, n_channels=120, now=...)               # SyntheticNetwork
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import coincurve

from ampere.primitives.crypto import sha256
from ampere.wire.types import ShortChannelId

from ampere.ln.gossip.addresses import Address
from ampere.ln.gossip.signing import (
    make_channel_update, make_node_announcement, privkey_signer, sign_channel_announcement,
    unsigned_channel_announcement,
)
from ampere.ln.gossip.validate import expected_funding_script_pubkey


@dataclass(frozen=True)
class Key:
    priv: bytes
    pub: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> "Key":
        priv = sha256(seed)
        return cls(priv, coincurve.PrivateKey(priv).public_key.format(compressed=True))


@dataclass
class GossipFactory:
    chain_hash: bytes
    _signers: dict[bytes, object] = field(default_factory=dict)

    def node(self, i: int) -> Key:
        return Key.from_seed(b"ampere synthetic node %d" % i)

    def _signer(self, priv: bytes):
        s = self._signers.get(priv)
        if s is None:
            s = self._signers[priv] = privkey_signer(priv)
        return s

    def bitcoin_key(self, scid: int, node: Key) -> Key:
        return Key.from_seed(b"funding" + node.priv + int(scid).to_bytes(8, "big"))

    def channel_announcement(self, scid: int, a: Key, b: Key, capacity_sat: int,
                             features: bytes = b"") -> tuple[bytes, tuple[int, bytes]]:
        """The signed announcement and the (amount_sat, script_pubkey) its funding output has."""
        ba, bb = self.bitcoin_key(scid, a), self.bitcoin_key(scid, b)
        unsigned = unsigned_channel_announcement(chain_hash=self.chain_hash, short_channel_id=scid,
                                                 node_id_a=a.pub, node_id_b=b.pub, bitcoin_key_a=ba.pub,
                                                 bitcoin_key_b=bb.pub, features=features)
        first, second = (a, b) if unsigned.node_id_1 == a.pub else (b, a)
        bfirst, bsecond = (ba, bb) if first is a else (bb, ba)
        msg = sign_channel_announcement(unsigned, (self._signer(first.priv), self._signer(second.priv)),
                                        (self._signer(bfirst.priv), self._signer(bsecond.priv)))
        return msg.to_bytes(), (capacity_sat, expected_funding_script_pubkey(ba.pub, bb.pub))

    def channel_update(self, scid: int, frm: Key, to: Key, *, timestamp: int, fee_base_msat: int = 1000,
                       fee_proportional_millionths: int = 10, cltv_expiry_delta: int = 6,
                       htlc_minimum_msat: int = 0, htlc_maximum_msat: int = 990_000_000,
                       disabled: bool = False, dont_forward: bool = False) -> bytes:
        """`frm`'s update for its direction of the channel to `to`."""
        direction = 0 if frm.pub < to.pub else 1
        return make_channel_update(
            chain_hash=self.chain_hash, short_channel_id=scid, timestamp=timestamp, direction=direction,
            cltv_expiry_delta=cltv_expiry_delta, htlc_minimum_msat=htlc_minimum_msat,
            htlc_maximum_msat=htlc_maximum_msat, fee_base_msat=fee_base_msat,
            fee_proportional_millionths=fee_proportional_millionths, sign=self._signer(frm.priv),
            disabled=disabled, dont_forward=dont_forward).to_bytes()

    def node_announcement(self, node: Key, *, timestamp: int, alias: str = "", rgb_color: bytes = b"\x01\x02\x03",
                          addresses: list[Address] | bytes = (), features: bytes = b"") -> bytes:  # type: ignore[assignment]
        return make_node_announcement(node_id=node.pub, timestamp=timestamp, sign=self._signer(node.priv),
                                      alias=alias, rgb_color=rgb_color, features=features,
                                      addresses=addresses).to_bytes()


@dataclass
class SyntheticNetwork:
    nodes: list[Key]
    # In a receivable order: every announcement (with its capacity) before its updates.
    announcements: list[tuple[bytes, int]]
    updates: list[bytes]
    node_announcements: list[bytes]
    utxos: dict[int, tuple[int, bytes]]
    edges: list[tuple[int, int, int]]  # (scid, node index a, node index b)

    def utxo_lookup(self, scid: int) -> tuple[int, bytes] | None:
        return self.utxos.get(int(scid))


def random_network(factory: GossipFactory, *, n_nodes: int, n_channels: int, now: int, seed: int = 1,
                   first_block: int = 100) -> SyntheticNetwork:
    """A connected random network: a random tree first, then random extra channels."""
    if n_channels < n_nodes - 1:
        raise ValueError("need at least n_nodes - 1 channels to connect every node")
    rng = random.Random(seed)
    nodes = [factory.node(i) for i in range(n_nodes)]
    pairs: list[tuple[int, int]] = []
    order = list(range(n_nodes))
    rng.shuffle(order)
    for i in range(1, n_nodes):
        pairs.append((order[i], order[rng.randrange(i)]))
    while len(pairs) < n_channels:
        a, b = rng.randrange(n_nodes), rng.randrange(n_nodes)
        if a != b:
            pairs.append((a, b))
    anns, updates, utxos, edges = [], [], {}, []
    for k, (a, b) in enumerate(pairs):
        scid = int(ShortChannelId.from_parts(first_block + k // 50, k % 50, rng.randrange(2)))
        cap = rng.choice((200_000, 1_000_000, 5_000_000, 16_000_000))
        ann, utxo = factory.channel_announcement(scid, nodes[a], nodes[b], cap)
        anns.append((ann, cap))
        utxos[scid] = utxo
        edges.append((scid, a, b))
        for frm, to in ((a, b), (b, a)):
            updates.append(factory.channel_update(
                scid, nodes[frm], nodes[to], timestamp=now - rng.randrange(86_400),
                fee_base_msat=rng.choice((0, 1, 1000)), fee_proportional_millionths=rng.choice((1, 10, 100, 1000)),
                cltv_expiry_delta=rng.choice((6, 18, 40, 144)), htlc_maximum_msat=cap * 1000 * 9 // 10))
    node_anns = [factory.node_announcement(n, timestamp=now - rng.randrange(86_400), alias=f"node{i}")
                 for i, n in enumerate(nodes)]
    return SyntheticNetwork(nodes, anns, updates, node_anns, utxos, edges)
