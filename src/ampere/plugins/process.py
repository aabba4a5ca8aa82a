"""One plugin child process: spawn it, write JSON-RPC to its stdin, read JSON from its stdout.

cln-interfaces.md 1.1 (transport and framing):
* stdin/stdout carry JSON-RPC 2.0; stderr is inherited unchanged; other fds are closed;
* every message lightningd writes ends in "\\n\\n" (pyln-client splits its input on it);
* the plugin's output is parsed incrementally (no framing required of the plugin); every message
  must have a "jsonrpc" member and unparsable JSON kills the plugin;
* messages with an `id` answer our requests (matched by string id); the others are notifications;
* request ids are strings `cln:<method>#<n>`, or `<caller-id>/cln:<method>#<n>` when caused by a
  caller's request (jsonrpc.c jsonrpc_request_start_); caller ids needing JSON escaping become
  `weird-id`.

Every request waits on its own future: nothing here ever blocks on a plugin.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import itertools
import json
import os
import re
import time
from typing import Any, Callable

from . import answer_poll
from .notifications import encode

PLUGIN_TERMINATED = -4
TERMINATED_MESSAGE = "Plugin terminated before replying to RPC call."
# Yield to the event loop after this many messages from one read (plugin.c: 100 per wake-up).
_MESSAGES_PER_TURN = 100

# One counter for every request to every plugin, as lightningd's `next_request_id`.
_request_counter = itertools.count()

_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def id_prefix_of(caller_id: Any) -> str:
    """The prefix a caller's id gives to the ids of requests it causes."""
    text = caller_id if isinstance(caller_id, str) else json.dumps(caller_id)
    # "We could try escaping, but TBH they're messing with us at this point!"
    return "weird-id" if _NEEDS_ESCAPE.search(text) else text


def new_request_id(method: str, id_prefix: str | None = None) -> str:
    n = next(_request_counter)
    if id_prefix is not None:
        return f"{id_prefix}/cln:{method}#{n}"
    return f"cln:{method}#{n}"


