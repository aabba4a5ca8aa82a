"""`make demo` / `make stop`: a local regtest Lightning network, working.

amp-chaind (a regtest chain validated by libbitcoinkernel), two ampd nodes (l1 runs the example
helloworld plugin), a channel l1 -> l2, and an invoice of l2's paid by l1.  Everything stays up for
you to try; `make stop` ends it.  Built on amp-regtest's functions, so the same network can be
driven with `amp-regtest --dir DIR env|connect|fund_nodes|stop`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .cli import regtest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PLUGIN = os.path.join(REPO, "contrib", "plugins", "helloworld.py")


def _call(node: dict, method: str, params=None, timeout: float = 60.0):
    return regtest._ampd_call(node["dir"], method, params, timeout=timeout)


def start(base: str) -> int:
    try:
        regtest.stop(base)
    except regtest.RegtestError:
        pass
    # l1 gets the example plugin through its config file, as an operator would set it up.
    l1_dir = regtest._node_dir(base, 1)
    os.makedirs(l1_dir, exist_ok=True)
    with open(os.path.join(l1_dir, "config"), "w") as f:
        f.write(f"# written by make demo\nplugin={PLUGIN}\ngreeting=Hi\nalias=demo-l1\n")
    print("== starting amp-chaind and two ampd nodes")
    regtest.start(base, 2)
    print("\n== opening a channel l1 -> l2 (funding, 6 blocks, channel_ready)")
    regtest.fund_nodes(base, 1_000_000)
    state = regtest._load_state(base)
    l1, l2 = state["nodes"][:2]
    print("\n== l2 makes an invoice; l1 pays it")
    inv = _call(l2, "invoice", {"amount_msat": 50_000_000, "label": f"demo-{int(time.time())}",
                                "description": "demo pizza"})
    print(f"$ l2-cli invoice 50000000 demo 'demo pizza'\n  bolt11 {inv['bolt11'][:60]}...")
    names = {h["command"].split()[0] for h in _call(l1, "help")["help"]}
    if "pay" in names:
        paid = _call(l1, "pay", {"bolt11": inv["bolt11"]}, timeout=120)
        print(f"$ l1-cli pay <bolt11>\n  status {paid['status']}, preimage {paid['payment_preimage']}")
    else:
        scid = _call(l1, "listpeerchannels", {"id": l2["id"]})["channels"][0]["short_channel_id"]
        _call(l1, "sendpay", {"route": [{"id": l2["id"], "channel": scid, "delay": 18 + 6,
                                         "amount_msat": 50_000_000}],
                              "payment_hash": inv["payment_hash"], "payment_secret": inv["payment_secret"]})
        paid = _call(l1, "waitsendpay", {"payment_hash": inv["payment_hash"]}, timeout=120)
        print(f"$ l1-cli sendpay/waitsendpay\n  status {paid['status']}, preimage {paid['payment_preimage']}")
    got = [i for i in _call(l2, "listinvoices")["invoices"] if i["payment_hash"] == inv["payment_hash"]][0]
    print(f"$ l2-cli listinvoices\n  {got['label']}: {got['status']}, {got.get('amount_received_msat')} msat")
    hello = _call(l1, "hello", ["demo"])
    print(f"$ l1-cli hello demo   (the helloworld plugin)\n  {json.dumps(hello)}")
    print("\n== try it yourself")
    print(f"  export PATH={os.path.dirname(sys.executable)}:$PATH")
    print(f'  eval "$(amp-regtest --dir {base} env)"     # l1-cli, l2-cli, bt-cli')
    print("  l1-cli listpeerchannels;  l2-cli invoice 10000 x 'x';  l1-cli pay <bolt11>;  bt-cli getblockcount")
    print("  make stop                                  # stops everything")
    return 0 if got["status"] == "paid" else 1


def stop(base: str) -> int:
    try:
        return regtest.stop(base)
    except regtest.RegtestError as e:
        print(e)
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(prog="ampere.demo")
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--dir", default="/tmp/ampere-demo")
    a = ap.parse_args()
    try:
        sys.exit(start(a.dir) if a.action == "start" else stop(a.dir))
    except (regtest.RegtestError, OSError, KeyError, IndexError, ValueError) as e:
        # Never a traceback for a newcomer: what failed, and where to look.
        print(f"demo: {type(e).__name__ + ': ' if not isinstance(e, regtest.RegtestError) else ''}{e}\n"
              f"demo: the nodes' logs are in {a.dir}/l*-regtest/log; `make stop` stops what runs", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
