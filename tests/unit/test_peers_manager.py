"""PeerManager in-process: two managers (or a manager and a raw BOLT 8 client) on one event loop,
over real sockets.  Covers the init exchange, BOLT 1 rules, keepalive and the per-peer limits."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import coincurve
import pytest

from ampere.node.net.connection import PeerAddress, PeerDisconnected
from ampere.node.errors import Reason
from ampere.node.net.peers import ConnectError, PeerConfig, PeerManager, parse_listen_address
from ampere.wire import bolt1
from ampere.wire.codec import decode_message
from ampere.wire.features import INIT_FEATURES, Features
from ampere.wire.messages import Init, Ping, Pong, Warning
from ampere.node.net.transport import connect_and_handshake


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Recorder:
    def __init__(self) -> None:
        self.logs: list[tuple[str, str, str]] = []
        self.notes: list[tuple[str, dict]] = []

    def log(self, level: str, source: str, msg: str) -> None:
        self.logs.append((level, source, msg))

    def notify(self, topic: str, payload: dict) -> None:
        self.notes.append((topic, payload))

    def topics(self, topic: str) -> list[dict]:
        return [p for t, p in self.notes if t == topic]

    def has_log(self, text: str) -> bool:
        return any(text in m for _, _, m in self.logs)


def make_pm(network: str = "regtest", listen: str | None = "127.0.0.1:0", **cfg) -> PeerManager:
    rec = Recorder()
    specs = [parse_listen_address(listen, 0, announce=False)] if listen else []
    config = PeerConfig(network=network, listen=specs, autolisten=False, **cfg)
    pm = PeerManager(os.urandom(32), config, log=rec.log, notify=rec.notify)
    pm.rec = rec  # type: ignore[attr-defined]
    return pm


def tcp_address(pm: PeerManager) -> PeerAddress:
    b = pm.bindings()[0]
    return PeerAddress("ipv4", b["address"], b["port"])


async def wait_for(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def raw_peer(pm: PeerManager, *, features: Features = INIT_FEATURES, chains=None, send_init: bool = True):
    """A hand-driven peer: TCP + BOLT 8 as initiator, then (optionally) the init exchange."""
    b = pm.bindings()[0]
    reader, writer = await asyncio.open_connection(b["address"], b["port"])
    key = os.urandom(32)
    t = await connect_and_handshake(reader, writer, key, pm.node_id, 5)
    if send_init:
        t.write_message(bolt1.make_init(features, chains or [bolt1.chain_hash("regtest")]).to_bytes())
        theirs = decode_message(await t.read_message())
        assert isinstance(theirs, Init)
    return t, coincurve.PrivateKey(key).public_key.format()


async def read_until_closed(t, timeout: float = 5.0) -> list:
    """Every message the other side sends until it hangs up."""
    got = []
    try:
        while True:
            got.append(decode_message(await asyncio.wait_for(t.read_message(), timeout)))
    except asyncio.TimeoutError:
        raise AssertionError(f"still connected after {timeout}s; got {got}")
    except Exception:
        return got


def test_connect_over_tcp_both_sides_see_each_other():
    async def main():
        a, b = make_pm(), make_pm()
        await a.start()
        await b.start()
        try:
            peer = await b.connect(a.node_id, tcp_address(a))
            assert peer.direction == "out" and peer.features == INIT_FEATURES
            await wait_for(lambda: a.num_peers() == 1)
            assert a.get(b.node_id).direction == "in"
            assert b.get(a.node_id).address == tcp_address(a)
            # connect notifications, CLN shape
            assert b.rec.topics("connect") == [{"id": a.node_id.hex(), "direction": "out",
                                                "address": tcp_address(a).to_json()}]
            (note,) = a.rec.topics("connect")
            assert note["direction"] == "in" and note["address"]["type"] == "ipv4"
            # localhost is private: no remote_addr without allow_localhost (BOLT 1 SHOULD NOT)
            assert b.get(a.node_id).remote_addr is None
            # connecting again returns the same connection
            assert await b.connect(a.node_id, tcp_address(a)) is peer
        finally:
            await a.stop()
            await b.stop()

    run(main())


def test_unix_socket_remote_addr_and_disconnect(tmp_path):
    async def main():
        path = os.path.join(tmp_path, "peer.sock")
        a = make_pm(listen=path)
        b = make_pm(allow_localhost=True)
        await a.start()
        await b.start()
        try:
            assert a.bindings() == [{"type": "local socket", "socket": path}]
            peer = await b.connect(a.node_id, PeerAddress("local socket", path=path))
            assert peer.address.to_json() == {"type": "local socket", "socket": path}
            await wait_for(lambda: a.num_peers() == 1)
            closed = []
            a.on_disconnect(lambda node_id, reason: closed.append(node_id))
            assert await b.disconnect(a.node_id)
            await wait_for(lambda: a.num_peers() == 0)
            assert closed == [b.node_id]
            assert a.rec.topics("disconnect") == [{"id": b.node_id.hex()}]
            assert b.rec.topics("disconnect") == [{"id": a.node_id.hex()}]
            assert not await b.disconnect(a.node_id)
            # with allow_localhost, an incoming TCP peer is told how we see it
            a2 = make_pm(allow_localhost=True)
            await a2.start()
            try:
                p = await b.connect(a2.node_id, tcp_address(a2))
                assert p.remote_addr is not None and p.remote_addr.startswith("127.0.0.1:")
            finally:
                await a2.stop()
        finally:
            await a.stop()
            await b.stop()
        assert not os.path.exists(path)  # the socket file is removed at stop

    run(main())


def test_message_handlers_send_and_order():
    async def main():
        a, b = make_pm(), make_pm()
        await a.start()
        await b.start()
        got = []

        async def slow_handler(peer_id, msg, raw):
            await asyncio.sleep(0.01)
            got.append(("custom", msg.type, msg.payload))

        a.add_message_handler([0x8001, 0x8000], slow_handler)
        a.add_message_handler([1], lambda peer_id, msg, raw: got.append(("warning", msg.data)))
        try:
            await b.connect(a.node_id, tcp_address(a))
            await b.send(a.node_id, b"\x80\x01one")
            await b.send(a.node_id, b"\x80\x00two")  # even, but a handler claims it: no disconnect
            await b.send(a.node_id, bolt1.make_warning("careful").to_bytes())
            await wait_for(lambda: len(got) == 3)
            assert got == [("custom", 0x8001, b"one"), ("custom", 0x8000, b"two"), ("warning", b"careful")]
            assert a.num_peers() == 1
            assert a.rec.has_log("Received warning from peer (all channels): careful")
            with pytest.raises(PeerDisconnected):
                await a.send(os.urandom(33), b"\x80\x01")
        finally:
            await a.stop()
            await b.stop()

    run(main())


def test_reconnect_replaces_old_connection():
    async def main():
        a, b = make_pm(), make_pm()
        await a.start()
        await b.start()
        try:
            first = await b.connect(a.node_id, tcp_address(a))
            await wait_for(lambda: a.num_peers() == 1)
            old_in = a.get(b.node_id)
            # b comes back on a fresh connection (e.g. after a restart): the new one wins
            await b.disconnect(a.node_id)
            second = await b.connect(a.node_id, tcp_address(a))
            assert second is not first
            await wait_for(lambda: a.get(b.node_id) is not None and a.get(b.node_id) is not old_in)
            assert a.num_peers() == 1
            assert len(a.rec.topics("connect")) == 2
        finally:
            await a.stop()
            await b.stop()

    run(main())


def test_network_mismatch_is_refused_with_an_error():
    async def main():
        a = make_pm("regtest")
        await a.start()
        try:
            t, _ = await raw_peer(a, send_init=False)
            t.write_message(bolt1.make_init(INIT_FEATURES, [bolt1.chain_hash("bitcoin")]).to_bytes())
            got = await read_until_closed(t)
            assert isinstance(got[0], Init)
            assert type(got[1]).__name__ == "Error" and b"No common chain" in got[1].data
            assert a.num_peers() == 0
            # and as initiator: the mainnet manager refuses our regtest node
            m = make_pm("bitcoin")
            await m.start()
            try:
                with pytest.raises(ConnectError) as e:
                    await a.connect(m.node_id, tcp_address(m))
                assert e.value.reason == Reason.CONNECT_DISCONNECTED_DURING
            finally:
                await m.stop()
        finally:
            await a.stop()

    run(main())


def test_unknown_even_feature_and_non_init_first_message():
    async def main():
        a = make_pm()
        await a.start()
        try:
            t, _ = await raw_peer(a, send_init=False)
            t.write_message(bolt1.make_init(INIT_FEATURES.with_feature(200, compulsory=True),
                                            [bolt1.chain_hash("regtest")]).to_bytes())
            got = await read_until_closed(t)
            assert isinstance(got[1], Warning) and b"bits [200]" in got[1].data
            # BOLT 1: init must come first
            t2, _ = await raw_peer(a, send_init=False)
            t2.write_message(Ping(num_pong_bytes=1, ignored=b"").to_bytes())
            got = await read_until_closed(t2)
            assert isinstance(got[-1], Warning) and b"expected init" in got[-1].data
            assert a.num_peers() == 0
        finally:
            await a.stop()

    run(main())


def test_odd_unknown_ignored_even_unknown_disconnects():
    async def main():
        a = make_pm()
        await a.start()
        try:
            t, their_id = await raw_peer(a)
            await wait_for(lambda: a.num_peers() == 1)
            t.write_message(b"\x80\x01hello")  # odd: ignored (custommsg notification)
            t.write_message(Ping(num_pong_bytes=3, ignored=b"").to_bytes())
            pong = decode_message(await asyncio.wait_for(t.read_message(), 5))
            assert isinstance(pong, Pong) and pong.ignored == bytes(3)
            assert a.rec.topics("custommsg") == [{"peer_id": their_id.hex(), "payload": "8001" + b"hello".hex()}]
            t.write_message(b"\x80\x02oops")  # even and unknown: BOLT 1 says close
            got = await read_until_closed(t)
            assert isinstance(got[-1], Warning) and b"unknown even message type 32770" in got[-1].data
            await wait_for(lambda: a.num_peers() == 0)
        finally:
            await a.stop()

    run(main())


def test_rpc_style_ping_and_keepalive_timeout():
    async def main():
        a = make_pm(ping_interval=0.2, pong_timeout=0.3)
        b = make_pm()
        await a.start()
        await b.start()
        try:
            peer = await b.connect(a.node_id, tcp_address(a))
            assert await peer.ping(10, 5) == 10
            assert await peer.ping(65533) == 0  # "no reply wanted"
            # a raw peer that never answers pings is hung up on by the keepalive
            t, _ = await raw_peer(a)
            got = await read_until_closed(t, timeout=5)
            assert any(isinstance(m, Ping) for m in got)
            assert a.rec.has_log("Last ping unreturned: hanging up")
            # while the well-behaved peer b (which answers pings) stays
            await asyncio.sleep(0.5)
            assert a.get(b.node_id) is not None
        finally:
            await a.stop()
            await b.stop()

    run(main())


def test_flooding_peer_is_cut_off_others_unaffected():
    async def main():
        a = make_pm(msg_rate=200, msg_burst=200, flood_cutoff=0.5)
        b = make_pm()
        await a.start()
        await b.start()
        try:
            good = await b.connect(a.node_id, tcp_address(a))
            t, _ = await raw_peer(a)
            start = time.monotonic()

            async def flood():
                try:
                    while True:
                        for _ in range(50):
                            t.write_message(b"\x80\x01" + bytes(100))
                        await t.drain()
                except (ConnectionError, OSError):
                    return

            flooder = asyncio.create_task(flood())
            await asyncio.sleep(0.2)
            assert await good.ping(4) == 4  # the good peer still gets answers mid-flood
            await asyncio.wait_for(flooder, 10)
            assert time.monotonic() - start < 5
            assert a.rec.has_log("flooding")
            assert a.get(b.node_id) is not None
        finally:
            await a.stop()
            await b.stop()

    run(main())


def test_hostile_handshakes_garbage_stall_truncated_and_bad_mac():
    async def main():
        a = make_pm(handshake_timeout=0.5)
        await a.start()
        port = a.bindings()[0]["port"]
        try:
            # garbage act one: closed at once, nothing sent back
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(os.urandom(50))
            assert await asyncio.wait_for(r.read(), 2) == b""
            # a stall in the middle of act one: cut off after the timeout
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"\x00" + os.urandom(20))
            start = time.monotonic()
            assert await asyncio.wait_for(r.read(), 3) == b""
            assert 0.4 < time.monotonic() - start < 2.5
            # a truncated frame after init
            t, _ = await raw_peer(a)
            await wait_for(lambda: a.num_peers() == 1)
            t.writer.write(os.urandom(10))
            t.writer.close()
            await wait_for(lambda: a.num_peers() == 0)
            assert a.rec.has_log("transport error")
            # a frame whose MAC does not verify
            t, _ = await raw_peer(a)
            await wait_for(lambda: a.num_peers() == 1)
            t.writer.write(os.urandom(18))
            await wait_for(lambda: a.num_peers() == 0)
            # and a peer that finishes BOLT 8 but never sends init
            t, _ = await raw_peer(a, send_init=False)
            got = await read_until_closed(t, timeout=3)
            assert isinstance(got[0], Init)
            assert a.rec.has_log("no init within")
        finally:
            await a.stop()

    run(main())


async def silent(port: int, source: str = "127.0.0.1"):
    """A TCP connection that never says anything (the attacker's half-open handshake)."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def honest(pm: PeerManager, source: str = "127.0.0.1"):
    b = pm.bindings()[0]
    reader, writer = await asyncio.open_connection(b["address"], b["port"], local_addr=(source, 0))
    t = await connect_and_handshake(reader, writer, os.urandom(32), pm.node_id, 5)
    t.write_message(bolt1.make_init(INIT_FEATURES, [bolt1.chain_hash("regtest")]).to_bytes())
    assert isinstance(decode_message(await asyncio.wait_for(t.read_message(), 5)), Init)
    return t


async def is_closed(reader: asyncio.StreamReader, timeout: float = 2.0) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), timeout) == b""
    except (asyncio.TimeoutError, ConnectionError):
        return False


