"""Shared event sequences of our scripts: a peer (us, lnprototest) connects and opens a channel to ampd.

Our side: node key 02, funding key 20, basepoint secrets 21-24 (the node's own are fixed by the runner).
"""
from typing import Any, List

from lnprototest import (Block, Commit, Connect, CreateFunding, ExpectMsg, KeySet, Msg, Runner, Side, bitfield, msat,
                         remote_delayed_payment_basepoint, remote_funding_privkey, remote_funding_pubkey,
                         remote_htlc_basepoint, remote_payment_basepoint, remote_per_commitment_point,
                         remote_revocation_basepoint)
from lnprototest.stash import (channel_id, commitsig_to_recv, commitsig_to_send, funding, funding_tx, funding_txid,
                               rcvd, sent)
from lnprototest.utils import pubkey_of
from lnprototest.utils.bitcoin_utils import BitcoinUtils, funding_amount_for_utxo, tx_spendable, utxo

LOCAL_FUNDING_PRIVKEY = "20"
LOCAL_KEYSET = KeySet(revocation_base_secret="21", payment_base_secret="22", htlc_base_secret="24",
                      delayed_payment_base_secret="23", shachain_seed="00" * 32)
# BOLT #9: var_onion_optin (8/9) and option_static_remotekey (12/13), which Ampere's channels use.
OUR_FEATURES = [9, 13]
FUNDING_SAT = funding_amount_for_utxo(0)
# ampd bounds an opener's feerate around its own estimate (amp-chaind's regtest estimate gives [2500, 50000]).
FEERATE = 5000


def connect(runner: Runner, conn: str = "02", features: Any = None) -> List[Any]:
    """The chain gets lnprototest's spendable tx (block 102); we connect and exchange init."""
    return [
        Block(blockheight=102, txs=[tx_spendable]),
        Connect(connprivkey=conn),
        ExpectMsg("init"),
        Msg("init", globalfeatures="", features=bitfield(*OUR_FEATURES) if features is None else features),
    ]


def open_channel_msg(**overrides: Any) -> Msg:
    fields = dict(
        chain_hash=BitcoinUtils.blockchain_hash(), temporary_channel_id="00" * 32, funding_satoshis=FUNDING_SAT,
        push_msat=0, dust_limit_satoshis=546, max_htlc_value_in_flight_msat=4294967295,
        channel_reserve_satoshis=9998, htlc_minimum_msat=0, feerate_per_kw=FEERATE, to_self_delay=5,
        max_accepted_htlcs=483, funding_pubkey=pubkey_of(LOCAL_FUNDING_PRIVKEY),
        revocation_basepoint=LOCAL_KEYSET.revocation_basepoint(), payment_basepoint=LOCAL_KEYSET.payment_basepoint(),
        delayed_payment_basepoint=LOCAL_KEYSET.delayed_payment_basepoint(),
        htlc_basepoint=LOCAL_KEYSET.htlc_basepoint(), first_per_commitment_point=LOCAL_KEYSET.per_commit_point(0),
        channel_flags=0,
        # BOLT #2: "MUST set channel_type" (option_channel_type is assumed): static_remotekey (bit 12).
        tlvs="{channel_type={type=" + bitfield(12) + "}}")
    fields.update(overrides)
    if fields.get("tlvs") is None:
        del fields["tlvs"]
    return Msg("open_channel", **fields)


def expect_accept_channel() -> ExpectMsg:
    # The node's keys are the ones the runner forced (--dev-force-channel-secrets).
    return ExpectMsg("accept_channel", funding_pubkey=remote_funding_pubkey(),
                     revocation_basepoint=remote_revocation_basepoint(), payment_basepoint=remote_payment_basepoint(),
                     delayed_payment_basepoint=remote_delayed_payment_basepoint(),
                     htlc_basepoint=remote_htlc_basepoint(), first_per_commitment_point=remote_per_commitment_point(0),
                     minimum_depth=3, channel_reserve_satoshis=9998)


def funding_events(runner: Runner, local_amount: Any = None) -> List[Any]:
    """After accept_channel: our funding tx, the commitment, funding_created -> funding_signed.
    `local_amount` (msat) other than the funding amount makes our signature one of a different commitment."""
    return [
        CreateFunding(*utxo(0), local_node_privkey="02", local_funding_privkey=LOCAL_FUNDING_PRIVKEY,
                      remote_node_privkey=runner.get_node_privkey(), remote_funding_privkey=remote_funding_privkey()),
        Commit(funding=funding(), opener=Side.local, local_keyset=LOCAL_KEYSET,
               local_to_self_delay=rcvd("to_self_delay", int), remote_to_self_delay=sent("to_self_delay", int),
               local_amount=msat(sent("funding_satoshis", int)) if local_amount is None else local_amount,
               remote_amount=0, local_dust_limit=546,
               remote_dust_limit=rcvd("accept_channel.dust_limit_satoshis", int), feerate=FEERATE,
               local_features=sent("init.features"), remote_features=rcvd("init.features")),
        Msg("funding_created", temporary_channel_id=rcvd(), funding_txid=funding_txid(), funding_output_index=0,
            signature=commitsig_to_send()),
        # BOLT #2: funding_signed carries the channel_id derived from the funding outpoint, and the node's
        # signature of OUR first commitment (checked against the node's forced funding key).
        ExpectMsg("funding_signed", channel_id=channel_id(), signature=commitsig_to_recv()),
    ][:None if local_amount is None else -1]


def open_to_ready(runner: Runner, announce: bool = False) -> List[Any]:
    """The whole accepter-side open, up to both channel_ready (channel usable, commitment number 1 next).
    `announce`: channel_flags bit 0 (announce_channel), for a public channel."""
    return [
        open_channel_msg(channel_flags=1 if announce else 0),
        expect_accept_channel(),
        *funding_events(runner),
        Block(blockheight=103, number=3, txs=[funding_tx()]),
        ExpectMsg("channel_ready", channel_id=channel_id(), second_per_commitment_point=remote_per_commitment_point(1),
                  ignore=ExpectMsg.ignore_all_gossip),
        Msg("channel_ready", channel_id=channel_id(), second_per_commitment_point=LOCAL_KEYSET.per_commit_point(1)),
    ]
