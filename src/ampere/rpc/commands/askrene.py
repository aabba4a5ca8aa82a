"""`getroutes`: CLN's askrene route query (the one pyln-testing's `single_route` / `wait_for_route` use), answered
by Ampere's path finder over the gossip graph.

Layers: `auto.localchans` (our own channels, private ones included, with what they can send now),
`auto.sourcefree` (no fee or delay on the source's own channels: true of any route Ampere builds) and
`auto.no_mpp_support` (one path: Ampere answers one path anyway) are understood, and the layers made with
askrene-create-layer: their disabled nodes (askrene-disable-node) and channel directions disabled with
askrene-update-channel `enabled=false` are avoided.  Other askrene-update-channel values are recorded
and listed but do not change routing yet; askrene-create-channel, -inform-channel, -bias-*, -reserve and
-age are not implemented.  Persistent layers are kept in the store's `vars` table.
Ampere has no probability model: `probability_ppm` is 1000000 for a route found.
"""

from __future__ import annotations

from typing import Any

import json

from ...ln.route import NoRouteError, RouteError, RouteQuery, find_route
from ..errors import PAY_ROUTE_NOT_FOUND, RpcError, invalid_params
from ..params import opt, p_any, p_bool, p_msat, p_pubkey, p_string, p_u16, p_u32, req
from ..registry import command
from ...wire.types import ShortChannelId

KNOWN_LAYERS = {"auto.localchans", "auto.sourcefree", "auto.no_mpp_support"}


@command("getroutes", [req("source", p_pubkey), req("destination", p_pubkey), req("amount_msat", p_msat),
                       req("layers", p_any), req("maxfee_msat", p_msat), req("final_cltv", p_u32),
                       opt("maxdelay", p_u32), opt("maxparts", p_u32)],
         category="payment", description="Routes from {source} to {destination} for {amount_msat}.")
async def getroutes(ctx, source: bytes, destination: bytes, amount_msat: Any, layers: Any, maxfee_msat: Any,
                    final_cltv: int, maxdelay: int | None, maxparts: int | None) -> dict:
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise invalid_params("layers: should be an array of layer names")
    user = await _layers(ctx)
    unknown = [x for x in layers if x not in KNOWN_LAYERS and x not in user]
    if unknown:
        raise invalid_params(f"layers: unknown layer {unknown[0]}")
    exclude_nodes: set[bytes] = set()
    exclude_channels: set[tuple[int, int]] = set()
    for name in layers:
        layer = user.get(name)
        if layer is None:
            continue
        exclude_nodes.update(bytes.fromhex(n) for n in layer["disabled_nodes"])
        for u in layer["channel_updates"]:
            if u.get("enabled") is False:
                scid, _, d = u["short_channel_id_dir"].partition("/")
                exclude_channels.add((int(ShortChannelId.from_str(scid)), int(d)))
    if int(amount_msat) == 0:
        raise invalid_params("amount_msat: must be non-zero")
    gossip = ctx.node.gossip
    if gossip is None:
        raise RpcError(-1, "Gossip is not running")
    local = None
    if "auto.localchans" in layers and source == ctx.node.node_id:
        local = ctx.node.payer.local_channels()
    query = RouteQuery(source=source, destination=destination, amount_msat=int(amount_msat), final_cltv=final_cltv,
                       max_fee_msat=int(maxfee_msat), max_delay=maxdelay, local_channels=local,
                       exclude_nodes=frozenset(exclude_nodes), exclude_channels=frozenset(exclude_channels))
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


# ---- layers (askrene-create-layer and friends) ------------------------------------------------

_VARS_KEY = "askrene_layers"


async def _layers(ctx) -> dict[str, dict]:
    """The node's layers, loaded once (the persistent ones from the store)."""
    layers = ctx.node.askrene_layers
    if layers is None:
        rows = await ctx.node.store.read(lambda db: db.query("SELECT val FROM vars WHERE name = ?", (_VARS_KEY,)))
        layers = json.loads(rows[0][0]) if rows else {}
        ctx.node.askrene_layers = layers
    return layers


async def _save(ctx) -> None:
    text = json.dumps({k: v for k, v in (await _layers(ctx)).items() if v["persistent"]})
    await ctx.node.store.write(lambda db: db.execute("INSERT OR REPLACE INTO vars (name, val) VALUES (?, ?)",
                                                     (_VARS_KEY, text)))


async def _layer(ctx, name: str) -> dict:
    layer = (await _layers(ctx)).get(name)
    if layer is None:
        raise invalid_params(f"layer: Unknown layer {name}")
    return layer


