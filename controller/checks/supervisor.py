"""The supervisor of one `command` check: starts the program, times it out, kills what it leaves.

keyrotor does not start a check's program itself: it starts this file as a fresh interpreter
(`python -I -S -B supervisor.py SPEC`, so it holds nothing of keyrotor's memory and imports only
the standard library), in the check's clean environment and working directory, with the
check's output file as stdout and stderr and a pipe for the result. The supervisor

- makes itself non-dumpable, a child subreaper (every orphan among the program's descendants
  becomes its child, so none escapes by `setsid` or a double fork) and sets `no_new_privs`
  (inherited by the program: setuid programs such as `sudo` and file capabilities grant
  nothing), and asks for SIGTERM if keyrotor dies (Linux; elsewhere it skips these);
- starts the program in a process group of its own, as `uid`/`gid` with no supplementary
  groups when given (keyrotor gives them when it runs as root: the switch from uid 0 drops
  every capability);
- on timeout, or on SIGTERM/SIGINT/SIGHUP, sends SIGTERM to that group, and `grace` seconds
  later SIGKILL;
- once the program has exited, SIGKILLs every descendant still running until none is left, and
  reaps them;
- writes one JSON object to the result pipe: `{"started": bool, "errno", "filename",
  "code", "timed_out", "stopped", "elapsed", "swept"}` (`code` negative for a signal), then
  exits 0.

SPEC is a JSON object: `argv`, `timeout`, `grace` (seconds), `status_fd`, `uid`, `gid`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
SWEEP_SECONDS = 10.0


class Stop(Exception):
    """keyrotor died before the supervisor could watch for it."""


#: Set by SIGTERM, SIGINT or SIGHUP: keyrotor (or a person) asked the check to stop.
STOP: list[int] = []


def _stop(signum: int, frame: object) -> None:
    STOP.append(signum)


def harden() -> bool:
    """Linux: non-dumpable, subreaper, no_new_privs, SIGTERM when the parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getppid()
    for option, value in (
        (PR_SET_DUMPABLE, 0),
        (PR_SET_CHILD_SUBREAPER, 1),
        (PR_SET_NO_NEW_PRIVS, 1),
        (PR_SET_PDEATHSIG, signal.SIGTERM),
    ):
        if libc.prctl(option, value, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl({option}, {value}) failed")
    if os.getppid() != parent:  # keyrotor died before PDEATHSIG was set
        raise Stop
    return True


def parents() -> dict[int, int]:
    """Every process's parent, read from /proc."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            found[int(name)] = int(fields[1])
    return found


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parents().items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except OSError:
        return None


def kill(pid: int, family: set[int]) -> None:
    """SIGKILL `pid`, a member of `family`, through a pidfd where there is one: the pidfd pins
    the process, and its parent is checked again, so a pid reused meanwhile is never hit."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if not hasattr(os, "pidfd_open"):
            os.kill(pid, signal.SIGKILL)
            return
        fd = os.pidfd_open(pid)
        try:
            if parent_of(pid) in family | {os.getpid()}:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)


def sweep(leader: int, statuses: dict[int, int], subreaper: bool) -> bool:
    """Kill and reap every descendant; True when none is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)
    deadline = time.monotonic() + SWEEP_SECONDS
    while time.monotonic() < deadline:
        if subreaper:
            family = descendants(os.getpid())
            for pid in family:
                kill(pid, family)
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True  # no child left; as a subreaper, no descendant either
        if pid:
            statuses[pid] = status
        else:
            time.sleep(0.005)
    return False


def wait(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait up to `seconds` for `process` to exit; False on a request to stop or at the end."""
    deadline = time.monotonic() + seconds
    while not STOP:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            process.wait(timeout=min(left, 0.05))
            return True
        except subprocess.TimeoutExpired:
            continue
    return False


def run(spec: dict[str, Any], result: dict[str, Any]) -> None:
    subreaper = harden()
    uid, gid = spec.get("uid"), spec.get("gid")
    switch: dict[str, Any] = {}
    if uid is not None:
        switch = {"user": uid, "group": gid, "extra_groups": []}
    started = time.monotonic()
    try:
        process = subprocess.Popen(spec["argv"], process_group=0, close_fds=True, **switch)
    except OSError as exc:
        result.update(started=False, errno=exc.errno, filename=exc.filename)
        return
    result["started"] = True
    statuses: dict[int, int] = {}
    try:
        if not wait(process, spec["timeout"]):
            result["stopped" if STOP else "timed_out"] = True
        result["elapsed"] = time.monotonic() - started
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            STOP.clear()
            wait(process, spec["grace"])
    finally:
        result["swept"] = sweep(process.pid, statuses, subreaper)
    if process.returncode is None and process.pid in statuses:
        process.returncode = os.waitstatus_to_exitcode(statuses[process.pid])
    result["code"] = process.returncode


def main() -> int:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _stop)
    spec = json.loads(sys.argv[1])
    result: dict[str, Any] = {"started": False, "timed_out": False, "stopped": False}
    try:
        run(spec, result)
    except Stop:
        result["stopped"] = True
    except Exception as exc:
        result["failure"] = f"{type(exc).__name__}: {exc}"
    with os.fdopen(spec["status_fd"], "w") as status:
        status.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
