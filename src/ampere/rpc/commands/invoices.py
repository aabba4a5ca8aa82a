"""Invoice commands: invoice, listinvoices, delinvoice, waitinvoice, waitanyinvoice, createinvoice,
signinvoice, decode; and createonion.

Parameters, result shapes, messages and error codes follow Core Lightning's lightningd/invoice.c,
plugins/offers.c (`decode`) and lightningd/pay.c (`createonion`).  The invoices themselves live in
ampere.node.payments.invoices (the registry); BOLT 11 encoding is ampere.ln.invoice; BOLT 4 ampere.ln.onion.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from typing import Any

from coincurve import PrivateKey, PublicKey

from ...ln import invoice as bolt11
from ...ln.invoice_fields import Fallback, InvoiceError, features_to_bytes, scid_from_str
from ...ln.onion import HOP_PAYLOADS_LEN, OnionConstructionError, create_onion, hop_shift_size, strip_length_prefix
from ampere.node.errors import Reason
from ampere.node.payments.invoices import (
    InvoiceRecord,
    InvoiceRegistryError,
    NewInvoice,
)
from ...primitives.amount import AmountError, parse_msat
from ...primitives.script import AddressError, address_to_script
from ..errors import INVOICE_HINTS_GAVE_NO_ROUTES, LIGHTNINGD, RpcError, invalid_params, to_rpc_error
from ..params import ParamError, opt, p_bool, p_enum, p_hex, p_sha256, p_string, p_u16, p_u32, p_u64, req
from ..registry import command

# CLN: "Default is 604800 (1 week)" for our invoices (BOLT 11's own default is 1 hour).
DEFAULT_INVOICE_EXPIRY = 7 * 24 * 3600
# lightningd/invoice.c: inv_max_label_len.
MAX_LABEL_BYTES = 128
# BOLT #11: a tagged field's data_length is 10 bits, so at most 1023 5-bit groups = 639 whole bytes.
MAX_DESCRIPTION_BYTES = 1023 * 5 // 8
# Timestamps are stored as SQLite integers (signed 64-bit).
_MAX_TIME = (1 << 63) - 1
_NETWORKS = ("bitcoin", "testnet", "testnet4", "signet", "regtest")
_BOLT12_PREFIXES = ("lno1", "lni1", "lnr1", "lnp1")


# ---- parameter parsers (CLN's messages) -------------------------------------------------------

def p_label(v: Any) -> str:
    """A label: a string, or a number taken as its decimal text (CLN's param_label)."""
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    raise ParamError("should be a string or number")


def p_msat_or_any(v: Any) -> int | None:
    """"any" (None) or a positive amount (CLN's param_positive_msat_or_any)."""
    if v == "any":
        return None
    try:
        msat = parse_msat(v)
    except AmountError:
        raise ParamError("should be positive msat or 'any'") from None
    if msat == 0:
        raise ParamError("should be positive msat or 'any'")
    return int(msat)


def p_preimage(v: Any) -> bytes:
    if isinstance(v, str) and len(v) == 64:
        try:
            return bytes.fromhex(v)
        except ValueError:
            pass
    raise ParamError("should be 64 hex digits")


def p_string_array(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ParamError("should be an array of strings")
    return list(v)


def _scid(v: Any) -> int:
    if isinstance(v, str):
        try:
            return scid_from_str(v)
        except InvoiceError:
            pass
    raise ParamError("should be a short channel id")


def p_chanhints(v: Any) -> tuple[bool, list[int] | None]:
    """exposeprivatechannels: true/false, one short_channel_id, or an array of them.
    Returns (expose_all_private, scids or None)."""
    if isinstance(v, bool):
        return v, None
    if isinstance(v, list):
        return True, [_scid(x) for x in v]
    return True, [_scid(v)]


def p_hops(v: Any) -> list[tuple[bytes, bytes]]:
    """createonion hops: [{pubkey, payload}], payloads with their length prefix."""
    if not isinstance(v, list):
        raise ParamError("should be an array of hops")
    if not v:
        raise ParamError("At least one hop must be specified.")
    hops = []
    for i, hop in enumerate(v):
        if not isinstance(hop, dict):
            raise ParamError(f"hop {i} should be an object")
        if "pubkey" not in hop:
            raise ParamError(f"Hop {i} does not have a pubkey")
        if "payload" not in hop:
            raise ParamError(f"Hop {i} does not have a payload")
        pk = hop["pubkey"]
        try:
            if not isinstance(pk, str) or len(pk) != 66:
                raise ValueError
            pubkey = PublicKey(bytes.fromhex(pk)).format(compressed=True)
        except (ValueError, TypeError):
            raise ParamError(f"hop {i} pubkey should be a pubkey") from None
        payload = hop["payload"]
        try:
            if not isinstance(payload, str):
                raise ValueError
            raw = bytes.fromhex(payload)
        except ValueError:
            raise ParamError(f"hop {i} payload should be hex") from None
        hops.append((pubkey, raw))
    return hops


# ---- helpers ----------------------------------------------------------------------------------

def _checkable(handler):
    """Let `check <command>` run the handler's own validation: the handler sees ctx.check and
    returns before changing anything."""
    async def check(ctx, **params) -> None:
        await handler(replace(ctx, check=True), **params)

    handler.check = check
    return handler


def _registry_error(e: InvoiceRegistryError, *, data: bool = True) -> RpcError:
    d = e.data
    if isinstance(d, InvoiceRecord):
        d = d.to_json()
    return to_rpc_error(e, data=d if data else None)


async def _registry(ctx):
    reg = ctx.node.invoices
    await reg.start()
    return reg


def _currency(node) -> str:
    return bolt11.currency_for_network(node.network)


def _fallback(addr: str, network: str, currency: str) -> Fallback:
    """An address for our network; CLN answers -1 for a bad one (lightningd/invoice.c parse_fallback)."""
    try:
        address_to_script(addr, network)
    except AddressError:
        for other in _NETWORKS:
            if other == network:
                continue
            try:
                address_to_script(addr, other)
            except AddressError:
                continue
            raise RpcError(LIGHTNINGD, f"Fallback address does not match our network {network}") from None
        raise RpcError(LIGHTNINGD, "Fallback address not valid") from None
    try:
        return Fallback.from_address(addr, currency)
    except InvoiceError:
        raise RpcError(LIGHTNINGD, "Fallback address not valid") from None


def _routehints(node, amount_msat: int | None, chanhints: tuple[bool, list[int] | None] | None):
    """Route hints and capacity warnings for a new invoice (CLN's add_routehints).

    Candidates: our channels in CHANNELD_NORMAL with a connected peer and incoming capacity.  Unannounced
    channels are exposed when `exposeprivatechannels` is true or a list, or (not given) when we have no public
    channel to be found by; with a list, only the listed ones (none suitable: 902).  Each hint is the peer's
    side of the channel: the peer's channel_update if the graph has it, else the defaults of this node's fee and
    CLTV options (the payer learns the real values from a failure's channel_update).
    """
    from ...ln.invoice_fields import RouteHop as HintField

    expose, scids = chanhints if chanhints is not None else (None, None)
    mgr = node.channel_manager
    graph = node.gossip.state.graph if node.gossip is not None else None
    candidates: list = []
    if mgr is not None:
        from ...ln.channel.commitment import Side
        from ...ln.channel.views import available_msat, next_view

        for rec in sorted(mgr.records.values(), key=lambda r: r.dbid):
            if rec.state.value != "CHANNELD_NORMAL" or rec.short_channel_id is None:
                continue
            if not mgr.is_connected(rec.peer_id):
                continue
            ch = rec.core
            extra = 1 if ch.opener is Side.REMOTE else 0
            receivable = max(0, available_msat(ch, next_view(ch, Side.LOCAL), Side.REMOTE, extra))
            if receivable <= 0:
                continue
            scid = int(rec.short_channel_id)
            # Public only once the network can know it: our announcement is in the graph.
            gch = graph.channels.get(scid) if graph is not None else None
            public = bool(getattr(ch, "announce", False)) and gch is not None and bool(gch.public)
            if scids is not None and scid not in scids:
                continue
            candidates.append((rec, scid, receivable, public))
    if scids is not None and not candidates:
        raise RpcError(INVOICE_HINTS_GAVE_NO_ROUTES, "None of those hints were suitable local channels")
    public_total = sum(c[2] for c in candidates if c[3])
    if expose is False or (expose is None and any(c[3] for c in candidates)):
        candidates = []  # public channels find us without a hint; private ones are not to be exposed
    routes = []
    total = 0
    for rec, scid, receivable, _public in sorted(candidates, key=lambda c: -c[2]):
        direction = 0 if rec.peer_id < node.node_id else 1  # the peer's update: the channel towards us
        half = None
        if graph is not None:
            gch = graph.channels.get(scid)
            half = gch.halves[direction] if gch is not None else None
        if half is not None:
            base, ppm, delta = half.fee_base_msat, half.fee_proportional_millionths, half.cltv_expiry_delta
        else:
            base, ppm = node.options.get("fee-base"), node.options.get("fee-per-satoshi")
            delta = node.options.get("cltv-delta")
        routes.append([HintField(rec.peer_id, scid, int(base), int(ppm), int(delta))])
        total += receivable
        if amount_msat is not None and total >= int(amount_msat) and len(routes) >= 1 and scids is None:
            break
    warnings = {}
    total = max(total, public_total)
    if amount_msat is None and not candidates and not public_total:
        warnings["warning_capacity"] = "Insufficient incoming channel capacity to pay invoice"
    elif amount_msat is not None and total < int(amount_msat):
        warnings["warning_capacity"] = "Insufficient incoming channel capacity to pay invoice"
    return routes, warnings


def _validate_invoice(node, label: str, description: str, expiry: int, fallbacks: list[str] | None,
                      deschashonly: bool) -> list[Fallback]:
    """The checks `invoice` makes before changing anything (also run by `check invoice`)."""
    if len(label.encode()) > MAX_LABEL_BYTES:
        raise invalid_params(f"Label '{label}' over {MAX_LABEL_BYTES} bytes")
    desc_len = len(description.encode())
    if desc_len > MAX_DESCRIPTION_BYTES and not deschashonly:
        raise invalid_params(f"Description greater than {MAX_DESCRIPTION_BYTES} bytes invalid "
                             f"(description length {desc_len})")
    if expiry > _MAX_TIME // 2:
        raise invalid_params(f"expiry: should be at most {_MAX_TIME // 2}: invalid token '{expiry}'")
    currency = _currency(node)
    return [_fallback(a, node.network, currency) for a in (fallbacks or [])]


# ---- invoice ----------------------------------------------------------------------------------

_INVOICE_PARAMS = [
    req("amount_msat", p_msat_or_any), req("label", p_label), req("description", p_string),
    opt("expiry", p_u64, DEFAULT_INVOICE_EXPIRY), opt("fallbacks", p_string_array), opt("preimage", p_preimage),
    opt("exposeprivatechannels", p_chanhints), opt("cltv", p_u32), opt("deschashonly", p_bool, False),
]


@command("invoice", _INVOICE_PARAMS, category="payment",
         description="Create an invoice for {amount_msat} with {label} and {description}.")
@_checkable
async def invoice(ctx, amount_msat, label, description, expiry, fallbacks, preimage, exposeprivatechannels,
                  cltv, deschashonly) -> dict:
    node = ctx.node
    fbs = _validate_invoice(node, label, description, expiry, fallbacks, deschashonly)
    if ctx.check:
        return {"command_to_check": "invoice"}
    routes, warnings = _routehints(node, amount_msat, exposeprivatechannels)
    if preimage is None:
        preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    if cltv is None:
        cltv = node.options.get("cltv-final")
    timestamp = int(time.time())
    inv = bolt11.Invoice(
        currency=_currency(node), timestamp=timestamp, payment_hash=payment_hash,
        payment_secret=os.urandom(32), amount_msat=amount_msat,
        description=None if deschashonly else description,
        # BOLT #11: `h` (23): 256-bit description of purpose of payment (SHA256).
        description_hash=hashlib.sha256(description.encode()).digest() if deschashonly else None,
        expiry=expiry, min_final_cltv_expiry=cltv, fallbacks=fbs, route_hints=routes,
        # BOLT #11: MUST set the `9` field to a feature vector compliant with the BOLT 9 origin node
        #   requirements.
        features=int(node.feature_set()["invoice"] or "0", 16),
    )
    text = bolt11.encode(inv, node.signer)
    reg = await _registry(ctx)
    try:
        # CLN stores the description even when only its hash is in the invoice (listinvoices shows it).
        rec = await reg.create(NewInvoice(
            label=label, bolt11=text, payment_hash=payment_hash, preimage=preimage,
            payment_secret=inv.payment_secret, amount_msat=amount_msat, expires_at=timestamp + expiry,
            description=description, features=bytes.fromhex(node.feature_set()["invoice"]),
            min_final_cltv_expiry=cltv, created_at=timestamp))
    except InvoiceRegistryError as e:
        raise _registry_error(e, data=False) from None
    out = {"payment_hash": rec.payment_hash.hex(), "expires_at": rec.expires_at, "bolt11": rec.bolt11,
           "payment_secret": inv.payment_secret.hex(), "created_index": rec.created_index}
    out.update(warnings)
    return out


# ---- listinvoices -----------------------------------------------------------------------------

@command("listinvoices", [opt("label", p_label), opt("invstring", p_string), opt("payment_hash", p_sha256),
                          opt("offer_id", p_sha256), opt("index", p_enum("created", "updated")),
                          opt("start", p_u64, 0), opt("limit", p_u32)],
         category="payment", description="Show invoices, or the one matching {label}, {invstring} or {payment_hash}.")
@_checkable
async def listinvoices(ctx, label, invstring, payment_hash, offer_id, index, start, limit) -> dict:
    if sum(x is not None for x in (label, invstring, payment_hash, offer_id)) > 1:
        raise invalid_params("Can only specify one of {label}, {invstring}, {payment_hash} or {offer_id}")
    if start != 0 and index is None:
        raise invalid_params("Can only specify {start} with {index}")
    if limit is not None and index is None:
        raise invalid_params("Can only specify {limit} with {index}")
    if invstring is not None:
        try:
            if invstring.lower().startswith("lni1"):
                from ...ln.offers import Bolt12Error, decode_string

                try:
                    payment_hash = decode_string(invstring).tlv.invoice_payment_hash
                except Bolt12Error:
                    raise InvoiceError("bad bolt12 invoice") from None
            else:
                payment_hash = bolt11.decode(invstring).payment_hash
        except InvoiceError:
            raise invalid_params("Invalid invstring") from None
    if ctx.check:
        return {"invoices": []}
    reg = await _registry(ctx)
    records = await reg.list(label=label, payment_hash=payment_hash, index=index, start=start, limit=limit)
    if offer_id is not None:
        # BOLT 12 invoices answering our offer `offer_id` (node.offers).
        records = [r for r in records if r.local_offer_id == offer_id]
    now = reg.now()
    return {"invoices": [r.to_json(now) for r in records]}


# ---- delinvoice -------------------------------------------------------------------------------

@command("delinvoice", [req("label", p_label), req("status", p_string), opt("desconly", p_bool, False)],
         category="payment", description="Delete invoice {label} if its status is {status} (or only its description).")
@_checkable
async def delinvoice(ctx, label, status, desconly) -> dict:
    reg = await _registry(ctx)
    try:
        rec = await reg.delete(label, status, desconly, check_only=ctx.check)
    except InvoiceRegistryError as e:
        raise _registry_error(e) from None
    return rec.to_json(reg.now())


# ---- waitinvoice / waitanyinvoice -------------------------------------------------------------

@command("waitinvoice", [req("label", p_label)], category="payment",
         description="Wait for invoice {label} to be paid, or to expire.")
@_checkable
async def waitinvoice(ctx, label) -> dict:
    reg = await _registry(ctx)
    if ctx.check:
        if await reg.get_by_label(label) is None:
            raise RpcError(LIGHTNINGD, "Label not found")
        return {}
    try:
        rec = await reg.wait_one(label)
    except InvoiceRegistryError as e:
        raise _registry_error(e) from None
    return _wait_json(rec, reg.now())


@command("waitanyinvoice", [opt("lastpay_index", p_u64, 0), opt("timeout", p_u64)], category="payment",
         description="Wait for the next invoice paid after {lastpay_index}, for at most {timeout} seconds.")
async def waitanyinvoice(ctx, lastpay_index, timeout) -> dict:
    reg = await _registry(ctx)
    try:
        rec = await reg.wait_any(lastpay_index, timeout)
    except InvoiceRegistryError as e:
        raise _registry_error(e) from None
    return _wait_json(rec, reg.now())


def _wait_json(rec: InvoiceRecord, now: int) -> dict:
    """waitinvoice / waitanyinvoice: listinvoices' fields less `local_offer_id` (CLN's schemas for these two have
    no such member)."""
    out = rec.to_json(now)
    out.pop("local_offer_id", None)
    return out


# ---- createinvoice / signinvoice --------------------------------------------------------------

def _resign(node, invstring: str) -> tuple[str, bolt11.Invoice]:
    """Sign the caller's invoice with our key: it must read as a BOLT 11 invoice for our network
    (its old signature is ignored).  Returns the newly signed invoice, decoded."""
    if invstring.lower().startswith(_BOLT12_PREFIXES):
        raise invalid_params(f"Unparsable invoice '{invstring}': bolt12 invoices are not supported")
    try:
        # "Minimal sanity checks are done": the structure and the network; not the old signature.
        bolt11.decode(invstring, verify_signature=False, currency=_currency(node))
        text = bolt11.resign(invstring, node.signer)
        return text, bolt11.decode(text)
    except InvoiceError as e:
        raise invalid_params(f"Unparsable invoice '{invstring}': {e}") from None


@command("createinvoice", [req("invstring", p_string), req("label", p_label), req("preimage", p_preimage)],
         category="payment", description="Sign {invstring} with our key and store it as invoice {label}.")
@_checkable
async def createinvoice(ctx, invstring, label, preimage) -> dict:
    node = ctx.node
    text, inv = _resign(node, invstring)
    if inv.description is None:
        raise invalid_params("Missing description in invoice")
    if not inv.expiry:
        raise invalid_params("Missing expiry in invoice")
    payment_hash = hashlib.sha256(preimage).digest()
    if payment_hash != inv.payment_hash:
        raise invalid_params("Incorrect preimage")
    if ctx.check:
        return {"command_to_check": "createinvoice"}
    reg = await _registry(ctx)
    try:
        rec = await reg.create(NewInvoice(
            label=label, bolt11=text, payment_hash=payment_hash, preimage=preimage,
            payment_secret=inv.payment_secret, amount_msat=None if inv.amount_msat is None else int(inv.amount_msat),
            expires_at=min(inv.timestamp + inv.expiry, _MAX_TIME), description=inv.description,
            features=features_to_bytes(inv.features), min_final_cltv_expiry=inv.min_final_cltv_expiry,
            created_at=inv.timestamp))
    except InvoiceRegistryError as e:
        if e.reason == Reason.INVOICE_LABEL_ALREADY_EXISTS:
            # CLN's fail_exists: "Duplicate label", with the clashing invoice as data.
            raise to_rpc_error(e, "Duplicate label", e.data.to_json() if e.data else None) from None
        raise _registry_error(e) from None
    return rec.to_json(reg.now())


@command("signinvoice", [req("invstring", p_string)], category="payment",
         description="Sign {invstring} with our key, without storing it.")
@_checkable
async def signinvoice(ctx, invstring) -> dict:
    text, _inv = _resign(ctx.node, invstring)
    # BOLT #11: A writer: MUST include either exactly one `d` or exactly one `h` field (decode checked).
    return {"bolt11": text}


# ---- decode -----------------------------------------------------------------------------------

@command("decode", [req("string", p_string)], category="utility", description="Decode a bolt11 {string}.")
@_checkable
async def decode(ctx, string) -> dict:
    s = string
    if s[:10].lower() == "lightning:":
        s = s[10:]
    if s.lower().startswith(("lno1", "lnr1", "lni1")):
        from .offers import decode_bolt12_json

        return decode_bolt12_json(s)
    if s.lower().startswith(_BOLT12_PREFIXES):
        raise invalid_params(f"string: {s[:3]} strings are not supported: invalid token '{string}'")
    try:
        # CLN decodes any network's invoice here (plugins/offers.c: no chain given).
        inv = bolt11.decode(s)
    except InvoiceError as e:
        raise invalid_params(f"string: {e}: invalid token '{string}'") from None
    return bolt11.to_decode_json(inv)


# ---- createonion ------------------------------------------------------------------------------

@command("createonion", [req("hops", p_hops), req("assocdata", p_hex), opt("session_key", p_sha256),
                         opt("onion_size", p_u16, HOP_PAYLOADS_LEN)],
         category="payment", description="Create an onion for {hops} committing to {assocdata}.")
@_checkable
async def createonion(ctx, hops, assocdata, session_key, onion_size) -> dict:
    stripped = []
    for i, (pubkey, prefixed) in enumerate(hops):
        try:
            stripped.append((pubkey, strip_length_prefix(prefixed)))
        except OnionConstructionError:
            raise invalid_params(f"hops[{i}] payload is not prefixed with length!") from None
    if sum(hop_shift_size(len(p)) for _, p in stripped) > onion_size:
        raise invalid_params("Payloads exceed maximum onion packet size.")
    if session_key is None:
        session_key = PrivateKey().secret  # a fresh random secret (coincurve draws it from the OS)
    try:
        packet, secrets = create_onion(session_key, stripped, assocdata, onion_size)
    except OnionConstructionError as e:
        raise RpcError(LIGHTNINGD, f"Could not create onion packet: {e}") from None
    if ctx.check:
        return {"command_to_check": "createonion"}
    return {"onion": packet.hex(), "shared_secrets": [s.hex() for s in secrets]}
