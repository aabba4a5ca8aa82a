"""What the channel core asks the runtime to do: typed actions, events and errors, and the `Step` result.

Every core function returns a `Step(state, actions)`. The runtime carries the actions out IN ORDER:

  Persist(update)      write `update.snapshot` durably (fsync) before going on
  SendMessage(msg)     send a wire message (an `ampere.wire.messages` instance) to the peer
  Broadcast(tx)        hand a transaction to the chain backend
  Disconnect(reason)   close the peer connection (then call `core.on_disconnect`)
  Event subclasses     tell the layers above (HTLC switch, notifications, logs)

Persist before you speak is structural here: `Step` refuses (raises `ActionOrderError`, a bug in the core,
never a peer's doing) any action list in which a Persist follows a SendMessage or Broadcast, so a message
can never reveal a state that is not on disk yet. The core builds steps with `Step.build`, which puts the
single Persist of the step's final state first.

`ChannelError` is the consequence of something the peer did (style practice 6): Ignore, Warn,
WarnAndDisconnect or Close. `core` maps it to actions in one place (`core.apply_error`).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ampere.ln.channel.values import make
from ampere.primitives.amount import SatInt

__all__ = [
    "Action", "Persist", "SendMessage", "Broadcast", "Disconnect", "Event",
    "ChannelUpdate", "Change",
    "StateChanged", "ChannelReady", "NewPeerHtlc", "HtlcFulfilled", "HtlcFailed", "IncomingHtlcSettled",
    "CommitmentNeeded", "FundingTxNeeded", "MutualCloseAgreed", "ChannelFailed", "PeerWarning",
    "DataLossDetected",
    "ErrorKind", "ChannelError", "ActionOrderError", "Step", "Refusal", "RefusalCode",
]


class Action:
    """Base of everything a Step can ask for."""


@dataclass(frozen=True)
class Change:
    """One durable change, for the runtime's log/monitor (the snapshot is what gets stored)."""

    kind: str        # "htlc", "htlc_removed", "local_commitment", "remote_commitment", "revocation_secret",
                     # "state", "feerate", "shutdown", "closing_tx", "channel_ready", "opened"
    detail: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ChannelUpdate:
    """A durable record: the whole persisted channel state after this step.

    `update_id` increases by one per record of a channel. `snapshot` is `state.to_bytes()` (versioned JSON);
    `core.restore(snapshot)` rebuilds the channel. `changes` lists what differs from the previous record.
    `record`: the JSON-ready dict (or already its encoding): encoded only when `snapshot` is asked for, so steps
    that the runtime persists together (one write of the last one) are not each encoded.
    """

    channel_id: bytes
    update_id: int
    record: Any
    # The typed changes, or a function computing them: nothing on the runtime's path reads them, so
    # persist.finish hands the diff over uncomputed (it was a pass over both channels' HTLCs on every step).
    diff: tuple[Change, ...] | Callable[[], tuple[Change, ...]] = ()

    @property
    def changes(self) -> tuple[Change, ...]:
        d = self.diff
        if callable(d):
            d = d()
            object.__setattr__(self, "diff", d)
        return d

    @property
    def snapshot(self) -> bytes:
        if isinstance(self.record, (bytes, bytearray)):
            return bytes(self.record)
        cached = self.__dict__.get("_snapshot")
        if cached is None:
            from ampere.ln.channel.state import encode_record

            cached = encode_record(self.record)
            object.__setattr__(self, "_snapshot", cached)
        return cached


@dataclass(frozen=True)
class Persist(Action):
    update: ChannelUpdate


@dataclass(frozen=True)
class SendMessage(Action):
    msg: Any  # an ampere.wire.messages class instance


@dataclass(frozen=True)
class Broadcast(Action):
    tx: Any   # ampere.primitives.tx.Transaction
    label: str = ""


@dataclass(frozen=True)
class Disconnect(Action):
    reason: str


@dataclass(frozen=True)
class Event(Action):
    """Base of notifications to the layers above."""


