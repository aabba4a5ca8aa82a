"""The receiver's approval interface: who may accept, reject, hold or resolve an incoming payment.

Seed 000's "approver", and CLN's `htlc_accepted` and `invoice_payment` hooks: the receiver asks, the
approver answers, and the receiver does what it says.  The node does not know who answers: the daemon
hands the receiver an implementation (ampere.plugins.approval.PluginApprover runs the plugins' hook
chains); without one every payment is judged by the node's own checks alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Log = Callable[[str, str], None]


class HtlcVerdict(Protocol):
    """The outcome of asking about one incoming HTLC (after every approver in the chain).

    `result` is "continue" | "fail" | "resolve"; a fail carries `failure_onion` (wins) or
    `failure_message`; a resolve carries `payment_key` (the preimage); `replacements` (name -> value:
    `payload`, `forward_to`, `extra_tlvs`, `invoice_msat`) apply whatever the result."""

    result: str
    failure_message: bytes | None
    failure_onion: bytes | None
    payment_key: bytes | None
    replacements: dict[str, Any]


class PaymentApprover(Protocol):
    def wants_htlcs(self) -> bool:
        """True when someone asks to see incoming HTLCs (else the receiver does not build the question)."""

    async def htlc_accepted(self, payload: dict, reparse: Callable[[bytes], dict], log: Log) -> HtlcVerdict:
        """Ask about one HTLC; `payload` is CLN's htlc_accepted hook payload; `reparse(payload_bytes)` gives
        the `onion` members for a replaced payload."""

    def wants_invoice_payments(self) -> bool:
        """True when someone asks before an invoice is marked paid."""

    async def invoice_payment(self, payload: dict, log: Log) -> bytes | None:
        """Ask before marking an invoice paid (CLN's invoice_payment payload): None to accept, b"" to reject
        with incorrect_or_unknown_payment_details, else the BOLT 4 failure message to fail the parts with."""
