"""The on-chain resolver against a real amp-chaind, with two channel cores wired in memory.

Each side runs the real parts of ampd the resolver uses (SQLite store, chain watcher, wallet, logger) in this
process; the channel manager is not involved: a funding-outpoint watch plays its part (move the core to
FUNDING_SPEND_SEEN, then `funding_spent`), and a recorder stands in for its `mark_closed`.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from ampere.chain.bitcoind import BitcoindRpc
from ampere.ln.channel import core, opening
from ampere.ln.channel.actions import FundingTxNeeded
from ampere.testing.channel_pair import REGTEST_CHAIN_HASH, SCID, Pair, Party
from ampere.node.signer.signer import LocalSigner
from ampere.ln.channel.scripts import ChannelType
from ampere.ln.channel.signer import ChannelSigner, LocalChannelSigner
from ampere.ln.channel.state import ChannelState
from ampere.log import Logger
from ampere.node.onchain.chainwatch import BLOCK_TRIES, ChainWatcher
from ampere.ln.channel.htlc_tx import HtlcTxKind
from ampere.ln.onchain.htlc import signed_local_htlc_txs
from ampere.node.onchain.bumping import fund_htlc_tx
from ampere.node.onchain.resolver import OnchainResolver, write_htlc_stubs
from ampere.ln.onchain.classify import build_sweep, classify_spend, sign_sweep
from ampere.node.onchain.wallet import Wallet, scripts_for_pubkey

sys.path.insert(0, os.path.dirname(__file__))
from bookcheck import check_books  # noqa: E402
from ampere.primitives.crypto import sha256
from ampere.primitives.script import script_to_address
from ampere.primitives.tx import Transaction
from ampere.store.sqlite import SqliteStore
from ampere.testing.chain import ChainRpcError

DELAY = 6          # to_self_delay both sides impose
BURY = 3           # blocks before the resolver calls mark_closed (CLN: 100)
ONION = bytes(1366)
PRE = b"\x05" * 32


# --- a minimal host: the real components of ampd that the resolver talks to ------------------------------

class ManagerStandIn:
    """Records what the resolver tells the channel manager (which is being written elsewhere)."""

    def __init__(self) -> None:
        self.closed: list[tuple[bytes, str]] = []
        self.onchain: list[bytes] = []
        self.reports: list[tuple[int, bytes | None]] = []

    def onchain_htlc_resolved(self, record, htlc_id: int, preimage: bytes | None) -> None:
        self.reports.append((htlc_id, preimage))

    async def mark_onchain(self, record) -> None:
        self.onchain.append(record.channel_id)

    async def mark_closed(self, record, cause: str) -> None:
        self.closed.append((record.channel_id, cause))

    def crash_point(self, what: str) -> None:
        pass  # --dev-crash-before is the real manager's; nothing crashes here


@dataclass
class Record:
    channel_id: bytes
    peer_id: bytes
    dbid: int
    core: Any
    signer: ChannelSigner


class Host:
    def __init__(self, directory: str, chaind, hsm_secret: bytes) -> None:
        self.dir = directory
        self.chaind = chaind
        self.hsm_secret = hsm_secret
        self.log = Logger()
        self.lines: list[tuple[str, str]] = []
        self.log.add_listener(lambda level, source, msg, ts: self.lines.append((level, msg)), "debug")
        self.network = "regtest"
        self.node_id = b"\x02" + hsm_secret
        self.blockheight = 0
        self.warnings: dict[str, str] = {}
        self.channel_manager = ManagerStandIn()
        self.store = self.chain = self.wallet = self.onchain = None
        self.bury = BURY
        self.moves: list[dict] = []

    def notify(self, topic: str, payload: dict) -> None:
        if topic == "coin_movement":
            self.moves.append(payload)

    def wallet_msat(self) -> int:
        """The wallet's confirmed, unspent funds (what listfunds' confirmed outputs add up to)."""
        return sum(o.value for o in self.wallet.outputs.values()
                   if o.spend_txid is None and o.blockheight is not None) * 1000

    async def start(self) -> Host:
        os.makedirs(self.dir, exist_ok=True)
        self.store = SqliteStore(os.path.join(self.dir, "ampere.sqlite3"))
        await self.store.open()
        rpc = BitcoindRpc(port=self.chaind.port, user=self.chaind.rpcuser, password=self.chaind.rpcpassword)
        self.chain = ChainWatcher(self, rpc, "regtest", 0.05)
        self.wallet = Wallet(self, LocalSigner(self.hsm_secret), "regtest")
        await self.wallet.load()
        self.chain.add_listener(self.wallet)
        await self.chain.start()
        self.onchain = OnchainResolver(self, bury_depth=self.bury)   # as Node.start does
        await self.onchain.start()
        return self

    async def stop(self) -> None:
        # ChainWatcher.stop() cancels its poll task once; on Python 3.11 asyncio.wait_for can swallow a
        # cancellation that arrives as the awaited RPC completes (CPython gh-86296), and the poll loop then runs
        # on. Cancel until it is really gone.
        task = self.chain._task
        stopping = asyncio.ensure_future(self.chain.stop())
        while not stopping.done():
            if task is not None and not task.done():
                task.cancel()
            await asyncio.wait({stopping}, timeout=0.2)
        await self.store.close()

    async def wallet_script(self) -> bytes:
        idx, _ = await self.wallet.new_address("p2tr")
        return scripts_for_pubkey(self.wallet.pubkey(idx))[1]

    def watch_funding(self, party: Party, record: Record) -> None:
        """The channel manager's part: on the funding spend, move the core, then hand over."""
        async def spent(outpoint, tx, height):
            if tx is None:
                return
            party.apply(core.funding_spent(party.ch, tx.txid()))
            record.core = party.ch
            await self.onchain.funding_spent(record, tx, height)

        self.chain.watch_outpoint(party.ch.params.funding_outpoint, spent)

    async def synced(self, timeout: float = 30.0) -> int:
        want = self.chaind.rpc("getblockcount")
        await until(lambda: self.chain.height == want, timeout, f"host at height {want}")
        return want

    async def remember_htlcs(self, party: Party) -> None:
        """The channel manager's part: every HTLC the channel holds is stored with the state holding it."""
        await self.store.write(lambda db: write_htlc_stubs(db, party.ch.channel_id, party.ch.htlcs))

    def logged(self, level: str, text: str) -> bool:
        return any(lv == level and text in msg for lv, msg in self.lines)


