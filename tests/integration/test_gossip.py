"""The gossip runtime in a real ampd on amp-chaind: gossip from a raw BOLT 8 test peer about channels
whose funding outputs really exist on the chain (2-of-2 P2WSH outputs funded from the faucet, with
short_channel_ids taken from their block positions).

Covers: listchannels / listnodes / getroute over received gossip; relay to other peers; addgossip;
hostile gossip (bad signature, missing funding output, update flood) rejected, counted, not stored;
a second ampd learning the graph with gossip_queries; spent channels forgotten after 12 blocks;
stale channels pruned; the graph surviving a restart.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from decimal import Decimal

import coincurve
import pytest
from pyln.client import RpcError

sys.path.insert(0, os.path.dirname(__file__))
from chainutil import sync, wait_for  # noqa: E402

from ampere.ln.channel.scripts import funding_script, funding_witness  # noqa: E402
from ampere.ln.gossip.signing import (  # noqa: E402
    make_channel_update, make_node_announcement, privkey_signer, sign_channel_announcement,
    unsigned_channel_announcement,
)
from ampere.ln.gossip.addresses import Address, IPV4  # noqa: E402
from ampere.primitives.crypto import sha256  # noqa: E402
from ampere.node.signer.signer import LocalSigner  # noqa: E402
from ampere.primitives.script import address_to_script, p2wsh, script_to_address  # noqa: E402
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut, bip143_sighash, ecdsa_sign  # noqa: E402
from ampere.wire import bolt1  # noqa: E402
from ampere.wire.codec import decode_message  # noqa: E402
from ampere.wire.features import INIT_FEATURES  # noqa: E402
from ampere.wire.messages import Init, Ping, Pong  # noqa: E402
from ampere.node.net.transport import connect_and_handshake  # noqa: E402
from ampere.wire.types import ShortChannelId  # noqa: E402

CHAIN = bolt1.chain_hash("regtest")
CHANNEL_ANNOUNCEMENT, NODE_ANNOUNCEMENT, CHANNEL_UPDATE = 256, 257, 258


# ---- keys, funding outputs and signed gossip ------------------------------------------------------


class Key:
    def __init__(self, seed: str) -> None:
        self.priv = sha256(seed.encode())
        self.pub = coincurve.PrivateKey(self.priv).public_key.format(compressed=True)
        self.sign = privkey_signer(self.priv)


class Chan:
    """A channel between two synthetic nodes with a real 2-of-2 funding output on amp-chaind."""

    def __init__(self, a: Key, b: Key, tag: str, capacity_sat: int) -> None:
        self.a, self.b = a, b
        self.ba, self.bb = Key(tag + "/funding-a"), Key(tag + "/funding-b")
        self.capacity_sat = capacity_sat
        self.script = funding_script(self.ba.pub, self.bb.pub)
        self.txid = ""
        self.vout = -1
        self.scid = ShortChannelId(0)

    def fund(self, chaind) -> None:
        addr = script_to_address(p2wsh(self.script), "regtest")
        self.txid = chaind.rpc("sendtoaddress", addr, Decimal(self.capacity_sat) / 100_000_000)

    def locate(self, chaind) -> None:
        """The real short_channel_id: block height, position in the block, output index."""
        tx = chaind.rpc("getrawtransaction", self.txid, True)
        self.vout = next(o["n"] for o in tx["vout"] if o["scriptPubKey"]["hex"] == p2wsh(self.script).hex())
        block = chaind.rpc("getblock", tx["blockhash"], 1)
        self.scid = ShortChannelId.from_parts(block["height"], block["tx"].index(self.txid), self.vout)

    def announcement(self, *, corrupt: bool = False) -> bytes:
        u = unsigned_channel_announcement(chain_hash=CHAIN, short_channel_id=self.scid, node_id_a=self.a.pub,
                                          node_id_b=self.b.pub, bitcoin_key_a=self.ba.pub, bitcoin_key_b=self.bb.pub)
        first, second = (self.a, self.b) if u.node_id_1 == self.a.pub else (self.b, self.a)
        bfirst, bsecond = (self.ba, self.bb) if first is self.a else (self.bb, self.ba)
        raw = sign_channel_announcement(u, (first.sign, second.sign), (bfirst.sign, bsecond.sign)).to_bytes()
        if corrupt:  # flip a bit of node_signature_1
            raw = raw[:10] + bytes([raw[10] ^ 1]) + raw[11:]
        return raw

    def update(self, frm: Key, *, timestamp: int, fee_base_msat: int = 1000, ppm: int = 10, cltv: int = 6,
               disabled: bool = False) -> bytes:
        to = self.b if frm is self.a else self.a
        return make_channel_update(chain_hash=CHAIN, short_channel_id=self.scid, timestamp=timestamp,
                                   direction=0 if frm.pub < to.pub else 1, cltv_expiry_delta=cltv,
                                   htlc_minimum_msat=0, htlc_maximum_msat=self.capacity_sat * 1000,
                                   fee_base_msat=fee_base_msat, fee_proportional_millionths=ppm, sign=frm.sign,
                                   disabled=disabled).to_bytes()

    def gossip(self, now: int) -> list[bytes]:
        return [self.announcement(), self.update(self.a, timestamp=now), self.update(self.b, timestamp=now)]

    def spend(self, chaind) -> str:
        """Spend the funding output (we hold both keys) back to the faucet."""
        amount = self.capacity_sat
        tx = Transaction(inputs=[TxIn(OutPoint.from_hex(self.txid, self.vout))],
                         outputs=[TxOut(amount - 1000, address_to_script(chaind.faucet_address(), "regtest"))])
        digest = bip143_sighash(tx, 0, self.script, amount)
        sig_a = ecdsa_sign(coincurve.PrivateKey(self.ba.priv), digest) + b"\x01"
        sig_b = ecdsa_sign(coincurve.PrivateKey(self.bb.priv), digest) + b"\x01"
        tx.inputs[0].witness = funding_witness(self.ba.pub, sig_a, self.bb.pub, sig_b)
        return chaind.rpc("sendrawtransaction", tx.serialize().hex())


def node_announcement(key: Key, alias: str, timestamp: int) -> bytes:
    return make_node_announcement(node_id=key.pub, timestamp=timestamp, sign=key.sign, alias=alias,
                                  rgb_color=b"\x11\x22\x33", addresses=[Address(IPV4, "10.1.2.3", 9735)]).to_bytes()


def make_channels(chaind, specs: list[tuple[Key, Key, int]], tag: str) -> list[Chan]:
    chans = [Chan(a, b, f"{tag}/{i}", cap) for i, (a, b, cap) in enumerate(specs)]
    for c in chans:
        c.fund(chaind)
    chaind.mine(6)  # BOLT #7: announced once the funding has six confirmations
    for c in chans:
        c.locate(chaind)
    return chans


# ---- a raw BOLT 8 peer, driven from the test thread ------------------------------------------------


class RawPeer:
    """A BOLT 8 connection to ampd run on its own event loop thread: sends what the test gives it,
    collects what ampd sends (answering pings), so the test can check relays."""

    def __init__(self, port: int, node_id: str, gossip_queries: bool = False) -> None:
        self.port, self.node_id = port, bytes.fromhex(node_id)
        feats = INIT_FEATURES if gossip_queries else INIT_FEATURES.without_feature("gossip_queries")
        self.features = feats
        self.received: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.t = self._run(self._connect())

    def _run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _connect(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        t = await connect_and_handshake(reader, writer, os.urandom(32), self.node_id, 20)
        t.write_message(bolt1.make_init(self.features, [CHAIN]).to_bytes())
        assert isinstance(decode_message(await asyncio.wait_for(t.read_message(), 20)), Init)
        self.reader_task = asyncio.ensure_future(self._read(t))
        return t

    async def _read(self, t) -> None:
        try:
            while True:
                raw = await t.read_message()
                if raw[:2] == (18).to_bytes(2, "big"):
                    ping = decode_message(raw)
                    assert isinstance(ping, Ping)
                    t.write_message(Pong(ignored=bytes(ping.num_pong_bytes)).to_bytes())
                    continue
                self.received.append(raw)
        except Exception:
            pass

    def send(self, msgs: list[bytes]) -> None:
        async def go():
            for m in msgs:
                self.t.write_message(m)
            await self.t.drain()

        self._run(go())

    def of_type(self, t: int) -> list[bytes]:
        return [m for m in list(self.received) if int.from_bytes(m[:2], "big") == t]

    def close(self) -> None:
        async def go():
            self.reader_task.cancel()
            self.t.close()

        try:
            self._run(go(), 5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


@pytest.fixture
def peers():
    made: list[RawPeer] = []

    def make(*args, **kwargs) -> RawPeer:
        p = RawPeer(*args, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def tcp_port(node) -> int:
    (binding,) = [b for b in node.rpc.getinfo()["binding"] if b["type"] == "ipv4"]
    return binding["port"]


def gossip_node(node_factory_chain, **opts):
    opts.setdefault("bind-addr", "127.0.0.1:0")
    opts.setdefault("dev-fast-gossip", True)
    return node_factory_chain.get_node(**opts)


def chans_of(node, **filt) -> list[dict]:
    return node.rpc.listchannels(**filt)["channels"]


def stats(node) -> dict:
    return node.rpc.call("dev-gossipstats")


# ---- tests ------------------------------------------------------------------------------------------


def test_peer_gossip_graph_rpcs_relay_and_restart(node_factory_chain, chaind, peers):
    chaind.mine(101)
    A, B, C = Key("A"), Key("B"), Key("C")
    ab, bc = make_channels(chaind, [(A, B, 1_000_000), (B, C, 2_000_000)], "g1")
    l1 = gossip_node(node_factory_chain)
    sync(l1, chaind)
    sender = peers(tcp_port(l1), l1.rpc.getinfo()["id"])
    watcher = peers(tcp_port(l1), l1.rpc.getinfo()["id"])  # an older peer (no gossip_queries): gets relays
    now = int(time.time())
    sender.send(ab.gossip(now) + bc.gossip(now) + [node_announcement(k, f"node-{n}", now) for n, k in
                                                   (("a", A), ("b", B), ("c", C))])
    wait_for(lambda: len(chans_of(l1)) == 4 and len(l1.rpc.listnodes()["nodes"]) == 3
             and all("alias" in n for n in l1.rpc.listnodes()["nodes"]), 10, "graph from gossip")

    # listchannels: CLN's shape, real capacities, filters.
    (ab_dir0,) = [c for c in chans_of(l1, short_channel_id=str(ab.scid)) if c["direction"] == 0]
    assert ab_dir0["amount_msat"] == 1_000_000_000 and ab_dir0["public"] and ab_dir0["active"]
    assert ab_dir0["base_fee_millisatoshi"] == 1000 and ab_dir0["fee_per_millionth"] == 10 and ab_dir0["delay"] == 6
    assert {c["short_channel_id"] for c in chans_of(l1, source=B.pub.hex())} == {str(ab.scid), str(bc.scid)}
    assert [c["source"] for c in chans_of(l1, destination=C.pub.hex())] == [B.pub.hex()]
    assert chans_of(l1, short_channel_id="1x2x3") == []
    with pytest.raises(RpcError) as e:
        l1.rpc.listchannels(short_channel_id=str(ab.scid), source=A.pub.hex())
    assert e.value.error["code"] == -32602 and "Can only specify one of" in e.value.error["message"]
    (node_b,) = l1.rpc.listnodes(B.pub.hex())["nodes"]
    assert node_b["alias"] == "node-b" and node_b["color"] == "112233"
    assert node_b["addresses"] == [{"type": "ipv4", "address": "10.1.2.3", "port": 9735}]

    # getroute over the gossip: A -> B -> C; B charges 1000msat + 10ppm on what it forwards.
    route = l1.rpc.getroute(C.pub.hex(), 100_000_000, 1, fromid=A.pub.hex())["route"]
    assert [(h["id"], h["channel"]) for h in route] == [(B.pub.hex(), str(ab.scid)), (C.pub.hex(), str(bc.scid))]
    assert route[0]["amount_msat"] == 100_000_000 + 1000 + 1000 and route[1]["amount_msat"] == 100_000_000
    assert route[0]["delay"] == 9 + 6 and route[1]["delay"] == 9
    with pytest.raises(RpcError) as e:
        l1.rpc.getroute(C.pub.hex(), 1000, 1, fromid=A.pub.hex(), exclude=[f"{bc.scid}/{route[1]['direction']}"])
    assert e.value.error["code"] == 205 and e.value.error["message"] == "Could not find a route"
    with pytest.raises(RpcError) as e:
        l1.rpc.getroute(C.pub.hex(), 1000, 1)  # from l1 itself: it has no public channel
    assert e.value.error["code"] == -32602 and "unknown source node_id" in e.value.error["message"]
    with pytest.raises(RpcError) as e:
        l1.rpc.getroute(C.pub.hex(), 1000, 1, fromid=A.pub.hex(), exclude=["nonsense"])
    assert e.value.error["code"] == -32602

    # Relayed to the other peer within the broadcast interval, each announcement before its updates.
    wait_for(lambda: len(watcher.of_type(CHANNEL_UPDATE)) == 4 and len(watcher.of_type(NODE_ANNOUNCEMENT)) == 3,
             10, "relay to the watcher")
    order = [m[:2] for m in watcher.received if int.from_bytes(m[:2], "big") in (256, 257, 258)]
    first_update = order.index(CHANNEL_UPDATE.to_bytes(2, "big"))
    assert order[first_update - 1] == CHANNEL_ANNOUNCEMENT.to_bytes(2, "big")
    assert len(watcher.of_type(CHANNEL_ANNOUNCEMENT)) == 2
    assert not sender.of_type(CHANNEL_UPDATE), "gossip is not echoed to the peer that sent it"

    # addgossip: a third channel C-D through RPC; invalid gossip is an error.
    D = Key("D")
    (cd,) = make_channels(chaind, [(C, D, 500_000)], "g1b")
    sync(l1, chaind)
    for raw in cd.gossip(now):
        assert l1.rpc.addgossip(raw.hex()) == {}
    assert len(chans_of(l1, short_channel_id=str(cd.scid))) == 2
    with pytest.raises(RpcError) as e:
        l1.rpc.addgossip(cd.update(C, timestamp=now + 5)[:-8].hex())  # truncated
    assert e.value.error["code"] == -1
    with pytest.raises(RpcError) as e:
        l1.rpc.addgossip("0012" + "00" * 4)  # a ping is not gossip
    assert e.value.error["code"] == -1
    with pytest.raises(RpcError) as e:
        l1.rpc.addgossip("zz")
    assert e.value.error["code"] == -32602

    # Restart: the graph comes back from the gossip_store.
    before = sorted((c["short_channel_id"], c["direction"], c["last_update"]) for c in chans_of(l1))
    l1.restart()
    assert sorted((c["short_channel_id"], c["direction"], c["last_update"]) for c in chans_of(l1)) == before
    assert len(l1.rpc.listnodes()["nodes"]) == 4 and l1.rpc.listnodes(A.pub.hex())["nodes"][0]["alias"] == "node-a"
    assert "gossip_store: 3 channels, 6 updates, 3 nodes" in l1.logs()
    # ... through the graph cache the clean stop wrote; routes use it at once.
    assert "nodes loaded in" in l1.logs() and "(graph cache)" in l1.logs()
    assert l1.rpc.getroute(D.pub.hex(), 1000, 1, fromid=A.pub.hex())["route"][-1]["channel"] == str(cd.scid)

    # kill -9 while a graph cache is written (--dev-crash-before=gossip_cache: its file written, not yet renamed
    # into place): the cache left is stale, and the next start loads the store, the newest update included.
    l1.options.update({"dev-crash-before": "gossip_cache"})
    l1.restart()
    assert l1.rpc.addgossip(cd.update(C, timestamp=now + 30).hex()) == {}
    l1.stop()
    assert "dev-crash-before gossip_cache: killing ourselves" in l1.logs()
    assert os.path.exists(os.path.join(l1.netdir, "gossip_store.cache.tmp"))
    l1.options.pop("dev-crash-before")
    l1.start()
    [load] = [line for line in l1.logs().splitlines() if "gossip_store: " in line]
    assert "3 channels, 6 updates, 3 nodes" in load and "(graph cache)" not in load
    assert now + 30 in [c["last_update"] for c in chans_of(l1, short_channel_id=str(cd.scid))]
    assert l1.rpc.getroute(D.pub.hex(), 1000, 1, fromid=A.pub.hex())["route"][-1]["channel"] == str(cd.scid)


def test_hostile_gossip_rejected_counted_not_stored(node_factory_chain, chaind, peers):
    chaind.mine(101)
    A, B, C = Key("hA"), Key("hB"), Key("hC")
    good, other = make_channels(chaind, [(A, B, 1_000_000), (B, C, 1_000_000)], "h")
    l1 = gossip_node(node_factory_chain)
    sync(l1, chaind)
    store = os.path.join(l1.netdir, "gossip_store")
    p = peers(tcp_port(l1), l1.rpc.getinfo()["id"])
    now = int(time.time())

    # 1. A channel_announcement whose signature does not verify.
    p.send([other.announcement(corrupt=True), other.update(B, timestamp=now)])
    # 2. A channel whose funding output does not exist (a block position with no such output).
    ghost = Chan(A, C, "h/ghost", 1_000_000)
    ghost.scid = ShortChannelId.from_parts(good.scid.block, good.scid.txindex, 7)
    p.send([ghost.announcement(), ghost.update(A, timestamp=now)])
    # ... and one past the chain tip.
    ghost2 = Chan(A, C, "h/ghost2", 1_000_000)
    ghost2.scid = ShortChannelId.from_parts(good.scid.block + 500, 1, 0)
    p.send([ghost2.announcement()])
    wait_for(lambda: stats(l1)["counts"].get("rejected", 0) >= 5, 10, "rejections")
    s = stats(l1)
    assert s["validator"]["channel_announcement:bad_signature"] == 1
    assert s["validator"]["channel_announcement:no_funding_output"] == 2
    assert s["validator"]["channel_update:unknown_channel"] == 2
    assert chans_of(l1) == [] and l1.rpc.listnodes()["nodes"] == []
    assert os.path.getsize(store) == 8, "nothing was stored"

    # 3. A flood of channel_updates for a real channel: the rate limit takes a handful, the rest
    # is dropped (and counted), the store does not grow with them, and the node keeps answering.
    p.send(good.gossip(now))
    wait_for(lambda: len(chans_of(l1)) == 2, 10, "the real channel")
    size_before = os.path.getsize(store)
    flood = [good.update(A, timestamp=now + i, fee_base_msat=i) for i in range(1, 401)]
    t0 = time.time()
    p.send(flood)
    for _ in range(5):
        assert l1.rpc.getinfo()["id"]
    wait_for(lambda: stats(l1)["counts"].get("received", 0) >= 3 + 4 + 401, 20, "flood processed")
    s = stats(l1)
    accepted = s["validator"]["channel_update:accept"] - 2
    assert 1 <= accepted <= 4 and s["validator"]["channel_update:rate_limited"] == 400 - accepted
    assert time.time() - t0 < 15
    (a_dir,) = [c for c in chans_of(l1, source=A.pub.hex())]
    assert a_dir["base_fee_millisatoshi"] == accepted  # the last update the limit let through
    assert os.path.getsize(store) - size_before < 5 * 300, "the flood was not stored"
    # Bad signatures are answered with a warning (BOLT #7), the connection stays up.
    assert any(m[:2] == b"\x00\x01" for m in p.received)
    assert l1.rpc.listpeers()["peers"]

    # 4. The chain backend is down: an announcement cannot be checked, so it is not taken (and
    # addgossip says why); once the backend is back, the same message is accepted.
    chaind.stop()
    with pytest.raises(RpcError) as e:
        l1.rpc.addgossip(other.announcement().hex())
    assert e.value.error["code"] == -1 and "lookup_failed" in e.value.error["message"]
    assert chans_of(l1, short_channel_id=str(other.scid)) == []
    chaind.start()
    assert l1.rpc.addgossip(other.announcement().hex()) == {}
    assert l1.rpc.listnodes(C.pub.hex())["nodes"][0]["nodeid"] == C.pub.hex()


def test_second_node_learns_graph_with_gossip_queries(node_factory_chain, chaind, peers):
    chaind.mine(101)
    keys = [Key(f"q{i}") for i in range(5)]
    chans = make_channels(chaind, [(keys[i], keys[i + 1], 1_000_000 + i) for i in range(4)], "q")
    l1 = gossip_node(node_factory_chain)
    l2 = gossip_node(node_factory_chain)
    sync(l1, chaind)
    sync(l2, chaind)
    now = int(time.time())
    for c in chans:
        for raw in c.gossip(now):
            l1.rpc.addgossip(raw.hex())
    for i, k in enumerate(keys):
        l1.rpc.addgossip(node_announcement(k, f"q{i}", now).hex())
    assert len(chans_of(l1)) == 8

    # l2 connects: it runs query_channel_range / query_short_channel_ids with l1 and learns it all.
    l2.rpc.connect(l1.rpc.getinfo()["id"], "127.0.0.1", tcp_port(l1))
    wait_for(lambda: len(chans_of(l2)) == 8 and sum("alias" in n for n in l2.rpc.listnodes()["nodes"]) == 5,
             15, "l2 learns the graph")
    def view(node):
        return sorted((c["short_channel_id"], c["direction"], c["last_update"], c["amount_msat"])
                      for c in chans_of(node))

    assert view(l2) == view(l1)
    assert "Gossip sync with" in l2.wait_for_log("done:")
    route = l2.rpc.getroute(keys[4].pub.hex(), 10_000, 1, fromid=keys[0].pub.hex())["route"]
    assert [h["channel"] for h in route] == [str(c.scid) for c in chans]

    # New gossip reaching l1 afterwards is relayed to l2 (its timestamp filter asks for it).
    upd = chans[0].update(keys[0], timestamp=int(time.time()) + 60, fee_base_msat=4242)
    l1.rpc.addgossip(upd.hex())
    wait_for(lambda: any(c["base_fee_millisatoshi"] == 4242 for c in chans_of(l2, source=keys[0].pub.hex())),
             10, "relayed update")

    # A peer that sends gossip_timestamp_filter(0, max) gets everything l1 has.
    p = peers(tcp_port(l1), l1.rpc.getinfo()["id"], gossip_queries=True)
    p.send([bolt1_filter(0)])
    wait_for(lambda: len(p.of_type(CHANNEL_ANNOUNCEMENT)) == 4 and len(p.of_type(CHANNEL_UPDATE)) == 8
             and len(p.of_type(NODE_ANNOUNCEMENT)) == 5, 10, "filter dump")


def bolt1_filter(first: int, span: int = 0xFFFFFFFF) -> bytes:
    from ampere.ln.gossip.queries import timestamp_filter_message

    return timestamp_filter_message(CHAIN, first, span)


def test_spent_channel_forgotten_after_12_blocks(node_factory_chain, chaind):
    chaind.mine(101)
    A, B, C = Key("sA"), Key("sB"), Key("sC")
    ab, bc = make_channels(chaind, [(A, B, 1_000_000), (B, C, 1_000_000)], "s")
    l1 = gossip_node(node_factory_chain)
    sync(l1, chaind)
    now = int(time.time())
    for raw in ab.gossip(now) + bc.gossip(now):
        l1.rpc.addgossip(raw.hex())
    assert len(chans_of(l1)) == 4

    ab.spend(chaind)
    chaind.mine(1)
    sync(l1, chaind)
    # Spent: no longer active (nor routed through), but kept for 12 blocks (BOLT #7).
    wait_for(lambda: all(not c["active"] for c in chans_of(l1, short_channel_id=str(ab.scid))), 5, "inactive")
    with pytest.raises(RpcError):
        l1.rpc.getroute(C.pub.hex(), 1000, 1, fromid=A.pub.hex())
    chaind.mine(11)
    sync(l1, chaind)
    assert len(chans_of(l1, short_channel_id=str(ab.scid))) == 2  # 11 blocks after the spend's block
    chaind.mine(1)
    sync(l1, chaind)
    wait_for(lambda: chans_of(l1, short_channel_id=str(ab.scid)) == [], 5, "forgotten")
    assert len(chans_of(l1)) == 2
    l1.wait_for_log(f"Deleting channel {ab.scid} due to the funding outpoint being spent")
    # Gone from the store too; and a replay of its announcement is refused (the output is spent).
    l1.restart()
    assert {c["short_channel_id"] for c in chans_of(l1)} == {str(bc.scid)}
    with pytest.raises(RpcError) as e:
        l1.rpc.addgossip(ab.announcement().hex())
    assert "no_funding_output" in e.value.error["message"]


def test_spent_while_down_and_stale_channels_pruned(node_factory_chain, chaind):
    chaind.mine(101)
    A, B, C = Key("pA"), Key("pB"), Key("pC")
    ab, bc = make_channels(chaind, [(A, B, 1_000_000), (B, C, 1_000_000)], "p")
    l1 = gossip_node(node_factory_chain, **{"dev-fast-gossip-prune": True})
    sync(l1, chaind)
    now = int(time.time())
    for raw in ab.gossip(now):
        l1.rpc.addgossip(raw.hex())
    # bc's updates are three minutes old: stale under --dev-fast-gossip-prune (two minutes).
    for raw in [bc.announcement(), bc.update(B, timestamp=now - 180), bc.update(C, timestamp=now - 180)]:
        l1.rpc.addgossip(raw.hex())
    assert len(chans_of(l1)) == 4
    wait_for(lambda: {c["short_channel_id"] for c in chans_of(l1)} == {str(ab.scid)}, 15, "stale channel pruned")
    l1.wait_for_log(f"Pruned stale channel {bc.scid}")

    # ab's funding is spent while l1 is down: it notices at start and forgets it 12 blocks later.
    l1.stop()
    ab.spend(chaind)
    chaind.mine(1)
    l1.start()
    sync(l1, chaind)
    wait_for(lambda: all(not c["active"] for c in chans_of(l1)), 10, "spent while down")
    chaind.mine(12)
    sync(l1, chaind)
    wait_for(lambda: chans_of(l1) == [], 10, "forgotten")


def test_own_channel_api_in_process(tmp_path):
    """The channel manager's API, in process: a GossipManager with a real PeerManager on loopback
    and a raw peer.  Private channel updates go to the peer only; an announced channel goes out with
    our update and our node_announcement (alias, colour, announce-addr, features), all verifiable."""
    from types import SimpleNamespace

    from ampere.ln.gossip.graph import Graph
    from ampere.ln.gossip.rawmsg import node_announcement_fields
    from ampere.ln.gossip.validate import GossipValidator
    from ampere.log import Logger
    from ampere.node.app.features import our_feature_set
    from ampere.node.gossip.manager import GossipConfig, GossipManager
    from ampere.node.net.connection import PeerAddress
    from ampere.node.net.peers import ListenSpec, PeerConfig, PeerManager

    us, them = Key("own-us"), Key("own-them")
    our_funding, their_funding = Key("own-us-funding"), Key("own-them-funding")

    async def run():
        log = Logger()
        cfg = PeerConfig("regtest", listen=[ListenSpec("ip", "127.0.0.1:0", host="127.0.0.1", port=0)],
                         announce=[PeerAddress("ipv4", "203.0.113.7", 9735)], autolisten=False)
        pm = PeerManager(us.priv, cfg, log=log.log)
        node = SimpleNamespace(network="regtest", netdir=str(tmp_path), signer=LocalSigner(bytes(32), node_key=us.priv),
                               node_id=us.pub, alias="ampere-own", color="aabbcc", log=log, chain=None,
                               feature_set=our_feature_set, peer_manager=pm)
        gossip = GossipManager(node, GossipConfig(broadcast_interval=0.1))
        await gossip.start()
        await pm.start()
        gossip.peers_started()
        port = pm.bindings()[0]["port"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t = await connect_and_handshake(reader, writer, them.priv, us.pub, 20)
        t.write_message(bolt1.make_init(INIT_FEATURES.without_feature("gossip_queries"), [CHAIN]).to_bytes())
        assert isinstance(decode_message(await t.read_message()), Init)
        got: list[bytes] = []

        async def read_until(pred):
            while not pred():
                raw = await asyncio.wait_for(t.read_message(), 10)
                if raw[:2] != b"\x00\x12":  # pings
                    got.append(raw)

        try:
            for _ in range(200):  # ampd registers us once it has our init
                if pm.get(them.pub) is not None:
                    break
                await asyncio.sleep(0.01)
            now = int(time.time())
            scid = ShortChannelId.from_parts(150, 1, 0)
            # A private channel: its update is ours to give the peer, never relayed.
            gossip.add_private_channel(scid, them.pub, 500_000)
            private_upd = make_channel_update(chain_hash=CHAIN, short_channel_id=scid, timestamp=now,
                                              direction=0 if us.pub < them.pub else 1, cltv_expiry_delta=40,
                                              htlc_minimum_msat=1, htlc_maximum_msat=400_000_000,
                                              fee_base_msat=7, fee_proportional_millionths=77, sign=us.sign,
                                              dont_forward=True).to_bytes()
            assert await gossip.local_channel_update(them.pub, private_upd)
            await read_until(lambda: private_upd in got)
            (entry,) = gossip.state.graph.list_channels(short_channel_id=scid)
            assert entry["public"] is False and entry["base_fee_millisatoshi"] == 7
            assert gossip._relay == {}  # dont_forward: nothing queued for relay

            # Announced (six confirmations): announcement + our update + our node_announcement.
            u = unsigned_channel_announcement(chain_hash=CHAIN, short_channel_id=scid, node_id_a=us.pub,
                                              node_id_b=them.pub, bitcoin_key_a=our_funding.pub,
                                              bitcoin_key_b=their_funding.pub)
            firsts = (us, our_funding) if u.node_id_1 == us.pub else (them, their_funding)
            seconds = (them, their_funding) if firsts[0] is us else (us, our_funding)
            ann = sign_channel_announcement(u, (firsts[0].sign, seconds[0].sign),
                                            (firsts[1].sign, seconds[1].sign)).to_bytes()
            gossip.announce_channel(ann, 500_000)
            public_upd = make_channel_update(chain_hash=CHAIN, short_channel_id=scid, timestamp=now + 1,
                                             direction=0 if us.pub < them.pub else 1, cltv_expiry_delta=40,
                                             htlc_minimum_msat=1, htlc_maximum_msat=400_000_000,
                                             fee_base_msat=8, fee_proportional_millionths=88, sign=us.sign).to_bytes()
            gossip.add_own_update(public_upd)
            await read_until(lambda: any(m[:2] == b"\x01\x01" for m in got))
            tail = got[got.index(ann):]
            assert tail[:3] == [ann, public_upd, tail[2]] and tail[2][:2] == b"\x01\x01"
            # What we sent passes a receiver's BOLT #7 checks (signature, known node, addresses).
            g = Graph()
            g.add_channel_announcement(ann, 500_000)
            v = GossipValidator(g, CHAIN)
            assert type(v.node_announcement(decode_message(tail[2]), now + 5, tail[2])).__name__ == "Accept"
            assert type(v.channel_update(decode_message(public_upd), now + 5, public_upd)).__name__ == "Accept"
            f = node_announcement_fields(tail[2])
            assert f.alias.rstrip(b"\0") == b"ampere-own" and f.rgb_color == bytes.fromhex("aabbcc")
            assert f.addresses == bytes([1, 203, 0, 113, 7]) + (9735).to_bytes(2, "big")
            assert f.features == bytes.fromhex(our_feature_set()["node"])
            (node_entry,) = gossip.state.graph.list_nodes(us.pub)
            assert node_entry["alias"] == "ampere-own"
            # Unchanged settings: no new node_announcement; a changed alias: a newer one.
            assert gossip.refresh_node_announcement(only_if_changed=True) is None
            node.alias = "renamed"
            newer = gossip.refresh_node_announcement(only_if_changed=True)
            assert node_announcement_fields(newer).timestamp > f.timestamp
            await read_until(lambda: newer in got)
            # Closed on chain: forgotten 12 blocks later.
            gossip.channel_closed(scid, 200)
            await gossip.block_connected(211, SimpleNamespace(txs=[]))
            assert gossip.state.graph.channel(scid) is not None
            await gossip.block_connected(212, SimpleNamespace(txs=[]))
            assert gossip.state.graph.channel(scid) is None
        finally:
            t.close()
            await pm.stop()
            await gossip.stop()

    asyncio.run(run())
