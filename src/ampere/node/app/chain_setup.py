"""Wires the chain backend into ampd: the Bitcoin backend (the built-in bcli, a bitcoind client from
CLN's option names; or, with --disable-plugin bcli, the plugins registering CLN's five backend
methods), the chain watcher (node.chain) and the wallet (node.wallet), which listens to the watcher.

Start-up never waits for bitcoind: the watcher's first poll runs in the background, so the RPC
socket serves even when the backend is down (getinfo then carries warning_bitcoind_sync).
"""

from __future__ import annotations

from ampere.chain.bitcoind import BitcoindRpc
from ampere.node.onchain.chain_backend import BcliBackend, bcli_disabled, plugin_backend
from ampere.node.onchain.chainwatch import ChainWatcher
from ampere.node.onchain.wallet import Wallet


def poll_interval(options, network: str) -> float:
    dev = options.get("dev-bitcoind-poll")
    if dev:
        return float(dev)
    configured = options.get("bitcoin-poll")
    if configured:
        return float(configured)
    return 1.0 if network == "regtest" else 30.0


def make_bcli(options, network: str, log=None) -> BcliBackend:
    o = options
    return BcliBackend(BitcoindRpc(host=o.get("bitcoin-rpcconnect") or "127.0.0.1", port=o.get("bitcoin-rpcport"),
                                   user=o.get("bitcoin-rpcuser"), password=o.get("bitcoin-rpcpassword"),
                                   datadir=o.get("bitcoin-datadir"), network=network,
                                   timeout=float(o.get("bitcoin-retry-timeout") or 60)), log)


async def start_chain(node) -> None:
    """Raises chain_backend.BackendMissing (lightningd's fatal message) when bcli is disabled and no
    plugin took its place."""
    o = node.options
    backend = await plugin_backend(node) if bcli_disabled(node.plugins) else make_bcli(o, node.network, node.log.log)
    chain = ChainWatcher(node, backend, node.network, poll_interval(o, node.network))
    wallet = Wallet(node, node.signer, node.network)
    await wallet.load()
    chain.add_listener(wallet)
    node.wallet = wallet
    node.chain = chain
    await chain.start()
