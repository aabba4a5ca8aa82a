"""An lnprototest Runner for Ampere: `ampd` on `amp-chaind`, driven by lnprototest's scripted exchanges.

This module runs inside lnprototest's own virtualenv (.venv-lnprototest: lnprototest pins pyln-client < 26,
Ampere's venv has 26), so it imports nothing from Ampere: it starts `ampd` and `amp-chaind` as processes
with the interpreter named by $AMPERE_PYTHON (Ampere's venv) and talks to them over their RPC interfaces.

lnprototest computes our keys and signatures itself, so ampd runs with the secrets it expects, given with
lightningd's options: node key 0x01, wallet BIP32 seed 0x01, channel funding key 0x10, basepoint secrets
0x11-0x14 and shachain seed FF..FF.  The chain starts as lnprototest's bitcoind backend makes it: its fixed
block 1 (whose coinbase `tx_spendable` spends, paying the wallet of BIP32 seed 0x01) and 100 blocks on top.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from concurrent import futures
from typing import Any, Dict, List, Optional, Tuple, cast

import pyln.client
import pyln.proto.wire

import lnprototest
from lnprototest import (Conn, Event, EventError, ExpectDisconnect, KeySet, MustNotMsg, SpecFileError, namespace,
                         wait_for)

AMPERE_PYTHON = os.environ.get("AMPERE_PYTHON", "python3")
# Extra amp-chaind options, e.g. "-fallbackfee=0.00001" for lnprototest's own scripts (they open at 253 perkw,
# which CLN accepts on their bitcoind since regtest has no estimate there and the floor is all it knows).
CHAIND_ARGS = os.environ.get("AMPERE_LNPT_CHAIND_ARGS", "").split()
TIMEOUT = int(os.environ.get("TIMEOUT", "30"))
LOG = logging.getLogger("ampere_runner")

NODE_PRIVKEY = "01"
FUNDING_PRIVKEY = "10".rjust(64, "0")
CHANNEL_SECRETS = "/".join([f"{n:064x}" for n in (0x10, 0x11, 0x12, 0x13, 0x14)] + ["FF" * 32])
BIP32_SEED = "01".rjust(64, "0")
NODE_PUBKEY = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"  # pubkey of privkey 1

# lnprototest's block #1 (backend/bitcoind.py): its coinbase pays the key that signs tx_spendable.
BLOCK_1 = (
    "0000002006226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f84591a56720aabc8023cecf71801c5e0f9"
    "d049d0c550ab42412ad12a67d89f3a3dbb6c60ffff7f200400000001020000000001010000000000000000000000000000000000000000"
    "000000000000000000000000ffffffff03510101ffffffff0200f2052a0100000016001419f5016f07fe815f611df3a2a0802dbd74e634"
    "c40000000000000000266a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf901200000000000"
    "00000000000000000000000000000000000000000000000000000000000000"
)

# BOLT 9 feature names -> even bit; has_option() answers for these names, with and without "option_" (scripts
# ask for both spellings, e.g. "option_gossip_queries", as lightningd's --list-features-only prints them).
FEATURE_BITS = {
    "option_data_loss_protect": 0, "option_upfront_shutdown_script": 4, "gossip_queries": 6,
    "var_onion_optin": 8, "gossip_queries_ex": 10, "option_static_remotekey": 12, "payment_secret": 14,
    "basic_mpp": 16, "option_support_large_channel": 18, "option_anchor_outputs": 20,
    "option_anchors_zero_fee_htlc_tx": 22, "option_route_blinding": 24, "option_shutdown_anysegwit": 26,
    "option_dual_fund": 28, "option_quiesce": 34, "option_onion_messages": 38, "option_channel_type": 44,
    "option_scid_alias": 46, "option_payment_metadata": 48, "option_zeroconf": 50, "option_anchors": 22,
}
# Not feature bits: what the node does, in lightningd's "supports_" spelling (ampd always sends and requires
# channel_type in open_channel/accept_channel).
SUPPORTS = {"supports_open_accept_channel_type": "true"}
# What a node may send before it closes a connection it fails (BOLT 1): warning (1), error (17); and the gossip
# it may send any peer on the way (channel_announcement, node_announcement, channel_update,
# query_channel_range, gossip_timestamp_filter).
DISCONNECT_MAY_SEND = {1, 17, 256, 257, 258, 263, 265}


def node_init_features() -> str:
    """ampd's init features, without starting a node: scripts ask has_option() while they are being built,
    before the runner starts anything (lightningd's runner asks `lightningd --list-features-only`)."""
    code = "from ampere.node.app.features import our_feature_set; print(our_feature_set()['init'])"
    return subprocess.run([AMPERE_PYTHON, "-c", code], check=True, capture_output=True, text=True,
                          timeout=120).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        pass


class ChainRpcError(Exception):
    pass


class AmpChaind:
    """amp-chaind on a free port, with lnprototest's starting chain."""

    def __init__(self, directory: str):
        self.datadir = os.path.join(directory, "chaind")
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.address: Optional[str] = None

    def start(self) -> None:
        shutil.rmtree(self.datadir, ignore_errors=True)
        os.makedirs(self.datadir)
        self.port = free_port()
        with open(os.path.join(self.datadir, "stdout"), "ab") as out:
            self.proc = subprocess.Popen(
                [AMPERE_PYTHON, "-m", "ampere.chain.regtest.daemon", f"-datadir={self.datadir}",
                 f"-rpcport={self.port}", "-rpcbind=127.0.0.1", "-rpcuser=rpcuser", "-rpcpassword=rpcpass",
                 *CHAIND_ARGS],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"amp-chaind exited with {self.proc.returncode}")
            try:
                self.rpc("getblockcount")
                break
            except (OSError, http.client.HTTPException, ChainRpcError):
                if time.time() > deadline:
                    raise RuntimeError("amp-chaind did not answer")
                time.sleep(0.05)
        res = self.rpc("submitblock", BLOCK_1)
        if res is not None:
            raise RuntimeError(f"amp-chaind refused lnprototest's block 1: {res}")
        self.address = self.rpc("getnewaddress")
        self.rpc("generatetoaddress", 100, self.address)

    def rpc(self, method: str, *args: Any) -> Any:
        body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": list(args)})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request("POST", "/", body, {"Authorization": "Basic " + base64.b64encode(b"rpcuser:rpcpass").decode(),
                                             "Content-Type": "application/json"})
            reply = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        if reply.get("error"):
            raise ChainRpcError(f"{method}: {reply['error']}")
        return reply["result"]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.rpc("stop")
                self.proc.wait(20)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class AmpereConn(Conn):
    def __init__(self, connprivkey: str, port: int):
        super().__init__(connprivkey)
        self.connection = pyln.proto.wire.connect(
            pyln.proto.wire.PrivateKey(bytes.fromhex(self.connprivkey.to_hex())),
            pyln.proto.wire.PublicKey(bytes.fromhex(NODE_PUBKEY)), "127.0.0.1", port)


