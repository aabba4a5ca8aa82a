"""What a transaction spending a channel's funding output means for us, and the sweeps that claim our part.

Pure functions over a `Channel` (ampere.ln.channel.state) and transactions: no I/O, no asyncio. The runtime
(`ampere.node.onchain.resolver.OnchainResolver`) decides when to call them and what to do with the results.

    classify_spend(ch, our_point, tx, local_commitment_txid=None) -> SpendAnalysis
        our_point(n): our per_commitment_point for commitment number n (ChannelSigner.commitment_point)
    build_sweep(spend_txid, output, channel_type, our_payment_basepoint, dest_script, feerate_perkw)
        -> unsigned Transaction (raises SweepNotWorthIt when the output cannot pay for its own spend)
    sign_sweep(tx, output, channel_type, signer) -> signed Transaction

How a funding spend is recognised (BOLT 3 "Commitment Transaction"):
- A commitment has one input, version 2, locktime upper byte 0x20 and sequence upper byte 0x80, the lower
  bytes carrying the obscured commitment number. Anything else spending the funding output is a mutual close
  (it can only be signed by both funding keys: it is a closing transaction we signed).
- Our commitment pays the peer's to_remote to the PEER's payment_basepoint and our to_local to the delayed
  key of OUR per_commitment_point for that number; the peer's commitment pays our to_remote to OUR
  payment_basepoint (option_static_remotekey: "The remotepubkey is simply the remote node's
  payment_basepoint"). Those scripts tell the two apart without knowing the HTLC set of that commitment.
- On the peer's commitment, a number for which we hold the per-commitment secret is a revoked one.

HTLC outputs are recognised by rebuilding their scripts from `HtlcStub`s (every HTLC ever committed in the
channel, which the runtime keeps): on a revoked commitment every output of the peer (to_local and each HTLC,
offered or received) is ours with the revocation key (`Action.PENALTY`), and so is the output of any
second-stage HTLC transaction the peer spends them with (`second_stage_output`). HTLC outputs of a current
commitment are reported as `UNRESOLVED` (followed until someone spends them).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ampere.ln.channel.keys import (
    MAX_SECRET_INDEX,
    CommitmentKeys,
    commitment_keys,
    per_commitment_point,
    secret_index,
)
from ampere.ln.channel.commitment import Side
from ampere.ln.channel.scripts import (
    ChannelType,
    anchor_script,
    offered_htlc_script,
    received_htlc_script,
    to_local_script,
    to_remote_script_pubkey,
)
from ampere.ln.channel.shachain import ShachainError
from ampere.ln.channel.signer import ChannelSigner
from ampere.ln.channel.state import Channel
from ampere.primitives.amount import MsatInt, SatInt, fee_for_weight
from ampere.primitives.crypto import hash160
from ampere.primitives.script import p2pkh_script_code, p2wsh
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut

__all__ = [
    "SpendKind", "OutputKind", "Action", "OurOutput", "SpendAnalysis", "OnchainError", "SweepNotWorthIt",
    "classify_spend", "obscured_number_of", "build_sweep", "sign_sweep", "sweep_weight", "is_commitment_shaped",
    "SWEEP_DUST_LIMIT", "HtlcStub", "second_stage_output", "preimage_from_witness", "REVOCATION_KINDS",
    "htlc_tx_delayed_output",
]

# Bitcoin Core's dust threshold for the largest standard output we sweep to (P2PKH, 546 sat): a sweep whose
# output would be below it is not relayed, so such an output is left alone.
SWEEP_DUST_LIMIT = 546
RBF_SEQUENCE = 0xFFFFFFFD


class OnchainError(ValueError):
    """A transaction that does not spend this channel's funding output."""


class SweepNotWorthIt(ValueError):
    """The output is worth less than the fee of spending it plus the dust limit."""


class SpendKind(enum.Enum):
    MUTUAL = "mutual"          # a closing transaction (closing_signed / closing_complete)
    LOCAL = "local"            # our commitment (unilateral close by us)
    REMOTE = "remote"          # the peer's current (or previous, not yet revoked) commitment
    REVOKED = "revoked"        # a commitment of the peer that it revoked: cheating, penalised


