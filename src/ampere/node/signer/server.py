"""A signer in its own process: holds hsm_secret's keys and answers ampd over a unix socket.

    python -m ampere.node.signer.server --hsm-secret FILE --socket PATH [--dev-force-privkey HEX]
    ampd --signer-socket=PATH ...

It reads `hsm_secret` (ampd then never does), serves the methods of protocol.py with a LocalSigner, and
runs until killed (SIGTERM/SIGINT remove the socket).  Like CLN's hsmd it checks the shape of what it is
asked, not the channel policy (which a validating signer such as VLS adds on top).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from typing import Any, Callable

from ampere.ln.channel.signer import LocalChannelSigner
from ampere.node.signer.hsm_secret import HsmSecretError, read_hsm_secret
from ampere.node.signer.protocol import METHODS, ProtocolError, encode_frame, read_frame
from ampere.node.signer.signer import LocalSigner, WalletInput
from ampere.primitives.tx import Transaction


def _bytes(v: Any, size: int | None = None) -> bytes:
    if not isinstance(v, bytes) or (size is not None and len(v) != size):
        raise ValueError(f"expected {size or 'some'} bytes")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("expected an integer")
    return v


class SignerService:
    """The methods of protocol.py over one LocalSigner (one lock: requests are answered one at a time)."""

    def __init__(self, signer: LocalSigner) -> None:
        self.signer = signer
        self._channels: dict[tuple[bytes, int], LocalChannelSigner] = {}
        self._lock = threading.Lock()

    def _channel(self, peer: Any, dbid: Any) -> LocalChannelSigner:
        key = (_bytes(peer, 33), _int(dbid))
        ch = self._channels.get(key)
        if ch is None:
            ch = self._channels[key] = self.signer.channel_signer(*key)
        return ch

    def call(self, method: str, params: list) -> Any:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        with self._lock:
            fn: Callable[..., Any] = getattr(self, "_" + method)
            return fn(*params)

    # --- node key ----------------------------------------------------------------------------------------
    def _node_id(self) -> bytes:
        return self.signer.node_id

    def _ecdh(self, point: Any) -> bytes:
        return self.signer.ecdh(_bytes(point, 33))

    def _sign_gossip(self, message: Any) -> bytes:
        return self.signer.sign_gossip(_bytes(message))

    def _sign_invoice(self, hrp: Any, data: Any) -> bytes:
        if not isinstance(hrp, str):
            raise ValueError("hrp must be a string")
        return self.signer.sign_invoice(hrp, _bytes(data))

    def _sign_bolt12(self, message_name: Any, field_name: Any, root: Any) -> bytes:
        if not isinstance(message_name, str) or not isinstance(field_name, str):
            raise ValueError("message and field names must be strings")
        return self.signer.sign_bolt12(message_name, field_name, _bytes(root, 32))

    def _node_hmac(self, data: Any) -> bytes:
        return self.signer.node_hmac(_bytes(data))

    def _derive_secret(self, info: Any) -> bytes:
        return self.signer.derive_secret(_bytes(info))

    # --- wallet ------------------------------------------------------------------------------------------
    def _wallet_xpub(self, network: Any) -> str:
        if not isinstance(network, str):
            raise ValueError("network must be a string")
        return self.signer.wallet_xpub(network)

    def _sign_wallet_tx(self, tx: Any, inputs: Any) -> bytes:
        if not isinstance(inputs, list):
            raise ValueError("inputs must be a list")
        ins = [None if i is None else WalletInput(None if i[0] is None else _int(i[0]), _bytes(i[1]), _int(i[2]))
               for i in inputs]
        return self.signer.sign_wallet_tx(_bytes(tx), ins)

    # --- channels ----------------------------------------------------------------------------------------
    def _channel_pubkeys(self, peer: Any, dbid: Any) -> dict:
        p = self._channel(peer, dbid).pubkeys
        return {"funding_pubkey": p.funding_pubkey, "revocation_basepoint": p.revocation_basepoint,
                "payment_basepoint": p.payment_basepoint, "delayed_payment_basepoint": p.delayed_payment_basepoint,
                "htlc_basepoint": p.htlc_basepoint}

    def _commitment_point(self, peer: Any, dbid: Any, n: Any) -> bytes:
        return self._channel(peer, dbid).commitment_point(_int(n))

    def _commitment_secret(self, peer: Any, dbid: Any, n: Any) -> bytes:
        return self._channel(peer, dbid).commitment_secret(_int(n))

    def _channel_sign_input(self, peer: Any, dbid: Any, key: Any, tx: Any, input_index: Any, script_code: Any,
                            amount_sat: Any, sighash_type: Any, point: Any, secret: Any) -> bytes:
        if not isinstance(key, str):
            raise ValueError("key must be a string")
        return self._channel(peer, dbid).sign_input(
            key, Transaction.parse(_bytes(tx)), _int(input_index), _bytes(script_code), _int(amount_sat),
            _int(sighash_type), point=None if point is None else _bytes(point, 33),
            revealed_secret=None if secret is None else _bytes(secret, 32))

    def _channel_sign_gossip(self, peer: Any, dbid: Any, message: Any) -> bytes:
        return self._channel(peer, dbid).sign_gossip(_bytes(message))


def serve_connection(service: SignerService, conn: socket.socket) -> None:
    with conn:
        while True:
            try:
                req = read_frame(conn)
            except (EOFError, OSError):
                return
            except ProtocolError as e:
                conn.sendall(encode_frame({"error": f"protocol: {e}"}))
                return
            method, params = req.get("method"), req.get("params", [])
            try:
                if not isinstance(method, str) or not isinstance(params, list):
                    raise ValueError("a request needs a method name and a list of params")
                reply = {"result": service.call(method, params)}
            except Exception as e:  # a refused or malformed request is answered, never fatal to the signer
                reply = {"error": f"{method}: {e}"}
            try:
                conn.sendall(encode_frame(reply))
            except OSError:
                return


def listen(path: str) -> socket.socket:
    old_umask = os.umask(0o077)  # only our user may talk to the keys
    try:
        if os.path.exists(path):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(8)
    return listener


def close_listener(listener: socket.socket) -> None:
    """Stop serve_forever (shutdown wakes the thread blocked in accept; close alone does not, on Linux)."""
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()


def serve_forever(service: SignerService, listener: socket.socket) -> None:
    """Answer every connection (ampd makes one; a restarted ampd another) until the listener is closed."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve_connection, args=(service, conn), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ampere.node.signer.server", description=__doc__.splitlines()[0])
    ap.add_argument("--hsm-secret", required=True, help="the hsm_secret file (as lightning-dir/NETWORK/hsm_secret)")
    ap.add_argument("--socket", required=True, help="unix socket path to listen on")
    ap.add_argument("--dev-force-privkey", help="use this node private key (hex) instead of the derived one")
    args = ap.parse_args(argv)
    try:
        secret = read_hsm_secret(args.hsm_secret)
    except (OSError, HsmSecretError) as e:
        print(f"cannot read {args.hsm_secret}: {e}", file=sys.stderr)
        return 1
    node_key = bytes.fromhex(args.dev_force_privkey) if args.dev_force_privkey else None
    service = SignerService(LocalSigner(secret, node_key=node_key))
    listener = listen(args.socket)

    def stop(signum: int, frame: Any) -> None:
        try:
            os.unlink(args.socket)
        finally:
            os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"signer ready on {args.socket} for node {service.signer.node_id.hex()}", flush=True)
    serve_forever(service, listener)
    return 0


if __name__ == "__main__":
    sys.exit(main())
