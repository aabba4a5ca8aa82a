"""`getroutes` and the askrene layers, as CLN v26.06's askrene plugin offers them, answered by Ampere's path
finder over the gossip graph.

Automatic layers: `auto.localchans` (our own channels, private ones included, with what they can send now),
`auto.sourcefree` (no fee or delay on the source's own channels: true of any route Ampere builds),
`auto.no_mpp_support` (one path: Ampere answers one path anyway).  `auto.include_fees` (the receiver pays the
fees) is refused with a clear error: not implemented.

The layers made with askrene-create-layer are applied in the order given, as CLN applies them to its gossip map:
disabled nodes are avoided; created channels (askrene-create-channel) join the graph, each direction once a
channel update (askrene-update-channel) gives it values; channel updates replace the gossiped values of a
direction (`enabled=false` takes it out); constraints (askrene-inform-channel constrained/unconstrained) bound
what a direction can carry, impressions (inform succeeded) take what was sent off it; biases (askrene-bias-channel,
-bias-node) scale a direction's cost by askrene's factor e^(-bias/(100/ln 30)); reservations (askrene-reserve)
count as already used on their direction.  Persistent layers are kept in the store's `vars` table.

Ampere has no probability model: `probability_ppm` is 1000000 for a route found, and a constraint's minimum is
kept and listed but only its maximum changes routing (a route never needs more than the amount known to pass).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ...ln.route import ExtraEdge, NoRouteError, RouteError, RouteQuery, find_route
from ...primitives.amount import MSAT_PER_SAT
from ...wire.types import ShortChannelId
from ..errors import PAY_ROUTE_NOT_FOUND, RpcError, invalid_params
from ..params import ParamError, opt, p_any, p_bool, p_msat, p_pubkey, p_string, p_u16, p_u32, p_u64, req
from ..registry import command

AUTO_LAYERS = {"auto.localchans", "auto.sourcefree", "auto.no_mpp_support"}
UNSUPPORTED_LAYERS = {"auto.include_fees"}
# CLN getroutes: "no HTLC is allowed to have a CLTV delay more than 2016 blocks."
MAX_DELAY = 2016
PAY_USER_ERROR = 217  # common/jsonrpc_errors.h
_LISTS = ("disabled_nodes", "created_channels", "channel_updates", "constraints", "impressions", "biases",
          "node_biases")


def _p_scid_dir(v: Any) -> str:
    if isinstance(v, str):
        scid, sep, d = v.partition("/")
        try:
            if sep and d in ("0", "1"):
                return f"{ShortChannelId.from_str(scid)}/{d}"
        except ValueError:
            pass
    raise ParamError("should be a short_channel_id_dir")


def _p_scid(v: Any) -> str:
    try:
        if isinstance(v, str):
            return str(ShortChannelId.from_str(v))
    except ValueError:
        pass
    raise ParamError("should be a short_channel_id of form NxNxN")


def _p_bias(v: Any) -> int:
    if isinstance(v, str):
        try:
            v = int(v, 10)
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, int) or not -100 <= v <= 100:
        raise ParamError("should be a number between -100 and 100")
    return v


def _p_path(v: Any) -> list[dict]:
    """askrene-reserve's path: hops with short_channel_id_dir, amount_msat and an optional layer (other keys,
    such as getroutes' own, are ignored as CLN does)."""
    if not isinstance(v, list):
        raise ParamError("should be an array")
    out = []
    for hop in v:
        if not isinstance(hop, dict) or "short_channel_id_dir" not in hop or "amount_msat" not in hop:
            raise ParamError("should be an object with short_channel_id_dir and amount_msat")
        layer = hop.get("layer")
        if layer is not None and not isinstance(layer, str):
            raise ParamError("layer should be a string")
        out.append({"short_channel_id_dir": _p_scid_dir(hop["short_channel_id_dir"]),
                    "amount_msat": int(p_msat(hop["amount_msat"])), "layer": layer})
    return out


def _key(scidd: str) -> tuple[int, int]:
    scid, _, d = scidd.partition("/")
    return int(ShortChannelId.from_str(scid)), int(d)


# ---- the layer store --------------------------------------------------------------------------

_VARS_KEY = "askrene_layers"


