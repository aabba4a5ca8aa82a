#!/usr/bin/env python3
"""Seed 000's approver: an executable decides about every incoming HTLC.

For each HTLC the node accepts into a channel, the `htlc_accepted` hook asks this plugin; it picks a
*kind* for the HTLC and runs `<approver-dir>/handle_<kind>` if that file exists and is executable.
The script gets the HTLC as one JSON object on stdin:

    {"kind": "tlv_65537", "payment_hash": "...", "amount_msat": 100000, "cltv_expiry": 250,
     "cltv_expiry_relative": 40, "incoming_short_channel_id": "103x1x0", "htlc_id": 3,
     "payload": "<the hop payload, hex>", "tlvs": {"2": "...", "65537": "..."},
     "onion": {... the hook's onion object ...}, "invoice": {... listinvoices entry ...} or null}

and answers on stdout, as a word or as JSON:

    accept                      let the node go on as usual (check the invoice, settle, forward...)
    reject [FAILURE_HEX]        fail the HTLC (default: incorrect_or_unknown_payment_details)
    resolve PREIMAGE_HEX        settle it with this preimage, invoice or not
    {"result": "accept" | "reject" | "resolve", "preimage": "...", "failure_message": "..."}

The kind is the first `approver-rule` that matches (`KIND:tlv=TYPE`, `KIND:label=PREFIX`,
`KIND:forward`, `KIND:any`), else: `forward` when the HTLC is to be forwarded, `keysend` when the
onion carries a keysend preimage, `tlv_<T>` for the lowest custom TLV type T (>= 65536) in the payload,
`invoice` when an invoice of ours has the payment hash, and `unknown` otherwise.  A kind without a
script is simply let through: the node handles it exactly as without this plugin.

The seed's worries, answered:
- A script that hangs does not hang the node: every HTLC is a separate hook call that the node does not
  wait on for anything else, and here each script runs in a worker thread, so the plugin keeps answering
  too.  After `approver-timeout` seconds the script (its whole process group) is killed and the HTLC gets
  `approver-failure`; a script that crashes, exits non-zero or answers nonsense gets the same.
- No process leak: at most `approver-max-concurrent` scripts run at once; up to `approver-max-queued`
  more HTLCs wait for a slot; beyond that, HTLCs get `approver-failure` at once without running anything.
- `approverstatus` shows the scripts running and queued.

After a restart the node replays `htlc_accepted` for HTLCs still unresolved: scripts must be
idempotent (answer the same for the same HTLC).  Written with the unmodified pyln-client.
"""

import json
import os
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from pyln.client import Plugin

plugin = Plugin()

# BOLT #4 failure codes (the hook's failure_message is the hex failure message).
TEMPORARY_NODE_FAILURE = 0x2002          # NODE|2
INCORRECT_OR_UNKNOWN_PAYMENT = 0x400F    # PERM|15: [u64:htlc_msat] [u32:height]
KEYSEND_PREIMAGE_TYPE = 5482373484
CUSTOM_TLV_MIN = 65536


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.running = 0
        self.queued = 0
        self.ran = 0
        self.timeouts = 0
        self.crashes = 0
        self.overloads = 0
        self.pool = None


state = State()


# ---- small codecs -----------------------------------------------------------------------------
def read_bigsize(data: bytes, pos: int):
    first = data[pos]
    if first < 0xFD:
        return first, pos + 1
    size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    return int.from_bytes(data[pos + 1:pos + 1 + size], "big"), pos + 1 + size


def payload_tlvs(payload_hex: str) -> dict:
    """The TLV records of a hop payload (hook's `onion.payload`: a BigSize length, then the stream)."""
    try:
        data = bytes.fromhex(payload_hex)
        length, pos = read_bigsize(data, 0)
        end = min(pos + length, len(data))
        out = {}
        while pos < end:
            typ, pos = read_bigsize(data, pos)
            ln, pos = read_bigsize(data, pos)
            out[typ] = data[pos:pos + ln].hex()
            pos += ln
        return out
    except (ValueError, IndexError, KeyError):
        return {}


def msat(value) -> int:
    return int(str(value).removesuffix("msat"))


def failure_for(name_or_hex: str, amount_msat: int, height: int) -> str:
    """The hex failure message for a configured failure name (or hex as given)."""
    if name_or_hex == "temporary_node_failure":
        return f"{TEMPORARY_NODE_FAILURE:04x}"
    if name_or_hex == "incorrect_or_unknown_payment_details":
        return f"{INCORRECT_OR_UNKNOWN_PAYMENT:04x}{amount_msat:016x}{height:08x}"
    return name_or_hex


def valid_failure_option(value: str) -> bool:
    if value in ("temporary_node_failure", "incorrect_or_unknown_payment_details", "continue"):
        return True
    try:
        return len(bytes.fromhex(value)) >= 2
    except ValueError:
        return False