class OutputKind(enum.Enum):
    TO_LOCAL = "to_local"                  # our delayed output on our commitment
    TO_REMOTE = "to_remote"                # our output on the peer's commitment
    MUTUAL = "mutual"                      # our output of the closing transaction
    HTLC = "htlc"                          # an HTLC output (either commitment)
    REVOKED_TO_LOCAL = "revoked_to_local"  # the peer's to_local on its revoked commitment: ours by penalty
    REVOKED_HTLC = "revoked_htlc"          # an HTLC output of the peer's revoked commitment: ours by penalty
    REVOKED_HTLC_TX = "revoked_htlc_tx"    # the output of the peer's second-stage HTLC tx off a revoked commitment
    OUR_HTLC = "our_htlc"                  # an HTLC we offered (either commitment): we time it out after cltv_expiry
    THEIR_HTLC = "their_htlc"              # an HTLC the peer offered us: we claim it with the preimage
    HTLC_TX_DELAYED = "htlc_tx_delayed"    # the output of OUR HTLC-timeout/success tx: ours after to_self_delay


class Action(enum.Enum):
    SWEEP = "sweep"              # we spend it to our wallet (after `csv` blocks)
    WALLET = "wallet"            # it pays our wallet directly: nothing to do
    EXTERNAL = "external"        # it pays an address outside our wallet (close_to): nothing to do
    UNRESOLVED = "unresolved"    # an HTLC output no HTLC we know matches (lost state?): followed until spent
    PENALTY = "penalty"          # revoked: we take it at once with the revocation key
    HTLC_TIMEOUT = "htlc_timeout"  # our HTLC: ours once its cltv_expiry has passed (unless the peer claims it)
    HTLC_SUCCESS = "htlc_success"  # their HTLC: ours with the preimage (if we know it), before cltv_expiry


@dataclass(frozen=True)
class OurOutput:
    vout: int
    value_sat: SatInt
    kind: OutputKind
    action: Action
    script_pubkey: bytes
    csv: int = 0                               # relative lock (blocks) before we may spend it
    witness_script: bytes | None = None
    per_commitment_point: bytes | None = None  # to_local: the point that tweaks our delayed key
    htlc: HtlcStub | None = None               # the HTLC this output holds (or held, for a second stage)
    revocation_pubkey: bytes | None = None     # revoked outputs: the key the penalty signs with


# The kinds spent with the revocation key (BOLT #5 "Revoked Transaction Close Handling").
REVOCATION_KINDS = frozenset({OutputKind.REVOKED_TO_LOCAL, OutputKind.REVOKED_HTLC, OutputKind.REVOKED_HTLC_TX})


@dataclass(frozen=True)
class HtlcStub:
    """What it takes to rebuild an HTLC output's script on any commitment that held it (CLN's htlc_stub)."""

    offerer: Side
    htlc_id: int
    amount_msat: MsatInt
    payment_hash: bytes
    cltv_expiry: int

    def to_json(self) -> dict:
        return {"offerer": self.offerer.value, "htlc_id": self.htlc_id, "amount_msat": self.amount_msat,
                "payment_hash": self.payment_hash.hex(), "cltv_expiry": self.cltv_expiry}

    @classmethod
    def from_json(cls, d: dict) -> HtlcStub:
        return cls(Side(d["offerer"]), int(d["htlc_id"]), MsatInt(int(d["amount_msat"])), bytes.fromhex(d["payment_hash"]),
                   int(d["cltv_expiry"]))


@dataclass(frozen=True)
class SpendAnalysis:
    kind: SpendKind
    commitment_number: int | None
    outputs: tuple[OurOutput, ...]
    # Conditions an operator must hear about: (level, text), level "info" | "unusual" | "broken".
    notes: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def is_commitment_shaped(tx: Transaction) -> bool:
    """BOLT #3: commitment "version: 2", "locktime: upper 8 bits are 0x20", "txin[0] sequence: upper 8 bits are
    0x80", and a single input."""
    return (len(tx.inputs) == 1 and tx.version == 2 and (tx.locktime >> 24) == 0x20
            and (tx.inputs[0].sequence >> 24) == 0x80)


def obscured_number_of(tx: Transaction) -> int:
    """The obscured commitment number: "lower 24 bits" of the sequence are its upper 24 bits, the locktime's
    lower 24 bits are its lower 24 bits."""
    return ((tx.inputs[0].sequence & 0xFFFFFF) << 24) | (tx.locktime & 0xFFFFFF)


