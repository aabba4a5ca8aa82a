"""BOLT 3 commitment transactions: a pure builder over plain values.

The channel state machine describes a channel once (`ChannelParams`, from our node's point of view) and,
for each new commitment, calls

    build_commitment_tx(params, owner, commitment_number, per_commitment_point, feerate_per_kw,
                        local_balance_msat, remote_balance_msat, htlcs) -> CommitmentTx

where `owner` says whose commitment it is (Side.LOCAL: ours, spent by us; Side.REMOTE: the peer's),
balances are our node's and the peer's (excluding in-flight HTLCs), and each `HtlcSpec.offerer` says
which node offered that HTLC. The result carries the unsigned transaction, the untrimmed HTLCs with their
output indexes in output order (the order of `commitment_signed.htlc_signatures`), the trimmed HTLCs,
and methods to sign, verify and finalise it. `htlc_transactions(ctx)` builds the second-stage HTLC
transactions.

BOLT 3 names the commitment's owner "local" and the other party "remote"; inside this module
`owner`/`counterparty` are used for that, and LOCAL/REMOTE always mean our node/the peer.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Iterable, Sequence

from ampere.ln.channel.htlc_tx import (
    HtlcTx,
    HtlcTxKind,
    build_htlc_tx,
    htlc_output_script_pubkey,
    htlc_success_fee_sat,
    htlc_timeout_fee_sat,
)
from ampere.ln.channel.keys import (
    MAX_SECRET_INDEX,
    ChannelPubkeys,
    CommitmentKeys,
    OwnKeys,
    commitment_keys,
    ecdsa_sign,
    ecdsa_verify,
)
from ampere.ln.channel.scripts import (
    ANCHOR_OUTPUT_SAT,
    ChannelType,
    anchor_script,
    funding_script,
    funding_witness,
    offered_htlc_script,
    received_htlc_script,
    to_local_script,
    to_remote_script_pubkey,
)
from ampere.ln.channel.values import make
from ampere.primitives.amount import MsatInt, SatInt, msat_to_sat, sat_to_msat
from ampere.primitives.crypto import sha256, sha256d
from ampere.primitives.script import p2wsh
from ampere.primitives.tx import (
    SIGHASH_ALL,
    OutPoint,
    Transaction,
    TxIn,
    TxOut,
    bip143_sighash,
    write_compact_size,
)

__all__ = [
    "CommitmentError",
    "Side",
    "HtlcSpec",
    "ChannelParams",
    "HtlcOutput",
    "CommitmentTx",
    "COMMITMENT_BASE_WEIGHT",
    "COMMITMENT_WEIGHT_PER_HTLC",
    "commitment_fee_sat",
    "is_htlc_trimmed",
    "obscured_commitment_number",
    "build_commitment_tx",
    "htlc_transactions",
]

# BOLT #3: "Commitment weight (no option_anchors): 724 + 172 * num-untrimmed-htlc-outputs;
#           Commitment weight (option_anchors): 1124 + 172 * num-untrimmed-htlc-outputs"
COMMITMENT_BASE_WEIGHT = {ChannelType.STATIC_REMOTEKEY: 724, ChannelType.ANCHORS: 1124}
COMMITMENT_WEIGHT_PER_HTLC = 172
MAX_FEERATE_PER_KW = 0xFFFFFFFF  # update_fee.feerate_per_kw is a u32


class CommitmentError(ValueError):
    """Inputs that do not describe a valid commitment (negative or unbalanced amounts, bad ids or ranges)."""


class Side(enum.Enum):
    """A node of the channel, from our node's point of view."""

    LOCAL = "local"    # our node
    REMOTE = "remote"  # the peer

    def other(self) -> Side:
        return Side.REMOTE if self is Side.LOCAL else Side.LOCAL

    # Enum members are singletons compared by identity: hash them by identity too, in C (Enum.__hash__ is a
    # Python function, and Side keys dicts on the commitment path for every HTLC).
    __hash__ = object.__hash__


@dataclass(frozen=True)
class HtlcSpec:
    """One HTLC committed in the channel. `htlc_id` is unique per offerer (BOLT 2 `id`)."""

    htlc_id: int
    offerer: Side          # the node that sent update_add_htlc
    amount_msat: MsatInt
    payment_hash: bytes    # 32 bytes
    cltv_expiry: int

    @property
    def amount_sat(self) -> SatInt:
        # BOLT #3: "The amounts for each output MUST be rounded down to whole satoshis."
        return msat_to_sat(self.amount_msat)


