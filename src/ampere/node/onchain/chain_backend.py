"""The Bitcoin backend: where ampd's chain data comes from, replaceable as in CLN.

CLN asks a plugin for everything it knows about the chain, through five methods (lightningd/bitcoind.c,
doc "Bitcoin backend"): `getchaininfo`, `getrawblockbyheight`, `getutxout`, `estimatefees`,
`sendrawtransaction`.  Its default plugin, `bcli`, runs bitcoin-cli for each.  Ampere has two backends
behind one interface:

* `BcliBackend`, the built-in `bcli`: bitcoind's JSON-RPC in-process over one kept-alive connection
  (batched block fetches, no subprocess per query).  It is what runs unless `--disable-plugin bcli`.
* `PluginBackend`: with `--disable-plugin bcli`, the plugins that registered the five methods, called
  with CLN's parameters and read with CLN's result shapes.  Missing methods stop ampd at start with
  lightningd's message.

Both raise `BitcoindError` for an answer that says no and `BitcoindUnreachable` for no answer, so the
chain watcher and its users do not care which one runs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ampere.chain.bitcoind import BitcoindError, BitcoindRpc, BitcoindUnreachable, btc_to_sat
from ampere.primitives.tx import Transaction
from ampere.node.onchain.feerate import ESTIMATE_TARGETS, btc_kvb_to_perkw, perkb_to_perkw

# lightningd/bitcoind.c: "The names of the requests we can make to our Bitcoin backend."
BACKEND_METHODS = ("getchaininfo", "getrawblockbyheight", "sendrawtransaction", "getutxout", "estimatefees")
BCLI = "bcli"
# The name `plugin list` gives the built-in bcli, as CLN lists its plugins/bcli: a path ending in `bcli` (no file
# is there: bcli runs inside ampd).
BCLI_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "plugins",
                         BCLI)
LOG = "bitcoind"
# bitcoind's RPC_VERIFY_ALREADY_IN_CHAIN: bcli reports success for it (the transaction is mined).
RPC_VERIFY_ALREADY_IN_CHAIN = -27
# BIP70 chain names as bitcoind's getblockchaininfo gives them, per --network.
_BIP70 = {"bitcoin": "main", "mainnet": "main", "testnet": "test", "testnet4": "testnet4", "signet": "signet",
          "regtest": "regtest"}


class BackendMissing(RuntimeError):
    """--disable-plugin bcli and no plugin registered one of the five methods."""


@dataclass
class ChainInfo:
    chain: str
    blocks: int
    headers: int
    ibd: bool
    best_hash: str | None = None  # display hex; the plugin interface does not give it


class BcliBackend:
    """The built-in backend: bitcoind's (or amp-chaind's) JSON-RPC, in-process."""

    name = BCLI

    def __init__(self, rpc: BitcoindRpc, log: Any = None) -> None:
        self.rpc = rpc
        self.log = log  # (level, source, message), for bcli's own debug lines

    label = "bitcoind"

    @property
    def where(self) -> str:
        return f" at {self.rpc.host}:{self.rpc.port}"

    def describe(self) -> str:
        return f"bitcoind{self.where}"

    async def close(self) -> None:
        await self.rpc.close()

    async def chain_info(self, last_height: int) -> ChainInfo:
        info = await self.rpc.call("getblockchaininfo")
        return ChainInfo(str(info.get("chain")), int(info["blocks"]), int(info.get("headers", info["blocks"])),
                         bool(info.get("initialblockdownload")), info.get("bestblockhash"))

    async def blockhash(self, height: int) -> str | None:
        try:
            return await self.rpc.call("getblockhash", height)
        except BitcoindError:
            return None

    async def raw_blocks(self, heights: list[int]) -> list[tuple[str, bytes] | None]:
        """(hash display hex, raw block) per height, None from the first height the chain does not
        have; two batched round trips whatever the count."""
        hashes = await self.rpc.batch([("getblockhash", [h]) for h in heights])
        good: list[str] = []
        for bh in hashes:
            if isinstance(bh, BitcoindError):
                break
            good.append(bh)
        raws = await self.rpc.batch([("getblock", [bh, 0]) for bh in good]) if good else []
        out: list[tuple[str, bytes] | None] = []
        for bh, raw in zip(good, raws):
            if isinstance(raw, BitcoindError):
                break
            out.append((bh, bytes.fromhex(raw)))
        return out + [None] * (len(heights) - len(out))

    async def raw_block_by_hash(self, block_hash: str, height: int) -> bytes | None:
        try:
            return bytes.fromhex(await self.rpc.call("getblock", block_hash, 0))
        except (BitcoindError, ValueError):
            return None

    async def utxo(self, txid_hex: str, vout: int, include_mempool: bool = True) -> dict | None:
        r = await self.rpc.call("gettxout", txid_hex, vout, include_mempool)
        if r is None:
            return None
        # What CLN's getutxout gives: amount and script (a caller knows the block from the short_channel_id).
        return {"value_sat": btc_to_sat(r["value"]), "script": bytes.fromhex(r["scriptPubKey"]["hex"])}

    async def send(self, raw_hex: str, txid_hex: str) -> str:
        try:
            txid = await self.rpc.call("sendrawtransaction", raw_hex)
        except BitcoindError as e:
            self._log_send(-e.code, raw_hex, e.message)
            if e.code == RPC_VERIFY_ALREADY_IN_CHAIN:
                return txid_hex
            raise
        self._log_send(0, raw_hex, txid)
        return txid

    def _log_send(self, status: int, raw_hex: str, output: str) -> None:
        # bcli's line (plugins/bcli.c), which pyln-testing's wait_for_onchaind_txs waits for.
        if self.log is not None:
            self.log("debug", "plugin-bcli", f"sendrawtx exit {status} (sendrawtransaction {raw_hex}) {output}")

    async def fees(self) -> tuple[list[tuple[int, int]], int]:
        """([(blocks, perkw)...], floor perkw) from estimatesmartfee and getmempoolinfo, in one batch."""
        calls: list[tuple[str, list]] = [("estimatesmartfee", [blocks, mode]) for blocks, mode in ESTIMATE_TARGETS]
        calls.append(("getmempoolinfo", []))
        replies = await self.rpc.batch(calls)
        estimates = []
        for (blocks, _), r in zip(ESTIMATE_TARGETS, replies):
            if isinstance(r, dict) and r.get("feerate") is not None:
                estimates.append((blocks, btc_kvb_to_perkw(r["feerate"])))
        floor = 0
        mp = replies[-1]
        if isinstance(mp, dict):
            floor = max(btc_kvb_to_perkw(mp.get("mempoolminfee", 0)), btc_kvb_to_perkw(mp.get("minrelaytxfee", 0)))
        return estimates, floor

    # -- the five methods as CLN's bcli answers them (for the `getchaininfo`... RPC commands) --
    async def method(self, name: str, params: dict) -> dict:
        if name == "getchaininfo":
            info = await self.chain_info(int(params.get("last_height") or 0))
            return {"chain": info.chain, "headercount": info.headers, "blockcount": info.blocks, "ibd": info.ibd}
        if name == "getrawblockbyheight":
            got = (await self.raw_blocks([int(params["height"])]))[0]
            if got is None:
                return {"blockhash": None, "block": None}
            return {"blockhash": got[0], "block": got[1].hex()}
        if name == "getutxout":
            r = await self.utxo(str(params["txid"]), int(params["vout"]))
            if r is None:
                return {"amount": None, "script": None}
            return {"amount": r["value_sat"], "script": r["script"].hex()}
        if name == "estimatefees":
            estimates, floor = await self.fees()
            return {"feerate_floor": max(floor, 253) * 4,
                    "feerates": [{"blocks": b, "feerate": rate * 4} for b, rate in estimates]}
        if name == "sendrawtransaction":
            raw = str(params["tx"])
            try:
                await self.send(raw, Transaction.parse(bytes.fromhex(raw)).txid()[::-1].hex())
            except BitcoindError as e:
                return {"success": False, "errmsg": e.message}
            return {"success": True, "errmsg": ""}
        raise KeyError(name)


class PluginBackend:
    """The plugins that registered the five methods (`--disable-plugin bcli`)."""

    name = "plugin"

    def __init__(self, node: Any) -> None:
        self.node = node
        self.host = node.plugins
        self.network = node.network

    label = "The Bitcoin backend"
    where = ""

    def describe(self) -> str:
        owners = sorted({m.plugin.shortname for m in (self.host.find_method(n) for n in BACKEND_METHODS) if m})
        return "Bitcoin backend plugin " + ", ".join(owners)

    async def close(self) -> None:
        pass

    async def _call(self, method: str, params: dict) -> dict:
        m = self.host.find_method(method)
        if m is None or not m.plugin.alive:
            if self.node.stopping.is_set():
                # lightningd's bitcoin_destructor: the backend going away during shutdown is expected.
                raise BitcoindUnreachable("shutting down")
            # lightningd/bitcoind.c bitcoin_plugin_send: fatal, the node cannot follow the chain.
            self.node.log.broken(LOG, f"Bitcoin backend plugin for {method} died.")
            self.node.request_stop(1)
            raise BitcoindUnreachable(f"Bitcoin backend plugin for {method} died.")
        resp = await self.host.call_method(method, {"jsonrpc": "2.0", "method": method, "params": params},
                                           f"bitcoind:{method}")
        err = resp.get("error")
        if err is not None:
            code = err.get("code", -1) if isinstance(err, dict) else -1
            message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            if code == -4:  # "Plugin terminated before replying to RPC call."
                raise BitcoindUnreachable(f"{method}: {message}")
            raise BitcoindError(int(code), f"{method}: {message}")
        result = resp.get("result")
        if not isinstance(result, dict):
            self._bad(method, "bad 'result' field", resp)
        return result

    def _bad(self, method: str, reason: str, resp: Any) -> None:
        # lightningd's bitcoin_plugin_error: a backend we cannot understand is fatal.
        m = self.host.find_method(method)
        who = m.plugin.path if m is not None else "UNKNOWN CALL"
        self.node.log.broken(LOG, f"{who} error: bad response to {method} ({reason}), response was {resp}")
        self.node.request_stop(1)
        raise BitcoindUnreachable(f"bad response to {method} ({reason})")

    async def chain_info(self, last_height: int) -> ChainInfo:
        r = await self._call("getchaininfo", {"last_height": max(last_height, 0)})
        try:
            return ChainInfo(str(r["chain"]), int(r["blockcount"]), int(r["headercount"]), bool(r["ibd"]))
        except (KeyError, TypeError, ValueError) as e:
            self._bad("getchaininfo", f"bad 'result' field: {e!r}", r)
            raise

    async def _block(self, height: int) -> tuple[str, bytes] | None:
        r = await self._call("getrawblockbyheight", {"height": height})
        if r.get("blockhash") is None:
            return None
        try:
            return str(r["blockhash"]), bytes.fromhex(r["block"])
        except (KeyError, TypeError, ValueError) as e:
            self._bad("getrawblockbyheight", f"bad 'result' field: {e!r}", r)
            raise

    async def blockhash(self, height: int) -> str | None:
        got = await self._block(height)
        return None if got is None else got[0]

    async def raw_blocks(self, heights: list[int]) -> list[tuple[str, bytes] | None]:
        out: list[tuple[str, bytes] | None] = []
        for h in heights:
            got = await self._block(h)
            if got is None:
                break
            out.append(got)
        return out + [None] * (len(heights) - len(out))

    async def raw_block_by_hash(self, block_hash: str, height: int) -> bytes | None:
        # The interface fetches by height only: the block is there if it is still the one at `height`.
        got = await self._block(height)
        return got[1] if got is not None and got[0] == block_hash else None

    async def utxo(self, txid_hex: str, vout: int, include_mempool: bool = True) -> dict | None:
        r = await self._call("getutxout", {"txid": txid_hex, "vout": vout})
        if r.get("script") is None:
            return None
        try:
            sat = _sats(r["amount"])
            script = bytes.fromhex(r["script"])
        except (KeyError, TypeError, ValueError) as e:
            self._bad("getutxout", f"bad 'result' field: {e!r}", r)
            raise
        # CLN's getutxout answers amount and script only: lightningd takes the block from the short_channel_id.
        return {"value_sat": sat, "script": script}

    async def send(self, raw_hex: str, txid_hex: str) -> str:
        r = await self._call("sendrawtransaction", {"tx": raw_hex, "allowhighfees": True})
        if r.get("success") is True:
            return txid_hex
        if r.get("success") is not False:
            self._bad("sendrawtransaction", "bad 'result' field", r)
        raise BitcoindError(-26, str(r.get("errmsg") or "rejected by the Bitcoin backend"))

    async def fees(self) -> tuple[list[tuple[int, int]], int]:
        r = await self._call("estimatefees", {})
        if "feerate_floor" not in r:
            self._bad("estimatefees", "missing feerate_floor field", r)
        try:
            floor = perkb_to_perkw(int(r["feerate_floor"]))
            estimates = [(int(f["blocks"]), perkb_to_perkw(int(f["feerate"]))) for f in r.get("feerates") or []]
        except (KeyError, TypeError, ValueError) as e:
            self._bad("estimatefees", f"{e!r}", r)
            raise
        return estimates, floor


def _sats(amount: Any) -> int:
    """lightningd's json_to_sat: a number of satoshi, "<N>sat", or "<N>msat" of whole satoshi."""
    if isinstance(amount, bool):
        raise ValueError("amount is a boolean")
    if isinstance(amount, int):
        return amount
    if isinstance(amount, str):
        if amount.endswith("msat") and amount[:-4].isdigit() and int(amount[:-4]) % 1000 == 0:
            return int(amount[:-4]) // 1000
        if amount.endswith("sat") and amount[:-3].isdigit():
            return int(amount[:-3])
        if amount.isdigit():
            return int(amount)
    raise ValueError(f"bad amount {amount!r}")


def bcli_disabled(host: Any) -> bool:
    return host is not None and host.is_disabled(BCLI)


async def plugin_backend(node: Any) -> PluginBackend:
    """lightningd's bitcoind_check_commands: every method must have a plugin, which gets `init` now
    (before the other plugins) since the node cannot start following the chain without it."""
    host = node.plugins
    owners = []
    for method in BACKEND_METHODS:
        m = host.find_method(method)
        if m is None:
            node.log.debug("lightningd", "Missing a Bitcoin plugin command")  # lightningd's words, tests grep them
            raise BackendMissing(f"Could not access the plugin for {method}, is a Bitcoin plugin "
                                 f"(by default plugins/bcli) registered ?")
        if m.plugin not in owners:
            owners.append(m.plugin)
    node.log.debug("lightningd", "All Bitcoin plugin commands registered")
    from ampere.node.app.plugin_setup import init_early

    await init_early(node, owners)
    return PluginBackend(node)


__all__ = ["BACKEND_METHODS", "BCLI", "BCLI_PATH", "BackendMissing", "BcliBackend", "ChainInfo", "PluginBackend",
           "bcli_disabled", "plugin_backend"]
