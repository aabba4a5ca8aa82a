#!/usr/bin/env python3
"""Seed 002's pay-up-to.py, made robust: refuse `pay`, `xpay` and `keysend` above a limit.

    ampd --plugin=pay-limit.py --pay-limit=0.001btc
    amp-cli setconfig pay-limit 50000sat          # change it while running (a dynamic option)

What pay-up-to.py left out, handled here:
- parameters by position or by keyword (`amp-cli -k pay bolt11=...`);
- amountless invoices: the amount is then the `amount_msat` parameter;
- invoices decoded by the node's `decode`, not by a regular expression, so every amount form and
  network prefix is read correctly;
- integer msat arithmetic throughout: no float ever touches an amount;
- the limit accepts 1000msat, 1000 (msat), 10sat or 0.001btc, is checked when set, and can be changed
  with `setconfig` (a bad value is refused and the old one kept);
- `keysend` (destination, amount_msat) and `xpay` (invstring, amount_msat) are capped as well as `pay`.

A call above the limit is answered with an error (code 2100, PAY_LIMIT_EXCEEDED), so scripts and
amp-cli's exit code see the refusal:

    {"code": 2100, "message": "pay: 200000000msat is above the limit of 100000000msat",
     "data": {"amount_msat": 200000000, "limit_msat": 100000000, "method": "pay"}}

A call the plugin cannot understand (a malformed invoice, a missing amount) is let through: the
command itself then reports the problem with its own error.  Written with the unmodified pyln-client.
"""

import threading
from decimal import Decimal, InvalidOperation

from pyln.client import Plugin, RpcError

plugin = Plugin()
PAY_LIMIT_EXCEEDED = 2100
# method -> (name of the invoice or destination parameter, position), amount parameter names
CAPPED = {
    "pay": ("bolt11", ("amount_msat", "msatoshi")),
    "xpay": ("invstring", ("amount_msat",)),
    "keysend": ("destination", ("amount_msat", "msatoshi")),
}


def parse_msat(value) -> int:
    """1000, "1000", "1000msat", "10sat", "0.001btc" -> msat (int); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative amount: {value}")
        return value
    text = str(value).strip().lower()
    for suffix, per_unit in (("msat", 1), ("sat", 1000), ("btc", 100_000_000_000)):
        if text.endswith(suffix):
            number, scale = text[:-len(suffix)], per_unit
            break
    else:
        number, scale = text, 1
    try:
        amount = Decimal(number) * scale
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if amount < 0 or amount != amount.to_integral_value() or not number:
        raise ValueError(f"not a whole number of msat: {value!r}")
    return int(amount)


def limit_msat() -> int:
    return parse_msat(plugin.get_option("pay-limit"))


def param(params, name, position):
    """A parameter given by keyword, or by position (None: keyword only)."""
    if isinstance(params, dict):
        return params.get(name)
    if isinstance(params, list) and position is not None and len(params) > position:
        return params[position]
    return None


def amount_of(method: str, params):
    """The amount the call would send (before fees), or None when we cannot tell."""
    first, amount_names = CAPPED[method]
    explicit = None
    for name in amount_names:
        explicit = param(params, name, 1 if name == "amount_msat" else None)
        if explicit is not None:
            break
    try:
        explicit = parse_msat(explicit) if explicit is not None else None
    except ValueError:
        return None
    if method == "keysend":
        return explicit
    invstring = param(params, first, 0)
    if not isinstance(invstring, str):
        return None
    try:
        decoded = plugin.rpc.decode(invstring)
    except RpcError:
        return None
    if "amount_msat" in decoded:
        return parse_msat(decoded["amount_msat"])
    if "invoice_amount_msat" in decoded:  # a BOLT 12 invoice
        return parse_msat(decoded["invoice_amount_msat"])
    return explicit


def judge(rpc_command, request) -> None:
    method = rpc_command["method"]
    try:
        amount = amount_of(method, rpc_command.get("params", []))
        limit = limit_msat()
    except Exception as e:  # never leave a command without an answer
        plugin.log(f"pay-limit: cannot judge {method}: {e!r}", level="unusual")
        request.set_result({"result": "continue"})
        return
    if amount is not None and amount > limit:
        plugin.log(f"refusing {method} of {amount}msat (limit {limit}msat)", level="info")
        request.set_result({"return": {"error": {
            "code": PAY_LIMIT_EXCEEDED,
            "message": f"{method}: {amount}msat is above the limit of {limit}msat",
            "data": {"amount_msat": amount, "limit_msat": limit, "method": method}}}})
        return
    request.set_result({"result": "continue"})


@plugin.async_hook("rpc_command")
def on_rpc_command(plugin, rpc_command, request, **kwargs):
    if rpc_command.get("method") not in CAPPED:
        request.set_result({"result": "continue"})
        return
    # Judging takes a `decode` call, and that call passes through this very hook: answering from a thread
    # keeps the plugin's loop free to let it through (a synchronous hook would deadlock here).
    threading.Thread(target=judge, args=(rpc_command, request), daemon=True).start()


def check_limit(plugin, name, value):
    # Called by pyln-client on `setconfig pay-limit VALUE`: raising refuses the change.
    parse_msat(value)


@plugin.method("paylimit")
def paylimit(plugin):
    """The current limit, in msat."""
    return {"limit_msat": limit_msat()}


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    try:
        parse_msat(options["pay-limit"])
    except ValueError as e:
        return {"disable": f"pay-limit: {e}"}
    plugin.log(f"pay-limit: refusing pay, xpay and keysend above {limit_msat()}msat")


plugin.add_option("pay-limit", "0.001btc", "Refuse pay, xpay and keysend above this amount "
                  "(msat, or with a msat, sat or btc suffix).", dynamic=True, on_change=check_limit)
plugin.run()
