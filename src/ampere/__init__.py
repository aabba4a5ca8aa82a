"""Ampere: a Lightning Network node in Python, speaking the BOLTs and Core Lightning's interfaces."""

__version__ = "0.1.0"
# What `getinfo` reports and what plugins see in LIGHTNINGD_VERSION.
VERSION_STRING = f"v{__version__}-ampere"
