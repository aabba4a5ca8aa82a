"""A thin asyncio wrapper around the BOLT #8 state machine of noise.py.

It only moves bytes: `readexactly` of the sizes BOLT #8 fixes (50, 50, 66, then 18 and `len+16`),
with a deadline on the whole handshake.  Connecting (TCP, unix socket, SOCKS5) is the caller's job:
it passes in the StreamReader/StreamWriter pair.
"""

from __future__ import annotations

import asyncio

from ampere.wire.errors import ConnectionClosed, HandshakeError, TransportError
from ampere.wire.noise import (
    ACT_ONE_SIZE,
    ACT_THREE_SIZE,
    ACT_TWO_SIZE,
    LENGTH_HEADER_SIZE,
    MAC_SIZE,
    MAX_MESSAGE_SIZE,
    InitiatorHandshake,
    StaticKey,
    NoiseSession,
    ResponderHandshake,
)

DEFAULT_HANDSHAKE_TIMEOUT = 60.0  # seconds; CLN's connectd allows 60s for the handshake


# How long a closing connection keeps reading (and dropping) what the peer still sends after our last message.
LINGER_SECONDS = 2.0

class Transport:
    """An encrypted, authenticated message stream to one peer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: NoiseSession) -> None:
        self._reader = reader
        self._writer = writer
        self._session = session
        self.remote_pubkey: bytes = session.remote_pubkey
        self.messages_received = 0
        self.messages_sent = 0
        # Frames encrypted in this turn of the event loop, written to the socket together at its end (flush): one
        # send() for a channel step's update_add_htlc x N + commitment_signed, not one per message.
        self._out: list[bytes] = []
        self._out_bytes = 0

    async def read_message(self) -> bytes:
        """The next decrypted message (2-byte type + payload).

        Raises `ConnectionClosed` on a clean EOF between messages and `TransportError` on a
        truncated frame or a bad MAC (both mean: close the connection).
        """
        try:
            header = await self._reader.readexactly(LENGTH_HEADER_SIZE)
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                raise ConnectionClosed("peer closed the connection", reason="EOF") from None
            raise TransportError("connection closed inside a length header", reason="TRUNCATED") from None
        length = self._session.decrypt_length(header)
        try:
            body = await self._reader.readexactly(length + MAC_SIZE)
        except asyncio.IncompleteReadError:
            raise TransportError(f"connection closed inside a {length}-byte message", reason="TRUNCATED") from None
        message = self._session.decrypt_body(body)
        self.messages_received += 1
        return message

    def write_message(self, message: bytes) -> None:
        """Encrypt and queue one message.  Encryption and queueing happen together, with no await in
        between, so concurrent senders cannot reorder frames against their nonces.  The frame reaches the socket
        at the end of the loop's current turn with every other frame queued in it (`flush`), or at `drain`/`close`."""
        if len(message) > MAX_MESSAGE_SIZE:
            raise ValueError(f"message of {len(message)} bytes exceeds {MAX_MESSAGE_SIZE}")
        frame = self._session.encrypt_message(message)
        self.messages_sent += 1
        if not self._out:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop running (a synchronous caller): write it now
                self._writer.write(frame)
                return
        self._out.append(frame)
        self._out_bytes += len(frame)

    def flush(self) -> None:
        """Hand the frames queued so far to the socket, in one write."""
        out = self._out
        if not out:
            return
        self._out, self._out_bytes = [], 0
        if self._writer.is_closing():
            return  # the connection is gone: like bytes left in a closed socket's buffer
        self._writer.write(out[0] if len(out) == 1 else b"".join(out))

    @property
    def write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the kernel (queued frames included)."""
        return self._out_bytes + self._writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        self.flush()
        await self._writer.drain()

    async def send_message(self, message: bytes) -> None:
        self.write_message(message)
        await self._writer.drain()

    def close(self, *, linger: bool = False) -> None:
        """Close.  With `linger` (a warning or error was just queued), half-close instead and discard what the peer
        still sends until it closes too (at most LINGER_SECONDS): closing a socket with unread data in it makes the
        kernel answer with a reset, and a reset makes the peer drop our last message unread."""
        self.flush()  # what was queued goes first, as when every message was written at once
        if not linger or not self._writer.can_write_eof() or self._writer.is_closing():
            self._writer.close()
            return
        try:
            self._writer.write_eof()  # sent after the queued bytes: the warning goes out first
        except (OSError, RuntimeError):
            self._writer.close()
            return
        asyncio.get_running_loop().create_task(self._discard_then_close())

    async def _discard_then_close(self) -> None:
        # Let the tasks just cancelled by our caller (the connection's reader among them) unwind first: a stream has
        # one reader at a time.
        for _ in range(2):
            await asyncio.sleep(0)
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                while await self._reader.read(65536):
                    pass
        except (TimeoutError, OSError, RuntimeError):  # RuntimeError: another reader still waits on the stream
            pass
        finally:
            self._writer.close()

    async def wait_closed(self) -> None:
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    @property
    def writer(self) -> asyncio.StreamWriter:
        return self._writer


async def _read_act(reader: asyncio.StreamReader, size: int, act: str) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as e:
        raise HandshakeError(f"{act}: read {len(e.partial)} of {size} bytes", reason=f"{act}_READ_FAILED") from None
    except ConnectionError as e:
        raise HandshakeError(f"{act}: {e}", reason=f"{act}_READ_FAILED") from None


async def connect_and_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    our_privkey: bytes | StaticKey,
    their_pubkey: bytes,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    *,
    ephemeral_privkey: bytes | None = None,
) -> Transport:
    """Run the initiator's side of the handshake on an open connection."""
    handshake = InitiatorHandshake(our_privkey, their_pubkey, ephemeral_privkey)

    async def run() -> Transport:
        writer.write(handshake.act_one())
        await writer.drain()
        act_two = await _read_act(reader, ACT_TWO_SIZE, "ACT2")
        act_three, session = handshake.process_act_two(act_two)
        writer.write(act_three)
        await writer.drain()
        return Transport(reader, writer, session)

    return await _with_deadline(run(), timeout)


async def accept_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    our_privkey: bytes | StaticKey,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    *,
    ephemeral_privkey: bytes | None = None,
) -> Transport:
    """Run the responder's side of the handshake; `Transport.remote_pubkey` is the peer's node id."""
    handshake = ResponderHandshake(our_privkey, ephemeral_privkey)

    async def run() -> Transport:
        act_one = await _read_act(reader, ACT_ONE_SIZE, "ACT1")
        writer.write(handshake.process_act_one(act_one))
        await writer.drain()
        act_three = await _read_act(reader, ACT_THREE_SIZE, "ACT3")
        return Transport(reader, writer, handshake.process_act_three(act_three))

    return await _with_deadline(run(), timeout)


async def _with_deadline(coro: "asyncio.Future[Transport] | object", timeout: float) -> Transport:
    try:
        return await asyncio.wait_for(coro, timeout)  # type: ignore[arg-type]
    except asyncio.TimeoutError:
        raise HandshakeError(f"handshake not finished within {timeout}s", reason="TIMEOUT") from None
    except ConnectionError as e:
        raise HandshakeError(f"connection failed during handshake: {e}", reason="CONNECTION") from None
