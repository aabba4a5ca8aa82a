"""The asyncio wrapper over real sockets: localhost TCP and a unix socket, plus hostile peers."""

from __future__ import annotations

import asyncio
import os

import coincurve
import pytest

from ampere.node.net.transport import Transport, accept_handshake, connect_and_handshake
from ampere.wire.errors import ConnectionClosed, HandshakeError, TransportError
from ampere.wire.noise import MAX_MESSAGE_SIZE

SERVER_PRIV = bytes.fromhex("21" * 32)
SERVER_PUB = coincurve.PrivateKey(SERVER_PRIV).public_key.format()
CLIENT_PRIV = bytes.fromhex("11" * 32)
CLIENT_PUB = coincurve.PrivateKey(CLIENT_PRIV).public_key.format()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def _echo_server(start, **kwargs):
    """Start a server that handshakes and echoes messages; returns (server, accepted transports)."""
    accepted: asyncio.Queue = asyncio.Queue()

    async def on_client(reader, writer):
        try:
            transport = await accept_handshake(reader, writer, SERVER_PRIV, timeout=kwargs.get("timeout", 5))
        except HandshakeError as e:
            await accepted.put(e)
            writer.close()
            return
        await accepted.put(transport)
        try:
            while True:
                msg = await transport.read_message()
                await transport.send_message(msg)
        except (ConnectionClosed, TransportError, ConnectionError) as e:
            await accepted.put(e)
        finally:
            transport.close()

    server = await start(on_client)
    return server, accepted


async def _exchange(reader, writer, accepted) -> None:
    client = await connect_and_handshake(reader, writer, CLIENT_PRIV, SERVER_PUB, timeout=5)
    server_side = await accepted.get()
    assert isinstance(server_side, Transport)
    assert client.remote_pubkey == SERVER_PUB and server_side.remote_pubkey == CLIENT_PUB
    for msg in (b"\x00\x12" + bytes(4), os.urandom(MAX_MESSAGE_SIZE), b"", os.urandom(1000)):
        await client.send_message(msg)
        assert await client.read_message() == msg
    # The frames queued in one turn of the loop reach the socket in ONE write, at the end of the turn (or at
    # drain/close), in order. Many messages in a row crosses a key rotation (every 1000 encryptions = 500 messages).
    writes = []
    real_write = writer.write
    writer.write = lambda data: (writes.append(len(data)), real_write(data))[1]
    for i in range(600):
        client.write_message(i.to_bytes(2, "big"))
    assert writes == []
    await client.drain()
    assert len(writes) == 1
    for i in range(600):
        assert await client.read_message() == i.to_bytes(2, "big")
    for i in range(3):
        client.write_message(b"\x00\x20" + bytes([i]))
    await asyncio.sleep(0)  # the turn ends: written without a drain
    assert len(writes) == 2
    for i in range(3):
        assert await client.read_message() == b"\x00\x20" + bytes([i])
    client.write_message(b"\x00\x21")  # queued, then close: written before the connection ends
    client.close()
    assert len(writes) == 3
    await client.wait_closed()
    assert isinstance(await accepted.get(), ConnectionClosed)


def test_tcp_localhost():
    async def main():
        server, accepted = await _echo_server(lambda cb: asyncio.start_server(cb, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await _exchange(reader, writer, accepted)

    run(main())


def test_unix_socket(tmp_path):
    path = str(tmp_path / "peer")

    async def main():
        server, accepted = await _echo_server(lambda cb: asyncio.start_unix_server(cb, path))
        async with server:
            reader, writer = await asyncio.open_unix_connection(path)
            await _exchange(reader, writer, accepted)

    run(main())


def test_responder_times_out_a_stalled_handshake():
    async def main():
        server, accepted = await _echo_server(lambda cb: asyncio.start_server(cb, "127.0.0.1", 0), timeout=0.3)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(bytes(20))  # part of act one, then nothing
            await writer.drain()
            err = await accepted.get()
            assert isinstance(err, HandshakeError) and err.reason == "TIMEOUT"
            assert await reader.read() == b""  # the server hung up
            writer.close()

    run(main())


def test_initiator_times_out_a_silent_responder():
    async def main():
        async def silent(reader, writer):
            await reader.read(50)
            await asyncio.sleep(5)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with pytest.raises(HandshakeError) as info:
                await connect_and_handshake(reader, writer, CLIENT_PRIV, SERVER_PUB, timeout=0.3)
            assert info.value.reason == "TIMEOUT"
            writer.close()
            server.close()

    run(main())


def test_garbage_handshake_is_refused():
    async def main():
        server, accepted = await _echo_server(lambda cb: asyncio.start_server(cb, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(50))
            await writer.drain()
            err = await accepted.get()
            assert isinstance(err, HandshakeError) and err.reason in ("ACT1_BAD_VERSION", "ACT1_BAD_PUBKEY")
            assert await reader.read() == b""  # no reply at all: "without any further messages"
            writer.close()

    run(main())


def test_truncated_frame_is_a_transport_error():
    async def main():
        server, accepted = await _echo_server(lambda cb: asyncio.start_server(cb, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            client = await connect_and_handshake(reader, writer, CLIENT_PRIV, SERVER_PUB, timeout=5)
            await accepted.get()
            frame = client._session.encrypt_message(b"hello world")
            writer.write(frame[:-5])  # cut the frame short, then hang up
            await writer.drain()
            writer.close()
            err = await accepted.get()
            assert isinstance(err, TransportError) and not isinstance(err, ConnectionClosed)
            assert err.reason == "TRUNCATED"

    run(main())
