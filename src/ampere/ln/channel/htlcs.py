"""Per-update state for both commitments: HTLCs and fee updates (BOLT 2 "Normal Operation").

BOLT #2: "Counter-intuitively, these updates apply to the *other node's* commitment transaction; the node only
adds those updates to its own commitment transaction when the remote node acknowledges it has applied them via
`revoke_and_ack`. Thus each update traverses through the following states:
  1. pending on the receiver
  2. in the receiver's latest commitment transaction
  3. ... and the receiver's previous commitment transaction has been revoked, and the update is pending on the sender
  4. ... and in the sender's latest commitment transaction
  5. ... and the sender's previous commitment transaction has been revoked"

`HtlcState` names those five steps for each of the four kinds of update (we add, they remove what we added,
they add, we remove what they added), with the names and the order of Core Lightning's common/htlc_state.h.
The numeric values are STORED: never reorder or renumber them, only append.

Every step is driven by one of four events, each a pure mapping of states (`on_send_commit`, `on_recv_commit`,
`on_send_revoke`, `on_recv_revoke`). `status(state, side)` says whether an update is pending, in, or out of
the latest commitment of `side`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from ampere.ln.channel.commitment import Side
from ampere.ln.channel.values import replace
from ampere.primitives.amount import MsatInt

__all__ = [
    "HtlcState",
    "Status",
    "status",
    "status_table",
    "RemovalKind",
    "Removal",
    "Htlc",
    "FeeUpdate",
    "on_send_commit",
    "on_recv_commit",
    "on_send_revoke",
    "on_recv_revoke",
    "is_final",
    "SENDER_UNCOMMITTED",
    "RECEIVER_UNCOMMITTED",
]


class HtlcState(enum.IntEnum):
    """Stored values: never reorder (CLN common/htlc_state.h order)."""

    # An HTLC we offered (we sent update_add_htlc).
    SENT_ADD_HTLC = 0             # update sent, in no commitment yet
    SENT_ADD_COMMIT = 1           # we sent commitment_signed: in their commitment
    RCVD_ADD_REVOCATION = 2       # they revoked their previous commitment
    RCVD_ADD_ACK_COMMIT = 3       # they sent commitment_signed: in ours
    SENT_ADD_ACK_REVOCATION = 4   # we revoked ours: irrevocably committed
    # They remove an HTLC we offered (update_fulfill/fail/fail_malformed from them).
    RCVD_REMOVE_HTLC = 5
    RCVD_REMOVE_COMMIT = 6        # gone from our commitment
    SENT_REMOVE_REVOCATION = 7
    SENT_REMOVE_ACK_COMMIT = 8    # gone from theirs
    RCVD_REMOVE_ACK_REVOCATION = 9  # final
    # An HTLC they offered.
    RCVD_ADD_HTLC = 10
    RCVD_ADD_COMMIT = 11          # in our commitment
    SENT_ADD_REVOCATION = 12
    SENT_ADD_ACK_COMMIT = 13      # in theirs
    RCVD_ADD_ACK_REVOCATION = 14  # irrevocably committed
    # We remove an HTLC they offered.
    SENT_REMOVE_HTLC = 15
    SENT_REMOVE_COMMIT = 16       # gone from their commitment
    RCVD_REMOVE_REVOCATION = 17
    RCVD_REMOVE_ACK_COMMIT = 18   # gone from ours
    SENT_REMOVE_ACK_REVOCATION = 19  # final


class Status(enum.Enum):
    PENDING = "pending"  # not added to that commitment yet
    IN = "in"
    OUT = "out"          # removed from that commitment


S = HtlcState
P, I, O = Status.PENDING, Status.IN, Status.OUT

# (status in OUR latest commitment, status in THEIR latest commitment)
_STATUS: dict[HtlcState, tuple[Status, Status]] = {
    S.SENT_ADD_HTLC: (P, P), S.SENT_ADD_COMMIT: (P, I), S.RCVD_ADD_REVOCATION: (P, I),
    S.RCVD_ADD_ACK_COMMIT: (I, I), S.SENT_ADD_ACK_REVOCATION: (I, I),
    S.RCVD_REMOVE_HTLC: (I, I), S.RCVD_REMOVE_COMMIT: (O, I), S.SENT_REMOVE_REVOCATION: (O, I),
    S.SENT_REMOVE_ACK_COMMIT: (O, O), S.RCVD_REMOVE_ACK_REVOCATION: (O, O),
    S.RCVD_ADD_HTLC: (P, P), S.RCVD_ADD_COMMIT: (I, P), S.SENT_ADD_REVOCATION: (I, P),
    S.SENT_ADD_ACK_COMMIT: (I, I), S.RCVD_ADD_ACK_REVOCATION: (I, I),
    S.SENT_REMOVE_HTLC: (I, I), S.SENT_REMOVE_COMMIT: (I, O), S.RCVD_REMOVE_REVOCATION: (I, O),
    S.RCVD_REMOVE_ACK_COMMIT: (O, O), S.SENT_REMOVE_ACK_REVOCATION: (O, O),
}
assert set(_STATUS) == set(HtlcState)


# The same tables indexed by the state's value (a tuple index is a C-level int lookup: these run per HTLC per step).
_STATUS_LOCAL = tuple(_STATUS[s][0] for s in HtlcState)
_STATUS_REMOTE = tuple(_STATUS[s][1] for s in HtlcState)
assert all(int(s) == i for i, s in enumerate(HtlcState))


def status_table(side: Side) -> tuple[Status, ...]:
    """`status(state, side)` for every state, indexed by the state's value."""
    return _STATUS_LOCAL if side is Side.LOCAL else _STATUS_REMOTE


