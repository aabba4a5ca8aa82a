"""ampd's built-in options, with lightningd's names and meanings.

Options that later parts of the node use (chain backend, peers, fees) are declared here too, so a
config file written for them is accepted from the start.
"""

from __future__ import annotations

import re

from ampere.config import NETWORKS, OptionSpec
from ampere.log import parse_log_level
from ampere.store.dsn import redact


def _rgb(value: str) -> None:
    if not re.fullmatch(r"[0-9a-fA-F]{6}", value):
        raise ValueError("rgb must be 6 hex digits")


def _alias(value: str) -> None:
    if len(value.encode()) > 32:
        raise ValueError("alias is at most 32 bytes")


def _network(value: str) -> None:
    if value not in NETWORKS and value != "mainnet":
        raise ValueError(f"Unknown network name '{value}'")


def _log_level(value: str) -> None:
    parse_log_level(value)


def _scheduling_policy(value: str) -> None:
    if value not in ("batch", "normal"):
        raise ValueError("scheduling-policy is batch or normal")


def _not_negative(value: int) -> None:
    if value < 0:
        raise ValueError("must not be negative")


def _positive(value: int) -> None:
    if value <= 0:
        raise ValueError("must be positive")


def builtin_options() -> list[OptionSpec]:
    S, I, B, F = "string", "int", "bool", "flag"
    return [
        OptionSpec("lightning-dir", S, "Set base directory: network-specific subdirectory is under here", "~/.ampere", early=True),
        OptionSpec("network", S, "Select the network (bitcoin, testnet, testnet4, signet, regtest)", "bitcoin", early=True, validate=_network),
        OptionSpec("mainnet", F, "Alias for --network=bitcoin", early=True),
        OptionSpec("testnet", F, "Alias for --network=testnet", early=True),
        OptionSpec("testnet4", F, "Alias for --network=testnet4", early=True),
        OptionSpec("signet", F, "Alias for --network=signet", early=True),
        OptionSpec("regtest", F, "Alias for --network=regtest", early=True),
        OptionSpec("conf", S, "Specify configuration file (disables the default config files)", early=True),
        OptionSpec("help", F, "Print this message.", early=True),
        OptionSpec("version", F, "Print version and exit", early=True),
        OptionSpec("daemon", F, "Run in the background, suppress stdout/stderr", early=True),
        OptionSpec("pid-file", S, "Specify pid file (default <lightning-dir>/ampd-<network>.pid)", early=True),
        OptionSpec("rpc-file", S, "Set JSON-RPC socket (or /dev/tty)", "lightning-rpc", early=True),
        OptionSpec("rpc-file-mode", S, "Set JSON-RPC socket file mode (as a 4-digit octal number)", "0600"),
        OptionSpec("log-level", S, "log level (io, debug, info, unusual, broken) [:prefix]", multi=True, early=True, validate=_log_level, list_last=True),
        OptionSpec("log-file", S, "Log to file (- for stdout); may be given several times", multi=True, early=True),
        OptionSpec("log-prefix", S, "log prefix", "", early=True),
        OptionSpec("log-timestamps", B, "prefix log messages with timestamp", True),
        OptionSpec("alias", S, "Up to 32-byte alias for node", validate=_alias),
        OptionSpec("rgb", S, "RRGGBB hex color for node", validate=_rgb),
        OptionSpec("allow-deprecated-apis", B, "Enable deprecated options, JSONRPC commands, fields, etc.", True, early=True),
        OptionSpec("developer", F, "Enable developer commands and options", early=True),
        OptionSpec("plugin", S, "Add a plugin to be run (can be used multiple times)", multi=True, early=True),
        OptionSpec("plugin-dir", S, "Add a directory to load plugins from (can be used multiple times)", multi=True, early=True),
        OptionSpec("clear-plugins", F, "Remove all plugins added before this option", early=True),
        OptionSpec("disable-plugin", S, "Disable a particular plugin by filename/name", multi=True, early=True),
        OptionSpec("important-plugin", S, "Add an important plugin to be run (can be used multiple times). Die if the plugin dies.", multi=True, early=True),
        OptionSpec("plugin-timeout", I, "Seconds a plugin may take to answer getmanifest, and then init", 120, early=True, validate=_positive),
        OptionSpec("hook-timeout", S, "HOOK:SECONDS[:ANSWER] time limit for one plugin's answer to a hook, and the answer used when it expires: continue (default), fail (htlc_accepted), reject (invoice_payment, openchannel*), disconnect (peer_connected), error (rpc_command), or a JSON result object; may be repeated; off by default", multi=True, early=True),
        OptionSpec("wallet", S, "Location of the wallet database (sqlite3:///path, sqlite3:///main:/backup or "
                   "postgres://user:pass@host:port/dbname)", display=redact),
        # Chain backend (bitcoind's JSON-RPC; amp-chaind speaks the same).
        OptionSpec("bitcoin-rpcconnect", S, "bitcoind RPC host to connect to", "127.0.0.1"),
        OptionSpec("bitcoin-rpcport", I, "bitcoind RPC port"),
        OptionSpec("bitcoin-rpcuser", S, "bitcoind RPC username"),
        OptionSpec("bitcoin-rpcpassword", "string-conceal", "bitcoind RPC password"),
        OptionSpec("bitcoin-datadir", S, "bitcoind data dir (for the RPC cookie)"),
        OptionSpec("bitcoin-retry-timeout", I, "how long to keep retrying to contact bitcoind before fatally exiting", 60),
        OptionSpec("bitcoin-poll", I, "seconds between polls for new blocks (default 30; 1 on regtest)"),
        OptionSpec("disable-chain", F, "run without a chain backend (RPC only; for tests and tools)"),
        # Peers.
        OptionSpec("addr", S, "Set an IP address (v4 or v6) or unix socket path to listen on and announce", multi=True),
        OptionSpec("bind-addr", S, "Set an IP address (v4 or v6) or unix socket path to listen on, but not announce", multi=True),
        OptionSpec("announce-addr", S, "Set an IP address (v4 or v6) to announce, but not listen on", multi=True),
        OptionSpec("autolisten", B, "If true, listen on default port and announce if it seems to be a public interface", True),
        OptionSpec("proxy", S, "Set a socks v5 proxy IP address and port"),
        OptionSpec("always-use-proxy", B, "Use the proxy always", False),
        OptionSpec("disable-dns", F, "Disable DNS lookups of peers"),
        OptionSpec("dev-handshake-timeout", I, "Seconds a peer has to finish the BOLT 8 handshake and send init", 60, validate=_positive),
        OptionSpec("dev-allow-localhost", F, "Announce and report (remote_addr) localhost and private addresses (tests)"),
        # Channels and fees.
        OptionSpec("fee-base", I, "Millisatoshi minimum to charge for HTLC", 1),
        OptionSpec("fee-per-satoshi", I, "Microsatoshi fee for every satoshi in HTLC", 10),
        OptionSpec("cltv-delta", I, "Number of blocks for cltv_expiry_delta", 34),
        OptionSpec("cltv-final", I, "Number of blocks for final cltv_expiry", 18),
        # Default set by network in network_defaults(): CLN's mainnet_config says 3, testnet_config 1.
        OptionSpec("funding-confirms", I, "Confirmations required for funding transaction", 3),
        OptionSpec("watchtime-blocks", I, "Blocks before peer can unilaterally spend funds", 144),
        OptionSpec("max-locktime-blocks", I, "Maximum blocks funds may be locked for", 2016),
        OptionSpec("ignore-fee-limits", B, "(DANGEROUS) allow peer to set any feerate", False),
        OptionSpec("rescan", I, "Number of blocks to rescan from the current head", 15),
        OptionSpec("large-channels", F, "Allow channels larger than 0.16777215 BTC (now default)"),
        # CLN waits 10 ms; 1 ms still batches updates that arrive together, and measured 66 -> 45 ms per direct
        # payment with the same throughput at 50 in flight (bench/bench_payments.py).
        OptionSpec("commit-time", I, "Time after changes before sending out COMMIT (milliseconds)", 1),
        OptionSpec("max-concurrent-htlcs", I, "Number of HTLCs one channel can handle concurrently. Should be between 1 and 483", 30),
        # CLN's reserve for fee bumping anchor channels' closes (withdraw/fundchannel keep it in the wallet).
        OptionSpec("min-emergency-msat", "msat", "Amount to leave in wallet for spending anchor closes", 25_000_000),
        OptionSpec("htlc-minimum-msat", "msat", "The default minimal value an HTLC must carry in order to be forwardable for new channels", 0),
        OptionSpec("htlc-maximum-msat", "msat", "The default maximal value an HTLC must carry in order to be forwardable for new channel (default: the channel capacity)"),
        OptionSpec("min-capacity-sat", I, "Minimum capacity in satoshis for accepting channels", 10000, dynamic=True),
        # Ampere's own. SCHED_BATCH: on a host with no idle CPU a woken thread waits for the running task's slice
        # instead of preempting it (Linux; docs/profile.md "Session 15": ten channels on 2 cores, 7 alternated pairs,
        # +11% payments/s and 12% less CPU per payment). With a CPU idle, a woken thread runs at once either way.
        OptionSpec("scheduling-policy", S, "Linux CPU scheduling policy of ampd's threads and of the plugins it starts: "
                   "batch (woken, they wait for the running task's time slice instead of preempting it: fewer "
                   "preemptions and more throughput on a busy host) or normal (leave the policy ampd was started "
                   "with)", "batch", early=True, validate=_scheduling_policy),
        # Ampere's own: plugins/answer_poll.py (docs/profile.md "Session 20": a trivial pyln-client method 1.19x ->
        # 1.25-1.38x CLN's rate, a pass-through rpc_command hook 1.32x -> 1.56-1.60x, on 2 cores).
        OptionSpec("plugin-answer-poll-us", I, "Microseconds ampd keeps its event loop turning, instead of sleeping, "
                   "for the answer of a plugin that usually answers that quickly, when a CPU is idle (0: always "
                   "sleep)", 250, validate=_not_negative),
        # Ampere's own: the node's keys in a separate process (python -m ampere.node.signer.server), as CLN's hsmd.
        OptionSpec("signer-socket", S, "Unix socket of an Ampere signer process holding the keys (hsm_secret is then not read)"),
        OptionSpec("dev-crash-before", S, "(developer) MESSAGE[:N], broadcast[:N], onchain[:N] or gossip_cache[:N]: kill -9 ourselves right before sending the Nth (default 1st) such message, channel broadcast or on-chain resolution broadcast, or renaming the Nth graph cache written into place (crash tests)"),
        OptionSpec("dev-disable-commit-after", I, "(developer) Disable commit timer after this many commits (per channel; dev-reenable-commit turns it back on)", -1),
        OptionSpec("dev-autofulfill", F, "(developer) fulfill incoming HTLCs whose onion starts with the payment preimage (tests, benchmarks)"),
        OptionSpec("dev-mpp-timeout", I, "Seconds an incomplete multi-part payment is held before its parts fail with mpp_timeout (tests)", 60, validate=_positive),
        OptionSpec("dev-onion-message-rate", I, "Onion messages accepted per second from one peer, and the burst (default 50)", 50, validate=_positive),
        OptionSpec("dev-fast-gossip", F, "Make gossip broadcast 1 second, etc (tests)"),
        OptionSpec("dev-fast-gossip-prune", F, "Make gossip pruning 120 seconds (tests)"),
        OptionSpec("dev-bitcoind-poll", I, "Time between polling for new transactions (tests)"),
        # Options pyln-testing passes to every node, and ones its users commonly pass, that Ampere implements.
        OptionSpec("dev-no-reconnect", F, "Disable automatic reconnect-attempts by this node, but accept incoming"),
        OptionSpec("dev-crash-after", I, "Crash when this many seconds have passed"),
        OptionSpec("dev-force-privkey", S, "Force HSM to use this as node private key"),
        OptionSpec("dev-force-bip32-seed", S, "Force HSM to use this as bip32 seed"),
        OptionSpec("dev-force-channel-secrets", S, "Force HSM to use these for all per-channel secrets"),
        OptionSpec("dev-force-tmp-channel-id", S, "Force the temporary channel id, instead of random"),
        OptionSpec("dev-force-features", S, "Force the init/globalinit/node_announce/channel/bolt11/b12offer/"
                                            "b12invreq/b12inv features, each terminated by /, OR +/-<single_bit_num>"),
        OptionSpec("hsm-passphrase", F, "Prompt for passphrase for encrypted hsm_secret (replaces --encrypted-hsm)"),
        OptionSpec("encrypted-hsm", F, "Prompt for passphrase for encrypted hsm_secret (deprecated: --hsm-passphrase)"),
        OptionSpec("dev-save-plugin-io", S, "Directory to record plugin hook and notification JSON into"),
        OptionSpec("dev-disconnect", S, "File containing disconnection points (lightningd's format: -, +, 0 or x, "
                                        "then WIRE_NAME, optionally *N)"),
    ] + [OptionSpec(name, kind, f"{help_text} (no effect in Ampere: {why})")
         for name, kind, help_text, why in NO_EFFECT]


