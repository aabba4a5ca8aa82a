"""ampd: the node.  One asyncio event loop owns everything.

Start-up follows lightningd's order (lightningd/lightningd.c), because plugins and tools depend on it:
  1. options: early scan of the command line and config files (lightning-dir, network, plugins);
  2. plugins are started and answer `getmanifest`; their options join the option table;
  3. every option is checked (an unknown or malformed one is an error naming it);
  4. pid file, `hsm_secret` and node key, database;
  5. the JSON-RPC socket listens; plugins get `init`;
  6. "Server started with public key ..." is logged (tools wait for that line).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from ampere import VERSION_STRING
from ampere.config import ConfigError, Entry, Layout, Options, early_scan
from ampere.log import Logger, parse_log_level
from ampere.rpc import commands as _commands  # noqa: F401  (registers the built-in commands)
from ampere.node.errors import DomainError, Reason
from ampere.rpc.dispatch import Dispatcher
from ampere.rpc.errors import cln_code, to_rpc_error
from ampere.rpc.server import RpcConnection, RpcServer
from ampere.store.dsn import DsnError, parse_wallet_dsn
from ampere.store.store import Store
from ampere.node.app import features as node_features
from ampere.node.signer.hsm_secret import default_alias
from ampere.node.signer.setup import make_signer
from ampere.node.signer.signer import Signer
from ampere.node.app.options import builtin_options, network_defaults

if TYPE_CHECKING:  # the components' types, for the declarations on Node (imported at start-up, not here)
    from ampere.node.channels.announce import ChannelAnnouncer
    from ampere.node.channels.manager import ChannelManager
    from ampere.node.commando.server import Commando
    from ampere.node.gossip.manager import GossipManager
    from ampere.node.net.onion_messages import OnionMessenger
    from ampere.node.net.peers import PeerManager
    from ampere.node.onchain.chainwatch import ChainWatcher
    from ampere.node.onchain.resolver import OnchainResolver
    from ampere.node.onchain.wallet import Wallet
    from ampere.node.payments.invoices import InvoiceRegistry
    from ampere.node.payments.offers import OffersService
    from ampere.node.payments.pay import Payer
    from ampere.node.payments.receive import Receiver
    from ampere.node.payments.sendpay import PaymentEngine
    from ampere.node.payments.switch import Switch
    from ampere.node.app.plugin_setup import NodePluginHost


# A bookkeeper must see every movement: these wait for the plugins' `init` instead of being dropped.
_HELD_UNTIL_INIT = frozenset({"coin_movement", "balance_snapshot"})

class Node:
    def __init__(self, layout: Layout, options: Options, log: Logger) -> None:
        self.layout = layout
        self.options = options
        self.log = log
        self.lightning_dir = layout.lightning_dir
        self.network = layout.network
        self.netdir = layout.netdir
        rpc_file = options.get("rpc-file")
        self.rpc_path = rpc_file if os.path.isabs(rpc_file) else os.path.join(self.netdir, rpc_file)
        self.started_at = time.time()
        # Ledger notifications emitted during start-up (the wallet and the on-chain resolver catch up with the chain
        # before plugins get `init`, which is when they start receiving): held until then, not lost.
        self._held: list[tuple[str, dict]] | None = []
        self.stopping = asyncio.Event()
        self.exit_code = 0
        # Every secret of the node (ampere.node.signer): in-process from hsm_secret, or a separate signer process.
        self.signer: Signer | None = None
        self.node_id = b""
        self.alias = ""
        self.color = ""
        # ---- the components, each built once by `start` (in `_build_components`, or at its step for those
        # that need the chain or run after plugins' init) and handed this node as its typed service directory.
        # None means "not built": before start, after a failed start, or absent by configuration.
        self.store: Store | None = None
        self.rpc_server: RpcServer | None = None
        self.rpc = Dispatcher(self)                         # JSON-RPC dispatch and the rpc_command hook
        self.plugins: NodePluginHost | None = None          # plugin_setup.setup_plugins
        self.chain: ChainWatcher | None = None              # chain_setup.start_chain (None with --disable-chain)
        self.wallet: Wallet | None = None                   # chain_setup.start_chain (None with --disable-chain)
        self.onchain: OnchainResolver | None = None         # None with --disable-chain
        self.channel_manager: ChannelManager | None = None
        self.invoices: InvoiceRegistry | None = None
        self.payments: PaymentEngine | None = None          # sendpay
        self.payer: Payer | None = None                     # pay
        self.receiver: Receiver | None = None               # incoming HTLCs at the final hop
        self.switch: Switch | None = None                   # forwarding
        self.onion_messenger: OnionMessenger | None = None
        self.offers: OffersService | None = None
        self.peer_manager: PeerManager | None = None        # built after plugins' init, as connectd starts last
        self.commando: Commando | None = None
        self.gossip: GossipManager | None = None
        self.channel_announcer: ChannelAnnouncer | None = None
        self.blockheight = 0
        # getinfo warnings, e.g. {"warning_bitcoind_sync": "..."}.
        self.warnings: dict[str, str] = {}
        self.pid_file: str | None = None
        self.config_files: list[str] = []
        self.hsm_passphrase: str | None = None  # --hsm-passphrase: read from the terminal/stdin at start
        # State of two RPC areas, loaded on first use by their commands: the rune master key
        # (rpc/commands/runes.py) and askrene's layers (rpc/commands/askrene.py, persistent ones from the store).
        self.master_rune: Any = None
        self.askrene_layers: dict[str, dict] | None = None
        self.askrene_reservations: list[dict] = []  # askrene-reserve's, until unreserved (not persistent, as CLN)

    # ---- identity -------------------------------------------------------------------------
    def setup_identity(self) -> None:
        self.signer = make_signer(self.options, self.netdir, self.hsm_passphrase)
        self.node_id = self.signer.node_id
        self.alias = self.options.get("alias") or default_alias(
            self.node_id, VERSION_STRING if self.options.get("developer") else None)
        rgb = self.options.get("rgb")
        self.color = rgb.lower() if rgb else self.node_id[:3].hex()

    def current_height(self) -> int:
        """The chain tip as the chain watcher knows it (0 before the first block, or without a chain)."""
        height = self.chain.height if self.chain is not None else None
        return height if isinstance(height, int) else int(self.blockheight or 0)

    def option(self, name: str, default: Any = None) -> Any:
        """An option's value, or `default` when it is unset or unknown."""
        try:
            value = self.options.get(name)
        except KeyError:
            return default
        return default if value is None else value

    def feature_set(self) -> dict[str, str]:
        """Our features by place: the plugin host's once it exists (it started from these, and plugins may add
        or remove bits); before that, ours with --dev-force-features applied."""
        if self.plugins is not None:
            return self.plugins.features()
        fs = node_features.our_feature_set()
        forced = self.option("dev-force-features")
        if forced:
            fs = node_features.force_features(fs, forced)  # checked at start (start())
        return fs

    # ---- the RPC edge's vocabulary, for components that speak CLN's shapes (notifications, paystatus) -------
    @staticmethod
    def cln_code(reason: Reason | int) -> int:
        """CLN's error code for a domain reason (the one table is ampere.rpc.errors.CLN_CODES)."""
        return cln_code(reason)

    @staticmethod
    def error_json(e: DomainError) -> dict:
        """A domain error as CLN's JSON error object (sendpay_failure's payload, for one)."""
        return to_rpc_error(e).to_json()

    # ---- notifications ----------------------------------------------------------------------
    def notify(self, topic: str, payload: dict) -> None:
        """Emit a native notification to subscribed plugins (never blocks)."""
        if self._held is not None and topic in _HELD_UNTIL_INIT:
            self._held.append((topic, payload))
            return
        if self.plugins is not None:
            self.plugins.notify(topic, payload)

    def _release_held(self) -> None:
        held, self._held = self._held or [], None
        for topic, payload in held:
            self.notify(topic, payload)

    # ---- RPC: the dispatcher (ampere.rpc.dispatch) is the way in, for the socket and for components ----------
    def lookup(self, method: str) -> Any:
        return self.rpc.lookup(method)

    async def dispatch(self, req: Any, conn: RpcConnection | None) -> dict:
        return await self.rpc.dispatch(req, conn)

    async def call(self, method: str, params: Any = None) -> Any:
        """Call a command from inside the node (as a plugin would, hooks included). Raises RpcError."""
        return await self.rpc.call(method, params)

    # ---- lifecycle --------------------------------------------------------------------------
    def request_stop(self, code: int = 0) -> None:
        self.exit_code = code
        self.stopping.set()

    async def start(self, deferred: list[Entry]) -> None:
        """Everything up to "Server started"; raises ConfigError / RuntimeError on a fatal problem."""
        from ampere.node.app.plugin_setup import init_plugins, setup_plugins

        # The database first: a standby waits here for the lock, before any plugin or peer exists.
        await self._open_store()
        if self.option("dev-force-features"):
            try:
                self.feature_set()
            except node_features.ForcedFeaturesError as e:
                raise ConfigError(f"--dev-force-features={self.option('dev-force-features')}: {e}") from None
        await setup_plugins(self, deferred)
        from ampere.node.app.options import NO_EFFECT

        for name, _kind, _help, why in NO_EFFECT:
            if self.options.is_set(name):
                self.log.info("lightningd", f"--{name} has no effect in Ampere: {why}")
        self.setup_identity()
        self._build_components()
        assert self.invoices is not None and self.channel_manager is not None
        await self.invoices.start()
        # Channels are read before the chain watcher starts (their funding watches go in right after it).
        await self.channel_manager.load()
        if not self.options.get("disable-chain"):
            from ampere.node.app.chain_setup import start_chain

            await start_chain(self)
            # Synchronously, before the watcher can process a block: no funding confirmation or spend is missed.
            self.channel_manager.attach_chain()
            from ampere.node.onchain.resolver import OnchainResolver

            # Right after the chain watcher and wallet: it must listen before the first block is processed.
            self.onchain = OnchainResolver(self)
            await self.onchain.start()
            await self.channel_manager.restore_onchain()
        self.rpc_server = RpcServer(self.rpc_path, self.dispatch, lambda lvl, msg: self.log.log(lvl, "jsonrpc", msg),
                                    fast=self.rpc.start_fast)
        await self.rpc_server.start()
        await init_plugins(self)
        self._release_held()
        # Peers come last, as lightningd activates connectd last: plugins are ready for the hooks.
        from ampere.node.channels.announce import ChannelAnnouncer
        from ampere.node.commando.server import Commando
        from ampere.node.gossip.manager import GossipManager
        from ampere.node.net.peers import PeerManager

        self.peer_manager = PeerManager.for_node(self)
        self.commando = Commando(self)  # commands from peers, authorised by runes (CLN's commando)
        self.channel_manager.attach_peers(self.peer_manager)
        self.gossip = GossipManager.for_node(self)
        await self.gossip.start()  # its peer handlers are in place before any peer connects
        self.channel_announcer = ChannelAnnouncer(self)
        self.channel_announcer.start()  # announcement_signatures and our channel_updates (BOLT 7)
        await self._start_payments()  # sendpay parts and incoming HTLCs, before any peer speaks
        if self.onchain is not None:
            await self.onchain.kick()  # HTLC outcomes learned on-chain before the payment runtime listened
        assert self.onion_messenger is not None and self.offers is not None
        self.onion_messenger.start()  # onion messages (BOLT 4) and the offers answering them (BOLT 12)
        self.offers.start()
        await self.peer_manager.start()
        await self.channel_manager.start()
        self.gossip.peers_started()
        if self.chain is None:
            self.warnings.setdefault("warning_bitcoind_sync", "No chain backend is configured yet: on-chain features are unavailable.")
        self.log.info("lightningd", f"Server started with public key {self.node_id.hex()}, alias {self.alias} "
                      f"(color #{self.color}) and lightningd {VERSION_STRING}")

    def _build_components(self) -> None:
        """Build the components that need neither the chain nor peers, once, in dependency order.  They
        exist before the RPC socket listens (plugins' `init` may already call `invoice`, `pay`, `offer`);
        each is started later, at its step of `start`."""
        from ampere.node.channels.manager import ChannelManager
        from ampere.node.net.onion_messages import OnionMessenger
        from ampere.node.payments.invoices import InvoiceRegistry
        from ampere.node.payments.offers import OffersService
        from ampere.node.payments.pay import Payer
        from ampere.node.payments.receive import Receiver
        from ampere.node.payments.sendpay import PaymentEngine
        from ampere.node.payments.switch import Switch
        from ampere.plugins.approval import PluginApprover

        log = self.log
        self.invoices = InvoiceRegistry(self.store, notify=self.notify,
                                        log=lambda level, msg: log.log(level, "invoices", msg))
        self.channel_manager = ChannelManager(self)
        self.payments = PaymentEngine(self)
        self.payer = Payer(self)
        # The receiver asks the plugins (htlc_accepted, invoice_payment hooks) through its approval interface.
        self.receiver = Receiver(self, approver=PluginApprover(self.plugins) if self.plugins is not None else None)
        self.switch = Switch(self)
        self.onion_messenger = OnionMessenger(self)
        self.offers = OffersService(self)

    async def _start_payments(self) -> None:
        """Wire the payment engine, the receiver and the switch to the channel manager, then settle what a
        restart left open.  After the channels are loaded and BEFORE peers reconnect (no HTLC event is missed)."""
        assert self.payments is not None and self.receiver is not None and self.switch is not None
        await self.payments.start()
        self.receiver.start()
        await self.payments.reconcile()
        await self.switch.start()  # forwards: loaded and listening before the replay and any peer
        self.receiver.replay()

    def wallet_dsn(self):
        try:
            return parse_wallet_dsn(self.options.get("wallet"), os.path.join(self.netdir, "ampere.sqlite3"))
        except DsnError as e:
            raise ConfigError(str(e)) from None

    async def _open_store(self) -> None:
        """Open the `--wallet` database.  On PostgreSQL a second ampd waits here as a standby until the
        owner's lock is free; a stop request meanwhile ends the process cleanly (StandbyStopped)."""
        from ampere.store.factory import make_store

        dsn = self.wallet_dsn()
        loop = asyncio.get_running_loop()
        log = self.log

        def store_log(level: str, message: str) -> None:  # from the database thread
            loop.call_soon_threadsafe(log.log, level, "database", message)

        def fatal(message: str) -> None:  # from the database thread: stop now, say nothing more to anyone
            log.log("broken", "database", message)
            for out in log.outputs:
                try:
                    out.flush()
                except Exception:
                    pass
            os._exit(1)

        self.log.info("database", f"opening {dsn.redacted()}")
        self.store = make_store(dsn, log=store_log, on_fatal=fatal)
        opening = asyncio.ensure_future(self.store.open())
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({opening, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not opening.done():
            abort = getattr(self.store, "abort_open", None)
            if abort is not None:
                abort()
        try:
            await opening
        except Exception as e:
            from ampere.store.postgres import StoreClosed

            self.store = None
            if isinstance(e, StoreClosed) or self.stopping.is_set():
                raise StandbyStopped() from None
            raise RuntimeError(f"database {dsn.redacted()}: {e}") from None

    async def shutdown(self) -> None:
        """Stop every component in reverse order of start.  One failing step never skips the rest:
        the store must close and the pid file go, whatever else went wrong."""
        self.log.info("lightningd", "Shutting down")

        async def step(name: str, fn) -> None:
            try:
                result = fn()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as e:
                self.log.broken("lightningd", f"shutdown: {name} failed: {e!r}")

        if self.rpc_server is not None:
            await step("rpc", self.rpc_server.stop)
        if self.receiver is not None:
            await step("receiver", self.receiver.close)
        if self.switch is not None:
            await step("switch", self.switch.close)
        if self.payments is not None:
            await step("payments", self.payments.close)
        if self.channel_announcer is not None:
            await step("channel announcer", self.channel_announcer.stop)
        if self.channel_manager is not None:
            await step("channels", self.channel_manager.stop)
        if self.onion_messenger is not None:
            await step("onion messages", self.onion_messenger.close)
        if self.commando is not None:
            await step("commando", self.commando.stop)
        if self.peer_manager is not None:
            await step("peers", self.peer_manager.stop)
        if self.gossip is not None:
            await step("gossip", self.gossip.stop)
        if self.plugins is not None:
            await step("plugins", self.plugins.shutdown)
        if self.chain is not None:
            await step("chain", self.chain.stop)
        if self.invoices is not None:
            await step("invoices", self.invoices.close)
        if self.store is not None:
            await step("store", self.store.close)
        if self.pid_file:
            try:
                os.unlink(self.pid_file)
            except FileNotFoundError:
                pass
        self.log.close()

    async def run(self, deferred: list[Entry], ready_fd: int | None = None) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start(deferred)
        except StandbyStopped:
            self.log.info("lightningd", "Stopped while waiting for the database")
            await self.shutdown()
            return self.exit_code
        except (ConfigError, RuntimeError, OSError) as e:
            self.log.broken("lightningd", str(e))
            print(f"ampd: {e}", file=sys.stderr)
            await self.shutdown()
            return 1
        crash_after = self.options.get("dev-crash-after")
        if crash_after:
            def crash() -> None:
                # lightningd --dev-crash-after: "Crash when this many seconds have passed".
                self.log.broken("lightningd", f"--dev-crash-after={crash_after}: crashing now")
                self.log.close()
                os._exit(1)

            loop.call_later(crash_after, crash)
        if ready_fd is not None:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        await self.stopping.wait()
        await self.shutdown()
        return self.exit_code


class StandbyStopped(Exception):
    """Told to stop while waiting (as a standby) for the database."""


def _write_pid_file(path: str) -> None:
    try:
        with open(path) as f:
            old = int(f.read().strip() or 0)
        if old and old != os.getpid():
            try:
                os.kill(old, 0)
                raise RuntimeError(f"ampd already running (pid {old}, {path})")
            except ProcessLookupError:
                pass
    except (FileNotFoundError, ValueError):
        pass
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


def _setup_logging(options: Options) -> Logger:
    log = Logger(prefix=options.get("log-prefix") or "")
    levels = [parse_log_level(s) for s in options.get("log-level")]
    # A level without a subsystem filter sets the default; those with one apply to matching sources.
    log.set_levels(levels)
    files = options.get("log-file")
    if files:
        log.open_files(files)
    elif not options.get("daemon"):
        log.open_files(["-"])
    return log


def _daemonize() -> int:
    """Fork; the parent waits until the child's RPC answers (or it dies), then exits."""
    r, w = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(w)
        data = b""
        try:
            data = os.read(r, 1)
        finally:
            os.close(r)
        if data == b"1":
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) or 1)
    os.close(r)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    # stderr stays until start-up succeeds so that fatal messages reach the operator.
    return w


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options = Options()
    for spec in builtin_options():
        options.add(spec)
    try:
        layout = early_scan(argv, options.specs, "~/.ampere")
        network_defaults(options.specs, layout.network)
        known = [e for e in layout.entries if e.name in options.specs]
        deferred = [e for e in layout.entries if e.name not in options.specs]
        options.apply(known)
    except ConfigError as e:
        print(f"ampd: {e}", file=sys.stderr)
        return 1
    layout.entries = known
    if options.get("version"):
        print(VERSION_STRING)
        return 0
    if options.get("help"):
        from ampere.node.app.plugin_setup import print_help

        _absolute_plugin_paths(layout, deferred)
        return asyncio.run(print_help(layout, options, deferred))

    _absolute_plugin_paths(layout, deferred)
    passphrase = None
    if options.get("hsm-passphrase") or options.get("encrypted-hsm"):
        passphrase = _ask_hsm_passphrase(os.path.exists(os.path.join(layout.netdir, "hsm_secret")))
        if passphrase is None:
            return 1
    os.makedirs(layout.netdir, mode=0o700, exist_ok=True)
    os.chdir(layout.netdir)  # plugins run with the network directory as cwd, as in lightningd
    pid_file = options.get("pid-file") or os.path.join(layout.lightning_dir, f"ampd-{layout.network}.pid")
    ready_fd = _daemonize() if options.get("daemon") else None
    try:
        _write_pid_file(pid_file)
    except RuntimeError as e:
        print(f"ampd: {e}", file=sys.stderr)
        return 1
    policy_note = _apply_scheduling_policy(options.get("scheduling-policy"))
    log = _setup_logging(options)
    if policy_note is not None:
        log.unusual("lightningd", policy_note)
    node = Node(layout, options, log)
    node.hsm_passphrase = passphrase
    node.pid_file = pid_file
    node.config_files = _config_files(layout)
    code = _run_loop(node.run(deferred, ready_fd))
    return code


