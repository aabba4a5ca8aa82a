"""CLN's onchaind / lightningd log lines for the resolution plan of a closed channel.

Tests written for Core Lightning follow an on-chain resolution through its log (pyln-testing's
wait_for_onchaind_tx(s) and mine_txid_or_rbf). For each output it resolves, CLN's onchaind logs, as soon as it
sees the output:

    Telling lightningd about OUR_DELAYED_RETURN_TO_WALLET to resolve OUR_UNILATERAL/DELAYED_OUTPUT_TO_US
        after block 107 (4 more blocks)
    Broadcast for onchaind tx 0200...                 (lightningd: the raw transaction)
    Deferring broadcast of txid 5e1f... until block 107   (not final yet)  |  Broadcasting txid 5e1f...
    plugin-bcli: sendrawtx exit 0 (...0200...)        (bcli; ampere.node.onchain.chain_backend)

and when it replaces a transaction, "RBF onchain txid OLD (fee Nsat) with txid NEW (fee Msat)" ("RBF HTLC txid"
for our HTLC-timeout/success transactions). An output it leaves to the peer: "Propose ignoring
THEIR_UNILATERAL/THEIR_HTLC as THEIR_HTLC_TIMEOUT_TO_THEM after block 150 (40 more blocks)".

The resolver (ampere.node.onchain.resolver) builds its transaction only when it can be broadcast; this module tells
the plan earlier: for an output not yet spendable it builds the transaction the resolver will broadcast (same
builders, the feerate of now and a destination address reserved now, which the resolver then uses), so that the
logged transaction is the one broadcast unless the feerate moved in between (then the RBF line says so, as CLN's
does for its own rebroadcasts). Our anchor HTLC-timeout is logged as its pre-signed zero-fee transaction; the one
with wallet inputs follows as an "RBF HTLC" line when it is due. Nothing here changes what is broadcast or when.
What was told is kept in memory only: after a restart the plan is told again, as CLN's onchaind replays it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ampere.ln.channel.commitment import Side
from ampere.ln.channel.htlc_tx import HtlcTxKind
from ampere.ln.onchain.classify import (
    OutputKind,
    SpendKind,
    SweepNotWorthIt,
    build_sweep,
    sign_sweep,
)
from ampere.ln.onchain.htlc import LocalHtlcTx, build_htlc_claim, sign_htlc_claim
from ampere.node.onchain.wallet import scripts_for_pubkey
from ampere.primitives.tx import Transaction

if TYPE_CHECKING:
    from ampere.node.onchain.resolver import OnchainResolver, Resolution, Tracked

__all__ = ["OnchaindLog", "spend_tx_type", "output_type", "proposal_type", "holder_tx_type", "resolve_name",
           "telling_line", "ignoring_line", "broadcast_named_line", "rbf_line"]

# CLN's onchaind/onchain_types.h `enum tx_type` names for the transaction spending the funding output.
_SPEND_TX_TYPE = {SpendKind.MUTUAL: "MUTUAL_CLOSE", SpendKind.LOCAL: "OUR_UNILATERAL",
                  SpendKind.REMOTE: "THEIR_UNILATERAL", SpendKind.REVOKED: "THEIR_REVOKED_UNILATERAL"}

# States of ampere.node.onchain.resolver (kept as strings here: that module imports this one).
_SWEEP, _PENALTY, _TIMEOUT, _SUCCESS = "sweep", "penalty", "htlc_timeout", "htlc_success"


# How the peer spends an output of ours (CLN's resolved_by_other): (output kind, HTLC offerer) -> tx_type.
_OTHER_SPEND = {
    (OutputKind.OUR_HTLC, None): "OUR_HTLC_FULFILL_TO_THEM",         # with the preimage
    (OutputKind.THEIR_HTLC, None): "THEIR_HTLC_TIMEOUT_TO_THEM",     # after its expiry
    (OutputKind.REVOKED_HTLC, Side.LOCAL): "OUR_HTLC_FULFILL_TO_THEM",
    (OutputKind.REVOKED_HTLC, Side.REMOTE): "THEIR_HTLC_TIMEOUT_TO_THEM",
    (OutputKind.REVOKED_TO_LOCAL, None): "THEIR_DELAYED_CHEAT",
    (OutputKind.REVOKED_HTLC_TX, None): "THEIR_DELAYED_CHEAT",
}


def spend_tx_type(kind: SpendKind) -> str:
    return _SPEND_TX_TYPE[kind]


def output_type(kind: OutputKind, htlc_offerer: Side | None = None) -> str | None:
    """CLN's `enum output_type` name of one of our outputs (None: no CLN equivalent)."""
    if kind in (OutputKind.TO_LOCAL, OutputKind.HTLC_TX_DELAYED):
        return "DELAYED_OUTPUT_TO_US"
    if kind in (OutputKind.REVOKED_TO_LOCAL, OutputKind.REVOKED_HTLC_TX):
        return "DELAYED_CHEAT_OUTPUT_TO_THEM"
    if kind is OutputKind.TO_REMOTE:
        return "OUTPUT_TO_US"
    if kind is OutputKind.OUR_HTLC:
        return "OUR_HTLC"
    if kind is OutputKind.THEIR_HTLC:
        return "THEIR_HTLC"
    if kind is OutputKind.REVOKED_HTLC and htlc_offerer is not None:
        # CLN names a revoked commitment's HTLC outputs by who offered them.
        return "OUR_HTLC" if htlc_offerer is Side.LOCAL else "THEIR_HTLC"
    return None