@dataclass(frozen=True)
class ChannelParams:
    """What stays fixed over a channel's life, as our node sees it."""

    funding_outpoint: OutPoint       # txid in internal byte order
    funding_sat: SatInt
    opener: Side                     # the node that sent open_channel: it pays the commitment fee and anchors
    channel_type: ChannelType
    local_pubkeys: ChannelPubkeys    # ours
    remote_pubkeys: ChannelPubkeys   # the peer's
    local_dust_limit_sat: SatInt     # our dust_limit_satoshis: applies to OUR commitment
    remote_dust_limit_sat: SatInt    # the peer's: applies to THEIR commitment
    # BOLT 2 to_self_delay is set by one node for the *other* node's to-self outputs, so:
    local_to_self_delay: int         # CSV delay on OUR commitment's to_local (the to_self_delay the peer sent)
    remote_to_self_delay: int        # CSV delay on THEIR commitment's to_local (the to_self_delay we sent)

    def __post_init__(self) -> None:
        if self.funding_sat <= 0:
            raise CommitmentError("funding_sat must be positive")
        for name in ("local_dust_limit_sat", "remote_dust_limit_sat"):
            if getattr(self, name) < 0:
                raise CommitmentError(f"{name} must not be negative")
        for name in ("local_to_self_delay", "remote_to_self_delay"):
            if not 0 <= getattr(self, name) <= 0xFFFF:
                raise CommitmentError(f"{name} must fit in 16 bits")

    def pubkeys(self, side: Side) -> ChannelPubkeys:
        return self.local_pubkeys if side is Side.LOCAL else self.remote_pubkeys

    def dust_limit_sat(self, owner: Side) -> SatInt:
        """BOLT #3 trims with the dust_limit_satoshis "set by the transaction owner"."""
        return self.local_dust_limit_sat if owner is Side.LOCAL else self.remote_dust_limit_sat

    def to_self_delay(self, owner: Side) -> int:
        return self.local_to_self_delay if owner is Side.LOCAL else self.remote_to_self_delay

    # cached_property: computed once per ChannelParams (a frozen value; dataclasses.replace builds a new one, and
    # equality and hashing look at the fields only). Both were rebuilt for every commitment.
    @cached_property
    def funding_script(self) -> bytes:
        return funding_script(self.local_pubkeys.funding_pubkey, self.remote_pubkeys.funding_pubkey)

    @cached_property
    def obscuring_factor(self) -> int:
        """BOLT #3: the lower 48 bits of SHA256(payment_basepoint from open_channel || payment_basepoint from
        accept_channel)."""
        opener, acceptor = self.pubkeys(self.opener), self.pubkeys(self.opener.other())
        digest = sha256(opener.payment_basepoint + acceptor.payment_basepoint)
        return int.from_bytes(digest[-6:], "big")

    @cached_property
    def sighash_parts(self) -> tuple[bytes, bytes]:
        return sighash_parts(self.funding_outpoint, self.funding_script, self.funding_sat)


_SIGHASH_ALL_LE = SIGHASH_ALL.to_bytes(4, "little")


def sighash_parts(funding_outpoint: OutPoint, funding_script: bytes, funding_sat: int) -> tuple[bytes, bytes]:
    """The BIP143 preimage fields that are the same for every commitment of a channel (one input: the funding
    output; version 2): nVersion || hashPrevouts, and outpoint || scriptCode || amount."""
    outpoint = funding_outpoint.txid + funding_outpoint.vout.to_bytes(4, "little")
    return ((2).to_bytes(4, "little") + sha256d(outpoint),
            outpoint + write_compact_size(len(funding_script)) + funding_script + funding_sat.to_bytes(8, "little"))


def obscured_commitment_number(params: ChannelParams, commitment_number: int) -> int:
    """BOLT #3: "The 48-bit commitment number is obscured by XOR with the lower 48 bits of" the factor."""
    return commitment_number ^ params.obscuring_factor


