"""Plugins, hooks and RPC, tested with pyln-testing's fixtures exactly as a CLN plugin author does."""
import os

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, wait_for

PLUGIN = os.path.join(os.path.dirname(__file__), "plugins", "hodl_and_count.py")
RPC_COMMAND = os.path.join(os.path.dirname(__file__), "..", "plugins", "rpc_command_1.py")


def test_plugin_options_methods_and_log(node_factory):
    l1 = node_factory.get_node(options={"plugin": PLUGIN, "greeting": "Ahoy"})
    assert l1.rpc.greet("you") == {"message": "Ahoy you"}
    assert l1.daemon.is_in_log(r"plugin-hodl_and_count.py: hodl_and_count initialized")
    assert l1.config("greeting") == "Ahoy"
    with pytest.raises(RpcError, match="Unknown command"):
        l1.rpc.call("nosuchmethod")


def test_inline_plugin(node_factory):
    def setup(plugin):
        @plugin.method("double")
        def double(x, plugin):
            return {"twice": 2 * int(x)}

    l1 = node_factory.get_node(inline_plugin=setup)
    assert l1.rpc.double(21) == {"twice": 42}


def test_dynamic_plugin_start_stop(node_factory):
    l1 = node_factory.get_node()
    names = [os.path.basename(p["name"]) for p in l1.rpc.plugin_start(PLUGIN, greeting="Hi")["plugins"]]
    assert "hodl_and_count.py" in names
    assert l1.rpc.greet("there")["message"] == "Hi there"
    l1.rpc.plugin_stop(PLUGIN)
    with pytest.raises(RpcError):
        l1.rpc.greet("again")


def test_changed_plugin_is_restarted(node_factory, directory):
    copy = os.path.join(directory, "myplugin.py")
    with open(PLUGIN) as f:
        source = f.read()
    with open(copy, "w") as f:
        f.write(source)
    os.chmod(copy, 0o755)
    l1 = node_factory.get_node()
    l1.rpc.plugin_start(copy, greeting="Old")
    assert l1.rpc.greet("x")["message"] == "Old x"
    with pytest.raises(RpcError, match="already registered"):
        l1.rpc.plugin_start(copy)           # same file: refused
    with open(copy, "w") as f:
        f.write(source.replace('"Hello", "What to say"', '"New", "What to say"'))
    l1.rpc.plugin_start(copy)               # changed file: stopped and started again
    l1.daemon.wait_for_log("Plugin changed, needs restart")
    assert l1.rpc.greet("x")["message"] == "New x"


def test_rpc_command_hook(node_factory):
    l1 = node_factory.get_node(options={"plugin": RPC_COMMAND})
    with pytest.raises(RpcError, match="datastoreusage is disabled by rpc_command_1"):
        l1.rpc.call("datastoreusage")
    assert l1.rpc.getinfo()["id"] == l1.info["id"]   # other commands continue


def test_datastore(node_factory):
    l1 = node_factory.get_node()
    l1.rpc.datastore(key=["myplugin", "state"], string="one")
    assert only_one(l1.rpc.listdatastore(["myplugin", "state"])["datastore"])["string"] == "one"
    with pytest.raises(RpcError):
        l1.rpc.datastore(key=["myplugin", "state"], string="two", mode="must-create")
    l1.rpc.datastore(key=["myplugin", "state"], string="two", mode="must-replace")
    l1.restart()
    assert only_one(l1.rpc.listdatastore(["myplugin", "state"])["datastore"])["string"] == "two"
    l1.rpc.deldatastore(["myplugin", "state"])
    assert l1.rpc.listdatastore(["myplugin", "state"])["datastore"] == []


def test_custommsg(node_factory):
    received = []

    def setup(plugin):
        @plugin.hook("custommsg")
        def on_custommsg(peer_id, payload, plugin, **kwargs):
            received.append((peer_id, payload))
            return {"result": "continue"}

    l1 = node_factory.get_node()
    l2 = node_factory.get_node(inline_plugin=setup)
    node_factory.join_nodes([l1, l2], fundchannel=False)
    l1.rpc.sendcustommsg(l2.info["id"], "aaff01020304")
    wait_for(lambda: received == [(l1.info["id"], "aaff01020304")])
    with pytest.raises(RpcError):
        l1.rpc.sendcustommsg(l2.info["id"], "0010")   # an even type Lightning defines: refused


def test_invoices(node_factory):
    l1 = node_factory.get_node()
    inv = l1.rpc.invoice(123_000, "lbl", "a description", expiry=3600)
    decoded = l1.rpc.decode(inv["bolt11"])
    assert decoded["amount_msat"] == 123_000 and decoded["description"] == "a description"
    assert only_one(l1.rpc.listinvoices("lbl")["invoices"])["status"] == "unpaid"
    with pytest.raises(RpcError):
        l1.rpc.invoice(1, "lbl", "duplicate label")
    l1.rpc.delinvoice("lbl", "unpaid")
    assert l1.rpc.listinvoices("lbl")["invoices"] == []


