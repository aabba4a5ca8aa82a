"""Channels (BOLT 2 and BOLT 3).

BOLT 3, pure functions over plain values:
  keys.py        per-commitment secrets/points, derived keys, revocation keys, ECDSA signing
  shachain.py    compact storage of the peer's revealed per-commitment secrets
  scripts.py     funding, to_local, to_remote, anchor and HTLC scripts; ChannelType
  commitment.py  commitment transactions (fees, trimming, BIP69+CLTV order, anchors)
  htlc_tx.py     HTLC-timeout and HTLC-success transactions
  closing.py     mutual closing transactions (legacy closing_signed and option_simple_close)
"""
