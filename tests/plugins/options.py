#!/usr/bin/env python3
"""Options of every type; logs what init gave it, as CLN's tests/plugins/options.py does."""
from pyln.client import Plugin

plugin = Plugin()
plugin.add_option("str_opt", "i am a string", "an example string option")
plugin.add_option("int_opt", 7, "an example int option", opt_type="int")
plugin.add_option("bool_opt", True, "an example bool option", opt_type="bool")
plugin.add_flag_option("flag_opt", "an example flag option")
plugin.add_option("str_optm", None, "an example string multi option", multi=True)
plugin.add_option("int_optm", None, "an example int multi option", opt_type="int", multi=True)


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    for name, value in sorted(options.items()):
        plugin.log("option {} {} {}".format(name, value, type(value)))
    plugin.log("configuration {}".format(sorted(configuration.items())))


@plugin.method("getoptions")
def getoptions(plugin):
    """The option values as the plugin sees them."""
    return {name: opt.value for name, opt in plugin.options.items()}


plugin.run()
