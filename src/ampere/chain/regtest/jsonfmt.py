"""bitcoind's JSON: exact BTC amounts (8 decimals, no floats), and transactions/blocks as
Bitcoin Core's TxToUniv and blockToJSON print them."""
from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from ampere.chain.regtest.blocks import Block, BlockHeader, difficulty_from_bits
from ampere.primitives.script import classify_script, script_to_address, script_to_asm
from ampere.primitives.tx import Transaction, TxOut

NETWORK = "regtest"


class Btc(int):
    """An amount in satoshi that JSON-encodes as BTC with 8 decimals (e.g. 50.00000000)."""

    def json(self) -> str:
        q, r = divmod(abs(int(self)), 100_000_000)
        return ("-" if self < 0 else "") + f"{q}.{r:08d}"


def dumps(obj) -> str:
    """Compact JSON with Btc amounts written exactly."""
    if isinstance(obj, Btc):
        return obj.json()
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + dumps(v) for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, float):
        return repr(obj) if obj == obj and obj not in (float("inf"), float("-inf")) else "null"
    return json.dumps(obj, ensure_ascii=False)


def amount_to_sat(value) -> int:
    """Bitcoin Core's AmountFromValue: a JSON number or numeric string of BTC, at most 8 decimals."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise ValueError("Amount is not a number or string")
    try:
        d = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError("Invalid amount") from None
    if not d.is_finite():
        raise ValueError("Invalid amount")
    sat = d * 100_000_000
    if sat != sat.to_integral_value():
        raise ValueError("Invalid amount")
    sat = int(sat)
    if sat < 0 or sat > 21_000_000 * 100_000_000:
        raise ValueError("Amount out of range")
    return sat


# --- descriptors (just enough for scriptPubKey.desc: addr() and raw()) ----------------------------
_INPUT_CHARSET = ("0123456789()[],'/*abcdefgh@:$%{}"
                  "IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~"
                  "ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ")
_CHECKSUM_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(c: int, val: int) -> int:
    c0 = c >> 35
    c = ((c & 0x7FFFFFFFF) << 5) ^ val
    if c0 & 1:
        c ^= 0xF5DEE51989
    if c0 & 2:
        c ^= 0xA9FDCA3312
    if c0 & 4:
        c ^= 0x1BAB10E32D
    if c0 & 8:
        c ^= 0x3706B1677A
    if c0 & 16:
        c ^= 0x644D626FFD
    return c


def descriptor_checksum(desc: str) -> str:
    """BIP380 descriptor checksum."""
    c = 1
    cls = 0
    clscount = 0
    for ch in desc:
        pos = _INPUT_CHARSET.find(ch)
        if pos == -1:
            return ""
        c = _polymod(c, pos & 31)
        cls = cls * 3 + (pos >> 5)
        clscount += 1
        if clscount == 3:
            c = _polymod(c, cls)
            cls = 0
            clscount = 0
    if clscount > 0:
        c = _polymod(c, cls)
    for _ in range(8):
        c = _polymod(c, 0)
    c ^= 1
    return "".join(_CHECKSUM_CHARSET[(c >> (5 * (7 - j))) & 31] for j in range(8))


def spk_descriptor(spk: bytes) -> str:
    address = script_to_address(spk, NETWORK)
    desc = f"addr({address})" if address else f"raw({spk.hex()})"
    return f"{desc}#{descriptor_checksum(desc)}"


def script_pubkey_json(spk: bytes) -> dict:
    out = {"asm": script_to_asm(spk), "desc": spk_descriptor(spk), "hex": spk.hex()}
    address = script_to_address(spk, NETWORK)
    if address:
        out["address"] = address
    out["type"] = classify_script(spk)
    return out


def tx_to_json(tx: Transaction, *, spent: list[TxOut] | None = None, include_hex: bool = True,
               prevouts: bool = False, fee: int | None = None) -> dict:
    """Bitcoin Core's TxToUniv."""
    raw = tx.serialize()
    stripped = len(tx.serialize(include_witness=False))
    weight = stripped * 3 + len(raw)
    out: dict = {
        "txid": tx.txid_hex(),
        "hash": tx.wtxid_hex(),
        "version": tx.version,
        "size": len(raw),
        "vsize": (weight + 3) // 4,
        "weight": weight,
        "locktime": tx.locktime,
    }
    vin = []
    for i, txin in enumerate(tx.inputs):
        if tx.is_coinbase():
            entry = {"coinbase": txin.script_sig.hex()}
        else:
            entry = {"txid": txin.prevout.txid_hex(), "vout": txin.prevout.vout,
                     "scriptSig": {"asm": script_to_asm(txin.script_sig), "hex": txin.script_sig.hex()}}
        if txin.witness:
            entry["txinwitness"] = [w.hex() for w in txin.witness]
        if prevouts and spent is not None and not tx.is_coinbase():
            prev = spent[i]
            entry["prevout"] = {"generated": False, "height": None, "value": Btc(prev.value),
                                "scriptPubKey": script_pubkey_json(prev.script_pubkey)}
        entry["sequence"] = txin.sequence
        vin.append(entry)
    out["vin"] = vin
    out["vout"] = [{"value": Btc(o.value), "n": n, "scriptPubKey": script_pubkey_json(o.script_pubkey)}
                   for n, o in enumerate(tx.outputs)]
    if fee is not None:
        out["fee"] = Btc(fee)
    elif spent is not None and not tx.is_coinbase():
        out["fee"] = Btc(sum(o.value for o in spent) - sum(o.value for o in tx.outputs))
    if include_hex:
        out["hex"] = raw.hex()
    return out


def header_json(header: BlockHeader, height: int, confirmations: int, chainwork: int, ntx: int,
                mtp: int, next_hash: bytes | None) -> dict:
    out = {
        "hash": header.hash()[::-1].hex(),
        "confirmations": confirmations,
        "height": height,
        "version": header.version,
        "versionHex": f"{header.version & 0xFFFFFFFF:08x}",
        "merkleroot": header.merkle_root[::-1].hex(),
        "time": header.time,
        "mediantime": mtp,
        "nonce": header.nonce,
        "bits": f"{header.bits:08x}",
        "difficulty": difficulty_from_bits(header.bits),
        "chainwork": f"{chainwork:064x}",
        "nTx": ntx,
    }
    if height > 0:
        out["previousblockhash"] = header.prev_hash[::-1].hex()
    if next_hash is not None:
        out["nextblockhash"] = next_hash[::-1].hex()
    return out


def block_sizes(block: Block, raw: bytes) -> dict:
    stripped = len(Block(block.header, [Transaction(t.version, [type(i)(i.prevout, i.script_sig, i.sequence)
                                                                  for i in t.inputs], t.outputs, t.locktime)
                                        for t in block.txs]).serialize())
    return {"strippedsize": stripped, "size": len(raw), "weight": stripped * 3 + len(raw)}