def _id_key(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# ---------------------------------------------------------------------------------------------
# Incremental JSON splitting

_decoder = json.JSONDecoder()
# raw_decode without its Python frame: (value, end), StopIteration if no value starts there (a turn per message).
_scan_once = _decoder.scan_once
# A plugin's message may be at most this many characters and nest this deep (docs/limits.md); beyond, it is a
# protocol error and the plugin is killed, as for any unparsable output.
MAX_PLUGIN_MESSAGE = 64 * 1024 * 1024
MAX_PLUGIN_NESTING = 100
_NON_WS = re.compile(r"[^ \t\r\n]")
_OUTSIDE = re.compile(r'["{}\[\]]')
_INSIDE = re.compile(r'["\\]')


class _Unframeable(Exception):
    pass


class JsonMessageSplitter:
    """Cut a stream of concatenated JSON values into values.

    Fast path: `raw_decode` a complete value at the current position.  When that fails the value
    is either incomplete or invalid; a bracket scanner (state kept across chunks, so a large
    message arriving in pieces is scanned once) finds where the value ends, and only then is it
    decoded.  A value that does not start with `{` or `[` and does not decode is invalid at once.
    """

    def __init__(self) -> None:
        self._partial: list[str] = []  # pieces of an unfinished value
        self._partial_len = 0
        self._depth = 0
        self._in_str = False
        self._escape = False  # a backslash ended the previous chunk inside a string

    def _scan(self, buf: str, pos: int) -> int | None:
        """Continue the bracket scan; the index just past the value's end, or None."""
        depth, in_str = self._depth, self._in_str
        if self._escape:
            self._escape = False
            pos += 1
        n = len(buf)
        while pos < n:
            if in_str:
                m = _INSIDE.search(buf, pos)
                if m is None:
                    pos = n
                    break
                if m.group() == "\\":
                    if m.end() >= n:
                        self._escape = True
                        pos = n
                        break
                    pos = m.end() + 1
                    continue
                in_str = False
                pos = m.end()
                continue
            m = _OUTSIDE.search(buf, pos)
            if m is None:
                pos = n
                break
            c = m.group()
            pos = m.end()
            if c == '"':
                in_str = True
            elif c in "{[":
                depth += 1
                if depth > MAX_PLUGIN_NESTING:
                    raise _Unframeable(f"nested deeper than {MAX_PLUGIN_NESTING} levels")
            else:
                depth -= 1
                if depth == 0:
                    self._depth, self._in_str = 0, False
                    return pos
        self._depth, self._in_str = depth, in_str
        return None

    def feed(self, text: str) -> tuple[list[Any], str | None]:
        """Values completed by `text`, and an error text if invalid JSON was met (then stop)."""
        out: list[Any] = []
        try:
            return self._feed(text, out)
        except _Unframeable as e:
            return out, f"{e} (at {text[:200]!r}...)"

    def _keep(self, piece: str) -> None:
        self._partial.append(piece)
        self._partial_len += len(piece)
        if self._partial_len > MAX_PLUGIN_MESSAGE:
            raise _Unframeable(f"message larger than {MAX_PLUGIN_MESSAGE} characters")

    def _feed(self, text: str, out: list[Any]) -> tuple[list[Any], str | None]:
        i = 0
        if self._partial:
            end = self._scan(text, 0)
            if end is None:
                self._keep(text)
                return out, None
            whole = "".join(self._partial) + text[:end]
            self._partial, self._partial_len = [], 0
            try:
                out.append(json.loads(whole))
            except (ValueError, RecursionError):
                return out, whole
            i = end
        n = len(text)
        while True:
            m = _NON_WS.search(text, i)
            if m is None:
                return out, None
            i = m.start()
            try:
                value, i = _scan_once(text, i)
                out.append(value)
                continue
            except (StopIteration, ValueError, RecursionError):
                pass
            if text[i] not in "{[":
                return out, text[i:]
            self._depth, self._in_str, self._escape = 1, False, False
            end = self._scan(text, i + 1)
            if end is None:
                self._partial, self._partial_len = [], 0
                self._keep(text[i:n])
                return out, None
            try:
                out.append(json.loads(text[i:end]))
            except (ValueError, RecursionError):
                return out, text[i:end]
            i = end


# ---------------------------------------------------------------------------------------------


class _ParseError:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Stdout(asyncio.Protocol):
    """The plugin's stdout, a pipe of our own read by the loop directly: each read reaches `on_data` at once.
    (Given to the subprocess transport, a pipe's data goes through its pipe protocol and a call_soon first.)"""

    def __init__(self, on_data: Callable[[bytes], None], on_closed: Callable[[], None]) -> None:
        self.data_received = on_data  # type: ignore[method-assign]  (no frame of ours in between)
        self._on_closed = on_closed

    def eof_received(self) -> bool:
        return False  # the transport closes: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_closed()


class PendingRequest:
    """One request awaiting its answer: a future to resolve, or (callback mode) a function to call with it."""
    __slots__ = ("future", "notify_cb", "method", "callback", "sent")

    def __init__(self, future: asyncio.Future | None, notify_cb: Callable[[dict], None] | None, method: str,
                 callback: Callable[[dict], None] | None = None) -> None:
        self.future = future
        self.notify_cb = notify_cb
        self.method = method
        self.callback = callback
        self.sent = time.perf_counter()

    def resolve(self, msg: dict) -> None:
        if self.callback is not None:
            try:
                self.callback(msg)
            except Exception as e:  # as a future's callback would be: reported, the reader goes on
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "plugin answer callback failed", "exception": e})
        elif not self.future.done():
            self.future.set_result(msg)


