"""Wires the chain backend into ampd: the bitcoind client from CLN's option names, the chain
watcher (node.chain) and the wallet (node.wallet), which listens to the watcher.

Start-up never waits for bitcoind: the watcher's first poll runs in the background, so the RPC
socket serves even when the backend is down (getinfo then carries warning_bitcoind_sync).
"""

from __future__ import annotations

from ampere.chain.bitcoind import BitcoindRpc
from ampere.node.onchain.chainwatch import ChainWatcher
from ampere.node.signer.hsm_secret import load_or_create_hsm_secret
from ampere.node.onchain.wallet import Wallet


def poll_interval(options, network: str) -> float:
    dev = options.get("dev-bitcoind-poll")
    if dev:
        return float(dev)
    configured = options.get("bitcoin-poll")
    if configured:
        return float(configured)
    return 1.0 if network == "regtest" else 30.0


async def start_chain(node) -> None:
    o = node.options
    rpc = BitcoindRpc(host=o.get("bitcoin-rpcconnect") or "127.0.0.1", port=o.get("bitcoin-rpcport"),
                      user=o.get("bitcoin-rpcuser"), password=o.get("bitcoin-rpcpassword"),
                      datadir=o.get("bitcoin-datadir"), network=node.network,
                      timeout=float(o.get("bitcoin-retry-timeout") or 60))
    chain = ChainWatcher(node, rpc, node.network, poll_interval(o, node.network))
    wallet = Wallet(node, load_or_create_hsm_secret(node.netdir), node.network)
    await wallet.load()
    chain.add_listener(wallet)
    node.wallet = wallet
    node.chain = chain
    await chain.start()
