"""Reading lightningd-style config files: what `ampd` and `amp-cli` both need.

Kept apart from config.py (the option machinery) and free of heavy imports, because `amp-cli`
reads config files on every call and must start in a few milliseconds.

A config line is `name=value` or `name` (a flag); `#` starts a comment; `include PATH` reads another
file (relative to the including file's directory).
"""


import os

NETWORKS = ("bitcoin", "testnet", "testnet4", "signet", "regtest")
NETWORK_ALIASES = {"mainnet": "bitcoin"}


class ConfigError(Exception):
    """A bad option, value or config file.  The message names the culprit."""


class Entry:
    """One occurrence of an option in a source."""

    __slots__ = ("name", "value", "source")

    def __init__(self, name: str, value: str | None, source: str) -> None:
        self.name = name
        self.value = value
        self.source = source  # "cmdline", "/path/config:3", "setconfig", "pluginstart"

    def __repr__(self) -> str:
        return f"Entry(name={self.name!r}, value={self.value!r}, source={self.source!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entry):
            return NotImplemented
        return (self.name, self.value, self.source) == (other.name, other.value, other.source)

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it replaces


def read_config_file(path: str, required: bool, _depth: int = 0) -> list[Entry]:
    if _depth > 10:
        raise ConfigError(f"{path}: include nesting too deep")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"Config file {path} not found") from None
        return []
    except OSError as e:
        raise ConfigError(f"Config file {path}: {e.strerror}") from None
    out: list[Entry] = []
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("include "):
            inc = text[len("include ") :].strip()
            if not os.path.isabs(inc):
                inc = os.path.join(os.path.dirname(path), inc)
            out.extend(read_config_file(inc, True, _depth + 1))
            continue
        name, eq, value = text.partition("=")
        out.append(Entry(name.strip().lstrip("-"), value if eq else None, f"{path}:{lineno}"))
    return out
