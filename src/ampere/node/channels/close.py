"""The `close` command's flow: ask for a mutual close, wait for the agreement, and after `unilateraltimeout`
seconds (48 hours by default, as CLN; 0 = wait for ever) close unilaterally instead.

    kind, txs = await close_channel(mgr, record, unilateral_timeout, destination_script)
        kind: "mutual" (the agreed closing transaction, broadcast) or "unilateral" (our commitment)

The negotiation itself (shutdown, closing_signed) is the core's (ampere.ln.channel.shutdown); the runtime only
starts it and waits for the MutualCloseAgreed / ChannelFailed events, which resolve `record.close_waiters`.
"""
from __future__ import annotations

import asyncio

from ampere.ln.channel.actions import Refusal
from ampere.ln.channel.state import ChannelState
from ampere.primitives.tx import Transaction
from ampere.node.channels.manager import ChannelManager, ChannelRecord
from ampere.node.errors import DomainError, Reason

CS = ChannelState
CLOSABLE = (CS.CHANNELD_AWAITING_LOCKIN, CS.CHANNELD_NORMAL, CS.CHANNELD_SHUTTING_DOWN, CS.CLOSINGD_SIGEXCHANGE)


class CloseError(DomainError):
    """A refused close (ampere.node.errors.Reason says why)."""


async def close_channel(mgr: ChannelManager, rec: ChannelRecord, unilateral_timeout: int,
                        scriptpubkey: bytes | None) -> tuple[str, list[Transaction]]:
    if rec.state is CS.CLOSINGD_COMPLETE and rec.core.closing_tx:
        return "mutual", [Transaction.parse(rec.core.closing_tx)]
    if rec.state not in CLOSABLE:
        raise CloseError(Reason.GENERIC, f"Channel is in state {rec.state.value}")
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()
    rec.close_waiters.append(fut)
    rec.meta.setdefault("closer", "local")
    rec.meta.setdefault("close_cause", "user")
    step = await mgr.start_close(rec, scriptpubkey)
    if isinstance(step, Refusal):
        if fut in rec.close_waiters:
            rec.close_waiters.remove(fut)
        raise CloseError(Reason.GENERIC, step.message)
    await mgr.save_meta(rec)
    try:
        return await asyncio.wait_for(asyncio.shield(fut), unilateral_timeout or None)
    except asyncio.TimeoutError:
        pass
    # BOLT #2 leaves the timing to us: the peer did not agree in time, so we broadcast our commitment.
    mgr.node.log.info(mgr._src(rec), f"Mutual close timed out after {unilateral_timeout}s: closing unilaterally")
    step = await mgr.force_close(rec, "close: unilateral timeout reached")
    if isinstance(step, Refusal) and not fut.done():
        # Closed meanwhile (agreement or funding spent): that outcome resolves the waiter.
        if rec.state is CS.CLOSINGD_COMPLETE and rec.core.closing_tx:
            return "mutual", [Transaction.parse(rec.core.closing_tx)]
        raise CloseError(Reason.GENERIC, step.message)
    return await fut