def _apply_scheduling_policy(policy: str) -> str | None:
    """--scheduling-policy=batch: SCHED_BATCH for the calling thread, so for every thread and child process started
    from it afterwards (the database thread, plugins). Such a thread, when woken (a peer's message, an fsync done),
    does not preempt the task running on its CPU: it waits for that task's time slice, or runs on an idle CPU at
    once as before. On 2 cores shared by eleven nodes (bench/profile_channels.py) every payer write woke a payee
    that took the CPU from the payer, the one stage each payment passes twice. Returns a note for the log when the
    policy could not be set (not Linux, or refused), else None."""
    if policy != "batch":
        return None
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is None:
        return "scheduling-policy=batch: not supported here; running under the policy ampd was started with"
    try:
        os.sched_setscheduler(0, batch, os.sched_param(0))
    except OSError as e:
        return f"scheduling-policy=batch: {e.strerror}; running under the policy ampd was started with"
    return None


# The cyclic collector's youngest generation is collected after this many net allocations of container objects
# (Python's default is 700).  A payer with 50 payments in flight holds ~2,000 young objects (coroutines, tuples,
# dicts) at any moment, nearly all alive and none of them cyclic garbage (~0.3 per payment is), so each collection
# of the default walks them all for nothing: 3.9-4.8% of the payer's CPU over ten channels, 0.7-1.2% at 7,000
# (docs/profile.md, "Session 14").  What the collector would free waits a few more milliseconds.
_GC_YOUNG_THRESHOLD = 7000


