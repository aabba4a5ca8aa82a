"""BOLT 7 validation of incoming gossip: every rejection is a typed verdict, nothing raises, and the
graph is never touched by the validator."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ampere.ln.gossip import Accept, GossipValidator, Graph, Ignore, TokenBucket, Warn
from ampere.ln.gossip.addresses import Address, parse_addresses
from ampere.ln.gossip.signing import (
    announcement_signatures, channel_update_digest, complete_channel_announcement, make_channel_update, privkey_signer,
    unsigned_channel_announcement, verify_compact,
)
from ampere.testing.gossip_factory import GossipFactory
from ampere.ln.gossip.validate import expected_funding_script_pubkey
from ampere.wire.bolt1 import chain_hash
from ampere.wire.messages import decode_message
from ampere.wire.types import SECP256K1_ORDER, ShortChannelId

CHAIN = chain_hash("regtest")
NOW = 1_700_000_000
SCID = int(ShortChannelId.from_str("103x1x0"))
F = GossipFactory(CHAIN)
A, B, C = F.node(1), F.node(2), F.node(3)


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1:]


@pytest.fixture
def world():
    graph = Graph()
    ann, utxo = F.channel_announcement(SCID, A, B, 1_000_000)
    utxos = {SCID: utxo}
    validator = GossipValidator(graph, CHAIN)
    return graph, validator, ann, utxos


def _accept_channel(graph, validator, ann, utxos):
    verdict, _ = validator.check_raw(ann, NOW, utxos.get)
    assert verdict == Accept(capacity_sat=1_000_000)
    graph.add_channel_announcement(ann, verdict.capacity_sat, NOW)


# -- channel_announcement ------------------------------------------------------------------------

def test_valid_channel_announcement_accepted_with_capacity(world):
    graph, validator, ann, utxos = world
    _accept_channel(graph, validator, ann, utxos)
    assert SCID in graph.channels
    assert validator.stats["channel_announcement:accept"] == 1
    # Announced again: a duplicate, ignored.
    verdict, _ = validator.check_raw(ann, NOW, utxos.get)
    assert verdict.code == "duplicate" and isinstance(verdict, Ignore)


@pytest.mark.parametrize("field", ["node_signature_1", "node_signature_2", "bitcoin_signature_1", "bitcoin_signature_2"])
def test_each_bad_announcement_signature_warns(world, field):
    graph, validator, ann, utxos = world
    msg = decode_message(ann)
    bad = replace(msg, **{field: _flip(getattr(msg, field), 40)})
    verdict, _ = validator.check_raw(bad.to_bytes(), NOW, utxos.get)
    assert isinstance(verdict, Warn) and verdict.code == "bad_signature" and field in verdict.reason
    assert len(graph) == 0


def test_signed_content_is_covered(world):
    """Changing a signed field (the features) breaks the signatures."""
    graph, validator, ann, utxos = world
    msg = decode_message(ann)
    verdict, _ = validator.check_raw(replace(msg, features=b"\x02").to_bytes(), NOW, utxos.get)
    assert isinstance(verdict, Warn)


def test_missing_funding_output_ignored(world):
    graph, validator, ann, _ = world
    verdict, _ = validator.check_raw(ann, NOW, {}.get)
    assert verdict == Ignore("no_funding_output", verdict.reason)
    assert len(graph) == 0 and validator.stats["channel_announcement:no_funding_output"] == 1


def test_wrong_funding_script_ignored(world):
    graph, validator, ann, utxos = world
    msg = decode_message(ann)
    # A P2WSH of other keys (C's and A's) at the right outpoint.
    wrong = expected_funding_script_pubkey(C.pub, msg.bitcoin_key_2)
    verdict, _ = validator.check_raw(ann, NOW, {SCID: (1_000_000, wrong)}.get)
    assert isinstance(verdict, Ignore) and verdict.code == "wrong_funding_script"
    # Not even P2WSH: a P2WPKH-looking script.
    verdict, _ = validator.check_raw(ann, NOW, {SCID: (1_000_000, b"\x00\x14" + bytes(20))}.get)
    assert verdict.code == "wrong_funding_script"


def test_two_step_funding_check_and_broken_lookup(world):
    graph, validator, ann, utxos = world
    msg = decode_message(ann)
    assert validator.channel_announcement(msg, ann) == Accept()
    assert validator.channel_announcement_funding(msg, utxos[SCID]) == Accept(capacity_sat=1_000_000)

    def broken(scid):
        raise ConnectionError("bitcoind is down")

    verdict, _ = validator.check_raw(ann, NOW, broken)
    assert isinstance(verdict, Ignore) and verdict.code == "lookup_failed"


def test_unknown_chain_ignored(world):
    graph, validator, ann, utxos = world
    other = GossipFactory(chain_hash("bitcoin"))
    ann2, utxo2 = other.channel_announcement(SCID, A, B, 1_000_000)
    verdict, _ = validator.check_raw(ann2, NOW, {SCID: utxo2}.get)
    assert verdict.code == "unknown_chain"


def test_malformed_gossip_warns_never_raises(world):
    graph, validator, ann, utxos = world
    for raw in (ann[:100], b"\x01", b"\x01\x02" + bytes(10), ann[:2] + b"\xff" * 300):
        verdict, msg = validator.check_raw(raw, NOW, utxos.get)
        assert isinstance(verdict, (Warn, Ignore)), raw
    verdict, _ = validator.check_raw(b"\x00\x12" + bytes(4), NOW, utxos.get)  # a ping is not gossip
    assert verdict.code == "not_gossip"
    assert len(graph) == 0


# -- channel_update ------------------------------------------------------------------------------

def test_channel_update_checks(world):
    graph, validator, ann, utxos = world
    upd = F.channel_update(SCID, A, B, timestamp=NOW - 10)
    # Before the channel is known: ignored (the runtime may query for it).
    assert validator.check_raw(upd, NOW, utxos.get)[0].code == "unknown_channel"
    _accept_channel(graph, validator, ann, utxos)
    assert validator.check_raw(upd, NOW, utxos.get)[0] == Accept(relay=True)
    graph.apply_channel_update(upd)
    # Same update again, and an older one.
    assert validator.check_raw(upd, NOW, utxos.get)[0].code == "duplicate"
    older = F.channel_update(SCID, A, B, timestamp=NOW - 20)
    assert validator.check_raw(older, NOW, utxos.get)[0].code == "old_timestamp"
    same_ts = F.channel_update(SCID, A, B, timestamp=NOW - 10, fee_base_msat=5)
    assert validator.check_raw(same_ts, NOW, utxos.get)[0].code == "same_timestamp_different_fields"
    future = F.channel_update(SCID, A, B, timestamp=NOW + 3 * 86_400)
    assert validator.check_raw(future, NOW, utxos.get)[0].code == "future_timestamp"
    # The other direction is B's: it has no update yet, and is independent.
    assert isinstance(validator.check_raw(F.channel_update(SCID, B, A, timestamp=NOW - 30), NOW, utxos.get)[0], Accept)


def test_channel_update_signed_by_the_wrong_node_warns(world):
    graph, validator, ann, utxos = world
    _accept_channel(graph, validator, ann, utxos)
    good = decode_message(F.channel_update(SCID, A, B, timestamp=NOW))
    # Same content, signed by B (the other end of the channel).
    forged = make_channel_update(
        chain_hash=CHAIN, short_channel_id=SCID, timestamp=NOW, direction=good.channel_flags & 1,
        cltv_expiry_delta=6, htlc_minimum_msat=0, htlc_maximum_msat=990_000_000, fee_base_msat=1000,
        fee_proportional_millionths=10, sign=privkey_signer(B.priv))
    verdict, _ = validator.check_raw(forged.to_bytes(), NOW, utxos.get)
    assert isinstance(verdict, Warn) and verdict.code == "bad_signature"
    # A corrupted signature, and a changed fee under A's signature.
    assert validator.check_raw(replace(good, signature=_flip(good.signature, 5)).to_bytes(), NOW, utxos.get)[0].code == "bad_signature"
    assert validator.check_raw(replace(good, fee_base_msat=1).to_bytes(), NOW, utxos.get)[0].code == "bad_signature"
    assert all(h is None for h in graph.channels[SCID].halves)


def test_high_s_signature_is_still_valid(world):
    graph, validator, ann, utxos = world
    _accept_channel(graph, validator, ann, utxos)
    good = decode_message(F.channel_update(SCID, A, B, timestamp=NOW))
    s = int.from_bytes(good.signature[32:], "big")
    malleated = replace(good, signature=good.signature[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big"))
    assert isinstance(validator.check_raw(malleated.to_bytes(), NOW, utxos.get)[0], Accept)


def test_flood_of_updates_is_rate_limited(world):
    graph, validator, ann, utxos = world
    _accept_channel(graph, validator, ann, utxos)
    accepted = 0
    verdicts = []
    for i in range(30):
        raw = F.channel_update(SCID, A, B, timestamp=NOW - 100 + i, fee_base_msat=i)
        verdict, _ = validator.check_raw(raw, NOW, utxos.get)
        verdicts.append(verdict)
        if isinstance(verdict, Accept):
            graph.apply_channel_update(raw)
            accepted += 1
    # CLN-like default: a burst of 4, then one a day.
    assert accepted == 4
    assert all(v.code == "rate_limited" for v in verdicts[4:])
    assert validator.stats["channel_update:rate_limited"] == 26
    # The other direction has its own allowance.
    assert isinstance(validator.check_raw(F.channel_update(SCID, B, A, timestamp=NOW), NOW, utxos.get)[0], Accept)
    # A day later, one more is allowed, then the limit holds again.
    later = NOW + 86_400
    assert isinstance(validator.check_raw(F.channel_update(SCID, A, B, timestamp=later), later, utxos.get)[0], Accept)
    graph.apply_channel_update(F.channel_update(SCID, A, B, timestamp=later))
    assert validator.check_raw(F.channel_update(SCID, A, B, timestamp=later + 1), later, utxos.get)[0].code == "rate_limited"


def test_token_bucket_policy_is_injectable():
    bucket = TokenBucket(burst=2, per_day=24)  # one an hour
    assert [bucket.allow("k", 0) for _ in range(3)] == [True, True, False]
    assert not bucket.allow("k", 3599)
    assert bucket.allow("k", 3600)
    assert bucket.allow("other", 0)
    with pytest.raises(ValueError):
        TokenBucket(burst=0)


def test_private_channel_update_accepted_but_not_relayed():
    graph = Graph()
    validator = GossipValidator(graph, CHAIN)
    graph.add_private_channel(SCID, A.pub, B.pub, 500_000)
    upd = F.channel_update(SCID, B, A, timestamp=NOW, dont_forward=True)
    assert validator.check_raw(upd, NOW, {}.get)[0] == Accept(relay=False)


def test_update_for_spent_channel_ignored(world):
    graph, validator, ann, utxos = world
    _accept_channel(graph, validator, ann, utxos)
    graph.funding_spent(SCID, 200)
    assert validator.check_raw(F.channel_update(SCID, A, B, timestamp=NOW), NOW, utxos.get)[0].code == "closed_channel"


# -- node_announcement ---------------------------------------------------------------------------

def test_node_announcement_without_channel_ignored(world):
    graph, validator, ann, utxos = world
    na = F.node_announcement(C, timestamp=NOW, alias="carol")
    verdict, _ = validator.check_raw(na, NOW, utxos.get)
    assert verdict.code == "unknown_node"
    assert graph.node(C.pub) is None


def test_node_announcement_checks(world):
    graph, validator, ann, utxos = world
    _accept_channel(graph, validator, ann, utxos)
    addrs = [Address(1, "127.0.0.1", 9735), Address(5, "example.com", 9736)]
    na = F.node_announcement(A, timestamp=NOW - 5, alias="alice", addresses=addrs)
    assert validator.check_raw(na, NOW, utxos.get)[0] == Accept()
    graph.apply_node_announcement(na)
    entry = graph.list_nodes(A.pub)[0]
    assert entry["alias"] == "alice" and entry["color"] == "010203"
    assert entry["addresses"] == [{"type": "ipv4", "address": "127.0.0.1", "port": 9735},
                                  {"type": "dns", "address": "example.com", "port": 9736}]
    assert validator.check_raw(F.node_announcement(A, timestamp=NOW - 5), NOW, utxos.get)[0].code == "old_timestamp"
    msg = decode_message(F.node_announcement(A, timestamp=NOW))
    bad = replace(msg, alias=b"mallory".ljust(32, b"\x00"))
    assert validator.check_raw(bad.to_bytes(), NOW, utxos.get)[0].code == "bad_signature"
    # Addresses that do not parse: a truncated IPv4 descriptor, correctly signed.
    na_bad = F.node_announcement(A, timestamp=NOW, addresses=b"\x01\x7f\x00")
    assert validator.check_raw(na_bad, NOW, utxos.get)[0].code == "bad_addresses"
    assert graph.nodes[A.pub].info.timestamp == NOW - 5


def test_addresses_parse_rules():
    # An unknown type ends the list; port 0 is skipped; a second DNS name is ignored.
    data = (Address(1, "10.0.0.1", 0).to_bytes() + Address(2, "::1", 9735).to_bytes()
            + Address(5, "a.example", 1).to_bytes() + Address(5, "b.example", 2).to_bytes() + b"\x09junk")
    assert parse_addresses(data) == [Address(2, "::1", 9735), Address(5, "a.example", 1)]
    onion = "vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion"
    assert parse_addresses(Address(4, onion, 9735).to_bytes()) == [Address(4, onion, 9735)]


# -- building our own messages -------------------------------------------------------------------

def test_channel_announcement_from_both_sides_signatures():
    ba, bb = F.bitcoin_key(SCID, A), F.bitcoin_key(SCID, B)
    unsigned = unsigned_channel_announcement(chain_hash=CHAIN, short_channel_id=SCID, node_id_a=B.pub, node_id_b=A.pub,
                                             bitcoin_key_a=bb.pub, bitcoin_key_b=ba.pub)
    assert unsigned.node_id_1 < unsigned.node_id_2
    ours = announcement_signatures(unsigned, privkey_signer(A.priv), privkey_signer(ba.priv))
    theirs = announcement_signatures(unsigned, privkey_signer(B.priv), privkey_signer(bb.priv))
    full = complete_channel_announcement(unsigned, A.pub, ours, theirs)
    graph = Graph()
    validator = GossipValidator(graph, CHAIN)
    utxo = (1_000_000, expected_funding_script_pubkey(ba.pub, bb.pub))
    assert validator.check_raw(full.to_bytes(), NOW, {SCID: utxo}.get)[0] == Accept(capacity_sat=1_000_000)
    # A peer sending a bad announcement_signatures is caught before we announce anything.
    with pytest.raises(ValueError, match="does not verify"):
        complete_channel_announcement(unsigned, A.pub, ours, (theirs[0], ours[1]))


def test_make_channel_update_refuses_bad_values():
    sign = privkey_signer(A.priv)
    common = dict(chain_hash=CHAIN, short_channel_id=SCID, direction=0, cltv_expiry_delta=6,
                  fee_base_msat=1, fee_proportional_millionths=1, sign=sign)
    with pytest.raises(ValueError):
        make_channel_update(timestamp=0, htlc_minimum_msat=0, htlc_maximum_msat=1, **common)
    with pytest.raises(ValueError):
        make_channel_update(timestamp=1, htlc_minimum_msat=2, htlc_maximum_msat=1, **common)
    upd = make_channel_update(timestamp=1, htlc_minimum_msat=0, htlc_maximum_msat=1, disabled=True, **common)
    assert upd.message_flags == 1 and upd.channel_flags == 2
    assert verify_compact(A.pub, upd.signature, channel_update_digest(upd.to_bytes()))
