"""The chain engine of amp-chaind: kernel + index + mempool + mining + reorgs.

Single-threaded by design: the RPC server runs every call on one worker thread, so nothing here
locks. After every block the kernel processes, `_sync_index` walks the index to the kernel's
active chain (disconnecting to the fork point, then connecting), which is how reorgs made by the
kernel (a longer fork, reconsiderblock) and by invalidateblock reach the UTXO set, the transaction
index, the wallet and the mempool.

invalidateblock: the kernel API offers no invalidation, so amp-chaind builds a fresh kernel
chainstate from its stored blocks, leaving out the invalidated block and its descendants; the
kernel then picks the best remaining chain. reconsiderblock resubmits them and the kernel itself
reorganises if they carry more work.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time

from ampere.chain.regtest.blocks import (
    MAX_BLOCK_WEIGHT, Block, BlockParseError, assemble_block,
)
from ampere.chain.regtest.kernel import BlockRejected, Kernel
from ampere.chain.regtest.mempool import Mempool, MempoolEntry, RejectError, accept_to_mempool, is_final_tx
from ampere.chain.regtest.chain_index import Store
from ampere.primitives.tx import Transaction, TxOut

log = logging.getLogger("amp-chaind")


class ChainError(Exception):
    """An RPC-level failure: code and message as bitcoind reports them."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _unspendable(spk: bytes) -> bool:
    return spk[:1] == b"\x6a" or len(spk) > 10_000


