"""Notification topics and their subscribers.

cln-interfaces.md 1.5 and 3 (lightningd/plugin.c plugins_notify, notification.c):
* native topics are lightningd's `REGISTER_NOTIFICATION` list; plugins may declare custom topics
  in their manifest `notifications` (registering a native name is an error);
* delivery goes to every subscriber in state INIT_COMPLETE (earlier ones miss it);
* `"*"` subscribers receive everything except `log`;
* native payloads are wrapped in an object named after the topic:
  `{"jsonrpc":"2.0","method":T,"params":{T:{...}}}`;
* a plugin's custom notification is re-emitted verbatim with `origin`:
  `{"jsonrpc":"2.0","method":T,"origin":"<sender shortname>","params":<sender's params>}`
  (the docs' `params:{origin,payload}` form is stale).

Each message is serialised once and the same bytes go to every subscriber.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Protocol

NATIVE_TOPICS = frozenset({
    "connect", "disconnect", "warning", "custommsg", "onionmessage_forward_fail",
    "invoice_payment", "invoice_creation", "channel_opened", "channel_state_changed",
    "forward_event", "sendpay_success", "sendpay_failure", "coin_movement", "balance_snapshot",
    "block_added", "openchannel_peer_sigs", "channel_open_failed", "shutdown",
    "deprecated_oneshot", "log", "plugin_started", "plugin_stopped",
})

WILDCARD = "*"


class Subscriber(Protocol):
    @property
    def ready(self) -> bool: ...  # INIT_COMPLETE and alive

    def send_raw(self, data: bytes) -> None: ...


def _c_encoder(ensure_ascii: bool) -> Any:
    """`json.JSONEncoder(ensure_ascii=...).encode`, the same text, without its two Python-level frames and
    the C encoder it builds anew for every message (a plugin method call encodes one message each way):
    the C encoder is built once, without the circular-reference check (our messages are trees; a cycle
    would raise RecursionError rather than ValueError)."""
    c_make = getattr(json.encoder, "c_make_encoder", None)
    if c_make is None:  # no C accelerator: json's own path
        return json.JSONEncoder(ensure_ascii=ensure_ascii).encode

    def default(o: Any) -> Any:
        raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")
    encode_str = json.encoder.c_encode_basestring_ascii if ensure_ascii else json.encoder.c_encode_basestring
    chunks = c_make(None, default, encode_str, None, ": ", ", ", False, False, True)
    join = "".join
    return lambda obj: join(chunks(obj, 0))


_encode_utf8 = _c_encoder(False)
_encode_ascii = _c_encoder(True)


def encode(message: dict) -> bytes:
    """A message to a plugin: JSON followed by the blank line pyln-client splits on."""
    try:
        return _encode_utf8(message).encode() + b"\n\n"
    except UnicodeEncodeError:
        # A lone surrogate (a client's "\\ud800", passed on as received): escaped JSON is still exact.
        return _encode_ascii(message).encode() + b"\n\n"


def native_message(topic: str, payload: dict) -> dict:
    return {"jsonrpc": "2.0", "method": topic, "params": {topic: payload}}


def custom_message(topic: str, origin: str, params: Any) -> dict:
    return {"jsonrpc": "2.0", "method": topic, "origin": origin, "params": params}


class NotificationBus:
    def __init__(self) -> None:
        self._subs: dict[str, list[Subscriber]] = {}
        self._custom: dict[str, list[Any]] = {}  # topic -> plugins that declared it

    # -- registrations
    def add_topics(self, plugin: Any, topics: Iterable[str]) -> None:
        for t in topics:
            self._custom.setdefault(t, []).append(plugin)

    def subscribe(self, plugin: Subscriber, topics: Iterable[str]) -> None:
        for t in topics:
            lst = self._subs.setdefault(t, [])
            if plugin not in lst:
                lst.append(plugin)

    def remove_plugin(self, plugin: Any) -> None:
        for t in list(self._subs):
            self._subs[t] = [p for p in self._subs[t] if p is not plugin]
            if not self._subs[t]:
                del self._subs[t]
        for t in list(self._custom):
            self._custom[t] = [p for p in self._custom[t] if p is not plugin]
            if not self._custom[t]:
                del self._custom[t]

    # -- queries
    def topic_known(self, topic: str) -> bool:
        """notifications_have_topic: native, or declared by some plugin."""
        return topic in NATIVE_TOPICS or topic in self._custom

    def subscribed(self, plugin: Any, topic: str) -> bool:
        if plugin in self._subs.get(topic, ()):
            return True
        return topic != "log" and plugin in self._subs.get(WILDCARD, ())

    def anyone_cares(self, topic: str) -> bool:
        if topic in self._subs:
            return True
        # Wildcards cover everything except "log".
        return topic != "log" and WILDCARD in self._subs

    def subscribers(self, topic: str) -> list[Subscriber]:
        out = list(self._subs.get(topic, ()))
        if topic != "log":
            out.extend(p for p in self._subs.get(WILDCARD, ()) if p not in out)
        return out

    # -- delivery
    def publish(self, topic: str, message: dict) -> int:
        """Send `message` to the ready subscribers of `topic`; returns how many got it."""
        if not self.anyone_cares(topic):
            return 0
        targets = [p for p in self.subscribers(topic) if p.ready]
        if not targets:
            return 0
        data = encode(message)
        for p in targets:
            p.send_raw(data)
        return len(targets)

    def notify(self, topic: str, payload: dict) -> int:
        """A native notification, wrapped as `{topic: payload}`."""
        if not self.anyone_cares(topic):
            return 0
        return self.publish(topic, native_message(topic, payload))
