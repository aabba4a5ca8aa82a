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
            "approver-timeout": 4, "approver-max-concurrent": 2, "approver-max-queued": 1}
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
    assert time.time() - t0 < 3
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
    l1, l2 = node_factory_chain.line_graph(2, FUND, opts=[{}, {"plugin": plugin("holdinvoice.py")}])
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
