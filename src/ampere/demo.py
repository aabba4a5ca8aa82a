"""`make demo` / `make stop`: a local Ampere node with the example plugin, answering a plugin command.

Later issues grow this into the full regtest network (amp-chaind, two nodes, a channel, a payment).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PLUGIN = os.path.join(REPO, "contrib", "plugins", "helloworld.py")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _cli(ldir: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ampere.cli.amp_cli", f"--lightning-dir={ldir}", "--regtest", *args],
                          capture_output=True, text=True, env=_env(), timeout=60)


def start(base: str) -> int:
    stop(base, quiet=True)
    l1 = os.path.join(base, "l1")
    os.makedirs(l1, exist_ok=True)
    cmd = [sys.executable, "-m", "ampere.cli.ampd", f"--lightning-dir={l1}", "--network=regtest", "--daemon",
           "--disable-chain", f"--log-file={l1}/log", "--log-level=debug", f"--plugin={PLUGIN}", "--greeting=Hi"]
    # Not a pipe: the daemon's plugins inherit its stderr and would hold a pipe open forever.
    with open(os.path.join(l1, "startup.err"), "w") as err:
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, env=_env(), timeout=120)
    if p.returncode != 0:
        with open(os.path.join(l1, "startup.err")) as f:
            print(f.read(), file=sys.stderr)
        return 1
    info = json.loads(_cli(l1, "getinfo").stdout)
    print(f"ampd l1 is running: id {info['id']}, alias {info['alias']}")
    hello = _cli(l1, "hello", "demo")
    print(f"$ amp-cli --lightning-dir={l1} --regtest hello demo")
    print(hello.stdout.strip() or hello.stderr.strip())
    print("\nTry:")
    print(f"  alias l1-cli='{sys.executable} -m ampere.cli.amp_cli --lightning-dir={l1} --regtest'")
    print("  l1-cli help;  l1-cli -k plugin subcommand=list;  l1-cli hello you")
    print(f"  log: {l1}/log")
    print("Stop it with: make stop")
    return 0 if hello.returncode == 0 else 1


def stop(base: str, quiet: bool = False) -> int:
    for pidfile in glob.glob(os.path.join(base, "l*", "ampd-regtest.pid")):
        ldir = os.path.dirname(pidfile)
        _cli(ldir, "stop")
        for _ in range(100):
            if not os.path.exists(pidfile):
                break
            time.sleep(0.05)
        if os.path.exists(pidfile):
            try:
                with open(pidfile) as f:
                    os.kill(int(f.read()), 9)
            except (OSError, ValueError):
                pass
        if not quiet:
            print(f"stopped {ldir}")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(prog="ampere.demo")
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--dir", default="/tmp/ampere-demo")
    a = ap.parse_args()
    sys.exit(start(a.dir) if a.action == "start" else stop(a.dir))


if __name__ == "__main__":
    main()
