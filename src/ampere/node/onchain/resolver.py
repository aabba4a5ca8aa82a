"""What happens after a channel's funding output is spent: Ampere's onchaind.

The channel manager hands over a channel whose funding output was spent:

    await node.onchain.funding_spent(record, spending_tx, height)   # once, when the spend is mined
    await node.onchain.restore(record)                              # at start-up, FUNDING_SPEND_SEEN / ONCHAIN
    node.onchain.status(channel_id) -> list[str]                    # lines for listpeerchannels `status`
    node.onchain.describe(channel_id) -> dict | None                # the resolution as JSON (kind, outputs)
    await node.onchain.add_preimage(payment_hash, preimage)         # learned downstream: claim on-chain with it

(`record` has .channel_id, .core (the Channel) and .signer (its ChannelSigner).) The resolver then
(pure decisions and transactions in ampere.ln.onchain; this module runs them):
- recognises the spend (classify_spend): mutual close, our commitment, the peer's commitment, or a revoked
  commitment of the peer; HTLC outputs by rebuilding their scripts from every HTLC the channel ever held
  (table channel_htlc_stubs, written by the channel manager with each state);
- sweeps our to_local output (our commitment) to a fresh wallet address once to_self_delay has passed, and our
  to_remote output (the peer's commitment) at once: both then belong to the wallet (listfunds);
- leaves a mutual close output to the wallet, which recognises its own address in the block;
- on the peer's REVOKED commitment, takes its to_local and every HTLC output with the revocation key in the
  block the commitment is seen (one penalty transaction per output, so that the peer's second-stage
  transaction winning one output does not invalidate the others), then the output of any second-stage
  HTLC-success/timeout transaction the peer spends them with (BOLT 5 "Revoked Transaction Close Handling");
- HTLCs on our commitment: the HTLC-timeout (pre-signed by the peer) once cltv_expiry has passed, the
  HTLC-success once the preimage is known, then their delayed outputs after to_self_delay; on the peer's
  commitment: claimed directly, after cltv_expiry or with the preimage;
- a preimage the peer reveals on-chain, an HTLC of ours timed out on-chain and buried HTLC_FAIL_DEPTH deep, or
  one with no output in the close, goes to the payment layer and the switch as the peer's fulfill / fail would
  (channel_manager.onchain_htlc_resolved);
- claims racing a deadline (penalties, direct claims) are replaced at a higher feerate each block they wait
  (ampere.ln.onchain.fees);
- bookkeeping as CLN's onchaind (ampere.node.onchain.coin_moves): the close's `channel_close` debit, `to_them` for the
  peer's outputs, a credit and a debit per output we resolve, once the transactions are mined;
- when every output is resolved and the last resolving transaction is `bury_depth` blocks deep (100, CLN's
  "irrevocably resolved"), calls `await node.channel_manager.mark_closed(record, "onchain")`.

Progress is persisted (tables onchain_channels / onchain_txouts) before anything it decides is broadcast, so
a restart in the middle continues: a sweep once signed is rebroadcast byte for byte, never rebuilt. Reorgs: the
resolver is a chain listener; a disconnected block takes its spends back to unconfirmed, and every
unconfirmed transaction of ours (the funding spend itself, sweeps, penalties and HTLC claims that are valid) is
rebroadcast at each new block until it is buried. A different transaction spending the funding output after a reorg
replaces the old analysis.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ampere.chain.bitcoind import BitcoindError, BitcoindUnreachable
from ampere.ln.channel import core
from ampere.primitives.amount import sat_to_msat
from ampere.primitives.tx import OutPoint, Transaction, TxIn, TxOut
import json

from ampere.ln.channel.commitment import Side
from ampere.ln.channel.keys import secret_index
from ampere.ln.channel.shachain import ShachainError
from ampere.ln.channel.htlc_tx import HtlcTxKind
from ampere.ln.onchain.fees import deadline_feerate, worth_replacing
from ampere.ln.onchain.htlc import LocalHtlcTx, build_htlc_claim, local_htlc_txs, sign_htlc_claim
from ampere.ln.onchain.classify import (
    REVOCATION_KINDS,
    Action,
    HtlcStub,
    OnchainError,
    OurOutput,
    OutputKind,
    SpendAnalysis,
    SpendKind,
    SWEEP_DUST_LIMIT,
    SweepNotWorthIt,
    build_sweep,
    classify_spend,
    htlc_tx_delayed_output,
    preimage_from_witness,
    second_stage_output,
    sign_sweep,
)
from ampere.ln.channel.scripts import anchor_script
from ampere.primitives.script import p2wsh
from ampere.node.onchain.anchor_claims import AnchorClaims
from ampere.node.onchain.bumping import RBF_SEQUENCE, cpfp_child, package_feerate
from ampere.node.onchain.states import CLAIM_STATES as _CLAIM_STATES, DONE_STATES as _DONE_STATES
from ampere.node.onchain.states import (S_DUST, S_EXTERNAL, S_HTLC_SUCCESS, S_HTLC_TIMEOUT, S_PENALTY, S_SWEEP,
                                        S_UNRESOLVED, S_WALLET)
from ampere.node.onchain.coin_moves import chain_mvt, emit
from ampere.node.onchain.onchaind_log import OnchaindLog, rbf_line

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node

__all__ = ["OnchainResolver", "BURY_DEPTH", "write_htlc_stubs", "load_htlc_stubs"]

LOG = "onchaind"
# CLN forgets a channel once all its outputs have been "irrevocably resolved" for 100 blocks.
BURY_DEPTH = 100
# At start-up, how far back to look for a funding spend we did not record (a crash right after the manager
# persisted FUNDING_SPEND_SEEN).
FIND_SPEND_MAX_BLOCKS = 2016
RPC_VERIFY_ALREADY_IN_CHAIN = -27
SWEEP_FEERATE_BLOCKS = 12  # CLN's "delayed_to_us" sweeps aim at the `normal` rate
# Penalties race the peer's to_self_delay (and its second-stage transactions): aim at the next blocks.
PENALTY_FEERATE_BLOCKS = 2

# BOLT #5: an HTLC we offered and timed out on-chain fails upstream "once the resolving transaction has reached
# reasonable depth" (CLN: its reasonable depth, 3 blocks); never earlier: a reorg could still hand it to the peer.
HTLC_FAIL_DEPTH = 3

_KIND_TEXT = {SpendKind.MUTUAL: "mutual close", SpendKind.LOCAL: "our own unilateral close",
              SpendKind.REMOTE: "their unilateral close",
              SpendKind.REVOKED: "their REVOKED unilateral close"}


@dataclass
class Tracked:
    """One output of the funding spend that concerns us."""

    out: OurOutput
    state: str
    txid: bytes | None = None            # the transaction holding the output; None: the funding spend
    parent: int | None = None            # second stage: the funding spend's output that `txid` spends
    extra: dict = field(default_factory=dict)  # HTLC details: pre-signed second stage, preimage, reports
    sweep_tx: bytes | None = None        # our signed sweep, persisted before its first broadcast
    resolved_txid: bytes | None = None   # the transaction that spent it (ours or not)
    resolved_height: int | None = None   # ... and its block (None while unconfirmed)
    broadcast_at: int = -1               # transient: tip at our last broadcast

    @property
    def resolved(self) -> bool:
        return self.state in _DONE_STATES or self.resolved_height is not None

    @property
    def sweep_txid(self) -> bytes | None:
        return Transaction.parse(self.sweep_tx).txid() if self.sweep_tx else None

    def key(self, r: Resolution) -> tuple[bytes, int]:
        return (self.txid or r.spend_txid, self.out.vout)

    def is_ours(self, txid: bytes) -> bool:
        """`txid` is our spend of this output: the current version or one it replaced (RBF)."""
        return (self.sweep_tx is not None and txid == self.sweep_txid) or txid[::-1].hex() in self.extra.get("prev", ())


@dataclass
class Resolution:
    channel_id: bytes
    funding: OutPoint
    spend_tx: Transaction
    spend_height: int | None
    kind: SpendKind | None               # None: not analysed yet (a replacement spend seen without the record)
    commitment_number: int | None = None
    outputs: dict[tuple[bytes, int], Tracked] = field(default_factory=dict)  # (txid, vout) -> output
    closed: bool = False
    record: Any = None                   # the channel manager's record, once attached
    # HTLCs we offered with no output in the close (trimmed as dust, or not in that commitment): htlc_id ->
    # {"hash", "msat"}; failed upstream once the close is HTLC_FAIL_DEPTH deep (BOLT 5).
    missing: dict = field(default_factory=dict)
    broadcast_at: int = -1               # transient: tip at our last broadcast of spend_tx
    noted: set = field(default_factory=set)  # coin movements emitted for the close itself ("close")
    # option_anchors, our commitment unconfirmed: the CPFP child through our anchor {"tx", "rate", "since",
    # "deadline", "coins", "fee", "prev"} (persisted before its broadcast; replaced as the deadline nears).
    cpfp: dict | None = None

    @property
    def spend_txid(self) -> bytes:
        return self.spend_tx.txid()

    def last_height(self) -> int | None:
        """The block of the last resolving transaction (None while something is unconfirmed/unresolved)."""
        if self.spend_height is None or self.kind is None:
            return None
        heights = [self.spend_height]
        for t in self.outputs.values():
            if not t.resolved:
                return None
            if t.resolved_height is not None:
                heights.append(t.resolved_height)
        return max(heights)


class OnchainResolver(AnchorClaims):
    def __init__(self, node: Node, bury_depth: int = BURY_DEPTH) -> None:
        self.node = node
        self.bury_depth = bury_depth
        self._res: dict[bytes, Resolution] = {}
        # (txid, vout) -> (resolution, vout or None for the funding outpoint)
        self._watched: dict[tuple[bytes, int], tuple[Resolution, int | None]] = {}
        # Funding outpoints of restored channels whose spend we never recorded: (txid, vout) -> record.
        self._awaiting: dict[tuple[bytes, int], Any] = {}
        self._lock = asyncio.Lock()
        self._loaded = asyncio.Event()
        # fn(channel_id, HtlcStub | None, preimage): a preimage learned from an HTLC spend on-chain.
        self.preimage_listeners: list[Any] = []
        self._preimages: dict[bytes, bytes] = {}  # payment_hash -> preimage (table onchain_preimages)
        self._dirty: set[bytes] = set()  # resolutions to save after _advance
        # HTLC outcomes told to the payment layer / switch in this process. Not persisted on purpose: after a
        # restart they are told again (at least once; both ignore what they already settled), so a crash
        # between our report and their own write loses nothing.
        self._reported: set = set()
        self._telling: set[bytes] = set()  # channels whose mined commitment the manager is being told of
        self._plan_log = OnchaindLog(self)  # CLN's onchaind lines (the plan of each output, as tests follow it)
        # Listen before the chain watcher's first poll (it has not yielded yet): no block goes unseen.
        node.chain.add_listener(self)

    # ---- start-up ---------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            rows, outs = await self.node.store.read(lambda db: (
                db.query("SELECT channel_id, funding_txid, funding_vout, spend_tx, spend_height, kind, "
                         "commitment_number, closed, info FROM onchain_channels WHERE closed = 0"),
                db.query("SELECT o.channel_id, o.txid, o.vout, o.kind, o.state, o.value, o.scriptpubkey, o.csv, "
                         "o.witness_script, o.point, o.sweep_tx, o.resolved_txid, o.resolved_height, o.info "
                         "FROM onchain_txouts o JOIN onchain_channels c ON o.channel_id = c.channel_id "
                         "WHERE c.closed = 0 ORDER BY o.txid, o.vout")))
            for cid, ftxid, fvout, raw, height, kind, number, closed, info in rows:
                r = Resolution(bytes(cid), OutPoint(bytes(ftxid), fvout), Transaction.parse(bytes(raw)), height,
                               SpendKind(kind) if kind else None, number, closed=bool(closed))
                d = json.loads(info) if info else {}
                r.missing = {int(k): v for k, v in d.get("missing", {}).items()}
                r.noted = set(d.get("noted", ()))
                r.cpfp = d.get("cpfp")
                self._res[r.channel_id] = r
            for cid, txid, vout, kind, state, value, spk, csv, ws, point, sweep, rtxid, rheight, info in outs:
                r = self._res[bytes(cid)]
                extra = json.loads(info) if info else {}
                stub = HtlcStub.from_json(extra["htlc"]) if extra.get("htlc") else None
                out = OurOutput(vout, value, OutputKind(kind), _action_of(state), bytes(spk), csv,
                                _b(ws), _b(point), stub, bytes.fromhex(extra["rev"]) if extra.get("rev") else None)
                t = Tracked(out, state, bytes(txid) or None, extra.get("parent"), extra.get("x", {}), _b(sweep),
                            _b(rtxid), rheight)
                r.outputs[t.key(r)] = t
            for r in self._res.values():
                self._index(r)
            rows = await self.node.store.read(
                lambda db: db.query("SELECT payment_hash, preimage FROM onchain_preimages"))
            self._preimages.update((bytes(h), bytes(p)) for h, p in rows)
        finally:
            self._loaded.set()
        self.node.log.debug(LOG, "On-chain resolution: to_local (after to_self_delay) and to_remote outputs are swept "
                                 "to the wallet; a revoked commitment's outputs are taken with the revocation key")
        if self._res:
            self.node.log.info(LOG, f"Resuming the on-chain resolution of {len(self._res)} channel(s)")

    # ---- the channel manager's calls ----------------------------------------------------------
    async def funding_spent(self, record: Any, spending_tx: Transaction, height: int | None) -> None:
        """The funding output of `record`'s channel was spent by `spending_tx` (mined at `height`)."""
        await self._loaded.wait()
        async with self._lock:
            r = self._res.get(record.channel_id)
            if r is not None and r.spend_txid == spending_tx.txid():
                r.record = record
                if height is not None and r.spend_height != height:
                    r.spend_height = height
                    await self._save(r)
                if height is not None:
                    # Followed from the mempool (our anchor commitment, CPFP'd): FUNDING_SPEND_SEEN -> ONCHAIN now.
                    if self.node.channel_manager is not None:
                        await self.node.channel_manager.mark_onchain(record)
            else:
                if r is not None:
                    self._unindex(r)
                r = await self._begin(record, spending_tx, height)
                if height is not None:
                    await self._scan(r, height)
            await self._advance(r, self._tip(height))

    async def restore(self, record: Any) -> None:
        """At start-up, for a channel in FUNDING_SPEND_SEEN or ONCHAIN: attach it and carry on."""
        await self._loaded.wait()
        async with self._lock:
            r = self._res.get(record.channel_id)
            if r is None:
                if await self._closed_in_store(record.channel_id):
                    # We had finished; the manager did not hear it before the restart.
                    await self._close(record, None)
                    return
                found = await self._find_spend(record.core.params.funding_outpoint)
                if found is None:
                    op = record.core.params.funding_outpoint
                    self._awaiting[(op.txid, op.vout)] = record
                    self.node.log.unusual(LOG, f"Channel {record.channel_id.hex()}: no mined spend of its funding "
                                               f"output {op.txid_hex()}:{op.vout} found; watching for it")
                    return
                tx, height = found
                r = await self._begin(record, tx, height)
                await self._scan(r, height)
            else:
                r.record = record
                if r.kind is None:
                    await self._analyse(r)
            await self._advance(r, self._tip(None))

    def status(self, channel_id: bytes) -> list[str]:
        """Human-readable lines about the resolution, for listpeerchannels `status` (CLN's billboard)."""
        r = self._res.get(channel_id)
        if r is None:
            return []
        state = r.record.core.state.value if r.record is not None else "ONCHAIN"
        tip = self._tip(None)
        lines = []
        if r.kind is None:
            lines.append(f"{state}:Funding spent by {r.spend_tx.txid_hex()}, not analysed yet")
            return lines
        lines.append(f"{state}:Tracking {_KIND_TEXT[r.kind]} {r.spend_tx.txid_hex()}"
                     + ("" if r.spend_height is not None else " (unconfirmed)"))
        for t in r.outputs.values():
            lines.append(f"{state}:{_output_text(r, t, tip)}")
        for htlc_id, m in r.missing.items():
            lines.append(f"{state}:Our HTLC {htlc_id} ({m['msat']}msat, {m['hash']}) has no output in the close "
                         f"(trimmed as dust): " + ("failed" if (r.channel_id, "missing", htlc_id) in self._reported else
                                                   f"fails once the close is {HTLC_FAIL_DEPTH} blocks deep"))
        last = r.last_height()
        if last is not None:
            left = max(0, self.bury_depth - (tip - last + 1))
            lines.append(f"{state}:All outputs resolved: waiting {left} more blocks before forgetting channel")
        return lines

    def describe(self, channel_id: bytes) -> dict | None:
        r = self._res.get(channel_id)
        if r is None:
            return None
        return {
            "spend_txid": r.spend_tx.txid_hex(), "spend_height": r.spend_height,
            "kind": r.kind.value if r.kind else None, "commitment_number": r.commitment_number,
            "outputs": [{"txid": t.key(r)[0][::-1].hex(), "vout": t.out.vout,
                         "amount_msat": sat_to_msat(t.out.value_sat), "kind": t.out.kind.value,
                         "state": t.state, "csv": t.out.csv,
                         "sweep_txid": t.sweep_txid[::-1].hex() if t.sweep_tx else None,
                         "resolved_txid": t.resolved_txid[::-1].hex() if t.resolved_txid else None,
                         "resolved_height": t.resolved_height,
                         "payment_hash": t.out.htlc.payment_hash.hex() if t.out.htlc else None}
                        for t in r.outputs.values()],
        }

    # ---- chain listener -----------------------------------------------------------------------
    async def block_connected(self, height: int, block: Any) -> None:
        await self._loaded.wait()
        if not self._watched and not self._awaiting:
            return
        async with self._lock:
            touched: dict[bytes, Resolution] = {}
            for tx in block.txs:
                txid = None
                for txin in tx.inputs:
                    key = (txin.prevout.txid, txin.prevout.vout)
                    if key in self._awaiting:
                        record = self._awaiting.pop(key)
                        r = await self._begin(record, tx, height)
                        touched[r.channel_id] = r
                        continue
                    hit = self._watched.get(key)
                    if hit is None:
                        continue
                    txid = txid or tx.txid()
                    r, vout = hit
                    touched[r.channel_id] = r
                    if vout is None:
                        await self._funding_spend_mined(r, tx, txid, height)
                    else:
                        t = r.outputs.get(vout)
                        if t is not None:
                            self._output_spent(r, t, tx, txid, height)
            for r in touched.values():
                await self._save(r)
            for r in list(self._res.values()):
                await self._advance(r, height)

    async def block_disconnected(self, height: int, block_hash: bytes, block: Any) -> None:
        await self._loaded.wait()
        async with self._lock:
            for r in list(self._res.values()):
                changed = False
                if r.spend_height is not None and r.spend_height >= height:
                    self.node.log.unusual(LOG, f"Channel {r.channel_id.hex()}: the funding spend "
                                               f"{r.spend_tx.txid_hex()} was reorganised out of block {height}; "
                                               "rebroadcasting it")
                    r.spend_height = None
                    r.broadcast_at = -1
                    changed = True
                for t in r.outputs.values():
                    if t.resolved_height is not None and t.resolved_height >= height:
                        self.node.log.unusual(LOG, f"Channel {r.channel_id.hex()}: the spend of output {t.out.vout} "
                                                   f"was reorganised out of block {height}")
                        t.resolved_height = None
                        t.resolved_txid = None
                        t.broadcast_at = -1
                        changed = True
                if changed:
                    await self._save(r)

    # ---- analysis -------------------------------------------------------------------------------
    async def _begin(self, record: Any, tx: Transaction, height: int | None) -> Resolution:
        """A new funding spend for `record`: analyse, persist, then tell the manager it is ONCHAIN."""
        ch = record.core
        r = Resolution(record.channel_id, ch.params.funding_outpoint, tx, height, None, record=record)
        self._res[r.channel_id] = r
        await self._analyse(r)
        if self.node.channel_manager is not None:
            await self.node.channel_manager.mark_onchain(record)
        return r

    async def _analyse(self, r: Resolution) -> None:
        record = r.record
        ch = record.core
        try:
            local_txid = core.local_commitment(ch, record.signer).txid
        except ValueError:  # CommitmentError / KeyDerivationError: the scripts alone still tell
            local_txid = None
        stubs = await load_htlc_stubs(self.node.store, r.channel_id, ch.htlcs)
        try:
            a: SpendAnalysis = classify_spend(ch, record.signer.commitment_point, r.spend_tx, local_txid, stubs)
        except OnchainError as e:
            self.node.log.broken(LOG, f"Channel {r.channel_id.hex()}: {e}")
            return
        r.kind, r.commitment_number = a.kind, a.commitment_number
        r.outputs = {}
        wallet_scripts = self.node.wallet.scripts if self.node.wallet is not None else {}
        for out in a.outputs:
            if out.action is Action.WALLET:
                state = S_WALLET if out.script_pubkey in wallet_scripts else S_EXTERNAL
            elif out.action is Action.SWEEP:
                state = S_SWEEP
            elif out.action is Action.PENALTY:
                state = S_PENALTY
            elif out.action is Action.HTLC_TIMEOUT:
                state = S_HTLC_TIMEOUT
            elif out.action is Action.HTLC_SUCCESS:
                state = S_HTLC_SUCCESS
            else:
                state = S_UNRESOLVED
            t = Tracked(out, state)
            r.outputs[t.key(r)] = t
        if a.kind is SpendKind.LOCAL:
            self._presign_local_htlc_txs(r, a.commitment_number)
        # BOLT #5: "for any committed HTLC that does not have an output in this commitment transaction: once the
        # commitment transaction has reached reasonable depth: MUST fail the corresponding incoming HTLC".
        present = {t.out.htlc.htlc_id for t in r.outputs.values()
                   if t.out.htlc is not None and t.out.htlc.offerer is Side.LOCAL}
        r.missing = {}
        if a.kind is not SpendKind.MUTUAL:
            for h in ch.htlcs:
                if h.offerer is Side.LOCAL and h.htlc_id not in present and not (
                        h.removal is not None and h.removal.preimage):
                    r.missing[h.htlc_id] = {"hash": h.payment_hash.hex(), "msat": h.amount_msat}
        # Preimages the channel already knows (HTLCs we fulfilled before the close).
        for h in ch.htlcs:
            if h.removal is not None and h.removal.preimage:
                await self._remember_preimage(h.payment_hash, h.removal.preimage)
        await self._save(r)
        self._index(r)
        cid = r.channel_id.hex()
        number = f" #{a.commitment_number}" if a.commitment_number is not None else ""
        where = f"block {r.spend_height}" if r.spend_height is not None else "the mempool"
        self.node.log.info(LOG, f"Channel {cid}: funding output spent by {_KIND_TEXT[a.kind]}{number} "
                                f"{r.spend_tx.txid_hex()} in {where}; outputs for us: "
                                + (", ".join(f"{t.out.kind.value} #{t.out.vout} ({t.out.value_sat} sat, {t.state})"
                                             for t in r.outputs.values()) or "none"))
        for level, text in a.notes:
            self.node.log.log(level, LOG, f"Channel {cid}: {text}")
        for t in r.outputs.values():
            if t.state == S_EXTERNAL:
                self.node.log.info(LOG, f"Channel {cid}: mutual close output {t.out.vout} ({t.out.value_sat} sat) "
                                        "pays an address outside our wallet (close_to)")

    def _presign_local_htlc_txs(self, r: Resolution, number: int | None) -> None:
        """Our commitment: the HTLC-timeout/success transactions, with the peer's signatures from its last
        commitment_signed and ours (the success one still needs the preimage in its witness)."""
        record = r.record
        ch = record.core
        htlc_outs = [t for t in r.outputs.values() if t.state in (S_HTLC_TIMEOUT, S_HTLC_SUCCESS)]
        if not htlc_outs:
            return
        if number != ch.local_ctn:
            for t in htlc_outs:
                t.state = S_UNRESOLVED
            self.node.log.broken(LOG, f"Channel {r.channel_id.hex()}: our commitment #{number} is not our latest "
                                      f"(#{ch.local_ctn}): we hold no HTLC signatures for it")
            return
        try:
            ltxs = {x.output_index: x for x in local_htlc_txs(core.local_commitment(ch, record.signer),
                                                               ch.local_htlc_sigs, record.signer)}
        except ValueError as e:
            self.node.log.broken(LOG, f"Channel {r.channel_id.hex()}: cannot build our HTLC transactions: {e}")
            return
        for t in htlc_outs:
            x = ltxs.get(t.out.vout)
            if x is None:
                t.state = S_UNRESOLVED
                continue
            t.extra["stage"] = [x.tx.serialize().hex(), x.their_sig.hex(), x.our_sig.hex(), x.kind.value]
            # option_anchors: the pre-signed transaction pays no fee; it gets wallet inputs when it is due.
            if t.state == S_HTLC_TIMEOUT and not ch.params.channel_type.anchors:
                t.sweep_tx = x.complete().serialize()  # valid once cltv_expiry has passed

    async def _remember_preimage(self, payment_hash: bytes, preimage: bytes) -> None:
        if self._preimages.get(payment_hash) == preimage:
            return
        await self.node.store.write(lambda db: db.execute(
            "INSERT OR IGNORE INTO onchain_preimages (payment_hash, preimage) VALUES (?,?)", (payment_hash, preimage)))
        self._preimages[payment_hash] = preimage

    async def kick(self) -> None:
        """Carry on at the current tip (the payment runtime just started: pending reports can go out)."""
        await self._loaded.wait()
        async with self._lock:
            for r in list(self._res.values()):
                await self._advance(r, self._tip(None))

    async def add_preimage(self, payment_hash: bytes, preimage: bytes) -> None:
        """A preimage learned elsewhere (downstream, an invoice) for HTLCs the peer offered on a channel that is
        on-chain: claim them with it (BOLT #5: "MUST resolve the output by spending it to a convenient address")."""
        await self._loaded.wait()
        async with self._lock:
            await self._remember_preimage(payment_hash, preimage)
            for r in list(self._res.values()):
                await self._advance(r, self._tip(None))

    async def _funding_spend_mined(self, r: Resolution, tx: Transaction, txid: bytes, height: int) -> None:
        if txid == r.spend_txid:
            r.spend_height = height
            return
        # After a reorg another transaction spent the funding output: start over with it.
        self.node.log.unusual(LOG, f"Channel {r.channel_id.hex()}: the funding output is now spent by "
                                   f"{tx.txid_hex()} (block {height}) instead of {r.spend_tx.txid_hex()}")
        self._unindex(r)
        r.spend_tx, r.spend_height, r.kind, r.outputs, r.broadcast_at = tx, height, None, {}, -1
        self._index(r)
        if r.record is not None:
            await self._analyse(r)
        else:
            await self._save(r)

    def _output_spent(self, r: Resolution, t: Tracked, tx: Transaction, txid: bytes, height: int) -> None:
        if (t.resolved_txid, t.resolved_height) == (txid, height):
            return  # seen already (a scan of the close's block, then that block's own notification)
        t.resolved_txid, t.resolved_height = txid, height
        self._plan_log.resolved(r, t, txid, t.is_ours(txid))
        cid, what = r.channel_id.hex(), f"{t.out.kind.value} output {t.out.vout} ({t.out.value_sat} sat)"
        if t.out.kind is OutputKind.REVOKED_HTLC:
            # A second stage seen before a reorg, replaced by another spend: forget it.
            for key, n in list(r.outputs.items()):
                if n.parent == t.out.vout and n.txid != txid:
                    del r.outputs[key]
                    self._watched.pop(key, None)
        if (t.is_ours(txid) and r.kind is SpendKind.LOCAL
                and t.out.kind in (OutputKind.OUR_HTLC, OutputKind.THEIR_HTLC)):
            # Our HTLC transaction: its output is ours after to_self_delay.
            self.node.log.info(LOG, f"Channel {cid}: our HTLC-{'timeout' if t.state == S_HTLC_TIMEOUT else 'success'} "
                                    f"{txid[::-1].hex()} of {what} is in block {height}")
            n = Tracked(htlc_tx_delayed_output(r.record.core, t.out, tx, r.spend_txid), S_SWEEP, txid, t.out.vout)
            if n.key(r) not in r.outputs:
                r.outputs[n.key(r)] = n
                self._watched[n.key(r)] = (r, n.key(r))
        elif t.is_ours(txid):
            self.node.log.info(LOG, f"Channel {cid}: our sweep {txid[::-1].hex()} of {what} is in block {height}")
        elif t.out.kind is OutputKind.OUR_HTLC:
            # BOLT #5: the peer claimed our HTLC with the preimage: "MUST extract the payment preimage".
            if self._learn_preimage(r, t, tx, txid) is None:
                self.node.log.unusual(LOG, f"Channel {cid}: our {what} was spent by {txid[::-1].hex()} without a "
                                           "preimage")
        elif t.out.kind is OutputKind.THEIR_HTLC:
            self.node.log.info(LOG, f"Channel {cid}: the peer took back its {what} (timed out) with "
                                    f"{txid[::-1].hex()} in block {height}")
        elif t.out.kind is OutputKind.REVOKED_HTLC:
            # The peer was faster with its second-stage transaction: its output is revocable too.
            self._learn_preimage(r, t, tx, txid)
            second = second_stage_output(r.record.core, t.out, tx, t.txid or r.spend_txid) if r.record is not None else None
            if second is None:
                self.node.log.broken(LOG, f"Channel {cid}: revoked {what} was spent by {txid[::-1].hex()} in block "
                                          f"{height}, which is not a second-stage HTLC transaction we can penalise")
                return
            n = Tracked(second, S_PENALTY, txid, t.out.vout)
            if n.key(r) in r.outputs:
                return
            r.outputs[n.key(r)] = n
            self._watched[n.key(r)] = (r, n.key(r))
            self.node.log.unusual(LOG, f"Channel {cid}: the peer spent revoked {what} with its second-stage "
                                       f"transaction {txid[::-1].hex()} (block {height}): taking its output "
                                       f"{second.vout} ({second.value_sat} sat) with the revocation key")
        elif t.state == S_SWEEP:
            self.node.log.unusual(LOG, f"Channel {cid}: {what} was spent by {txid[::-1].hex()} in block {height}, "
                                       "not by our sweep")
        else:
            self.node.log.info(LOG, f"Channel {cid}: {what} was spent by {txid[::-1].hex()} in block {height}")

    def _learn_preimage(self, r: Resolution, t: Tracked, tx: Transaction, txid: bytes) -> bytes | None:
        """BOLT #5: "MUST extract the payment preimage from the transaction input witness" of a spend of an HTLC
        output: tell the listeners (payments, the switch) so that the HTLC upstream is fulfilled."""
        key = t.key(r)
        stub = t.out.htlc
        for txin in tx.inputs:
            if (txin.prevout.txid, txin.prevout.vout) != key:
                continue
            preimage = preimage_from_witness(txin.witness, stub.payment_hash if stub else None)
            if preimage is None:
                return None
            self.node.log.info(LOG, f"Channel {r.channel_id.hex()}: learned the preimage of HTLC "
                                    f"{stub.payment_hash.hex() if stub else '?'} on-chain from {txid[::-1].hex()}")
            self._plan_log.preimage(r, t, preimage)
            if stub is not None:
                self._preimages[stub.payment_hash] = preimage
                t.extra["preimage"] = preimage.hex()
            for fn in list(self.preimage_listeners):
                try:
                    fn(r.channel_id, stub, preimage)
                except Exception as e:  # a listener's bug must not stop the resolution
                    self.node.log.broken(LOG, f"preimage listener failed: {e!r}")
            return preimage
        return None

    async def _scan(self, r: Resolution, height: int) -> None:
        """Look for spends of `r`'s outputs in the blocks from `height` (the close's) to the tip: the peer's
        second-stage transactions may share the close's block, which reached the chain listeners before the
        resolution existed."""
        chain = self.node.chain
        try:
            # The backend's tip, not the watcher's: this runs while the watcher is still connecting a block.
            tip = (await chain.backend.chain_info(chain.height)).blocks
            for h in range(height, tip + 1):
                block = await chain.block_at(h)
                if block is None:
                    break
                for tx in block.txs:
                    txid = None
                    for txin in tx.inputs:
                        hit = self._watched.get((txin.prevout.txid, txin.prevout.vout))
                        if hit is None or hit[0] is not r or hit[1] is None:
                            continue
                        txid = txid or tx.txid()
                        self._output_spent(r, r.outputs[hit[1]], tx, txid, h)
        except (BitcoindError, BitcoindUnreachable, ValueError) as e:
            self.node.log.unusual(LOG, f"Channel {r.channel_id.hex()}: scanning blocks from {height} failed: {e}")
        await self._save(r)

    def _report_htlc(self, r: Resolution, t: Tracked, tip: int) -> None:
        """Tell the payment layer / switch how an HTLC we offered ended on-chain (once per process; again after
        a restart: they ignore what they already know)."""
        if t.out.kind not in (OutputKind.OUR_HTLC, OutputKind.REVOKED_HTLC) or t.out.htlc is None \
                or t.out.htlc.offerer is not Side.LOCAL or (r.channel_id, t.key(r)) in self._reported:
            return
        if t.resolved_height is None:
            return
        manager = self.node.channel_manager
        report = getattr(manager, "onchain_htlc_resolved", None)
        if report is None or r.record is None:
            return
        pre = t.extra.get("preimage")
        if pre is not None:
            if report(r.record, t.out.htlc.htlc_id, bytes.fromhex(pre)) is False:
                return
        elif t.resolved_txid is not None and t.is_ours(t.resolved_txid):
            if tip - t.resolved_height + 1 < HTLC_FAIL_DEPTH:
                return
            if report(r.record, t.out.htlc.htlc_id, None) is False:
                return
        else:
            return
        self._reported.add((r.channel_id, t.key(r)))

    def _report_missing(self, r: Resolution, tip: int) -> None:
        if not r.missing or r.spend_height is None or tip - r.spend_height + 1 < HTLC_FAIL_DEPTH:
            return
        if self.node.channel_manager is None or r.record is None:
            return
        report = self.node.channel_manager.onchain_htlc_resolved
        for htlc_id, m in r.missing.items():
            key = (r.channel_id, "missing", htlc_id)
            if key not in self._reported and report(r.record, htlc_id, None) is not False:
                self._reported.add(key)

    def _movements(self, r: Resolution) -> list[dict]:
        """The chain_mvts (ampere.node.onchain.coin_moves) due at this point of `r`, marked as emitted on `r` (saved with
        their numbering): the close's debit of our balance, the peer's outputs as `to_them`, and for each output
        we resolved a credit with its tag and a debit to where our transaction took it."""
        if r.record is None or r.kind is None or r.spend_height is None:
            return []
        cid, peer = r.channel_id.hex(), getattr(r.record, "peer_id", None)
        out: list[dict] = []
        if "close" not in r.noted:
            r.noted.add("close")
            ch = r.record.core
            out.append(chain_mvt(self.node, cid, "channel_close", (r.funding.txid, r.funding.vout), ch.funding_sat,
                                 r.spend_height, debit_msat=ch.balance_local_msat, spending_txid=r.spend_txid,
                                 peer_id=peer, output_count=len(r.spend_tx.outputs)))
            tracked = {t.out.vout for t in r.outputs.values() if t.txid is None}
            p = ch.params
            # option_anchors: our anchor is left for anyone to spend (we never need to CPFP a mined close): it
            # leaves our books like the peer's outputs, tagged `anchor`.
            our_anchor = p2wsh(anchor_script(p.local_pubkeys.funding_pubkey)) if p.channel_type.anchors else None
            for vout, o in enumerate(r.spend_tx.outputs):
                if vout not in tracked:  # the peer's (to_remote of our commitment, its side of a mutual close)
                    tag = "anchor" if o.script_pubkey == our_anchor else "to_them"
                    out.append(chain_mvt(self.node, "external", tag, (r.spend_txid, vout), o.value,
                                         r.spend_height, credit_msat=sat_to_msat(o.value), originating_account=cid))
        for t in r.outputs.values():
            done = t.extra.get("mvt")
            if done is True or done == "out" or t.resolved_height is None or t.resolved_txid is None:
                continue
            if t.state in _DONE_STATES:
                continue  # the wallet's own deposit, or not ours to follow
            utxo, v = t.key(r), t.out.value_sat
            ph = t.out.htlc.payment_hash if t.out.htlc is not None else None
            if not t.is_ours(t.resolved_txid):
                if t.out.kind is OutputKind.REVOKED_HTLC:
                    t.extra["mvt"] = "out"  # its second-stage output is ours (penalty): followed on its own
                    continue
                # The peer took it (its HTLC timed out, ours claimed with the preimage): its money now.
                out.append(chain_mvt(self.node, "external", "to_them", utxo, v, t.resolved_height,
                                     credit_msat=sat_to_msat(v), originating_account=cid, payment_hash=ph))
                t.extra["mvt"] = "out"
                continue
            tag = _MVT_TAG.get(t.out.kind)
            if tag is None:
                continue
            out.append(chain_mvt(self.node, cid, tag, utxo, v, t.resolved_height, credit_msat=sat_to_msat(v),
                                 peer_id=peer, payment_hash=ph))
            # Our HTLC transaction (our commitment) moves it to a second stage still on this account.
            second = r.kind is SpendKind.LOCAL and t.out.kind in (OutputKind.OUR_HTLC, OutputKind.THEIR_HTLC)
            out.append(chain_mvt(self.node, cid, tag if second else "to_wallet", utxo, v, t.resolved_height,
                                 debit_msat=sat_to_msat(v), spending_txid=t.resolved_txid, peer_id=peer,
                                 payment_hash=ph))
            t.extra["mvt"] = "out"
        for t in r.outputs.values():
            # Our anchor, swept along with `t`: the close recorded it as going "external" (tag `anchor`, as CLN
            # does: nobody knows then whether we will ever spend it); our sweep brings it back from there (the
            # same tag, debited) into the wallet's deposit of the sweep's output.
            a = t.extra.get("anchor")
            if a is None or "anchor" in r.noted or t.resolved_height is None or t.resolved_txid != t.sweep_txid:
                continue
            r.noted.add("anchor")
            v = r.spend_tx.outputs[a].value
            out.append(chain_mvt(self.node, "external", "anchor", (r.spend_txid, a), v, t.resolved_height,
                                 debit_msat=sat_to_msat(v), spending_txid=t.resolved_txid, originating_account=cid))
        return out

    # ---- progress --------------------------------------------------------------------------------
    def _tip(self, height: int | None) -> int:
        tip = self.node.chain.height if self.node.chain is not None else -1
        return max(tip, height) if height is not None else tip

    def follows(self, channel_id: bytes) -> bool:
        """A resolution is under way for this channel (also one followed from the mempool: our anchor commitment)."""
        return channel_id in self._res

    def _tell_manager_mined(self, r: Resolution) -> None:
        """Our anchor commitment, followed from the mempool, is mined: the manager (still AWAITING_UNILATERAL, its
        own watcher may have come second or a crash came in between) records the spend. A task: it calls back into
        funding_spent, which takes our lock."""
        rec, mgr = r.record, self.node.channel_manager
        if rec is None or mgr is None or r.spend_height is None \
                or r.channel_id in self._telling \
                or getattr(getattr(rec, "state", None), "value", None) != "AWAITING_UNILATERAL":
            return
        self._telling.add(r.channel_id)
        task = asyncio.get_running_loop().create_task(mgr._funding_spent(rec, r.spend_tx, r.spend_height))
        task.add_done_callback(lambda _t, cid=r.channel_id: self._telling.discard(cid))

    async def _advance(self, r: Resolution, tip: int) -> None:
        """Everything that can be done at this tip (_advance_at), once the chain watcher has caught up with the
        backend's tip, with a bug in one channel's resolution kept to that channel: logged BROKEN and taken up again
        at the next block or call. Raised, it would stop the other channels' resolution, or (from block_connected)
        the block would be redone at every poll and the node would never see a later block: no deadline of any
        channel would come."""
        chain = self.node.chain
        if chain is not None and tip < chain.target_height:
            # Catching up with blocks missed while down: spends are recorded block by block (block_connected), but
            # claims are built and broadcast once, at the tip. At each past block they would be fee-bumped as if
            # that many blocks had gone by without them, and rebroadcast when a later block may hold them already.
            return
        try:
            await self._advance_at(r, tip)
        except (asyncio.CancelledError, BitcoindError, BitcoindUnreachable):
            raise   # not a bug: the chain backend's trouble, handled (and the block redone) by the chain watcher
        except Exception as e:
            self.node.log.broken(LOG, f"Channel {r.channel_id.hex()}: resolving at block {tip} failed: {e!r}; "
                                      "again at the next block")

    async def _advance_at(self, r: Resolution, tip: int) -> None:
        """Everything that can be done at this tip: (re)broadcasts, sweeps, closing."""
        if r.closed or tip < 0 or r.kind is None:
            return
        self._tell_manager_mined(r)
        if r.spend_height is None:
            if r.broadcast_at != tip:
                r.broadcast_at = tip
                # (the manager's own transaction, already out once: not a crash point of the resolution)
                await self._broadcast(r, r.spend_tx, "funding spend", crash_point=False)
                if r.kind is SpendKind.LOCAL and r.record is not None and r.record.core.params.channel_type.anchors:
                    await self._cpfp(r, tip)
            return
        self._plan_log.funding_resolved(r)
        for t in list(r.outputs.values()):
            self._plan_log.tracking(r, t)
            self._report_htlc(r, t, tip)
            if t.state not in _CLAIM_STATES or t.resolved_height is not None:
                continue
            base = r.spend_height
            if t.parent is not None:
                p = r.outputs.get((r.spend_txid, t.parent))
                if p is None or p.resolved_txid != t.txid or p.resolved_height is None:
                    continue  # the second stage holding it is not (or no longer) in the chain
                base = p.resolved_height
            # BIP68: an input locked for N blocks may be in a block at height >= (its block) + N; the next
            # block is tip + 1.
            if tip + 1 < base + t.out.csv:
                await self._plan_log.deferred(r, t, tip, base)
                continue
            if t.state == S_HTLC_TIMEOUT and tip < t.out.htlc.cltv_expiry:
                await self._plan_log.deferred(r, t, tip, base)
                continue  # nLockTime = cltv_expiry: final in block tip + 1 once cltv_expiry < tip + 1
            if t.state == S_HTLC_SUCCESS and t.out.htlc.payment_hash not in self._preimages:
                self._plan_log.ignored(r, t, base, tip)
                continue  # not ours to take (yet): the peer times it out after cltv_expiry
            if t.sweep_tx is None:
                if r.record is None or not await self._make_sweep(r, t, tip):
                    continue
            elif r.record is not None:
                await self._maybe_bump(r, t, tip, base)
                if t.sweep_tx is None:
                    continue  # an aggregated HTLC transaction that can no longer be mined, not rebuilt yet
            if t.broadcast_at != tip and any(u.broadcast_at == tip and u.sweep_tx == t.sweep_tx
                                             for u in r.outputs.values() if u is not t):
                t.broadcast_at = tip  # the same transaction (aggregated HTLC transactions) went out already
            self._plan_log.due(r, t, base)
            if t.broadcast_at != tip:
                t.broadcast_at = tip
                tx = Transaction.parse(t.sweep_tx)
                what = {S_PENALTY: "penalty", S_HTLC_TIMEOUT: "HTLC timeout",
                        S_HTLC_SUCCESS: "HTLC success"}.get(t.state, "sweep")
                if await self._broadcast(r, tx, f"{what} of {t.out.kind.value} output {t.out.vout}"):
                    wallet = self.node.wallet
                    if wallet is not None and (tx.txid(), len(tx.outputs) - 1) not in wallet.outputs:
                        await wallet.record_sent(tx)  # listfunds shows it (unconfirmed) at once
        self._report_missing(r, tip)
        mvts = self._movements(r)
        if mvts:
            self._dirty.discard(r.channel_id)
            await emit(self.node, mvts, also=self._writer(r))  # numbered and marked emitted in one write
        if r.channel_id in self._dirty:
            self._dirty.discard(r.channel_id)
            await self._save(r)
        last = r.last_height()
        if last is not None:
            self._plan_log.all_resolved(r, tip, last, self.bury_depth)
        if last is not None and tip - last + 1 >= self.bury_depth and r.record is not None:
            await self._close(r.record, r)

    def _deadline(self, r: Resolution, t: Tracked, base: int) -> int | None:
        """The block by which our spend of `t` must confirm (None: no race to win)."""
        p = r.record.core.params
        if t.state == S_PENALTY:
            if t.out.kind is OutputKind.REVOKED_HTLC:
                # The peer can take an HTLC it received with its preimage at any time, one it offered at expiry.
                if t.out.htlc is not None and t.out.htlc.offerer is Side.REMOTE:
                    return t.out.htlc.cltv_expiry
                return base + 1
            return base + p.remote_to_self_delay  # to_local / second stage: CSV-locked for the peer
        if t.state == S_HTLC_SUCCESS and r.kind is not SpendKind.LOCAL and t.out.htlc is not None:
            return t.out.htlc.cltv_expiry         # then the peer can time it out
        return None

    def _claim_rate(self, r: Resolution, t: Tracked, tip: int, base: int, waited: int) -> int:
        fees = self.node.chain.fees
        deadline = self._deadline(r, t, base) if r.record is not None else None
        if deadline is None:
            blocks = PENALTY_FEERATE_BLOCKS if t.state == S_PENALTY else SWEEP_FEERATE_BLOCKS
            return fees.for_deadline(blocks) or fees.floor
        return deadline_feerate(fees.for_deadline, fees.floor, deadline - tip, waited)

    async def _maybe_bump(self, r: Resolution, t: Tracked, tip: int, base: int) -> None:
        """RBF: a claim still unconfirmed as its deadline nears is replaced at a higher feerate (our own
        pre-signed HTLC transactions cannot be: their fee is fixed by both signatures)."""
        if t.extra.get("anchor") is not None and tip > t.extra.get("since", tip):
            await self._anchor_lost(r, t, tip)
            if t.sweep_tx is None or t.extra.get("since") == tip:
                return
        if "hrate" in t.extra and t.sweep_tx is not None:
            await self._bump_local_htlcs(r, t, tip)  # option_anchors: our funded HTLC transaction
            return
        if "rate" not in t.extra or self._deadline(r, t, base) is None:
            return
        since = t.extra.get("since", tip)
        if tip <= since:
            return  # bumped only after a block went by without it
        rate = self._claim_rate(r, t, tip, base, tip - since)
        old = Transaction.parse(t.sweep_tx)
        if not worth_replacing(t.extra["rate"], rate):
            return
        # Never pay more than the output leaves above the dust limit (a penalty would rather burn it all).
        weight = old.weight() + 8  # the size estimate uses the largest signature
        rate = min(rate, (t.out.value_sat - SWEEP_DUST_LIMIT - 1) * 1000 // weight)
        if not worth_replacing(t.extra["rate"], rate):
            return
        prev = t.sweep_txid
        # Remembered with the replacement, in the same write: whichever version is mined is recognised as ours.
        t.extra.setdefault("prev", []).append(prev[::-1].hex())
        if not await self._make_sweep(r, t, tip, rate=rate, dest=old.outputs[0].script_pubkey):
            t.extra["prev"].pop()
            return
        t.broadcast_at = -1
        if self.node.wallet is not None:
            # The wallet counted the replaced sweep's output (unconfirmed) when it went out: replaced, it will not
            # exist (should the replaced one be mined after all, its block brings the output back).
            await self.node.wallet.forget_replaced(prev)
        new = Transaction.parse(t.sweep_tx)
        old_fee, new_fee = (t.out.value_sat - x.outputs[0].value for x in (old, new))
        self.node.log.info(LOG, rbf_line(False, prev[::-1].hex(), old_fee, new.txid_hex(), new_fee))
        self.node.log.info(LOG, f"Channel {r.channel_id.hex()}: {t.out.kind.value} output {t.out.vout} still "
                                f"unclaimed at block {tip}: replacing {prev[::-1].hex()} at {rate}perkw by "
                                f"{t.sweep_txid[::-1].hex()}")

    async def _cpfp(self, r: Resolution, tip: int) -> None:
        """Our anchor commitment is unconfirmed: a child spending our anchor with wallet coins brings the package
        to the feerate its deadline needs (BOLT #3: the anchors exist so that "the commitment transaction can be
        fee-bumped" by CPFP), replaced at a higher rate (RBF, same coins) each block it waits."""
        p = r.record.core.params
        ws = anchor_script(p.local_pubkeys.funding_pubkey)
        vout = next((i for i, o in enumerate(r.spend_tx.outputs) if o.script_pubkey == p2wsh(ws)), None)
        wallet = self.node.wallet
        if vout is None or wallet is None:
            return
        c = r.cpfp
        if c is not None and tip <= c["since"]:
            await self._rebroadcast_cpfp(r, c)
            return
        fees = self.node.chain.fees
        parent_fee = p.funding_sat - sum(o.value for o in r.spend_tx.outputs)
        if c is None:
            # The deadline: the first HTLC on it that must be resolved in time, else CLN's unilateral_close
            # target (6 blocks).
            expiries = [t.out.htlc.cltv_expiry for t in r.outputs.values()
                        if t.out.htlc is not None and t.state in (S_HTLC_TIMEOUT, S_HTLC_SUCCESS)]
            deadline = min(expiries) if expiries else tip + 6
            rate = fees.for_deadline(max(1, deadline - tip)) or fees.floor
            if rate * r.spend_tx.weight() <= parent_fee * 1000:
                return  # the commitment's own fee is enough
        else:
            deadline = c["deadline"]
            rate = deadline_feerate(fees.for_deadline, fees.floor, deadline - tip, tip - c["since"])
            if not worth_replacing(c["rate"], rate):
                await self._rebroadcast_cpfp(r, c)
                return
        keep = [wallet.outputs[(bytes.fromhex(h), n)] for h, n in (c or {}).get("coins", ())
                if (bytes.fromhex(h), n) in wallet.outputs]
        res = await cpfp_child(wallet, r.spend_tx, parent_fee, vout, ws, rate, r.record.signer.sign_anchor, tip, keep)
        if res is None:
            self.node.log.unusual(LOG, f"Channel {r.channel_id.hex()}: cannot CPFP our commitment to {rate}perkw: "
                                       "not enough funds in the wallet (see min-emergency-msat)")
            if c is not None:
                await self._rebroadcast_cpfp(r, c)
            return
        child, fee, coins = res
        prev = ([c["txid"]] + c.get("prev", [])) if c is not None else []
        r.cpfp = {"tx": child.serialize().hex(), "txid": child.txid_hex(), "rate": rate, "since": tip,
                  "deadline": deadline, "fee": fee, "coins": [[o.txid.hex(), o.outnum] for o in coins], "prev": prev}
        await self._save(r)  # recorded before it is broadcast
        self.node.log.info(LOG, f"Channel {r.channel_id.hex()}: CPFP of our commitment {r.spend_tx.txid_hex()} "
                                f"({parent_fee} sat, {parent_fee * 1000 // r.spend_tx.weight()}perkw) through our anchor"
                                f" with {len(coins)} wallet input(s): child {child.txid_hex()} pays {fee} sat, package "
                                f"{package_feerate(r.spend_tx, parent_fee, child, fee)}perkw (target {rate}perkw, "
                                f"deadline block {deadline})" + (f", replacing {prev[0]}" if prev else ""))
        if c is not None:
            # CLN's line for a replaced on-chain transaction (pyln-testing's mine_txid_or_rbf follows it).
            self.node.log.info(LOG, rbf_line(False, c["txid"], c["fee"], child.txid_hex(), fee))
        if await self._broadcast(r, child, "CPFP of our commitment"):
            await self._record_cpfp(child, prev)

    async def _rebroadcast_cpfp(self, r: Resolution, c: dict) -> None:
        """The recorded child again (after a restart it may never have gone out: persisted, then killed before
        its broadcast, the child it replaces still in the mempool)."""
        child = Transaction.parse(bytes.fromhex(c["tx"]))
        if await self._broadcast(r, child, "CPFP of our commitment"):
            await self._record_cpfp(child, c.get("prev", []))

    async def _record_cpfp(self, child: Transaction, prev: list[str]) -> None:
        """`child` is out: the wallet counts its coins spent and its change (idempotent); the children it replaced
        can no longer confirm, so their change is not ours to count or spend."""
        wallet = self.node.wallet
        if wallet is None:
            return
        for replaced in prev:
            await wallet.forget_replaced(bytes.fromhex(replaced)[::-1])
        await wallet.record_sent(child)

    async def _make_sweep(self, r: Resolution, t: Tracked, tip: int, rate: int | None = None,
                          dest: bytes | None = None) -> bool:
        """Build, sign and persist the sweep of `t` to a new wallet address (before any broadcast)."""
        if t.state in (S_HTLC_TIMEOUT, S_HTLC_SUCCESS) and r.kind is SpendKind.LOCAL and "stage" in t.extra \
                and r.record.core.params.channel_type.anchors:
            return await self._fund_local_htlc(r, t, tip)
        if t.state == S_HTLC_SUCCESS and r.kind is SpendKind.LOCAL:
            raw, their, ours, kind = t.extra["stage"]
            x = LocalHtlcTx(HtlcTxKind(kind), t.out.vout, Transaction.parse(bytes.fromhex(raw)), t.out.witness_script,
                            bytes.fromhex(their), bytes.fromhex(ours))
            t.sweep_tx = x.complete(self._preimages[t.out.htlc.payment_hash]).serialize()
            await self._save(r)
            self.node.log.info(LOG, f"Channel {r.channel_id.hex()}: claiming HTLC {t.out.htlc.payment_hash.hex()} "
                                    f"with its preimage: HTLC-success {t.sweep_txid[::-1].hex()}")
            return True
        if t.state in (S_HTLC_TIMEOUT, S_HTLC_SUCCESS) and r.kind is SpendKind.LOCAL:
            return False  # the HTLC-timeout was signed at the analysis (no stage: nothing we can do)
        ctype = r.record.core.params.channel_type
        fees = self.node.chain.fees
        penalty = t.state == S_PENALTY
        if rate is not None:
            feerate = rate
        elif t.state in (S_PENALTY, S_HTLC_TIMEOUT, S_HTLC_SUCCESS):
            base = r.spend_height if t.parent is None else r.outputs[(r.spend_txid, t.parent)].resolved_height
            feerate = self._claim_rate(r, t, tip, base or tip, 0)
        else:
            feerate = fees.for_deadline(SWEEP_FEERATE_BLOCKS) or fees.floor
        secret = None
        if t.out.kind in REVOCATION_KINDS:
            try:
                secret = r.record.core.remote_secrets.get_secret(secret_index(r.commitment_number))
            except (ShachainError, ValueError) as e:
                self.node.log.broken(LOG, f"Channel {r.channel_id.hex()}: no per-commitment secret for revoked "
                                          f"commitment #{r.commitment_number}: {e}")
                return False
        parent = t.txid or r.spend_txid
        claim = t.state in (S_HTLC_TIMEOUT, S_HTLC_SUCCESS)  # the peer's commitment: spent directly
        build = build_htlc_claim if claim else build_sweep
        try:
            # Worth it? (checked with a same-size P2TR script before issuing a wallet address)
            build(parent, t.out, ctype, b"\x51\x20" + bytes(32), feerate)
        except SweepNotWorthIt as e:
            if rate is not None:
                return False  # a replacement that cannot pay more: keep the current one
            t.state = S_DUST
            await self._save(r)
            self.node.log.unusual(LOG, f"Channel {r.channel_id.hex()}: not sweeping: {e}")
            return False
        if dest is None:
            dest = await self._plan_log.destination(r, t)  # the one its plan was logged with, if any
        unsigned = build(parent, t.out, ctype, dest, feerate)
        rider = await self._anchor_rider(r, t, tip, feerate) if t.state == S_SWEEP and rate is None else None
        if rider is not None:
            # Our anchor rides along (its input's marginal fee taken from its own 330 sat).
            a_vout, a_ws, a_value, a_fee = rider
            unsigned.inputs.append(TxIn(OutPoint(r.spend_txid, a_vout), b"", RBF_SEQUENCE))
            unsigned.outputs[0] = TxOut(unsigned.outputs[0].value + a_value - a_fee, unsigned.outputs[0].script_pubkey)
        if claim:
            pre = self._preimages.get(t.out.htlc.payment_hash) if t.state == S_HTLC_SUCCESS else None
            t.sweep_tx = sign_htlc_claim(unsigned, t.out, r.record.signer, pre).serialize()
        else:
            signed = sign_sweep(unsigned, t.out, ctype, r.record.signer, secret)
            if rider is not None:
                # BOLT #3 to_local_anchor: "<local_sig>" (our funding key; no wait: the 16-block CSV is for
                # anyone else).
                signed.inputs[1].witness = [r.record.signer.sign_anchor(signed, 1, a_ws, a_value), a_ws]
                t.extra["anchor"] = a_vout
            t.sweep_tx = signed.serialize()
        t.extra["rate"] = feerate
        t.extra["since"] = tip
        await self._save(r)  # BOLT 5 / our rule: recorded before it is broadcast
        verb = "taking (penalty)" if penalty else "sweeping"
        fee = t.out.value_sat + (rider[2] if rider else 0) - Transaction.parse(t.sweep_tx).outputs[0].value
        self.node.log.info(LOG, f"Channel {r.channel_id.hex()}: {verb} {t.out.kind.value} output "
                                f"{parent[::-1].hex()}:{t.out.vout} ({t.out.value_sat} sat) to our wallet at "
                                f"{feerate}perkw (fee {fee} sat)" + (f" with our anchor {r.spend_tx.txid_hex()}:"
                                                                     f"{rider[0]} ({rider[2]} sat)" if rider else "")
                                + f": {t.sweep_txid[::-1].hex()}")
        return True

    async def _broadcast(self, r: Resolution, tx: Transaction, what: str, crash_point: bool = True) -> bool:
        if crash_point and self.node.channel_manager is not None:
            self.node.channel_manager.crash_point("onchain")  # --dev-crash-before=onchain[:N]: kill -9 before our Nth on-chain broadcast
        self._plan_log.broadcasting(tx)
        try:
            await self.node.chain.broadcast(tx)
        except BitcoindError as e:
            if e.code == RPC_VERIFY_ALREADY_IN_CHAIN or "already" in e.message:
                return True
            self.node.log.unusual(LOG, f"Channel {r.channel_id.hex()}: broadcasting the {what} {tx.txid_hex()} "
                                       f"failed: {e.message}; retrying at the next block")
            return False
        except BitcoindUnreachable as e:
            self.node.log.unusual(LOG, f"Channel {r.channel_id.hex()}: cannot broadcast the {what}: {e}")
            return False
        self.node.chain.wake()
        return True

    async def _close(self, record: Any, r: Resolution | None) -> None:
        if r is not None:
            r.closed = True
            await self._save(r)
            self._unindex(r)
            self._res.pop(r.channel_id, None)
            self.node.log.info(LOG, f"Channel {r.channel_id.hex()}: all outputs resolved and {self.bury_depth} "
                                    "blocks deep: closed")
            self._plan_log.complete(r)
        manager = self.node.channel_manager
        if manager is not None:
            await manager.mark_closed(record, "onchain")

    # ---- indexes and storage -----------------------------------------------------------------------
    def _index(self, r: Resolution) -> None:
        self._watched[(r.funding.txid, r.funding.vout)] = (r, None)
        for key in r.outputs:
            self._watched[key] = (r, key)

    def _unindex(self, r: Resolution) -> None:
        for key in [k for k, (x, _) in self._watched.items() if x is r]:
            del self._watched[key]

    async def _save(self, r: Resolution) -> None:
        await self.node.store.write(self._writer(r))

    def _writer(self, r: Resolution) -> Any:
        info = {k: v for k, v in (("missing", r.missing), ("noted", sorted(r.noted)), ("cpfp", r.cpfp)) if v}
        row = (r.channel_id, r.funding.txid, r.funding.vout, r.spend_tx.serialize(), r.spend_height,
               r.kind.value if r.kind else None, r.commitment_number, int(r.closed),
               json.dumps(info) if info else None)
        outs = [(r.channel_id, t.txid or b"", t.out.vout, t.out.kind.value, t.state, t.out.value_sat,
                 t.out.script_pubkey, t.out.csv, t.out.witness_script, t.out.per_commitment_point, t.sweep_tx,
                 t.resolved_txid, t.resolved_height, _info(t)) for t in r.outputs.values()]

        def write(db):
            db.execute("INSERT OR REPLACE INTO onchain_channels (channel_id, funding_txid, funding_vout, spend_tx, "
                       "spend_height, kind, commitment_number, closed, info) VALUES (?,?,?,?,?,?,?,?,?)", row)
            db.execute("DELETE FROM onchain_txouts WHERE channel_id = ?", (r.channel_id,))
            for o in outs:
                db.execute("INSERT INTO onchain_txouts (channel_id, txid, vout, kind, state, value, scriptpubkey, csv, "
                           "witness_script, point, sweep_tx, resolved_txid, resolved_height, info) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", o)

        return write

    async def _closed_in_store(self, channel_id: bytes) -> bool:
        rows = await self.node.store.read(lambda db: db.query(
            "SELECT closed FROM onchain_channels WHERE channel_id = ?", (channel_id,)))
        return bool(rows and rows[0][0])

    async def _find_spend(self, outpoint: OutPoint) -> tuple[Transaction, int] | None:
        """The mined transaction spending `outpoint`, searching back from the tip (None if unspent/not found)."""
        chain = self.node.chain
        try:
            if await chain.gettxout(outpoint, include_mempool=False) is not None:
                return None
            tip = (await chain.backend.chain_info(chain.height)).blocks
            for height in range(tip, max(-1, tip - FIND_SPEND_MAX_BLOCKS), -1):
                block = await chain.block_at(height)
                if block is None:
                    continue
                for tx in block.txs:
                    if any(i.prevout == outpoint for i in tx.inputs):
                        return tx, height
        except (BitcoindError, BitcoindUnreachable, ValueError) as e:
            self.node.log.unusual(LOG, f"Looking for the spend of {outpoint.txid_hex()}:{outpoint.vout} failed: {e}")
        return None


_MVT_TAG = {OutputKind.TO_LOCAL: "delayed_to_us", OutputKind.HTLC_TX_DELAYED: "htlc_tx",
            OutputKind.TO_REMOTE: "to_wallet", OutputKind.REVOKED_TO_LOCAL: "penalty",
            OutputKind.REVOKED_HTLC: "penalty", OutputKind.REVOKED_HTLC_TX: "penalty",
            OutputKind.OUR_HTLC: "htlc_timeout", OutputKind.THEIR_HTLC: "htlc_fulfill"}


def _b(v: Any) -> bytes | None:
    return None if v is None else bytes(v)


def _action_of(state: str) -> Action:
    return {S_SWEEP: Action.SWEEP, S_DUST: Action.SWEEP, S_UNRESOLVED: Action.UNRESOLVED,
            S_WALLET: Action.WALLET, S_EXTERNAL: Action.EXTERNAL, S_PENALTY: Action.PENALTY,
            S_HTLC_TIMEOUT: Action.HTLC_TIMEOUT, S_HTLC_SUCCESS: Action.HTLC_SUCCESS}[state]


def _info(t: Tracked) -> str | None:
    out = t.out
    d: dict[str, Any] = {}
    if t.parent is not None:
        d["parent"] = t.parent
    if t.extra:
        d["x"] = t.extra
    if out.htlc is not None:
        d["htlc"] = out.htlc.to_json()
    if out.revocation_pubkey is not None:
        d["rev"] = out.revocation_pubkey.hex()
    return json.dumps(d, sort_keys=True) if d else None


def write_htlc_stubs(db: Any, channel_id: bytes, htlcs: Any) -> None:
    """Remember every HTLC of a channel (inside the write that persists a channel state holding them): a revoked
    commitment of the peer may later show any of them, long after the channel state forgot it."""
    for h in htlcs:
        db.execute("INSERT OR IGNORE INTO channel_htlc_stubs (channel_id, offerer, htlc_id, amount_msat, payment_hash, "
                   "cltv_expiry) VALUES (?,?,?,?,?,?)",
                   (channel_id, h.offerer.value, h.htlc_id, h.amount_msat, h.payment_hash, h.cltv_expiry))


async def load_htlc_stubs(store: Any, channel_id: bytes, current: Any = ()) -> list[HtlcStub]:
    rows = await store.read(lambda db: db.query(
        "SELECT offerer, htlc_id, amount_msat, payment_hash, cltv_expiry FROM channel_htlc_stubs WHERE channel_id = ?",
        (channel_id,)))
    stubs = {(Side(o), i): HtlcStub(Side(o), i, a, bytes(ph), c) for o, i, a, ph, c in rows}
    for h in current:
        stubs.setdefault((h.offerer, h.htlc_id), HtlcStub(h.offerer, h.htlc_id, h.amount_msat, h.payment_hash,
                                                          h.cltv_expiry))
    return list(stubs.values())


def _output_text(r: Resolution, t: Tracked, tip: int) -> str:
    what = f"{t.out.kind.value} output {t.out.vout} ({t.out.value_sat} sat)"
    if t.state == S_WALLET:
        return f"{what} pays our wallet"
    if t.state == S_EXTERNAL:
        return f"{what} pays an external address"
    if t.state == S_DUST:
        return f"{what} is not worth sweeping"
    if t.resolved_height is not None:
        if t.is_ours(t.resolved_txid):
            verb = {S_PENALTY: "taken by our penalty", S_HTLC_TIMEOUT: "timed out by our",
                    S_HTLC_SUCCESS: "claimed with the preimage by our"}.get(t.state, "swept to our wallet by")
            return f"{what} {verb} {t.resolved_txid[::-1].hex()} in block {t.resolved_height}"
        if t.state == S_PENALTY and t.out.kind is OutputKind.REVOKED_HTLC:
            return (f"{what} spent by the peer's second-stage {t.resolved_txid[::-1].hex()} in block "
                    f"{t.resolved_height}: its output is being taken")
        if t.state == S_HTLC_TIMEOUT:
            return f"{what} claimed by the peer with the preimage in {t.resolved_txid[::-1].hex()}"
        if t.state == S_HTLC_SUCCESS:
            return f"{what} timed out by the peer in {t.resolved_txid[::-1].hex()}"
        return f"{what} resolved by {t.resolved_txid[::-1].hex()} in block {t.resolved_height}"
    if t.state == S_HTLC_TIMEOUT and t.out.htlc is not None and t.sweep_tx is not None and \
            tip < t.out.htlc.cltv_expiry:
        return (f"{what}: our HTLC times out at block {t.out.htlc.cltv_expiry} "
                f"({t.out.htlc.cltv_expiry - tip} more blocks)")
    if t.state == S_HTLC_TIMEOUT and t.out.htlc is not None and t.sweep_tx is None:
        return f"{what}: our HTLC, ours after block {t.out.htlc.cltv_expiry}"
    if t.state == S_HTLC_SUCCESS and t.sweep_tx is None and t.out.htlc is not None:
        return (f"{what}: their HTLC, ours with its preimage (unknown) before block {t.out.htlc.cltv_expiry}")
    if t.state in (S_HTLC_TIMEOUT, S_HTLC_SUCCESS):
        return f"{what} being claimed by our {t.sweep_txid[::-1].hex()}"
    if t.state == S_UNRESOLVED:
        return f"{what} NOT resolved: no HTLC we know matches it (followed until someone spends it)"
    if t.state == S_PENALTY and t.sweep_tx is not None:
        return f"{what} being taken by our penalty transaction {t.sweep_txid[::-1].hex()}"
    if t.sweep_tx is not None:
        return f"{what} being swept to our wallet by {t.sweep_txid[::-1].hex()}"
    if r.spend_height is None:
        return f"{what} waiting for the close to confirm"
    left = r.spend_height + t.out.csv - (tip + 1)
    return f"{what} spendable by us in {max(left, 0)} blocks"