class ChainNode:
    def __init__(self, regtest_dir: str, persist_mempool: bool = True):
        self.dir = regtest_dir
        self.persist_mempool = persist_mempool
        os.makedirs(regtest_dir, exist_ok=True)
        self.store = Store(os.path.join(regtest_dir, "index.sqlite"))
        self.kernel = Kernel(self._kernel_dir(int(self.store.get_meta("kernel_gen", "0"))))
        self.mempool = Mempool()
        self.started = time.time()
        self._mtp_cache: dict[bytes, int] = {}
        self._catch_up_kernel()
        self._sync_index()
        if persist_mempool:
            self._load_mempool()

    def _kernel_dir(self, gen: int) -> str:
        return os.path.join(self.dir, f"kernel.{gen}")

    def close(self) -> None:
        if self.persist_mempool:
            self._save_mempool()
        self.kernel.close()
        self.store.close()

    # ------------------------------------------------------------------ chain view
    def tip_height(self) -> int:
        t = self.store.tip()
        return t[0] if t else -1

    def tip_hash(self) -> bytes:
        return self.store.tip()[1]

    def median_time_past(self, height: int) -> int:
        times = self.store.times(max(0, height - 10), height)
        if not times:
            return 0
        return sorted(times)[len(times) // 2]

    # ------------------------------------------------------------------ kernel <-> index
    def _excluded_by_invalidation(self) -> set[bytes]:
        """Invalidated blocks and all their descendants."""
        out: set[bytes] = set()
        stack = list(self.store.invalidated())
        while stack:
            h = stack.pop()
            if h in out:
                continue
            out.add(h)
            stack.extend(self.store.children_of(h))
        return out

    def _catch_up_kernel(self) -> None:
        """Resubmit stored blocks the kernel does not know (a kill -9 loses its unflushed state)."""
        excluded = self._excluded_by_invalidation()
        rows = self.store.db.execute("SELECT hash, raw FROM blocks ORDER BY height, rowid").fetchall()
        resubmitted = 0
        for block_hash, raw in rows:
            if block_hash in excluded or self.kernel.knows(block_hash):
                continue
            try:
                self.kernel.submit(raw, block_hash)
                resubmitted += 1
            except BlockRejected:
                pass
        if resubmitted:
            log.info("resubmitted %d stored blocks to the kernel", resubmitted)

    def _sync_index(self) -> tuple[list[Transaction], int]:
        """Bring the index to the kernel's active chain. Returns (txs of disconnected blocks,
        number of blocks connected)."""
        k_height, _ = self.kernel.tip()
        ours = self.store.tip()
        fork = -1
        if ours is not None:
            h = min(ours[0], k_height)
            while h >= 0 and self.store.hash_at(h) != self.kernel.hash_at(h):
                h -= 1
            fork = h
        if ours is not None and fork == ours[0] and fork == k_height:
            return [], 0
        disconnected_blocks: list[list[Transaction]] = []
        connected = 0
        self.store.begin()
        try:
            if ours is not None:
                for h in range(ours[0], fork, -1):
                    disconnected_blocks.append(self._disconnect(h))
            for h in range(fork + 1, k_height + 1):
                block_hash = self.kernel.hash_at(h)
                raw = self.store.get_block_raw(block_hash)
                if raw is None:  # e.g. genesis
                    raw = self._kernel_block(h)
                    self.store.put_block(block_hash, h, raw[4:36], raw)
                self._connect(h, block_hash, raw)
                connected += 1
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        resurrected = [tx for txs in reversed(disconnected_blocks) for tx in txs]
        self._update_mempool_after_blocks(resurrected, fork + 1, k_height)
        return resurrected, connected

    def _kernel_block(self, height: int) -> bytes:
        cm = self.kernel.cm
        entry = cm.get_active_chain().block_tree_entries[height]
        return bytes(cm.blocks[entry])

    def _connect(self, height: int, block_hash: bytes, raw: bytes) -> None:
        block = Block.parse(raw)
        db = self.store.db
        db.execute("INSERT INTO chain (height, hash, time, ntx) VALUES (?, ?, ?, ?)",
                   (height, block_hash, block.header.time, len(block.txs)))
        # bitcoind's line for a new tip (tools such as pyln-testing wait for "UpdateTip: new best=... height=N").
        log.info("UpdateTip: new best=%s height=%d version=0x%08x tx=%d date='%s' progress=1.000000",
                 block_hash[::-1].hex(), height, block.header.version & 0xFFFFFFFF, len(block.txs),
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(block.header.time)))
        if height == 0:
            return  # the genesis coinbase is not spendable and not indexed (as in Core)
        for pos, tx in enumerate(block.txs):
            txid = tx.txid()
            coinbase = pos == 0
            if not coinbase:
                for vin, txin in enumerate(tx.inputs):
                    op = txin.prevout
                    coin = self.store.get_coin(op.txid, op.vout)
                    if coin is None:
                        raise RuntimeError(f"index inconsistent: block {block_hash[::-1].hex()} spends unknown "
                                           f"{op.txid_hex()}:{op.vout}")
                    db.execute("INSERT OR REPLACE INTO undo VALUES (?,?,?,?,?,?,?,?,?)",
                               (block_hash, txid, vin, op.txid, op.vout, coin.value, coin.spk, coin.height,
                                int(coin.coinbase)))
                    db.execute("DELETE FROM utxos WHERE txid=? AND vout=?", (op.txid, op.vout))
            for n, out in enumerate(tx.outputs):
                if _unspendable(out.script_pubkey):
                    continue
                db.execute("INSERT OR REPLACE INTO utxos VALUES (?,?,?,?,?,?)",
                           (txid, n, out.value, out.script_pubkey, height, int(coinbase)))
            db.execute("INSERT OR REPLACE INTO txindex VALUES (?,?,?,?,?)",
                       (txid, block_hash, height, pos, tx.serialize()))

    def _disconnect(self, height: int) -> list[Transaction]:
        db = self.store.db
        block_hash = self.store.hash_at(height)
        block = Block.parse(self.store.get_block_raw(block_hash))
        if height > 0:
            for tx in reversed(block.txs):
                txid = tx.txid()
                db.execute("DELETE FROM utxos WHERE txid=?", (txid,))
                db.execute("DELETE FROM txindex WHERE txid=? AND block_hash=?", (txid, block_hash))
            for row in db.execute("SELECT txid, vout, value, spk, height, coinbase FROM undo WHERE block_hash=?",
                                  (block_hash,)).fetchall():
                db.execute("INSERT OR REPLACE INTO utxos VALUES (?,?,?,?,?,?)", row)
            db.execute("DELETE FROM undo WHERE block_hash=?", (block_hash,))
        db.execute("DELETE FROM chain WHERE height=?", (height,))
        return block.txs[1:]

    def _update_mempool_after_blocks(self, resurrected: list[Transaction], low: int, high: int) -> None:
        if resurrected:
            # A reorg: put the disconnected transactions back first (as Core does), then re-check
            # everything that was waiting; whatever no longer fits is dropped.
            old = self.mempool.clear()
            for tx in resurrected:
                try:
                    accept_to_mempool(self, tx, bypass_fees=True)
                except RejectError:
                    pass
            for e in old:
                try:
                    accept_to_mempool(self, e.tx, bypass_fees=True, now=e.time)
                except RejectError as err:
                    log.info("mempool: dropped %s after reorg: %s", e.txid[::-1].hex(), err.message)
            return
        if not len(self.mempool) or high < low:
            return
        for h in range(low, high + 1):
            block_hash = self.store.hash_at(h)
            block = Block.parse(self.store.get_block_raw(block_hash))
            for tx in block.txs[1:]:
                txid = tx.txid()
                if txid in self.mempool:
                    self.mempool.remove(txid)
                for txin in tx.inputs:
                    other = self.mempool.spenders.get((txin.prevout.txid, txin.prevout.vout))
                    if other is not None and other != txid:
                        self.mempool.remove_with_descendants(other)

    # ------------------------------------------------------------------ blocks
    def submit_block(self, raw: bytes) -> str | None:
        """submitblock: None if accepted, else a BIP22 result string."""
        try:
            block = Block.parse(raw)
        except BlockParseError:
            raise ChainError(-22, "Block decode failed")
        block_hash = block.hash()
        if self.kernel.knows(block_hash) and self.store.get_block_raw(block_hash) is not None:
            return "duplicate"
        meta = self.store.get_block_meta(block.header.prev_hash)
        height = meta[0] + 1 if meta else -1
        try:
            self.kernel.submit(raw, block_hash)
        except BlockRejected as e:
            return e.reason.split(",")[0]
        self.store.put_block(block_hash, height, block.header.prev_hash, raw)
        self._sync_index()
        return None if self.store.height_of(block_hash) is not None else "inconclusive"

    def mine_block(self, script_pubkey: bytes, txs: list[Transaction] | None = None,
                   parent: bytes | None = None) -> bytes:
        """Mine one block paying to `script_pubkey` on the tip (or on `parent`), with the mempool's
        transactions (or exactly `txs`). Returns the block hash; raises ChainError if the kernel
        rejects it."""
        if parent is None:
            height, prev = self.store.tip()
            prev_mtp = self.median_time_past(height)
        else:
            meta = self.store.get_block_meta(parent)
            if meta is None:
                raise ChainError(-5, "Block not found")
            height = meta[0]
            prev = parent
            prev_mtp = self._branch_mtp(parent)
        from_mempool = txs is None
        if from_mempool:
            txs, fees = self._block_template_txs() if parent is None else ([], 0)
        else:
            fees = self._fees_of(txs)
        block = assemble_block(prev, height + 1, prev_mtp, script_pubkey, txs, fees)
        try:
            return self._submit_mined(block)
        except ChainError:
            if not (from_mempool and txs):
                raise
            # A mempool transaction the kernel refuses (should not happen): rebuild the mempool
            # from scratch and try again, then fall back to an empty block.
            log.warning("mined block rejected; rebuilding the mempool and retrying")
            old = self.mempool.clear()
            for e in old:
                try:
                    accept_to_mempool(self, e.tx, bypass_fees=True, now=e.time)
                except RejectError:
                    pass
            txs, fees = self._block_template_txs()
            block = assemble_block(prev, height + 1, prev_mtp, script_pubkey, txs, fees)
            try:
                return self._submit_mined(block)
            except ChainError:
                self.mempool.clear()
                block = assemble_block(prev, height + 1, prev_mtp, script_pubkey, [], 0)
                return self._submit_mined(block)

    def _branch_mtp(self, block_hash: bytes) -> int:
        times = []
        h = block_hash
        for _ in range(11):
            raw = self.store.get_block_raw(h)
            if raw is None:
                break
            times.append(int.from_bytes(raw[68:72], "little"))
            h = raw[4:36]
        return sorted(times)[len(times) // 2] if times else 0

    def _submit_mined(self, block: Block) -> bytes:
        raw = block.serialize()
        block_hash = block.hash()
        try:
            self.kernel.submit(raw, block_hash)
        except BlockRejected as e:
            raise ChainError(-25, f"TestBlockValidity failed: {e.reason}") from None
        meta = self.store.get_block_meta(block.header.prev_hash)
        self.store.put_block(block_hash, (meta[0] + 1) if meta else 0, block.header.prev_hash, raw)
        self._sync_index()
        return block_hash

    def _block_template_txs(self) -> tuple[list[Transaction], int]:
        chosen: list[Transaction] = []
        included: set[bytes] = set()
        weight = 4000  # room for the coinbase
        fees = 0
        tip_h = self.tip_height()
        for txid, e in self.mempool.entries.items():
            if not e.parents <= included:
                continue
            if weight + e.weight > MAX_BLOCK_WEIGHT:
                continue
            # Locktime is re-checked against the block being built (entries may predate a reorg).
            if not is_final_tx(e.tx, tip_h + 1, self.median_time_past(tip_h)):
                continue
            chosen.append(e.tx)
            included.add(txid)
            weight += e.weight
            fees += e.fee
        return chosen, fees

    def _fees_of(self, txs: list[Transaction]) -> int:
        """Fees of explicitly chosen transactions (generateblock); unknown inputs count as no fee."""
        produced: dict[tuple[bytes, int], int] = {}
        total = 0
        for tx in txs:
            txid = tx.txid()
            value_in = 0
            known = True
            for txin in tx.inputs:
                op = (txin.prevout.txid, txin.prevout.vout)
                coin = self.store.get_coin(*op)
                if coin is not None:
                    value_in += coin.value
                elif op in produced:
                    value_in += produced[op]
                else:
                    out = self.mempool.output(*op)
                    if out is None:
                        known = False
                        break
                    value_in += out.value
            for n, o in enumerate(tx.outputs):
                produced[(txid, n)] = o.value
            if known:
                total += max(0, value_in - sum(o.value for o in tx.outputs))
        return total

    # ------------------------------------------------------------------ invalidate / reconsider
    def invalidate_block(self, block_hash: bytes) -> None:
        meta = self.store.get_block_meta(block_hash)
        if meta is None:
            raise ChainError(-5, "Block not found")
        if meta[0] == 0:
            raise ChainError(-1, "Cannot invalidate the genesis block")  # Core would try; keep it safe
        self.store.add_invalidated(block_hash)
        # bitcoind: "InvalidChainFound: invalid block=HASH  height=N  log2_work=...  date=..."
        log.info("InvalidChainFound: invalid block=%s  height=%d", block_hash[::-1].hex(), meta[0])
        self._rebuild_kernel()

    def reconsider_block(self, block_hash: bytes) -> None:
        if self.store.get_block_meta(block_hash) is None:
            raise ChainError(-5, "Block not found")
        # Clear invalidity of the block, its ancestors and descendants (Core's ResetBlockFailureFlags).
        invalid = self.store.invalidated()
        lineage = set()
        h = block_hash
        while h is not None and h not in lineage:
            lineage.add(h)
            m = self.store.get_block_meta(h)
            h = m[1] if m else None
        excluded_before = self._excluded_by_invalidation()
        for bad in invalid:
            if bad in lineage or bad in self._descendants(block_hash):
                self.store.remove_invalidated(bad)
        excluded_after = self._excluded_by_invalidation()
        # Resubmit what is no longer excluded; the kernel reorganises if it has more work.
        rows = self.store.db.execute("SELECT hash, raw FROM blocks ORDER BY height, rowid").fetchall()
        for bh, raw in rows:
            if bh in excluded_before and bh not in excluded_after and not self.kernel.knows(bh):
                try:
                    self.kernel.submit(raw, bh)
                except BlockRejected:
                    pass
        self._sync_index()

    def _descendants(self, block_hash: bytes) -> set[bytes]:
        out: set[bytes] = set()
        stack = [block_hash]
        while stack:
            h = stack.pop()
            if h in out:
                continue
            out.add(h)
            stack.extend(self.store.children_of(h))
        return out

    def _rebuild_kernel(self) -> None:
        old_gen = int(self.store.get_meta("kernel_gen", "0"))
        new_gen = old_gen + 1
        new_dir = self._kernel_dir(new_gen)
        shutil.rmtree(new_dir, ignore_errors=True)
        fresh = Kernel(new_dir)
        excluded = self._excluded_by_invalidation()
        rows = self.store.db.execute("SELECT hash, raw FROM blocks WHERE height > 0 ORDER BY height, rowid").fetchall()
        for bh, raw in rows:
            if bh in excluded:
                continue
            try:
                fresh.submit(raw, bh)
            except BlockRejected:
                pass
        old = self.kernel
        self.kernel = fresh
        self.store.set_meta("kernel_gen", str(new_gen))
        old.close()
        shutil.rmtree(self._kernel_dir(old_gen), ignore_errors=True)
        self._sync_index()

    # ------------------------------------------------------------------ mempool persistence
    def _mempool_path(self) -> str:
        return os.path.join(self.dir, "mempool.json")

    def _save_mempool(self) -> None:
        data = [{"hex": e.raw.hex(), "time": e.time} for e in self.mempool.entries.values()]
        tmp = self._mempool_path() + ".new"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self._mempool_path())

    def _load_mempool(self) -> None:
        try:
            with open(self._mempool_path()) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return
        for item in data:
            try:
                accept_to_mempool(self, Transaction.parse(bytes.fromhex(item["hex"])), bypass_fees=True,
                                  now=item.get("time"))
            except (RejectError, ValueError, KeyError):
                pass

    # ------------------------------------------------------------------ coins
    def coin_or_mempool_output(self, txid: bytes, vout: int) -> TxOut | None:
        c = self.store.get_coin(txid, vout)
        if c is not None:
            return TxOut(c.value, c.spk)
        return self.mempool.output(txid, vout)

    def accept(self, tx: Transaction, **kw) -> tuple[MempoolEntry, list[bytes]]:
        return accept_to_mempool(self, tx, **kw)
