"""`getroutes`: CLN's askrene route query (the one pyln-testing's `single_route` / `wait_for_route` use), answered
by Ampere's path finder over the gossip graph.

Layers: `auto.localchans` (our own channels, private ones included, with what they can send now),
`auto.sourcefree` (no fee or delay on the source's own channels: true of any route Ampere builds) and
`auto.no_mpp_support` (one path: Ampere answers one path anyway) are understood; any other layer is refused.
Ampere has no probability model: `probability_ppm` is 1000000 for a route found.
"""

from __future__ import annotations

from typing import Any

from ...ln.route import NoRouteError, RouteError, RouteQuery, find_route
from ..errors import RpcError, invalid_params
from ..params import opt, p_any, p_msat, p_pubkey, p_u32, req
from ..registry import command

PAY_ROUTE_NOT_FOUND = 205
KNOWN_LAYERS = {"auto.localchans", "auto.sourcefree", "auto.no_mpp_support"}


@command("getroutes", [req("source", p_pubkey), req("destination", p_pubkey), req("amount_msat", p_msat),
                       req("layers", p_any), req("maxfee_msat", p_msat), req("final_cltv", p_u32),
                       opt("maxdelay", p_u32), opt("maxparts", p_u32)],
         category="payment", description="Routes from {source} to {destination} for {amount_msat}.")
async def getroutes(ctx, source: bytes, destination: bytes, amount_msat: Any, layers: Any, maxfee_msat: Any,
                    final_cltv: int, maxdelay: int | None, maxparts: int | None) -> dict:
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise invalid_params("layers: should be an array of layer names")
    unknown = [x for x in layers if x not in KNOWN_LAYERS]
    if unknown:
        raise invalid_params(f"layers: unknown layer {unknown[0]}")
    if int(amount_msat) == 0:
        raise invalid_params("amount_msat: must be non-zero")
    gossip = getattr(ctx.node, "gossip", None)
    if gossip is None:
        raise RpcError(-1, "Gossip is not running")
    local = None
    if "auto.localchans" in layers and source == ctx.node.node_id:
        from ampere.node.payments.pay import payer_for

        local = payer_for(ctx.node).local_channels()
    query = RouteQuery(source=source, destination=destination, amount_msat=int(amount_msat), final_cltv=final_cltv,
                       max_fee_msat=int(maxfee_msat), max_delay=maxdelay, local_channels=local)
    try:
        route = find_route(gossip.state.graph, query)
    except (NoRouteError, RouteError) as e:
        raise RpcError(PAY_ROUTE_NOT_FOUND, f"Could not find route: {e}") from None
    path = []
    node_in, amount_in, cltv_in = source, route[0].amount_msat, route[0].delay
    for hop in route:
        path.append({"short_channel_id_dir": f"{hop.short_channel_id}/{hop.direction}",
                     "node_id_in": node_in.hex(), "node_id_out": hop.node_id.hex(),
                     "amount_in_msat": amount_in, "amount_out_msat": hop.amount_msat,
                     "cltv_in": cltv_in, "cltv_out": hop.delay})
        node_in, amount_in, cltv_in = hop.node_id, hop.amount_msat, hop.delay
    return {"probability_ppm": 1_000_000,
            "routes": [{"probability_ppm": 1_000_000, "amount_msat": int(amount_msat), "final_cltv": final_cltv,
                        "path": path}]}
