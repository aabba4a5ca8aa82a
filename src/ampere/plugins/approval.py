"""The plugin host as the receiver's approver (ampere.node.payments.approval.PaymentApprover): incoming
HTLCs go through the `htlc_accepted` hook chain, invoices about to be paid through `invoice_payment`."""

from __future__ import annotations

from collections.abc import Callable

from ampere.node.payments.approval import HtlcVerdict, Log
from ampere.plugins.hooks import HtlcAcceptedSession, InvoicePaymentSession
from ampere.plugins.host import PluginHost


class PluginApprover:
    def __init__(self, host: PluginHost) -> None:
        self.host = host

    def wants_htlcs(self) -> bool:
        return self.host.has_hook("htlc_accepted")

    async def htlc_accepted(self, payload: dict, reparse: Callable[[bytes], dict], log: Log) -> HtlcVerdict:
        session = HtlcAcceptedSession(payload, log, reparse)
        await self.host.call_hook("htlc_accepted", session=session)
        return session

    def wants_invoice_payments(self) -> bool:
        return self.host.has_hook("invoice_payment")

    async def invoice_payment(self, payload: dict, log: Log) -> bytes | None:
        return await self.host.call_hook("invoice_payment", session=InvoicePaymentSession(payload, log))
