"""Unit tests of the low-level payment pieces: route onions, failure decoding into CLN's routing failure
object, the part records and their rules, the htlc_accepted / invoice_payment hook sessions, the final-hop
checks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import types

import pytest
from coincurve import PrivateKey

from ampere.ln.onion import peel_onion
from ampere.ln.onion_failure import create_failure_packet, encode_failure_message, wrap_failure
from ampere.ln.onion_payload import decode_hop_payload
from ampere.node.app.daemon import Node
from ampere.node.errors import Reason
from ampere.rpc.errors import to_rpc_error
from ampere.node.payments.sendpay import (
    Payment,
    PaymentEngine,
    PaymentError,
    RouteHop,
    build_route_onion,
    local_failure,
    remote_failure,
)
from ampere.node.payments.receive import IncomingHtlc, final_hop_failure, invoice_failure, onion_json
from ampere.plugins.hooks import HtlcAcceptedSession, InvoicePaymentSession, parse_hook_timeout
from ampere.store.sqlite import SqliteStore
from ampere.testing.schema import validate, validate_hook

KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(3)]
IDS = [k.public_key.format() for k in KEYS]
US = IDS[0]
SCID1, SCID2 = (103 << 40) | (1 << 16) | 0, (104 << 40) | (2 << 16) | 1
PREIMAGE = bytes(range(32))
HASH = hashlib.sha256(PREIMAGE).digest()
SECRET = b"\x55" * 32


def engine_services(store, notify) -> types.SimpleNamespace:
    """What PaymentEngine uses of the node (ampere.node.app.daemon.Node), and nothing else: a store, our id,
    the chain height, notifications, and the RPC edge's error vocabulary (sendpay_failure's payload)."""
    return types.SimpleNamespace(store=store, node_id=US, log=None, channel_manager=None, chain=None,
                                 blockheight=100, notify=notify, error_json=Node.error_json,
                                 cln_code=Node.cln_code)


def two_hop_route() -> list[RouteHop]:
    return [RouteHop(IDS[1], SCID1, 1_001_010, 24), RouteHop(IDS[2], SCID2, 1_000_000, 18)]


def part(route=None, **kw) -> Payment:
    route = route or two_hop_route()
    _, secrets, cltv = build_route_onion(route, HASH, 100, total_msat=1_000_000, payment_secret=SECRET)
    base = dict(created_index=1, payment_hash=HASH, partid=0, groupid=0, status="pending",
                amount_sent_msat=route[0].amount_msat, total_msat=1_000_000, created_at=1700000000,
                amount_msat=route[-1].amount_msat, destination=route[-1].node_id,
                route_nodes=[h.node_id for h in route], route_channels=[h.scid for h in route],
                shared_secrets=secrets, first_scid=route[0].scid, cltv_expiry=cltv)
    base.update(kw)
    return Payment(**base)


# ---- onions for a route -----------------------------------------------------------------------------------

def test_route_onion_gives_each_hop_its_payload():
    route = two_hop_route()
    onion, secrets, cltv = build_route_onion(route, HASH, 100, total_msat=1_000_000, payment_secret=SECRET,
                                             payment_metadata=b"meta")
    # CLN: HTLC expiries are absolute, base = blockheight + 1.
    assert cltv == 101 + 24
    hop1 = peel_onion(KEYS[1].secret, onion, HASH)
    assert not hop1.is_final and hop1.shared_secret == secrets[0]
    p1 = decode_hop_payload(hop1.payload)
    assert (p1.short_channel_id, p1.amt_to_forward, p1.outgoing_cltv_value) == (SCID2, 1_000_000, 101 + 18)
    hop2 = peel_onion(KEYS[2].secret, hop1.next_onion, HASH)
    assert hop2.is_final
    p2 = decode_hop_payload(hop2.payload)
    assert (p2.amt_to_forward, p2.outgoing_cltv_value, p2.payment_secret, p2.total_msat) == \
        (1_000_000, 119, SECRET, 1_000_000)
    assert p2.payment_metadata == b"meta"


def test_empty_route_is_refused():
    with pytest.raises(ValueError):
        build_route_onion([], HASH, 100, total_msat=1)


# ---- failures ---------------------------------------------------------------------------------------------

def _reply_from(hop_index: int, msg: bytes, p: Payment) -> bytes:
    packet = create_failure_packet(p.shared_secrets[hop_index], msg)
    for i in range(hop_index - 1, -1, -1):
        packet = wrap_failure(p.shared_secrets[i], packet)
    return packet


def test_failure_from_destination_is_permanent_with_erring_fields():
    p = part()
    msg = encode_failure_message("incorrect_or_unknown_payment_details", htlc_msat=1_000_000, height=100)
    failure, erroronion = remote_failure(p, _reply_from(1, msg, p))
    assert erroronion is None
    assert failure["code"] == Reason.PAY_DESTINATION_PERM_FAIL
    assert failure["message"] == "failed: WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS (reply from remote)"
    d = failure["data"]
    assert d["erring_index"] == 2 and d["failcode"] == 0x400F
    assert d["failcodename"] == "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"
    assert d["erring_node"] == IDS[2].hex()
    assert d["erring_channel"] == "104x2x1"
    assert d["erring_direction"] == (0 if IDS[1] < IDS[2] else 1)
    assert d["raw_message"] == msg.hex()


def test_mpp_timeout_from_destination_is_retryable():
    p = part()
    failure, _ = remote_failure(p, _reply_from(1, encode_failure_message("mpp_timeout"), p))
    assert failure["code"] == Reason.PAY_TRY_OTHER_ROUTE and failure["data"]["failcodename"] == "WIRE_MPP_TIMEOUT"


def test_intermediate_failure_names_the_next_channel():
    p = part()
    msg = encode_failure_message("temporary_channel_failure", channel_update=b"")
    failure, _ = remote_failure(p, _reply_from(0, msg, p))
    d = failure["data"]
    assert failure["code"] == Reason.PAY_TRY_OTHER_ROUTE
    assert (d["erring_index"], d["erring_node"], d["erring_channel"]) == (1, IDS[1].hex(), "104x2x1")
    # A BADONION reported by hop 1 is on behalf of the following node.
    bad = encode_failure_message("invalid_onion_hmac", sha256_of_onion=b"\x01" * 32)
    failure, _ = remote_failure(p, _reply_from(0, bad, p))
    assert failure["data"]["erring_node"] == IDS[2].hex()


def test_unreadable_reply_is_202_with_onionreply():
    p = part()
    junk = os.urandom(292)
    failure, erroronion = remote_failure(p, junk)
    assert failure["code"] == Reason.PAY_UNPARSEABLE_ONION and failure["data"]["onionreply"] == junk.hex()
    assert erroronion == junk


def test_failed_part_shapes_match_cln_schemas():
    p = part()
    msg = encode_failure_message("incorrect_or_unknown_payment_details", htlc_msat=1_000_000, height=100)
    failure, _ = remote_failure(p, _reply_from(1, msg, p))
    p.status, p.failure, p.completed_at = "failed", failure, 1700000001
    err = to_rpc_error(p.error()).to_json()
    from ampere.testing.schema import load_schema, ClnValidator

    ClnValidator(load_schema("notification/sendpay_failure", "response")).validate(err)
    validate("listsendpays", {"payments": [p.fields_json(with_description=True)]})
    lf = local_failure(p, US, 0x1007, "First peer not ready")
    assert lf["data"]["erring_index"] == 0 and lf["data"]["erring_node"] == US.hex()
    assert lf["message"] == "failed: WIRE_TEMPORARY_CHANNEL_FAILURE (First peer not ready)"
    done = part(status="complete", preimage=PREIMAGE, completed_at=1700000002, partid=3, label="x")
    validate("waitsendpay", done.fields_json())
    validate("sendpay", part().in_progress_json())


# ---- the engine with a real store, no channels ------------------------------------------------------------

@pytest.fixture
def engine(tmp_path):
    async def make():
        store = SqliteStore(str(tmp_path / "db.sqlite3"))
        await store.open()
        notes = []
        node = engine_services(store, notify=lambda t, p: notes.append((t, p)))
        eng = PaymentEngine(node)
        await eng.start()
        return eng, notes, store
    return make


def test_engine_stores_a_refused_part_and_reports_it(engine, tmp_path):
    async def run():
        eng, notes, store = await engine()
        with pytest.raises(PaymentError) as e:
            await eng.send_route(two_hop_route(), HASH, label="lbl")
        assert e.value.reason == Reason.PAY_TRY_OTHER_ROUTE
        assert e.value.data["erring_index"] == 0 and e.value.data["failcodename"] == "WIRE_UNKNOWN_NEXT_PEER"
        assert notes and notes[-1][0] == "sendpay_failure" and notes[-1][1]["data"]["status"] == "failed"
        # waitsendpay gives the stored failure; listsendpays shows it.
        with pytest.raises(PaymentError) as w:
            await eng.wait(HASH)
        assert w.value.reason == Reason.PAY_TRY_OTHER_ROUTE
        listed = eng.list(payment_hash=HASH)
        assert len(listed) == 1 and listed[0]["status"] == "failed" and listed[0]["label"] == "lbl"
        with pytest.raises(PaymentError) as n:
            await eng.wait(b"\x00" * 32)
        assert n.value.reason == Reason.PAY_NO_SUCH_PAYMENT
        # A retry of the same (hash, partid, groupid) replaces the failed part: a new created_index.
        with pytest.raises(PaymentError):
            await eng.send_route(two_hop_route(), HASH)
        again = eng.list(payment_hash=HASH)
        assert len(again) == 1 and again[0]["created_index"] > listed[0]["created_index"]
        with pytest.raises(PaymentError) as w_again:
            await eng.wait(HASH)
        await store.close()
        # Durable: a fresh engine on the same database sees it.
        store2 = SqliteStore(str(tmp_path / "db.sqlite3"))
        await store2.open()
        eng2 = PaymentEngine(engine_services(store2, notify=lambda t, p: None))
        await eng2.start()
        assert eng2.list()[0]["created_index"] == again[0]["created_index"]
        # A finished part is loaded without its route and onion secrets (memory), yet answers the
        # same; they stay in the database.
        assert eng2.list() == again
        with pytest.raises(PaymentError) as w2:
            await eng2.wait(HASH)
        assert (w2.value.reason, w2.value.message, w2.value.data) == (
            w_again.value.reason, w_again.value.message, w_again.value.data)
        part = eng2.parts_of(HASH)[0]
        assert part.shared_secrets is None and part.route_nodes == []
        row = await store2.read(lambda db: db.query("SELECT route, shared_secrets FROM payments"))
        assert row[0][0] and row[0][1]
        await store2.close()
    asyncio.run(run())


def test_sendpay_rules_against_other_parts(engine):
    async def run():
        eng, _notes, store = await engine()
        pending = part(partid=1, amount_msat=400_000, total_msat=1_000_000)
        eng._index(pending)
        # Same part pending: answered "in progress", nothing new.
        assert eng._check_against_others(HASH, 1, 0, 400_000, 1_000_000, IDS[2])["status"] == "pending"
        with pytest.raises(PaymentError) as e:
            eng._check_against_others(HASH, 2, 5, 400_000, 1_000_000, IDS[2])
        assert e.value.reason == Reason.PAY_IN_PROGRESS and "different groupid" in e.value.message
        with pytest.raises(PaymentError) as e:
            eng._check_against_others(HASH, 0, 0, 1_000_000, 1_000_000, IDS[2])
        assert "non-parallel" not in e.value.message and e.value.reason == Reason.PAY_IN_PROGRESS
        with pytest.raises(PaymentError) as e:
            eng._check_against_others(HASH, 2, 0, 400_000, 2_000_000, IDS[2])
        assert e.value.reason == Reason.PAY_IN_PROGRESS and "msatoshi was previously" in e.value.message
        with pytest.raises(PaymentError) as e:  # more than total in flight
            eng._check_against_others(HASH, 2, 0, 700_000, 1_000_000, IDS[2])
        assert "Already have 400000msat of 1000000msat" in e.value.message
        assert eng._check_against_others(HASH, 2, 0, 600_000, 1_000_000, IDS[2]) is None
        done = part(payment_hash=b"\x01" * 32, status="complete", preimage=PREIMAGE)
        eng._index(done)
        assert eng._check_against_others(done.payment_hash, 0, 0, 1_000_000, 1_000_000, IDS[2])["status"] == \
            "complete"
        with pytest.raises(PaymentError) as e:
            eng._check_against_others(done.payment_hash, 0, 0, 5, 5, IDS[2])
        assert e.value.reason == Reason.PAY_RHASH_ALREADY_USED
        with pytest.raises(PaymentError) as e:
            await eng.send_route(two_hop_route(), HASH, partid=3, amount_msat=1_000_000)
        assert e.value.message == "partid requires payment_secret"
        await store.close()
    asyncio.run(run())


def test_wait_times_out_with_200(engine):
    async def run():
        eng, _n, store = await engine()
        eng._index(part())
        with pytest.raises(PaymentError) as e:
            await eng.wait(HASH, timeout=0)
        assert e.value.reason == Reason.PAY_IN_PROGRESS
        t = asyncio.ensure_future(eng.wait(HASH, timeout=5))
        await asyncio.sleep(0.01)
        p = eng.find(HASH)
        p.channel_id, p.htlc_id = b"\x09" * 32, 0
        p.created_index = (await store.write(lambda db: db.execute(
            "INSERT INTO payments (payment_hash, partid, groupid, status, amount_sent_msat, total_msat, created_at,"
            " cltv_expiry) VALUES (?, 0, 0, 0, 1, 1, 1, 1)", (HASH,)).lastrowid))
        eng._index(p)
        await eng.on_htlc_fulfilled_async(b"\x09" * 32, 0, PREIMAGE)
        result = await t
        assert result["status"] == "complete" and result["payment_preimage"] == PREIMAGE.hex()
        assert result["updated_index"] == 1
        await store.close()
    asyncio.run(run())


def test_fulfilled_htlc_completes_the_part_without_a_task_and_answers_after_the_commit(engine):
    """Issue 18: the channel's fulfil listener marks the part complete with no task per payment; waitsendpay
    and sendpay_success come only once the update is committed (persist before answering)."""
    async def run():
        eng, notes, store = await engine()
        p = part()
        p.channel_id, p.htlc_id = b"\x09" * 32, 7
        p.created_index = (await store.write(lambda db: db.execute(
            "INSERT INTO payments (payment_hash, partid, groupid, status, amount_sent_msat, total_msat, created_at,"
            " cltv_expiry) VALUES (?, 0, 0, 0, 1, 1, 1, 1)", (HASH,)).lastrowid))
        eng._index(p)
        waiter = asyncio.ensure_future(eng.wait(HASH, timeout=5))
        await asyncio.sleep(0.01)
        committed = []
        real_submit = store.submit

        def submit(fn):
            fut = real_submit(fn)
            fut.add_done_callback(lambda f: committed.append(f.result()))
            return fut
        store.submit = submit
        eng.on_htlc_fulfilled(None, types.SimpleNamespace(channel_id=b"\x09" * 32, htlc_id=7, preimage=PREIMAGE))
        assert eng._tasks == set()  # no task for this payment's update
        assert not waiter.done() and not [n for n in notes if n[0] == "sendpay_success"]
        result = await waiter
        assert committed  # the waiter was answered after the write's commit
        assert result["status"] == "complete" and result["payment_preimage"] == PREIMAGE.hex()
        assert [n[0] for n in notes].count("sendpay_success") == 1
        row = await store.read(lambda db: db.query("SELECT status, preimage FROM payments WHERE id = ?",
                                                   (p.created_index,)))
        assert row == [(1, PREIMAGE)]
        # A second fulfil of the same part changes nothing.
        eng.on_htlc_fulfilled(None, types.SimpleNamespace(channel_id=b"\x09" * 32, htlc_id=7, preimage=PREIMAGE))
        await asyncio.sleep(0.05)
        assert [n[0] for n in notes].count("sendpay_success") == 1
        del store.submit
        await store.close()
    asyncio.run(run())


# ---- hook sessions ----------------------------------------------------------------------------------------

def _hook_payload() -> dict:
    raw = bytes.fromhex("0203" + "0f4240") + bytes.fromhex("0401" + "77")
    return {"onion": {**onion_json(raw, decode_hop_payload(raw), True), "next_onion": "00" * 1366,
                      "shared_secret": "11" * 32},
            "htlc": {"short_channel_id": "103x1x0", "id": 0, "amount_msat": 1000000, "cltv_expiry": 119,
                     "cltv_expiry_relative": 19, "payment_hash": HASH.hex()}}


def test_htlc_accepted_payload_matches_cln_schema():
    validate_hook("htlc_accepted", _hook_payload())


def test_htlc_accepted_replacements_are_seen_by_the_next_plugin():
    logs = []
    payload = _hook_payload()

    def reparse(raw: bytes) -> dict:
        return onion_json(raw, decode_hop_payload(raw), True)

    s = HtlcAcceptedSession(payload, lambda lvl, m: logs.append(m), reparse)
    new_payload = bytes.fromhex("0203" + "07a120") + bytes.fromhex("0401" + "77")
    assert s.on_result(None, {"result": "continue", "payload": new_payload.hex(), "invoice_msat": "500000msat",
                              "forward_to": "22" * 32, "extra_tlvs": "fd0101"}) is True
    seen = s.params_for(None)
    assert seen["onion"]["forward_msat"] == 500000 and seen["onion"]["payload"] == "08" + new_payload.hex()
    assert seen["forward_to"] == "22" * 32 and seen["htlc"]["extra_tlvs"] == "fd0101"
    assert s.replacements["invoice_msat"] == 500000
    # fail: failure_onion wins over failure_message.
    assert s.on_result(None, {"result": "fail", "failure_message": "2002", "failure_onion": "ab" * 10}) is False
    assert s.result == "fail" and s.failure_onion == b"\xab" * 10 and s.failure_message is None


def test_htlc_accepted_resolve_and_bad_answers():
    s = HtlcAcceptedSession(_hook_payload(), lambda lvl, m: None)
    assert s.on_result(None, {"result": "resolve", "payment_key": PREIMAGE.hex()}) is False
    assert s.result == "resolve" and s.payment_key == PREIMAGE
    for bad in ({"result": "resolve"}, {"result": "fail"}, {"result": "bogus"}, "continue",
                {"result": "continue", "payload": "zz"}):
        s = HtlcAcceptedSession(_hook_payload(), lambda lvl, m: None)
        assert s.on_result(None, bad) is False
        assert s.result == "fail" and s.failure_message == b"\x20\x02"
    # hook-timeout's named answer for htlc_accepted is a valid fail.
    _, ht = parse_hook_timeout("htlc_accepted:5:fail")
    s = HtlcAcceptedSession(_hook_payload(), lambda lvl, m: None)
    assert s.on_result(None, ht.answer) is False and s.failure_message == b"\x20\x02"


def test_invoice_payment_session():
    s = InvoicePaymentSession({"payment": {}}, lambda lvl, m: None)
    assert s.on_result(None, {"result": "continue"}) is True and s.outcome() is None
    assert s.on_result(None, {"result": "reject"}) is False and s.outcome() == b""
    s = InvoicePaymentSession({}, lambda lvl, m: None)
    assert s.on_result(None, {"failure_message": "2002"}) is False and s.outcome() == b"\x20\x02"
    s = InvoicePaymentSession({}, lambda lvl, m: None)
    assert s.on_result(None, {"result": "maybe"}) is False and s.outcome() == b""


# ---- final-hop checks -------------------------------------------------------------------------------------

def _inc(amount=1000, cltv=140) -> IncomingHtlc:
    return IncomingHtlc(b"\x00" * 32, 0, amount, HASH, cltv, b"")


def test_final_hop_checks():
    from ampere.ln.onion_payload import HopPayload
    from ampere.primitives.amount import Msat

    pl = HopPayload(amt_to_forward=Msat(1000), outgoing_cltv_value=140)
    assert final_hop_failure(_inc(), pl, 100, 18) is None
    assert final_hop_failure(_inc(amount=999), pl, 100, 18)[:2] == b"\x00\x13"   # final_incorrect_htlc_amount
    assert final_hop_failure(_inc(cltv=139), pl, 100, 18)[:2] == b"\x00\x12"     # final_incorrect_cltv_expiry
    pl2 = HopPayload(amt_to_forward=Msat(1000), outgoing_cltv_value=110)
    assert final_hop_failure(_inc(cltv=110), pl2, 100, 18)[:2] == b"\x40\x0f"    # too near the present


def test_invoice_checks():
    rec = types.SimpleNamespace(status=lambda now=None: "unpaid", payment_secret=SECRET, amount_msat=1000,
                                min_final_cltv_expiry=18)
    inc = _inc()
    assert invoice_failure(None, inc, 1000, SECRET, None, 100, 0) == "unknown payment_hash"
    assert invoice_failure(rec, inc, 1000, SECRET, None, 100, 0) is None
    assert "mismatch" in invoice_failure(rec, inc, 1000, b"\x00" * 32, None, 100, 0)
    assert "missing" in invoice_failure(rec, inc, 1000, None, None, 100, 0)
    assert "below" in invoice_failure(rec, inc, 999, SECRET, None, 100, 0)
    assert "twice" in invoice_failure(rec, inc, 2001, SECRET, None, 100, 0)
    assert invoice_failure(rec, inc, 600, SECRET, 500, 100, 0) is None       # invoice_msat override
    assert "cltv" in invoice_failure(rec, _inc(cltv=117), 1000, SECRET, None, 100, 0)
    expired = types.SimpleNamespace(**{**rec.__dict__, "status": lambda now=None: "expired"})
    assert invoice_failure(expired, inc, 1000, SECRET, None, 100, 0) == "invoice is expired"
