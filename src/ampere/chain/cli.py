"""amp-chain-cli: bitcoin-cli's calling conventions against amp-chaind (or any bitcoind).

    amp-chain-cli [-regtest] [-datadir=D] [-rpcconnect=H] [-rpcport=N] [-rpcuser=U] [-rpcpassword=P]
                  [-stdinrpcpass] [-rpcclienttimeout=S] [-rpcwallet=W] [-named] [-stdin] METHOD [ARGS...]

Output as bitcoin-cli prints it: a string result raw, null as nothing, anything else as JSON
indented by 2 (numbers exactly as the server sent them). Errors go to stderr as
"error code: N\\nerror message:\\nMSG" and the exit status is abs(N) (as an 8-bit process status);
connection and authentication failures print "error: ..." and exit 1.

Arguments: for the methods amp-chaind serves, the parameters bitcoin-cli converts from JSON
(its vRPCConvertParams table) are parsed as JSON and the others passed as strings; for other
methods each argument is parsed as JSON when it parses, else passed as a string.
"""

# Core Lightning's bcli plugin runs this for every chain query: start-up time is paid all the
# time.  Hence the C `_socket` for the one HTTP exchange (http.client drags in email, ssl, ...;
# even `socket` pulls in enum and selectors) and cli_json rather than `json` (which imports re):
# only light modules (tests/unit/test_cli_imports.py keeps it so).
import _socket
import binascii
import os
import sys

from ampere import cli_json as json
from ampere.chain.bitcoin_conf import conf_path, read_bitcoin_conf

DEFAULT_RPC_PORT = 18443

# bitcoin-cli's vRPCConvertParams for the methods amp-chaind serves: parameters parsed as JSON.
CONVERT_PARAMS: dict[str, list[str]] = {
    "getblockhash": ["height"],
    "getblock": ["verbosity"],
    "getblockheader": ["verbose"],
    "getrawtransaction": ["verbose"],
    "decoderawtransaction": ["iswitness"],
    "sendrawtransaction": ["maxfeerate", "maxburnamount"],
    "testmempoolaccept": ["rawtxs", "maxfeerate"],
    "gettxout": ["n", "include_mempool"],
    "getrawmempool": ["verbose", "mempool_sequence"],
    "getmempoolentry": [],
    "estimatesmartfee": ["conf_target"],
    "generatetoaddress": ["nblocks", "maxtries"],
    "generateblock": ["transactions", "submit"],
    "generatefork": ["nblocks"],
    "getbalance": ["minconf", "include_watchonly", "avoid_reuse"],
    "sendtoaddress": ["amount", "subtractfeefromamount", "replaceable", "conf_target", "avoid_reuse",
                      "fee_rate", "verbose"],
    "listunspent": ["minconf", "maxconf", "addresses", "include_unsafe", "query_options"],
    "stop": ["wait"],
    "getnewaddress": [],
    "getblockchaininfo": [], "getnetworkinfo": [], "getblockcount": [], "getbestblockhash": [],
    "getmempoolinfo": [], "getbalances": [], "invalidateblock": [], "reconsiderblock": [],
    "submitblock": [], "uptime": [], "getzmqnotifications": [], "help": [], "validateaddress": [],
}
PARAM_NAMES: dict[str, list[str]] = {
    "getblockhash": ["height"], "getblock": ["blockhash", "verbosity"], "getblockheader": ["blockhash", "verbose"],
    "getrawtransaction": ["txid", "verbose", "blockhash"], "decoderawtransaction": ["hexstring", "iswitness"],
    "sendrawtransaction": ["hexstring", "maxfeerate", "maxburnamount"], "testmempoolaccept": ["rawtxs", "maxfeerate"],
    "gettxout": ["txid", "n", "include_mempool"], "getrawmempool": ["verbose", "mempool_sequence"],
    "getmempoolentry": ["txid"], "estimatesmartfee": ["conf_target", "estimate_mode"],
    "generatetoaddress": ["nblocks", "address", "maxtries"], "generateblock": ["output", "transactions", "submit"],
    "generatefork": ["nblocks", "parent_blockhash", "address"],
    "getbalance": ["dummy", "minconf", "include_watchonly", "avoid_reuse"],
    "sendtoaddress": ["address", "amount", "comment", "comment_to", "subtractfeefromamount", "replaceable",
                      "conf_target", "estimate_mode", "avoid_reuse", "fee_rate", "verbose"],
    "listunspent": ["minconf", "maxconf", "addresses", "include_unsafe", "query_options"],
    "stop": ["wait"], "getnewaddress": ["label", "address_type"], "invalidateblock": ["blockhash"],
    "reconsiderblock": ["blockhash"], "submitblock": ["hexdata", "dummy"], "help": ["command"],
    "validateaddress": ["address"],
}