def proposal_type(spend: SpendKind, state: str, kind: OutputKind) -> str | None:
    """The `enum tx_type` of the transaction we resolve an output with (None: CLN's onchaind proposes none, e.g.
    to_remote, which its wallet takes)."""
    if kind is OutputKind.TO_REMOTE:
        return None
    if state == _PENALTY:
        return "OUR_PENALTY_TX"
    if state == _SWEEP and kind in (OutputKind.TO_LOCAL, OutputKind.HTLC_TX_DELAYED):
        return "OUR_DELAYED_RETURN_TO_WALLET"
    if state == _TIMEOUT:
        return "OUR_HTLC_TIMEOUT_TX" if spend is SpendKind.LOCAL else "OUR_HTLC_TIMEOUT_TO_US"
    if state == _SUCCESS:
        return "OUR_HTLC_SUCCESS_TX" if spend is SpendKind.LOCAL else "THEIR_HTLC_FULFILL_TO_US"
    return None


def holder_tx_type(spend: SpendKind, parent_state: str | None, parent_kind: OutputKind | None,
                   parent_offerer: Side | None) -> str:
    """The `enum tx_type` of the transaction holding an output: the funding spend's, or for a second-stage output
    the type of the transaction that spent the commitment's HTLC output (ours, or the peer's on a revoked one)."""
    if parent_kind is None:
        return spend_tx_type(spend)
    if parent_kind is OutputKind.REVOKED_HTLC:
        # The peer timed out its own HTLC, or took ours with the preimage.
        return "THEIR_HTLC_TIMEOUT_TO_THEM" if parent_offerer is Side.REMOTE else "OUR_HTLC_FULFILL_TO_THEM"
    return "OUR_HTLC_TIMEOUT_TX" if parent_state == _TIMEOUT else "OUR_HTLC_SUCCESS_TX"


def resolve_name(holder: str, out_type: str) -> str:
    return f"{holder}/{out_type}"


def telling_line(tx_type: str, resolve: str, block_required: int, tx_height: int) -> str:
    # onchaind: "we want this in @block_required, so it will be broadcast by lightningd after it sees
    # @block_required - 1".
    return (f"Telling lightningd about {tx_type} to resolve {resolve} after block {block_required - 1} "
            f"({block_required - 1 - tx_height} more blocks)")


def ignoring_line(resolve: str, tx_type: str, block_required: int, tx_height: int) -> str:
    return (f"Propose ignoring {resolve} as {tx_type} after block {block_required} "
            f"({block_required - tx_height} more blocks)")


def broadcast_named_line(tx_type: str, raw_hex: str, resolve: str) -> str:
    # onchaind's line before its transactions moved to lightningd (pyln-testing's wait_for_onchaind_broadcast).
    return f"Broadcasting {tx_type} ({raw_hex}) to resolve {resolve}"


def rbf_line(htlc: bool, old_txid: str, old_fee: int, new_txid: str, new_fee: int) -> str:
    return f"RBF {'HTLC' if htlc else 'onchain'} txid {old_txid} (fee {old_fee}sat) with txid {new_txid} (fee {new_fee}sat)"


