"""On-chain enforcement (BOLT 5), pure: what a funding spend means for us (classify), and the transactions
that claim our part of it (penalty, HTLC claims, sweeps). No I/O: ampere.node.onchain.resolver runs them."""
