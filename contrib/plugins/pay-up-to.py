#!/usr/bin/env python

from pyln.client import Plugin
import json, re, time

plugin = Plugin()

def amount(bolt11):
    multiplier = {
        "m": 0.001,
        "u": 0.000001,
        "n": 0.000000001,
        "p": 0.000000000001
    }
    match = re.match(r"ln(?:bcrt|bc|tbs|tb)([0-9]+)(.)", bolt11)
    amount = match[1]
    mltp = match[2]
    return float(amount) * multiplier[mltp]

@plugin.hook("rpc_command")
def rpc_command_func(plugin, rpc_command, **kwargs):
    request = rpc_command
    limit = float(plugin.get_option("limit").strip("btc"))
    if request["method"] == "pay":
        bolt11 = request["params"][0]
        if amount(bolt11) > limit:
            return {"return":
                    {"result":
                     {
                         "invoice_too_high": str(amount(bolt11)) + "btc",
                         "maximum_is": str(limit) + "btc",
                         "bolt11": bolt11
                     }}}
    return {"result": "continue"}

plugin.add_option(name="limit",
                  default="0.001btc",
                  description="pay bolt11 invoice up to 'limit'")

plugin.run()
