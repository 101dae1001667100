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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from controller import commits, lifecycle, ownership
from controller.approvals import approvals_path
from controller.approvals import dump as dump_approvals
from controller.aws import AWS_ERRORS, describe_error, error_code
from controller.context import RunContext
from controller.errors import GitError, KeyrotorError
from controller.gitops.repo import StatusRepo
from controller.gitops.store import FileUpdate, IntentConflict
from controller.plan import Action, ActionKind, Outcome, Plan, PolicyPlan
from controller.planner import CLOCK_SKEW
from controller.policy import Policy
from controller.reasons import Reason
from controller.secret import AccessKeySecret
from controller.status import PolicyStatus, UserStatus
from controller.statusfiles import PolicyRecords, dump_user, load_user, user_path
from controller.targets import BoundTarget, ReadableTarget, TargetServices, bind_all, find_secret

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_iam.type_defs import AccessKeyMetadataTypeDef

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
    # Each (policy, account)'s status as this run left it (issues and summaries are built
    # from it).
    statuses: dict[tuple[str, str], PolicyStatus] = field(default_factory=dict)
    # What kept this run from recording or doing its part (a push that failed, a lost race):
    # the run exits 1 naming them, and the other policies still run.
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[ActionResult]:
        return [r for r in self.results if not r.ok]


@dataclass(frozen=True)
class _Event:
    """One thing that happened to a user this run, replayable on another run's record."""

    action: Action
    outcome: Outcome | None = None  # None: it failed
    error: str = ""
    hold: bool = False

    def apply(self, policy: Policy, status: UserStatus, now: datetime) -> UserStatus:
        if self.outcome is not None:
            return lifecycle.on_success(policy, status, self.action, self.outcome, now)
        return lifecycle.on_failure(status, self.action, self.error, hold=self.hold)