def _revoked_up_to(ch: Channel) -> int | None:
    """The highest commitment number of the peer whose secret we hold (None: none revoked yet)."""
    last = ch.remote_secrets.last_index
    return None if last is None else MAX_SECRET_INDEX - last


def classify_spend(ch: Channel, our_point: Callable[[int], bytes], tx: Transaction,
                   local_commitment_txid: bytes | None = None, stubs: Iterable[HtlcStub] = ()) -> SpendAnalysis:
    """What `tx`, which spends the funding output of `ch`, is, and which of its outputs are (partly) ours."""
    p = ch.params
    if not any(i.prevout == p.funding_outpoint for i in tx.inputs):
        raise OnchainError(f"transaction {tx.txid_hex()} does not spend the funding output "
                           f"{p.funding_outpoint.txid_hex()}:{p.funding_outpoint.vout}")
    txid = tx.txid()
    closing_txid = Transaction.parse(ch.closing_tx).txid() if ch.closing_tx else None
    if txid == closing_txid or not is_commitment_shaped(tx):
        return _mutual(ch, tx)
    number = obscured_number_of(tx) ^ p.obscuring_factor
    ctype = p.channel_type
    spks = {o.script_pubkey: i for i, o in enumerate(tx.outputs)}
    their_to_remote, _ = to_remote_script_pubkey(p.remote_pubkeys.payment_basepoint, ctype)
    our_to_remote, our_to_remote_ws = to_remote_script_pubkey(p.local_pubkeys.payment_basepoint, ctype)
    anchors = {p2wsh(anchor_script(p.local_pubkeys.funding_pubkey)),
               p2wsh(anchor_script(p.remote_pubkeys.funding_pubkey))}

    # Our commitment number `number`: its to_local script (our delayed key for that point).
    our_to_local_ws = our_pt = None
    if number <= MAX_SECRET_INDEX:
        our_pt = our_point(number)
        keys = commitment_keys(p.local_pubkeys, p.remote_pubkeys, our_pt)
        our_to_local_ws = to_local_script(keys.revocation_pubkey, p.local_to_self_delay, keys.local_delayed_pubkey)
    ours = (txid == local_commitment_txid
            or (our_to_local_ws is not None and p2wsh(our_to_local_ws) in spks)
            or their_to_remote in spks)
    if ours:
        return _local(ch, tx, number, our_to_local_ws, our_pt, anchors | {their_to_remote}, tuple(stubs))
    return _remote(ch, tx, number, our_to_remote, our_to_remote_ws, anchors, tuple(stubs))


def _mutual(ch: Channel, tx: Transaction) -> SpendAnalysis:
    outs = []
    for i, o in enumerate(tx.outputs):
        if ch.local_shutdown_script and o.script_pubkey == ch.local_shutdown_script:
            # WALLET or EXTERNAL is for the runtime to say (it knows the wallet's scripts).
            outs.append(OurOutput(i, o.value, OutputKind.MUTUAL, Action.WALLET, o.script_pubkey))
    notes = () if outs else (("info", "the mutual close has no output for us (our balance was dust or zero)"),)
    return SpendAnalysis(SpendKind.MUTUAL, None, tuple(outs), notes)


def _htlc_like(o: TxOut) -> bool:
    return len(o.script_pubkey) == 34 and o.script_pubkey[:2] == b"\x00\x20"


def _htlc_output(i: int, o: TxOut, hit: tuple[HtlcStub, bytes] | None, point: bytes | None) -> OurOutput:
    """An HTLC output of a current (not revoked) commitment, ours to time out or to claim with the preimage."""
    if hit is None:
        return OurOutput(i, o.value, OutputKind.HTLC, Action.UNRESOLVED, o.script_pubkey, per_commitment_point=point)
    stub, ws = hit
    if stub.offerer is Side.LOCAL:
        # BOLT #5: an HTLC we offered "MUST ... resolve the output" by timing it out once cltv_expiry is reached.
        return OurOutput(i, o.value, OutputKind.OUR_HTLC, Action.HTLC_TIMEOUT, o.script_pubkey, witness_script=ws,
                         per_commitment_point=point, htlc=stub)
    # BOLT #5: an HTLC the peer offered: "if it has the payment preimage ... MUST resolve the output" with it.
    return OurOutput(i, o.value, OutputKind.THEIR_HTLC, Action.HTLC_SUCCESS, o.script_pubkey, witness_script=ws,
                     per_commitment_point=point, htlc=stub)