async def _layers(ctx) -> dict[str, dict]:
    """The node's layers, loaded once (the persistent ones from the store), in creation order."""
    layers = ctx.node.askrene_layers
    if layers is None:
        rows = await ctx.node.store.read(lambda db: db.query("SELECT val FROM vars WHERE name = ?", (_VARS_KEY,)))
        layers = json.loads(rows[0][0]) if rows else {}
        for layer in layers.values():  # layers saved before a list existed
            for name in _LISTS:
                layer.setdefault(name, [])
        ctx.node.askrene_layers = layers
    return layers


async def _save(ctx, layer: dict) -> None:
    """Persist before answering: a persistent layer's change is durable when the command returns."""
    if not layer["persistent"]:
        return
    text = json.dumps({k: v for k, v in (await _layers(ctx)).items() if v["persistent"]})
    await ctx.node.store.write(lambda db: db.execute("INSERT OR REPLACE INTO vars (name, val) VALUES (?, ?)",
                                                     (_VARS_KEY, text)))


async def _layer(ctx, name: str) -> dict:
    layer = (await _layers(ctx)).get(name)
    if layer is None:
        raise invalid_params(f"layer: Unknown layer: invalid token '\"{name}\"'")
    return layer


def _layer_json(layer: dict) -> dict:
    return {"layer": layer["layer"], "persistent": layer["persistent"],
            **{name: [dict(x) if isinstance(x, dict) else x for x in layer[name]] for name in _LISTS}}


def _reservations(ctx) -> list[dict]:
    return ctx.node.askrene_reservations


# ---- getroutes --------------------------------------------------------------------------------

def _overlay(graph, names: list[str], user: dict[str, dict], reservations: list[dict]) -> dict[str, Any]:
    """The RouteQuery fields that apply `names`' layers over the gossip graph."""
    exclude_nodes: set[bytes] = set()
    created: dict[int, tuple[bytes, bytes, int]] = {}  # scid -> (node_1, node_2, capacity_msat)
    updates: dict[tuple[int, int], dict] = {}
    maximum: dict[tuple[int, int], int] = {}
    impressed: dict[tuple[int, int], int] = {}
    bias: dict[tuple[int, int], int] = {}
    node_bias: dict[bytes, list[int]] = {}
    for name in names:
        layer = user.get(name)
        if layer is None:
            continue
        exclude_nodes.update(bytes.fromhex(n) for n in layer["disabled_nodes"])
        for c in layer["created_channels"]:
            a, b = bytes.fromhex(c["source"]), bytes.fromhex(c["destination"])
            created[int(ShortChannelId.from_str(c["short_channel_id"]))] = (min(a, b), max(a, b), c["capacity_msat"])
        for u in layer["channel_updates"]:
            updates.setdefault(_key(u["short_channel_id_dir"]), {}).update(u)
        for c in layer["constraints"]:
            if "maximum_msat" in c:
                k = _key(c["short_channel_id_dir"])
                maximum[k] = min(maximum.get(k, c["maximum_msat"]), c["maximum_msat"])
        for i in layer["impressions"]:
            k = _key(i["short_channel_id_dir"])
            impressed[k] = impressed.get(k, 0) + i["amount_msat"]
        for b in layer["biases"]:
            k = _key(b["short_channel_id_dir"])
            bias[k] = bias.get(k, 0) + b["bias"]
        for b in layer["node_biases"]:
            nb = node_bias.setdefault(bytes.fromhex(b["node"]), [0, 0])
            nb[0] += b["in_bias"]
            nb[1] += b["out_bias"]

    def ends(scid: int, d: int) -> tuple[bytes, bytes, int] | None:
        """(source, destination, capacity_msat) of a direction, a layer's channel first."""
        if scid in created:
            n1, n2, cap = created[scid]
        else:
            ch = graph.channel(scid)
            if ch is None:
                return None
            n1, n2, cap = ch.node1, ch.node2, ch.capacity_sat * MSAT_PER_SAT
        return (n2, n1, cap) if d else (n1, n2, cap)

    exclude_channels: set[tuple[int, int]] = set()
    extra: list[ExtraEdge] = []
    for (scid, d), upd in updates.items():
        found = ends(scid, d)
        if found is None:
            continue
        src, dst, cap = found
        ch = None if scid in created else graph.channel(scid)
        half = ch.halves[d] if ch is not None else None
        if half is None and ch is not None:
            continue  # a gossiped channel whose direction was never announced: nothing to update
        # A layer's channel direction is usable once an update gives it values, unless that update disables it.
        enabled = upd.get("enabled", half.enabled if half is not None else True)
        if not enabled:
            exclude_channels.add((scid, d))
            continue

        def value(name: str, gossiped: Any, default: int) -> int:
            return int(upd[name]) if name in upd else int(gossiped) if half is not None else default

        extra.append(ExtraEdge(src, dst, scid, d,
                               value("fee_base_msat", half and half.fee_base_msat, 0),
                               value("fee_proportional_millionths", half and half.fee_proportional_millionths, 0),
                               value("cltv_expiry_delta", half and half.cltv_expiry_delta, 0),
                               value("htlc_minimum_msat", half and half.htlc_minimum_msat, 0),
                               value("htlc_maximum_msat", half and half.htlc_maximum_msat, cap), cap))
    capacity = dict(maximum)
    for k, amount in impressed.items():
        found = ends(*k)
        known = capacity.get(k, found[2] if found else None)
        if known is not None:
            capacity[k] = max(0, known - amount)
    for node, (in_bias, out_bias) in node_bias.items():
        gnode = graph.node(node)
        scids = set(gnode.channels) if gnode is not None else set()
        scids.update(s for s, (n1, n2, _) in created.items() if node in (n1, n2))
        for scid in scids:
            found = ends(scid, 0)
            if found is None:
                continue
            out_dir = 0 if found[0] == node else 1
            bias[(scid, out_dir)] = bias.get((scid, out_dir), 0) + out_bias
            bias[(scid, 1 - out_dir)] = bias.get((scid, 1 - out_dir), 0) + in_bias
    used: dict[tuple[int, int], int] = {}
    for r in reservations:
        if r["layer"] is None or r["layer"] in names:
            k = _key(r["short_channel_id_dir"])
            used[k] = used.get(k, 0) + r["amount_msat"]
    return {"exclude_nodes": frozenset(exclude_nodes), "exclude_channels": frozenset(exclude_channels),
            "extra_edges": tuple(extra), "capacity_msat": capacity,
            "bias": {k: max(-100, min(100, b)) for k, b in bias.items() if b}, "used_msat": used}


