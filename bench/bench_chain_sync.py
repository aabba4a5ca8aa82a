"""Chain benchmark (issue 4): ampd's time to sync 1,000 blocks from amp-chaind.

ampd is stopped while amp-chaind mines 1,000 blocks (coinbase-only), then restarted; the figure is
the time from ampd's first contact with the backend to its "Synced" line (read from the log's
timestamps), plus the wall time from process start to getinfo reporting the new height.
Prints figures; not a test.
"""

import datetime
import re
import time

from common import network

N_BLOCKS = 1000


def _ts(line: str) -> float:
    return datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()


def main() -> None:
    with network() as (chaind, f):
        chaind.mine(1)
        node = f.get_node()
        while node.rpc.getinfo()["blockheight"] < 1:
            time.sleep(0.05)
        node.stop()
        t0 = time.perf_counter()
        for _ in range(N_BLOCKS // 100):
            chaind.mine(100)
        mined = time.perf_counter() - t0
        target = chaind.rpc("getblockcount")
        t0 = time.perf_counter()
        node.start()
        while node.rpc.getinfo()["blockheight"] < target:
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        # The "Synced" line follows the last block by one more round trip to the backend: getinfo can show the
        # height first (it did under load, and the search below then found no line).
        logs = node.wait_for_log(f"Synced with bitcoind at block {target}")
        start = next(line for line in logs.splitlines() if "Connected to bitcoind" in line)
        done = next(line for line in logs.splitlines() if re.search(rf"Synced with bitcoind at block {target}\b", line))
        sync = _ts(done) - _ts(start)
        print(f"amp-chaind mined {N_BLOCKS} blocks in {mined:.2f}s")
        print(f"ampd sync of {N_BLOCKS} blocks: {sync:.2f}s ({N_BLOCKS / sync:,.0f} blocks/s); "
              f"process start to getinfo at height {target}: {wall:.2f}s")


if __name__ == "__main__":
    main()
