"""Plugin protocol pieces without processes: manifests, option values, hook registration and
ordering, the rpc_command deserialiser, hook timeouts, the JSON stream splitter, request ids and
the notification bus.  Expected strings are lightningd's (cln-interfaces.md 1-3)."""

import json

import pytest

from ampere.plugins.hooks import (ContinueSession, HookRegistry, HookError, RpcCommandSession, parse_hook_timeout,
                                  plugin_paths_match)
from ampere.plugins.manifest import (HookRequest, ManifestError, OptionValueError, PluginOption,
                                     parse_c_long, parse_manifest, parse_option_value)
from ampere.plugins.notifications import NATIVE_TOPICS, NotificationBus, encode
from ampere.plugins.process import JsonMessageSplitter, id_prefix_of, new_request_id


def manifest(**result):
    base = {"options": [], "rpcmethods": []}
    base.update(result)
    return {"jsonrpc": "2.0", "id": "cln:getmanifest#1", "result": base}


def parse(**result):
    return parse_manifest(manifest(**result), path="/p/x.py", native_topics=NATIVE_TOPICS)


def manifest_error(**result) -> str:
    with pytest.raises(ManifestError) as e:
        parse(**result)
    return str(e.value)


# ------------------------------------------------------------------ manifests

def test_manifest_requires_options_and_rpcmethods():
    assert manifest_error(options=None) != ""  # options must be an array
    with pytest.raises(ManifestError, match=r'"result.options" was not found in the manifest'):
        parse_manifest({"jsonrpc": "2.0", "id": "x", "result": {"rpcmethods": []}}, path="/p",
                       native_topics=NATIVE_TOPICS)
    with pytest.raises(ManifestError, match=r'"result.rpcmethods" missing'):
        parse_manifest({"jsonrpc": "2.0", "id": "x", "result": {"options": []}}, path="/p",
                       native_topics=NATIVE_TOPICS)
    with pytest.raises(ManifestError, match="Invalid/missing result tok"):
        parse_manifest({"jsonrpc": "2.0", "id": "x", "error": {"code": 1, "message": "no"}}, path="/p",
                       native_topics=NATIVE_TOPICS)


def test_manifest_full_fields():
    m = parse(
        options=[{"name": "greeting", "type": "string", "default": "Hello", "description": "d"},
                 {"name": "n", "type": "int", "default": 5, "description": "d", "multi": True, "dynamic": True},
                 {"name": "b", "type": "bool", "default": True, "description": "d"},
                 {"name": "f", "type": "flag", "default": False, "description": "d"},
                 {"name": "secret", "type": "string-conceal", "description": "d", "deprecated": ["v23.08"]}],
        rpcmethods=[{"name": "hello", "usage": "[name]", "description": "says hello"},
                    {"name": "old", "usage": "", "deprecated": True}],
        subscriptions=["connect", "*"],
        hooks=["rpc_command", {"name": "htlc_accepted", "before": ["a.py"], "after": ["/x/b.py"]}],
        notifications=[{"method": "mytopic"}],
        featurebits={"node": "0200", "init": "0200"},
        custommessages=[32769, 42],
        nonnumericids=True, cancheck=True)
    assert [o.name for o in m.options] == ["greeting", "n", "b", "f", "secret"]
    assert m.options[0].default == "Hello" and m.options[0].plugin == "/p/x.py"
    assert m.options[1].default == 5 and m.options[1].multi and m.options[1].dynamic
    assert m.options[2].default is True
    assert m.options[3].type == "flag" and m.options[3].default is None
    assert m.options[4].type == "string-conceal" and m.options[4].deprecated
    assert [(x.name, x.usage, x.deprecated) for x in m.methods] == [("hello", "[name]", False), ("old", "", True)]
    assert m.subscriptions == ["connect", "*"]
    assert m.hooks[0] == HookRequest("rpc_command")
    assert m.hooks[1].before == ["a.py"] and m.hooks[1].after == ["/x/b.py"]
    assert m.notifications == ["mytopic"]
    assert m.featurebits == {"node": 0x0200, "init": 0x0200}
    assert m.custommessages == [32769, 42]
    assert m.cancheck is True and m.dynamic is False


def test_manifest_disable_is_checked_first():
    m = parse_manifest({"jsonrpc": "2.0", "id": "x", "result": {"disable": "not today"}}, path="/p",
                       native_topics=NATIVE_TOPICS)
    assert m.disabled == "not today"


