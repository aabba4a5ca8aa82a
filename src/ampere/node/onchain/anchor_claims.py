"""option_anchors claims of the on-chain resolver (a mixin of OnchainResolver, ampere.node.onchain.resolver).

- Our HTLC-timeout/success transactions of an anchor commitment pay no fee: the ones that can go out at the same
  block with the same nLockTime are funded together as ONE transaction (ampere.node.onchain.bumping.fund_htlc_txs:
  their input i / output i pairs, signed by the peer SIGHASH_SINGLE|SIGHASH_ANYONECANPAY, then wallet inputs and
  one change output), persisted before its broadcast, and replaced (RBF, same wallet coins, BIP125 fee) each block
  it waits while its deadline asks a higher rate (CLN's deadlines: an HTLC-success before cltv_expiry - 1, an
  HTLC-timeout before the incoming HTLC it forwards expires - 6), never paying more than the HTLCs are worth.
- Our anchor output (330 sat) never pays for its own sweep: once the commitment is confirmed and its 16-block CSV
  has passed (anyone may take it from then on), it rides along another sweep of ours when its value exceeds the
  cost of its input at that sweep's feerate; a sweep carrying it whose anchor someone else took is rebuilt
  without it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ampere.chain.bitcoind import BitcoindError, BitcoindUnreachable
from ampere.ln.channel.htlc_tx import HtlcTxKind
from ampere.ln.channel.scripts import anchor_script
from ampere.ln.onchain.classify import SpendKind
from ampere.ln.onchain.fees import deadline_feerate, worth_replacing
from ampere.node.onchain.bumping import (ANCHOR_INPUT_WEIGHT, AnchorInput, HtlcFeeTooHigh, HtlcPart,
                                        fund_htlc_tx_with_anchor, fund_htlc_txs)
from ampere.node.onchain.onchaind_log import rbf_line
from ampere.node.onchain.states import S_HTLC_SUCCESS, S_HTLC_TIMEOUT
from ampere.primitives.script import p2wsh
from ampere.primitives.tx import OutPoint, Transaction

if TYPE_CHECKING:
    from ampere.node.onchain.resolver import Resolution, Tracked

__all__ = ["AnchorClaims", "ANCHOR_CSV"]

LOG = "onchaind"
# BOLT #3 to_local_anchor: "OP_16 OP_CHECKSEQUENCEVERIFY": after 16 blocks anyone may spend an anchor; ours is
# swept (along with another sweep) from then on.
ANCHOR_CSV = 16


class AnchorClaims:
    """Needs the resolver's node, _preimages, _dirty, _save and _make_sweep."""

    node: Any
    _preimages: dict[bytes, bytes]
    _dirty: set[bytes]
    _save: Callable[[Resolution], Awaitable[None]]
    _make_sweep: Callable[..., Awaitable[bool]]

    # ---- option_anchors: our HTLC transactions, funded (and aggregated) with wallet inputs -------------------
    def _htlc_fundable(self, r: Resolution, t: Tracked, tip: int) -> bool:
        """An HTLC output of our anchor commitment whose zero-fee HTLC transaction can go out at block tip + 1
        (the same tests as _advance's) and is not built yet."""
        if t.state not in (S_HTLC_TIMEOUT, S_HTLC_SUCCESS) or "stage" not in t.extra or t.txid is not None \
                or t.sweep_tx is not None or t.resolved_height is not None or r.spend_height is None:
            return False
        if tip + 1 < r.spend_height + t.out.csv:
            return False
        if t.state == S_HTLC_TIMEOUT:
            return tip >= t.out.htlc.cltv_expiry
        return t.out.htlc.payment_hash in self._preimages

    def _htlc_deadline(self, r: Resolution, t: Tracked) -> int:
        """The block our HTLC transaction must be mined by (CLN's onchain_control deadlines): an HTLC-success
        before the peer can time the HTLC out (cltv_expiry - 1); an HTLC-timeout before the incoming HTLC it
        forwards expires (its expiry - 6, to fail it upstream in time), or at once for a payment of ours."""
        h = t.out.htlc
        if t.state == S_HTLC_SUCCESS:
            return h.cltv_expiry - 1
        switch = getattr(self.node, "switch", None)
        fwd = switch.by_out.get((r.channel_id, h.htlc_id)) if switch is not None else None
        if fwd is not None and fwd.in_cltv:
            return fwd.in_cltv - 6
        return h.cltv_expiry

    def _htlc_part(self, r: Resolution, t: Tracked) -> HtlcPart:
        raw, their, _, kind = t.extra["stage"]
        success = HtlcTxKind(kind) is HtlcTxKind.SUCCESS
        pre = self._preimages.get(t.out.htlc.payment_hash) if success else None
        signer, ws, value = r.record.signer, t.out.witness_script, t.out.value_sat
        point = signer.commitment_point(r.commitment_number)
        their_sig = bytes.fromhex(their)

        def finish(tx: Transaction, i: int) -> list[bytes]:
            # BOLT #3: "0 <remotehtlcsig> <localhtlcsig> <payment_preimage>" (success) / "... <>" (timeout); ours
            # SIGHASH_ALL over the final transaction.
            ours = signer.sign_local_htlc_input(tx, i, ws, value, point)
            return [b"", their_sig, ours, pre if success else b"", ws]

        return HtlcPart(Transaction.parse(bytes.fromhex(raw)), value, t.out.script_pubkey, finish)

    async def _fund_local_htlc(self, r: Resolution, t: Tracked, tip: int) -> bool:
        """option_anchors: our HTLC-timeout/success pays no fee of its own; add wallet inputs and a change output
        (BOLT #5: the peer's SIGHASH_SINGLE|SIGHASH_ANYONECANPAY signature allows it) and sign it anew. Every
        other HTLC transaction of the commitment that can go out at this block with the same nLockTime (signed by
        the peer: HTLC-successes share 0, HTLC-timeouts their cltv_expiry) goes in the same transaction."""
        if not self._htlc_fundable(r, t, tip):
            return False
        lock = Transaction.parse(bytes.fromhex(t.extra["stage"][0])).locktime
        group = [u for u in r.outputs.values() if self._htlc_fundable(r, u, tip)
                 and Transaction.parse(bytes.fromhex(u.extra["stage"][0])).locktime == lock]
        group.sort(key=lambda u: u.out.vout)
        # True only if `t` itself is funded: paid for by our anchor alone, the group's other HTLC transactions
        # wait for coins, and the caller must not go on to broadcast a transaction `t` does not have.
        return await self._fund_htlc_group(r, group, tip) and t.sweep_tx is not None

    async def _fund_htlc_group(self, r: Resolution, group: list[Tracked], tip: int,
                               old: Transaction | None = None) -> bool:
        """Build, sign and persist (before any broadcast) the funded HTLC transaction of `group`; `old`: the
        unconfirmed one it replaces (RBF: same wallet coins, more fee)."""
        wallet, fees = self.node.wallet, self.node.chain.fees
        first = group[0]
        deadline = min(self._htlc_deadline(r, u) for u in group)
        waited = max(0, tip - first.extra["hsince"]) if old is not None else 0
        rate = deadline_feerate(fees.for_deadline, fees.floor, deadline - tip, waited)
        old_fee = first.extra.get("fee", 0) if old is not None else 0
        if old is not None and not worth_replacing(first.extra.get("hrate", 0), rate):
            return False
        # The coins of the transaction it replaces (RBF: spent by `old`), or of an earlier one that can no longer
        # be mined (unspent again), unless something else spent them meanwhile.
        keep = [o for o in (wallet.outputs.get((bytes.fromhex(h), n)) for h, n in first.extra.get("coins", ()))
                if o is not None and (o.spend_txid is None or (old is not None and o.spend_txid == old.txid()))]
        worth = sum(u.out.value_sat for u in group)
        what = " + ".join(("HTLC-success" if u.state == S_HTLC_SUCCESS else "HTLC-timeout") for u in group)
        cid = r.channel_id.hex()
        parts = [self._htlc_part(r, u) for u in group]
        try:
            res = await fund_htlc_txs(wallet, parts, rate, tip, keep, replaces_fee=old_fee, max_fee=worth)
        except HtlcFeeTooHigh as e:
            if old is not None:
                return False  # keep the one out there
            # The HTLCs are worth less than the fee the deadline asks: pay the floor, or leave them.
            rate = fees.floor
            try:
                res = await fund_htlc_txs(wallet, parts, rate, tip, keep, max_fee=worth)
            except HtlcFeeTooHigh:
                if not first.extra.get("toohigh"):
                    first.extra["toohigh"] = True
                    self._dirty.add(r.channel_id)
                    self.node.log.unusual(LOG, f"Channel {cid}: {what} of output(s) "
                                               f"{[u.out.vout for u in group]}: {e}")
                return False
        if res is None and old is None and await self._fund_with_our_anchor(r, group, tip):
            return True
        if res is None:
            self.node.log.unusual(LOG, f"Channel {cid}: cannot pay the fee of our {what} of output(s) "
                                       f"{[u.out.vout for u in group]}: not enough funds in the wallet; retrying at "
                                       "the next block")
            return False
        tx, fee, coins = res
        for u in group:
            if old is not None:
                # Remembered with the replacement, in the same write: whichever version is mined is ours.
                u.extra.setdefault("prev", []).append(old.txid()[::-1].hex())
            u.sweep_tx = tx.serialize()
            u.broadcast_at = -1
            u.extra.update(fee=fee, hrate=rate, hsince=tip, coins=[[o.txid.hex(), o.outnum] for o in coins],
                           group=[x.out.vout for x in group])
            u.extra.pop("hanchor", None)   # (a replacement funded by the wallet leaves our anchor free again)
        await self._save(r)  # recorded before it is broadcast
        if old is not None:
            await wallet.forget_replaced(old.txid())  # its change will never exist; its coins go to `tx`
            # CLN's line (pyln-testing's mine_txid_or_rbf follows replacements with it).
            self.node.log.info(LOG, rbf_line(True, old.txid_hex(), old_fee, tx.txid_hex(), fee))
        else:
            self.node.log.info(LOG, f"Channel {cid}: {what} of HTLC(s) "
                                    f"{', '.join(u.out.htlc.payment_hash.hex() for u in group)} in one transaction "
                                    f"with {len(coins)} wallet input(s) at {rate}perkw (fee {fee} sat, deadline block "
                                    f"{deadline}): {tx.txid_hex()}")
        return True

    async def _fund_with_our_anchor(self, r: Resolution, group: list[Tracked], tip: int) -> bool:
        """The wallet cannot pay for `group`: fund the most valuable of its HTLC transactions with our anchor output
        alone, if the commitment's anchor is ours, unspent and not carried by another transaction of ours, and its
        330 sat reach the relay floor. Persisted before it is broadcast, as any funded HTLC transaction."""
        anchor = self._our_anchor(r)
        if anchor is None or self._anchor_carried(r) or not await self._anchor_unspent(r, anchor[0]):
            return False
        vout, ws = anchor
        t = max(group, key=lambda u: (u.out.value_sat, -u.out.vout))
        value = r.spend_tx.outputs[vout].value
        res = fund_htlc_tx_with_anchor(self._htlc_part(r, t),
                                       AnchorInput(OutPoint(r.spend_txid, vout), value, ws, r.record.signer.sign_anchor),
                                       self.node.chain.fees.floor)
        if res is None:
            return False
        tx, fee = res
        rate = fee * 1000 // tx.weight()
        t.sweep_tx = tx.serialize()
        t.broadcast_at = -1
        t.extra.update(fee=fee, hrate=rate, hsince=tip, coins=[], group=[t.out.vout], hanchor=vout)
        await self._save(r)  # recorded before it is broadcast
        what = "HTLC-success" if t.state == S_HTLC_SUCCESS else "HTLC-timeout"
        self.node.log.unusual(LOG, f"Channel {r.channel_id.hex()}: no coins in the wallet to pay for our {what} of "
                                   f"output {t.out.vout} ({t.out.value_sat} sat): our anchor "
                                   f"{r.spend_tx.txid_hex()}:{vout} pays its fee ({fee} sat, {rate}perkw): "
                                   f"{tx.txid_hex()}")
        return True

    async def _bump_local_htlcs(self, r: Resolution, t: Tracked, tip: int) -> None:
        """Our funded HTLC transaction is still unconfirmed a block later: replace it at the rate its deadline now
        asks (RBF). If the peer took one of its HTLC outputs meanwhile, that transaction can never be mined: the
        others are funded anew without it."""
        assert t.sweep_tx is not None, "called for a built transaction"
        old = Transaction.parse(t.sweep_tx)
        group = [u for u in r.outputs.values() if u.sweep_tx == t.sweep_tx]
        live = sorted((u for u in group if u.resolved_height is None), key=lambda u: u.out.vout)
        if len(live) == len(group) and tip <= t.extra.get("hsince", tip):
            return  # bumped only after a block went by without it
        if len(live) != len(group):
            # A spend of one of its inputs is in a block: its change will never exist and its wallet coins are free
            # again. Forgotten first: neither a crash before the others are funded anew nor a failure to fund them
            # (no coins for a higher rate) may leave the wallet counting that change or those coins as spent.
            await self.node.wallet.forget_replaced(old.txid())
            for u in live:
                u.extra.setdefault("prev", []).append(old.txid()[::-1].hex())
                u.sweep_tx = None
            self.node.log.unusual(LOG, f"Channel {r.channel_id.hex()}: {old.txid_hex()} can no longer be mined (an "
                                       f"HTLC output it spends was taken by the peer): funding the others anew")
            await self._save(r)
            again = [u for u in live if self._htlc_fundable(r, u, tip)]
            if again:
                await self._fund_htlc_group(r, again, tip)   # else (or if it fails) at the next block
            return
        await self._fund_htlc_group(r, live, tip, old)

    # ---- option_anchors: our anchor, swept along with another sweep -----------------------------------------
    def _our_anchor(self, r: Resolution) -> tuple[int, bytes] | None:
        """Our anchor output of the (confirmed) commitment: (vout, witness script), or None."""
        p = r.record.core.params
        if not p.channel_type.anchors or r.kind is SpendKind.MUTUAL or r.kind is None:
            return None
        ws = anchor_script(p.local_pubkeys.funding_pubkey)
        vout = next((i for i, o in enumerate(r.spend_tx.outputs) if o.script_pubkey == p2wsh(ws)), None)
        return None if vout is None else (vout, ws)

    async def _anchor_rider(self, r: Resolution, t: Tracked, tip: int, feerate: int
                            ) -> tuple[int, bytes, int, int] | None:
        """Our anchor, to add to the sweep of `t` being built: (vout, witness script, value, marginal fee) when
        the commitment is confirmed, the anchor's 16-block CSV has passed (from then on anyone may take it:
        BOLT #3 "OP_16 OP_CHECKSEQUENCEVERIFY"), nobody spent it, no other sweep of ours carries it, and its value
        pays for its own input at this feerate (a 330-sat anchor alone never pays for its own sweep)."""
        anchor = self._our_anchor(r)
        if anchor is None or r.spend_height is None or tip + 1 < r.spend_height + ANCHOR_CSV:
            return None
        if self._anchor_carried(r, besides=t):
            return None
        vout, ws = anchor
        value = r.spend_tx.outputs[vout].value
        fee = (feerate * ANCHOR_INPUT_WEIGHT + 999) // 1000
        if value <= fee:
            if "anchor-left" not in r.noted:
                r.noted.add("anchor-left")
                self.node.log.info(LOG, f"Channel {r.channel_id.hex()}: not sweeping our anchor "
                                        f"{r.spend_tx.txid_hex()}:{vout} ({value} sat): its input costs {fee} sat at "
                                        f"{feerate}perkw")
            return None
        if not await self._anchor_unspent(r, vout):
            return None
        return vout, ws, value, fee

    @staticmethod
    def _anchor_carried(r: Resolution, besides: Tracked | None = None) -> bool:
        """Whether a transaction of ours built for an output other than `besides` spends our anchor: a sweep it
        rides along (`anchor`) or an HTLC transaction it pays for (`hanchor`)."""
        return any(u is not besides and u.sweep_tx and (u.extra.get("anchor") is not None or "hanchor" in u.extra)
                   for u in r.outputs.values())

    async def _anchor_unspent(self, r: Resolution, vout: int) -> bool:
        """Our anchor output is unspent, in the chain and the mempool (False also when the backend cannot say)."""
        try:
            return await self.node.chain.gettxout(OutPoint(r.spend_txid, vout), include_mempool=True) is not None
        except (BitcoindError, BitcoindUnreachable) as e:
            self.node.log.debug(LOG, f"Channel {r.channel_id.hex()}: cannot look up our anchor: {e}")
            return False

    async def _anchor_lost(self, r: Resolution, t: Tracked, tip: int) -> None:
        """Our unconfirmed sweep of `t` carries our anchor and someone else's spend of the anchor was mined: it
        can never be mined; sweep `t` again without it."""
        vout = t.extra["anchor"]
        try:
            if await self.node.chain.gettxout(OutPoint(r.spend_txid, vout), include_mempool=False) is not None:
                return
        except (BitcoindError, BitcoindUnreachable):
            return
        old = t.sweep_txid
        assert old is not None, "called for a built sweep"
        self.node.log.unusual(LOG, f"Channel {r.channel_id.hex()}: our anchor {r.spend_tx.txid_hex()}:{vout} was "
                                   f"taken by someone else: sweeping {t.out.kind.value} output {t.out.vout} again "
                                   f"without it (replacing {old[::-1].hex()})")
        # It spends no coin of the wallet, but the wallet counted its output (unconfirmed) when it went out: that
        # output will never exist.
        await self.node.wallet.forget_replaced(old)
        t.extra.setdefault("prev", []).append(old[::-1].hex())
        t.extra.pop("anchor")
        t.sweep_tx = None
        t.broadcast_at = -1
        await self._make_sweep(r, t, tip)