class PluginProcess:
    """The pipes to one running plugin and its outstanding requests."""

    def __init__(
        self,
        path: str,
        *,
        cwd: str,
        env: dict[str, str],
        on_notification: Callable[[dict], None],
        on_protocol_error: Callable[[str], None],
        on_eof: Callable[[], None],
        argv_extra: tuple[str, ...] = (),
        poll_window: float = answer_poll.POLL_WINDOW,
    ) -> None:
        self.path = path
        self.poll_window = poll_window  # seconds to poll for a quick answer (answer_poll); 0: never
        self.cwd = cwd
        self.env = env
        self.argv_extra = argv_extra
        self.pending: dict[str, PendingRequest] = {}
        self.answer_times = answer_poll.AnswerTimes()
        self._on_notification = on_notification
        self._on_protocol_error = on_protocol_error
        self._on_eof = on_eof
        self._proc: asyncio.subprocess.Process | None = None
        self._stdout: Any = None  # the stdout pipe's transport
        self._stdin: Any = None  # the stdin pipe's transport (written directly: no StreamWriter layer per message)
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._utf8_clean = True  # no partial character held by self._utf8
        self._splitter = JsonMessageSplitter()
        self._queue: collections.deque = collections.deque()  # parsed, not yet handled
        self._draining = False
        self._stopped_reading = False
        self._reaper: asyncio.Task | None = None
        self.closed = False
        self.exited = asyncio.Event()
        self.exited_callback: Callable[["PluginProcess"], None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def spawn(self) -> None:
        """Start the child.  Raises OSError (e.g. FileNotFoundError) if it cannot run."""
        loop = asyncio.get_running_loop()
        # The plugin's stdin and stdout are pipes of our own, as lightningd's are (both ends non-inheritable: the
        # child gets a dup).  Left to uvloop, stdin would be a unix socketpair: every request then costs the plugin
        # a socket read instead of a pipe read, and ~10 us more per call of a trivial method (bench_plugins_cpu).
        read_end, write_end = os.pipe()  # stdout
        try:
            in_read, in_write = os.pipe()  # stdin
        except BaseException:
            os.close(read_end)
            os.close(write_end)
            raise
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: asyncio.subprocess.SubprocessStreamProtocol(limit=1 << 16, loop=loop),
                self.path, *self.argv_extra,
                stdin=in_read,
                stdout=write_end,
                stderr=None,  # inherited: a plugin's stderr goes to the node's stderr, not the log
                cwd=self.cwd,
                env=self.env,
                close_fds=True,
            )
        except BaseException:
            os.close(read_end)
            os.close(in_write)
            raise
        finally:
            os.close(write_end)
            os.close(in_read)
        self._proc = asyncio.subprocess.Process(transport, protocol, loop)
        stdin = os.fdopen(in_write, "wb", buffering=0)
        try:
            self._stdin, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, stdin)
        except BaseException:
            stdin.close()
            os.close(read_end)
            raise
        stdout = os.fdopen(read_end, "rb", buffering=0)
        try:
            self._stdout, _ = await loop.connect_read_pipe(
                lambda: _Stdout(self._on_stdout, self._on_stdout_closed), stdout)
        except BaseException:
            stdout.close()
            raise

    # -- writing
    def send_raw(self, data: bytes) -> None:
        transport = self._stdin
        if self.closed or transport is None or transport.is_closing():
            return
        transport.write(data)

    def send(self, message: dict) -> None:
        self.send_raw(encode(message))

    def request(
        self,
        method: str,
        params: Any,
        *,
        id_prefix: str | None = None,
        notify_cb: Callable[[dict], None] | None = None,
    ) -> tuple[str, asyncio.Future]:
        """Send `{"jsonrpc","id","method","params"}`; returns the id and a future of the response."""
        req_id = new_request_id(method, id_prefix)
        return req_id, self.send_request({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params},
                                         req_id, notify_cb)

    def send_request(self, message: dict, req_id: str, notify_cb: Callable[[dict], None] | None = None
                     ) -> asyncio.Future:
        """Send a prepared request whose `id` is `req_id` (e.g. a caller's request passed through)."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_result(self._terminated(req_id))
            return fut
        self.pending[req_id] = PendingRequest(fut, notify_cb, str(message.get("method")))
        self.send(message)
        self._poll_for_answer(req_id)
        return fut

    def send_request_cb(self, message: dict, req_id: str, callback: Callable[[dict], None],
                        notify_cb: Callable[[dict], None] | None = None) -> None:
        """send_request without a future: `callback(answer)` is called once, from the reader as the answer is
        read (or with the -4 answer if the plugin dies first), unless the request is dropped.  A plugin method
        call then costs no future, no done-callback and no extra turn of the loop."""
        if self.closed:
            asyncio.get_running_loop().call_soon(callback, self._terminated(req_id))  # never re-entrantly
            return
        # Written first (the plugin gets to work on the other core), then remembered: its answer is read in a
        # later turn of the loop, never within this call.
        transport = self._stdin
        if transport is not None and not transport.is_closing():
            transport.write(encode(message))
        self.pending[req_id] = PendingRequest(None, notify_cb, message.get("method"), callback)
        self._poll_for_answer(req_id)

    def _poll_for_answer(self, req_id: str) -> None:
        """Turn the loop without sleeping while a quick plugin works on its only request (answer_poll)."""
        pending = self.pending
        window = self.poll_window
        if window and answer_poll.ENABLED and len(pending) == 1 and self.answer_times.worth_polling(window):
            answer_poll.POLLER.poll(lambda: req_id in pending and len(pending) == 1, window)

    def drop(self, req_id: str) -> None:
        """Forget a request: a late answer will be ignored (a callback-mode request's callback is not called)."""
        p = self.pending.pop(req_id, None)
        if p is not None and p.future is not None and not p.future.done():
            p.future.cancel()

    @staticmethod
    def _terminated(req_id: str) -> dict:
        return {"jsonrpc": "2.0", "id": req_id,
                "error": {"code": PLUGIN_TERMINATED, "message": TERMINATED_MESSAGE}}

    def fail_pending(self) -> None:
        """Answer every outstanding request with -4, as if the plugin had said "I'm dead!"."""
        pending, self.pending = self.pending, {}
        for req_id, p in pending.items():
            p.resolve(self._terminated(req_id))

    # -- reading
    # The plugin's output is handled as it arrives, in the pipe's callback: no reader task to wake
    # and no stream buffer in between (a plugin method call is two pipe messages; this is a good
    # part of what each costs us).  As plugin.c, at most _MESSAGES_PER_TURN messages are handled
    # per turn of the loop; the rest wait, with reading paused, for the next turn.
    def _on_stdout(self, data: bytes) -> None:
        if self._stopped_reading:
            return
        text = None
        if self._utf8_clean:  # the usual read: whole characters, decoded at once (no incremental decoder)
            try:
                text = data.decode()
            except UnicodeDecodeError:
                pass
        if text is None:
            text = self._utf8.decode(data)
            self._utf8_clean = not self._utf8.getstate()[0]
        splitter = self._splitter
        if not splitter._partial and text[:1] == "{":
            # The usual read: one whole message and its blank line (a plugin writes and flushes each message).
            try:
                value, end = _scan_once(text, 0)
            except (StopIteration, ValueError, RecursionError):
                pass
            else:
                if end == len(text) or not text[end:].strip(" \t\r\n"):
                    self._queue.append(value)
                    if not self._draining:
                        self._drain()
                    return
                text = text[end:]  # more follows: the splitter takes the rest
                self._queue.append(value)
        values, error = splitter.feed(text)
        self._queue.extend(values)
        if error is not None:
            self._queue.append(_ParseError(error))
        if not self._draining:
            self._drain()

    def _drain(self) -> None:
        self._draining = False
        queue = self._queue
        count = 0
        while queue:
            if self.closed or self._stopped_reading:
                queue.clear()
                return
            if count == _MESSAGES_PER_TURN:
                self._draining = True
                self._reading(False)
                asyncio.get_running_loop().call_soon(self._resume)
                return
            msg = queue.popleft()
            count += 1
            if isinstance(msg, _ParseError):
                self._on_protocol_error(f"Failed to parse RPC JSON response '{msg.text[:1000]}'")
                self._stop_reading()
                return
            if not isinstance(msg, dict) or "jsonrpc" not in msg:
                self._on_protocol_error(f"JSON-RPC message does not contain \"jsonrpc\" field: '{json.dumps(msg)}'")
                self._stop_reading()
                return
            if "id" in msg:
                self._handle_response(msg)
            else:
                self._on_notification(msg)

    def _resume(self) -> None:
        # Always read on, even from a plugin we stopped listening to: its pipe must reach EOF for
        # the subprocess transport to close.
        self._reading(True)
        self._drain()

    def _reading(self, on: bool) -> None:
        try:
            if on:
                self._stdout.resume_reading()
            else:
                self._stdout.pause_reading()
        except (AttributeError, RuntimeError):
            pass  # the pipe is closed already

    def _on_stdout_closed(self) -> None:
        if not self._stopped_reading:
            self._drain_all_then_stop()

    def _drain_all_then_stop(self) -> None:
        # EOF: what arrived before it is still handled (in turns), then the plugin is reaped.
        if self._queue and not self.closed and not self._stopped_reading:
            self._drain()
            asyncio.get_running_loop().call_soon(self._drain_all_then_stop)
            return
        self._stop_reading()

    def _stop_reading(self) -> None:
        """No more output is read: the plugin closed it, or broke the protocol."""
        if self._stopped_reading:
            return
        self._stopped_reading = True
        self._queue.clear()  # (the pipe is still read to its end, and what comes is dropped)
        if not self.closed:
            self._on_eof()
        self._reaper = asyncio.get_running_loop().create_task(self._reap())

    def _handle_response(self, msg: dict) -> None:
        rid = msg["id"]
        p = self.pending.pop(rid if type(rid) is str else _id_key(rid), None)
        # Can happen if the request was dropped before the plugin answered.
        if p is not None:
            self.answer_times.answered(time.perf_counter() - p.sent)
            p.resolve(msg)

    async def _reap(self) -> None:
        if self._proc is None:
            return
        try:
            await self._proc.wait()
        finally:
            if self._stdout is not None and not self._stdout.is_closing():
                self._stdout.close()
            self._close_stdin()
            self.exited.set()
            if self.exited_callback is not None:
                self.exited_callback(self)

    def kill(self) -> None:
        """SIGKILL the child (plugin_kill) and stop reading from it."""
        if self.closed:
            return
        self.closed = True
        proc = self._proc
        if proc is None:
            self.exited.set()
            return
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        self._close_stdin()

    def _close_stdin(self) -> None:
        transport = self._stdin
        if transport is not None and not transport.is_closing():
            try:
                transport.close()
            except (OSError, RuntimeError):
                pass

    async def wait_exited(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self.exited.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
