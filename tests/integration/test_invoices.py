"""The invoice RPCs (and createonion) on a real ampd, through pyln-client: every result is checked
against CLN's schema of the same name by the validating RPC; errors carry CLN's codes."""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import bolt11 as bolt11_pkg
import pytest
from coincurve import PrivateKey
from pyln.client import RpcError

from ampere.ln import invoice as b11
from ampere.primitives.script import p2pkh, p2wpkh, script_to_address
from ampere.testing.schema import ClnValidator, load_schema

PLUGINS = os.path.join(os.path.dirname(__file__), "..", "plugins")
VECTORS = os.path.join(os.path.dirname(__file__), "..", "vectors", "bolt04")


@pytest.fixture(scope="module")
def l1(request):
    import tempfile

    from ampere.testing.nodes import NodeFactory

    factory = NodeFactory(tempfile.mkdtemp(prefix="amp-inv-"))
    request.addfinalizer(factory.cleanup)
    return factory.get_node(plugin=os.path.join(PLUGINS, "listener.py"))


def err(excinfo) -> dict:
    return excinfo.value.error


def count(node) -> int:
    return len(node.rpc.listinvoices()["invoices"])


def regtest_address() -> str:
    return script_to_address(p2wpkh(os.urandom(20)), "regtest")


def test_invoice_decode_and_list(l1):
    before = int(time.time())
    inv = l1.rpc.invoice(123000, "basic", "a cup of coffee", 3700, cltv=99)
    assert inv["warning_capacity"]  # no channels, as CLN says
    d = l1.rpc.decode(inv["bolt11"])
    assert d["type"] == "bolt11 invoice" and d["currency"] == "bcrt" and d["valid"] is True
    assert d["amount_msat"] == 123000 and d["description"] == "a cup of coffee"
    assert d["expiry"] == 3700 and d["min_final_cltv_expiry"] == 99
    assert before <= d["created_at"] <= int(time.time())
    assert d["payee"] == l1.rpc.getinfo()["id"]
    assert d["payment_hash"] == inv["payment_hash"] and d["payment_secret"] == inv["payment_secret"]
    assert d["features"] == "024100"  # var_onion_optin, payment_secret, basic_mpp: as CLN's invoices
    assert inv["expires_at"] == d["created_at"] + 3700
    [listed] = l1.rpc.listinvoices("basic")["invoices"]
    assert listed == {"label": "basic", "bolt11": inv["bolt11"], "payment_hash": inv["payment_hash"],
                      "amount_msat": 123000, "status": "unpaid", "description": "a cup of coffee",
                      "expires_at": inv["expires_at"], "created_index": inv["created_index"]}
    # Default expiry is CLN's week; default cltv is the cltv-final option (18).
    d2 = l1.rpc.decode(l1.rpc.invoice("1sat", "defaults", "x")["bolt11"])
    assert d2["expiry"] == 604800 and d2["min_final_cltv_expiry"] == 18 and d2["amount_msat"] == 1000


def test_invoice_creation_notification(l1):
    inv = l1.rpc.invoice("2000msat", "notified", "n", preimage="ab" * 32)
    assert inv["payment_hash"] == hashlib.sha256(bytes.fromhex("ab" * 32)).hexdigest()
    schema = load_schema(os.path.join("notification", "invoice_creation"), "response")
    deadline = time.time() + 10
    while time.time() < deadline:
        got = [s["invoice_creation"] for s in l1.rpc.call("seen")["received"] if "invoice_creation" in s]
        got = [g for g in got if g["label"] == "notified"]
        if got:
            break
        time.sleep(0.05)
    assert got == [{"msat": 2000, "preimage": "ab" * 32, "label": "notified"}]
    ClnValidator(schema).validate(got[0])


def test_duplicate_label_and_preimage(l1):
    l1.rpc.invoice(1000, "dup", "first")
    n = count(l1)
    with pytest.raises(RpcError) as e:
        l1.rpc.invoice(2000, "dup", "second")
    assert err(e)["code"] == 900 and err(e)["message"] == "Duplicate label 'dup'"
    # Numbers are labels too, taken as their text.
    l1.rpc.invoice(1000, 77, "numeric")
    with pytest.raises(RpcError) as e:
        l1.rpc.invoice(1000, "77", "same label as text")
    assert err(e)["code"] == 900
    pre = os.urandom(32).hex()
    l1.rpc.invoice(1000, "pre1", "x", preimage=pre)
    with pytest.raises(RpcError) as e:
        l1.rpc.invoice(1000, "pre2", "x", preimage=pre)
    assert err(e) == {"code": 901, "message": "preimage already used"}
    assert count(l1) == n + 2
    assert [i["description"] for i in l1.rpc.listinvoices("dup")["invoices"]] == ["first"]