def test_silent_connections_from_one_source_cannot_lock_out_a_peer_from_it():
    """Issue 16 item 2: per-source cap; at the cap the oldest silent connection is dropped, not the new one."""
    async def main():
        a = make_pm(max_pending_handshakes=1000, max_pending_per_source=4, handshake_timeout=60)
        await a.start()
        port = a.bindings()[0]["port"]
        try:
            idle = [await silent(port) for _ in range(40)]
            await wait_for(lambda: len(a._handshaking) == 4)
            assert all([await is_closed(r) for r, _ in idle[:36]])      # the oldest were dropped
            await honest(a)                                             # same source: still gets in
            await wait_for(lambda: a.num_peers() == 1)
            assert len(a._handshaking) <= 4
            for _, w in idle:
                w.close()
        finally:
            await a.stop()

    run(main())


def test_global_cap_drops_from_the_busiest_source_and_an_honest_source_connects():
    async def main():
        a = make_pm(max_pending_handshakes=6, max_pending_per_source=4, handshake_timeout=60)
        await a.start()
        port = a.bindings()[0]["port"]
        try:
            idle = [await silent(port, "127.0.0.2") for _ in range(4)] + [await silent(port, "127.0.0.3")
                                                                        for _ in range(2)]
            await wait_for(lambda: len(a._handshaking) == 6)
            await honest(a, "127.0.0.4")
            await wait_for(lambda: a.num_peers() == 1)
            assert await is_closed(idle[0][0])                           # the oldest of the busiest source
            assert not await is_closed(idle[4][0], 0.3)                  # the other source is untouched
            for _, w in idle:
                w.close()
        finally:
            await a.stop()

    run(main())


