"""Onion messages at runtime: receiving, relaying (rate-limited per peer) and sending (BOLT 4).

    om = node.onion_messenger; om.start()          registers for `onion_message` (type 513)
    await om.send(path, payload, reply=True)      -> path_id of the reply path we attached (or None)
    om.expect_reply(path_id) -> Future[Received]  a reply that comes back by that reply path
    om.on_payload("invoice_request", fn)          fn(received, peer_id) for unsolicited payloads

Everything an incoming message can do wrong ends in a debug log line and the message dropped: BOLT 4
"MUST ignore the message" (nothing is ever answered to a relaying peer).  Replies are only accepted on
the exact reply path we gave (path_id), and only for the payload kind we asked for; a message that names
one of our reply paths but is not that reply is dropped ("Care must be taken that replies are only
accepted using the exact reply_path given, otherwise probing is possible").

Plugins: messages for us that are not replies go to the `onion_message_recv` hook; replies on a path we
published go to `onion_message_recv_secret` with its `pathsecret` (CLN's names and shapes).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ampere.ln.blinding import create_blinded_path, encode_encrypted_data, pad_encrypted_data
from ampere.ln.onion_message import Forward, OnionMessageError, Received, create_onion_message, peel_onion_message, prepend_hops
from ampere.wire import encode_message
from ampere.wire.messages import BlindedPath, OnionMessage
from ampere.node.app.tasks import cancel_and_wait, spawn_guarded

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node

SOURCE = "onion_messages"
ONION_MESSAGE_TYPE = 513

# Per-peer token bucket: BOLT 4 "MAY rate-limit messages by dropping them".  CLN's connectd allows a
# burst of 4 with one token back every 250 ms; we relay more (a bench measures it) but keep a bound
# so one peer cannot make us spend all our CPU on ECDH: 50 messages burst, 50/s sustained.
DEFAULT_RATE = 50.0
DEFAULT_BURST = 50.0
# Consecutive hops through ourselves peeled for one message before it is dropped.
MAX_LOCAL_HOPS = 20
# A reply we wait for is forgotten after this long (fetchinvoice's default timeout is 60 s).
REPLY_PATH_LIFETIME = 600.0


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class OnionMessenger:
    def __init__(self, node: Node, rate: float = DEFAULT_RATE, burst: float = DEFAULT_BURST) -> None:
        self.node = node
        self.rate = rate
        self.burst = burst
        self._buckets: dict[bytes, _Bucket] = {}
        self._replies: dict[bytes, tuple[str | None, asyncio.Future, float]] = {}
        self._handlers: dict[str, Callable] = {}
        self._tasks: set[asyncio.Task] = set()
        self.stats = {"received": 0, "relayed": 0, "delivered": 0, "dropped": 0, "rate_limited": 0}

    # ---- plumbing
    def _log(self, level: str, msg: str) -> None:
        log = self.node.log
        if log is not None:
            log.log(level, SOURCE, msg)

    def start(self) -> None:
        rate = self.node.option("dev-onion-message-rate", None)
        if rate:
            self.rate = self.burst = float(rate)
        self._log("debug", f"onion messages: {self.rate:g}/s per peer, burst {self.burst:g}")
        self.node.peer_manager.add_message_handler([ONION_MESSAGE_TYPE], self._on_message)
        self.node.peer_manager.on_disconnect(lambda peer_id, reason: self._buckets.pop(peer_id, None))

    async def close(self) -> None:
        for _, fut, _ in self._replies.values():
            if not fut.done():
                fut.cancel()
        await cancel_and_wait(self._tasks)

    def on_payload(self, kind: str, fn: Callable) -> None:
        """`fn(received: Received, peer_id: bytes)` for unsolicited messages carrying `kind`
        ("invoice_request", "invoice", "invoice_error")."""
        self._handlers[kind] = fn

    def _allow(self, peer_id: bytes) -> bool:
        now = time.monotonic()
        b = self._buckets.get(peer_id)
        if b is None:
            b = self._buckets[peer_id] = _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + (now - b.stamp) * self.rate)
        b.stamp = now
        if b.tokens < 1:
            return False
        b.tokens -= 1
        return True

    # ---- incoming
    async def _on_message(self, peer_id: bytes, msg: Any, raw: bytes) -> None:
        self.stats["received"] += 1
        if not isinstance(msg, OnionMessage):
            return
        if not self._allow(peer_id):
            self.stats["rate_limited"] += 1
            if self.stats["rate_limited"] % 100 == 1:
                self._log("debug", f"rate-limiting onion messages from {peer_id.hex()}")
            return
        await self._process(peer_id, msg)

    async def _process(self, peer_id: bytes, msg: OnionMessage) -> None:
        # A path may pass through us more than once in a row (our own reply path, or a path with us inside):
        # those hops are peeled here, in a loop, at most MAX_LOCAL_HOPS of them per message.
        for _ in range(MAX_LOCAL_HOPS):
            try:
                out = peel_onion_message(self.node.signer, msg)
            except OnionMessageError as e:
                self.stats["dropped"] += 1
                self._log("debug", f"dropped onion message from {peer_id.hex()}: {e}")
                return
            if not isinstance(out, Forward):
                self.stats["delivered"] += 1
                await self._deliver(peer_id, out)
                return
            next_id = self._next_peer(out)
            if next_id != self.node.node_id:
                await self._relay(next_id, out)
                return
            msg = out.message
        self.stats["dropped"] += 1
        self._log("debug", f"dropped onion message from {peer_id.hex()}: more than {MAX_LOCAL_HOPS} hops through us")

    def _next_peer(self, out: Forward) -> bytes | None:
        if out.next_node_id is not None:
            return out.next_node_id
        # BOLT 4: "if `short_channel_id` is present and corresponds to an announced short_channel_id or a local
        # alias for a channel: the *next peer* is the peer at the other end of that channel."
        mgr = self.node.channel_manager
        rec = mgr.find(int(out.next_short_channel_id)) if mgr is not None else None
        return rec.peer_id if rec is not None else None

    async def _relay(self, next_id: bytes | None, out: Forward) -> None:
        pm = self.node.peer_manager
        if next_id is None or pm.get(next_id) is None:
            self.stats["dropped"] += 1
            self._log("debug", "dropped onion message: next hop is not a connected peer")
            return
        try:
            await pm.send(next_id, encode_message(out.message))
            self.stats["relayed"] += 1
        except Exception as e:  # the peer went away: onion messages are unreliable
            self._log("debug", f"could not relay onion message to {next_id.hex()}: {e}")

    async def _deliver(self, peer_id: bytes, rec: Received) -> None:
        payload = rec.payload
        kind = next((k for k in ("invoice_request", "invoice", "invoice_error") if getattr(payload, k) is not None),
                    None)
        if rec.path_id is not None and rec.path_id in self._replies:
            want, fut, _ = self._replies[rec.path_id]
            if want is not None and kind not in (want, "invoice_error"):
                self._log("debug", f"dropped onion message on a reply path: {kind} is not the awaited {want}")
                return
            del self._replies[rec.path_id]
            if not fut.done():
                fut.set_result(rec)
            self._spawn(self._hook("onion_message_recv_secret", rec, secret=rec.path_id))
            return
        # BOLT 4: "otherwise (unknown or unset `path_id`) ... MUST respond (or not respond) exactly as if it did
        # not send the initial onion message": an unknown path_id is treated as none.
        handler = self._handlers.get(kind) if kind is not None else None
        if handler is not None:
            # In its own task: answering (an invoice stored, then sent) must not hold up the peer's next messages,
            # which wait for this handler to return.
            self._spawn(self._run_handler(handler, kind, rec, peer_id))
            return
        plugins = self.node.plugins
        if plugins is None or not plugins.has_hook("onion_message_recv"):
            self._log("debug", f"onion message for us ({kind or 'no payload'}) with nobody to take it: ignored")
            return
        self._spawn(self._hook("onion_message_recv", rec))

    async def _run_handler(self, handler: Callable, kind: str, rec: Received, peer_id: bytes) -> None:
        try:
            result = handler(rec, peer_id)
            if asyncio.iscoroutine(result):
                await result
        except Exception as e:
            self._log("unusual", f"{kind} handler failed: {e!r}")

    def _spawn(self, coro: Any) -> None:
        spawn_guarded(self._tasks, coro, "onion message task", lambda m: self._log("broken", m))

    async def _hook(self, name: str, rec: Received, secret: bytes | None = None) -> None:
        plugins = self.node.plugins
        if plugins is None or not plugins.has_hook(name):
            return
        await plugins.call_hook(name, {"onion_message": hook_json(rec, secret)})

    # ---- outgoing
    def expect_reply(self, path_id: bytes, kind: str | None) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        now = time.monotonic()
        for pid, (_, f, t) in list(self._replies.items()):
            if now - t > REPLY_PATH_LIFETIME or f.done():
                del self._replies[pid]
        self._replies[path_id] = (kind, fut, now)
        return fut

    def forget_reply(self, path_id: bytes) -> None:
        self._replies.pop(path_id, None)

    def reply_path(self, via: bytes | None, path_id: bytes) -> BlindedPath:
        """A blinded path back to us: through `via` (a connected peer) when given, else just us."""
        me = self.node.node_id
        if via is None or via == me:
            return create_blinded_path(os.urandom(32), [(me, encode_encrypted_data(path_id=path_id))])
        datas = pad_encrypted_data([encode_encrypted_data(next_node_id=me), encode_encrypted_data(path_id=path_id)])
        return create_blinded_path(os.urandom(32), [(via, datas[0]), (me, datas[1])])

    async def send(self, path: BlindedPath, payload: dict, *, reply_kind: str | None = None,
                   expect_reply: bool = False) -> tuple[bytes | None, asyncio.Future | None]:
        """Send `payload` (onionmsg_tlv fields for the final hop) along `path`.  If `expect_reply`, a reply
        path through our first hop comes with it; returns (path_id, future of the reply)."""
        path = await self._reachable(path)
        first = path.first_node_id.pubkey
        path_id = fut = None
        if expect_reply:
            path_id = os.urandom(32)
            payload = dict(payload)
            payload["reply_path"] = self.reply_path(first, path_id)
            fut = self.expect_reply(path_id, reply_kind)
        first_id, message = create_onion_message(path, payload)
        if first_id == self.node.node_id:
            await self._process(first_id, message)
        else:
            await self.node.peer_manager.send(first_id, encode_message(message))
        return path_id, fut

    async def _reachable(self, path: BlindedPath) -> BlindedPath:
        """`path` starting at a connected peer: if its introduction node is not one, go through the public graph
        to it (our own unblinded-for-us hops, joined with next_path_key_override), else connect to it directly
        (allowed by the issue, as CLN does)."""
        if path.first_node_id.pubkey is None:
            path = self._resolve_scid(path)
        intro = path.first_node_id.pubkey
        pm = self.node.peer_manager
        if intro == self.node.node_id or pm.get(intro) is not None:
            return path
        hops = self._graph_hops(intro)
        if hops:
            return prepend_hops(os.urandom(32), hops, path)
        address = self._address_of(intro)
        if address is None:
            raise LookupError(f"no path to {intro.hex()} and no address to connect to")
        await pm.connect(intro, address)
        return path

    def _resolve_scid(self, path: BlindedPath) -> BlindedPath:
        from ampere.wire.types import SciddirOrPubkey

        first = path.first_node_id
        gossip = self.node.gossip
        ch = gossip.state.graph.channel(int(first.scid)) if gossip is not None else None
        if ch is None:
            raise LookupError(f"unknown introduction channel {first.scid}")
        node = ch.node(first.direction)
        return BlindedPath(first_node_id=SciddirOrPubkey(pubkey=node), first_path_key=path.first_path_key,
                           path=path.path)

    def _graph_hops(self, target: bytes) -> list[bytes]:
        """Node ids from a connected peer up to (not including) `target`, by breadth-first search over the
        public channel graph; [] if none."""
        gossip = self.node.gossip
        if gossip is None:
            return []
        graph = gossip.state.graph
        pm = self.node.peer_manager
        starts = [p for p in pm.connected_ids()]
        prev: dict[bytes, bytes | None] = {p: None for p in starts}
        queue = list(starts)
        neighbours = _neighbour_map(graph)
        while queue:
            node = queue.pop(0)
            if node == target:
                path = []
                cur = prev[node]
                while cur is not None:
                    path.append(cur)
                    cur = prev[cur]
                # path is from target's predecessor back to a start: reverse it
                hops = list(reversed(path))
                return hops if hops else []
            for nxt in neighbours.get(node, ()):
                if nxt not in prev and nxt != self.node.node_id:
                    prev[nxt] = node
                    queue.append(nxt)
        return []

    def _address_of(self, node_id: bytes) -> Any:
        gossip = self.node.gossip
        if gossip is None:
            return None
        from ampere.ln.gossip.addresses import parse_addresses
        from ampere.node.net.connection import PeerAddress

        node = gossip.state.graph.node(node_id)
        if node is None or node.info is None:
            return None
        for addr in parse_addresses(node.info.addresses_raw):
            j = addr.to_json()
            if j.get("type") in ("ipv4", "ipv6"):
                return PeerAddress(j["type"], j["address"], int(j["port"]))
        return None


def _neighbour_map(graph: Any) -> dict[bytes, set[bytes]]:
    out: dict[bytes, set[bytes]] = {}
    for ch in graph.channels.values():
        a, b = ch.node1, ch.node2
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    return out


def blinded_path_json(path: BlindedPath, hops_key: str = "hops", extra: dict | None = None) -> dict:
    """A blinded path as CLN prints it: the introduction node (id, or scid and direction), the first path key,
    `extra` fields (decode's payinfo), then the hops under `hops_key` ("hops" in hooks, "path" in decode)."""
    out: dict[str, Any] = {}
    first = path.first_node_id
    if first.pubkey is not None:
        out["first_node_id"] = first.pubkey.hex()
    else:
        from ampere.ln.invoice_fields import scid_to_str

        out["first_scid"] = scid_to_str(int(first.scid))
        out["first_scid_dir"] = first.direction
    out["first_path_key"] = path.first_path_key.hex()
    out.update(extra or {})
    out[hops_key] = [{"blinded_node_id": h.blinded_node_id.hex(),
                      "encrypted_recipient_data": h.encrypted_recipient_data.hex()} for h in path.path]
    return out


def hook_json(rec: Received, secret: bytes | None = None) -> dict:
    """CLN's onion_message_recv(_secret) `onion_message` object."""
    p = rec.payload
    out: dict[str, Any] = {}
    if secret is not None:
        out["pathsecret"] = secret.hex()
    if p.reply_path is not None:
        out["reply_blindedpath"] = blinded_path_json(p.reply_path)
    for name in ("invoice_request", "invoice", "invoice_error"):
        value = getattr(p, name)
        if value is not None:
            out[name] = bytes(value).hex()
    unknown = [{"number": t, "value": bytes(v).hex()} for t, v in p.unknown]
    if unknown:
        out["unknown_fields"] = unknown
    return out



