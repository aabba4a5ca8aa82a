"""On-chain wallet commands with CLN's parameters, result shapes and errors: newaddr,
listaddresses, listfunds, listtransactions, withdraw, txprepare / txsend / txdiscard,
reserveinputs / unreserveinputs, fundpsbt / utxopsbt."""

from __future__ import annotations

import json
import re
from typing import Any

from ampere.node.onchain.wallet import RESERVATION_DEFAULT, PreparedTx, WalletError
from ampere.node.onchain.wallet_psbt import PsbtError, psbt_unsigned_tx, to_psbt
from ...primitives.amount import AmountError, parse_sat, sat_to_msat
from ...primitives.script import AddressError, address_to_script, script_to_address
from ...primitives.tx import OutPoint, Transaction, TxOut
from ..errors import LIGHTNINGD, RpcError, invalid_params, to_rpc_error
from ..params import ParamError, opt, p_any, p_bool, p_enum, p_sha256, p_u16, p_u32, req
from ..registry import command
from .chain import feerate_arg, require_chain

_OUTPOINT = re.compile(r"^([0-9a-fA-F]{64}):(\d+)$")


def _wallet(ctx):
    require_chain(ctx)
    return ctx.node.wallet


def p_sat_or_all(v: Any):
    if v == "all":
        return "all"
    try:
        return parse_sat(v)
    except AmountError:
        raise ParamError("should be a satoshi amount or 'all'") from None


def p_outpoints(v: Any) -> list[OutPoint]:
    if not isinstance(v, list):
        raise ParamError("should be an array")
    out = []
    for item in v:
        m = _OUTPOINT.match(item) if isinstance(item, str) else None
        if m is None or int(m.group(2)) >= 2**32:
            raise ParamError("should be an array of txid:outnum")
        out.append(OutPoint.from_hex(m.group(1), int(m.group(2))))
    return out


def p_psbt(v: Any) -> Transaction:
    if not isinstance(v, str):
        raise ParamError("Expected a PSBT")
    try:
        return psbt_unsigned_tx(v)
    except PsbtError:
        raise ParamError("Expected a PSBT") from None


def _checked(name: str, value: Any, parse) -> Any:
    try:
        return parse(value)
    except ParamError as e:
        token = value if isinstance(value, str) else json.dumps(value)
        raise invalid_params(f"{name}: {e}: invalid token '{token}'") from None


def _script_for(ctx, address: str) -> bytes:
    try:
        return address_to_script(address, ctx.node.network)
    except AddressError:
        raise invalid_params("Could not parse destination address, destination should be a valid address") from None


def _wallet_error(e: WalletError) -> RpcError:
    return to_rpc_error(e)


def _txid_hex(txid: bytes) -> str:
    return txid[::-1].hex()


# ---- addresses ------------------------------------------------------------------------------
@command("newaddr", [opt("addresstype", p_enum("bech32", "p2tr", "all"), "p2tr")], category="bitcoin",
         description="Get a new {bech32, p2tr} (or all) address to fund a channel (default is p2tr)")
async def newaddr(ctx, addresstype: str) -> dict:
    wallet = _wallet(ctx)
    if ctx.check:
        return {}
    try:
        _, addrs = await wallet.new_address(addresstype)
    except WalletError as e:
        raise _wallet_error(e) from None
    return addrs


@command("listaddresses", [opt("address", p_any), opt("start", p_u32, 1), opt("limit", p_u32)], category="bitcoin",
         description="Show addresses issued by this node, or a given address.")
async def listaddresses(ctx, address: Any, start: int, limit: int | None) -> dict:
    wallet = _wallet(ctx)
    if address is not None and not isinstance(address, str):
        raise invalid_params("address: should be a string")
    out = []
    for keyidx in range(max(start, 1), wallet.max_index + 1):
        if limit is not None and len(out) >= limit:
            break
        kind = wallet.addrtypes.get(keyidx)
        if kind is None:
            continue
        addrs = wallet.addresses(keyidx)
        entry: dict[str, Any] = {"keyidx": keyidx}
        if kind in ("bech32", "all"):
            entry["bech32"] = addrs["bech32"]
        if kind in ("p2tr", "all"):
            entry["p2tr"] = addrs["p2tr"]
        if address is not None:
            if address in (entry.get("bech32"), entry.get("p2tr")):
                return {"addresses": [entry]}
            continue
        out.append(entry)
    return {"addresses": out}