async def until(pred, timeout: float = 30.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        await asyncio.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def in_mempool(chaind, txid: bytes) -> bool:
    return txid[::-1].hex() in chaind.rpc("getrawmempool")


def mempool_reject_reason(chaind, tx: Transaction) -> str | None:
    r = chaind.rpc("testmempoolaccept", [tx.serialize().hex()])[0]
    return None if r["allowed"] else r["reject-reason"]


# --- a channel funded by a real transaction ----------------------------------------------------------------

def open_on_chain(chaind, spk_a: bytes, spk_b: bytes, *, funding_sat: int = 1_000_000, push_msat: int = 300_000_000,
                  channel_type: ChannelType = ChannelType.STATIC_REMOTEKEY) -> Pair:
    a = Party("A", LocalChannelSigner(b"\x01" * 32), wire=False)
    b = Party("B", LocalChannelSigner(b"\x02" * 32), wire=False)
    pa = opening.LocalParams(shutdown_scriptpubkey=spk_a, to_self_delay=DELAY)
    pb = opening.LocalParams(shutdown_scriptpubkey=spk_b, to_self_delay=DELAY)
    policy = opening.OpenPolicy(chain_hash=REGTEST_CHAIN_HASH, allow_anchors=True)
    step = opening.open_channel(a.signer, temporary_channel_id=b"\x07" * 32, chain_hash=REGTEST_CHAIN_HASH,
                                funding_sat=funding_sat, push_msat=push_msat, feerate_per_kw=2500, ours=pa,
                                channel_type=channel_type)
    neg_a = step.state
    step_b = opening.on_open_channel(b.signer, step.messages[0], pb, policy)
    neg_b = step_b.state
    step = neg_a.on_accept_channel(step_b.messages[0], policy)
    need = next(e for e in step.actions if isinstance(e, FundingTxNeeded))
    # The funding transaction: amp-chaind's faucet wallet pays the 2-of-2.
    txid = chaind.rpc("sendtoaddress", script_to_address(need.script_pubkey, "regtest"),
                      Decimal(need.amount_sat) / 100_000_000)
    funding_tx = Transaction.parse_hex(chaind.rpc("getrawtransaction", txid))
    step = step.state.funding_tx_ready(a.signer, funding_tx)
    neg_a = step.state
    b.apply(neg_b.on_funding_created(b.signer, step.messages[0]))
    a.apply(neg_a.on_funding_signed(a.signer, b.outbox.popleft()))
    assert a.ch.state is ChannelState.CHANNELD_AWAITING_LOCKIN
    chaind.mine(3)
    pair = Pair(a, b)
    for p in (a, b):
        p.apply(core.funding_depth(p.ch, p.signer, 3, SCID))
    pair.pump()
    assert a.ch.state is b.ch.state is ChannelState.CHANNELD_NORMAL
    return pair


def pay(pair: Pair, amount_msat: int) -> None:
    a, b = pair.a, pair.b
    a.apply(core.offer_htlc(a.ch, a.signer, amount_msat, sha256(PRE), 10_000, ONION))
    pair.pump()
    b.apply(core.fulfill_htlc(b.ch, b.signer, b.ch.htlcs[0].htlc_id, PRE))
    pair.pump()
    assert a.ch.htlcs == () and b.ch.htlcs == ()


def record_of(p: Party, dbid: int) -> Record:
    return Record(p.ch.channel_id, bytes(33), dbid, p.ch, p.signer)


# Every scenario runs on both commitment formats (issue 15).
both_types = pytest.mark.parametrize("channel_type", [ChannelType.STATIC_REMOTEKEY, ChannelType.ANCHORS],
                                     ids=["static", "anchors"])


async def give_wallet_coins(host: Host, chaind, sats: list[int]) -> None:
    """option_anchors: our HTLC transactions pay their fee with wallet inputs; the faucet pays the wallet."""
    await host.synced()   # a fresh chain watcher starts at the tip it first sees: let it see one before the coins
    for sat in sats:
        spk = await host.wallet_script()
        chaind.rpc("sendtoaddress", script_to_address(spk, "regtest"), Decimal(sat) / 100_000_000)
    chaind.mine(1)
    await host.synced()
    try:
        await until(lambda: host.wallet_msat() == sum(sats) * 1000, 30, "the wallet's coins")
    except TimeoutError:
        raise AssertionError(f"{host.wallet.outputs} {chaind.rpc('getblockcount')} {host.chain.height}") from None


@pytest.fixture
def funded_chaind(chaind):
    chaind.mine(101)
    return chaind


def run(coro):
    return asyncio.run(coro)


# --- tests -----------------------------------------------------------------------------------------------

@both_types
def test_unilateral_close_to_local_after_csv_and_peer_to_remote(funded_chaind, tmp_path, channel_type):
    chaind = funded_chaind

    async def main():
        ha = await Host(str(tmp_path / "a"), chaind, b"\xa1" * 32).start()
        hb = await Host(str(tmp_path / "b"), chaind, b"\xb2" * 32).start()
        try:
            pair = open_on_chain(chaind, await ha.wallet_script(), await hb.wallet_script(), channel_type=channel_type)
            pay(pair, 50_000_000)                          # commitment numbers move past 0
            a, b = pair.a, pair.b
            ra, rb = record_of(a, 1), record_of(b, 1)
            await ha.synced(), await hb.synced()
            ha.watch_funding(a, ra)
            hb.watch_funding(b, rb)

            # A closes unilaterally: its latest commitment is mined at height S.
            a.apply(core.force_close(a.ch, a.signer, "test"))
            commitment = a.broadcasts[-1]
            chaind.rpc("sendrawtransaction", commitment.serialize().hex())
            chaind.mine(1)
            s = await ha.synced()
            await hb.synced()
            await until(lambda: ha.onchain.describe(a.ch.channel_id) and hb.onchain.describe(b.ch.channel_id))
            assert a.ch.state is b.ch.state is ChannelState.FUNDING_SPEND_SEEN
            assert ha.channel_manager.onchain == [a.ch.channel_id] and hb.channel_manager.onchain == [b.ch.channel_id]
            da, db = ha.onchain.describe(a.ch.channel_id), hb.onchain.describe(b.ch.channel_id)
            assert (da["kind"], db["kind"]) == ("local", "remote")
            assert da["commitment_number"] == db["commitment_number"] == a.ch.local_ctn == 2
            [to_local] = da["outputs"]
            [to_remote] = db["outputs"]
            assert (to_local["kind"], to_local["csv"]) == ("to_local", DELAY)
            assert (to_remote["kind"], to_remote["csv"]) == ("to_remote", 1 if channel_type.anchors else 0)
            assert to_remote["amount_msat"] == 350_000_000  # B's balance (the opener A paid the fees)
            assert any("waiting" not in x and "spendable by us in" in x for x in ha.onchain.status(a.ch.channel_id))

            # B (the peer's commitment): to_remote is swept to B's wallet at once (anchors: CSV 1, also now).
            await until(lambda: hb.onchain.describe(b.ch.channel_id)["outputs"][0]["sweep_txid"])
            sweep_b = bytes.fromhex(hb.onchain.describe(b.ch.channel_id)["outputs"][0]["sweep_txid"])[::-1]
            await until(lambda: in_mempool(chaind, sweep_b), what="B's sweep in the mempool")
            assert (sweep_b, 0) in hb.wallet.outputs           # listfunds shows it (unconfirmed) already

            # A (our commitment): the to_local sweep is non-BIP68-final until to_self_delay blocks have passed.
            analysis = classify_spend(a.ch, a.signer.commitment_point, commitment)
            ours = analysis.outputs[0]
            probe = sign_sweep(build_sweep(commitment.txid(), ours, channel_type, await ha.wallet_script(), 1000),
                               ours, channel_type, a.signer)
            chaind.mine(DELAY - 2)                            # tip = S + DELAY - 2: one block too early
            await ha.synced()
            assert mempool_reject_reason(chaind, probe) == "non-BIP68-final"
            assert ha.onchain.describe(a.ch.channel_id)["outputs"][0]["sweep_txid"] is None
            chaind.mine(1)                                    # tip = S + DELAY - 1: the next block may hold it
            assert chaind.rpc("getblockcount") == s + DELAY - 1
            assert mempool_reject_reason(chaind, probe) is None
            await ha.synced()
            await until(lambda: ha.onchain.describe(a.ch.channel_id)["outputs"][0]["sweep_txid"])
            sweep_a = bytes.fromhex(ha.onchain.describe(a.ch.channel_id)["outputs"][0]["sweep_txid"])[::-1]
            await until(lambda: in_mempool(chaind, sweep_a), what="A's sweep in the mempool")
            assert not ha.logged("unusual", "failed")

            chaind.mine(1)
            h = await ha.synced()
            await hb.synced()
            for host, txid, amount in ((ha, sweep_a, to_local["amount_msat"] // 1000),
                                       (hb, sweep_b, to_remote["amount_msat"] // 1000)):
                out = host.wallet.outputs[(txid, 0)]
                assert out.blockheight is not None and out.status(h) == "confirmed"
                # It pays a wallet key (spendable by the wallet), minus a fee no higher than needed.
                assert host.wallet.scripts.get(out.script) is not None
                assert amount - 5000 < out.value < amount
            # The books (coin_movement): the close debits each side's balance, its own output is credited and
            # debited to the wallet, the other's is `to_them`, our anchor (never swept) `anchor`.
            for host, ch, own, other in ((ha, a.ch, to_local, to_remote), (hb, b.ch, to_remote, to_local)):
                check_books(host.moves, lambda t: chaind.rpc("getrawtransaction", t), ch.channel_id.hex(),
                            commitment.txid_hex(), close_debit_msat=ch.balance_local_msat,
                            wallet_msat=host.wallet_msat())
                ext = sorted((m["primary_tag"], m["credit_msat"]) for m in host.moves if m["account_id"] == "external")
                assert ext == sorted([("to_them", other["amount_msat"])]
                                     + ([("anchor", 330_000), ("to_them", 330_000)] if channel_type.anchors else []))
                assert sorted(m["primary_tag"] for m in host.moves if m["account_id"] == ch.channel_id.hex()) == \
                    sorted(["channel_close", "delayed_to_us" if host is ha else "to_wallet", "to_wallet"])

            # Resolved and buried: CLOSED (through the manager) and nothing more broadcast.
            assert ha.channel_manager.closed == []
            chaind.mine(BURY - 1)
            await ha.synced()
            await hb.synced()
            assert ha.channel_manager.closed == [(a.ch.channel_id, "onchain")]
            assert hb.channel_manager.closed == [(b.ch.channel_id, "onchain")]
            assert ha.onchain.describe(a.ch.channel_id) is None
        finally:
            await ha.stop()
            await hb.stop()

    run(main())


@both_types
def test_restart_mid_resolution_reorg_and_lost_spend(funded_chaind, tmp_path, channel_type):
    """A restarts between the close and the sweep; a reorg takes the close and the sweep out of the chain (the
    sweep falls out of the mempool: BIP68); B restarts having never recorded the spend (a crash right after the
    manager persisted FUNDING_SPEND_SEEN) and finds it."""
    chaind = funded_chaind

    async def main():
        ha = await Host(str(tmp_path / "a"), chaind, b"\xa1" * 32).start()
        hb = await Host(str(tmp_path / "b"), chaind, b"\xb2" * 32).start()
        try:
            pair = open_on_chain(chaind, await ha.wallet_script(), await hb.wallet_script(), channel_type=channel_type)
            a, b = pair.a, pair.b
            ra, rb = record_of(a, 1), record_of(b, 1)
            await ha.synced()
            ha.watch_funding(a, ra)
            a.apply(core.force_close(a.ch, a.signer, "test"))
            commitment = a.broadcasts[-1]
            chaind.rpc("sendrawtransaction", commitment.serialize().hex())
            chaind.mine(1)
            s = await ha.synced()
            fork_parent = chaind.rpc("getblockhash", s - 1)
            await until(lambda: ha.onchain.describe(a.ch.channel_id))
            chaind.mine(2)
            await ha.synced()
            await ha.stop()
            await hb.stop()

            # Restart A: the manager restores the channel (FUNDING_SPEND_SEEN); the resolver carries on.
            ha = await Host(str(tmp_path / "a"), chaind, b"\xa1" * 32).start()
            ra.core = a.ch
            await ha.onchain.restore(ra)
            assert ha.onchain.describe(a.ch.channel_id)["spend_height"] == s
            # Restart B, which never heard of the spend: restore finds it in the chain.
            hb = await Host(str(tmp_path / "b"), chaind, b"\xb2" * 32).start()
            b.apply(core.funding_spent(b.ch, commitment.txid()))
            rb.core = b.ch
            await hb.onchain.restore(rb)
            db = hb.onchain.describe(b.ch.channel_id)
            assert db["kind"] == "remote" and db["spend_height"] == s
            await until(lambda: hb.onchain.describe(b.ch.channel_id)["outputs"][0]["sweep_txid"])

            chaind.mine(DELAY - 3)                          # tip = S + DELAY - 1: A sweeps
            await ha.synced()
            await until(lambda: ha.onchain.describe(a.ch.channel_id)["outputs"][0]["sweep_txid"])
            sweep_a = bytes.fromhex(ha.onchain.describe(a.ch.channel_id)["outputs"][0]["sweep_txid"])[::-1]
            chaind.mine(1)
            await ha.synced()
            await until(lambda: ha.onchain.describe(a.ch.channel_id)["outputs"][0]["resolved_height"])
            assert ha.wallet.outputs[(sweep_a, 0)].blockheight == s + DELAY

            # Reorg from below the close: empty blocks on S - 1, longer than the current chain.
            tip = chaind.rpc("getblockcount")
            chaind.rpc("generatefork", tip - s + 2, fork_parent)
            await ha.synced()
            await until(lambda: ha.onchain.describe(a.ch.channel_id)["spend_height"] is None, what="reorg seen")
            assert in_mempool(chaind, commitment.txid()) and not in_mempool(chaind, sweep_a)
            assert ha.wallet.outputs[(sweep_a, 0)].blockheight is None
            assert ha.logged("unusual", "reorganised out")
            # The close confirms again at S2; the same signed sweep goes out again once CSV allows.
            chaind.mine(1)
            s2 = await ha.synced()
            chaind.mine(DELAY - 2)
            await ha.synced()
            assert not in_mempool(chaind, sweep_a)
            chaind.mine(1)
            await ha.synced()
            await until(lambda: in_mempool(chaind, sweep_a), what="the sweep rebroadcast")
            assert chaind.rpc("getblockcount") == s2 + DELAY - 1
            chaind.mine(BURY)
            await ha.synced()
            assert ha.wallet.outputs[(sweep_a, 0)].blockheight == s2 + DELAY
            assert ha.channel_manager.closed == [(a.ch.channel_id, "onchain")]
            assert [o for o in ha.wallet.outputs if o[0] == sweep_a] == [(sweep_a, 0)]
        finally:
            await ha.stop()
            await hb.stop()

    run(main())


@both_types
def test_mutual_close_output_is_in_the_wallet(funded_chaind, tmp_path, channel_type):
    chaind = funded_chaind

    async def main():
        ha = await Host(str(tmp_path / "a"), chaind, b"\xa1" * 32).start()
        hb = await Host(str(tmp_path / "b"), chaind, b"\xb2" * 32).start()
        try:
            spk_a, spk_b = await ha.wallet_script(), await hb.wallet_script()
            pair = open_on_chain(chaind, spk_a, spk_b, channel_type=channel_type)
            a, b = pair.a, pair.b
            ra, rb = record_of(a, 1), record_of(b, 1)
            await ha.synced(), await hb.synced()
            ha.watch_funding(a, ra)
            hb.watch_funding(b, rb)
            a.apply(core.start_shutdown(a.ch, a.signer, pair.env))
            pair.pump()
            assert a.ch.state is ChannelState.CLOSINGD_COMPLETE
            closing = Transaction.parse(a.ch.closing_tx)
            chaind.rpc("sendrawtransaction", closing.serialize().hex())
            chaind.mine(1)
            h = await ha.synced()
            await hb.synced()
            await until(lambda: ha.onchain.describe(a.ch.channel_id) and hb.onchain.describe(b.ch.channel_id))
            for host, party, spk in ((ha, a, spk_a), (hb, b, spk_b)):
                d = host.onchain.describe(party.ch.channel_id)
                assert d["kind"] == "mutual"
                [out] = d["outputs"]
                assert out["state"] == "wallet"
                vout = next(i for i, o in enumerate(closing.outputs) if o.script_pubkey == spk)
                w = host.wallet.outputs[(closing.txid(), vout)]
                assert w.status(h) == "confirmed" and w.value * 1000 == out["amount_msat"]
            assert closing.outputs[[o.script_pubkey for o in closing.outputs].index(spk_b)].value == 300_000
            chaind.mine(BURY - 1)
            await ha.synced()
            await hb.synced()
            assert ha.channel_manager.closed == [(a.ch.channel_id, "onchain")]
            assert hb.channel_manager.closed == [(b.ch.channel_id, "onchain")]
        finally:
            await ha.stop()
            await hb.stop()

    run(main())


@both_types
def test_htlcs_on_both_commitments_are_resolved(funded_chaind, tmp_path, channel_type):
    """A closes with four HTLCs on its commitment, one per way to resolve an HTLC on-chain:
    H1 A->B, B knows the preimage: B claims it directly on A's commitment, A learns the preimage from B's spend;
    H2 B->A, A learns the preimage after the close: A's HTLC-success, B learns the preimage;
    H3 A->B, nobody knows the preimage: A's HTLC-timeout after cltv_expiry, reported failed once buried 3 deep;
    H4 B->A, likewise: B takes it back directly after cltv_expiry.
    A sweeps its delayed outputs (to_local, both second stages) after to_self_delay; every output ends in the
    wallet of the one it belongs to, less exactly the fees of the transactions that moved it."""
    chaind = funded_chaind

    async def main():
        ha, hb = Host(str(tmp_path / "a"), chaind, b"\xa1" * 32), Host(str(tmp_path / "b"), chaind, b"\xb2" * 32)
        ha.bury = hb.bury = 40    # B's outputs resolve early: keep its resolution to look at
        await ha.start(), await hb.start()
        try:
            if channel_type.anchors:   # A's HTLC-success and HTLC-timeout bring their fees (a coin each)
                await give_wallet_coins(ha, chaind, [100_000, 100_000])
            pair = open_on_chain(chaind, await ha.wallet_script(), await hb.wallet_script(), channel_type=channel_type)
            a, b = pair.a, pair.b
            tip = chaind.rpc("getblockcount")
            pre = {n: bytes([n]) * 32 for n in (1, 2, 3, 4, 5)}
            ids = {}
            # H5 A->B: trimmed, no output. BOLT #3: trimmed if below dust_limit_satoshis (546) plus the HTLC-timeout
            # fee -- none with option_anchors: 2000 sat is trimmed at 2500 sat/kw without anchors, 500 sat with.
            h5 = 500 if channel_type.anchors else 2_000
            for n, (src, amount, cltv) in {1: (a, 20_000, tip + 40), 2: (b, 30_000, tip + 40),
                                           3: (a, 40_000, tip + 8), 4: (b, 50_000, tip + 10),
                                           5: (a, h5, tip + 40)}.items():
                ids[n] = src.ch.next_htlc_id_local
                src.apply(core.offer_htlc(src.ch, src.signer, amount * 1000, sha256(pre[n]), cltv, ONION))
            pair.pump()
            assert len(a.ch.htlcs) == 5
            await ha.remember_htlcs(a)
            await hb.remember_htlcs(b)
            ra, rb = record_of(a, 1), record_of(b, 1)
            await ha.synced(), await hb.synced()
            ha.watch_funding(a, ra)
            hb.watch_funding(b, rb)
            a.apply(core.force_close(a.ch, a.signer, "test"))
            commitment = a.broadcasts[-1]
            chaind.rpc("sendrawtransaction", commitment.serialize().hex())
            chaind.mine(1)
            await ha.synced()
            await hb.synced()
            await until(lambda: ha.onchain.describe(a.ch.channel_id) and hb.onchain.describe(b.ch.channel_id))
            da = ha.onchain.describe(a.ch.channel_id)
            assert sorted((o["kind"], o["state"], o["amount_msat"] // 1000) for o in da["outputs"]) == sorted([
                ("our_htlc", "htlc_timeout", 20_000), ("our_htlc", "htlc_timeout", 40_000),
                ("their_htlc", "htlc_success", 30_000), ("their_htlc", "htlc_success", 50_000),
                ("to_local", "sweep", da["outputs"][[o["kind"] for o in da["outputs"]].index("to_local")]
                 ["amount_msat"] // 1000)])
            # The preimages arrive (downstream / an invoice): each claims its HTLC at once.
            await hb.onchain.add_preimage(sha256(pre[1]), pre[1])
            await ha.onchain.add_preimage(sha256(pre[2]), pre[2])
            mempool = lambda: {Transaction.parse_hex(chaind.rpc("getrawtransaction", t)).inputs[0].prevout.vout  # noqa
                               for t in chaind.rpc("getrawmempool")}
            vout = {n: next(i for i, o in enumerate(commitment.outputs) if o.value == amt)
                    for n, amt in ((1, 20_000), (2, 30_000), (3, 40_000), (4, 50_000))}
            await until(lambda: {vout[1], vout[2]} <= mempool(), 30, "the two preimage claims")
            chaind.mine(1)
            await ha.synced(), await hb.synced()
            await until(lambda: ha.channel_manager.reports and hb.channel_manager.reports, 30, "preimages learned")
            assert ha.channel_manager.reports == [(ids[1], pre[1])]     # H1: B's claim revealed it to A
            assert hb.channel_manager.reports == [(ids[2], pre[2])]     # H2: A's HTLC-success revealed it to B
            assert any("trimmed as dust" in x and "fails once" in x for x in ha.onchain.status(a.ch.channel_id))
            chaind.mine(1)                                           # the close is 3 deep: H5 is failed
            await ha.synced()
            await until(lambda: len(ha.channel_manager.reports) == 2, 30, "H5 (trimmed) reported failed")
            assert ha.channel_manager.reports[1] == (ids[5], None)
            assert hb.channel_manager.reports == [(ids[2], pre[2])]
            # H3 is not timed out before its cltv_expiry, nor reported failed before it is 3 deep.
            chaind.mine(tip + 8 - chaind.rpc("getblockcount") - 1)
            await ha.synced()
            assert vout[3] not in mempool()
            chaind.mine(1)                                           # tip = cltv_expiry: final in the next block
            await ha.synced()
            await until(lambda: vout[3] in mempool(), 30, "A's HTLC-timeout")
            chaind.mine(1)
            await ha.synced()
            chaind.mine(1)
            await ha.synced(), await hb.synced()
            assert len(ha.channel_manager.reports) == 2
            await until(lambda: vout[4] in mempool(), 30, "B's timeout claim")   # tip = H4's cltv_expiry
            chaind.mine(1)
            await ha.synced(), await hb.synced()
            await until(lambda: len(ha.channel_manager.reports) == 3, 30, "H3 reported failed")
            assert ha.channel_manager.reports[2] == (ids[3], None)
            chaind.mine(2)
            await hb.synced()
            await until(lambda: len(hb.channel_manager.reports) == 2, 30, "H4 reported failed")
            assert hb.channel_manager.reports[1] == (ids[4], None)
            # A's delayed outputs are swept after to_self_delay; then everything is resolved and buried.
            chaind.mine(DELAY + 1)
            await ha.synced(), await hb.synced()
            await until(lambda: len([o for o in ha.onchain.describe(a.ch.channel_id)["outputs"]
                                     if o["kind"] == "htlc_tx_delayed" and o["sweep_txid"]]) == 2, 30,
                        "A's second-stage outputs swept")
            chaind.mine(1)
            await ha.synced(), await hb.synced()
            h = chaind.rpc("getblockcount")
            for host, ch, owned in ((ha, a.ch, {"to_local": None, 2: 30_000, 3: 40_000}), (hb, b.ch, {"to_remote": None,
                                                                                              1: 20_000, 4: 50_000})):
                d = host.onchain.describe(ch.channel_id)
                assert all(o["resolved_height"] for o in d["outputs"]), d
                # Exact accounting: what the wallet received from the channel = the outputs that were ours minus
                # the fees of the transactions that moved them (second stages pay their fee from the HTLC).
                ours_value = sum(o["amount_msat"] // 1000 for o in d["outputs"] if o["txid"] == commitment.txid_hex()
                                 and o["kind"] in ("to_local", "to_remote", "their_htlc", "our_htlc")
                                 and o["sweep_txid"] and o["resolved_txid"] == o["sweep_txid"])
                assert ours_value == sum(commitment.outputs[vout[n]].value for n in owned if isinstance(n, int)) + \
                    sum(o["amount_msat"] // 1000 for o in d["outputs"] if o["kind"] in ("to_local", "to_remote"))
                fees = 0
                final = set()
                for o in d["outputs"]:
                    if not o["sweep_txid"] or o["resolved_txid"] != o["sweep_txid"]:
                        continue
                    tx = Transaction.parse_hex(chaind.rpc("getrawtransaction", o["sweep_txid"]))
                    fees += o["amount_msat"] // 1000 - tx.outputs[0].value
                    if o["kind"] not in ("our_htlc", "their_htlc") or host is hb:
                        final.add(tx.txid())
                got = sum(host.wallet.outputs[(t, 0)].value for t in final)
                assert all(host.wallet.outputs[(t, 0)].status(h) == "confirmed" for t in final)
                assert got == ours_value - fees, (got, ours_value, fees)
                # The bookkeeper's view (coin_movement): the close debits our balance, each output we resolved is
                # credited then debited where our transaction took it, the peer's outputs are `to_them`, and
                # the wallet's account is its funds; on-chain fees are the close's debit less the deposits.
                books = check_books(host.moves, lambda t: chaind.rpc("getrawtransaction", t), ch.channel_id.hex(),
                                    commitment.txid_hex(), close_debit_msat=ch.balance_local_msat,
                                    wallet_msat=host.wallet_msat())
                # option_anchors: A's HTLC transactions paid their fee with wallet coins (the change came back).
                htlc_txs = {o["sweep_txid"] for o in d["outputs"] if o["kind"] in ("our_htlc", "their_htlc")
                            and o["sweep_txid"] and o["resolved_txid"] == o["sweep_txid"]} if host is ha else set()
                from_wallet = 0
                for t in htlc_txs:
                    tx = Transaction.parse_hex(chaind.rpc("getrawtransaction", t))
                    wallet_in = [i for i in tx.inputs if i.prevout.txid != commitment.txid()]
                    assert len(wallet_in) == (1 if channel_type.anchors else 0), tx
                    from_wallet += sum(Transaction.parse_hex(chaind.rpc("getrawtransaction", i.prevout.txid[::-1].hex()))
                                       .outputs[i.prevout.vout].value for i in wallet_in)
                    from_wallet -= sum(o.value for n, o in enumerate(tx.outputs) if (tx.txid(), n) in host.wallet.outputs)
                coins = 200_000 if channel_type.anchors and host is ha else 0
                assert (from_wallet > 0) == (coins > 0)
                assert books["wallet"] == (got + coins - from_wallet) * 1000
                tags = sorted(m["primary_tag"] for m in host.moves if m["account_id"] == ch.channel_id.hex())
                if host is ha:   # H2 fulfilled and H3 timed out through our HTLC transactions, then swept
                    assert tags == sorted(["channel_close", "delayed_to_us", "to_wallet", "htlc_fulfill",
                                           "htlc_fulfill", "htlc_timeout", "htlc_timeout"]
                                          + ["htlc_tx", "to_wallet"] * 2), tags
                else:            # H1 claimed with the preimage, H4 timed out, to_remote: straight to the wallet
                    assert tags == sorted(["channel_close", "to_wallet", "to_wallet", "htlc_fulfill", "to_wallet",
                                           "htlc_timeout", "to_wallet"]), tags
                other = (hb, b.ch) if host is ha else (ha, a.ch)
                [peer_main] = [o["amount_msat"] for o in other[0].onchain.describe(other[1].channel_id)["outputs"]
                               if o["kind"] in ("to_local", "to_remote") and o["txid"] == commitment.txid_hex()]
                assert sorted(m["output_msat"] for m in host.moves if m["primary_tag"] == "to_them") == sorted(
                    [commitment.outputs[vout[n]].value * 1000 for n in ((1, 4) if host is ha else (2, 3))]
                    + [peer_main] + ([330_000] if channel_type.anchors else []))   # + the peer's anchor
                assert sorted(m["credit_msat"] for m in host.moves if m["primary_tag"] == "anchor") == \
                    ([330_000] if channel_type.anchors else [])                          # our anchor, never swept
            chaind.mine(40)
            await ha.synced(), await hb.synced()
            assert ha.channel_manager.closed == [(a.ch.channel_id, "onchain")]
            assert hb.channel_manager.closed == [(b.ch.channel_id, "onchain")]
        finally:
            await ha.stop()
            await hb.stop()

    run(main())


@both_types
def test_unconfirmed_spend_is_broadcast_until_mined(funded_chaind, tmp_path, channel_type):
    """Our commitment seen only in the mempool (height None) is rebroadcast at each block until mined."""
    chaind = funded_chaind

    async def main():
        ha = await Host(str(tmp_path / "a"), chaind, b"\xa1" * 32).start()
        try:
            pair = open_on_chain(chaind, await ha.wallet_script(), b"\x00\x14" + b"\xbb" * 20, channel_type=channel_type)
            a = pair.a
            a.apply(core.force_close(a.ch, a.signer, "test"))
            commitment = a.broadcasts[-1]
            a.apply(core.funding_spent(a.ch, commitment.txid()))
            await ha.synced()
            await ha.onchain.funding_spent(record_of(a, 1), commitment, None)
            assert in_mempool(chaind, commitment.txid())           # the resolver broadcast it
            chaind.mine(1)
            h = await ha.synced()
            await until(lambda: ha.onchain.describe(a.ch.channel_id)["spend_height"] == h)
            with pytest.raises(ChainRpcError):
                chaind.rpc("getmempoolentry", commitment.txid()[::-1].hex())
        finally:
            await ha.stop()

    run(main())


def test_one_channel_failing_to_resolve_does_not_stop_the_others_or_the_chain(funded_chaind, tmp_path):
    """A bug in one channel's on-chain plan (an exception while resolving it at a block) is logged BROKEN and that
    channel is taken up again at the next block; the other channels are resolved at that block as usual, and the
    node keeps following the chain. (Raised to the chain watcher, the block would be redone at every poll: the node
    would never see a later block, so no deadline of any channel would come.)"""
    chaind = funded_chaind

    async def main():
        ha = await Host(str(tmp_path / "a"), chaind, b"\xa1" * 32).start()
        try:
            spk = await ha.wallet_script()
            pairs = [open_on_chain(chaind, spk, b"\x00\x14" + b"\xbb" * 20) for _ in range(2)]
            await ha.synced()
            broken_id, fine_id = (p.a.ch.channel_id for p in pairs)
            for i, p in enumerate(pairs):
                ha.watch_funding(p.a, record_of(p.a, i + 1))
                p.a.apply(core.force_close(p.a.ch, p.a.signer, "test"))
                chaind.rpc("sendrawtransaction", p.a.broadcasts[-1].serialize().hex())
            advance = ha.onchain._advance_at
            failing = [True]

            async def advance_with_a_bug(r, height):
                if r.channel_id == broken_id and failing[0]:
                    raise RuntimeError("a bug in this channel's plan")
                await advance(r, height)

            ha.onchain._advance_at = advance_with_a_bug
            chaind.mine(1)
            s = await ha.synced()                # not stuck at the block before
            chaind.mine(DELAY - 1)               # the next block may hold a to_local sweep
            await ha.synced()                    # nor later
            assert ha.logged("broken", f"Channel {broken_id.hex()}: resolving at block {s} failed")
            # The other channel: its to_local is swept once to_self_delay has passed, as ever.
            await until(lambda: ha.onchain.describe(fine_id)["outputs"][0]["sweep_txid"], what="the other's sweep")
            assert ha.onchain.describe(broken_id)["outputs"][0]["sweep_txid"] is None
            # The bug gone (the daemon upgraded), the channel is resolved at the next block.
            failing[0] = False
            chaind.mine(1)
            await ha.synced()
            await until(lambda: ha.onchain.describe(broken_id)["outputs"][0]["sweep_txid"], what="its sweep")
        finally:
            await ha.stop()

    run(main())


def test_a_listener_failing_at_a_block_gets_it_again_and_one_that_keeps_failing_is_passed_over(funded_chaind,
                                                                                                  tmp_path):
    """The chain watcher's listeners: one that raises at a block gets the block again at the next poll (a transient
    failure heals, the block is connected with it); one that keeps raising at a block is passed over after
    BLOCK_TRIES tries, logged BROKEN, and the node follows the chain on: later blocks reach every listener. (Before,
    a listener's lasting bug held the node at the block before, where no deadline of any channel would come.)"""
    chaind = funded_chaind

    class Listener:
        def __init__(self, fail_at: int | None, times: int) -> None:
            self.fail_at, self.times, self.seen = fail_at, times, []

        async def block_connected(self, height, block) -> None:
            self.seen.append(height)
            if height == self.fail_at and self.times > 0:
                self.times -= 1
                raise RuntimeError(f"listener bug at {height}")

        async def block_disconnected(self, height, block_hash, block) -> None:
            pass

    async def main():
        ha = await Host(str(tmp_path / "a"), chaind, b"\xa1" * 32).start()
        try:
            start = await ha.synced()
            transient, lasting, fine = Listener(start + 1, 1), Listener(start + 1, 10**6), Listener(None, 0)
            for listener in (transient, lasting, fine):
                ha.chain.add_listener(listener)
            spk = await ha.wallet_script()
            txid = chaind.rpc("sendtoaddress", script_to_address(spk, "regtest"), Decimal("0.01"))
            chaind.mine(1)
            await ha.synced()
            chaind.mine(1)
            end = await ha.synced()
            assert end == start + 2
            # The block was redone until the lasting failure was passed over: BLOCK_TRIES tries for that
            # listener, after the one the transient failure cost; the listeners before them saw the block each time
            # (without harm: the wallet has the coin once).
            assert lasting.seen == [start + 1] * BLOCK_TRIES + [start + 2]
            assert transient.seen == [start + 1] * (BLOCK_TRIES + 1) + [start + 2]
            assert fine.seen == [start + 1, start + 2]
            assert ha.logged("broken", f"Listener failed at block {start + 1} {BLOCK_TRIES} times")
            assert not ha.logged("broken", f"failed at block {start + 2}")
            coins = [o for o in ha.wallet.outputs.values() if o.txid[::-1].hex() == txid]
            assert len(coins) == 1 and coins[0].blockheight == start + 1
        finally:
            await ha.stop()

    run(main())


@both_types
def test_output_not_worth_sweeping_is_left_and_channel_still_closes(funded_chaind, tmp_path, channel_type):
    chaind = funded_chaind

    async def main():
        hb = await Host(str(tmp_path / "b"), chaind, b"\xb2" * 32).start()
        try:
            # B owns 1,500 sat: above the dust limit on the commitment, below the cost of sweeping it.
            pair = open_on_chain(chaind, b"\x00\x14" + b"\xaa" * 20, await hb.wallet_script(), push_msat=1_500_000, channel_type=channel_type)
            a, b = pair.a, pair.b
            await hb.synced()
            hb.watch_funding(b, record_of(b, 3))
            a.apply(core.force_close(a.ch, a.signer, "test"))
            chaind.rpc("sendrawtransaction", a.broadcasts[-1].serialize().hex())
            max_index = hb.wallet.max_index
            chaind.mine(1)
            await hb.synced()
            await until(lambda: hb.onchain.describe(b.ch.channel_id))
            [out] = hb.onchain.describe(b.ch.channel_id)["outputs"]
            assert (out["kind"], out["state"], out["amount_msat"]) == ("to_remote", "dust", 1_500_000)
            assert out["csv"] == (1 if channel_type.anchors else 0)   # BOLT #3: option_anchors' to_remote: CSV 1
            assert hb.logged("unusual", "not sweeping") and hb.wallet.max_index == max_index
            chaind.mine(BURY - 1)
            await hb.synced()
            assert hb.channel_manager.closed == [(b.ch.channel_id, "onchain")]
        finally:
            await hb.stop()

    run(main())


@both_types
def test_penalty_revoked_commitment_with_htlcs_second_stage_restart_and_reorg(funded_chaind, tmp_path, channel_type):
    """A broadcasts its revoked commitment holding an HTLC each way, with its HTLC-success transaction in the same
    block. B, in the block it sees them: takes A's to_local, the HTLC A offered (directly) and the output of A's
    HTLC-success (second stage) with the revocation key, and learns the preimage. B restarts: the same signed
    penalties. A block without them: they are replaced at a higher feerate (RBF). A three-block reorg takes
    everything out: the penalties go out again and B ends with exactly what it took (values minus the fees).
    option_anchors: A's HTLC-success must wait a block (CSV 1) and brings its fee from A's wallet; B is down while
    both blocks are mined (else it would take that HTLC output first), and the reorg goes back to the block of the
    HTLC-success only (without it, B rightly races A for the HTLC output, and which one wins is chance; with the
    commitment unconfirmed, A's HTLC-success would be non-BIP68-final)."""
    chaind = funded_chaind
    anchors = channel_type.anchors

    async def main():
        hb = await Host(str(tmp_path / "b"), chaind, b"\xb2" * 32).start()
        ha = await Host(str(tmp_path / "a"), chaind, b"\xa1" * 32).start() if anchors else None   # A's wallet
        try:
            if anchors:
                await give_wallet_coins(ha, chaind, [100_000])
            pair = open_on_chain(chaind, b"\x00\x14" + b"\xaa" * 20, await hb.wallet_script(), channel_type=channel_type)
            a, b = pair.a, pair.b
            pay(pair, 50_000_000)
            tip = chaind.rpc("getblockcount")
            pre_a, pre_b = b"\x0a" * 32, b"\x0b" * 32
            a.apply(core.offer_htlc(a.ch, a.signer, 40_000_000, sha256(pre_a), tip + 30, ONION))   # A -> B
            b.apply(core.offer_htlc(b.ch, b.signer, 60_000_000, sha256(pre_b), tip + 40, ONION))   # B -> A
            pair.pump()
            await hb.remember_htlcs(b)
            old_ctx = core.local_commitment(a.ch, a.signer)
            old = core.local_commitment_tx(a.ch, a.signer)
            signed = signed_local_htlc_txs(old_ctx, a.ch.local_htlc_sigs, a.signer, {sha256(pre_b): pre_b})
            second = {htx.kind: tx for htx, tx in signed}
            # Both HTLCs go away off-chain (A fails B's although it knows the preimage): the commitment is revoked.
            b.apply(core.fulfill_htlc(b.ch, b.signer, next(h.htlc_id for h in b.ch.htlcs if h.offerer.value == "remote"),
                                      pre_a))
            a.apply(core.fail_htlc(a.ch, a.signer, next(h.htlc_id for h in a.ch.htlcs if h.offerer.value == "remote"),
                                   bytes(256)))
            pair.pump()
            assert b.ch.htlcs == ()
            rb = record_of(b, 1)
            await hb.synced()
            learned = []
            if anchors:
                await hb.stop()
            else:
                hb.watch_funding(b, rb)
                hb.onchain.preimage_listeners.append(lambda cid, stub, pre: learned.append((cid, stub.payment_hash,
                                                                                            pre)))

            # A cheats: the revoked commitment and its HTLC-success in one block S (anchors: S and S + 1).
            fork_parent = chaind.rpc("getblockhash", chaind.rpc("getblockcount"))
            chaind.rpc("sendrawtransaction", old.serialize().hex())
            if anchors:
                chaind.mine(1)
                [(htx, zero_fee)] = [(h, t) for h, t in signed if h.kind is HtlcTxKind.SUCCESS]
                prev, w = old.outputs[htx.commitment_output_index], zero_fee.inputs[0].witness

                def finish(t):
                    ours = a.signer.sign_local_htlc_input(t, 0, htx.witness_script, prev.value,
                                                          old_ctx.keys.per_commitment_point)
                    return [b"", w[1], ours, w[3], w[4]]

                await ha.synced()
                funded = await fund_htlc_tx(ha.wallet, zero_fee, prev.value, prev.script_pubkey, finish, 2000,
                                            chaind.rpc("getblockcount"))
                assert funded is not None and len(funded[0].inputs) == 2
                success = funded[0]
            else:
                success = second[HtlcTxKind.SUCCESS]
            chaind.rpc("sendrawtransaction", success.serialize().hex())
            chaind.mine(1)
            if anchors:   # the reorg keeps the cheat's blocks (see the docstring)
                fork_parent = chaind.rpc("getblockhash", chaind.rpc("getblockcount"))
            if anchors:   # B comes back and finds the cheat in the chain
                hb = await Host(str(tmp_path / "b"), chaind, b"\xb2" * 32).start()
                hb.onchain.preimage_listeners.append(lambda cid, stub, pre: learned.append((cid, stub.payment_hash,
                                                                                            pre)))
                b.apply(core.funding_spent(b.ch, old.txid()))
                rb.core = b.ch
                await hb.synced()   # caught up first (as ampd): else its penalties would count a block as missed
                await hb.onchain.restore(rb)
            s = await hb.synced()

            def penalties():
                d = hb.onchain.describe(b.ch.channel_id)
                return d and [o for o in d["outputs"] if o["state"] == "penalty" and o["sweep_txid"]]

            try:
                await until(lambda: (p := penalties()) and len(p) == 3 and all(o["sweep_txid"] for o in p), 30,
                            "three signed penalties")
            except TimeoutError:
                raise AssertionError(f"{hb.onchain.describe(b.ch.channel_id)}\n{hb.lines[-30:]}") from None
            pens = penalties()
            assert sorted(o["kind"] for o in pens) == ["revoked_htlc", "revoked_htlc_tx", "revoked_to_local"]
            txids = {bytes.fromhex(o["sweep_txid"])[::-1] for o in pens}
            # Broadcast in the block the cheat was seen: all in the mempool before the next block (0 blocks).
            await until(lambda: all(in_mempool(chaind, t) for t in txids), 30, "penalties in the mempool")
            assert chaind.rpc("getblockcount") == s
            d = hb.onchain.describe(b.ch.channel_id)
            assert d["kind"] == "revoked"
            # The HTLC output A's HTLC-success took is resolved by it (its output is what B takes).
            [raced] = [o for o in d["outputs"] if o["state"] == "penalty" and not o["sweep_txid"]]
            assert raced["resolved_txid"] == success.txid_hex() and raced["resolved_height"] == s
            assert learned == [(b.ch.channel_id, sha256(pre_b), pre_b)]
            # A's HTLC-timeout can no longer take its HTLC: B's penalty holds that output.
            assert mempool_reject_reason(chaind, second[HtlcTxKind.TIMEOUT]) is not None

            # B restarts: the same signed transactions (never rebuilt).
            await hb.stop()
            hb = await Host(str(tmp_path / "b"), chaind, b"\xb2" * 32).start()
            rb.core = b.ch
            await hb.onchain.restore(rb)
            assert {bytes.fromhex(o["sweep_txid"])[::-1] for o in penalties()} == txids

            # A block without them (a miner ignoring them): each is replaced at a higher feerate (RBF), the deadline
            # being near (to_self_delay for to_local, at once for the HTLCs), paying the same wallet script.
            before = {(o["txid"], o["vout"]): (o["amount_msat"] // 1000, Transaction.parse_hex(
                chaind.rpc("getrawtransaction", o["sweep_txid"]))) for o in penalties()}
            chaind.rpc("generateblock", chaind.faucet_address(), [])
            await hb.synced()
            await until(lambda: not ({bytes.fromhex(o["sweep_txid"])[::-1] for o in penalties()} & txids), 30,
                        "replacements")
            replaced = {bytes.fromhex(o["sweep_txid"])[::-1] for o in penalties()}
            await until(lambda: all(in_mempool(chaind, t) for t in replaced), 30, "replacements in the mempool")
            assert not any(in_mempool(chaind, t) for t in txids)
            for o in penalties():
                value, old_tx = before[(o["txid"], o["vout"])]
                tx = Transaction.parse_hex(chaind.rpc("getrawtransaction", o["sweep_txid"]))
                assert value - tx.outputs[0].value >= (value - old_tx.outputs[0].value) * 5 // 4
                assert tx.outputs[0].script_pubkey == old_tx.outputs[0].script_pubkey
            txids = replaced
            s += 1
            chaind.mine(1)
            await hb.synced()
            await until(lambda: all(o["resolved_height"] == s + 1 for o in penalties()), 30, "penalties mined")
            taken = sum(o["amount_msat"] // 1000 for o in penalties())
            got = {t: hb.wallet.outputs[(t, 0)].value for t in txids}
            fees = taken - sum(got.values())
            weights = [Transaction.parse_hex(chaind.rpc("getrawtransaction", t[::-1].hex())).weight() for t in txids]
            first_fees = sum(v - tx.outputs[0].value for v, tx in before.values())
            first_weight = sum(tx.weight() for _, tx in before.values())
            print(f"justice (first broadcast): {len(before)} txs, {first_weight} WU, {first_fees} sat")
            assert 0 < first_fees < fees < taken // 50
            rate = fees * 1000 // sum(weights)
            print(f"justice: {len(txids)} txs, {sum(weights)} WU, {fees} sat at {rate} sat/kw")

            # A three-block reorg (from below the cheat): everything goes back to the mempool; B sends the same
            # penalties again, and they confirm on the new chain. option_anchors: from S (the commitment stays), the
            # new chain's empty blocks went by without the penalties: each is replaced again (RBF), same script.
            # (From S + 1: the cheat's HTLC-success stays.)
            got_by_out = {(o["txid"], o["vout"]): got[bytes.fromhex(o["sweep_txid"])[::-1]] for o in penalties()}
            scripts = {k: tx.outputs[0].script_pubkey for k, (_, tx) in before.items()}
            fork_height = chaind.rpc("getblockheader", fork_parent)["height"]
            chaind.rpc("generatefork", chaind.rpc("getblockcount") - fork_height + 1, fork_parent)
            await hb.synced()
            if anchors:
                await until(lambda: not any(o["resolved_height"] for o in penalties()), 30, "reorg seen")
            else:
                await until(lambda: hb.onchain.describe(b.ch.channel_id)["spend_height"] is None, 30, "reorg seen")
            chaind.mine(1)
            await hb.synced()
            chaind.mine(1)
            await hb.synced()
            await until(lambda: all(o["resolved_height"] for o in penalties()), 30, "penalties mined again")
            final = {bytes.fromhex(o["sweep_txid"])[::-1] for o in penalties()}
            if anchors:
                assert len(final) == 3 and not (final & txids)
            else:
                assert final == txids
            h = chaind.rpc("getblockcount")
            for o in penalties():
                w = hb.wallet.outputs[(bytes.fromhex(o["sweep_txid"])[::-1], 0)]
                assert w.status(h) == "confirmed" and w.script == scripts[(o["txid"], o["vout"])]
                if anchors:
                    assert w.value < got_by_out[(o["txid"], o["vout"])]
                else:
                    assert w.value == got_by_out[(o["txid"], o["vout"])]
            chaind.mine(BURY)
            await hb.synced()
            assert hb.channel_manager.closed == [(b.ch.channel_id, "onchain")]
        finally:
            await hb.stop()
            if ha is not None:
                await ha.stop()

    run(main())


@both_types
def test_thirty_htlcs_resolved_on_our_commitment(funded_chaind, tmp_path, channel_type):
    """The issue's figure: a channel closed with 30 HTLCs on our commitment (15 each way; we know the preimages of
    those we received): 15 HTLC-success at once, 15 HTLC-timeouts at expiry, then 31 delayed outputs swept.
    Prints the wall time from the close's block to the last sweep mined (mining included)."""
    chaind = funded_chaind

    async def main():
        ha = Host(str(tmp_path / "a"), chaind, b"\xa1" * 32)
        await ha.start()
        try:
            if channel_type.anchors:   # the 30 HTLC transactions bring their fees from the wallet
                await give_wallet_coins(ha, chaind, [100_000] * 4)
            pair = open_on_chain(chaind, await ha.wallet_script(), b"\x00\x14" + b"\xbb" * 20, channel_type=channel_type)
            a, b = pair.a, pair.b
            tip = chaind.rpc("getblockcount")
            pres = []
            for i in range(15):
                a.apply(core.offer_htlc(a.ch, a.signer, 10_000_000, sha256(bytes([i]) * 32), tip + 3, ONION))
                pre = bytes([100 + i]) * 32
                pres.append(pre)
                b.apply(core.offer_htlc(b.ch, b.signer, 10_000_000, sha256(pre), tip + 40, ONION))
                pair.pump()
            assert len(a.ch.htlcs) == 30
            await ha.remember_htlcs(a)
            ra = record_of(a, 1)
            await ha.synced()
            ha.watch_funding(a, ra)
            a.apply(core.force_close(a.ch, a.signer, "test"))
            chaind.rpc("sendrawtransaction", a.broadcasts[-1].serialize().hex())
            for pre in pres:
                await ha.onchain.add_preimage(sha256(pre), pre)
            t0 = time.perf_counter()
            chaind.mine(1)
            await ha.synced()
            blocks = 1

            def outs():
                d = ha.onchain.describe(a.ch.channel_id)
                return d["outputs"] if d else []

            def done():
                o = outs()
                return len(o) == 61 and all(x["resolved_height"] for x in o)

            while not done() and blocks < 40:
                await asyncio.sleep(0.05)   # the resolver's broadcasts for this block
                chaind.mine(1)
                blocks += 1
                await ha.synced()
            assert done(), outs()
            seconds = time.perf_counter() - t0
            kinds = sorted({x["kind"] for x in outs()})
            assert kinds == ["htlc_tx_delayed", "our_htlc", "their_htlc", "to_local"]
            # BOLT #3: the HTLC transactions pay their own fee (one input each) -- with option_anchors none: the
            # wallet's coins pay for them (aggregated: several HTLCs per transaction).
            htlc_txs = {x["sweep_txid"] for x in outs() if x["kind"] in ("our_htlc", "their_htlc")}
            ins = [len(Transaction.parse_hex(chaind.rpc("getrawtransaction", t)).inputs) for t in htlc_txs]
            if channel_type.anchors:
                assert len(htlc_txs) < 30 and sum(ins) > 30, ins
            else:
                assert len(htlc_txs) == 30 and set(ins) == {1}, ins
            print(f"30 HTLCs on-chain resolved and swept in {seconds:.2f} s over {blocks} blocks "
                  f"(to_self_delay {DELAY})")
        finally:
            await ha.stop()

    run(main())
