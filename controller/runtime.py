"""The shell around the pure planner: read manifests, status and the world, then plan.

`plan`, `apply` and `status` share this so that what `plan` shows is what `apply` does.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import controller.manifests as manifests
from controller.errors import KeyrotorError
from controller.inventory import Inventory, PolicyObservation
from controller.planner import Plan, plan
from controller.policy import Policy
from controller.status import STATUS_DIR, PolicyStatus, load, status_path


@dataclass(frozen=True)
class Workspace:
    root: Path
    policies: tuple[Policy, ...]
    statuses: dict[str, PolicyStatus]


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
    return Workspace(root, tuple(policies), read_statuses(root, policies))


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


def make_plan(ws: Workspace, inventory: Inventory, now: datetime) -> Plan:
    observed: dict[str, PolicyObservation] = {}
    for policy in ws.policies:
        known = ws.statuses[policy.name].users if policy.name in ws.statuses else {}
        observed[policy.name] = inventory.observe(policy, known)
    return plan(ws.policies, observed, ws.statuses, now)
