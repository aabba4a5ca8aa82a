"""The plugin host driving real plugin processes (pyln-client plugins and raw scripts), no daemon.

Plugins in tests/plugins start with `#!/usr/bin/env python3`; the host puts the running venv's bin
directory first on their PATH, so they find pyln-client (see ampere/plugins/host.py).
"""

import asyncio
import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins"))

from harness import make_host, plugin_path, read_record, run, write_raw_plugin  # noqa: E402

from ampere.plugins.host import PluginFatal, PluginRegisterError, PluginRpcError  # noqa: E402


# Seed 002's plugin, verbatim, as shipped in contrib/.
PAY_UP_TO = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "contrib", "plugins", "pay-up-to.py"))


def req(method, params=None, id=1):
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": [] if params is None else params}


async def start(host, *names, values=None):
    for n in names:
        host.register(n if os.path.isabs(n) else plugin_path(n))
    await host.load_manifests()
    await host.init_all(values or {})


# ------------------------------------------------------------------ handshake

def test_helloworld_handshake_options_method(tmp_path):
    async def main():
        host, log = make_host(tmp_path)
        await host.load_manifests()  # nothing registered: fine
        host.register(plugin_path("helloworld.py"))
        await host.load_manifests()
        opts = {o.name: o for o in host.declared_options()}
        assert opts["greeting"].default == "Hello" and opts["greeting"].type == "string"
        assert opts["greeting"].plugin == plugin_path("helloworld.py")
        assert [m[0] for m in host.methods()] == ["hello"]
        await host.init_all({"greeting": "Bonjour"})
        assert host.list() == [{"name": plugin_path("helloworld.py"), "active": True, "dynamic": True}]
        await log.wait_for("Plugin helloworld.py initialized", source="plugin-helloworld.py")
        r = await host.call_method("hello", req("hello", ["bob"], id="cli:hello#1"), "cli:hello#1")
        assert r == {"jsonrpc": "2.0", "id": "cli:hello#1", "result": "Bonjour bob"}
        r = await host.call_method("hello", req("hello", {}, id=99), 99)
        assert r["id"] == 99 and r["result"] == "Bonjour world"
        # A connect notification reaches the subscribed plugin, wrapped as {connect: {...}}.
        host.notify("connect", {"id": "02" + "11" * 32, "direction": "in", "address": {"type": "ipv4"}})
        await log.wait_for("Received connect event for peer 02" + "11" * 32, source="plugin-helloworld.py")
        await host.shutdown()
    run(main())


def test_handshake_wire_format(tmp_path):
    """getmanifest/init exactly as lightningd sends them; env, cwd, "\\n\\n" after every message."""
    rec = str(tmp_path / "rec.jsonl")
    path = write_raw_plugin(tmp_path, "raw.py", {
        "options": [{"name": "s", "type": "string", "description": "d", "default": "dflt"},
                    {"name": "i", "type": "int", "description": "d"},
                    {"name": "b", "type": "bool", "description": "d", "default": False},
                    {"name": "f", "type": "flag", "description": "d"},
                    {"name": "unset", "type": "string", "description": "d"},
                    {"name": "m", "type": "int", "description": "d", "multi": True},
                    {"name": "md", "type": "string", "description": "d", "multi": True, "default": "one"}],
        "rpcmethods": [{"name": "echo", "usage": ""}],
        "featurebits": {"node": "8000", "invoice": "01"}}, {"echo": "echo"}, record=rec)

    async def main():
        host, log = make_host(tmp_path, allow_deprecated_apis=True)
        host.register(path)
        await host.load_manifests()
        await host.init_all({"i": "0x10", "f": None, "m": ["1", "2"]})
        r = await host.call_method("echo", {"jsonrpc": "2.0", "method": "echo", "id": "c1",
                                            "params": {"x": 1}, "filter": {"x": True}}, "c1")
        fwd = r["result"]["request"]
        # The caller's request verbatim, only the id replaced.
        assert fwd["method"] == "echo" and fwd["params"] == {"x": 1} and fwd["filter"] == {"x": True}
        assert fwd["id"].startswith("c1/cln:echo#")
        assert host.features()["node"] == "8800" and host.features()["invoice"] == "01"
        await host.shutdown()

    run(main())
    records = read_record(rec)
    start = records[0]
    assert start["env"] == {"LIGHTNINGD_PLUGIN": "1", "LIGHTNINGD_VERSION": "v0.1.0-ampere"}
    assert start["cwd"] == str(tmp_path / "regtest")
    raws = [r["raw"] for r in records[1:]]
    assert all(r.endswith("}\n\n") for r in raws)
    getmanifest, init = json.loads(raws[0]), json.loads(raws[1])
    assert getmanifest["method"] == "getmanifest" and getmanifest["jsonrpc"] == "2.0"
    assert getmanifest["params"] == {"allow-deprecated-apis": True}
    assert isinstance(getmanifest["id"], str) and getmanifest["id"].startswith("cln:getmanifest#")
    assert init["id"].startswith("cln:init#")
    assert init["params"]["options"] == {"s": "dflt", "i": 16, "b": False, "f": True, "m": [1, 2], "md": ["one"]}
    conf = init["params"]["configuration"]
    assert conf["lightning-dir"] == str(tmp_path / "regtest") and conf["rpc-file"] == "lightning-rpc"
    assert conf["startup"] is True and conf["network"] == "regtest"
    assert conf["feature_set"]["node"] == "8800" and conf["feature_set"]["init"] == "0800"
    assert set(conf["feature_set"]) == {"init", "node", "channel", "invoice", "bolt12_offer", "bolt12_invreq",
                                        "bolt12_invoice", "channel_type"}


