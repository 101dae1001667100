"""How the benchmark drives keyrotor: through the service layer, as the CLI does.

`adopt` writes, without any AWS call, the status a first `apply` would have committed for the
seeded users (their one key adopted, nothing due; the seeding already tagged the keys as
keyrotor's): the benchmark measures steady-state runs, and adopting 10,000 users the per-user
way would take longer than the whole benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

from bench.world import BenchWorld, git


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


class ServiceEntryPoints:
    """`keyrotor plan` and `keyrotor apply` through `controller.service`."""

    label = "service.plan_once / service.apply_once"

    @staticmethod
    def _context(now: datetime):  # type: ignore[no-untyped-def]
        from controller.aws import AwsSessions
        from controller.context import RunContext

        return RunContext(now, AwsSessions(), echo=lambda _: None)

    def plan(self, repo: Path, now: datetime) -> RunResult:
        from controller.service import open_workspace, plan_once

        return RunResult(len(plan_once(self._context(now), open_workspace(repo)).actions))

    def apply(self, repo: Path, now: datetime) -> RunResult:
        from controller.service import apply_once

        plan, result = apply_once(self._context(now), repo)
        done = sum(1 for r in result.results if r.ok)
        return RunResult(len(plan.actions), done, len(result.failed))

    def adopt(self, world: BenchWorld, now: datetime) -> None:
        from controller import lifecycle
        from controller.service import open_workspace
        from controller.status import Phase, UserStatus
        from controller.statusfiles import dump_user, user_path

        policies = {p.name: p for p in open_workspace(world.repo).policies}
        for account in world.accounts:
            policy = policies[account.policy]
            for u in account.users:
                if not (u.access_key_id and u.created):
                    continue
                status = lifecycle.current(
                    UserStatus(Phase.CURRENT), u.access_key_id, u.created, policy
                )
                status = replace(status, overdue_at=u.created + policy.max_key_age)
                path = world.repo / user_path(policy.name, account.account_id, u.name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(dump_user(policy.name, account.account_id, u.name, status))
        git("-C", str(world.repo), "add", "status")
        git("-C", str(world.repo), "commit", "-q", "-m", "bench: status of adopted users")
        git("-C", str(world.repo), "push", "-q")


def run_plan(entry: EntryPoints, repo: Path, now: datetime) -> RunResult:
    """Module-level, so a fresh worker process can be handed it (see bench.measure)."""
    return entry.plan(repo, now)


def run_apply(entry: EntryPoints, repo: Path, now: datetime) -> RunResult:
    return entry.apply(repo, now)


def make_entry_points() -> EntryPoints:
    return ServiceEntryPoints()