class Runner(lnprototest.Runner):
    """lnprototest's Runner interface for ampd (select with --runner=ampere_runner.Runner)."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.running = False
        self.chain = AmpChaind(self.directory)
        self.proc: Optional[subprocess.Popen] = None
        self.rpc: Optional[pyln.client.LightningRpc] = None
        self.lightning_dir = os.path.join(self.directory, "ampd")
        self.startup_flags: List[str] = [f"--{f}" for f in config.getoption("runner_args")]
        self.executor = futures.ThreadPoolExecutor(max_workers=10)
        self.fundchannel_future: Optional[futures.Future] = None
        self.fundchannel_expect_fail = False
        self.options: Dict[str, str] = self._features(node_init_features())
        self.port = 0

    # ---- processes ----------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.running

    def start(self) -> None:
        t = time.time()
        self.chain.start()
        self._start_ampd()
        LOG.info("chain and node started in %.1fs", time.time() - t)

    def _start_ampd(self) -> None:
        shutil.rmtree(self.lightning_dir, ignore_errors=True)
        os.makedirs(self.lightning_dir)
        self.port = free_port()
        args = [AMPERE_PYTHON, "-m", "ampere.cli.ampd", f"--lightning-dir={self.lightning_dir}", "--network=regtest",
                "--developer", f"--dev-force-privkey={NODE_PRIVKEY.rjust(64, '0')}",
                f"--dev-force-bip32-seed={BIP32_SEED}", f"--dev-force-channel-secrets={CHANNEL_SECRETS}",
                "--funding-confirms=3", "--dev-bitcoind-poll=1", "--dev-fast-gossip",
                f"--bind-addr=127.0.0.1:{self.port}", "--bitcoin-rpcconnect=127.0.0.1",
                f"--bitcoin-rpcport={self.chain.port}", "--bitcoin-rpcuser=rpcuser", "--bitcoin-rpcpassword=rpcpass",
                "--log-level=debug", "--log-file=log"] + self.startup_flags
        with open(os.path.join(self.lightning_dir, "stderr"), "ab") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=die_with_parent)
        self.running = True
        self.rpc = pyln.client.LightningRpc(os.path.join(self.lightning_dir, "regtest", "lightning-rpc"))

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ampd exited with {self.proc.returncode}: {self.stderr()}")
            try:
                return self.rpc.getinfo()["blockheight"] == self.getblockheight()
            except Exception:
                return False

        wait_for(ready, timeout=TIMEOUT)
        info = self.rpc.getinfo()
        if info["id"] != NODE_PUBKEY:
            raise RuntimeError(f"ampd ignored --dev-force-privkey: id {info['id']}")
        if self._features(info["our_features"]["init"]) != self.options:
            raise RuntimeError(f"ampd's init features {info['our_features']['init']} are not {self.options}")
        # lnprototest pays the first keys of the BIP32 seed's wallet: make them ours, as its CLN runner does.
        for _ in range(5):
            self.rpc.newaddr()

    @staticmethod
    def _features(init_hex: str) -> Dict[str, str]:
        bits = int(init_hex, 16) if init_hex else 0
        out = dict(SUPPORTS)
        for name, even in FEATURE_BITS.items():
            value = "even" if bits >> even & 1 else "odd" if bits >> (even + 1) & 1 else None
            if value:
                out[name] = value
                out[name[len("option_"):] if name.startswith("option_") else "option_" + name] = value
        return out

    def stderr(self) -> str:
        try:
            with open(os.path.join(self.lightning_dir, "stderr")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def _stop_ampd(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.rpc.stop()
                    self.proc.wait(20)
                except Exception:
                    pass
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None
        for c in self.conns.values():
            try:
                cast(AmpereConn, c).connection.connection.close()
            except OSError:
                pass

    def stop(self, print_logs: bool = False) -> None:
        try:
            # A fundchannel the script did not expect to fail, failed: that is the script's failure (raised
            # once both processes are stopped).
            self._kill_fundchannel()
        finally:
            self._stop_ampd()
            self.chain.stop()
            self.running = False
            if print_logs:
                LOG.info("---- ampd log ----\n%s", self.node_log())

    def node_log(self) -> str:
        try:
            with open(os.path.join(self.lightning_dir, "log")) as f:
                return f.read()[-20000:]
        except OSError:
            return ""

    def restart(self) -> None:
        # TryAll runs the sequence again with the next alternative: a fresh node on a fresh chain.
        self.stop()
        super().restart()
        self.start()

    def teardown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        try:
            self.stop()  # also after a failed start: whatever process did start is stopped
        except Exception as e:  # noqa: BLE001 - teardown must still remove the directory
            LOG.warning("stopping ampd/amp-chaind: %r", e)
        shutil.rmtree(self.directory, ignore_errors=True)

    # ---- peers ----------------------------------------------------------------------------------------
    def connect(self, event: Event, connprivkey: str) -> None:
        self.add_conn(AmpereConn(connprivkey, self.port))

    def recv(self, event: Event, conn: Conn, outbuf: bytes) -> None:
        try:
            cast(AmpereConn, conn).connection.send_message(outbuf)
        except (BrokenPipeError, ConnectionResetError):
            msg = self.get_output_message(conn, event, timeout=1)
            raise EventError(event, "Connection closed" + (f" after sending {msg.hex()}" if msg else ""))

    def get_output_message(self, conn: Conn, event: Event, timeout: int = TIMEOUT) -> Optional[bytes]:
        fut = self.executor.submit(cast(AmpereConn, conn).connection.read_message)
        try:
            return fut.result(timeout)
        except futures.TimeoutError:
            return None
        except Exception as e:  # the node hung up
            LOG.debug("read: %r", e)
            return None

    def read_or_closed(self, conn: Conn, timeout: float) -> Tuple[str, Optional[bytes]]:
        """("msg", bytes), ("closed", None) once the node hung up, or ("timeout", None)."""
        fut = self.executor.submit(cast(AmpereConn, conn).connection.read_message)
        try:
            msg = fut.result(timeout)
        except futures.TimeoutError:
            return "timeout", None
        except (OSError, ValueError) as e:  # reset, or a short read (pyln-proto raises ValueError)
            LOG.debug("read: %r", e)
            return "closed", None
        return ("closed", None) if msg is None else ("msg", msg)

    def check_error(self, event: Event, conn: Conn) -> Optional[str]:
        super().check_error(event, conn)
        if isinstance(event, ExpectDisconnect):
            return self._check_disconnect(conn)
        msg = self.get_output_message(conn, event)
        return None if msg is None else msg.hex()

    def _check_disconnect(self, conn: Conn) -> Optional[str]:
        """lnprototest's ExpectDisconnect passes when this returns None: the node closed the connection.
        BOLT 1 "fail the connection" lets it send a `warning` or `error` first ("MAY send a `warning`",
        "SHOULD send an `error`" before closing); lnprototest's event predates that and takes any message as
        "did not disconnect" (lightningd sends a warning too, lost in the race with its close).  So: the node
        must close the connection within TIMEOUT, having sent nothing but warning/error (or odd gossip, which
        BOLT 7 lets it send to anyone); anything else, or an open connection, is returned as the failure."""
        while True:
            kind, binmsg = self.read_or_closed(conn, TIMEOUT)
            if kind == "closed":
                return None
            if kind == "timeout":
                return f"connection still open after {TIMEOUT}s"
            msgtype = struct.unpack(">H", binmsg[:2])[0]
            if msgtype not in DISCONNECT_MAY_SEND:
                return binmsg.hex()
            LOG.info("node sent type %d before closing: %s", msgtype, binmsg.hex())

    def check_final_error(self, event: Event, conn: Conn, expected: bool, must_not_events: List[MustNotMsg]) -> None:
        if not expected:
            # 18 zero bytes are not a valid BOLT 8 packet: the node hangs up once it has handled everything
            # before it; whatever it sent until then must not be an error (nor a message the script banned).
            sock = cast(AmpereConn, conn).connection.connection
            try:
                sock.send(bytes(18))
            except OSError:
                pass
            t = time.time()
            while True:
                binmsg = self.get_output_message(conn, event, timeout=10)
                if binmsg is None:
                    LOG.info("node hung up after %.1fs", time.time() - t)
                    break
                for e in must_not_events:
                    if e.matches(binmsg):
                        raise EventError(event, f"Got msg banned by {e}: {binmsg.hex()}")
                msgtype = struct.unpack(">H", binmsg[:2])[0]
                if msgtype == namespace().get_msgtype("error").number:
                    raise EventError(event, f"Got error msg: {binmsg.hex()}")
        cast(AmpereConn, conn).connection.connection.close()

    # ---- chain ----------------------------------------------------------------------------------------
    def getblockheight(self) -> int:
        return self.chain.rpc("getblockcount")

    def trim_blocks(self, newheight: int) -> None:
        self.chain.rpc("invalidateblock", self.chain.rpc("getblockhash", newheight + 1))

    def add_blocks(self, event: Event, txs: List[str], n: int) -> None:
        for tx in txs:
            self.chain.rpc("sendrawtransaction", tx)
        self.chain.rpc("generatetoaddress", n, self.chain.address)
        height = self.getblockheight()
        wait_for(lambda: self.rpc.getinfo()["blockheight"] == height, timeout=TIMEOUT)

    def expect_tx(self, event: Event, txid: str) -> None:
        revtxid = bytes.fromhex(txid)[::-1].hex()
        try:
            wait_for(lambda: revtxid in self.chain.rpc("getrawmempool"), timeout=TIMEOUT)
        except ValueError:
            raise EventError(event, f"Did not broadcast {revtxid}: mempool {self.chain.rpc('getrawmempool')}")

    # ---- node commands --------------------------------------------------------------------------------
    def invoice(self, event: Event, amount: int, preimage: str) -> None:
        self.rpc.invoice(amount_msat=amount, label=str(event), description=f"invoice from {event}", preimage=preimage)

    def accept_add_fund(self, event: Event) -> None:
        raise SpecFileError(event, "Ampere does not support dual funding (option_dual_fund)")

    def init_rbf(self, event: Event, conn: Conn, channel_id: str, amount: int, utxo_txid: str, utxo_outnum: int,
                 feerate: int) -> None:
        raise SpecFileError(event, "Ampere does not support dual funding RBF")

    def fundchannel(self, event: Event, conn: Conn, amount: int, feerate: int = 253, expect_fail: bool = False) -> None:
        if self.fundchannel_future is not None and not self.fundchannel_future.done():
            raise SpecFileError(event, "fundchannel while another is running")
        peer_id = conn.pubkey.format().hex()

        def fund() -> Any:
            # The script's init may still be on its way: the node must know the peer first.
            wait_for(lambda: any(p.get("connected") for p in self.rpc.listpeers(peer_id)["peers"]), timeout=TIMEOUT)
            # regtest cannot estimate fees: give the feerate, as the scripts expect it.
            return self.rpc.fundchannel(peer_id, amount, feerate=f"{feerate}perkw")

        self.fundchannel_expect_fail = expect_fail
        self.fundchannel_future = self.executor.submit(fund)

    def _kill_fundchannel(self) -> None:
        fut, self.fundchannel_future = self.fundchannel_future, None
        if fut is None or not fut.done() or self.fundchannel_expect_fail:
            return
        exc = fut.exception()
        if exc is not None:
            raise exc

    def close_channel(self, channel_id: str) -> None:
        self.rpc.close(channel_id)

    def addhtlc(self, event: Event, conn: Conn, amount: int, preimage: str) -> None:
        peer_id = conn.pubkey.format().hex()
        channels = self.rpc.listpeerchannels(peer_id)["channels"]
        if not channels:
            raise SpecFileError(event, f"no channel with {peer_id}")
        ch = channels[0]
        scid = ch.get("short_channel_id") or ch.get("alias", {}).get("local")
        payhash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        self.rpc.sendpay([{"amount_msat": amount, "id": peer_id, "delay": 5, "channel": scid}], payhash)

    # ---- fixed secrets --------------------------------------------------------------------------------
    def get_keyset(self) -> KeySet:
        return KeySet(revocation_base_secret="11".rjust(64, "0"), payment_base_secret="12".rjust(64, "0"),
                      delayed_payment_base_secret="13".rjust(64, "0"), htlc_base_secret="14".rjust(64, "0"),
                      shachain_seed="FF" * 32)

    def get_node_privkey(self) -> str:
        return NODE_PRIVKEY

    def get_node_bitcoinkey(self) -> str:
        return FUNDING_PRIVKEY

    def has_option(self, optname: str) -> Optional[str]:
        return self.options.get(optname)

    def add_startup_flag(self, flag: str) -> None:
        self.startup_flags.append(f"--{flag}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("select this runner with pytest --runner=ampere_runner.Runner")
