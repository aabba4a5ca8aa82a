"""The on-chain wallet: keys, addresses, our outputs, and the transactions that spend them.

The wallet holds public keys only: the node's Signer gives it the BIP32 base as an xpub and signs its
inputs (sign_tx).  The signer derives that base from `hsm_secret` exactly as Core Lightning's hsmd does
(hsmd/libhsmd.c hsmd_init; ampere.node.signer.signer.bip32_base_from_hsm_secret): the BIP32 seed is HKDF-SHA256(ikm = hsm_secret, salt = a little-endian u32 counter
from 0, info = "bip32 seed"), 32 bytes, retried with the next salt if it is not a valid master
key; wallet keys are m/0/0/<index>.  An index gives a P2WPKH address and a P2TR address (BIP86:
the key tweaked with an empty script tree), so the same secret gives CLN's addresses.  Issued
indexes start at 1 (CLN's wallet_get_newindex) and outputs are recognised up to
`KEYSCAN_GAP` indexes past the last issued one.

The wallet is a chain listener: connected blocks confirm our outputs and spends, disconnected
blocks return them to unconfirmed, so the UTXO set stays right across reorgs.  Everything is
persisted (tables wallet_outputs / wallet_txs / wallet_addresses) and mirrored in memory.

API for funding transactions (the channel manager will use it):
    prepared = await wallet.prepare_tx([TxOut(amount_sat, script)], feerate_perkw, minconf=1)
        # selects and reserves coins, adds change; raises WalletError(code, message)
    tx = wallet.sign_tx(prepared)                  # a signed Transaction (prepared.tx stays unsigned)
    txid = await wallet.send_tx(prepared, tx)      # broadcast + record; raises WalletError
    await wallet.release(prepared)                 # give up: unreserve its inputs
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import coincurve

from ampere.chain.bitcoind import BitcoindError, BitcoindUnreachable
from ampere.primitives.amount import SatInt, fee_for_weight, msat_to_sat, sat_to_msat
from ampere.primitives.bip32 import Bip32Error, ExtKey
from ampere.primitives.crypto import tagged_hash
from ampere.primitives.script import is_p2tr, is_p2wpkh, p2tr, p2wpkh, script_to_address
from ampere.primitives.tx import (
    OutPoint, Transaction, TxIn, TxOut, write_compact_size,
)
from ampere.node.signer.signer import Signer, WalletInput, bip32_base_from_hsm_secret  # noqa: F401 (re-exported)
from ampere.node.errors import DomainError, Reason

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node

LOG = "wallet"
KEYSCAN_GAP = 200
RESERVATION_DEFAULT = 72  # blocks (CLN: "12 hours is usually enough reservation time")
COINBASE_MATURITY = 100
DUST_LIMIT = 546  # CLN's chainparams dust_limit
RBF_SEQUENCE = 0xFFFFFFFD  # BIP125: signals replaceability
MAX_INDEX = 0x7FFFFFFF  # BIP32_INITIAL_HARDENED_CHILD - 1

# Error codes (CLN common/jsonrpc_errors.h).

_COIN_TYPE = {"bitcoin": "bc", "regtest": "bcrt", "testnet": "tb", "testnet4": "tb", "signet": "tb"}


class WalletError(DomainError):
    """A refused or failed wallet operation (ampere.node.errors.Reason says why)."""


def taproot_output_xonly(pubkey33: bytes) -> bytes:
    """BIP86 output key: Q = P + int(TapTweak(x(P)))G with P the even-Y point of x(P)."""
    xonly = pubkey33[1:]
    tweak = tagged_hash("TapTweak", xonly)
    return coincurve.PublicKey(b"\x02" + xonly).add(tweak).format(compressed=True)[1:]


def scripts_for_pubkey(pubkey33: bytes) -> tuple[bytes, bytes]:
    """(P2WPKH script, P2TR script) of a wallet key."""
    return p2wpkh(pubkey33), p2tr(taproot_output_xonly(pubkey33))


# Weights (BIP141 weight units) for fee estimation; signatures at their largest (72-byte DER+hashtype).
def input_weight(spk: bytes) -> int:
    base = 4 * (32 + 4 + 1 + 4)  # outpoint, empty scriptSig, sequence
    if is_p2tr(spk):
        return base + 1 + 1 + 64  # witness: count, one 64-byte Schnorr signature
    return base + 1 + 1 + 72 + 1 + 33  # witness: count, signature, pubkey


def output_weight(spk: bytes) -> int:
    return 4 * (8 + len(write_compact_size(len(spk))) + len(spk))


def base_weight(n_in: int, n_out: int) -> int:
    # version, locktime, counts; plus the segwit marker and flag (1 WU each).
    return 4 * (4 + 4 + len(write_compact_size(n_in)) + len(write_compact_size(n_out))) + 2


@dataclass
class Output:
    txid: bytes
    outnum: int
    value: int  # sat
    script: bytes
    keyidx: int
    coinbase: bool = False
    blockheight: int | None = None
    spend_txid: bytes | None = None
    spend_height: int | None = None
    reserved_til: int | None = None
    deposit_noted: bool = False
    withdrawal_noted: bool = False

    @property
    def key(self) -> tuple[bytes, int]:
        return self.txid, self.outnum

    @property
    def outpoint(self) -> OutPoint:
        return OutPoint(self.txid, self.outnum)

    def txout(self) -> TxOut:
        return TxOut(self.value, self.script)

    def reserved(self, tip: int) -> bool:
        return self.reserved_til is not None and self.reserved_til > tip

    def depth(self, tip: int) -> int:
        return 0 if self.blockheight is None else tip - self.blockheight + 1

    def status(self, tip: int) -> str:
        if self.spend_txid is not None:
            return "spent"
        if self.blockheight is None:
            return "unconfirmed"
        if self.coinbase and self.depth(tip) < COINBASE_MATURITY:
            return "immature"
        return "confirmed"

    def row(self) -> tuple:
        return (self.txid, self.outnum, self.value, self.script, self.keyidx, int(self.coinbase), self.blockheight,
                self.spend_txid, self.spend_height, self.reserved_til, int(self.deposit_noted),
                int(self.withdrawal_noted))


_OUTPUT_COLUMNS = ("txid, outnum, value, scriptpubkey, keyidx, coinbase, blockheight, spend_txid, spend_height, "
                   "reserved_til, deposit_noted, withdrawal_noted")


@dataclass
class PreparedTx:
    tx: Transaction  # unsigned
    inputs: list[Output]
    change_outnum: int | None
    fee: int

    @property
    def txid(self) -> bytes:
        return self.tx.txid()

    def spent_outputs(self) -> list[TxOut]:
        return [o.txout() for o in self.inputs]


class Wallet:
    def __init__(self, node: Node, signer: Signer, network: str) -> None:
        self.node = node
        self.network = network
        # Public keys only: the signer holds the private half and signs (sign_tx).
        self._signer = signer
        self._base_pub = ExtKey.from_base58(signer.wallet_xpub(network))
        self.max_index = 0
        self.addrtypes: dict[int, str] = {}
        self.scripts: dict[bytes, int] = {}  # scriptPubKey -> key index
        self._scanned_to = -1
        self.outputs: dict[tuple[bytes, int], Output] = {}
        self.pending: dict[bytes, PreparedTx] = {}  # txprepare'd, not yet sent or discarded
        self._lock = asyncio.Lock()

    # ---- start-up --------------------------------------------------------------------------
    async def load(self) -> None:
        def read(db):
            v = db.query("SELECT val FROM vars WHERE name = 'bip32_max_index'")
            addrs = db.query("SELECT keyidx, addrtype FROM wallet_addresses")
            outs = db.query(f"SELECT {_OUTPUT_COLUMNS} FROM wallet_outputs")
            return v, addrs, outs

        v, addrs, outs = await self.node.store.read(read)
        self.max_index = int(v[0][0]) if v else 0
        self.addrtypes = {k: t for k, t in addrs}
        for r in outs:
            o = Output(bytes(r[0]), r[1], r[2], bytes(r[3]), r[4], bool(r[5]), r[6],
                       bytes(r[7]) if r[7] is not None else None, r[8], r[9], bool(r[10]), bool(r[11]))
            self.outputs[o.key] = o
        self._extend_scripts()

    def _extend_scripts(self) -> None:
        upto = min(self.max_index + KEYSCAN_GAP, MAX_INDEX)
        for i in range(self._scanned_to + 1, upto + 1):
            try:
                pub = self._base_pub.child(i).pubkey
            except Bip32Error:
                continue
            for spk in scripts_for_pubkey(pub):
                self.scripts[spk] = i
        self._scanned_to = max(self._scanned_to, upto)

    # ---- keys and addresses ---------------------------------------------------------------
    def pubkey(self, index: int) -> bytes:
        return self._base_pub.child(index).pubkey

    def addresses(self, index: int) -> dict[str, str]:
        wpkh, tr = scripts_for_pubkey(self.pubkey(index))
        return {"bech32": script_to_address(wpkh, self.network), "p2tr": script_to_address(tr, self.network)}

    async def new_index(self, addrtype: str) -> int:
        """Issue the next key index (recording which address type was handed out)."""
        async with self._lock:
            idx = self.max_index + 1
            if idx > MAX_INDEX:
                raise WalletError(Reason.GENERIC, "Keys exhausted ")

            def write(db):
                db.execute("INSERT OR REPLACE INTO vars (name, val) VALUES ('bip32_max_index', ?)", (str(idx),))
                db.execute("INSERT OR REPLACE INTO wallet_addresses (keyidx, addrtype) VALUES (?, ?)", (idx, addrtype))

            await self.node.store.write(write)
            self.max_index = idx
            self.addrtypes[idx] = addrtype
            self._extend_scripts()
            return idx

    async def new_address(self, addrtype: str = "p2tr") -> tuple[int, dict[str, str]]:
        idx = await self.new_index(addrtype)
        addrs = self.addresses(idx)
        if addrtype != "all":
            addrs = {addrtype: addrs[addrtype]}
        return idx, addrs

    # ---- chain listener -------------------------------------------------------------------
    async def block_connected(self, height: int, block) -> None:
        touched: dict[tuple[bytes, int], Output] = {}
        txs: list[tuple[bytes, bytes, int]] = []
        bumped = False
        for txindex, tx in enumerate(block.txs):
            txid = None
            relevant = False
            if txindex > 0:
                for txin in tx.inputs:
                    o = self.outputs.get((txin.prevout.txid, txin.prevout.vout))
                    if o is not None:
                        txid = txid or tx.txid()
                        o.spend_txid, o.spend_height, o.reserved_til = txid, height, None
                        touched[o.key] = o
                        relevant = True
            for n, out in enumerate(tx.outputs):
                idx = self.scripts.get(out.script_pubkey)
                if idx is None:
                    continue
                txid = txid or tx.txid()
                o = self.outputs.get((txid, n))
                if o is None:
                    o = Output(txid, n, out.value, out.script_pubkey, idx, coinbase=txindex == 0)
                    self.outputs[o.key] = o
                if o.blockheight is None:
                    # lightningd's words (wallet.c), which tests wait for.
                    self.node.log.debug(LOG, f"Owning output {n} {out.value}sat (SEGWIT) txid {txid[::-1].hex()} "
                                             f"CONFIRMED" + (" COINBASE" if o.coinbase else ""))
                o.blockheight = height
                touched[o.key] = o
                relevant = True
                if idx > self.max_index:
                    self.max_index, bumped = idx, True
            if relevant:
                txs.append((txid, tx.serialize(), txindex))
        if not touched:
            return
        movements = self._movements(touched.values(), height, block.time)

        def write(db):
            for o in touched.values():
                db.execute(f"INSERT OR REPLACE INTO wallet_outputs ({_OUTPUT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                           o.row())
            for txid, raw, txindex in txs:
                db.execute("INSERT OR REPLACE INTO wallet_txs (txid, rawtx, blockheight, txindex) VALUES (?,?,?,?)",
                           (txid, raw, height, txindex))
            if bumped:
                db.execute("INSERT OR REPLACE INTO vars (name, val) VALUES ('bip32_max_index', ?)", (str(self.max_index),))
            return self._number_movements(db, movements)

        numbered = await self.node.store.write(write)
        if bumped:
            self._extend_scripts()
        for mvt in numbered:
            self.node.notify("coin_movement", mvt)
        for o in touched.values():
            self.node.log.debug(LOG, f"Output {o.txid[::-1].hex()}:{o.outnum} ({o.value}sat) is now "
                                     f"{o.status(height)} at block {height}")

    async def block_disconnected(self, height: int, block_hash: bytes, block) -> None:
        touched: dict[tuple[bytes, int], Output] = {}
        gone: list[tuple[bytes, int]] = []
        for o in self.outputs.values():
            if o.blockheight == height:
                if o.coinbase:
                    gone.append(o.key)  # a coinbase never returns to the mempool
                else:
                    o.blockheight = None
                    touched[o.key] = o
            if o.spend_height == height:
                o.spend_height = None
                touched[o.key] = o
        for k in gone:
            touched.pop(k, None)
            del self.outputs[k]

        def write(db):
            for o in touched.values():
                db.execute("UPDATE wallet_outputs SET blockheight = ?, spend_height = ? WHERE txid = ? AND outnum = ?",
                           (o.blockheight, o.spend_height, o.txid, o.outnum))
            for txid, outnum in gone:
                db.execute("DELETE FROM wallet_outputs WHERE txid = ? AND outnum = ?", (txid, outnum))
            db.execute("UPDATE wallet_txs SET blockheight = NULL, txindex = NULL WHERE blockheight = ?", (height,))

        await self.node.store.write(write)
        if touched or gone:
            self.node.log.info(LOG, f"Block {height} disconnected: {len(touched)} output(s) back to unconfirmed, "
                                    f"{len(gone)} coinbase output(s) removed")

    # ---- coin movements (CLN's chain_mvt notifications) -------------------------------------
    def _movements(self, outputs, height: int, timestamp: int) -> list[dict]:
        out = []
        for o in outputs:
            if o.blockheight is not None and not o.deposit_noted:
                o.deposit_noted = True
                out.append(self._mvt(o, "deposit", credit=o.value, height=o.blockheight, timestamp=timestamp))
            if o.spend_height is not None and not o.withdrawal_noted:
                o.withdrawal_noted = True
                m = self._mvt(o, "withdrawal", debit=o.value, height=o.spend_height, timestamp=timestamp)
                m["spending_txid"] = o.spend_txid[::-1].hex()
                out.append(m)
        return out

    def _mvt(self, o: Output, tag: str, height: int, timestamp: int, credit: int = 0, debit: int = 0) -> dict:
        return {
            "version": 2, "coin_type": _COIN_TYPE.get(self.network, self.network),
            "node_id": self.node.node_id.hex(), "type": "chain_mvt", "account_id": "wallet",
            "credit_msat": sat_to_msat(credit), "debit_msat": sat_to_msat(debit), "timestamp": timestamp or int(time.time()),
            "primary_tag": tag, "extra_tags": [], "tags": [tag],
            "utxo": f"{o.txid[::-1].hex()}:{o.outnum}", "output_msat": sat_to_msat(o.value), "blockheight": height,
        }

    @staticmethod
    def _number_movements(db, movements: list[dict]) -> list[dict]:
        if not movements:
            return []
        v = db.query("SELECT val FROM vars WHERE name = 'coin_moves_index'")
        n = int(v[0][0]) if v else 0
        for m in movements:
            n += 1
            m["created_index"] = n
        db.execute("INSERT OR REPLACE INTO vars (name, val) VALUES ('coin_moves_index', ?)", (str(n),))
        return movements

    # ---- listing --------------------------------------------------------------------------
    def list_outputs(self, include_spent: bool = False) -> list[Output]:
        outs = [o for o in self.outputs.values() if include_spent or o.spend_txid is None]
        return sorted(outs, key=lambda o: (o.blockheight is None, o.blockheight or 0, o.txid, o.outnum))

    async def list_transactions(self) -> list[tuple[bytes, bytes, int | None, int | None]]:
        return await self.node.store.read(lambda db: db.query(
            "SELECT txid, rawtx, blockheight, txindex FROM wallet_txs ORDER BY blockheight IS NULL, blockheight, txindex"))

    # ---- coin selection and transaction building ---------------------------------------------
    @property
    def selecting(self) -> asyncio.Lock:
        """Held while coins are chosen and reserved (prepare_tx, reserveinputs, fundpsbt/utxopsbt in
        wallet_fund): two spends never pick the same coin."""
        return self._lock

    def named_utxos(self, utxos: list[OutPoint], reserved_ok: bool = False) -> list[Output]:
        """The outputs a caller names to spend (`utxos` of withdraw, txprepare, fundchannel, utxopsbt), checked as
        CLN's utxopsbt does: WalletError(BAD_PARAMETER) for one unknown, already spent or (unless `reserved_ok`)
        reserved. Call it with `selecting` held."""
        tip = self.node.blockheight
        chosen = []
        for op in utxos:
            o = self.outputs.get((op.txid, op.vout))
            if o is None:
                raise WalletError(Reason.BAD_PARAMETER, f"Unknown UTXO {op.txid_hex()}:{op.vout}")
            if o.spend_txid is not None:
                raise WalletError(Reason.BAD_PARAMETER, f"Already spent UTXO {op.txid_hex()}:{op.vout}")
            if not reserved_ok and o.reserved(tip):
                raise WalletError(Reason.BAD_PARAMETER, f"UTXO {op.txid_hex()}:{op.vout} already reserved")
            chosen.append(o)
        return chosen

    def spendable(self, minconf: int) -> list[Output]:
        tip = self.node.blockheight
        out = []
        for o in self.outputs.values():
            if o.spend_txid is not None or o.reserved(tip):
                continue
            if o.depth(tip) < minconf:
                continue
            if o.coinbase and o.depth(tip) < COINBASE_MATURITY:
                continue
            out.append(o)
        return out

    async def prepare_tx(self, outputs: list[TxOut], feerate: int, minconf: int = 1,
                         utxos: list[OutPoint] | None = None, all_to: bytes | None = None,
                         all_index: int | None = None, reserve: int = RESERVATION_DEFAULT,
                         locktime: int | None = None, emergency_sat: SatInt = SatInt(0)) -> PreparedTx:
        """Select coins for `outputs` (plus, with `all_to`, one output taking everything left, at
        position `all_index`), add change if it is not dust, and reserve the inputs.

        `emergency_sat` (see emergency_sat()): the change must keep at least that much in the wallet (with
        `all_to`, the change is exactly that), else WalletError 313 as CLN."""
        for i, o in enumerate(outputs):
            if o.value < DUST_LIMIT:
                raise WalletError(Reason.FUND_OUTPUT_IS_DUST, f"Output {i} would be dust")
        async with self._lock:
            tip = self.node.blockheight
            if utxos is not None:
                chosen = self.named_utxos(utxos)
                candidates = list(chosen)
            else:
                candidates = sorted(self.spendable(minconf), key=lambda o: (-o.value, o.txid, o.outnum))
                chosen = []
            target = sum(o.value for o in outputs)
            out_w = sum(output_weight(o.script_pubkey) for o in outputs)
            n_out = len(outputs) + (1 if all_to is not None else 0)
            if all_to is not None:
                out_w += output_weight(all_to)

            def weight(ins: list[Output], extra_out: int = 0, extra_w: int = 0) -> int:
                return base_weight(len(ins), n_out + extra_out) + out_w + extra_w + sum(input_weight(o.script) for o in ins)

            if utxos is None and all_to is not None:
                chosen = list(candidates)
            elif utxos is None:
                total = 0
                change_w = output_weight(p2tr(b"\x00" * 32)) if emergency_sat else 0
                for o in candidates:
                    if total >= target + emergency_sat + fee_for_weight(feerate, weight(chosen, bool(change_w),
                                                                                         change_w)):
                        break
                    chosen.append(o)
                    total += o.value
            total_in = sum(o.value for o in chosen)
            fee = fee_for_weight(feerate, weight(chosen))
            if emergency_sat:
                need = fee_for_weight(feerate, weight(chosen, 1, output_weight(p2tr(b"\x00" * 32))))
                left = total_in - target - need if all_to is None else total_in - target - need - DUST_LIMIT
                if left < emergency_sat and total_in >= target + fee:
                    raise WalletError(Reason.FUND_CANNOT_AFFORD_WITH_EMERGENCY, "We would not have enough left for "
                                                                         f"min-emergency-msat {emergency_sat}sat")
            if all_to is not None and emergency_sat:
                # CLN's rule: with anchor channels "all" leaves min-emergency-msat as change.
                fee = fee_for_weight(feerate, weight(chosen, 1, output_weight(p2tr(b"\x00" * 32))))
                if total_in - target - fee - emergency_sat < DUST_LIMIT:
                    raise WalletError(Reason.FUND_CANNOT_AFFORD_WITH_EMERGENCY, "We would not have enough left for "
                                                                         f"min-emergency-msat {emergency_sat}sat")
                change_idx = await self._new_change_index()
                change_script = scripts_for_pubkey(self.pubkey(change_idx))[1]
                tx_outputs = list(outputs)
                pos = len(outputs) if all_index is None else all_index
                tx_outputs.insert(pos, TxOut(total_in - target - fee - emergency_sat, all_to))
                change_outnum = len(tx_outputs)
                tx_outputs.append(TxOut(emergency_sat, change_script))
            elif all_to is not None:
                remainder = total_in - target - fee
                if not chosen or remainder < DUST_LIMIT:
                    raise WalletError(Reason.FUND_CANNOT_AFFORD, f"Could not afford all using all {len(candidates)} "
                                                          "available UTXOs: all short")
                tx_outputs = list(outputs)
                pos = len(outputs) if all_index is None else all_index
                tx_outputs.insert(pos, TxOut(remainder, all_to))
                change_outnum = None
            else:
                if total_in < target + fee:
                    raise WalletError(Reason.FUND_CANNOT_AFFORD, f"Could not afford {target}sat using all {len(candidates)} "
                                                          f"available UTXOs: {target + fee - total_in}sat short")
                tx_outputs = list(outputs)
                change_outnum = None
                change_script = None
                change_w = output_weight(p2tr(b"\x00" * 32))
                fee_with_change = fee_for_weight(feerate, weight(chosen, 1, change_w))
                change = total_in - target - fee_with_change
                if change >= max(DUST_LIMIT, emergency_sat):
                    change_idx = await self._new_change_index()
                    change_script = scripts_for_pubkey(self.pubkey(change_idx))[1]
                    change_outnum = len(tx_outputs)
                    tx_outputs.append(TxOut(change, change_script))
                    fee = fee_with_change
                else:
                    fee = SatInt(total_in - target)
            # Anti fee-sniping (as CLN): lock to the current height; RBF signalled on every input.
            lt = tip if locktime is None else locktime
            tx = Transaction(2, [TxIn(o.outpoint, b"", RBF_SEQUENCE) for o in chosen], tx_outputs, lt)
            prepared = PreparedTx(tx, chosen, change_outnum, fee)
            await self.set_reservation(chosen, tip + reserve)
            return prepared

    def emergency_sat(self, opening_anchors: bool = False) -> SatInt:
        """CLN's `min-emergency-msat` (in sat): what spends must leave in the wallet while the node has (or is
        opening) an anchor channel, to CPFP its commitment and pay its HTLC transactions' fees."""
        value = msat_to_sat(int(self.node.option("min-emergency-msat", 0) or 0))
        if not value:
            return SatInt(0)
        if opening_anchors:
            return value
        mgr = self.node.channel_manager
        for rec in (mgr.records if mgr is not None else {}).values():
            if rec.core.params.channel_type.anchors and rec.state.value != "CLOSED":
                return value
        return SatInt(0)

    async def new_change_script(self) -> bytes:
        """The P2TR script of a new change address. Call it with `selecting` held."""
        return scripts_for_pubkey(self.pubkey(await self._new_change_index()))[1]

    async def _new_change_index(self) -> int:
        # Called with self._lock held: issue the index without re-taking it.
        idx = self.max_index + 1
        if idx > MAX_INDEX:
            raise WalletError(Reason.GENERIC, "Failed to generate change address. Keys exhausted.")

        def write(db):
            db.execute("INSERT OR REPLACE INTO vars (name, val) VALUES ('bip32_max_index', ?)", (str(idx),))
            db.execute("INSERT OR REPLACE INTO wallet_addresses (keyidx, addrtype) VALUES (?, 'p2tr')", (idx,))

        await self.node.store.write(write)
        self.max_index = idx
        self.addrtypes[idx] = "p2tr"
        self._extend_scripts()
        return idx

    def sign_inputs(self, tx: Transaction, ours: dict[int, Output], spent: list[TxOut]) -> None:
        """Sign, in place, the inputs of `tx` that spend our outputs (`ours`: input index -> output); `spent`: every
        input's spent output (BIP 341).  The other inputs are left as they are."""
        inputs: list[WalletInput | None] = [
            WalletInput(ours[i].keyidx, ours[i].script, ours[i].value) if i in ours
            else WalletInput(None, spent[i].script_pubkey, spent[i].value) for i in range(len(tx.inputs))]
        bare = tx.copy()
        for txin in bare.inputs:
            txin.witness = []
        signed = Transaction.parse(self._signer.sign_wallet_tx(bare.serialize(), inputs))
        for i in ours:
            tx.inputs[i].witness = signed.inputs[i].witness

    def sign_tx(self, prepared: PreparedTx) -> Transaction:
        for i, o in enumerate(prepared.inputs):
            if not (is_p2tr(o.script) or is_p2wpkh(o.script)):
                raise WalletError(Reason.GENERIC, f"cannot sign input {i}: unknown script type")
        inputs: list[WalletInput | None] = [WalletInput(o.keyidx, o.script, o.value) for o in prepared.inputs]
        return Transaction.parse(self._signer.sign_wallet_tx(prepared.tx.serialize(), inputs))

    async def send_tx(self, prepared: PreparedTx, tx: Transaction) -> str:
        """Broadcast a signed transaction and record it (inputs spent, change unconfirmed).  On
        failure the inputs are unreserved and WalletError(Reason.GENERIC, bitcoind's reason) is raised."""
        chain = self.node.chain
        try:
            txid_hex = await chain.broadcast(tx)
        except (BitcoindError, BitcoindUnreachable) as e:
            await self.release(prepared)
            msg = e.message if isinstance(e, BitcoindError) else str(e)
            raise WalletError(Reason.GENERIC, f"Error broadcasting transaction: {msg}. Unsent tx discarded "
                                          f"{tx.serialize().hex()}") from None
        await self.record_sent(tx, prepared)
        chain.wake()
        return txid_hex

    async def record_sent(self, tx: Transaction, prepared: PreparedTx | None = None) -> None:
        txid = tx.txid()
        touched = []
        for txin in tx.inputs:
            o = self.outputs.get((txin.prevout.txid, txin.prevout.vout))
            if o is not None and o.spend_txid is None:
                o.spend_txid, o.reserved_til = txid, None
                touched.append(o)
        for n, out in enumerate(tx.outputs):
            idx = self.scripts.get(out.script_pubkey)
            if idx is not None and (txid, n) not in self.outputs:
                o = Output(txid, n, out.value, out.script_pubkey, idx)
                self.outputs[o.key] = o
                touched.append(o)

        def write(db):
            for o in touched:
                db.execute(f"INSERT OR REPLACE INTO wallet_outputs ({_OUTPUT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                           o.row())
            db.execute("INSERT OR IGNORE INTO wallet_txs (txid, rawtx, blockheight, txindex) VALUES (?, ?, NULL, NULL)",
                       (txid, tx.serialize()))

        await self.node.store.write(write)

    async def forget_replaced(self, txid: bytes) -> None:
        """Our unconfirmed transaction `txid` was replaced (RBF) by one now in the mempool: its outputs will never
        exist, so they leave the wallet (not counted, never chosen), and the coins it spent are unspent again until
        the replacement is recorded (record_sent) or mined."""
        gone = [o.key for o in self.outputs.values() if o.txid == txid and o.blockheight is None]
        freed = [o for o in self.outputs.values() if o.spend_txid == txid and o.spend_height is None]
        if not gone and not freed:
            return
        for k in gone:
            del self.outputs[k]
        for o in freed:
            o.spend_txid = None

        def write(db):
            for t, n in gone:
                db.execute("DELETE FROM wallet_outputs WHERE txid = ? AND outnum = ?", (t, n))
            for o in freed:
                db.execute("UPDATE wallet_outputs SET spend_txid = NULL WHERE txid = ? AND outnum = ?",
                           (o.txid, o.outnum))
            db.execute("DELETE FROM wallet_txs WHERE txid = ? AND blockheight IS NULL", (txid,))

        await self.node.store.write(write)
        self.node.log.debug(LOG, f"Transaction {txid[::-1].hex()} replaced: {len(gone)} output(s) forgotten, "
                                 f"{len(freed)} input(s) unspent again")

    async def release(self, prepared: PreparedTx) -> None:
        await self.set_reservation([o for o in prepared.inputs if o.spend_txid is None], None)

    # ---- reservations -------------------------------------------------------------------------
    async def set_reservation(self, outs: list[Output], til: int | None) -> None:
        """`outs` reserved until block `til` (None: not reserved), persisted."""
        for o in outs:
            o.reserved_til = til

        def write(db):
            for o in outs:
                db.execute("UPDATE wallet_outputs SET reserved_til = ? WHERE txid = ? AND outnum = ?",
                           (o.reserved_til, o.txid, o.outnum))

        await self.node.store.write(write)

    async def reserve(self, outpoints: list[OutPoint], exclusive: bool, blocks: int) -> list[dict]:
        """CLN's reserveinputs: unknown outpoints are skipped; reserved (if exclusive) or spent
        ones are refused with WalletError(-32602) and nothing changes."""
        async with self._lock:
            tip = self.node.blockheight
            outs = []
            for op in outpoints:
                o = self.outputs.get((op.txid, op.vout))
                if o is None:
                    continue
                if exclusive and o.reserved(tip):
                    raise WalletError(Reason.BAD_PARAMETER, f"{op.txid_hex()}:{op.vout} already reserved")
                if o.spend_txid is not None:
                    raise WalletError(Reason.BAD_PARAMETER, f"{op.txid_hex()}:{op.vout} already spent")
                outs.append(o)
            return await self.extend_reservations(outs, blocks)

    async def extend_reservations(self, outs: list[Output], blocks: int) -> list[dict]:
        """Reserve `outs` for `blocks` more blocks (from now if not reserved), as CLN's reserveinputs; returns its
        `reservations` report. Call it with `selecting` held."""
        tip = self.node.blockheight
        report = []
        for o in outs:
            was = o.reserved(tip)
            await self.set_reservation([o], (o.reserved_til if was else tip) + blocks)
            report.append(_reservation_json(o, was, tip))
        return report

    async def unreserve(self, outpoints: list[OutPoint], blocks: int) -> list[dict]:
        async with self._lock:
            tip = self.node.blockheight
            report = []
            for op in outpoints:
                o = self.outputs.get((op.txid, op.vout))
                if o is None or not o.reserved(tip) or o.spend_txid is not None:
                    continue
                til = o.reserved_til - blocks
                await self.set_reservation([o], til if til > tip else None)
                report.append(_reservation_json(o, True, tip))
            return report


def _reservation_json(o: Output, was: bool, tip: int) -> dict:
    r = {"txid": o.txid[::-1].hex(), "vout": o.outnum, "was_reserved": was, "reserved": o.reserved(tip)}
    if o.reserved(tip):
        r["reserved_to_block"] = o.reserved_til
    return r
