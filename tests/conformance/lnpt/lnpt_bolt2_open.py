"""BOLT 2 channel establishment with ampd as the accepter (lnprototest opens; ampd's keys are forced)."""
from lnprototest import ExpectMsg, Msg, Runner
from lnprototest.stash import channel_id
from lnprototest.utils import run_runner

from lnpt_common import connect, open_to_ready


def test_open_accept_fund_ready(runner: Runner) -> None:
    # open_channel -> accept_channel (the node's forced keys, minimum_depth 3, reserve 1%) -> funding_created ->
    # funding_signed (its signature checks against our commitment) -> 3 blocks -> channel_ready both ways.
    # Then the channel is quiet and the connection alive: no error (check_final_error), a ping answered.
    run_runner(runner, [
        *connect(runner),
        *open_to_ready(runner),
        Msg("ping", num_pong_bytes=4, ignored=""),
        ExpectMsg("pong", ignored="00" * 4, ignore=ExpectMsg.ignore_all_gossip),
    ])
