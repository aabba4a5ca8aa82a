"""The seeds' systems end to end, on real ampd nodes following amp-chaind: the example plugins of
contrib/plugins/ (written with the unmodified pyln-client) and docs/tutorial.md.

    000  approver.py: handle_<kind> scripts accept, reject or resolve incoming HTLCs; bounded, timed out
    001  docs/tutorial.md; webinvoice.py (Flask); reveal.py + getword.py (pay-to-reveal); holdinvoice.py
    002  pay-up-to.py exactly as the seed; pay-limit.py, the robust version
    003  listpartialinvoices: the parts of an incomplete multi-part payment
    004  rendezvous.py: the poor man's rendez-vous over three payees, a middle one restarted mid-flow
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
import textwrap
import time
import urllib.request

import pytest
from pyln.client import RpcError

from ampere.testing.nodes import free_port, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTRIB = os.path.join(ROOT, "contrib", "plugins")
FUND = 1_000_000  # sat per channel
DELAY = 30  # relative CLTV of a final hop we route to by hand (above cltv-final and an invoice's 18)

# BOLT #4 failure codes as waitsendpay reports them.
TEMPORARY_NODE_FAILURE = 0x2002
INCORRECT_OR_UNKNOWN = 0x400F


def plugin(name: str) -> str:
    return os.path.join(CONTRIB, name)


def to_us(node, peer) -> int:
    return node.rpc.listpeerchannels(peer.node_id)["channels"][0]["to_us_msat"]


def route(dest, amount_msat: int) -> list[dict]:
    scid = dest.rpc.listpeerchannels()["channels"][0]["short_channel_id"]
    return [{"id": dest.node_id, "channel": scid, "delay": DELAY, "amount_msat": amount_msat}]


def sendpay(src, dest, inv: dict, part_msat: int, **kw) -> dict:
    return src.rpc.sendpay(route(dest, part_msat), inv["payment_hash"], payment_secret=inv["payment_secret"], **kw)


def fails_with(src, payment_hash: str, failcode: int, timeout: int = 30) -> dict:
    with pytest.raises(RpcError) as e:
        src.rpc.waitsendpay(payment_hash, timeout)
    assert e.value.error["data"]["failcode"] == failcode, e.value.error
    return e.value.error


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode().strip()


def wait_http(url: str) -> str:
    def attempt():
        try:
            return http_get(url)
        except OSError:
            return None
    return wait_for(attempt, 20, f"a web server at {url}")


def executable(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip())
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


# ---- tlv helpers for onions we build by hand (seed 000: data for the recipient in the onion) ------
def bigsize(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "big")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "big")
    return b"\xff" + n.to_bytes(8, "big")


def tu(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def final_payload(amount_msat: int, cltv: int, custom: dict[int, bytes]) -> str:
    """A final hop's TLV payload, length-prefixed (createonion's format): amt_to_forward, outgoing_cltv_value
    and custom records (BOLT #1: types >= 65536 are for experiments and applications)."""
    records = {2: tu(amount_msat), 4: tu(cltv), **custom}
    body = b"".join(bigsize(t) + bigsize(len(v)) + v for t, v in sorted(records.items()))
    return (bigsize(len(body)) + body).hex()


def send_custom(src, dest, payment_hash: str, amount_msat: int, custom: dict[int, bytes]) -> None:
    height = src.rpc.getinfo()["blockheight"]
    hop = {"pubkey": dest.node_id, "payload": final_payload(amount_msat, height + DELAY, custom)}
    onion = src.rpc.createonion([hop], payment_hash)
    src.rpc.sendonion(onion["onion"], {"id": dest.node_id, "amount_msat": amount_msat, "delay": DELAY},
                      payment_hash, shared_secrets=onion["shared_secrets"])


# ---- seed 000 -------------------------------------------------------------------------------------
def test_seed000_approver(node_factory_chain, tmp_path):
    scripts = tmp_path / "approver"
    scripts.mkdir()
    log = tmp_path / "calls.log"
    stock = tmp_path / "widgets"
    stock.write_text("1")
    preimages = tmp_path / "preimages.json"
    # Widgets: accept while in stock (and take one), then refuse: "we're out of widgets".
    executable(scripts / "handle_widget", f"""
        #!/usr/bin/env python3
        import json, sys
        req = json.load(sys.stdin)
        with open({str(log)!r}, "a") as f:
            f.write(json.dumps(req) + "\\n")
        left = int(open({str(stock)!r}).read())
        if left > 0:
            open({str(stock)!r}, "w").write(str(left - 1))
            print("accept")
        else:
            print("reject")
        """)
    # Seed 000's application payment: no invoice in the node, data in the onion, the script knows the preimage.
    executable(scripts / "handle_tlv_65537", f"""
        #!/usr/bin/env python3
        import json, sys
        req = json.load(sys.stdin)
        order = bytes.fromhex(req["tlvs"]["65537"]).decode()
        known = json.load(open({str(preimages)!r}))
        if order in known:
            print(json.dumps({{"result": "resolve", "preimage": known[order]}}))
        else:
            print("reject")
        """)
    executable(scripts / "handle_tlv_65539", "#!/bin/sh\nsleep 60\necho accept\n")   # hangs
    executable(scripts / "handle_tlv_65541", "#!/bin/sh\necho oops >&2\nexit 3\n")   # crashes
    opts = {"plugin": plugin("approver.py"), "approver-dir": str(scripts), "approver-rule": "widget:label=widget",
            "approver-timeout": 6, "approver-max-concurrent": 2, "approver-max-queued": 1}
    l1, l2 = node_factory_chain.line_graph(2, FUND, opts=[{}, opts])

    # A widget in stock: accepted, the invoice is paid; the script saw the HTLC and the invoice.
    w1 = l2.rpc.invoice(20_000, "widget-1", "a widget")
    sendpay(l1, l2, w1, 20_000)
    assert l1.rpc.waitsendpay(w1["payment_hash"], 30)["status"] == "complete"
    seen = json.loads(log.read_text().splitlines()[0])
    assert seen["kind"] == "widget" and seen["amount_msat"] == 20_000 and seen["payment_hash"] == w1["payment_hash"]
    assert seen["invoice"]["label"] == "widget-1" and seen["cltv_expiry"] > 0 and seen["payload"]
    # Out of widgets: refused with incorrect_or_unknown_payment_details, the invoice stays unpaid.
    w2 = l2.rpc.invoice(20_000, "widget-2", "another widget")
    sendpay(l1, l2, w2, 20_000)
    fails_with(l1, w2["payment_hash"], INCORRECT_OR_UNKNOWN)
    assert l2.rpc.listinvoices("widget-2")["invoices"][0]["status"] == "unpaid"

    # Resolved by the script with a preimage the node never knew, from data in the onion.
    preimage = secrets.token_bytes(32)
    phash = hashlib.sha256(preimage).hexdigest()
    preimages.write_text(json.dumps({"order-42": preimage.hex()}))
    send_custom(l1, l2, phash, 30_000, {65537: b"order-42"})
    done = l1.rpc.waitsendpay(phash, 30)
    assert done["status"] == "complete" and done["payment_preimage"] == preimage.hex()
    assert l2.rpc.listinvoices(payment_hash=phash)["invoices"] == []
    # An order it does not know: rejected.
    send_custom(l1, l2, hashlib.sha256(b"x").hexdigest(), 30_000, {65537: b"order-43"})
    fails_with(l1, hashlib.sha256(b"x").hexdigest(), INCORRECT_OR_UNKNOWN)

    # A crashing script: the configured failure (temporary_node_failure).
    send_custom(l1, l2, hashlib.sha256(b"crash").hexdigest(), 10_000, {65541: b""})
    fails_with(l1, hashlib.sha256(b"crash").hexdigest(), TEMPORARY_NODE_FAILURE)

    # Hanging scripts: two run, one waits for a slot, the fourth is refused at once (no process leak).
    hangs = [hashlib.sha256(b"hang%d" % i).hexdigest() for i in range(4)]
    for h in hangs[:3]:
        send_custom(l1, l2, h, 10_000, {65539: b""})
    wait_for(lambda: l2.rpc.approverstatus()["running"] == 2 and l2.rpc.approverstatus()["queued"] == 1, 15,
             "two scripts running, one queued")
    send_custom(l1, l2, hangs[3], 10_000, {65539: b""})
    fails_with(l1, hangs[3], TEMPORARY_NODE_FAILURE, timeout=10)
    # Meanwhile the node serves everything else: RPC, and a payment the approver has no script for.
    t0 = time.time()
    coffee = l2.rpc.invoice(5_000, "coffee", "not a widget")
    sendpay(l1, l2, coffee, 5_000)
    assert l1.rpc.waitsendpay(coffee["payment_hash"], 30)["status"] == "complete"
    assert time.time() - t0 < 4  # well before the hung scripts' approver-timeout
    status = l2.rpc.approverstatus()
    assert status["running"] == 2 and status["overloaded"] == 1
    # The hung scripts are killed after approver-timeout and their HTLCs failed as configured.
    for h in hangs[:3]:
        fails_with(l1, h, TEMPORARY_NODE_FAILURE, timeout=30)
    status = l2.rpc.approverstatus()
    assert status["running"] == 0 and status["queued"] == 0 and status["timeouts"] == 3 and status["crashes"] == 1
    wait_for(lambda: not l1.rpc.listpeerchannels()["channels"][0].get("htlcs"), 15, "no HTLC left in flight")


# ---- seed 001 -------------------------------------------------------------------------------------
def test_seed001_webinvoice_reveal_getword(node_factory_chain):
    web, shop = free_port(), free_port()
    l1, l2 = node_factory_chain.line_graph(2, FUND, opts=[
        {"plugin": plugin("getword.py")},
        {"plugin": [plugin("webinvoice.py"), plugin("reveal.py")], "webinvoice-port": web,
         "webinvoice-description": "Get a better description", "reveal-port": shop, "reveal-price": 24_000,
         "reveal-text": ["swordfish", "the eagle has landed", "x" * 24]}])

    # webinvoice: each GET / is a fresh invoice (unique random label) with the configured description.
    first = wait_http(f"http://127.0.0.1:{web}/")
    second = http_get(f"http://127.0.0.1:{web}/")
    assert first != second and first.startswith("lnbcrt")
    dec = l1.rpc.decode(first)
    assert dec["payee"] == l2.node_id and dec["description"] == "Get a better description"
    assert dec["amount_msat"] == 24
    labels = {i["label"] for i in l2.rpc.listinvoices()["invoices"] if i["bolt11"] in (first, second)}
    assert len(labels) == 2 and all(label.startswith("webinvoice-") for label in labels)

    # reveal: the preimage is 8 random bytes + 24 bytes of text; paying reveals the text.
    wait_http(f"http://127.0.0.1:{shop}/")
    got = l1.rpc.getword(f"http://127.0.0.1:{shop}/")
    assert got["word"] in ("swordfish", "the eagle has landed", "x" * 24)
    assert got["amount_msat"] == 24_000
    assert bytes.fromhex(got["payment_preimage"])[8:].rstrip(b"\0").decode() == got["word"]
    (inv,) = l2.rpc.listinvoices(invstring=got["bolt11"])["invoices"]
    assert inv["status"] == "paid" and inv["label"].startswith("reveal-")
    # By hand, over sendpay: the same text comes back in the preimage.
    manual = l2.rpc.revealinvoice()
    sendpay(l1, l2, manual, 24_000)
    pre = bytes.fromhex(l1.rpc.waitsendpay(manual["payment_hash"], 30)["payment_preimage"])
    assert pre[8:].rstrip(b"\0").decode() in ("swordfish", "the eagle has landed", "x" * 24)
    # getword refuses what is not sane: a price above the cap, a page that is no invoice.
    with pytest.raises(RpcError) as e:
        l1.rpc.getword(f"http://127.0.0.1:{shop}/", 1000)
    assert "more than" in e.value.error["message"]
    with pytest.raises(RpcError):
        l1.rpc.getword(f"http://127.0.0.1:{free_port()}/")
    # Only the two purchases were paid (getword's and the one by hand): the refused ones sent nothing.
    assert len([p for p in l1.rpc.listpays()["pays"] if p["status"] == "complete"]) == 2
    assert len(l1.rpc.listsendpays()["payments"]) == 2


def lookup(node, payment_hash: str) -> dict:
    return node.rpc.call("holdinvoice_lookup", [payment_hash])


def test_seed001_holdinvoice(node_factory_chain):
    l1, l2 = node_factory_chain.line_graph(2, FUND, opts=[{}, {"plugin": plugin("holdinvoice.py"),
                                                                "holdinvoice-cancel-blocks": DELAY - 2}])
    before = to_us(l1, l2)
    hold = l2.rpc.holdinvoice(50_000, "widget-order", "one widget, if we still have it")
    assert hold["state"] == "open"
    sendpay(l1, l2, hold, 50_000)
    wait_for(lambda: l2.rpc.call("holdinvoice_lookup", [hold["payment_hash"]])["state"] == "accepted", 15, "accepted")
    assert l2.rpc.listinvoices("widget-order")["invoices"][0]["status"] == "unpaid"
    with pytest.raises(RpcError) as e:
        l1.rpc.waitsendpay(hold["payment_hash"], 1)
    assert e.value.error["code"] == 200  # still in flight

    # Restart while held: the node replays htlc_accepted, the plugin holds it again (state from the datastore).
    l2.restart()
    wait_for(lambda: l2.rpc.call("holdinvoice_lookup", [hold["payment_hash"]])["htlcs"] == 1, 60, "held again")
    assert l2.rpc.call("holdinvoice_lookup", [hold["payment_hash"]])["state"] == "accepted"
    settled = l2.rpc.call("holdinvoice_settle", [hold["payment_hash"]])
    assert settled["state"] == "settled" and settled["htlcs"] == 1
    assert l1.rpc.waitsendpay(hold["payment_hash"], 60)["status"] == "complete"
    assert l2.rpc.listinvoices("widget-order")["invoices"][0]["status"] == "paid"

    # Out of widgets: cancel; the payer gets incorrect_or_unknown_payment_details, nothing moves.
    hold2 = l2.rpc.holdinvoice(40_000, "widget-order-2", "one more widget")
    with pytest.raises(RpcError):
        l2.rpc.call("holdinvoice_settle", [hold2["payment_hash"]])  # not paid yet
    sendpay(l1, l2, hold2, 40_000)
    wait_for(lambda: l2.rpc.call("holdinvoice_lookup", [hold2["payment_hash"]])["state"] == "accepted", 15, "accepted")
    assert l2.rpc.call("holdinvoice_cancel", [hold2["payment_hash"]])["htlcs"] == 1
    fails_with(l1, hold2["payment_hash"], INCORRECT_OR_UNKNOWN)
    assert l2.rpc.listinvoices("widget-order-2")["invoices"][0]["status"] == "unpaid"
    # A later attempt is refused at once.
    sendpay(l1, l2, hold2, 40_000)
    fails_with(l1, hold2["payment_hash"], INCORRECT_OR_UNKNOWN)
    # Held too long: when an HTLC comes within holdinvoice-cancel-blocks of its expiry, the plugin cancels by itself
    # (holding on would force the channel on-chain).
    hold3 = l2.rpc.holdinvoice(30_000, "widget-order-3", "a slow decision")
    sendpay(l1, l2, hold3, 30_000)
    wait_for(lambda: lookup(l2, hold3["payment_hash"])["state"] == "accepted", 15, "accepted")
    node_factory_chain.mine(4)
    fails_with(l1, hold3["payment_hash"], INCORRECT_OR_UNKNOWN)
    assert lookup(l2, hold3["payment_hash"])["state"] == "canceled"
    wait_for(lambda: to_us(l1, l2) == before - 50_000, 15, "only the settled payment spent")


# ---- seed 003 -------------------------------------------------------------------------------------
def test_seed003_listpartialinvoices(node_factory_chain):
    l1, l2 = node_factory_chain.line_graph(2, FUND)
    inv = l2.rpc.invoice(100_000, "mpp", "two parts")
    assert l2.rpc.listpartialinvoices()["partialinvoices"] == []
    t0 = int(time.time())
    sendpay(l1, l2, inv, 60_000, partid=1, groupid=7, amount_msat=100_000)
    (part,) = wait_for(lambda: l2.rpc.listpartialinvoices()["partialinvoices"], 15, "a held part")
    scid = l2.rpc.listpeerchannels()["channels"][0]["short_channel_id"]
    assert part["payment_hash"] == inv["payment_hash"] and part["total_amount_msat"] == 100_000
    assert part["partial_amount_msat"] == 60_000 and part["incoming_scid"] == scid
    assert t0 - 1 <= part["incoming_time_unix"] <= time.time() + 1
    assert l2.rpc.listpartialinvoices(inv["payment_hash"])["partialinvoices"] == [part]
    assert l2.rpc.listpartialinvoices("00" * 32)["partialinvoices"] == []
    assert l2.rpc.listinvoices("mpp")["invoices"][0]["status"] == "unpaid"
    # The sending side: listsendpays shows the part by partid and groupid, pending.
    (sent,) = l1.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"]
    assert (sent["partid"], sent["groupid"], sent["status"]) == (1, 7, "pending")

    sendpay(l1, l2, inv, 40_000, partid=2, groupid=7, amount_msat=100_000)
    for partid in (1, 2):
        assert l1.rpc.waitsendpay(inv["payment_hash"], 30, partid, 7)["status"] == "complete"
    assert l2.rpc.listpartialinvoices()["partialinvoices"] == []
    assert l2.rpc.listinvoices("mpp")["invoices"][0]["status"] == "paid"
    parts = sorted((p["partid"], p["groupid"], p["amount_msat"], p["status"])
                   for p in l1.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"])
    assert parts == [(1, 7, 60_000, "complete"), (2, 7, 40_000, "complete")]
    # Through amp-cli too, as the seed shows it.
    r = l2.cli("listpartialinvoices")
    assert r.returncode == 0 and json.loads(r.stdout) == {"partialinvoices": []}


# ---- seed 001: the tutorial -------------------------------------------------------------------------
TUTORIAL = os.path.join(ROOT, "docs", "tutorial.md")


def tutorial_blocks() -> list[str]:
    """The ```sh blocks of docs/tutorial.md, in order (the other blocks are not commands)."""
    blocks, current = [], None
    with open(TUTORIAL) as f:
        for line in f:
            if current is None and line.strip() == "```sh":
                current = []
            elif current is not None and line.strip() == "```":
                blocks.append("".join(current))
                current = None
            elif current is not None:
                current.append(line)
    return blocks


def test_seed001_tutorial():
    """Run the tutorial's commands exactly, with its paths and ports moved out of the way of parallel tests:
    /tmp/ -> a fresh directory, 18443 (chain RPC), 9735 (l1) and 8809 (web) -> free ports."""
    import subprocess
    import sys
    import tempfile

    base = tempfile.mkdtemp(prefix="amp-tut-")
    subst = {"/tmp/": base + "/", "18443": str(free_port()), "9735": str(free_port()), "8809": str(free_port())}
    blocks = tutorial_blocks()
    assert len(blocks) >= 10
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    marker = "@@block-done@@"
    script = ["set -eo pipefail", "shopt -s expand_aliases"]
    for i, block in enumerate(blocks):
        for old, new in subst.items():
            block = block.replace(old, new)
        script += [block, f"echo {marker}{i}"]
    try:
        proc = subprocess.run(["bash"], input="\n".join(script), capture_output=True, text=True, cwd=ROOT,
                              env=env, timeout=240)
        out = proc.stdout
        done = [i for i in range(len(blocks)) if f"{marker}{i}" in out]
        assert proc.returncode == 0 and done == list(range(len(blocks))), (
            f"tutorial stopped after block {done[-1] if done else None} (exit {proc.returncode}):\n"
            f"{out[-3000:]}\n{proc.stderr[-3000:]}")
        outputs = [re.sub(r"^\d+\n", "", o) for o in out.split(marker)]  # outputs[i]: block i's output
        # The config file took effect; the dumb plugin's option and method showed up; hello answered.
        info = json.loads(outputs[1][outputs[1].index("{"):])
        assert info["alias"] == "satoshi" and info["color"] == "ff0000"
        assert "dumbmethod" in out and "no answer, as expected" in out and "the node still answers" in out
        assert '"Howdy world"' in out and '"Howdy satoshi"' in out
        log = open(os.path.join(base, "plugin.log")).read()
        assert '"getmanifest"' in log and '"init"' in log and '"dumbmethod"' in log
        # The web invoice was paid by l2, and l1 lists it as paid.
        bolt11 = open(os.path.join(base, "invoice")).read().strip()
        last = [o for o in outputs if '"invoices"' in o][-1]
        paid = json.loads(last[last.index('{\n   "invoices"'):])["invoices"]
        assert [i["status"] for i in paid if i["bolt11"] == bolt11] == ["paid"]
        assert '"status": "complete"' in out
    finally:
        # Whatever happened, nothing may outlive the test: stop the nodes and the chain the tutorial started.
        for d in ("l1", "l2"):
            subprocess.run([os.path.join(os.path.dirname(sys.executable), "amp-cli"),
                            f"--lightning-dir={base}/{d}", "stop"], capture_output=True, env=env, timeout=30)
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "amp-chain-cli"), f"-datadir={base}/chain",
                        f"-rpcport={subst['18443']}", "stop"], capture_output=True, env=env, timeout=30)
        _kill_pidfiles(base)
        import shutil
        shutil.rmtree(base, ignore_errors=True)


