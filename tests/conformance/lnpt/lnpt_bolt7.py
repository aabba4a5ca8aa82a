"""BOLT 7 with ampd: announcement_signatures of a public channel (signatures checked against the announcement
lnprototest builds from both sides' keys), the channel_announcement it then gossips, and gossip queries."""
from typing import Any, List, Optional

from lnprototest import Block, ExpectMsg, Msg, Runner, bitfield
from lnprototest.stash import channel_id
from lnprototest.utils import run_runner
from lnprototest.utils.bitcoin_utils import BitcoinUtils
from pyln.proto.message import Message

from lnpt_common import OUR_FEATURES, connect, open_to_ready

# The funding tx is the only one in block 103 after the coinbase, output 0.
SCID = "103x1x0"
# ampd's node id is pubkey(1) = 0279be..., ours pubkey(2) = 02c604...: ampd is node_1, we are node_2.


def skip_gossip_but(*keep: int) -> Any:
    def _ignore(msg: Message) -> Optional[List[Message]]:
        if msg.messagetype.number in range(256, 512) and msg.messagetype.number not in keep:
            return []
        return ExpectMsg.ignore_pings(msg)
    return _ignore


def announcement_field(name: str) -> Any:
    """A field of the channel_announcement lnprototest signs itself with both sides' keys; comparing a received
    signature with it checks the node's signature over the same announcement."""
    def _field(runner: Runner, event: Any, field: str) -> Any:
        return runner.get_stash(event, "Funding").channel_announcement(SCID, "").fields[name]
    return _field


def public_channel(runner: Runner) -> List[Any]:
    # + gossip_queries (bit 7, optional)
    return connect(runner, features=bitfield(*OUR_FEATURES, 7)) + open_to_ready(runner, announce=True)


def test_announcement_signatures_and_channel_announcement(runner: Runner) -> None:
    run_runner(runner, [
        *public_channel(runner),
        # BOLT #7: announcement_signatures once the funding transaction has 6 confirmations (mined at 103; now 108)
        Block(blockheight=106, number=3),
        ExpectMsg("announcement_signatures", channel_id=channel_id(), short_channel_id=SCID,
                  node_signature=announcement_field("node_signature_1"),
                  bitcoin_signature=announcement_field("bitcoin_signature_1"), ignore=skip_gossip_but(259)),
        Msg("announcement_signatures", channel_id=channel_id(), short_channel_id=SCID,
            node_signature=announcement_field("node_signature_2"),
            bitcoin_signature=announcement_field("bitcoin_signature_2")),
        # Ask for all gossip: the node relays the announcement (both signatures pairs, ours included).
        Msg("gossip_timestamp_filter", chain_hash=BitcoinUtils.blockchain_hash(), first_timestamp=0,
            timestamp_range=0xFFFFFFFF),
        ExpectMsg("channel_announcement", short_channel_id=SCID,
                  node_signature_1=announcement_field("node_signature_1"),
                  node_signature_2=announcement_field("node_signature_2"),
                  bitcoin_signature_1=announcement_field("bitcoin_signature_1"),
                  bitcoin_signature_2=announcement_field("bitcoin_signature_2"), ignore=skip_gossip_but(256)),
        # BOLT #7 query_channel_range: the reply covers the range asked and lists the channel.
        Msg("query_channel_range", chain_hash=BitcoinUtils.blockchain_hash(), first_blocknum=0,
            number_of_blocks=1000),
        ExpectMsg("reply_channel_range", chain_hash=BitcoinUtils.blockchain_hash(), sync_complete=1,
                  if_match=lists_scid, ignore=skip_gossip_but(264)),
    ])


def lists_scid(event: Any, msg: Message, runner: Runner) -> None:
    block, tx, out = (int(x) for x in SCID.split("x"))
    scid = (block << 40 | tx << 16 | out).to_bytes(8, "big")
    encoded = bytes(msg.fields["encoded_short_ids"])
    # BOLT #7 encoding 0: uncompressed array of short_channel_ids
    if encoded[:1] != b"\x00" or scid not in [encoded[i:i + 8] for i in range(1, len(encoded), 8)]:
        raise AssertionError(f"reply_channel_range does not list {SCID}: {encoded.hex()}")


def test_query_channel_range_unknown_chain(runner: Runner) -> None:
    # BOLT #7: "if it does not maintain up-to-date channel information for chain_hash: MUST set sync_complete
    # to 0" -- and no short_channel_ids.
    run_runner(runner, [
        *connect(runner, features=bitfield(*OUR_FEATURES, 7)),
        Msg("query_channel_range", chain_hash="11" * 32, first_blocknum=0, number_of_blocks=1000),
        ExpectMsg("reply_channel_range", chain_hash="11" * 32, sync_complete=0, ignore=skip_gossip_but(264)),
    ])