async def _checked_layers(ctx, layers: Any) -> dict[str, dict]:
    """The node's layers, once `layers` (getroutes'/xpay's parameter) names only known ones (else -32602)."""
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise invalid_params("layers: should be an array of layer names")
    for name in UNSUPPORTED_LAYERS.intersection(layers):
        raise invalid_params(f"layers: {name} is not supported by Ampere")
    user = await _layers(ctx)
    unknown = [x for x in layers if x not in AUTO_LAYERS and x not in user]
    if unknown:
        raise invalid_params(f"layers: unknown layer: invalid token '\"{unknown[0]}\"'")
    return user


async def overlay_for(ctx, layers: Any) -> dict[str, Any]:
    """The RouteQuery fields for `layers` (xpay's `layers`): -32602 for a bad list or an unknown layer.  Reservations
    are left out (the payment's own parts are what it counts as used)."""
    user = await _checked_layers(ctx, layers)
    gossip = ctx.node.gossip
    if gossip is None:
        return {}
    found = _overlay(gossip.state.graph, layers, user, [])
    del found["used_msat"]
    return found


@command("getroutes", [req("source", p_pubkey), req("destination", p_pubkey), req("amount_msat", p_msat),
                       req("layers", p_any), req("maxfee_msat", p_msat), req("final_cltv", p_u32),
                       opt("maxdelay", p_u32, MAX_DELAY), opt("maxparts", p_u32, 100)],
         category="payment", description="Routes from {source} to {destination} for {amount_msat}.")