def commitment_fee_sat(feerate_per_kw: int, num_untrimmed_htlcs: int, channel_type: ChannelType) -> SatInt:
    """BOLT #3 base fee: "Start with weight = 724 (1124 if option_anchors applies). For each committed HTLC, if that
    output is not trimmed ..., add 172 to weight. Multiply feerate_per_kw by weight, divide by 1000 (rounding down)."
    """
    weight = COMMITMENT_BASE_WEIGHT[channel_type] + COMMITMENT_WEIGHT_PER_HTLC * num_untrimmed_htlcs
    return SatInt(feerate_per_kw * weight // 1000)


def is_htlc_trimmed(amount_msat: MsatInt, offered_by_owner: bool, dust_limit_sat: SatInt, feerate_per_kw: int,
                    channel_type: ChannelType) -> bool:
    """BOLT #3: for every offered HTLC, "if the HTLC amount minus the HTLC-timeout fee would be less than
    dust_limit_satoshis set by the transaction owner: MUST NOT contain that output"; likewise received HTLCs with
    the HTLC-success fee. (With option_anchors the HTLC transaction fees are 0.)"""
    fee = (htlc_timeout_fee_sat if offered_by_owner else htlc_success_fee_sat)(feerate_per_kw, channel_type)
    return msat_to_sat(amount_msat) - fee < dust_limit_sat


@dataclass(frozen=True)
class HtlcOutput:
    """An untrimmed HTLC and its output in the commitment transaction."""

    htlc: HtlcSpec
    output_index: int
    amount_sat: int
    witness_script: bytes
    offered_by_owner: bool   # True: the owner offered it (its HTLC-timeout tx); False: received (HTLC-success)


@dataclass(frozen=True)
class CommitmentTx:
    """An unsigned commitment transaction and what was decided while building it."""

    owner: Side
    commitment_number: int
    feerate_per_kw: int
    channel_type: ChannelType
    keys: CommitmentKeys              # from the owner's point of view
    to_self_delay: int
    funding_sat: int
    funding_script: bytes
    tx: Transaction                   # unsigned (empty witness); do not mutate
    htlc_outputs: tuple[HtlcOutput, ...]   # ascending output index
    trimmed_htlcs: tuple[HtlcSpec, ...]
    to_local_output_index: int | None      # the owner's delayed output
    to_remote_output_index: int | None     # the counterparty's output
    local_anchor_output_index: int | None  # the owner's anchor
    remote_anchor_output_index: int | None
    base_fee_sat: int                      # BOLT 3 "base fee" (what the opener pays, before trimming)

    @property
    def fee_sat(self) -> SatInt:
        """The actual fee: base fee plus trimmed HTLCs and outputs, and rounding."""
        return SatInt(self.funding_sat - sum(o.value for o in self.tx.outputs))

    # The transaction is never mutated (signed() works on a copy), so what is computed from it is kept in the
    # instance dict: a commitment's sighash is asked for by its signature or its check (and again by some
    # callers), its txid by its HTLC transactions. The serialized outputs serve both.
    def _outputs_bytes(self) -> bytes:
        d = self.__dict__
        out = d.get("_outs")
        if out is None:
            out = d["_outs"] = b"".join([o.serialize() for o in self.tx.outputs])
        return out

    @property
    def txid(self) -> bytes:
        d = self.__dict__
        txid = d.get("_txid")
        if txid is None:
            tx = self.tx
            txin = tx.inputs[0]
            # tx.txid() of a one-input commitment without the general serializer: the legacy serialization
            # (no witness), its empty scriptSig a 0 byte (the tests compare it with tx.txid()).
            txid = d["_txid"] = sha256d(b"".join((
                tx.version.to_bytes(4, "little", signed=True), b"\x01", txin.prevout.txid,
                txin.prevout.vout.to_bytes(4, "little"), b"\x00", txin.sequence.to_bytes(4, "little"),
                write_compact_size(len(tx.outputs)), self._outputs_bytes(), tx.locktime.to_bytes(4, "little"))))
        return txid

    def sighash(self) -> bytes:
        """BIP143 SIGHASH_ALL of the funding input (what both funding keys sign): primitives.tx.bip143_sighash's
        bytes (the tests and BOLT 3 vectors compare them), with the fields fixed per channel computed once
        (ChannelParams.sighash_parts) and this commitment's nSequence, outputs and nLockTime."""
        d = self.__dict__
        digest = d.get("_sighash")
        if digest is None:
            tx = self.tx
            parts = d.get("_parts")
            if parts is None:  # (not from build_commitment_tx: the general computation)
                digest = d["_sighash"] = bip143_sighash(tx, 0, self.funding_script, self.funding_sat, SIGHASH_ALL)
                return digest
            head, middle = parts
            sequence = tx.inputs[0].sequence.to_bytes(4, "little")
            digest = d["_sighash"] = sha256d(b"".join((
                head, sha256d(sequence), middle, sequence, sha256d(self._outputs_bytes()),
                tx.locktime.to_bytes(4, "little"), _SIGHASH_ALL_LE)))
        return digest

    def sign(self, funding_privkey: bytes) -> bytes:
        """DER signature (SIGHASH_ALL, no sighash byte) by one funding key: what commitment_signed carries."""
        return ecdsa_sign(funding_privkey, self.sighash())

    def verify(self, funding_pubkey: bytes, der_signature: bytes) -> bool:
        return ecdsa_verify(funding_pubkey, der_signature, self.sighash())

    def signed(self, owner_sig: bytes, counterparty_sig: bytes) -> Transaction:
        """The broadcastable transaction (a copy), with both DER signatures.

        BOLT #3: "txin[0] witness: 0 <signature_for_pubkey1> <signature_for_pubkey2>"
        """
        tx = self.tx.copy()
        tx.inputs[0].witness = funding_witness(
            self.keys.local_funding_pubkey, owner_sig + bytes([SIGHASH_ALL]),
            self.keys.remote_funding_pubkey, counterparty_sig + bytes([SIGHASH_ALL]))
        return tx


def _check_inputs(params: ChannelParams, commitment_number: int, feerate_per_kw: int, local_balance_msat: MsatInt,
                  remote_balance_msat: MsatInt, htlcs: Sequence[HtlcSpec]) -> None:
    if not 0 <= commitment_number <= MAX_SECRET_INDEX:
        raise CommitmentError(f"commitment number {commitment_number} out of the 48-bit range")
    if not 0 <= feerate_per_kw <= MAX_FEERATE_PER_KW:
        raise CommitmentError(f"feerate_per_kw {feerate_per_kw} out of range")
    if local_balance_msat < 0 or remote_balance_msat < 0:
        raise CommitmentError("balances must not be negative")
    seen: set[tuple[Side, int]] = set()
    total = local_balance_msat + remote_balance_msat
    for h in htlcs:
        if not isinstance(h.offerer, Side):
            raise CommitmentError("HtlcSpec.offerer must be a Side")
        if (h.offerer, h.htlc_id) in seen:
            raise CommitmentError(f"duplicate HTLC id {h.htlc_id} offered by {h.offerer.value}")
        seen.add((h.offerer, h.htlc_id))
        if h.amount_msat <= 0:
            raise CommitmentError(f"HTLC {h.htlc_id} amount must be positive")
        if len(h.payment_hash) != 32:
            raise CommitmentError(f"HTLC {h.htlc_id} payment_hash must be 32 bytes")
        if not 0 <= h.cltv_expiry <= 0xFFFFFFFF:
            raise CommitmentError(f"HTLC {h.htlc_id} cltv_expiry out of range")
        total += h.amount_msat
    if total != sat_to_msat(params.funding_sat):
        raise CommitmentError(f"balances and HTLCs sum to {total} msat, not the channel's "
                              f"{sat_to_msat(params.funding_sat)} msat")


# The outputs that do not depend on the per-commitment point (static_remotekey's to_remote, the anchors): the
# same scriptPubKey on every commitment of a channel.
@lru_cache(maxsize=1024)
def _to_remote_spk(remote_pubkey: bytes, ctype: ChannelType) -> bytes:
    return to_remote_script_pubkey(remote_pubkey, ctype)[0]


@lru_cache(maxsize=1024)
def _anchor_spk(funding_pubkey: bytes) -> bytes:
    return p2wsh(anchor_script(funding_pubkey))


def build_commitment_tx(params: ChannelParams, owner: Side, commitment_number: int, per_commitment_point: bytes,
                        feerate_per_kw: int, local_balance_msat: MsatInt, remote_balance_msat: MsatInt,
                        htlcs: Iterable[HtlcSpec], own: OwnKeys | None = None) -> CommitmentTx:
    """Build the commitment transaction number `commitment_number` held by `owner`.

    - `per_commitment_point`: the owner's point for this commitment number.
    - `local_balance_msat`/`remote_balance_msat`: what our node / the peer owns, not counting HTLCs.
    - `htlcs`: every HTLC committed in this commitment (trimmed or not), `offerer` from our node's view.
    - `own`: our signer, to compute our side's keys with its secrets (keys.OwnKeys; the same keys).

    Follows BOLT 3 "Commitment Transaction Construction"; raises CommitmentError on inconsistent inputs.
    """
    htlcs = tuple(htlcs)
    _check_inputs(params, commitment_number, feerate_per_kw, local_balance_msat, remote_balance_msat, htlcs)
    ctype = params.channel_type
    counterparty = owner.other()
    keys = commitment_keys(params.pubkeys(owner), params.pubkeys(counterparty), per_commitment_point, own)
    dust_limit = params.dust_limit_sat(owner)
    to_self_delay = params.to_self_delay(owner)
    owner_msat, counterparty_msat = ((local_balance_msat, remote_balance_msat) if owner is Side.LOCAL
                                     else (remote_balance_msat, local_balance_msat))

    # 1. BOLT #3: "Initialize the commitment transaction input and locktime": upper 8 bits of the locktime are
    #    0x20 and of the sequence 0x80; they carry the lower and upper 24 bits of the obscured number.
    obscured = obscured_commitment_number(params, commitment_number)
    txin = TxIn(params.funding_outpoint, b"", (0x80 << 24) | (obscured >> 24) & 0xFFFFFF)
    locktime = (0x20 << 24) | (obscured & 0xFFFFFF)

    # 2. "Calculate which committed HTLCs need to be trimmed".
    #    is_htlc_trimmed with its two thresholds computed once: "amount minus the HTLC-timeout (offered by the
    #    owner) or HTLC-success (received) fee less than dust_limit_satoshis" is, in msat, amount_msat <
    #    (dust_limit + fee) * 1000 (the amount rounds down to whole satoshis first).
    untrimmed: list[tuple[HtlcSpec, bool]] = []
    trimmed: list[HtlcSpec] = []
    if htlcs:
        offered_min = sat_to_msat(dust_limit + htlc_timeout_fee_sat(feerate_per_kw, ctype))
        received_min = sat_to_msat(dust_limit + htlc_success_fee_sat(feerate_per_kw, ctype))
        for h in htlcs:
            offered_by_owner = h.offerer is owner
            if h.amount_msat < (offered_min if offered_by_owner else received_min):
                trimmed.append(h)
            else:
                untrimmed.append((h, offered_by_owner))

    # 3. "Calculate the base commitment transaction fee" and 4. "Subtract this base fee from the funder ...
    #    If option_anchors applies ..., also subtract two times the fixed anchor size of 330 sats from the funder".
    base_fee = commitment_fee_sat(feerate_per_kw, len(untrimmed), ctype)
    opener_pays_msat = sat_to_msat(base_fee + (2 * ANCHOR_OUTPUT_SAT if ctype.anchors else 0))
    if params.opener is owner:
        owner_msat = MsatInt(max(0, owner_msat - opener_pays_msat))
    else:
        counterparty_msat = MsatInt(max(0, counterparty_msat - opener_pays_msat))

    # Outputs as (TxOut, cltv for the BIP69 tie-break, tag).
    # The tag: "to_local"/"to_remote"/an anchor, or (htlc, witness script, offered by the owner).
    outputs: list[tuple[TxOut, int, str | tuple[Any, bytes, bool]]] = []
    for h, offered_by_owner in untrimmed:
        if offered_by_owner:
            ws = offered_htlc_script(keys.revocation_pubkey, keys.local_htlc_pubkey, keys.remote_htlc_pubkey,
                                     h.payment_hash, ctype)
        else:
            ws = received_htlc_script(keys.revocation_pubkey, keys.local_htlc_pubkey, keys.remote_htlc_pubkey,
                                      h.payment_hash, h.cltv_expiry, ctype)
        outputs.append((TxOut(h.amount_sat, p2wsh(ws)), h.cltv_expiry, (h, ws, offered_by_owner)))

    # 6./7. "If the to_local amount is greater or equal to dust_limit_satoshis, add a to_local output" (same for
    #    to_remote); amounts rounded down to whole satoshis.
    to_local_sat, to_remote_sat = msat_to_sat(owner_msat), msat_to_sat(counterparty_msat)
    has_to_local, has_to_remote = to_local_sat >= dust_limit, to_remote_sat >= dust_limit
    if has_to_local:
        ws = to_local_script(keys.revocation_pubkey, to_self_delay, keys.local_delayed_pubkey)
        outputs.append((TxOut(to_local_sat, p2wsh(ws)), 0, "to_local"))
    if has_to_remote:
        outputs.append((TxOut(to_remote_sat, _to_remote_spk(keys.remote_pubkey, ctype)), 0, "to_remote"))

    # 8. "if to_local exists or there are untrimmed HTLCs, add a to_local_anchor output" (same for to_remote).
    if ctype.anchors:
        if has_to_local or untrimmed:
            outputs.append((TxOut(ANCHOR_OUTPUT_SAT, _anchor_spk(keys.local_funding_pubkey)), 0, "local_anchor"))
        if has_to_remote or untrimmed:
            outputs.append((TxOut(ANCHOR_OUTPUT_SAT, _anchor_spk(keys.remote_funding_pubkey)), 0, "remote_anchor"))

    # 9. BOLT #3 ordering: by value, then scriptpubkey (memcmp of the common prefix, shorter first: exactly
    #    Python's bytes ordering), "finally, for HTLC outputs, in increasing cltv_expiry order".
    outputs.sort(key=lambda o: (o[0].value, o[0].script_pubkey, o[1]))

    htlc_outputs: list[HtlcOutput] = []
    indexes: dict[str, int] = {}
    for index, (txout, _, tag) in enumerate(outputs):
        if isinstance(tag, str):
            indexes[tag] = index
        else:
            h, ws, offered_by_owner = tag
            htlc_outputs.append(make(HtlcOutput, htlc=h, output_index=index, amount_sat=txout.value,
                                     witness_script=ws, offered_by_owner=offered_by_owner))

    tx = Transaction(version=2, inputs=[txin], outputs=[o[0] for o in outputs], locktime=locktime)
    if sum(o.value for o in tx.outputs) > params.funding_sat:
        # Only possible with anchors when the opener's balance cannot even cover them: BOLT 2's reserve and
        # fee checks never let a channel get there, so refuse rather than build an invalid transaction.
        raise CommitmentError("the opener cannot pay for the anchor outputs")
    # values.make: the frozen dataclass without its per-field object.__setattr__ (one commitment per signature)
    ctx = make(
        CommitmentTx, owner=owner, commitment_number=commitment_number, feerate_per_kw=feerate_per_kw, channel_type=ctype,
        keys=keys, to_self_delay=to_self_delay, funding_sat=params.funding_sat, funding_script=params.funding_script,
        tx=tx, htlc_outputs=tuple(htlc_outputs), trimmed_htlcs=tuple(trimmed),
        to_local_output_index=indexes.get("to_local"), to_remote_output_index=indexes.get("to_remote"),
        local_anchor_output_index=indexes.get("local_anchor"), remote_anchor_output_index=indexes.get("remote_anchor"),
        base_fee_sat=base_fee,
    )
    ctx.__dict__["_parts"] = params.sighash_parts  # (see CommitmentTx.sighash)
    return ctx


def htlc_transactions(ctx: CommitmentTx) -> list[HtlcTx]:
    """The HTLC-timeout/HTLC-success transaction of every untrimmed HTLC, in commitment output order.

    BOLT #2 `commitment_signed.htlc_signatures` carries the counterparty's signatures in this order.
    """
    if not ctx.htlc_outputs:
        return []  # (no txid to compute: half the commitments of a one-HTLC round have no HTLC output)
    txid = ctx.txid
    out_script = htlc_output_script_pubkey(ctx.keys, ctx.to_self_delay)  # (once: the same for every HTLC)
    return [
        build_htlc_tx(HtlcTxKind.TIMEOUT if out.offered_by_owner else HtlcTxKind.SUCCESS,
                      htlc_id=out.htlc.htlc_id, commitment_txid=txid, output_index=out.output_index,
                      amount_sat=out.amount_sat, cltv_expiry=out.htlc.cltv_expiry, witness_script=out.witness_script,
                      keys=ctx.keys, to_self_delay=ctx.to_self_delay, feerate_per_kw=ctx.feerate_per_kw,
                      channel_type=ctx.channel_type, output_script=out_script)
        for out in ctx.htlc_outputs
    ]
