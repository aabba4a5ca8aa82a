"""Reestablishing an Ampere-CLN channel, with each implementation the one that goes down:
1. restart of the payer while its HTLC is held by the other side's plugin;
2. kill -9 of the payee while its plugin holds the HTLC (the HTLC is replayed to the plugin after the restart);
3. commitments left mid-dance, then a kill -9 and reestablish: CLN with --dev-disable-commit-after=0 (it adds or
   acks an HTLC but never signs), Ampere with --dev-crash-before (dying just before a revoke_and_ack or a
   commitment_signed it has persisted).
Every payment must end complete on both sides with the same balances."""

from __future__ import annotations

import os

import pytest
from pyln.client import RpcError

from ampere.testing.nodes import wait_for

pytestmark = pytest.mark.cln

HODL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins", "hodl.py")
DELAY = 30


def chan(a, b) -> dict:
    return a.rpc.listpeerchannels(b.node_id)["channels"][0]


def reestablished(a, b) -> None:
    for x, y in ((a, b), (b, a)):
        wait_for(lambda x=x, y=y: (lambda c: c["peer_connected"] and c["state"] == "CHANNELD_NORMAL")(chan(x, y)),
                 60, f"{x.implementation} reconnected to {y.implementation}")


def settled(a, b, a_msat: int) -> None:
    """No HTLC left on either side and `a` holds a_msat of the channel on both sides' books."""
    total = chan(a, b)["total_msat"]
    for x, y, want in ((a, b, a_msat), (b, a, total - a_msat)):
        wait_for(lambda x=x, y=y, want=want: (lambda c: not c["htlcs"] and c["to_us_msat"] == want)(chan(x, y)),
                 60, f"{x.implementation}: no HTLC and {want} msat")


def send(payer, payee, amount: int, label: str) -> dict:
    inv = payee.rpc.invoice(amount, label, label)
    route = [{"id": payee.node_id, "channel": chan(payer, payee)["short_channel_id"], "delay": DELAY,
              "amount_msat": amount}]
    payer.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"], amount_msat=amount)
    return inv


def held(node, inv) -> None:
    wait_for(lambda: node.rpc.call("listheld")["held"].get(inv["payment_hash"]) == 1, 60,
             f"{node.implementation}'s plugin holds the HTLC")


def restart_with(node, **options) -> None:
    """kill -9, then start with these options (None removes one)."""
    node.kill()
    for k, v in options.items():
        if v is None:
            node.options.pop(k, None)
        else:
            node.options[k] = v
    node.start()


@pytest.mark.parametrize("victim_kind", ["ampere", "cln"])
def test_reestablish_with_htlcs_in_flight(node_factory, victim_kind):
    amp = node_factory.get_node(listen=True, plugin=HODL)
    cln = node_factory.get_cln_node(plugin=HODL)
    node_factory.fundchannel(amp, cln, 1_000_000, announce=False, push_msat=400_000_000)
    victim, other = (amp, cln) if victim_kind == "ampere" else (cln, amp)
    # After a kill -9 CLN offers a held HTLC to its plugin again, and an HTLC arriving just after its restart waits
    # until it has caught up with the chain; it says both as UNUSUAL, both expected here.
    cln.allow_complaints = ("Replaying old unprocessed HTLC", "Deferring incoming commit until we sync")
    bal = chan(victim, other)["to_us_msat"]

    # 1. The payer restarts (cleanly) while the payee's plugin holds its HTLC.
    inv = send(victim, other, 11_000_000, "hodl-1")
    held(other, inv)
    victim.restart()
    reestablished(victim, other)
    assert [h["payment_hash"] for h in chan(victim, other)["htlcs"]] == [inv["payment_hash"]]
    other.rpc.call("release", {"payment_hash": inv["payment_hash"]})
    assert victim.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"
    bal -= 11_000_000
    settled(victim, other, bal)

    # 2. The payee is killed while its plugin holds the HTLC: after the restart the HTLC is offered to the plugin
    # again, which holds it again.
    inv = send(other, victim, 7_000_000, "hodl-2")
    held(victim, inv)
    victim.kill()
    victim.start()
    reestablished(victim, other)
    held(victim, inv)
    victim.rpc.call("release", {"payment_hash": inv["payment_hash"]})
    assert other.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"
    bal += 7_000_000
    settled(victim, other, bal)

    # 3. Commitments left mid-dance.
    if victim is cln:
        # CLN stops signing: Ampere's HTLC is added and acked by CLN, but CLN never sends its commitment_signed.
        restart_with(cln, **{"dev-disable-commit-after": 0})
        reestablished(amp, cln)
        inv = send(amp, cln, 3_000_000, "mid-1")
        wait_for(lambda: [h["state"] for h in chan(cln, amp)["htlcs"]] == ["SENT_ADD_REVOCATION"], 30,
                 "CLN acked the HTLC and does not sign for it")
        restart_with(cln, **{"dev-disable-commit-after": None})
        reestablished(amp, cln)
        assert amp.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"
        bal += 3_000_000
        settled(cln, amp, bal)
        # CLN offers an HTLC and never commits to it; Ampere is killed. An HTLC nobody signed for dies with the
        # connection: CLN fails it back to its payer itself (BOLT 2: uncommitted updates are forgotten on
        # reconnection), and nothing moves. Signing again, CLN pays.
        restart_with(cln, **{"dev-disable-commit-after": 0})
        reestablished(amp, cln)
        inv = send(cln, amp, 5_000_000, "mid-2")
        wait_for(lambda: [h["state"] for h in chan(cln, amp)["htlcs"]] == ["SENT_ADD_HTLC"], 30,
                 "CLN added an HTLC it does not sign for")
        restart_with(amp)
        with pytest.raises(RpcError) as err:
            cln.rpc.waitsendpay(inv["payment_hash"], 60)
        assert err.value.error["data"]["failcode"] == 0x1007 and err.value.error["data"]["erring_node"] == cln.node_id
        reestablished(amp, cln)
        settled(cln, amp, bal)
        assert amp.rpc.listinvoices("mid-2")["invoices"][0]["status"] == "unpaid"
        cln.rpc.call("dev-reenable-commit", [amp.node_id])
        inv = send(cln, amp, 5_000_000, "mid-3")
        assert cln.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"
        bal -= 5_000_000
        settled(cln, amp, bal)
    else:
        # Ampere persists CLN's HTLC and its new commitment, then dies before sending revoke_and_ack.
        restart_with(amp, **{"dev-crash-before": "RevokeAndAck"})
        reestablished(amp, cln)
        inv = send(cln, amp, 3_000_000, "mid-1")
        wait_for(lambda: not amp.is_running(), 30, "Ampere's crash before revoke_and_ack")
        restart_with(amp, **{"dev-crash-before": None})
        reestablished(amp, cln)
        assert cln.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"
        bal += 3_000_000
        settled(amp, cln, bal)
        # Ampere adds an HTLC and dies before its commitment_signed: CLN forgets the add (BOLT 2), Ampere offers
        # it again after reestablish.
        restart_with(amp, **{"dev-crash-before": "CommitmentSigned"})
        reestablished(amp, cln)
        inv = send(amp, cln, 5_000_000, "mid-2")
        wait_for(lambda: not amp.is_running(), 30, "Ampere's crash before commitment_signed")
        restart_with(amp, **{"dev-crash-before": None})
        reestablished(amp, cln)
        assert amp.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"
        bal -= 5_000_000
        settled(amp, cln, bal)
