"""BOLT 2 channel establishment with ampd as the accepter (lnprototest opens; ampd's keys are forced)."""
from lnprototest import Block, Connect, Disconnect, ExpectMsg, Msg, MustNotMsg, Runner, bitfield
from lnprototest.utils import run_runner
from lnprototest.utils.bitcoin_utils import tx_spendable

from lnpt_common import (FUNDING_SAT, OUR_FEATURES, connect, expect_accept_channel, funding_events, open_channel_msg,
                         open_to_ready)
from lnpt_events import ExpectErrorOrWarning


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


# BOLT #2 (open_channel, the receiving node MUST fail the channel if ...); each from a new peer, on one node.
BAD_OPENS = [
    # "the chain_hash value is set to a hash of a chain that is unknown to the receiver"
    ("05", dict(chain_hash="00" * 32)),
    # "push_msat is greater than funding_satoshis * 1000"
    ("06", dict(push_msat=FUNDING_SAT * 1000 + 1)),
    # "max_accepted_htlcs is greater than 483"
    ("07", dict(max_accepted_htlcs=484)),
    # "dust_limit_satoshis is greater than channel_reserve_satoshis"
    ("08", dict(dust_limit_satoshis=10000, channel_reserve_satoshis=9998)),
    # "dust_limit_satoshis is smaller than 354 satoshis"
    ("09", dict(dust_limit_satoshis=353)),
    # "funding_pubkey, revocation_basepoint, ... are not valid secp256k1 pubkeys in compressed format"
    # (ampd cannot decode such a message at all: a warning and a hang-up, no channel, is its answer)
    ("0a", dict(funding_pubkey="02" + "00" * 32)),
    ("0b", dict(htlc_basepoint="04" + "11" * 32)),
    # "it considers feerate_per_kw too small for timely processing or unreasonably large"
    ("0c", dict(feerate_per_kw=253)),
    ("0d", dict(feerate_per_kw=10_000_000)),
    # more than the total bitcoin supply (issue 16: was accepted, then crashed at funding_created)
    ("0e", dict(funding_satoshis=2**63)),
    # channel_type is mandatory now (option_channel_type is assumed): refused without one
    ("0f", dict(tlvs=None)),
]


def test_bad_open_channel_refused(runner: Runner) -> None:
    events = [Block(blockheight=102, txs=[tx_spendable])]
    for conn, bad in BAD_OPENS:
        events += [
            Connect(connprivkey=conn), ExpectMsg("init"),
            Msg("init", globalfeatures="", features=bitfield(*OUR_FEATURES)),
            MustNotMsg("accept_channel"),
            open_channel_msg(**bad),
            ExpectErrorOrWarning(kinds=("error", "warning") if "pubkey" in str(bad) or "basepoint" in str(bad)
                                 else ("error",)),
            Disconnect(),
        ]
    # Nothing of those stayed behind: the next peer's open goes through.
    events += [Connect(connprivkey="02"), ExpectMsg("init"),
               Msg("init", globalfeatures="", features=bitfield(*OUR_FEATURES)),
               open_channel_msg(), expect_accept_channel()]
    run_runner(runner, events)


def test_funding_created_bad_signature_refused(runner: Runner) -> None:
    # BOLT #2 funding_created: the recipient "if signature is incorrect OR non-compliant with LOW-S-standard
    # rule: MUST send a warning and close the connection, or send an error and fail the channel."  Our signature
    # here is valid, but of a commitment paying us 1 sat less: the node must not answer funding_signed.
    run_runner(runner, [
        *connect(runner),
        open_channel_msg(),
        expect_accept_channel(),
        MustNotMsg("funding_signed"),
        *funding_events(runner, local_amount=(FUNDING_SAT - 1) * 1000),
        ExpectErrorOrWarning(),
    ])
