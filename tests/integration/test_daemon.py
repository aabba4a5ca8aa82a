"""ampd as a process: layout, identity, options, daemon mode, RPC framing."""

import hashlib
import hmac
import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from ampere.testing.nodes import AMPD, spawn_env
from ampere.testing.schema import validate

HELLO_PLUGIN = os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "plugins", "helloworld.py")


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 written out, independent of the node's implementation."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_layout_identity_and_getinfo(node_factory):
    l1 = node_factory.get_node(start=False)
    os.makedirs(l1.netdir)
    secret = bytes(range(32))
    with open(os.path.join(l1.netdir, "hsm_secret"), "wb") as f:
        f.write(secret)
    l1.start()
    info = l1.rpc.getinfo()
    assert "warning_not_implemented" not in info   # on-chain enforcement is in (issue 14)
    validate("getinfo", info)
    # Node id derived as CLN's hsmd does: HKDF-SHA256(secret, salt=u32 LE 0, info="nodeid").
    from coincurve import PrivateKey
    expected = PrivateKey(hkdf_sha256(secret, b"\x00" * 4, b"nodeid")).public_key.format().hex()
    assert info["id"] == expected
    assert info["color"] == expected[:6]
    assert info["network"] == "regtest" and info["lightning-dir"] == l1.netdir
    assert "warning_bitcoind_sync" in info   # no chain backend: said, not crashed
    assert stat.S_IMODE(os.stat(l1.rpc_path).st_mode) == 0o600


def test_hsm_secret_created_0600_and_stable(node_factory):
    l1 = node_factory.get_node()
    path = os.path.join(l1.netdir, "hsm_secret")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # CLN v25.12+'s format: 32-byte passphrase hash (zeros: none), then a 12-word BIP39 mnemonic.
    data = open(path, "rb").read()
    assert data[:32] == bytes(32) and len(data[32:].decode().split()) == 12
    node_id = l1.rpc.getinfo()["id"]
    l1.restart()
    assert l1.rpc.getinfo()["id"] == node_id


def test_encrypted_hsm_secret_refused_as_cln(node_factory):
    l1 = node_factory.get_node(start=False, may_fail=True)
    os.makedirs(l1.netdir)
    with open(os.path.join(l1.netdir, "hsm_secret"), "wb") as f:
        f.write(os.urandom(73))   # the legacy encrypted format: refused without --encrypted-hsm
    r = subprocess.run(l1.cmdline(), capture_output=True, text=True, timeout=60, env=spawn_env())
    assert r.returncode != 0
    assert "HSM initialization failed: Failed to load hsm_secret: Passphrase required but not provided" in r.stderr
    assert not os.path.exists(l1.rpc_path)


def test_config_files_and_alias(node_factory):
    l1 = node_factory.get_node(start=False)
    os.makedirs(l1.netdir)
    with open(os.path.join(l1.dir, "config"), "w") as f:
        f.write("# comment\nalias=satoshi\nrgb=ff0000\nallow-deprecated-apis=false\n")
    with open(os.path.join(l1.netdir, "config"), "w") as f:
        f.write("rgb=00ff00\n")
    l1.start()
    info = l1.rpc.getinfo()
    assert info["alias"] == "satoshi" and info["color"] == "00ff00"
    cfg = l1.rpc.listconfigs()["configs"]
    assert cfg["allow-deprecated-apis"] == {"value_bool": False, "source": f"{l1.dir}/config:4"}
    assert cfg["rgb"]["source"] == f"{l1.netdir}/config:1"
    validate("listconfigs", l1.rpc.listconfigs("alias"))


@pytest.mark.parametrize("args,message", [
    (["--not-an-option"], "--not-an-option: unrecognized option"),
    (["--rgb=xyz"], "--rgb=xyz"),
    (["--log-level=loud"], "unknown log level 'loud'"),
    (["--scheduling-policy=fifo"], "scheduling-policy is batch or normal"),
    (["--plugin-answer-poll-us=-1"], "must not be negative"),
])
def test_bad_option_exits_with_message(tmp_path, args, message):
    p = subprocess.run(AMPD + [f"--lightning-dir={tmp_path}", "--network=regtest", "--disable-chain"] + args,
                       capture_output=True, text=True, timeout=30, env=spawn_env())
    assert p.returncode == 1
    assert message in p.stderr


