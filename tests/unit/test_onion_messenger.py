"""The onion message runtime (ampere.node.net.onion_messages) in process, with a stand-in peer manager: relaying to the
next peer, dropping what cannot be relayed, the per-peer rate limit, and accepting replies only on the exact reply
path, only of the kind awaited."""

from __future__ import annotations

import asyncio
import os

from coincurve import PrivateKey

from ampere.ln.blinding import create_blinded_path, encode_encrypted_data
from ampere.ln.onion_message import create_onion_message
from ampere.node.net.onion_messages import OnionMessenger
from ampere.node.signer.signer import LocalSigner
from ampere.wire import decode_message


class FakePeers:
    def __init__(self, connected: list[bytes]) -> None:
        self.connected = set(connected)
        self.sent: list[tuple[bytes, bytes]] = []
        self.handler = None

    def add_message_handler(self, types, fn) -> None:
        self.handler = fn

    def on_disconnect(self, fn) -> None:
        pass

    def get(self, node_id: bytes):
        return object() if node_id in self.connected else None

    def connected_ids(self) -> list[bytes]:
        return list(self.connected)

    async def send(self, node_id: bytes, raw: bytes) -> None:
        self.sent.append((node_id, raw))


class FakeLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, level: str, source: str, msg: str) -> None:
        self.lines.append(msg)


class FakeNode:
    def __init__(self, connected: list[bytes]) -> None:
        self.node_key = PrivateKey(os.urandom(32))
        self.signer = LocalSigner(os.urandom(32), node_key=self.node_key.secret)
        self.node_id = self.signer.node_id
        self.peer_manager = FakePeers(connected)
        self.log = FakeLog()
        self.plugins = None
        self.channel_manager = None
        self.gossip = None

    def option(self, name, default=None):
        return default


def _key() -> PrivateKey:
    return PrivateKey(os.urandom(32))


def _to(node: FakeNode, *, final_data: dict | None = None, payload: dict | None = None, via_next: bytes | None = None):
    """A message arriving at `node`: for it (final), or to relay to `via_next`."""
    hops = []
    if via_next is not None:
        hops.append((node.node_id, encode_encrypted_data(next_node_id=via_next)))
        hops.append((via_next, encode_encrypted_data()))
    else:
        hops.append((node.node_id, encode_encrypted_data(**(final_data or {}))))
    return create_onion_message(create_blinded_path(os.urandom(32), hops), payload or {})[1]


def test_relay_and_drop():
    async def run() -> None:
        b = _key().public_key.format()
        c = _key().public_key.format()
        node = FakeNode(connected=[b])
        om = OnionMessenger(node)
        om.start()
        peer = _key().public_key.format()
        await node.peer_manager.handler(peer, _to(node, via_next=b), b"")
        assert [n for n, _ in node.peer_manager.sent] == [b]
        relayed = decode_message(node.peer_manager.sent[0][1])
        assert relayed.path_key != _to(node, via_next=b).path_key and len(relayed.onion_message_packet) == 1366
        await node.peer_manager.handler(peer, _to(node, via_next=c), b"")  # c is not connected
        assert len(node.peer_manager.sent) == 1 and om.stats["dropped"] == 1 and om.stats["relayed"] == 1

    asyncio.run(run())


def test_rate_limit_per_peer():
    async def run() -> None:
        node = FakeNode(connected=[])
        om = OnionMessenger(node, rate=0.001, burst=5)
        om.start()
        a, b = _key().public_key.format(), _key().public_key.format()
        msg = _to(node)
        for _ in range(10):
            await node.peer_manager.handler(a, msg, b"")
        await node.peer_manager.handler(b, msg, b"")  # another peer has its own bucket
        assert om.stats["rate_limited"] == 5 and om.stats["delivered"] == 6

    asyncio.run(run())


def test_replies_only_on_their_path_and_of_their_kind():
    async def run() -> None:
        node = FakeNode(connected=[])
        om = OnionMessenger(node)
        om.start()
        got_unsolicited = []
        om.on_payload("invoice", lambda rec, peer: got_unsolicited.append(rec))
        peer = _key().public_key.format()
        path_id = os.urandom(32)
        fut = om.expect_reply(path_id, "invoice")
        # An invoice with no path_id: not the reply (it goes to the unsolicited handler).
        await node.peer_manager.handler(peer, _to(node, payload={"invoice": b"x"}), b"")
        # The right path but the wrong kind: dropped.
        await node.peer_manager.handler(peer, _to(node, final_data={"path_id": path_id},
                                                  payload={"invoice_request": b"y"}), b"")
        # Another path_id: not the reply either.
        await node.peer_manager.handler(peer, _to(node, final_data={"path_id": os.urandom(32)},
                                                  payload={"invoice": b"z"}), b"")
        await asyncio.sleep(0.01)  # the handlers run in their own tasks
        assert not fut.done()
        assert [bytes(r.payload.invoice) for r in got_unsolicited] == [b"x", b"z"]
        # The reply.
        await node.peer_manager.handler(peer, _to(node, final_data={"path_id": path_id},
                                                  payload={"invoice": b"reply"}), b"")
        assert bytes((await asyncio.wait_for(fut, 1)).payload.invoice) == b"reply"
        # The path is used up: a second message on it is no reply.
        await node.peer_manager.handler(peer, _to(node, final_data={"path_id": path_id},
                                                  payload={"invoice": b"again"}), b"")
        await asyncio.sleep(0.01)  # the handlers run in their own tasks
        assert [bytes(r.payload.invoice) for r in got_unsolicited][-1] == b"again"

    asyncio.run(run())
