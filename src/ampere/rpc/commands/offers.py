"""BOLT 12 commands in Core Lightning's shapes: offer, listoffers, disableoffer, enableoffer, fetchinvoice;
`decode_bolt12_json` for `decode`; invoicerequest / sendinvoice / disableinvoicerequest /
listinvoicerequests answer a clear "not supported" (offers for money out are not implemented).

The work is in ampere.node.payments.offers (runtime) and ampere.ln.offers (formats).
"""

from __future__ import annotations

from typing import Any

from ...ln.offers import Bolt12Error, decode_bolt12_string, offer_id
from ...ln.offers.fields import parse_invoice, parse_invoice_request, parse_offer
from ampere.node.net.onion_messages import blinded_path_json
from ampere.node.payments.offers import OfferError
from ...primitives.amount import AmountError, parse_msat
from ..errors import RpcError, invalid_params, to_rpc_error
from ..params import ParamError, opt, p_bool, p_sha256, p_string, p_u64, req
from ..registry import command

MAX_DESCRIPTION_BYTES = 65535


def p_offer_amount(v: Any) -> int | None:
    """"any" or a positive msat amount.  A currency amount ("10USD") is refused: no exchange-rate source."""
    if v == "any":
        return None
    if isinstance(v, str) and v[-3:].isalpha() and v[-3:].isupper():
        raise ParamError("currency amounts are not supported")
    try:
        msat = int(parse_msat(v))
    except AmountError:
        raise ParamError("should be 'any' or a positive msat amount") from None
    if msat == 0:
        raise ParamError("should be 'any' or a positive msat amount")
    return msat


def p_timeout(v: Any) -> float:
    try:
        t = float(v)
    except (TypeError, ValueError):
        raise ParamError("should be a number") from None
    if t <= 0:
        raise ParamError("should be positive")
    return t


def _err(e: OfferError) -> RpcError:
    return to_rpc_error(e)


def _refuse(name: str):
    def check(value: Any) -> Any:
        if value is not None:
            raise ParamError("recurrence is not supported")
        return value
    return check


@command("offer", [req("amount", p_offer_amount), opt("description", p_string), opt("issuer", p_string),
                   opt("label", p_string), opt("quantity_max", p_u64), opt("absolute_expiry", p_u64),
                   opt("recurrence", _refuse("recurrence")), opt("recurrence_base", _refuse("recurrence_base")),
                   opt("recurrence_paywindow", _refuse("recurrence_paywindow")),
                   opt("recurrence_limit", _refuse("recurrence_limit")), opt("single_use", p_bool, False),
                   opt("proportional_amount", p_bool), opt("optional_recurrence", p_bool)],
         category="payment", description="Create an offer to accept money")
async def offer(ctx, amount, description, issuer, label, quantity_max, absolute_expiry, recurrence, recurrence_base,
                recurrence_paywindow, recurrence_limit, single_use, proportional_amount, optional_recurrence) -> dict:
    if proportional_amount or optional_recurrence:
        raise invalid_params("recurrence is not supported")
    if amount is not None and description is None:
        # BOLT 12: "if `offer_amount` is set and `offer_description` is not set: MUST NOT respond to the offer."
        raise invalid_params("description: required if amount is set")
    if description is not None and len(description.encode()) > MAX_DESCRIPTION_BYTES:
        raise invalid_params("description: too long")
    if ctx.check:
        return {"command_to_check": "offer"}
    try:
        return await ctx.node.offers.create_offer(
            amount_msat=amount, description=description, issuer=issuer, label=label, quantity_max=quantity_max,
            absolute_expiry=absolute_expiry, single_use=bool(single_use))
    except OfferError as e:
        raise _err(e) from None


@command("listoffers", [opt("offer_id", p_sha256), opt("active_only", p_bool, False)], category="payment",
         description="List offers, or the one with {offer_id}")
async def listoffers(ctx, offer_id, active_only) -> dict:
    return {"offers": await ctx.node.offers.list_offers(offer_id, bool(active_only))}


async def _set_active(ctx, oid: bytes, active: bool) -> dict:
    try:
        return await ctx.node.offers.set_active(oid, active)
    except OfferError as e:
        raise _err(e) from None


