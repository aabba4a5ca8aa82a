"""The bitcoind JSON-RPC client ampd uses (against bitcoind or amp-chaind).

Raw asyncio streams and HTTP/1.1 with keep-alive, Basic auth from user/password or from the cookie
file `<datadir>/<network dir>/.cookie` (re-read when authentication fails, since bitcoind writes a
new cookie at every start). Amounts in results are `decimal.Decimal` (JSON floats are parsed
exactly); `btc_to_sat` turns them into integer satoshi.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
from decimal import Decimal

__all__ = ["BitcoindRpc", "BitcoindError", "BitcoindUnreachable", "BitcoindAuthError", "btc_to_sat",
           "network_subdir"]

_NETWORK_SUBDIR = {"bitcoin": "", "mainnet": "", "main": "", "testnet": "testnet3", "testnet4": "testnet4",
                   "signet": "signet", "regtest": "regtest"}
DEFAULT_PORTS = {"bitcoin": 8332, "testnet": 18332, "testnet4": 48332, "signet": 38332, "regtest": 18443}


class BitcoindError(Exception):
    """bitcoind answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message


class BitcoindUnreachable(Exception):
    """No answer: connection refused, reset, timed out, or not an HTTP/JSON-RPC reply."""


class BitcoindAuthError(BitcoindUnreachable):
    """HTTP 401: wrong rpcuser/rpcpassword or a stale cookie."""


def network_subdir(network: str) -> str:
    return _NETWORK_SUBDIR.get(network, network)


def btc_to_sat(value) -> int:
    """An amount from bitcoind (Decimal, int or numeric string in BTC) in integer satoshi."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    sat = d * 100_000_000
    if sat != sat.to_integral_value():
        raise ValueError(f"amount {value} has more than 8 decimals")
    return int(sat)


class BitcoindRpc:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None, user: str | None = None,
                 password: str | None = None, datadir: str | None = None, network: str = "regtest",
                 timeout: float = 60.0, wallet: str | None = None):
        self.host = host
        self.port = port or DEFAULT_PORTS.get(network, 18443)
        self.user = user
        self.password = password
        self.datadir = datadir
        self.network = network
        self.timeout = timeout
        self.path = "/" if wallet is None else f"/wallet/{wallet}"
        self._ids = itertools.count(1)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    # -- credentials --
    def cookie_path(self) -> str | None:
        if self.datadir is None:
            return None
        return os.path.join(os.path.expanduser(self.datadir), network_subdir(self.network), ".cookie")

    def _auth_header(self) -> str:
        if self.password:
            userpass = f"{self.user or ''}:{self.password}"
        else:
            path = self.cookie_path()
            if path is None:
                raise BitcoindAuthError("no rpcpassword and no datadir for the cookie file")
            try:
                with open(path) as f:
                    userpass = f.read().strip()
            except OSError as e:
                raise BitcoindUnreachable(f"cannot read cookie file {path}: {e.strerror}") from None
        return "Basic " + base64.b64encode(userpass.encode()).decode()

    # -- connection --
    async def close(self) -> None:
        w = self._writer
        self._reader = self._writer = None
        if w is not None:
            w.close()
            try:
                await w.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise BitcoindUnreachable(f"cannot connect to bitcoind at {self.host}:{self.port}: {e}") from None

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        """One HTTP exchange on the kept-alive connection (reconnecting once if it went stale)."""
        for attempt in (0, 1):
            fresh = self._writer is None
            if fresh:
                await self._connect()
            try:
                return await asyncio.wait_for(self._exchange(body), self.timeout)
            except asyncio.TimeoutError:
                await self.close()
                raise BitcoindUnreachable(f"bitcoind at {self.host}:{self.port} did not answer within "
                                          f"{self.timeout}s") from None
            except (ConnectionError, OSError, asyncio.IncompleteReadError, _StaleConnection) as e:
                await self.close()
                if fresh or attempt:
                    raise BitcoindUnreachable(f"connection to bitcoind at {self.host}:{self.port} failed: "
                                              f"{e!r}") from None
        raise AssertionError("unreachable")

    async def _exchange(self, body: bytes) -> tuple[int, bytes]:
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: {self._auth_header()}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
        self._writer.write(head.encode() + body)
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            raise _StaleConnection("connection closed")
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise BitcoindUnreachable(f"not an HTTP reply: {status_line[:80]!r}")
        status = int(parts[1])
        headers = {}
        while True:
            line = await self._reader.readline()
            if not line:
                raise _StaleConnection("connection closed in headers")
            if line in (b"\r\n", b"\n"):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            payload = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            payload = await self._read_chunked()
        else:
            payload = await self._reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, payload

    async def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int((await self._reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                await self._reader.readline()
                return bytes(out)
            out += await self._reader.readexactly(size)
            await self._reader.readline()

    async def _request(self, payload) -> object:
        body = json.dumps(payload).encode()
        async with self._lock:
            status, data = await self._post(body)
        if status == 401:
            raise BitcoindAuthError(f"bitcoind at {self.host}:{self.port} refused the credentials (HTTP 401): check "
                                    "rpcuser/rpcpassword or the cookie file")
        if status == 403:
            raise BitcoindAuthError(f"bitcoind at {self.host}:{self.port} forbids this client (HTTP 403)")
        if not data:
            raise BitcoindUnreachable(f"empty HTTP {status} reply from bitcoind")
        try:
            return json.loads(data, parse_float=Decimal)
        except ValueError:
            raise BitcoindUnreachable(f"bitcoind sent invalid JSON (HTTP {status})") from None

    # -- API --
    async def call(self, method: str, *params):
        """Call one method; returns its result or raises BitcoindError / BitcoindUnreachable."""
        reply = await self._request({"jsonrpc": "1.0", "id": next(self._ids), "method": method,
                                     "params": list(params)})
        if not isinstance(reply, dict):
            raise BitcoindUnreachable("reply is not a JSON object")
        err = reply.get("error")
        if err:
            raise BitcoindError(int(err.get("code", -1)), str(err.get("message", "")))
        return reply.get("result")

    async def batch(self, calls: list[tuple[str, list | tuple]]) -> list:
        """Several calls in one request. Returns one item per call, in order: the result, or a
        BitcoindError instance for a call that failed (the others still count)."""
        if not calls:
            return []
        first = next(self._ids)
        ids = [first + i for i in range(len(calls))]
        self._ids = itertools.count(ids[-1] + 1)
        reply = await self._request([{"jsonrpc": "1.0", "id": i, "method": m, "params": list(p)}
                                     for i, (m, p) in zip(ids, calls)])
        if isinstance(reply, dict) and reply.get("error"):
            err = reply["error"]
            raise BitcoindError(int(err.get("code", -1)), str(err.get("message", "")))
        if not isinstance(reply, list):
            raise BitcoindUnreachable("batch reply is not a JSON array")
        by_id = {r.get("id"): r for r in reply if isinstance(r, dict)}
        out = []
        for i in ids:
            r = by_id.get(i)
            if r is None:
                out.append(BitcoindError(-32603, "missing reply in batch"))
            elif r.get("error"):
                out.append(BitcoindError(int(r["error"].get("code", -1)), str(r["error"].get("message", ""))))
            else:
                out.append(r.get("result"))
        return out


class _StaleConnection(Exception):
    pass
