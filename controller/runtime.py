"""The shell around the pure planner: read manifests, status and the world, then plan.

`plan`, `apply` and `status` share this so that what `plan` shows is what `apply` does.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import controller.manifests as manifests
from controller.approvals import Approval, read_approvals
from controller.aws import AwsSessions
from controller.checks import ExternalResults
from controller.errors import KeyrotorError
from controller.inventory import Inventory, PolicyObservation
from controller.planner import Plan, UserPlan, plan
from controller.policy import Policy
from controller.secret import AccessKeySecret
from controller.status import STATUS_DIR, PolicyStatus, load, status_path


@dataclass(frozen=True)
class Workspace:
    root: Path
    policies: tuple[Policy, ...]
    statuses: dict[str, PolicyStatus]
    approvals: dict[tuple[str, str], Approval]


def now_of(args: argparse.Namespace) -> datetime:
    return args.now if getattr(args, "now", None) else datetime.now(UTC)


def open_workspace(repo: str | Path, only: list[str] | None = None) -> Workspace:
    """Load and validate every manifest (a bad one stops everything: no AWS call is made)."""
    root = Path(repo)
    manifest_dir = root / "manifests"
    if not manifest_dir.is_dir():
        raise KeyrotorError(
            f"{manifest_dir} does not exist: run keyrotor in your policy repository, or pass --repo"
        )
    policies = manifests.load_policies([manifest_dir])
    if only:
        unknown = sorted(set(only) - {p.name for p in policies})
        if unknown:
            raise KeyrotorError(f"no policy named {', '.join(unknown)} in {manifest_dir}")
        policies = [p for p in policies if p.name in only]
    names = [p.name for p in policies]
    return Workspace(
        root, tuple(policies), read_statuses(root, policies), read_approvals(root, names)
    )


def read_statuses(
    root: Path, policies: list[Policy] | tuple[Policy, ...]
) -> dict[str, PolicyStatus]:
    statuses = {}
    for policy in policies:
        rel = status_path(policy.name)
        path = root / rel
        if path.is_file():
            statuses[policy.name] = load(path.read_text(), path=rel)
    return statuses


def all_statuses(root: Path) -> list[PolicyStatus]:
    """Every status file, including those of policies since removed from manifests/."""
    folder = root / STATUS_DIR
    return (
        [load(p.read_text(), path=str(p.relative_to(root))) for p in sorted(folder.glob("*.yaml"))]
        if folder.is_dir()
        else []
    )


def make_plan(
    ws: Workspace,
    inventory: Inventory,
    now: datetime,
    *,
    run_checks: bool = False,
    sessions: AwsSessions | None = None,
) -> Plan:
    """Observe, plan, and with `run_checks` run the command/http checks the plan reached, then
    plan again with their results: the planner stays pure, the checks run here at the edge.
    `plan` never runs them (a check may do anything); `apply` and `reconcile` do."""
    observed: dict[str, PolicyObservation] = {}
    for policy in ws.policies:
        known = ws.statuses[policy.name].users if policy.name in ws.statuses else {}
        observed[policy.name] = inventory.observe(policy, known)
    first = plan(ws.policies, observed, ws.statuses, now, approvals=ws.approvals)
    wanted = [(pp, up) for pp in first.policies for up in pp.users if up.needs_checks]
    if not run_checks or not wanted:
        return first
    from controller.checks.runner import run_external_checks

    external: dict[tuple[str, str], ExternalResults] = {}
    for pp, up in wanted:
        new_key = _new_key_secret(pp.policy, up, observed[pp.policy.name], sessions)
        external[(pp.policy.name, up.user)] = run_external_checks(
            pp.policy,
            cwd=ws.root,
            new_key=new_key,
            secrets=[new_key.secret_access_key] if new_key else [],
        )
    return plan(ws.policies, observed, ws.statuses, now, approvals=ws.approvals, external=external)


def _new_key_secret(
    policy: Policy, up: UserPlan, observation: PolicyObservation, sessions: AwsSessions | None
) -> AccessKeySecret | None:
    """The new key's secret, for checks that run with it and to scrub it from their output."""
    new_key = up.status.new_key if up.status else None
    if sessions is None or new_key is None:
        return None
    from controller import targets

    bound = targets.bind_all(policy, up.user, observation.account_id, sessions)
    return targets.find_secret(bound, new_key)
