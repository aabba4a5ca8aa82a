"""Outgoing payments, the low-level way: `sendpay` / `sendonion` parts, `waitsendpay`, `listsendpays`.

One record per part, keyed as in Core Lightning by (payment_hash, partid, groupid).  The life of a part:

    send_route(route, payment_hash, ...)      build the onion for the route (BOLT 4), then
    _send(...)                                check it against the other parts of that hash (CLN's rules),
                                              STORE the part as pending (synced), THEN offer the HTLC on
                                              the first channel; a refusal fails the part at once (erring
                                              index 0, the refusal's BOLT 4 code)
    on_htlc_fulfilled / on_htlc_failed        the channel manager's events: the part becomes complete (with
                                              the preimage, as soon as the peer's fulfil is read) or failed
                                              (the failure onion decoded with the route's shared secrets),
                                              stored, THEN waiters wake and the sendpay_success /
                                              sendpay_failure notification goes out
    wait(payment_hash, timeout, partid, groupid)   waitsendpay
    list(...)                                 listsendpays

Restart: pending parts are loaded; `reconcile()` asks the channel manager about each one's HTLC (an HTLC that
never left is failed, a fulfilled one completes through the manager's replay of known preimages, a failed one
is decoded), so every part ends exactly once.

Error codes and messages are CLN's (lightningd/pay.c); the failure data ("routing failure object") follows
`remote_routing_failure` / `local_routing_failure` there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ampere.node.errors import DomainError, Reason
from ampere.node.payments.listing import page
from ampere.node.app.tasks import spawn_guarded
from ampere.store.counters import next_counter
from ampere.ln.invoice_fields import scid_to_str
from ampere.ln.onion import OnionConstructionError, create_onion
from ampere.ln.onion_failure import (
    BADONION,
    PERM,
    FailurePacketError,
    UnreadableFailure,
    decode_failure,
    failure_code_name,
)
from ampere.ln.onion_payload import final_hop_payload, forward_hop_payload
from ampere.primitives.amount import MsatInt
from ampere.primitives.crypto import SECP256K1_ORDER

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node


PENDING, COMPLETE, FAILED = "pending", "complete", "failed"
_STATUS_CODES = {PENDING: 0, COMPLETE: 1, FAILED: 2}
_STATUS_NAMES = {v: k for k, v in _STATUS_CODES.items()}
_VAR_UPDATED_INDEX = "payments.updated_index"
# BOLT #4 temporary_channel_failure (UPDATE|7) and unknown_next_peer (PERM|10): local refusals without a code.
TEMPORARY_CHANNEL_FAILURE = 0x1007
UNKNOWN_NEXT_PEER = 0x400A


class PaymentError(DomainError):
    """A refusal or a failed part, with CLN's code and `data` (the JSON-RPC error's data member)."""


@dataclass(frozen=True)
class RouteHop:
    """One hop of a sendpay route: the channel INTO `node_id`, the amount and the RELATIVE delay (CLN adds
    the current block height + 1) of the HTLC on that channel."""

    node_id: bytes
    scid: int
    amount_msat: int
    delay: int
    direction: int | None = None


def wire_name(code: int) -> str:
    """CLN's onion_wire_name: "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"."""
    name = failure_code_name(code)
    return "WIRE_" + name.upper() if not name.startswith("unknown_failure") else name


def node_id_idx(a: bytes, b: bytes) -> int:
    """The channel direction from a to b (BOLT #7: 0 if a is the lesser node id)."""
    return 0 if a < b else 1