@dataclass(frozen=True)
class StateChanged(Event):
    old: str | None   # CLN state names (ChannelState.value); None for a channel just created
    new: str
    cause: str        # CLN's "cause": "user", "remote", "local", "protocol", "onchain"
    message: str = ""


@dataclass(frozen=True)
class ChannelReady(Event):
    channel_id: bytes
    short_channel_id: Any = None


@dataclass(frozen=True)
class NewPeerHtlc(Event):
    """An HTLC the peer offered is irrevocably committed: the switch decides (fulfill/fail/forward)."""

    channel_id: bytes
    htlc_id: int
    amount_msat: int
    payment_hash: bytes
    cltv_expiry: int
    onion: bytes
    path_key: bytes | None = None


@dataclass(frozen=True)
class HtlcFulfilled(Event):
    """An HTLC we offered was fulfilled by the peer (reported once, as soon as the preimage arrives)."""

    channel_id: bytes
    htlc_id: int
    preimage: bytes


@dataclass(frozen=True)
class HtlcFailed(Event):
    """An HTLC we offered failed; reported once the failure is irrevocably committed."""

    channel_id: bytes
    htlc_id: int
    reason: bytes = b""           # update_fail_htlc.reason (the encrypted onion error)
    failure_code: int = 0         # update_fail_malformed_htlc.failure_code (0 otherwise)
    sha256_of_onion: bytes = b""
    onchain: bool = False         # timed out on-chain (and buried): a failure at our own node


@dataclass(frozen=True)
class IncomingHtlcSettled(Event):
    """An HTLC the peer offered is gone from both commitments (fulfilled or failed by us)."""

    channel_id: bytes
    htlc_id: int
    fulfilled: bool


@dataclass(frozen=True)
class CommitmentNeeded(Event):
    """Updates wait for a commitment_signed: call `core.send_commitment` after the commit delay (CLN: 10 ms)."""

    channel_id: bytes


@dataclass(frozen=True)
class FundingTxNeeded(Event):
    """Opener: build (do not broadcast) a funding tx paying `amount_sat` to `script_pubkey`, then call
    `OpenerNegotiation.funding_tx_ready`."""

    temporary_channel_id: bytes
    script_pubkey: bytes
    amount_sat: SatInt


@dataclass(frozen=True)
class MutualCloseAgreed(Event):
    channel_id: bytes
    txid: bytes
    fee_sat: int


@dataclass(frozen=True)
class ChannelFailed(Event):
    channel_id: bytes
    reason: str
    broadcast: bool


@dataclass(frozen=True)
class DataLossDetected(Event):
    """option_data_loss_protect: the peer proved we lost state. We must NOT broadcast our commitment."""

    channel_id: bytes
    their_next_commitment_number: int
    their_next_revocation_number: int


@dataclass(frozen=True)
class PeerWarning(Event):
    channel_id: bytes
    text: str
    is_error: bool = False


class ErrorKind(enum.Enum):
    IGNORE = "ignore"
    WARN = "warn"
    WARN_AND_DISCONNECT = "warn_and_disconnect"
    CLOSE = "close"


@dataclass(frozen=True)
class ChannelError:
    """The protocol consequence of what the peer did (LDK's ChannelError; CLN's peer_failed_*)."""

    kind: ErrorKind
    message: str
    # CLOSE only: broadcast our latest commitment? False when the peer proved we lost data (BOLT 2:
    # "MUST NOT broadcast its commitment transaction").
    broadcast: bool = True

    @classmethod
    def ignore(cls, message: str) -> ChannelError:
        return cls(ErrorKind.IGNORE, message)

    @classmethod
    def warn(cls, message: str) -> ChannelError:
        return cls(ErrorKind.WARN, message)

    @classmethod
    def warn_and_disconnect(cls, message: str) -> ChannelError:
        return cls(ErrorKind.WARN_AND_DISCONNECT, message)

    @classmethod
    def close(cls, message: str, broadcast: bool = True) -> ChannelError:
        return cls(ErrorKind.CLOSE, message, broadcast)


