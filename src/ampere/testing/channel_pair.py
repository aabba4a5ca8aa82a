"""Two channel cores connected by in-memory queues: for simulations, tests and benchmarks (no I/O).

`Pair.open(...)` runs the whole v1 opening between an opener A and an acceptor B, mines the funding
transaction (a made-up one: nothing here touches a chain), and exchanges channel_ready. Each `Party` plays the
runtime's part: it "stores" every Persist (keeping the last snapshot, as a database would), queues outgoing
messages (optionally through the wire codec, bytes and back) and records events. `crash()` rebuilds a party
from its last stored snapshot only.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ampere.ln.channel import core, opening
from ampere.ln.channel.actions import (
    Broadcast,
    ChannelUpdate,
    CommitmentNeeded,
    Disconnect,
    Event,
    FundingTxNeeded,
    Persist,
    Refusal,
    SendMessage,
    Step,
)
from ampere.ln.channel.env import Env
from ampere.ln.channel.scripts import ChannelType
from ampere.ln.channel.signer import ChannelSigner, LocalChannelSigner
from ampere.ln.channel.state import Channel
from ampere.primitives.amount import MsatInt, SatInt
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut
from ampere.wire import messages as m

__all__ = ["Party", "Pair", "REGTEST_CHAIN_HASH"]

SCID = (600 << 40) | (1 << 16) | 0  # block 600, tx 1, output 0
REGTEST_CHAIN_HASH = bytes.fromhex("06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f")


@dataclass
class Party:
    name: str
    signer: ChannelSigner
    ch: Any = None                                # Channel once funded
    stored: bytes = b""                           # the last persisted snapshot ("the database")
    updates: list[ChannelUpdate] = field(default_factory=list)
    outbox: deque = field(default_factory=deque)  # messages on the wire to the other party
    events: list[Event] = field(default_factory=list)
    broadcasts: list[Transaction] = field(default_factory=list)
    commit_pending: bool = False
    disconnect_requested: str | None = None
    wire: bool = True
    keep_updates: bool = True

    def apply(self, step: Step | Refusal) -> Step | Refusal:
        """Carry out a step's actions in order, as the runtime would."""
        if isinstance(step, Refusal):
            return step
        self.ch = step.state
        for a in step.actions:
            if isinstance(a, Persist):
                self.stored = a.update.snapshot
                if self.keep_updates:
                    self.updates.append(a.update)
            elif isinstance(a, SendMessage):
                msg = a.msg
                if self.wire:
                    msg = m.decode_message(m.encode_message(msg))
                self.outbox.append(msg)
            elif isinstance(a, Broadcast):
                self.broadcasts.append(a.tx)
            elif isinstance(a, Disconnect):
                self.disconnect_requested = a.reason
            elif isinstance(a, Event):
                if isinstance(a, CommitmentNeeded):
                    self.commit_pending = True
                self.events.append(a)
        return step

    def crash(self) -> None:
        """Lose everything but the stored snapshot."""
        self.ch = core.restore(self.stored)
        self.outbox.clear()
        self.commit_pending = False
        self.disconnect_requested = None