@dataclass
class Payment:
    """One part of one payment (a row of `payments`)."""

    created_index: int
    payment_hash: bytes
    partid: int
    groupid: int
    status: str
    amount_sent_msat: int
    total_msat: int
    created_at: int
    amount_msat: int | None = None          # delivered to the destination by this part, if known
    destination: bytes | None = None
    completed_at: int | None = None
    label: str | None = None
    bolt11: str | None = None
    description: str | None = None
    preimage: bytes | None = None
    route_nodes: list[bytes] = field(default_factory=list)
    route_channels: list[int] = field(default_factory=list)
    shared_secrets: list[bytes] | None = None
    first_scid: int | None = None
    channel_id: bytes | None = None
    htlc_id: int | None = None
    cltv_expiry: int = 0
    failure: dict | None = None             # {"code", "message", "data"}: the routing failure, payment fields excluded
    erroronion: bytes | None = None
    updated_index: int = 0

    @property
    def key(self) -> tuple[bytes, int, int]:
        return (self.payment_hash, self.partid, self.groupid)

    def fields_json(self, with_description: bool = False) -> dict:
        """json_add_payment_fields, in CLN's order."""
        out: dict[str, Any] = {"created_index": self.created_index, "id": self.created_index,
                               "payment_hash": self.payment_hash.hex(), "groupid": self.groupid}
        if self.updated_index:
            out["updated_index"] = self.updated_index
        if self.partid:
            out["partid"] = self.partid
        if self.destination is not None:
            out["destination"] = self.destination.hex()
        if self.amount_msat is not None:
            out["amount_msat"] = self.amount_msat
        out["amount_sent_msat"] = self.amount_sent_msat
        out["created_at"] = self.created_at
        if self.completed_at is not None:
            out["completed_at"] = self.completed_at
        out["status"] = self.status
        if self.status == COMPLETE and self.preimage is not None:
            out["payment_preimage"] = self.preimage.hex()
        if self.label is not None:
            out["label"] = self.label
        if self.bolt11 is not None:
            # A BOLT 12 invoice (node.offers) is stored in the same column; CLN shows it as `bolt12`.
            out["bolt12" if self.bolt11.startswith("lni1") else "bolt11"] = self.bolt11
        if with_description and self.description is not None:
            out["description"] = self.description
        if self.status == FAILED and self.erroronion is not None:
            out["erroronion"] = self.erroronion.hex()
        return out

    def in_progress_json(self) -> dict:
        out = self.fields_json()
        out["message"] = "Monitor status with listpays or waitsendpay"
        return out

    def error(self) -> PaymentError:
        """The failed part as waitsendpay's error (and sendpay_failure's payload)."""
        if self.failure is None:
            return PaymentError(Reason.PAY_UNSPECIFIED_ERROR, "Payment failure reason unknown", self.fields_json())
        data = self.fields_json()
        data.pop("erroronion", None)
        data.update(self.failure.get("data") or {})
        # "code" holds the Reason's name (an int in a failure stored before reasons existed: CLN's code).
        code = self.failure["code"]
        return PaymentError(Reason(code) if isinstance(code, str) else code, self.failure["message"], data)


# ---- pure helpers: onion for a route, failures into CLN's routing failure object -------------------------

def build_route_onion(route: list[RouteHop], payment_hash: bytes, blockheight: int, *, total_msat: MsatInt,
                      payment_secret: bytes | None = None, payment_metadata: bytes | None = None,
                      session_key: bytes | None = None, keysend_preimage: bytes | None = None,
                      extra_tlvs: tuple[tuple[int, bytes], ...] = ()) -> tuple[bytes, list[bytes], int]:
    """The onion for `route` (lightningd/pay.c send_payment): (packet, shared_secrets, first_cltv).

    CLN: "Expiry for HTLCs is absolute.  And add one to give some margin." -> base = blockheight + 1.
    BOLT #4: each non-final hop gets the NEXT channel's short_channel_id, amount and cltv; the final hop its own
    amount and cltv, plus payment_data (payment_secret, total_msat) when the invoice gave a secret.
    """
    if not route:
        raise ValueError("Empty route")
    base = blockheight + 1
    hops: list[tuple[bytes, bytes]] = []
    for i, hop in enumerate(route):
        if i + 1 < len(route):
            nxt = route[i + 1]
            payload = forward_hop_payload(nxt.amount_msat, base + nxt.delay, nxt.scid)
        else:
            payload = final_hop_payload(hop.amount_msat, base + hop.delay, payment_secret=payment_secret,
                                        total_msat=total_msat if payment_secret is not None else None,
                                        payment_metadata=payment_metadata, keysend_preimage=keysend_preimage,
                                        extra_tlvs=extra_tlvs)
        hops.append((hop.node_id, payload))
    key = session_key or _fresh_session_key()
    packet, secrets = create_onion(key, hops, payment_hash)
    return packet, secrets, base + route[0].delay


def _fresh_session_key() -> bytes:
    while True:
        key = os.urandom(32)
        if 0 < int.from_bytes(key, "big") < SECP256K1_ORDER:
            return key


def remote_failure(p: Payment, reason: bytes) -> tuple[dict, bytes | None]:
    """Decode an update_fail_htlc reason for part `p` (CLN remote_routing_failure).

    Returns ({"code", "message", "data"}, erroronion): erroronion is the raw reply when it cannot be read
    (202, "Malformed error reply", data.onionreply)."""
    if not p.shared_secrets:
        return ({"code": Reason.PAY_UNPARSEABLE_ONION, "message": "Malformed error reply",
                 "data": {"onionreply": reason.hex()}}, reason)
    try:
        decoded = decode_failure(p.shared_secrets, reason)
    except (UnreadableFailure, FailurePacketError):
        return ({"code": Reason.PAY_UNPARSEABLE_ONION, "message": "Malformed error reply",
                 "data": {"onionreply": reason.hex()}}, reason)
    index = decoded.erring_index
    failcode = decoded.failure_code
    nodes, chans = p.route_nodes, p.route_channels
    data: dict[str, Any] = {"erring_index": index + 1, "failcode": failcode, "failcodename": wire_name(failcode)}
    if index < len(nodes):
        if index == len(nodes) - 1:
            # "If any channel is to blame, it's the last one."  An error from the destination: permanent if PERM.
            code = Reason.PAY_DESTINATION_PERM_FAIL if failcode & PERM else Reason.PAY_TRY_OTHER_ROUTE
            erring_node = nodes[index]
            erring_channel = chans[index] if index < len(chans) else None
            prev = nodes[index - 1] if index > 0 else None
            direction = node_id_idx(prev, nodes[index]) if prev is not None else None
        else:
            code = Reason.PAY_TRY_OTHER_ROUTE
            # "Report the *next* channel as failing"; a BADONION is on behalf of the following node.
            erring_channel = chans[index + 1] if index + 1 < len(chans) else None
            direction = node_id_idx(nodes[index], nodes[index + 1])
            erring_node = nodes[index + 1] if failcode & BADONION else nodes[index]
        data["erring_node"] = erring_node.hex()
        if erring_channel is not None:
            data["erring_channel"] = scid_to_str(erring_channel)
        if direction is not None:
            data["erring_direction"] = direction
    else:
        code = Reason.PAY_TRY_OTHER_ROUTE
    data["raw_message"] = decoded.failure_message.hex()
    return {"code": code, "message": f"failed: {wire_name(failcode)} (reply from remote)", "data": data}, None


