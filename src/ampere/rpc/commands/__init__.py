"""Built-in RPC commands, one module per area.  Importing this package registers them all."""

from . import chain, core, datastore, gossip, invoices, peers, plugin_cmd, wallet  # noqa: F401
