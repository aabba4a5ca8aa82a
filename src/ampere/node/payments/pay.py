"""The `pay` and `keysend` engine: routes, retries and multipath on top of sendpay (ampere.node.payments.sendpay).

    result = await node.payer.pay(PayRequest(...))         CLN pay's result, or PayError (201-210)

One call is one `groupid`.  Each round:
    route      find_route over the public graph (node.gossip), our own channels with what they can really
               send now, and the invoice's route hints; when no single route carries what is left,
               split_payment spreads it over several (every part with the invoice's payment_secret and
               the total, BOLT 4 basic MPP).  The fee budget (maxfee, or maxfeepercent of the amount with
               `exemptfee` as a floor) covers all the parts together.
    send       each part through the payment engine's sendpay (stored before its HTLC leaves)
    learn      from each failed part's routing failure: a channel_update in the failure is applied (to the
               graph, or to the route hint it concerns) and the route retried; otherwise the failing channel
               direction (or node, for NODE failures) is excluded.  A permanent failure at the destination
               ends the payment (203).
until everything arrived, or `retry_for` seconds passed (210), or no route is left (205/206).

Receiving keysend (on by default, as CLN's keysend plugin): `keysend_invoice` makes an invoice on the fly for an
HTLC whose final payload carries a preimage that matches its payment_hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ampere.ln import invoice as bolt11
from ampere.ln.invoice_fields import InvoiceError, scid_to_str
from ampere.ln.route import (
    HintHop,
    LocalChannel,
    RouteError,
    RouteQuery,
    RouteTooExpensiveError,
    find_route,
    route_fee,
    split_payment,
)
from ampere.ln.pay_policy import DEFAULT_EXEMPTFEE, Knowledge, fee_budget, hints_from_invoice, learn_from_failure
from ampere.node.errors import DomainError, Reason
from ampere.node.payments.sendpay import COMPLETE, FAILED, PENDING, PaymentError, RouteHop
from ampere.primitives.amount import MsatInt

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node


DEFAULT_RETRY_FOR = 60
DEFAULT_RISKFACTOR = 10
KEYSEND_FINAL_CLTV = 22  # CLN's keysend plugin
DEFAULT_MAX_PARTS = 16


class PayError(DomainError):
    """Why `pay` or `keysend` gave up (or refused to start)."""


def to_sendpay_route(route: list) -> list[RouteHop]:
    return [RouteHop(h.node_id, int(h.short_channel_id), h.amount_msat, h.delay, h.direction) for h in route]


# ---- requests and status -----------------------------------------------------------------------------------

@dataclass
class PayRequest:
    destination: bytes
    payment_hash: bytes
    amount_msat: int
    payment_secret: bytes | None = None
    payment_metadata: bytes | None = None
    final_cltv: int = 18
    bolt11: str | None = None
    label: str | None = None
    description: str | None = None
    riskfactor: Any = DEFAULT_RISKFACTOR
    max_fee_msat: int = DEFAULT_EXEMPTFEE
    maxdelay: int | None = None
    retry_for: float = DEFAULT_RETRY_FOR
    exclude_channels: frozenset = frozenset()
    exclude_nodes: frozenset = frozenset()
    hints: list = field(default_factory=list)
    keysend_preimage: bytes | None = None
    extra_tlvs: tuple = ()
    expires_at: int | None = None
    # xpay's `layers`: askrene layers applied to every route search (RouteQuery fields, rpc/commands/askrene.py).
    route_overlay: dict = field(default_factory=dict)


@dataclass
class Attempt:
    partid: int
    amount_msat: int
    route: list
    start_time: float
    end_time: float | None = None
    result: dict | None = None      # {"success": ...} or {"failure": ...}
    note: str = ""


@dataclass
class PayStatus:
    request: PayRequest
    created_at: float
    attempts: list[Attempt] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        r = self.request
        out: dict[str, Any] = {}
        if r.bolt11 is not None:
            out["bolt11"] = r.bolt11
        out.update({"amount_msat": r.amount_msat, "destination": r.destination.hex()})
        excl = [f"{scid_to_str(s)}/{d}" for s, d in sorted(r.exclude_channels)] + [n.hex() for n in sorted(r.exclude_nodes)]
        if excl:
            out["local_exclusions"] = excl
        attempts = []
        now = time.time()
        for a in self.attempts:
            j: dict[str, Any] = {"strategy": a.note or "Initial attempt",
                                 "start_time": _iso(a.start_time), "age_in_seconds": int(now - a.start_time)}
            if a.end_time is not None:
                j["end_time"] = _iso(a.end_time)
                j["duration_in_seconds"] = round(a.end_time - a.start_time, 3)
            j["partid"] = a.partid
            j["amount_msat"] = a.amount_msat
            if a.route:
                j["route"] = [h.to_json() for h in a.route]
            if a.result is not None:
                j.update(a.result)
            attempts.append(j)
        out["attempts"] = attempts
        out["notes"] = list(self.notes)
        return out


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


# ---- the engine --------------------------------------------------------------------------------------------

class Payer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.statuses: list[PayStatus] = []

    def _log(self, level: str, msg: str) -> None:
        log = self.node.log
        if log is not None:
            log.log(level, "pay", msg)

    @property
    def our_id(self) -> bytes:
        return self.node.node_id

    def graph(self) -> Any:
        gossip = self.node.gossip
        if gossip is not None:
            return gossip.state.graph
        from ampere.ln.gossip.graph import Graph

        return Graph()

    def local_channels(self) -> list[LocalChannel]:
        """Our channels that can send now, with what each can really send (balance less reserve and in-flight)."""
        mgr = self.node.channel_manager
        if mgr is None:
            return []
        from ampere.ln.channel import core

        out = []
        for rec in mgr.records.values():
            if rec.state.value != "CHANNELD_NORMAL" or rec.short_channel_id is None:
                continue
            if not mgr.is_connected(rec.peer_id):
                continue
            try:
                spendable = core.spendable_msat(rec.core)
                hmin = int(rec.core.remote.htlc_minimum_msat)
            except Exception:
                continue
            if spendable <= 0:
                continue
            out.append(LocalChannel(int(rec.short_channel_id), rec.peer_id, MsatInt(spendable), MsatInt(hmin)))
        return out

    # ---- decoding a bolt11 into a request (pay's parameter checks)
    def request_from_bolt11(self, text: str, *, amount_msat: MsatInt | None, label: str | None, riskfactor: Any,
                            maxfeepercent: Any, retry_for: int | None, maxdelay: int | None,
                            exemptfee: int | None, exclude: list[str] | None, maxfee: int | None,
                            description: str | None) -> PayRequest:
        from ampere.ln.route import parse_exclusions

        if maxfee is not None and (maxfeepercent is not None or exemptfee is not None):
            raise PayError(Reason.BAD_PARAMETER, "If you specify maxfee, cannot specify maxfeepercent or exemptfee.")
        try:
            inv = bolt11.decode(text)
        except InvoiceError as e:
            raise PayError(Reason.BAD_PARAMETER, f"Invalid bolt11: {e}") from None
        from ampere.ln.invoice import currency_for_network

        if inv.currency != currency_for_network(self.node.network):
            raise PayError(Reason.BAD_PARAMETER, f"Invalid bolt11: Invoice is for another network {inv.currency}")
        if inv.amount_msat is None:
            if amount_msat is None:
                raise PayError(Reason.BAD_PARAMETER, "amount_msat parameter required")
            amount = int(amount_msat)
        else:
            if amount_msat is not None:
                raise PayError(Reason.BAD_PARAMETER, "amount_msat parameter unnecessary")
            amount = int(inv.amount_msat)
        if amount == 0:
            raise PayError(Reason.BAD_PARAMETER, "amount_msat parameter cannot be zero")
        if inv.description_hash is not None:
            if description is None:
                raise PayError(Reason.BAD_PARAMETER, "bolt11 uses description_hash, but you did not provide description "
                                               "parameter")
            if hashlib.sha256(description.encode()).digest() != inv.description_hash:
                raise PayError(Reason.BAD_PARAMETER, "description does not match description_hash")
        now = int(time.time())
        expires = inv.timestamp + inv.expiry
        if now > expires:
            raise PayError(Reason.PAY_INVOICE_EXPIRED, "Invoice expired", {"now": now, "expiry": expires})
        try:
            ex_ch, ex_nodes = parse_exclusions(exclude or [])
        except ValueError as e:
            raise PayError(Reason.BAD_PARAMETER, str(e)) from None
        return PayRequest(
            destination=inv.payee, payment_hash=inv.payment_hash, amount_msat=amount,
            payment_secret=inv.payment_secret, payment_metadata=inv.payment_metadata,
            final_cltv=inv.min_final_cltv_expiry, bolt11=text, label=label,
            description=description if description is not None else inv.description,
            riskfactor=riskfactor if riskfactor is not None else DEFAULT_RISKFACTOR,
            max_fee_msat=fee_budget(MsatInt(amount), maxfeepercent, exemptfee, maxfee), maxdelay=maxdelay,
            retry_for=retry_for if retry_for is not None else DEFAULT_RETRY_FOR, exclude_channels=ex_ch,
            exclude_nodes=ex_nodes, hints=hints_from_invoice(inv.route_hints), expires_at=expires)

    def keysend_request(self, destination: bytes, amount_msat: MsatInt, *, label: str | None, maxfeepercent: Any,
                        retry_for: int | None, maxdelay: int | None, exemptfee: int | None, maxfee: int | None,
                        extratlvs: dict[int, bytes] | None, routehints: list[list[HintHop]] | None) -> PayRequest:
        if maxfee is not None and (maxfeepercent is not None or exemptfee is not None):
            raise PayError(Reason.BAD_PARAMETER, "If you specify maxfee, cannot specify maxfeepercent or exemptfee.")
        preimage = os.urandom(32)
        return PayRequest(
            destination=destination, payment_hash=hashlib.sha256(preimage).digest(), amount_msat=int(amount_msat),
            final_cltv=KEYSEND_FINAL_CLTV, label=label,
            max_fee_msat=fee_budget(amount_msat, maxfeepercent, exemptfee, maxfee), maxdelay=maxdelay,
            retry_for=retry_for if retry_for is not None else DEFAULT_RETRY_FOR, hints=list(routehints or []),
            keysend_preimage=preimage, extra_tlvs=tuple(sorted((extratlvs or {}).items())))

    # ---- paying
    async def pay(self, req: PayRequest) -> dict:
        eng = self.node.payments
        await eng.start()
        parts = eng.parts_of(req.payment_hash)
        done = [p for p in parts if p.status == COMPLETE]
        if done:
            if any(p.destination is not None and p.destination != req.destination for p in done):
                raise PayError(Reason.PAY_RHASH_ALREADY_USED, f"Already succeeded to {done[0].destination.hex()}")
            return self._success(req, done, len(done), min(p.created_at for p in done))
        if any(p.status == PENDING for p in parts):
            raise PayError(Reason.PAY_IN_PROGRESS, "Payment is in progress")
        status = PayStatus(req, time.time())
        self.statuses.append(status)
        if len(self.statuses) > 1000:
            del self.statuses[:-1000]
        return await _PayRun(self, eng, req, status, max((p.groupid for p in parts), default=0) + 1).run()

    def _success(self, req: PayRequest, done: list, attempts: int, created_at: float) -> dict:
        out: dict[str, Any] = {"destination": req.destination.hex(), "payment_hash": req.payment_hash.hex(),
                               "created_at": created_at, "parts": attempts,
                               "amount_msat": sum(p.amount_msat or 0 for p in done),
                               "amount_sent_msat": sum(p.amount_sent_msat for p in done),
                               "payment_preimage": done[0].preimage.hex(), "status": "complete"}
        return out

    # ---- listpays / paystatus
    def listpays(self, bolt11_text: str | None = None, payment_hash: bytes | None = None,
                 status: str | None = None, index: str | None = None, start: int | None = None,
                 limit: int | None = None) -> list[dict]:
        eng = self.node.payments
        parts = eng.list(bolt11=bolt11_text, payment_hash=payment_hash, index=index, start=start)
        groups: dict[tuple[str, int], list[dict]] = {}
        for p in parts:
            groups.setdefault((p["payment_hash"], p["groupid"]), []).append(p)
        out = []
        for (_ph, _gid), ps in groups.items():
            sts = {p["status"] for p in ps}
            st = COMPLETE if COMPLETE in sts else PENDING if PENDING in sts else FAILED
            if status is not None and st != status:
                continue
            first = min(ps, key=lambda p: p["created_index"])
            j: dict[str, Any] = {"created_index": first["created_index"]}
            upd = max((p.get("updated_index", 0) for p in ps), default=0)
            if upd:
                j["updated_index"] = upd
            j["payment_hash"] = first["payment_hash"]
            j["status"] = st
            if "destination" in first:
                j["destination"] = first["destination"]
            j["created_at"] = first["created_at"]
            for name in ("label", "bolt11", "bolt12", "description"):
                if name in first:
                    j[name] = first[name]
            if st == COMPLETE:
                ok = [p for p in ps if p["status"] == COMPLETE]
                j["completed_at"] = max(p.get("completed_at", p["created_at"]) for p in ok)
                if all("amount_msat" in p for p in ok):
                    j["amount_msat"] = sum(p["amount_msat"] for p in ok)
                j["amount_sent_msat"] = sum(p["amount_sent_msat"] for p in ok)
                j["preimage"] = ok[0]["payment_preimage"]
                if len(ok) > 1:
                    j["number_of_parts"] = len(ok)
            elif st == FAILED:
                j["amount_sent_msat"] = sum(p["amount_sent_msat"] for p in ps)
                last = max(ps, key=lambda p: p["created_index"])
                if "erroronion" in last:
                    j["erroronion"] = last["erroronion"]
            else:
                j["amount_sent_msat"] = sum(p["amount_sent_msat"] for p in ps if p["status"] == PENDING)
            out.append(j)
        out.sort(key=lambda j: (j["created_at"], j["created_index"]))
        if limit is not None:
            out = out[:limit]
        return out

    def paystatus(self, bolt11_text: str | None = None) -> list[dict]:
        return [s.to_json() for s in self.statuses if bolt11_text is None or s.request.bolt11 == bolt11_text]


class _PayRun:
    """One `pay` call: its rounds of routing, sending and learning."""

    def __init__(self, payer: Payer, eng: Any, req: PayRequest, status: PayStatus, groupid: int) -> None:
        self.payer, self.eng, self.req, self.status = payer, eng, req, status
        self.groupid = groupid
        self.k = Knowledge(set(req.exclude_channels), set(req.exclude_nodes), [list(h) for h in req.hints])
        self.next_partid = 1
        self.inflight: dict[asyncio.Task, Attempt] = {}
        self.delivered = 0          # in flight or arrived, at the destination
        self.fees = 0               # of the parts in flight or arrived
        self.completed: list = []
        self.sent_parts = 0
        self.last_error: PayError | None = None
        self.final_error: PayError | None = None    # ends the payment (permanent failure at the destination)
        self.deadline = time.monotonic() + req.retry_for

    def note(self, text: str) -> None:
        self.status.notes.append(text)
        self.payer._log("debug", f"pay {self.req.payment_hash.hex()[:16]}: {text}")

    def _query(self, amount: MsatInt) -> RouteQuery:
        req = self.req
        ov = req.route_overlay
        return RouteQuery(source=self.payer.our_id, destination=req.destination, amount_msat=amount,
                          final_cltv=req.final_cltv, riskfactor=req.riskfactor,
                          max_fee_msat=MsatInt(max(req.max_fee_msat - self.fees, 0)),
                          max_delay=req.maxdelay,
                          exclude_channels=frozenset(self.k.exclude_channels) | ov.get("exclude_channels", frozenset()),
                          exclude_nodes=frozenset(self.k.exclude_nodes) | ov.get("exclude_nodes", frozenset()),
                          local_channels=self._local_channels(), route_hints=self._usable_hints(),
                          extra_edges=ov.get("extra_edges", ()), capacity_msat=ov.get("capacity_msat", {}),
                          bias=ov.get("bias", {}))

    def _local_channels(self) -> list[LocalChannel]:
        caps = self.k.local_caps
        return [replace(lc, spendable_msat=MsatInt(min(lc.spendable_msat, caps[lc.short_channel_id])))
                if lc.short_channel_id in caps else lc for lc in self.payer.local_channels()]

    def _usable_hints(self) -> list[list[HintHop]]:
        """The hints, less any hop out of our own node: our local channels (with what they can really send) stand
        for those, so a hint only keeps what lies beyond us."""
        me = self.payer.our_id
        out = []
        for hint in self.k.hints:
            idx = max((i for i, hop in enumerate(hint) if hop.node_id == me), default=-1)
            rest = list(hint[idx + 1:])
            if rest:
                out.append(rest)
        return out

    def _routes(self, amount: MsatInt) -> list[list]:
        graph = self.payer.graph()
        q = self._query(amount)
        if self.req.payment_secret is None:
            return [find_route(graph, q)]  # no payment_secret (keysend): one part only
        return split_payment(graph, q, max_parts=DEFAULT_MAX_PARTS)

    async def run(self) -> dict:
        try:
            while True:
                if self.final_error is not None:
                    # Let what is in flight end, then report (a part that arrived means the payee has been paid).
                    while self.inflight:
                        await self._wait_one()
                    if self.completed:
                        return self._result(partial=True)
                    raise self.final_error
                remaining = self.req.amount_msat - self.delivered
                if remaining > 0 and not self.completed:
                    now = time.time()
                    if self.req.expires_at is not None and now > self.req.expires_at and not self.inflight:
                        raise PayError(Reason.PAY_INVOICE_EXPIRED, "Invoice expired",
                                       {"now": int(now), "expiry": self.req.expires_at})
                    if time.monotonic() >= self.deadline:
                        if not self.inflight:
                            raise self._timeout()
                    else:
                        try:
                            routes = self._routes(MsatInt(remaining))
                        except RouteError as e:
                            if not self.inflight:
                                raise self._route_error(e) from None
                            routes = []
                        refused = False
                        for route in routes:
                            if not await self._send(route):
                                refused = True
                            if self.final_error is not None:
                                break
                        if refused:
                            continue  # a part was refused at once (by our own channel): route what is left
                if not self.inflight:
                    if self.completed:
                        return self._result(partial=self.delivered < self.req.amount_msat)
                    continue
                await self._wait_one()
        finally:
            for task in self.inflight:
                task.cancel()

    def _timeout(self) -> PayError:
        data = self.last_error.data if self.last_error is not None else None
        return PayError(Reason.PAY_STOPPED_RETRYING, f"Ran out of time after {self.sent_parts} attempts: see `paystatus`",
                        data)

    def _route_error(self, e: RouteError) -> PayError:
        if isinstance(e, RouteTooExpensiveError):
            data: dict[str, Any] = {}
            if e.fee_msat is not None:
                data["fee_msat"] = e.fee_msat
                data["feepercent"] = round(e.fee_msat * 100 / self.req.amount_msat, 6)
            if e.delay is not None:
                data["delay"] = e.delay
            return PayError(Reason.PAY_ROUTE_TOO_EXPENSIVE, f"Route too expensive: {e}", data or None)
        if self.sent_parts:
            return PayError(Reason.PAY_ROUTE_NOT_FOUND, f"Ran out of routes to try after {self.sent_parts} attempt"
                                                 f"{'s' if self.sent_parts != 1 else ''}: see `paystatus`",
                            self.last_error.data if self.last_error is not None else None)
        return PayError(Reason.PAY_ROUTE_NOT_FOUND, f"Could not find a route: {e}")

    async def _send(self, route: list) -> bool:
        req = self.req
        amount = route[-1].amount_msat
        if req.payment_secret is not None:
            partid, total = self.next_partid, req.amount_msat
            self.next_partid += 1
        else:
            partid, total = 0, None
        attempt = Attempt(partid, amount, route, time.time(),
                          note="Initial attempt" if self.sent_parts == 0 else "Retry")
        self.status.attempts.append(attempt)
        self.sent_parts += 1
        fee = route_fee(route)
        try:
            await self.eng.send_route(to_sendpay_route(route), req.payment_hash, amount_msat=total, label=req.label,
                                      bolt11=req.bolt11, payment_secret=req.payment_secret, partid=partid,
                                      groupid=self.groupid, payment_metadata=req.payment_metadata,
                                      description=req.description, keysend_preimage=req.keysend_preimage,
                                      extra_tlvs=req.extra_tlvs, sign_now=True)
        except PaymentError as e:
            self._failed(attempt, e)
            return False
        self.delivered += amount
        self.fees += fee
        task = asyncio.get_running_loop().create_task(
            self.eng.wait(req.payment_hash, None, partid, self.groupid))
        self.inflight[task] = attempt
        return True

    async def _wait_one(self) -> None:
        timeout = None
        done, _ = await asyncio.wait(list(self.inflight), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            attempt = self.inflight.pop(task)
            attempt.end_time = time.time()
            self.delivered -= attempt.amount_msat
            self.fees -= route_fee(attempt.route)
            exc = task.exception()
            if exc is None:
                part = task.result()
                attempt.result = {"success": {"id": part.get("created_index"),
                                              "payment_preimage": part.get("payment_preimage")}}
                self.delivered += attempt.amount_msat
                self.fees += route_fee(attempt.route)
                p = self.eng.find(self.req.payment_hash, attempt.partid, self.groupid)
                if p is not None:
                    self.completed.append(p)
            elif isinstance(exc, PaymentError):
                self._failed(attempt, exc)
            else:
                self._failed(attempt, PaymentError(Reason.PAY_UNSPECIFIED_ERROR, str(exc)))

    def _failed(self, attempt: Attempt, e: PaymentError) -> None:
        attempt.end_time = attempt.end_time or time.time()
        attempt.result = {"failure": {"code": self.payer.node.cln_code(e.reason), "message": e.message, "data": e.data}}
        data = e.data if isinstance(e.data, dict) else {}
        self.last_error = PayError(e.reason, e.message, e.data)
        if e.reason == Reason.PAY_RHASH_ALREADY_USED:
            self.final_error = self.last_error  # paid before with another amount or destination: nothing can work
            return
        decision = learn_from_failure(self.k, data, self.req.destination, attempt.route[0].amount_msat,
                                      destination_refused=e.reason == Reason.PAY_DESTINATION_PERM_FAIL)
        if decision.update is not None:
            gossip = self.payer.node.gossip
            if gossip is not None:
                asyncio.get_running_loop().create_task(self._ingest(gossip, decision.update))
        attempt.result["failure"]["note"] = decision.note
        self.note(f"part {attempt.partid} ({attempt.amount_msat}msat) failed: {e.message}; {decision.note}")
        if decision.action != "stop":
            return
        if e.reason == Reason.PAY_DESTINATION_PERM_FAIL or data.get("erring_node") == self.req.destination.hex():
            self.final_error = PayError(Reason.PAY_DESTINATION_PERM_FAIL, e.message, e.data)
        else:
            # Nothing to learn from this failure: leave out the first channel we used, so routing moves on.
            first = attempt.route[0]
            self.k.exclude_channels.add((int(first.short_channel_id), first.direction))

    async def _ingest(self, gossip: Any, raw: bytes) -> None:
        try:
            await gossip.ingest(raw)
        except Exception as e:
            self.payer._log("debug", f"channel_update from a failure not applied: {e!r}")

    def _result(self, partial: bool = False) -> dict:
        created = min(p.created_at for p in self.completed)
        out = self.payer._success(self.req, self.completed, self.sent_parts, self.status.created_at or created)
        out["created_at"] = round(self.status.created_at, 3)
        if partial:
            out["warning_partial_completion"] = "Some parts of the payment failed: the destination has the preimage"
        return out




# ---- keysend receive ----------------------------------------------------------------------------------------

async def keysend_invoice(node: Any, payment_hash: bytes, payload: Any) -> tuple[Any, Any]:
    """An HTLC without an invoice whose final payload carries a keysend preimage: as CLN's keysend plugin, make an
    invoice for it on the fly (label "keysend-<time>") and let the normal final-hop logic pay it.  Returns (the
    invoice record or None, the payload to use: given the invoice's payment_secret so the usual checks pass)."""
    preimage = payload.keysend_preimage
    if preimage is None or hashlib.sha256(preimage).digest() != payment_hash:
        return None, payload
    amount = int(payload.amt_to_forward)
    now = time.time()
    label = f"keysend-{int(now)}.{int((now % 1) * 1e9):09d}"
    try:
        await node.call("invoice", {"amount_msat": amount, "label": label, "description": "keysend",
                                    "preimage": preimage.hex()})
    except Exception as e:
        log = node.log
        if log is not None:
            log.log("unusual", "keysend", f"could not make an invoice for keysend {payment_hash.hex()}: {e}")
        return None, payload
    rec = await node.invoices.lookup_by_hash(payment_hash)
    if rec is None:
        return None, payload
    from ampere.primitives.amount import Msat

    payload = replace(payload, payment_secret=rec.payment_secret, total_msat=Msat(amount))
    return rec, payload
