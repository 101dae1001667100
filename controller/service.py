"""The one place that wires keyrotor together: plan, apply and reconcile, once each.

`keyrotor plan`, `apply`, `reconcile`, the demo and the tests call these with a `RunContext`
(the clock, AWS sessions, the CI environment). Below this layer, the planner is pure, the
executor is the only code that changes AWS and targets, and gitops the only code that runs git.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import controller.manifests as manifests
from controller import accounts
from controller.approvals import APPROVALS_DIR, Approval, approvals_path
from controller.approvals import load as load_approvals
from controller.aws import AWS_ERRORS
from controller.aws.inventory import AwsInventory
from controller.blastradius import hold_back
from controller.checks import ExternalResults
from controller.context import RunContext
from controller.errors import GitError, KeyrotorError
from controller.executor import ApplyResult, Executor
from controller.github.approval_pr import PullOutcome, ensure_approval_pr
from controller.github.approval_verify import (
    Refusal,
    approved_by_trailers,
    refusal_finding,
    render,
    verify,
)
from controller.github.client import GitHubError
from controller.github.user_issues import IssueOutcome, sync_issues
from controller.gitops.repo import StatusRepo
from controller.gitops.store import GitStore
from controller.guardrails import Guardrails, Violation, violations
from controller.inventory import PolicyObservation
from controller.plan import ERROR_REASONS, Finding, FindingKind, Plan, PolicyPlan, UserPlan
from controller.planner import plan
from controller.policy import Account, Policy
from controller.reasons import ApprovalRefusal, Reason
from controller.secret import AccessKeySecret
from controller.status import STATUS_DIR, PolicyStatus
from controller.statusfiles import PolicyRecords, StatusTree
from controller.targets import TargetServices, bind_all, find_secret

if TYPE_CHECKING:
    from controller.checks.command import CommandOutcome


@dataclass(frozen=True)
class Workspace:
    """What a checkout holds: the validated policies, their status and their approvals."""

    root: Path
    policies: tuple[Policy, ...]
    tree: StatusTree
    approvals: dict[tuple[str, str], Approval]
    # The approvals files' texts by path (the bases of the updates that use them up).
    approval_texts: dict[str, str] = field(default_factory=dict)


def open_workspace(
    repo: str | Path, only: Sequence[str] = (), *, committed: GitStore | None = None
) -> Workspace:
    """Load and validate every manifest (a bad one stops everything: no AWS call is made).

    Status and approvals come from the work tree, or with `committed` from its HEAD commit
    (what `apply` plans from, so that its updates are based on what was published).
    """
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
    if committed is not None:
        tree = StatusTree(committed.read_files(STATUS_DIR))
        texts = committed.read_files(APPROVALS_DIR)
    else:
        tree = StatusTree.from_directory(root)
        texts = _approval_files(root)
    approvals: dict[tuple[str, str], Approval] = {}
    for policy in policies:
        path = approvals_path(policy.name)
        if path in texts:
            for user, approval in load_approvals(texts[path], path=path).items():
                approvals[(policy.name, user)] = approval
    return Workspace(root, tuple(policies), tree, approvals, texts)


def _approval_files(root: Path) -> dict[str, str]:
    folder = root / APPROVALS_DIR
    if not folder.is_dir():
        return {}
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in sorted(folder.glob("*.yaml"))
        if p.is_file() and not p.is_symlink()
    }


def target_services(ctx: RunContext) -> TargetServices:
    token = ctx.ci.secrets_token or ctx.ci.token
    factory = (lambda: ctx.github(for_secrets=True)) if token else None
    return TargetServices(ctx.sessions, factory, ctx.ci.preflight)


# --- plan ----------------------------------------------------------------------------------------


def plan_once(ctx: RunContext, ws: Workspace, *, run_checks: bool = False) -> Plan:
    """Observe AWS and plan. With `run_checks`, run the command/http checks the plan reached and
    plan again with their results: the planner stays pure, the checks run here at the edge.
    `plan` never runs them (a check may do anything); `apply` and `reconcile` do."""
    return _observe_and_plan(ctx, ws, run_checks=run_checks)[0]


# --- approvals: only what GitHub's API verified ---------------------------------------------------


@dataclass(frozen=True)
class VerifiedApprovals:
    """The approvals a run may act on, and what the plan shows about the others."""

    approvals: dict[tuple[str, str], Approval] = field(default_factory=dict)
    #: Per policy: why its approvals file is not an approval (a fresh one is proposed).
    findings: dict[str, tuple[Finding, ...]] = field(default_factory=dict)
    #: Per policy: the `Keyrotor-Approved-By` values of its verified approval.
    approvers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Policies whose approval GitHub could not be asked about: nothing new is proposed for them.
    unverified: frozenset[str] = frozenset()


def verified_approvals(ctx: RunContext, ws: Workspace, repo: StatusRepo) -> VerifiedApprovals:
    """The approvals of `ws` that GitHub's API shows are keyrotor's merged, person-approved pull
    requests (controller/github/approval_verify.py), as committed at HEAD of `repo`.

    An `approval: auto` policy needs no approval: its entries pass as they are (the planner
    ignores them; they are kept only so the file is removed when done).
    """
    approvals: dict[tuple[str, str], Approval] = {}
    findings: dict[str, tuple[Finding, ...]] = {}
    approvers: dict[str, tuple[str, ...]] = {}
    unverified: set[str] = set()
    wanted: list[tuple[Policy, dict[str, Approval]]] = []
    for policy in ws.policies:
        entries = {u: a for (p, u), a in ws.approvals.items() if p == policy.name}
        if policy.approval != "pull-request":
            approvals |= {(policy.name, u): a for u, a in entries.items()}
        elif entries:
            wanted.append((policy, entries))
    if not wanted:
        return VerifiedApprovals(approvals)
    try:
        base = repo.base_branch()[1]
    except GitError as exc:
        base, no_base = "HEAD", str(exc)
    else:
        no_base = ""

    def unverifiable(policy: Policy, error: str) -> None:
        facts = {"policy": policy.name, "error": error}
        finding = Finding(
            policy.name, "*", FindingKind.AWAITING_APPROVAL, Reason.APPROVAL_UNVERIFIED, facts
        )
        findings[policy.name] = (finding,)
        unverified.add(policy.name)

    if not ctx.ci.has_github:
        for policy, _ in wanted:
            refused = Refusal(policy.name, ApprovalRefusal.NO_GITHUB_ACCESS, base)
            findings[policy.name] = (refusal_finding(refused),)
        return VerifiedApprovals(approvals, findings)
    with ctx.github() as client:
        for policy, entries in wanted:
            if no_base:
                unverifiable(policy, no_base)
                continue
            text = ws.approval_texts[approvals_path(policy.name)]
            try:
                verdict = verify(
                    client,
                    policy=policy.name,
                    approvals=entries,
                    approvals_blob=manifests.git_blob_id(text.encode("utf-8")),
                    manifest_blob=policy.generation,
                    bot_login=ctx.ci.bot_login,
                    require_review=True,
                    base=base,
                )
            except GitHubError as exc:
                unverifiable(policy, str(exc))
                continue
            if isinstance(verdict, Refusal):
                findings[policy.name] = (refusal_finding(verdict),)
                continue
            ctx.echo(f"{policy.name}: {render(verdict)}")
            approvals |= {(policy.name, u): a for u, a in entries.items()}
            approvers[policy.name] = tuple(who for _, who in approved_by_trailers(verdict))
    return VerifiedApprovals(approvals, findings, approvers, frozenset(unverified))


def _observe_and_plan(
    ctx: RunContext, ws: Workspace, *, run_checks: bool, verified: VerifiedApprovals | None = None
) -> tuple[Plan, dict[tuple[str, str], PolicyRecords]]:
    """Observe each account (in parallel, at most `ctx.parallel` at once) and plan it; the
    plans of all accounts are put together in order (policy, then account)."""
    services = target_services(ctx)
    guardrails = ctx.guardrails
    ambient = _ambient_account(ctx) if guardrails is not None else None
    allowed, refused = _judge(ctx, ws.policies, guardrails, ambient)
    inventory = AwsInventory(
        services,
        values=run_checks,
        guardrails=guardrails,
        ambient_account_id=ambient,
        always_list=ctx.list_users,
    )
    # The status files are parsed while AWS answers (its answers are mostly waiting); the
    # inventory's hints wait for that, rather than parse the same files a second time.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="status") as loader:
        preloaded = loader.submit(ws.tree.preload)
        groups = accounts.resolve(ctx.sessions, allowed, ctx.shard)

        def hint(policy: Policy, account_id: str) -> PolicyStatus:
            preloaded.result()
            return ws.tree.policy(policy.name, account_id or None).status

        def observe(group: accounts.AccountGroup) -> dict[str, PolicyObservation]:
            if group.error is not None:
                failed = group.policies
                return {p.name: PolicyObservation(p.name, error=group.error) for p in failed}
            return inventory.observe(group.policies, ctx.now, hint)

        if ctx.parallel > 1 and len(groups) > 1:
            with ThreadPoolExecutor(max_workers=ctx.parallel, thread_name_prefix="observe") as pool:
                observations = list(pool.map(observe, groups))
        else:
            observations = [observe(g) for g in groups]
        preloaded.result()
    approvals = verified.approvals if verified else ws.approvals
    findings = verified.findings if verified else None
    plans: list[PolicyPlan] = []
    records: dict[tuple[str, str], PolicyRecords] = {}
    for group, observed in zip(groups, observations, strict=True):
        found = {
            p.name: ws.tree.policy(p.name, observed[p.name].account_id or None)
            for p in group.policies
        }
        for name, record in found.items():
            # Keyed as the plan names it (an account that could not be observed: ""), while the
            # record knows the account its files are in.
            records[(name, observed[name].account_id)] = record
        statuses = {name: r.status for name, r in found.items()}
        first = plan(
            group.policies,
            observed,
            statuses,
            ctx.now,
            approvals=approvals,
            findings=findings,
            guardrails=guardrails,
            ambient_account_id=ambient,
        )
        external = _run_checks(ctx, services, ws, first, observed) if run_checks else {}
        if external:
            first = plan(
                group.policies,
                observed,
                statuses,
                ctx.now,
                approvals=approvals,
                external=external,
                findings=findings,
                guardrails=guardrails,
                ambient_account_id=ambient,
            )
        plans.extend(first.policies)
    for policy, broken in refused:
        record = ws.tree.policy(policy.name, None)
        records[(policy.name, "")] = record
        plans.append(_refused_plan(policy, broken, record.status))
    plans.sort(key=lambda pp: (pp.policy.name, pp.account_id))
    whole = Plan(ctx.now, tuple(plans))
    if guardrails is None or guardrails.max_changes_per_run is None:
        return whole, records
    created = {
        key.id: key.created
        for observed in observations
        for observation in observed.values()
        for user in observation.users.values()
        if user is not None
        for key in user.keys
    }
    return hold_back(whole, guardrails.max_changes_per_run, created), records


# --- guardrails ----------------------------------------------------------------------------------


def _ambient_account(ctx: RunContext) -> str | None:
    """The account of the ambient credentials (what `accounts` defaults to); None if unknown,
    in which case the policies' own accounts are still judged and observation reports the
    failure."""
    try:
        return ctx.sessions.account_id(Account())
    except AWS_ERRORS:
        return None


def _judge(
    ctx: RunContext,
    policies: Sequence[Policy],
    guardrails: Guardrails | None,
    ambient: str | None,
) -> tuple[list[Policy], list[tuple[Policy, list[Violation]]]]:
    """The policies that keep the guardrails, and those refused with what they break: nothing
    of AWS is read or changed for a refused policy."""
    if guardrails is None:
        return list(policies), []
    region = ctx.sessions.session(Account()).region_name
    allowed: list[Policy] = []
    refused: list[tuple[Policy, list[Violation]]] = []
    for policy in policies:
        # A unit's member accounts are judged user by user (`exclusion`), once they are known.
        unit = policy.account.organizational_unit is not None
        broken = violations(
            policy,
            guardrails,
            ambient_account_id=None if unit else ambient,
            ambient_region=region,
        )
        if broken:
            refused.append((policy, broken))
        else:
            allowed.append(policy)
    return allowed, refused


def _refused_plan(
    policy: Policy, broken: Sequence[Violation], previous: PolicyStatus
) -> PolicyPlan:
    """A refused policy's plan: one finding per violation; its users' status stays as it was."""
    found = tuple(
        Finding(
            policy.name,
            "*",
            FindingKind.REFUSED,
            Reason.GUARDRAIL_VIOLATED,
            {
                "policy": policy.name,
                "rule": v.rule.value,
                "where": str(v.at),
                "path": v.path,
                "guardrail": v.guardrail,
                "guardrail_at": str(v.guardrail_at),
                "subject": v.subject,
                "limit": v.limit,
            },
        )
        for v in broken
    )
    kept = tuple(UserPlan(policy.name, name, st) for name, st in sorted(previous.users.items()))
    return PolicyPlan(policy, kept, previous, found)


def _run_checks(
    ctx: RunContext,
    services: TargetServices,
    ws: Workspace,
    first: Plan,
    observed: dict[str, PolicyObservation],
) -> dict[tuple[str, str], ExternalResults]:
    """Run the command/http checks the plan reached (the planner never runs anything)."""
    wanted = [(pp, up) for pp in first.policies for up in pp.users if up.needs_checks]
    if not wanted:
        return {}
    from controller.checks import runner
    from controller.checks.command import CheckTamperError

    external: dict[tuple[str, str], ExternalResults] = {}
    for pp, up in wanted:
        new_key = _new_key_secret(ctx, services, pp.policy, up, observed[pp.policy.name])
        where = f"{pp.policy.name}/{up.user}"

        def log(index: int, outcome: CommandOutcome, where: str = where) -> None:
            # The masked output tail, for the run's log only: status gets the short message.
            state = "passed" if outcome.result.passed else "failed"
            ctx.echo(f"{where}: check {index + 1} (command) {state}: {outcome.result.message}")
            if outcome.output:
                ctx.echo(f"{where}: check {index + 1} output: {outcome.output}")

        try:
            external[(pp.policy.name, up.user)] = runner.run_external_checks(
                pp.policy,
                cwd=ws.root,
                new_key=new_key,
                secrets=ctx.held_secrets(new_key.secret_access_key if new_key else None),
                env=ctx.check_env,
                run_as=ctx.check_user,
                on_output=log,
            )
        except CheckTamperError as exc:
            raise CheckTamperError(
                f"{where}: {exc}; nothing was committed or pushed in this run"
            ) from None
    return external


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


def _synced(ctx: RunContext, repo: StatusRepo, fetch: bool) -> None:
    """Fetch the upstream and fast-forward (publishing unpublished status commits first) before
    anything is read, so a merged approval, a suspend or a changed manifest counts at once."""
    if fetch:
        repo.sync()


@dataclass(frozen=True)
class Prepared:
    """A plan made in a synced checkout, with the status files it was made from."""

    workspace: Workspace
    plan: Plan
    records: dict[tuple[str, str], PolicyRecords]
    approvals: VerifiedApprovals = field(default_factory=VerifiedApprovals)


def prepare(
    ctx: RunContext, repo: StatusRepo, policies: Sequence[str] = (), *, fetch: bool = True
) -> Prepared:
    """Sync the checkout, read what is committed, verify its approvals, observe AWS, run the
    checks, and plan."""
    _synced(ctx, repo, fetch)
    ws = open_workspace(repo.root, policies, committed=repo)
    verified = verified_approvals(ctx, ws, repo)
    done, records = _observe_and_plan(ctx, ws, run_checks=True, verified=verified)
    return Prepared(ws, done, records, verified)


def execute(
    ctx: RunContext,
    repo: StatusRepo,
    prepared: Prepared,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> ApplyResult:
    """Carry out a prepared plan and publish what happened."""
    executor = Executor(ctx, repo, target_services(ctx), sleep=sleep)
    return executor.apply(
        prepared.plan,
        prepared.records,
        prepared.workspace.approval_texts,
        prepared.approvals.approvers,
        parallel=ctx.parallel,
    )


def apply_once(
    ctx: RunContext, repo_path: Path, policies: Sequence[str] = (), *, fetch: bool = True
) -> tuple[Plan, ApplyResult]:
    """Sync, plan and apply in one checkout, publishing status."""
    with StatusRepo.open(repo_path, push_token=ctx.ci.token) as repo:
        prepared = prepare(ctx, repo, policies, fetch=fetch)
        return prepared.plan, execute(ctx, repo, prepared)


@dataclass
class ReconcileResult:
    plan: Plan
    applied: ApplyResult
    pulls: list[PullOutcome] = field(default_factory=list)
    issues: list[IssueOutcome] = field(default_factory=list)
    github: bool = False


def reconcile_once(
    ctx: RunContext, repo_path: Path, policies: Sequence[str] = (), *, fetch: bool = True
) -> ReconcileResult:
    """Apply, then keep approval pull requests and per-user issues in step with the status
    this run wrote (not the plan before it, so a rollback gets its issue in the same run)."""
    with StatusRepo.open(repo_path, push_token=ctx.ci.token) as repo:
        prepared = prepare(ctx, repo, policies, fetch=fetch)
        done, verified = prepared.plan, prepared.approvals
        applied = execute(ctx, repo, prepared)
        result = ReconcileResult(done, applied)
        if not ctx.ci.has_github:
            return result
        result.github = True
        with ctx.github() as client:
            result.pulls = [
                ensure_approval_pr(
                    repo, client, pp, proposal=ctx.run_id, bot_login=ctx.ci.bot_login
                )
                for pp in done.policies
                if pp.policy.approval == "pull-request"
                and pp.policy.name not in verified.unverified
                and not _is_refused(pp)
            ]
            observed = {
                (pp.policy.name, pp.account_id)
                for pp in done.policies
                if not any(f.reason in ERROR_REASONS for f in pp.findings)
            }
            statuses = {key: st for key, st in applied.statuses.items() if key in observed}
            sources = {pp.policy.name: pp.policy.source.path for pp in done.policies}
            result.issues = sync_issues(client, statuses, sources, ctx.now)
    return result


def _is_refused(pp: PolicyPlan) -> bool:
    return any(f.reason == Reason.GUARDRAIL_VIOLATED for f in pp.findings)
