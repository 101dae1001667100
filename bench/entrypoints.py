"""How the benchmark drives keyrotor: one object, so that swapping keyrotor's entry points (for
`controller.service.plan_once` / `apply_once` once they exist) is one class and one line in
`make_entry_points`.

`adopt` writes, without any AWS call, the status a first `apply` would have committed for the
seeded users (their one key adopted, nothing due): the benchmark measures steady-state runs, and
adopting 10,000 users the per-user way would take longer than the whole benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from bench.world import PATH, BenchWorld, git


@dataclass(frozen=True)
class RunResult:
    actions: int  # what the plan wanted to do
    done: int = 0  # what apply did (0 for plan)
    failed: int = 0


class EntryPoints(Protocol):
    label: str

    def adopt(self, world: BenchWorld, now: datetime) -> None: ...

    def plan(self, repo: Path, now: datetime) -> RunResult: ...

    def apply(self, repo: Path, now: datetime) -> RunResult: ...


class TodaysEntryPoints:
    """`keyrotor plan` and `keyrotor apply` as the CLI runs them today (main, before issue 13)."""

    label = "runtime.make_plan + inventory.AwsInventory / commands.apply.execute"

    def plan(self, repo: Path, now: datetime) -> RunResult:
        from controller.aws import AwsSessions
        from controller.inventory import AwsInventory
        from controller.runtime import make_plan, open_workspace

        ws = open_workspace(repo)
        return RunResult(len(make_plan(ws, AwsInventory(AwsSessions()), now).actions))

    def apply(self, repo: Path, now: datetime) -> RunResult:
        from controller.aws import AwsSessions
        from controller.commands.apply import execute

        plan, result = execute(repo, now, sessions=AwsSessions())
        done = sum(1 for r in result.results if r.ok)
        return RunResult(len(plan.actions), done, len(result.failed))

    def adopt(self, world: BenchWorld, now: datetime) -> None:
        from controller.inventory import ObservedKey, ObservedUser, PolicyObservation
        from controller.planner import plan
        from controller.runtime import open_workspace
        from controller.status import dump, status_path

        ws = open_workspace(world.repo)
        observed = {}
        for account in world.accounts:
            users = {
                u.name: ObservedUser(
                    u.name,
                    (ObservedKey(u.access_key_id, "Active", u.created),)
                    if u.access_key_id and u.created
                    else (),
                    path=PATH,
                )
                for u in account.users
            }
            observed[account.policy] = PolicyObservation(account.policy, users, account.account_id)
        adopted = plan(ws.policies, observed, {}, now)
        if adopted.actions:
            raise AssertionError(
                f"adopting the seeded users planned {len(adopted.actions)} actions"
            )
        for pp in adopted.policies:
            path = world.repo / status_path(pp.policy.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(dump(pp.status))
        git("-C", str(world.repo), "add", "status")
        git("-C", str(world.repo), "commit", "-q", "-m", "bench: status of adopted users")
        git("-C", str(world.repo), "push", "-q")


def run_plan(entry: EntryPoints, repo: Path, now: datetime) -> RunResult:
    """Module-level, so a fresh worker process can be handed it (see bench.measure)."""
    return entry.plan(repo, now)


def run_apply(entry: EntryPoints, repo: Path, now: datetime) -> RunResult:
    return entry.apply(repo, now)


def make_entry_points() -> EntryPoints:
    return TodaysEntryPoints()
