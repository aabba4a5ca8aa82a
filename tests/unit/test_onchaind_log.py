"""CLN's onchaind names and log lines (onchaind/onchain_types.h, onchaind.c, lightningd/onchain_control.c) as
pyln-testing's wait_for_onchaind_tx(s), wait_for_onchaind_broadcast and mine_txid_or_rbf parse them."""
import re

import pytest

from ampere.ln.channel.commitment import Side
from ampere.ln.onchain.classify import OutputKind, SpendKind
from ampere.node.onchain.onchaind_log import (
    broadcast_named_line,
    holder_tx_type,
    ignoring_line,
    output_type,
    proposal_type,
    rbf_line,
    resolve_name,
    spend_tx_type,
    telling_line,
)


def test_spend_tx_types():
    assert [spend_tx_type(k) for k in (SpendKind.MUTUAL, SpendKind.LOCAL, SpendKind.REMOTE, SpendKind.REVOKED)] == \
        ["MUTUAL_CLOSE", "OUR_UNILATERAL", "THEIR_UNILATERAL", "THEIR_REVOKED_UNILATERAL"]


@pytest.mark.parametrize("spend,state,kind,offerer,tx_type,resolve", [
    # Our commitment: to_local after to_self_delay; our HTLC by the HTLC-timeout tx, theirs by HTLC-success.
    (SpendKind.LOCAL, "sweep", OutputKind.TO_LOCAL, None,
     "OUR_DELAYED_RETURN_TO_WALLET", "OUR_UNILATERAL/DELAYED_OUTPUT_TO_US"),
    (SpendKind.LOCAL, "htlc_timeout", OutputKind.OUR_HTLC, Side.LOCAL,
     "OUR_HTLC_TIMEOUT_TX", "OUR_UNILATERAL/OUR_HTLC"),
    (SpendKind.LOCAL, "htlc_success", OutputKind.THEIR_HTLC, Side.REMOTE,
     "OUR_HTLC_SUCCESS_TX", "OUR_UNILATERAL/THEIR_HTLC"),
    # The peer's commitment: HTLCs claimed directly.
    (SpendKind.REMOTE, "htlc_timeout", OutputKind.OUR_HTLC, Side.LOCAL,
     "OUR_HTLC_TIMEOUT_TO_US", "THEIR_UNILATERAL/OUR_HTLC"),
    (SpendKind.REMOTE, "htlc_success", OutputKind.THEIR_HTLC, Side.REMOTE,
     "THEIR_HTLC_FULFILL_TO_US", "THEIR_UNILATERAL/THEIR_HTLC"),
    # A revoked commitment: everything by penalty, HTLC outputs named by who offered them.
    (SpendKind.REVOKED, "penalty", OutputKind.REVOKED_TO_LOCAL, None,
     "OUR_PENALTY_TX", "THEIR_REVOKED_UNILATERAL/DELAYED_CHEAT_OUTPUT_TO_THEM"),
    (SpendKind.REVOKED, "penalty", OutputKind.REVOKED_HTLC, Side.LOCAL,
     "OUR_PENALTY_TX", "THEIR_REVOKED_UNILATERAL/OUR_HTLC"),
    (SpendKind.REVOKED, "penalty", OutputKind.REVOKED_HTLC, Side.REMOTE,
     "OUR_PENALTY_TX", "THEIR_REVOKED_UNILATERAL/THEIR_HTLC"),
])
def test_first_stage_names(spend, state, kind, offerer, tx_type, resolve):
    assert proposal_type(spend, state, kind) == tx_type
    assert resolve_name(holder_tx_type(spend, None, None, None), output_type(kind, offerer)) == resolve