def _kill_pidfiles(base: str) -> None:
    import glob
    import signal

    for path in glob.glob(os.path.join(base, "**", "*.pid"), recursive=True):
        try:
            pid = int(open(path).read().strip())
            os.kill(pid, signal.SIGKILL)
        except (ValueError, OSError):
            pass


# ---- seed 002 -------------------------------------------------------------------------------------
PAY_LIMIT_EXCEEDED = 2100


def refused(call, *args, **kwargs) -> dict:
    with pytest.raises(RpcError) as e:
        call(*args, **kwargs)
    assert e.value.error["code"] == PAY_LIMIT_EXCEEDED, e.value.error
    return e.value.error


def test_seed002_pay_up_to_and_pay_limit(node_factory_chain):
    l1, l2 = node_factory_chain.line_graph(2, FUND)  # xpay is built in

    # pay-up-to.py, exactly as the seed runs it: started with limit=0.001btc, an invoice of 0.002btc refused
    # with the seed's answer, one of 0.0001btc paid.
    up_to = plugin("pay-up-to.py")
    r = l1.cli("-k", "plugin", "subcommand=start", f"plugin={up_to}", "limit=0.001btc")
    assert r.returncode == 0, r.stderr
    inv = l2.rpc.invoice("0.002btc", "inv-4", "foo")
    r = l1.cli("pay", inv["bolt11"])
    assert json.loads(r.stdout) == {"invoice_too_high": "0.002btc", "maximum_is": "0.001btc", "bolt11": inv["bolt11"]}
    inv5 = l2.rpc.invoice("0.0001btc", "inv-5", "foo")
    out = json.loads(l1.cli("pay", inv5["bolt11"]).stdout)
    assert out["status"] == "complete" and out["amount_msat"] == 10_000_000 and out["parts"] == 1
    # What it leaves out: by keyword (-k), the invoice goes through unchecked (it reads params[0] only).
    assert l1.cli("plugin", "stop", up_to).returncode == 0

    # pay-limit.py, the robust version, with the same limit.
    r = l1.cli("-k", "plugin", "subcommand=start", f"plugin={plugin('pay-limit.py')}", "pay-limit=0.001btc")
    assert r.returncode == 0, r.stderr
    assert l1.rpc.paylimit()["limit_msat"] == 100_000_000
    # Positional and keyword: both refused, with an error (amp-cli exits 1), nothing sent.
    err = refused(l1.rpc.call, "pay", [inv["bolt11"]])
    assert err["data"] == {"amount_msat": 200_000_000, "limit_msat": 100_000_000, "method": "pay"}
    refused(l1.rpc.call, "pay", {"bolt11": inv["bolt11"]})
    r = l1.cli("-k", "pay", f"bolt11={inv['bolt11']}")
    assert r.returncode == 1 and json.loads(r.stdout)["code"] == PAY_LIMIT_EXCEEDED
    assert l1.rpc.listpays(inv["bolt11"])["pays"] == []
    # Integer msat: one msat above the limit is refused, the limit itself is paid.
    over = l2.rpc.invoice(100_000_001, "over", "one msat too many")
    refused(l1.rpc.call, "pay", [over["bolt11"]])
    exact = l2.rpc.invoice(100_000_000, "exact", "just right")
    assert l1.rpc.pay(exact["bolt11"])["status"] == "complete"
    # Amountless invoices: the amount_msat parameter counts, by position or keyword, in any unit.
    anyinv = l2.rpc.invoice("any", "any", "you choose")
    refused(l1.rpc.call, "pay", [anyinv["bolt11"], "0.0011btc"])
    refused(l1.rpc.call, "pay", {"bolt11": anyinv["bolt11"], "amount_msat": "100001sat"})
    assert l1.rpc.pay(anyinv["bolt11"], amount_msat="5000sat")["amount_msat"] == 5_000_000
    # keysend and xpay are capped too.
    refused(l1.rpc.call, "keysend", [l2.node_id, 100_000_001])
    refused(l1.rpc.call, "keysend", {"destination": l2.node_id, "amount_msat": "0.002btc"})
    assert l1.rpc.keysend(l2.node_id, 1_000_000)["status"] == "complete"
    big = l2.rpc.invoice("0.003btc", "xpay-big", "too much")
    refused(l1.rpc.call, "xpay", [big["bolt11"]])
    refused(l1.rpc.call, "xpay", {"invstring": anyinv["bolt11"], "amount_msat": 200_000_000})
    small = l2.rpc.invoice(2_000_000, "xpay-small", "fine")
    assert l1.rpc.call("xpay", [small["bolt11"]])["amount_msat"] == 2_000_000
    # setconfig changes the limit while running; a bad value is refused and the old limit kept.
    l1.rpc.setconfig("pay-limit", "1000sat")
    assert l1.rpc.paylimit()["limit_msat"] == 1_000_000
    coffee = l2.rpc.invoice(1_500_000, "coffee", "now too expensive")
    refused(l1.rpc.call, "pay", [coffee["bolt11"]])
    with pytest.raises(RpcError):
        l1.rpc.setconfig("pay-limit", "lots")
    with pytest.raises(RpcError):
        l1.rpc.setconfig("pay-limit", "0.5msat")
    assert l1.rpc.paylimit()["limit_msat"] == 1_000_000
    # Calls it cannot judge are the command's own business: a malformed invoice gets pay's own error.
    with pytest.raises(RpcError) as e:
        l1.rpc.pay("lnbcrtnonsense")
    assert e.value.error["code"] == -32602
    paid = {i["label"] for i in l2.rpc.listinvoices()["invoices"] if i["status"] == "paid"}
    assert paid == {"inv-5", "exact", "any", "xpay-small"} | {i["label"] for i in l2.rpc.listinvoices()["invoices"]
                                                               if i["label"].startswith("keysend-")}


