"""The persisted state of a funded channel, its lifecycle states, and its storage format.

`Channel` is a frozen value: core functions return a new one. Its durable part round-trips through
`to_bytes`/`from_bytes` (versioned JSON, `"v": 1`); a few fields are transient (connection status, the
closing fee negotiation, which BOLT 2 restarts on reconnection) and come back with their defaults.

What is stored excludes the peer's uncommitted updates: BOLT #2 "the receiving node only needs to store
updates upon receipt of `commitment_signed`", and on disconnection "MUST reverse any uncommitted updates
sent by the other side". `revert_peer_uncommitted` is that reversal; `to_bytes` applies it, so restoring
from storage and reconnecting are the same thing.

`ChannelState` values are Core Lightning's state names (they appear in channel_state_changed notifications
and listpeerchannels); `set_state` checks every change against `TRANSITIONS`.
"""
from __future__ import annotations

import enum
import json
import operator
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

from ampere.ln.channel.commitment import ChannelParams, Side
from ampere.ln.channel.htlcs import RECEIVER_UNCOMMITTED, FeeUpdate, Htlc, HtlcState, Removal, RemovalKind
from ampere.ln.channel.keys import ChannelPubkeys
from ampere.ln.channel.scripts import ChannelType
from ampere.ln.channel.shachain import ShachainStore
from ampere.ln.channel.values import ByIdentity, PrefixMemo, replace
from ampere.primitives.amount import MsatInt, SatInt
from ampere.primitives.tx import OutPoint

__all__ = [
    "ChannelState", "TRANSITIONS", "StateTransitionError", "ChannelConfig", "ClosingNegotiation", "Channel",
    "StorageError", "FORMAT_VERSION", "revert_peer_uncommitted", "set_state", "channel_id_from_outpoint",
    "StoredForm", "durable_key", "onion_bytes",
]

FORMAT_VERSION = 1


class ChannelState(enum.Enum):
    """CLN's channel states (lightningd/channel_state.h names), for a channel past funding_signed."""

    CHANNELD_AWAITING_LOCKIN = "CHANNELD_AWAITING_LOCKIN"
    CHANNELD_NORMAL = "CHANNELD_NORMAL"
    CHANNELD_SHUTTING_DOWN = "CHANNELD_SHUTTING_DOWN"
    CLOSINGD_SIGEXCHANGE = "CLOSINGD_SIGEXCHANGE"
    CLOSINGD_COMPLETE = "CLOSINGD_COMPLETE"
    AWAITING_UNILATERAL = "AWAITING_UNILATERAL"
    FUNDING_SPEND_SEEN = "FUNDING_SPEND_SEEN"
    ONCHAIN = "ONCHAIN"
    CLOSED = "CLOSED"


CS = ChannelState
_FAILING = {CS.AWAITING_UNILATERAL, CS.FUNDING_SPEND_SEEN}
TRANSITIONS: dict[ChannelState, frozenset[ChannelState]] = {
    CS.CHANNELD_AWAITING_LOCKIN: frozenset({CS.CHANNELD_NORMAL, CS.CHANNELD_SHUTTING_DOWN, CS.CLOSED} | _FAILING),
    CS.CHANNELD_NORMAL: frozenset({CS.CHANNELD_SHUTTING_DOWN} | _FAILING),
    CS.CHANNELD_SHUTTING_DOWN: frozenset({CS.CLOSINGD_SIGEXCHANGE} | _FAILING),
    CS.CLOSINGD_SIGEXCHANGE: frozenset({CS.CLOSINGD_COMPLETE} | _FAILING),
    CS.CLOSINGD_COMPLETE: frozenset(_FAILING),
    CS.AWAITING_UNILATERAL: frozenset({CS.FUNDING_SPEND_SEEN}),
    CS.FUNDING_SPEND_SEEN: frozenset({CS.ONCHAIN}),
    CS.ONCHAIN: frozenset({CS.CLOSED}),
    CS.CLOSED: frozenset(),
}
assert set(TRANSITIONS) == set(ChannelState)


class StateTransitionError(AssertionError):
    """A core bug: a channel state change the table does not allow."""


class StorageError(ValueError):
    """Stored bytes that are not a channel record this version can read."""