def test_typed_options_reach_pyln_plugin(tmp_path):
    async def main():
        host, log = make_host(tmp_path)
        host.register(plugin_path("options.py"))
        await host.load_manifests()
        opts = {o.name: o for o in host.declared_options()}
        with pytest.raises(ValueError, match="--int_opt=notok: 'notok' is not a number"):
            host.parse_option_value(opts["int_opt"], "notok")
        await host.init_all({"str_opt": "ok", "int_opt": "22", "bool_opt": "true", "flag_opt": None,
                             "str_optm": ["ok", "ok2"], "int_optm": ["11", "12", "13"]})
        src = "plugin-options.py"
        for line in ("option str_opt ok <class 'str'>", "option int_opt 22 <class 'int'>",
                     "option bool_opt True <class 'bool'>", "option flag_opt True <class 'bool'>",
                     "option str_optm ['ok', 'ok2'] <class 'list'>", "option int_optm [11, 12, 13] <class 'list'>"):
            await log.wait_for(line, source=src)
        await host.shutdown()
    run(main())


def test_manifest_timeout_keeps_host_running(tmp_path):
    """Seed 001's shell plugin never answers getmanifest: logged, dropped, the rest goes on."""
    async def main():
        host, log = make_host(tmp_path, startup_timeout=1.0)
        t0 = time.monotonic()
        await start(host, "no_manifest.sh", "helloworld.py")
        assert time.monotonic() - t0 < 5
        assert log.has("Killing plugin: timed out before replying to getmanifest", source="plugin-no_manifest.sh",
                       level="unusual")
        assert [p["name"] for p in host.list()] == [plugin_path("helloworld.py")]
        r = await host.call_method("hello", req("hello"), 1)
        assert r["result"] == "Hello world"
        await host.shutdown()
    run(main())


def test_important_plugin_failing_at_startup_is_fatal(tmp_path):
    async def main():
        host, log = make_host(tmp_path, startup_timeout=1.0)
        host.register(plugin_path("no_manifest.sh"), important=True)
        with pytest.raises(PluginFatal, match="no_manifest.sh"):
            await host.load_manifests()
        assert log.has("Plugin marked as important, shutting down lightningd!", level="broken")
        await host.shutdown()
    run(main())


def test_register_errors_and_dirs(tmp_path):
    async def main():
        host, log = make_host(tmp_path)
        with pytest.raises(PluginRegisterError, match="Failed to register /nonexistent/p.py: No such file"):
            host.register("/nonexistent/p.py")
        d = tmp_path / "pdir"
        d.mkdir()
        write_raw_plugin(d, "good-one.py")
        write_raw_plugin(d, "bad,name.py")
        (d / "README.md").write_text("x")
        os.chmod(d / "README.md", 0o755)
        (d / "notexec.py").write_text("x")
        added = host.register_dir(str(d))
        assert [p.shortname for p in added] == ["good-one.py"]
        assert host.register(str(d / "good-one.py")) is None  # already registered
        host.disable("good-one.py")
        assert host.list() == []
        assert host.register(str(d / "good-one.py")) is None
        assert log.has("disabled via disable-plugin")
        await host.shutdown()
    run(main())