async def getroutes(ctx, source: bytes, destination: bytes, amount_msat: Any, layers: Any, maxfee_msat: Any,
                    final_cltv: int, maxdelay: int, maxparts: int) -> dict:
    user = await _checked_layers(ctx, layers)
    if int(amount_msat) == 0:
        raise invalid_params("amount must be non-zero")
    if maxparts == 0:
        raise invalid_params("maxparts must be non-zero")
    if maxdelay > MAX_DELAY:
        raise RpcError(PAY_USER_ERROR, f"maximum delay allowed is {MAX_DELAY}")
    if ctx.check:
        return {}
    gossip = ctx.node.gossip
    if gossip is None:
        raise RpcError(-1, "Gossip is not running")
    graph = gossip.state.graph
    local = None
    if "auto.localchans" in layers and source == ctx.node.node_id:
        local = ctx.node.payer.local_channels()
    query = RouteQuery(source=source, destination=destination, amount_msat=int(amount_msat), final_cltv=final_cltv,
                       max_fee_msat=int(maxfee_msat), max_delay=maxdelay, local_channels=local,
                       **_overlay(graph, layers, user, _reservations(ctx)))
    try:
        route = find_route(graph, query)
    except (NoRouteError, RouteError) as e:
        raise RpcError(PAY_ROUTE_NOT_FOUND, f"Could not find route: {e}") from None
    # CLN v26.06 deprecated a hop's amount_msat, next_node_id and delay (until v27.06): still there while
    # allow-deprecated-apis is on (its default), so a path can go straight to askrene-reserve.
    deprecated = bool(ctx.node.options.get("allow-deprecated-apis"))
    path = []
    node_in, amount_in, cltv_in = source, route[0].amount_msat, route[0].delay
    for hop in route:
        entry = {"short_channel_id_dir": f"{hop.short_channel_id}/{hop.direction}",
                 "node_id_in": node_in.hex(), "node_id_out": hop.node_id.hex(),
                 "amount_in_msat": amount_in, "amount_out_msat": hop.amount_msat,
                 "cltv_in": cltv_in, "cltv_out": hop.delay}
        if deprecated:
            entry.update(amount_msat=amount_in, next_node_id=hop.node_id.hex(), delay=cltv_in)
        path.append(entry)
        node_in, amount_in, cltv_in = hop.node_id, hop.amount_msat, hop.delay
    return {"probability_ppm": 1_000_000,
            "routes": [{"probability_ppm": 1_000_000, "amount_msat": int(amount_msat), "final_cltv": final_cltv,
                        "path": path}]}


# ---- layers -----------------------------------------------------------------------------------

@command("askrene-create-layer", [req("layer", p_string), opt("persistent", p_bool, False)], category="payment",
         description="Create a layer {layer} for getroutes, optionally {persistent} across restarts.")
async def askrene_create_layer(ctx, layer: str, persistent: bool) -> dict:
    if layer.startswith("auto."):
        raise invalid_params("Cannot create auto layer")
    layers = await _layers(ctx)
    # CLN: "If it's persistent, creation is a noop if it already exists"
    if layer in layers and not persistent:
        raise invalid_params("Layer already exists")
    if ctx.check:
        return {}
    if layer not in layers:
        layers[layer] = {"layer": layer, "persistent": persistent, **{name: [] for name in _LISTS}}
        await _save(ctx, layers[layer])
    return {"layers": [_layer_json(layers[layer])]}


@command("askrene-remove-layer", [req("layer", p_string)], category="payment", description="Remove the layer {layer}.")
async def askrene_remove_layer(ctx, layer: str) -> dict:
    found = await _layer(ctx, layer)
    if ctx.check:
        return {}
    del (await _layers(ctx))[layer]
    if found["persistent"]:
        await _save(ctx, found)
    return {}


@command("askrene-listlayers", [opt("layer", p_string)], category="payment",
         description="List the layers (or only {layer}).")
async def askrene_listlayers(ctx, layer: str | None) -> dict:
    if layer is not None:
        return {"layers": [_layer_json(await _layer(ctx, layer))]}
    return {"layers": [_layer_json(v) for v in (await _layers(ctx)).values()]}


@command("askrene-disable-node", [req("layer", p_string), req("node", p_pubkey)], category="payment",
         description="Make getroutes avoid {node} when using {layer}.")
async def askrene_disable_node(ctx, layer: str, node: bytes) -> dict:
    found = await _layer(ctx, layer)
    if ctx.check:
        return {}
    if node.hex() not in found["disabled_nodes"]:
        found["disabled_nodes"].append(node.hex())
        await _save(ctx, found)
    return {}