def test_help_and_version(tmp_path):
    p = subprocess.run(AMPD + [f"--lightning-dir={tmp_path}", "--help"], capture_output=True, text=True, timeout=30,
                       env=spawn_env())
    assert p.returncode == 0
    for opt in ("--lightning-dir", "--network", "--plugin-dir", "--log-level", "--bitcoin-rpcconnect"):
        assert opt in p.stdout
    assert not os.path.exists(os.path.join(tmp_path, "bitcoin", "hsm_secret"))  # --help touches nothing
    v = subprocess.run(AMPD + ["--version"], capture_output=True, text=True, env=spawn_env())
    assert v.returncode == 0 and v.stdout.startswith("v")


def test_daemon_mode_returns_once_rpc_answers(tmp_path):
    d = str(tmp_path / "d")
    t0 = time.time()
    p = subprocess.run(AMPD + [f"--lightning-dir={d}", "--network=regtest", "--disable-chain", "--daemon",
                               "--autolisten=false", f"--log-file={d}/log"], capture_output=True, text=True, timeout=30, env=spawn_env())
    try:
        assert p.returncode == 0, p.stderr
        rpc = os.path.join(d, "regtest", "lightning-rpc")
        # The parent exited only after the socket answers: no waiting needed.
        s = socket.socket(socket.AF_UNIX)
        s.connect(rpc)
        s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"getinfo","params":[]}')
        assert b'"result"' in _read_reply(s)
        with open(os.path.join(d, "ampd-regtest.pid")) as f:
            pid = int(f.read())
        os.kill(pid, 0)
        assert time.time() - t0 < 20
    finally:
        subprocess.run([sys.executable, "-m", "ampere.cli.amp_cli", f"--lightning-dir={d}", "--regtest", "stop"],
                       capture_output=True, env=spawn_env(), timeout=30)
    # The daemon removes its pid file as the last step of a clean shutdown.
    pidfile = os.path.join(d, "ampd-regtest.pid")
    deadline = time.time() + 20
    while os.path.exists(pidfile) and time.time() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(os.path.join(d, "ampd-regtest.pid"))


def _read_reply(s: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def _raw_call(path: str, payload: bytes) -> list[dict]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return [json.loads(part) for part in data.split(b"\n\n") if part.strip()]


def test_rpc_framing_ids_and_errors(node_factory):
    l1 = node_factory.get_node()
    # Several requests on one connection, in one write; ids echoed exactly; "\n\n" after each.
    replies = _raw_call(l1.rpc_path, b'{"jsonrpc":"2.0","id":"a/b:c#1","method":"getinfo","params":{}}'
                                     b'{"jsonrpc":"2.0","id":7,"method":"help","params":["getinfo"]}\n'
                                     b'{"jsonrpc":"2.0","id":8,"method":"nosuch","params":[]}'
                                     b'{"jsonrpc":"2.0","id":9,"method":"listconfigs","params":[1]}'
                                     b'{"jsonrpc":"1.0","id":10,"method":"getinfo","params":[]}')
    by_id = {r["id"]: r for r in replies}
    assert by_id["a/b:c#1"]["result"]["network"] == "regtest"
    assert by_id[7]["result"]["help"] == [{"command": "getinfo"}]
    assert by_id[8]["error"] == {"code": -32601, "message": "Unknown command 'nosuch'"}
    assert by_id[9]["error"]["code"] == -32602 and by_id[9]["error"]["message"].startswith("config:")
    assert by_id[10]["error"]["code"] == -32600


def test_garbage_gets_parse_error_and_node_keeps_serving(node_factory):
    l1 = node_factory.get_node()
    replies = _raw_call(l1.rpc_path, b"this is not json\n")
    assert replies[0]["error"]["code"] == -32700
    assert l1.rpc.getinfo()["id"]


def test_filter(node_factory):
    l1 = node_factory.get_node()
    r = _raw_call(l1.rpc_path, b'{"jsonrpc":"2.0","id":1,"method":"getinfo","params":{},'
                               b'"filter":{"id":true,"our_features":{"init":true}}}')[0]["result"]
    assert set(r) == {"id", "our_features"} and set(r["our_features"]) == {"init"}


def test_concurrent_connections(node_factory):
    l1 = node_factory.get_node()
    socks = []
    for i in range(50):
        s = socket.socket(socket.AF_UNIX)
        s.connect(l1.rpc_path)
        s.sendall(json.dumps({"jsonrpc": "2.0", "id": i, "method": "getinfo", "params": []}).encode())
        socks.append(s)
    for i, s in enumerate(socks):
        reply = json.loads(_read_reply(s))
        assert reply["id"] == i
        s.close()


def test_log_level_subsystem_filter_and_prefix(node_factory):
    # Default level info, but debug for the plugin manager only; every line carries the prefix.
    l1 = node_factory.get_node(start=False)
    l1.options["log-prefix"] = "l1-"
    l1.start(wait=False)
    l1.wait_for_log("Server started with public key")
    logs = l1.logs()
    assert all(line.startswith("l1-") for line in logs.splitlines() if line)
    l2 = node_factory.get_node(start=False)
    plugin = os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "plugins", "helloworld.py")
    l2.extra_args = ["--log-level=info", "--log-level=debug:plugin-manager", f"--plugin={plugin}"]
    l2.start()
    lines = l2.logs().splitlines()
    debug_lines = [ln for ln in lines if " DEBUG " in ln]
    assert debug_lines and all("plugin-manager" in ln for ln in debug_lines)