def test_init_timeout_and_disable_at_init(tmp_path):
    async def main():
        host, log = make_host(tmp_path, startup_timeout=1.5)
        disabler = write_raw_plugin(tmp_path, "disabler.py", None, {"init": {"result": {"disable": "no thanks"}}})
        selfdis = write_raw_plugin(tmp_path, "selfdis.py", None, {"getmanifest": {"result": {"disable": "nope"}}})
        host.register(plugin_path("slow_init.py"))
        host.register(disabler)
        host.register(selfdis)
        await host.load_manifests()
        assert log.has("Killing plugin: disabled itself: nope", source="plugin-selfdis.py", level="info")
        await host.init_all({"init_delay": "5"})
        assert log.has("Killing plugin: timed out before replying to init", source="plugin-slow_init.py")
        assert log.has("Killing plugin: disabled itself at init: no thanks", source="plugin-disabler.py",
                       level="debug")
        assert host.list() == []
        await host.shutdown()
    run(main())


# ------------------------------------------------------------------ failures after startup

def test_crash_mid_request_gives_minus_4(tmp_path):
    async def main():
        host, log = make_host(tmp_path)
        await start(host, "listener.py", "crash_mid_request.py")
        assert (await host.call_method("alive", req("alive"), 1))["result"] == {"pong": True}
        r = await host.call_method("crash", req("crash", id="x"), "x")
        assert r == {"jsonrpc": "2.0", "id": "x",
                     "error": {"code": -4, "message": "Plugin terminated before replying to RPC call."}}
        await log.wait_for("Killing plugin: exited during normal operation", source="plugin-crash_mid_request.py")
        assert host.find_method("alive") is None and host.find_method("crash") is None
        assert [p["name"] for p in host.list()] == [plugin_path("listener.py")]
        seen = (await host.call_method("seen", req("seen"), 2))["result"]["received"]
        stopped = [s for s in seen if "plugin_stopped" in s]
        assert stopped and stopped[-1]["plugin_stopped"] == {
            "plugin_name": "crash_mid_request.py", "plugin_path": plugin_path("crash_mid_request.py"),
            "methods": ["crash", "alive"]}
        await host.shutdown()
    run(main())


def test_garbage_output_kills_plugin(tmp_path):
    async def main():
        host, log = make_host(tmp_path)
        await start(host, "garbage.py", "helloworld.py")
        r = await host.call_method("garbage", req("garbage"), 5)
        assert r["error"]["code"] == -4
        line = log.find("Killing plugin: Failed to parse RPC JSON response", source="plugin-garbage.py")
        assert line and line[0][0] == "unusual" and "this is not JSON at all" in line[0][2]
        assert (await host.call_method("hello", req("hello"), 6))["result"] == "Hello world"
        await host.shutdown()
    run(main())


def test_message_without_jsonrpc_and_bad_log_kill(tmp_path):
    nojsonrpc = write_raw_plugin(tmp_path, "nojsonrpc.py", {"options": [], "rpcmethods": [{"name": "a", "usage": ""}]},
                                 {"a": {"raw": '{"id": "whatever", "result": {}}\n\n'}})
    badlog = write_raw_plugin(tmp_path, "badlog.py", {"options": [], "rpcmethods": [{"name": "b", "usage": ""}]},
                              {"b": {"raw": '{"jsonrpc": "2.0", "method": "log", "params": {"level": "io", '
                                            '"message": "x"}}\n\n'}})

    async def main():
        host, log = make_host(tmp_path)
        await start(host, nojsonrpc, badlog)
        assert (await host.call_method("a", req("a"), 1))["error"]["code"] == -4
        assert log.has('Killing plugin: JSON-RPC message does not contain "jsonrpc" field', source="plugin-nojsonrpc.py")
        assert (await host.call_method("b", req("b"), 1))["error"]["code"] == -4
        assert log.has('Killing plugin: Unknown log-level "io", valid values are', source="plugin-badlog.py")
        await host.shutdown()
    run(main())


def test_important_plugin_dying_later_calls_on_fatal(tmp_path):
    fatal = []

    async def main():
        host, log = make_host(tmp_path, on_fatal=fatal.append)
        host.register(plugin_path("crash_mid_request.py"), important=True)
        await host.load_manifests()
        await host.init_all({})
        await host.call_method("crash", req("crash"), 1)
        assert fatal and "crash_mid_request.py" in fatal[0]
        await host.shutdown()
    run(main())


# ------------------------------------------------------------------ a hung plugin blocks nobody

