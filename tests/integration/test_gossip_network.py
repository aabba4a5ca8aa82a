"""Six nodes on amp-chaind announcing their channels (BOLT 7): announcement_signatures, channel_announcement,
channel_update and node_announcement, relayed across the network with --dev-fast-gossip.

Line l1 - l2 - l3 - l4 - l5 - l6: every node's graph holds every channel in both directions; l1 pays l6's
invoice across five hops with no route hint (the graph alone); a mutually closed channel leaves every graph
12 blocks after its funding output is spent.
Ring l1 - ... - l6 - l1: a setchannel fee change reaches the other side of the ring, and l1's route to l4
moves to the cheaper way round."""

from __future__ import annotations

import time

from ampere.testing.nodes import wait_for

FUND = 1_000_000  # sat per channel
GOSSIP_WAIT = 20.0  # seconds: with 1 s broadcasts, five hops take a few seconds


def fee(base: int, ppm: int, amount: int) -> int:
    # BOLT #7: fee_base_msat + ( amount_to_forward * fee_proportional_millionths / 1000000 )
    return base + amount * ppm // 1_000_000


def public_channels(node) -> list[dict]:
    return [c for c in node.rpc.listchannels()["channels"] if c["public"]]


def scid_between(a, b) -> str:
    return a.rpc.listpeerchannels(b.node_id)["channels"][-1]["short_channel_id"]


def test_line_announce_pay_close(node_factory_chain):
    nf = node_factory_chain
    t0 = time.time()
    nodes = nf.line_graph(6, FUND, announce_channels=True, wait_for_announce=True)
    l1, l2, l3, l4, l5, l6 = nodes
    print(f"line of 6 opened, announced and seen everywhere in {time.time() - t0:.1f}s")
    scids = [scid_between(a, b) for a, b in zip(nodes, nodes[1:])]
    ids = [n.node_id for n in nodes]

    # Every node: all five channels, both directions, with the right endpoints, capacity and default fees.
    for n in nodes:
        chans = public_channels(n)
        assert sorted((c["short_channel_id"], c["direction"]) for c in chans) == sorted(
            (s, d) for s in scids for d in (0, 1))
        for c in chans:
            i = scids.index(c["short_channel_id"])
            assert {c["source"], c["destination"]} == {ids[i], ids[i + 1]}
            # BOLT #7: direction 0 is the update of node_id_1, the lesser key.
            assert (c["source"] < c["destination"]) == (c["direction"] == 0)
            assert c["amount_msat"] == FUND * 1000 and c["active"]
            assert (c["base_fee_millisatoshi"], c["fee_per_millionth"], c["delay"]) == (1, 10, 34)
            assert c["message_flags"] & 2 == 0  # public updates may be forwarded
        # node_announcement: every node is known with its alias (listnodes lists only announced details).
        listed = {x["nodeid"]: x for x in n.rpc.listnodes()["nodes"]}
        assert set(listed) == set(ids)
        for other in nodes:
            assert listed[other.node_id].get("alias") == other.info["alias"]

    # l1 pays l6 across five hops with no route hint: l6's channel is public, so its invoice has none.
    amount = 10_000_000
    inv = l6.rpc.invoice(amount, "five-hops", "across the line")
    assert "routes" not in l6.rpc.decode(inv["bolt11"])
    route = l1.rpc.getroute(l6.node_id, amount, 1)["route"]
    assert [h["channel"] for h in route] == scids
    res = l1.rpc.pay(inv["bolt11"])
    assert res["status"] == "complete" and res["destination"] == l6.node_id
    fees = 0
    forwarded = amount
    for _ in range(4):  # l2..l5 each take their fee on what they forward (computed from the end backwards)
        f = fee(1, 10, forwarded)
        fees += f
        forwarded += f
    assert res["amount_sent_msat"] == amount + fees
    assert l6.rpc.listinvoices("five-hops")["invoices"][0]["status"] == "paid"

    # A mutual close: the channel stays in every graph (inactive) until its spend is 12 blocks deep.
    gone = scids[4]
    l5.rpc.close(l6.node_id)
    wait_for(lambda: len(nf.chaind.rpc("getrawmempool")) == 1, 30, "closing tx in the mempool")
    nf.mine(1, nodes)
    for n in nodes[:4]:
        wait_for(lambda n=n: all(not c["active"] for c in n.rpc.listchannels(gone)["channels"])
                 and len(n.rpc.listchannels(gone)["channels"]) == 2, 10, f"{n.dir}: {gone} spent but kept")
    nf.mine(11, nodes)
    assert len(l1.rpc.listchannels(gone)["channels"]) == 2  # BOLT 7: forgotten after a 12-block delay
    nf.mine(1, nodes)
    for n in nodes:
        wait_for(lambda n=n: n.rpc.listchannels(gone)["channels"] == [], 10, f"{n.dir}: {gone} forgotten")
        assert len(public_channels(n)) == 8
    # l6 had only that channel: it is no longer a node of the public graph.
    assert l6.node_id not in {x["nodeid"] for x in l1.rpc.listnodes()["nodes"]}


