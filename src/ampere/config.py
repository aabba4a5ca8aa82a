"""Options and configuration files, as lightningd reads them.

Sources, in order, each later one overriding single-valued options and adding to multi options:
  1. `<lightning-dir>/config`, 2. `<lightning-dir>/<network>/config` (or only `--conf=FILE`),
  3. the command line.
A config line is `name=value` or `name` (a flag); `#` starts a comment; `include PATH` reads another
file (relative to the including file's directory): configfile.py reads them.

Plugin options are known only after the plugins answered `getmanifest`, so parsing is two-phase:
`early_scan()` finds what is needed to locate files and plugins while tolerating unknown names, and
`Options.apply()` later checks every entry against the full set of options, plugins' included.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

# The config-file reader and the names amp-cli needs live in configfile.py (light to import).
from .configfile import NETWORK_ALIASES, NETWORKS, ConfigError, Entry, read_config_file  # noqa: F401
from .primitives.amount import AmountError, parse_msat


@dataclass
class OptionSpec:
    name: str
    kind: str  # string | string-conceal | int | bool | flag | msat
    help: str
    default: Any = None
    multi: bool = False
    dynamic: bool = False
    early: bool = False
    plugin: str | None = None  # path of the plugin that declared it
    deprecated: bool = False
    # Raises ValueError(message) for a value the option cannot take.
    validate: Callable[[Any], None] | None = None
    # Repeatable, but listed by listconfigs as its last value (as lightningd lists log-level).
    list_last: bool = False
    # How listconfigs shows the value (the wallet DSN without its password).
    display: Callable[[Any], str] | None = None

    @property
    def takes_arg(self) -> bool:
        return self.kind != "flag"


def parse_typed(spec: OptionSpec, raw: str | None) -> Any:
    """Turn one textual value into the option's type, with lightningd's messages."""
    label = f"--{spec.name}" + (f"={raw}" if raw is not None else "")
    if spec.kind == "flag":
        if raw is not None and raw != "":
            raise ConfigError(f"{label}: doesn't allow an argument")
        return True
    if raw is None:
        raise ConfigError(f"--{spec.name}: requires an argument")
    if spec.kind == "int":
        try:
            value: Any = int(raw, 10)
        except ValueError:
            raise ConfigError(f"{label}: '{raw}' is not a number") from None
    elif spec.kind == "bool":
        low = raw.lower()
        if low not in ("true", "false"):
            raise ConfigError(f"{label}: Invalid argument '{raw}'")
        value = low == "true"
    elif spec.kind == "msat":
        try:
            value = parse_msat(raw)
        except AmountError as e:
            raise ConfigError(f"{label}: {e}") from None
    elif spec.kind in ("string", "string-conceal"):
        value = raw
    else:
        raise ConfigError(f"--{spec.name}: unknown option type {spec.kind}")
    if spec.validate is not None:
        try:
            spec.validate(value)
        except ValueError as e:
            raise ConfigError(f"{label}: {e}") from None
    return value


def split_cmdline(argv: list[str], specs: dict[str, OptionSpec], strict: bool) -> list[Entry]:
    """`--name=value`, `--name value` (for options known to take an argument), `--flag`.

    With strict=False, unknown names are kept (they may be plugin options) and never consume the
    next word; with strict=True they are an error naming the option.
    """
    out: list[Entry] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise ConfigError(f"unexpected argument '{arg}'")
        body = arg.lstrip("-")
        if body in ("h",):
            body = "help"
        if body in ("V",):
            body = "version"
        name, eq, value = body.partition("=")
        spec = specs.get(name)
        if spec is None:
            if strict:
                raise ConfigError(f"--{name}: unrecognized option")
            out.append(Entry(name, value if eq else None, "cmdline"))
            continue
        if not eq and spec.takes_arg:
            if i >= len(argv):
                raise ConfigError(f"--{name}: requires an argument")
            value = argv[i]
            i += 1
            eq = "="
        out.append(Entry(name, value if eq else None, "cmdline"))
    return out


@dataclass
class Layout:
    lightning_dir: str
    network: str
    conf: str | None
    entries: list[Entry] = field(default_factory=list)

    @property
    def netdir(self) -> str:
        return os.path.join(self.lightning_dir, self.network)


def _last(entries: list[Entry], name: str) -> str | None:
    val = None
    for e in entries:
        if e.name == name:
            val = e.value
    return val


def _network_of(entries: list[Entry]) -> str | None:
    net = None
    for e in entries:
        if e.name == "network":
            net = e.value
        elif e.name in ("mainnet", "testnet", "testnet4", "signet", "regtest"):
            net = e.name
    if net is not None:
        net = NETWORK_ALIASES.get(net, net)
        if net not in NETWORKS:
            raise ConfigError(f"--network={net}: Unknown network name '{net}'")
    return net


def early_scan(argv: list[str], specs: dict[str, OptionSpec], default_dir: str) -> Layout:
    """Find the lightning-dir, network and config files, and gather every entry in order."""
    cmd = split_cmdline(argv, specs, strict=False)
    ldir = _last(cmd, "lightning-dir") or default_dir
    ldir = os.path.abspath(os.path.expanduser(ldir))
    conf = _last(cmd, "conf")
    if conf is not None:
        conf = os.path.abspath(conf)
        files = read_config_file(conf, required=True)
        network = _network_of(files + cmd) or "bitcoin"
    else:
        base = read_config_file(os.path.join(ldir, "config"), required=False)
        network = _network_of(base + cmd) or "bitcoin"
        files = base + read_config_file(os.path.join(ldir, network, "config"), required=False)
        # Entries in files may not move the lightning-dir after the fact.
        for e in files:
            if e.name == "lightning-dir":
                raise ConfigError(f"{e.source}: lightning-dir can only be set on the command line")
    return Layout(ldir, network, conf, files + cmd)


class Options:
    """The option registry and the values in force."""

    def __init__(self) -> None:
        self.specs: dict[str, OptionSpec] = {}
        self.values: dict[str, Any] = {}
        self.sources: dict[str, list[str]] = {}

    def add(self, spec: OptionSpec) -> None:
        if spec.name in self.specs:
            raise ConfigError(f"option name '{spec.name}' is already taken")
        self.specs[spec.name] = spec

    def remove_plugin(self, plugin_path: str) -> None:
        for name in [n for n, s in self.specs.items() if s.plugin == plugin_path]:
            del self.specs[name]
            self.values.pop(name, None)
            self.sources.pop(name, None)

    def apply(self, entries: list[Entry], only: Callable[[OptionSpec], bool] | None = None) -> None:
        """Check and set every entry.  Unknown names are an error naming the option and its source."""
        for e in entries:
            spec = self.specs.get(e.name)
            if spec is None:
                where = "" if e.source == "cmdline" else f"{e.source}: "
                raise ConfigError(f"{where}--{e.name}: unrecognized option")
            if only is not None and not only(spec):
                continue
            self.set(spec, e.value, e.source)

    def set(self, spec: OptionSpec, raw: str | None, source: str) -> Any:
        value = parse_typed(spec, raw)
        if spec.multi:
            self.values.setdefault(spec.name, []).append(value)
            self.sources.setdefault(spec.name, []).append(source)
        else:
            self.values[spec.name] = value
            self.sources[spec.name] = [source]
        return value

    def is_set(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        spec = self.specs.get(name)
        if spec is None:
            raise KeyError(name)
        if spec.multi:
            return [] if spec.default is None else [spec.default]
        if spec.kind == "flag":
            return bool(spec.default)
        return spec.default

    def raw_plugin_values(self, plugin_path: str) -> dict[str, Any]:
        return {n: self.values[n] for n, s in self.specs.items() if s.plugin == plugin_path and n in self.values}

    def help_text(self) -> str:
        lines = []
        for name in sorted(self.specs):
            spec = self.specs[name]
            if spec.deprecated:
                continue
            arg = "" if spec.kind == "flag" else " <arg>"
            default = ""
            if spec.default is not None and spec.kind != "flag":
                default = f" (default: {spec.default})"
            lines.append(f"--{name}{arg:<{max(1, 28 - len(name))}} {spec.help}{default}")
        return "\n".join(lines)


def _listconfigs_value(spec: OptionSpec, value: Any) -> dict:
    if spec.kind == "flag":
        return {"set": bool(value)}
    if spec.multi:
        return {"values_str" if spec.kind != "int" else "values_int": [v if spec.kind == "int" else str(v) for v in value]}
    if spec.kind == "string-conceal":
        return {"value_str": "..."}
    if spec.kind == "int":
        return {"value_int": value}
    if spec.kind == "bool":
        return {"value_bool": value}
    if spec.kind == "msat":
        return {"value_msat": int(value)}
    if spec.display is not None:
        return {"value_str": spec.display(value)}
    return {"value_str": str(value)}


def listconfigs_entry(opts: Options, name: str) -> dict | None:
    """One option as CLN's `listconfigs` shows it, or None when unset and without a default."""
    spec = opts.specs[name]
    if name in opts.values:
        value = opts.values[name]
        srcs = opts.sources[name]
        source = srcs[-1]
    elif spec.default is not None or spec.kind == "flag":
        value = opts.get(name)
        source = "default"
        srcs = [source]
    else:
        return None
    if spec.multi and spec.list_last:
        if not value:
            return None
        return {"value_str": str(value[-1]), "source": srcs[-1]}
    out = _listconfigs_value(spec, value)
    if spec.multi:
        out["sources"] = srcs
    else:
        out["source"] = source
    if spec.plugin:
        out["plugin"] = spec.plugin
    if spec.dynamic:
        out["dynamic"] = True
    return out