# ---- listing ----------------------------------------------------------------------------------
@command("listfunds", [opt("spent", p_bool, False)], category="bitcoin",
         description="Show available funds from the internal wallet")
async def listfunds(ctx, spent: bool) -> dict:
    wallet = _wallet(ctx)
    tip = ctx.node.blockheight
    outputs = []
    for o in wallet.list_outputs(include_spent=spent):
        entry: dict[str, Any] = {"txid": _txid_hex(o.txid), "output": o.outnum, "amount_msat": sat_to_msat(o.value),
                                 "scriptpubkey": o.script.hex()}
        addr = script_to_address(o.script, ctx.node.network)
        if addr is not None:
            entry["address"] = addr
        entry["status"] = o.status(tip)
        if o.blockheight is not None:
            entry["blockheight"] = o.blockheight
        entry["reserved"] = o.reserved(tip)
        if o.reserved(tip):
            entry["reserved_to_block"] = o.reserved_til
        outputs.append(entry)
    channels = ctx.node.channel_manager
    listed = channels.listfunds_channels() if channels is not None and hasattr(channels, "listfunds_channels") else []
    return {"outputs": outputs, "channels": listed}


@command("listtransactions", category="bitcoin", description="List transactions that we stored in the wallet")
async def listtransactions(ctx) -> dict:
    wallet = _wallet(ctx)
    out = []
    for txid, raw, height, txindex in await wallet.list_transactions():
        tx = Transaction.parse(bytes(raw))
        out.append({
            "hash": _txid_hex(bytes(txid)), "rawtx": bytes(raw).hex(), "blockheight": height or 0,
            "txindex": txindex or 0, "locktime": tx.locktime, "version": tx.version,
            "inputs": [{"txid": i.prevout.txid_hex(), "index": i.prevout.vout, "sequence": i.sequence}
                       for i in tx.inputs],
            "outputs": [{"index": n, "amount_msat": sat_to_msat(o.value), "scriptPubKey": o.script_pubkey.hex()}
                        for n, o in enumerate(tx.outputs)],
        })
    return {"transactions": out}


# ---- spending ---------------------------------------------------------------------------------
@command("withdraw", [req("destination", p_any), req("satoshi", p_any), opt("feerate", p_any),
                      opt("minconf", p_u16, 1), opt("utxos", p_outpoints)], category="bitcoin",
         description="Send funds from the internal wallet to {destination} address")
async def withdraw(ctx, destination: Any, satoshi, feerate: Any, minconf: int, utxos: list[OutPoint] | None) -> dict:
    # Checked here, after the other parameters, so an error names the first bad one of those.
    satoshi = _checked("satoshi", satoshi, p_sat_or_all)
    wallet = _wallet(ctx)
    if not isinstance(destination, str):
        raise invalid_params("Could not parse destination address, destination should be a valid address")
    script = _script_for(ctx, destination)
    rate = feerate_arg(ctx, "feerate", feerate)
    if ctx.check:
        return {}
    try:
        emergency = wallet.emergency_sat()
        if satoshi == "all":
            prepared = await wallet.prepare_tx([], rate, minconf, utxos, all_to=script, emergency_sat=emergency)
        else:
            prepared = await wallet.prepare_tx([TxOut(int(satoshi), script)], rate, minconf, utxos,
                                               emergency_sat=emergency)
        tx = wallet.sign_tx(prepared)
        txid = await wallet.send_tx(prepared, tx)
    except WalletError as e:
        raise _wallet_error(e) from None
    return {"tx": tx.serialize().hex(), "txid": txid, "psbt": to_psbt(tx, prepared.spent_outputs())}


