"""Issue 16 item 7: every string reaching a command is checked at the RPC edge. A lone surrogate ("\\ud800", valid
JSON, not encodable as UTF-8) or an absurd length is -32602 naming the parameter, for every built-in command
(the list comes from the registry, as in test_bad_params.py), and changes nothing."""

import pytest

import ampere.rpc.commands  # noqa: F401  (registers every built-in command)
from ampere.rpc.params import MAX_PARAM_STRING
from ampere.rpc.registry import COMMANDS
from test_bad_params import call_raw, l1  # noqa: F401  (l1: the same module-scoped node fixture)

NODE_ID = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"   # the generator point
CASES = []
for name, cmd in sorted(COMMANDS.items()):
    if cmd.raw or cmd.allow_extra:
        continue
    for p in cmd.params:
        CASES.append((name, {p.name: "\ud800"}, p.name))
        CASES.append((name, {p.name: ["ok", {"x": "\udfff"}]}, p.name))
        CASES.append((name, [None] * cmd.params.index(p) + ["a\ud800b"], p.name))
CASES += [
    ("connect", {"id": NODE_ID, "host": "a" * 5000}, "host"),
    ("connect", {"id": NODE_ID, "host": "a" * 100 + ".example.com"}, "host"),
    ("connect", {"id": f"{NODE_ID}@{'a' * 5000}"}, "id"),
    ("connect", {"id": f"{NODE_ID}@{'b' * 70}.com:9735"}, "id"),
    ("invoice", {"amount_msat": 1000, "label": "x" * (MAX_PARAM_STRING + 1), "description": "d"}, "label"),
]


@pytest.mark.parametrize("method,params,name", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_strings(l1, method, params, name):  # noqa: F811  (l1: the imported fixture)
    before = call_raw(l1.rpc_path, "listdatastore", [])
    reply = call_raw(l1.rpc_path, method, params)
    assert "error" in reply, reply
    assert reply["error"]["code"] == -32602, reply
    assert reply["error"]["message"].startswith(f"{name}: "), reply
    assert call_raw(l1.rpc_path, "listdatastore", []) == before


def test_no_traceback_after_all_of_them(l1):  # noqa: F811
    assert "Traceback" not in l1.stderr()
    assert l1.rpc.getinfo()["id"]


def test_lone_surrogate_through_rpc_command_hook_and_plugin_method(node_factory):
    """Requests pass through plugins before any parameter check: the forwarded JSON must still encode."""
    import os
    plugins = os.path.join(os.path.dirname(__file__), "..", "plugins")
    node = node_factory.get_node(plugin=[os.path.join(plugins, "passthrough.py"), os.path.join(plugins, "helloworld.py")])
    reply = call_raw(node.rpc_path, "invoice", {"amount_msat": 1000, "label": "\ud800", "description": "d"})
    assert reply["error"]["code"] == -32602 and reply["error"]["message"].startswith("label: "), reply
    reply = call_raw(node.rpc_path, "hello", {"name": "x\ud800"})     # a plugin's method: checked as ours are
    assert reply["error"]["code"] == -32602 and reply["error"]["message"].startswith("name: "), reply
    reply = call_raw(node.rpc_path, "hello", ["x\ud800"])
    assert reply["error"]["code"] == -32602 and reply["error"]["message"].startswith("0: "), reply
    assert call_raw(node.rpc_path, "hello", {"name": "é"})["result"] == "Hello é"
    assert "Traceback" not in node.stderr()
