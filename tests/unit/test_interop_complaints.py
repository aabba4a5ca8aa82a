"""The log grep every interop test ends with (ampere.testing.cln.complaints): what counts as a warning or error
sent or received, for each implementation's log format, and what a test may declare expected."""

from ampere.testing.cln import complaints


class FakeNode:
    def __init__(self, implementation, text, allow=()):
        self.implementation = implementation
        self.text = text
        self.allow_complaints = allow

    def logs(self, since_start=True):
        return self.text


CLN_LOG = """\
2026-12-01T23:49:36.518Z UNUSUAL hsmd: HSM: created new hsm_secret file
2026-12-01T23:49:40.000Z DEBUG   02aa-channeld-chan#1: peer_in WIRE_UPDATE_ADD_HTLC
2026-12-01T23:49:41.000Z DEBUG   02aa-channeld-chan#1: peer_in WIRE_WARNING
2026-12-01T23:49:42.000Z DEBUG   02aa-connectd: peer_out WIRE_ERROR
2026-12-01T23:49:43.000Z UNUSUAL 02aa-chan#1: Ignoring fee limits!
2026-12-01T23:49:44.000Z **BROKEN** lightningd: something
2026-12-01T23:49:45.000Z UNUSUAL lightningd: JSON-RPC shutdown
"""

AMPERE_LOG = """\
2026-12-01T23:49:40.000Z INFO    02aa-chan#1: State changed from OPENINGD to CHANNELD_AWAITING_LOCKIN
2026-12-01T23:49:41.000Z INFO    02aa-connectd: Received warning from peer (all channels): bad gossip
2026-12-01T23:49:42.000Z INFO    02aa-chan#1: Peer sent error: go away
2026-12-01T23:49:43.000Z INFO    02aa-chan#1: warn: commitment_signed with a bad signature
2026-12-01T23:49:44.000Z UNUSUAL chainwatch: Waiting for bitcoind
"""


def test_cln_lines():
    found = complaints(FakeNode("cln", CLN_LOG))
    assert [ln.split(" ", 2)[2].strip() for ln in found] == [
        "02aa-channeld-chan#1: peer_in WIRE_WARNING", "02aa-connectd: peer_out WIRE_ERROR",
        "02aa-chan#1: Ignoring fee limits!", "lightningd: something"]
    assert len(complaints(FakeNode("cln", CLN_LOG, allow=("WIRE_WARNING",)))) == 3
    assert len(complaints(FakeNode("cln", CLN_LOG), allow=("fee limits", "something", "WIRE_"))) == 0


def test_ampere_lines():
    found = complaints(FakeNode("ampere", AMPERE_LOG))
    assert len(found) == 4 and "State changed" not in "".join(found)
    assert len(complaints(FakeNode("ampere", AMPERE_LOG, allow=("chainwatch",)))) == 3
