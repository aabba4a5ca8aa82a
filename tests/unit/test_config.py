
import pytest

from ampere.config import ConfigError, Options, early_scan, listconfigs_entry, persist_setconfig, read_config_file
from ampere.node.app.options import builtin_options


def make_options():
    o = Options()
    for s in builtin_options():
        o.add(s)
    return o


def test_config_files_then_cmdline(tmp_path):
    d = tmp_path / "ln"
    (d / "regtest").mkdir(parents=True)
    (d / "config").write_text("# base\nnetwork=regtest\nalias=base\nlog-file=/tmp/a\n")
    (d / "regtest" / "config").write_text("alias=net   \n\nrgb=ff0000\nlog-file=/tmp/b\ninclude extra\n")
    (d / "regtest" / "extra").write_text("log-prefix=X\n")
    opts = make_options()
    layout = early_scan([f"--lightning-dir={d}", "--alias", "cmd", "--log-file=-"], opts.specs, "~/.ampere")
    assert layout.network == "regtest" and layout.netdir == str(d / "regtest")
    opts.apply(layout.entries)
    assert opts.get("alias") == "cmd"            # command line wins
    assert opts.get("rgb") == "ff0000"
    assert opts.get("log-file") == ["/tmp/a", "/tmp/b", "-"]  # multi options accumulate in order
    assert opts.get("log-prefix") == "X"         # include works, relative to the including file
    assert opts.sources["rgb"] == [f"{d}/regtest/config:3"]


def test_conf_replaces_default_files(tmp_path):
    (tmp_path / "config").write_text("alias=ignored\n")
    conf = tmp_path / "mine.conf"
    conf.write_text("network=signet\nalias=mine\n")
    opts = make_options()
    layout = early_scan([f"--lightning-dir={tmp_path}", f"--conf={conf}"], opts.specs, "~")
    opts.apply(layout.entries)
    assert layout.network == "signet" and opts.get("alias") == "mine"


@pytest.mark.parametrize("argv,message", [
    (["--bogus"], "--bogus: unrecognized option"),
    (["--rgb=zz"], "--rgb=zz: rgb must be 6 hex digits"),
    (["--plugin-timeout=abc"], "'abc' is not a number"),
    (["--allow-deprecated-apis=1"], "Invalid argument '1'"),
    (["--daemon=yes"], "doesn't allow an argument"),
    (["--network=moon"], "Unknown network name 'moon'"),
    (["--alias"], "requires an argument"),
    (["stray"], "unexpected argument 'stray'"),
])
def test_bad_options_name_the_culprit(tmp_path, argv, message):
    opts = make_options()
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        layout = early_scan([f"--lightning-dir={tmp_path}"] + argv, opts.specs, "~")
        opts.apply(layout.entries)


def test_unknown_option_in_config_file_names_file_and_line(tmp_path):
    (tmp_path / "config").write_text("alias=a\nnosuchthing=1\n")
    opts = make_options()
    layout = early_scan([f"--lightning-dir={tmp_path}"], opts.specs, "~")
    with pytest.raises(ConfigError, match=r"config:2: --nosuchthing: unrecognized option"):
        opts.apply(layout.entries)


def test_missing_include_is_an_error(tmp_path):
    (tmp_path / "c").write_text("include nothere\n")
    with pytest.raises(ConfigError, match="not found"):
        read_config_file(str(tmp_path / "c"), True)


def test_listconfigs_shapes():
    opts = make_options()
    opts.set(opts.specs["alias"], "x", "cmdline")
    opts.set(opts.specs["log-file"], "-", "cmdline")
    assert listconfigs_entry(opts, "alias") == {"value_str": "x", "source": "cmdline"}
    assert listconfigs_entry(opts, "plugin-timeout") == {"value_int": 120, "source": "default"}
    assert listconfigs_entry(opts, "log-file") == {"values_str": ["-"], "sources": ["cmdline"]}
    assert listconfigs_entry(opts, "daemon") == {"set": False, "source": "default"}
    assert listconfigs_entry(opts, "proxy") is None


def test_persist_setconfig_comments_out_and_includes(tmp_path):
    netdir = tmp_path / "regtest"
    netdir.mkdir()
    (tmp_path / "config").write_text("foo=1\nbar=2\n")
    path, line = persist_setconfig(str(netdir), [str(tmp_path / "config"), str(netdir / "config")], "foo", ["5"])
    assert (tmp_path / "config").read_text().splitlines()[0].startswith("# setconfig commented out: foo=1")
    assert open(path).read() == "foo=5\n" and line == 1
    assert "include config.setconfig" in (netdir / "config").read_text()
    persist_setconfig(str(netdir), [], "foo", ["6"])
    assert open(path).read() == "foo=6\n"
    entries = read_config_file(str(netdir / "config"), True)
    assert [(e.name, e.value) for e in entries] == [("foo", "6")]
