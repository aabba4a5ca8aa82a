"""`--dev-disconnect=FILE`: lightningd's scripted disconnections (common/dev_disconnect.c), for tests.

The file holds one line per disconnection point, consumed in order: a mode character, then a message
name as CLN spells it (`WIRE_COMMITMENT_SIGNED`), optionally `*N` for "the Nth such message".  Before
each message we send, the current line is read again (tests rewrite the file while the node runs); when
its name matches and its count runs out, the line is consumed and its mode applies:
  `-` close the connection instead of sending;  `+` send, then close;
  `0` blackhole: swallow this and every later write, read nothing more (the connection stays open);
  `x` send, then stop using the connection without closing it.
A line `permfail` after the one that disconnected: the peer's channels fail permanently (we go on-chain).
Any other line (or none) means send normally.
"""
from __future__ import annotations

import os
from typing import Any

NORMAL, BEFORE, AFTER, BLACKHOLE, DISABLE_AFTER = "=", "-", "+", "0", "x"


_NAMES: dict[int, str] = {}  # wire_name's answers (every peer_in/peer_out debug line asks)


def wire_name(msg_type: int) -> str:
    """CLN's peer_wire_name: WIRE_<CSV NAME> for a known message, else the number."""
    name = _NAMES.get(msg_type)
    if name is None:
        from ampere.wire.codec import MESSAGE_TYPES

        csv_name = getattr(MESSAGE_TYPES.get(msg_type), "NAME", None)
        name = f"WIRE_{csv_name.upper()}" if csv_name else f"UNKNOWN_WIRE_TYPE_{msg_type}"
        if len(_NAMES) < 65536:
            _NAMES[msg_type] = name
    return name


class DevDisconnect:
    def __init__(self, path: str, log: Any = None) -> None:
        self.path = path
        self.log = log
        self._fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
        self._offset = 0  # the start of the current line (lightningd's file position)
        self._line = ""
        self._len = 0
        self._count = 0

    def _next(self) -> None:
        data = os.pread(self._fd, 200, self._offset).decode("utf-8", "replace")
        line = data.split("\n", 1)[0]
        self._len = len(line.encode())
        name, star, count = line.partition("*")
        self._line = name
        self._count = int(count) if star and count.strip().isdigit() and int(count) >= 1 else 1

    def check(self, msg_type: int, peer: str = "") -> str:
        """The mode for sending a message of this type now (NORMAL unless a line matches)."""
        if not self._count:
            self._next()
        if not self._line or self._line[1:] != wire_name(msg_type):
            return NORMAL
        self._count -= 1
        if self._count:
            return NORMAL
        self._offset += self._len + 1
        if self.log is not None:
            self.log("debug", f"{peer}-connectd" if peer else "connectd",
                     f"dev_disconnect: {self._line} ({wire_name(msg_type)})")
        mode = self._line[0]
        return mode if mode in (BEFORE, AFTER, BLACKHOLE, DISABLE_AFTER) else NORMAL

    def permanent(self) -> bool:
        """lightningd's dev_disconnect_permanent: is the next line "permfail"?  Then it is consumed and the
        disconnection that just happened fails the peer's channels permanently (for tests of unilateral closes)."""
        if self._count:
            return False  # a line is being counted down: not at a "permfail" line
        data = os.pread(self._fd, 8, self._offset)
        if data != b"permfail":
            return False
        line = os.pread(self._fd, 200, self._offset).split(b"\n", 1)[0]
        self._offset += len(line) + 1
        return True

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass
