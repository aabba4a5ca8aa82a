from __future__ import annotations

import pytest

from ampere.wire import bolt1
from ampere.wire.bolt1 import (
    ALL_CHANNELS,
    NetworkMismatchError,
    PingTracker,
    address_descriptor,
    chain_hash,
    check_init,
    check_unknown_message,
    interpret_error,
    make_error,
    make_init,
    make_warning,
    parse_address_descriptor,
    respond_to_ping,
)
from ampere.wire.codec import UnknownMessage, decode_message, encode_message
from ampere.wire.errors import Action, FeatureError, ProtocolError, UnknownEvenMessageError
from ampere.wire.features import INIT_FEATURES, Features
from ampere.wire.messages import Error, Init, InitTlvs, Ping, Pong, Warning

REGTEST = chain_hash("regtest")


def test_chain_hashes_are_in_wire_order():
    assert REGTEST.hex() == "06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f"
    assert chain_hash("bitcoin").hex().endswith("0000000000")
    assert bolt1.network_of(REGTEST) == "regtest"
    assert len({chain_hash(n) for n in ("bitcoin", "testnet", "testnet4", "signet", "regtest")}) == 5
    with pytest.raises(ValueError):
        chain_hash("litecoin")


def test_make_init_round_trips_and_splits_global_bits():
    addr = address_descriptor("203.0.113.5", 9735)
    init = make_init(INIT_FEATURES, [REGTEST], remote_addr=addr)
    assert Features.from_bytes(init.features) == INIT_FEATURES
    assert all(bit < 14 for bit in Features.from_bytes(init.globalfeatures))
    raw = encode_message(init)
    back = decode_message(raw)
    assert back == init and back.tlvs.networks == (REGTEST,) and back.tlvs.remote_addr == addr
    peer = check_init(back, INIT_FEATURES, [REGTEST])
    assert peer.features == INIT_FEATURES and peer.remote_addr == addr


def test_address_descriptors():
    assert address_descriptor("203.0.113.5", 9735).hex() == "01cb0071052607"
    v6 = address_descriptor("2001:db8::1", 19846)
    assert v6[0] == 2 and len(v6) == 19
    assert parse_address_descriptor(v6) == ("2001:db8::1", 19846)
    assert parse_address_descriptor(address_descriptor("::ffff:10.0.0.1", 1)) == ("10.0.0.1", 1)
    assert address_descriptor("/tmp/l2/peer", 0) is None
    assert parse_address_descriptor(b"\x05abc") is None


def _init(features: Features, networks=None) -> Init:
    return Init(globalfeatures=b"", features=features.to_bytes(), tlvs=InitTlvs(networks=networks))


def test_check_init_rejects_unknown_even_bits():
    with pytest.raises(FeatureError) as info:
        check_init(_init(INIT_FEATURES | Features.from_bit_list([98])), INIT_FEATURES, [REGTEST])
    assert info.value.action is Action.DISCONNECT and "98" in str(info.value)
    # Unknown odd bits are ignored, and the two bitmaps are ORed.
    init = Init(globalfeatures=b"\x02", features=Features.from_bit_list([99]).to_bytes())
    peer = check_init(init, INIT_FEATURES, [REGTEST])
    assert peer.features.is_set(1) and peer.features.is_set(99) and peer.networks is None


def test_check_init_dependencies():
    with pytest.raises(FeatureError, match="basic_mpp needs payment_secret"):
        check_init(_init(Features.from_names(optional=["basic_mpp"])), INIT_FEATURES, [REGTEST])


def test_check_init_networks():
    check_init(_init(INIT_FEATURES, networks=(chain_hash("bitcoin"), REGTEST)), INIT_FEATURES, [REGTEST])
    with pytest.raises(NetworkMismatchError) as info:
        check_init(_init(INIT_FEATURES, networks=(chain_hash("bitcoin"),)), INIT_FEATURES, [REGTEST])
    err = info.value.error_message
    assert isinstance(err, Error) and err.channel_id == ALL_CHANNELS and b"regtest" in err.data
    assert info.value.action is Action.DISCONNECT
    # An empty `networks` has no common chain either.
    with pytest.raises(NetworkMismatchError):
        check_init(_init(INIT_FEATURES, networks=()), INIT_FEATURES, [REGTEST])


def test_ping_replies():
    assert respond_to_ping(Ping(num_pong_bytes=10, ignored=b"xyz")) == Pong(ignored=bytes(10))
    assert respond_to_ping(Ping(num_pong_bytes=65531, ignored=b"")) == Pong(ignored=bytes(65531))
    assert respond_to_ping(Ping(num_pong_bytes=65532, ignored=b"")) is None
    assert respond_to_ping(Ping(num_pong_bytes=65535, ignored=b"")) is None


def test_ping_tracker():
    tracker = PingTracker(timeout=30, num_pong_bytes=8)
    ping = tracker.make_ping(now=100.0)
    assert ping == Ping(num_pong_bytes=8, ignored=b"")
    assert tracker.make_ping(now=101.0) is None  # one in flight at a time
    assert not tracker.is_overdue(129.0) and tracker.is_overdue(131.0)
    assert tracker.on_pong(Pong(ignored=bytes(8)), now=100.5) == pytest.approx(0.5)
    assert not tracker.outstanding and not tracker.is_overdue(1000.0)
    with pytest.raises(ProtocolError):
        tracker.on_pong(Pong(ignored=bytes(8)), now=101.0)  # unsolicited
    tracker.make_ping(now=200.0)
    with pytest.raises(ProtocolError) as info:
        tracker.on_pong(Pong(ignored=bytes(7)), now=200.1)  # wrong length
    assert info.value.action is Action.DISCONNECT
    with pytest.raises(ValueError):
        PingTracker(timeout=1, num_pong_bytes=65532)


def test_error_and_warning_helpers():
    err = make_error("boom")
    assert interpret_error(err).all_channels and interpret_error(err).is_error
    chan = bytes([1]) * 32
    warn = make_warning(b"\x00\x01bad", channel_id=chan)
    complaint = interpret_error(warn)
    assert not complaint.is_error and complaint.channel_id == chan
    assert complaint.text == "hex:000162616" + "4"  # not printable: shown as hex
    assert interpret_error(decode_message(encode_message(Warning(channel_id=ALL_CHANNELS, data=b"ok")))).text == "ok"


def test_odd_even_rule():
    assert check_unknown_message(UnknownMessage(0x8001, b"")) is Action.IGNORE
    with pytest.raises(UnknownEvenMessageError) as info:
        check_unknown_message(UnknownMessage(0x8000, b""))
    assert info.value.action is Action.DISCONNECT and info.value.msg_type == 0x8000
