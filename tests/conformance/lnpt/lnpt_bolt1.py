"""BOLT 1 against ampd: init and feature negotiation, ping/pong, unknown messages."""
from typing import Any

from lnprototest import Connect, Disconnect, ExpectMsg, Msg, RawMsg, Runner, \
    bitfield, has_bit
from lnprototest.event import MustNotMsg
from lnprototest.stash import rcvd
from lnprototest.utils import run_runner
from lnpt_events import ExpectHangup


def init_exchange(runner: Runner, features: str = "", conn: str = "03") -> list:
    return [Connect(connprivkey=conn), ExpectMsg("init"),
            Msg("init", globalfeatures=runner.runner_features(globals=True), features=features)]


def _required_bits_known(event: Any, msg: Any, runner: Runner) -> None:
    # BOLT #9: the node offers static_remotekey (ours are always on) and var_onion_optin as required or optional.
    feats = msg.fields["features"]
    for bit in (8, 12):
        if not (has_bit(feats, bit) or has_bit(feats, bit + 1)):
            raise AssertionError(f"feature {bit}/{bit + 1} not offered: {feats.hex()}")


def test_init_echo_features_ping_unknown_odd(runner: Runner) -> None:
    run_runner(runner, [
        # BOLT #1: unknown odd feature bits are ignored: the connection goes on (a ping is answered).
        *init_exchange(runner, features=bitfield(99)),
        Msg("ping", num_pong_bytes=1, ignored=""),
        ExpectMsg("pong", ignored="00"),
        Disconnect(),
        # BOLT #1: the node must accept its own features echoed back (the second connection echoes them).
        Connect(connprivkey="02"),
        ExpectMsg("init", if_match=_required_bits_known),
        Msg("init", globalfeatures=rcvd(), features=rcvd()),
        # BOLT #1: "if num_pong_bytes is less than 65532: MUST respond by sending a pong message, with byteslen
        # equal to num_pong_bytes" (zeros; the ping's own padding does not matter).
        Msg("ping", num_pong_bytes=10, ignored="ff" * 8),
        ExpectMsg("pong", ignored="00" * 10),
        # "otherwise (num_pong_bytes is not less than 65532): MUST ignore the ping": the first pong seen next is
        # the 2-byte one, and none other comes afterwards (MustNotMsg holds until the connection ends).
        Msg("ping", num_pong_bytes=65532, ignored=""),
        Msg("ping", num_pong_bytes=2, ignored=""),
        ExpectMsg("pong", ignored="0000"),
        MustNotMsg("pong"),
        Msg("ping", num_pong_bytes=65535, ignored=""),
        # BOLT #1: "upon receiving a message of _odd_, unknown type: MUST ignore the received message."  (At the
        # end the runner checks the node sent no error and was still connected.)
        RawMsg(bytes.fromhex("270F") + b"junk"),
    ])


def test_init_unknown_even_feature_disconnects(runner: Runner) -> None:
    # BOLT #1: "upon receiving unknown _even_ feature bits that are non-zero: MUST fail the connection."
    run_runner(runner, [
        Connect(connprivkey="03"), ExpectMsg("init"),
        Msg("init", globalfeatures="", features=bitfield(98)),
        ExpectHangup(),
    ])


def test_unknown_even_message_disconnects(runner: Runner) -> None:
    # BOLT #1: "upon receiving a message of _even_, unknown type: MUST close the connection."
    run_runner(runner, [
        *init_exchange(runner),
        RawMsg(bytes.fromhex("2710")),
        ExpectHangup(),
    ])


def test_message_before_init_is_refused(runner: Runner) -> None:
    # BOLT #1: "The sending node: MUST send init as the first Lightning message for any connection."  A node
    # receiving something else first fails the connection (a warning or error first, or a hang-up).
    run_runner(runner, [
        Connect(connprivkey="03"), ExpectMsg("init"),
        Msg("ping", num_pong_bytes=1, ignored=""),
        ExpectHangup(),
    ])
