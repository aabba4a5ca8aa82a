"""`amp-cli`: lightning-cli's interface to an Ampere node.

Exit codes, as lightning-cli: 0 success, 1 the node returned an error, 2 cannot talk to the node,
3 usage error.  Parameters: positional words make a JSON array; with -k (or when the first word
contains '='), `key=value` words make an object.  A word that is a JSON literal (a number without a
leading zero, true/false/null, or something in {}, [] or "") is passed as JSON, anything else as a
string.  `notifications` is enabled first so plugins' `message`/`progress` reach stderr.
"""


# Start-up time matters (scripts call amp-cli in loops): only light modules here, no `typing`, no
# ampere.config, not even `json` or `socket` (they pull in re, enum, selectors...: half the start-up
# CPU): cli_json and the C `_socket` do the same work (tests/unit/test_cli_imports.py keeps it so).
# Annotations are never evaluated.
import _socket
import os
import sys

from .. import VERSION_STRING
from .. import cli_json as json
from ..configfile import NETWORK_ALIASES, NETWORKS, ConfigError, read_config_file

USAGE = """Usage: amp-cli [options] <command> [<params>...]
  --lightning-dir=DIR   base directory (default ~/.ampere)
  --network=NAME        bitcoin, testnet, testnet4, signet, regtest (also --regtest etc.)
  --conf=PATH           config file to read instead of the default ones
  --rpc-file=PATH       RPC socket (relative to the network directory, or absolute)
  -k, --keywords        parameters are key=value
  -o, --order           parameters are positional
  -H, --human-readable  human-readable output
  -F, --flat            flat key=value output
  -R, --raw             raw JSON output
  -J, --json            JSON output (default)
  -N, --notifications=LEVEL  show plugin notifications at LEVEL or above, or 'none' (default info)
  -l, --filter=JSON     filter the result
  -h, --help            this text;   -V, --version  print version
"""

EXIT_OK, EXIT_ERROR, EXIT_TALK, EXIT_USAGE = 0, 1, 2, 3
_LEVELS = ("io", "trace", "debug", "info", "unusual", "broken")


class UsageError(Exception):
    pass


def is_literal(arg: str) -> bool:
    """lightning-cli's rule (cli/lightning-cli.c is_literal), so hex like "0123" stays a string."""
    if not arg:
        return False
    if arg in ("null", "true", "false"):
        return True
    if (arg[0], arg[-1]) in (("{", "}"), ("[", "]"), ('"', '"')) and len(arg) >= 2:
        return True
    if all(c in "0123456789." for c in arg) and not (arg[0] == "0" and len(arg) > 1 and arg[1] != "."):
        return arg.count(".") <= 1 and arg[0] != "." and arg[-1] != "."
    return False


def to_json_value(arg: str) -> object:
    if is_literal(arg):
        try:
            return json.loads(arg)
        except json.JSONError:
            raise UsageError(f"Some parameters are malformed, cannot create a valid JSON-RPC request: {arg}") from None
    return arg


def build_params(words: list[str], keywords: bool | None) -> object:
    if keywords is None:
        keywords = bool(words) and "=" in words[0]
    if not keywords:
        return [to_json_value(w) for w in words]
    out: dict[str, object] = {}
    for w in words:
        if "=" not in w:
            raise UsageError(f"Expected key=value in '{w}'")
        k, _, v = w.partition("=")
        out[k] = to_json_value(v)
    return out