# Accepted so that configurations and test frameworks written for lightningd run unchanged, but they change
# nothing in Ampere; ampd logs one line per option given, saying so (README: "Options with no effect").
NO_EFFECT: list[tuple[str, str, str, str]] = [
    ("dev-fail-on-subdaemon-fail", "flag", "Fail if a subdaemon fails", "Ampere has no subdaemons"),
    ("dev-no-version-checks", "flag", "Skip calling subdaemons with --version on startup", "Ampere has no subdaemons"),
    ("dev-no-plugin-checksum", "flag", "Don't checksum plugins to detect changes", "plugins are not checksummed"),
    ("dev-debugger", "string", "Invoke gdb at start of a subdaemon", "Ampere has no subdaemons"),
    ("dev-debug-self", "flag", "Fire up a terminal window with a debugger in it on startup", "not supported"),
    ("autoconnect-seeker-peers", "int", "Seeker autoconnects to maintain this minimum number of gossip peers",
     "Ampere never connects to peers just for gossip"),
    ("experimental-bwatch", "flag", "Use the bwatch block watcher", "ampd's chain watcher polls bitcoind itself"),
    ("bwatch-poll-interval", "int", "Milliseconds between bwatch polls", "ampd's chain watcher polls bitcoind itself"),
    ("grpc-port", "int", "Port for the cln-grpc plugin", "Ampere has no gRPC interface"),
    ("dev-no-htlc-timeout", "flag", "Don't kill channeld if HTLCs not confirmed within 30 seconds",
     "Ampere has no such timeout"),
    ("dev-no-fake-fees", "flag", "Don't add fake fees to routes", "Ampere's pay never adds fake fees"),
    ("dev-ignore-ibd", "bool", "Ignore that bitcoind claims to be in IBD", "ampd does not wait for IBD"),
    ("xpay-handle-pay", "bool", "Make xpay take over pay commands", "Ampere's pay is built in"),
    ("database-upgrade", "bool", "Set to true to allow database upgrades even on non-final releases",
     "Ampere's store always upgrades"),
    ("commit-feerate-offset", "int", "Additional feerate per kw to apply to feerate updates as the channel opener",
     "not implemented"),
    ("max-dust-htlc-exposure-msat", "msat", "Max HTLC amount that can be trimmed", "not implemented"),
    ("wumbo", "flag", "Allow channels larger than 0.16777215 BTC", "large channels are always allowed"),
    ("invoices-onchain-fallback", "flag", "Include an onchain address in invoices", "not implemented"),
    ("autoclean-cycle", "int", "Perform cleanup of expired invoices every given seconds", "Ampere has no autoclean"),
    ("experimental-dual-fund", "flag", "Enable dual-funded channels", "dual funding is not implemented"),
]


def network_defaults(specs: dict, network: str) -> None:
    """Defaults that depend on the network, as lightningd copies mainnet_config or testnet_config
    (lightningd/options.c) once it knows the network."""
    if network != "bitcoin":
        # testnet_config: "We're fairly trusting, under normal circumstances." anchor_confirms = 1.
        specs["funding-confirms"].default = 1
