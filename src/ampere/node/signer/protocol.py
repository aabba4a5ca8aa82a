"""The signer process's wire format: what ampd (client.py) and the signer (server.py) exchange.

One request, one response, each a frame: a 4-byte big-endian length then that many bytes of JSON.
  request   {"method": NAME, "params": [...]}
  response  {"result": VALUE} or {"error": MESSAGE}
Values are JSON numbers, strings, null, lists, objects, and bytes as {"x": hex}.  The methods are the
Signer interface (signer.py) with each channel named by (peer_id, dbid) instead of an object:
  node_id() ecdh(point) sign_gossip(message) sign_invoice(hrp, data) sign_bolt12(msg, field, root)
  node_hmac(data) derive_secret(info) wallet_xpub(network) sign_wallet_tx(tx, [[keyidx, script, sat] | null])
  channel_pubkeys(peer, dbid) commitment_point(peer, dbid, n) commitment_secret(peer, dbid, n)
  channel_sign_input(peer, dbid, key, tx, input_index, script_code, amount_sat, sighash_type, point, secret)
  channel_sign_gossip(peer, dbid, message)
"""

from __future__ import annotations

import json
import socket
from typing import Any

MAX_FRAME = 4 * 1024 * 1024  # a funding or sweep transaction is far smaller

METHODS = frozenset({
    "node_id", "ecdh", "sign_gossip", "sign_invoice", "sign_bolt12", "node_hmac", "derive_secret",
    "wallet_xpub", "sign_wallet_tx", "channel_pubkeys", "commitment_point", "commitment_secret",
    "channel_sign_input", "channel_sign_gossip",
})


class ProtocolError(Exception):
    """A frame that is not one (too long, cut short, not the JSON above)."""


def _enc(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return {"x": bytes(v).hex()}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        return {k: _enc(x) for k, x in v.items()}
    return v


def _dec(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"x"} and isinstance(v["x"], str):
            try:
                return bytes.fromhex(v["x"])
            except ValueError:
                raise ProtocolError("bad hex") from None
        return {k: _dec(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v


def encode_frame(obj: dict) -> bytes:
    body = json.dumps(_enc(obj), separators=(",", ":")).encode()
    return len(body).to_bytes(4, "big") + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket) -> dict:
    """The next frame's object; EOFError when the other side closed between frames."""
    n = int.from_bytes(_recv_exact(sock, 4), "big")
    if n > MAX_FRAME:
        raise ProtocolError(f"frame of {n} bytes")
    try:
        obj = json.loads(_recv_exact(sock, n))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError("frame is not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("frame is not an object")
    return _dec(obj)
