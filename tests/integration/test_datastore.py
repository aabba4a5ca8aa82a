"""The datastore RPCs with CLN's semantics and error codes, persisted across restarts."""

import pytest
from pyln.client import RpcError

from ampere.testing.schema import validate


@pytest.fixture(scope="module")
def l1(request):
    import tempfile

    from ampere.testing.nodes import NodeFactory

    factory = NodeFactory(tempfile.mkdtemp(prefix="amp-ds-"))
    request.addfinalizer(factory.cleanup)
    return factory.get_node()


def err(excinfo):
    return excinfo.value.error["code"]


def test_create_replace_append_generation(l1):
    r = l1.rpc.datastore(key=["t1", "a"], string="hello")
    validate("datastore", r)
    assert r == {"key": ["t1", "a"], "generation": 0, "hex": b"hello".hex(), "string": "hello"}
    with pytest.raises(RpcError) as e:
        l1.rpc.datastore(key=["t1", "a"], string="again")           # must-create is the default
    assert err(e) == 1202
    with pytest.raises(RpcError) as e:
        l1.rpc.datastore(key=["t1", "b"], string="x", mode="must-replace")
    assert err(e) == 1203
    r = l1.rpc.datastore(key=["t1", "a"], string=" world", mode="must-append", generation=0)
    assert r["string"] == "hello world" and r["generation"] == 1
    with pytest.raises(RpcError) as e:
        l1.rpc.datastore(key=["t1", "a"], string="x", mode="must-replace", generation=0)
    assert err(e) == 1204
    r = l1.rpc.datastore(key="t1x", hex="00ff", mode="create-or-append")
    assert r["hex"] == "00ff" and "string" not in r   # not UTF-8: no string form
    r = l1.rpc.datastore(key="t1x", hex="01", mode="create-or-append")
    assert r["hex"] == "00ff01" and r["generation"] == 1


def test_children_and_parents(l1):
    l1.rpc.datastore(key=["t2", "p", "c"], string="v")
    with pytest.raises(RpcError) as e:
        l1.rpc.datastore(key=["t2", "p"], string="v", mode="create-or-replace")
    assert err(e) == 1205
    with pytest.raises(RpcError) as e:
        l1.rpc.datastore(key=["t2", "p", "c", "d"], string="v")
    assert err(e) == 1206
    l1.rpc.datastore(key=["t2", "q"], string="w")
    listed = l1.rpc.listdatastore("t2")
    validate("listdatastore", listed)
    assert listed["datastore"] == [{"key": ["t2", "p"]},
                                   {"key": ["t2", "q"], "generation": 0, "hex": b"w".hex(), "string": "w"}]
    assert l1.rpc.listdatastore(["t2", "p", "c"])["datastore"][0]["string"] == "v"
    assert l1.rpc.listdatastore(["t2", "nothing"]) == {"datastore": []}


def test_bad_parameters_change_nothing(l1):
    for params, code in ([{"key": ["t3"], "string": "a", "hex": "00"}, -32602],
                         [{"key": ["t3"]}, -32602],
                         [{"key": ["t3"], "string": "a", "generation": 0}, -32602],
                         [{"key": ["t3"], "hex": "zz"}, -32602],
                         [{"key": [], "string": "a"}, -32602],
                         [{"key": ["t3"], "string": "a", "mode": "sometimes"}, -32602]):
        with pytest.raises(RpcError) as e:
            l1.rpc.call("datastore", params)
        assert err(e) == code
    assert l1.rpc.listdatastore("t3") == {"datastore": []}


def test_delete_and_usage(l1):
    l1.rpc.datastore(key=["t4", "x"], string="12345")
    u = l1.rpc.datastoreusage(["t4"])
    validate("datastoreusage", u)
    assert u == {"datastoreusage": {"key": "[t4]", "total_bytes": len("t4\x00x") + 5}}
    with pytest.raises(RpcError) as e:
        l1.rpc.deldatastore(["t4", "x"], 3)
    assert err(e) == 1201
    with pytest.raises(RpcError) as e:
        l1.rpc.deldatastore(["t4", "nope"])
    assert err(e) == 1200
    r = l1.rpc.deldatastore(["t4", "x"], 0)
    validate("deldatastore", r)
    assert r["string"] == "12345"
    assert l1.rpc.listdatastore("t4") == {"datastore": []}


def test_survives_restart(l1):
    l1.rpc.datastore(key=["t5"], string="durable")
    l1.restart()
    assert l1.rpc.listdatastore("t5")["datastore"][0]["string"] == "durable"
