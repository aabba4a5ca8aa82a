"""Stateful simulation of two channel cores (hypothesis RuleBasedStateMachine).

Two parties share a channel over in-memory queues (messages go through the wire codec). Hypothesis drives
random interleavings of: HTLC adds both ways, fulfills, fails, fail_malformed, update_fee by the opener,
delivering or holding back messages, commit timers, disconnections and reestablishes, and crashes that
restart a party from its last persisted snapshot (also right after it persisted but before it could send).

After every step:
  * money is conserved on every commitment: to_local + to_remote + HTLCs = funding (msat);
  * nothing was revealed that is not persisted: the party's durable state equals its last stored snapshot
    (and each step's actions keep Persist before any message, checked by Step itself);
  * no HTLC is resolved twice, and no peer ever sees a protocol error;
and when the channel is quiet both parties agree on both commitment transactions. At the end every HTLC is
resolved exactly once and the balances match the payments that went through.

AMPERE_SIM_EXAMPLES / AMPERE_SIM_STEPS raise the effort (defaults keep this under ~30 s).
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ampere.ln.channel import core, opening
from ampere.ln.channel.actions import HtlcFailed, HtlcFulfilled, NewPeerHtlc, Refusal
from ampere.ln.channel.commitment import Side
from ampere.ln.channel.env import Env
from ampere.testing.channel_pair import Pair, Party
from ampere.ln.channel.scripts import ChannelType
from ampere.ln.channel.state import ChannelState
from ampere.primitives.tx import Transaction
from ampere.wire import messages as m
from ampere.ln.channel.views import view
from ampere.primitives.crypto import sha256

FUNDING_SAT = 1_000_000
PUSH_MSAT = 400_000_000
ONION = bytes(1366)


def _preimage(side: str, n: int) -> bytes:
    return sha256(f"{side}/{n}".encode())


class ChannelSim(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair: Pair | None = None
        self.counter = 0
        # (offerer name, htlc id) -> (amount, preimage)
        self.offered: dict[tuple[str, int], tuple[int, bytes]] = {}
        self.fulfilled: set[tuple[str, int]] = set()
        self.failed: set[tuple[str, int]] = set()
        self.announced: set[tuple[str, int]] = set()   # NewPeerHtlc seen by the receiver
        self.seen_events = {"A": 0, "B": 0}
        self.settled_paid = {"A": 0, "B": 0}           # msat paid out by each side through fulfilled HTLCs
        self.closing = False

    @initialize(anchors=st.booleans(), feerate=st.sampled_from([253, 2500, 7500]))
    def open(self, anchors: bool, feerate: int) -> None:
        params_b = opening.LocalParams(shutdown_scriptpubkey=b"\x00\x14" + b"\xbb" * 20, max_accepted_htlcs=5,
                                       max_htlc_value_in_flight_msat=300_000_000, htlc_minimum_msat=1_000)
        self.pair = Pair.open(funding_sat=FUNDING_SAT, push_msat=PUSH_MSAT, feerate_per_kw=feerate,
                              channel_type=ChannelType.ANCHORS if anchors else ChannelType.STATIC_REMOTEKEY,
                              params_b=params_b, env=Env(min_feerate_per_kw=253, max_feerate_per_kw=50_000))
        for p in self.parties:
            p.keep_updates = False
        self._collect()

    @property
    def parties(self) -> tuple[Party, Party]:
        assert self.pair is not None
        return self.pair.a, self.pair.b

    def party(self, name: str) -> Party:
        return self.pair.a if name == "A" else self.pair.b

    # --- bookkeeping of events -------------------------------------------------------------------------

    def _collect(self) -> None:
        for p in self.parties:
            new = p.events[self.seen_events[p.name]:]
            self.seen_events[p.name] = len(p.events)
            for ev in new:
                if isinstance(ev, HtlcFulfilled):
                    key = (p.name, ev.htlc_id)
                    assert key not in self.fulfilled and key not in self.failed, f"{key} resolved twice"
                    assert sha256(ev.preimage) == sha256(self.offered[key][1])
                    self.fulfilled.add(key)
                    event("HTLC fulfilled")
                    self.settled_paid[p.name] += self.offered[key][0]
                elif isinstance(ev, HtlcFailed):
                    key = (p.name, ev.htlc_id)
                    assert key not in self.fulfilled and key not in self.failed, f"{key} resolved twice"
                    self.failed.add(key)
                    event("HTLC failed")
                elif isinstance(ev, NewPeerHtlc):
                    key = ("B" if p.name == "A" else "A", ev.htlc_id)
                    assert key not in self.announced, f"{key} announced twice"
                    self.announced.add(key)

    def _step(self, p: Party, step) -> None:
        if not isinstance(step, Refusal):
            assert step.error is None, f"{p.name}: unexpected channel error: {step.error}"
            if isinstance(self.pair.last_delivered, m.ChannelReestablish):
                for msg in step.messages:
                    if isinstance(msg, (m.CommitmentSigned, m.RevokeAndAck)):
                        event(f"retransmitted {type(msg).__name__}")
        self._collect()

    # --- rules -------------------------------------------------------------------------------------------

    @rule(side=st.sampled_from("AB"), amount=st.one_of(st.integers(1_000, 600_000), st.integers(1_000_000, 60_000_000)),
          cltv=st.integers(500, 1000))
    def add(self, side: str, amount: int, cltv: int) -> None:
        p = self.party(side)
        n = self.counter
        self.counter += 1
        pre = _preimage(side, n)
        hid = p.ch.next_htlc_id_local
        result = core.offer_htlc(p.ch, p.signer, amount, sha256(pre), cltv, ONION, env=self.pair.env)
        if isinstance(result, Refusal):
            event(f"add refused: {result.code.value}")
            assert result.failure_code is not None
            return
        self.offered[(side, hid)] = (amount, pre)
        p.apply(result)
        self._step(p, result)

    def _incoming(self, p: Party) -> list:
        return core.pending_incoming_htlcs(p.ch)

    @rule(side=st.sampled_from("AB"), data=st.data(), how=st.sampled_from(["fulfill", "fail", "malformed"]))
    def resolve(self, side: str, data, how: str) -> None:
        p = self.party(side)
        incoming = self._incoming(p)
        if not incoming:
            return
        h = data.draw(st.sampled_from(incoming))
        offerer = "B" if side == "A" else "A"
        if how == "fulfill":
            result = core.fulfill_htlc(p.ch, p.signer, h.htlc_id, self.offered[(offerer, h.htlc_id)][1])
        elif how == "fail":
            result = core.fail_htlc(p.ch, p.signer, h.htlc_id, b"\x42" * 40)
        else:
            result = core.fail_malformed_htlc(p.ch, p.signer, h.htlc_id, sha256(h.onion), 0x8000 | 0x4000 | 5)
        assert not isinstance(result, Refusal), result
        p.apply(result)
        self._step(p, result)

    @rule(feerate=st.integers(253, 15_000))
    def fee(self, feerate: int) -> None:
        p = self.pair.a
        result = core.update_fee(p.ch, p.signer, feerate, self.pair.env)
        if isinstance(result, Refusal):
            return
        p.apply(result)
        self._step(p, result)

    @precondition(lambda self: self.pair is not None and self.pair.connected)
    @rule(side=st.sampled_from("AB"), count=st.integers(1, 4))
    def deliver(self, side: str, count: int) -> None:
        src = self.party(side)
        for _ in range(count):
            if not src.outbox or not self.pair.connected:
                return
            step = self.pair.deliver(src)
            self._step(self.pair.other(src), step)

    @precondition(lambda self: self.pair is not None and self.pair.connected)
    @rule(side=st.sampled_from("AB"))
    def commit(self, side: str) -> None:
        p = self.party(side)
        if p.commit_pending:
            self._step(p, self.pair.commit(p))

    @precondition(lambda self: self.pair is not None and self.pair.connected)
    @rule()
    def disconnect(self) -> None:
        self.pair.disconnect()
        self._collect()

    @precondition(lambda self: self.pair is not None and not self.pair.connected)
    @rule()
    def reconnect(self) -> None:
        self.pair.reconnect()
        self._collect()

    @rule(side=st.sampled_from("AB"))
    def crash(self, side: str) -> None:
        """The process dies between steps: the connection drops and memory is lost."""
        if self.pair.connected:
            self.pair.disconnect()
        self.party(side).crash()
        self._collect()

    @precondition(lambda self: self.pair is not None and self.pair.connected)
    @rule(side=st.sampled_from("AB"))
    def deliver_then_crash(self, side: str) -> None:
        """The receiver persists what a message changed, then dies before sending its answers."""
        src = self.party(side)
        if not src.outbox:
            return
        dst = self.pair.other(src)
        step = self.pair.deliver(src)
        self._step(dst, step)
        if self.pair.connected:
            self.pair.disconnect()
        dst.crash()
        self._collect()

    @rule(side=st.sampled_from("AB"), go=st.integers(0, 7))
    def shutdown(self, side: str, go: int) -> None:
        """Mutual close: from then on no new HTLC; the close completes once the channel is clean.
        (Only one draw in eight goes ahead: a shut channel makes the rest of a run less interesting.)"""
        if go:
            return
        p = self.party(side)
        result = core.start_shutdown(p.ch, p.signer, self.pair.env)
        if isinstance(result, Refusal):
            return
        p.apply(result)
        self._step(p, result)
        self.closing = True

    @rule()
    def settle(self) -> None:
        """Let everything through, then both sides must agree on both commitments."""
        if not self.pair.connected:
            self.pair.reconnect()
        self._pump()
        self._check_agreement()

    def _pump(self) -> None:
        for _ in range(10_000):
            a, b = self.parties
            if a.outbox:
                self._step(b, self.pair.deliver(a))
            elif b.outbox:
                self._step(a, self.pair.deliver(b))
            elif a.commit_pending:
                self._step(a, self.pair.commit(a))
            elif b.commit_pending:
                self._step(b, self.pair.commit(b))
            else:
                return
        raise AssertionError("did not settle")

    def _check_agreement(self) -> None:
        a, b = self.parties
        assert a.ch.can_speak and b.ch.can_speak
        assert not core.needs_commitment(a.ch) and not core.needs_commitment(b.ch)
        assert core.local_commitment_tx(a.ch, a.signer).txid() == core.remote_commitment_tx(b.ch).txid
        assert core.local_commitment_tx(b.ch, b.signer).txid() == core.remote_commitment_tx(a.ch).txid
        assert (a.ch.local_ctn, a.ch.remote_ctn) == (b.ch.remote_ctn, b.ch.local_ctn)

    # --- invariants --------------------------------------------------------------------------------------

    @invariant()
    def money_is_conserved(self) -> None:
        if self.pair is None:
            return
        for p in self.parties:
            for owner in (Side.LOCAL, Side.REMOTE):
                v = view(p.ch, owner)
                assert v.local_msat >= 0 and v.remote_msat >= 0
                assert v.local_msat + v.remote_msat + sum(h.amount_msat for h in v.htlcs) == FUNDING_SAT * 1000

    @invariant()
    def durable_state_is_persisted(self) -> None:
        if self.pair is None:
            return
        for p in self.parties:
            assert p.ch.to_bytes() == p.stored, f"{p.name} holds durable state that was never persisted"

    def teardown(self) -> None:
        if self.pair is None:
            return
        # Resolve everything, then check every HTLC was resolved exactly once and balances add up.
        for _ in range(20):
            self.settle()
            pending = [(p, h) for p in self.parties for h in self._incoming(p)]
            if not pending and not any(p.ch.htlcs for p in self.parties):
                break
            for p, h in pending:
                offerer = "B" if p.name == "A" else "A"
                p.apply(core.fulfill_htlc(p.ch, p.signer, h.htlc_id, self.offered[(offerer, h.htlc_id)][1]))
            self._collect()
        a, b = self.parties
        assert not a.ch.htlcs and not b.ch.htlcs
        committed = set(self.offered)
        assert self.fulfilled | self.failed <= set(self.offered)
        assert committed <= self.fulfilled | self.failed, "an HTLC was never resolved"
        # Every announced HTLC resolved; HTLCs never committed were dropped and also reported failed or never
        # reached the peer (they stay unannounced and unresolved only if never committed).
        start_a = FUNDING_SAT * 1000 - PUSH_MSAT
        assert a.ch.balance_local_msat == start_a - self.settled_paid["A"] + self.settled_paid["B"]
        assert b.ch.balance_local_msat == PUSH_MSAT - self.settled_paid["B"] + self.settled_paid["A"]
        assert a.ch.balance_remote_msat == b.ch.balance_local_msat
        if self.closing:
            # The mutual close completed and pays each side its balance (the opener A pays the fee).
            assert a.ch.state is b.ch.state is ChannelState.CLOSINGD_COMPLETE
            assert a.ch.closing_tx == b.ch.closing_tx
            tx = Transaction.parse(a.ch.closing_tx)
            outs = {o.script_pubkey: o.value for o in tx.outputs}
            fee = FUNDING_SAT - sum(outs.values())
            # (the msat remainders rounded away on both outputs add at most 1 sat to the fee)
            assert outs.get(a.ch.local_shutdown_script, 0) in (0, a.ch.balance_local_msat // 1000 - fee,
                                                               a.ch.balance_local_msat // 1000 - fee + 1)
            assert outs.get(b.ch.local_shutdown_script, 0) in (0, b.ch.balance_local_msat // 1000)


_EXAMPLES = int(os.environ.get("AMPERE_SIM_EXAMPLES", "100"))
_STEPS = int(os.environ.get("AMPERE_SIM_STEPS", "50"))

ChannelSim.TestCase.settings = settings(max_examples=_EXAMPLES, stateful_step_count=_STEPS, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestChannelSim = ChannelSim.TestCase
