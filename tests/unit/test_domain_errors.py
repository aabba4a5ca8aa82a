"""Domain errors (ampere.node.errors) carry reasons; the RPC edge maps them to CLN's codes in one table."""

from __future__ import annotations

import asyncio
import types

import pytest

from ampere.node.channels.close import CloseError
from ampere.node.channels.funding import OpenError
from ampere.node.errors import DomainError, Reason
from ampere.node.net.peers import ConnectError
from ampere.node.onchain.wallet import WalletError
from ampere.node.payments.invoices import InvoiceRegistryError
from ampere.node.payments.pay import PayError
from ampere.node.payments.sendpay import PaymentError
from ampere.rpc.dispatch import Dispatcher
from ampere.rpc.errors import CLN_CODES, RpcError, cln_code, to_rpc_error
from ampere.rpc.registry import COMMANDS, Command


def test_every_reason_has_a_cln_code():
    assert set(CLN_CODES) == set(Reason)


@pytest.mark.parametrize("reason, code", [
    # common/jsonrpc_errors.h
    (Reason.GENERIC, -1), (Reason.BAD_PARAMETER, -32602),
    (Reason.PAY_IN_PROGRESS, 200), (Reason.PAY_RHASH_ALREADY_USED, 201), (Reason.PAY_UNPARSEABLE_ONION, 202),
    (Reason.PAY_DESTINATION_PERM_FAIL, 203), (Reason.PAY_TRY_OTHER_ROUTE, 204), (Reason.PAY_ROUTE_NOT_FOUND, 205),
    (Reason.PAY_ROUTE_TOO_EXPENSIVE, 206), (Reason.PAY_INVOICE_EXPIRED, 207), (Reason.PAY_NO_SUCH_PAYMENT, 208),
    (Reason.PAY_UNSPECIFIED_ERROR, 209), (Reason.PAY_STOPPED_RETRYING, 210),
    (Reason.FUND_MAX_EXCEEDED, 300), (Reason.FUND_CANNOT_AFFORD, 301), (Reason.FUND_OUTPUT_IS_DUST, 302),
    (Reason.FUNDING_BROADCAST_FAIL, 303), (Reason.FUNDING_STILL_SYNCING_BITCOIN, 304),
    (Reason.FUNDING_PEER_NOT_CONNECTED, 305), (Reason.FUNDING_UNKNOWN_PEER, 306), (Reason.FUNDING_STATE_INVALID, 312),
    (Reason.CONNECT_NO_KNOWN_ADDRESS, 400), (Reason.CONNECT_ALL_ADDRESSES_FAILED, 401),
    (Reason.CONNECT_DISCONNECTED_DURING, 402),
    (Reason.INVOICE_LABEL_ALREADY_EXISTS, 900), (Reason.INVOICE_PREIMAGE_ALREADY_EXISTS, 901),
    (Reason.INVOICE_HINTS_GAVE_NO_ROUTES, 902), (Reason.INVOICE_EXPIRED_DURING_WAIT, 903),
    (Reason.INVOICE_WAIT_TIMED_OUT, 904), (Reason.INVOICE_NOT_FOUND, 905), (Reason.INVOICE_STATUS_UNEXPECTED, 906),
    (Reason.INVOICE_NO_DESCRIPTION, 908),
    (Reason.OFFER_ALREADY_EXISTS, 1000), (Reason.OFFER_ALREADY_DISABLED, 1001), (Reason.OFFER_EXPIRED, 1002),
    (Reason.OFFER_ROUTE_NOT_FOUND, 1003), (Reason.OFFER_BAD_INVREQ_REPLY, 1004), (Reason.OFFER_TIMEOUT, 1005),
])
def test_cln_codes(reason, code):
    assert cln_code(reason) == code


def test_domain_errors_are_not_rpc_errors():
    for cls in (InvoiceRegistryError, PaymentError, PayError, OpenError, CloseError, ConnectError, WalletError):
        assert issubclass(cls, DomainError) and not issubclass(cls, RpcError)


def test_a_stored_numeric_code_passes_through():
    # sendpay failures stored before reasons existed hold CLN's number: it is the answer as it was.
    assert cln_code(204) == 204
    e = PaymentError(204, "failed: WIRE_TEMPORARY_CHANNEL_FAILURE (reply from remote)", {"erring_index": 1})
    assert to_rpc_error(e).to_json() == {"code": 204, "message": e.message, "data": {"erring_index": 1}}


def test_a_domain_error_escaping_a_handler_is_answered_with_its_cln_code():
    async def handler(ctx):
        raise PaymentError(Reason.PAY_RHASH_ALREADY_USED, "Already succeeded", {"status": "complete"})

    async def plain(ctx):
        raise InvoiceRegistryError(Reason.INVOICE_NOT_FOUND, "Unknown invoice")

    node = types.SimpleNamespace(plugins=None, stopping=asyncio.Event())
    dispatcher = Dispatcher(node)  # type: ignore[arg-type]
    COMMANDS["test-domain-error"] = Command("test-domain-error", handler)
    COMMANDS["test-domain-error-nodata"] = Command("test-domain-error-nodata", plain)
    try:
        resp = asyncio.run(dispatcher.dispatch({"jsonrpc": "2.0", "id": 7, "method": "test-domain-error"}, None))
        assert resp == {"jsonrpc": "2.0", "id": 7,
                        "error": {"code": 201, "message": "Already succeeded", "data": {"status": "complete"}}}
        resp = asyncio.run(dispatcher.dispatch({"jsonrpc": "2.0", "id": 8, "method": "test-domain-error-nodata"},
                                               None))
        assert resp == {"jsonrpc": "2.0", "id": 8, "error": {"code": 905, "message": "Unknown invoice"}}
    finally:
        del COMMANDS["test-domain-error"], COMMANDS["test-domain-error-nodata"]