@pytest.mark.parametrize("fields, message", [
    (dict(options=[{"name": "Bad", "type": "string", "description": "d"}]),
     "Option \"name\" must be lowercase alphanumeric, plus _ or -'"),
    (dict(options=[{"name": "x", "type": "string"}]),
     'An option is missing either "name", "description" or "type"'),
    (dict(options=[{"name": "x", "type": "float", "description": "d"}]),
     'Only "string", "int", "bool", and "flag" options are supported'),
    (dict(options=[{"name": "x", "type": "flag", "description": "d", "default": True}]),
     "--x type flag default must be 'false' not true"),
    (dict(options=[{"name": "x", "type": "flag", "description": "d", "multi": True}]),
     "flag type cannot be multi"),
    (dict(options=[{"name": "x", "type": "bool", "description": "d", "multi": True}]),
     "bool type cannot be multi"),
    (dict(options=[{"name": "x", "type": "int", "description": "d", "default": "five"}]),
     "Invalid default 'five': 'five' is not a number"),
    (dict(options=[{"name": "x", "type": "int", "description": "d", "deprecated": ["vX", "a", "b"]}]),
     '"deprecated" must be an array of 1 or 2 elements'),
    (dict(rpcmethods=[{"name": "m"}]), '"usage" not provided by plugin'),
    (dict(rpcmethods=[{"usage": ""}]), 'rpcmethod does not have a string "name"'),
    (dict(notifications=[{"method": "connect"}]),
     'plugin attempted to register a native notification topic "connect"'),
    (dict(subscriptions=[1]), "result.subscriptions[0] is not a string: '1'"),
    (dict(featurebits={"node": "zz"}), "Featurebits returned by plugin is not a valid hexadecimal string: zz"),
    (dict(featurebits={"node": "02"}, dynamic=True), "Custom featurebits only allows for non-dynamic plugins"),
    (dict(custommessages=[70000]), "custommessages 0 not a u16: '70000'"),
    (dict(nonnumericids=False), "Plugin does not allow nonnumericids"),
    (dict(dynamic="yes"), 'getmanifest: invalid "dynamic" field "yes"'),
    (dict(hooks=[{"before": []}]), "no name in hook obj"),
])
def test_manifest_errors(fields, message):
    assert message in manifest_error(**fields)


# ------------------------------------------------------------------ option values

def opt(typ, **kw):
    return PluginOption(name=kw.pop("name", f"{typ}_opt"), type=typ, description="d", **kw)


def test_option_value_messages_match_lightningd():
    # tests/test_plugin.py::test_option_types in CLN expects exactly these.
    with pytest.raises(OptionValueError) as e:
        parse_option_value(opt("int"), "notok")
    assert str(e.value) == "--int_opt=notok: 'notok' is not a number"
    with pytest.raises(OptionValueError) as e:
        parse_option_value(opt("bool"), "1")
    assert str(e.value) == "--bool_opt=1: Invalid argument '1'"
    with pytest.raises(OptionValueError) as e:
        parse_option_value(opt("bool"), "!")
    assert str(e.value) == "--bool_opt=!: Invalid argument '!'"
    with pytest.raises(OptionValueError) as e:
        parse_option_value(opt("flag"), "True")
    assert str(e.value) == "--flag_opt=True: doesn't allow an argument"
    assert e.value.reason == "doesn't allow an argument"


def test_option_value_types():
    assert parse_option_value(opt("int"), "22") == 22
    assert parse_option_value(opt("int"), "-0x10") == -16  # strtol base 0
    assert parse_option_value(opt("int"), "010") == 8
    assert parse_option_value(opt("int"), 5) == 5
    assert parse_option_value(opt("bool"), "TRUE") is True
    assert parse_option_value(opt("bool"), "no") is False
    assert parse_option_value(opt("flag"), None) is True
    assert parse_option_value(opt("string"), "x y") == "x y"
    with pytest.raises(OptionValueError, match="requires an argument"):
        parse_option_value(opt("string"), None)
    with pytest.raises(OptionValueError, match="deprecated option"):
        parse_option_value(opt("string", deprecated=True), "x", allow_deprecated_apis=False)
    assert parse_option_value(opt("string", deprecated=True), "x", allow_deprecated_apis=True) == "x"


