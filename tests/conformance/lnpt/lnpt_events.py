"""Events our scripts need beyond lnprototest's own."""
import io
import struct
from typing import Any, Optional, Tuple

from lnprototest import EventError, namespace
from lnprototest.event import PerConnEvent
from pyln.proto.message import Message

# Odd gossip the node may send unprompted to a peer that negotiated gossip_queries (BOLT 7: ignorable).
IGNORABLE = {"gossip_timestamp_filter", "query_channel_range", "channel_announcement", "channel_update",
             "node_announcement"}


class ExpectHangup(PerConnEvent):
    """BOLT 1 "fail the connection": the node closes it, possibly after a `warning` or `error` (the spec lets
    it send one first).  Anything else it sends on the way (except ignorable gossip) is a failure, and so is a
    connection still open after `timeout` seconds.  `must_explain=True` also requires the warning/error."""

    def __init__(self, connprivkey: Optional[str] = None, must_explain: bool = False, timeout: int = 20):
        super().__init__(connprivkey)
        self.must_explain = must_explain
        self.timeout = timeout

    def action(self, runner: Any) -> bool:
        super().action(runner)
        conn = self.find_conn(runner)
        conn.expected_error = True
        explained = None
        while True:
            kind, binmsg = runner.read_or_closed(conn, self.timeout)
            if kind == "closed":
                break
            if kind == "timeout":
                raise EventError(self, f"node did not close the connection within {self.timeout}s")
            name = _msgname(binmsg)
            if name in ("warning", "error"):
                explained = explained or (name, binmsg)
            elif name not in IGNORABLE:
                raise EventError(self, f"expected the connection to fail, got {name}: {binmsg.hex()}")
        if self.must_explain and explained is None:
            raise EventError(self, "connection closed without a warning or error")
        runner.add_stash("hangup", explained)
        return True


class ExpectErrorOrWarning(PerConnEvent):
    """The node sends `error` or `warning` (skipping ignorable gossip) -- e.g. refusing an open_channel."""

    def __init__(self, connprivkey: Optional[str] = None, kinds: Tuple[str, ...] = ("error", "warning"),
                 timeout: int = 20):
        super().__init__(connprivkey)
        self.kinds = kinds
        self.timeout = timeout

    def action(self, runner: Any) -> bool:
        super().action(runner)
        conn = self.find_conn(runner)
        conn.expected_error = True
        while True:
            kind, binmsg = runner.read_or_closed(conn, self.timeout)
            if kind != "msg":
                raise EventError(self, f"expected {'/'.join(self.kinds)}, connection {kind}")
            name = _msgname(binmsg)
            if name in self.kinds:
                return True
            if name not in IGNORABLE:
                raise EventError(self, f"expected {'/'.join(self.kinds)}, got {name}: {binmsg.hex()}")


def _msgname(binmsg: bytes) -> str:
    try:
        return Message.read(namespace(), io.BytesIO(binmsg)).messagetype.name
    except ValueError:
        return f"type {struct.unpack('>H', binmsg[:2])[0]}"
