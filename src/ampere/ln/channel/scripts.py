"""BOLT 3 scripts: the funding 2-of-2, commitment outputs, anchors and HTLC outputs.

Each function returns a witness script (the script the P2WSH output commits to); wrap it with
`ampere.primitives.script.p2wsh` to get the output's scriptPubKey. All keys are 33-byte compressed.
"""
from __future__ import annotations

import enum
from functools import lru_cache

from ampere.primitives.amount import SatInt
from ampere.primitives.crypto import hash160, ripemd160
from ampere.primitives.script import (
    OP_1,
    OP_16,
    OP_2,
    OP_CHECKLOCKTIMEVERIFY,
    OP_CHECKMULTISIG,
    OP_CHECKSEQUENCEVERIFY,
    OP_CHECKSIG,
    OP_CHECKSIGVERIFY,
    OP_DROP,
    OP_DUP,
    OP_ELSE,
    OP_ENDIF,
    OP_EQUAL,
    OP_EQUALVERIFY,
    OP_HASH160,
    OP_IF,
    OP_IFDUP,
    OP_NOTIF,
    OP_SIZE,
    OP_SWAP,
    multisig_2of2,
    p2wpkh,
    p2wsh,
    push_data,
    push_int,
)

__all__ = [
    "ChannelType",
    "ScriptArgumentError",
    "ANCHOR_OUTPUT_SAT",
    "funding_script",
    "funding_witness",
    "to_local_script",
    "to_remote_anchors_script",
    "to_remote_script_pubkey",
    "anchor_script",
    "offered_htlc_script",
    "received_htlc_script",
    "htlc_tx_output_script",
]

# BOLT #3: "The amount of the output is fixed at 330 sats, the default dust limit for P2WSH."
ANCHOR_OUTPUT_SAT = SatInt(330)


class ChannelType(enum.Enum):
    """The commitment formats Ampere builds (BOLT 2 `channel_type`).

    STATIC_REMOTEKEY: option_static_remotekey, to_remote is a P2WPKH to the remote payment_basepoint.
    ANCHORS: option_anchors_zero_fee_htlc_tx (with static_remotekey): two 330-sat anchors, CSV 1 on
    every non-anchor output, zero-fee HTLC transactions signed SIGHASH_SINGLE|ANYONECANPAY.
    """

    STATIC_REMOTEKEY = "static_remotekey"
    ANCHORS = "anchors_zero_fee_htlc_tx"

    anchors: bool  # option_anchors applies

    def __init__(self, value: str) -> None:
        # A plain attribute of each member, not a property: it is read for every HTLC of every commitment and
        # view (each property call is a Python frame; K=50 rounds read it ~460,000 times per 200 HTLCs).
        self.anchors = value == "anchors_zero_fee_htlc_tx"

    # Members are singletons compared by identity: hash them by identity too, in C (Enum.__hash__ is a Python
    # function, and the commitment builder keys its weight tables by channel type).
    __hash__ = object.__hash__


class ScriptArgumentError(ValueError):
    """A key, hash or number that cannot go into a BOLT 3 script."""


def _key(k: bytes, what: str) -> bytes:
    if not isinstance(k, (bytes, bytearray)) or len(k) != 33 or k[0] not in (2, 3):
        raise ScriptArgumentError(f"{what} must be a 33-byte compressed public key")
    return bytes(k)


def _ops(*ops: int) -> bytes:
    return bytes(ops)


def funding_script(pubkey_a: bytes, pubkey_b: bytes) -> bytes:
    """The funding output's witness script.

    BOLT #3: "2 <pubkey1> <pubkey2> 2 OP_CHECKMULTISIG ... Where pubkey1 is the lexicographically lesser of the
    two funding_pubkey in compressed format, and where pubkey2 is the lexicographically greater of the two."
    """
    a, b = _key(pubkey_a, "funding_pubkey"), _key(pubkey_b, "funding_pubkey")
    return multisig_2of2(*sorted((a, b)))


def funding_witness(pubkey_a: bytes, sig_a: bytes, pubkey_b: bytes, sig_b: bytes) -> list[bytes]:
    """Witness spending the funding output: `0 <signature_for_pubkey1> <signature_for_pubkey2> <script>`.

    Signatures are DER plus the sighash byte, each given with the funding pubkey that made it.
    """
    pairs = sorted(((_key(pubkey_a, "funding_pubkey"), sig_a), (_key(pubkey_b, "funding_pubkey"), sig_b)))
    return [b"", pairs[0][1], pairs[1][1], funding_script(pubkey_a, pubkey_b)]