# ---- choosing the kind --------------------------------------------------------------------------
def parse_rules(values) -> list:
    rules = []
    for v in values or []:
        kind, _, cond = v.partition(":")
        if not kind or not all(c.isalnum() or c in "_-" for c in kind):
            raise ValueError(f"approver-rule {v!r}: KIND must be letters, digits, _ or -")
        if cond in ("forward", "any"):
            rules.append((kind, cond, None))
        elif cond.startswith("tlv="):
            rules.append((kind, "tlv", int(cond[4:])))
        elif cond.startswith("label="):
            rules.append((kind, "label", cond[6:]))
        else:
            raise ValueError(f"approver-rule {v!r}: condition must be tlv=TYPE, label=PREFIX, forward or any")
    return rules


def choose_kind(rules, onion, tlvs, invoice) -> str:
    forwarding = "short_channel_id" in onion
    for kind, cond, arg in rules:
        if cond == "any" or (cond == "forward" and forwarding) or (cond == "tlv" and arg in tlvs) or (
                cond == "label" and invoice is not None and invoice["label"].startswith(arg)):
            return kind
    if forwarding:
        return "forward"
    if KEYSEND_PREIMAGE_TYPE in tlvs:
        return "keysend"
    custom = sorted(t for t in tlvs if t >= CUSTOM_TLV_MIN)
    if custom:
        return f"tlv_{custom[0]}"
    if invoice is not None:
        return "invoice"
    return "unknown"


# ---- running a script ---------------------------------------------------------------------------
def parse_answer(out: str) -> dict:
    """The script's stdout as a hook answer; ValueError if it makes no sense."""
    text = out.strip()
    if text.startswith("{"):
        obj = json.loads(text)
        verdict = obj.get("result")
        arg = obj.get("preimage") if verdict == "resolve" else obj.get("failure_message")
    else:
        words = text.split()
        if not words:
            raise ValueError("no answer")
        verdict, arg = words[0].lower(), (words[1] if len(words) > 1 else None)
    if verdict == "accept":
        return {"result": "continue"}
    if verdict == "reject":
        if arg is not None:
            bytes.fromhex(arg)
        return {"result": "fail", "failure_message": arg}  # None: filled with the default rejection
    if verdict == "resolve":
        if arg is None or len(bytes.fromhex(arg)) != 32:
            raise ValueError("resolve needs a 32-byte preimage in hex")
        return {"result": "resolve", "payment_key": arg}
    raise ValueError(f"unknown answer {verdict!r}")


def run_script(path: str, request_json: str, timeout: float):
    """(answer dict, None) or (None, reason)."""
    try:
        proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, text=True)
    except OSError as e:
        return None, f"cannot run: {e}"
    try:
        out, err = proc.communicate(request_json, timeout=timeout)
    except subprocess.TimeoutExpired:
        # Kill the whole group: a shell script's children must not outlive it (the process leak).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        return None, "timeout"
    if proc.returncode != 0:
        return None, f"exit code {proc.returncode}: {err.strip()[-200:]}"
    try:
        return parse_answer(out), None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return None, f"bad answer {out.strip()[:100]!r}: {e}"


def on_failure(amount_msat: int, height: int) -> dict:
    failure = plugin.get_option("approver-failure")
    if failure == "continue":
        return {"result": "continue"}
    return {"result": "fail", "failure_message": failure_for(failure, amount_msat, height)}


def decide(request, script: str, info: dict, amount_msat: int, height: int) -> None:
    with state.lock:
        state.queued -= 1
        state.running += 1
    try:
        timeout = float(plugin.get_option("approver-timeout"))
        answer, problem = run_script(script, json.dumps(info), timeout)
        with state.lock:
            state.ran += 1
            if problem == "timeout":
                state.timeouts += 1
            elif problem is not None:
                state.crashes += 1
        if problem is not None:
            plugin.log(f"{os.path.basename(script)} for HTLC {info['htlc_id']} ({info['payment_hash']}): "
                       f"{problem}", level="warn")
            answer = on_failure(amount_msat, height)
        elif answer["result"] == "fail" and answer["failure_message"] is None:
            answer["failure_message"] = failure_for("incorrect_or_unknown_payment_details", amount_msat, height)
        plugin.log(f"HTLC {info['htlc_id']} ({info['kind']}): {answer['result']}", level="debug")
        request.set_result(answer)
    except Exception as e:  # never leave an HTLC without an answer
        plugin.log(f"approver failed on HTLC {info.get('htlc_id')}: {e!r}", level="broken")
        request.set_result(on_failure(amount_msat, height))
    finally:
        with state.lock:
            state.running -= 1