@pytest.mark.parametrize("amount", ["0.5msat", "-1", "abc", 0, "0sat", "0.00000000btc", 1.5, "1.5sat1"])
def test_bad_amounts_change_nothing(l1, amount):
    n = count(l1)
    with pytest.raises(RpcError) as e:
        l1.rpc.invoice(amount, f"bad-{amount}", "x")
    assert err(e)["code"] == -32602
    assert err(e)["message"].startswith("amount_msat: should be positive msat or 'any': invalid token")
    assert count(l1) == n


def test_other_bad_params(l1):
    n = count(l1)
    cases = [
        ({"amount_msat": 1, "label": "x" * 129, "description": "d"}, "Label '" + "x" * 129 + "' over 128 bytes"),
        ({"amount_msat": 1, "label": "long", "description": "d" * 640},
         "Description greater than 639 bytes invalid (description length 640)"),
        ({"amount_msat": 1, "label": "p", "description": "d", "preimage": "00" * 31}, "preimage: should be 64 hex"),
        ({"amount_msat": 1, "label": "c", "description": "d", "cltv": -1}, "cltv: "),
        ({"amount_msat": 1, "label": "e", "description": "d", "expiry": "soon"}, "expiry: "),
        ({"amount_msat": 1, "label": "h", "description": "d", "exposeprivatechannels": "nope"},
         "exposeprivatechannels: should be a short channel id"),
        ({"amount_msat": 1, "label": True, "description": "d"}, "label: should be a string or number"),
        ({"amount_msat": 1, "label": "f", "description": "d", "fallbacks": "notalist"}, "fallbacks: "),
    ]
    for params, message in cases:
        with pytest.raises(RpcError) as e:
            l1.rpc.call("invoice", params)
        assert err(e)["code"] == -32602, params
        assert message in err(e)["message"], (params, err(e))
    assert count(l1) == n


def test_any_amount(l1):
    inv = l1.rpc.invoice("any", "anyamount", "pay what you like")
    assert inv["bolt11"].startswith("lnbcrt1") and inv["bolt11"].count("1") == 1  # no amount in the hrp
    assert "amount_msat" not in l1.rpc.decode(inv["bolt11"])
    [listed] = l1.rpc.listinvoices("anyamount")["invoices"]
    assert "amount_msat" not in listed


def test_fallbacks(l1):
    a1 = regtest_address()
    a2 = script_to_address(p2pkh(os.urandom(20)), "regtest")
    inv = l1.rpc.invoice(1000, "fb", "fallbacks", fallbacks=[a1, a2])
    d = l1.rpc.decode(inv["bolt11"])
    assert [(f["type"], f["addr"]) for f in d["fallbacks"]] == [("P2WPKH", a1), ("P2PKH", a2)]
    n = count(l1)
    mainnet = script_to_address(p2wpkh(os.urandom(20)), "bitcoin")
    for addr, message in [(mainnet, "Fallback address does not match our network regtest"),
                          ("bcrt1qnotanaddress", "Fallback address not valid")]:
        with pytest.raises(RpcError) as e:
            l1.rpc.invoice(1000, "fb-bad", "x", fallbacks=[a1, addr])
        assert err(e) == {"code": -1, "message": message}
    assert count(l1) == n


def test_deschashonly_and_desconly(l1):
    desc = "One piece of chocolate cake, " * 30  # longer than a `d` field can hold
    inv = l1.rpc.invoice(42, "dh", desc, deschashonly=True)
    d = l1.rpc.decode(inv["bolt11"])
    assert "description" not in d and d["description_hash"] == hashlib.sha256(desc.encode()).hexdigest()
    [listed] = l1.rpc.listinvoices("dh")["invoices"]
    assert listed["description"] == desc  # kept locally, as CLN does
    r = l1.rpc.delinvoice("dh", "unpaid", desconly=True)
    assert "description" not in r and r["updated_index"] >= 1
    assert "description" not in l1.rpc.listinvoices("dh")["invoices"][0]
    with pytest.raises(RpcError) as e:
        l1.rpc.delinvoice("dh", "unpaid", desconly=True)
    assert err(e)["code"] == 908
    # The CLN example: the hash of the chocolate-cake description lands in the invoice.
    cake = ("One piece of chocolate cake, one icecream cone, one pickle, one slice of swiss cheese, one slice of "
            "salami, one lollypop, one piece of cherry pie, one sausage, one cupcake, and one slice of watermelon")
    assert "8yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqs" in \
        l1.rpc.invoice(42, "cake", cake, deschashonly=True)["bolt11"]


