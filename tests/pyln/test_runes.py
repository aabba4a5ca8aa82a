"""Runes as CLN's tests use them: blacklistrune (and its old name destroyrune), rate and per restrictions,
over checkrune and commando."""
import pytest
from pyln.client import RpcError


def test_blacklistrune(node_factory):
    l1 = node_factory.get_node()
    runes = [l1.rpc.createrune()["rune"] for _ in range(5)]   # unique ids 0..4
    assert l1.rpc.blacklistrune() == {"blacklist": []}
    assert l1.rpc.blacklistrune(start=1)["blacklist"] == [{"start": 1, "end": 1}]
    assert l1.rpc.blacklistrune(start=3, end=4)["blacklist"] == [{"start": 1, "end": 1}, {"start": 3, "end": 4}]
    # Adjacent ranges merge, as lightningd's.
    assert l1.rpc.blacklistrune(start=2)["blacklist"] == [{"start": 1, "end": 4}]
    with pytest.raises(RpcError, match="Blacklisted rune") as e:
        l1.rpc.checkrune(rune=runes[2], method="getinfo")
    assert e.value.error["code"] == 1503
    assert l1.rpc.checkrune(rune=runes[0], method="getinfo")["valid"] is True
    shown = {r["unique_id"]: r for r in l1.rpc.showrunes()["runes"]}
    assert shown["3"]["blacklisted"] is True and "blacklisted" not in shown["0"]
    # relist takes a range back out, splitting what it cuts; the blacklist survives a restart.
    assert l1.rpc.blacklistrune(start=2, end=3, relist=True)["blacklist"] == \
        [{"start": 1, "end": 1}, {"start": 4, "end": 4}]
    l1.restart()
    assert l1.rpc.checkrune(rune=runes[3], method="getinfo")["valid"] is True
    assert l1.rpc.destroyrune(start=0)["blacklist"] == [{"start": 0, "end": 1}, {"start": 4, "end": 4}]
    with pytest.raises(RpcError, match="Can not specify end without start"):
        l1.rpc.blacklistrune(end=3)


def test_rune_rate_and_per(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    rate = l2.rpc.createrune(restrictions=[["rate=1"]])["rune"]       # one call a minute
    per = l2.rpc.createrune(restrictions=[["per=1hour"]])["rune"]
    # The first use passes, the next within the interval is "too soon"; commando goes through the same check.
    assert l1.rpc.commando(peer_id=l2.info["id"], method="getinfo", rune=rate)["id"] == l2.info["id"]
    with pytest.raises(RpcError, match="Not permitted: too soon"):
        l1.rpc.commando(peer_id=l2.info["id"], method="getinfo", rune=rate)
    assert l2.rpc.checkrune(rune=per, method="getinfo")["valid"] is True
    with pytest.raises(RpcError, match="too soon"):
        l2.rpc.checkrune(rune=per, method="getinfo")
    bad = l2.rpc.createrune(restrictions=[["per=5fortnights"]])["rune"]
    with pytest.raises(RpcError, match="malformed suffix"):
        l2.rpc.checkrune(rune=bad, method="getinfo")
    # A rune whose rate allows many calls a minute keeps passing.
    fast = l2.rpc.createrune(restrictions=[["rate=600000"]])["rune"]
    for _ in range(2):
        assert l2.rpc.checkrune(rune=fast, method="getinfo")["valid"] is True