def local_failure(p: Payment, our_id: bytes, failcode: int, detail: str) -> dict:
    """A part that failed at our own node (CLN local_routing_failure): erring_index 0."""
    data: dict[str, Any] = {"erring_index": 0, "failcode": failcode, "failcodename": wire_name(failcode),
                            "erring_node": our_id.hex()}
    if p.first_scid is not None:
        data["erring_channel"] = scid_to_str(p.first_scid)
    if p.route_nodes:
        data["erring_direction"] = node_id_idx(our_id, p.route_nodes[0])
    return {"code": Reason.PAY_TRY_OTHER_ROUTE, "message": f"failed: {wire_name(failcode)} ({detail})", "data": data}


# ---- storage ---------------------------------------------------------------------------------------------

_COLUMNS = ("id, payment_hash, partid, groupid, status, amount_msat, amount_sent_msat, total_msat, destination, "
            "created_at, completed_at, label, bolt11, description, preimage, route, shared_secrets, first_scid, "
            "channel_id, htlc_id, cltv_expiry, failure, erroronion, updated_index")


_INSERT_SQL = f"INSERT INTO payments ({_COLUMNS.partition(', ')[2]}) VALUES ({', '.join('?' * 23)})"


def _row_to_payment(row: tuple) -> Payment:
    (id_, ph, partid, groupid, status, amount, sent, total, dest, created, completed, label, bolt11, desc, pre,
     route, secrets, first_scid, channel_id, htlc_id, cltv, failure, erroronion, updated) = row
    status_name = _STATUS_NAMES[status]
    if status_name != PENDING:
        # A finished part's route and onion secrets are never used again (they serve to read a
        # failure as it comes back) and stay in the database: not loading them keeps thousands
        # of old payments from costing a kilobyte each in memory.
        route, secrets = None, None
    route_obj = json.loads(route) if route else {"nodes": [], "channels": []}
    return Payment(
        created_index=id_, payment_hash=bytes(ph), partid=partid, groupid=groupid, status=status_name,
        amount_sent_msat=sent, total_msat=total, created_at=created, amount_msat=amount,
        destination=bytes(dest) if dest is not None else None, completed_at=completed, label=label, bolt11=bolt11,
        description=desc, preimage=bytes(pre) if pre is not None else None,
        route_nodes=[bytes.fromhex(n) for n in route_obj["nodes"]], route_channels=list(route_obj["channels"]),
        shared_secrets=[bytes(secrets[i:i + 32]) for i in range(0, len(secrets), 32)] if secrets is not None else None,
        first_scid=first_scid, channel_id=bytes(channel_id) if channel_id is not None else None, htlc_id=htlc_id,
        cltv_expiry=cltv or 0, failure=json.loads(failure) if failure else None,
        erroronion=bytes(erroronion) if erroronion is not None else None, updated_index=updated or 0)


def _payment_row(p: Payment) -> tuple:
    return (p.payment_hash, p.partid, p.groupid, _STATUS_CODES[p.status], p.amount_msat, p.amount_sent_msat,
            p.total_msat, p.destination, p.created_at, p.completed_at, p.label, p.bolt11, p.description, p.preimage,
            json.dumps({"nodes": [n.hex() for n in p.route_nodes], "channels": p.route_channels}),
            b"".join(p.shared_secrets) if p.shared_secrets is not None else None, p.first_scid, p.channel_id,
            p.htlc_id, p.cltv_expiry, json.dumps(p.failure) if p.failure else None, p.erroronion, p.updated_index)




def _time_out(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())


