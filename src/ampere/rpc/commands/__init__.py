"""Built-in RPC commands, one module per area.  Importing this package registers them all."""

from . import (  # noqa: F401
    askrene, chain, channels, datastore, fundpsbt, general, gossip, invoices, logs, offers, partial, pay, payments,
    peers, plugin_cmd, runes, sql, wallet)
