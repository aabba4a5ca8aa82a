"""Built-in RPC commands, one module per area.  Importing this package registers them all."""

from . import core, datastore, peers, plugin_cmd  # noqa: F401
