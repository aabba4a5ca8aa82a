#!/usr/bin/env python3
"""openchannel hook: records each payload (JSON lines in --openchannel-log) and rejects channels smaller than
--openchannel-min-msat (default: all of them) with an error message; larger ones continue with mindepth 1."""
import json

from pyln.client import Plugin

plugin = Plugin()
plugin.add_option("openchannel-log", "", "file to append each openchannel payload to")
plugin.add_option("openchannel-min-msat", "0", "reject channels below this funding (0: reject all)")


@plugin.hook("openchannel")
def on_openchannel(openchannel, plugin, **kwargs):
    path = plugin.get_option("openchannel-log")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"openchannel": openchannel}) + "\n")
    minimum = int(plugin.get_option("openchannel-min-msat"))
    if minimum and int(openchannel["funding_msat"]) >= minimum:
        return {"result": "continue", "mindepth": 1}
    return {"result": "reject", "error_message": "openchannel_reject.py says no"}


plugin.run()