def direction(chans: list[dict], source) -> dict:
    return next(c for c in chans if c["source"] == source.node_id)


def test_ring_fee_change_disable_enable(node_factory_chain):
    nf = node_factory_chain
    nodes = nf.line_graph(6, FUND, announce_channels=True)
    l1, l2, l3, l4, l5, l6 = nodes
    nf.fundchannel(l6, l1, FUND, announce=True)  # closes the ring
    nf.mine(6, nodes)
    nf.wait_for_channels(nodes, 12)
    ring = nodes + [l1]
    scid = {(a, b): scid_between(a, b) for a, b in zip(ring, ring[1:])}
    scid.update({(b, a): s for (a, b), s in list(scid.items())})

    def route_to_l4() -> list[str]:
        return [h["id"] for h in l1.rpc.getroute(l4.node_id, 1_000_000, 1)["route"]]

    def fee_seen(node, a, b) -> int:
        return direction(node.rpc.listchannels(scid[(a, b)])["channels"], a)["base_fee_millisatoshi"]

    # Two ways round from l1 to l4, three hops each.  l6 raises its fee towards l5: the far side of the ring
    # (l3, two hops away either way) and l1 see it, and l1 goes round through l2 and l3.
    l6.rpc.setchannel(l5.node_id, feebase=5000)
    for n in (l1, l3):
        wait_for(lambda n=n: fee_seen(n, l6, l5) == 5000, GOSSIP_WAIT, f"{n.dir} sees l6's new fee")
    assert fee_seen(l1, l5, l6) == 1  # only l6's direction changed
    assert route_to_l4() == [l2.node_id, l3.node_id, l4.node_id]
    # l2 raises more: the route turns the other way.
    l2.rpc.setchannel(l3.node_id, feebase=9000, feeppm=100)
    wait_for(lambda: route_to_l4() == [l6.node_id, l5.node_id, l4.node_id], GOSSIP_WAIT, "route through l6")
    wait_for(lambda: fee_seen(l5, l2, l3) == 9000, GOSSIP_WAIT, "l5 sees l2's new fee")
    c23 = direction(l5.rpc.listchannels(scid[(l2, l3)])["channels"], l2)
    assert (c23["fee_per_millionth"], c23["active"], c23["htlc_maximum_msat"]) == (100, True, FUND * 1000)

    # l5 goes away: its peers l4 and l6 announce their channels with it disabled; the route goes back round.
    l5.stop()
    for a in (l4, l6):
        wait_for(lambda a=a: not direction(l1.rpc.listchannels(scid[(a, l5)])["channels"], a)["active"],
                 GOSSIP_WAIT, f"l1 sees {a.dir}'s channel to l5 disabled")
    assert route_to_l4() == [l2.node_id, l3.node_id, l4.node_id]
    # Back again: enabled again once the channels are reestablished; l5's forwarding works again: l4 pays l1
    # the only way its funds allow, l4 -> l5 -> l6 -> l1 (each opener holds its channel's funds).
    l5.start()
    for a in (l4, l6):
        wait_for(lambda a=a: direction(l1.rpc.listchannels(scid[(a, l5)])["channels"], a)["active"],
                 GOSSIP_WAIT, f"l1 sees {a.dir}'s channel to l5 enabled")
    wait_for(lambda: route_to_l4() == [l6.node_id, l5.node_id, l4.node_id], GOSSIP_WAIT, "route through l5")
    inv = l1.rpc.invoice(1_000_000, "round", "from l4 through l5 and l6")
    assert "routes" not in l1.rpc.decode(inv["bolt11"])
    res = l4.rpc.pay(inv["bolt11"])
    assert res["status"] == "complete"
    fee6 = fee(1, 10, 1_000_000)
    assert res["amount_sent_msat"] == 1_000_000 + fee6 + fee(1, 10, 1_000_000 + fee6)