def classify(onion, htlc, request) -> None:
    """Runs in a worker-free thread of its own: RPC calls here must not block the plugin's main loop."""
    amount = msat(htlc["amount_msat"])
    height = 0
    try:
        height = plugin.rpc.getinfo()["blockheight"]
        invoices = plugin.rpc.listinvoices(payment_hash=htlc["payment_hash"])["invoices"]
        invoice = invoices[0] if invoices else None
        tlvs = payload_tlvs(onion.get("payload", ""))
        kind = choose_kind(plugin.rules, onion, tlvs, invoice)
        script = os.path.join(plugin.get_option("approver-dir"), f"handle_{kind}")
        if not (os.path.isfile(script) and os.access(script, os.X_OK)):
            request.set_result({"result": "continue"})
            return
        info = {"kind": kind, "payment_hash": htlc["payment_hash"], "amount_msat": amount,
                "cltv_expiry": htlc["cltv_expiry"], "cltv_expiry_relative": htlc.get("cltv_expiry_relative"),
                "incoming_short_channel_id": htlc.get("short_channel_id"), "htlc_id": htlc.get("id"),
                "payload": onion.get("payload"), "tlvs": {str(k): v for k, v in tlvs.items()},
                "onion": {k: v for k, v in onion.items() if k not in ("next_onion", "shared_secret")},
                "invoice": invoice}
        limit = int(plugin.get_option("approver-max-concurrent")) + int(plugin.get_option("approver-max-queued"))
        with state.lock:
            overloaded = state.running + state.queued >= limit
            if overloaded:
                state.overloads += 1
            else:
                state.queued += 1
        if overloaded:
            plugin.log(f"too many scripts running or queued: HTLC {htlc.get('id')} refused", level="warn")
            request.set_result(on_failure(amount, height))
            return
        state.pool.submit(decide, request, script, info, amount, height)
    except Exception as e:
        plugin.log(f"approver failed on HTLC {htlc.get('id')}: {e!r}", level="broken")
        request.set_result(on_failure(amount, height))


@plugin.async_hook("htlc_accepted")
def on_htlc_accepted(onion, htlc, request, plugin, **kwargs):
    threading.Thread(target=classify, args=(onion, htlc, request), daemon=True).start()


@plugin.method("approverstatus")
def approverstatus(plugin):
    """Scripts running and queued now; how many ran, timed out, crashed; HTLCs refused for overload."""
    with state.lock:
        return {"running": state.running, "queued": state.queued, "ran": state.ran, "timeouts": state.timeouts,
                "crashes": state.crashes, "overloaded": state.overloads,
                "max_concurrent": int(plugin.get_option("approver-max-concurrent")),
                "max_queued": int(plugin.get_option("approver-max-queued"))}


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    directory = options["approver-dir"] or os.path.join(configuration["lightning-dir"], "approver")
    plugin.options["approver-dir"].value = os.path.abspath(directory)
    try:
        plugin.rules = parse_rules(options["approver-rule"])
        if int(options["approver-max-concurrent"]) < 1 or int(options["approver-max-queued"]) < 0:
            raise ValueError("approver-max-concurrent must be at least 1, approver-max-queued at least 0")
        if float(options["approver-timeout"]) <= 0:
            raise ValueError("approver-timeout must be positive")
        if not valid_failure_option(options["approver-failure"]):
            raise ValueError(f"approver-failure {options['approver-failure']!r}: temporary_node_failure, "
                             "incorrect_or_unknown_payment_details, continue, or a hex failure message")
    except ValueError as e:
        return {"disable": str(e)}
    state.pool = ThreadPoolExecutor(max_workers=int(options["approver-max-concurrent"]),
                                    thread_name_prefix="approver")
    plugin.log(f"approver: scripts from {directory}, {options['approver-max-concurrent']} at once, "
               f"{options['approver-timeout']}s each")


plugin.add_option("approver-dir", "", "Directory of the handle_<kind> executables "
                  "(default: `approver` in the node's network directory, e.g. <lightning-dir>/regtest/approver).")
plugin.add_option("approver-rule", None, "KIND:tlv=TYPE, KIND:label=PREFIX, KIND:forward or KIND:any: "
                  "HTLCs matching it are handled by handle_KIND (first match wins).", multi=True)
plugin.add_option("approver-timeout", "10", "Seconds a script may take before it is killed.")
plugin.add_option("approver-max-concurrent", "4", "Scripts running at once, at most.")
plugin.add_option("approver-max-queued", "100", "HTLCs waiting for a free slot, at most; more are failed.")
plugin.add_option("approver-failure", "temporary_node_failure",
                  "Answer when a script times out, crashes, answers nonsense or we are overloaded: "
                  "temporary_node_failure, incorrect_or_unknown_payment_details, continue (let the node decide) "
                  "or a hex BOLT 4 failure message.")
plugin.run()