def test_parse_c_long_edges():
    assert parse_c_long(str(2**63 - 1)) == 2**63 - 1
    with pytest.raises(ValueError, match="is out of range"):
        parse_c_long(str(2**63))
    for bad in ("", "1.5", "12abc", "0x", "09"):
        with pytest.raises(ValueError, match="is not a number"):
            parse_c_long(bad)


# ------------------------------------------------------------------ hooks

class P:
    def __init__(self, path, index):
        self.path, self.index, self.shortname = path, index, path.rsplit("/", 1)[-1]
        self.alive = True


def test_plugin_paths_match():
    assert plugin_paths_match("/a/b/x.py", "x.py")
    assert not plugin_paths_match("/a/b/x.py", "b/x.py")
    assert plugin_paths_match("/a/b/x.py", "/a/b/x.py")
    assert not plugin_paths_match("/a/b/x.py", "y.py")


def test_hook_registration_errors():
    reg = HookRegistry()
    p = P("/x/a.py", 0)
    with pytest.raises(HookError, match="Unknown hook name nosuchhook"):
        reg.build(p, [HookRequest("nosuchhook")])
    with pytest.raises(HookError, match="Hook htlc_accepted does not allow filters"):
        reg.build(p, [HookRequest("htlc_accepted", filters=["x"])])
    with pytest.raises(HookError, match="filters must be array of strings"):
        reg.build(p, [HookRequest("rpc_command", filters=[1])])
    with pytest.raises(HookError, match="filters must be array of unsigned integers"):
        reg.build(p, [HookRequest("custommsg", filters=["x"])])
    with pytest.raises(HookError, match="Registered for hook rpc_command multiple times"):
        reg.build(p, [HookRequest("rpc_command"), HookRequest("rpc_command")])


def test_hook_order_before_after_and_index():
    reg = HookRegistry()
    a, b, c, d = P("/x/a.py", 0), P("/x/b.py", 1), P("/x/c.py", 2), P("/x/d.py", 3)
    reg.add(reg.build(a, [HookRequest("htlc_accepted")]))
    reg.add(reg.build(b, [HookRequest("htlc_accepted", before=["a.py"])]))
    reg.add(reg.build(c, [HookRequest("htlc_accepted", after=["/x/d.py"])]))
    reg.add(reg.build(d, [HookRequest("htlc_accepted", after=["unknown.py"])]))
    debug = []
    assert reg.reorder(lambda p, m: debug.append(m)) == []
    assert [r.plugin for r in reg.chain("htlc_accepted")] == [b, a, d, c]
    assert debug == ["hook htlc_accepted after unknown plugin unknown.py"]
    reg.remove_plugin(a)
    assert [r.plugin for r in reg.chain("htlc_accepted")] == [b, d, c]


def test_hook_order_cycle_reports_plugins():
    reg = HookRegistry()
    a, b, c = P("/x/a.py", 0), P("/x/b.py", 1), P("/x/c.py", 2)
    reg.add(reg.build(a, [HookRequest("peer_connected", before=["b.py"])]))
    reg.add(reg.build(b, [HookRequest("peer_connected", before=["a.py"])]))
    reg.add(reg.build(c, [HookRequest("peer_connected")]))
    assert set(reg.reorder()) == {a, b}


def test_hook_filters():
    reg = HookRegistry()
    a, b = P("/x/a.py", 0), P("/x/b.py", 1)
    reg.add(reg.build(a, [HookRequest("rpc_command", filters=["pay"])]))
    reg.add(reg.build(b, [HookRequest("custommsg", filters=[32769])]))
    reg.reorder()
    assert [r.plugin for r in reg.chain("rpc_command", "pay")] == [a]
    assert reg.chain("rpc_command", "getinfo") == []
    assert reg.has("custommsg", 32769) and not reg.has("custommsg", 32771)


# ------------------------------------------------------------------ rpc_command semantics

def session(request=None, exists=None):
    logs = []
    s = RpcCommandSession(request or {"jsonrpc": "2.0", "id": 1, "method": "getinfo", "params": []},
                          lambda lvl, msg: logs.append((lvl, msg)), exists)
    return s, logs


