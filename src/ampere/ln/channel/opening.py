"""Channel establishment v1 (BOLT 2): open_channel, accept_channel, funding_created, funding_signed.

Two I/O-free negotiations, one per role. Nothing here is persisted: BOLT 2 lets either side forget an opening
until funding_signed ("A funding node: ... if it has broadcast the funding transaction: MUST remember the
channel"; "A non-funding node: ... if it has sent the funding_signed message: MUST remember the channel").
The step that completes the negotiation returns a `Channel` (state CHANNELD_AWAITING_LOCKIN) whose first
action is its Persist; the acceptor then sends funding_signed, the opener broadcasts the funding transaction.

    opener:   neg, step = open_channel(...)           -> send open_channel
              step = neg.on_accept_channel(msg)       -> event FundingTxNeeded (the wallet builds it)
              step = neg.funding_tx_ready(tx)         -> send funding_created
              step = neg.on_funding_signed(msg)       -> Persist, Broadcast(funding tx); step.state is a Channel
    acceptor: step = on_open_channel(...)             -> send accept_channel; step.state is an AcceptorNegotiation
              step = neg.on_funding_created(msg)      -> Persist, send funding_signed; step.state is a Channel

Errors make the step carry a ChannelError (CLOSE: send `error`, forget the negotiation); nothing raises.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ampere.ln.channel.actions import ChannelError, FundingTxNeeded, Step
from ampere.ln.channel.commitment import (
    ChannelParams,
    CommitmentError,
    CommitmentTx,
    Side,
    build_commitment_tx,
    commitment_fee_sat,
)
from ampere.ln.channel.keys import ChannelPubkeys, KeyDerivationError, compact_to_der
from ampere.ln.channel.normal import FEERATE_FLOOR, MAX_ACCEPTED_HTLCS_LIMIT
from ampere.ln.channel.persist import finish
from ampere.ln.channel.scripts import ANCHOR_OUTPUT_SAT, ChannelType, funding_script
from ampere.ln.channel.shutdown import valid_shutdown_script
from ampere.ln.channel.signer import ChannelSigner
from ampere.ln.channel.state import Channel, ChannelConfig, ChannelState, channel_id_from_outpoint
from ampere.ln.channel.views import view
from ampere.primitives.amount import MsatInt, SatInt, msat_to_sat, sat_to_msat
from ampere.primitives.script import p2wsh
from ampere.primitives.tx import OutPoint, Transaction
from ampere.wire import messages as m

__all__ = [
    "LocalParams", "OpenPolicy", "channel_type_bytes", "channel_type_from_bytes",
    "OpenerNegotiation", "AcceptorNegotiation", "open_channel", "on_open_channel", "peer_amount_problem",
    "MAX_MONEY_SAT",
]

LARGE_CHANNEL_SAT = 1 << 24
MIN_DUST_LIMIT_SAT = 354  # BOLT #2: "dust_limit_satoshis is smaller than 354 satoshis" -> fail
MAX_MONEY_SAT = 21_000_000 * 100_000_000   # the total supply: no real amount is larger (Bitcoin Core's MAX_MONEY)


def peer_amount_problem(msg: m.OpenChannel | m.AcceptChannel, funding_sat: int | None = None) -> str | None:
    """Bounds on every amount field of a peer's open_channel/accept_channel, checked before anything else (the
    openchannel hook, a database id, accept_channel): a u64 field can carry 2^64-1, which no channel can hold and
    which the transaction builder cannot even serialise. The limits are BOLT 2's own relations (push_msat within
    the funding; the reserve and dust limit within the funding) and the total supply for the funding itself."""
    funding = msg.funding_satoshis if isinstance(msg, m.OpenChannel) else None
    cap_sat = MAX_MONEY_SAT if funding_sat is None else funding_sat   # accept_channel: our own funding
    if isinstance(msg, m.OpenChannel) and funding is not None:
        if funding > MAX_MONEY_SAT:
            return f"funding_satoshis {funding} is above the total supply of 21M BTC"
        # BOLT #2: "push_msat is greater than funding_satoshis * 1000" -> MUST fail the channel.
        if msg.push_msat > sat_to_msat(funding):
            return f"push_msat {msg.push_msat} is greater than funding_satoshis * 1000"
        cap_sat = funding
    # BOLT #2: "channel_reserve_satoshis is ... unreasonably large" / "dust_limit_satoshis is greater than
    # channel_reserve_satoshis": neither can exceed the funding (or the supply, for accept_channel).
    for name in ("channel_reserve_satoshis", "dust_limit_satoshis"):
        if getattr(msg, name) > cap_sat:
            return f"{name} {getattr(msg, name)} is larger than the channel"
    # BOLT #2: "htlc_minimum_msat too large" -> MAY fail; above the whole channel it is meaningless.
    if msg.htlc_minimum_msat > sat_to_msat(cap_sat):
        return f"htlc_minimum_msat {msg.htlc_minimum_msat} is larger than the channel"
    return None


def channel_type_bytes(ct: ChannelType) -> bytes:
    """BOLT #2 channel_type feature bitmap, "the smallest bitmap possible": static_remotekey is bit 12, anchors
    add bit 22."""
    bits = [12] + ([22] if ct.anchors else [])
    value = sum(1 << b for b in bits)
    return value.to_bytes((max(bits) // 8) + 1, "big")


def channel_type_from_bytes(data: bytes) -> ChannelType | None:
    value = int.from_bytes(data, "big") if data else 0
    for ct in ChannelType:
        if value == int.from_bytes(channel_type_bytes(ct), "big"):
            return ct
    return None


@dataclass(frozen=True)
class LocalParams:
    """What we announce in open_channel/accept_channel, and where our mutual-close funds go."""

    shutdown_scriptpubkey: bytes          # close_to / wallet address
    dust_limit_sat: int = 546
    max_htlc_value_in_flight_msat: int = 0xFFFFFFFFFFFFFFFF
    channel_reserve_sat: int | None = None  # None: 1% of the funding (at least both dust limits)
    htlc_minimum_msat: int = 0
    to_self_delay: int = 144
    max_accepted_htlcs: int = 30
    upfront_shutdown_script: bool = False   # announce shutdown_scriptpubkey in open/accept
    minimum_depth: int = 3                  # acceptor: confirmations before channel_ready (CLN's default)


@dataclass(frozen=True)
class OpenPolicy:
    """Our limits on the peer's parameters (operator options)."""

    chain_hash: bytes
    min_funding_sat: int = 10_000
    max_to_self_delay: int = 2016
    max_minimum_depth: int = 144
    max_dust_limit_sat: int = 20_000
    max_reserve_percent: int = 20
    max_htlc_minimum_msat: int = 1_000_000_000
    min_max_accepted_htlcs: int = 1
    large_channels: bool = True             # option_support_large_channel
    allow_anchors: bool = False             # the issue: static_remotekey now, anchors once on-chain supports them
    min_feerate_per_kw: int = FEERATE_FLOOR
    max_feerate_per_kw: int = 100_000