def test_distinct_nodes_and_wallets(node_factory, bitcoind):
    """Modern hsm_secret files (what pyln-testing writes for CLN >= v25.12): every node its own key and wallet."""
    l1, l2 = node_factory.get_nodes(2)
    assert l1.info["id"] != l2.info["id"]
    a1, a2 = l1.rpc.newaddr("bech32")["bech32"], l2.rpc.newaddr("bech32")["bech32"]
    assert a1 != a2
    _, txid = l1.fundwallet(200_000)
    l1.daemon.wait_for_log(f"Owning output .* txid {txid} CONFIRMED")
    l1.daemon.wait_for_log(r"Adding block \d+: ")
    assert l2.rpc.listfunds()["outputs"] == []


def test_getlog_and_makesecret(node_factory):
    l1 = node_factory.get_node()
    log = l1.rpc.getlog("debug")["log"]
    assert any(e.get("log", "").startswith("Server started with public key") for e in log)
    info_only = l1.rpc.getlog()["log"]
    assert all(e["type"] in ("INFO", "UNUSUAL", "BROKEN", "SKIPPED") for e in info_only)
    s1 = l1.rpc.makesecret(string="scb")["secret"]
    assert s1 == l1.rpc.makesecret(hex=b"scb".hex())["secret"] and len(s1) == 64
    assert s1 != node_factory.get_node().rpc.makesecret(string="scb")["secret"]
    with pytest.raises(RpcError):
        l1.rpc.call("makesecret", {})


def test_simple_reorg(node_factory, bitcoind):
    """pyln-testing's reorg helper on amp-chaind: the block holding our deposit is replaced; ampd follows."""
    from pyln.testing.utils import sync_blockheight
    l1 = node_factory.get_node()
    _, txid = l1.fundwallet(100_000)
    height = bitcoind.rpc.getblockcount()
    old = bitcoind.rpc.getblockhash(height)
    bitcoind.simple_reorg(height)          # the deposit goes back to the mempool and into the new block
    assert bitcoind.rpc.getblockhash(height) != old
    l1.daemon.wait_for_log(f"Removing stale block {height}: {old}")
    sync_blockheight(bitcoind, [l1])
    wait_for(lambda: [o["blockheight"] for o in l1.rpc.listfunds()["outputs"] if o["txid"] == txid] == [height])


def test_runes(node_factory):
    l1 = node_factory.get_node()
    master = l1.rpc.createrune()
    assert master["unique_id"] == "0" and "warning_unrestricted_rune" in master
    ro = l1.rpc.createrune(restrictions="readonly")
    assert ro["unique_id"] == "1"
    assert l1.rpc.checkrune(rune=ro["rune"], method="listpeers")["valid"] is True
    with pytest.raises(RpcError, match="Not permitted: method does not start with list") as e:
        l1.rpc.checkrune(rune=ro["rune"], method="pay")
    assert e.value.error["code"] == 1502
    # Anyone holding a rune can restrict it further (same unique id); nobody can lift a restriction.
    narrow = l1.rpc.createrune(rune=ro["rune"], restrictions=[["pnamelabel=x"]])
    assert narrow["unique_id"] == "1"
    assert l1.rpc.checkrune(rune=narrow["rune"], method="listinvoices", params={"label": "x"})["valid"]
    with pytest.raises(RpcError, match="pnamelabel is not equal to x"):
        l1.rpc.checkrune(rune=narrow["rune"], method="listinvoices", params={"label": "y"})
    import base64
    raw = base64.urlsafe_b64decode(narrow["rune"])
    forged = base64.urlsafe_b64encode(raw[:32] + raw[32:].replace(b"&pnamelabel=x", b"")).decode()
    with pytest.raises(RpcError) as e:
        l1.rpc.checkrune(rune=forged, method="listinvoices")
    assert e.value.error["code"] == 1501
    shown = l1.rpc.showrunes()["runes"]
    assert [r["unique_id"] for r in shown] == ["0", "1"]
    assert shown[1]["restrictions_as_english"] == ("method starts with list OR method starts with get OR method "
                                                   "equal to summary AND method unequal to listdatastore")
    assert l1.rpc.showrunes(narrow["rune"])["runes"][0]["stored"] is False


def test_commando(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    node_factory.join_nodes([l1, l2], fundchannel=False)
    rune = l2.rpc.createrune(restrictions=[["method=getinfo", "method=listpeers"], [f"id={l1.info['id']}"]])["rune"]
    assert l1.rpc.commando(peer_id=l2.info["id"], method="getinfo", rune=rune)["id"] == l2.info["id"]
    peers = l1.rpc.commando(peer_id=l2.info["id"], method="listpeers", params={"id": l1.info["id"]}, rune=rune)
    assert [p["id"] for p in peers["peers"]] == [l1.info["id"]]
    with pytest.raises(RpcError, match="Invalid rune: Not permitted: method is not equal to getinfo") as e:
        l1.rpc.commando(peer_id=l2.info["id"], method="stop", rune=rune)
    assert e.value.error["code"] == 0x4c51
    other = l1.rpc.createrune()["rune"]   # l1's rune means nothing to l2
    with pytest.raises(RpcError, match="Invalid rune: Not authorized"):
        l1.rpc.commando(peer_id=l2.info["id"], method="getinfo", rune=other)
    # Errors of the command itself come back as they are.
    admin = l2.rpc.createrune()["rune"]
    with pytest.raises(RpcError, match="Unknown command"):
        l1.rpc.commando(peer_id=l2.info["id"], method="nosuchcommand", rune=admin)
