"""One measurement: AWS calls by action (from the sandbox's request log), wall time, peak RSS.

Peak RSS is the high-water mark (`VmHWM`) of a process during the measurement: Linux resets it
when "5" is written to `/proc/PID/clear_refs`, so each measurement has its own peak even though
the whole benchmark runs in one process. Where that is not possible (not Linux, not allowed) it
falls back to `getrusage`'s lifetime peak, and says so.
"""

from __future__ import annotations

import gc
import os
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from controller.sandbox import ADMIN_ACCESS_KEY_ID, Sandbox

T = TypeVar("T")


@dataclass
class Measurement:
    scenario: str
    n: int
    users: int
    wall: float
    calls: Counter[str]  # "iam ListAccessKeys" -> count
    calls_by_account: Counter[str]  # "A"/"B" -> IAM calls
    rss_mb: float
    server_rss_mb: float
    rss_exact: bool = True
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(
    sandbox: Sandbox, scenario: str, n: int, users: int, run: Callable[[], T]
) -> tuple[Measurement, T]:
    gc.collect()
    sandbox.clear_requests()
    exact = reset_peak(os.getpid())
    reset_peak(sandbox.pid)
    started = time.perf_counter()
    value = run()
    wall = time.perf_counter() - started
    own = peak_mb(os.getpid()) if exact else None
    if own is None:
        exact = False
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    server = peak_mb(sandbox.pid) or 0.0
    calls: Counter[str] = Counter()
    by_account: Counter[str] = Counter()
    for call in sandbox.requests():
        calls[f"{call.service} {call.action}"] += 1
        if call.service == "iam":
            by_account["A" if call.key == ADMIN_ACCESS_KEY_ID else "B"] += 1
    return Measurement(scenario, n, users, wall, calls, by_account, own, server, exact), value
