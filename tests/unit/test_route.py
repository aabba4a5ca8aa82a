"""The path finder: exact fees and delays on small hand-built graphs (BOLT 7's routing example
among them), limits, hints, local channels, exclusions, risk factor, and the multipath split."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ampere.ln.gossip import Graph
from ampere.testing.gossip_factory import GossipFactory
from ampere.ln.route import (
    PAY_ROUTE_NOT_FOUND, PAY_ROUTE_TOO_EXPENSIVE, HintHop, LocalChannel, NoRouteError, RouteQuery,
    RouteTooExpensiveError, find_route, parse_exclusions, route_fee, split_payment,
)
from ampere.wire.bolt1 import chain_hash
from ampere.wire.types import ShortChannelId

F = GossipFactory(chain_hash("regtest"))
NOW = 1_700_000_000
K = {name: F.node(i) for i, name in enumerate("ABCDEFGH", start=10)}
PUB = {name: k.pub for name, k in K.items()}


def scid(text: str) -> int:
    return int(ShortChannelId.from_str(text))


def build(channels, policies, capacity_sat=10_000_000) -> Graph:
    """channels: {scid text: (x, y)}; policies: {(from, to): dict of channel_update fields}."""
    graph = Graph()
    for text, (x, y) in channels.items():
        ann, _ = F.channel_announcement(scid(text), K[x], K[y], capacity_sat)
        graph.add_channel_announcement(ann, capacity_sat, NOW)
    for text, (x, y) in channels.items():
        for frm, to in ((x, y), (y, x)):
            if (frm, to) in policies:
                pol = dict(htlc_maximum_msat=capacity_sat * 1000) | policies[(frm, to)]
                graph.apply_channel_update(F.channel_update(scid(text), K[frm], K[to], timestamp=NOW, **pol))
    return graph


def pol(base, ppm, cltv, **kw):
    return dict(fee_base_msat=base, fee_proportional_millionths=ppm, cltv_expiry_delta=cltv, **kw)


# BOLT #7 "Routing Example": A-B-C and A-D-C; each node's fee scheme and cltv_expiry_delta.
SQUARE = {"1x1x0": ("A", "B"), "2x1x0": ("B", "C"), "3x1x0": ("A", "D"), "4x1x0": ("D", "C")}
SCHEMES = {"A": pol(100, 1000, 10), "B": pol(200, 2000, 20), "C": pol(300, 3000, 30), "D": pol(400, 4000, 40)}
SQUARE_POL = {(x, y): SCHEMES[x] for x, y in list(SQUARE.values()) + [(y, x) for x, y in SQUARE.values()]}


@pytest.fixture(scope="module")
def square():
    return build(SQUARE, SQUARE_POL)


def q(src, dst, amount, **kw):
    return RouteQuery(source=PUB[src], destination=PUB[dst], amount_msat=amount, **kw)


def test_bolt7_routing_example(square):
    # "A->B->C ... 200 + ( 4999999 * 2000 / 1000000 ) = 10199 ... `amount_msat`: 5010198,
    # `cltv_expiry`: current-block-height + 20 + 18 + 42" (we leave the shadow route's 42 out).
    route = find_route(square, q("A", "C", 4_999_999, final_cltv=18, riskfactor=0))
    assert [h.to_json() for h in route] == [
        {"id": PUB["B"].hex(), "channel": "1x1x0", "direction": 0 if PUB["A"] < PUB["B"] else 1,
         "amount_msat": 5_010_198, "delay": 38, "style": "tlv"},
        {"id": PUB["C"].hex(), "channel": "2x1x0", "direction": 0 if PUB["B"] < PUB["C"] else 1,
         "amount_msat": 4_999_999, "delay": 18, "style": "tlv"},
    ]
    assert route_fee(route) == 10_199
    # "A->D->C ... `amount_msat`: 5020398, `cltv_expiry`: current-block-height + 40 + 18 + 42"
    via_d = find_route(square, q("A", "C", 4_999_999, final_cltv=18, exclude_nodes=frozenset([PUB["B"]])))
    assert [(h.short_channel_id, h.amount_msat, h.delay) for h in via_d] == [
        (scid("3x1x0"), 5_020_398, 58), (scid("4x1x0"), 4_999_999, 18)]
    # Excluding the B->C direction alone has the same effect; the other direction does not.
    d_bc = 0 if PUB["B"] < PUB["C"] else 1
    r = find_route(square, q("A", "C", 4_999_999, exclude_channels=frozenset([(scid("2x1x0"), d_bc)])))
    assert r[0].short_channel_id == scid("3x1x0")
    r = find_route(square, q("A", "C", 4_999_999, exclude_channels=frozenset([(scid("2x1x0"), 1 - d_bc)])))
    assert r[0].short_channel_id == scid("1x1x0")


def test_three_hops_fee_on_the_forwarded_amount():
    g = build({"1x1x0": ("A", "B"), "2x1x0": ("B", "C"), "3x1x0": ("C", "D")},
              {("A", "B"): pol(0, 0, 5), ("B", "C"): pol(1000, 100, 14), ("C", "D"): pol(7, 250_000, 9)})
    route = find_route(g, q("A", "D", 1_000_000, final_cltv=20, riskfactor=0))
    # C forwards 1,000,000 and charges 7 + 250000 ppm = 250,007; B forwards 1,250,007 and charges
    # 1000 + 125 (floor of 125.0007) = 1,125.
    assert [(h.amount_msat, h.delay) for h in route] == [(1_251_132, 43), (1_250_007, 29), (1_000_000, 20)]


def test_riskfactor_trades_fee_for_delay():
    # X: 1000msat cheaper but 1000 blocks; Y: 10 blocks.
    g = build({"1x1x0": ("A", "B"), "2x1x0": ("B", "E"), "3x1x0": ("A", "C"), "4x1x0": ("C", "E")},
              {("A", "B"): pol(0, 0, 1), ("B", "E"): pol(1000, 0, 1000),
               ("A", "C"): pol(0, 0, 1), ("C", "E"): pol(2000, 0, 10)})
    amount = 100_000_000
    assert find_route(g, q("A", "E", amount, riskfactor=0))[0].short_channel_id == scid("1x1x0")
    # risk of X = 1e8 * 1000 * 1 / 5259600 = 19012 msat > the 1000 msat saved.
    assert find_route(g, q("A", "E", amount, riskfactor=1))[0].short_channel_id == scid("3x1x0")
    assert find_route(g, q("A", "E", amount, riskfactor="0.01"))[0].short_channel_id == scid("1x1x0")
    # maxdelay rules out X even when risk does not matter.
    r = find_route(g, q("A", "E", amount, riskfactor=0, max_delay=100))
    assert r[0].short_channel_id == scid("3x1x0") and r[0].delay == 19


def test_fee_and_delay_limits_refuse(square):
    with pytest.raises(RouteTooExpensiveError) as info:
        find_route(square, q("A", "C", 4_999_999, max_fee_msat=10_198))
    assert info.value.code == PAY_ROUTE_TOO_EXPENSIVE == 206 and info.value.fee_msat == 10_199
    assert route_fee(find_route(square, q("A", "C", 4_999_999, max_fee_msat=10_199))) == 10_199
    with pytest.raises(RouteTooExpensiveError, match="delay of 38"):
        find_route(square, q("A", "C", 4_999_999, final_cltv=18, max_delay=37))
    assert find_route(square, q("A", "C", 4_999_999, final_cltv=18, max_delay=38))[0].delay == 38


def test_htlc_limits_and_disabled():
    chans = {"1x1x0": ("A", "B"), "2x1x0": ("B", "E"), "3x1x0": ("A", "C"), "4x1x0": ("C", "E")}
    g = build(chans, {("A", "B"): pol(0, 0, 1), ("B", "E"): pol(0, 0, 6, htlc_minimum_msat=5000,
                                                                      htlc_maximum_msat=50_000),
                      ("A", "C"): pol(0, 0, 1), ("C", "E"): pol(10, 0, 6)})
    via = lambda amount: find_route(g, q("A", "E", amount))[0].short_channel_id  # noqa: E731
    assert via(10_000) == scid("1x1x0")  # within B's limits, and cheaper
    assert via(4_999) == scid("3x1x0")   # below B->E's htlc_minimum_msat
    assert via(50_001) == scid("3x1x0")  # above its htlc_maximum_msat
    assert via(0) == scid("1x1x0")       # getroute: 0 "ignores any htlc_minimum_msat setting"
    # Disable C->E: amounts outside B's limits have no route any more.
    g.apply_channel_update(F.channel_update(scid("4x1x0"), K["C"], K["E"], timestamp=NOW + 1, disabled=True,
                                            **pol(10, 0, 6)))
    with pytest.raises(NoRouteError) as info:
        find_route(g, q("A", "E", 60_000))
    assert info.value.code == PAY_ROUTE_NOT_FOUND == 205


def test_htlc_maximum_above_capacity_is_ignored():
    g = build({"1x1x0": ("A", "B")}, {("A", "B"): pol(0, 0, 6, htlc_maximum_msat=20_000_000)}, capacity_sat=10_000)
    with pytest.raises(NoRouteError):
        find_route(g, q("A", "B", 1000))


def test_route_hints_reach_a_private_payee(square):
    # E is unknown to the graph: the invoice says C -> E over 9x9x9, 1 msat + 100 ppm, 12 blocks.
    hint = [HintHop(PUB["C"], scid("9x9x9"), 1, 100, 12)]
    route = find_route(square, q("A", "E", 1_000_000, final_cltv=10, route_hints=[hint], riskfactor=0))
    assert [(h.node_id, h.short_channel_id, h.amount_msat, h.delay) for h in route] == [
        (PUB["B"], scid("1x1x0"), 1_000_101 + 200 + 2000, 10 + 12 + 20),
        (PUB["C"], scid("2x1x0"), 1_000_101, 22),
        (PUB["E"], scid("9x9x9"), 1_000_000, 10),
    ]
    assert route[2].direction == (0 if PUB["C"] < PUB["E"] else 1)
    with pytest.raises(NoRouteError):
        find_route(square, q("A", "E", 1_000_000))


def test_local_channels_replace_the_graph_view(square):
    # Our channel to B can spend only 1,000,000 msat: a bigger payment goes through D.
    local = [LocalChannel(scid("1x1x0"), PUB["B"], spendable_msat=1_000_000),
             LocalChannel(scid("3x1x0"), PUB["D"], spendable_msat=50_000_000)]
    assert find_route(square, q("A", "C", 900_000, local_channels=local))[0].short_channel_id == scid("1x1x0")
    assert find_route(square, q("A", "C", 2_000_000, local_channels=local))[0].short_channel_id == scid("3x1x0")
    # A peer's htlc minimum is honoured; a channel we do not list is not used.
    local2 = [LocalChannel(scid("1x1x0"), PUB["B"], 10**9, htlc_minimum_msat=10_000)]
    with pytest.raises(NoRouteError):
        find_route(square, q("A", "C", 5_000, local_channels=local2))
    # An unannounced channel of ours to a node the graph does not know.
    unannounced = [LocalChannel(scid("7x7x7"), PUB["H"], 10**9)]
    route = find_route(square, q("A", "H", 5_000, local_channels=unannounced, final_cltv=9))
    assert [h.to_json()["channel"] for h in route] == ["7x7x7"] and route[0].amount_msat == 5_000


def test_max_hops_and_unknown_destination(square):
    with pytest.raises(NoRouteError):
        find_route(square, q("A", "C", 1000, max_hops=1))
    assert len(find_route(square, q("A", "C", 1000, max_hops=2))) == 2
    with pytest.raises(NoRouteError):
        find_route(square, q("A", "G", 1000))
    with pytest.raises(NoRouteError):
        find_route(square, q("A", "A", 1000))


def test_cheapest_route_too_long_falls_back_to_the_fewest_hops():
    # A search by cost closes each node on its cheapest path from the payee: when that path is longer than max_hops,
    # the shorter, dearer ones through the same node are never looked at, and a node 8 hops away in a
    # 10,000-channel graph came back "no route" (bench_gossip, session 16; CLN's getroute then seeks the shortest
    # path). The payer A reaches H; from H to E, cheap and long: H-B-C-D-E, free; short: H-F-E (1,000 msat) and
    # H-G-E (5,000 msat). H is closed at 4 hops from E on the cheap path, so with max_hops 4 it is never reached
    # from F or G by the search by cost.
    g = build({"1x1x0": ("A", "H"), "2x1x0": ("H", "B"), "3x1x0": ("B", "C"), "4x1x0": ("C", "D"),
               "5x1x0": ("D", "E"), "6x1x0": ("H", "F"), "7x1x0": ("F", "E"), "8x1x0": ("H", "G"),
               "9x1x0": ("G", "E")},
              {("A", "H"): pol(0, 0, 10), ("H", "B"): pol(0, 0, 10), ("B", "C"): pol(0, 0, 10),
               ("C", "D"): pol(0, 0, 10), ("D", "E"): pol(0, 0, 10), ("H", "F"): pol(0, 0, 10),
               ("F", "E"): pol(1000, 0, 10), ("H", "G"): pol(0, 0, 10), ("G", "E"): pol(5000, 0, 10)})

    def channels(route):
        return [h.to_json()["channel"] for h in route]
    cheap = ["1x1x0", "2x1x0", "3x1x0", "4x1x0", "5x1x0"]
    assert channels(find_route(g, q("A", "E", 10_000, riskfactor=0))) == cheap
    assert channels(find_route(g, q("A", "E", 10_000, riskfactor=0, max_hops=5))) == cheap
    # Too long for 4 hops: the fewest hops, and of the two 3-hop routes the cheaper.
    short = find_route(g, q("A", "E", 10_000, riskfactor=0, max_hops=4))
    assert channels(short) == ["1x1x0", "6x1x0", "7x1x0"] and route_fee(short) == 1000
    assert channels(find_route(g, q("A", "E", 10_000, riskfactor=0, max_hops=3))) == ["1x1x0", "6x1x0", "7x1x0"]
    with pytest.raises(NoRouteError):
        find_route(g, q("A", "E", 10_000, riskfactor=0, max_hops=2))
    # The fallback keeps the limits: 1,000 msat is above a 500 msat budget, and the error says what it costs.
    with pytest.raises(RouteTooExpensiveError) as e:
        find_route(g, q("A", "E", 10_000, riskfactor=0, max_hops=4, max_fee_msat=500))
    assert e.value.fee_msat == 1000
    # Excluding F leaves G's route.
    assert channels(find_route(g, q("A", "E", 10_000, riskfactor=0, max_hops=4,
                                    exclude_nodes=frozenset([PUB["F"]])))) == ["1x1x0", "8x1x0", "9x1x0"]


def test_node_with_unknown_even_feature_not_routed_through(square):
    g = build(SQUARE, SQUARE_POL)
    g.apply_node_announcement(F.node_announcement(K["B"], timestamp=NOW, features=bytes([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])))
    assert find_route(g, q("A", "C", 4_999_999))[0].short_channel_id == scid("3x1x0")
    # ...but it can still be paid.
    assert find_route(g, q("A", "B", 1000))[0].node_id == PUB["B"]


def test_fuzz_is_deterministic_per_seed(square):
    routes = {seed: find_route(square, q("A", "C", 1000, fuzz_percent=50, fuzz_seed=seed)) for seed in (b"x", b"y")}
    assert find_route(square, q("A", "C", 1000, fuzz_percent=50, fuzz_seed=b"x")) == routes[b"x"]
    for r in routes.values():  # amounts are real fees, whatever the fuzz did to the choice
        assert r[-1].amount_msat == 1000 and route_fee(r) in (200 + 2, 400 + 4)


def test_parse_exclusions():
    chans, nodes = parse_exclusions(["103x1x0/1", PUB["A"].hex()])
    assert chans == {(scid("103x1x0"), 1)} and nodes == {PUB["A"]}
    for bad in ("103x1x0/2", "zz", "103x1/0", "02ab"):
        with pytest.raises(ValueError):
            parse_exclusions([bad])


# -- multipath -------------------------------------------------------------------------------------

def test_split_over_two_local_channels(square):
    local = [LocalChannel(scid("1x1x0"), PUB["B"], spendable_msat=3_000_000),
             LocalChannel(scid("3x1x0"), PUB["D"], spendable_msat=3_000_000)]
    base = q("A", "C", 5_000_000, local_channels=local, riskfactor=0)
    with pytest.raises(NoRouteError):
        find_route(square, base)
    parts = split_payment(square, base)
    assert len(parts) == 2
    assert sum(p[-1].amount_msat for p in parts) == 5_000_000
    first_hops = sorted(p[0].short_channel_id for p in parts)
    assert first_hops == [scid("1x1x0"), scid("3x1x0")]
    for p in parts:
        assert p[0].amount_msat <= 3_000_000
        # Each part pays the fees of its own path, exactly.
        scheme = SCHEMES["B"] if p[0].short_channel_id == scid("1x1x0") else SCHEMES["D"]
        fee = scheme["fee_base_msat"] + p[-1].amount_msat * scheme["fee_proportional_millionths"] // 1_000_000
        assert route_fee(p) == fee
    total_fee = sum(route_fee(p) for p in parts)
    # The total fee cap holds across parts.
    assert split_payment(square, replace(base, max_fee_msat=total_fee))
    with pytest.raises(RouteTooExpensiveError):
        split_payment(square, replace(base, max_fee_msat=10_000))
    # More than both channels can carry together.
    with pytest.raises(NoRouteError):
        split_payment(square, replace(base, amount_msat=6_100_000))


def test_split_single_route_when_it_fits(square):
    parts = split_payment(square, q("A", "C", 1_000_000))
    assert len(parts) == 1 and parts[0] == find_route(square, q("A", "C", 1_000_000))


def test_getroute_node_id_parameter_remembers_only_valid_ids():
    """getroute's `id`/`fromid` parser (rpc/commands/gossip.p_node_id): p_pubkey's answers, the
    ids it accepted not checked on the curve again, the others refused every time."""
    from ampere.rpc.commands import gossip as cmd
    from ampere.rpc.params import ParamError

    on_curve, off_curve = [], []
    for x in range(1, 40):  # x coordinates: about half of them are on the curve
        candidate = (b"\x02" + x.to_bytes(32, "big")).hex()
        try:
            assert cmd.p_node_id(candidate) == bytes.fromhex(candidate)
            on_curve.append(candidate)
        except ParamError:
            off_curve.append(candidate)
    assert on_curve and off_curve
    assert all(c in cmd._CHECKED_NODE_IDS for c in on_curve)
    assert cmd.p_node_id(on_curve[0]) == bytes.fromhex(on_curve[0])
    for bad in (off_curve[0], off_curve[0], "zz", 5, on_curve[0][:-2]):
        with pytest.raises(ParamError):
            cmd.p_node_id(bad)
    assert not any(c in cmd._CHECKED_NODE_IDS for c in off_curve)