def to_local_script(revocation_pubkey: bytes, to_self_delay: int, local_delayed_pubkey: bytes) -> bytes:
    """BOLT #3 to_local (also the HTLC transactions' output):

        OP_IF <revocationpubkey> OP_ELSE `to_self_delay` OP_CHECKSEQUENCEVERIFY OP_DROP <local_delayedpubkey>
        OP_ENDIF OP_CHECKSIG
    """
    if not 0 <= to_self_delay <= 0xFFFF:
        raise ScriptArgumentError("to_self_delay must fit in 16 bits")
    return (_IF_PUSH33 + _key(revocation_pubkey, "revocation_pubkey") + _ELSE + _push_int(to_self_delay)
            + _CSV_DROP_PUSH33 + _key(local_delayed_pubkey, "local_delayed_pubkey") + _ENDIF_CHECKSIG)


# The scripts below are built per commitment (a new per-commitment point gives new keys): their fixed parts are
# concatenated once here, each key pushed as <33> key (the minimal push of a 33-byte key, as push_data gives),
# each hash as <20> hash. The BOLT 3 vectors check every script byte for byte.
_PUSH33, _PUSH20 = b"\x21", b"\x14"
_IF_PUSH33 = _ops(OP_IF) + _PUSH33
_ELSE = _ops(OP_ELSE)
_CSV_DROP_PUSH33 = _ops(OP_CHECKSEQUENCEVERIFY, OP_DROP) + _PUSH33
_ENDIF_CHECKSIG = _ops(OP_ENDIF, OP_CHECKSIG)
_HTLC_HEAD = _ops(OP_DUP, OP_HASH160) + _PUSH20
_HTLC_REVOKE = _ops(OP_EQUAL, OP_IF, OP_CHECKSIG, OP_ELSE) + _PUSH33
_OFFERED_MID = (_ops(OP_SWAP, OP_SIZE) + push_int(32) + _ops(OP_EQUAL, OP_NOTIF, OP_DROP, OP_2, OP_SWAP)
                + _PUSH33)
_OFFERED_HASH = _ops(OP_2, OP_CHECKMULTISIG, OP_ELSE, OP_HASH160) + _PUSH20
_OFFERED_TAIL = _ops(OP_EQUALVERIFY, OP_CHECKSIG, OP_ENDIF)
_RECEIVED_MID = _ops(OP_SWAP, OP_SIZE) + push_int(32) + _ops(OP_EQUAL, OP_IF, OP_HASH160) + _PUSH20
_RECEIVED_KEY = _ops(OP_EQUALVERIFY, OP_2, OP_SWAP) + _PUSH33
_RECEIVED_CLTV = _ops(OP_2, OP_CHECKMULTISIG, OP_ELSE, OP_DROP)
_RECEIVED_TAIL = _ops(OP_CHECKLOCKTIMEVERIFY, OP_DROP, OP_CHECKSIG, OP_ENDIF)
_ANCHORS_CSV = _ops(OP_1, OP_CHECKSEQUENCEVERIFY, OP_DROP)
_ENDIF = _ops(OP_ENDIF)


@lru_cache(maxsize=256)
def _push_int(n: int) -> bytes:
    return push_int(n)


htlc_tx_output_script = to_local_script


def to_remote_anchors_script(remote_pubkey: bytes) -> bytes:
    """BOLT #3 (option_anchors): "<remotepubkey> OP_CHECKSIGVERIFY 1 OP_CHECKSEQUENCEVERIFY" """
    return push_data(_key(remote_pubkey, "remote_pubkey")) + _ops(OP_CHECKSIGVERIFY, OP_1, OP_CHECKSEQUENCEVERIFY)


def to_remote_script_pubkey(remote_pubkey: bytes, channel_type: ChannelType) -> tuple[bytes, bytes | None]:
    """(scriptPubKey, witness script or None) of the to_remote output.

    BOLT #3: "If option_anchors applies to the commitment transaction, the to_remote output is encumbered by a
    one block csv lock. ... Otherwise, this output is a simple P2WPKH to remotepubkey."
    """
    if channel_type.anchors:
        ws = to_remote_anchors_script(remote_pubkey)
        return p2wsh(ws), ws
    return p2wpkh(_key(remote_pubkey, "remote_pubkey")), None