def test_second_stage_names():
    # The delayed output of our HTLC transactions.
    assert resolve_name(holder_tx_type(SpendKind.LOCAL, "htlc_timeout", OutputKind.OUR_HTLC, Side.LOCAL),
                        output_type(OutputKind.HTLC_TX_DELAYED)) == "OUR_HTLC_TIMEOUT_TX/DELAYED_OUTPUT_TO_US"
    assert resolve_name(holder_tx_type(SpendKind.LOCAL, "htlc_success", OutputKind.THEIR_HTLC, Side.REMOTE),
                        output_type(OutputKind.HTLC_TX_DELAYED)) == "OUR_HTLC_SUCCESS_TX/DELAYED_OUTPUT_TO_US"
    assert proposal_type(SpendKind.LOCAL, "sweep", OutputKind.HTLC_TX_DELAYED) == "OUR_DELAYED_RETURN_TO_WALLET"
    # The peer's second stage off its revoked commitment: its timeout of its HTLC, its fulfill of ours.
    assert resolve_name(holder_tx_type(SpendKind.REVOKED, "penalty", OutputKind.REVOKED_HTLC, Side.REMOTE),
                        output_type(OutputKind.REVOKED_HTLC_TX)) == \
        "THEIR_HTLC_TIMEOUT_TO_THEM/DELAYED_CHEAT_OUTPUT_TO_THEM"
    assert resolve_name(holder_tx_type(SpendKind.REVOKED, "penalty", OutputKind.REVOKED_HTLC, Side.LOCAL),
                        output_type(OutputKind.REVOKED_HTLC_TX)) == \
        "OUR_HTLC_FULFILL_TO_THEM/DELAYED_CHEAT_OUTPUT_TO_THEM"


def test_no_onchaind_proposal():
    # to_remote goes to CLN's wallet, not through an onchaind proposal; mutual close outputs neither.
    assert proposal_type(SpendKind.REMOTE, "sweep", OutputKind.TO_REMOTE) is None
    assert proposal_type(SpendKind.MUTUAL, "wallet", OutputKind.MUTUAL) is None
    assert output_type(OutputKind.MUTUAL) is None


def test_lines_parse_as_pyln_testing_does():
    line = telling_line("OUR_DELAYED_RETURN_TO_WALLET", "OUR_UNILATERAL/DELAYED_OUTPUT_TO_US", 110, 105)
    assert line == ("Telling lightningd about OUR_DELAYED_RETURN_TO_WALLET to resolve "
                    "OUR_UNILATERAL/DELAYED_OUTPUT_TO_US after block 109 (4 more blocks)")
    assert re.search("Telling lightningd about {} to resolve {}".format(
        "OUR_DELAYED_RETURN_TO_WALLET", "OUR_UNILATERAL/DELAYED_OUTPUT_TO_US"), line)
    assert int(re.search(r'\(([-0-9]*) more blocks\)', line).group(1)) == 4
    # Immediate: 0; an HTLC already expired when the commitment was mined: negative.
    assert "(0 more blocks)" in telling_line("OUR_PENALTY_TX", "x/y", 106, 105)
    assert "after block 103 (-2 more blocks)" in telling_line("OUR_HTLC_TIMEOUT_TX", "x/y", 104, 105)
    assert ignoring_line("THEIR_UNILATERAL/THEIR_HTLC", "THEIR_HTLC_TIMEOUT_TO_THEM", 150, 110) == \
        "Propose ignoring THEIR_UNILATERAL/THEIR_HTLC as THEIR_HTLC_TIMEOUT_TO_THEM after block 150 (40 more blocks)"
    a, b = "aa" * 32, "bb" * 32
    line = rbf_line(True, a, 0, b, 330)
    m = re.search(fr'RBF (onchain|HTLC) txid {a} \(fee [0-9]*sat\) with txid ([0-9a-fA-F]*)', line)
    assert m and m.group(2) == b
    assert rbf_line(False, a, 300, b, 400).startswith(f"RBF onchain txid {a} (fee 300sat)")
    line = broadcast_named_line("OUR_PENALTY_TX", "0200abcd", "THEIR_REVOKED_UNILATERAL/DELAYED_CHEAT_OUTPUT_TO_THEM")
    assert re.search('Broadcasting {} .* to resolve {}'.format(
        "OUR_PENALTY_TX", "THEIR_REVOKED_UNILATERAL/DELAYED_CHEAT_OUTPUT_TO_THEM"), line)
    assert re.search(r'.* \(([0-9a-fA-F]*)\) ', line).group(1) == "0200abcd"