def _local(ch: Channel, tx: Transaction, number: int, to_local_ws: bytes | None, point: bytes | None,
           not_htlc: set[bytes], stubs: tuple[HtlcStub, ...] = ()) -> SpendAnalysis:
    p = ch.params
    notes: list[tuple[str, str]] = []
    if number < ch.local_ctn:
        notes.append(("broken", f"our REVOKED commitment #{number} was mined (our latest is #{ch.local_ctn}): the "
                                "peer can claim our outputs with a penalty transaction"))
    elif number > ch.local_ctn:
        notes.append(("broken", f"our commitment #{number} is newer than the latest we know (#{ch.local_ctn}): "
                                "we may have lost channel state"))
    outs = []
    to_local_spk = p2wsh(to_local_ws) if to_local_ws is not None else None
    htlc_spks = (_htlc_scripts(ch, commitment_keys(p.local_pubkeys, p.remote_pubkeys, point), Side.LOCAL, stubs)
                 if point is not None else {})
    for i, o in enumerate(tx.outputs):
        if o.script_pubkey == to_local_spk:
            # BOLT #3: to_local "can be spent by the local node after to_self_delay blocks".
            outs.append(OurOutput(i, o.value, OutputKind.TO_LOCAL, Action.SWEEP, o.script_pubkey,
                                  csv=p.local_to_self_delay, witness_script=to_local_ws, per_commitment_point=point))
        elif o.script_pubkey not in not_htlc and _htlc_like(o):
            outs.append(_htlc_output(i, o, htlc_spks.get(o.script_pubkey), point))
    htlcs = [x for x in outs if x.kind is OutputKind.HTLC]
    if htlcs:
        notes.append(("broken", _htlc_note(htlcs)))
    return SpendAnalysis(SpendKind.LOCAL, number, tuple(outs), tuple(notes))


def _htlc_scripts(ch: Channel, keys, owner: Side, stubs: tuple[HtlcStub, ...]) -> dict[bytes, tuple[HtlcStub, bytes]]:
    """scriptPubKey -> (stub, witness script) of every HTLC in `stubs` as it would appear on `owner`'s commitment
    with `keys` (that commitment's keys, from its owner's point of view)."""
    ctype = ch.params.channel_type
    out: dict[bytes, tuple[HtlcStub, bytes]] = {}
    for st in stubs:
        if st.offerer is owner:
            ws = offered_htlc_script(keys.revocation_pubkey, keys.local_htlc_pubkey, keys.remote_htlc_pubkey,
                                     st.payment_hash, ctype)
        else:
            ws = received_htlc_script(keys.revocation_pubkey, keys.local_htlc_pubkey, keys.remote_htlc_pubkey,
                                      st.payment_hash, st.cltv_expiry, ctype)
        out.setdefault(p2wsh(ws), (st, ws))
    return out


