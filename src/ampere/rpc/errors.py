"""JSON-RPC errors with Core Lightning's codes (common/jsonrpc_errors.h)."""

from __future__ import annotations

from typing import Any

from ampere.node.errors import DomainError, Reason

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
LIGHTNINGD = -1
PLUGIN_ERROR = -3
PLUGIN_TERMINATED = -4
LIGHTNINGD_SHUTDOWN = -5

# payments
PAY_IN_PROGRESS = 200
PAY_RHASH_ALREADY_USED = 201
PAY_UNPARSEABLE_ONION = 202
PAY_DESTINATION_PERM_FAIL = 203
PAY_TRY_OTHER_ROUTE = 204
PAY_ROUTE_NOT_FOUND = 205
PAY_ROUTE_TOO_EXPENSIVE = 206
PAY_INVOICE_EXPIRED = 207
PAY_NO_SUCH_PAYMENT = 208
PAY_UNSPECIFIED_ERROR = 209
PAY_STOPPED_RETRYING = 210

# invoices
INVOICE_LABEL_ALREADY_EXISTS = 900
INVOICE_PREIMAGE_ALREADY_EXISTS = 901
INVOICE_HINTS_GAVE_NO_ROUTES = 902
INVOICE_EXPIRED_DURING_WAIT = 903
INVOICE_WAIT_TIMED_OUT = 904
INVOICE_NOT_FOUND = 905
INVOICE_STATUS_UNEXPECTED = 906
INVOICE_NO_DESCRIPTION = 908

# offers
OFFER_ALREADY_EXISTS = 1000
OFFER_ALREADY_DISABLED = 1001
OFFER_EXPIRED = 1002
OFFER_ROUTE_NOT_FOUND = 1003
OFFER_BAD_INVREQ_REPLY = 1004
OFFER_TIMEOUT = 1005

DELFORWARD_NOT_FOUND = 1401

DATASTORE_DEL_DOES_NOT_EXIST = 1200
DATASTORE_DEL_WRONG_GENERATION = 1201
DATASTORE_UPDATE_ALREADY_EXISTS = 1202
DATASTORE_UPDATE_DOES_NOT_EXIST = 1203
DATASTORE_UPDATE_WRONG_GENERATION = 1204
DATASTORE_UPDATE_HAS_CHILDREN = 1205
DATASTORE_UPDATE_NO_CHILDREN = 1206


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)


# The one table from the node's domain reasons (ampere.node.errors) to CLN's codes.
CLN_CODES: dict[Reason, int] = {
    Reason.GENERIC: LIGHTNINGD,
    Reason.BAD_PARAMETER: INVALID_PARAMS,
    Reason.PAY_IN_PROGRESS: PAY_IN_PROGRESS,
    Reason.PAY_RHASH_ALREADY_USED: PAY_RHASH_ALREADY_USED,
    Reason.PAY_UNPARSEABLE_ONION: PAY_UNPARSEABLE_ONION,
    Reason.PAY_DESTINATION_PERM_FAIL: PAY_DESTINATION_PERM_FAIL,
    Reason.PAY_TRY_OTHER_ROUTE: PAY_TRY_OTHER_ROUTE,
    Reason.PAY_ROUTE_NOT_FOUND: PAY_ROUTE_NOT_FOUND,
    Reason.PAY_ROUTE_TOO_EXPENSIVE: PAY_ROUTE_TOO_EXPENSIVE,
    Reason.PAY_INVOICE_EXPIRED: PAY_INVOICE_EXPIRED,
    Reason.PAY_NO_SUCH_PAYMENT: PAY_NO_SUCH_PAYMENT,
    Reason.PAY_UNSPECIFIED_ERROR: PAY_UNSPECIFIED_ERROR,
    Reason.PAY_STOPPED_RETRYING: PAY_STOPPED_RETRYING,
    Reason.INVOICE_LABEL_ALREADY_EXISTS: INVOICE_LABEL_ALREADY_EXISTS,
    Reason.INVOICE_PREIMAGE_ALREADY_EXISTS: INVOICE_PREIMAGE_ALREADY_EXISTS,
    Reason.INVOICE_HINTS_GAVE_NO_ROUTES: INVOICE_HINTS_GAVE_NO_ROUTES,
    Reason.INVOICE_EXPIRED_DURING_WAIT: INVOICE_EXPIRED_DURING_WAIT,
    Reason.INVOICE_WAIT_TIMED_OUT: INVOICE_WAIT_TIMED_OUT,
    Reason.INVOICE_NOT_FOUND: INVOICE_NOT_FOUND,
    Reason.INVOICE_STATUS_UNEXPECTED: INVOICE_STATUS_UNEXPECTED,
    Reason.INVOICE_NO_DESCRIPTION: INVOICE_NO_DESCRIPTION,
    Reason.OFFER_ALREADY_EXISTS: OFFER_ALREADY_EXISTS,
    Reason.OFFER_ALREADY_DISABLED: OFFER_ALREADY_DISABLED,
    Reason.OFFER_EXPIRED: OFFER_EXPIRED,
    Reason.OFFER_ROUTE_NOT_FOUND: OFFER_ROUTE_NOT_FOUND,
    Reason.OFFER_BAD_INVREQ_REPLY: OFFER_BAD_INVREQ_REPLY,
    Reason.OFFER_TIMEOUT: OFFER_TIMEOUT,
}


def cln_code(reason: Reason | int) -> int:
    """CLN's code for a domain reason (an int is already one: a failure stored before reasons existed)."""
    return reason if isinstance(reason, int) else CLN_CODES[reason]


def to_rpc_error(e: DomainError, message: str | None = None, data: Any = ...) -> RpcError:
    """A domain error as the JSON-RPC error CLN answers with: same code, message and data."""
    return RpcError(cln_code(e.reason), e.message if message is None else message, e.data if data is ... else data)