def test_exposeprivatechannels(l1):
    assert l1.rpc.invoice(1000, "expose-true", "x", exposeprivatechannels=True)["bolt11"]
    assert l1.rpc.invoice(1000, "expose-false", "x", exposeprivatechannels=False)["bolt11"]
    n = count(l1)
    for hint in ("103x1x0", ["103x1x0", "104x2x1"]):
        with pytest.raises(RpcError) as e:
            l1.rpc.invoice(1000, "expose-scid", "x", exposeprivatechannels=hint)
        assert err(e)["code"] == 902  # no local channel can be hinted yet
    assert count(l1) == n


def test_listinvoices_filters_and_indexes(node_factory):
    l2 = node_factory.get_node()
    invs = [l2.rpc.invoice(i, str(i), "idx") for i in range(1, 11)]
    assert [i["label"] for i in l2.rpc.listinvoices()["invoices"]] == [str(i) for i in range(1, 11)]
    for i, inv in enumerate(invs, 1):
        for q in ({"label": str(i)}, {"label": i}, {"payment_hash": inv["payment_hash"]},
                  {"invstring": inv["bolt11"]}):
            [got] = l2.rpc.listinvoices(**q)["invoices"]
            assert got["bolt11"] == inv["bolt11"]
    assert l2.rpc.listinvoices(label="nope")["invoices"] == []
    assert l2.rpc.listinvoices(payment_hash="aa" * 32)["invoices"] == []
    assert l2.rpc.listinvoices(offer_id="aa" * 32)["invoices"] == []
    created = l2.rpc.listinvoices(index="created", start=3, limit=4)["invoices"]
    assert [i["label"] for i in created] == ["3", "4", "5", "6"]
    assert l2.rpc.listinvoices(index="created", start=11) == {"invoices": []}
    # Updates: drop descriptions of 7 then 2; they come last in the updated index, in that order.
    l2.rpc.delinvoice("7", "unpaid", desconly=True)
    l2.rpc.delinvoice("2", "unpaid", desconly=True)
    upd = l2.rpc.listinvoices(index="updated", start=1)["invoices"]
    assert [(i["label"], i["updated_index"]) for i in upd] == [("7", 1), ("2", 2)]
    assert [i["label"] for i in l2.rpc.listinvoices(index="updated", start=2, limit=1)["invoices"]] == ["2"]
    assert len(l2.rpc.listinvoices(index="updated")["invoices"]) == 10
    bad = [({"label": "1", "payment_hash": invs[0]["payment_hash"]},
            "Can only specify one of {label}, {invstring}, {payment_hash} or {offer_id}"),
           ({"invstring": invs[0]["bolt11"], "label": "1"}, "Can only specify one of"),
           ({"start": 2}, "Can only specify {start} with {index}"),
           ({"limit": 2}, "Can only specify {limit} with {index}"),
           ({"index": "sideways"}, "index: "),
           ({"invstring": "lnbcrt1garbage"}, "Invalid invstring")]
    for q, message in bad:
        with pytest.raises(RpcError) as e:
            l2.rpc.listinvoices(**q)
        assert err(e)["code"] == -32602 and message in err(e)["message"], (q, err(e))


def test_delinvoice(l1):
    l1.rpc.invoice(1000, "del", "x")
    with pytest.raises(RpcError) as e:
        l1.rpc.delinvoice("del", "paid")
    assert err(e) == {"code": 906, "message": "Invoice status is unpaid not paid",
                      "data": {"current_status": "unpaid", "expected_status": "paid"}}
    with pytest.raises(RpcError) as e:
        l1.rpc.delinvoice("del", "expired")
    assert err(e)["code"] == 906
    assert l1.rpc.listinvoices("del")["invoices"]
    r = l1.rpc.delinvoice("del", "unpaid")
    assert r["label"] == "del" and r["status"] == "unpaid"
    assert l1.rpc.listinvoices("del")["invoices"] == []
    with pytest.raises(RpcError) as e:
        l1.rpc.delinvoice("del", "unpaid")
    assert err(e) == {"code": 905, "message": "Unknown invoice"}


