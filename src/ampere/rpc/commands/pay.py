"""Paying and forwarding commands: pay, keysend, listpays, paystatus, listforwards, delforward.

Parameters, results and error codes follow Core Lightning (plugins/pay.c, plugins/keysend.c, plugins/xpay's
listpays, lightningd/forwards.c).  The engines are ampere.node.payments.pay (routes, retries, multipath) and
ampere.node.payments.switch (forwarding).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ...ln.invoice_fields import InvoiceError, scid_from_str
from ...ln.route import HintHop
from .askrene import overlay_for
from ampere.node.payments.pay import PayError
from ..errors import DELFORWARD_NOT_FOUND, RpcError, invalid_params, to_rpc_error
from ..params import ParamError, check_paging, opt, p_any, p_bool, p_enum, p_hex, p_msat, p_pubkey, p_sha256, p_string, p_u16, p_u32, p_u64, req
from ..registry import command


def p_fraction(v: Any) -> Fraction:
    """A JSON number (riskfactor, maxfeepercent), exactly: never a float."""
    if isinstance(v, bool):
        raise ParamError("should be a number")
    try:
        f = Fraction(str(v)) if isinstance(v, (int, float, str)) else None
    except (ValueError, ZeroDivisionError):
        f = None
    if f is None or f < 0:
        raise ParamError("should be a non-negative number")
    return f


def p_exclude(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ParamError("should be an array")
    return list(v)


def p_scid(v: Any) -> int:
    if isinstance(v, str):
        try:
            return scid_from_str(v)
        except InvoiceError:
            pass
    raise ParamError("should be a short_channel_id")


def p_extratlvs(v: Any) -> dict[int, bytes]:
    """keysend's extratlvs: {"type": "hexvalue"} (or an array of {type, value})."""
    out: dict[int, bytes] = {}
    items = v.items() if isinstance(v, dict) else [(x.get("type"), x.get("value")) for x in v] \
        if isinstance(v, list) and all(isinstance(x, dict) for x in v) else None
    if items is None:
        raise ParamError("should be an object of type: hexvalue")
    for t, val in items:
        try:
            typ = int(t)
        except (TypeError, ValueError):
            raise ParamError(f"bad type {t!r}") from None
        if not isinstance(val, str):
            raise ParamError(f"bad value for type {typ}")
        try:
            out[typ] = bytes.fromhex(val)
        except ValueError:
            raise ParamError(f"bad value for type {typ}") from None
    return out


def p_routehints(v: Any) -> list[list[HintHop]]:
    if not isinstance(v, list):
        raise ParamError("should be an array of routehints")
    hints = []
    for hint in v:
        if not isinstance(hint, list):
            raise ParamError("should be an array of arrays")
        hops = []
        for hop in hint:
            try:
                node = p_pubkey(hop["id"])
                scid = p_scid(hop["short_channel_id"])
                hops.append(HintHop(node, scid, int(p_msat(hop["fee_base_msat"])), int(hop["fee_proportional_millionths"]),
                                    int(hop["cltv_expiry_delta"])))
            except (KeyError, TypeError, ValueError):
                raise ParamError("bad routehint hop") from None
        hints.append(hops)
    return hints


def _err(e: PayError) -> RpcError:
    return to_rpc_error(e)


def _msat_or_none(v: Any) -> int | None:
    return int(v) if v is not None else None


@command("pay", [req("bolt11", p_string), opt("amount_msat", p_msat), opt("label", p_string),
                 opt("riskfactor", p_fraction), opt("maxfeepercent", p_fraction), opt("retry_for", p_u16),
                 opt("maxdelay", p_u16), opt("exemptfee", p_msat), opt("localinvreqid", p_hex),
                 opt("exclude", p_exclude), opt("maxfee", p_msat), opt("description", p_string),
                 opt("partial_msat", p_msat),
                 # CLN's developer parameter (pyln-testing's dev_pay): turns off shadow routing.  Ampere's pay
                 # never adds a shadow route, so either value pays exactly as asked.
                 opt("dev_use_shadow", p_bool, True)],
         category="payment")
async def pay(ctx, bolt11, amount_msat, label, riskfactor, maxfeepercent, retry_for, maxdelay, exemptfee,
              localinvreqid, exclude, maxfee, description, partial_msat, dev_use_shadow) -> dict:
    """Send payment specified by {bolt11}"""
    if bolt11.lower().startswith("lno"):
        raise invalid_params("bolt11: an offer must be turned into an invoice with fetchinvoice first")
    if bolt11.lower().startswith("lni"):
        # A BOLT 12 invoice: paid over its blinded paths (node.offers).
        if amount_msat is not None:
            raise invalid_params("amount_msat: parameter unnecessary")
        if ctx.check:
            return {"command_to_check": "pay"}
        from ampere.node.payments.offers import OfferError

        try:
            return await ctx.node.offers.pay_invoice(
                bolt11, label=label, maxfee=_msat_or_none(maxfee),
                retry_for=float(retry_for if retry_for is not None else 60))
        except PayError as e:
            raise _err(e) from None
        except OfferError as e:
            raise to_rpc_error(e) from None
    if partial_msat is not None:
        raise invalid_params("partial_msat: not supported")
    payer = ctx.node.payer
    if maxdelay is None:
        maxdelay = ctx.node.options.get("max-locktime-blocks")
    try:
        request = payer.request_from_bolt11(
            bolt11, amount_msat=_msat_or_none(amount_msat), label=label, riskfactor=riskfactor,
            maxfeepercent=maxfeepercent, retry_for=retry_for, maxdelay=maxdelay,
            exemptfee=_msat_or_none(exemptfee), exclude=exclude, maxfee=_msat_or_none(maxfee),
            description=description)
        if ctx.check:
            return {"command_to_check": "pay"}
        return await payer.pay(request)
    except PayError as e:
        raise _err(e) from None