class ActionOrderError(AssertionError):
    """A core bug: an action list that would speak before persisting."""


@dataclass(frozen=True)
class Step:
    """A core function's result: the new state and the actions, in the order to carry them out."""

    state: Any
    actions: tuple[Action, ...] = ()
    error: ChannelError | None = None   # set when the step answers a peer's misbehaviour

    def __post_init__(self) -> None:
        spoke = False
        for a in self.actions:
            if not isinstance(a, Action):
                raise ActionOrderError(f"not an action: {a!r}")
            if isinstance(a, (SendMessage, Broadcast)):
                spoke = True
            elif isinstance(a, Persist) and spoke:
                raise ActionOrderError("Persist after SendMessage/Broadcast: persist before you speak")

    @property
    def messages(self) -> list[Any]:
        return [a.msg for a in self.actions if isinstance(a, SendMessage)]

    @property
    def events(self) -> list[Event]:
        return [a for a in self.actions if isinstance(a, Event)]

    @property
    def persists(self) -> list[ChannelUpdate]:
        return [a.update for a in self.actions if isinstance(a, Persist)]

    @classmethod
    def build(cls, state: Any, persist: ChannelUpdate | None = None, messages: Iterable[Any] = (),
              broadcasts: Iterable[Any] = (), events: Iterable[Event] = (), disconnect: str | None = None,
              error: ChannelError | None = None) -> Step:
        actions: list[Action] = []
        if persist is not None:
            actions.append(make(Persist, update=persist))
        actions += [make(SendMessage, msg=m) for m in messages]
        actions += [b if isinstance(b, Broadcast) else Broadcast(b) for b in broadcasts]
        for e in events:
            if not isinstance(e, Event):
                raise ActionOrderError(f"not an event: {e!r}")
            actions.append(e)
        if disconnect is not None:
            actions.append(Disconnect(disconnect))
        # Persist first, then what speaks, then events: in order by construction, so the check of __post_init__
        # (for Steps put together by hand) has nothing to find here; it ran on every step of every channel.
        step = object.__new__(cls)
        object.__setattr__(step, "state", state)
        object.__setattr__(step, "actions", tuple(actions))
        object.__setattr__(step, "error", error)
        return step


class RefusalCode(enum.Enum):
    NOT_READY = "not_ready"                  # channel not in normal operation, or peer not connected
    SHUTTING_DOWN = "shutting_down"
    AMOUNT_BELOW_MINIMUM = "amount_below_minimum"
    TOO_MANY_HTLCS = "too_many_htlcs"
    MAX_IN_FLIGHT = "max_htlc_value_in_flight"
    CANNOT_AFFORD = "cannot_afford"          # reserve, fees or anchors
    FEE_PAYER_CANNOT_AFFORD = "fee_payer_cannot_afford"
    BAD_CLTV = "bad_cltv"
    BAD_AMOUNT = "bad_amount"
    BAD_ONION = "bad_onion"
    UNKNOWN_HTLC = "unknown_htlc"
    BAD_HTLC_STATE = "bad_htlc_state"
    BAD_PREIMAGE = "bad_preimage"
    NOT_OPENER = "not_opener"
    BAD_FEERATE = "bad_feerate"
    BAD_SCRIPT = "bad_script"


# BOLT #4 failure codes (flags as in ampere.wire.codec).
_UPDATE, _PERM = 0x1000, 0x4000
TEMPORARY_CHANNEL_FAILURE = _UPDATE | 7
PERMANENT_CHANNEL_FAILURE = _PERM | 8
AMOUNT_BELOW_MINIMUM = _UPDATE | 11


@dataclass(frozen=True)
class Refusal:
    """A local request the core declines; nothing changed. `failure_code` is the BOLT 4 failure to report
    upstream when the request was an HTLC to offer (None for other requests)."""

    code: RefusalCode
    message: str
    failure_code: int | None = None
