"""bitcoin.conf, read the way bitcoind and bitcoin-cli read it, for amp-chaind and amp-chain-cli alike.

`key=value` lines, `#` starts a comment; a `[section]` header scopes the lines after it to that network and a
`network.key=value` line scopes one line: only the top level and `regtest` apply (amp-chaind runs regtest only).
A bare `key` means `key=1`. Every value of a key is kept, in order (bitcoind's multi-valued options such as
`rpcauth`); single-valued options take the last one.
"""

from __future__ import annotations

import os

NETWORK = "regtest"


def conf_path(datadir: str, conf: str | None) -> str:
    """The file `-conf` names (relative to the datadir, as bitcoind resolves it), or `<datadir>/bitcoin.conf`."""
    path = conf if conf is not None else "bitcoin.conf"
    return path if os.path.isabs(path) else os.path.join(datadir, path)


def read_bitcoin_conf(path: str) -> dict[str, list[str]]:
    """The options that apply to regtest, each with all its values in file order; {} if the file is absent."""
    out: dict[str, list[str]] = {}
    section = ""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section not in ("", NETWORK):
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if "." in key:
            net, _, key = key.partition(".")
            if net != NETWORK:
                continue
        out.setdefault(key, []).append(value.strip() if eq else "1")
    return out
