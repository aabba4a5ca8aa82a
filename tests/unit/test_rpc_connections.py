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
