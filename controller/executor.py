"""The executor: carries out a plan's actions against IAM and the targets, and records them in git.

Before each mutation it re-reads the state the action depends on, so a plan that went stale
(another run, a person) fails its precondition instead of breaking a rule: never a third key,
never touching a key a target holds, never leaving a user without an active key.

Before CreateAccessKey, the only step that cannot be repeated safely (its secret is returned
once), the executor commits and pushes an intent. If this process dies after creating the key,
the next run sees a key created after the intent and either finishes storing it (a readable
target has it) or deletes it (its secret is lost).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import boto3

from controller import commits, lifecycle
from controller.approvals import approvals_path
from controller.approvals import dump as dump_approvals
from controller.aws import AWS_ERRORS, CLIENT_CONFIG, describe_error, error_code
from controller.context import RunContext
from controller.errors import KeyrotorError
from controller.gitops.repo import StatusRepo
from controller.plan import Action, ActionKind, Outcome, Plan, PolicyPlan
from controller.policy import Policy
from controller.secret import AccessKeySecret
from controller.status import PolicyStatus, dump, status_path
from controller.targets import BoundTarget, TargetServices, bind_all, find_secret

# A new key can take a few seconds to authenticate everywhere (IAM is eventually consistent).
VERIFY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)


class PreconditionFailed(KeyrotorError):
    """The state changed since the plan was made; the action was not carried out."""


class NeedsPerson(KeyrotorError):
    """keyrotor undid its own step and must not try again by itself (the user is held)."""


@dataclass
class ActionResult:
    action: Action
    ok: bool
    outcome: Outcome = field(default_factory=Outcome)
    error: str = ""


@dataclass
class ApplyResult:
    results: list[ActionResult] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    # Each policy's status as this run left it (what issues and summaries are built from).
    statuses: dict[str, PolicyStatus] = field(default_factory=dict)

    @property
    def failed(self) -> list[ActionResult]:
        return [r for r in self.results if not r.ok]


class Executor:
    def __init__(
        self,
        ctx: RunContext,
        repo: StatusRepo,
        services: TargetServices,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ctx, self.repo, self.services, self.sleep = ctx, repo, services, sleep
        self.sessions = services.sessions
        self.now, self.push, self.echo, self.run = ctx.now, ctx.push, ctx.echo, ctx.run_id
        self._hook = ctx.hook or (lambda point: None)

    # -- the whole plan --
    def apply(self, plan: Plan) -> ApplyResult:
        result = ApplyResult()
        for policy_plan in plan.policies:
            self._apply_policy(policy_plan, result)
        return result

    def _apply_policy(self, pp: PolicyPlan, result: ApplyResult) -> None:
        status = pp.status
        creates = [a for a in pp.actions if a.kind == ActionKind.CREATE_KEY]
        if creates:
            status = self._record_intent(pp.policy, status, creates, result)
        done: list[ActionResult] = []
        for user_plan in pp.users:
            for action in user_plan.actions:
                outcome, error, hold = self._attempt(pp.policy, action)
                user_status = status.users[action.user]
                if error is None:
                    done.append(ActionResult(action, True, outcome))
                    after = lifecycle.on_success(pp.policy, user_status, action, outcome, self.now)
                    status = status.with_user(action.user, after)
                    self.echo(f"{pp.policy.name}: {commits.done_line(action, outcome)}")
                    continue
                done.append(ActionResult(action, False, error=error))
                after = lifecycle.on_failure(user_status, action, error, hold=hold)
                status = status.with_user(action.user, after)
                self.echo(f"{pp.policy.name}: {action.kind} for {action.user} FAILED: {error}")
                break
        result.results.extend(done)
        result.statuses[pp.policy.name] = status
        deleted = [
            (r.action.user, r.action.key or "")
            for r in done
            if r.ok and r.action.kind == ActionKind.DELETE_KEY
        ]
        approvals = lifecycle.approvals_left(pp.approvals, deleted)
        changes: dict[str, str | None] = {}
        if approvals != pp.approvals:
            changes[approvals_path(pp.policy.name)] = dump_approvals(pp.policy.name, approvals)
        if changes or not status.same_content(pp.previous):
            status = replace(status, last_reconciled=self.now)
            changes[status_path(pp.policy.name)] = dump(status)
            sha = self._commit_status(pp.policy, status, done, changes, pp.previous)
            if sha:
                result.commits.append(sha)
            if self.push:
                self._hook("push:status")
                self.repo.push_status()

    # -- intent --
    def _record_intent(
        self, policy: Policy, status: PolicyStatus, creates: Sequence[Action], result: ApplyResult
    ) -> PolicyStatus:
        for action in creates:
            status = status.with_user(
                action.user, lifecycle.on_intent(status.users[action.user], self.now)
            )
        message = commits.intent_commit(policy.name, creates, self.run)
        sha = self.repo.commit(
            {status_path(policy.name): dump(replace(status, last_reconciled=self.now))},
            message.subject,
            message.body,
            message.trailers,
        )
        if sha:
            result.commits.append(sha)
        if self.push:
            self._hook("push:intent")
            self.repo.push_intent()  # PushRejected: stop before touching AWS
        return status

    def _commit_status(
        self,
        policy: Policy,
        status: PolicyStatus,
        done: Sequence[ActionResult],
        changes: Mapping[str, str | None],
        previous: PolicyStatus,
    ) -> str | None:
        message = commits.steps_commit(
            policy.name,
            [(r.action, r.outcome) for r in done if r.ok],
            [(r.action, r.error) for r in done if not r.ok],
            _changed_users(status, previous),
            self.run,
        )
        return self.repo.commit(changes, message.subject, message.body, message.trailers)

    # -- one action --
    def _attempt(self, policy: Policy, action: Action) -> tuple[Outcome, str | None, bool]:
        """The outcome, or the error and whether the user must now wait for a person."""
        try:
            return self._execute(policy, action), None, False
        except KeyrotorError as exc:
            return Outcome(), str(exc), isinstance(exc, NeedsPerson)
        except AWS_ERRORS as exc:
            return Outcome(), describe_error(exc), False

    def _execute(self, policy: Policy, action: Action) -> Outcome:
        iam = self.sessions.client(policy.account, "iam")
        account_id = self.sessions.account_id(policy.account)
        targets = bind_all(policy, action.user, account_id, self.services)
        handler = {
            ActionKind.CREATE_KEY: self._create,
            ActionKind.STORE_KEY: self._store,
            ActionKind.DELETE_ORPHAN: self._delete_orphan,
            ActionKind.DEACTIVATE_KEY: self._deactivate,
            ActionKind.DELETE_KEY: self._delete,
            ActionKind.REACTIVATE_KEY: self._reactivate,
        }[action.kind]
        return handler(policy, action, iam, targets)

    def _call(self, name: str, fn: Callable[..., Any], **params: Any) -> Any:
        self._hook(f"before:{name}")
        response = fn(**params)
        self._hook(f"after:{name}")
        return response

    def _keys(self, iam: Any, user: str) -> dict[str, dict[str, Any]]:
        metas = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {m["AccessKeyId"]: m for m in metas}

    def _write(self, target: BoundTarget, secret: AccessKeySecret) -> None:
        self._hook(f"before:write {target.description}")
        target.write(secret)
        self._hook(f"after:write {target.description}")

    def _create(
        self, policy: Policy, action: Action, iam: Any, targets: list[BoundTarget]
    ) -> Outcome:
        keys = self._keys(iam, action.user)
        if len(keys) >= 2:
            raise PreconditionFailed(
                f"{action.user} already has two access keys "
                f"({', '.join(sorted(keys))}); a third cannot exist"
            )
        old = keys.get(action.replaces or "")
        if old is None or old["Status"] != "Active":
            raise PreconditionFailed(
                f"key {action.replaces} of {action.user} is no longer "
                "the active key the plan was made for"
            )
        created = self._call("create_access_key", iam.create_access_key, UserName=action.user)[
            "AccessKey"
        ]
        secret = AccessKeySecret(created["AccessKeyId"], created["SecretAccessKey"])
        self.ctx.announce_secret(secret.secret_access_key)
        self_used_at = self._verify(policy, iam, action.user, secret)
        for target in targets:
            self._write(target, secret)
        return Outcome(secret.access_key_id, created["CreateDate"], self_used_at)

    def _verify(self, policy: Policy, iam: Any, user: str, secret: AccessKeySecret) -> datetime:
        """Prove the new key authenticates as `user` before any application is given it."""
        expected = iam.get_user(UserName=user)["User"]["Arn"]
        sts = boto3.client(
            "sts",
            aws_access_key_id=secret.access_key_id,
            aws_secret_access_key=secret.secret_access_key,
            region_name=policy.account.region or "us-east-1",
            config=CLIENT_CONFIG,
        )
        last_error = ""
        for delay in (0.0, *VERIFY_DELAYS):
            if delay:
                self.sleep(delay)
            try:
                arn = self._call("sts_get_caller_identity", sts.get_caller_identity)["Arn"]
            except AWS_ERRORS as exc:
                if error_code(exc) not in ("InvalidClientTokenId", "SignatureDoesNotMatch"):
                    raise
                last_error = describe_error(exc)
                continue
            if arn != expected:
                self._call(
                    "delete_access_key",
                    iam.delete_access_key,
                    UserName=user,
                    AccessKeyId=secret.access_key_id,
                )
                raise NeedsPerson(
                    f"new key {secret.access_key_id} authenticated as {arn}, "
                    f"not {expected}; deleted it"
                )
            used = iam.get_access_key_last_used(AccessKeyId=secret.access_key_id)
            return used.get("AccessKeyLastUsed", {}).get("LastUsedDate") or self.now
        self._call(
            "delete_access_key",
            iam.delete_access_key,
            UserName=user,
            AccessKeyId=secret.access_key_id,
        )
        waited = timedelta(seconds=sum(VERIFY_DELAYS))
        raise NeedsPerson(
            f"new key {secret.access_key_id} did not authenticate within "
            f"{waited.seconds}s ({last_error}); deleted it, nothing was stored"
        )

    def _find_secret(self, targets: list[BoundTarget], key_id: str) -> AccessKeySecret | None:
        secret = find_secret(targets, key_id)
        if secret is not None:
            self.ctx.announce_secret(secret.secret_access_key)
        return secret

    def _holders(self, targets: list[BoundTarget], key_id: str) -> list[BoundTarget]:
        return [t for t in targets if t.readable and _held(t) == key_id]

    def _store(
        self, policy: Policy, action: Action, iam: Any, targets: list[BoundTarget]
    ) -> Outcome:
        assert action.key is not None
        keys = self._keys(iam, action.user)
        if action.key not in keys:
            raise PreconditionFailed(f"key {action.key} of {action.user} no longer exists")
        secret = self._find_secret(targets, action.key)
        if secret is None:
            raise PreconditionFailed(
                f"no target holds the secret of key {action.key}, now or in its history. Delete "
                f"the key (aws iam delete-access-key --user-name {action.user} --access-key-id "
                f"{action.key}) and keyrotor starts a fresh rotation"
            )
        holders = self._holders(targets, action.key)
        for target in targets:
            if target not in holders:
                self._write(target, secret)
        return Outcome(action.key, keys[action.key]["CreateDate"], None)

    def _reactivate(
        self, policy: Policy, action: Action, iam: Any, targets: list[BoundTarget]
    ) -> Outcome:
        """Roll back: the old key works again at once, then the targets get it back if they can."""
        assert action.key is not None
        if action.key not in self._keys(iam, action.user):
            raise PreconditionFailed(f"old key {action.key} no longer exists; nothing to restore")
        self._call(
            "update_access_key",
            iam.update_access_key,
            UserName=action.user,
            AccessKeyId=action.key,
            Status="Active",
        )
        secret = self._find_secret(targets, action.key)
        if secret is None:
            return Outcome(action.key, restored="none")
        for target in targets:
            if not target.readable or _held(target) != action.key:
                self._write(target, secret)
        unrestorable = tuple(t.description for t in targets if not t.readable)
        if unrestorable:
            return Outcome(action.key, restored="readable", unreadable=unrestorable)
        return Outcome(action.key, restored="all")

    def _delete_orphan(
        self, policy: Policy, action: Action, iam: Any, targets: list[BoundTarget]
    ) -> Outcome:
        assert action.key is not None
        return self._delete_unheld(iam, targets, action, "it is not an orphan")

    def _deactivate(
        self, policy: Policy, action: Action, iam: Any, targets: list[BoundTarget]
    ) -> Outcome:
        assert action.key is not None
        keys = self._keys(iam, action.user)
        others = [k for k, m in keys.items() if k != action.key and m["Status"] == "Active"]
        if not others:
            raise PreconditionFailed(
                f"{action.key} is the only active key of {action.user}; "
                "deactivating it would leave no working key"
            )
        for target in targets:
            if target.readable and _held(target) != others[0]:
                raise PreconditionFailed(
                    f"{target.description} does not hold new key "
                    f"{others[0]}; refusing to deactivate {action.key}"
                )
        self._call(
            "update_access_key",
            iam.update_access_key,
            UserName=action.user,
            AccessKeyId=action.key,
            Status="Inactive",
        )
        return Outcome(action.key)

    def _delete(
        self, policy: Policy, action: Action, iam: Any, targets: list[BoundTarget]
    ) -> Outcome:
        assert action.key is not None
        keys = self._keys(iam, action.user)
        meta = keys.get(action.key)
        if meta is None:
            return Outcome(action.key)  # already gone: the goal is reached
        if meta["Status"] != "Inactive":
            raise PreconditionFailed(
                f"key {action.key} is active again; keyrotor deletes only a key it deactivated"
            )
        return self._delete_unheld(iam, targets, action, "refusing to delete it")

    def _delete_unheld(
        self, iam: Any, targets: list[BoundTarget], action: Action, refusal: str
    ) -> Outcome:
        """Delete `action.key`, re-reading every target first: never a key a target holds."""
        assert action.key is not None
        if holders := self._holders(targets, action.key):
            raise PreconditionFailed(f"{holders[0].description} holds key {action.key}; {refusal}")
        try:
            self._call(
                "delete_access_key",
                iam.delete_access_key,
                UserName=action.user,
                AccessKeyId=action.key,
            )
        except AWS_ERRORS as exc:
            # A lost answer, or another run deleting it too: the key is gone, the goal reached.
            if error_code(exc) != "NoSuchEntity":
                raise
        return Outcome(action.key)


def _held(target: BoundTarget) -> str | None:
    secret = target.read()
    return secret.access_key_id if secret else None


def _changed_users(status: PolicyStatus, previous: PolicyStatus) -> list[str]:
    return sorted(
        user
        for user in set(status.users) | set(previous.users)
        if _as_written(status, user) != _as_written(previous, user)
    )


def _as_written(status: PolicyStatus, user: str) -> dict[str, Any] | None:
    found = status.users.get(user)
    return found.to_dict() if found else None
