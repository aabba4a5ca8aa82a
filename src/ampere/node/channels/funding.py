"""Opening channels (BOLT 2 v1 establishment) for the channel manager: `fundchannel` as the opener, and the
`openchannel` hook plus the accept path as the acceptor.

Nothing is stored before the channel exists: BOLT 2 lets both sides forget an opening until funding_signed.
The opener's coins are reserved by the wallet from the start (with a placeholder output of the funding
output's size, so the fee and change are final) and released if the opening fails; the funding transaction
is signed once the peer's keys are known and broadcast only after funding_signed was persisted. The acceptor
persists the channel before funding_signed goes out (the core's Step orders it).

    opener:   open_channel -> accept_channel -> (wallet) funding_created -> funding_signed -> Persist, broadcast
    acceptor: open_channel -> openchannel hook -> accept_channel -> funding_created -> Persist, funding_signed
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ampere.ln.channel import opening
from ampere.ln.channel.actions import FundingTxNeeded, Step
from ampere.ln.channel.opening import LocalParams, OpenPolicy, channel_type_bytes
from ampere.ln.channel.scripts import ChannelType
from ampere.ln.channel.signer import ChannelSigner
from ampere.primitives.amount import MsatInt, SatInt, sat_to_msat
from ampere.primitives.script import AddressError, address_to_script
from ampere.primitives.tx import OutPoint, TxOut
from ampere.wire import bolt1
from ampere.wire import messages as m
from ampere.node.channels.manager import LOG, ChannelManager, ChannelRecord, ChannelSettings
from ampere.node.signer.dev_secrets import new_temporary_channel_id
from ampere.node.errors import DomainError, Reason


REPLY_TIMEOUT = 60.0
# A P2WSH output of the same size as the funding output: the wallet's coin selection is final with it.
PLACEHOLDER_SCRIPT = b"\x00\x20" + bytes(32)


class OpenError(DomainError):
    """A refused or failed channel open (ampere.node.errors.Reason says why)."""


def commitment_feerate_name(ct: ChannelType) -> str:
    """The fee estimate a commitment follows. Anchor commitments are CPFP'd through their anchor when they must
    confirm, so (as CLN) they stay at the low `unilateral_anchor_close` rate; others must confirm on their own."""
    return "unilateral_anchor_close" if ct.anchors else "unilateral_close"


def channel_type_json(ct: ChannelType) -> dict:
    bits = [12] + ([22] if ct.anchors else [])
    names = ["static_remotekey/even"] + (["anchors/even"] if ct.anchors else [])
    return {"bits": bits, "names": names}


def _bits(data: bytes) -> list[int]:
    value = int.from_bytes(data, "big") if data else 0
    return [i for i in range(value.bit_length()) if value >> i & 1]


_BIT_NAMES = {12: "static_remotekey/even", 22: "anchors/even", 46: "scid_alias/even", 50: "zeroconf/even"}


@dataclass
class PendingOpen:
    """An opening negotiation in flight (not persisted)."""

    role: str                       # "opener" | "acceptor"
    peer_id: bytes
    temporary_channel_id: bytes
    dbid: int
    signer: ChannelSigner
    neg: Any
    mindepth: int
    settings: ChannelSettings
    replies: asyncio.Queue = field(default_factory=asyncio.Queue)
    failed: asyncio.Future | None = None


class OpenFlows:
    def __init__(self, mgr: ChannelManager) -> None:
        self.mgr = mgr
        self.node = mgr.node
        self.pending: dict[tuple[bytes, bytes], PendingOpen] = {}

    def stop(self) -> None:
        for p in list(self.pending.values()):
            self._fail(p, "shutting down")
        self.pending.clear()

    # --- shared ---------------------------------------------------------------------------------
    def policy(self) -> OpenPolicy:
        o = self.node.options
        env = self.mgr.env()
        return OpenPolicy(chain_hash=bolt1.chain_hash(self.node.network),
                          min_funding_sat=int(o.get("min-capacity-sat") or 0),
                          max_to_self_delay=int(o.get("max-locktime-blocks") or 2016),
                          min_feerate_per_kw=env.min_feerate_per_kw, max_feerate_per_kw=env.max_feerate_per_kw,
                          allow_anchors=self.we_offer_anchors())

    def we_offer_anchors(self) -> bool:
        from ampere.node.app.features import offers_anchors

        return offers_anchors(self.node.feature_set())

    def choose_channel_type(self, peer_id: bytes, asked: ChannelType | None) -> ChannelType:
        """The channel_type we propose: what the caller asked, else option_anchors when both of us offer it (as CLN:
        anchors by default), else static_remotekey."""
        if asked is not None:
            if asked.anchors and not self.we_offer_anchors():
                raise OpenError(Reason.BAD_PARAMETER, "channel_type: option_anchors is disabled on this node (dev-force-features)")
            return asked
        peer = self.mgr._current_peer(peer_id)
        feats = getattr(peer, "features", None)
        theirs = feats.has("option_anchors") if hasattr(feats, "has") else False
        return ChannelType.ANCHORS if theirs and self.we_offer_anchors() else ChannelType.STATIC_REMOTEKEY

    def default_settings(self, funding_sat: SatInt) -> ChannelSettings:
        o = self.node.options
        htlc_max = o.get("htlc-maximum-msat")
        return ChannelSettings(fee_base_msat=int(o.get("fee-base")), fee_ppm=int(o.get("fee-per-satoshi")),
                               htlc_min_msat=int(o.get("htlc-minimum-msat") or 0),
                               htlc_max_msat=int(htlc_max) if htlc_max else sat_to_msat(funding_sat),
                               cltv_delta=int(o.get("cltv-delta")))

    def local_params(self, shutdown_script: bytes, upfront: bool, reserve_sat: SatInt | None,
                     minimum_depth: int) -> LocalParams:
        o = self.node.options
        return LocalParams(shutdown_scriptpubkey=shutdown_script, to_self_delay=int(o.get("watchtime-blocks")),
                           max_accepted_htlcs=max(1, min(483, int(o.get("max-concurrent-htlcs")))),
                           htlc_minimum_msat=int(o.get("htlc-minimum-msat") or 0), channel_reserve_sat=reserve_sat,
                           upfront_shutdown_script=upfront, minimum_depth=minimum_depth)

    async def wallet_script(self) -> bytes:
        """A fresh wallet address (P2WPKH) for our side of a mutual close."""
        wallet = self.node.wallet
        if wallet is None:
            raise OpenError(Reason.GENERIC, "No wallet: ampd was started with --disable-chain")
        _, addrs = await wallet.new_address("bech32")
        return address_to_script(addrs["bech32"], self.node.network)

    def _fail(self, p: PendingOpen, why: str) -> None:
        if p.failed is not None and not p.failed.done():
            p.failed.set_exception(OpenError(Reason.GENERIC, why))

    def peer_gone(self, peer_id: bytes, reason: str) -> None:
        for key, p in list(self.pending.items()):
            if p.peer_id == peer_id:
                del self.pending[key]
                self._fail(p, f"Peer disconnected: {reason}")

    def peer_error(self, peer_id: bytes, temp_id: bytes | None, text: str, is_error: bool = True) -> bool:
        """An error (or warning) about a negotiation: the opening is abandoned. True if it was one."""
        hit = False
        for key, p in list(self.pending.items()):
            if p.peer_id == peer_id and (temp_id is None or p.temporary_channel_id == temp_id):
                hit = True
                if is_error:
                    del self.pending[key]
                    self._fail(p, f"Peer sent error: {text}" if text else "Peer sent error")
                    self.node.log.info(f"{peer_id.hex()}-chan", f"Opening abandoned: peer said: {text}")
        return hit

    async def on_message(self, peer_id: bytes, msg: Any) -> None:
        if isinstance(msg, m.OpenChannel):
            await self._on_open_channel(peer_id, msg)
            return
        temp = msg.channel_id if isinstance(msg, m.FundingSigned) else msg.temporary_channel_id
        if isinstance(msg, m.FundingSigned):
            p = next((p for p in self.pending.values() if p.peer_id == peer_id and p.role == "opener"
                      and getattr(p.neg, "channel", None) is not None and p.neg.channel.channel_id == temp), None)
        else:
            p = self.pending.get((peer_id, temp))
        if p is None:
            self.node.log.debug(f"{peer_id.hex()}-chan", f"{type(msg).__name__} for no opening in progress")
            return
        if p.role == "opener":
            p.replies.put_nowait(msg)
        elif isinstance(msg, m.FundingCreated):
            await self._on_funding_created(p, msg)

    # --- opener ---------------------------------------------------------------------------------
    async def fundchannel(self, peer_id: bytes, amount: int | str, feerate: int, *, announce: bool = True,
                          minconf: int = 1, utxos: list[OutPoint] | None = None, push_msat: MsatInt = MsatInt(0),
                          mindepth: int | None = None, reserve_sat: SatInt | None = None,
                          channel_type: ChannelType | None = None,
                          close_to: bytes | None = None) -> dict:
        node = self.node
        chain, wallet = node.chain, node.wallet
        if chain is None or wallet is None:
            raise OpenError(Reason.GENERIC, "No chain backend: ampd was started with --disable-chain")
        for _ in range(20):  # a catch-up of a few blocks is over in moments
            if chain.synced:
                break
            await asyncio.sleep(0.1)
        else:
            raise OpenError(Reason.FUNDING_STILL_SYNCING_BITCOIN, "Still syncing with bitcoin network")
        if self.mgr._current_peer(peer_id) is None:
            if self.mgr.peer_records(peer_id):
                raise OpenError(Reason.FUNDING_PEER_NOT_CONNECTED, "Peer not connected")
            raise OpenError(Reason.FUNDING_UNKNOWN_PEER, "Unknown peer")
        from ampere.node.onchain.wallet import WalletError

        channel_type = self.choose_channel_type(peer_id, channel_type)
        emergency = wallet.emergency_sat(opening_anchors=channel_type.anchors)
        try:
            if amount == "all":
                prepared = await wallet.prepare_tx([], feerate, minconf, utxos, all_to=PLACEHOLDER_SCRIPT, all_index=0,
                                                   emergency_sat=emergency)
            else:
                prepared = await wallet.prepare_tx([TxOut(int(amount), PLACEHOLDER_SCRIPT)], feerate, minconf, utxos,
                                                   emergency_sat=emergency)
        except WalletError as e:
            raise OpenError(e.reason, e.message) from None
        outnum = 0
        funding_sat = prepared.tx.outputs[outnum].value
        broadcast = False
        p: PendingOpen | None = None
        try:
            if funding_sat >= opening.LARGE_CHANNEL_SAT and not self._peer_supports_large(peer_id):
                raise OpenError(Reason.FUND_MAX_EXCEEDED, f"Amount exceeded {opening.LARGE_CHANNEL_SAT - 1}sat")
            fees = chain.fees
            commit_rate = (fees.named(commitment_feerate_name(channel_type)) if fees.known else 0) or max(feerate, fees.floor)
            upfront = close_to is not None
            script = close_to if close_to is not None else await self.wallet_script()
            dbid = await self.mgr.allocate_dbid()
            signer = self.mgr.signer_for(peer_id, dbid)
            ours = self.local_params(script, upfront, reserve_sat, int(node.options.get("funding-confirms")))
            temp_id = new_temporary_channel_id(node.options)
            step = opening.open_channel(signer, temporary_channel_id=temp_id, chain_hash=bolt1.chain_hash(node.network),
                                        funding_sat=SatInt(funding_sat), push_msat=push_msat, feerate_per_kw=commit_rate,
                                        ours=ours, channel_type=channel_type, announce=announce)
            if step.error is not None:
                raise OpenError(Reason.GENERIC, step.error.message)
            p = PendingOpen("opener", peer_id, temp_id, dbid, signer, step.state, mindepth or 0,
                            self.default_settings(SatInt(funding_sat)), failed=asyncio.get_running_loop().create_future())
            self.pending[(peer_id, temp_id)] = p
            self._send_all(peer_id, step)
            accept = await self._reply(p, m.AcceptChannel)
            step = p.neg.on_accept_channel(accept, self.policy())
            self._check(p, step)
            p.neg = step.state
            need = next(a for a in step.actions if isinstance(a, FundingTxNeeded))
            prepared.tx.outputs[outnum] = TxOut(need.amount_sat, need.script_pubkey)
            tx = wallet.sign_tx(prepared)
            step = p.neg.funding_tx_ready(signer, tx)
            self._check(p, step)
            p.neg = step.state
            self._send_all(peer_id, step)
            signed = await self._reply(p, m.FundingSigned)
            step = p.neg.on_funding_signed(signer, signed)
            self._check(p, step)
            self.pending.pop((peer_id, temp_id), None)
            ch = step.state
            rec = ChannelRecord(dbid, peer_id, signer, ch, mindepth=max(mindepth or 0, ch.minimum_depth, 1),
                                settings=p.settings, funding_tx=tx,
                                meta={"opened_height": node.blockheight, "pushed_msat": push_msat})
            rec.prepared = prepared
            broadcast = True  # from here the wallet's coins belong to the channel (persisted with it)
            await self.mgr.adopt(rec, step)
        except OpenError:
            raise
        except asyncio.TimeoutError:
            raise OpenError(Reason.GENERIC, "Peer did not answer in time") from None
        finally:
            if p is not None:
                self.pending.pop((peer_id, p.temporary_channel_id), None)
                if p.failed is not None and not p.failed.done():
                    p.failed.cancel()
            if not broadcast:
                await wallet.release(prepared)
        node.log.info(f"{peer_id.hex()}-chan#{dbid}", f"Opened channel {ch.channel_id.hex()}, funding "
                      f"{tx.txid_hex()}:{outnum} ({funding_sat} sat)")
        result: dict[str, Any] = {"tx": tx.serialize().hex(), "txid": tx.txid_hex(), "outnum": outnum,
                                  "channel_id": ch.channel_id.hex(), "channel_type": channel_type_json(channel_type),
                                  "mindepth": rec.mindepth}
        if close_to is not None:
            result["close_to"] = close_to.hex()
        return result

    def _peer_supports_large(self, peer_id: bytes) -> bool:
        peer = self.mgr._current_peer(peer_id)
        feats = getattr(peer, "features", None)
        try:
            value = int.from_bytes(feats.to_bytes(), "big") if feats is not None else 0
        except AttributeError:
            return True
        return bool(value & ((1 << 18) | (1 << 19)))

    def _send_all(self, peer_id: bytes, step: Step) -> None:
        for msg in step.messages:
            self.mgr.send_to_peer(peer_id, msg)

    def _check(self, p: PendingOpen, step: Step) -> None:
        if step.error is not None:
            # BOLT #2: the opening fails: tell the peer (error for the temporary channel id) and forget it.
            self.mgr.send_to_peer(p.peer_id, m.Error(channel_id=p.temporary_channel_id,
                                                     data=step.error.message.encode()))
            raise OpenError(Reason.GENERIC, step.error.message)

    async def _reply(self, p: PendingOpen, kind: type) -> Any:
        getter = asyncio.ensure_future(p.replies.get())
        try:
            done, _ = await asyncio.wait({getter, p.failed}, timeout=REPLY_TIMEOUT,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if p.failed in done:
            raise p.failed.exception() or OpenError(Reason.GENERIC, "opening abandoned")
        if getter not in done:
            self.mgr.send_to_peer(p.peer_id, m.Error(channel_id=p.temporary_channel_id, data=b"timed out"))
            raise asyncio.TimeoutError
        msg = getter.result()
        if not isinstance(msg, kind):
            self.mgr.send_to_peer(p.peer_id, m.Error(channel_id=p.temporary_channel_id,
                                                     data=f"unexpected {type(msg).__name__}".encode()))
            raise OpenError(Reason.GENERIC, f"Peer sent {type(msg).__name__}, expected {kind.__name__}")
        return msg

    # --- acceptor -------------------------------------------------------------------------------
    async def _on_open_channel(self, peer_id: bytes, msg: m.OpenChannel) -> None:
        node = self.node
        src = f"{peer_id.hex()}-chan"
        temp = msg.temporary_channel_id
        if (peer_id, temp) in self.pending:
            self.mgr.send_to_peer(peer_id, m.Error(channel_id=temp, data=b"temporary_channel_id already in use"))
            return

        def refuse(text: str) -> None:
            node.log.info(src, f"Refusing open_channel: {text}")
            self.mgr.send_to_peer(peer_id, m.Error(channel_id=temp, data=text.encode()))

        if node.chain is None or node.wallet is None:
            refuse("we cannot follow the chain")
            return
        # Absurd amounts are refused before the hook sees them and before any id or state is allocated.
        bounds = opening.peer_amount_problem(msg)
        if bounds is not None:
            refuse(bounds)
            return
        hook = await self._openchannel_hook(peer_id, msg)
        if hook is None:
            refuse("Rejected: invalid openchannel hook answer")
            return
        if hook.get("result") == "reject":
            text = hook.get("error_message")
            refuse(text if isinstance(text, str) and text else "Channel open rejected by plugin")
            return
        close_to, mindepth, reserve = hook.get("close_to"), hook.get("mindepth"), hook.get("reserve")
        script = None
        if close_to is not None:
            try:
                script = address_to_script(close_to, node.network)
            except (AddressError, TypeError):
                refuse("Rejected: openchannel hook gave an invalid close_to address")
                node.log.unusual(src, f"openchannel hook: invalid close_to {close_to!r}")
                return
        depth = int(mindepth) if isinstance(mindepth, int) and mindepth >= 0 else int(node.options.get("funding-confirms"))
        reserve_sat = _sat(reserve)
        try:
            upfront = script is not None
            if script is None:
                script = await self.wallet_script()
        except OpenError as e:
            refuse(e.message)
            return
        dbid = await self.mgr.allocate_dbid()
        signer = self.mgr.signer_for(peer_id, dbid)
        ours = self.local_params(script, upfront, reserve_sat, max(1, depth))
        step = opening.on_open_channel(signer, msg, ours, self.policy())
        if step.error is not None:
            refuse(step.error.message)
            return
        self.pending[(peer_id, temp)] = PendingOpen("acceptor", peer_id, temp, dbid, signer, step.state, max(1, depth),
                                                    self.default_settings(SatInt(msg.funding_satoshis)))
        self._send_all(peer_id, step)

    async def _openchannel_hook(self, peer_id: bytes, msg: m.OpenChannel) -> dict | None:
        plugins = self.node.plugins
        if plugins is None or not plugins.has_hook("openchannel"):
            return {"result": "continue"}
        ct = bytes(msg.tlvs.channel_type) if msg.tlvs is not None and msg.tlvs.channel_type is not None else b""
        bits = _bits(ct)
        payload: dict[str, Any] = {
            "id": peer_id.hex(), "funding_msat": sat_to_msat(msg.funding_satoshis), "push_msat": msg.push_msat,
            "dust_limit_msat": sat_to_msat(msg.dust_limit_satoshis),
            "max_htlc_value_in_flight_msat": msg.max_htlc_value_in_flight_msat,
            "channel_reserve_msat": sat_to_msat(msg.channel_reserve_satoshis), "htlc_minimum_msat": msg.htlc_minimum_msat,
            "feerate_per_kw": msg.feerate_per_kw, "to_self_delay": msg.to_self_delay,
            "max_accepted_htlcs": msg.max_accepted_htlcs, "channel_flags": msg.channel_flags,
            "channel_type": {"bits": bits, "names": [_BIT_NAMES.get(b, f"unknown_{b}/even") for b in bits]},
        }
        up = msg.tlvs.upfront_shutdown_script if msg.tlvs is not None else None
        if up:
            payload["shutdown_scriptpubkey"] = bytes(up).hex()
        outcome = await plugins.call_hook("openchannel", {"openchannel": payload})
        if not isinstance(outcome, dict) or outcome.get("result") not in ("continue", "reject"):
            self.node.log.unusual(LOG, f"Bad response to openchannel hook: {outcome!r}")
            return None
        if outcome.get("result") == "reject" and "close_to" in outcome:
            self.node.log.unusual(LOG, "openchannel hook: close_to given with reject")
        return outcome

    async def _on_funding_created(self, p: PendingOpen, msg: m.FundingCreated) -> None:
        del self.pending[(p.peer_id, p.temporary_channel_id)]
        step = p.neg.on_funding_created(p.signer, msg)
        if step.error is not None:
            self.node.log.info(f"{p.peer_id.hex()}-chan", f"Opening failed: {step.error.message}")
            self.mgr.send_to_peer(p.peer_id, m.Error(channel_id=p.temporary_channel_id,
                                                     data=step.error.message.encode()))
            return
        ch = step.state
        if ch.channel_id in self.mgr.by_channel_id:
            self.mgr.send_to_peer(p.peer_id, m.Error(channel_id=p.temporary_channel_id, data=b"channel_id in use"))
            return
        rec = ChannelRecord(p.dbid, p.peer_id, p.signer, ch, mindepth=p.mindepth, settings=p.settings,
                            meta={"opened_height": self.node.blockheight, "pushed_msat": p.neg.open_msg.push_msat})
        await self.mgr.adopt(rec, step)
        self.node.log.info(f"{p.peer_id.hex()}-chan#{p.dbid}", f"Peer opened channel {ch.channel_id.hex()} "
                           f"({ch.funding_sat} sat)")
        self.node.notify("channel_opened", {"id": p.peer_id.hex(), "funding_msat": sat_to_msat(ch.funding_sat),
                                            "funding_txid": ch.params.funding_outpoint.txid_hex(),
                                            "channel_ready": False})


def _sat(value: Any) -> SatInt | None:
    """The hook's `reserve`: sat as an integer or "Nsat"/"Nmsat" string."""
    if value is None:
        return None
    from ampere.primitives.amount import AmountError, parse_sat

    try:
        return SatInt(int(parse_sat(value)))
    except (AmountError, ValueError, TypeError):
        return None


__all__ = ["OpenFlows", "OpenError", "PendingOpen", "channel_type_json", "channel_type_bytes", "commitment_feerate_name"]