class RawNumber(str):
    """A JSON number kept as the text the server sent (so 50.00000000 prints as such)."""


def _loads_raw(text: str):
    return json.loads(text, parse_float=RawNumber, parse_int=RawNumber)


def write_pretty(v, indent: int = 2, level: int = 0) -> str:
    """UniValue::write(2): 2-space indentation, "key": value, empty containers on two lines."""
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(v, RawNumber):
        return str(v)
    if isinstance(v, dict):
        if not v:
            return "{\n" + end + "}"
        items = [f"{pad}{json.dumps(k, ensure_ascii=False)}: {write_pretty(x, indent, level + 1)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(v, list):
        if not v:
            return "[\n" + end + "]"
        items = [pad + write_pretty(x, indent, level + 1) for x in v]
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    return json.dumps(v, ensure_ascii=False)


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONError:
        return text


def convert_args(method: str, args: list[str], named: bool):
    """RPCConvertValues / RPCConvertNamedValues."""
    table = CONVERT_PARAMS.get(method)
    names = PARAM_NAMES.get(method, [])

    def convert(name: str | None, text: str):
        if table is None:
            return _parse_value(text)
        if name is not None and name in table:
            try:
                return json.loads(text)
            except json.JSONError:
                raise UsageError(f"Error parsing JSON: {text}") from None
        return text

    if named:
        out: dict = {}
        positional = []
        for a in args:
            key, eq, value = a.partition("=")
            if not eq:
                positional.append(a)
                continue
            out[key] = convert(key, value)
        if positional:
            # bitcoin-cli puts unnamed ones in "args"
            out["args"] = [convert(names[i] if i < len(names) else None, p) for i, p in enumerate(positional)]
        return out
    return [convert(names[i] if i < len(names) else None, a) for i, a in enumerate(args)]


class UsageError(Exception):
    pass


def _parse_options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and len(argv[i]) > 1:
        key, eq, value = argv[i].lstrip("-").partition("=")
        if not eq:
            value = "1"
        if key.startswith("no") and key[2:] in ("named", "stdin", "stdinrpcpass", "regtest"):
            key, value = key[2:], "0"
        opts[key] = value
        i += 1
    return opts, argv[i:]


class HttpError(Exception):
    pass


def http_post(host: str, port: int, path: str, body: str, auth: str, timeout: float | None) -> tuple[int, str]:
    """One HTTP/1.1 POST with `Connection: close`; (status, body text)."""
    data = body.encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n")
    sock = _connect(host, port, timeout)
    try:
        sock.sendall(head.encode() + data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    reply = b"".join(chunks)
    header, sep, payload = reply.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError("malformed HTTP response")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if fields.get("transfer-encoding", "").lower() == "chunked":
        payload = _dechunk(payload)
    elif "content-length" in fields:
        n = int(fields["content-length"])
        if len(payload) < n:
            raise HttpError("truncated HTTP response")
        payload = payload[:n]
    return int(parts[1]), payload.decode()


def _connect(host: str, port: int, timeout: float | None):
    """socket.create_connection on the C `_socket`: each address getaddrinfo gives, in turn."""
    error: OSError = OSError(f"getaddrinfo returned nothing for {host}")
    # An ASCII host goes as bytes: given a str, getaddrinfo encodes it with the idna codec, whose
    # import (stringprep, unicodedata, re) costs more than the rest of this tool's start-up.
    name = host.encode("ascii") if host.isascii() else host
    for family, kind, proto, _, addr in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(addr)
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error


def _dechunk(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise HttpError("truncated chunked response")
        size = int(data[pos:eol].split(b";", 1)[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts, rest = _parse_options(argv)
    if "help" in opts or "h" in opts or "?" in opts or "version" in opts:
        print(__doc__.strip())
        return 0
    datadir = os.path.expanduser(opts.get("datadir", "~/.bitcoin"))
    if "datadir" in opts and not os.path.isdir(datadir):
        print(f'Error: Specified data directory "{opts["datadir"]}" does not exist.', file=sys.stderr)
        return 1
    conf = {key: values[-1] for key, values in read_bitcoin_conf(conf_path(datadir, opts.get("conf"))).items()}
    conf.update(opts)
    opts = conf
    if opts.get("chain", "regtest") != "regtest" or any(opts.get(n, "0") not in ("0", "") for n in
                                                        ("testnet", "testnet4", "signet")):
        print("error: amp-chain-cli only talks to regtest", file=sys.stderr)
        return 1
    args = list(rest)
    if opts.get("stdinrpcpass", "0") not in ("0", ""):
        line = sys.stdin.readline()
        opts["rpcpassword"] = line.rstrip("\r\n")
    if opts.get("stdin", "0") not in ("0", ""):
        args.extend(line.rstrip("\r\n") for line in sys.stdin)
    if not args:
        print("error: too few parameters (need at least command)", file=sys.stderr)
        return 1
    method, params_text = args[0], args[1:]
    try:
        params = convert_args(method, params_text, opts.get("named", "0") not in ("0", ""))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    host = opts.get("rpcconnect", "127.0.0.1")
    port = int(opts.get("rpcport", DEFAULT_RPC_PORT))
    if ":" in host and host.count(":") == 1:
        host, _, p = host.partition(":")
        port = int(p)
    if opts.get("rpcpassword"):
        userpass = f"{opts.get('rpcuser', '')}:{opts['rpcpassword']}"
    else:
        cookie = opts.get("rpccookiefile", ".cookie")
        cookie_path = cookie if os.path.isabs(cookie) else os.path.join(datadir, "regtest", cookie)
        try:
            userpass = open(cookie_path).read().strip()
        except OSError:
            print("error: Could not locate RPC credentials. No authentication cookie could be found, and RPC "
                  "password is not set.  See -rpcpassword and -stdinrpcpass.  Configuration file: (" +
                  os.path.join(datadir, "bitcoin.conf") + ")", file=sys.stderr)
            return 1
    timeout = float(opts.get("rpcclienttimeout", "900"))
    path = "/"
    if "rpcwallet" in opts:
        path = "/wallet/" + opts["rpcwallet"]
    body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": params})
    auth = binascii.b2a_base64(userpass.encode(), newline=False).decode()
    try:
        status, text = http_post(host, port, path, body, auth, timeout if timeout > 0 else None)
    except (OSError, HttpError, ValueError):
        print(f"error: Could not connect to the server {host}:{port}\n\nMake sure the bitcoind server is running and "
              "that you are connecting to the correct RPC port.", file=sys.stderr)
        return 1
    if status == 401:
        print("error: Authorization failed: Incorrect rpcuser or rpcpassword", file=sys.stderr)
        return 1
    if status >= 400 and status not in (400, 404, 500):
        print(f"error: server returned HTTP error {status}", file=sys.stderr)
        return 1
    if not text:
        print("error: no response from server", file=sys.stderr)
        return 1
    try:
        reply = _loads_raw(text)
    except json.JSONError:
        print("error: couldn't parse reply from server", file=sys.stderr)
        return 1
    if not isinstance(reply, dict):
        print("error: expected reply to have result, error and id properties", file=sys.stderr)
        return 1
    error = reply.get("error")
    if error is not None:
        if isinstance(error, dict):
            code = error.get("code")
            out = f"error code: {code}\n" if code is not None else ""
            msg = error.get("message")
            if isinstance(msg, str):
                out += "error message:\n" + msg
            print(out, file=sys.stderr)
            try:
                return abs(int(code)) & 0xFF
            except (TypeError, ValueError):
                return 1
        print("error: " + json.dumps(error), file=sys.stderr)
        return 1
    result = reply.get("result")
    if result is None:
        return 0
    if isinstance(result, str) and not isinstance(result, RawNumber):
        print(result)
    else:
        print(write_pretty(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