class Pair:
    """A (opener) and B (acceptor) with one funded channel between them."""

    def __init__(self, a: Party, b: Party, env: Env = Env()) -> None:
        self.a, self.b, self.env = a, b, env
        self.connected = True
        self.last_delivered: Any = None

    def other(self, p: Party) -> Party:
        return self.b if p is self.a else self.a

    @classmethod
    def open(cls, *, funding_sat: int = 1_000_000, push_msat: int = 0, feerate_per_kw: int = 2500,
             channel_type: ChannelType = ChannelType.STATIC_REMOTEKEY, seeds: tuple[bytes, bytes] = (b"\x01" * 32,
             b"\x02" * 32), params_a: opening.LocalParams | None = None,
             params_b: opening.LocalParams | None = None, env: Env = Env(), wire: bool = True,
             allow_anchors: bool = True, confirm: bool = True) -> Pair:
        a = Party("A", LocalChannelSigner(seeds[0]), wire=wire)
        b = Party("B", LocalChannelSigner(seeds[1]), wire=wire)
        pa = params_a or opening.LocalParams(shutdown_scriptpubkey=b"\x00\x14" + b"\xaa" * 20)
        pb = params_b or opening.LocalParams(shutdown_scriptpubkey=b"\x00\x14" + b"\xbb" * 20)
        policy = opening.OpenPolicy(chain_hash=REGTEST_CHAIN_HASH, allow_anchors=allow_anchors)
        step = opening.open_channel(a.signer, temporary_channel_id=b"\x07" * 32, chain_hash=REGTEST_CHAIN_HASH,
                                    funding_sat=SatInt(funding_sat), push_msat=MsatInt(push_msat),
                                    feerate_per_kw=feerate_per_kw,
                                    ours=pa, channel_type=channel_type)
        _expect_ok(step)
        neg_a = step.state
        open_msg = _roundtrip(step.messages[0], wire)
        step = opening.on_open_channel(b.signer, open_msg, pb, policy)
        _expect_ok(step)
        neg_b = step.state
        step = neg_a.on_accept_channel(_roundtrip(step.messages[0], wire), policy)
        _expect_ok(step)
        need = next(e for e in step.actions if isinstance(e, FundingTxNeeded))
        funding_tx = Transaction(version=2, inputs=[TxIn(OutPoint(b"\x11" * 32, 0), b"", 0xFFFFFFFD)],
                                 outputs=[TxOut(need.amount_sat, need.script_pubkey)], locktime=0)
        step = step.state.funding_tx_ready(a.signer, funding_tx)
        _expect_ok(step)
        funding_created = _roundtrip(step.messages[0], wire)
        neg_a = step.state
        b.apply(neg_b.on_funding_created(b.signer, funding_created))
        _expect_ok_state(b.ch)
        funding_signed = b.outbox.popleft()
        a.apply(neg_a.on_funding_signed(a.signer, funding_signed))
        _expect_ok_state(a.ch)
        pair = cls(a, b, env)
        if confirm:
            for p in (a, b):
                p.apply(core.funding_depth(p.ch, p.signer, 6, SCID, env))
            pair.pump()
        return pair

    # --- driving ------------------------------------------------------------------------------------

    def deliver(self, src: Party) -> Step | Refusal | None:
        """Deliver the oldest message src sent."""
        if not src.outbox:
            return None
        msg = src.outbox.popleft()
        self.last_delivered = msg
        dst = self.other(src)
        step = dst.apply(core.handle_message(dst.ch, dst.signer, msg, self.env))
        if dst.disconnect_requested or src.disconnect_requested:
            self.disconnect()
        return step

    def commit(self, p: Party) -> Step | Refusal:
        p.commit_pending = False
        return p.apply(core.send_commitment(p.ch, p.signer, self.env))

    def pump(self, limit: int = 10_000) -> None:
        """Deliver everything and run the commit timers until both sides are quiet."""
        for _ in range(limit):
            if self.a.outbox:
                self.deliver(self.a)
            elif self.b.outbox:
                self.deliver(self.b)
            elif self.a.commit_pending and self.connected:
                self.commit(self.a)
            elif self.b.commit_pending and self.connected:
                self.commit(self.b)
            else:
                return
        raise RuntimeError("the channel did not settle")

    def disconnect(self) -> None:
        self.connected = False
        for p in (self.a, self.b):
            p.outbox.clear()
            p.disconnect_requested = None
            p.commit_pending = False
            p.apply(core.on_disconnect(p.ch))

    def reconnect(self) -> None:
        if self.connected:
            self.disconnect()
        self.connected = True
        for p in (self.a, self.b):
            p.apply(core.on_reconnect(p.ch, p.signer))


def _roundtrip(msg: Any, wire: bool) -> Any:
    return m.decode_message(m.encode_message(msg)) if wire else msg


def _expect_ok(step: Step) -> None:
    if step.error is not None:
        raise AssertionError(f"opening failed: {step.error.message}")


def _expect_ok_state(ch: Any) -> None:
    if not isinstance(ch, Channel):
        raise AssertionError("opening did not produce a channel")