@command("xpay", [req("invstring", p_string), opt("amount_msat", p_msat), opt("maxfee", p_msat), opt("layers", p_any),
                  opt("retry_for", p_u32), opt("partial_msat", p_msat), opt("maxdelay", p_u32),
                  opt("payer_note", p_string), opt("label", p_string), opt("localinvreqid", p_hex),
                  opt("dev_use_shadow", p_bool, True)],
         category="payment")
async def xpay(ctx, invstring, amount_msat, maxfee, layers, retry_for, partial_msat, maxdelay, payer_note, label,
               localinvreqid, dev_use_shadow) -> dict:
    """Pay {invstring} (CLN's xpay interface, carried out by Ampere's pay engine)"""
    if invstring.lower().startswith("lno") or invstring.lower().startswith("lni"):
        raise invalid_params("invstring: BOLT12 invoices are not supported")
    if partial_msat is not None:
        raise invalid_params("partial_msat: not supported")
    overlay = await overlay_for(ctx, layers) if layers is not None else {}
    payer = ctx.node.payer
    if maxdelay is None:
        maxdelay = ctx.node.options.get("max-locktime-blocks")
    try:
        request = payer.request_from_bolt11(
            invstring, amount_msat=_msat_or_none(amount_msat), label=label, riskfactor=None, maxfeepercent=None,
            retry_for=retry_for, maxdelay=maxdelay, exemptfee=None, exclude=None, maxfee=_msat_or_none(maxfee),
            description=None)
        request.route_overlay = overlay
        if ctx.check:
            return {"command_to_check": "xpay"}
        res = await payer.pay(request)
    except PayError as e:
        raise _err(e) from None
    return {"payment_preimage": res["payment_preimage"], "failed_parts": 0, "successful_parts": res["parts"],
            "amount_msat": res["amount_msat"], "amount_sent_msat": res["amount_sent_msat"]}


@command("keysend", [req("destination", p_pubkey), req("amount_msat", p_msat), opt("label", p_string),
                     opt("maxfeepercent", p_fraction), opt("retry_for", p_u32), opt("maxdelay", p_u32),
                     opt("exemptfee", p_msat), opt("routehints", p_routehints), opt("extratlvs", p_extratlvs),
                     opt("maxfee", p_msat)],
         category="payment")
async def keysend(ctx, destination, amount_msat, label, maxfeepercent, retry_for, maxdelay, exemptfee, routehints,
                  extratlvs, maxfee) -> dict:
    """Send funds to a node without an invoice"""
    if int(amount_msat) == 0:
        raise invalid_params("amount_msat: must be non-zero")
    payer = ctx.node.payer
    if maxdelay is None:
        maxdelay = ctx.node.options.get("max-locktime-blocks")
    try:
        request = payer.keysend_request(destination, int(amount_msat), label=label, maxfeepercent=maxfeepercent,
                                        retry_for=retry_for, maxdelay=maxdelay, exemptfee=_msat_or_none(exemptfee),
                                        maxfee=_msat_or_none(maxfee), extratlvs=extratlvs, routehints=routehints)
        if ctx.check:
            return {"command_to_check": "keysend"}
        return await payer.pay(request)
    except PayError as e:
        raise _err(e) from None


@command("listpays", [opt("bolt11", p_string), opt("payment_hash", p_sha256),
                      opt("status", p_enum("pending", "complete", "failed")),
                      opt("index", p_enum("created", "updated")), opt("start", p_u64), opt("limit", p_u32)],
         category="payment")
async def listpays(ctx, bolt11, payment_hash, status, index, start, limit) -> dict:
    """List result of payment {bolt11} or {payment_hash}, or all"""
    check_paging(index, start, limit)
    await ctx.node.payments.start()
    return {"pays": ctx.node.payer.listpays(bolt11, payment_hash, status, index, start, limit)}


@command("paystatus", [opt("bolt11", p_string)], category="payment")
async def paystatus(ctx, bolt11) -> dict:
    """Detail status of attempts to pay {bolt11}, or all"""
    return {"pay": ctx.node.payer.paystatus(bolt11)}


@command("listforwards", [opt("status", p_enum("offered", "settled", "local_failed", "failed")),
                          opt("in_channel", p_scid), opt("out_channel", p_scid),
                          opt("index", p_enum("created", "updated")), opt("start", p_u64), opt("limit", p_u32)],
         category="channels")
async def listforwards(ctx, status, in_channel, out_channel, index, start, limit) -> dict:
    """List all forwarded payments and their information optionally filtering by [status], [in_channel] and
    [out_channel]"""
    check_paging(index, start, limit)
    if index is not None and (in_channel is not None or out_channel is not None):
        raise invalid_params("Cannot specify {index} with {in_channel} or {out_channel}")
    sw = ctx.node.switch
    await sw.start()
    return {"forwards": await sw.list(status, in_channel, out_channel, index, start, limit)}


@command("delforward", [req("in_channel", p_scid), req("in_htlc_id", p_u64),
                        req("status", p_enum("settled", "local_failed", "failed"))],
         category="channels")
async def delforward(ctx, in_channel, in_htlc_id, status) -> dict:
    """Delete a forward record"""
    sw = ctx.node.switch
    await sw.start()
    if not await sw.delete(in_channel, in_htlc_id, status):
        raise RpcError(DELFORWARD_NOT_FOUND, "Could not find that forward")
    return {}
