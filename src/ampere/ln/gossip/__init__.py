"""BOLT #7 gossip, without I/O: validation (validate.py), the network graph (graph.py), the gossip
store format (gossip_store.py; the file itself is ampere.node.gossip.store_file), gossip queries and the sync session (queries.py), and the signing of our
own announcements (signing.py).  The path finder is ampere.ln.route.

How the runtime wires it, per received gossip message `raw` (bytes) from a peer:

    verdict, msg = validator.check_raw(raw, now, utxo_lookup)     # or the two-step announcement check
    if isinstance(verdict, Accept):   apply to graph + store, queue for relay if verdict.relay
    elif isinstance(verdict, Warn):   send a `warning` (may disconnect)
    else:                             drop (validator.stats counts everything)
"""

from .graph import Channel, Graph, Half, Node, NodeInfo
from .gossip_store import StoreFormatError
from .validate import Accept, GossipValidator, Ignore, NoRateLimit, TokenBucket, Verdict, Warn

__all__ = [
    "Accept", "Channel", "GossipValidator", "Graph", "Half", "Ignore", "NoRateLimit", "Node", "NodeInfo",
    "StoreFormatError", "TokenBucket", "Verdict", "Warn",
]
