"""askrene layers applied to the path finder (rpc/commands/askrene.py `_overlay` -> RouteQuery): created
channels, channel updates, constraints, impressions, biases and reservations change the route found, on the
BOLT #7 routing example's square A-B-C / A-D-C (A-B-C the cheaper)."""

from __future__ import annotations

import pytest

from ampere.ln.route import NoRouteError, RouteQuery, bias_factor_ppm, find_route
from ampere.rpc.commands.askrene import _overlay

from ampere.ln.gossip import Graph
from ampere.testing.gossip_factory import GossipFactory
from ampere.wire.bolt1 import chain_hash
from ampere.wire.types import ShortChannelId

F = GossipFactory(chain_hash("regtest"))
K = {name: F.node(i) for i, name in enumerate("ABCD", start=10)}
PUB = {name: k.pub for name, k in K.items()}
SQUARE = {"1x1x0": ("A", "B"), "2x1x0": ("B", "C"), "3x1x0": ("A", "D"), "4x1x0": ("D", "C")}
SCHEMES = {"A": (100, 1000, 10), "B": (200, 2000, 20), "C": (300, 3000, 30), "D": (400, 4000, 40)}


def build(capacity_sat=10_000_000) -> Graph:
    graph = Graph()
    for text, (x, y) in SQUARE.items():
        scid = int(ShortChannelId.from_str(text))
        graph.add_channel_announcement(F.channel_announcement(scid, K[x], K[y], capacity_sat)[0], capacity_sat, 1)
        for frm, to in ((x, y), (y, x)):
            base, ppm, cltv = SCHEMES[frm]
            graph.apply_channel_update(F.channel_update(scid, K[frm], K[to], timestamp=1, fee_base_msat=base,
                                                        fee_proportional_millionths=ppm, cltv_expiry_delta=cltv,
                                                        htlc_maximum_msat=capacity_sat * 1000))
    return graph


@pytest.fixture(scope="module")
def square():
    return build()


def d(x: str, y: str) -> int:
    return 0 if PUB[x] < PUB[y] else 1


def layer(**lists) -> dict:
    base = {name: [] for name in ("disabled_nodes", "created_channels", "channel_updates", "constraints",
                                  "impressions", "biases", "node_biases")}
    return {"layer": "L", "persistent": False, **base, **lists}


def route(graph, layers: dict, amount=4_999_999, reservations=(), src="A", dst="C", **kw):
    q = RouteQuery(source=PUB[src], destination=PUB[dst], amount_msat=amount, final_cltv=18,
                   **_overlay(graph, list(layers), layers, list(reservations)), **kw)
    return [(str(h.short_channel_id), h.amount_msat, h.delay) for h in find_route(graph, q)]


def sd(text: str, x: str, y: str) -> str:
    return f"{text}/{d(x, y)}"


def test_no_layer_takes_a_b_c(square):
    assert [h[0] for h in route(square, {})] == ["1x1x0", "2x1x0"]


def test_created_channel_is_used_once_updated(square):
    created = {"source": PUB["C"].hex(), "destination": PUB["A"].hex(), "short_channel_id": "9x9x9",
               "capacity_msat": 10**9}
    # Created but no direction given values yet: not usable (CLN: a direction needs an update).
    assert [h[0] for h in route(square, {"L": layer(created_channels=[created])})] == ["1x1x0", "2x1x0"]
    upd = {"short_channel_id_dir": sd("9x9x9", "A", "C"), "fee_base_msat": 0, "fee_proportional_millionths": 0,
           "cltv_expiry_delta": 6}
    assert route(square, {"L": layer(created_channels=[created], channel_updates=[upd])}) == \
        [("9x9x9", 4_999_999, 18)]
    # Its other direction is not usable: C -> A still goes over the gossip channels.
    back = route(square, {"L": layer(created_channels=[created], channel_updates=[upd])}, src="C", dst="A")
    assert "9x9x9" not in [h[0] for h in back]
    # Disabled by the update: the square again.
    off = dict(upd, enabled=False)
    assert [h[0] for h in route(square, {"L": layer(created_channels=[created], channel_updates=[off])})] == \
        ["1x1x0", "2x1x0"]


def test_update_changes_fees_delay_and_htlc_limits(square):
    # B's fee on B->C raised: A-D-C becomes cheaper.
    dear = {"short_channel_id_dir": sd("2x1x0", "B", "C"), "fee_base_msat": 100_000}
    assert [h[0] for h in route(square, {"L": layer(channel_updates=[dear])})] == ["3x1x0", "4x1x0"]
    # Only fee_base given: ppm and delta stay the gossiped ones (200 + 2000ppm, 20) -> (0 + 2000ppm, 20).
    cheap = {"short_channel_id_dir": sd("2x1x0", "B", "C"), "fee_base_msat": 0}
    assert route(square, {"L": layer(channel_updates=[cheap])})[0] == ("1x1x0", 4_999_999 + 9_999, 38)
    delta = {"short_channel_id_dir": sd("2x1x0", "B", "C"), "cltv_expiry_delta": 5}
    assert route(square, {"L": layer(channel_updates=[delta])})[0][2] == 23
    low_max = {"short_channel_id_dir": sd("2x1x0", "B", "C"), "htlc_maximum_msat": 1_000_000}
    assert [h[0] for h in route(square, {"L": layer(channel_updates=[low_max])})] == ["3x1x0", "4x1x0"]
    high_min = {"short_channel_id_dir": sd("2x1x0", "B", "C"), "htlc_minimum_msat": 6_000_000}
    assert [h[0] for h in route(square, {"L": layer(channel_updates=[high_min])})] == ["3x1x0", "4x1x0"]
    # A later layer overrides an earlier one's value.
    undo = {"short_channel_id_dir": sd("2x1x0", "B", "C"), "fee_base_msat": 200}
    assert [h[0] for h in route(square, {"L": layer(channel_updates=[dear]), "M": layer(channel_updates=[undo])})] \
        == ["1x1x0", "2x1x0"]