def _p_layer_name(v: Any) -> str:
    name = p_string(v)
    if name.startswith("auto."):
        raise invalid_params("layer: Cannot use auto. layers")
    return name


def _p_scid_dir(v: Any) -> str:
    if isinstance(v, str):
        scid, sep, d = v.partition("/")
        try:
            if sep and d in ("0", "1"):
                return f"{ShortChannelId.from_str(scid)}/{d}"
        except ValueError:
            pass
    raise invalid_params("short_channel_id_dir: should be a short_channel_id_dir")


def _layer_json(layer: dict) -> dict:
    return {"layer": layer["layer"], "persistent": layer["persistent"], "disabled_nodes": list(layer["disabled_nodes"]),
            "disabled_channels": [], "created_channels": [], "channel_updates": list(layer["channel_updates"]),
            "constraints": [], "impressions": [], "biases": [], "node_biases": []}


@command("askrene-create-layer", [req("layer", _p_layer_name), opt("persistent", p_bool, False)], category="payment",
         description="Create a layer {layer} for getroutes, optionally {persistent} across restarts.")
async def askrene_create_layer(ctx, layer: str, persistent: bool) -> dict:
    layers = await _layers(ctx)
    if layer in layers:
        raise invalid_params(f"layer: Layer {layer} already exists")
    if ctx.check:
        return {}
    layers[layer] = {"layer": layer, "persistent": persistent, "disabled_nodes": [], "channel_updates": []}
    if persistent:
        await _save(ctx)
    return {"layers": [_layer_json(layers[layer])]}


@command("askrene-remove-layer", [req("layer", p_string)], category="payment", description="Remove the layer {layer}.")
async def askrene_remove_layer(ctx, layer: str) -> dict:
    found = await _layer(ctx, layer)
    if ctx.check:
        return {}
    del (await _layers(ctx))[layer]
    if found["persistent"]:
        await _save(ctx)
    return {}


@command("askrene-listlayers", [opt("layer", p_string)], category="payment",
         description="List the layers (or only {layer}).")
async def askrene_listlayers(ctx, layer: str | None) -> dict:
    layers = await _layers(ctx)
    if layer is not None:
        return {"layers": [_layer_json(layers[layer])] if layer in layers else []}
    return {"layers": [_layer_json(v) for _, v in sorted(layers.items())]}


@command("askrene-disable-node", [req("layer", p_string), req("node", p_pubkey)], category="payment",
         description="Make getroutes avoid {node} when using {layer}.")
async def askrene_disable_node(ctx, layer: str, node: bytes) -> dict:
    found = await _layer(ctx, layer)
    if ctx.check:
        return {}
    if node.hex() not in found["disabled_nodes"]:
        found["disabled_nodes"].append(node.hex())
        if found["persistent"]:
            await _save(ctx)
    return {}


@command("askrene-update-channel", [req("layer", p_string), req("short_channel_id_dir", _p_scid_dir),
                                   opt("enabled", p_bool), opt("htlc_minimum_msat", p_msat),
                                   opt("htlc_maximum_msat", p_msat), opt("fee_base_msat", p_msat),
                                   opt("fee_proportional_millionths", p_u32), opt("cltv_expiry_delta", p_u16)],
         category="payment", description="Change a channel direction's values in {layer} ({enabled}=false: avoid it).")
async def askrene_update_channel(ctx, layer: str, short_channel_id_dir: str, enabled: bool | None,
                                 htlc_minimum_msat: Any, htlc_maximum_msat: Any, fee_base_msat: Any,
                                 fee_proportional_millionths: int | None, cltv_expiry_delta: int | None) -> dict:
    found = await _layer(ctx, layer)
    if ctx.check:
        return {}
    update = next((u for u in found["channel_updates"] if u["short_channel_id_dir"] == short_channel_id_dir), None)
    if update is None:
        update = {"short_channel_id_dir": short_channel_id_dir}
        found["channel_updates"].append(update)
    for key, value in (("enabled", enabled), ("htlc_minimum_msat", htlc_minimum_msat),
                       ("htlc_maximum_msat", htlc_maximum_msat), ("fee_base_msat", fee_base_msat),
                       ("fee_proportional_millionths", fee_proportional_millionths),
                       ("cltv_expiry_delta", cltv_expiry_delta)):
        if value is not None:
            update[key] = value if isinstance(value, (bool, int)) else int(value)
    if found["persistent"]:
        await _save(ctx)
    return {}
