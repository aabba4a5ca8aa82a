"""Daemon benchmarks (issue 2): getinfo calls/s through pyln-client, launch-to-ready, memory.

Prints figures; not a test.  Compare with Core Lightning v26.06 on the same kind of machine:
getinfo 5,400-5,650 calls/s; launch to getinfo answering 0.41-0.58 s; ~50 MiB PSS.
"""

import statistics
import time

from common import Timer, cpu_seconds, network, pss_mib, rate

N_CALLS = 3000


def main() -> None:
    with network(chain=False) as (_, f):
        launches = []
        launch_cpu = []
        for i in range(5):
            node = f.get_node(start=False)
            t0 = time.perf_counter()
            node.start(wait=False)
            from pyln.client import LightningRpc

            probe = LightningRpc(node.rpc_path)
            while True:
                try:
                    probe.getinfo()
                    break
                except (FileNotFoundError, ConnectionRefusedError, OSError):
                    time.sleep(0.005)
            launches.append(time.perf_counter() - t0)
            launch_cpu.append(cpu_seconds(node.proc.pid))
            if i < 4:
                node.stop()
        node = f.nodes[-1]
        time.sleep(0.5)
        mem = pss_mib(node.proc.pid)
        from pyln.client import LightningRpc

        rpc = LightningRpc(node.rpc_path)  # plain client: the tests' schema-checking wrapper costs time
        for _ in range(200):
            rpc.getinfo()
        with Timer() as t:
            for _ in range(N_CALLS):
                rpc.getinfo()
        print(f"getinfo (pyln-client LightningRpc, sequential): {rate(N_CALLS, t.elapsed)}")
        print(f"launch to getinfo answering: median {statistics.median(launches):.3f} s "
              f"(min {min(launches):.3f}, max {max(launches):.3f})")
        print(f"launch to getinfo answering, ampd's own CPU time (user+sys, counts less of other load): median "
              f"{statistics.median(launch_cpu):.3f} s (min {min(launch_cpu):.3f}, max {max(launch_cpu):.3f})")
        print(f"memory after start: {mem:.1f} MiB PSS (ampd, no plugins)")


if __name__ == "__main__":
    main()
