"""The one place that wires keyrotor together: plan, apply and reconcile, once each.

`keyrotor plan`, `apply`, `reconcile`, the demo and the tests call these with a `RunContext`
(the clock, AWS sessions, the CI environment). Below this layer, the planner is pure, the
executor is the only code that changes AWS and targets, and gitops the only code that runs git.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import controller.manifests as manifests
from controller.approvals import Approval, read_approvals
from controller.aws.inventory import AwsInventory
from controller.checks import ExternalResults
from controller.context import RunContext
from controller.errors import KeyrotorError
from controller.executor import ApplyResult, Executor
from controller.github.approval_pr import PullOutcome, ensure_approval_pr
from controller.github.user_issues import IssueOutcome, sync_issues
from controller.gitops.repo import StatusRepo
from controller.inventory import PolicyObservation
from controller.plan import Plan, UserPlan
from controller.planner import plan
from controller.policy import Policy
from controller.secret import AccessKeySecret
from controller.status import STATUS_DIR, PolicyStatus, load, status_path
from controller.targets import TargetServices, bind_all, find_secret


@dataclass(frozen=True)
class Workspace:
    """What a checkout holds: the validated policies, their status and their approvals."""

    root: Path
    policies: tuple[Policy, ...]
    statuses: dict[str, PolicyStatus]
    approvals: dict[tuple[str, str], Approval]


def open_workspace(repo: str | Path, only: Sequence[str] = ()) -> Workspace:
    """Load and validate every manifest (a bad one stops everything: no AWS call is made)."""
    root = Path(repo)
    manifest_dir = root / "manifests"
    if not manifest_dir.is_dir():
        raise KeyrotorError(
            f"{manifest_dir} does not exist: run keyrotor in your policy repository, or pass --repo"
        )
    policies = manifests.load_policies([manifest_dir], root=root)
    if only:
        unknown = sorted(set(only) - {p.name for p in policies})
        if unknown:
            raise KeyrotorError(f"no policy named {', '.join(unknown)} in {manifest_dir}")
        policies = [p for p in policies if p.name in only]
    names = [p.name for p in policies]
    return Workspace(
        root, tuple(policies), read_statuses(root, policies), read_approvals(root, names)
    )


def read_statuses(root: Path, policies: Sequence[Policy]) -> dict[str, PolicyStatus]:
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


def target_services(ctx: RunContext) -> TargetServices:
    token = ctx.ci.secrets_token or ctx.ci.token
    factory = (lambda: ctx.github(for_secrets=True)) if token else None
    return TargetServices(ctx.sessions, factory, ctx.ci.preflight)


# --- plan ----------------------------------------------------------------------------------------


def plan_once(ctx: RunContext, ws: Workspace, *, run_checks: bool = False) -> Plan:
    """Observe AWS and plan. With `run_checks`, run the command/http checks the plan reached and
    plan again with their results: the planner stays pure, the checks run here at the edge.
    `plan` never runs them (a check may do anything); `apply` and `reconcile` do."""
    services = target_services(ctx)
    inventory = AwsInventory(services)
    observed: dict[str, PolicyObservation] = {p.name: inventory.observe(p) for p in ws.policies}
    first = plan(ws.policies, observed, ws.statuses, ctx.now, approvals=ws.approvals)
    wanted = [(pp, up) for pp in first.policies for up in pp.users if up.needs_checks]
    if not run_checks or not wanted:
        return first
    from controller.checks.runner import run_external_checks

    external: dict[tuple[str, str], ExternalResults] = {}
    for pp, up in wanted:
        new_key = _new_key_secret(ctx, services, pp.policy, up, observed[pp.policy.name])
        external[(pp.policy.name, up.user)] = run_external_checks(
            pp.policy,
            cwd=ws.root,
            new_key=new_key,
            secrets=[new_key.secret_access_key] if new_key else [],
        )
    return plan(
        ws.policies, observed, ws.statuses, ctx.now, approvals=ws.approvals, external=external
    )


def _new_key_secret(
    ctx: RunContext,
    services: TargetServices,
    policy: Policy,
    up: UserPlan,
    observation: PolicyObservation,
) -> AccessKeySecret | None:
    """The new key's secret, for checks that run with it and to scrub it from their output."""
    new_key = up.status.new_key if up.status else None
    if new_key is None:
        return None
    bound = bind_all(policy, up.user, observation.account_id, services)
    secret = find_secret(bound, new_key)
    if secret is not None:
        ctx.announce_secret(secret.secret_access_key)
    return secret


# --- apply and reconcile -------------------------------------------------------------------------


def apply_once(
    ctx: RunContext, repo_path: Path, policies: Sequence[str] = ()
) -> tuple[Plan, ApplyResult]:
    """Plan and apply in one checkout, committing (and pushing) status."""
    with StatusRepo.open(repo_path) as repo:
        ws = open_workspace(repo.root, policies)
        done = plan_once(ctx, ws, run_checks=True)
        result = Executor(ctx, repo, target_services(ctx)).apply(done)
    return done, result


@dataclass
class ReconcileResult:
    plan: Plan
    applied: ApplyResult
    pulls: list[PullOutcome] = field(default_factory=list)
    issues: list[IssueOutcome] = field(default_factory=list)
    github: bool = False


def reconcile_once(
    ctx: RunContext, repo_path: Path, policies: Sequence[str] = ()
) -> ReconcileResult:
    """Apply, then keep approval pull requests and per-user issues in step with the status
    this run wrote (not the plan before it, so a rollback gets its issue in the same run)."""
    with StatusRepo.open(repo_path) as repo:
        ws = open_workspace(repo.root, policies)
        done = plan_once(ctx, ws, run_checks=True)
        applied = Executor(ctx, repo, target_services(ctx)).apply(done)
        result = ReconcileResult(done, applied)
        if not ctx.ci.has_github:
            return result
        result.github = True
        with ctx.github() as client:
            result.pulls = [
                ensure_approval_pr(repo, client, pp)
                for pp in done.policies
                if pp.policy.approval == "pull-request"
            ]
            observed = {pp.policy.name for pp in done.policies if not pp.findings}
            statuses = {name: st for name, st in applied.statuses.items() if name in observed}
            sources = {pp.policy.name: pp.policy.source.path for pp in done.policies}
            result.issues = sync_issues(client, statuses, sources, ctx.now)
    return result
