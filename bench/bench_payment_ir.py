"""Instructions per direct payment in each ampd (callgrind's Ir): payer and payee of one channel, sendpay +
waitsendpay, one payment at a time.

One payment at a time takes the same steps every time (two commitment rounds, the same messages, the same writes),
so its instruction count is repeatable to a few tenths of a percent whatever else the machine runs. Wall-clock and
CPU-time figures of the ten-channel case swing by 30% or more between runs on these shared machines, which hides a
change of a few percent; this compares two versions of the whole runtime path (RPC, onion, channel core, stored
form, peer I/O, payment bookkeeping) back to back:  PYTHONPATH=<checkout>/src python bench/bench_payment_ir.py

Both ampd run under valgrind with instrumentation off; it is switched on (callgrind_control -i) for N payments
only, after a warm-up. Kernel time (syscalls) and the database thread's sync are not counted, the database thread's
own Python is. KEEP=1 keeps the dumps for callgrind_annotate. Needs valgrind; under a minute. Prints figures; not a test.
"""

import os
import shutil

from common import callgrind_nodes, callgrind_switch, callgrind_total, network
from profile_payment import warm_pair

N = int(os.environ.get("N", "100"))


def main() -> None:
    out = callgrind_nodes()
    try:
        with network() as (chaind, f):
            payer, payee, rpc, one, invoices = warm_pair(chaind, f, N)
            pids = [payer.proc.pid, payee.proc.pid]
            callgrind_switch(pids, "-z")
            callgrind_switch(pids, "-i", "on")
            for inv in invoices[:N]:
                one(rpc, inv)
            callgrind_switch(pids, "-i", "off")
            for name, pid in zip(("payer", "payee"), pids):
                print(f"{name}: {callgrind_total(pid, out) / N / 1000:,.1f} kIr per payment ({N} payments, one at a time)",
                      flush=True)
    finally:
        if os.environ.get("KEEP"):
            print(f"callgrind dumps kept in {out} (callgrind_annotate --inclusive=yes FILE)")
        else:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