@command("disableoffer", [req("offer_id", p_sha256)], category="payment", description="Disable offer {offer_id}")
async def disableoffer(ctx, offer_id) -> dict:
    if ctx.check:
        return {"command_to_check": "disableoffer"}
    return await _set_active(ctx, offer_id, False)


@command("enableoffer", [req("offer_id", p_sha256)], category="payment", description="Enable offer {offer_id}")
async def enableoffer(ctx, offer_id) -> dict:
    if ctx.check:
        return {"command_to_check": "enableoffer"}
    return await _set_active(ctx, offer_id, True)


def _p_msat(v: Any) -> int:
    try:
        return int(parse_msat(v))
    except AmountError:
        raise ParamError("should be a millisatoshi amount") from None


@command("fetchinvoice", [req("offer", p_string), opt("amount_msat", _p_msat), opt("quantity", p_u64),
                          opt("recurrence_counter", _refuse("recurrence_counter")),
                          opt("recurrence_start", _refuse("recurrence_start")),
                          opt("recurrence_label", _refuse("recurrence_label")), opt("timeout", p_timeout, 60.0),
                          opt("payer_note", p_string), opt("payer_metadata", p_string), opt("bip353", p_string)],
         category="payment", description="Request an invoice for {offer}")
async def fetchinvoice(ctx, offer, amount_msat, quantity, recurrence_counter, recurrence_start, recurrence_label,
                       timeout, payer_note, payer_metadata, bip353) -> dict:
    if payer_metadata is not None or bip353 is not None:
        raise invalid_params("payer_metadata/bip353: not supported")
    if ctx.check:
        return {"command_to_check": "fetchinvoice"}
    try:
        return await ctx.node.offers.fetch_invoice(offer, amount_msat=amount_msat, quantity=quantity,
                                                        payer_note=payer_note, timeout=timeout)
    except OfferError as e:
        raise _err(e) from None


def _not_supported(name: str):
    async def handler(ctx, **_: Any) -> dict:
        # -32601 as lightningd answers for a command it does not have, with a message saying why.
        raise RpcError(-32601, f"{name}: offers for money out (invoice_request without an offer, refunds) are not "
                               "supported by Ampere yet")
    return handler


for _name in ("invoicerequest", "sendinvoice", "disableinvoicerequest", "listinvoicerequests"):
    command(_name, [], category="payment", description="not supported", allow_extra=True)(_not_supported(_name))


# ---- decode ------------------------------------------------------------------------------------

def _path_json(path: Any, payinfo: Any = None) -> dict:
    extra = None
    if payinfo is not None:
        extra = {"payinfo": {"fee_base_msat": payinfo.fee_base_msat,
                             "fee_proportional_millionths": payinfo.fee_proportional_millionths,
                             "cltv_expiry_delta": payinfo.cltv_expiry_delta,
                             "htlc_minimum_msat": payinfo.htlc_minimum_msat,
                             "htlc_maximum_msat": payinfo.htlc_maximum_msat, "features": payinfo.features.hex()}}
    return blinded_path_json(path, hops_key="path", extra=extra)


def _offer_fields(t: Any, raw: bytes) -> dict:
    out: dict[str, Any] = {"offer_id": offer_id(raw).hex()}
    if t.offer_chains is not None:
        out["offer_chains"] = [c.hex() for c in t.offer_chains]  # CLN: json_add_sha256, wire order
    if t.offer_metadata is not None:
        out["offer_metadata"] = t.offer_metadata.hex()
    if t.offer_currency is not None:
        out["offer_currency"] = t.offer_currency
        out["warning_unknown_offer_currency"] = "Ampere has no currency table"
    if t.offer_amount is not None:
        out["offer_amount" if t.offer_currency is not None else "offer_amount_msat"] = t.offer_amount
    if t.offer_description is not None:
        out["offer_description"] = t.offer_description
    if t.offer_issuer is not None:
        out["offer_issuer"] = t.offer_issuer
    if t.offer_features is not None:
        out["offer_features"] = t.offer_features.hex()
    if t.offer_absolute_expiry is not None:
        out["offer_absolute_expiry"] = t.offer_absolute_expiry
    if t.offer_quantity_max is not None:
        out["offer_quantity_max"] = t.offer_quantity_max
    if t.offer_paths is not None:
        out["offer_paths"] = [_path_json(p) for p in t.offer_paths]
    if t.offer_issuer_id is not None:
        out["offer_issuer_id"] = t.offer_issuer_id.hex()
    return out