def _parse_outputs(ctx, outputs: Any) -> tuple[list[TxOut], bytes | None, int | None]:
    if not isinstance(outputs, list) or not outputs:
        raise invalid_params("outputs: should be a non-empty array of {destination: amount}")
    txouts: list[TxOut] = []
    all_to = all_index = None
    for i, item in enumerate(outputs):
        if not isinstance(item, dict) or len(item) != 1:
            raise invalid_params(f"outputs: entry {i} should be an object {{address: amount}}")
        (addr, amount), = item.items()
        script = _script_for(ctx, addr)
        try:
            value = p_sat_or_all(amount)
        except ParamError as e:
            raise invalid_params(f"outputs: {e}: invalid token '{amount}'") from None
        if value == "all":
            if all_to is not None:
                raise invalid_params("outputs: only one output can be 'all'")
            all_to, all_index = script, i
        else:
            txouts.append(TxOut(int(value), script))
    return txouts, all_to, all_index


@command("txprepare", [req("outputs", p_any), opt("feerate", p_any), opt("minconf", p_u32, 1),
                       opt("utxos", p_outpoints)], category="bitcoin",
         description="Create a transaction, with option to spend in future (either txsend and txdiscard)")
async def txprepare(ctx, outputs: Any, feerate: Any, minconf: int, utxos: list[OutPoint] | None) -> dict:
    wallet = _wallet(ctx)
    txouts, all_to, all_index = _parse_outputs(ctx, outputs)
    rate = feerate_arg(ctx, "feerate", feerate)
    if ctx.check:
        return {}
    try:
        prepared = await wallet.prepare_tx(txouts, rate, minconf, utxos, all_to=all_to, all_index=all_index,
                                           emergency_sat=wallet.emergency_sat())
    except WalletError as e:
        raise _wallet_error(e) from None
    wallet.pending[prepared.txid] = prepared
    return {"psbt": to_psbt(prepared.tx, prepared.spent_outputs()),
            "unsigned_tx": prepared.tx.serialize(include_witness=False).hex(), "txid": _txid_hex(prepared.txid)}


def _pending(ctx, txid: bytes) -> PreparedTx:
    prepared = _wallet(ctx).pending.get(txid[::-1])
    if prepared is None:
        raise RpcError(LIGHTNINGD, f"{txid.hex()} not an unreleased txid")
    return prepared


@command("txsend", [req("txid", p_sha256)], category="bitcoin",
         description="Sign and broadcast a transaction created by txprepare")
async def txsend(ctx, txid: bytes) -> dict:
    wallet = _wallet(ctx)
    prepared = _pending(ctx, txid)
    if ctx.check:
        return {}
    del wallet.pending[prepared.txid]
    tx = wallet.sign_tx(prepared)
    try:
        sent = await wallet.send_tx(prepared, tx)
    except WalletError as e:
        raise _wallet_error(e) from None
    return {"psbt": to_psbt(tx, prepared.spent_outputs()), "tx": tx.serialize().hex(), "txid": sent}


@command("txdiscard", [req("txid", p_sha256)], category="bitcoin",
         description="Abandon a transaction created by txprepare")
async def txdiscard(ctx, txid: bytes) -> dict:
    wallet = _wallet(ctx)
    prepared = _pending(ctx, txid)
    if ctx.check:
        return {}
    del wallet.pending[prepared.txid]
    await wallet.release(prepared)
    return {"unsigned_tx": prepared.tx.serialize(include_witness=False).hex(), "txid": _txid_hex(prepared.txid)}


# ---- reservations -------------------------------------------------------------------------------
@command("reserveinputs", [req("psbt", p_any), opt("exclusive", p_bool, True), opt("reserve", p_u32, RESERVATION_DEFAULT)],
         category="bitcoin", description="Reserve utxos (or increase their reservation)")
async def reserveinputs(ctx, psbt: Any, exclusive: bool, reserve: int) -> dict:
    psbt = _checked("psbt", psbt, p_psbt)
    wallet = _wallet(ctx)
    if ctx.check:
        return {}
    try:
        report = await wallet.reserve([i.prevout for i in psbt.inputs], exclusive, reserve)
    except WalletError as e:
        raise _wallet_error(e) from None
    return {"reservations": report}


@command("unreserveinputs", [req("psbt", p_any), opt("reserve", p_u32, RESERVATION_DEFAULT)], category="bitcoin",
         description="Unreserve utxos (or at least, reduce their reservation)")
