"""Helpers shared by the chain-backend and wallet tests (imported by file path)."""
from __future__ import annotations

import time
from decimal import Decimal


def wait_for(pred, timeout: float = 30.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def sync(node, chaind, timeout: float = 30.0) -> int:
    """Wait until ampd has processed chaind's tip; returns the height."""
    h = chaind.rpc("getblockcount")
    wait_for(lambda: node.rpc.getinfo()["blockheight"] == h, timeout, f"ampd at height {h}")
    return h


def fund(node, chaind, amounts_btc: list[str], addresstype: str = "p2tr") -> list[dict]:
    """Send each amount to a fresh address of node, mine a block, wait until all are confirmed."""
    for amount in amounts_btc:
        addr = node.rpc.newaddr(addresstype)[addresstype]
        chaind.rpc("sendtoaddress", addr, Decimal(amount))
    chaind.mine(1)
    sync(node, chaind)
    return wait_for(lambda: [o for o in node.rpc.listfunds()["outputs"] if o["status"] == "confirmed"]
                    if len([o for o in node.rpc.listfunds()["outputs"] if o["status"] == "confirmed"]) >= len(amounts_btc)
                    else None, 10, "deposits")
