"""One measurement: AWS calls by action (from the sandbox's request log), wall time, peak RSS.

Each run happens in a fresh worker process (multiprocessing "spawn"), as a `keyrotor` command
does, so its peak RSS (`VmHWM`, or `getrusage` elsewhere than Linux) is its own and not the
benchmark's. The server's peak is reset before each run by writing "5" to
`/proc/PID/clear_refs` (Linux); it holds the seeded users, so it grows with N.
"""

from __future__ import annotations

import gc
import multiprocessing
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
    sandbox: Sandbox,
    scenario: str,
    n: int,
    users: int,
    job: Callable[..., T],
    *args: object,
) -> tuple[Measurement, T]:
    """Run `job(*args)` in a fresh process, as `keyrotor plan` runs in one, and measure it.

    The process is started (interpreter, imports) before the clock starts; its peak RSS is the
    whole process's, imports included, and none of the benchmark's own data is in it.
    """
    gc.collect()
    sandbox.clear_requests()
    reset_peak(sandbox.pid)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(_warm)
        sandbox.clear_requests()
        value, wall, own = pool.apply(_timed, (job, *args))
    server = peak_mb(sandbox.pid) or 0.0
    calls: Counter[str] = Counter()
    by_account: Counter[str] = Counter()
    for call in sandbox.requests():
        calls[f"{call.service} {call.action}"] += 1
        if call.service == "iam":
            by_account["A" if call.key == ADMIN_ACCESS_KEY_ID else "B"] += 1
    return Measurement(scenario, n, users, wall, calls, by_account, own, server), value


def _warm() -> None:
    """Import what every job needs, so the measured wall time is the run's, not the imports'.

    boto3 for the baseline and the readers, and keyrotor's own modules for its runs (they took
    0.6 s of each run's time until they were imported here too)."""
    import boto3  # noqa: F401

    import bench.readers  # noqa: F401
    import controller.service  # noqa: F401


def _timed(job: Callable[..., T], *args: object) -> tuple[T, float, float]:
    started = time.perf_counter()
    value = job(*args)
    wall = time.perf_counter() - started
    own = peak_mb(os.getpid())
    if own is None:  # not Linux: the same peak, by another name
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return value, wall, own
