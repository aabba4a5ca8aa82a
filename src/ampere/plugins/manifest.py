"""A plugin's `getmanifest` answer, parsed and checked as lightningd does, and typed option values.

cln-interfaces.md 1.2 (getmanifest) and 1.3 (options).  The order of checks and the error strings
follow lightningd/plugin.c (`plugin_parse_getmanifest_response`, `plugin_opt_add`,
`plugin_rpcmethod_add`): a returned error string kills the plugin with that message.

Cross-plugin checks (an option or method name already taken, feature bits already set, hook
names and filters) need the host's registries and live in host.py / hooks.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

OPTION_TYPES = ("string", "string-conceal", "int", "bool", "flag")
# Feature placements a plugin may extend (common/features.c feature_place_names; the obsolete
# global-init slot is not settable).
FEATURE_PLACES = ("init", "node", "channel", "invoice", "bolt12_offer", "bolt12_invreq",
                  "bolt12_invoice", "channel_type")

_OPTION_NAME = re.compile(r"[0-9a-z_-]+\Z")
_VERSION = re.compile(r"v?\d+\.\d+(\.\d+)?\Z")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ManifestError(Exception):
    """The plugin's manifest is unacceptable; the message is what lightningd would log."""


class OptionValueError(ValueError):
    """A bad value for a plugin option.

    str(e) is lightningd's full message (`--int_opt=notok: 'notok' is not a number`);
    `reason` is the part after the colon.
    """

    def __init__(self, name: str, raw: str | None, reason: str) -> None:
        label = f"--{name}" if raw is None else f"--{name}={raw}"
        super().__init__(f"{label}: {reason}")
        self.reason = reason


@dataclass
class PluginOption:
    name: str
    type: str  # string | string-conceal | int | bool | flag
    description: str
    default: Any = None  # typed default, None when the plugin gave none
    multi: bool = False
    dynamic: bool = False
    deprecated: bool = False
    plugin: str = ""  # canonical path of the declaring plugin

    @property
    def takes_arg(self) -> bool:
        return self.type != "flag"


@dataclass
class PluginMethodSpec:
    name: str
    usage: str
    description: str = ""
    deprecated: bool = False


@dataclass
class HookRequest:
    """One entry of `hooks`: a name, ordering constraints and raw filters (checked by hooks.py)."""

    name: str
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    filters: Any = None  # None when absent


@dataclass
class Manifest:
    disabled: str | None = None
    dynamic: bool = False
    featurebits: dict[str, int] = field(default_factory=dict)  # place -> bit mask
    custommessages: list[int] = field(default_factory=list)
    cancheck: bool = False
    notifications: list[str] = field(default_factory=list)
    options: list[PluginOption] = field(default_factory=list)
    methods: list[PluginMethodSpec] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    hooks: list[HookRequest] = field(default_factory=list)


def _dump(value: Any) -> str:
    import json

    return json.dumps(value)


def _raw_token(value: Any) -> str:
    """What lightningd's json_strdup gives for a token: strings without quotes, others as JSON."""
    return value if isinstance(value, str) else _dump(value)


def _bool_setting(obj: dict, key: str, what: str) -> bool:
    if key not in obj:
        return False
    val = obj[key]
    if not isinstance(val, bool):
        raise ManifestError(f'{what}: invalid "{key}" field {_dump(val)}')
    return val