async def unreserveinputs(ctx, psbt: Any, reserve: int) -> dict:
    psbt = _checked("psbt", psbt, p_psbt)
    wallet = _wallet(ctx)
    if ctx.check:
        return {}
    return {"reservations": await wallet.unreserve([i.prevout for i in psbt.inputs], reserve)}


# ---- PSBTs the caller completes (CLN's wallet/reservation.c) ---------------------------------------
def _funded_result(funded) -> dict:
    out = {"psbt": to_psbt(funded.tx, funded.spent_outputs()), "feerate_per_kw": funded.feerate,
           "estimated_final_weight": funded.weight, "excess_msat": sat_to_msat(funded.excess_sat)}
    if funded.change_outnum is not None:
        out["change_outnum"] = funded.change_outnum
    if funded.reservations is not None:
        out["reservations"] = funded.reservations
    return out


@command("fundpsbt", [req("satoshi", p_any), req("feerate", p_any), req("startweight", p_u32),
                      opt("minconf", p_u32, 1), opt("reserve", p_u32, RESERVATION_DEFAULT), opt("locktime", p_u32),
                      opt("min_witness_weight", p_u32, 0), opt("excess_as_change", p_bool, False),
                      opt("nonwrapped", p_bool, False), opt("opening_anchor_channel", p_bool, False)],
         category="bitcoin", description="Create a PSBT with inputs from the wallet to cover {satoshi} at {feerate} "
                                         "for a transaction of {startweight}")
async def fundpsbt(ctx, satoshi: Any, feerate: Any, startweight: int, minconf: int, reserve: int,
                   locktime: int | None, min_witness_weight: int, excess_as_change: bool, nonwrapped: bool,
                   opening_anchor_channel: bool) -> dict:
    from ampere.node.onchain.wallet_fund import fund_psbt

    satoshi = _checked("satoshi", satoshi, p_sat_or_all)
    wallet = _wallet(ctx)
    rate = feerate_arg(ctx, "feerate", feerate)
    # (`nonwrapped`: the wallet holds no P2SH-wrapped coins to leave out.)
    try:
        funded = await fund_psbt(wallet, None if satoshi == "all" else int(satoshi), rate, startweight,
                                 minconf=minconf, reserve=reserve, locktime=locktime,
                                 min_witness_weight=min_witness_weight, excess_as_change=excess_as_change,
                                 opening_anchor_channel=opening_anchor_channel, check_only=ctx.check)
    except WalletError as e:
        raise _wallet_error(e) from None
    return {} if funded is None else _funded_result(funded)


@command("utxopsbt", [req("satoshi", p_any), req("feerate", p_any), req("startweight", p_u32),
                      req("utxos", p_any), opt("reserve", p_u32, RESERVATION_DEFAULT), opt("reservedok", p_bool, False),
                      opt("locktime", p_u32), opt("min_witness_weight", p_u32, 0), opt("excess_as_change", p_bool, False),
                      opt("opening_anchor_channel", p_bool, False)],
         category="bitcoin", description="Create a PSBT using {utxos} to cover {satoshi} at {feerate} for a "
                                         "transaction of {startweight}")
async def utxopsbt(ctx, satoshi: Any, feerate: Any, startweight: int, utxos: Any, reserve: int, reservedok: bool,
                   locktime: int | None, min_witness_weight: int, excess_as_change: bool,
                   opening_anchor_channel: bool) -> dict:
    from ampere.node.onchain.wallet_fund import fund_psbt

    satoshi = _checked("satoshi", satoshi, p_sat_or_all)
    outpoints = _checked("utxos", utxos, p_outpoints)
    if not outpoints:
        raise invalid_params("utxos: Please specify an array of 'txid:output_index', not \"[]\"")
    wallet = _wallet(ctx)
    rate = feerate_arg(ctx, "feerate", feerate)
    try:
        funded = await fund_psbt(wallet, None if satoshi == "all" else int(satoshi), rate, startweight,
                                 utxos=outpoints, reserved_ok=reservedok, reserve=reserve, locktime=locktime,
                                 min_witness_weight=min_witness_weight, excess_as_change=excess_as_change,
                                 opening_anchor_channel=opening_anchor_channel, check_only=ctx.check)
    except WalletError as e:
        raise _wallet_error(e) from None
    return {} if funded is None else _funded_result(funded)
