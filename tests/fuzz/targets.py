"""Fuzz targets: each takes bytes and returns quietly, or raises on a bug.

A target catches exactly the errors its decoder documents for bad input (the typed errors a peer, an invoice or
an RPC client can cause); anything else escaping (IndexError, OverflowError, RecursionError, a bare ValueError,
UnicodeError...) is a finding. Where a decoder has an encoder, the target also checks the round trip.

Run by tests/fuzz/run.py (atheris, libFuzzer) and replayed over tests/fuzz/corpus/<target>/ by
tests/fuzz/test_fuzz.py. The issue-16 findings are corpus entries (tests/fuzz/corpus/*/finding-*).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import coincurve

from ampere.ln import invoice as bolt11
from ampere.ln import onion, onion_failure, onion_payload
from ampere.ln.channel import opening
from ampere.testing.channel_pair import REGTEST_CHAIN_HASH
from ampere.ln.channel.signer import LocalChannelSigner
from ampere.ln.gossip import GossipValidator, Graph
from ampere.ln.gossip.queries import QueryError, decode_short_ids
from ampere.ln.gossip.validate import expected_funding_script_pubkey
from ampere.primitives.bech32 import bech32_encode
from ampere.rpc.errors import RpcError
from ampere.rpc.framing import FrameError, InvalidRequest, JsonStreamFramer
from ampere.wire import messages as m
from ampere.wire.codec import UnknownMessage, decode_message, encode_message
from ampere.wire.errors import WireError
from ampere.wire.errors import HandshakeError
from ampere.wire.noise import InitiatorHandshake, ResponderHandshake

NODE_KEY = hashlib.sha256(b"ampere fuzz node").digest()
NODE_PUB = coincurve.PrivateKey(NODE_KEY).public_key.format()
PEER_KEY = hashlib.sha256(b"ampere fuzz peer").digest()
SESSION_KEY = hashlib.sha256(b"ampere fuzz session").digest()
EPHEMERAL = hashlib.sha256(b"ampere fuzz ephemeral").digest()
NOW = 1_700_000_000


# --- wire codec ---------------------------------------------------------------------------------

def wire(data: bytes) -> None:
    """Any message: decode; what decodes re-encodes, and the re-encoding decodes to the same message."""
    try:
        msg = decode_message(data)
    except WireError:
        return
    if isinstance(msg, UnknownMessage):
        return
    again = encode_message(msg)
    assert decode_message(again) == msg, (data.hex(), again.hex())


# --- BOLT 11 ------------------------------------------------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_HRPS = ["lnbc", "lnbcrt", "lntb", "lntbs", "lnbc2500u", "lnbcrt1p", "lnbc10n", "lnbc1m", "ln", "lnxx"]


def bolt11_decode(data: bytes) -> None:
    """Raw text, or (most inputs) a checksum-valid bech32 string so that the fields are reached."""
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode & 1:
        text = rest.decode("latin-1")
    else:
        hrp = _HRPS[(mode >> 1) % len(_HRPS)]
        if mode & 0x80 and rest:   # an amount of fuzzed digits: the huge-amount finding lives here
            n = rest[0] * 20
            hrp = "lnbcrt" + "".join(str(b % 10) for b in rest[1:n + 1]) + "munp"[rest[0] % 4]
            rest = rest[n + 1:]
        values = [b & 31 for b in rest]
        if len(hrp) + len(values) + 7 > bolt11.MAX_INVOICE_LENGTH:
            # Only the length check is reached: no need to pay for a checksum (pure Python, slow instrumented).
            text = hrp + "1" + "".join(_CHARSET[v] for v in values) + "qqqqqq"
        else:
            text = bech32_encode(hrp, values)
    try:
        inv = bolt11.decode(text)
    except bolt11.InvoiceError:
        return
    json.dumps(bolt11.to_decode_json(inv))


# --- onions (BOLT 4) ----------------------------------------------------------------------------

def onion_peel(data: bytes) -> None:
    """A raw packet; or a valid onion around a fuzzed hop payload (so payload decoding is reached); or a failure
    message/packet."""
    if not data:
        return
    mode, rest = data[0] % 4, data[1:]
    if mode == 0:
        packet = (rest + bytes(1366))[:1366] if len(rest) < 1366 else rest[:1366]
        try:
            onion.peel_onion(NODE_KEY, packet, b"\x42" * 32)
        except onion.OnionError:
            pass
    elif mode == 1:
        payload = rest[:1200]
        try:
            packet, _ = onion.create_onion(SESSION_KEY, [(NODE_PUB, payload)], b"\x42" * 32)
        except onion.OnionConstructionError:
            return
        try:
            peeled = onion.peel_onion(NODE_KEY, packet, b"\x42" * 32)
        except onion.InvalidOnionPayload:
            return
        try:
            hop = onion_payload.decode_hop_payload(peeled.payload)
        except onion.InvalidOnionPayload:
            return
        try:
            onion_payload.check_hop_payload(hop, is_final=peeled.is_final)
        except onion.InvalidOnionPayload:
            pass
    elif mode == 2:
        try:
            onion_failure.decode_failure_message(rest)
        except onion_failure.FailureMessageError:
            pass
    else:
        try:
            onion_failure.decode_failure([b"\x07" * 32, b"\x08" * 32], rest)
        except (onion_failure.FailurePacketError, onion_failure.UnreadableFailure):
            pass


# --- BOLT 8 -------------------------------------------------------------------------------------

def _valid_act1() -> tuple[InitiatorHandshake, bytes]:
    init = InitiatorHandshake(PEER_KEY, NODE_PUB, EPHEMERAL)
    return init, init.act_one()


def bolt8(data: bytes) -> None:
    """As the responder: a fuzzed act one; a fuzzed act three after a valid act one; fuzzed frames after a valid
    handshake."""
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    resp = ResponderHandshake(NODE_KEY, EPHEMERAL)
    try:
        if mode == 0:
            resp.process_act_one(rest)
            return
        init, act1 = _valid_act1()
        act2 = resp.process_act_one(act1)
        if mode == 1:
            resp.process_act_three(rest)
            return
        act3, _ = init.process_act_two(act2)
        session = resp.process_act_three(act3)
        pos = 0
        while pos + 18 <= len(rest):
            length = session.decrypt_length(rest[pos:pos + 18])
            pos += 18
            session.decrypt_body(rest[pos:pos + length + 16])
            pos += length + 16
    except (HandshakeError, WireError):
        return


# --- gossip (BOLT 7) ----------------------------------------------------------------------------

_GOSSIP_TYPES = [256, 257, 258, 261, 262, 263, 264, 265]


def gossip(data: bytes) -> None:
    """Gossip messages through the validator (a funding output that matches whatever keys are announced), and
    the encoded short_channel_id lists of queries."""
    if len(data) < 2:
        return
    kind, rest = data[0], data[1:]
    if kind & 0x80:
        try:
            decode_short_ids(rest)
        except (QueryError, WireError):
            pass
        return
    raw = _GOSSIP_TYPES[kind % len(_GOSSIP_TYPES)].to_bytes(2, "big") + rest
    validator = GossipValidator(Graph(), REGTEST_CHAIN_HASH)

    def utxo(scid):
        try:
            ann = decode_message(raw)
            return 1_000_000, expected_funding_script_pubkey(ann.bitcoin_key_1, ann.bitcoin_key_2)
        except Exception:
            return None

    validator.check_raw(raw, NOW, utxo)


# --- RPC framer ---------------------------------------------------------------------------------

def rpc_framer(data: bytes) -> None:
    """The same stream fed whole and in fuzzed pieces frames to the same requests (or fails the same way)."""
    if not data:
        return
    step, stream = data[0] or 1, data[1:]
    stream = stream[:step * 256]   # at most 256 pieces: byte-by-byte feeding of 16 KB would be all the run does

    def run(pieces):
        f = JsonStreamFramer(max_chars=1 << 20)
        out = []
        try:
            for p in pieces:
                out += f.feed(p)
        except FrameError as e:
            out.append(("error", e.code))
        return [x.message if isinstance(x, InvalidRequest) else x for x in out]

    whole = run([stream])
    split = run([stream[i:i + step] for i in range(0, len(stream), step)])
    # A stream cut anywhere frames the same values; an error may come at most earlier or later in the stream.
    if whole and whole[-1] and isinstance(whole[-1], tuple):
        assert split[:len(whole) - 1] == whole[:-1] or split[-1] == whole[-1], (whole, split)
    else:
        assert _same(whole, split), (whole, split)


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


# --- RPC parameters -----------------------------------------------------------------------------

def rpc_params(data: bytes) -> None:
    """Fuzzed JSON params through every built-in command's parameter parser: -32602 or parsed, nothing else."""
    import ampere.rpc.commands  # noqa: F401
    from ampere.rpc.params import parse_params
    from ampere.rpc.registry import COMMANDS

    try:
        values = JsonStreamFramer(max_chars=1 << 16).feed(data + b" ")
    except FrameError:
        return
    if not values or isinstance(values[0], InvalidRequest):
        return
    for name in sorted(COMMANDS):
        cmd = COMMANDS[name]
        if cmd.raw:
            continue
        try:
            parse_params(values[0], cmd.params, cmd.allow_extra)
        except RpcError:
            pass