def test_hung_method_blocks_nobody(tmp_path):
    async def main():
        host, log = make_host(tmp_path)
        await start(host, "dumb.sh", "helloworld.py")
        assert "dumboption" in [o.name for o in host.declared_options()]
        hung = asyncio.ensure_future(host.call_method("dumbmethod", req("dumbmethod"), 1))
        hung2 = asyncio.ensure_future(host.call_method("dumbmethod", req("dumbmethod"), 2))
        t0 = time.monotonic()
        for i in range(20):
            assert (await host.call_method("hello", req("hello", id=i), i))["result"] == "Hello world"
        assert time.monotonic() - t0 < 2.0
        assert not hung.done() and not hung2.done()
        await host.shutdown()
        # Shutdown ends every wait.
        assert (await hung)["error"]["code"] == -4 and (await hung2)["error"]["code"] == -4
    run(main())


async def _hook_by_callback(host, request, **kw):
    """The rpc_command hook as the RPC dispatcher asks it (start_chain: callbacks, no task)."""
    fut = asyncio.get_running_loop().create_future()
    host.start_rpc_command_hook(request, fut.set_result, **kw)
    return await fut


def _hook_asker(host, via):
    return host.rpc_command_hook if via == "coroutine" else (lambda r, **kw: _hook_by_callback(host, r, **kw))


@pytest.mark.parametrize("via", ["coroutine", "callback"])
def test_hung_hook_holds_only_its_caller_and_timeout(tmp_path, via):
    hanger = write_raw_plugin(tmp_path, "hanger.py", {"options": [], "rpcmethods": [], "hooks": ["rpc_command"]},
                              {"rpc_command": "hang"})

    async def main():
        host, log = make_host(tmp_path)
        await start(host, hanger, "helloworld.py")
        pending = asyncio.ensure_future(_hook_asker(host, via)(req("getinfo")))
        t0 = time.monotonic()
        assert (await host.call_method("hello", req("hello"), 1))["result"] == "Hello world"
        assert time.monotonic() - t0 < 2.0 and not pending.done()
        await host.shutdown()
        # The plugin vanished (-4): the chain treats it as absent and continues.
        assert await pending == ("continue", req("getinfo"))

        host, log = make_host(tmp_path, hook_timeouts=["rpc_command:0.5:error"])
        await start(host, hanger)
        t0 = time.monotonic()
        kind, resp = await _hook_asker(host, via)(req("getinfo"))
        assert 0.4 < time.monotonic() - t0 < 3
        assert kind == "return" and resp == {"error": {"code": -1, "message": "rpc_command hook timed out"}}
        assert log.has("rpc_command hook did not answer within 0.5s", source="plugin-hanger.py", level="unusual")
        await host.shutdown()
    run(main())


def test_cancelled_hook_caller_stops_the_chain(tmp_path):
    """run_chain (start_chain awaited): a caller cancelled while the first plugin of a chain works stops the chain:
    its late answer is dropped and the next plugin is never asked."""
    order = str(tmp_path / "order.txt")
    slow = write_raw_plugin(tmp_path, "slow.py", {"options": [], "rpcmethods": [], "hooks": ["rpc_command"]},
                            {"rpc_command": {"sleep": 0.4, "result": {"result": "continue"}}})
    nxt = write_raw_plugin(tmp_path, "next.py", {"options": [], "rpcmethods": [], "hooks": ["rpc_command"]},
                           {"rpc_command": {"append_to": order, "result": {"result": "continue"}}})

    async def main():
        host, log = make_host(tmp_path)
        await start(host, slow, nxt)
        asking = asyncio.ensure_future(host.rpc_command_hook(req("getinfo")))
        await asyncio.sleep(0.1)
        asking.cancel()
        await asyncio.sleep(0.8)
        assert not os.path.exists(order)
        assert await host.rpc_command_hook(req("getinfo")) == ("continue", req("getinfo"))  # (both asked)
        with open(order) as f:
            assert f.read().split() == ["next.py"]
        await host.shutdown()
    run(main())


# ------------------------------------------------------------------ rpc_command chains

