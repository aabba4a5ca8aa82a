"""Ampere: a Lightning Network node in Python, speaking the BOLTs and Core Lightning's interfaces."""

__version__ = "0.1.0"
# The Core Lightning release whose interfaces (RPC, plugins, options, hsm_secret) Ampere follows.
CLN_COMPAT_VERSION = "v26.06"
# What `--version`, `getinfo` and plugins (LIGHTNINGD_VERSION, init) see: CLN's version first, so tools
# that compare versions (pyln-testing turns on --developer, the mnemonic hsm_secret... from v25.12)
# treat Ampere as the CLN release it is compatible with; Ampere's own version follows.
VERSION_STRING = f"{CLN_COMPAT_VERSION}-ampere-{__version__}"
