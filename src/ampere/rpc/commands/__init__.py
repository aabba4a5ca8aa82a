"""Built-in RPC commands, one module per area.  Importing this package registers them all."""

from . import chain, channels, core, datastore, gossip, invoices, pay, payments, peers, plugin_cmd, wallet  # noqa: F401
