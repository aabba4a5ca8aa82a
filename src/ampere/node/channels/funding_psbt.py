"""Opening a channel funded by a transaction built elsewhere (CLN's fundchannel_start / fundchannel_complete /
fundchannel_cancel): the opener's side of BOLT 2 v1 establishment split where the funding transaction is
needed.

    fundchannel_start:    open_channel -> accept_channel; answers the funding address (P2WSH of the 2-of-2)
    fundchannel_complete: a PSBT paying that address exactly once -> funding_created -> funding_signed, persisted
    fundchannel_cancel:   before fundchannel_complete, the negotiation is abandoned (the peer gets an error)

The transaction is the caller's to sign and broadcast (e.g. txprepare + txsend, or another wallet): ampd never
broadcasts it, and it never stores it (a funding transaction is unsigned until the caller signs it).  The
channel waits for the funding output to confirm as any other.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from ampere.ln.channel import opening
from ampere.ln.channel.actions import Broadcast, FundingTxNeeded
from ampere.ln.channel.scripts import ChannelType
from ampere.primitives.script import script_to_address
from ampere.primitives.tx import Transaction, TxOut
from ampere.wire import bolt1
from ampere.wire import messages as m
from ampere.node.signer.dev_secrets import new_temporary_channel_id
from ampere.node.channels.funding import (
    OpenError, OpenFlows, PendingOpen, channel_type_json, commitment_feerate_name,
)
from ampere.node.errors import Reason
from ampere.node.channels.manager import ChannelRecord
from ampere.node.onchain.wallet_psbt import PsbtError, psbt_unsigned_tx

# CLN's words (lightningd/opening_control.c): the caller must not broadcast before funding_signed.
WARNING_USAGE = "The funding transaction MUST NOT be broadcast until after channel establishment has been completed."


@dataclass
class StartedOpen:
    pending: PendingOpen
    funding_sat: int
    script_pubkey: bytes
    mindepth: int
    push_msat: int
    channel_type: ChannelType
    close_to: bytes | None


def _started(flows: OpenFlows) -> dict[bytes, StartedOpen]:
    st = getattr(flows, "started", None)
    if st is None:
        st = flows.started = {}
    return st


async def fundchannel_start(flows: OpenFlows, peer_id: bytes, funding_sat: int, feerate: int, *, announce: bool,
                            push_msat: int, mindepth: int | None, reserve_sat: int | None,
                            channel_type: ChannelType | None, close_to: bytes | None) -> dict:
    node, mgr = flows.node, flows.mgr
    if node.chain is None:
        raise OpenError(Reason.GENERIC, "No chain backend: ampd was started with --disable-chain")
    if not node.chain.synced:
        raise OpenError(Reason.FUNDING_STILL_SYNCING_BITCOIN, "Still syncing with bitcoin network")
    if mgr._current_peer(peer_id) is None:
        if mgr.peer_records(peer_id):
            raise OpenError(Reason.FUNDING_PEER_NOT_CONNECTED, "Peer not connected")
        raise OpenError(Reason.FUNDING_UNKNOWN_PEER, "Unknown peer")
    started = _started(flows)
    if peer_id in started:
        raise OpenError(Reason.FUNDING_STATE_INVALID, "Already have channel in progress")
    if funding_sat >= opening.LARGE_CHANNEL_SAT and not flows._peer_supports_large(peer_id):
        raise OpenError(Reason.FUND_MAX_EXCEEDED, f"Amount exceeded {opening.LARGE_CHANNEL_SAT - 1}sat")
    channel_type = flows.choose_channel_type(peer_id, channel_type)
    fees = node.chain.fees
    commit_rate = (fees.named(commitment_feerate_name(channel_type)) if fees.known else 0) or max(feerate, fees.floor)
    script = close_to if close_to is not None else await flows.wallet_script()
    dbid = await mgr.allocate_dbid()
    signer = mgr.signer_for(peer_id, dbid)
    ours = flows.local_params(script, close_to is not None, reserve_sat, int(node.options.get("funding-confirms")))
    temp_id = new_temporary_channel_id(node.options)
    step = opening.open_channel(signer, temporary_channel_id=temp_id, chain_hash=bolt1.chain_hash(node.network),
                                funding_sat=funding_sat, push_msat=push_msat, feerate_per_kw=commit_rate, ours=ours,
                                channel_type=channel_type, announce=announce)
    if step.error is not None:
        raise OpenError(Reason.GENERIC, step.error.message)
    p = PendingOpen("opener", peer_id, temp_id, dbid, signer, step.state, mindepth or 0,
                    flows.default_settings(funding_sat), failed=asyncio.get_running_loop().create_future())
    flows.pending[(peer_id, temp_id)] = p
    try:
        flows._send_all(peer_id, step)
        accept = await flows._reply(p, m.AcceptChannel)
        step = p.neg.on_accept_channel(accept, flows.policy())
        flows._check(p, step)
    except asyncio.TimeoutError:
        _forget(flows, p)
        raise OpenError(Reason.GENERIC, "Peer did not answer in time") from None
    except OpenError:
        _forget(flows, p)
        raise
    p.neg = step.state
    need = next(a for a in step.actions if isinstance(a, FundingTxNeeded))
    depth = max(mindepth or 0, accept.minimum_depth, 1)
    started[peer_id] = StartedOpen(p, funding_sat, need.script_pubkey, depth, push_msat, channel_type, close_to)
    result: dict[str, Any] = {"funding_address": script_to_address(need.script_pubkey, node.network),
                              "scriptpubkey": need.script_pubkey.hex(),
                              "channel_type": channel_type_json(channel_type), "warning_usage": WARNING_USAGE,
                              "mindepth": depth}
    if close_to is not None:
        result["close_to"] = close_to.hex()
    return result


async def fundchannel_complete(flows: OpenFlows, peer_id: bytes, psbt: str) -> dict:
    try:
        tx = psbt_unsigned_tx(psbt)
    except PsbtError as e:
        raise OpenError(Reason.BAD_PARAMETER, f"psbt: {e}") from None
    return await complete_with_tx(flows, peer_id, tx)


async def complete_with_tx(flows: OpenFlows, peer_id: bytes, tx: Transaction, keep: bool = False) -> dict:
    """funding_created / funding_signed for the started negotiation with `peer_id`, funded by `tx`.  The
    channel is persisted; nothing is broadcast.  `keep`: `tx` is signed and ampd broadcasts it (multifundchannel),
    so it is kept with the channel for rebroadcasts."""
    node, mgr = flows.node, flows.mgr
    so = _started(flows).get(peer_id)
    if so is None or (peer_id, so.pending.temporary_channel_id) not in flows.pending:
        _started(flows).pop(peer_id, None)
        raise OpenError(Reason.FUNDING_STATE_INVALID, "No channel funding in progress.")
    outs = [o for o in tx.outputs if o.script_pubkey == so.script_pubkey]
    if not outs:
        raise OpenError(Reason.BAD_PARAMETER, "psbt: No output to open channel")
    if len(outs) > 1:
        raise OpenError(Reason.BAD_PARAMETER, "psbt: More than one output to the funding address")
    if outs[0].value != so.funding_sat:
        raise OpenError(Reason.BAD_PARAMETER, f"psbt: Output to open channel is {outs[0].value}sat, "
                                f"expected {so.funding_sat}sat")
    p = so.pending
    try:
        step = p.neg.funding_tx_ready(p.signer, tx)
        flows._check(p, step)
        p.neg = step.state
        flows._send_all(peer_id, step)
        signed = await flows._reply(p, m.FundingSigned)
        step = p.neg.on_funding_signed(p.signer, signed)
        flows._check(p, step)
    except asyncio.TimeoutError:
        _forget(flows, p)
        raise OpenError(Reason.GENERIC, "Peer did not answer in time") from None
    except OpenError:
        _forget(flows, p)
        raise
    _forget(flows, p)
    # The caller signs and broadcasts: drop the core's broadcast, and keep no copy of the (unsigned) tx.
    step = replace(step, actions=tuple(a for a in step.actions if not isinstance(a, Broadcast)))
    ch = step.state
    rec = ChannelRecord(p.dbid, peer_id, p.signer, ch, mindepth=so.mindepth, settings=p.settings,
                        funding_tx=tx if keep else None,
                        meta={"opened_height": node.blockheight, "pushed_msat": so.push_msat})
    await mgr.adopt(rec, step)
    node.log.info(f"{peer_id.hex()}-chan#{p.dbid}", f"Channel {ch.channel_id.hex()} secured; funding "
                  f"{tx.txid_hex()}" + ("" if keep else " is the caller's to broadcast"))
    return {"channel_id": ch.channel_id.hex(), "commitments_secured": True}


def fundchannel_cancel(flows: OpenFlows, peer_id: bytes) -> dict:
    so = _started(flows).get(peer_id)
    if so is None:
        raise OpenError(Reason.FUNDING_STATE_INVALID, "No channel funding in progress.")
    p = so.pending
    # BOLT #2: the opening fails: an error for the temporary channel id, then forget it.
    flows.mgr.send_to_peer(peer_id, m.Error(channel_id=p.temporary_channel_id,
                                            data=b"Channel open canceled by RPC"))
    _forget(flows, p)
    return {"cancelled": "Channel open canceled by RPC"}


def _forget(flows: OpenFlows, p: PendingOpen) -> None:
    flows.pending.pop((p.peer_id, p.temporary_channel_id), None)
    so = _started(flows).get(p.peer_id)
    if so is not None and so.pending is p:
        del _started(flows)[p.peer_id]
    if p.failed is not None and not p.failed.done():
        p.failed.cancel()


async def multifundchannel(flows: OpenFlows, destinations: list[dict], feerate: int, minconf: int,
                           utxos: list | None) -> dict:
    """CLN's multifundchannel, all or nothing: every destination's negotiation is started, one wallet transaction
    pays all the funding outputs, every channel is secured (funding_signed persisted), then ampd broadcasts it.
    A destination is {"id", "amount" (sat), "announce", "push_msat", "close_to", "mindepth", "reserve"}.
    If a peer fails before every channel is secured, the others are cancelled and nothing is broadcast."""
    node = flows.node
    wallet = node.wallet
    if wallet is None:
        raise OpenError(Reason.GENERIC, "No wallet: ampd was started with --disable-chain")
    ids = [d["id"] for d in destinations]
    if len(set(ids)) != len(ids):
        raise OpenError(Reason.BAD_PARAMETER, "destinations: Duplicate destination")
    starts: list[tuple[dict, dict]] = []
    try:
        for d in destinations:
            r = await fundchannel_start(flows, d["id"], d["amount"], feerate, announce=d["announce"],
                                        push_msat=d["push_msat"], mindepth=d["mindepth"], reserve_sat=d["reserve"],
                                        channel_type=d.get("channel_type"), close_to=d["close_to"])
            starts.append((d, r))
    except OpenError:
        for d, _ in starts:
            try:
                fundchannel_cancel(flows, d["id"])
            except OpenError:
                pass
        raise
    from ampere.node.onchain.wallet import WalletError

    outputs = [TxOut(d["amount"], bytes.fromhex(r["scriptpubkey"])) for d, r in starts]
    try:
        anchors = any(22 in r["channel_type"]["bits"] for _, r in starts)
        prepared = await wallet.prepare_tx(outputs, feerate, minconf, utxos,
                                           emergency_sat=wallet.emergency_sat(opening_anchors=anchors))
    except WalletError as e:
        for d, _ in starts:
            fundchannel_cancel(flows, d["id"])
        raise OpenError(e.reason, e.message) from None
    tx = wallet.sign_tx(prepared)
    secured: list[dict] = []
    try:
        for d, r in starts:
            done = await complete_with_tx(flows, d["id"], tx, keep=True)
            secured.append({"id": d["id"].hex(), "channel_id": done["channel_id"],
                            "outnum": next(i for i, o in enumerate(tx.outputs)
                                           if o.script_pubkey.hex() == r["scriptpubkey"]),
                            "channel_type": r["channel_type"], **({"close_to": r["close_to"]} if "close_to" in r else {})})
    except OpenError:
        await wallet.release(prepared)
        for d, _ in starts:
            try:
                fundchannel_cancel(flows, d["id"])
            except OpenError:
                pass
        raise
    try:
        await wallet.send_tx(prepared, tx)
    except WalletError as e:
        raise OpenError(e.reason, e.message) from None
    node.log.info("lightningd", f"multifundchannel: broadcast {tx.txid_hex()} funding {len(secured)} channels")
    return {"tx": tx.serialize().hex(), "txid": tx.txid_hex(), "channel_ids": secured}
