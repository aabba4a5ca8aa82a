"""The states of an output the on-chain resolver follows (column onchain_txouts.state)."""
from __future__ import annotations

__all__ = ["S_SWEEP", "S_UNRESOLVED", "S_WALLET", "S_EXTERNAL", "S_DUST", "S_PENALTY", "S_HTLC_TIMEOUT",
           "S_HTLC_SUCCESS", "CLAIM_STATES", "DONE_STATES"]

# Output states (column onchain_outputs.state).
S_SWEEP = "sweep"            # ours: swept by us once the CSV delay allows
S_UNRESOLVED = "unresolved"  # an HTLC output no HTLC we know matches: followed until someone spends it
S_WALLET = "wallet"          # pays our wallet directly (mutual close)
S_EXTERNAL = "external"      # pays an address outside the wallet (close_to)
S_DUST = "dust"              # ours, but worth less than the fee to sweep it
S_PENALTY = "penalty"        # revoked: taken at once with the revocation key
S_HTLC_TIMEOUT = "htlc_timeout"  # an HTLC we offered: ours once its cltv_expiry has passed
S_HTLC_SUCCESS = "htlc_success"  # an HTLC the peer offered: ours with its preimage
CLAIM_STATES = (S_SWEEP, S_PENALTY, S_HTLC_TIMEOUT, S_HTLC_SUCCESS)
DONE_STATES = (S_WALLET, S_EXTERNAL, S_DUST)
