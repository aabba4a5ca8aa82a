"""BOLT #1 peer protocol logic without I/O: building and checking `init`, the ping/pong policy,
`error`/`warning` helpers, and the odd/even rule for unknown messages.

The runtime owns the sockets and the clock; it calls these functions with messages and the current
time, and carries out what they return (or the `Action` of what they raise).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from .codec import UnknownMessage
from .errors import Action, FeatureError, ProtocolError, UnknownEvenMessageError, WireError
from .features import Features
from .messages import Error, Init, InitTlvs, Ping, Pong, Warning

# Genesis block hashes in display order (as bitcoind prints them).  BOLT #0: `chain_hash` is "the
# hash of the genesis block", on the wire in Bitcoin's internal byte order, i.e. reversed.
GENESIS_HASHES_DISPLAY: dict[str, str] = {
    "bitcoin": "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
    "testnet": "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943",
    "testnet4": "00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043",
    "signet": "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6",
    "regtest": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
}
CHAIN_HASHES: dict[str, bytes] = {net: bytes.fromhex(h)[::-1] for net, h in GENESIS_HASHES_DISPLAY.items()}

ALL_CHANNELS = bytes(32)  # BOLT #1: a `channel_id` of all zeroes "refers to all channels"

# BOLT #1 ping/pong: a ping asks for `num_pong_bytes`; 65532 and above means "no reply wanted".
PONG_NO_REPLY_THRESHOLD = 65532


def chain_hash(network: str) -> bytes:
    """The wire `chain_hash` of a network name as CLN spells them ("bitcoin", "regtest", ...)."""
    try:
        return CHAIN_HASHES[network]
    except KeyError:
        raise ValueError(f"unknown network {network!r}") from None


def network_of(chain: bytes) -> str | None:
    for name, value in CHAIN_HASHES.items():
        if value == chain:
            return name
    return None


# ---------------------------------------------------------------------------------------------
# init


def address_descriptor(host: str, port: int) -> bytes | None:
    """BOLT #7 address descriptor for an IP address (type 1 IPv4, type 2 IPv6), or None for
    anything else (unix sockets, hostnames): `remote_addr` is only for IP connections."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    kind = 1 if ip.version == 4 else 2
    return bytes([kind]) + ip.packed + port.to_bytes(2, "big")


def parse_address_descriptor(data: bytes) -> tuple[str, int] | None:
    """(host, port) of an IPv4/IPv6 descriptor, None for other types or malformed data."""
    if len(data) == 7 and data[0] == 1:
        return str(ipaddress.IPv4Address(data[1:5])), int.from_bytes(data[5:7], "big")
    if len(data) == 19 and data[0] == 2:
        return str(ipaddress.IPv6Address(data[1:17])), int.from_bytes(data[17:19], "big")
    return None


def make_init(features: Features, chains: Sequence[bytes], remote_addr: bytes | None = None) -> Init:
    """Our `init`.

    BOLT #1: the sender "SHOULD NOT set features greater than 13 in `globalfeatures`" -- we copy
    bits 0-13 there for old peers (as CLN does) and send all bits in `features`; "SHOULD set
    `networks` to all chains it will gossip or open channels for"; "SHOULD set `remote_addr` to
    reflect the remote IP address (and port) of an incoming connection".
    """
    global_features = Features(features.bits & ((1 << 14) - 1))
    return Init(
        globalfeatures=global_features.to_bytes(),
        features=features.to_bytes(),
        tlvs=InitTlvs(networks=tuple(chains), remote_addr=remote_addr),
    )


@dataclass(frozen=True)
class PeerInit:
    """What we learnt from a peer's acceptable `init`."""

    features: Features  # globalfeatures | features
    networks: tuple[bytes, ...] | None  # None if the peer sent no `networks`
    remote_addr: bytes | None  # how the peer sees us (a BOLT #7 address descriptor)


class NetworkMismatchError(WireError):
    """The peer's `networks` has none of ours.  BOLT #1: "upon receiving `networks` containing no
    common chains: MAY close the connection" -- we do, after sending an `error` (`error_message`)."""

    action = Action.DISCONNECT

    def __init__(self, message: str, error_message: Error) -> None:
        super().__init__(message)
        self.error_message = error_message


def check_init(init: Init, our_features: Features, our_chains: Sequence[bytes]) -> PeerInit:
    """Validate a peer's `init` against our features and chains.

    Raises FeatureError (disconnect) or NetworkMismatchError (send its `error_message`, disconnect).
    """
    # BOLT #1: "MUST combine (bitwise OR) the two feature bitmaps into one logical `features` map."
    theirs = Features.from_bytes(init.globalfeatures) | Features.from_bytes(init.features)
    # BOLT #1: "upon receiving unknown _even_ feature bits that are non-zero: MUST close the connection."
    unknown = theirs.unknown_even_bits(our_features)
    if unknown:
        raise FeatureError(f"peer requires features we do not support: bits {unknown}")
    # BOLT #1: "if the feature vector does not set all known, transitive dependencies: MUST close"
    missing = theirs.missing_dependencies()
    if missing:
        raise FeatureError("peer features miss dependencies: " + ", ".join(f"{f} needs {d}" for f, d in missing))
    networks = init.tlvs.networks
    if networks is not None and not set(networks) & set(our_chains):
        text = "No common chain: we are on " + ", ".join(network_of(c) or c.hex() for c in our_chains)
        raise NetworkMismatchError(text, make_error(text))
    return PeerInit(features=theirs, networks=networks, remote_addr=init.tlvs.remote_addr)