def test_signatures_on_reconnection_and_private_updates(node_factory_chain):
    """announcement_signatures that could not be exchanged at six confirmations (the peer was down) are sent on
    reconnection; an unannounced channel's channel_update goes to its peer only."""
    nf = node_factory_chain
    l1, l2, l3 = (nf.get_node(listen=True, dev_fast_gossip=True) for _ in range(3))
    scid12 = nf.fundchannel(l1, l2, FUND, announce=True)["short_channel_id"]
    # Before six confirmations l1's update goes to l2 alone, and without `dont_forward`: the channel is to be
    # announced (BOLT 7 sets that bit only when `announce_channel` was not; CLN refuses it on public channels).
    wait_for(lambda: [c for c in l2.rpc.listchannels(scid12)["channels"] if c["source"] == l1.node_id],
             GOSSIP_WAIT, "l2 has l1's peer-only update")
    c = next(c for c in l2.rpc.listchannels(scid12)["channels"] if c["source"] == l1.node_id)
    assert not c["public"] and c["message_flags"] == 1
    l2.stop()
    nf.mine(6, [l1])
    time.sleep(2)
    assert public_channels(l1) == []  # nothing to announce with: l2's signatures are missing
    l2.start()
    nf.sync(l2)
    nf.wait_for_channels([l1, l2], 2, timeout=GOSSIP_WAIT)
    assert {c["short_channel_id"] for c in public_channels(l1)} == {scid12}

    # l2 -> l3 unannounced: each side has the other's update (route hints), nobody else hears of it.
    scid23 = nf.fundchannel(l2, l3, FUND, announce=False)["short_channel_id"]
    l2.rpc.setchannel(l3.node_id, feebase=777)
    wait_for(lambda: [c["base_fee_millisatoshi"] for c in l3.rpc.listchannels(scid23)["channels"]
                      if c["source"] == l2.node_id] == [777], GOSSIP_WAIT, "l3 has l2's private update")
    c = next(c for c in l3.rpc.listchannels(scid23)["channels"] if c["source"] == l2.node_id)
    assert not c["public"] and c["message_flags"] & 2  # dont_forward
    wait_for(lambda: len(l2.rpc.listchannels(scid23)["channels"]) == 2, GOSSIP_WAIT, "l2 has l3's update")
    inv = l3.rpc.invoice(1_000_000, "hint", "through l2")
    assert l3.rpc.decode(inv["bolt11"])["routes"][0][0]["fee_base_msat"] == 777
    time.sleep(2)  # a few broadcast rounds: l1 must still not know it
    assert l1.rpc.listchannels(scid23)["channels"] == []
    # l3 learns the announced l1-l2 channel from l2: both updates were published once it became public (l1's
    # had gone to l2 alone before), neither with `dont_forward`.
    wait_for(lambda: len(l3.rpc.listchannels(scid12)["channels"]) == 2, GOSSIP_WAIT, "l3 has both updates of l1-l2")
    assert all(c["public"] and c["message_flags"] == 1 for c in l3.rpc.listchannels(scid12)["channels"])
