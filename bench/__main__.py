"""`python -m bench`: measure keyrotor's inventory against N users, print it, write the table.

For each N: seed the sandbox (two accounts, N and N/10 users), then measure the per-user scan
baseline, keyrotor's new bulk reader (report generated, then cached), the no-op `plan` and
`apply`, and a week later (1% of keys due) the bulk reader and one rotation step by `apply`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

from bench import readers, table
from bench.entrypoints import EntryPoints, make_entry_points, run_apply, run_plan
from bench.measure import Measurement, measure
from bench.scenarios import (
    BASELINE,
    NEW_COLD,
    NEW_DUE,
    NEW_WARM,
    REPORT_ONLY_COLD,
    REPORT_ONLY_WARM,
    TODAY_APPLY,
    TODAY_PLAN,
    TODAY_PLAN_DUE,
    TODAY_ROTATE,
)
from bench.world import ROTATION_AT, START, BenchWorld, build
from controller.aws.credential_report import REPORT_CACHE_AGE
from controller.sandbox import Sandbox, start_sandbox


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--sizes",
        default="1000,5000,10000",
        help="comma-separated user counts of account A (default: %(default)s)",
    )
    parser.add_argument(
        "--skip-today",
        action="store_true",
        help="leave out plan and apply (the slow part): baseline and reader only",
    )
    parser.add_argument(
        "--readme", type=Path, help="write the table into this Markdown file (bench/README.md)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    entry = make_entry_points()
    results: list[Measurement] = []
    with start_sandbox(START) as sandbox, tempfile.TemporaryDirectory() as tmp:
        _point_at(sandbox)
        for n in sizes:
            world = build(sandbox, n, Path(tmp) / f"n{n}")
            print(f"== N={n}: {world.user_count} users in 2 accounts", flush=True)
            results.extend(_run_size(world, entry, skip_today=args.skip_today))
    text = table.render(results, command=command, machine=_machine(), entry=entry.label)
    print(text)
    verdicts = table.verdicts(results)
    print("\n".join(verdicts))
    if args.readme:
        table.write_readme(args.readme, text, verdicts)
    return 0


def _run_size(world: BenchWorld, entry: EntryPoints, *, skip_today: bool) -> list[Measurement]:
    sandbox = world.sandbox
    accounts = world.accounts
    out: list[Measurement] = []

    def run(scenario: str, job: Callable[..., Any], *args: object) -> Any:
        m, value = measure(sandbox, scenario, world.n, world.user_count, job, *args)
        out.append(m)
        m.note = _note(value)
        print(f"  {scenario:<56} {m.total:>7} calls {m.wall:>8.2f}s  {m.note}", flush=True)
        return value

    run(BASELINE, readers.baseline_scan, accounts)
    run(NEW_COLD, readers.new_inventory, accounts, sandbox.now())
    run(NEW_WARM, readers.new_inventory, accounts, sandbox.now())
    sandbox.advance(REPORT_CACHE_AGE)  # IAM generates the next report afresh
    run(REPORT_ONLY_COLD, readers.new_inventory, accounts, sandbox.now(), False)
    run(REPORT_ONLY_WARM, readers.new_inventory, accounts, sandbox.now(), False)
    if not skip_today:
        entry.adopt(world, sandbox.now())
        plan = run(TODAY_PLAN, run_plan, entry, world.repo, sandbox.now())
        if plan.actions:
            raise AssertionError(f"the no-op plan wanted {plan.actions} actions")
        run(TODAY_APPLY, run_apply, entry, world.repo, sandbox.now())
    sandbox.set_clock(ROTATION_AT)
    due = run(NEW_DUE, readers.new_inventory, accounts, sandbox.now())
    if due.live_users != world.rotating_count:
        raise AssertionError(f"{due.live_users} live reads, {world.rotating_count} users due")
    if not skip_today:
        # The inventory of the rotation step is what planning that very state costs (the
        # report, and the live reads of the users due); the step is what apply adds to it.
        run(TODAY_PLAN_DUE, run_plan, entry, world.repo, sandbox.now())
        inventory = out[-1]
        rotated = run(TODAY_ROTATE, run_apply, entry, world.repo, sandbox.now())
        step = out[-1]
        step.extra["rotated"] = rotated.done
        if rotated.done:
            step.extra["calls_per_rotated_user"] = (step.total - inventory.total) / rotated.done
    return out


def _note(value: Any) -> str:
    if isinstance(value, readers.ReaderResult):
        return f"{value.users} users, {value.keys} keys, {value.live_users} read live"
    actions, done, failed = (getattr(value, k, 0) for k in ("actions", "done", "failed"))
    return f"{actions} actions" + (f", {done} done, {failed} failed" if done or failed else "")


def _point_at(sandbox: Sandbox) -> None:
    """keyrotor and the readers find the sandbox through the standard SDK environment."""
    for name, value in sandbox.env(os.environ).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    os.environ["GIT_CONFIG_GLOBAL"] = os.devnull  # no signing or hooks from ~/.gitconfig
    boto3.DEFAULT_SESSION = None


def _machine() -> str:
    from importlib.metadata import version

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs (load {load} at the end), Python {platform.python_version()}, "
        f"boto3 {boto3.__version__}, moto {version('moto')}, {datetime.now():%Y-%m-%d}"
    )


if __name__ == "__main__":
    sys.exit(main())
