"""Following the chain through the Bitcoin backend (node.chain_backend: the built-in bcli, i.e.
bitcoind's JSON-RPC to bitcoind itself or amp-chaind, or a backend plugin).

The watcher polls the chain info every `bitcoin-poll` seconds (30 by default, 1 on regtest;
`dev-bitcoind-poll` overrides), fetches each new block whole (`getrawblockbyheight`, decoded here),
and hands it to its listeners in order.  When the block it fetched does not build on its tip the
chain was reorganised: it disconnects its tip block (listeners hear `block_disconnected`), one at a
time down to the fork point, then connects the new branch.  Processed block hashes are persisted,
so a restarted ampd resumes where it stopped and also notices a reorg that happened meanwhile.

While the backend cannot be reached the RPC server keeps serving, getinfo carries
`warning_bitcoind_sync`, and the watcher retries at every poll with a log line saying so.

A listener (or watch) that raises at a block gets the block again at the next poll, with those before it (each
takes a block twice without harm); after BLOCK_TRIES polls the block is connected without it, logged BROKEN: a
lasting bug in one listener must not keep the node from seeing later blocks, where every channel's deadlines are.

Listener API (the wallet, the channel manager, the on-chain resolver, gossip):
    watcher.add_listener(obj)
        await obj.block_connected(height: int, block: Block)
        await obj.block_disconnected(height: int, block_hash: bytes, block: Block | None)
    Block has .hash (internal byte order), .hash_hex, .prev_hash, .time, .txs (decoded Transactions).
Helpers: broadcast(tx), gettxout(outpoint), block_at(height), watch_txid(...),
watch_outpoint(...), wait_for_height(h, timeout).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from ampere.chain.bitcoind import BitcoindError, BitcoindRpc, BitcoindUnreachable
from ampere.primitives.crypto import sha256d
from ampere.primitives.tx import OutPoint, Transaction, compact_size_at
from ampere.node.onchain.chain_backend import BcliBackend, PluginBackend
from ampere.node.onchain.feerate import ESTIMATE_TARGETS, FeeEstimates

if TYPE_CHECKING:
    from ampere.node.app.daemon import Node

LOG = "chainwatch"
WARNING_KEY = "warning_bitcoind_sync"
SYNC_WARNING_KEY = "warning_lightningd_sync"
# bitcoind's -fallbackfee that regtest setups use (0.0002 BTC/kvB), when it has no estimates.
REGTEST_FALLBACK_PERKW = 5000
FEE_POLL_SECONDS = 30
BATCH = 50  # blocks fetched per round trip while catching up
_RECENT = 16  # decoded blocks kept for the listeners of a reorg
# Tries a listener (or a watch) gets at one block before the block is connected without it (_deliver).
BLOCK_TRIES = 5


@dataclass
class Block:
    header: bytes
    txs: list[Transaction]
    hash: bytes  # internal byte order

    @property
    def hash_hex(self) -> str:
        return self.hash[::-1].hex()

    @property
    def prev_hash(self) -> bytes:
        return self.header[4:36]

    @property
    def time(self) -> int:
        return int.from_bytes(self.header[68:72], "little")


def parse_block(raw: bytes) -> Block:
    if len(raw) < 81:
        raise ValueError("block too short")
    header = raw[:80]
    n, pos = compact_size_at(raw, 80)
    txs = []
    for _ in range(n):
        tx, pos = Transaction.parse_from(raw, pos)
        txs.append(tx)
    if pos != len(raw):
        raise ValueError("trailing bytes after block")
    return Block(header, txs, sha256d(header))


class ChainListener(Protocol):
    async def block_connected(self, height: int, block: Block) -> None: ...
    async def block_disconnected(self, height: int, block_hash: bytes, block: Block | None) -> None: ...


TxCallback = Callable[[bytes, "int | None", "Block | None", "Transaction | None"], Awaitable[None]]
SpendCallback = Callable[[OutPoint, "Transaction | None", "int | None"], Awaitable[None]]


class ChainWatcher:
    def __init__(self, node: Node, backend: "BitcoindRpc | BcliBackend | PluginBackend", network: str,
                 poll_interval: float) -> None:
        self.node = node
        self.backend = BcliBackend(backend) if isinstance(backend, BitcoindRpc) else backend
        self.network = network
        self.poll_interval = poll_interval
        self.height = -1  # last processed block; -1 until the first contact
        self.tip_hash = b""
        self.hashes: dict[int, bytes] = {}  # height -> hash of every processed block
        self.fees = FeeEstimates()
        self.synced = False
        # The backend's tip height as last read: a block below it is one being caught up with (listeners act at
        # the tip, not at every block of a catch-up: see OnchainResolver._advance).
        self.target_height = -1
        self.listeners: list[Any] = []
        self._recent: dict[bytes, Block] = {}
        self._pending_rows: list[tuple[int, bytes]] = []
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._height_changed = asyncio.Condition()
        self._down_since: float | None = None
        self._fees_at = 0.0
        self._contacted = False
        self._retry_logged_at = 0.0
        self._tx_watches: dict[bytes, list[TxCallback]] = {}
        self._spend_watches: dict[tuple[bytes, int], list[SpendCallback]] = {}
        self._block_failures: dict[tuple[bytes, int], int] = {}  # (block hash, id of whom) -> failed tries

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        rows = await self.node.store.read(lambda db: db.query("SELECT height, hash FROM chain_blocks ORDER BY height"))
        for h, bh in rows:
            self.hashes[h] = bytes(bh)
        if rows:
            self.height, self.tip_hash = rows[-1][0], bytes(rows[-1][1])
            self._set_height(self.height)
        self.node.warnings[WARNING_KEY] = "Waiting for the first answer from bitcoind."
        self._task = asyncio.create_task(self._run(), name="chainwatch")

    async def stop(self) -> None:
        if self._task is not None:
            # Cancel until it has really stopped: on Python 3.11 `asyncio.wait_for` can swallow a cancel
            # that arrives together with its result (fixed in 3.12), and the poll loop would go on.
            task = self._task
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1)
            try:
                task.result()
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self._pending_rows and self.node.store is not None:
            await self._flush()
        await self.backend.close()

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def wake(self) -> None:
        """Poll now (e.g. after a broadcast) instead of at the next interval."""
        self._wake.set()

    # ---- watches (for channels: funding confirmation, spends of an outpoint) ---------------
    def watch_txid(self, txid: bytes, callback: TxCallback) -> None:
        """`await callback(txid, height, block, tx)` when txid is mined in a connected block, and
        `await callback(txid, None, None, None)` if that block is disconnected."""
        self._tx_watches.setdefault(txid, []).append(callback)

    def watch_outpoint(self, outpoint: OutPoint, callback: SpendCallback) -> None:
        """`await callback(outpoint, spending_tx, height)` when a connected block spends it, and
        `await callback(outpoint, None, None)` if that block is disconnected."""
        self._spend_watches.setdefault((outpoint.txid, outpoint.vout), []).append(callback)

    def unwatch_txid(self, txid: bytes) -> None:
        self._tx_watches.pop(txid, None)

    def unwatch_outpoint(self, outpoint: OutPoint) -> None:
        self._spend_watches.pop((outpoint.txid, outpoint.vout), None)

    # ---- helpers for other components -------------------------------------------------------
    async def broadcast(self, tx: Transaction | str) -> str:
        """sendrawtransaction; returns the txid (display hex).  Raises BitcoindError (with
        bitcoind's code and reason) or BitcoindUnreachable."""
        if isinstance(tx, str):
            raw, txid = tx, Transaction.parse(bytes.fromhex(tx)).txid()[::-1].hex()
        else:
            raw, txid = tx.serialize().hex(), tx.txid()[::-1].hex()
        txid = await self.backend.send(raw, txid)
        self.node.log.info(LOG, f"Broadcast transaction {txid}")
        return txid

    async def gettxout(self, outpoint: OutPoint, include_mempool: bool = True) -> dict | None:
        """The backend's getutxout (bitcoind's gettxout): None if spent or unknown; else {"value_sat", "script"}
        (as CLN's interface, no confirmations: a caller knows the block it found the output in)."""
        return await self.backend.utxo(outpoint.txid_hex(), outpoint.vout, include_mempool)

    async def block_at(self, height: int) -> Block | None:
        """The backend's block at `height` (None beyond its tip)."""
        got = (await self.backend.raw_blocks([height]))[0]
        return None if got is None else parse_block(got[1])

    async def wait_for_height(self, height: int, timeout: float | None = None) -> bool:
        async def wait():
            async with self._height_changed:
                await self._height_changed.wait_for(lambda: self.node.blockheight >= height)

        try:
            await asyncio.wait_for(wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    # ---- the poll loop ----------------------------------------------------------------------
    async def _run(self) -> None:
        log = self.node.log
        while True:
            try:
                await self._poll()
                if self._down_since is not None:
                    log.info(LOG, f"{self.backend.label} is reachable again{self.backend.where} "
                                  f"after {time.time() - self._down_since:.0f}s")
                    self._down_since = None
            except BitcoindUnreachable as e:
                now = time.time()
                if self._down_since is None:
                    self._down_since = now
                    self._contacted = False
                self.node.warnings[WARNING_KEY] = f"Cannot reach bitcoind: {e}. Retrying every {self.poll_interval:g}s."
                # One clear line per outage, then a reminder every minute.
                if now - self._retry_logged_at >= 60 or self._retry_logged_at < self._down_since:
                    self._retry_logged_at = now
                    log.unusual(LOG, f"Waiting for {self.backend.describe()} ({e}); "
                                     f"retrying every {self.poll_interval:g}s")
            except BitcoindError as e:
                log.unusual(LOG, f"bitcoind error while following the chain: {e}")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug must not stop the chain from being followed
                log.broken(LOG, f"chain poll failed: {e!r}")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def _poll(self) -> None:
        info = await self.backend.chain_info(self.height)
        if not self._contacted:
            self._contacted = True
            self.node.log.info(LOG, f"Connected to {self.backend.describe()} ({info.chain}), "
                                    f"chain at height {info.blocks}")
        if time.time() - self._fees_at >= FEE_POLL_SECONDS:
            await self._update_fees()
        if self.height < 0:
            await self._start_at_tip(info.blocks)
        await self._catch_up(info.blocks, info.best_hash)
        if info.ibd and self.network != "regtest":
            self.node.warnings[WARNING_KEY] = "Bitcoind is not up-to-date with network."
        else:
            self.node.warnings.pop(WARNING_KEY, None)

    async def _start_at_tip(self, tip: int) -> None:
        """A new node: nothing of ours can be in the chain yet, so it starts at the tip."""
        bh = await self._hash_at(tip)
        self.height, self.tip_hash = tip, bh
        self.hashes[tip] = bh
        self._pending_rows.append((tip, bh))
        await self._flush()
        self._set_height(tip)
        self.node.log.info(LOG, f"Starting to follow the chain at block {tip}")

    async def _catch_up(self, remote_height: int, best_hash: str | None) -> None:
        while True:
            self.target_height = remote_height
            if self.height >= remote_height:
                if best_hash is None or bytes.fromhex(best_hash)[::-1] == self.tip_hash:
                    break
                # Same height (or a shorter best chain) but another tip: a reorg; find the fork.
                ours = await self._hash_at(self.height) if self.height <= remote_height else None
                if ours == self.tip_hash:
                    break
                await self._disconnect_tip()
                continue
            behind = remote_height - self.height
            if behind > 1:
                self.synced = False
                self.node.warnings[SYNC_WARNING_KEY] = "Still loading latest blocks from bitcoind."
            first = self.height + 1
            heights = list(range(first, min(remote_height, self.height + BATCH) + 1))
            got = await self.backend.raw_blocks(heights)
            if got[0] is None:
                break  # the chain shrank under us: re-read it on the next round
            reorged = False
            for h, hit in zip(heights, got):
                if hit is None:
                    break
                block = parse_block(hit[1])
                if block.prev_hash != self.tip_hash:
                    await self._disconnect_tip()
                    reorged = True
                    break
                await self._connect(h, block)
            if not reorged:
                await self._flush()
            info = await self.backend.chain_info(self.height)
            remote_height, best_hash = info.blocks, info.best_hash
        await self._flush()
        if not self.synced:
            self.synced = True
            self.node.warnings.pop(SYNC_WARNING_KEY, None)
            self.node.log.info(LOG, f"Synced with bitcoind at block {self.height}")

    async def _connect(self, height: int, block: Block) -> None:
        for listener in self.listeners:
            await self._deliver(height, block, listener, type(listener).__name__,
                                listener.block_connected(height, block))
        await self._run_watches_connected(height, block)
        self._block_failures.clear()  # (blocks connect in order: any failure counted is of this one)
        self.height, self.tip_hash = height, block.hash
        self.hashes[height] = block.hash
        self._pending_rows.append((height, block.hash))
        self._recent[block.hash] = block
        if len(self._recent) > _RECENT:
            self._recent.pop(next(iter(self._recent)))
        self._set_height(height)
        self.node.notify("block_added", {"hash": block.hash_hex, "height": height})
        self.node.log.debug(LOG, f"Adding block {height}: {block.hash_hex}")  # lightningd's words (tests wait for them)

    async def _deliver(self, height: int, block: Block, whom: object, who: str, step: Awaitable[None]) -> None:
        """Await one listener's (or watch's) handling of a block.  Raising, it is raised again (the block is redone
        at the next poll) until it has failed BLOCK_TRIES times at this block; then the block goes on without it."""
        try:
            await step
        except (asyncio.CancelledError, BitcoindError, BitcoindUnreachable):
            raise  # stopping, or the backend: the block is redone, for everyone, when it answers again
        except Exception as e:
            key = (block.hash, id(whom))
            tries = self._block_failures.get(key, 0) + 1
            self._block_failures[key] = tries
            if tries < BLOCK_TRIES:
                raise
            self.node.log.broken(LOG, f"{who} failed at block {height} {BLOCK_TRIES} times ({e!r}): going on "
                                      f"without it")

    async def _disconnect_tip(self) -> None:
        await self._flush()
        height, bh = self.height, self.tip_hash
        block = self._recent.pop(bh, None)
        if block is None:
            try:
                raw = await self.backend.raw_block_by_hash(bh[::-1].hex(), height)
                block = parse_block(raw) if raw is not None else None
            except (BitcoindError, ValueError):
                block = None
        # lightningd's words (chaintopology.c), which tests wait for.
        self.node.log.unusual(LOG, f"Removing stale block {height}: {bh[::-1].hex()} (reorganisation)")
        for listener in reversed(self.listeners):
            await listener.block_disconnected(height, bh, block)
        if block is not None:
            await self._run_watches_disconnected(block)
        await self.node.store.write(lambda db: db.execute("DELETE FROM chain_blocks WHERE height >= ?", (height,)))
        self.hashes.pop(height, None)
        self.height = height - 1
        prev = self.hashes.get(self.height)
        if prev is None:
            # Below everything we recorded: take the backend's view of that height.
            prev = await self._hash_at(self.height)
            self.hashes[self.height] = prev
            self._pending_rows.append((self.height, prev))
        self.tip_hash = prev
        self._set_height(self.height)

    async def _hash_at(self, height: int) -> bytes:
        bh = await self.backend.blockhash(height)
        if bh is None:
            raise BitcoindError(-8, f"Block height {height} out of range")
        return bytes.fromhex(bh)[::-1]

    async def _flush(self) -> None:
        rows, self._pending_rows = self._pending_rows, []
        if rows:
            await self.node.store.write(lambda db: [db.execute(
                "INSERT OR REPLACE INTO chain_blocks (height, hash) VALUES (?, ?)", r) for r in rows])

    def _set_height(self, height: int) -> None:
        self.node.blockheight = max(height, 0)

        async def notify():
            async with self._height_changed:
                self._height_changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    async def _run_watches_connected(self, height: int, block: Block) -> None:
        if not self._tx_watches and not self._spend_watches:
            return
        for tx in block.txs:
            txid = tx.txid()
            for cb in list(self._tx_watches.get(txid, ())):
                await self._deliver(height, block, cb, f"watch of tx {txid[::-1].hex()}", cb(txid, height, block, tx))
            for i in tx.inputs:
                for cb in list(self._spend_watches.get((i.prevout.txid, i.prevout.vout), ())):
                    await self._deliver(height, block, cb, f"watch of {i.prevout.txid[::-1].hex()}:{i.prevout.vout}",
                                        cb(i.prevout, tx, height))

    async def _run_watches_disconnected(self, block: Block) -> None:
        if not self._tx_watches and not self._spend_watches:
            return
        for tx in block.txs:
            txid = tx.txid()
            for cb in list(self._tx_watches.get(txid, ())):
                await cb(txid, None, None, None)
            for i in tx.inputs:
                for cb in list(self._spend_watches.get((i.prevout.txid, i.prevout.vout), ())):
                    await cb(i.prevout, None, None)

    # ---- fees --------------------------------------------------------------------------------
    async def _update_fees(self) -> None:
        estimates, floor = await self.backend.fees()
        if not estimates and self.network == "regtest":
            estimates = [(blocks, REGTEST_FALLBACK_PERKW) for blocks, _ in ESTIMATE_TARGETS]
        self._fees_at = time.time()
        if self.fees.update(estimates, floor):
            self.node.log.debug(LOG, f"Fee estimates: {estimates} floor {self.fees.floor}perkw")
