"""Every built-in command answers malformed parameters with -32602 naming the parameter, and
changes nothing.  New commands are covered automatically: the list comes from the registry."""

import json
import socket

import pytest

import ampere.rpc.commands  # noqa: F401  (registers every built-in command)
from ampere.rpc.params import p_any
from ampere.rpc.registry import COMMANDS

CASES = []
for name, cmd in sorted(COMMANDS.items()):
    if cmd.raw or cmd.allow_extra:
        continue
    CASES.append((name, {"no_such_parameter_xyz": 1}, "unknown parameter: no_such_parameter_xyz"))
    CASES.append((name, [None] * len(cmd.params) + [1], "too many parameters"))
    required = [p for p in cmd.params if p.required]
    if required:
        CASES.append((name, {}, f"missing required parameter: {required[0].name}"))
    for p in cmd.params:
        if p.parse is not p_any:
            params = {p.name: {"not": "valid"}}
            CASES.append((name, params, f"{p.name}: "))


@pytest.fixture(scope="module")
def l1(request):
    import tempfile

    from ampere.testing.nodes import NodeFactory

    factory = NodeFactory(tempfile.mkdtemp(prefix="amp-bp-"))
    request.addfinalizer(factory.cleanup)
    return factory.get_node()


def call_raw(path, method, params):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode())
    buf = b""
    while not buf.endswith(b"\n\n"):
        chunk = s.recv(65536)
        assert chunk, f"connection closed: {buf!r}"
        buf += chunk
    s.close()
    return json.loads(buf)


@pytest.mark.parametrize("method,params,message", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_params(l1, method, params, message):
    before = call_raw(l1.rpc_path, "listdatastore", [])
    reply = call_raw(l1.rpc_path, method, params)
    assert "error" in reply, reply
    assert reply["error"]["code"] == -32602
    assert message in reply["error"]["message"]
    assert call_raw(l1.rpc_path, "listdatastore", []) == before