def _remote(ch: Channel, tx: Transaction, number: int, our_to_remote: bytes, our_to_remote_ws: bytes | None,
            anchors: set[bytes], stubs: tuple[HtlcStub, ...] = ()) -> SpendAnalysis:
    p = ch.params
    notes: list[tuple[str, str]] = []
    revoked_up_to = _revoked_up_to(ch)
    revoked = revoked_up_to is not None and number <= revoked_up_to
    # The peer's point for this commitment, to recognise its to_local (everything else P2WSH is an HTLC).
    point = None
    if revoked:
        try:
            point = per_commitment_point(ch.remote_secrets.get_secret(secret_index(number)))
        except ShachainError:
            point = None
    elif number == ch.remote_ctn:
        point = ch.remote_point or None
    elif number == ch.remote_ctn - 1:
        point = ch.remote_prev_point
    elif number > ch.remote_ctn:
        notes.append(("broken", f"the peer's commitment #{number} is newer than any we signed (#{ch.remote_ctn}): "
                                "we may have lost channel state"))
    their_to_local_ws: bytes | None = None
    keys: CommitmentKeys | None = None
    htlc_spks: dict[bytes, tuple[HtlcStub, bytes]] = {}
    if point is not None:
        keys = commitment_keys(p.remote_pubkeys, p.local_pubkeys, point)
        their_to_local_ws = to_local_script(keys.revocation_pubkey, p.remote_to_self_delay, keys.local_delayed_pubkey)
        htlc_spks = _htlc_scripts(ch, keys, Side.REMOTE, stubs)
    outs = []
    for i, o in enumerate(tx.outputs):
        if o.script_pubkey == our_to_remote:
            # BOLT #3 option_anchors: "the to_remote output is encumbered by a one block csv lock".
            outs.append(OurOutput(i, o.value, OutputKind.TO_REMOTE, Action.SWEEP, o.script_pubkey,
                                  csv=1 if p.channel_type.anchors else 0, witness_script=our_to_remote_ws))
        elif their_to_local_ws is not None and o.script_pubkey == p2wsh(their_to_local_ws):
            if revoked:
                assert keys is not None  # their_to_local_ws is made from keys
                # BOLT #5: "MUST resolve the _remote node's main output_ by spending it using the revocation
                # private key."
                outs.append(OurOutput(i, o.value, OutputKind.REVOKED_TO_LOCAL, Action.PENALTY, o.script_pubkey,
                                      witness_script=their_to_local_ws, per_commitment_point=point,
                                      revocation_pubkey=keys.revocation_pubkey))
        elif o.script_pubkey not in anchors and _htlc_like(o):
            hit = htlc_spks.get(o.script_pubkey)
            if revoked and hit is not None:
                assert keys is not None  # htlc_spks is filled only once keys are known
                # BOLT #5: "MUST resolve the _remote node's offered HTLCs_ ... and the _remote node's received
                # HTLCs_ ... by spending it using the revocation private key."
                outs.append(OurOutput(i, o.value, OutputKind.REVOKED_HTLC, Action.PENALTY, o.script_pubkey,
                                      witness_script=hit[1], per_commitment_point=point, htlc=hit[0],
                                      revocation_pubkey=keys.revocation_pubkey))
            elif revoked:
                outs.append(OurOutput(i, o.value, OutputKind.HTLC, Action.UNRESOLVED, o.script_pubkey,
                                      per_commitment_point=point))
            else:
                outs.append(_htlc_output(i, o, hit, point))
    if revoked:
        taken = sum(x.value_sat for x in outs if x.action is Action.PENALTY)
        unknown = [x for x in outs if x.action is Action.UNRESOLVED]
        notes.append(("unusual", f"the peer broadcast its REVOKED commitment #{number} (latest #{ch.remote_ctn}): "
                                 f"taking {taken} sat with the revocation key"))
        if unknown:
            notes.append(("broken", f"{len(unknown)} output(s) of the revoked commitment match no HTLC we know: "
                                    + ", ".join(f"#{x.vout} ({x.value_sat} sat)" for x in unknown)))
    else:
        htlcs = [x for x in outs if x.kind is OutputKind.HTLC]
        if htlcs:
            notes.append(("broken", _htlc_note(htlcs)))
    return SpendAnalysis(SpendKind.REVOKED if revoked else SpendKind.REMOTE, number, tuple(outs), tuple(notes))


def _htlc_note(htlcs: list[OurOutput]) -> str:
    listed = ", ".join(f"#{x.vout} ({x.value_sat} sat)" for x in htlcs)
    return (f"{len(htlcs)} HTLC output(s) {listed} match no HTLC we know: they are NOT being claimed (only "
            "followed until someone spends them)")