def test_rpc_command_continue_and_return():
    s, _ = session()
    assert s.on_result(None, {"result": "continue"}) is True
    assert s.outcome() == ("continue", s.request)
    s, _ = session()
    assert s.on_result(None, {"return": {"result": {"BOOM": "I took over your node"}}}) is True
    assert s.outcome() == ("return", {"result": {"BOOM": "I took over your node"}})
    s, _ = session()
    s.on_result(None, {"return": {"error": {"code": 1234, "message": "no", "data": {"x": 1}}}})
    assert s.outcome() == ("return", {"error": {"code": 1234, "message": "no", "data": {"x": 1}}})


def test_rpc_command_already_modified_stops_chain():
    s, logs = session()
    assert s.on_result(None, {"return": {"result": {"first": 1}}})
    assert s.on_result(None, {"return": {"result": {"second": 2}}}) is False
    assert s.outcome() == ("return", {"result": {"first": 1}})
    assert logs == [("unusual", "rpc_command hook 'getinfo' already modified, ignoring.")]


def test_rpc_command_malformed_answers_are_skipped():
    s, logs = session()
    assert s.on_result(None, {"result": "maybe"})
    assert s.on_result(None, {"return": {"error": {"message": "no code"}}})
    assert s.on_result(None, {"return": {"error": {"code": 1}}})
    assert s.on_result(None, {"something": "else"})
    assert s.outcome()[0] == "continue"
    assert [m for _, m in logs] == [
        "Bad response to 'rpc_command' hook. 'result' should only be 'continue'.",
        "Bad response to 'rpc_command' hook. 'error' object does not contain a code.",
        "Bad response to 'rpc_command' hook. 'error' object does not contain a message.",
        "Bad response to 'rpc_command' hook. "]
    assert all(lvl == "broken" for lvl, _ in logs)


def test_rpc_command_replace():
    new = {"jsonrpc": "2.0", "id": "other", "method": "listpeers", "params": {}}
    s, _ = session(exists=lambda m: m in ("getinfo", "listpeers"))
    s.on_result(None, {"replace": new})
    assert s.outcome() == ("continue", new)
    s, _ = session(exists=lambda m: m == "getinfo")
    s.on_result(None, {"replace": dict(new, method="nosuch")})
    kind, resp = s.outcome()
    assert kind == "return" and resp["error"]["code"] == -32600
    assert resp["error"]["message"].startswith(
        "Bad response to 'rpc_command' hook: redirected to unknown method 'nosuch' (")
    s, _ = session()
    s.on_result(None, {"replace": {"jsonrpc": "2.0", "method": "getinfo", "params": []}})
    assert "missing 'id'" in s.outcome()[1]["error"]["message"]
    s, _ = session()
    s.on_result(None, {"replace": {"id": 1, "method": "getinfo", "params": []}})
    assert 'jsonrpc: "2.0" must be specified' in s.outcome()[1]["error"]["message"]


# ------------------------------------------------------------------ hook timeouts

def test_parse_hook_timeout():
    name, ht = parse_hook_timeout("htlc_accepted:30:fail")
    assert name == "htlc_accepted" and ht.seconds == 30 and ht.answer == {"result": "fail", "failure_message": "2002"}
    assert parse_hook_timeout("rpc_command:1.5")[1].answer == {"result": "continue"}
    assert parse_hook_timeout('peer_connected:2:{"result":"disconnect","error_message":"slow"}')[1].answer == {
        "result": "disconnect", "error_message": "slow"}
    for bad, msg in [("htlc_accepted", "HOOK:SECONDS"), ("nohook:3", "unknown hook"),
                     ("htlc_accepted:x", "not a number"), ("htlc_accepted:-1", "positive"),
                     ("htlc_accepted:3:explode", "unknown answer 'explode'"), ("rpc_command:3:{bad", "not valid JSON")]:
        with pytest.raises(ValueError, match=msg):
            parse_hook_timeout(bad)


# ------------------------------------------------------------------ stream splitting and ids

def test_splitter_whole_and_chunked():
    msgs = [{"jsonrpc": "2.0", "id": i, "result": {"s": "a}\"{[\\" * i, "n": [1, {"x": "]"}]}} for i in range(5)]
    text = "".join(json.dumps(m) + ("\n\n" if i % 2 else " ") for i, m in enumerate(msgs))
    sp = JsonMessageSplitter()
    assert sp.feed(text) == (msgs, None)
    for size in (1, 2, 3, 7, 64):
        sp = JsonMessageSplitter()
        got = []
        for i in range(0, len(text), size):
            values, err = sp.feed(text[i:i + size])
            assert err is None
            got.extend(values)
        assert got == msgs