def test_waitanyinvoice_timeout(l1):
    with pytest.raises(RpcError) as e:
        l1.rpc.waitanyinvoice(0, 0)
    assert err(e) == {"code": 904, "message": "Timed out while waiting for invoice to be paid"}
    start = time.time()
    with pytest.raises(RpcError) as e:
        l1.rpc.waitanyinvoice(timeout=1)
    assert err(e)["code"] == 904 and 0.9 <= time.time() - start < 5
    with pytest.raises(RpcError) as e:
        l1.rpc.call("waitanyinvoice", {"lastpay_index": "non-number"})
    assert err(e)["code"] == -32602


def test_waitinvoice_expires_during_wait(l1):
    l1.rpc.invoice(1000, "short", "x", expiry=2)
    l1.rpc.invoice(1000, "long", "x")
    with ThreadPoolExecutor(2) as pool:
        short = pool.submit(l1.rpc.waitinvoice, "short")
        long_ = pool.submit(l1.rpc.waitinvoice, "long")
        time.sleep(0.5)
        assert not short.done()
        with pytest.raises(RpcError) as e:
            short.result(timeout=10)
        assert not long_.done()  # another invoice's expiry does not wake it
        l1.rpc.delinvoice("long", "unpaid")
        with pytest.raises(RpcError) as e2:
            long_.result(timeout=10)
    assert err(e)["code"] == 903 and err(e)["message"] == "invoice expired during wait"
    assert err(e)["data"]["label"] == "short" and err(e)["data"]["status"] == "expired"
    assert err(e2) == {"code": -1, "message": "Invoice deleted during wait"}
    [listed] = l1.rpc.listinvoices("short")["invoices"]
    assert listed["status"] == "expired" and listed["updated_index"] >= 1
    # Already expired: at once.  Unknown label: -1.
    with pytest.raises(RpcError) as e:
        l1.rpc.waitinvoice("short")
    assert err(e)["code"] == 903
    with pytest.raises(RpcError) as e:
        l1.rpc.waitinvoice("no-such-label")
    assert err(e) == {"code": -1, "message": "Label not found"}
    with pytest.raises(RpcError) as e:
        l1.rpc.delinvoice("short", "unpaid")
    assert err(e)["message"] == "Invoice status is expired not unpaid"
    l1.rpc.delinvoice("short", "expired")


def test_invoices_survive_restart(node_factory):
    l2 = node_factory.get_node()
    a = l2.rpc.invoice(5000, "keep", "kept", preimage="cd" * 32)
    b = l2.rpc.invoice("any", "keep2", "kept too")
    l2.rpc.delinvoice("keep2", "unpaid", desconly=True)
    before = l2.rpc.listinvoices()["invoices"]
    l2.restart()
    assert l2.rpc.listinvoices()["invoices"] == before
    with pytest.raises(RpcError) as e:
        l2.rpc.invoice(1, "keep", "again")
    assert err(e)["code"] == 900
    with pytest.raises(RpcError) as e:
        l2.rpc.invoice(1, "other", "same preimage", preimage="cd" * 32)
    assert err(e)["code"] == 901
    c = l2.rpc.invoice(1, "after", "x")
    assert c["created_index"] == b["created_index"] + 1 == a["created_index"] + 2
    # The updated index carries on too.
    assert l2.rpc.delinvoice("after", "unpaid", desconly=True)["updated_index"] == 2
    # And the node is still the payee of what it signed before the restart.
    assert l2.rpc.decode(a["bolt11"])["payee"] == l2.rpc.getinfo()["id"]


@pytest.mark.parametrize("text,fragment", [
    ("", "string: "),
    ("hello", "string: bad bech32 string"),
    ("lnbcrt1qqqqqqqq", "string: "),
    ("lno1pg", "string: offer: "),
    ("lnr1qqqq", "string: invoice_request lacks invreq_payer_id"),
    ("lnp1qqqq", "string: lnp strings are not supported"),
])
def test_decode_bad_strings(l1, text, fragment):
    with pytest.raises(RpcError) as e:
        l1.rpc.decode(text)
    assert err(e)["code"] == -32602 and fragment in err(e)["message"]
    assert "invalid token" in err(e)["message"]