def status(state: HtlcState, side: Side) -> Status:
    """Whether the update is pending, in or out of the latest commitment held by `side`."""
    return _STATUS_LOCAL[state] if side is Side.LOCAL else _STATUS_REMOTE[state]


# Sending commitment_signed covers our pending updates and their updates that we acknowledged.
_SEND_COMMIT = {S.SENT_ADD_HTLC: S.SENT_ADD_COMMIT, S.SENT_REMOVE_HTLC: S.SENT_REMOVE_COMMIT,
                S.SENT_ADD_REVOCATION: S.SENT_ADD_ACK_COMMIT, S.SENT_REMOVE_REVOCATION: S.SENT_REMOVE_ACK_COMMIT}
_RECV_COMMIT = {S.RCVD_ADD_HTLC: S.RCVD_ADD_COMMIT, S.RCVD_REMOVE_HTLC: S.RCVD_REMOVE_COMMIT,
                S.RCVD_ADD_REVOCATION: S.RCVD_ADD_ACK_COMMIT, S.RCVD_REMOVE_REVOCATION: S.RCVD_REMOVE_ACK_COMMIT}
_SEND_REVOKE = {S.RCVD_ADD_COMMIT: S.SENT_ADD_REVOCATION, S.RCVD_REMOVE_COMMIT: S.SENT_REMOVE_REVOCATION,
                S.RCVD_ADD_ACK_COMMIT: S.SENT_ADD_ACK_REVOCATION,
                S.RCVD_REMOVE_ACK_COMMIT: S.SENT_REMOVE_ACK_REVOCATION}
_RECV_REVOKE = {S.SENT_ADD_COMMIT: S.RCVD_ADD_REVOCATION, S.SENT_REMOVE_COMMIT: S.RCVD_REMOVE_REVOCATION,
                S.SENT_ADD_ACK_COMMIT: S.RCVD_ADD_ACK_REVOCATION,
                S.SENT_REMOVE_ACK_COMMIT: S.RCVD_REMOVE_ACK_REVOCATION}

# Updates we sent that no commitment_signed of ours covers yet (the peer forgets them on disconnection).
SENDER_UNCOMMITTED = frozenset({S.SENT_ADD_HTLC, S.SENT_REMOVE_HTLC})
# Updates the peer sent that no commitment_signed of theirs covers yet (we forget them on disconnection).
RECEIVER_UNCOMMITTED = frozenset({S.RCVD_ADD_HTLC, S.RCVD_REMOVE_HTLC})


def _table(moves: dict[HtlcState, HtlcState]) -> tuple[HtlcState, ...]:
    return tuple(moves.get(s, s) for s in HtlcState)


_SEND_COMMIT_T, _RECV_COMMIT_T = _table(_SEND_COMMIT), _table(_RECV_COMMIT)
_SEND_REVOKE_T, _RECV_REVOKE_T = _table(_SEND_REVOKE), _table(_RECV_REVOKE)


def on_send_commit(state: HtlcState) -> HtlcState:
    return _SEND_COMMIT_T[state]


def on_recv_commit(state: HtlcState) -> HtlcState:
    return _RECV_COMMIT_T[state]


def on_send_revoke(state: HtlcState) -> HtlcState:
    return _SEND_REVOKE_T[state]


def on_recv_revoke(state: HtlcState) -> HtlcState:
    return _RECV_REVOKE_T[state]


def is_final(state: HtlcState) -> bool:
    return state in (S.RCVD_REMOVE_ACK_REVOCATION, S.SENT_REMOVE_ACK_REVOCATION)


def offerer_of(state: HtlcState) -> Side:
    return Side.LOCAL if state < S.RCVD_ADD_HTLC else Side.REMOTE


class RemovalKind(enum.IntEnum):
    """Stored values."""

    FULFILL = 0
    FAIL = 1
    FAIL_MALFORMED = 2


@dataclass(frozen=True)
class Removal:
    kind: RemovalKind
    seq: int                      # order among the sender's updates (for retransmission)
    preimage: bytes = b""         # FULFILL
    reason: bytes = b""           # FAIL: the onion error packet
    sha256_of_onion: bytes = b""  # FAIL_MALFORMED
    failure_code: int = 0         # FAIL_MALFORMED


@dataclass(frozen=True)
class Htlc:
    """One HTLC, offered by `offerer`, and where it stands in both commitments."""

    offerer: Side
    htlc_id: int
    amount_msat: MsatInt
    payment_hash: bytes
    cltv_expiry: int
    onion: bytes                      # onion_routing_packet (1366 bytes)
    state: HtlcState
    add_seq: int                      # order among the offerer's updates
    removal: Removal | None = None
    path_key: bytes | None = None     # update_add_htlc_tlvs.blinded_path
    # A fulfill from the peer is reported at once (HtlcFulfilled); this remembers that it was, so a
    # retransmitted fulfill after a reconnection is not reported twice.
    preimage_reported: bool = False

    def with_state(self, state: HtlcState) -> Htlc:
        # Unchanged HTLCs stay the same object: the record's per-HTLC cache (state._htlc_json) and the diff of
        # two steps (persist.diff) then see them as unchanged at no cost.
        return self if state is self.state else replace(self, state=state)

    def status(self, side: Side) -> Status:
        return status(self.state, side)


@dataclass(frozen=True)
class FeeUpdate:
    """An update_fee, sent by the opener; it only uses the ADD half of the state machine."""

    feerate_per_kw: int
    state: HtlcState
    seq: int

    def status(self, side: Side) -> Status:
        return status(self.state, side)
