"""The RPC server forgets a connection once it is gone: many connections opened and closed one after
another (answered, half-closed, dropped mid-request, sending garbage) leave no connection, task or
buffer behind.  (bench/bench_memory.py measures ampd's RSS over 100,000 of them.)"""

import asyncio
import gc
import json
import socket

from ampere.rpc.server import RpcConnection, RpcServer


def test_closed_connections_leave_nothing_behind(tmp_path):
    path = str(tmp_path / "rpc")

    async def dispatch(req, conn):
        if req.get("method") == "slow":
            await asyncio.sleep(0.05)
        return {"jsonrpc": "2.0", "id": req.get("id"), "result": {"ok": True}}

    def client(kind: str) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "slow" if kind == "drop" else "x"}).encode()
        if kind == "answered":
            s.sendall(req)
            buf = b""
            while not buf.endswith(b"\n\n"):
                buf += s.recv(4096)
        elif kind == "half":
            s.sendall(req)
            s.shutdown(socket.SHUT_WR)  # lightning-cli style: the answer still comes
            assert s.recv(4096).endswith(b"\n\n")
        elif kind == "drop":
            s.sendall(req)  # and gone before the answer
        elif kind == "garbage":
            s.sendall(b"{nope")
            s.shutdown(socket.SHUT_WR)
        s.close()

    async def main():
        server = RpcServer(path, dispatch, lambda level, msg: None)
        await server.start()
        kinds = ["answered", "half", "drop", "garbage", "silent"]
        for i in range(400):
            await asyncio.to_thread(client, kinds[i % len(kinds)])
        for _ in range(100):  # let the last closes and slow requests finish
            if not server.connections and not server.tasks:
                break
            await asyncio.sleep(0.02)
        assert not server.connections and not server.tasks
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, RpcConnection)]
        assert alive == []
        await server.stop()

    asyncio.run(main())


def test_eager_requests_answer_in_order_without_a_task(tmp_path):
    """A request started with `reply.eager` (an eager built-in such as getinfo) is answered within the read that
    brought it when its coroutine does not wait -- no task -- and runs on in a task when it does; 3,000 of them
    pipelined in one write are answered in order (answered at once, they do not recurse into the pump: the pump's
    loop goes on with the queue); the rest of a waiting one is cancelled with the server, and sees it."""
    path = str(tmp_path / "rpc")
    seen_cancel = []

    async def handler(req):
        if req["method"] == "wait":
            await asyncio.sleep(0.01)            # a future, then
            await asyncio.sleep(0)               # a bare yield
            return {"jsonrpc": "2.0", "id": req["id"], "result": {"waited": True}}
        if req["method"] == "hang":
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                seen_cancel.append(req["id"])
                raise
        if req["method"] == "boom":
            raise ValueError("bug")
        return {"jsonrpc": "2.0", "id": req["id"], "result": {"n": req["id"]}}

    async def dispatch(req, conn):
        raise AssertionError("every request here is started eagerly")

    def fast(req, conn, reply):
        reply.eager(handler(req))
        return True

    async def main():
        server = RpcServer(path, dispatch, lambda level, msg: None, fast=fast)
        await server.start()
        loop = asyncio.get_running_loop()
        real_create_task = loop.create_task
        created = []

        def counting(coro, **kw):
            created.append(getattr(coro, "__qualname__", "?"))
            return real_create_task(coro, **kw)
        loop.create_task = counting
        try:
            r, w = await asyncio.open_unix_connection(path, limit=1 << 24)
            w.write(b"".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "x"}).encode() for i in range(3000)))
            for i in range(3000):
                assert json.loads(await r.readuntil(b"\n\n")) == {"jsonrpc": "2.0", "id": i, "result": {"n": i}}
            assert not [c for c in created if "_complete" in c or "_resume" in c]
            w.write(json.dumps({"jsonrpc": "2.0", "id": "w", "method": "wait"}).encode())
            answer = json.loads(await r.readuntil(b"\n\n"))
            assert answer.get("result") == {"waited": True}, answer
            w.write(json.dumps({"jsonrpc": "2.0", "id": "b", "method": "boom"}).encode())
            answer = json.loads(await r.readuntil(b"\n\n"))
            assert answer["id"] == "b" and answer["error"]["code"] == -1
            w.write(json.dumps({"jsonrpc": "2.0", "id": "h", "method": "hang"}).encode())
            for _ in range(100):
                if server.tasks:
                    break
                await asyncio.sleep(0.01)
            assert server.tasks
        finally:
            loop.create_task = real_create_task
            await server.stop()
        await asyncio.sleep(0.05)
        assert seen_cancel == ["h"]
        w.close()

    asyncio.run(main())
