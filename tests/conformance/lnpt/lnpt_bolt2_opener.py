"""BOLT 2 channel establishment with ampd as the opener (`fundchannel` to us): its wallet is lnprototest's
BIP32 seed (--dev-force-bip32-seed), funded by tx_spendable."""
from lnprototest import (AcceptFunding, Block, CheckEq, Commit, ExpectMsg, ExpectTx, FundChannel, Msg, MustNotMsg,
                         Runner, Side, bitfield, msat, remote_delayed_payment_basepoint, remote_funding_privkey,
                         remote_funding_pubkey, remote_htlc_basepoint, remote_payment_basepoint,
                         remote_per_commitment_point, remote_revocation_basepoint)
from lnprototest.stash import channel_id, commitsig_to_recv, commitsig_to_send, rcvd, sent
from lnprototest.utils import pubkey_of, run_runner

from lnpt_common import LOCAL_FUNDING_PRIVKEY, LOCAL_KEYSET, connect
from lnpt_events import ExpectErrorOrWarning

AMOUNT = 999877


def expect_open() -> ExpectMsg:
    # BOLT #2 open_channel: its forced keys, the amount asked, and a channel_type (mandatory now).
    return ExpectMsg("open_channel", funding_satoshis=AMOUNT, push_msat=0, funding_pubkey=remote_funding_pubkey(),
                     revocation_basepoint=remote_revocation_basepoint(), payment_basepoint=remote_payment_basepoint(),
                     delayed_payment_basepoint=remote_delayed_payment_basepoint(),
                     htlc_basepoint=remote_htlc_basepoint(), first_per_commitment_point=remote_per_commitment_point(0),
                     ignore=ExpectMsg.ignore_all_gossip)


def accept(**overrides) -> Msg:
    fields = dict(temporary_channel_id=rcvd(), dust_limit_satoshis=546, max_htlc_value_in_flight_msat=4294967295,
                  channel_reserve_satoshis=9998, htlc_minimum_msat=0, minimum_depth=3, to_self_delay=6,
                  max_accepted_htlcs=483, funding_pubkey=pubkey_of(LOCAL_FUNDING_PRIVKEY),
                  revocation_basepoint=LOCAL_KEYSET.revocation_basepoint(),
                  payment_basepoint=LOCAL_KEYSET.payment_basepoint(),
                  delayed_payment_basepoint=LOCAL_KEYSET.delayed_payment_basepoint(),
                  htlc_basepoint=LOCAL_KEYSET.htlc_basepoint(),
                  first_per_commitment_point=LOCAL_KEYSET.per_commit_point(0),
                  tlvs="{channel_type={type=" + bitfield(12) + "}}")
    fields.update(overrides)
    return Msg("accept_channel", **fields)


def test_open_as_opener(runner: Runner) -> None:
    run_runner(runner, [
        *connect(runner),
        FundChannel(amount=AMOUNT, feerate=2000),
        expect_open(),
        accept(),
        ExpectMsg("funding_created", temporary_channel_id=rcvd("temporary_channel_id"),
                  ignore=ExpectMsg.ignore_all_gossip),
        AcceptFunding(rcvd("funding_created.funding_txid"),
                      funding_output_index=rcvd("funding_created.funding_output_index", int),
                      funding_amount=rcvd("open_channel.funding_satoshis", int), local_node_privkey="02",
                      local_funding_privkey=LOCAL_FUNDING_PRIVKEY, remote_node_privkey=runner.get_node_privkey(),
                      remote_funding_privkey=remote_funding_privkey()),
        Commit(funding=lambda r, e, f: r.get_stash(e, "Funding"), opener=Side.remote, local_keyset=LOCAL_KEYSET,
               local_to_self_delay=rcvd("open_channel.to_self_delay", int),
               remote_to_self_delay=sent("accept_channel.to_self_delay", int), local_amount=0,
               remote_amount=msat(rcvd("open_channel.funding_satoshis", int)),
               local_dust_limit=sent("accept_channel.dust_limit_satoshis", int),
               remote_dust_limit=rcvd("open_channel.dust_limit_satoshis", int),
               feerate=rcvd("open_channel.feerate_per_kw", int), local_features=sent("init.features"),
               remote_features=rcvd("init.features")),
        # Its signature of OUR first commitment must be valid before we sign its own.
        CheckEq(rcvd("funding_created.signature"), commitsig_to_recv()),
        Msg("funding_signed", channel_id=channel_id(), signature=commitsig_to_send()),
        # BOLT #2: "once the channel funder receives funding_signed: MUST broadcast the funding transaction"
        ExpectTx(rcvd("funding_created.funding_txid")),
        Block(blockheight=103, number=3),
        ExpectMsg("channel_ready", channel_id=channel_id(), second_per_commitment_point=remote_per_commitment_point(1),
                  ignore=ExpectMsg.ignore_all_gossip),
        Msg("channel_ready", channel_id=channel_id(), second_per_commitment_point=LOCAL_KEYSET.per_commit_point(1)),
    ])


def test_opener_refuses_bad_accept(runner: Runner) -> None:
    # BOLT #2 accept_channel: the opener "MAY reject the channel if ... minimum_depth is unreasonably large", and
    # MUST fail it for the same bad parameters as open_channel: here dust_limit_satoshis below 354.
    run_runner(runner, [
        *connect(runner),
        FundChannel(amount=AMOUNT, feerate=2000, expect_fail=True),
        expect_open(),
        MustNotMsg("funding_created"),
        accept(dust_limit_satoshis=353),
        ExpectErrorOrWarning(),
    ])