def _run_loop(coro) -> int:
    # Set here, for the daemon's process only: in-process tests and tools keep Python's default.
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    # uvloop (libuv) roughly halves the event loop's own cost per RPC call; plain asyncio is the
    # fallback and behaves the same.
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _ask_hsm_passphrase(exists: bool) -> str | None:
    """lightningd's --hsm-passphrase prompt (from the terminal, else a line of stdin); a new hsm_secret
    asks twice.  None (after saying why on stderr) when it cannot be had."""
    import getpass

    def read(prompt: str) -> str | None:
        if sys.stdin.isatty():
            try:
                return getpass.getpass(prompt + "\n")
            except (EOFError, KeyboardInterrupt):
                return None
        print(prompt, flush=True)
        line = sys.stdin.readline()
        return line.rstrip("\r\n") if line else None

    print("The hsm_secret requires a passphrase. In order to access it and start the node you must provide "
          "the passphrase.", flush=True)
    first = read("Enter hsm_secret passphrase:")
    if not first:
        print("ampd: HSM initialization failed: Failed to load hsm_secret: Passphrase required but not provided",
              file=sys.stderr)
        return None
    if not exists and read("Confirm hsm_secret passphrase:") != first:
        print("ampd: Passphrases do not match", file=sys.stderr)
        return None
    return first


def _absolute_plugin_paths(layout: Layout, deferred: list[Entry]) -> None:
    """Plugin paths given relative are relative to where ampd was started, as lightningd takes them:
    resolve them before ampd moves into the network directory."""
    cwd = os.getcwd()
    for e in layout.entries:
        if e.name in ("plugin", "plugin-dir", "important-plugin") and e.value and not os.path.isabs(e.value):
            e.value = os.path.join(cwd, os.path.expanduser(e.value))


def _config_files(layout: Layout) -> list[str]:
    if layout.conf:
        return [layout.conf]
    return [os.path.join(layout.lightning_dir, "config"), os.path.join(layout.netdir, "config")]