def persist_setconfig(netdir: str, config_files: list[str], name: str, values: list[str | None]) -> tuple[str, int]:
    """Record a dynamic option's new value in `<netdir>/config.setconfig` and comment out older lines.

    lightningd-config(5): setconfig values go to `config.setconfig`, included from the network
    config file, so they survive restarts; old settings elsewhere are commented out.
    """
    target = os.path.join(netdir, "config.setconfig")
    for path in config_files:
        if not os.path.exists(path) or os.path.abspath(path) == os.path.abspath(target):
            continue
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        changed = False
        for i, line in enumerate(lines):
            key = line.strip().partition("=")[0].strip().lstrip("-")
            if key == name and not line.lstrip().startswith("#"):
                lines[i] = "# setconfig commented out: " + line
                changed = True
        if changed:
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
    existing: list[str] = []
    if os.path.exists(target):
        with open(target, encoding="utf-8") as f:
            existing = [ln for ln in f.read().splitlines() if ln.partition("=")[0].strip() != name]
    first_line = len(existing) + 1
    for v in values:
        existing.append(name if v is None else f"{name}={v}")
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(existing) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    netconf = os.path.join(netdir, "config")
    include_line = "include config.setconfig"
    current = ""
    if os.path.exists(netconf):
        with open(netconf, encoding="utf-8") as f:
            current = f.read()
    if include_line not in current.splitlines():
        with open(netconf, "a", encoding="utf-8") as f:
            if current and not current.endswith("\n"):
                f.write("\n")
            f.write(include_line + "\n")
    return target, first_line