def test_under_pressure_the_handshake_timeout_is_short():
    async def main():
        a = make_pm(max_pending_handshakes=100, max_pending_per_source=10, handshake_timeout=60,
                    pressure_pending=3, pressure_handshake_timeout=0.3)
        await a.start()
        port = a.bindings()[0]["port"]
        try:
            old = [await silent(port, f"127.0.0.{i}") for i in (2, 3, 4)]
            await wait_for(lambda: len(a._handshaking) == 3)
            await asyncio.sleep(0.5)
            r, w = await silent(port, "127.0.0.5")                      # under pressure: the old ones go
            assert all([await is_closed(x) for x, _ in old])
            assert await is_closed(r, 2.0)                              # and the new one has 0.3 s too
            for _, x in old + [(r, w)]:
                x.close()
            await wait_for(lambda: len(a._handshaking) == 0)
            t, _ = await raw_peer(a)  # room again
            await wait_for(lambda: a.num_peers() == 1)
        finally:
            await a.stop()

    run(main())


def test_connect_failures_have_cln_codes(tmp_path):
    async def main():
        a = make_pm()
        await a.start()
        try:
            with pytest.raises(ConnectError) as e:
                await a.connect(coincurve.PrivateKey().public_key.format(), None)
            assert e.value.reason == Reason.CONNECT_NO_KNOWN_ADDRESS
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            with pytest.raises(ConnectError) as e:
                await a.connect(coincurve.PrivateKey().public_key.format(), PeerAddress("ipv4", "127.0.0.1", port))
            assert e.value.reason == Reason.CONNECT_ALL_ADDRESSES_FAILED and "Connection establishment" in e.value.message
            # the right address but the wrong key: the handshake fails
            b = make_pm()
            await b.start()
            try:
                with pytest.raises(ConnectError) as e:
                    await a.connect(coincurve.PrivateKey().public_key.format(), tcp_address(b))
                assert e.value.reason == Reason.CONNECT_ALL_ADDRESSES_FAILED and "Cryptographic handshake" in e.value.message
            finally:
                await b.stop()
            with pytest.raises(ConnectError) as e:
                await a.connect(coincurve.PrivateKey().public_key.format(),
                                PeerAddress("local socket", path=os.path.join(tmp_path, "nothing")))
            assert e.value.reason == Reason.CONNECT_ALL_ADDRESSES_FAILED
        finally:
            await a.stop()

    run(main())


def test_peer_that_does_not_read_is_cut_off_at_the_write_buffer_bound():
    """docs/limits.md: what we queue for one peer is bounded (max_write_buffer); a peer that stops reading is
    disconnected rather than growing our memory."""
    async def main():
        a = make_pm(max_write_buffer=256 * 1024)
        await a.start()
        try:
            t, their_id = await raw_peer(a)            # it never reads again
            await wait_for(lambda: a.get(their_id) is not None)
            peer = a.get(their_id)
            sent = 0
            with pytest.raises(PeerDisconnected):
                for _ in range(100_000):
                    peer.send_nowait(b"\x80\x01" + bytes(60_000))
                    sent += 1
                    await asyncio.sleep(0)
            assert sent * 60_000 < 64 * 1024 * 1024    # cut off long before (the kernel buffers take some)
            assert a.rec.has_log("not reading")
            await wait_for(lambda: a.get(their_id) is None)
        finally:
            await a.stop()

    run(main())
