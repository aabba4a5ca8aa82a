"""A Signer whose keys live in another process (server.py), reached over a unix socket.

Calls are synchronous (the channel core signs inside pure, synchronous functions, as lightningd waits on
hsmd): one request at a time on one connection.  When the signer process is gone every call raises
SignerUnavailable, so the operation that needed a signature is abandoned before any state it would have
produced is persisted or sent; the next call tries to reconnect.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from ampere.ln.channel.keys import ChannelPubkeys
from ampere.ln.channel.signer import ChannelSigner, SignerError
from ampere.node.signer.protocol import ProtocolError, encode_frame, read_frame
from ampere.node.signer.signer import Signer, SignerUnavailable, WalletInput
from ampere.primitives.tx import Transaction

__all__ = ["RemoteChannelSigner", "RemoteSigner"]

TIMEOUT = 30.0


class RemoteSigner(Signer):
    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.node_id = self._call("node_id")

    # --- transport ------------------------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            raise SignerUnavailable(f"signer at {self.path}: {e.strerror or e}") from None
        return sock

    def _call(self, method: str, *params: Any) -> Any:
        with self._lock:
            if self._sock is None:
                self._sock = self._connect()
            try:
                self._sock.sendall(encode_frame({"method": method, "params": list(params)}))
                reply = read_frame(self._sock)
            except (OSError, EOFError, ProtocolError) as e:
                self._sock.close()
                self._sock = None
                raise SignerUnavailable(f"signer at {self.path}: {method}: {e or type(e).__name__}") from None
        if "error" in reply:
            raise SignerError(f"signer refused {method}: {reply['error']}")
        return reply.get("result")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    # --- Signer -------------------------------------------------------------------------------------------
    def ecdh(self, point: bytes) -> bytes:
        return self._call("ecdh", bytes(point))

    def sign_gossip(self, message: bytes) -> bytes:
        return self._call("sign_gossip", bytes(message))

    def sign_invoice(self, hrp: str, data: bytes) -> bytes:
        return self._call("sign_invoice", hrp, bytes(data))

    def sign_bolt12(self, message_name: str, field_name: str, merkle_root: bytes) -> bytes:
        return self._call("sign_bolt12", message_name, field_name, bytes(merkle_root))

    def node_hmac(self, data: bytes) -> bytes:
        return self._call("node_hmac", bytes(data))

    def derive_secret(self, info: bytes) -> bytes:
        return self._call("derive_secret", bytes(info))

    def channel_signer(self, peer_id: bytes, dbid: int) -> RemoteChannelSigner:
        return RemoteChannelSigner(self, bytes(peer_id), int(dbid))

    def wallet_xpub(self, network: str) -> str:
        return self._call("wallet_xpub", network)

    def sign_wallet_tx(self, tx: bytes, inputs: list[WalletInput | None]) -> bytes:
        return self._call("sign_wallet_tx", bytes(tx),
                          [None if i is None else [i.keyidx, i.script, i.amount_sat] for i in inputs])


class RemoteChannelSigner(ChannelSigner):
    """One channel's signer in the signer process, named by (peer_id, dbid).  Public values are cached."""

    def __init__(self, remote: RemoteSigner, peer_id: bytes, dbid: int) -> None:
        self._remote = remote
        self._peer_id = peer_id
        self._dbid = dbid
        p = remote._call("channel_pubkeys", peer_id, dbid)
        self.pubkeys = ChannelPubkeys(
            funding_pubkey=p["funding_pubkey"], revocation_basepoint=p["revocation_basepoint"],
            payment_basepoint=p["payment_basepoint"], delayed_payment_basepoint=p["delayed_payment_basepoint"],
            htlc_basepoint=p["htlc_basepoint"])
        self._points: dict[int, bytes] = {}

    def commitment_point(self, n: int) -> bytes:
        point = self._points.get(n)
        if point is None:
            point = self._remote._call("commitment_point", self._peer_id, self._dbid, n)
            if len(self._points) >= 64:
                self._points.clear()
            self._points[n] = point
        return point

    def commitment_secret(self, n: int) -> bytes:
        return self._remote._call("commitment_secret", self._peer_id, self._dbid, n)

    def sign_input(self, key: str, tx: Transaction, input_index: int, script_code: bytes, amount_sat: int,
                   sighash_type: int, *, point: bytes | None = None, revealed_secret: bytes | None = None) -> bytes:
        return self._remote._call("channel_sign_input", self._peer_id, self._dbid, key, tx.serialize(), input_index,
                                  bytes(script_code), amount_sat, sighash_type, point, revealed_secret)

    def sign_gossip(self, message: bytes) -> bytes:
        return self._remote._call("channel_sign_gossip", self._peer_id, self._dbid, bytes(message))