@command("askrene-create-channel", [req("layer", p_string), req("source", p_pubkey), req("destination", p_pubkey),
                                   req("short_channel_id", _p_scid), req("capacity_msat", p_msat)],
         category="payment", description="Add a channel {short_channel_id} between {source} and {destination} "
                                         "to {layer} (give each direction values with askrene-update-channel).")
async def askrene_create_channel(ctx, layer: str, source: bytes, destination: bytes, short_channel_id: str,
                                 capacity_msat: Any) -> dict:
    found = await _layer(ctx, layer)
    if source == destination:
        raise invalid_params("source and destination must be different")
    if any(c["short_channel_id"] == short_channel_id for c in found["created_channels"]):
        raise invalid_params("channel already exists")
    if ctx.check:
        return {}
    # Listed in BOLT #7 order (node_id_1 the lesser), as CLN does.
    n1, n2 = sorted((source, destination))
    found["created_channels"].append({"source": n1.hex(), "destination": n2.hex(),
                                      "short_channel_id": short_channel_id, "capacity_msat": int(capacity_msat)})
    await _save(ctx, found)
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
    await _save(ctx, found)
    return {}


@command("askrene-remove-channel-update", [req("layer", p_string), req("short_channel_id_dir", _p_scid_dir)],
         category="payment", description="Remove {layer}'s channel update of {short_channel_id_dir}.")
async def askrene_remove_channel_update(ctx, layer: str, short_channel_id_dir: str) -> dict:
    found = await _layer(ctx, layer)
    if ctx.check:
        return {}
    found["channel_updates"] = [u for u in found["channel_updates"] if u["short_channel_id_dir"] != short_channel_id_dir]
    await _save(ctx, found)
    return {}


@command("askrene-inform-channel", [req("layer", p_string), req("short_channel_id_dir", _p_scid_dir),
                                   req("amount_msat", p_msat),
                                   req("inform", lambda v: _inform(v))],
         category="payment", description="Tell {layer} that {amount_msat} was {inform} on {short_channel_id_dir}.")
async def askrene_inform_channel(ctx, layer: str, short_channel_id_dir: str, amount_msat: Any, inform: str) -> dict:
    found = await _layer(ctx, layer)
    amount = int(amount_msat)
    now = int(time.time())
    constraint = impression = None
    if inform == "constrained":
        # CLN: "It didn't pass, so minimal assumption is that reserve was all used then there we were one msat
        # short."  (reservations restricted to another layer do not count)
        amount += sum(r["amount_msat"] for r in _reservations(ctx)
                      if r["short_channel_id_dir"] == short_channel_id_dir and r["layer"] in (None, layer))
        constraint = {"short_channel_id_dir": short_channel_id_dir, "timestamp": now,
                      "maximum_msat": max(0, amount - 1)}
    elif inform == "unconstrained":
        constraint = {"short_channel_id_dir": short_channel_id_dir, "timestamp": now}
        if amount:
            constraint["minimum_msat"] = amount
    else:
        impression = {"short_channel_id_dir": short_channel_id_dir, "timestamp": now, "amount_msat": amount}
    if ctx.check:
        return {}
    if constraint is not None:
        found["constraints"].append(constraint)
    if impression is not None:
        found["impressions"].append(impression)
    await _save(ctx, found)
    return {"constraints": [{"layer": layer, **constraint}] if constraint else [],
            "impressions": [{"layer": layer, **impression}] if impression else []}


def _inform(v: Any) -> str:
    if v not in ("constrained", "unconstrained", "succeeded"):
        raise ParamError("must be constrained/unconstrained/succeeded")
    return v


@command("askrene-bias-channel", [req("layer", p_string), req("short_channel_id_dir", _p_scid_dir),
                                 req("bias", _p_bias), opt("description", p_string), opt("relative", p_bool, False)],
         category="payment", description="Favour (positive {bias}) or avoid a channel direction in {layer}.")
async def askrene_bias_channel(ctx, layer: str, short_channel_id_dir: str, bias: int, description: str | None,
                               relative: bool) -> dict:
    found = await _layer(ctx, layer)
    if ctx.check:
        return {}
    old = next((b for b in found["biases"] if b["short_channel_id_dir"] == short_channel_id_dir), None)
    value = max(-100, min(100, (old["bias"] if old and relative else 0) + bias))
    found["biases"] = [b for b in found["biases"] if b is not old]
    entry = None
    if value:  # CLN: "Don't bother keeping around zero biases"
        entry = {"short_channel_id_dir": short_channel_id_dir, "bias": value, "timestamp": int(time.time())}
        if description is not None:
            entry["description"] = description
        found["biases"].append(entry)
    await _save(ctx, found)
    return {"biases": [{"layer": layer, **entry}] if entry else []}


