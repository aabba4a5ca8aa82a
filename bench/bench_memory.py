"""Memory (issue 18 item 6): ampd's RSS across 100,000 RPC connections, and with 10,000 paid
invoices, 10,000 payments and 10,000 forwards in its database.

1. A real ampd (no plugins).  After 2,000 warm-up connections, N connections (100,000 by default)
   are opened one after another, each sending `getinfo`, reading the answer and closing (as
   lightning-cli does).  Goal: RSS within 5 MiB of where it started.  With Core Lightning at hand
   (bench/cln.py: CLN_LIGHTNINGD, or /work/cln/bin/lightningd; NOCLN=1 skips it), the same run against a
   lightningd on amp-chaind, in the same run (issue 18 reported ~190 bytes per connection for it).
2. The node is stopped, its database gets 10,000 paid invoices (made by `invoice`, then marked paid
   as a payment would), 10,000 complete payments of three hops and 10,000 settled forwards, and it is
   started again: RSS after start, then after listinvoices, listsendpays, listpays and listforwards
   (each answering 10,000 entries).  Goal: under 100 MiB.  Rows are written straight into the database:
   making 30,000 real payments would take longer than the measurement is worth.

Prints figures; not a test.   .venv/bin/python bench/bench_memory.py [connections]   (0: database part only)
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import sys
import time

import cln
from common import hwm_mib, network, rss_mib
from pyln.client import LightningRpc

N_ROWS = 10_000


def one_connection(path: str, req: bytes) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.sendall(req)
        buf = b""
        while not buf.endswith(b"\n\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the answer")
            buf += chunk
    finally:
        s.close()


def connections(who: str, pid: int, rpc_path: str, n: int) -> None:
    """`who`'s RSS (the process `pid`, answering on `rpc_path`) across n connections after 2,000 warm-up ones."""
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getinfo", "params": {}}).encode()
    for _ in range(2000):
        one_connection(rpc_path, req)
    start = rss_mib(pid)
    print(f"connections [{who}]: RSS after 2,000 warm-up connections: {start:.1f} MiB")
    t0 = time.perf_counter()
    step = max(n // 5, 1)
    for i in range(1, n + 1):
        one_connection(rpc_path, req)
        if i % step == 0:
            print(f"  after {i:,}: RSS {rss_mib(pid):.1f} MiB ({rss_mib(pid) - start:+.2f} MiB), "
                  f"{i / (time.perf_counter() - t0):,.0f} connections/s")
    end = rss_mib(pid)
    print(f"connections [{who}]: {n:,} opened and closed one after another: RSS {start:.1f} -> {end:.1f} MiB "
          f"({end - start:+.2f} MiB, {(end - start) * 1024 * 1024 / max(n, 1):+.1f} bytes per connection)")


def fill_database(node, rng: random.Random) -> None:
    """10,000 paid invoices, complete payments and settled forwards, as a busy node has them."""
    rpc = LightningRpc(node.rpc_path)
    for i in range(N_ROWS):
        rpc.invoice(100_000 + i, f"bench-{i}", f"memory bench invoice {i}")
    bolt11 = rpc.listinvoices("bench-0")["invoices"][0]["bolt11"]
    node.stop()
    db = sqlite3.connect(os.path.join(node.netdir, "ampere.sqlite3"))
    now = int(time.time())
    with db:
        db.execute("UPDATE invoices SET state = 1, pay_index = id, amount_received_msat = amount_msat, "
                   "paid_at = ?, updated_index = id", (now,))
        hops = [rng.randbytes(33) for _ in range(50)]
        pays, fwds = [], []
        for i in range(N_ROWS):
            route = [rng.choice(hops) for _ in range(3)]
            scids = [f"{100 + rng.randrange(500)}x{rng.randrange(99)}x{rng.randrange(2)}" for _ in range(3)]
            amount = 100_000 + i
            pays.append((rng.randbytes(32), 0, 1, 1, amount, amount + 2_000, amount, route[-1], now - 1, now,
                         None, bolt11, None, rng.randbytes(32),
                         json.dumps({"nodes": [n.hex() for n in route], "channels": scids}),
                         b"".join(rng.randbytes(32) for _ in range(3)), 1 << 40, rng.randbytes(32), i, 500, None,
                         None, i + 1))
            fwds.append((rng.randbytes(32), i, 1 << 40, amount + 1_000, 600, rng.randbytes(32), 2 << 40,
                         rng.randbytes(32), i, amount, 560, 1, None, now - 1.5, now - 1.0, rng.randbytes(32),
                         rng.randbytes(32), None, None, i + 1))
        db.executemany("INSERT INTO payments (payment_hash, partid, groupid, status, amount_msat, amount_sent_msat, "
                       "total_msat, destination, created_at, completed_at, label, bolt11, description, preimage, "
                       "route, shared_secrets, first_scid, channel_id, htlc_id, cltv_expiry, failure, erroronion, "
                       "updated_index) VALUES (" + ", ".join("?" * 23) + ")", pays)
        db.executemany("INSERT INTO forwards (in_channel_id, in_htlc_id, in_scid, in_msat, in_cltv, payment_hash, "
                       "out_scid, out_channel_id, out_htlc_id, out_msat, out_cltv, status, failcode, received_time, "
                       "resolved_time, shared_secret, preimage, fail_message, fail_onion, updated_index) VALUES ("
                       + ", ".join("?" * 20) + ")", fwds)
    db.close()


def database(node) -> None:
    rng = random.Random(1)
    t0 = time.perf_counter()
    fill_database(node, rng)
    print(f"database: {N_ROWS:,} paid invoices, complete payments and settled forwards written "
          f"in {time.perf_counter() - t0:.0f} s")
    node.start()
    pid = node.proc.pid
    rpc = LightningRpc(node.rpc_path)
    print(f"database: RSS after start: {rss_mib(pid):.1f} MiB (peak so far {hwm_mib(pid):.1f})")
    for cmd in ("listinvoices", "listsendpays", "listpays", "listforwards"):
        t0 = time.perf_counter()
        result = rpc.call(cmd)
        dt = time.perf_counter() - t0
        n = len(next(v for v in result.values() if isinstance(v, list)))
        print(f"  after {cmd} ({n:,} entries, {dt * 1000:.0f} ms): RSS {rss_mib(pid):.1f} MiB "
              f"(peak so far {hwm_mib(pid):.1f})")
    print(f"database: RSS {rss_mib(pid):.1f} MiB at the end, peak (VmHWM) {hwm_mib(pid):.1f} MiB")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with_cln = n > 0 and cln.available() and not os.environ.get("NOCLN")
    with network(chain=with_cln, nodes_on_chain=False) as (chain, f):  # (ampd as before: no chain)
        node = f.get_node()
        print(f"ampd just started: RSS {rss_mib(node.proc.pid):.1f} MiB")
        connections("ampd", node.proc.pid, node.rpc_path, n)
        if with_cln:
            with cln.ClnNode(chain) as c:
                connections("CLN lightningd", c.proc.pid, c.rpc_path, n)
        database(node)


if __name__ == "__main__":
    main()