def test_setconfig_builtin_dynamic_option_persists(node_factory):
    from pyln.client import RpcError

    l1 = node_factory.get_node()
    with pytest.raises(RpcError) as e:
        l1.rpc.setconfig("alias", "nope")            # not dynamic: refused, nothing written
    assert e.value.error["code"] == -32602
    assert not os.path.exists(os.path.join(l1.netdir, "config.setconfig"))
    with pytest.raises(RpcError, match="^.*min-capacity-sat requires a value") as e:   # CLN's words
        l1.rpc.setconfig("min-capacity-sat")
    assert e.value.error == {"code": -32602, "message": "min-capacity-sat requires a value"}
    r = l1.rpc.setconfig("min-capacity-sat", 20000)
    assert r["config"]["value_int"] == 20000 and r["config"]["dynamic"] is True
    assert r["config"]["source"] == os.path.join(l1.netdir, "config.setconfig") + ":1"
    l1.restart()
    assert l1.rpc.listconfigs("min-capacity-sat")["configs"]["min-capacity-sat"]["value_int"] == 20000


def test_relative_plugin_path_is_relative_to_the_starting_directory(node_factory):
    # ampd moves into the network directory, but a relative --plugin means relative to where it started.
    l1 = node_factory.get_node(plugin=os.path.relpath(HELLO_PLUGIN, os.getcwd()))
    assert l1.rpc.call("hello", ["rel"]) == "Hello rel"


def _policies(pid: int) -> tuple[set[int], set[int]]:
    """(the scheduling policies of `pid`'s threads, those of its child processes)."""
    threads = {os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{pid}/task")}
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        kids = [int(k) for k in f.read().split()]
    return threads, {os.sched_getscheduler(k) for k in kids}


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH") or not os.path.exists("/proc/self/task/%d/children" % os.getpid()),
                    reason="Linux scheduling policies")
def test_scheduling_policy_of_threads_and_plugins(node_factory):
    # --scheduling-policy=batch (the default): every thread of ampd (event loop, database thread) and the plugins
    # it starts run under SCHED_BATCH; normal leaves them under the policy ampd was started with (the runner's).
    l1 = node_factory.get_node(plugin=HELLO_PLUGIN)
    l2 = node_factory.get_node(plugin=HELLO_PLUGIN, options={"scheduling-policy": "normal"})
    assert l1.rpc.call("hello", ["x"]) == "Hello x" and l2.rpc.call("hello", ["x"]) == "Hello x"
    threads, plugins = _policies(l1.proc.pid)
    assert threads == {os.SCHED_BATCH} and len(os.listdir(f"/proc/{l1.proc.pid}/task")) >= 2
    assert plugins == {os.SCHED_BATCH}
    started_with = os.sched_getscheduler(0)
    assert _policies(l2.proc.pid) == ({started_with}, {started_with})
    assert l1.rpc.listconfigs("scheduling-policy")["configs"]["scheduling-policy"]["value_str"] == "batch"
    assert l2.rpc.listconfigs("scheduling-policy")["configs"]["scheduling-policy"]["value_str"] == "normal"


def test_plugin_answer_poll_option(node_factory):
    # plugins/answer_poll.py: how long ampd polls for a quick plugin's answer (tests/unit/test_answer_poll.py shows
    # what it does); 0 turns it off, and plugins answer the same either way.
    l1 = node_factory.get_node(plugin=HELLO_PLUGIN)
    l2 = node_factory.get_node(plugin=HELLO_PLUGIN, options={"plugin-answer-poll-us": 0})
    assert l1.rpc.listconfigs("plugin-answer-poll-us")["configs"]["plugin-answer-poll-us"]["value_int"] == 250
    assert l2.rpc.listconfigs("plugin-answer-poll-us")["configs"]["plugin-answer-poll-us"]["value_int"] == 0
    for node in (l1, l2):
        assert [node.rpc.call("hello", [str(i)]) for i in range(50)] == [f"Hello {i}" for i in range(50)]