@pytest.mark.parametrize("via", ["coroutine", "callback"])
def test_rpc_command_chain_of_two(tmp_path, via):
    async def main():
        host, log = make_host(tmp_path)
        await start(host, "rpc_command_1.py", "rpc_command_2.py", "helloworld.py")
        hook = _hook_asker(host, via)
        r = await hook(req("datastoreusage", ["x"], id="c1"))
        assert r == ("return", {"error": {"code": 1234, "message": "datastoreusage is disabled by rpc_command_1"}})
        kind, new = await hook(req("listdatastore", id="c2"), method_exists=lambda m: m == "hello")
        assert kind == "continue" and new["method"] == "hello" and new["params"] == {"name": "replaced"}
        assert (await hook(req("batching", id="c3"))) == (
            "return", {"result": {"from": "rpc_command_1"}})
        assert log.has("rpc_command hook 'batching' already modified, ignoring.", level="unusual")
        assert await hook(req("getinfo", id="c4")) == ("continue", req("getinfo", id="c4"))
        kind, resp = await hook(req("deprecations", id="c5"))
        # The second plugin saw every command, including those the first one modified.
        assert kind == "return"
        assert resp["result"]["seen"] == ["datastoreusage", "listdatastore", "batching", "getinfo", "deprecations"]
        await host.shutdown()
    run(main())


def test_hook_order_follows_before_after(tmp_path):
    order = str(tmp_path / "order.txt")
    a = write_raw_plugin(tmp_path, "a.py", {"options": [], "rpcmethods": [],
                                            "hooks": [{"name": "rpc_command", "after": ["c.py"]}]},
                         {"rpc_command": {"append_to": order, "result": {"result": "continue"}}})
    b = write_raw_plugin(tmp_path, "b.py", {"options": [], "rpcmethods": [], "hooks": ["rpc_command"]},
                         {"rpc_command": {"append_to": order, "result": {"result": "continue"}}})
    c = write_raw_plugin(tmp_path, "c.py", {"options": [], "rpcmethods": [],
                                            "hooks": [{"name": "rpc_command", "filters": ["getinfo"]}]},
                         {"rpc_command": {"append_to": order, "result": {"result": "continue"}}})
    x = write_raw_plugin(tmp_path, "x.py", {"options": [], "rpcmethods": [],
                                            "hooks": [{"name": "rpc_command", "before": ["y.py"]}]})
    y = write_raw_plugin(tmp_path, "y.py", {"options": [], "rpcmethods": [],
                                            "hooks": [{"name": "rpc_command", "before": ["x.py"]}]})

    async def main():
        host, log = make_host(tmp_path)
        await start(host, a, b, c, x, y)
        assert log.has("Killing plugin: Cannot meet required hook dependencies", source="plugin-x.py")
        assert log.has("Killing plugin: Cannot meet required hook dependencies", source="plugin-y.py")
        await host.rpc_command_hook(req("getinfo"))
        await host.rpc_command_hook(req("listpeers"))  # c.py filters it out
        await host.shutdown()
    run(main())
    with open(order) as f:
        assert f.read().split() == ["b.py", "c.py", "a.py", "b.py", "a.py"]


def test_pay_up_to_caps_pay(tmp_path):
    """Seed 002's pay-up-to.py, verbatim, started dynamically with limit=0.001btc."""
    async def main():
        host, log = make_host(tmp_path)
        await host.load_manifests()
        await host.init_all({})
        plugins = await host.start_dynamic(PAY_UP_TO, {"limit": "0.001btc"}, caller_id="cli:plugin#1")
        assert plugins == [{"name": PAY_UP_TO, "active": True, "dynamic": True}]
        big = "lnbcrt2m1pjgruqesp5chxvzzc8w5j672yffcxyhrwcq9v90lk3feluxvh3nps37lnxpcrspp5n3etx"
        kind, resp = await host.rpc_command_hook(req("pay", [big], id="cli:pay#1"))
        assert kind == "return"
        assert resp == {"result": {"invoice_too_high": "0.002btc", "maximum_is": "0.001btc", "bolt11": big}}
        small = "lnbcrt100u1pjgruzqsp5cjgm6uhx28lqfm2lnzgkvk60grysr7l5c3ucr4hfaqkcndaypneqpp5dvg8y"
        assert (await host.rpc_command_hook(req("pay", [small])))[0] == "continue"
        assert (await host.rpc_command_hook(req("getinfo")))[0] == "continue"
        await host.shutdown()
    run(main())


# ------------------------------------------------------------------ notifications

