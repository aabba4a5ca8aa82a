#!/usr/bin/env python3
"""A Bitcoin backend plugin as a CLN plugin author writes one (doc "Bitcoin backend"): the five methods
lightningd asks its backend, served by proxying a bitcoind's JSON-RPC (here amp-chaind's).  Run with
`--disable-plugin bcli`.  `backendcalls` says how often each method was asked, so a test can see the
node really used it.  BACKEND_METHODS (environment) limits which methods are registered, to test a node
refusing an incomplete backend."""
import base64
import functools
import json
import os
import urllib.request
from decimal import Decimal

from pyln.client import Plugin

plugin = Plugin()
plugin.calls = {}
WANTED = os.environ.get("BACKEND_METHODS", "getchaininfo,getrawblockbyheight,sendrawtransaction,getutxout,"
                                           "estimatefees").split(",")

plugin.add_option("backend-rpcport", None, "the bitcoind JSON-RPC port to proxy")
plugin.add_option("backend-rpcuser", "rpcuser", "its rpcuser")
plugin.add_option("backend-rpcpassword", "rpcpass", "its rpcpassword")


class BitcoindError(Exception):
    pass


def bitcoind(method, *params):
    body = json.dumps({"jsonrpc": "1.0", "id": method, "method": method, "params": list(params)}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{plugin.port}/", data=body,
                                 headers={"Authorization": plugin.auth, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            reply = json.loads(r.read(), parse_float=Decimal)
    except urllib.error.HTTPError as e:  # bitcoind answers errors with HTTP 500 and a JSON body
        reply = json.loads(e.read(), parse_float=Decimal)
    if reply.get("error"):
        raise BitcoindError(reply["error"])
    return reply["result"]


def counted(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        plugin.calls[fn.__name__] = plugin.calls.get(fn.__name__, 0) + 1
        return fn(*args, **kwargs)
    return wrapper


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    plugin.port = int(options["backend-rpcport"])
    creds = f"{options['backend-rpcuser']}:{options['backend-rpcpassword']}".encode()
    plugin.auth = "Basic " + base64.b64encode(creds).decode()
    info = bitcoind("getblockchaininfo")  # as bcli: answer init only once the backend answers
    plugin.log(f"proxying bitcoind on port {plugin.port}, chain {info['chain']}")


@counted
def getchaininfo(plugin, last_height=None, **kwargs):
    info = bitcoind("getblockchaininfo")
    return {"chain": info["chain"], "headercount": info["headers"], "blockcount": info["blocks"],
            "ibd": info["initialblockdownload"]}


@counted
def getrawblockbyheight(plugin, height, **kwargs):
    try:
        blockhash = bitcoind("getblockhash", height)
    except BitcoindError:
        return {"blockhash": None, "block": None}
    return {"blockhash": blockhash, "block": bitcoind("getblock", blockhash, 0)}


@counted
def sendrawtransaction(plugin, tx, allowhighfees=False, **kwargs):
    try:
        bitcoind("sendrawtransaction", tx)
    except BitcoindError as e:
        return {"success": False, "errmsg": e.args[0].get("message", "")}
    return {"success": True, "errmsg": ""}


@counted
def getutxout(plugin, txid, vout, **kwargs):
    out = bitcoind("gettxout", txid, vout)
    if out is None:
        return {"amount": None, "script": None}
    return {"amount": int(out["value"] * 100_000_000), "script": out["scriptPubKey"]["hex"]}


@counted
def estimatefees(plugin, **kwargs):
    # regtest has no estimates: a flat 7,500 sat/kvB, so a test can see these rates were used.
    return {"feerate_floor": 1000, "feerates": [{"blocks": b, "feerate": 7500} for b in (2, 6, 12, 100)]}


for _fn in (getchaininfo, getrawblockbyheight, sendrawtransaction, getutxout, estimatefees):
    if _fn.__name__ in WANTED:
        plugin.add_method(_fn.__name__, _fn)


@plugin.method("backendcalls")
def backendcalls(plugin):
    """How often each backend method was called."""
    return plugin.calls


plugin.run()