def _reserve(params: LocalParams, funding_sat: int, *dust_limits: int) -> int:
    if params.channel_reserve_sat is not None:
        return max(params.channel_reserve_sat, *dust_limits)
    return max(funding_sat // 100, *dust_limits)


def _config(p: LocalParams, reserve: int, dust: int) -> ChannelConfig:
    return ChannelConfig(SatInt(dust), MsatInt(p.max_htlc_value_in_flight_msat), SatInt(reserve),
                         MsatInt(p.htlc_minimum_msat), p.to_self_delay,
                         p.max_accepted_htlcs, p.shutdown_scriptpubkey if p.upfront_shutdown_script else b"")


def _peer_config(msg: m.OpenChannel | m.AcceptChannel) -> ChannelConfig:
    up = msg.tlvs.upfront_shutdown_script if msg.tlvs is not None else None
    return ChannelConfig(SatInt(msg.dust_limit_satoshis), MsatInt(msg.max_htlc_value_in_flight_msat),
                         SatInt(msg.channel_reserve_satoshis), MsatInt(msg.htlc_minimum_msat), msg.to_self_delay, msg.max_accepted_htlcs, bytes(up or b""))


def _peer_pubkeys(msg: m.OpenChannel | m.AcceptChannel) -> ChannelPubkeys:
    return ChannelPubkeys(msg.funding_pubkey, msg.revocation_basepoint, msg.payment_basepoint,
                          msg.delayed_payment_basepoint, msg.htlc_basepoint)


def _check_common(cfg: ChannelConfig, policy: OpenPolicy) -> str | None:
    """Checks that apply to both open_channel and accept_channel ("Other fields have the same requirements")."""
    # BOLT #2 (MUST fail): "to_self_delay is unreasonably large", "max_accepted_htlcs is greater than 483",
    # "dust_limit_satoshis is greater than channel_reserve_satoshis", "dust_limit_satoshis is smaller than 354"
    if cfg.to_self_delay > policy.max_to_self_delay:
        return f"to_self_delay {cfg.to_self_delay} is above our maximum {policy.max_to_self_delay}"
    if cfg.max_accepted_htlcs > MAX_ACCEPTED_HTLCS_LIMIT:
        return f"max_accepted_htlcs {cfg.max_accepted_htlcs} is above 483"
    if cfg.dust_limit_sat > cfg.channel_reserve_sat:
        return "dust_limit_satoshis is greater than channel_reserve_satoshis"
    if cfg.dust_limit_sat < MIN_DUST_LIMIT_SAT:
        return f"dust_limit_satoshis {cfg.dust_limit_sat} is below 354"
    # BOLT #2 (MAY fail): htlc_minimum_msat too large, max_accepted_htlcs too small, dust_limit too large.
    if cfg.dust_limit_sat > policy.max_dust_limit_sat:
        return f"dust_limit_satoshis {cfg.dust_limit_sat} is too large"
    if cfg.htlc_minimum_msat > policy.max_htlc_minimum_msat:
        return f"htlc_minimum_msat {cfg.htlc_minimum_msat} is too large"
    if cfg.max_accepted_htlcs < policy.min_max_accepted_htlcs:
        return f"max_accepted_htlcs {cfg.max_accepted_htlcs} is too small"
    if cfg.upfront_shutdown_script and not valid_shutdown_script(cfg.upfront_shutdown_script):
        return "upfront_shutdown_script is not a valid shutdown script"
    return None


def _first_commitment_check(funding_sat: int, push_msat: int, feerate: int, ct: ChannelType,
                            opener_cfg_reserve_sat: int) -> str | None:
    """BOLT #2: fail if "the funder's amount for the initial commitment transaction is not sufficient for full fee
    payment" or "both to_local and to_remote amounts for the initial commitment transaction are less than or
    equal to channel_reserve_satoshis"."""
    fee = commitment_fee_msat_for(ct, feerate)
    funder = sat_to_msat(funding_sat) - push_msat
    if funder < fee:
        return f"the opener cannot pay the initial commitment fee of {msat_to_sat(fee)} sat"
    if funder - fee <= sat_to_msat(opener_cfg_reserve_sat) and push_msat <= sat_to_msat(opener_cfg_reserve_sat):
        return "both initial balances are at or below the channel reserve"
    return None


def commitment_fee_msat_for(ct: ChannelType, feerate: int) -> int:
    """The opener's cost of a commitment without HTLCs: base fee plus, with anchors, the two anchors."""
    return sat_to_msat(commitment_fee_sat(feerate, 0, ct) + (2 * ANCHOR_OUTPUT_SAT if ct.anchors else 0))


def _close(neg: object, message: str) -> Step:
    return Step(neg, (), ChannelError.close(message, broadcast=False))


def _make_channel(*, opener: Side, outpoint: OutPoint, funding_sat: SatInt, push_msat: MsatInt, ct: ChannelType,
                  local_pubkeys: ChannelPubkeys, remote_pubkeys: ChannelPubkeys, local: ChannelConfig,
                  remote: ChannelConfig, announce: bool, minimum_depth: int, remote_first_point: bytes,
                  feerate: int, shutdown_script: bytes) -> Channel:
    params = ChannelParams(funding_outpoint=outpoint, funding_sat=funding_sat, opener=opener, channel_type=ct,
                           local_pubkeys=local_pubkeys, remote_pubkeys=remote_pubkeys,
                           local_dust_limit_sat=local.dust_limit_sat, remote_dust_limit_sat=remote.dust_limit_sat,
                           local_to_self_delay=remote.to_self_delay, remote_to_self_delay=local.to_self_delay)
    opener_msat, other_msat = MsatInt(sat_to_msat(funding_sat) - push_msat), push_msat
    local_msat, remote_msat = (opener_msat, other_msat) if opener is Side.LOCAL else (other_msat, opener_msat)
    return Channel(channel_id=channel_id_from_outpoint(outpoint), state=ChannelState.CHANNELD_AWAITING_LOCKIN,
                   params=params, local=local, remote=remote, announce=announce, minimum_depth=minimum_depth,
                   balance_local_msat=local_msat, balance_remote_msat=remote_msat, feerate_per_kw=feerate,
                   remote_point=remote_first_point, local_shutdown_script=shutdown_script, connected=True,
                   reestablished=True, reestablish_sent=True)


def _first_commitments(ch: Channel, signer: ChannelSigner) -> tuple[CommitmentTx, CommitmentTx]:
    v_local, v_remote = view(ch, Side.LOCAL), view(ch, Side.REMOTE)
    local_ctx = build_commitment_tx(ch.params, Side.LOCAL, 0, signer.commitment_point(0), ch.feerate_per_kw,
                                    v_local.local_msat, v_local.remote_msat, ())
    remote_ctx = build_commitment_tx(ch.params, Side.REMOTE, 0, ch.remote_point, ch.feerate_per_kw,
                                     v_remote.local_msat, v_remote.remote_msat, ())
    return local_ctx, remote_ctx


def _sig_ok(ctx: CommitmentTx, pubkey: bytes, compact: bytes) -> bool:
    try:
        return ctx.verify(pubkey, compact_to_der(compact))
    except KeyDerivationError:
        return False


# --- opener ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenerNegotiation:
    temporary_channel_id: bytes
    chain_hash: bytes
    funding_sat: SatInt
    push_msat: MsatInt
    feerate_per_kw: int
    channel_type: ChannelType
    announce: bool
    ours: LocalParams
    local_pubkeys: ChannelPubkeys
    local_config: ChannelConfig
    stage: str = "awaiting_accept"          # -> awaiting_funding_tx -> awaiting_funding_signed
    remote_config: ChannelConfig | None = None
    remote_pubkeys: ChannelPubkeys | None = None
    remote_first_point: bytes = b""
    minimum_depth: int = 0
    funding_tx: Transaction | None = None
    channel: Channel | None = None           # built at funding_created, returned at funding_signed

    def on_accept_channel(self, msg: m.AcceptChannel, policy: OpenPolicy) -> Step:
        if self.stage != "awaiting_accept":
            return _close(self, "unexpected accept_channel")
        # BOLT #2: "The temporary_channel_id MUST be the same as the temporary_channel_id in the open_channel".
        if msg.temporary_channel_id != self.temporary_channel_id:
            return _close(self, "accept_channel for another temporary_channel_id")
        ct_raw = msg.tlvs.channel_type if msg.tlvs is not None else None
        # BOLT #2: "if the message doesn't include a channel_type: MUST fail the channel. if channel_type does not
        # match the channel_type from open_channel: MUST fail the channel."
        if ct_raw is None:
            return _close(self, "accept_channel without channel_type")
        if channel_type_from_bytes(ct_raw) is not self.channel_type:
            return _close(self, "accept_channel channel_type differs from ours")
        cfg = _peer_config(msg)
        problem = peer_amount_problem(msg, self.funding_sat) or _check_common(cfg, policy)
        if problem is None:
            # BOLT #2: "if channel_reserve_satoshis is less than dust_limit_satoshis within the open_channel
            # message: MUST fail the channel. if channel_reserve_satoshis from the open_channel message is less
            # than dust_limit_satoshis: MUST fail the channel."
            if cfg.channel_reserve_sat < self.local_config.dust_limit_sat:
                problem = "their channel_reserve_satoshis is below our dust_limit_satoshis"
            elif self.local_config.channel_reserve_sat < cfg.dust_limit_sat:
                problem = "our channel_reserve_satoshis is below their dust_limit_satoshis"
            # BOLT #2: "if minimum_depth is unreasonably large: MAY fail the channel."
            elif msg.minimum_depth > policy.max_minimum_depth:
                problem = f"minimum_depth {msg.minimum_depth} is too large"
            elif cfg.channel_reserve_sat * 100 > self.funding_sat * policy.max_reserve_percent:
                problem = f"channel_reserve_satoshis {cfg.channel_reserve_sat} is too large"
        try:
            pubkeys = _peer_pubkeys(msg)
        except KeyDerivationError as e:
            problem = problem or f"accept_channel: {e}"
            pubkeys = None
        if problem is not None:
            return _close(self, problem)
        assert pubkeys is not None
        neg = replace(self, stage="awaiting_funding_tx", remote_config=cfg, remote_pubkeys=pubkeys,
                      remote_first_point=bytes(msg.first_per_commitment_point), minimum_depth=msg.minimum_depth)
        spk = p2wsh(funding_script(self.local_pubkeys.funding_pubkey, pubkeys.funding_pubkey))
        return Step(neg, (FundingTxNeeded(self.temporary_channel_id, spk, self.funding_sat),))

    def funding_tx_ready(self, signer: ChannelSigner, funding_tx: Transaction) -> Step:
        """The wallet built (and signed, not broadcast) the funding transaction: sign the peer's commitment 0."""
        if self.stage != "awaiting_funding_tx" or self.remote_pubkeys is None or self.remote_config is None:
            return _close(self, "funding transaction given at the wrong time")
        spk = p2wsh(funding_script(self.local_pubkeys.funding_pubkey, self.remote_pubkeys.funding_pubkey))
        outs = [i for i, o in enumerate(funding_tx.outputs) if o.script_pubkey == spk and o.value == self.funding_sat]
        if len(outs) != 1 or outs[0] > 0xFFFF:
            return _close(self, "the funding transaction does not pay the channel exactly once")
        ch = _make_channel(opener=Side.LOCAL, outpoint=OutPoint(funding_tx.txid(), outs[0]),
                           funding_sat=self.funding_sat, push_msat=self.push_msat, ct=self.channel_type,
                           local_pubkeys=self.local_pubkeys, remote_pubkeys=self.remote_pubkeys,
                           local=self.local_config, remote=self.remote_config, announce=self.announce,
                           minimum_depth=self.minimum_depth, remote_first_point=self.remote_first_point,
                           feerate=self.feerate_per_kw, shutdown_script=self.ours.shutdown_scriptpubkey)
        try:
            _, remote_ctx = _first_commitments(ch, signer)
        except (CommitmentError, KeyDerivationError) as e:
            return _close(self, f"cannot build the first commitment: {e}")
        msg = m.FundingCreated(temporary_channel_id=self.temporary_channel_id, funding_txid=funding_tx.txid(),
                               funding_output_index=outs[0], signature=signer.sign_commitment(remote_ctx))
        neg = replace(self, stage="awaiting_funding_signed", funding_tx=funding_tx, channel=ch)
        return Step.build(neg, messages=[msg])

    def on_funding_signed(self, signer: ChannelSigner, msg: m.FundingSigned) -> Step:
        if self.stage != "awaiting_funding_signed" or self.channel is None or self.funding_tx is None:
            return _close(self, "unexpected funding_signed")
        ch = self.channel
        if msg.channel_id != ch.channel_id:
            return _close(self, "funding_signed for another channel_id")
        local_ctx, _ = _first_commitments(ch, signer)
        # BOLT #2: "if signature is incorrect OR non-compliant with LOW-S-standard rule: MUST send a warning and
        # close the connection, or send an error and fail the channel." / "MUST NOT broadcast the funding
        # transaction before receipt of a valid funding_signed."
        if not _sig_ok(local_ctx, ch.params.remote_pubkeys.funding_pubkey, msg.signature):
            return _close(self, "funding_signed: bad signature for our first commitment")
        ch = replace(ch, local_commit_sig=bytes(msg.signature))
        # BOLT #2: "on receipt of a valid funding_signed: SHOULD broadcast the funding transaction."
        return finish(ch, ch, broadcasts=[self.funding_tx], cause="user", first=True)


def open_channel(signer: ChannelSigner, *, temporary_channel_id: bytes, chain_hash: bytes, funding_sat: SatInt,
                 push_msat: MsatInt, feerate_per_kw: int, ours: LocalParams,
                 channel_type: ChannelType = ChannelType.STATIC_REMOTEKEY, announce: bool = True,
                 large_channels: bool = True) -> Step:
    """Start opening a channel as the funder: the Step's state is an OpenerNegotiation (or the error)."""
    problem = None
    if len(temporary_channel_id) != 32:
        problem = "temporary_channel_id must be 32 bytes"
    elif funding_sat <= 0 or (funding_sat >= LARGE_CHANNEL_SAT and not large_channels):
        problem = f"funding of {funding_sat} sat is not allowed"
    elif not 0 <= push_msat <= sat_to_msat(funding_sat):
        # BOLT #2: "MUST set push_msat to equal or less than 1000 * funding_satoshis."
        problem = "push_msat exceeds the funding"
    elif feerate_per_kw < FEERATE_FLOOR:
        problem = f"feerate {feerate_per_kw} is below the floor of {FEERATE_FLOOR}"
    elif not valid_shutdown_script(ours.shutdown_scriptpubkey):
        problem = "shutdown_scriptpubkey is not a valid shutdown script"
    reserve = _reserve(ours, funding_sat, ours.dust_limit_sat)
    if problem is None:
        problem = _first_commitment_check(funding_sat, push_msat, feerate_per_kw, channel_type, reserve)
    local_config = _config(ours, reserve, ours.dust_limit_sat)
    neg = OpenerNegotiation(temporary_channel_id, chain_hash, funding_sat, push_msat, feerate_per_kw, channel_type,
                            announce, ours, signer.pubkeys, local_config)
    if problem is not None:
        return _close(neg, problem)
    pk = signer.pubkeys
    msg = m.OpenChannel(
        chain_hash=chain_hash, temporary_channel_id=temporary_channel_id, funding_satoshis=funding_sat,
        push_msat=push_msat, dust_limit_satoshis=local_config.dust_limit_sat,
        max_htlc_value_in_flight_msat=local_config.max_htlc_value_in_flight_msat,
        channel_reserve_satoshis=reserve, htlc_minimum_msat=local_config.htlc_minimum_msat,
        feerate_per_kw=feerate_per_kw, to_self_delay=local_config.to_self_delay,
        max_accepted_htlcs=local_config.max_accepted_htlcs, funding_pubkey=pk.funding_pubkey,
        revocation_basepoint=pk.revocation_basepoint, payment_basepoint=pk.payment_basepoint,
        delayed_payment_basepoint=pk.delayed_payment_basepoint, htlc_basepoint=pk.htlc_basepoint,
        first_per_commitment_point=signer.commitment_point(0), channel_flags=1 if announce else 0,
        # BOLT #2: "if it includes open_channel_tlvs: MUST include upfront_shutdown_script. MUST set channel_type"
        tlvs=m.OpenChannelTlvs(upfront_shutdown_script=local_config.upfront_shutdown_script,
                               channel_type=channel_type_bytes(channel_type)))
    return Step.build(neg, messages=[msg])


# --- acceptor --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AcceptorNegotiation:
    open_msg: m.OpenChannel
    channel_type: ChannelType
    ours: LocalParams
    local_pubkeys: ChannelPubkeys
    local_config: ChannelConfig
    remote_config: ChannelConfig
    remote_pubkeys: ChannelPubkeys

    def on_funding_created(self, signer: ChannelSigner, msg: m.FundingCreated) -> Step:
        o = self.open_msg
        if msg.temporary_channel_id != o.temporary_channel_id:
            return _close(self, "funding_created for another temporary_channel_id")
        ch = _make_channel(opener=Side.REMOTE, outpoint=OutPoint(bytes(msg.funding_txid), msg.funding_output_index),
                           funding_sat=SatInt(o.funding_satoshis), push_msat=MsatInt(o.push_msat), ct=self.channel_type,
                           local_pubkeys=self.local_pubkeys, remote_pubkeys=self.remote_pubkeys,
                           local=self.local_config, remote=self.remote_config, announce=bool(o.channel_flags & 1),
                           minimum_depth=self.ours.minimum_depth, remote_first_point=bytes(o.first_per_commitment_point),
                           feerate=o.feerate_per_kw, shutdown_script=self.ours.shutdown_scriptpubkey)
        try:
            local_ctx, remote_ctx = _first_commitments(ch, signer)
        except (CommitmentError, KeyDerivationError) as e:
            return _close(self, f"cannot build the first commitment: {e}")
        # BOLT #2: "if signature is incorrect OR non-compliant with LOW-S-standard rule: MUST send a warning and
        # close the connection, or send an error and fail the channel."
        if not _sig_ok(local_ctx, self.remote_pubkeys.funding_pubkey, msg.signature):
            return _close(self, "funding_created: bad signature for our first commitment")
        ch = replace(ch, local_commit_sig=bytes(msg.signature))
        reply = m.FundingSigned(channel_id=ch.channel_id, signature=signer.sign_commitment(remote_ctx))
        return finish(ch, ch, messages=[reply], cause="remote", first=True)


def on_open_channel(signer: ChannelSigner, msg: m.OpenChannel, ours: LocalParams, policy: OpenPolicy) -> Step:
    """Check a peer's open_channel (after the openchannel hook said continue) and answer accept_channel."""
    def fail(problem: str) -> Step:
        return Step(None, (), ChannelError.close(problem, broadcast=False))

    # BOLT #2 (MUST fail): "the chain_hash value is set to a hash of a chain that is unknown to the receiver."
    if msg.chain_hash != policy.chain_hash:
        return fail("open_channel for an unknown chain")
    ct_raw = msg.tlvs.channel_type if msg.tlvs is not None else None
    # BOLT #2: "if the message doesn't include a channel_type: fail the channel." / "the channel_type is not
    # suitable."
    if ct_raw is None:
        return fail("open_channel without channel_type")
    ct = channel_type_from_bytes(ct_raw)
    if ct is None or (ct.anchors and not policy.allow_anchors):
        return fail(f"channel_type {ct_raw.hex()} is not supported")
    if msg.funding_satoshis >= LARGE_CHANNEL_SAT and not policy.large_channels:
        return fail("funding_satoshis requires option_support_large_channel")
    if msg.funding_satoshis < policy.min_funding_sat:
        return fail(f"funding of {msg.funding_satoshis} sat is below our minimum {policy.min_funding_sat}")
    bounds = peer_amount_problem(msg)
    if bounds is not None:
        return fail(bounds)
    # BOLT #2: "push_msat is greater than funding_satoshis * 1000."
    if msg.push_msat > sat_to_msat(msg.funding_satoshis):
        return fail("push_msat is greater than the funding")
    # BOLT #2: "it considers feerate_per_kw too small for timely processing or unreasonably large."
    # option_anchors: a low commitment feerate is no risk to us (the commitment is CPFP'd through its anchors; CLN
    # signs them at its 100-block estimate): only the relay floor binds.
    low = FEERATE_FLOOR if ct.anchors else max(policy.min_feerate_per_kw, FEERATE_FLOOR)
    if not low <= msg.feerate_per_kw <= policy.max_feerate_per_kw:
        return fail(f"feerate_per_kw {msg.feerate_per_kw} is outside [{low}, {policy.max_feerate_per_kw}]")
    cfg = _peer_config(msg)
    problem = _check_common(cfg, policy)
    if problem:
        return fail(problem)
    if cfg.channel_reserve_sat * 100 > msg.funding_satoshis * policy.max_reserve_percent:
        return fail(f"channel_reserve_satoshis {cfg.channel_reserve_sat} is too large")
    try:
        pubkeys = _peer_pubkeys(msg)
    except KeyDerivationError as e:
        return fail(f"open_channel: {e}")
    # Our values. BOLT #2 (accept_channel sender): "MUST set channel_reserve_satoshis greater than or equal to
    # dust_limit_satoshis from the open_channel message. MUST set dust_limit_satoshis less than or equal to
    # channel_reserve_satoshis from the open_channel message."
    dust = max(MIN_DUST_LIMIT_SAT, min(ours.dust_limit_sat, cfg.channel_reserve_sat))
    reserve = _reserve(ours, msg.funding_satoshis, dust, cfg.dust_limit_sat)
    problem = _first_commitment_check(msg.funding_satoshis, msg.push_msat, msg.feerate_per_kw, ct,
                                      cfg.channel_reserve_sat)
    if problem:
        return fail(problem)
    if not valid_shutdown_script(ours.shutdown_scriptpubkey):
        return fail("our shutdown_scriptpubkey is not a valid shutdown script")
    local_config = _config(ours, reserve, dust)
    pk = signer.pubkeys
    reply = m.AcceptChannel(
        temporary_channel_id=msg.temporary_channel_id, dust_limit_satoshis=dust,
        max_htlc_value_in_flight_msat=local_config.max_htlc_value_in_flight_msat, channel_reserve_satoshis=reserve,
        htlc_minimum_msat=local_config.htlc_minimum_msat, minimum_depth=ours.minimum_depth,
        to_self_delay=local_config.to_self_delay, max_accepted_htlcs=local_config.max_accepted_htlcs,
        funding_pubkey=pk.funding_pubkey, revocation_basepoint=pk.revocation_basepoint,
        payment_basepoint=pk.payment_basepoint, delayed_payment_basepoint=pk.delayed_payment_basepoint,
        htlc_basepoint=pk.htlc_basepoint, first_per_commitment_point=signer.commitment_point(0),
        # BOLT #2: "MUST set channel_type to the channel_type from open_channel."
        tlvs=m.AcceptChannelTlvs(upfront_shutdown_script=local_config.upfront_shutdown_script,
                                 channel_type=channel_type_bytes(ct)))
    neg = AcceptorNegotiation(msg, ct, ours, pk, local_config, cfg, pubkeys)
    return Step.build(neg, messages=[reply])
