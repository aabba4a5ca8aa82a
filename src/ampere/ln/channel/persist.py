"""Building a Step from (old channel, new channel, what to say): the one place that decides what to persist.

If the durable form of the channel changed, the step starts with one Persist carrying the new record
(update_id + 1) and a list of typed changes; only then come the messages. Since the snapshot is the step's
FINAL state, every message of the step reveals only persisted state.

"Changed" compares the durable fields themselves (state.durable_key, against the last StoredForm); the record is
built from them only when read (the runtime's write, once per group of steps), not on every step.
"""
from __future__ import annotations

from typing import Any, Iterable

from ampere.ln.channel.actions import Change, ChannelError, ChannelUpdate, Event, StateChanged, Step
from ampere.ln.channel.state import Channel, StoredForm, durable_key, revert_peer_uncommitted
from ampere.ln.channel.values import replace

__all__ = ["finish", "diff", "Out", "PeerViolation"]


def diff(old: Channel, new: Channel) -> tuple[Change, ...]:
    out: list[Change] = []
    if old.state is not new.state:
        out.append(Change("state", (old.state.value, new.state.value)))
    if old.htlcs is new.htlcs:
        old_h = new_h = {}
    else:
        old_h = {(h.offerer, h.htlc_id): h for h in old.htlcs}
        new_h = {(h.offerer, h.htlc_id): h for h in new.htlcs}
    for key, h in new_h.items():
        prev = old_h.get(key)
        if prev is h:
            continue
        if prev is None or prev.state is not h.state or prev.removal != h.removal:
            out.append(Change("htlc", (h.offerer.value, h.htlc_id, h.state.name,
                                       None if prev is None else prev.state.name)))
            if h.removal is not None and h.removal.preimage and (prev is None or prev.removal != h.removal):
                out.append(Change("preimage", (h.offerer.value, h.htlc_id, h.payment_hash.hex())))
    for key in old_h.keys() - new_h.keys():
        out.append(Change("htlc_removed", (key[0].value, key[1])))
    if old.local_ctn != new.local_ctn:
        out.append(Change("local_commitment", (new.local_ctn,)))
    if old.remote_ctn != new.remote_ctn:
        out.append(Change("remote_commitment", (new.remote_ctn,)))
    if len(old.remote_secrets) != len(new.remote_secrets):
        out.append(Change("revocation_secret", (len(new.remote_secrets) - 1,)))
    if old.feerate_per_kw != new.feerate_per_kw or old.fee_updates != new.fee_updates:
        out.append(Change("feerate", (new.feerate_per_kw,)))
    if (old.shutdown_sent, old.remote_shutdown_script, old.local_shutdown_script) != (
            new.shutdown_sent, new.remote_shutdown_script, new.local_shutdown_script):
        out.append(Change("shutdown", (new.shutdown_sent, new.remote_shutdown_script is not None)))
    if old.closing_tx != new.closing_tx:
        out.append(Change("closing_tx", ()))
    if (old.channel_ready_sent, old.channel_ready_received) != (new.channel_ready_sent, new.channel_ready_received):
        out.append(Change("channel_ready", (new.channel_ready_sent, new.channel_ready_received)))
    return tuple(out)


def finish(old: Channel, new: Channel, messages: Iterable[Any] = (), events: Iterable[Event] = (),
           broadcasts: Iterable[Any] = (), disconnect: str | None = None, error: ChannelError | None = None,
           cause: str = "protocol", first: bool = False) -> Step:
    """The Step taking `old` to `new`. `first`: `old` was never persisted (a channel just created)."""
    events = list(events)
    if old.state is not new.state or first:
        events.insert(0, StateChanged(None if first else old.state.value, new.state.value, cause))
    reverted = revert_peer_uncommitted(new)
    key = durable_key(reverted)
    base = old.stored
    if base is None and not first:
        base = StoredForm.of(revert_peer_uncommitted(old))
    persist = None
    # The durable fields against those last persisted (StoredForm: no record is built here, only for the write).
    if first or base is None or key != base.key or old.update_id != base.update_id:
        update_id = old.update_id + (0 if first else 1)
        changes: Any = (Change("opened", ()),) if first else (lambda: diff(revert_peer_uncommitted(old), reverted))
        stored = StoredForm(key, update_id)
        # The snapshot bytes are encoded when written (persisted_snapshot empty: encode the stored record).
        new = replace(new, update_id=update_id, persisted_snapshot=b"", stored=stored)
        persist = _update(new.channel_id, update_id, stored, changes)
    elif new.stored is not base:
        new = replace(new, persisted_snapshot=old.persisted_snapshot if old.stored is base else b"", stored=base)
    return Step.build(new, persist, messages, broadcasts, events, disconnect, error)


class _StoredUpdate(ChannelUpdate):
    """A ChannelUpdate whose `record` is its StoredForm's, built when first read: the runtime writes the record of
    the last step of a group (Channel.persisted_record), so the earlier steps' records are never built."""

    @property
    def record(self) -> dict[str, Any]:
        return self.__dict__["stored"].record()


def _update(channel_id: bytes, update_id: int, stored: StoredForm, changes: Any) -> ChannelUpdate:
    u = object.__new__(_StoredUpdate)
    u.__dict__.update(channel_id=channel_id, update_id=update_id, diff=changes, stored=stored)
    return u


class PeerViolation(Exception):
    """Raised inside handlers when the peer broke the protocol; core turns it into a ChannelError step."""

    def __init__(self, error: ChannelError, events: Iterable[Event] = ()) -> None:
        super().__init__(error.message)
        self.error = error
        self.events = list(events)


class Out:
    """What a handler produced: the new channel plus messages, events and broadcasts, in order."""

    def __init__(self, ch: Channel) -> None:
        self.ch = ch
        self.messages: list[Any] = []
        self.events: list[Event] = []
        self.broadcasts: list[Any] = []
        self.cause = "protocol"

    def send(self, msg: Any) -> None:
        self.messages.append(msg)

    def event(self, ev: Event) -> None:
        self.events.append(ev)