def human(obj: object, out: list[str], top: bool = True) -> None:
    if isinstance(obj, dict):
        if obj.get("format-hint") == "simple" and "help" in obj:
            for e in obj["help"]:
                out.append(e.get("command", ""))
            return
        for k, v in obj.items():
            if k == "format-hint":
                continue
            if isinstance(v, (dict, list)):
                if isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v):
                    out.append(f"{k}={' '.join(str(x) for x in v)}")
                else:
                    out.append(f"{k}=")
                    human(v, out, False)
            else:
                out.append(f"{k}={_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            human(item, out, False)
            if isinstance(item, dict):
                out.append("")
    else:
        out.append(_scalar(obj))


def _scalar(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return str(v)


def flat(obj: object, prefix: str, out: list[str]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            flat(v, f"{prefix}.{k}" if prefix else k, out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            flat(v, f"{prefix}[{i}]", out)
    else:
        out.append(f"{prefix}={json.dumps(obj)}")


def _parse_args(argv: list[str]) -> dict:
    o: dict[str, object] = {"dir": None, "network": None, "conf": None, "rpc": None, "keywords": None,
                         "fmt": "json", "notify": "info", "filter": None}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or a == "-":
            break
        i += 1
        name, eq, val = a.partition("=")

        def value() -> str:
            nonlocal i
            if eq:
                return val
            if i >= len(argv):
                raise UsageError(f"{name}: requires an argument")
            i += 1
            return argv[i - 1]

        if name == "--lightning-dir":
            o["dir"] = value()
        elif name == "--network":
            o["network"] = value()
        elif name in ("--mainnet", "--testnet", "--testnet4", "--signet", "--regtest"):
            o["network"] = name[2:]
        elif name == "--conf":
            o["conf"] = value()
        elif name == "--rpc-file":
            o["rpc"] = value()
        elif name in ("-k", "--keywords"):
            o["keywords"] = True
        elif name in ("-o", "--order"):
            o["keywords"] = False
        elif name in ("-H", "--human-readable"):
            o["fmt"] = "human"
        elif name in ("-F", "--flat"):
            o["fmt"] = "flat"
        elif name in ("-R", "--raw"):
            o["fmt"] = "raw"
        elif name in ("-J", "--json"):
            o["fmt"] = "json"
        elif name in ("-N", "--notifications"):
            o["notify"] = value()
            if o["notify"] != "none" and o["notify"] not in _LEVELS:
                raise UsageError(f"--notifications: unknown level '{o['notify']}'")
        elif name in ("-l", "--filter"):
            try:
                o["filter"] = json.loads(value())
            except json.JSONError:
                raise UsageError("--filter: not valid JSON") from None
        elif name in ("-h", "--help"):
            o["help"] = True
        elif name in ("-V", "--version"):
            o["version"] = True
        else:
            raise UsageError(f"{name}: unrecognized option")
    o["rest"] = argv[i:]
    return o


def _socket_path(o: dict) -> str:
    ldir = os.path.abspath(os.path.expanduser(o["dir"] or "~/.ampere"))
    network = o["network"]
    rpc = o["rpc"]
    # lightning-cli reads the same config files as the daemon for network= and rpc-file=.
    try:
        files = read_config_file(o["conf"], True) if o["conf"] else read_config_file(os.path.join(ldir, "config"), False)
        for e in files:
            if e.name == "network" and network is None and e.value:
                network = e.value
            elif e.name in NETWORKS + ("mainnet",) and network is None and e.value is None:
                network = e.name
        network = NETWORK_ALIASES.get(network or "bitcoin", network or "bitcoin")
        if not o["conf"]:
            for e in read_config_file(os.path.join(ldir, network, "config"), False):
                if e.name == "rpc-file" and rpc is None:
                    rpc = e.value
        for e in files:
            if e.name == "rpc-file" and rpc is None:
                rpc = e.value
    except ConfigError as e:
        raise UsageError(str(e)) from None
    rpc = rpc or "lightning-rpc"
    return rpc if os.path.isabs(rpc) else os.path.join(ldir, network, rpc)


class _Conn:
    def __init__(self, path: str) -> None:
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def send(self, obj: dict) -> None:
        self.sock.sendall(json.dumps(obj).encode())

    def recv(self) -> dict:
        while True:
            text = self.buf.decode("utf-8", errors="replace").lstrip()
            if text:
                try:
                    obj, end = json.raw_decode(text)
                except json.JSONError:
                    pass
                else:
                    self.buf = text[end:].encode()
                    if not isinstance(obj, dict):
                        raise ConnectionError("bad response from the node")
                    return obj
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the node")
            self.buf += chunk


def _print_notification(note: dict, level: str) -> None:
    params = note.get("params", {})
    if note.get("method") == "message":
        lvl = params.get("level", "info")
        lvl = {"warn": "unusual", "error": "broken"}.get(lvl, lvl)
        if level != "none" and _LEVELS.index(lvl if lvl in _LEVELS else "info") >= _LEVELS.index(level):
            print(f"# {params.get('message', '')}", file=sys.stderr)
    elif note.get("method") == "progress" and level != "none":
        num, total = params.get("num", 0), params.get("total", 0) or 1
        bar = "=" * int(20 * num / total)
        stage = params.get("stage")
        st = f"Stage {stage['num'] + 1}/{stage['total']} " if isinstance(stage, dict) else ""
        print(f"\r# [{st}]{num}/{total} |{bar:<20}|", end="", file=sys.stderr)
        if num >= total:
            print("", file=sys.stderr)


def run(argv: list[str]) -> int:
    try:
        o = _parse_args(argv)
        if o.get("version"):
            print(VERSION_STRING)
            return EXIT_OK
        if o.get("help") and not o["rest"]:
            print(USAGE)
            return EXIT_OK
        rest = o["rest"] or (["help"] if o.get("help") else [])
        if not rest:
            print(USAGE, file=sys.stderr)
            return EXIT_USAGE
        method, words = rest[0], rest[1:]
        params = build_params(words, o["keywords"])
        path = _socket_path(o)
    except UsageError as e:
        print(f"amp-cli: {e}", file=sys.stderr)
        return EXIT_USAGE
    pid = os.getpid()
    try:
        conn = _Conn(path)
        if o["notify"] != "none":
            conn.send({"jsonrpc": "2.0", "method": "notifications", "id": f"cli:notifications#{pid}",
                       "params": {"enable": True}})
            conn.recv()
        req: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": f"cli:{method}#{pid}", "params": params}
        if o["filter"] is not None:
            req["filter"] = o["filter"]
        conn.send(req)
        while True:
            resp = conn.recv()
            if "id" not in resp and "method" in resp:
                _print_notification(resp, o["notify"])
                continue
            break
    except (OSError, ConnectionError) as e:
        print(f"amp-cli: Connecting to '{path}': {e.strerror if isinstance(e, OSError) and e.strerror else e}",
              file=sys.stderr)
        return EXIT_TALK
    if resp.get("id") != req["id"] or ("result" not in resp and "error" not in resp):
        print("amp-cli: bad response from the node", file=sys.stderr)
        return EXIT_TALK
    if "error" in resp:
        print(json.dumps(resp["error"], indent=3, ensure_ascii=False))
        return EXIT_ERROR
    result = resp["result"]
    fmt = o["fmt"]
    if fmt == "json" and isinstance(result, dict) and result.get("format-hint") == "simple":
        fmt = "human"
    if fmt == "raw":
        print(json.dumps(result, separators=(",", ":"), ensure_ascii=False))
    elif fmt == "human":
        lines: list[str] = []
        human(result, lines)
        print("\n".join(lines))
    elif fmt == "flat":
        lines = []
        flat(result, "", lines)
        print("\n".join(lines))
    else:
        if isinstance(result, dict):
            result = {k: v for k, v in result.items() if k != "format-hint"}
        print(json.dumps(result, indent=3, ensure_ascii=False))
    return EXIT_OK


def main() -> None:
    try:
        code = run(sys.argv[1:])
        sys.stdout.flush()
    except BrokenPipeError:
        # `amp-cli help | head`: the reader went away; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
