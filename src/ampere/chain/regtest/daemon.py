"""amp-chaind: a bitcoind-compatible regtest node validated by libbitcoinkernel.

    amp-chaind -datadir=D [-rpcport=N] [-rpcbind=ADDR] [-rpcuser=U -rpcpassword=P] [-daemon]
               [-fallbackfee=BTC/kvB] [-conf=FILE] [-printtoconsole]

Options take one or two dashes, as bitcoind's; `-foo` alone means `-foo=1`, `-nofoo` means
`-foo=0`. A bitcoin.conf in the datadir (or -conf) is read too (command line wins). Options
bitcoind has but amp-chaind does not need (-txindex, -server, -debug, ...) are accepted and ignored.
Without -rpcpassword, a cookie `__cookie__:<hex>` is written to <datadir>/regtest/.cookie.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import signal
import sys

from ampere.chain.bitcoin_conf import conf_path, read_bitcoin_conf
from ampere.chain.regtest import kernel as kernel_mod
from ampere.chain.regtest import methods
from ampere.chain.regtest.jsonfmt import amount_to_sat
from ampere.chain.regtest.node import ChainNode
from ampere.chain.regtest.server import RpcServer
from ampere.chain.regtest.wallet import Wallet

log = logging.getLogger("amp-chaind")

DEFAULT_RPC_PORT = 18443
DEFAULT_FALLBACK_FEE = "0.0002"  # BTC/kvB = 20 sat/vB
KNOWN_OPTIONS = {
    "datadir", "conf", "rpcport", "rpcbind", "rpcuser", "rpcpassword", "rpccookiefile", "daemon", "fallbackfee",
    "printtoconsole", "regtest", "chain", "testnet", "testnet4", "signet", "pid", "help", "version",
    "persistmempool",
}
# Also accepted without effect: what pyln-testing passes to bitcoind (-nowallet: amp-chaind's one wallet is
# always there; -debug=...: amp-chaind's log has no categories).
IGNORED_OPTIONS = {
    "server", "txindex", "debug", "rpcallowip", "rpcthreads", "rpcworkqueue", "listen", "port", "bind",
    "discover", "dnsseed", "fixedseeds", "upnp", "natpmp", "logtimestamps", "logtimemicros", "zmqpubrawblock",
    "zmqpubrawtx", "zmqpubhashblock", "zmqpubhashtx", "addresstype", "changetype", "wallet", "walletdir",
    "deprecatedrpc", "acceptnonstdtxn", "minrelaytxfee", "blockmintxfee", "maxtxfee",
    "datacarriersize", "mempoolfullrbf", "peerblockfilters", "blockfilterindex", "connect", "onlynet",
    "keypool", "disablewallet", "daemonwait", "shrinkdebugfile", "rest", "rpcdoccheck", "debugexclude",
    "rpcservertimeout", "whitelist", "maxconnections", "dbcache", "prune", "reindex", "blocksonly",
}


class OptionError(Exception):
    pass


def parse_args(argv: list[str]) -> dict[str, list[str]]:
    opts: dict[str, list[str]] = {}
    for arg in argv:
        if not arg.startswith("-") or arg == "-":
            raise OptionError(f"Error: Command line contains unexpected token '{arg}', see amp-chaind -h for a list "
                              "of options.")
        key, eq, value = arg.lstrip("-").partition("=")
        if not eq:
            value = "1"
        if key.startswith("no") and key[2:] in KNOWN_OPTIONS | IGNORED_OPTIONS:
            key, value = key[2:], "0" if value in ("1", "") else "1"
        opts.setdefault(key, []).append(value)
    return opts


class Options:
    def __init__(self, argv: list[str]):
        cli = parse_args(argv)
        self.help = "help" in cli or "h" in cli or "?" in cli
        self.version = "version" in cli
        datadir = os.path.expanduser(cli.get("datadir", ["~/.bitcoin"])[-1])
        merged = read_bitcoin_conf(conf_path(datadir, cli["conf"][-1] if "conf" in cli else None))
        merged.update(cli)
        self.raw = merged
        for key in merged:
            if key not in KNOWN_OPTIONS | IGNORED_OPTIONS | {"h", "?"}:
                print(f"Warning: ignoring unknown option -{key}", file=sys.stderr)
        for net in ("testnet", "testnet4", "signet"):
            if self._bool(net):
                raise OptionError("Error: amp-chaind only runs regtest")
        chain = self._get("chain", "regtest")
        if chain != "regtest":
            raise OptionError("Error: amp-chaind only runs regtest (-chain=regtest)")
        self.datadir = os.path.abspath(os.path.expanduser(self._get("datadir", "~/.bitcoin")))
        self.regtest_dir = os.path.join(self.datadir, "regtest")
        try:
            self.rpcport = int(self._get("rpcport", str(DEFAULT_RPC_PORT)))
        except ValueError:
            raise OptionError("Error: Invalid port specified in -rpcport") from None
        self.rpcbind = merged.get("rpcbind", ["127.0.0.1"])
        self.rpcuser = self._get("rpcuser", "")
        self.rpcpassword = self._get("rpcpassword", "")
        cookie = self._get("rpccookiefile", ".cookie")
        self.cookie_path = cookie if os.path.isabs(cookie) else os.path.join(self.regtest_dir, cookie)
        self.daemon = self._bool("daemon")
        self.printtoconsole = self._bool("printtoconsole")
        # bitcoind's -persistmempool (default 1): save the mempool at shutdown and load it at start.  0 starts
        # with an empty mempool, as a node would that never saw what was relayed before (a test's way to keep a
        # transaction out of sight until it is mined) -- and leaves mempool.json as it was.
        self.persist_mempool = self._get("persistmempool", "1") not in ("0", "", "false")
        try:
            self.fallback_fee_sat_kvb = amount_to_sat(self._get("fallbackfee", DEFAULT_FALLBACK_FEE))
        except ValueError:
            raise OptionError("Error: Invalid amount for -fallbackfee") from None
        pid = self._get("pid", "bitcoind.pid")
        self.pid_path = pid if os.path.isabs(pid) else os.path.join(self.regtest_dir, pid)

    def _get(self, key: str, default: str) -> str:
        return self.raw.get(key, [default])[-1]

    def _bool(self, key: str) -> bool:
        return self.raw.get(key, ["0"])[-1] not in ("0", "", "false")


def _setup_logging(opts: Options) -> None:
    os.makedirs(opts.regtest_dir, exist_ok=True)
    root = logging.getLogger("amp-chaind")
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    fh = logging.FileHandler(os.path.join(opts.regtest_dir, "debug.log"))
    fh.setFormatter(fmt)
    root.addHandler(fh)
    if opts.printtoconsole and not opts.daemon:
        sh = logging.StreamHandler(sys.stdout)
        sh.setFormatter(fmt)
        root.addHandler(sh)


def _lock_datadir(opts: Options):
    os.makedirs(opts.regtest_dir, exist_ok=True)
    f = open(os.path.join(opts.regtest_dir, ".lock"), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise OptionError(f"Error: Cannot obtain a lock on data directory {opts.regtest_dir}. amp-chaind is "
                          "probably already running.") from None
    return f


async def _serve(opts: Options, node: ChainNode, wallet: Wallet, ready_fd: int | None) -> None:
    loop = asyncio.get_running_loop()
    stop_event = asyncio.Event()

    def request_stop() -> None:
        loop.call_soon_threadsafe(stop_event.set)

    ctx = methods.Context(node=node, wallet=wallet, fallback_fee_sat_kvb=opts.fallback_fee_sat_kvb,
                          request_stop=request_stop)
    if opts.rpcpassword:
        user, password = opts.rpcuser, opts.rpcpassword
    else:
        user, password = "__cookie__", secrets.token_hex(32)
    server = RpcServer(ctx, user, password)
    for host in opts.rpcbind:
        host, _, port = host.partition(":") if host.count(":") == 1 else (host, "", "")
        await server.start(host, int(port) if port else opts.rpcport)
    if not opts.rpcpassword:
        tmp = opts.cookie_path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{user}:{password}")
        os.replace(tmp, opts.cookie_path)
    with open(opts.pid_path, "w") as f:
        f.write(f"{os.getpid()}\n")
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    log.info("amp-chaind ready: RPC on %s port %d, chain height %d", ",".join(opts.rpcbind), opts.rpcport,
             node.tip_height())
    log.info("init message: Done loading")  # bitcoind's words: tools wait for "Done loading"
    if ready_fd is not None:
        os.write(ready_fd, b"ok\n")
        os.close(ready_fd)
    await stop_event.wait()
    log.info("Shutdown: In progress...")
    server.stopping.set()
    await asyncio.sleep(0.05)  # let the reply to `stop` go out
    await server.close()
    await server.run_in_engine(node.close)
    server.executor.shutdown(wait=True)
    for path in (opts.cookie_path, opts.pid_path):
        if not opts.rpcpassword or path == opts.pid_path:
            try:
                os.unlink(path)
            except OSError:
                pass
    log.info("Shutdown: done")


def run(opts: Options, ready_fd: int | None = None) -> int:
    _setup_logging(opts)
    lock = _lock_datadir(opts)
    try:
        kernel_log = logging.getLogger("amp-chaind.kernel")
        kernel_mod.install_kernel_logging(lambda m: kernel_log.debug(m.rstrip()))
        node = ChainNode(opts.regtest_dir, persist_mempool=opts.persist_mempool)
        wallet = Wallet(node)
        asyncio.run(_serve(opts, node, wallet, ready_fd))
    finally:
        lock.close()
    return 0


def _daemonize(opts: Options) -> int:
    """Fork; the parent returns once the child's RPC listens (exit 0) or it failed (exit 1)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(w)
        os.waitpid(pid, 0)  # the intermediate child exits at once (double fork: init adopts the daemon)
        data = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            data += chunk
        os.close(r)
        if data.startswith(b"ok"):
            return 0
        msg = data.decode(errors="replace").strip() or "amp-chaind failed to start (see debug.log)"
        print(msg, file=sys.stderr)
        return 1
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        code = run(opts, ready_fd=w)
    except OptionError as e:
        os.write(w, (str(e) + "\n").encode())
        code = 1
    except Exception as e:
        try:
            os.write(w, f"Error: {e}\n".encode())
        except OSError:
            pass
        code = 1
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = Options(argv)
    except OptionError as e:
        print(e, file=sys.stderr)
        return 1
    if opts.help:
        print(__doc__.strip())
        return 0
    if opts.version:
        print(f"amp-chaind (Bitcoin Core RPC compatible, version {methods.SUBVERSION.strip('/')})")
        return 0
    if not os.path.isdir(opts.datadir):
        print(f'Error: Specified data directory "{opts.datadir}" does not exist.', file=sys.stderr)
        return 1
    if opts.daemon:
        return _daemonize(opts)
    try:
        return run(opts)
    except OptionError as e:
        print(e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