def second_stage_output(ch: Channel, revoked_htlc: OurOutput, spend: Transaction,
                        parent_txid: bytes | None = None) -> OurOutput | None:
    """The output of the peer's HTLC-success/HTLC-timeout transaction `spend` that spent `revoked_htlc` (an HTLC
    output of its revoked commitment), as a penalty output; None if `spend` is not such a transaction (we took
    the output ourselves, or it went elsewhere).

    BOLT #5: "MUST resolve the _remote node's HTLC-timeout transaction_ ... [and] _HTLC-success transaction_ by
    spending it using the revocation private key": its output is the BOLT 3 to_local script with the revoked
    commitment's revocation key and the peer's delayed key, behind the peer's to_self_delay.
    """
    p = ch.params
    point = revoked_htlc.per_commitment_point
    if point is None or not spend.outputs:
        return None
    candidates: range | list[int] = range(len(spend.outputs))
    if len(spend.inputs) != 1:
        # option_anchors: the peer added fee inputs and change (its HTLC transactions are signed by us
        # SIGHASH_SINGLE|SIGHASH_ANYONECANPAY, so the HTLC input and its output share an index; several may be
        # aggregated, all paying the same script).
        if not p.channel_type.anchors or parent_txid is None:
            return None
        idx = [i for i, x in enumerate(spend.inputs) if x.prevout == OutPoint(parent_txid, revoked_htlc.vout)]
        candidates = [i for i in idx if i < len(spend.outputs)]
    keys = commitment_keys(p.remote_pubkeys, p.local_pubkeys, point)
    ws = to_local_script(keys.revocation_pubkey, p.remote_to_self_delay, keys.local_delayed_pubkey)
    spk = p2wsh(ws)
    for i in candidates:
        o = spend.outputs[i]
        if o.script_pubkey == spk:
            return OurOutput(i, o.value, OutputKind.REVOKED_HTLC_TX, Action.PENALTY, spk, witness_script=ws,
                             per_commitment_point=point, htlc=revoked_htlc.htlc,
                             revocation_pubkey=keys.revocation_pubkey)
    return None


def htlc_tx_delayed_output(ch: Channel, htlc_out: OurOutput, htlc_tx: Transaction,
                           commitment_txid: bytes | None = None) -> OurOutput:
    """The output of OUR HTLC-timeout/success transaction spending `htlc_out` of our commitment: to_local-like,
    ours after to_self_delay (BOLT #5: "MUST ... spend the output of the HTLC-timeout/success transaction ...
    once the to_self_delay has passed"). Several HTLC transactions aggregated into one (option_anchors): the
    output at the index of the input spending `htlc_out` of `commitment_txid` (the peer's
    SIGHASH_SINGLE|SIGHASH_ANYONECANPAY signature pairs them)."""
    p = ch.params
    index = 0
    if commitment_txid is not None:
        index = next((i for i, x in enumerate(htlc_tx.inputs)
                      if x.prevout == OutPoint(commitment_txid, htlc_out.vout)), 0)
    assert htlc_out.per_commitment_point is not None, "an HTLC output of a commitment carries its point"
    keys = commitment_keys(p.local_pubkeys, p.remote_pubkeys, htlc_out.per_commitment_point)
    ws = to_local_script(keys.revocation_pubkey, p.local_to_self_delay, keys.local_delayed_pubkey)
    return OurOutput(index, htlc_tx.outputs[index].value, OutputKind.HTLC_TX_DELAYED, Action.SWEEP, p2wsh(ws),
                     csv=p.local_to_self_delay, witness_script=ws, per_commitment_point=htlc_out.per_commitment_point,
                     htlc=htlc_out.htlc)


def preimage_from_witness(witness: list[bytes], payment_hash: bytes | None) -> bytes | None:
    """The payment preimage revealed by a witness spending an HTLC output (HTLC-success transaction: `0
    <remotehtlcsig> <localhtlcsig> <payment_preimage> <script>`; direct claim on the other commitment:
    `<remotehtlcsig> <payment_preimage> <script>`), checked against `payment_hash` when known."""
    from ampere.primitives.crypto import sha256

    for item in witness[:-1]:
        if len(item) == 32 and (payment_hash is None or sha256(item) == payment_hash):
            return bytes(item)
    return None


# --- sweeps --------------------------------------------------------------------------------------

def _witness_for_size(output: OurOutput, channel_type: ChannelType) -> list[bytes]:
    sig = b"\x00" * 73  # the largest DER signature plus its sighash byte
    if output.kind in (OutputKind.TO_LOCAL, OutputKind.HTLC_TX_DELAYED):
        return [sig, b"", output.witness_script or b""]
    if output.kind in (OutputKind.REVOKED_TO_LOCAL, OutputKind.REVOKED_HTLC_TX):
        return [sig, b"\x01", output.witness_script or b""]
    if output.kind is OutputKind.REVOKED_HTLC:
        return [sig, b"\x02" * 33, output.witness_script or b""]
    if output.kind is OutputKind.TO_REMOTE:
        if channel_type.anchors:
            return [sig, output.witness_script or b""]
        return [sig, b"\x02" * 33]
    raise ValueError(f"{output.kind.value} outputs are not swept")