class PaymentEngine:
    """The node's outgoing parts (`node.payments`)."""

    def __init__(self, node: Node, clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self._tasks: set[asyncio.Task] = set()  # payment updates in flight, kept alive until done
        self.store = node.store
        self.clock = clock
        self._all: dict[tuple[bytes, int, int], Payment] = {}
        self._by_hash: dict[bytes, list[Payment]] = {}
        self._by_htlc: dict[tuple[bytes, int], Payment] = {}
        self._waiters: dict[tuple[bytes, int, int], list[asyncio.Future]] = {}
        # Parts whose row is being written with their HTLC (see _send): key -> (part, done when answered).
        self._offering: dict[tuple[bytes, int, int], tuple[Payment, asyncio.Future]] = {}
        self._started = False

    # -- helpers
    def _log(self, level: str, msg: str) -> None:
        log = self.node.log
        if log is not None:
            log.log(level, "pay", msg)

    def _notify(self, topic: str, payload: dict) -> None:
        notify = self.node.notify
        if notify is not None:
            notify(topic, payload)

    def now(self) -> int:
        return int(self.clock())

    @property
    def manager(self) -> Any:
        return getattr(self.node, "channel_manager", None)

    def _index(self, p: Payment) -> None:
        old = self._all.get(p.key)
        if old is not None and old is not p:
            self._by_hash[p.payment_hash].remove(old)
            if old.channel_id is not None and old.htlc_id is not None:
                self._by_htlc.pop((old.channel_id, old.htlc_id), None)
        self._all[p.key] = p
        if old is not p:
            self._by_hash.setdefault(p.payment_hash, []).append(p)
        if p.channel_id is not None and p.htlc_id is not None and p.status == PENDING:
            self._by_htlc[(p.channel_id, p.htlc_id)] = p

    # -- life cycle
    async def start(self) -> None:
        if self._started:
            return
        # Finished parts come without their route and onion secrets (see _row_to_payment): not
        # even read, so that loading thousands of old payments does not swell the heap.
        pending = _STATUS_CODES[PENDING]
        columns = _COLUMNS.replace("route, shared_secrets", f"CASE WHEN status = {pending} THEN route END, "
                                                            f"CASE WHEN status = {pending} THEN shared_secrets END")
        assert columns != _COLUMNS
        rows = await self.store.read(lambda db: db.query(f"SELECT {columns} FROM payments ORDER BY id"))
        for row in rows:
            self._index(_row_to_payment(row))
        self._started = True
        mgr = self.manager
        if mgr is not None:
            mgr.on_htlc_fulfilled(self.on_htlc_fulfilled)
            # The peer's update_fulfill_htlc completes the part as soon as its step is computed: the part's row (with
            # the preimage) is queued ahead of the channel's own write, and waitsendpay/pay answer once THAT row is
            # committed. The answer depends on the preimage alone (checked against the hash): a crash before the
            # channel's write loses nothing, the peer retransmits its fulfil at reestablish (BOLT 2). The event
            # after the write finds the part no longer pending and does nothing.
            mgr.on_preimage_learned(self.on_htlc_fulfilled)
            mgr.on_htlc_failed(self.on_htlc_failed)

    def close(self) -> None:
        err = PaymentError(Reason.GENERIC, "lightningd is shutting down")
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(err)
        self._waiters.clear()

    async def reconcile(self) -> None:
        """After a restart, once the channels are loaded: settle what happened to each pending part while we
        were down.  The manager's events are reported once, and one may have been lost with the process:
          * no HTLC recorded: if its channel holds an HTLC we offered with this hash, amount and expiry that no
            other part claims, it is this part's; otherwise the HTLC never left and the part fails;
          * the HTLC still in its channel: fulfilled -> complete (the peer's preimage is in the channel);
            otherwise it is in flight and the events will come;
          * the HTLC gone from a live channel: it was failed (a fulfill would have been stored first: completion
            is written the moment the preimage is reported, ahead of the channel's later steps).
        Then the parts the peer fulfilled are completed from the manager's known preimages."""
        mgr = self.manager
        if mgr is None:
            return
        for p in [p for p in self._all.values() if p.status == PENDING]:
            rec = mgr.find(p.channel_id) if p.channel_id is not None else (
                mgr.find(p.first_scid) if p.first_scid is not None else None)
            ours = [h for h in rec.core.htlcs if h.offerer.name == "LOCAL"] if rec is not None else []
            if p.htlc_id is None:
                claimed = {hid for (cid, hid) in self._by_htlc if rec is not None and cid == rec.channel_id}
                match = next((h for h in ours if h.payment_hash == p.payment_hash and h.amount_msat ==
                              p.amount_sent_msat and h.cltv_expiry == p.cltv_expiry and h.htlc_id not in claimed), None)
                if match is None:
                    await self._fail(p, local_failure(p, self.node.node_id, TEMPORARY_CHANNEL_FAILURE,
                                                      "HTLC was never sent: node restarted"))
                    continue
                p.channel_id, p.htlc_id = rec.channel_id, match.htlc_id
                self._index(p)
                await self.store.write(self._update_op(p, bump=False))
                continue
            if rec is None:
                self._log("unusual", f"pending part {p.created_index}: channel {p.channel_id.hex()} is unknown")
                continue
            h = next((h for h in ours if h.htlc_id == p.htlc_id), None)
            if h is None and rec.state.value.startswith(("CHANNELD", "CLOSINGD")):
                await self._fail(p, None)
        for rec, htlc_id, preimage in mgr.known_preimages():
            await self.on_htlc_fulfilled_async(rec.channel_id, htlc_id, preimage)

    # -- sending
    def parts_of(self, payment_hash: bytes) -> list[Payment]:
        return list(self._by_hash.get(payment_hash, ()))

    def _check_against_others(self, payment_hash: bytes, partid: int, groupid: int, msat: MsatInt, total_msat: MsatInt,
                              destination: bytes | None) -> Payment | dict | None:
        """CLN send_payment_core's checks.  Returns a dict (the answer to give at once: complete or in
        progress), a failed Payment to replace, or None; raises PaymentError."""
        old_failed: Payment | None = None
        pending_sum = 0
        # Parts being stored with their HTLC count as pending (another part of this very key waited in _send).
        offering = [q for q, _ in self._offering.values() if q.payment_hash == payment_hash]
        for other in self.parts_of(payment_hash) + offering:
            # lightningd's line for each earlier payment of this hash (CLN tests wait for "Payment: .* COMPLETE").
            log = self.node.log
            if log is not None:
                log.debug("lightningd", f"Payment: {other.amount_msat or 0}msat {other.status.upper()}")
            if other.status == COMPLETE:
                if other.partid != partid:
                    continue
                if other.amount_msat is not None and other.amount_msat != msat:
                    raise PaymentError(Reason.PAY_RHASH_ALREADY_USED,
                                       f"Already succeeded with amount {other.amount_msat}msat (not {msat}msat)")
                if other.destination is not None and destination is not None and other.destination != destination:
                    raise PaymentError(Reason.PAY_RHASH_ALREADY_USED, f"Already succeeded to {other.destination.hex()}")
                return other.fields_json()
            if other.status == PENDING:
                if other.groupid != groupid:
                    raise PaymentError(Reason.PAY_IN_PROGRESS, f"Payment with hash {payment_hash.hex()} is in progress "
                                                        "with a different groupid")
                if bool(other.partid) != bool(partid):
                    raise PaymentError(Reason.PAY_IN_PROGRESS, "Already have "
                                       f"{'parallel' if other.partid else 'non-parallel'} payment in progress")
                if other.partid == partid:
                    if other.total_msat != total_msat or (other.amount_msat is not None and other.amount_msat != msat):
                        raise PaymentError(Reason.PAY_RHASH_ALREADY_USED,
                                           f"Already pending with amount {other.amount_msat}msat (not {msat}msat)")
                    if other.destination is not None and destination is not None and other.destination != destination:
                        raise PaymentError(Reason.PAY_RHASH_ALREADY_USED, f"Already pending to {other.destination.hex()}")
                    return other.in_progress_json()
                if other.total_msat != total_msat:
                    # "You shouldn't change your mind about amount being sent, since we'll use it in onion!"
                    raise PaymentError(Reason.PAY_IN_PROGRESS, f"msatoshi was previously {other.total_msat}msat, now "
                                                        f"{total_msat}msat")
                pending_sum += other.amount_msat or 0
            elif other.partid == partid and other.groupid == groupid:
                old_failed = other
        if partid and pending_sum + msat > total_msat:
            raise PaymentError(Reason.PAY_IN_PROGRESS, f"Already have {pending_sum}msat of {total_msat}msat payments in "
                                                "progress")
        return old_failed

    async def send_route(self, route: list[RouteHop], payment_hash: bytes, *, amount_msat: MsatInt | None = None,
                         label: str | None = None, bolt11: str | None = None, payment_secret: bytes | None = None,
                         partid: int = 0, groupid: int = 0, payment_metadata: bytes | None = None,
                         description: str | None = None, keysend_preimage: bytes | None = None,
                         extra_tlvs: tuple[tuple[int, bytes], ...] = (), sign_now: bool = False) -> dict:
        """sendpay: returns the in-progress (or already complete) part; raises PaymentError.
        `keysend_preimage` / `extra_tlvs`: records for the final hop's payload (keysend, from pay.py).
        `sign_now`: the commitment_signed covering the HTLC is signed in the HTLC's own write (pay: see _offer)."""
        if not route:
            raise PaymentError(Reason.BAD_PARAMETER, "Empty route")
        final = route[-1]
        msat = final.amount_msat
        if partid and amount_msat is None:
            raise PaymentError(Reason.BAD_PARAMETER, "Must specify msatoshi with partid")
        if partid and payment_secret is None:
            raise PaymentError(Reason.BAD_PARAMETER, "partid requires payment_secret")
        if amount_msat is not None and not partid and amount_msat != msat:
            raise PaymentError(Reason.BAD_PARAMETER, f"Do not specify msatoshi ({amount_msat}msat) without partid: if you "
                                               f"do, it must be exactly the final amount ({msat}msat)")
        total = amount_msat if amount_msat is not None else msat
        try:
            onion, secrets, cltv = build_route_onion(route, payment_hash, self._blockheight(), total_msat=MsatInt(total),
                                                     payment_secret=payment_secret, payment_metadata=payment_metadata,
                                                     keysend_preimage=keysend_preimage, extra_tlvs=extra_tlvs)
        except (OnionConstructionError, ValueError) as e:
            raise PaymentError(Reason.BAD_PARAMETER, f"Could not build the onion: {e}") from None
        p = Payment(created_index=0, payment_hash=payment_hash, partid=partid, groupid=groupid, status=PENDING,
                    amount_sent_msat=route[0].amount_msat, total_msat=total, created_at=self.now(), amount_msat=msat,
                    destination=final.node_id, label=label, bolt11=bolt11, description=description,
                    route_nodes=[h.node_id for h in route], route_channels=[h.scid for h in route],
                    shared_secrets=secrets, first_scid=route[0].scid, cltv_expiry=cltv)
        return await self._send(p, onion, route[0].node_id, sign_now)

    async def send_onion(self, onion: bytes, first_node: bytes, first_amount_msat: MsatInt, first_delay: int,
                         payment_hash: bytes, *, shared_secrets: list[bytes] | None = None, partid: int = 0,
                         groupid: int = 0, label: str | None = None, bolt11: str | None = None,
                         amount_msat: MsatInt | None = None, destination: bytes | None = None,
                         total_amount_msat: MsatInt | None = None, description: str | None = None) -> dict:
        """sendonion: the caller built the onion (createonion); we only offer the first HTLC."""
        scid = self._channel_to(first_node, first_amount_msat)
        total = total_amount_msat if total_amount_msat else (amount_msat if amount_msat is not None else first_amount_msat)
        p = Payment(created_index=0, payment_hash=payment_hash, partid=partid, groupid=groupid, status=PENDING,
                    amount_sent_msat=first_amount_msat, total_msat=total, created_at=self.now(),
                    amount_msat=amount_msat, destination=destination, label=label, bolt11=bolt11,
                    description=description, route_nodes=[first_node] if shared_secrets else [],
                    route_channels=[scid] if scid is not None and shared_secrets else [],
                    shared_secrets=shared_secrets, first_scid=scid,
                    cltv_expiry=self._blockheight() + 1 + first_delay)
        return await self._send(p, onion, first_node)

    def _channel_to(self, peer_id: bytes, amount_msat: MsatInt) -> int | None:
        """sendonion names the first node only: its operating channel with the most spendable balance."""
        mgr = self.manager
        if mgr is None:
            return None
        best, best_spendable = None, -1
        for rec in mgr.peer_records(peer_id):
            if rec.short_channel_id is None or not rec.state.value.startswith("CHANNELD_NORMAL"):
                continue
            from ampere.ln.channel import core

            spendable = core.spendable_msat(rec.core)
            if spendable > best_spendable:
                best, best_spendable = int(rec.short_channel_id), spendable
        return best

    def _blockheight(self) -> int:
        chain = self.node.chain
        height = chain.height if chain is not None else None
        if isinstance(height, int):
            return height
        return int(self.node.blockheight or 0)

    async def _send(self, p: Payment, onion: bytes, first_node: bytes, sign_now: bool = False) -> dict:
        while (busy := self._offering.get(p.key)) is not None:
            await asyncio.shield(busy[1])  # this very part is being stored: answer as once it is
        existing = self._check_against_others(p.payment_hash, p.partid, p.groupid,
                                              MsatInt(p.amount_msat if p.amount_msat is not None else p.total_msat),
                                              MsatInt(p.total_msat), p.destination)
        if isinstance(existing, dict):
            return existing
        done = asyncio.get_running_loop().create_future()
        self._offering[p.key] = (p, done)
        try:
            return await self._offer(p, onion, first_node, existing, sign_now)
        finally:
            del self._offering[p.key]
            done.set_result(None)

    async def _offer(self, p: Payment, onion: bytes, first_node: bytes, old_failed: Payment | None,
                     sign_now: bool = False) -> dict:
        """Persist before you speak: the part's row is written in the same transaction as its HTLC (one commit,
        issue 18), before the HTLC can reach the peer; refused, the part is stored failed.

        `sign_now` False (sendpay, sendonion): the commitment waits for the commit timer, so sendpay answers once
        the HTLC is stored and parts sent within commit-time share one commitment_signed. True (pay, whose caller
        waits for the outcome, not for the offer): the commitment_signed is signed in that same write, as a
        forward's is (switch.py), one write and the timer's wait less on the payer's critical path. Either way
        nothing leaves before the write that holds it."""
        insert = self._insert_op(p, old_failed)
        mgr = self.manager
        failure: dict | None = None
        if mgr is None:
            failure = local_failure(p, self.node.node_id, UNKNOWN_NEXT_PEER, "No connection to first peer found")
        else:
            target = p.first_scid if p.first_scid is not None else first_node
            first = mgr.find(target)
            stored: dict[str, int] = {}

            def with_htlc(db: Any, htlc_id: int) -> None:
                # Database only, the same on every run (the store may run it again): the row names its HTLC.
                p.channel_id, p.htlc_id = first.channel_id, htlc_id
                stored["id"] = insert(db)
            try:
                if first is None or first.peer_id != first_node:
                    raise LookupError("No connection to first peer found")
                result = await mgr.offer_htlc(target, p.amount_sent_msat, p.payment_hash, p.cltv_expiry, onion,
                                              also=with_htlc, sign_now=sign_now)
            except Exception as e:  # a typed refusal (BOLT 4 code) or "no such channel"
                code = getattr(e, "failure_code", None) or (
                    UNKNOWN_NEXT_PEER if isinstance(e, (KeyError, LookupError)) else TEMPORARY_CHANNEL_FAILURE)
                failure = local_failure(p, self.node.node_id, code, str(e) or type(e).__name__)
            else:
                p.created_index = stored["id"]
                p.channel_id, p.htlc_id = first.channel_id, int(result)
                self._index(p)
                self._log("debug", f"Sending {p.amount_sent_msat}msat for {p.payment_hash.hex()} part {p.partid} "
                                   f"group {p.groupid} (id {p.created_index})")
                return p.in_progress_json()
        p.channel_id = p.htlc_id = None
        p.created_index = await self.node.store.write(insert)
        self._index(p)
        await self._fail(p, failure)
        raise p.error()

    def _insert_op(self, p: Payment, old_failed: Payment | None) -> Callable[[Any], int]:
        # Database only (the store may run it more than once): the caller sets p.created_index once committed.
        # The retry is inserted BEFORE its failed predecessor is deleted: SQLite gives a new row max(id) + 1 (the
        # table has no AUTOINCREMENT since migration 14), so the new id is above the old one even when the old was
        # the highest, and max(id) never goes down: an id is never reused.
        def op(db) -> int:
            new_id = db.execute(_INSERT_SQL, _payment_row(p)).lastrowid
            if old_failed is not None:
                db.execute("DELETE FROM payments WHERE id = ?", (old_failed.created_index,))
            return new_id
        return op

    def _update_op(self, p: Payment, bump: bool = True) -> Callable[[Any], Payment]:
        def op(db) -> Payment:
            # Sets the in-memory updated_index inside the op, so that a later op of the same batch on the same
            # object stores it.  Safe to run again: the counter comes from the database, rolled back with the
            # undone run, so each run sets its own run's value and the last run is the one committed.
            if bump:
                p.updated_index = next_counter(db, _VAR_UPDATED_INDEX)
            db.execute("UPDATE payments SET status = ?, completed_at = ?, preimage = ?, channel_id = ?, htlc_id = ?,"
                       " failure = ?, erroronion = ?, updated_index = ? WHERE id = ?",
                       (_STATUS_CODES[p.status], p.completed_at, p.preimage, p.channel_id, p.htlc_id,
                        json.dumps(p.failure) if p.failure else None, p.erroronion, p.updated_index,
                        p.created_index))
            return p
        return op

    # -- results
    async def _fail(self, p: Payment, failure: dict | None, erroronion: bytes | None = None) -> None:
        if p.status != PENDING:
            return
        p.status, p.failure, p.erroronion, p.completed_at = FAILED, failure, erroronion, self.now()
        if p.channel_id is not None and p.htlc_id is not None:
            self._by_htlc.pop((p.channel_id, p.htlc_id), None)
        await self.store.write(self._update_op(p))
        err = p.error()
        self._log("debug", f"Payment part {p.partid}/{p.groupid} of {p.payment_hash.hex()} failed: {err.message}")
        self._wake(p)
        self._notify("sendpay_failure", self.node.error_json(err))

    async def _complete(self, p: Payment, preimage: bytes) -> None:
        fut = self._complete_soon(p, preimage)
        if fut is not None:
            await fut

    def _complete_soon(self, p: Payment, preimage: bytes) -> asyncio.Future | None:
        """Mark `p` complete: the checks and the in-memory change now, its write queued now; once that write is
        committed (and only then), the log line, the waiters (waitsendpay) and sendpay_success, from the store
        future's callback -- no task per payment.  The future, or None if there was nothing to do."""
        if p.status != PENDING:
            return None
        if hashlib.sha256(preimage).digest() != p.payment_hash:
            self._log("broken", f"preimage for {p.payment_hash.hex()} does not match")
            return None
        p.status, p.preimage, p.completed_at = COMPLETE, preimage, self.now()
        if p.channel_id is not None and p.htlc_id is not None:
            self._by_htlc.pop((p.channel_id, p.htlc_id), None)
        fut = self.store.submit(self._update_op(p))

        def committed(f: asyncio.Future) -> None:
            if f.cancelled():
                return
            if f.exception() is not None:
                self._log("broken", f"payment update failed: {f.exception()!r}")
                return
            self._log("info", f"Payment part {p.partid}/{p.groupid} of {p.payment_hash.hex()} complete")
            self._wake(p)
            self._notify("sendpay_success", p.fields_json())
        fut.add_done_callback(committed)
        return fut

    def on_htlc_fulfilled(self, record: Any, ev: Any) -> None:
        """The manager's listener: (channel record, HtlcFulfilled)."""
        p = self._by_htlc.get((bytes(ev.channel_id), int(ev.htlc_id)))
        if p is not None:
            # Queued now, so it is written ahead of the channel's later steps (one FIFO store thread).
            self._complete_soon(p, bytes(ev.preimage))

    async def on_htlc_fulfilled_async(self, channel_id: bytes, htlc_id: int, preimage: bytes) -> None:
        p = self._by_htlc.get((bytes(channel_id), int(htlc_id)))
        if p is not None:
            await self._complete(p, bytes(preimage))

    def on_htlc_failed(self, record: Any, ev: Any) -> None:
        """The manager's listener: (channel record, HtlcFailed)."""
        if getattr(ev, "onchain", False):
            p = self._by_htlc.get((bytes(ev.channel_id), int(ev.htlc_id)))
            if p is not None:
                self._spawn(self._fail(p, local_failure(p, self.node.node_id, PERM | 8,
                                                        "HTLC timed out on-chain")))
            return
        self._spawn(self.on_htlc_failed_async(
            bytes(ev.channel_id), int(ev.htlc_id), reason=bytes(ev.reason or b""), failure_code=ev.failure_code or 0,
            sha256_of_onion=bytes(ev.sha256_of_onion or b"")))

    async def on_htlc_failed_async(self, channel_id: bytes, htlc_id: int, reason: bytes = b"",
                                   failure_code: int = 0, sha256_of_onion: bytes = b"") -> None:
        p = self._by_htlc.get((bytes(channel_id), int(htlc_id)))
        if p is None:
            return
        if failure_code:
            # update_fail_malformed_htlc from the first hop: a failure at our side of the route.
            await self._fail(p, local_failure(p, self.node.node_id, failure_code, "malformed onion reported by peer"))
            return
        failure, erroronion = remote_failure(p, reason)
        await self._fail(p, failure, erroronion)

    def _spawn(self, coro) -> asyncio.Task:
        return spawn_guarded(self._tasks, coro, "payment update", lambda msg: self._log("broken", msg))

    def _wake(self, p: Payment) -> None:
        for fut in self._waiters.pop(p.key, []):
            if not fut.done():
                fut.set_result(p)

    # -- waitsendpay / listsendpays
    def find(self, payment_hash: bytes, partid: int = 0, groupid: int | None = None) -> Payment | None:
        parts = [p for p in self.parts_of(payment_hash) if p.partid == partid
                 and (groupid is None or p.groupid == groupid)]
        if not parts:
            return None
        return max(parts, key=lambda p: (p.groupid, p.created_index))

    async def wait(self, payment_hash: bytes, timeout: float | None = None, partid: int = 0,
                   groupid: int | None = None) -> dict:
        p = self.find(payment_hash, partid, groupid)
        if p is None:
            raise PaymentError(Reason.PAY_NO_SUCH_PAYMENT, f"Never attempted payment part {partid} for "
                                                    f"'{payment_hash.hex()}'")
        if p.status == PENDING:
            if timeout is not None and timeout <= 0:
                raise PaymentError(Reason.PAY_IN_PROGRESS, "Timed out while waiting")
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            waiters = self._waiters.setdefault(p.key, [])
            waiters.append(fut)
            # The future is this caller's alone: awaited as it is, with a timer of its own for the timeout (not
            # wait_for + shield, which make two more futures, a task wake-up and callbacks per waitsendpay).
            timer = loop.call_later(timeout, _time_out, fut) if timeout is not None else None
            try:
                p = await fut
            except asyncio.TimeoutError:
                raise PaymentError(Reason.PAY_IN_PROGRESS, "Timed out while waiting") from None
            finally:
                if timer is not None:
                    timer.cancel()
                if fut in waiters:
                    waiters.remove(fut)
                if not waiters and self._waiters.get(p.key) is waiters:
                    del self._waiters[p.key]
                if not fut.done():
                    fut.cancel()
        if p.status == COMPLETE:
            return p.fields_json()
        raise p.error()

    def list(self, *, bolt11: str | None = None, payment_hash: bytes | None = None, status: str | None = None,
             index: str | None = None, start: int | None = None, limit: int | None = None) -> list[dict]:
        parts: Iterable[Payment] = self.parts_of(payment_hash) if payment_hash is not None else self._all.values()
        out = [p for p in parts if (bolt11 is None or p.bolt11 == bolt11) and (status is None or p.status == status)]
        return [p.fields_json(with_description=True) for p in page(out, index, start, limit)]