# ---------------------------------------------------------------------------------------------
# error and warning


def make_error(text: str | bytes, channel_id: bytes = ALL_CHANNELS) -> Error:
    data = text.encode() if isinstance(text, str) else bytes(text)
    return Error(channel_id=channel_id, data=data)


def make_warning(text: str | bytes, channel_id: bytes = ALL_CHANNELS) -> Warning:
    data = text.encode() if isinstance(text, str) else bytes(text)
    return Warning(channel_id=channel_id, data=data)


def printable_text(data: bytes) -> str:
    """BOLT #1: "if `data` is not composed solely of printable ASCII characters (... byte values 32
    through 126, inclusive): SHOULD NOT print out `data` verbatim" -- such data is shown as hex."""
    if all(32 <= b <= 126 for b in data):
        return data.decode("ascii")
    return "hex:" + data.hex()


@dataclass(frozen=True)
class PeerComplaint:
    """A received `error` or `warning`, ready to log or act on."""

    is_error: bool
    channel_id: bytes | None  # None: all channels with this peer
    text: str  # printable

    @property
    def all_channels(self) -> bool:
        return self.channel_id is None


def interpret_error(msg: Error | Warning) -> PeerComplaint:
    """BOLT #1: upon receiving `error` "if `channel_id` is all zero: MUST fail all channels with the
    sending node; otherwise: MUST fail the channel referred to by `channel_id`"; upon `warning`
    "SHOULD log the message".  The caller ignores a complaint about a channel it does not have."""
    channel = None if msg.channel_id == ALL_CHANNELS else msg.channel_id
    return PeerComplaint(is_error=isinstance(msg, Error), channel_id=channel, text=printable_text(msg.data))


# ---------------------------------------------------------------------------------------------
# ping and pong


def respond_to_ping(ping: Ping) -> Pong | None:
    """BOLT #1: "if `num_pong_bytes` is less than 65532: MUST respond by sending a `pong` message,
    with `byteslen` equal to `num_pong_bytes`. otherwise: MUST ignore the `ping`."  The pong's
    `ignored` is zeroes ("SHOULD set `ignored` to 0s")."""
    if ping.num_pong_bytes >= PONG_NO_REPLY_THRESHOLD:
        return None
    return Pong(ignored=bytes(ping.num_pong_bytes))


class PingTracker:
    """Our side of keepalive: one ping in flight at a time, a deadline for its pong.

    The runtime calls `make_ping(now)` on its timer and sends what it returns, `on_pong` for each
    pong, and `is_overdue(now)` to decide to disconnect (BOLT #1: if it "doesn't receive a
    corresponding `pong`: MAY close the network connection, and MUST NOT fail the channels").
    """

    def __init__(self, timeout: float, num_pong_bytes: int = 0) -> None:
        if not 0 <= num_pong_bytes < PONG_NO_REPLY_THRESHOLD:
            raise ValueError("num_pong_bytes must ask for a reply")
        self.timeout = timeout
        self.num_pong_bytes = num_pong_bytes
        self._sent_at: float | None = None
        self._expected_len = 0
        self.last_rtt: float | None = None

    @property
    def outstanding(self) -> bool:
        return self._sent_at is not None

    def make_ping(self, now: float, num_pong_bytes: int | None = None) -> Ping | None:
        """A ping to send now, or None while one is still in flight."""
        if self._sent_at is not None:
            return None
        n = self.num_pong_bytes if num_pong_bytes is None else num_pong_bytes
        if not 0 <= n < PONG_NO_REPLY_THRESHOLD:
            raise ValueError("num_pong_bytes must ask for a reply")
        self._sent_at, self._expected_len = now, n
        # BOLT #1: "SHOULD set `ignored` to 0s."
        return Ping(num_pong_bytes=n, ignored=b"")

    def on_pong(self, pong: Pong, now: float) -> float:
        """Match a pong to our ping; returns the round-trip time.

        BOLT #1: "if `byteslen` does not correspond to any `ping`'s `num_pong_bytes` value it has
        sent: MAY close the connection" -- an unsolicited or wrong-length pong raises ProtocolError.
        """
        if self._sent_at is None:
            raise ProtocolError("unsolicited pong")
        if len(pong.ignored) != self._expected_len:
            raise ProtocolError(f"pong of {len(pong.ignored)} bytes, our ping asked for {self._expected_len}")
        rtt = now - self._sent_at
        self._sent_at = None
        self.last_rtt = rtt
        return rtt

    def is_overdue(self, now: float) -> bool:
        return self._sent_at is not None and now - self._sent_at > self.timeout


# ---------------------------------------------------------------------------------------------
# unknown messages


def check_unknown_message(msg: UnknownMessage) -> Action:
    """BOLT #1: "upon receiving a message of _odd_, unknown type: MUST ignore the received message.
    upon receiving a message of _even_, unknown type: MUST close the connection."

    Returns IGNORE for odd types (the runtime may still hand them to a `custommsg` hook); raises
    UnknownEvenMessageError (action DISCONNECT) for even ones.
    """
    if msg.type % 2 == 0:
        raise UnknownEvenMessageError(msg.type)
    return Action.IGNORE