def test_decode_offer_breaking_a_reader_rule(l1):
    """CLN shows an offer that parses but that no one may answer with `valid: false` and a warning."""
    dec = l1.rpc.decode("lno1qgsqvgnwgcg35z6ee2h3yczraddm72xrfua9uve2rlrm9deu7xyfzrc")
    assert dec["type"] == "bolt12 offer" and dec["valid"] is False
    assert "offer_issuer_id" in dec["warning_missing_offer_issuer_id"]


def test_decode_bad_checksum_and_signature(l1):
    good = l1.rpc.invoice(1000, "tamper", "x")["bolt11"]
    flipped = good[:-7] + ("q" if good[-7] != "q" else "p") + good[-6:]
    with pytest.raises(RpcError) as e:
        l1.rpc.decode(flipped)
    assert err(e)["code"] == -32602 and "checksum" in err(e)["message"]
    # A foreign network's invoice decodes (CLN's decode takes any chain).
    other = b11.encode(b11.Invoice(currency="bc", timestamp=1700000000, payment_hash=b"\1" * 32,
                                   payment_secret=b"\2" * 32, description="mainnet"), PrivateKey())
    assert l1.rpc.decode("lightning:" + other)["currency"] == "bc"


def _same_as_bolt11_package(ours: dict, text: str) -> None:
    """The fields both decoders have, read independently by the PyPI `bolt11` package."""
    theirs = bolt11_pkg.decode(text)
    assert theirs.currency == ours["currency"]
    assert theirs.amount_msat == ours.get("amount_msat")
    assert theirs.date == ours["created_at"]
    assert theirs.payment_hash == ours["payment_hash"]
    assert theirs.payment_secret == ours["payment_secret"]
    assert theirs.description == ours.get("description")
    assert theirs.description_hash == ours.get("description_hash")
    assert theirs.expiry == ours["expiry"]
    assert theirs.min_final_cltv_expiry == ours["min_final_cltv_expiry"]
    assert theirs.payee == ours["payee"]
    bits = 0
    for feature, state in theirs.features.feature_list.items():
        bits |= 1 << (feature.value * 2 + (state.value == 1))
    assert bits == int(ours["features"], 16)
    if "fallbacks" in ours:
        # The package keeps only the first fallback; compare its witness version and program.
        prog = theirs.fallback.data[5:]
        assert prog.tobytes()[: len(prog) // 8].hex() == ours["fallbacks"][0]["hex"][4:]


def test_decode_agrees_with_bolt11_package(l1):
    texts = [
        l1.rpc.invoice(123456789, "pkg1", "coffee ☕ and cake", 99, cltv=40)["bolt11"],
        l1.rpc.invoice("any", "pkg2", "anything")["bolt11"],
        l1.rpc.invoice("0.0001btc", "pkg3", "hash only", deschashonly=True)["bolt11"],
        l1.rpc.invoice(1, "pkg4", "fallback", fallbacks=[regtest_address()])["bolt11"],
    ]
    for text in texts:
        _same_as_bolt11_package(l1.rpc.decode(text), text)


def _foreign_invoice(**kw) -> tuple[str, bytes]:
    preimage = os.urandom(32)
    fields = dict(currency="bcrt", timestamp=int(time.time()), payment_hash=hashlib.sha256(preimage).digest(),
                  payment_secret=os.urandom(32), amount_msat=50_000, description="made elsewhere", expiry=600,
                  features=0x024100)
    fields.update(kw)
    return b11.encode(b11.Invoice(**fields), PrivateKey()), preimage


def test_createinvoice(l1):
    text, preimage = _foreign_invoice()
    n = count(l1)
    with pytest.raises(RpcError) as e:
        l1.rpc.createinvoice(text, "ci", os.urandom(32).hex())
    assert err(e) == {"code": -32602, "message": "Incorrect preimage"}
    assert count(l1) == n
    r = l1.rpc.createinvoice(text, "ci", preimage.hex())
    assert r["label"] == "ci" and r["status"] == "unpaid" and r["amount_msat"] == 50_000
    assert r["description"] == "made elsewhere"
    assert r["payment_hash"] == hashlib.sha256(preimage).hexdigest()
    d = l1.rpc.decode(r["bolt11"])
    assert d["payee"] == l1.rpc.getinfo()["id"] and d["expiry"] == 600
    [listed] = l1.rpc.listinvoices("ci")["invoices"]
    assert listed["bolt11"] == r["bolt11"] and listed["expires_at"] == d["created_at"] + 600
    text2, preimage2 = _foreign_invoice()
    with pytest.raises(RpcError) as e:
        l1.rpc.createinvoice(text2, "ci", preimage2.hex())
    assert err(e)["code"] == 900 and err(e)["message"] == "Duplicate label"
    assert err(e)["data"]["bolt11"] == r["bolt11"]  # the clashing invoice, as CLN
    hashed, preimage3 = _foreign_invoice(description=None, description_hash=b"\5" * 32)
    with pytest.raises(RpcError) as e:
        l1.rpc.createinvoice(hashed, "ci-h", preimage3.hex())
    assert err(e) == {"code": -32602, "message": "Missing description in invoice"}
    mainnet, preimage4 = _foreign_invoice(currency="bc")
    with pytest.raises(RpcError) as e:
        l1.rpc.createinvoice(mainnet, "ci-m", preimage4.hex())
    assert err(e)["code"] == -32602 and err(e)["message"].startswith("Unparsable invoice")
    assert count(l1) == n + 1


def test_signinvoice_stores_nothing(l1):
    text, _ = _foreign_invoice()
    n = count(l1)
    signed = l1.rpc.signinvoice(text)["bolt11"]
    assert signed != text
    assert l1.rpc.decode(signed)["payee"] == l1.rpc.getinfo()["id"]
    # The caller's fields are kept, only the signature changes.
    assert l1.rpc.decode(signed)["payment_hash"] == l1.rpc.decode(text)["payment_hash"]
    assert count(l1) == n
    with pytest.raises(RpcError) as e:
        l1.rpc.signinvoice("lnbcrt1notaninvoice")
    assert err(e)["code"] == -32602 and err(e)["message"].startswith("Unparsable invoice")


def test_check_invoice_changes_nothing(l1):
    n = count(l1)
    assert l1.rpc.check("invoice", amount_msat=1000, label="checked", description="x") == \
        {"command_to_check": "invoice"}
    with pytest.raises(RpcError) as e:
        l1.rpc.check("invoice", amount_msat=1000, label="checked", description="x",
                     fallbacks=[script_to_address(p2wpkh(b"\1" * 20), "bitcoin")])
    assert err(e)["code"] == -1
    text, preimage = _foreign_invoice()
    l1.rpc.check("createinvoice", invstring=text, label="checked2", preimage=preimage.hex())
    l1.rpc.invoice(1, "to-keep", "x")
    l1.rpc.check("delinvoice", label="to-keep", status="unpaid")
    assert count(l1) == n + 1


def test_createonion_matches_bolt04_vector(l1):
    with open(os.path.join(VECTORS, "onion-test.json")) as f:
        vec = json.load(f)
    gen = vec["generate"]
    r = l1.rpc.createonion(hops=gen["hops"], assocdata=gen["associated_data"], session_key=gen["session_key"])
    assert r["onion"] == vec["onion"]
    assert len(r["shared_secrets"]) == len(gen["hops"])
    # Without a session key: a fresh one, so a different onion of the same size.
    r2 = l1.rpc.createonion(hops=gen["hops"], assocdata=gen["associated_data"])
    assert len(r2["onion"]) == len(vec["onion"]) and r2["onion"] != vec["onion"]
    small = l1.rpc.createonion(hops=gen["hops"][:1], assocdata="00", onion_size=400)
    assert len(bytes.fromhex(small["onion"])) == 66 + 400
    hop = gen["hops"][0]
    bad = [({"hops": [], "assocdata": "00"}, "At least one hop must be specified."),
           ({"hops": [{"payload": hop["payload"]}], "assocdata": "00"}, "Hop 0 does not have a pubkey"),
           ({"hops": [{"pubkey": "02" + "00" * 32, "payload": hop["payload"]}], "assocdata": "00"}, "pubkey"),
           ({"hops": [{"pubkey": hop["pubkey"], "payload": "zz"}], "assocdata": "00"}, "payload should be hex"),
           ({"hops": [{"pubkey": hop["pubkey"], "payload": "05" + hop["payload"][2:]}], "assocdata": "00"},
            "hops[0] payload is not prefixed with length!"),
           ({"hops": gen["hops"], "assocdata": "00", "onion_size": 100}, "Payloads exceed maximum onion packet size."),
           ({"hops": gen["hops"], "assocdata": "00", "session_key": "00" * 31}, "session_key: ")]
    for params, message in bad:
        with pytest.raises(RpcError) as e:
            l1.rpc.call("createonion", params)
        assert err(e)["code"] == -32602 and message in err(e)["message"], (params, err(e))