def test_custom_notifications_and_wildcard(tmp_path):
    async def main():
        host, log = make_host(tmp_path)
        await start(host, "listener.py", "custom_notify.py")
        assert (await host.call_method("emit", req("emit", {"text": "yo"}), 1))["result"] == {"emitted": "yo"}
        await log.wait_for('Plugin attempted to send a notification to topic "undeclared_topic"',
                           source="plugin-custom_notify.py")
        host.notify("log", {"level": "info", "log": "not for wildcards"})
        host.notify("block_added", {"hash": "00" * 32, "height": 101})
        deadline = time.monotonic() + 5
        while True:
            seen = (await host.call_method("seen", req("seen"), 2))["result"]["received"]
            if any("block_added" in s for s in seen) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        custom = [s for s in seen if "ampere_custom" in s]
        # Re-emitted verbatim (pyln's notify() adds the {topic: params} copy itself), with `origin`.
        assert custom == [{"text": "yo", "ampere_custom": {"text": "yo"}, "origin": "custom_notify.py"}]
        assert {"block_added": {"hash": "00" * 32, "height": 101}} in seen
        assert not any("log" in s for s in seen) and not any("undeclared_topic" in s for s in seen)
        started = [s["plugin_started"]["plugin_name"] for s in seen if "plugin_started" in s]
        # As in lightningd, a plugin is INIT_COMPLETE when its own plugin_started goes out.
        assert "listener.py" in started
        await host.shutdown()
    run(main())


def test_message_and_progress_relayed_to_caller(tmp_path):
    async def main():
        host, log = make_host(tmp_path)
        await start(host, "custom_notify.py")
        got = []
        r = await host.call_method("chatty", req("chatty", id="cli:chatty#9"), "cli:chatty#9", got.append)
        assert r["result"] == {"done": True}
        assert got[0] == {"jsonrpc": "2.0", "method": "message",
                          "params": {"id": "cli:chatty#9", "level": "info", "message": "working on it"}}
        assert [g["params"]["num"] for g in got[1:]] == [0, 1]
        assert all(g["method"] == "progress" and g["params"]["id"] == "cli:chatty#9" for g in got[1:])
        await host.shutdown()
    run(main())


# ------------------------------------------------------------------ dynamic plugins, setconfig, check

def test_plugin_start_stop_errors(tmp_path):
    static = write_raw_plugin(tmp_path, "static.py", {"options": [], "rpcmethods": []})

    async def main():
        host, log = make_host(tmp_path)
        await host.load_manifests()
        await host.init_all({})
        with pytest.raises(PluginRpcError) as e:
            await host.start_dynamic(static)
        assert e.value.code == -3 and e.value.message == f"{static}: Not a dynamic plugin"
        with pytest.raises(PluginRpcError) as e:
            await host.start_dynamic(plugin_path("helloworld.py"), {"nosuch": "x"})
        assert e.value.code == -3 and e.value.message.endswith("helloworld.py: unknown parameter nosuch")
        with pytest.raises(PluginRpcError) as e:
            await host.start_dynamic(plugin_path("options.py"), {"int_opt": "notok"})
        assert e.value.message.endswith("options.py: --int_opt=notok: 'notok' is not a number")
        await host.start_dynamic(plugin_path("helloworld.py"), {"greeting": "Hi"})
        with pytest.raises(PluginRpcError) as e:
            await host.start_dynamic(plugin_path("helloworld.py"))
        assert e.value.code == -32602 and e.value.message.endswith("helloworld.py: already registered")
        assert (await host.call_method("hello", req("hello"), 1))["result"] == "Hi world"
        assert host.option_values()["greeting"] == ("Hi", "pluginstart")
        with pytest.raises(PluginRpcError) as e:
            await host.stop_plugin("nosuch.py")
        assert (e.value.code, e.value.message) == (-32602, "Could not find plugin nosuch.py")
        assert await host.stop_plugin("helloworld.py") == {"command": "stop",
                                                           "result": "Successfully stopped helloworld.py."}
        assert host.list() == [] and host.find_method("hello") is None
        assert "greeting" not in [o.name for o in host.declared_options()]
        # Can be started again once stopped.
        await host.start_dynamic(plugin_path("helloworld.py"))
        assert host.list()[0]["active"]
        await host.shutdown()
    run(main())


def test_non_dynamic_cannot_be_stopped(tmp_path):
    async def main():
        host, log = make_host(tmp_path)
        await start(host, "dumb.sh")
        with pytest.raises(PluginRpcError) as e:
            await host.stop_plugin("dumb.sh")
        assert e.value.message == "dumb.sh cannot be managed when lightningd is up"
        await host.shutdown()
    run(main())