class OnchaindLog:
    """The plan lines of one resolver (what was told, per output, lives here: transient)."""

    def __init__(self, resolver: OnchainResolver) -> None:
        self.resolver = resolver
        self.log = resolver.node.log
        self._told: dict[tuple, tuple[str, int]] = {}  # (channel, output key) -> (txid told, its fee)
        self._ignored: set[tuple] = set()
        self._broadcasting: set[str] = set()
        self._named: set[tuple] = set()  # (channel, output key, txid) announced as "Broadcasting NAME (raw)"
        self._all_resolved: set[bytes] = set()
        self._funding_told: set[bytes] = set()

    # ---- names of an output ----------------------------------------------------------------------
    def _names(self, r: Resolution, t: Tracked) -> tuple[str, str] | None:
        if r.kind is None:
            return None
        tx_type = proposal_type(r.kind, t.state, t.out.kind)
        offerer = t.out.htlc.offerer if t.out.htlc is not None else None
        out_type = output_type(t.out.kind, offerer)
        if tx_type is None or out_type is None:
            return None
        parent = r.outputs.get((r.spend_txid, t.parent)) if t.parent is not None else None
        holder = holder_tx_type(r.kind, parent.state if parent else None, parent.out.kind if parent else None,
                                parent.out.htlc.offerer if parent and parent.out.htlc else None)
        return tx_type, resolve_name(holder, out_type)

    def _block_required(self, t: Tracked, base: int) -> int:
        """The first block the resolving transaction can be in (CLN's block_required)."""
        if t.state == _TIMEOUT and t.out.htlc is not None:
            return t.out.htlc.cltv_expiry + 1  # nLockTime: "we have to be *after* that block!"
        if t.state == _SWEEP:
            return base + t.out.csv
        return base + 1  # penalties and preimage claims: at once

    def _fee(self, r: Resolution, t: Tracked, tx: Transaction) -> int:
        if "fee" in t.extra and t.sweep_tx is not None and tx.txid() == t.sweep_txid:
            return int(t.extra["fee"])  # our anchor HTLC tx with wallet inputs
        return t.out.value_sat - sum(o.value for o in tx.outputs)

    def _key(self, r: Resolution, t: Tracked) -> tuple:
        return (r.channel_id, t.key(r))

    @staticmethod
    def _ready(r: Resolution) -> bool:
        """CLN's onchaind starts once the channel is ONCHAIN, and tests wait for "to ONCHAIN" before following
        its plan: an output is told only then (our anchor commitment is followed from the mempool, and the block
        that mines it can reach the resolver before the channel manager moves the channel to ONCHAIN)."""
        state = getattr(getattr(r.record, "core", None), "state", None)
        return getattr(state, "value", None) == "ONCHAIN"

    # ---- the lines -----------------------------------------------------------------------------------
    def _tell(self, r: Resolution, t: Tracked, base: int, tx: Transaction) -> bool:
        names = self._names(r, t)
        if names is None:
            return False
        self.log.debug("onchaind", telling_line(names[0], names[1], self._block_required(t, base), base))
        self.log.debug("lightningd", f"Broadcast for onchaind tx {tx.serialize().hex()}")
        self._told[self._key(r, t)] = (tx.txid_hex(), self._fee(r, t, tx))
        return True

    async def deferred(self, r: Resolution, t: Tracked, tip: int, base: int) -> None:
        """`t` cannot be spent before a later block: tell its plan once (the transaction the resolver will
        broadcast then, at today's feerate)."""
        key = self._key(r, t)
        if key in self._told or key in self._ignored or r.record is None or not self._ready(r):
            return
        if t.state == _SUCCESS and (t.out.htlc is None
                                    or t.out.htlc.payment_hash not in self.resolver._preimages):
            self.ignored(r, t, base)
            return
        if self._names(r, t) is None:
            return
        try:
            tx = await self._plan(r, t, tip, base)
        except (SweepNotWorthIt, ValueError, KeyError) as e:
            self.log.debug("onchaind", f"Channel {r.channel_id.hex()}: no plan for output {t.out.vout}: {e}")
            tx = None
        if tx is None:
            return
        if self._tell(r, t, base, tx):
            self.log.debug("chaintopology", f"Deferring broadcast of txid {tx.txid_hex()} until block "
                                            f"{self._block_required(t, base) - 1}")

    def ignored(self, r: Resolution, t: Tracked, base: int, tip: int | None = None) -> None:
        """The peer's HTLC whose preimage we do not know: left to the peer's timeout (CLN's propose_ignore), then
        ignored once it has expired (onchaind's "Ignoring output", when the commitment is deep enough)."""
        key = self._key(r, t)
        if t.out.htlc is None or r.kind is None or not self._ready(r):
            return
        names = self._names(r, t)
        if names is None:
            return
        if key not in self._ignored:
            self._ignored.add(key)
            self.log.debug("onchaind", ignoring_line(names[1], "THEIR_HTLC_TIMEOUT_TO_THEM",
                                                     t.out.htlc.cltv_expiry, base))
        # The commitment's depth (tip - base + 1) reaches cltv_expiry - base.
        if tip is not None and tip + 1 >= t.out.htlc.cltv_expiry and key + ("ignoring",) not in self._ignored:
            self._ignored.add(key + ("ignoring",))
            holder = t.txid or r.spend_txid
            self.log.debug("onchaind", f"Ignoring output {holder[::-1].hex()}:{t.out.vout}: {names[1]}")

    def due(self, r: Resolution, t: Tracked, base: int) -> None:
        """`t`'s transaction (t.sweep_tx) is about to be broadcast: tell it if not told yet, or say it replaces
        the one told (CLN's RBF line, which mine_txid_or_rbf follows)."""
        if t.sweep_tx is None or not self._ready(r):
            return
        key = self._key(r, t)
        tx = Transaction.parse(t.sweep_tx)
        txid = tx.txid_hex()
        told = self._told.get(key)
        self._ignored.discard(key)
        if told is None:
            if not self._tell(r, t, base, tx):
                return
            if txid in self._broadcasting:
                # Broadcast before the channel was ONCHAIN (see _ready): once more now, so that its broadcast
                # lines follow the plan as CLN's do (the node already has it: a no-op for the chain).
                self._broadcasting.discard(txid)
                t.broadcast_at = -1
        elif told[0] != txid:
            fee = self._fee(r, t, tx)
            htlc = r.kind is SpendKind.LOCAL and t.state in (_TIMEOUT, _SUCCESS)
            self.log.log("info" if fee > told[1] else "debug", "onchaind",
                         rbf_line(htlc, told[0], told[1], txid, fee))
            self._told[key] = (txid, fee)
        if key + (txid,) not in self._named:
            self._named.add(key + (txid,))
            names = self._names(r, t)
            if names is not None:
                self.log.debug("onchaind", broadcast_named_line(names[0], t.sweep_tx.hex(), names[1]))

    def broadcasting(self, tx: Transaction) -> None:
        """lightningd's line before its first sendrawtransaction of a transaction."""
        txid = tx.txid_hex()
        if txid in self._broadcasting:
            return
        self._broadcasting.add(txid)
        self.log.debug("chaintopology", f"Broadcasting txid {txid}")

    def funding_resolved(self, r: Resolution) -> None:
        """onchaind's first line: the funding output resolved by the close (once the channel is ONCHAIN)."""
        if r.kind is None or r.channel_id in self._funding_told or not self._ready(r):
            return
        self._funding_told.add(r.channel_id)
        self.log.debug("onchaind", f"Resolved FUNDING_TRANSACTION/FUNDING_OUTPUT by {spend_tx_type(r.kind)} "
                                   f"({r.spend_tx.txid_hex()})")

    def tracking(self, r: Resolution, t: Tracked) -> None:
        """onchaind's "Tracking output TXID:N: X/Y" when it first looks at an output (before any plan for it), and
        "Ignoring output" for the ones it leaves to the wallet (to_remote, a mutual close's)."""
        key = self._key(r, t) + ("tracking",)
        if key in self._ignored or r.kind is None or not self._ready(r):
            return
        self._ignored.add(key)
        offerer = t.out.htlc.offerer if t.out.htlc is not None else None
        out_type = output_type(t.out.kind, offerer)
        if out_type is None:
            return
        parent = r.outputs.get((r.spend_txid, t.parent)) if t.parent is not None else None
        resolve = resolve_name(holder_tx_type(r.kind, parent.state if parent else None,
                                              parent.out.kind if parent else None,
                                              parent.out.htlc.offerer if parent and parent.out.htlc else None), out_type)
        outpoint = f"{(t.txid or r.spend_txid)[::-1].hex()}:{t.out.vout}"
        self.log.debug("onchaind", f"Tracking output {outpoint}: {resolve}")
        if t.out.kind is OutputKind.TO_REMOTE:
            # CLN's wallet takes to_remote (Ampere sweeps it, see the resolver): onchaind ignores it.
            self.log.debug("onchaind", f"Ignoring output {outpoint}: {resolve}")

    # ---- how outputs end ------------------------------------------------------------------------------
    def resolved(self, r: Resolution, t: Tracked, txid: bytes, ours: bool) -> None:
        """onchaind's "Resolved X/Y by our proposal Z (txid)" / "Resolved X/Y by Z (txid)" when the spend of
        an output is in a block (CLN's tests wait for them)."""
        names = self._names(r, t)
        if r.kind is None:
            return
        offerer = t.out.htlc.offerer if t.out.htlc is not None else None
        if names is None:
            out_type = output_type(t.out.kind, offerer)
            if out_type is None:
                return
            parent = r.outputs.get((r.spend_txid, t.parent)) if t.parent is not None else None
            names = ("", resolve_name(holder_tx_type(r.kind, parent.state if parent else None,
                                                     parent.out.kind if parent else None,
                                                     parent.out.htlc.offerer if parent and parent.out.htlc else None),
                                      out_type))
        shown = txid[::-1].hex()
        if ours and names[0]:
            self.log.debug("onchaind", f"Resolved {names[1]} by our proposal {names[0]} ({shown})")
            return
        other = _OTHER_SPEND.get((t.out.kind, offerer)) or _OTHER_SPEND.get((t.out.kind, None))
        if not ours and other is not None:
            self.log.debug("onchaind", f"Resolved {names[1]} by {other} ({shown})")

    def preimage(self, r: Resolution, t: Tracked, preimage: bytes) -> None:
        names = self._names(r, t)
        offerer = t.out.htlc.offerer if t.out.htlc is not None else None
        out_type = output_type(t.out.kind, offerer)
        if r.kind is None or out_type is None:
            return
        resolve = names[1] if names else resolve_name(spend_tx_type(r.kind), out_type)
        self.log.debug("onchaind", f"{resolve} gave us preimage {preimage.hex()}")

    def all_resolved(self, r: Resolution, tip: int, last: int, bury_depth: int) -> None:
        """CLN's billboard once every output is resolved, logged once: the depth counts from 0 in the block of
        the last resolving transaction."""
        if r.channel_id in self._all_resolved:
            return
        self._all_resolved.add(r.channel_id)
        left = max(0, bury_depth - (tip - last))
        self.log.debug("onchaind", f"All outputs resolved: waiting {left} more blocks before forgetting channel")

    def complete(self, r: Resolution) -> None:
        self._all_resolved.discard(r.channel_id)
        self.log.info("onchaind", "onchaind complete, forgetting peer")

    # ---- the planned transaction ----------------------------------------------------------------------
    async def _plan(self, r: Resolution, t: Tracked, tip: int, base: int) -> Transaction | None:
        """What the resolver will broadcast for `t` once it can (see its _make_sweep)."""
        record = r.record
        ctype = record.core.params.channel_type
        if t.state in (_TIMEOUT, _SUCCESS) and r.kind is SpendKind.LOCAL:
            if t.sweep_tx is not None:
                return Transaction.parse(t.sweep_tx)  # pre-signed at the analysis (no anchors)
            if "stage" not in t.extra:
                return None
            raw, their, ours, kind = t.extra["stage"]
            x = LocalHtlcTx(HtlcTxKind(kind), t.out.vout, Transaction.parse(bytes.fromhex(raw)), t.out.witness_script,
                            bytes.fromhex(their), bytes.fromhex(ours))
            pre = self.resolver._preimages.get(t.out.htlc.payment_hash) if x.kind is HtlcTxKind.SUCCESS else None
            return x.complete(pre)  # option_anchors: zero fee, wallet inputs are added when it is due
        claim = t.state in (_TIMEOUT, _SUCCESS)
        if not claim and t.state != _SWEEP:
            return None
        fees = self.resolver.node.chain.fees
        if claim:
            rate = self.resolver._claim_rate(r, t, tip, base, 0)
        else:
            from ampere.node.onchain.resolver import SWEEP_FEERATE_BLOCKS
            rate = fees.for_deadline(SWEEP_FEERATE_BLOCKS) or fees.floor
        build = build_htlc_claim if claim else build_sweep
        parent = t.txid or r.spend_txid
        build(parent, t.out, ctype, b"\x51\x20" + bytes(32), rate)  # raises SweepNotWorthIt before using an address
        dest = await self.destination(r, t)
        unsigned = build(parent, t.out, ctype, dest, rate)
        if claim:
            pre = self.resolver._preimages.get(t.out.htlc.payment_hash) if t.state == _SUCCESS else None
            return sign_htlc_claim(unsigned, t.out, record.signer, pre)
        return sign_sweep(unsigned, t.out, ctype, record.signer, None)

    async def destination(self, r: Resolution, t: Tracked) -> bytes:
        """The wallet script `t` is swept to: reserved with the plan (kept with the output, so the resolver's
        sweep goes there too and matches the plan)."""
        dest = t.extra.get("dest")
        if dest is not None:
            return bytes.fromhex(dest)
        wallet = self.resolver.node.wallet
        idx, _ = await wallet.new_address("p2tr")
        script = scripts_for_pubkey(wallet.pubkey(idx))[1]
        t.extra["dest"] = script.hex()
        self.resolver._dirty.add(r.channel_id)
        return script