def test_constraints_and_impressions_bound_capacity(square):
    bc = sd("2x1x0", "B", "C")
    at_most = {"short_channel_id_dir": bc, "timestamp": 1, "maximum_msat": 4_999_998}
    assert [h[0] for h in route(square, {"L": layer(constraints=[at_most])})] == ["3x1x0", "4x1x0"]
    enough = {"short_channel_id_dir": bc, "timestamp": 1, "maximum_msat": 4_999_999}
    assert [h[0] for h in route(square, {"L": layer(constraints=[enough])})] == ["1x1x0", "2x1x0"]
    # A minimum alone bounds nothing.
    at_least = {"short_channel_id_dir": bc, "timestamp": 1, "minimum_msat": 1}
    assert [h[0] for h in route(square, {"L": layer(constraints=[at_least])})] == ["1x1x0", "2x1x0"]
    # Sent 5,000,002 sat of the 10,000,000 sat channel: 4,999,998,000 msat left.
    spent = {"short_channel_id_dir": bc, "timestamp": 1, "amount_msat": 5_000_002_000}
    assert [h[0] for h in route(square, {"L": layer(impressions=[spent])}, amount=4_999_999_000)] == \
        ["3x1x0", "4x1x0"]
    assert [h[0] for h in route(square, {"L": layer(impressions=[spent])}, amount=4_999_998_000)] == \
        ["1x1x0", "2x1x0"]


def test_reservations_count_as_used(square):
    bc = sd("2x1x0", "B", "C")
    held = [{"short_channel_id_dir": bc, "amount_msat": 9_996_000_000, "layer": None}]
    assert [h[0] for h in route(square, {}, reservations=held)] == ["3x1x0", "4x1x0"]
    # A reservation restricted to a layer not in use does not count.
    other = [dict(held[0], layer="other")]
    assert [h[0] for h in route(square, {}, reservations=other)] == ["1x1x0", "2x1x0"]
    assert [h[0] for h in route(square, {"other": layer()}, reservations=other)] == ["3x1x0", "4x1x0"]


def test_biases(square):
    assert bias_factor_ppm(0) == 1_000_000 and bias_factor_ppm(-100) == 30_000_000
    ab = sd("1x1x0", "A", "B")
    bc = sd("2x1x0", "B", "C")
    # A-B-C costs 10,199 msat of fee, A-D-C 20,399: a strong bias against B->C tips it.
    against = {"short_channel_id_dir": bc, "bias": -100, "timestamp": 1}
    assert [h[0] for h in route(square, {"L": layer(biases=[against])})] == ["3x1x0", "4x1x0"]
    mild = {"short_channel_id_dir": bc, "bias": -10, "timestamp": 1}
    assert [h[0] for h in route(square, {"L": layer(biases=[mild])})] == ["1x1x0", "2x1x0"]
    # A bias on the payer's own (free) first hop still counts: with B's and D's fees made equal, the
    # unbiased tie goes one way and a bias against either first hop sends it the other.
    same = [{"short_channel_id_dir": sd("2x1x0", "B", "C"), "fee_base_msat": 400, "fee_proportional_millionths": 4000,
             "cltv_expiry_delta": 40}]
    tie = [h[0] for h in route(square, {"L": layer(channel_updates=same)})]
    other = ["3x1x0", "4x1x0"] if tie[0] == "1x1x0" else ["1x1x0", "2x1x0"]
    first = {"short_channel_id_dir": ab if tie[0] == "1x1x0" else sd("3x1x0", "A", "D"), "bias": -1, "timestamp": 1}
    assert [h[0] for h in route(square, {"L": layer(channel_updates=same, biases=[first])})] == other
    # Node bias: B's outgoing channels disfavoured.
    node = {"node": PUB["B"].hex(), "in_bias": 0, "out_bias": -100, "timestamp": 1}
    assert [h[0] for h in route(square, {"L": layer(node_biases=[node])})] == ["3x1x0", "4x1x0"]
    # Favouring D's incoming channels does the same.
    fav = {"node": PUB["D"].hex(), "in_bias": 100, "out_bias": 100, "timestamp": 1}
    assert [h[0] for h in route(square, {"L": layer(node_biases=[fav])})] == ["3x1x0", "4x1x0"]


def test_disabled_node(square):
    with pytest.raises(NoRouteError):
        route(square, {"L": layer(disabled_nodes=[PUB["B"].hex(), PUB["D"].hex()])})