def _parse_deprecated(value: Any) -> bool:
    """`deprecated`: a bool, or ["vSTART"] / ["vSTART", "vEND"] (plugin.c json_parse_deprecated)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        raise ManifestError(f'"deprecated" must be an array of 1 or 2 elements, not {_dump(value)}')
    for i, v in enumerate(value):
        if not isinstance(v, str) or not _VERSION.match(v):
            which = "start" if i == 0 else "end"
            raise ManifestError(f'invalid "deprecated" {which} version {_raw_token(v)}')
    return True


# ---------------------------------------------------------------------------------------------
# Option values (ccan/opt helpers as lightningd uses them)


def parse_c_long(text: str) -> int:
    """strtol(text, &end, 0) accepting the whole string, as ccan's opt_set_longval does.

    Raises ValueError with ccan's reason ("'x' is not a number" / "'x' is out of range").
    """
    s = text.lstrip(" \t\n\r\f\v")
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    base = 10
    digits = s
    if s[:2].lower() == "0x" and len(s) > 2:
        base, digits = 16, s[2:]
    elif s.startswith("0") and len(s) > 1:
        base, digits = 8, s[1:]
    ok = bool(digits) and all(c in "0123456789abcdef"[:base] for c in digits.lower())
    if not text or not ok:
        raise ValueError(f"'{text}' is not a number")
    value = sign * int(digits, base)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"'{text}' is out of range")
    return value


def parse_option_value(option: PluginOption, raw: Any, *, allow_deprecated_apis: bool = True) -> Any:
    """One textual value (as given on the command line or in a config file) to the option's type.

    `raw` is a string, or None for `--name` without `=value`.  Values that are already typed
    (int for int options, bool for bool/flag options) are accepted as they are.
    Raises OptionValueError with lightningd's message.
    """
    name = option.name
    shown = raw if isinstance(raw, str) or raw is None else _raw_token(raw)
    if option.deprecated and not allow_deprecated_apis:
        raise OptionValueError(name, shown, "deprecated option (will be removed!)")
    if option.type == "flag":
        # ccan/opt: a flag given an argument is an error; `True` means "given".
        if raw is None or raw is True:
            return True
        raise OptionValueError(name, shown, "doesn't allow an argument")
    if raw is None:
        raise OptionValueError(name, None, "requires an argument")
    if option.type == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            if not INT64_MIN <= raw <= INT64_MAX:
                raise OptionValueError(name, shown, f"'{raw}' is out of range")
            return raw
        try:
            return parse_c_long(str(raw))
        except ValueError as e:
            raise OptionValueError(name, shown, str(e)) from None
    if option.type == "bool":
        if isinstance(raw, bool):
            return raw
        # ccan opt_set_bool_arg: yes/true/no/false, case-insensitive; 1/0 rejected
        # (tests/test_plugin.py::test_option_types: "--bool_opt=1: Invalid argument '1'").
        low = str(raw).lower()
        if low in ("yes", "true"):
            return True
        if low in ("no", "false"):
            return False
        raise OptionValueError(name, shown, f"Invalid argument '{raw}'")
    # string, string-conceal
    return raw if isinstance(raw, str) else _raw_token(raw)


def _parse_option(obj: Any, path: str) -> PluginOption:
    if not isinstance(obj, dict) or "name" not in obj or "type" not in obj or "description" not in obj:
        raise ManifestError('An option is missing either "name", "description" or "type"')
    name = _raw_token(obj["name"])
    if not _OPTION_NAME.match(name):
        raise ManifestError("Option \"name\" must be lowercase alphanumeric, plus _ or -'")
    description = _raw_token(obj["description"])
    deprecated = _parse_deprecated(obj.get("deprecated"))
    multi = _bool_setting(obj, "multi", f"--{name}")
    dynamic = _bool_setting(obj, "dynamic", f"--{name}")
    typ = obj["type"]
    opt = PluginOption(name=name, type="", description=description, multi=multi, dynamic=dynamic,
                       deprecated=deprecated, plugin=path)
    if typ == "flag":
        if "default" in obj:
            # "We used to allow (ignore) anything, now make sure it's 'false'"
            if obj["default"] is not False:
                raise ManifestError(f"--{name} type flag default must be 'false' not {_dump(obj['default'])}")
        if multi:
            raise ManifestError("flag type cannot be multi")
        opt.type = "flag"
        return opt
    if typ not in ("string", "string-conceal", "int", "bool"):
        raise ManifestError('Only "string", "int", "bool", and "flag" options are supported')
    if typ == "bool" and multi:
        raise ManifestError("bool type cannot be multi")
    opt.type = typ
    default = obj.get("default")
    if default is not None:
        raw_default = _raw_token(default)
        try:
            # Validated with the same parser as a user value ("Invalid default ...").
            opt.default = parse_option_value(opt, raw_default)
        except OptionValueError as e:
            raise ManifestError(f"Invalid default '{raw_default}': {e.reason}") from None
    return opt


def _parse_method(obj: Any) -> PluginMethodSpec:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ManifestError(f'rpcmethod does not have a string "name": {_dump(obj)}')
    if "usage" in obj and not isinstance(obj["usage"], str):
        raise ManifestError(f'"usage" is not a string: {_dump(obj)}')
    if "usage" not in obj:
        raise ManifestError('"usage" not provided by plugin')
    deprecated = _parse_deprecated(obj.get("deprecated"))
    desc = obj.get("description")
    return PluginMethodSpec(obj["name"], obj["usage"], desc if isinstance(desc, str) else "", deprecated)


def _parse_hook(obj: Any) -> HookRequest:
    if isinstance(obj, dict):
        if "name" not in obj:
            raise ManifestError(f"no name in hook obj {_dump(obj)}")
        before = obj.get("before") or []
        after = obj.get("after") or []
        # lightningd ignores non-string entries; we do too.
        return HookRequest(_raw_token(obj["name"]),
                           [b for b in before if isinstance(b, str)] if isinstance(before, list) else [],
                           [a for a in after if isinstance(a, str)] if isinstance(after, list) else [],
                           obj.get("filters"))
    return HookRequest(_raw_token(obj))


def parse_manifest(response: dict, *, path: str, native_topics: frozenset[str]) -> Manifest:
    """Check a `getmanifest` response the way plugin_parse_getmanifest_response does.

    Returns a Manifest (with `disabled` set if the plugin disabled itself) or raises ManifestError.
    """
    result = response.get("result") if isinstance(response, dict) else None
    if not isinstance(result, dict):
        raise ManifestError(f"Invalid/missing result tok in '{_dump(response)}'")
    m = Manifest()
    # "disable" is checked first: any value disables the plugin.
    if "disable" in result:
        m.disabled = _raw_token(result["disable"])
        return m
    m.dynamic = _bool_setting(result, "dynamic", "getmanifest")

    features = result.get("featurebits")
    if features is not None:
        if not isinstance(features, dict):
            raise ManifestError(f"Featurebits returned by plugin is not a valid hexadecimal string: {_dump(features)}")
        have = False
        for place in FEATURE_PLACES:
            if place not in features:
                continue
            tok = features[place]
            try:
                raw = bytes.fromhex(tok) if isinstance(tok, str) and len(tok) % 2 == 0 else None
            except ValueError:
                raw = None
            if raw is None:
                raise ManifestError(f"Featurebits returned by plugin is not a valid hexadecimal string: {_raw_token(tok)}")
            have |= len(raw) > 0
            m.featurebits[place] = int.from_bytes(raw, "big")
        if m.dynamic and have:
            raise ManifestError("Custom featurebits only allows for non-dynamic plugins: "
                                f"dynamic=1, featurebits={_dump(features)}")

    custom = result.get("custommessages")
    if custom is not None:
        if not isinstance(custom, list):
            raise ManifestError(f"custommessages must be array, not '{_dump(custom)}'")
        for i, t in enumerate(custom):
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t <= 0xFFFF:
                raise ManifestError(f"custommessages {i} not a u16: '{_dump(t)}'")
            m.custommessages.append(t)

    if "nonnumericids" in result:
        v = result["nonnumericids"]
        if not isinstance(v, bool):
            raise ManifestError(f"Invalid nonnumericids: {_dump(v)}")
        if not v:
            raise ManifestError("Plugin does not allow nonnumericids")

    if "cancheck" in result:
        v = result["cancheck"]
        if not isinstance(v, bool):
            raise ManifestError(f"Invalid cancheck: {_dump(v)}")
        m.cancheck = v

    # Order as lightningd: notifications, options, rpcmethods, subscriptions, hooks.
    notifs = result.get("notifications")
    if notifs is not None:
        if not isinstance(notifs, list):
            raise ManifestError('"result.notifications" is not an array')
        for i, obj in enumerate(notifs):
            if not isinstance(obj, dict):
                raise ManifestError(f'"result.notifications[{i}]" is not an object')
            meth = obj.get("method")
            if not isinstance(meth, str):
                raise ManifestError(f'"result.notifications[{i}].name" missing or not a string.')
            if meth in native_topics:
                raise ManifestError(f'plugin attempted to register a native notification topic "{meth}", '
                                    "these may however only be sent by lightningd")
            m.notifications.append(meth)

    if "options" not in result:
        raise ManifestError('"result.options" was not found in the manifest')
    if not isinstance(result["options"], list):
        raise ManifestError('"result.options" is not an array')
    seen: set[str] = set()
    for obj in result["options"]:
        opt = _parse_option(obj, path)
        if opt.name in seen:
            raise ManifestError(f'Option "{opt.name}" already registered')
        seen.add(opt.name)
        m.options.append(opt)

    if "rpcmethods" not in result:
        raise ManifestError('"result.rpcmethods" missing')
    if not isinstance(result["rpcmethods"], list):
        raise ManifestError('"result.rpcmethods" is not an array')
    for obj in result["rpcmethods"]:
        m.methods.append(_parse_method(obj))

    subs = result.get("subscriptions")
    if subs is not None:
        if not isinstance(subs, list):
            raise ManifestError('"result.subscriptions" is not an array')
        for i, s in enumerate(subs):
            if not isinstance(s, str):
                raise ManifestError(f"result.subscriptions[{i}] is not a string: '{_dump(s)}'")
            m.subscriptions.append(s)

    hooks = result.get("hooks")
    if hooks is not None:
        if not isinstance(hooks, list):
            raise ManifestError('"result.hooks" is not an array')
        for obj in hooks:
            m.hooks.append(_parse_hook(obj))
    return m

