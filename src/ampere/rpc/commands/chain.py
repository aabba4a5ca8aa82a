"""Chain commands: feerates, parsefeerate, waitblockheight (CLN's lightningd/feerate.c and
chaintopology.c shapes and errors)."""

from __future__ import annotations

from typing import Any

from ampere.node.onchain.feerate import FeerateError, NoFeeEstimates, parse_feerate, to_style
from ..errors import LIGHTNINGD, RpcError, invalid_params
from ..params import ParamError, opt, p_any, p_bool, p_enum, p_string, p_u32, req
from ..registry import command

BCLI_NO_FEE_ESTIMATES = 401
WAIT_TIMEOUT = 2000
U32_MAX = 0xFFFFFFFF
# BOLT #3: "The weight of an HTLC-timeout transaction is 663, of an HTLC-success 703" (no anchors);
# and CLN's rough weights for an opening (702), a mutual close (673) and unilateral closes.
_HTLC_TIMEOUT_WEIGHT, _HTLC_SUCCESS_WEIGHT = 663, 703


def require_chain(ctx) -> Any:
    chain = ctx.node.chain
    if chain is None:
        raise RpcError(LIGHTNINGD, "No chain backend: ampd was started with --disable-chain")
    return chain


def feerate_arg(ctx, name: str, value: Any, default: str = "normal") -> int:
    """A feerate parameter (any form CLN accepts) -> perkw, with CLN's errors."""
    chain = require_chain(ctx)
    try:
        return parse_feerate(default if value is None else value, chain.fees)
    except FeerateError as e:
        raise invalid_params(f"'{name}' {e}") from None
    except NoFeeEstimates as e:
        raise RpcError(BCLI_NO_FEE_ESTIMATES, str(e)) from None


def _anchors_offered(ctx) -> bool:
    init = bytes.fromhex(ctx.node.feature_set().get("init", "") or "")
    value = int.from_bytes(init, "big") if init else 0
    return bool(value & ((1 << 22) | (1 << 23)))


@command("feerates", [req("style", p_enum("perkb", "perkw"))], category="bitcoin",
         description="Return feerate estimates, either satoshi-per-kw ({style} perkw) or satoshi-per-kb ({style} perkb).")
async def feerates(ctx, style: str) -> dict:
    fees = require_chain(ctx).fees

    def s(rate: int) -> int:
        return min(to_style(rate, style), U32_MAX)

    out: dict[str, Any] = {}
    if not fees.known:
        out["warning_missing_feerates"] = "Some fee estimates unavailable: bitcoind startup?"
    body: dict[str, Any] = {}
    for name in ("opening", "mutual_close", "unilateral_close", "unilateral_anchor_close", "penalty"):
        rate = fees.named(name)
        if rate:
            body[name] = s(rate)
    body["min_acceptable"] = s(fees.min_acceptable())
    body["max_acceptable"] = s(fees.max_acceptable())
    body["floor"] = s(fees.floor)
    body["estimates"] = [{"blockcount": b, "feerate": s(r), "smoothed_feerate": s(r)} for b, r in fees.estimates]
    out[style] = body
    if fees.known:
        unilateral = fees.named("unilateral_close")
        anchor_close = fees.named("unilateral_anchor_close")
        htlc_rate = fees.for_deadline(6)
        out["onchain_fee_estimates"] = {
            "opening_channel_satoshis": fees.named("opening") * 702 // 1000,
            "mutual_close_satoshis": fees.named("mutual_close") * 673 // 1000,
            "unilateral_close_satoshis": (anchor_close * 1112 // 1000) if _anchors_offered(ctx)
            else unilateral * 598 // 1000,
            "unilateral_close_nonanchor_satoshis": unilateral * 598 // 1000,
            "htlc_timeout_satoshis": htlc_rate * _HTLC_TIMEOUT_WEIGHT // 1000,
            "htlc_success_satoshis": htlc_rate * _HTLC_SUCCESS_WEIGHT // 1000,
        }
    return out


@command("parsefeerate", [req("feerate_str", p_string)], category="bitcoin",
         description="Return current feerate in perkw for a feerate string.")
async def parsefeerate(ctx, feerate_str: str) -> dict:
    return {"perkw": feerate_arg(ctx, "feerate_str", feerate_str)}


@command("waitblockheight", [req("blockheight", p_any), opt("timeout", p_u32, 60)], category="bitcoin",
         description="Wait for the blockchain to reach {blockheight}.")
async def waitblockheight(ctx, blockheight: Any, timeout: int) -> dict:
    try:
        blockheight = p_u32(blockheight)
    except ParamError as e:
        raise invalid_params(f"blockheight: {e}: invalid token '{blockheight}'") from None
    chain = require_chain(ctx)
    if ctx.check:
        return {"blockheight": ctx.node.blockheight}
    if not await chain.wait_for_height(blockheight, timeout):
        raise RpcError(WAIT_TIMEOUT, "Timed out.")
    return {"blockheight": ctx.node.blockheight}


# The built-in bcli's methods (CLN's Bitcoin backend interface), callable as in CLN (`lightning-cli
# getchaininfo`).  With --disable-plugin bcli they are not ours: the node's lookup sends them to the
# plugin that registered them.
BCLI_ERROR = 500


def _bcli(ctx):
    from ampere.node.onchain.chain_backend import BcliBackend

    backend = getattr(require_chain(ctx), "backend", None)
    if not isinstance(backend, BcliBackend):
        raise RpcError(BCLI_ERROR, "bcli is disabled: the Bitcoin backend is a plugin")
    return backend


async def _bcli_call(ctx, method: str, params: dict) -> dict:
    from ...chain.bitcoind import BitcoindError, BitcoindUnreachable

    backend = _bcli(ctx)
    if ctx.check:
        return {}
    try:
        return await backend.method(method, params)
    except (BitcoindError, BitcoindUnreachable, ValueError) as e:
        raise RpcError(BCLI_ERROR, f"{method}: {e}") from None


@command("getchaininfo", [opt("last_height", p_u32)], category="bitcoin",
         description="Get the chain id, the header count, the block count and whether we are in IBD (bcli).")
async def getchaininfo(ctx, last_height: int | None) -> dict:
    return await _bcli_call(ctx, "getchaininfo", {"last_height": last_height})


@command("getrawblockbyheight", [req("height", p_u32)], category="bitcoin",
         description="Get the bitcoin block at a given height (bcli).")
async def getrawblockbyheight(ctx, height: int) -> dict:
    return await _bcli_call(ctx, "getrawblockbyheight", {"height": height})


@command("getutxout", [req("txid", p_string), req("vout", p_u32)], category="bitcoin",
         description="Get information about an output, identified by a {txid} and a {vout} (bcli).")
async def getutxout(ctx, txid: str, vout: int) -> dict:
    return await _bcli_call(ctx, "getutxout", {"txid": txid, "vout": vout})


@command("estimatefees", [], category="bitcoin",
         description="Get the urgent, normal and slow Bitcoin feerates as sat/kVB (bcli).")
async def estimatefees(ctx) -> dict:
    return await _bcli_call(ctx, "estimatefees", {})


@command("sendrawtransaction", [req("tx", p_string), opt("allowhighfees", p_bool, False)], category="bitcoin",
         description="Send a raw transaction to the Bitcoin network (bcli).")
async def sendrawtransaction(ctx, tx: str, allowhighfees: bool) -> dict:
    return await _bcli_call(ctx, "sendrawtransaction", {"tx": tx, "allowhighfees": allowhighfees})


__all__ = ["feerate_arg", "require_chain"]