def anchor_script(funding_pubkey: bytes) -> bytes:
    """BOLT #3 to_local_anchor / to_remote_anchor:

        <local_funding_pubkey/remote_funding_pubkey> OP_CHECKSIG OP_IFDUP OP_NOTIF OP_16 OP_CHECKSEQUENCEVERIFY OP_ENDIF
    """
    return (push_data(_key(funding_pubkey, "funding_pubkey"))
            + _ops(OP_CHECKSIG, OP_IFDUP, OP_NOTIF, OP_16, OP_CHECKSEQUENCEVERIFY, OP_ENDIF))


def _payment_hash160(payment_hash: bytes) -> bytes:
    if not isinstance(payment_hash, (bytes, bytearray)) or len(payment_hash) != 32:
        raise ScriptArgumentError("payment_hash must be 32 bytes")
    return _ripemd160(bytes(payment_hash))


# An HTLC's script is built again for every commitment it is in (new keys each time), with the same payment hash;
# the revocation key is the same in every HTLC script of one commitment. Each RIPEMD160 goes through hashlib.new's
# Python wrapper: keep the recent ones (pure functions of their input).
_ripemd160 = lru_cache(maxsize=2048)(ripemd160)
_hash160 = lru_cache(maxsize=256)(hash160)


def offered_htlc_script(revocation_pubkey: bytes, local_htlc_pubkey: bytes, remote_htlc_pubkey: bytes,
                        payment_hash: bytes, channel_type: ChannelType) -> bytes:
    """BOLT #3 offered HTLC output (an HTLC the commitment owner offered).

        OP_DUP OP_HASH160 <RIPEMD160(SHA256(revocationpubkey))> OP_EQUAL
        OP_IF OP_CHECKSIG
        OP_ELSE <remote_htlcpubkey> OP_SWAP OP_SIZE 32 OP_EQUAL
            OP_NOTIF OP_DROP 2 OP_SWAP <local_htlcpubkey> 2 OP_CHECKMULTISIG
            OP_ELSE OP_HASH160 <RIPEMD160(payment_hash)> OP_EQUALVERIFY OP_CHECKSIG
            OP_ENDIF
            [option_anchors: 1 OP_CHECKSEQUENCEVERIFY OP_DROP]
        OP_ENDIF
    """
    return (_HTLC_HEAD + _hash160(_key(revocation_pubkey, "revocation_pubkey"))
            + _HTLC_REVOKE + _key(remote_htlc_pubkey, "remote_htlc_pubkey")
            + _OFFERED_MID + _key(local_htlc_pubkey, "local_htlc_pubkey")
            + _OFFERED_HASH + _payment_hash160(payment_hash) + _OFFERED_TAIL
            + (_ANCHORS_CSV if channel_type.anchors else b"") + _ENDIF)


def received_htlc_script(revocation_pubkey: bytes, local_htlc_pubkey: bytes, remote_htlc_pubkey: bytes,
                         payment_hash: bytes, cltv_expiry: int, channel_type: ChannelType) -> bytes:
    """BOLT #3 received HTLC output (an HTLC the commitment owner received).

        OP_DUP OP_HASH160 <RIPEMD160(SHA256(revocationpubkey))> OP_EQUAL
        OP_IF OP_CHECKSIG
        OP_ELSE <remote_htlcpubkey> OP_SWAP OP_SIZE 32 OP_EQUAL
            OP_IF OP_HASH160 <RIPEMD160(payment_hash)> OP_EQUALVERIFY 2 OP_SWAP <local_htlcpubkey> 2 OP_CHECKMULTISIG
            OP_ELSE OP_DROP <cltv_expiry> OP_CHECKLOCKTIMEVERIFY OP_DROP OP_CHECKSIG
            OP_ENDIF
            [option_anchors: 1 OP_CHECKSEQUENCEVERIFY OP_DROP]
        OP_ENDIF
    """
    if not 0 <= cltv_expiry <= 0xFFFFFFFF:
        raise ScriptArgumentError("cltv_expiry must fit in 32 bits")
    return (_HTLC_HEAD + _hash160(_key(revocation_pubkey, "revocation_pubkey"))
            + _HTLC_REVOKE + _key(remote_htlc_pubkey, "remote_htlc_pubkey")
            + _RECEIVED_MID + _payment_hash160(payment_hash)
            + _RECEIVED_KEY + _key(local_htlc_pubkey, "local_htlc_pubkey")
            + _RECEIVED_CLTV + push_int(cltv_expiry) + _RECEIVED_TAIL
            + (_ANCHORS_CSV if channel_type.anchors else b"") + _ENDIF)
