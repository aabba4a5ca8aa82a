"""BOLT 12 at runtime: our offers, answering invoice requests, fetching and paying invoices.

    svc = node.offers; svc.start()              answers invoice_requests arriving by onion message
    await svc.create_offer(...)                       `offer`     (stored in table `offers`)
    await svc.list_offers(...), set_active(...)       `listoffers`, `enableoffer`, `disableoffer`
    await svc.fetch_invoice(...)                      `fetchinvoice`
    await svc.pay_invoice(lni, ...)                   `pay` of an `lni1...` string

Our offers carry `offer_issuer_id` (our node id) and no `offer_paths`, as Core Lightning does for a node
with public channels.  The invoices we answer with carry blinded payment paths whose introduction node
is a channel peer (one path per peer with a normal channel; just us when we have none), so the payer and
every node before the introduction node learn nothing of where we are, and the introduction node only
sees an HTLC to forward to us like any other.  The invoice is stored in the invoice registry (its `lni`
string in place of a bolt11): `invoice_payment`, `waitanyinvoice` and `listinvoices` work as for BOLT 11;
`local_offer_id` is the offer id the invoice copies (CLN's offer_id: SHA256 of the offer records).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from typing import TYPE_CHECKING, Any

from coincurve import PrivateKey

from ampere.ln.blinding import (
    aggregate_payinfo,
    blinded_route_payloads,
    create_blinded_path,
    encode_encrypted_data,
    pad_encrypted_data,
    payinfo_fee,
)
from ampere.ln.offers import (
    Bolt12Error,
    build_invoice,
    build_invoice_request,
    build_offer,
    decode_string,
    invreq_id,
    offer_id,
    parse_invoice,
    parse_invoice_request,
)
from ampere.ln.offers.fields import BITCOIN_CHAINS, DEFAULT_INVOICE_EXPIRY, expected_amount
from ampere.ln.onion import create_onion
from ampere.ln.onion_payload import forward_hop_payload
from ampere.primitives.amount import sat_to_msat
from ampere.node.errors import DomainError, Reason
from ampere.wire import decode_tlv_stream, encode_tlv_stream
from ampere.wire.messages import BlindedPayinfo
from ampere.wire.messages import EncryptedDataTlvPaymentConstraints as Constraints
from ampere.wire.messages import EncryptedDataTlvPaymentRelay as Relay
from ampere.wire.types import ShortChannelId
from ampere.node.payments.blinded_htlcs import payment_path_id

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node

SOURCE = "offers"


# How long the blinded payment paths in our invoices stay usable, in blocks past the invoice's expiry
# (payment_constraints.max_cltv_expiry): two weeks, like the BOLT 11 maximum CLTV Ampere accepts.
PATH_CLTV_WINDOW = 2016
# Relay parameters assumed for a peer whose channel_update we have not seen (CLN's defaults).
DEFAULT_RELAY = (1000, 10, 34)


class OfferError(DomainError):
    pass


def _now() -> int:
    return int(time.time())


class OfferRecord:
    def __init__(self, row: tuple) -> None:
        (self.offer_id, self.bolt12, self.label, active, single_use, self.created_at) = row
        self.offer_id = bytes(self.offer_id)
        self.active = bool(active)
        self.single_use = bool(single_use)

    def to_json(self, used: bool, created: bool | None = None) -> dict:
        """CLN's json_populate_offer shape (listoffers / offer / enableoffer / disableoffer; `offer` alone has
        `created` and no `description`)."""
        # force_paths: whether fronting nodes were forced into the offer's paths; Ampere's offers have no paths.
        out: dict[str, Any] = {"offer_id": self.offer_id.hex(), "active": self.active,
                               "single_use": self.single_use, "force_paths": False, "bolt12": self.bolt12,
                               "used": used}
        if created is not None:
            out["created"] = created
        else:
            description = decode_string(self.bolt12).tlv.offer_description
            if description is not None:
                out["description"] = description
        if self.label is not None:
            out["label"] = self.label
        return out


class OffersService:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.stats = {"invoice_requests": 0, "invoices_sent": 0, "refused": 0}

    def _log(self, level: str, msg: str) -> None:
        log = self.node.log
        if log is not None:
            log.log(level, SOURCE, msg)

    def start(self) -> None:
        self.node.onion_messenger.on_payload("invoice_request", self._on_invoice_request)

    @property
    def chain_hash(self) -> bytes:
        return BITCOIN_CHAINS.get(self.node.network, BITCOIN_CHAINS["regtest"])

    # ---- our offers ---------------------------------------------------------------------------
    async def create_offer(self, *, amount_msat: int | None, description: str | None, issuer: str | None,
                           label: str | None, quantity_max: int | None, absolute_expiry: int | None,
                           single_use: bool) -> dict:
        fields: dict[str, Any] = {"offer_issuer_id": self.node.node_id}
        if self.node.network != "bitcoin":
            # BOLT 12: "if the chain for the invoice is not solely bitcoin: MUST specify `offer_chains`".
            fields["offer_chains"] = (self.chain_hash,)
        if amount_msat is not None:
            fields["offer_amount"] = amount_msat
        if description is not None:
            fields["offer_description"] = description
        if issuer is not None:
            fields["offer_issuer"] = issuer
        if quantity_max is not None:
            fields["offer_quantity_max"] = quantity_max
        if absolute_expiry is not None:
            fields["offer_absolute_expiry"] = absolute_expiry
        paths = self._offer_paths()
        if paths:
            fields["offer_paths"] = tuple(paths)
        try:
            offer = build_offer(**fields)
        except Bolt12Error as e:
            raise OfferError(Reason.BAD_PARAMETER, str(e)) from None
        oid = offer_id(offer.raw)
        text = offer.string()

        def write(db) -> tuple[OfferRecord, bool]:
            rows = db.query("SELECT offer_id, bolt12, label, active, single_use, created_at FROM offers "
                            "WHERE offer_id = ?", (oid,))
            if rows:
                rec = OfferRecord(rows[0])
                if rec.active:
                    return rec, False
                # CLN: "Already exists, but isn't active" (a disabled offer is not silently re-enabled).
                raise OfferError(Reason.OFFER_ALREADY_EXISTS, "Already exists, but isn't active")
            if label is not None and db.query("SELECT 1 FROM offers WHERE label = ?", (label,)):
                raise OfferError(Reason.OFFER_ALREADY_EXISTS, "Duplicate label")
            row = (oid, text, label, 1, int(single_use), _now())
            db.execute("INSERT INTO offers (offer_id, bolt12, label, active, single_use, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", row)
            return OfferRecord(row), True

        rec, created = await self.node.store.write(write)
        return rec.to_json(await self._used(rec.offer_id), created)

    def _offer_path_id(self) -> bytes:
        return self.node.signer.node_hmac(b"ampere offer path id")

    def _offer_paths(self) -> list:
        """Blinded paths for an offer when we cannot be found in the public graph (no announced channel) but a
        channel peer can: BOLT 12 "if it is connected only by private channels: MUST include `offer_paths`
        containing one or more paths to the node from publicly reachable nodes".  Deterministic (the same offer
        twice has the same id); the final hop's `path_id` tells us a request came by one of them."""
        gossip = self.node.gossip
        mgr = self.node.channel_manager
        if gossip is None or mgr is None:
            return []
        graph = gossip.state.graph
        me = self.node.node_id

        def public(node_id: bytes) -> bool:
            node = graph.node(node_id)
            return node is not None and any(
                (ch := graph.channel(scid)) is not None and ch.public for scid in node.channels)

        if public(me):
            return []
        paths, seen = [], set()
        for rec in mgr.records.values():
            peer = rec.peer_id
            if rec.state.value != "CHANNELD_NORMAL" or peer in seen or not public(peer):
                continue
            seen.add(peer)
            session = self.node.signer.node_hmac(b"ampere offer path" + peer)
            datas = pad_encrypted_data([encode_encrypted_data(next_node_id=me),
                                        encode_encrypted_data(path_id=self._offer_path_id())])
            paths.append(create_blinded_path(session, [(peer, datas[0]), (me, datas[1])]))
        return paths

    async def _get(self, oid: bytes) -> OfferRecord | None:
        rows = await self.node.store.read(lambda db: db.query(
            "SELECT offer_id, bolt12, label, active, single_use, created_at FROM offers WHERE offer_id = ?", (oid,)))
        return OfferRecord(rows[0]) if rows else None

    async def _paid_offer_ids(self) -> set[bytes]:
        """Offer ids with a paid invoice (CLN's `used`)."""
        rows = await self.node.store.read(lambda db: db.query(
            "SELECT bolt11 FROM invoices WHERE state = 1 AND bolt11 LIKE 'lni1%'"))
        out = set()
        for (text,) in rows:
            try:
                out.add(offer_id(decode_string(text).raw))
            except Bolt12Error:
                continue
        return out

    async def _used(self, oid: bytes) -> bool:
        return oid in await self._paid_offer_ids()

    async def list_offers(self, oid: bytes | None, active_only: bool) -> list[dict]:
        rows = await self.node.store.read(lambda db: db.query(
            "SELECT offer_id, bolt12, label, active, single_use, created_at FROM offers ORDER BY created_at, offer_id"))
        paid = await self._paid_offer_ids()
        recs = [OfferRecord(r) for r in rows]
        return [r.to_json(r.offer_id in paid) for r in recs
                if (oid is None or r.offer_id == oid) and (not active_only or r.active)]

    async def set_active(self, oid: bytes, active: bool) -> dict:
        def write(db) -> OfferRecord:
            rows = db.query("SELECT offer_id, bolt12, label, active, single_use, created_at FROM offers "
                            "WHERE offer_id = ?", (oid,))
            if not rows:
                raise OfferError(Reason.BAD_PARAMETER, "Unknown offer")
            rec = OfferRecord(rows[0])
            if rec.active == active:
                if active:
                    raise OfferError(Reason.OFFER_ALREADY_DISABLED, "offer already active")
                raise OfferError(Reason.OFFER_ALREADY_DISABLED, "offer is not active")
            db.execute("UPDATE offers SET active = ? WHERE offer_id = ?", (int(active), oid))
            rec.active = active
            return rec

        rec = await self.node.store.write(write)
        return rec.to_json(await self._used(oid))

    # ---- answering invoice requests -------------------------------------------------------------
    async def _on_invoice_request(self, received: Any, peer_id: bytes) -> None:
        self.stats["invoice_requests"] += 1
        reply_path = received.payload.reply_path
        if reply_path is None:
            self._log("debug", "invoice_request without reply_path: ignored")
            return
        try:
            invoice = await self._answer(bytes(received.payload.invoice_request), received.path_id)
        except Bolt12Error as e:
            self.stats["refused"] += 1
            self._log("debug", f"refusing invoice_request: {e}")
            error = encode_tlv_stream("invoice_error", {"error": str(e)})
            await self._reply(reply_path, {"invoice_error": error})
            return
        if invoice is None:
            return
        self.stats["invoices_sent"] += 1
        await self._reply(reply_path, {"invoice": invoice})

    async def _reply(self, path: Any, payload: dict) -> None:
        try:
            await self.node.onion_messenger.send(path, payload)
        except Exception as e:
            self._log("debug", f"could not send the reply: {e!r}")

    async def _answer(self, raw: bytes, path_id: bytes | None = None) -> bytes | None:
        """An invoice (raw TLV) for an invoice_request to one of our offers; Bolt12Error to refuse it;
        None to ignore it."""
        invreq = parse_invoice_request(raw)
        t = invreq.tlv
        # BOLT 12: "if `offer_paths` is present: MUST ignore the invoice_request if it did not arrive via one of
        # those paths."
        if t.offer_paths is not None and (path_id is None or not hmac.compare_digest(path_id, self._offer_path_id())):
            self._log("debug", "invoice_request for an offer with paths, not by one of them: ignored")
            return None
        if t.offer_issuer_id is None and t.offer_paths is None:
            raise Bolt12Error("invoice_request not for an offer: not supported")
        oid = offer_id(raw)
        rec = await self._get(oid)
        # BOLT 12: "MUST reject the invoice request if the offer fields do not exactly match a valid, unexpired
        # offer."
        if rec is None:
            raise Bolt12Error("Unknown offer")
        if not rec.active:
            raise Bolt12Error("Offer no longer available")
        if t.offer_absolute_expiry is not None and _now() > t.offer_absolute_expiry:
            raise Bolt12Error("Offer expired")
        if rec.single_use and await self._used(oid):
            raise Bolt12Error("Offer already paid")
        chain = t.invreq_chain if t.invreq_chain is not None else BITCOIN_CHAINS["bitcoin"]
        if chain != self.chain_hash:
            raise Bolt12Error("Unsupported chain")
        # "if `offer_quantity_max` is present: MUST reject the invoice request if there is no `invreq_quantity`
        # field.  if `offer_quantity_max` is non-zero: MUST reject the invoice request if `invreq_quantity` is
        # zero, OR greater than `offer_quantity_max`.  otherwise: MUST reject ... if there is an
        # `invreq_quantity` field."
        if t.offer_quantity_max is not None:
            if t.invreq_quantity is None:
                raise Bolt12Error("quantity is missing")
            if t.offer_quantity_max and not 0 < t.invreq_quantity <= t.offer_quantity_max:
                raise Bolt12Error(f"quantity {t.invreq_quantity} not between 1 and {t.offer_quantity_max}")
        elif t.invreq_quantity is not None:
            raise Bolt12Error("quantity is not allowed")
        expected = expected_amount(t, t.invreq_quantity)
        if expected is None:
            if t.invreq_amount is None:
                raise Bolt12Error("amount is missing")
            amount = t.invreq_amount
        else:
            if t.invreq_amount is not None and t.invreq_amount < expected:
                raise Bolt12Error(f"amount {t.invreq_amount}msat below the expected {expected}msat")
            amount = t.invreq_amount if t.invreq_amount is not None else expected
        return await self._make_invoice(invreq, oid, amount)

    async def _make_invoice(self, invreq: Any, oid: bytes, amount: int) -> bytes:
        from ampere.node.payments.invoices import InvoiceRegistryError, NewInvoice

        reg = self.node.invoices
        label = f"{oid.hex()}-{invreq_id(invreq.raw).hex()}-0"
        existing = await reg.get_by_label(label)
        if existing is not None:
            # BOLT 12: "if `offer_issuer_id` is present, and `invreq_metadata` is identical to a previous
            # `invoice_request`: MAY simply reply with the previous invoice."
            return decode_string(existing.bolt11).raw
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).digest()
        created_at = _now()
        expiry = DEFAULT_INVOICE_EXPIRY
        if invreq.tlv.offer_absolute_expiry is not None:
            expiry = max(1, min(expiry, invreq.tlv.offer_absolute_expiry - created_at))
        cltv_final = int(self.node.option("cltv-final", 18))
        paths, payinfos = self._payment_paths(payment_hash, amount, cltv_final)
        invoice = build_invoice(invreq, self.node.signer, paths=paths, payinfos=payinfos, payment_hash=payment_hash,
                                amount_msat=amount, created_at=created_at, relative_expiry=expiry)
        try:
            await reg.create(NewInvoice(label=label, bolt11=invoice.string(), payment_hash=payment_hash,
                                        preimage=preimage, payment_secret=None, amount_msat=amount,
                                        expires_at=created_at + expiry, description=invreq.tlv.offer_description,
                                        features=b"", min_final_cltv_expiry=cltv_final, created_at=created_at))
        except InvoiceRegistryError as e:
            if e.reason == Reason.INVOICE_LABEL_ALREADY_EXISTS:
                existing = await reg.get_by_label(label)
                return decode_string(existing.bolt11).raw
            raise
        self._log("debug", f"invoice {payment_hash.hex()} for offer {oid.hex()} ({amount}msat, "
                           f"{len(paths)} blinded path(s))")
        return invoice.raw

    def _payment_paths(self, payment_hash: bytes, amount: int, cltv_final: int) -> tuple[list, list]:
        """Blinded payment paths to us: one through each peer we have a normal channel with (the peer is the
        introduction node, `short_channel_id` names the channel to us), or just us if none."""
        node = self.node
        me = node.node_id
        height = node.current_height()
        max_cltv = height + PATH_CLTV_WINDOW + cltv_final
        final_data = encode_encrypted_data(path_id=payment_path_id(node, payment_hash),
                                           payment_constraints=Constraints(max_cltv_expiry=max_cltv,
                                                                           htlc_minimum_msat=0))
        paths, payinfos = [], []
        mgr = node.channel_manager
        usable = [rec for rec in (list(mgr.records.values()) if mgr is not None else [])
                  if rec.state.value == "CHANNELD_NORMAL" and rec.short_channel_id is not None
                  and mgr.is_connected(rec.peer_id)]
        # Only through peers that can send us the amount (their side of the channel, less the reserve they must
        # keep), unless none can: then every channel, and the payer finds out.
        enough = [rec for rec in usable if _inbound_msat(rec) >= amount]
        seen = set()
        for rec in enough or usable:
            if rec.peer_id in seen:
                continue
            seen.add(rec.peer_id)
            base, ppm, delta, hmin, hmax = self._peer_policy(rec)
            relay = Relay(cltv_expiry_delta=delta, fee_proportional_millionths=ppm, fee_base_msat=base)
            peer_data = encode_encrypted_data(
                short_channel_id=ShortChannelId(int(rec.short_channel_id)), payment_relay=relay,
                payment_constraints=Constraints(max_cltv_expiry=max_cltv + delta, htlc_minimum_msat=hmin))
            padded = pad_encrypted_data([peer_data, final_data])
            paths.append(create_blinded_path(os.urandom(32), [(rec.peer_id, padded[0]), (me, padded[1])]))
            info = aggregate_payinfo([(base, ppm, delta)], cltv_final)
            payinfos.append(BlindedPayinfo(fee_base_msat=info.fee_base_msat,
                                           fee_proportional_millionths=info.fee_proportional_millionths,
                                           cltv_expiry_delta=info.cltv_expiry_delta, htlc_minimum_msat=hmin,
                                           htlc_maximum_msat=hmax, features=b""))
        if not paths:
            paths.append(create_blinded_path(os.urandom(32), [(me, final_data)]))
            payinfos.append(BlindedPayinfo(fee_base_msat=0, fee_proportional_millionths=0,
                                           cltv_expiry_delta=cltv_final, htlc_minimum_msat=0,
                                           htlc_maximum_msat=amount * 2, features=b""))
        return paths, payinfos

    def _peer_policy(self, rec: Any) -> tuple[int, int, int, int, int]:
        """The peer's relay policy towards us (its channel_update for the direction peer -> us), or defaults."""
        gossip = self.node.gossip
        ch = gossip.state.graph.channels.get(int(rec.short_channel_id)) if gossip is not None else None
        half = ch.halves[ch.direction_from(rec.peer_id)] if ch is not None else None
        if half is not None:
            return (half.fee_base_msat, half.fee_proportional_millionths, half.cltv_expiry_delta,
                    half.htlc_minimum_msat, half.htlc_maximum_msat)
        base, ppm, delta = DEFAULT_RELAY
        return base, ppm, delta, 0, 2**40

    # ---- paying offers: fetchinvoice ------------------------------------------------------------
    async def fetch_invoice(self, offer_text: str, *, amount_msat: int | None, quantity: int | None,
                            payer_note: str | None, timeout: float) -> dict:
        try:
            offer = decode_string(offer_text)
        except Bolt12Error as e:
            raise OfferError(Reason.BAD_PARAMETER, f"offer: {e}") from None
        if offer.kind != "offer":
            raise OfferError(Reason.BAD_PARAMETER, "offer: not an offer")
        t = offer.tlv
        if t.offer_absolute_expiry is not None and _now() > t.offer_absolute_expiry:
            raise OfferError(Reason.OFFER_EXPIRED, "Offer expired")
        chains = t.offer_chains if t.offer_chains is not None else (BITCOIN_CHAINS["bitcoin"],)
        if self.chain_hash not in chains:
            raise OfferError(Reason.BAD_PARAMETER, "offer: does not support our chain")
        if t.offer_currency is not None:
            raise OfferError(Reason.BAD_PARAMETER, f"offer: cannot convert currency {t.offer_currency}")
        if t.offer_amount is not None and amount_msat is not None:
            raise OfferError(Reason.BAD_PARAMETER, "amount_msat parameter unnecessary")
        if t.offer_amount is None and amount_msat is None:
            raise OfferError(Reason.BAD_PARAMETER, "amount_msat parameter required")
        if t.offer_quantity_max is not None:
            if quantity is None:
                raise OfferError(Reason.BAD_PARAMETER, "quantity parameter required")
            if quantity == 0 or (t.offer_quantity_max and quantity > t.offer_quantity_max):
                raise OfferError(Reason.BAD_PARAMETER, f"quantity must be between 1 and {t.offer_quantity_max}")
        elif quantity is not None:
            raise OfferError(Reason.BAD_PARAMETER, "quantity parameter unnecessary")
        payer_key = PrivateKey(os.urandom(32))
        invreq = build_invoice_request(
            offer, payer_key, os.urandom(16), amount_msat=amount_msat, quantity=quantity, payer_note=payer_note,
            chain=self.chain_hash if self.chain_hash != BITCOIN_CHAINS["bitcoin"] else None)
        if t.offer_paths:
            path = t.offer_paths[0]
            # "otherwise, if `offer_paths` is present: MUST reject the invoice if `invoice_node_id` is not equal to
            # the final `blinded_node_id` it sent the invoice request to."
            final_blinded = path.path[-1].blinded_node_id
        else:
            path = create_blinded_path(os.urandom(32), [(t.offer_issuer_id, encode_encrypted_data())])
            final_blinded = None
        expected_node = t.offer_issuer_id if t.offer_issuer_id is not None else final_blinded
        messenger = self.node.onion_messenger
        try:
            path_id, fut = await messenger.send(path, {"invoice_request": invreq.raw}, reply_kind="invoice",
                                                expect_reply=True)
        except Exception as e:
            raise OfferError(Reason.OFFER_ROUTE_NOT_FOUND, f"Failed: could not route or connect to the offer's node: {e}") \
                from None
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            messenger.forget_reply(path_id)
            raise OfferError(Reason.OFFER_TIMEOUT, "Timeout waiting for response") from None
        payload = reply.payload
        if payload.invoice_error is not None:
            try:
                err = decode_tlv_stream("invoice_error", bytes(payload.invoice_error))
                msg = err.error or "(no message)"
            except Exception:
                msg = "(undecodable invoice_error)"
            raise OfferError(Reason.OFFER_BAD_INVREQ_REPLY, f"Remote node sent failure message: {msg}")
        try:
            invoice = parse_invoice(bytes(payload.invoice))
        except Bolt12Error as e:
            raise OfferError(Reason.OFFER_BAD_INVREQ_REPLY, f"Invalid invoice: {e}") from None
        it = invoice.tlv
        # BOLT 12 reader of an invoice: "MUST reject the invoice if all fields in ranges 0 to 159 and 1000000000 to
        # 2999999999 (inclusive) do not exactly match the invoice request"; "`invoice_node_id` is not equal to
        # `offer_issuer_id`"; "if `invreq_amount` is present: MUST reject the invoice if `invoice_amount` is not
        # equal to `invreq_amount`".
        if invreq_id(invoice.raw) != invreq_id(invreq.raw):
            raise OfferError(Reason.OFFER_BAD_INVREQ_REPLY, "Invalid invoice: does not match our invoice_request")
        if expected_node is not None and it.invoice_node_id != expected_node:
            raise OfferError(Reason.OFFER_BAD_INVREQ_REPLY, "Invalid invoice: invoice_node_id is not the offer's")
        want = amount_msat if amount_msat is not None else expected_amount(t, quantity)
        if it.invoice_amount != want:
            raise OfferError(Reason.OFFER_BAD_INVREQ_REPLY, f"Invalid invoice: amount {it.invoice_amount}msat, "
                                                     f"expected {want}msat")
        expiry = it.invoice_relative_expiry if it.invoice_relative_expiry is not None else DEFAULT_INVOICE_EXPIRY
        if _now() > it.invoice_created_at + expiry:
            raise OfferError(Reason.OFFER_BAD_INVREQ_REPLY, "Invalid invoice: already expired")
        return {"invoice": invoice.string(), "changes": {}}

    # ---- paying an invoice -----------------------------------------------------------------------
    async def pay_invoice(self, text: str, *, label: str | None, maxfee: int | None, retry_for: float) -> dict:
        from ampere.node.payments.pay import PayError
        from ampere.node.payments.sendpay import COMPLETE, PENDING, PaymentError
        from ampere.ln.route import RouteError, RouteQuery, find_route

        try:
            invoice = decode_string(text)
        except Bolt12Error as e:
            raise OfferError(Reason.BAD_PARAMETER, f"bolt11: {e}") from None
        if invoice.kind != "invoice":
            raise OfferError(Reason.BAD_PARAMETER, "bolt11: an offer must be turned into an invoice with fetchinvoice")
        it = invoice.tlv
        expiry = it.invoice_relative_expiry if it.invoice_relative_expiry is not None else DEFAULT_INVOICE_EXPIRY
        if _now() > it.invoice_created_at + expiry:
            raise PayError(Reason.PAY_INVOICE_EXPIRED, "Invoice expired")
        chain = it.invreq_chain if it.invreq_chain is not None else BITCOIN_CHAINS["bitcoin"]
        if chain != self.chain_hash:
            raise OfferError(Reason.BAD_PARAMETER, "bolt11: invoice is for another chain")
        amount = int(it.invoice_amount)
        payment_hash = bytes(it.invoice_payment_hash)
        destination = bytes(it.invoice_node_id)
        eng = self.node.payments
        await eng.start()
        parts = eng.parts_of(payment_hash)
        done = [p for p in parts if p.status == COMPLETE]
        if any(p.status == PENDING for p in parts):
            raise PayError(Reason.PAY_IN_PROGRESS, "Payment is in progress")
        payer = self.node.payer
        started = time.time()
        groupid = max((p.groupid for p in parts), default=0) + 1
        if done:
            return self._pay_result(destination, payment_hash, done, started)
        budget = maxfee if maxfee is not None else max(5000, amount // 200)
        me = self.node.node_id
        last_error: Exception | None = None
        attempts = 0
        for path, info in zip(it.invoice_paths, it.invoice_blindedpay):
            if any(b % 2 == 0 for b in _bits(info.features)):
                continue  # "MUST NOT use the corresponding path if `payinfo`.`features` has any unknown even bits"
            if path.first_node_id.pubkey is None:
                try:
                    path = self.node.onion_messenger._resolve_scid(path)
                except LookupError as e:
                    last_error = e
                    continue
            intro = path.first_node_id.pubkey
            fee = payinfo_fee(amount, info.fee_base_msat, info.fee_proportional_millionths)
            if fee > budget:
                last_error = PayError(Reason.PAY_ROUTE_TOO_EXPENSIVE, f"Fee exceeds our fee budget: {fee}msat > {budget}msat")
                continue
            intro_amount = amount + fee
            if intro == me:
                last_error = PayError(Reason.PAY_ROUTE_NOT_FOUND, "blinded path starts at us: not supported")
                continue
            # Retry this path while the failures are on our side of the introduction node (a channel on the way
            # there: excluded, as pay does); a failure at or after the introduction node moves to the next path.
            excluded: set[tuple[int, int]] = set()
            while time.time() < started + retry_for:
                base = eng._blockheight() + 1
                try:
                    route = find_route(payer.graph(), RouteQuery(
                        source=me, destination=intro, amount_msat=intro_amount, final_cltv=info.cltv_expiry_delta,
                        max_fee_msat=budget - fee, local_channels=payer.local_channels(),
                        exclude_channels=frozenset(excluded)))
                except RouteError as e:
                    last_error = PayError(Reason.PAY_ROUTE_NOT_FOUND, f"No route to the blinded path's introduction node: {e}")
                    break
                hops = []
                for i, hop in enumerate(route[:-1]):
                    nxt = route[i + 1]
                    hops.append((hop.node_id, forward_hop_payload(nxt.amount_msat, base + nxt.delay,
                                                                     int(nxt.short_channel_id))))
                hops += blinded_route_payloads(path, amount, amount, base)
                try:
                    onion, secrets = create_onion(os.urandom(32), hops, payment_hash)
                except ValueError as e:
                    last_error = PayError(Reason.PAY_ROUTE_NOT_FOUND, f"Could not build the onion: {e}")
                    break
                attempts += 1
                try:
                    await eng.send_onion(onion, route[0].node_id, route[0].amount_msat, route[0].delay, payment_hash,
                                         shared_secrets=secrets, groupid=groupid, label=label, bolt11=text,
                                         amount_msat=amount, destination=destination, total_amount_msat=amount)
                    await eng.wait(payment_hash, max(1.0, started + retry_for - time.time()), 0, groupid)
                except PaymentError as e:
                    last_error = PayError(e.reason, e.message, e.data)
                    groupid += 1
                    # erring_index: 0 for our own node, else 1 + the index of the hop that answered.
                    erring = (e.data or {}).get("erring_index") if isinstance(e.data, dict) else None
                    if erring is not None and erring < len(route):
                        hop = route[erring]  # the channel out of the failing node (ours when erring == 0)
                        excluded.add((int(hop.short_channel_id), hop.direction))
                        self._log("debug", f"pay {payment_hash.hex()[:16]}: excluding {hop.short_channel_id}/"
                                           f"{hop.direction}: {e.message}")
                        continue
                    break
                done = [p for p in eng.parts_of(payment_hash) if p.status == COMPLETE]
                return self._pay_result(destination, payment_hash, done, started)
        if isinstance(last_error, (PayError, OfferError)):
            raise last_error
        raise PayError(Reason.PAY_ROUTE_NOT_FOUND, f"Ran out of usable blinded paths ({attempts} attempts)"
                       + (f": {last_error}" if last_error else ""))

    @staticmethod
    def _pay_result(destination: bytes, payment_hash: bytes, done: list, created_at: float) -> dict:
        return {"destination": destination.hex(), "payment_hash": payment_hash.hex(), "created_at": created_at,
                "parts": len(done), "amount_msat": sum(p.amount_msat or 0 for p in done),
                "amount_sent_msat": sum(p.amount_sent_msat for p in done),
                "payment_preimage": done[0].preimage.hex(), "status": "complete"}


def _inbound_msat(rec: Any) -> int:
    """Roughly what the peer can still send us on this channel: its balance less the reserve it must keep."""
    ch = rec.core
    try:
        return sat_to_msat(ch.funding_sat) - ch.balance_local_msat - sat_to_msat(ch.local.channel_reserve_sat)
    except AttributeError:
        return 0


def _bits(features: bytes) -> list[int]:
    value = int.from_bytes(features or b"", "big")
    return [i for i in range(value.bit_length()) if value >> i & 1]