@command("askrene-bias-node", [req("layer", p_string), req("node", p_pubkey),
                              req("direction", lambda v: _direction(v)), req("bias", _p_bias),
                              opt("description", p_string), opt("relative", p_bool, False)],
         category="payment", description="Favour (positive {bias}) or avoid a node's {direction} channels in {layer}.")
async def askrene_bias_node(ctx, layer: str, node: bytes, direction: str, bias: int, description: str | None,
                            relative: bool) -> dict:
    found = await _layer(ctx, layer)
    if ctx.check:
        return {}
    entry = next((b for b in found["node_biases"] if b["node"] == node.hex()), None)
    if entry is None:
        entry = {"node": node.hex(), "in_bias": 0, "out_bias": 0}
        found["node_biases"].append(entry)
    key = "out_bias" if direction == "out" else "in_bias"
    entry[key] = max(-100, min(100, (entry[key] if relative else 0) + bias))
    entry.pop("description", None)
    if description is not None:
        entry["description"] = description
    entry["timestamp"] = int(time.time())
    if not entry["in_bias"] and not entry["out_bias"]:
        found["node_biases"].remove(entry)
        await _save(ctx, found)
        return {"node_biases": []}
    await _save(ctx, found)
    return {"node_biases": [{"layer": layer, **entry}]}


def _direction(v: Any) -> str:
    if v not in ("in", "out"):
        raise ParamError("Expected either in or out values.")
    return v


@command("askrene-age", [req("layer", p_string), req("cutoff", p_u64)], category="payment",
         description="Forget {layer}'s constraints and biases older than {cutoff} (a UNIX time).")
async def askrene_age(ctx, layer: str, cutoff: int) -> dict:
    found = await _layer(ctx, layer)
    if ctx.check:
        return {}
    removed = 0
    for name in ("constraints", "impressions", "biases", "node_biases"):
        kept = [x for x in found[name] if x["timestamp"] >= cutoff]
        removed += len(found[name]) - len(kept)
        found[name] = kept
    await _save(ctx, found)
    return {"layer": layer, "num_removed": removed}


# ---- reservations -----------------------------------------------------------------------------

@command("askrene-reserve", [req("path", _p_path)], category="payment",
         description="Note that {path} is being tried: getroutes counts its amounts as used until unreserved.")
async def askrene_reserve(ctx, path: list[dict]) -> dict:
    for hop in path:
        if hop["layer"] is not None:
            await _layer(ctx, hop["layer"])
    if ctx.check:
        return {}
    now = time.monotonic()
    _reservations(ctx).extend({**hop, "since": now, "command_id": str(ctx.request.get("id"))} for hop in path)
    return {}


@command("askrene-unreserve", [req("path", _p_path)], category="payment",
         description="The attempt over {path} (reserved with askrene-reserve) is over.")
async def askrene_unreserve(ctx, path: list[dict]) -> dict:
    held = list(_reservations(ctx))
    for hop in path:
        match = next((r for r in held if r["short_channel_id_dir"] == hop["short_channel_id_dir"]
                      and r["amount_msat"] == hop["amount_msat"] and r["layer"] == hop["layer"]), None)
        if match is None:
            on = f" on layer {hop['layer']}" if hop["layer"] else ""
            raise invalid_params(f"Unknown reservation for {hop['short_channel_id_dir']}{on}")
        held.remove(match)
    if ctx.check:
        return {}
    ctx.node.askrene_reservations[:] = held
    return {}


@command("askrene-listreservations", [], category="payment", description="The reservations made with askrene-reserve.")
async def askrene_listreservations(ctx) -> dict:
    now = time.monotonic()
    return {"reservations": [{"short_channel_id_dir": r["short_channel_id_dir"], "amount_msat": r["amount_msat"],
                              "age_in_seconds": int(now - r["since"]), "command_id": r["command_id"]}
                             for r in _reservations(ctx)]}
