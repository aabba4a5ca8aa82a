"""Why a node operation refused or failed: the domain's vocabulary, with no JSON-RPC in it.

The runtime raises `DomainError` subclasses carrying a `Reason`, a message and data; the RPC edge
(ampere.rpc.errors.CLN_CODES) maps each reason to Core Lightning's error code (common/jsonrpc_errors.h),
so the numbers live in one table and the node never speaks JSON-RPC.  A reason's name is the name CLN
gives the condition, so the table reads against jsonrpc_errors.h line by line.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    # generic
    GENERIC = "GENERIC"                            # lightningd's catch-all failure (CLN: LIGHTNINGD)
    BAD_PARAMETER = "BAD_PARAMETER"                # a caller's argument is malformed or out of range
    # sendpay / pay
    PAY_IN_PROGRESS = "PAY_IN_PROGRESS"
    PAY_RHASH_ALREADY_USED = "PAY_RHASH_ALREADY_USED"
    PAY_UNPARSEABLE_ONION = "PAY_UNPARSEABLE_ONION"
    PAY_DESTINATION_PERM_FAIL = "PAY_DESTINATION_PERM_FAIL"
    PAY_TRY_OTHER_ROUTE = "PAY_TRY_OTHER_ROUTE"
    PAY_ROUTE_NOT_FOUND = "PAY_ROUTE_NOT_FOUND"
    PAY_ROUTE_TOO_EXPENSIVE = "PAY_ROUTE_TOO_EXPENSIVE"
    PAY_INVOICE_EXPIRED = "PAY_INVOICE_EXPIRED"
    PAY_NO_SUCH_PAYMENT = "PAY_NO_SUCH_PAYMENT"
    PAY_UNSPECIFIED_ERROR = "PAY_UNSPECIFIED_ERROR"
    PAY_STOPPED_RETRYING = "PAY_STOPPED_RETRYING"
    # funding a channel, spending from the wallet
    FUND_MAX_EXCEEDED = "FUND_MAX_EXCEEDED"
    FUND_CANNOT_AFFORD = "FUND_CANNOT_AFFORD"
    FUND_OUTPUT_IS_DUST = "FUND_OUTPUT_IS_DUST"
    FUND_CANNOT_AFFORD_WITH_EMERGENCY = "FUND_CANNOT_AFFORD_WITH_EMERGENCY"  # would leave < min-emergency-msat
    FUNDING_BROADCAST_FAIL = "FUNDING_BROADCAST_FAIL"
    FUNDING_STILL_SYNCING_BITCOIN = "FUNDING_STILL_SYNCING_BITCOIN"
    FUNDING_PEER_NOT_CONNECTED = "FUNDING_PEER_NOT_CONNECTED"
    FUNDING_UNKNOWN_PEER = "FUNDING_UNKNOWN_PEER"
    FUNDING_STATE_INVALID = "FUNDING_STATE_INVALID"
    # connecting to a peer
    CONNECT_NO_KNOWN_ADDRESS = "CONNECT_NO_KNOWN_ADDRESS"
    CONNECT_ALL_ADDRESSES_FAILED = "CONNECT_ALL_ADDRESSES_FAILED"
    CONNECT_DISCONNECTED_DURING = "CONNECT_DISCONNECTED_DURING"
    # invoices
    INVOICE_LABEL_ALREADY_EXISTS = "INVOICE_LABEL_ALREADY_EXISTS"
    INVOICE_PREIMAGE_ALREADY_EXISTS = "INVOICE_PREIMAGE_ALREADY_EXISTS"
    INVOICE_HINTS_GAVE_NO_ROUTES = "INVOICE_HINTS_GAVE_NO_ROUTES"
    INVOICE_EXPIRED_DURING_WAIT = "INVOICE_EXPIRED_DURING_WAIT"
    INVOICE_WAIT_TIMED_OUT = "INVOICE_WAIT_TIMED_OUT"
    INVOICE_NOT_FOUND = "INVOICE_NOT_FOUND"
    INVOICE_STATUS_UNEXPECTED = "INVOICE_STATUS_UNEXPECTED"
    INVOICE_NO_DESCRIPTION = "INVOICE_NO_DESCRIPTION"
    # offers (BOLT 12)
    OFFER_ALREADY_EXISTS = "OFFER_ALREADY_EXISTS"
    OFFER_ALREADY_DISABLED = "OFFER_ALREADY_DISABLED"
    OFFER_EXPIRED = "OFFER_EXPIRED"
    OFFER_ROUTE_NOT_FOUND = "OFFER_ROUTE_NOT_FOUND"
    OFFER_BAD_INVREQ_REPLY = "OFFER_BAD_INVREQ_REPLY"
    OFFER_TIMEOUT = "OFFER_TIMEOUT"


class DomainError(Exception):
    """A refusal or failure of a node operation: `reason`, a message for the operator, and `data` (any
    structured detail, e.g. the failed payment's fields), which the RPC edge passes on as the error's data."""

    def __init__(self, reason: Reason | int, message: str, data: Any = None) -> None:
        # An int is a code read back from a record written before reasons existed (sendpay's stored failures).
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.data = data