@dataclass
class _PolicyRun:
    """One policy's part of a run, as it goes from intent through steps to its status commit."""

    pp: PolicyPlan
    records: PolicyRecords
    approvals_text: str | None
    approvers: tuple[str, ...]
    skipped: set[str] = field(default_factory=set)
    events: dict[str, list[_Event]] = field(default_factory=dict)
    done: list[ActionResult] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.account = self.pp.account_id or self.records.account
        self.status = self.pp.status
        self.bases: dict[str, str | None] = dict(self.records.texts)


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
    def apply(
        self,
        plan: Plan,
        records: Mapping[tuple[str, str], PolicyRecords],
        approval_texts: Mapping[str, str] | None = None,
        approvers: Mapping[str, Sequence[str]] | None = None,
        *,
        parallel: int = 1,
    ) -> ApplyResult:
        """Carry out `plan`; `records` are the status files each (policy, account) was planned
        from; `approvers` the `Keyrotor-Approved-By` values of each policy's verified approval.

        Three phases, so that output and commits come in the plan's (sorted) order whatever
        order the accounts finish in: the intents, one after another; the steps, accounts in
        parallel (at most `parallel` at once); then each policy's status, in order.
        """
        result = ApplyResult()
        texts = approval_texts or {}
        runs = [
            _PolicyRun(
                pp,
                records.get((pp.policy.name, pp.account_id))
                or PolicyRecords(pp.previous, pp.account_id),
                texts.get(approvals_path(pp.policy.name)),
                tuple((approvers or {}).get(pp.policy.name, ())),
            )
            for pp in plan.policies
        ]
        for run in runs:
            if any(a.kind == ActionKind.CREATE_KEY for a in run.pp.actions):
                self._record_intent(run, result)
        by_account: dict[str, list[_PolicyRun]] = {}
        for run in runs:
            by_account.setdefault(run.account, []).append(run)
        groups = [by_account[a] for a in sorted(by_account)]
        if parallel > 1 and len(groups) > 1:
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="account") as pool:
                for future in [pool.submit(self._act_all, group) for group in groups]:
                    future.result()
        else:
            for group in groups:
                self._act_all(group)
        for run in runs:
            for line in run.lines:
                self.echo(line)
            self._record(run, result)
        return result

    def _act_all(self, runs: Sequence[_PolicyRun]) -> None:
        for run in runs:
            self._act(run)

    def _act(self, run: _PolicyRun) -> None:
        pp = run.pp
        for user_plan in pp.users:
            if user_plan.user in run.skipped:
                continue
            for action in user_plan.actions:
                outcome, error, hold = self._attempt(pp.policy, action)
                if error is None:
                    event = _Event(action, outcome)
                    run.done.append(ActionResult(action, True, outcome))
                    run.lines.append(f"{pp.policy.name}: {commits.done_line(action, outcome)}")
                else:
                    event = _Event(action, None, error, hold)
                    run.done.append(ActionResult(action, False, error=error))
                    run.lines.append(
                        f"{pp.policy.name}: {action.kind} for {action.user} FAILED: {error}"
                    )
                run.events.setdefault(action.user, []).append(event)
                run.status = run.status.with_user(
                    action.user, event.apply(pp.policy, run.status.users[action.user], self.now)
                )
                if error is not None:
                    break

    def _record(self, run: _PolicyRun, result: ApplyResult) -> None:
        pp, records = run.pp, run.records
        status = run.status
        for user in run.skipped:  # another run acts on them: this run records nothing about them
            status = status.with_user(user, records.status.users.get(user))
        result.results.extend(run.done)
        result.statuses[(pp.policy.name, run.account)] = status
        updates = self._status_updates(
            pp, records, run.account, status, run.bases, run.events, run.skipped
        )
        approvals = lifecycle.approvals_left(pp.approvals, status.users)
        if approvals != pp.approvals:
            path = approvals_path(pp.policy.name)
            updates.append(
                FileUpdate(path, run.approvals_text, dump_approvals(pp.policy.name, approvals))
            )
        done = run.done
        if not updates and not done:
            return
        message = commits.steps_commit(
            pp.policy.name,
            [(r.action, r.outcome) for r in done if r.ok],
            [(r.action, r.error) for r in done if not r.ok],
            sorted({u.path.rsplit("/", 1)[-1].removesuffix(".yaml") for u in updates
                    if u.path.startswith("status/") and u.path != records.legacy}),
            self.run,
            *_approved(pp, done, run.approvers),
            found=_found(records.status, status, done, run.skipped),
        )  # fmt: skip
        self._publish(pp.policy.name, updates, message, result)

    def _publish(
        self,
        policy: str,
        updates: list[FileUpdate],
        message: commits.CommitMessage,
        result: ApplyResult,
        *,
        intent: bool = False,
    ) -> str | None:
        self._hook("push:intent" if intent else "push:status")
        sha = self.repo.publish(
            updates,
            message.subject,
            message.body,
            message.trailers,
            when=self.now,
            intent=intent,
            push=self.push,
        )
        if sha:
            result.commits.append(sha)
        return sha

    def _status_updates(
        self,
        pp: PolicyPlan,
        records: PolicyRecords,
        account: str,
        status: PolicyStatus,
        bases: Mapping[str, str | None],
        events: Mapping[str, list[_Event]],
        skipped: set[str],
    ) -> list[FileUpdate]:
        """One update per user whose record changed as written, replaying this run's steps on
        whatever another run may have recorded meanwhile; the legacy file goes once migrated."""
        policy = pp.policy
        updates: list[FileUpdate] = []
        for user in sorted((set(status.users) | set(records.status.users)) - skipped):
            path = user_path(policy.name, account, user)
            base = bases.get(path)
            after = status.users.get(user)
            new = dump_user(policy.name, account, user, after) if after is not None else None
            if new == base:
                continue
            steps = events.get(user)
            planned = pp.status.users.get(user)
            replay = _replayer(policy, account, user, planned, steps, self.now) if steps else None
            updates.append(FileUpdate(path, base, new, replay))
        if records.legacy is not None:
            # Migrated: the per-user files replace it, whatever another run did to it.
            updates.append(FileUpdate(records.legacy, records.legacy_text, None, _gone))
        return updates

    # -- intent --
    def _record_intent(self, run: _PolicyRun, result: ApplyResult) -> None:
        """Publish the intent before CreateAccessKey; users whose creates must not run are
        added to `run.skipped`."""
        pp, account = run.pp, run.account
        creates = [a for a in pp.actions if a.kind == ActionKind.CREATE_KEY]
        updates = []
        for action in creates:
            after = lifecycle.on_intent(run.status.users[action.user], self.now)
            run.status = run.status.with_user(action.user, after)
            path = user_path(pp.policy.name, account, action.user)
            new = dump_user(pp.policy.name, account, action.user, after)
            updates.append(FileUpdate(path, run.bases.get(path), new))
        message = commits.intent_commit(pp.policy.name, creates, self.run)
        users = {a.user for a in creates}
        try:
            self._publish(pp.policy.name, updates, message, result, intent=True)
        except IntentConflict as exc:
            conflicted = {u for u in users if user_path(pp.policy.name, account, u) in exc.paths}
            result.errors.append(f"{pp.policy.name}: {exc}")
            run.lines.append(
                f"{pp.policy.name}: not creating keys for {', '.join(sorted(conflicted))}: {exc}"
            )
            run.skipped |= conflicted
            return
        except GitError as exc:  # PushRejected after every attempt, or the remote unreachable
            result.errors.append(f"{pp.policy.name}: {exc}")
            run.lines.append(f"{pp.policy.name}: no key is created in this run: {exc}")
            run.skipped |= users
            return
        for update in updates:
            run.bases[update.path] = update.new

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
        iam = self.sessions.iam(policy.account)
        account_id = self.sessions.account_id(policy.account)
        targets = bind_all(policy, action.user, account_id, self.services)
        handler = {
            ActionKind.ADOPT_KEY: self._adopt,
            ActionKind.RECORD_TARGETS: self._record_targets,
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

    def _keys(self, iam: IAMClient, user: str) -> dict[str, AccessKeyMetadataTypeDef]:
        metas = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {m["AccessKeyId"]: m for m in metas}

    # -- ownership: IAM's tags, read live before every step and written only here --
    def _ownership(self, iam: IAMClient, user: str) -> ownership.Ownership:
        tags: dict[str, str] = {}
        for page in iam.get_paginator("list_user_tags").paginate(UserName=user):
            tags.update({t["Key"]: t["Value"] for t in page["Tags"]})
        return ownership.parse(tags)

    def _owned(
        self, own: ownership.Ownership, keys: Mapping[str, AccessKeyMetadataTypeDef]
    ) -> dict[str, datetime]:
        return {k: m["CreateDate"] for k, m in keys.items() if own.owns(k, m["CreateDate"])}

    def _record_keys(
        self,
        policy: Policy,
        iam: IAMClient,
        user: str,
        owned: Mapping[str, datetime],
        *,
        fulfil_intent: bool = False,
    ) -> None:
        """Record `owned` as keyrotor's keys; with `fulfil_intent`, in the same call, clear the
        intent (an empty value records none: one call, so no moment with both or neither)."""
        tags = {ownership.KEYS_TAG: ownership.keys_value(owned), ownership.POLICY_TAG: policy.name}
        if fulfil_intent:
            tags[ownership.INTENT_TAG] = ""
        self._call(
            "tag_user keys",
            iam.tag_user,
            UserName=user,
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )

    def _require_owned(
        self,
        own: ownership.Ownership,
        keys: Mapping[str, AccessKeyMetadataTypeDef],
        key: str,
        user: str,
    ) -> None:
        meta = keys.get(key)
        if meta is None or not own.owns(key, meta["CreateDate"]):
            raise PreconditionFailed(
                f"key {key} of {user} is not recorded as keyrotor's in IAM (the keyrotor.dev/keys "
                "tag); keyrotor never deactivates or deletes a key it does not own"
            )

    def _write(self, target: BoundTarget, secret: AccessKeySecret) -> None:
        self._hook(f"before:write {target.description}")
        target.write(secret)
        self._hook(f"after:write {target.description}")

    def _adopt(
        self, policy: Policy, action: Action, iam: IAMClient, targets: list[BoundTarget]
    ) -> Outcome:
        keys = self._keys(iam, action.user)
        own = self._ownership(iam, action.user)
        wanted = action.facts.get("keys")
        ids = list(wanted) if isinstance(wanted, tuple) else []
        missing = [k for k in ids if k not in keys]
        if missing:
            raise PreconditionFailed(f"key {missing[0]} of {action.user} no longer exists")
        if own.policy is not None and own.policy != policy.name:
            raise PreconditionFailed(
                f"{action.user} is managed by policy {own.policy} (the keyrotor.dev/policy tag); "
                f"policy {policy.name} leaves it alone"
            )
        orphan = action.reason == Reason.ORPHAN_RECORDED
        if orphan:
            for key in ids:
                if not own.intended(keys[key]["CreateDate"], CLOCK_SKEW):
                    raise PreconditionFailed(
                        f"key {key} of {action.user} was not created after keyrotor's intent"
                    )
                if self._holders(targets, key) != [t for t in targets if t.readable]:
                    raise PreconditionFailed(f"not every target holds key {key}")
        elif any(k in keys and own.owns(k, keys[k]["CreateDate"]) for k in own.keys):
            raise PreconditionFailed(
                f"{action.user} has a key recorded as keyrotor's already; nothing to adopt"
            )
        owned = {**self._owned(own, keys), **{k: keys[k]["CreateDate"] for k in ids}}
        self._record_keys(policy, iam, action.user, owned, fulfil_intent=orphan)
        return Outcome(action.key)

    def _record_targets(
        self, policy: Policy, action: Action, iam: IAMClient, targets: list[BoundTarget]
    ) -> Outcome:
        keys = self._keys(iam, action.user)
        for target in targets:
            if not target.readable:
                continue
            held = _held(target)
            if held in keys:
                self._hook(f"before:record {target.description}")
                cast("ReadableTarget", target).record(held)
                self._hook(f"after:record {target.description}")
        return Outcome()

    def _create(
        self, policy: Policy, action: Action, iam: IAMClient, targets: list[BoundTarget]
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
        own = self._ownership(iam, action.user)
        self._require_owned(own, keys, action.replaces or "", action.user)
        # The intent, in IAM where only keyrotor writes: a key created after it that no
        # target holds is this run's orphan, whatever a status file says.
        intent = ownership.intent_value(self.run, self.now)
        self._call(
            "tag_user intent",
            iam.tag_user,
            UserName=action.user,
            Tags=[{"Key": ownership.INTENT_TAG, "Value": intent}],
        )
        # Never resent by the client: a lost answer is the crash case (the intent covers it).
        created = self._call("create_access_key", iam.create_access_key, UserName=action.user)[
            "AccessKey"
        ]
        secret = AccessKeySecret(created["AccessKeyId"], created["SecretAccessKey"])
        self.ctx.announce_secret(secret.secret_access_key)
        self_used_at = self._verify(policy, iam, action.user, secret)
        for target in targets:
            self._write(target, secret)
        owned = {**self._owned(own, keys), secret.access_key_id: created["CreateDate"]}
        self._record_keys(policy, iam, action.user, owned, fulfil_intent=True)
        return Outcome(secret.access_key_id, created["CreateDate"], self_used_at)

    def _verify(
        self, policy: Policy, iam: IAMClient, user: str, secret: AccessKeySecret
    ) -> datetime:
        """Prove the new key authenticates as `user` before any application is given it.

        Returns when keyrotor last used the key itself (new-key-used counts only uses after
        it). The caller's account and the user's name in the ARN STS answers with are what
        identify the user (a user name is unique in its account), so no `GetUser` is needed.
        """
        account_id = self.sessions.account_id(policy.account)
        sts = self.sessions.key_client(
            secret.access_key_id,
            secret.secret_access_key,
            "sts",
            policy.account.region or "us-east-1",
        )
        last_error = ""
        for delay in (0.0, *VERIFY_DELAYS):
            if delay:
                self.sleep(delay)
            try:
                identity = self._call("sts_get_caller_identity", sts.get_caller_identity)
            except AWS_ERRORS as exc:
                if error_code(exc) not in ("InvalidClientTokenId", "SignatureDoesNotMatch"):
                    raise
                last_error = describe_error(exc)
                continue
            arn = str(identity["Arn"])
            if str(identity.get("Account")) != account_id or not arn.endswith(f"/{user}"):
                self._call(
                    "delete_access_key",
                    iam.delete_access_key,
                    UserName=user,
                    AccessKeyId=secret.access_key_id,
                )
                raise NeedsPerson(
                    f"new key {secret.access_key_id} authenticated as {arn}, not as user {user} "
                    f"of account {account_id}; deleted it"
                )
            return self.now
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
        self, policy: Policy, action: Action, iam: IAMClient, targets: list[BoundTarget]
    ) -> Outcome:
        assert action.key is not None
        keys = self._keys(iam, action.user)
        if action.key not in keys:
            raise PreconditionFailed(f"key {action.key} of {action.user} no longer exists")
        own = self._ownership(iam, action.user)
        created = keys[action.key]["CreateDate"]
        if not own.owns(action.key, created) and not own.intended(created, CLOCK_SKEW):
            raise PreconditionFailed(
                f"key {action.key} of {action.user} is neither keyrotor's nor created after its "
                "intent: keyrotor will not hand it to the targets"
            )
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
        if not own.owns(action.key, created) or own.intent is not None:
            owned = {**self._owned(own, keys), action.key: created}
            self._record_keys(policy, iam, action.user, owned, fulfil_intent=True)
        return Outcome(action.key, created, None)

    def _reactivate(
        self, policy: Policy, action: Action, iam: IAMClient, targets: list[BoundTarget]
    ) -> Outcome:
        """Roll back: the old key works again at once, then the targets get it back if they can."""
        assert action.key is not None
        keys = self._keys(iam, action.user)
        if action.key not in keys:
            raise PreconditionFailed(f"old key {action.key} no longer exists; nothing to restore")
        self._require_owned(self._ownership(iam, action.user), keys, action.key, action.user)
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
        self, policy: Policy, action: Action, iam: IAMClient, targets: list[BoundTarget]
    ) -> Outcome:
        assert action.key is not None
        keys = self._keys(iam, action.user)
        meta = keys.get(action.key)
        if meta is None:
            return Outcome(action.key)  # already gone: the goal is reached
        own = self._ownership(iam, action.user)
        if own.owns(action.key, meta["CreateDate"]) or not own.intended(
            meta["CreateDate"], CLOCK_SKEW
        ):
            raise PreconditionFailed(
                f"key {action.key} of {action.user} was not created by an interrupted keyrotor "
                "run (IAM records no intent of keyrotor's before it): keyrotor leaves it alone"
            )
        self._require_another_active(keys, action.key, action.user)
        return self._delete_unheld(iam, targets, action, "it is not an orphan")

    def _deactivate(
        self, policy: Policy, action: Action, iam: IAMClient, targets: list[BoundTarget]
    ) -> Outcome:
        assert action.key is not None
        keys = self._keys(iam, action.user)
        own = self._ownership(iam, action.user)
        self._require_owned(own, keys, action.key, action.user)
        others = [
            k
            for k, m in keys.items()
            if k != action.key and m["Status"] == "Active" and own.owns(k, m["CreateDate"])
        ]
        if not others:
            raise PreconditionFailed(
                f"{action.key} is the only active key of {action.user} that keyrotor manages; "
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
        self, policy: Policy, action: Action, iam: IAMClient, targets: list[BoundTarget]
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
        own = self._ownership(iam, action.user)
        self._require_owned(own, keys, action.key, action.user)
        self._require_another_active(keys, action.key, action.user)
        outcome = self._delete_unheld(iam, targets, action, "refusing to delete it")
        remaining = {k: c for k, c in self._owned(own, keys).items() if k != action.key}
        self._record_keys(policy, iam, action.user, remaining)
        return outcome

    @staticmethod
    def _require_another_active(
        keys: Mapping[str, AccessKeyMetadataTypeDef], key: str, user: str
    ) -> None:
        if not any(k != key and m["Status"] == "Active" for k, m in keys.items()):
            raise PreconditionFailed(
                f"{key} would leave {user} with no active key; keyrotor never does that"
            )

    def _delete_unheld(
        self, iam: IAMClient, targets: list[BoundTarget], action: Action, refusal: str
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


# Steps of a pull-request policy that only an approval allows (a rollback or repair never waits).
_APPROVED_STEPS = frozenset(
    {ActionKind.CREATE_KEY, ActionKind.DEACTIVATE_KEY, ActionKind.DELETE_KEY}
)


def _found(
    before: PolicyStatus, after: PolicyStatus, done: Sequence[ActionResult], skipped: set[str]
) -> list[commits.Step]:
    """Steps the records moved through that no action of this run names (found done in IAM)."""
    taken = {(r.action.user, str(r.action.kind), commits.step_key(r.action, r.outcome))
             for r in done if r.ok}  # fmt: skip
    found = []
    for user in sorted(set(after.users) - skipped):
        for kind, key in lifecycle.found_steps(before.users.get(user), after.users.get(user)):
            if (user, str(kind), key) not in taken:
                found.append(commits.Step(user, str(kind), key))
    return found


def _approved(
    pp: PolicyPlan, done: Sequence[ActionResult], approvers: tuple[str, ...]
) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """Who approved the steps done (when a verified approval allowed any), and the (user, old
    key) of each rotation it starts here."""

    def covered(action: Action) -> bool:
        approval = pp.approvals.get(action.user)
        key = action.replaces if action.kind == ActionKind.CREATE_KEY else action.key
        return approval is not None and approval.old_key == key

    allowed = [r.action for r in done if r.ok and r.action.kind in _APPROVED_STEPS]
    allowed = [a for a in allowed if covered(a)]
    if not approvers or not allowed:
        return (), []
    started = [(a.user, a.replaces or "") for a in allowed if a.kind == ActionKind.CREATE_KEY]
    return approvers, started


def _held(target: BoundTarget) -> str | None:
    secret = target.read()
    return secret.access_key_id if secret else None


def _gone(_: str | None) -> None:
    return None


def _replayer(
    policy: Policy,
    account: str,
    user: str,
    planned: UserStatus | None,
    steps: Sequence[_Event],
    now: datetime,
) -> Callable[[str | None], str | None]:
    """This run's steps for `user`, applied to the latest record another run published."""

    def replay(upstream: str | None) -> str | None:
        path = user_path(policy.name, account, user)
        start = load_user(upstream, path=path) if upstream is not None else planned
        if start is None:
            return None
        for step in steps:
            start = step.apply(policy, start, now)
        return dump_user(policy.name, account, user, start)

    return replay