def test_setconfig_dynamic_option(tmp_path):
    async def main():
        host, log = make_host(tmp_path)
        await start(host, "dynamic_opt.py", "helloworld.py")
        assert (await host.call_method("getdynopt", req("getdynopt"), 1))["result"] == {"dynopt": "initial"}
        assert await host.setconfig("dynopt", "changed", caller_id="cli:setconfig#1") == "changed"
        assert (await host.call_method("getdynopt", req("getdynopt"), 2))["result"] == {"dynopt": "changed"}
        with pytest.raises(PluginRpcError, match="I don't like bad values"):
            await host.setconfig("dynopt", "bad")
        assert (await host.call_method("getdynopt", req("getdynopt"), 3))["result"] == {"dynopt": "changed"}
        with pytest.raises(PluginRpcError, match="Not a dynamic config option"):
            await host.setconfig("greeting", "x")
        await host.shutdown()
    run(main())


def test_check_forwarded_only_with_cancheck(tmp_path):
    can = write_raw_plugin(tmp_path, "can.py", {"options": [], "rpcmethods": [{"name": "m1", "usage": ""}],
                                                "cancheck": True}, {"check": "echo"})
    cannot = write_raw_plugin(tmp_path, "cannot.py", {"options": [], "rpcmethods": [{"name": "m2", "usage": ""}]})

    async def main():
        host, log = make_host(tmp_path)
        await start(host, can, cannot)
        r = await host.check({"jsonrpc": "2.0", "id": "k", "method": "check",
                              "params": {"command_to_check": "m1", "a": 1}}, "k")
        fwd = r["result"]["request"]
        assert fwd["method"] == "check" and fwd["params"] == {"command_to_check": "m1", "a": 1}
        assert fwd["id"].startswith("k/cln:check#")
        r = await host.check({"jsonrpc": "2.0", "id": "k2", "method": "check", "params": ["m2"]}, "k2")
        assert r == {"jsonrpc": "2.0", "id": "k2", "result": {"command_to_check": "m2"}}
        assert log.has("Plugin does not support check command for m2", source="plugin-cannot.py", level="unusual")
        await host.shutdown()
    run(main())


def test_duplicate_method_and_option_names(tmp_path):
    dup_method = write_raw_plugin(tmp_path, "dupm.py", {"options": [], "rpcmethods": [{"name": "hello", "usage": ""}]})
    builtin = write_raw_plugin(tmp_path, "builtin.py", {"options": [], "rpcmethods": [{"name": "getinfo", "usage": ""}]})
    dup_opt = write_raw_plugin(tmp_path, "dupo.py", {"options": [{"name": "greeting", "type": "string",
                                                                  "description": "d"}], "rpcmethods": []})

    async def main():
        host, log = make_host(tmp_path, builtin_methods={"getinfo"})
        await start(host, "helloworld.py", dup_method, builtin)
        assert log.has('Could not register method "hello", a method with that name is already registered by plugin '
                       + plugin_path("helloworld.py"), source="plugin-dupm.py")
        assert log.has('Could not register method "getinfo"', source="plugin-builtin.py")
        assert [p["name"] for p in host.list()] == [plugin_path("helloworld.py")]
        # A clashing option name at startup is fatal, as in lightningd.
        host2, _ = make_host(tmp_path)
        host2.register(plugin_path("helloworld.py"))
        host2.register(dup_opt)
        with pytest.raises(PluginFatal, match=f"error starting plugin '{dup_opt}': option name 'greeting' is already taken"):
            await host2.load_manifests()
        await host2.shutdown()
        # At runtime it only kills the newcomer.
        with pytest.raises(PluginRpcError, match='Option "greeting" already registered'):
            await host.start_dynamic(dup_opt)
        await host.shutdown()
    run(main())


def test_shutdown_notification_and_reaping(tmp_path):
    quitter = write_raw_plugin(tmp_path, "quitter.py", {"options": [], "rpcmethods": [], "subscriptions": ["shutdown"]})
    stubborn = write_raw_plugin(tmp_path, "stubborn.py", {"options": [], "rpcmethods": [],
                                                           "subscriptions": ["shutdown"]})
    # quitter.py exits when its stdin closes... make it exit on the shutdown notification instead:
    with open(quitter) as f:
        src = f.read().replace('        if "id" not in msg:\n            continue',
                               '        if method == "shutdown":\n            sys.exit(0)\n'
                               '        if "id" not in msg:\n            continue')
    with open(quitter, "w") as f:
        f.write(src)

    async def main():
        host, log = make_host(tmp_path, shutdown_timeout=1.0)
        await start(host, quitter, stubborn, "helloworld.py")
        procs = [p.process for p in host.plugins()]
        t0 = time.monotonic()
        await host.shutdown()
        assert 0.9 < time.monotonic() - t0 < 4  # waited for stubborn.py only
        assert all(p.exited.is_set() for p in procs)
        assert log.has("stubborn.py: failed to self-terminate in time, killing.")
        assert not log.has("quitter.py: failed to self-terminate")
        assert not log.has("Plugin marked as important")
    run(main())