# --- channel opening (peer amounts) -------------------------------------------------------------

def _template_open() -> m.OpenChannel:
    step = opening.open_channel(LocalChannelSigner(PEER_KEY), temporary_channel_id=b"\x07" * 32,
                                chain_hash=REGTEST_CHAIN_HASH, funding_sat=200_000, push_msat=0,
                                feerate_per_kw=1000,
                                ours=opening.LocalParams(shutdown_scriptpubkey=b"\x00\x14" + b"\xaa" * 20))
    return step.messages[0]


_OPEN = None
_AMOUNT_FIELDS = ["funding_satoshis", "push_msat", "dust_limit_satoshis", "max_htlc_value_in_flight_msat",
                  "channel_reserve_satoshis", "htlc_minimum_msat", "feerate_per_kw", "to_self_delay",
                  "max_accepted_htlcs"]
_WIDTH = {"feerate_per_kw": 4, "to_self_delay": 2, "max_accepted_htlcs": 2}


def open_channel(data: bytes) -> None:
    """A peer's open_channel with fuzzed amounts (or fuzzed bytes), answered, then a funding_created: an error
    step or a channel, never an exception (the 2^63-sat finding: OverflowError at funding_created)."""
    global _OPEN
    if _OPEN is None:
        _OPEN = _template_open()
    msg = _OPEN
    if data[:1] == b"\xff":
        try:
            msg = decode_message(b"\x00\x20" + data[1:])
        except WireError:
            return
        if not isinstance(msg, m.OpenChannel):
            return
    else:
        pos = 0
        changes = {}
        while pos + 1 < len(data):
            name = _AMOUNT_FIELDS[data[pos] % len(_AMOUNT_FIELDS)]
            width = _WIDTH.get(name, 8)
            chunk = data[pos + 1:pos + 1 + width]
            pos += 1 + width
            changes[name] = int.from_bytes(chunk, "big")
        msg = replace(msg, **changes)
    policy = opening.OpenPolicy(chain_hash=REGTEST_CHAIN_HASH, max_feerate_per_kw=(1 << 32) - 1,
                                max_reserve_percent=100, max_to_self_delay=0xFFFF)
    signer = LocalChannelSigner(NODE_KEY)
    step = opening.on_open_channel(signer, msg, opening.LocalParams(shutdown_scriptpubkey=b"\x00\x14" + b"\xbb" * 20),
                                   policy)
    if step.error is not None:
        return
    created = m.FundingCreated(temporary_channel_id=msg.temporary_channel_id, funding_txid=b"\x33" * 32,
                               funding_output_index=0, signature=b"\x01" * 64)
    step.state.on_funding_created(signer, created)