@dataclass(frozen=True)
class ChannelConfig:
    """What one side announced in open_channel/accept_channel. Each limit binds the OTHER side."""

    dust_limit_sat: SatInt            # applies to this side's own commitment
    max_htlc_value_in_flight_msat: MsatInt  # cap on HTLCs the other side offers to this side
    channel_reserve_sat: SatInt       # what the OTHER side must keep
    htlc_minimum_msat: MsatInt        # smallest HTLC this side accepts
    to_self_delay: int                # CSV delay this side imposes on the other's to-self outputs
    max_accepted_htlcs: int           # most HTLCs the other side may offer to this side
    upfront_shutdown_script: bytes = b""


@dataclass(frozen=True)
class ClosingNegotiation:
    """legacy closing_signed negotiation (transient: BOLT 2 restarts it on reconnection)."""

    our_min_fee_sat: int
    our_max_fee_sat: int
    our_fee_sat: int                  # our preferred fee
    last_sent_fee_sat: int | None = None
    last_received_fee_sat: int | None = None
    received_range: tuple[int, int] | None = None


@dataclass(frozen=True)
class Channel:
    channel_id: bytes
    state: ChannelState
    params: ChannelParams             # funding outpoint and amount, opener, channel type, both pubkey sets
    local: ChannelConfig
    remote: ChannelConfig
    announce: bool
    minimum_depth: int
    # Settled balances: every HTLC that reached its final state is folded in here and dropped.
    balance_local_msat: MsatInt
    balance_remote_msat: MsatInt
    feerate_per_kw: int               # settled feerate (fee updates fully committed on both sides)
    htlcs: tuple[Htlc, ...] = ()
    fee_updates: tuple[FeeUpdate, ...] = ()
    next_htlc_id_local: int = 0       # id of the next HTLC we offer
    next_htlc_id_remote: int = 0      # id we expect for the next HTLC the peer offers
    next_seq: int = 0                 # orders our updates (retransmission replays them in this order)
    # Commitment numbers: our latest commitment, and the peer's latest one we signed.
    local_ctn: int = 0
    remote_ctn: int = 0
    local_commit_sig: bytes = b""     # the peer's signature on our latest commitment (compact)
    local_htlc_sigs: tuple[bytes, ...] = ()
    remote_point: bytes = b""         # the peer's per_commitment_point for remote_ctn
    remote_next_point: bytes | None = None  # ... for remote_ctn + 1 (None until revoke_and_ack/channel_ready)
    remote_prev_point: bytes | None = None  # ... for remote_ctn - 1 while its revocation is awaited
    awaiting_revoke: bool = False     # we sent commitment_signed and wait for revoke_and_ack
    remote_secrets: ShachainStore = field(default_factory=ShachainStore)
    last_sent_revoke: bool = False    # of our last commitment_signed and revoke_and_ack, the RAA came last
    channel_ready_sent: bool = False
    channel_ready_received: bool = False
    short_channel_id: int | None = None
    local_shutdown_script: bytes = b""  # where our mutual-close output goes
    shutdown_requested: bool = False  # close was asked for; shutdown goes out once allowed
    shutdown_sent: bool = False
    remote_shutdown_script: bytes | None = None
    closing_tx: bytes = b""           # the signed mutual close once agreed (raw)
    update_id: int = 0                # id of the last persisted record
    # --- transient ---
    connected: bool = False           # the transport is up
    reestablished: bool = False       # we received the peer's channel_reestablish on this connection
    reestablish_sent: bool = False
    closing: ClosingNegotiation | None = None
    persisted_snapshot: bytes = field(default=b"", compare=False, repr=False)
    # The durable form as of the last Persist (persist.finish), its record built when first asked for.
    stored: StoredForm | None = field(default=None, compare=False, repr=False)

    # --- convenience -----------------------------------------------------------------------------

    @property
    def opener(self) -> Side:
        return self.params.opener

    @property
    def channel_type(self) -> ChannelType:
        return self.params.channel_type

    @property
    def funding_sat(self) -> int:
        return self.params.funding_sat

    @property
    def can_speak(self) -> bool:
        """Messages other than channel_reestablish may go out (BOLT 2: "MUST wait to receive the other
        node's channel_reestablish message before sending any other messages for that channel")."""
        return self.connected and self.reestablished

    def htlc(self, offerer: Side, htlc_id: int) -> Htlc | None:
        for h in self.htlcs:
            if h.offerer is offerer and h.htlc_id == htlc_id:
                return h
        return None

    # --- storage ---------------------------------------------------------------------------------

    @property
    def persisted_record(self) -> dict[str, Any] | None:
        """The record of the last Persist (what the runtime writes), None if none was made on this value's line."""
        stored = self.stored
        return None if stored is None else stored.record()

    def to_bytes(self) -> bytes:
        return encode_record(self.to_record())

    def to_record(self) -> dict[str, Any]:
        """The stored form as a JSON-ready dict (the peer's uncommitted updates left out)."""
        return _to_json(revert_peer_uncommitted(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> Channel:
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise StorageError(f"channel record is not JSON: {e}") from e
        return replace(cls.from_record(obj), persisted_snapshot=bytes(data))

    @classmethod
    def from_record(cls, obj: Any) -> Channel:
        """The channel from its stored form as a dict (what `to_record` gives; the runtime may store it in parts)."""
        if not isinstance(obj, dict) or obj.get("v") != FORMAT_VERSION:
            raise StorageError(f"unsupported channel record version {obj.get('v') if isinstance(obj, dict) else None}")
        try:
            ch = _from_json(obj)
        except (KeyError, TypeError, ValueError) as e:
            raise StorageError(f"malformed channel record: {e}") from e
        return replace(ch, stored=StoredForm.of(ch, obj))


# Fields that never reach the record (transient, or the stored form itself); every other field is durable, so a
# field added later counts as durable until declared here (at worst an extra write, never a missed one).
_NOT_DURABLE = frozenset(("connected", "reestablished", "reestablish_sent", "closing", "persisted_snapshot", "stored",
                          "update_id"))
# The fields that change on most steps first (plain numbers and flags): two keys that differ mostly differ there, and
# the comparison stops before reaching the HTLCs (an HTLC compared by value is a Python call).
_EARLY = ("next_seq", "local_ctn", "remote_ctn", "awaiting_revoke", "last_sent_revoke", "next_htlc_id_local",
          "next_htlc_id_remote", "balance_local_msat", "balance_remote_msat", "feerate_per_kw", "state")
_DURABLE = _EARLY + tuple(f.name for f in fields(Channel) if f.name not in _NOT_DURABLE and f.name not in _EARLY)
# durable_key(ch): the fields the record is made of, but update_id (compares two stored forms without building them).
durable_key = operator.attrgetter(*_DURABLE)


class _Fields:
    """The durable fields of a channel by name: what `_to_json` reads (it never reads the transient ones)."""


class StoredForm:
    """A channel's durable form: its durable fields (`key`, the peer's uncommitted updates reverted) and `update_id`,
    and its record, `_to_json` of them, built only when first asked for.

    persist.finish runs on every step, but the runtime writes once per group of steps (several inputs computed
    while the last write was in flight): building the record on each step, only to compare it with the last one,
    cost more than the write's own encoding (issue 18). A step instead compares the keys, the durable fields
    themselves (mostly the same objects as the last step's, so compared by identity); the record is built for the
    write, from the same fields. Equal fields give an equal record, so no change is ever missed. (Only the fields
    are kept, not the channel: a channel holds its StoredForm, which would hold the channel before it, and so on.)
    """

    __slots__ = ("key", "update_id", "_record")

    def __init__(self, key: tuple, update_id: int, record: dict[str, Any] | None = None) -> None:
        self.key = key
        self.update_id = update_id
        self._record = record

    @classmethod
    def of(cls, ch: Channel, record: dict[str, Any] | None = None) -> StoredForm:
        """The stored form of `ch` as it is (the caller reverted the peer's uncommitted updates, if any)."""
        return cls(durable_key(ch), ch.update_id, record)

    def record(self) -> dict[str, Any]:
        rec = self._record
        if rec is None:
            fs = _Fields()
            fs.__dict__.update(zip(_DURABLE, self.key), update_id=self.update_id)
            rec = self._record = _to_json(fs)  # type: ignore[arg-type]
        return rec


def encode_record(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def channel_id_from_outpoint(outpoint: OutPoint) -> bytes:
    """BOLT #2: channel_id is "the exclusive-OR of the funding_txid and the funding_output_index" (big-endian,
    the index altering the last 2 bytes), txid in the byte order the messages carry it."""
    cid = bytearray(outpoint.txid)
    cid[30] ^= (outpoint.vout >> 8) & 0xFF
    cid[31] ^= outpoint.vout & 0xFF
    return bytes(cid)


def set_state(ch: Channel, new: ChannelState) -> Channel:
    if new is ch.state:
        return ch
    if new not in TRANSITIONS[ch.state]:
        raise StateTransitionError(f"channel state {ch.state.value} -> {new.value} is not allowed")
    return replace(ch, state=new)


def revert_peer_uncommitted(ch: Channel) -> Channel:
    """Forget the peer's updates that no commitment_signed of theirs covers (BOLT 2, on disconnection).

    A fulfill's preimage is kept (BOLT #2: "a node MAY have already used the payment_preimage value"), so a
    retransmitted fulfill is not reported twice; the HTLC goes back to being committed.
    """
    # Called on every step (the stored form): one pass over the updates to find there is nothing to revert.
    uncommitted = RECEIVER_UNCOMMITTED
    for h in ch.htlcs:
        if h.state in uncommitted:
            break
    else:
        if not any(f.state is HtlcState.RCVD_ADD_HTLC for f in ch.fee_updates):
            return ch
    all_htlcs = ch.htlcs
    # Resumed from the previous result for this channel when its HTLCs are a prefix of these (the peer's
    # update_add_htlc appends one: with many in flight there is always one uncommitted, and every step asks): only
    # the new ones are looked at.
    start, saved = _REVERT_MEMO.resume(ch.channel_id, all_htlcs)
    htlcs, dropped = ([], None) if saved is None else (list(saved[0]), saved[1])
    for i in range(start, len(all_htlcs)):
        h = all_htlcs[i]
        state = h.state
        if state is HtlcState.RCVD_ADD_HTLC:
            if dropped is None or h.htlc_id < dropped:
                dropped = h.htlc_id
            continue
        if state is HtlcState.RCVD_REMOVE_HTLC:
            # the same reverted object for the same HTLC on every step (its record JSON is then cached by identity)
            h = _reverted(h)
        htlcs.append(h)
    kept = tuple(htlcs)
    _REVERT_MEMO.save(ch.channel_id, all_htlcs, (kept, dropped))
    fees = tuple(f for f in ch.fee_updates if f.state is not HtlcState.RCVD_ADD_HTLC)
    next_remote = dropped if dropped is not None else ch.next_htlc_id_remote
    return replace(ch, htlcs=kept, fee_updates=fees, next_htlc_id_remote=next_remote)


# Per channel_id: (the HTLCs revert_peer_uncommitted kept, the least id it dropped) of the HTLCs it was last given.
_REVERT_MEMO = PrefixMemo(1024)


def _reverted_removal(h: Htlc) -> Htlc:
    keep = h.removal if (h.removal is not None and h.removal.kind is RemovalKind.FULFILL) else None
    return replace(h, state=HtlcState.SENT_ADD_ACK_REVOCATION, removal=keep)


_reverted = ByIdentity(_reverted_removal, 4096)


# --- JSON form ------------------------------------------------------------------------------------

def _hex(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def _unhex(s: str | None) -> bytes | None:
    return None if s is None else bytes.fromhex(s)


def _pubkeys_json(pk: ChannelPubkeys) -> list[str]:
    return [pk.funding_pubkey.hex(), pk.revocation_basepoint.hex(), pk.payment_basepoint.hex(),
            pk.delayed_payment_basepoint.hex(), pk.htlc_basepoint.hex()]


def _config_json(c: ChannelConfig) -> list[Any]:
    return [c.dust_limit_sat, c.max_htlc_value_in_flight_msat, c.channel_reserve_sat, c.htlc_minimum_msat,
            c.to_self_delay, c.max_accepted_htlcs, c.upfront_shutdown_script.hex()]


def _config_from(v: list[Any]) -> ChannelConfig:
    return ChannelConfig(SatInt(int(v[0])), MsatInt(int(v[1])), SatInt(int(v[2])), MsatInt(int(v[3])), int(v[4]), int(v[5]), bytes.fromhex(v[6]))


class _OnionHex:
    """An HTLC's onion (1,366 bytes) as hex, made once for all the versions of its record (each state change of
    the HTLC is a new record dict: ~5 us of hex each), and back to the same bytes for the runtime's write
    (`onion_bytes`: the onion row is written from the record) without parsing the hex again. Entries hold their
    key objects (no id is reused while cached); cleared when full."""

    __slots__ = ("max", "by_onion", "by_hex")

    def __init__(self, max_entries: int) -> None:
        self.max = max_entries
        self.by_onion: dict[int, tuple[bytes, str]] = {}
        self.by_hex: dict[int, tuple[str, bytes]] = {}

    def hex(self, onion: bytes) -> str:
        e = self.by_onion.get(id(onion))
        if e is not None and e[0] is onion:
            return e[1]
        text = onion.hex()
        if len(self.by_onion) >= self.max:
            self.by_onion.clear()
            self.by_hex.clear()
        self.by_onion[id(onion)] = (onion, text)
        self.by_hex[id(text)] = (text, onion)
        return text

    def onion(self, text: str) -> bytes:
        e = self.by_hex.get(id(text))
        if e is not None and e[0] is text:
            return e[1]
        return bytes.fromhex(text)


_onions = _OnionHex(1024)
onion_bytes = _onions.onion   # a record's HTLC "on" (hex) as bytes


@lru_cache(maxsize=4096)
def _htlc_json_by_value(h: Htlc) -> dict[str, Any]:
    """One HTLC's stored form (cached: an HTLC is re-encoded on every step of its channel otherwise; callers
    never mutate the dict)."""
    d: dict[str, Any] = {"o": h.offerer is Side.LOCAL and "l" or "r", "id": h.htlc_id, "a": h.amount_msat,
                         "h": h.payment_hash.hex(), "c": h.cltv_expiry, "on": _onions.hex(h.onion), "s": int(h.state),
                         "q": h.add_seq}
    if h.path_key is not None:
        d["pk"] = h.path_key.hex()
    if h.preimage_reported:
        d["pr"] = 1
    if h.removal is not None:
        r = h.removal
        d["rm"] = [int(r.kind), r.seq, r.preimage.hex(), r.reason.hex(), r.sha256_of_onion.hex(), r.failure_code]
    return d


def _htlc_from(d: dict[str, Any]) -> Htlc:
    removal = None
    if "rm" in d:
        r = d["rm"]
        removal = Removal(RemovalKind(r[0]), int(r[1]), bytes.fromhex(r[2]), bytes.fromhex(r[3]),
                          bytes.fromhex(r[4]), int(r[5]))
    return Htlc(offerer=Side.LOCAL if d["o"] == "l" else Side.REMOTE, htlc_id=int(d["id"]),
                amount_msat=MsatInt(int(d["a"])), payment_hash=bytes.fromhex(d["h"]), cltv_expiry=int(d["c"]),
                onion=bytes.fromhex(d["on"]), state=HtlcState(d["s"]), add_seq=int(d["q"]), removal=removal,
                path_key=_unhex(d.get("pk")), preimage_reported=bool(d.get("pr", 0)))


@lru_cache(maxsize=512)
def _static_json(channel_id: bytes, p: ChannelParams, local: ChannelConfig, remote: ChannelConfig, announce: bool,
                 minimum_depth: int) -> tuple[tuple[str, Any], ...]:
    """The part of the record fixed at opening (cached: it is re-encoded on every step otherwise)."""
    return tuple({
        "channel_id": channel_id.hex(),
        "funding": [p.funding_outpoint.txid.hex(), p.funding_outpoint.vout, p.funding_sat],
        "opener": p.opener.value,
        "channel_type": p.channel_type.value,
        "local_pubkeys": _pubkeys_json(p.local_pubkeys),
        "remote_pubkeys": _pubkeys_json(p.remote_pubkeys),
        "local": _config_json(local),
        "remote": _config_json(remote),
        "announce": announce,
        "minimum_depth": minimum_depth,
    }.items())


_STATIC_BY_PARAMS: dict[int, tuple[ChannelParams, tuple[Any, ...], dict[str, Any]]] = {}


def _static_of(ch: Channel) -> dict[str, Any]:
    key = (ch.params, ch.local, ch.remote, ch.channel_id, ch.announce, ch.minimum_depth)
    e = _STATIC_BY_PARAMS.get(id(ch.params))
    if e is not None and e[0] is ch.params and e[1] == key:
        return e[2]
    value = dict(_static_json(ch.channel_id, ch.params, ch.local, ch.remote, ch.announce, ch.minimum_depth))
    if len(_STATIC_BY_PARAMS) >= 1024:
        _STATIC_BY_PARAMS.clear()
    _STATIC_BY_PARAMS[id(ch.params)] = (ch.params, key, value)
    return value


# Identity caches (values.ByIdentity) in front of the value cache above: the same objects come back on every
# step of a channel (unchanged HTLCs and HTLC tuples, the last signatures). Dead HTLC versions kept alive here share
# their onion with the live version; a removed HTLC's onion lives until a clear.
_htlc_json = ByIdentity(_htlc_json_by_value, 4096)
_htlcs_json = ByIdentity(lambda htlcs: [_htlc_json(h) for h in htlcs], 512)
_sigs_hex = ByIdentity(lambda sigs: [s.hex() for s in sigs], 512)


def _to_json(ch: Channel) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        **_static_of(ch),
        "state": ch.state._value_,  # (Enum.value is a descriptor call; _value_ the member's attribute)
        "balance": [ch.balance_local_msat, ch.balance_remote_msat],
        "feerate": ch.feerate_per_kw,
        "htlcs": _htlcs_json(ch.htlcs),
        "fee_updates": [[f.feerate_per_kw, int(f.state), f.seq] for f in ch.fee_updates],
        "next_ids": [ch.next_htlc_id_local, ch.next_htlc_id_remote, ch.next_seq],
        "ctn": [ch.local_ctn, ch.remote_ctn],
        "local_sigs": [ch.local_commit_sig.hex(), _sigs_hex(ch.local_htlc_sigs)],
        "remote_points": [ch.remote_point.hex(), _hex(ch.remote_next_point), _hex(ch.remote_prev_point)],
        "awaiting_revoke": ch.awaiting_revoke,
        "remote_secrets": ch.remote_secrets.to_hex(),
        "last_sent_revoke": ch.last_sent_revoke,
        "ready": [ch.channel_ready_sent, ch.channel_ready_received],
        "scid": ch.short_channel_id,
        "shutdown": [ch.local_shutdown_script.hex(), ch.shutdown_requested, ch.shutdown_sent,
                     _hex(ch.remote_shutdown_script)],
        "closing_tx": ch.closing_tx.hex(),
        "update_id": ch.update_id,
    }


def _pubkeys_from(v: list[str]) -> ChannelPubkeys:
    return ChannelPubkeys(*(bytes.fromhex(x) for x in v))


def _from_json(d: dict[str, Any]) -> Channel:
    local, remote = _config_from(d["local"]), _config_from(d["remote"])
    txid, vout, funding_sat = d["funding"]
    params = ChannelParams(
        funding_outpoint=OutPoint(bytes.fromhex(txid), int(vout)), funding_sat=SatInt(int(funding_sat)),
        opener=Side(d["opener"]), channel_type=ChannelType(d["channel_type"]),
        local_pubkeys=_pubkeys_from(d["local_pubkeys"]), remote_pubkeys=_pubkeys_from(d["remote_pubkeys"]),
        local_dust_limit_sat=local.dust_limit_sat, remote_dust_limit_sat=remote.dust_limit_sat,
        local_to_self_delay=remote.to_self_delay, remote_to_self_delay=local.to_self_delay)
    sig, htlc_sigs = d["local_sigs"]
    rp, rnp, rpp = d["remote_points"]
    lss, req, sent, rss = d["shutdown"]
    return Channel(
        channel_id=bytes.fromhex(d["channel_id"]), state=ChannelState(d["state"]), params=params,
        local=local, remote=remote, announce=bool(d["announce"]), minimum_depth=int(d["minimum_depth"]),
        balance_local_msat=MsatInt(int(d["balance"][0])), balance_remote_msat=MsatInt(int(d["balance"][1])),
        feerate_per_kw=int(d["feerate"]), htlcs=tuple(_htlc_from(h) for h in d["htlcs"]),
        fee_updates=tuple(FeeUpdate(int(f[0]), HtlcState(f[1]), int(f[2])) for f in d["fee_updates"]),
        next_htlc_id_local=int(d["next_ids"][0]), next_htlc_id_remote=int(d["next_ids"][1]),
        next_seq=int(d["next_ids"][2]), local_ctn=int(d["ctn"][0]), remote_ctn=int(d["ctn"][1]),
        local_commit_sig=bytes.fromhex(sig), local_htlc_sigs=tuple(bytes.fromhex(s) for s in htlc_sigs),
        remote_point=bytes.fromhex(rp), remote_next_point=_unhex(rnp), remote_prev_point=_unhex(rpp),
        awaiting_revoke=bool(d["awaiting_revoke"]),
        remote_secrets=ShachainStore.from_bytes(bytes.fromhex(d["remote_secrets"])),
        last_sent_revoke=bool(d["last_sent_revoke"]), channel_ready_sent=bool(d["ready"][0]),
        channel_ready_received=bool(d["ready"][1]), short_channel_id=d["scid"],
        local_shutdown_script=bytes.fromhex(lss), shutdown_requested=bool(req), shutdown_sent=bool(sent),
        remote_shutdown_script=_unhex(rss), closing_tx=bytes.fromhex(d["closing_tx"]),
        update_id=int(d["update_id"]),
    )