def _invreq_fields(t: Any) -> dict:
    out: dict[str, Any] = {"invreq_metadata": t.invreq_metadata.hex(), "invreq_payer_id": t.invreq_payer_id.hex()}
    if t.invreq_chain is not None:
        out["invreq_chain"] = t.invreq_chain.hex()
    if t.invreq_amount is not None:
        out["invreq_amount_msat"] = t.invreq_amount
    if t.invreq_features is not None:
        out["invreq_features"] = t.invreq_features.hex()
    if t.invreq_quantity is not None:
        out["invreq_quantity"] = t.invreq_quantity
    if t.invreq_payer_note is not None:
        out["invreq_payer_note"] = t.invreq_payer_note
    if t.invreq_paths is not None:
        out["invreq_paths"] = [_path_json(p) for p in t.invreq_paths]
    if t.invreq_bip_353_name is not None:
        out["invreq_bip_353_name"] = {"name": t.invreq_bip_353_name.name.decode(errors="replace"),
                                      "domain": t.invreq_bip_353_name.domain.decode(errors="replace")}
    return out


def _unknown(t: Any) -> list[dict]:
    return [{"type": typ, "length": len(v), "value": bytes(v).hex()} for typ, v in t.unknown]


def decode_bolt12_json(text: str) -> dict:
    """`decode` of an lno/lnr/lni string in CLN's shape (plugins/offers.c).  A string that fails a reader rule is
    an error naming it, as CLN does for a string it cannot parse at all."""
    try:
        hrp, raw = decode_bolt12_string(text)
        parser = {"lno": parse_offer, "lnr": parse_invoice_request, "lni": parse_invoice}.get(hrp)
        if parser is None:
            raise Bolt12Error(f"unknown prefix {hrp}")
        parsed = parser(raw)
    except Bolt12Error as e:
        if e.warning is not None and e.parsed is not None:
            # CLN shows an object that parses but breaks a reader rule with `valid: false` and a warning.
            kind = e.parsed.kind
            return {"type": f"bolt12 {kind}", "valid": False, "offer_id": offer_id(e.parsed.raw).hex(),
                    e.warning: str(e)}
        raise invalid_params(f"string: {e}: invalid token '{text}'") from None
    except ValueError as e:
        raise invalid_params(f"string: {e}: invalid token '{text}'") from None
    t = parsed.tlv
    if parsed.kind == "offer":
        out: dict[str, Any] = {"type": "bolt12 offer", "valid": True}
        out.update(_offer_fields(t, raw))
        if t.unknown:
            out["unknown_offer_tlvs"] = _unknown(t)
        return out
    if parsed.kind == "invoice_request":
        out = {"type": "bolt12 invoice_request", "valid": True}
        out.update(_offer_fields(t, raw))
        out.update(_invreq_fields(t))
        out["signature"] = t.signature.hex()
        if t.unknown:
            out["unknown_invoice_request_tlvs"] = _unknown(t)
        return out
    out = {"type": "bolt12 invoice", "valid": True}
    out.update(_offer_fields(t, raw))
    out.update(_invreq_fields(t))
    out["invoice_paths"] = [_path_json(p, i) for p, i in zip(t.invoice_paths, t.invoice_blindedpay)]
    out["invoice_created_at"] = t.invoice_created_at
    if t.invoice_relative_expiry is not None:
        out["invoice_relative_expiry"] = t.invoice_relative_expiry
    out["invoice_payment_hash"] = t.invoice_payment_hash.hex()
    out["invoice_amount_msat"] = t.invoice_amount
    if t.invoice_fallbacks is not None:
        out["invoice_fallbacks"] = [{"version": f.version, "hex": f.address.hex()} for f in t.invoice_fallbacks]
    if t.invoice_features is not None:
        out["invoice_features"] = t.invoice_features.hex()
    out["invoice_node_id"] = t.invoice_node_id.hex()
    out["signature"] = t.signature.hex()
    if t.unknown:
        out["unknown_invoice_tlvs"] = _unknown(t)
    return out