# --- BOLT 12 offers and onion messages ------------------------------------------------------------

_B12_HRPS = ["lno", "lnr", "lni"]


def offers(data: bytes) -> None:
    """BOLT 12 strings (raw text, or fuzzed TLV bytes in the string form), the three parsers on raw TLVs, and an
    onion message to us (peeled with our key)."""
    from ampere.ln import offers as b12
    from ampere.ln.offers.encoding import Bolt12StringError, encode_bolt12_string
    from ampere.ln.onion_message import OnionMessageError, peel_onion_message

    if not data:
        return
    mode, rest = data[0] % 6, data[1:]
    try:
        if mode == 0:
            b12.decode_string(rest.decode("latin-1"))
        elif mode == 1:
            b12.decode_string(encode_bolt12_string(_B12_HRPS[len(rest) % 3], rest))
        elif mode == 2:
            b12.parse_offer(rest)
        elif mode == 3:
            b12.parse_invoice_request(rest)
        elif mode == 4:
            b12.parse_invoice(rest)
        else:
            try:
                msg = decode_message(b"\x02\x01" + rest)
            except WireError:
                return
            if isinstance(msg, m.OnionMessage):
                peel_onion_message(NODE_KEY, msg)
    except (b12.Bolt12Error, Bolt12StringError, OnionMessageError, WireError):
        return


TARGETS = {
    "wire": wire,
    "bolt11": bolt11_decode,
    "onion": onion_peel,
    "bolt8": bolt8,
    "gossip": gossip,
    "rpc_framer": rpc_framer,
    "rpc_params": rpc_params,
    "open_channel": open_channel,
    "offers": offers,
}