def test_plugin_method_through_the_rpc_server_needs_no_task(tmp_path):
    """Issue 18: a call of a plugin's method goes from the socket to the plugin and back without a task
    (Dispatcher.start_fast), also through an rpc_command hook (asked from a callback, the method started from its
    answer); a built-in command still runs as a task.  Real plugin processes, a real RpcServer and Dispatcher."""
    from ampere.rpc.dispatch import Dispatcher
    from ampere.rpc.server import RpcServer

    class MiniNode:
        def __init__(self, plugins):
            self.plugins = plugins
            self.stopping = asyncio.Event()

    async def main():
        host, _log = make_host(tmp_path)
        await start(host, "trivial.py")
        disp = Dispatcher(MiniNode(host))
        path = str(tmp_path / "rpc")
        server = RpcServer(path, disp.dispatch, lambda lvl, msg: None, fast=disp.start_fast)
        await server.start()
        created = []
        loop = asyncio.get_running_loop()
        real_create_task = loop.create_task

        def counting(coro, **kw):
            created.append(getattr(coro, "__qualname__", "?"))
            return real_create_task(coro, **kw)
        loop.create_task = counting

        async def call(method, params, rid):
            r, w = await asyncio.open_unix_connection(path)
            w.write(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode())
            data = await r.readuntil(b"\n\n")
            w.close()
            return json.loads(data)

        try:
            for rid in (1, "x", 3.5):
                assert await call("noop", {}, rid) == {"jsonrpc": "2.0", "id": rid, "result": {}}
            assert not [c for c in created if "_handle" in c]  # no task for the plugin's method
            # An unknown method takes the general path and gets -32601.
            answer = await call("nosuchmethod", {}, 4)
            assert answer["error"]["code"] == -32601
            assert [c for c in created if "_handle" in c]
            # Once an rpc_command hook is registered, the plugin's method goes through it, still without a task.
            created.clear()
            host.register(plugin_path("rpc_command_2.py"))
            await host.load_manifests()
            await host.init_all({})
            created.clear()
            assert await call("noop", {}, 5) == {"jsonrpc": "2.0", "id": 5, "result": {}}
            assert not [c for c in created if "_handle" in c or "_complete" in c]
            assert server.tasks == set() or all(t.done() for t in server.tasks)
        finally:
            loop.create_task = real_create_task
            await server.stop()
            await host.shutdown()

    run(main())


def test_filtered_rpc_command_hook_fires_through_the_dispatcher(tmp_path):
    """An rpc_command hook with `filters` is called for the filtered methods when they come through the RPC
    dispatcher, plugin methods (fast path otherwise) included, and not for the others."""
    from ampere.rpc.dispatch import Dispatcher

    order = str(tmp_path / "order.txt")
    c = write_raw_plugin(tmp_path, "c.py", {"options": [], "rpcmethods": [],
                                            "hooks": [{"name": "rpc_command", "filters": ["noop"]}]},
                         {"rpc_command": {"append_to": order,
                                          "result": {"return": {"result": {"from": "c.py"}}}}})

    class MiniNode:
        def __init__(self, plugins):
            self.plugins = plugins
            self.stopping = asyncio.Event()

    async def main():
        host, _log = make_host(tmp_path)
        await start(host, "trivial.py", c)
        disp = Dispatcher(MiniNode(host))
        answered: asyncio.Queue = asyncio.Queue()
        assert disp.start_fast(req("noop", {}, id=1), None, answered.put_nowait) is True  # through the hook
        assert await answered.get() == {"jsonrpc": "2.0", "id": 1, "result": {"from": "c.py"}}
        r = await disp.dispatch(req("noop", {}, id=2), None)
        assert r == {"jsonrpc": "2.0", "id": 2, "result": {"from": "c.py"}}
        await host.shutdown()
    run(main())
    with open(order) as f:
        assert f.read().split() == ["c.py", "c.py"]
