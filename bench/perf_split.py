"""Where the whole machine's CPU went during a run: `perf record -a -g` over the run, then every sample counted by
who ran (the payer's event loop, its other threads, the payees, the benchmark's client, idle, anything else) and by
what code it was in (the interpreter, libsecp256k1, the kernel by system call, SQLite, ...).

cProfile inflates Python calls several times over and hides the kernel; py-spy's --gil view counts waits as work
(docs/profile.md, sessions 10 and 13). Sampling every CPU at a fixed rate does neither: a share here is a share of
the machine's time. Used by profile_channels.py --perf; needs `perf` and the right to sample every CPU (root, or
kernel.perf_event_paranoid <= 0).
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess

# The code a sample was in, by the object file of its innermost frame.
_CODE = (("python3", "interpreter"), ("libpython", "interpreter"), ("_libsecp256k1", "libsecp256k1"),
         ("kernel.kallsyms", "kernel"), ("sqlite", "SQLite"), ("libcrypto", "OpenSSL/cryptography"),
         ("_rust.abi3", "OpenSSL/cryptography"), ("_hashlib", "OpenSSL/cryptography"), ("uvloop", "uvloop"),
         ("loop.cpython", "uvloop"), ("libc.so", "libc"), ("_json", "json (C)"), ("_cffi", "cffi"))


def available() -> str | None:
    """None when `perf record -a` can run here, else why not."""
    if shutil.which("perf") is None:
        return "perf is not installed"
    try:
        with open("/proc/sys/kernel/perf_event_paranoid") as f:
            paranoid = int(f.read())
    except (OSError, ValueError):
        paranoid = 2
    if paranoid > 0 and os.geteuid() != 0:
        return f"sampling every CPU needs root or kernel.perf_event_paranoid <= 0 (it is {paranoid})"
    return None


def record(path: str) -> subprocess.Popen:
    """Start sampling every CPU (call graphs included: the kernel's samples are split by system call)."""
    return subprocess.Popen(["perf", "record", "-a", "-g", "-F", "999", "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(2)
    proc.wait(120)


def _code(dso: str) -> str:
    dso = os.path.basename(dso)  # (a module's path may hold "python3.11/site-packages")
    for needle, name in _CODE:
        if needle in dso:
            return name
    return "other"


def _syscall(frames: list[tuple[str, str]]) -> str:
    """The system call a kernel sample was made in (the outermost __x64_sys_ frame), or what interrupted."""
    for sym, _dso in frames:
        if sym.startswith(("__x64_sys_", "__do_sys_")):
            return sym.split("sys_", 1)[1]
    for i, (sym, _dso) in enumerate(frames):
        if sym.startswith("entry_SYSCALL") and i + 1 < len(frames):
            # Sampled on the way in or out (do_syscall_64 itself): named by the C library's wrapper that called.
            wrapper = frames[i + 1][0]
            return _WRAPPERS.get(wrapper, wrapper.replace("__GI___libc_", "").lstrip("_"))
    for sym, _dso in frames:
        if sym.startswith("asm_"):
            return "interrupt: " + sym[4:]
    return "other"


_WRAPPERS = {"__GI___lll_lock_wake": "futex", "__futex_abstimed_wait_common": "futex", "__lll_lock_wait": "futex"}


def summarize(path: str, roles: dict[int, str], whole: frozenset[int] = frozenset()) -> str:
    """The shares of the samples in `path`, by role (`roles`: pid -> name; a pid's threads other than its first
    count as "<name> threads", unless the pid is in `whole`) and by code."""
    out = subprocess.run(["perf", "script", "-i", path, "-F", "pid,tid,ip,sym,dso"], capture_output=True,
                         text=True, errors="replace", check=True).stdout
    by_role: collections.Counter = collections.Counter()
    by_role_code: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    kernel_calls: collections.Counter = collections.Counter()
    total = 0
    for block in out.split("\n\n"):
        lines = block.strip("\n").split("\n")
        head = lines[0].split()
        if not head or "/" not in head[0]:
            continue
        pid, tid = (int(x) for x in head[0].split("/"))
        frames = []
        for line in lines[1:]:
            parts = line.strip().split(None, 1)
            if len(parts) == 2 and parts[1].endswith(")") and " (" in parts[1]:
                sym, dso = parts[1].rsplit(" (", 1)
                frames.append((sym, dso[:-1]))
        if not frames:
            continue
        total += 1
        if pid == 0:
            role = "idle"
        elif pid in roles:
            role = roles[pid] if tid == pid or pid in whole else f"{roles[pid]} threads"
        else:
            role = "other processes"
        code = _code(frames[0][1])
        by_role[role] += 1
        by_role_code[role][code] += 1
        if code == "kernel" and pid in roles:
            kernel_calls[_syscall(frames)] += 1
    if not total:
        return "perf: no samples"
    pct = lambda n: f"{100 * n / total:.1f}%"  # noqa: E731
    rows = [f"machine time by who ran, and in what ({total} samples, both CPUs):"]
    for role, n in by_role.most_common():
        parts = ", ".join(f"{code} {pct(c)}" for code, c in by_role_code[role].most_common(6))
        rows.append(f"  {role:<22} {pct(n):>6}  ({parts})")
    code_all: collections.Counter = collections.Counter()
    for role, c in by_role_code.items():
        if role not in ("idle", "other processes"):
            code_all.update(c)
    rows.append("  the nodes and the client together, by code: "
                + ", ".join(f"{code} {pct(c)}" for code, c in code_all.most_common(9)))
    rows.append("  their kernel time by system call: "
                + ", ".join(f"{name} {pct(c)}" for name, c in kernel_calls.most_common(10)))
    return "\n".join(rows)