def _sequence(output: OurOutput) -> int:
    # BOLT #3 to_local: "The output is spent by an input with nSequence field set to to_self_delay".
    # BIP68 reads the low 16 bits as a block count (type flag clear, disable flag clear).
    return output.csv if output.csv else RBF_SEQUENCE


def sweep_weight(output: OurOutput, channel_type: ChannelType, dest_script: bytes) -> int:
    tx = Transaction(2, [TxIn(OutPoint(b"\x00" * 32, output.vout), b"", _sequence(output))],
                     [TxOut(SatInt(0), dest_script)], 0)
    tx.inputs[0].witness = _witness_for_size(output, channel_type)
    return tx.weight()


def build_sweep(spend_txid: bytes, output: OurOutput, channel_type: ChannelType, dest_script: bytes,
                feerate_perkw: int) -> Transaction:
    """An unsigned version-2 transaction (BIP68 needs version 2) moving `output` to `dest_script`."""
    if output.action not in (Action.SWEEP, Action.PENALTY):
        raise ValueError(f"output {output.vout} ({output.kind.value}) is not one we sweep")
    weight = sweep_weight(output, channel_type, dest_script)
    fee = fee_for_weight(feerate_perkw, weight)
    value = SatInt(output.value_sat - fee)
    if value < SWEEP_DUST_LIMIT:
        raise SweepNotWorthIt(f"output {output.vout} of {output.value_sat} sat cannot pay the {fee} sat fee of its "
                              f"sweep and stay above the dust limit")
    return Transaction(2, [TxIn(OutPoint(spend_txid, output.vout), b"", _sequence(output))],
                       [TxOut(value, dest_script)], 0)


def sign_sweep(tx: Transaction, output: OurOutput, channel_type: ChannelType, signer: ChannelSigner,
               per_commitment_secret: bytes | None = None) -> Transaction:
    """The sweep with its witness (a copy). Revoked outputs need the peer's `per_commitment_secret` of that
    commitment (from our shachain store)."""
    tx = tx.copy()
    if output.kind in REVOCATION_KINDS:
        if per_commitment_secret is None or output.witness_script is None or output.revocation_pubkey is None:
            raise ValueError("a penalty needs the per-commitment secret, the witness script and the revocation key")
        sig = signer.sign_with_revocation_key(tx, 0, output.witness_script, output.value_sat, per_commitment_secret)
        if output.kind is OutputKind.REVOKED_HTLC:
            # BOLT #3 offered/received HTLC outputs: "<revocation_sig> <revocationpubkey>".
            tx.inputs[0].witness = [sig, output.revocation_pubkey, output.witness_script]
        else:
            # BOLT #3 to_local (and the HTLC transactions' output): "<revocation_sig> 1" selects OP_IF.
            tx.inputs[0].witness = [sig, b"\x01", output.witness_script]
    elif output.kind in (OutputKind.TO_LOCAL, OutputKind.HTLC_TX_DELAYED):
        if output.witness_script is None or output.per_commitment_point is None:
            raise ValueError("to_local sweep needs its witness script and per_commitment_point")
        sig = signer.sign_to_local_sweep(tx, 0, output.witness_script, output.value_sat, output.per_commitment_point)
        # BOLT #3: to_local after the delay: "<local_delayedsig> <>" (the empty element selects OP_ELSE).
        tx.inputs[0].witness = [sig, b"", output.witness_script]
    elif output.kind is OutputKind.TO_REMOTE:
        basepoint = signer.pubkeys.payment_basepoint
        if channel_type.anchors:
            # BOLT #3 option_anchors to_remote: witness "<remote_sig>" with the script.
            ws = output.witness_script or b""
            tx.inputs[0].witness = [signer.sign_to_remote_sweep(tx, 0, ws, output.value_sat), ws]
        else:
            code = p2pkh_script_code(hash160(basepoint))
            tx.inputs[0].witness = [signer.sign_to_remote_sweep(tx, 0, code, output.value_sat), basepoint]
    else:
        raise ValueError(f"{output.kind.value} outputs are not swept")
    return tx