# ---- seed 004 -------------------------------------------------------------------------------------
def balances(nodes) -> list[int]:
    """Each node's total in its channels (msat)."""
    return [sum(c["to_us_msat"] for c in n.rpc.listpeerchannels()["channels"]) for n in nodes]


def rendezvous_chain(p1, p2, p3, amount: int, label: str) -> tuple[dict, dict, dict]:
    """The invoice, made from the last payee back to the first: P3's hold invoice, then P2's and P1's."""
    inv3 = p3.rpc.call("holdinvoice", [amount, label, "the last payee's part"])
    inv2 = p2.rpc.call("rendezvous_invoice", [inv3["bolt11"], 1_000_000, 100_000, 40])
    inv1 = p1.rpc.call("rendezvous_invoice", [inv2["bolt11"], 500_000, 100_000, 40])
    return inv1, inv2, inv3


def state(node, payment_hash: str) -> str:
    (item,) = node.rpc.call("rendezvous_list", [payment_hash])["rendezvous"]
    return item["state"]


def test_seed004_rendezvous(node_factory_chain):
    import threading

    rv, hold = {"plugin": plugin("rendezvous.py")}, {"plugin": plugin("holdinvoice.py")}
    sender, p1, p2, p3 = node_factory_chain.line_graph(4, FUND, opts=[{}, rv, rv, hold])
    nodes = [sender, p1, p2, p3]
    start = balances(nodes)

    # The invoices: one payment hash; each earlier payee adds its payout + fee budget and a delay budget.
    inv1, inv2, inv3 = rendezvous_chain(p1, p2, p3, 10_000_000, "fails")
    assert inv1["payment_hash"] == inv2["payment_hash"] == inv3["payment_hash"]
    assert (inv2["amount_msat"], inv1["amount_msat"]) == (11_100_000, 11_700_000)
    dec = sender.rpc.decode(inv1["bolt11"])
    assert dec["payee"] == p1.node_id and dec["amount_msat"] == 11_700_000 and dec["min_final_cltv_expiry"] == 98
    assert p1.rpc.listinvoices(payment_hash=inv1["payment_hash"])["invoices"] == []  # signed, not stored
    with pytest.raises(RpcError):
        p1.rpc.call("rendezvous_invoice", [inv2["bolt11"], 1, 1, 1])  # one rendez-vous per hash

    # 1. The last payee cancels: every payee fails its parts cleanly, nobody's balance moves.
    failed = []
    t = threading.Thread(target=lambda: failed.append(pytest.raises(RpcError, sender.rpc.pay, inv1["bolt11"])))
    t.start()
    wait_for(lambda: p3.rpc.call("holdinvoice_lookup", [inv3["payment_hash"]])["state"] == "accepted", 30,
             "the last payee holds the payment")
    assert state(p1, inv1["payment_hash"]) == state(p2, inv1["payment_hash"]) == "paying"
    p3.rpc.call("holdinvoice_cancel", [inv3["payment_hash"]])
    t.join(60)
    assert failed and not t.is_alive()
    assert state(p1, inv1["payment_hash"]) == state(p2, inv1["payment_hash"]) == "failed"
    wait_for(lambda: balances(nodes) == start, 30, "balances unchanged")

    # 2. It completes, although the middle payee restarts while its outgoing payment is in flight.
    inv1, inv2, inv3 = rendezvous_chain(p1, p2, p3, 10_000_000, "completes")
    paid = []
    t = threading.Thread(target=lambda: paid.append(sender.rpc.pay(inv1["bolt11"])))
    t.start()
    wait_for(lambda: p3.rpc.call("holdinvoice_lookup", [inv3["payment_hash"]])["state"] == "accepted", 30,
             "the last payee holds the payment")
    p2.restart()
    # P2's incoming HTLC is replayed to the new plugin, which finds its outgoing payment pending and waits.
    wait_for(lambda: p2.rpc.call("rendezvous_list", [inv2["payment_hash"]])["rendezvous"][0]["held_htlcs"] == 1,
             60, "the middle payee holds its part again")
    assert state(p2, inv2["payment_hash"]) == "paying"
    p3.rpc.call("holdinvoice_settle", [inv3["payment_hash"]])
    t.join(90)
    assert paid and paid[0]["status"] == "complete"
    assert paid[0]["amount_msat"] == 11_700_000
    assert state(p1, inv1["payment_hash"]) == state(p2, inv1["payment_hash"]) == "complete"
    assert p3.rpc.listinvoices("completes")["invoices"][0]["status"] == "paid"
    # No loss: each payee got its payout plus what it did not spend of its fee budget (direct channels: all).
    sent = paid[0]["amount_sent_msat"]
    wait_for(lambda: balances(nodes) == [start[0] - sent, start[1] + 600_000, start[2] + 1_100_000,
                                         start[3] + 10_000_000], 30, "balances settled")
