"""libbitcoinkernel (through py-bitcoinkernel, `pbk`): the judge of block and script validity.

The kernel reports a failed block only as an error code, or not at all when the block is stored
but fails to connect; the reason ("bad-cb-amount, coinbase pays too much ...") appears in its log,
so the log is captured and the reason read back from it.
"""
from __future__ import annotations

import collections
import gc
import re
import threading

import pbk
from pbk.script import PrecomputedTransactionData

# Consensus script flags amp-chaind's mempool enforces (Core's mandatory flags; policy-only flags
# such as LOW_S, NULLFAIL or CLEANSTACK are not exposed by the kernel API).
STANDARD_SCRIPT_FLAGS = pbk.ScriptVerificationFlags.ALL

_log_lock = threading.Lock()
_log_lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=500)
_log_seq = 0
_log_connection = None
_log_sink = None  # optional callable(str) for debug.log


def _on_kernel_log(msg: str) -> None:
    global _log_seq
    _log_seq += 1
    _log_lines.append((_log_seq, msg))
    if _log_sink is not None:
        try:
            _log_sink(msg)
        except Exception:  # a broken sink must never break validation
            pass


def install_kernel_logging(sink=None) -> None:
    """Capture kernel log lines (process-wide: the kernel's logger is global)."""
    global _log_connection, _log_sink
    with _log_lock:
        _log_sink = sink
        if _log_connection is None:
            _log_connection = pbk.LoggingConnection(_on_kernel_log)
            pbk.enable_log_category(pbk.LogCategory.VALIDATION)


_REASON_PATTERNS = [
    re.compile(r"ConnectBlock [0-9a-f]{64} failed, (.*)$"),
    re.compile(r"AcceptBlock FAILED \((.*)\)$"),
    re.compile(r"CheckBlock: (.*)$"),
    re.compile(r"ProcessNewBlock: (.*)$"),
    re.compile(r"InvalidChainFound: invalid block=([0-9a-f]{64})"),
]


def _reason_from(lines: list[str]) -> str | None:
    for pattern in _REASON_PATTERNS[:4]:
        for line in lines:
            m = pattern.search(line.rstrip("\n"))
            if m:
                return m.group(1)
    return None


def _lines_since(mark: int) -> list[str]:
    return [msg for seq, msg in list(_log_lines) if seq > mark]


class BlockRejected(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Kernel:
    """One ChainstateManager on regtest in directory `path`."""

    def __init__(self, path: str):
        install_kernel_logging(_log_sink)
        self.path = path
        self.cm = pbk.load_chainman(path)

    def close(self) -> None:
        # Destroying the ChainstateManager flushes the chainstate to disk.
        self.cm = None
        gc.collect()

    # -- chain --
    def height(self) -> int:
        return self.cm.get_active_chain().height

    def hash_at(self, height: int) -> bytes:
        chain = self.cm.get_active_chain()
        return bytes(chain.block_tree_entries[height].block_hash)

    def tip(self) -> tuple[int, bytes]:
        chain = self.cm.get_active_chain()
        h = chain.height
        return h, bytes(chain.block_tree_entries[h].block_hash)

    def knows(self, block_hash: bytes) -> bool:
        return pbk.BlockHash(block_hash) in self.cm.block_tree_entries

    def headers_height(self) -> int:
        return self.cm.best_entry.height

    # -- blocks --
    def submit(self, raw: bytes, block_hash: bytes) -> None:
        """Process a block; raises BlockRejected if it is invalid (connected or not is for the caller
        to read from the active chain: a valid block on a shorter branch is stored, not connected)."""
        mark = _log_seq
        try:
            self.cm.process_block(pbk.Block(raw))
        except pbk.ProcessBlockException:
            raise BlockRejected(_reason_from(_lines_since(mark)) or "invalid block") from None
        # A block that passes the context-free checks is stored, then may fail to connect: the
        # kernel then marks it invalid and logs why.
        new = _lines_since(mark)
        hex_hash = block_hash[::-1].hex()
        for line in new:
            if "InvalidChainFound: invalid block=" + hex_hash in line or (
                    "ConnectBlock " + hex_hash in line and "failed" in line):
                raise BlockRejected(_reason_from(new) or "invalid block")

    # -- scripts --
    def verify_inputs(self, raw_tx: bytes, spent: list[tuple[int, bytes]]) -> int | None:
        """Verify every input's script; `spent` is [(amount, scriptPubKey)] per input.
        Returns the index of the first failing input, or None if all pass."""
        ktx = pbk.Transaction(raw_tx)
        outs = [pbk.TransactionOutput(pbk.ScriptPubkey(spk), amount) for amount, spk in spent]
        pre = PrecomputedTransactionData(ktx, outs)
        for i, (amount, spk) in enumerate(spent):
            try:
                ok = pbk.ScriptPubkey(spk).verify(amount, ktx, pre, i, STANDARD_SCRIPT_FLAGS)
            except pbk.ScriptVerifyException:
                ok = False
            if not ok:
                return i
        return None
