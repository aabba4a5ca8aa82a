"""Moved to the protocol core: ampere.ln.onchain.classify (kept for existing imports)."""
from ampere.ln.onchain.classify import *  # noqa: F401,F403
from ampere.ln.onchain.classify import __all__  # noqa: F401