def test_splitter_garbage():
    sp = JsonMessageSplitter()
    values, err = sp.feed('{"jsonrpc":"2.0","method":"log","params":{}}\n\nthis is not JSON\n')
    assert values == [{"jsonrpc": "2.0", "method": "log", "params": {}}]
    assert err.startswith("this is not JSON")
    sp = JsonMessageSplitter()
    assert sp.feed('{"a": tru')[1] is None  # incomplete: wait
    values, err = sp.feed("e, }")  # complete but invalid
    assert values == [] and err == '{"a": true, }'


def test_request_ids():
    a = new_request_id("getmanifest")
    b = new_request_id("hello", id_prefix_of("cli:hello#42"))
    assert a.startswith("cln:getmanifest#") and b.startswith("cli:hello#42/cln:hello#")
    assert int(b.rsplit("#", 1)[1]) > int(a.rsplit("#", 1)[1])
    assert id_prefix_of(7).startswith("7") and id_prefix_of('we"ird') == "weird-id"


# ------------------------------------------------------------------ notification bus

class Sub:
    def __init__(self, ready=True):
        self.ready = ready
        self.got = []

    def send_raw(self, data):
        self.got.append(data)


def test_bus_wildcard_excludes_log_and_wraps():
    bus = NotificationBus()
    star, conn, log_sub, unready = Sub(), Sub(), Sub(), Sub(ready=False)
    bus.subscribe(star, ["*"])
    bus.subscribe(conn, ["connect"])
    bus.subscribe(log_sub, ["log"])
    bus.subscribe(unready, ["connect"])
    assert bus.notify("connect", {"id": "02aa"}) == 2
    expected = encode({"jsonrpc": "2.0", "method": "connect", "params": {"connect": {"id": "02aa"}}})
    assert star.got == [expected] and conn.got == [expected] and unready.got == []
    assert expected.endswith(b"}\n\n")
    assert bus.notify("log", {"level": "info"}) == 1
    assert len(star.got) == 1 and len(log_sub.got) == 1
    assert bus.anyone_cares("block_added")  # the wildcard cares
    bus.remove_plugin(star)
    assert not bus.anyone_cares("block_added")
    assert bus.topic_known("connect") and not bus.topic_known("mytopic")
    bus.add_topics(conn, ["mytopic"])
    assert bus.topic_known("mytopic")


def test_splitter_bounds_plugin_output():
    """Issue 16 (plugin output): a plugin's deep nesting, huge integer or endless message is a protocol error
    (the plugin is killed), never a RecursionError/ValueError in the read loop or unbounded memory."""
    from ampere.plugins.process import MAX_PLUGIN_MESSAGE
    values, err = JsonMessageSplitter().feed("[" * 100_000)
    assert values == [] and err is not None and "nested" in err
    values, err = JsonMessageSplitter().feed('{"jsonrpc":"2.0","id":1,"result":' + "1" * 5000 + "}")
    assert values == [] and err is not None
    sp = JsonMessageSplitter()
    assert sp.feed('{"jsonrpc":"2.0","method":"log","params":{"message":"') == ([], None)
    chunk = "x" * (1 << 20)
    err = None
    for _ in range(MAX_PLUGIN_MESSAGE // len(chunk) + 2):
        _, err = sp.feed(chunk)
        if err is not None:
            break
    assert err is not None and "larger than" in err


def test_continue_keeps_its_fields():
    # openchannel's `{"result": "continue", "mindepth": 1}`: the mindepth must reach the caller (found against CLN:
    # Ampere answered accept_channel with minimum_depth 3 when its hook said 1).
    s = ContinueSession({"openchannel": {}})
    assert s.on_result("p1", {"result": "continue", "mindepth": 1, "reserve": "1000sat"}) is True
    assert s.on_result("p2", {"result": "continue", "mindepth": 2}) is True
    assert s.outcome() == {"result": "continue", "mindepth": 2, "reserve": "1000sat"}
    assert s.on_result("p3", {"result": "reject", "error_message": "no"}) is False
    assert s.outcome() == {"result": "reject", "error_message": "no"}
