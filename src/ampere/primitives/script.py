"""Bitcoin script: opcodes, minimal pushes, output templates, addresses, and a tokenizer.

Nothing here executes scripts: validity is Bitcoin Core's job (libbitcoinkernel in amp-chaind,
bitcoind elsewhere). This module builds scripts byte for byte and reads them back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ampere.primitives.base58 import Base58Error, b58check_decode, b58check_encode
from ampere.primitives.bech32 import Bech32Error, decode_segwit_address, encode_segwit_address
from ampere.primitives.crypto import hash160, sha256

# --- opcodes (values from Bitcoin Core's script/script.h) -------------------------------------
OP_0 = OP_FALSE = 0x00
OP_PUSHDATA1 = 0x4C
OP_PUSHDATA2 = 0x4D
OP_PUSHDATA4 = 0x4E
OP_1NEGATE = 0x4F
OP_RESERVED = 0x50
OP_1 = OP_TRUE = 0x51
OP_2, OP_3, OP_4, OP_5, OP_6, OP_7, OP_8 = range(0x52, 0x59)
OP_9, OP_10, OP_11, OP_12, OP_13, OP_14, OP_15, OP_16 = range(0x59, 0x61)
OP_NOP = 0x61
OP_VER = 0x62
OP_IF = 0x63
OP_NOTIF = 0x64
OP_VERIF = 0x65
OP_VERNOTIF = 0x66
OP_ELSE = 0x67
OP_ENDIF = 0x68
OP_VERIFY = 0x69
OP_RETURN = 0x6A
OP_TOALTSTACK = 0x6B
OP_FROMALTSTACK = 0x6C
OP_2DROP = 0x6D
OP_2DUP = 0x6E
OP_3DUP = 0x6F
OP_2OVER = 0x70
OP_2ROT = 0x71
OP_2SWAP = 0x72
OP_IFDUP = 0x73
OP_DEPTH = 0x74
OP_DROP = 0x75
OP_DUP = 0x76
OP_NIP = 0x77
OP_OVER = 0x78
OP_PICK = 0x79
OP_ROLL = 0x7A
OP_ROT = 0x7B
OP_SWAP = 0x7C
OP_TUCK = 0x7D
OP_CAT = 0x7E
OP_SUBSTR = 0x7F
OP_LEFT = 0x80
OP_RIGHT = 0x81
OP_SIZE = 0x82
OP_INVERT = 0x83
OP_AND = 0x84
OP_OR = 0x85
OP_XOR = 0x86
OP_EQUAL = 0x87
OP_EQUALVERIFY = 0x88
OP_RESERVED1 = 0x89
OP_RESERVED2 = 0x8A
OP_1ADD = 0x8B
OP_1SUB = 0x8C
OP_2MUL = 0x8D
OP_2DIV = 0x8E
OP_NEGATE = 0x8F
OP_ABS = 0x90
OP_NOT = 0x91
OP_0NOTEQUAL = 0x92
OP_ADD = 0x93
OP_SUB = 0x94
OP_MUL = 0x95
OP_DIV = 0x96
OP_MOD = 0x97
OP_LSHIFT = 0x98
OP_RSHIFT = 0x99
OP_BOOLAND = 0x9A
OP_BOOLOR = 0x9B
OP_NUMEQUAL = 0x9C
OP_NUMEQUALVERIFY = 0x9D
OP_NUMNOTEQUAL = 0x9E
OP_LESSTHAN = 0x9F
OP_GREATERTHAN = 0xA0
OP_LESSTHANOREQUAL = 0xA1
OP_GREATERTHANOREQUAL = 0xA2
OP_MIN = 0xA3
OP_MAX = 0xA4
OP_WITHIN = 0xA5
OP_RIPEMD160 = 0xA6
OP_SHA1 = 0xA7
OP_SHA256 = 0xA8
OP_HASH160 = 0xA9
OP_HASH256 = 0xAA
OP_CODESEPARATOR = 0xAB
OP_CHECKSIG = 0xAC
OP_CHECKSIGVERIFY = 0xAD
OP_CHECKMULTISIG = 0xAE
OP_CHECKMULTISIGVERIFY = 0xAF
OP_NOP1 = 0xB0
OP_CHECKLOCKTIMEVERIFY = OP_NOP2 = 0xB1
OP_CHECKSEQUENCEVERIFY = OP_NOP3 = 0xB2
OP_NOP4, OP_NOP5, OP_NOP6, OP_NOP7, OP_NOP8, OP_NOP9, OP_NOP10 = range(0xB3, 0xBA)
OP_CHECKSIGADD = 0xBA
OP_INVALIDOPCODE = 0xFF

# Names as Bitcoin Core's GetOpName prints them (used by script_to_asm).
OPCODE_NAMES: dict[int, str] = {}
for _name, _value in list(globals().items()):
    if _name.startswith("OP_") and isinstance(_value, int) and _name not in (
        "OP_FALSE", "OP_TRUE", "OP_NOP2", "OP_NOP3",
    ):
        OPCODE_NAMES.setdefault(_value, _name)
OPCODE_NAMES[OP_0] = "0"
OPCODE_NAMES[OP_1NEGATE] = "-1"
for _n in range(1, 17):
    OPCODE_NAMES[OP_1 + _n - 1] = str(_n)
del _name, _value, _n


class ScriptError(ValueError):
    """A script could not be built or parsed."""


class AddressError(ValueError):
    """An address is malformed or belongs to another network."""


# --- numbers and pushes --------------------------------------------------------------------------
def scriptnum_encode(n: int) -> bytes:
    """CScriptNum serialization: minimal little-endian magnitude, sign in the top bit."""
    if n == 0:
        return b""
    neg = n < 0
    mag = -n if neg else n
    out = bytearray()
    while mag:
        out.append(mag & 0xFF)
        mag >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if neg else 0x00)
    elif neg:
        out[-1] |= 0x80
    return bytes(out)


def scriptnum_decode(b: bytes) -> int:
    if not b:
        return 0
    n = int.from_bytes(b, "little")
    if b[-1] & 0x80:
        return -(n & ~(0x80 << (8 * (len(b) - 1))))
    return n


def push_data(b: bytes) -> bytes:
    """The minimal push of `b` (BIP62 / SCRIPT_VERIFY_MINIMALDATA's CheckMinimalPush rules)."""
    b = bytes(b)
    n = len(b)
    if n == 0:
        return bytes([OP_0])
    if n == 1 and 1 <= b[0] <= 16:
        return bytes([OP_1 + b[0] - 1])
    if n == 1 and b[0] == 0x81:
        return bytes([OP_1NEGATE])
    if n < OP_PUSHDATA1:
        return bytes([n]) + b
    if n <= 0xFF:
        return bytes([OP_PUSHDATA1, n]) + b
    if n <= 0xFFFF:
        return bytes([OP_PUSHDATA2]) + n.to_bytes(2, "little") + b
    if n <= 0xFFFFFFFF:
        return bytes([OP_PUSHDATA4]) + n.to_bytes(4, "little") + b
    raise ScriptError("push too large")


def push_int(n: int) -> bytes:
    """Push a number as `CScript() << n` does: OP_0, OP_1NEGATE, OP_1..OP_16, else a CScriptNum push."""
    if n == 0:
        return bytes([OP_0])
    if n == -1:
        return bytes([OP_1NEGATE])
    if 1 <= n <= 16:
        return bytes([OP_1 + n - 1])
    data = scriptnum_encode(n)
    return bytes([len(data)]) + data


def small_int_opcode(n: int) -> int:
    if not 0 <= n <= 16:
        raise ScriptError("small int out of range")
    return OP_0 if n == 0 else OP_1 + n - 1


# --- tokenizer -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScriptOp:
    opcode: int
    data: bytes | None  # the pushed bytes for push opcodes (0x00..0x4e), else None


def iter_script(script: bytes) -> Iterator[ScriptOp]:
    """Yield the operations of `script`; raises ScriptError on a truncated push."""
    i = 0
    n = len(script)
    while i < n:
        op = script[i]
        i += 1
        if op <= OP_PUSHDATA4:
            if op < OP_PUSHDATA1:
                size = op
            else:
                width = {OP_PUSHDATA1: 1, OP_PUSHDATA2: 2, OP_PUSHDATA4: 4}[op]
                if i + width > n:
                    raise ScriptError("truncated push length")
                size = int.from_bytes(script[i:i + width], "little")
                i += width
            if i + size > n:
                raise ScriptError("truncated push")
            yield ScriptOp(op, script[i:i + size])
            i += size
        else:
            yield ScriptOp(op, None)


def script_to_asm(script: bytes) -> str:
    """Bitcoin Core's ScriptToAsmStr (without signature-hash decoding)."""
    parts = []
    try:
        for op in iter_script(script):
            if op.data is not None:
                if len(op.data) <= 4:
                    parts.append(str(scriptnum_decode(op.data)))
                else:
                    parts.append(op.data.hex())
            else:
                parts.append(OPCODE_NAMES.get(op.opcode, "OP_UNKNOWN"))
    except ScriptError:
        parts.append("[error]")
    return " ".join(parts)


# --- output templates ----------------------------------------------------------------------------
def p2pkh(h160: bytes) -> bytes:
    if len(h160) != 20:
        raise ScriptError("p2pkh needs a 20-byte hash")
    return bytes([OP_DUP, OP_HASH160, 20]) + h160 + bytes([OP_EQUALVERIFY, OP_CHECKSIG])


def p2pkh_script_code(pubkey_hash: bytes) -> bytes:
    """BIP143: the scriptCode of a P2WPKH input is the P2PKH script of the key hash (no length prefix)."""
    return p2pkh(pubkey_hash)


def p2sh(h160: bytes) -> bytes:
    if len(h160) != 20:
        raise ScriptError("p2sh needs a 20-byte hash")
    return bytes([OP_HASH160, 20]) + h160 + bytes([OP_EQUAL])


def p2wpkh(pubkey_or_hash: bytes) -> bytes:
    """OP_0 <20-byte key hash>; accepts a 33-byte compressed pubkey or its hash160."""
    if len(pubkey_or_hash) == 33:
        h = hash160(pubkey_or_hash)
    elif len(pubkey_or_hash) == 20:
        h = pubkey_or_hash
    else:
        raise ScriptError("p2wpkh needs a 33-byte compressed pubkey or a 20-byte hash")
    return bytes([OP_0, 20]) + h


def p2wsh(witness_script: bytes) -> bytes:
    return bytes([OP_0, 32]) + sha256(witness_script)


def p2tr(xonly32: bytes) -> bytes:
    if len(xonly32) != 32:
        raise ScriptError("p2tr needs a 32-byte x-only key")
    return bytes([OP_1, 32]) + xonly32


def p2sh_p2wpkh(pubkey: bytes) -> bytes:
    return p2sh(hash160(p2wpkh(pubkey)))


def multisig_2of2(pubkey1: bytes, pubkey2: bytes) -> bytes:
    """2 <pubkey1> <pubkey2> 2 OP_CHECKMULTISIG, keys in the order given (BOLT 3 callers sort them)."""
    for k in (pubkey1, pubkey2):
        if len(k) != 33:
            raise ScriptError("multisig keys must be 33-byte compressed pubkeys")
    return bytes([OP_2]) + push_data(pubkey1) + push_data(pubkey2) + bytes([OP_2, OP_CHECKMULTISIG])


def witness_program(spk: bytes) -> tuple[int, bytes] | None:
    """(version, program) if `spk` is a segwit output (BIP141), else None."""
    if len(spk) < 4 or len(spk) > 42:
        return None
    if spk[0] != OP_0 and not OP_1 <= spk[0] <= OP_16:
        return None
    if spk[1] + 2 != len(spk):
        return None
    version = 0 if spk[0] == OP_0 else spk[0] - OP_1 + 1
    return version, spk[2:]


def is_p2wpkh(spk: bytes) -> bool:
    return len(spk) == 22 and spk[0] == OP_0 and spk[1] == 20


def is_p2wsh(spk: bytes) -> bool:
    return len(spk) == 34 and spk[0] == OP_0 and spk[1] == 32


def is_p2tr(spk: bytes) -> bool:
    return len(spk) == 34 and spk[0] == OP_1 and spk[1] == 32


def is_p2pkh(spk: bytes) -> bool:
    return (len(spk) == 25 and spk[:3] == bytes([OP_DUP, OP_HASH160, 20])
            and spk[23:] == bytes([OP_EQUALVERIFY, OP_CHECKSIG]))


def is_p2sh(spk: bytes) -> bool:
    return len(spk) == 23 and spk[:2] == bytes([OP_HASH160, 20]) and spk[22] == OP_EQUAL


# Pay-to-anchor (Bitcoin Core 28): OP_1 <0x4e73>.
P2A_SCRIPT = bytes([OP_1, 2, 0x4E, 0x73])


def classify_script(spk: bytes) -> str:
    """Bitcoin Core's output type names (`scriptPubKey.type` in RPC results)."""
    if is_p2pkh(spk):
        return "pubkeyhash"
    if is_p2sh(spk):
        return "scripthash"
    if spk == P2A_SCRIPT:
        return "anchor"
    wp = witness_program(spk)
    if wp is not None:
        ver, prog = wp
        if ver == 0 and len(prog) == 20:
            return "witness_v0_keyhash"
        if ver == 0 and len(prog) == 32:
            return "witness_v0_scripthash"
        if ver == 1 and len(prog) == 32:
            return "witness_v1_taproot"
        if ver != 0:
            return "witness_unknown"
        return "nonstandard"
    if spk[:1] == bytes([OP_RETURN]):
        return "nulldata"
    if (len(spk) in (35, 67) and spk[0] == len(spk) - 2 and spk[-1] == OP_CHECKSIG):
        return "pubkey"
    try:
        ops = list(iter_script(spk))
    except ScriptError:
        return "nonstandard"
    if (len(ops) >= 4 and ops[-1].opcode == OP_CHECKMULTISIG and OP_1 <= ops[0].opcode <= OP_16
            and OP_1 <= ops[-2].opcode <= OP_16
            and all(o.data is not None and len(o.data) in (33, 65) for o in ops[1:-2])
            and ops[-2].opcode - OP_1 + 1 == len(ops) - 3):
        return "multisig"
    return "nonstandard"


# --- addresses -----------------------------------------------------------------------------------
NETWORK_HRP = {"bitcoin": "bc", "testnet": "tb", "testnet4": "tb", "signet": "tb", "regtest": "bcrt"}
# Base58 version bytes: (P2PKH, P2SH). Every test network shares Bitcoin testnet's.
_BASE58_VERSIONS = {"bitcoin": (0x00, 0x05)}
_TEST_BASE58_VERSIONS = (0x6F, 0xC4)
# Aliases accepted as network names (bitcoind's -chain names and CLN's names).
_NETWORK_ALIASES = {"main": "bitcoin", "mainnet": "bitcoin", "test": "testnet", "testnet3": "testnet"}


def _network(network: str) -> str:
    net = _NETWORK_ALIASES.get(network, network)
    if net not in NETWORK_HRP:
        raise AddressError(f"unknown network {network!r}")
    return net


def _base58_versions(network: str) -> tuple[int, int]:
    return _BASE58_VERSIONS.get(network, _TEST_BASE58_VERSIONS)


def address_to_script(address: str, network: str) -> bytes:
    """The scriptPubKey paid by `address` on `network`; raises AddressError if invalid there."""
    net = _network(network)
    hrp = NETWORK_HRP[net]
    if address.lower().startswith(hrp + "1"):
        try:
            ver, prog = decode_segwit_address(hrp, address)
        except Bech32Error as e:
            raise AddressError(f"invalid address {address!r}: {e}") from None
        return bytes([small_int_opcode(ver), len(prog)]) + prog
    try:
        payload = b58check_decode(address)
    except Base58Error as e:
        raise AddressError(f"invalid address {address!r}: {e}") from None
    if len(payload) != 21:
        raise AddressError(f"invalid address {address!r}: wrong payload length")
    v_pkh, v_sh = _base58_versions(net)
    if payload[0] == v_pkh:
        return p2pkh(payload[1:])
    if payload[0] == v_sh:
        return p2sh(payload[1:])
    raise AddressError(f"address {address!r} is not for network {network}")


def script_to_address(spk: bytes, network: str) -> str | None:
    """The address of `spk` on `network`, or None for scripts with no address (OP_RETURN, bare...)."""
    net = _network(network)
    if is_p2pkh(spk):
        return b58check_encode(bytes([_base58_versions(net)[0]]) + spk[3:23])
    if is_p2sh(spk):
        return b58check_encode(bytes([_base58_versions(net)[1]]) + spk[2:22])
    wp = witness_program(spk)
    if wp is not None:
        ver, prog = wp
        if ver == 0 and len(prog) not in (20, 32):
            return None
        try:
            return encode_segwit_address(NETWORK_HRP[net], ver, prog)
        except Bech32Error:
            return None
    return None
