"""The English keyrotor speaks: one renderer per `Reason`, from the facts a decision carries.

This is the only module that turns reasons into sentences. Plans, status files, commit bodies,
pull requests and issues all call `render`; none of them, nor anything else, parses the result.
Facts are key ids, times and durations (never a secret). Times are shown in UTC to the minute.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from controller.approvals import approvals_path
from controller.durations import format_duration
from controller.guardrails.messages import violation_text
from controller.guardrails.model import ExclusionReason, Rule
from controller.policy import Window
from controller.reasons import ApprovalRefusal, Facts, FactValue, Reason
from controller.windows import DEFAULT_HORIZON, WindowState, explain, time_zone


class _F:
    """Typed access to one decision's facts, formatted for people."""

    def __init__(self, facts: Facts) -> None:
        self._facts = facts

    def _get(self, name: str) -> FactValue:
        if name not in self._facts:
            raise KeyError(f"fact {name!r} missing (have {sorted(self._facts)})")
        return self._facts[name]

    def s(self, name: str) -> str:
        value = self._get(name)
        return "-" if value is None else str(value)

    def at(self, name: str) -> str:
        value = self._get(name)
        return f"{value:%Y-%m-%d %H:%M}Z" if isinstance(value, datetime) else "never"

    def day(self, name: str) -> str:
        value = self._get(name)
        return f"{value:%Y-%m-%d}" if isinstance(value, datetime) else "never"

    def dur(self, name: str) -> str:
        value = self._get(name)
        return format_duration(value) if isinstance(value, timedelta) else "-"

    def items(self, name: str) -> tuple[str, ...]:
        value = self._get(name)
        return value if isinstance(value, tuple) else ()

    def joined(self, name: str, sep: str = ", ") -> str:
        return sep.join(self.items(name))

    def flag(self, name: str) -> bool:
        return bool(self._facts.get(name))

    def has(self, name: str) -> bool:
        return self._facts.get(name) is not None


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


_RESTORED = {
    "all": "every target holds the old key again",
    "readable": "the readable targets hold the old key again; {unreadable} was rewritten with it "
    "too (GitHub secrets cannot be read back to check)",
    "none": "no target kept the old key's secret, so the targets still hold the new key; both "
    "keys are active",
}


def _rolled_back(f: _F) -> str:
    restored = _RESTORED.get(f.s("restored"), "").format(unreadable=f.s("unreadable"))
    cause = f.joined("failed", "; ") or "the old key was active again during the grace period"
    return f"{cause}; old key {f.s('key')} reactivated on {f.at('at')}" + (
        f"; {restored}" if restored else ""
    )


def _gone(f: _F, fact: str = "key") -> str:
    """A key status names that IAM does not list: by its id only where IAM's tags record it."""
    if not f.has(fact):
        return (
            "that status names is not in IAM, and IAM has no record of it (deleted outside "
            "keyrotor, or a status that is wrong)"
        )
    return f"{f.s(fact)} was deleted outside keyrotor"


def _user_missing(f: _F) -> str:
    gone = " any more (deleted outside keyrotor)" if f.flag("known") else ""
    return f"IAM user {f.s('user')} does not exist{gone}"


def _deselected(f: _F) -> str:
    text = (
        f"user {f.s('user')} is no longer selected by policy {f.s('policy')} (deselected, or "
        "deleted from IAM); keyrotor stops managing it"
    )
    if f.has("new"):
        text += f" and leaves its unfinished rotation ({f.s('old')} -> {f.s('new')}) as it is"
    return text


def _target_overwritten(f: _F) -> str:
    return (
        f"expected every target to hold new key {f.s('new')}, but {f.joined('holders', '; ')} "
        f"(overwritten outside keyrotor). keyrotor will not deactivate {f.s('old')} while a "
        f"target does not hold {f.s('new')}: restore the target, or delete {f.s('new')} to start "
        "the rotation over"
    )


def _awaiting_checks(f: _F) -> str:
    gate = f.s("gate")
    since = f" since {f.at('since')}" if f.has("since") else ""
    detail = f": {f.s('detail')}" if f.has("detail") else ""
    return f"new key {f.s('new')} is stored; the rotation waits for {gate}{since}{detail}"


def _when(at: datetime, zone_name: str) -> str:
    clock = "%H:%M:%S" if at.second else "%H:%M"
    if zone_name == "UTC":
        return f"{at:%Y-%m-%d {clock}}Z"
    local = at.astimezone(time_zone(zone_name))
    utc = f"{at:{clock}}Z" if local.date() == at.date() else f"{at:%Y-%m-%d {clock}}Z"
    return f"{local:%Y-%m-%d {clock}} {zone_name} ({utc})"


def window_name(window: Window) -> str:
    return (
        f"{window.kind} window '{window.schedule}' ({format_duration(window.duration)}, "
        f"{window.time_zone})"
    )


def window_facts(state: WindowState) -> dict[str, FactValue]:
    """The facts of a `WindowState`, as a finding carries them."""
    inside = state.inside
    return {
        "allowed": state.allowed,
        "any_windows": state.any_windows,
        "inside": window_name(inside) if inside else None,
        "inside_kind": inside.kind if inside else None,
        "opens": state.opens,
        "zone": state.zone,
        "horizon": state.horizon,
    }


def _windows(f: _F) -> str:
    if not f.flag("any_windows"):
        return "no maintenance windows; allowed at any time"
    if f.flag("allowed"):
        return f"inside {f.s('inside')}" if f.has("inside") else "outside deny windows"
    where = f"inside {f.s('inside')}" if f.has("inside") else "outside maintenance windows"
    opens = f._get("opens")
    if not isinstance(opens, datetime):
        return f"{where}; not allowed within the next {f.dur('horizon')}"
    return f"{where}; next allowed {_when(opens, f.s('zone'))}"


def describe_windows(
    windows: tuple[Window, ...] | list[Window],
    now: datetime,
    horizon: timedelta = DEFAULT_HORIZON,
) -> str:
    """e.g. `outside maintenance windows; next allowed 2026-03-02 02:00 Europe/Berlin (01:00Z)`."""
    return _windows(_F(window_facts(explain(windows, now, horizon))))


_REFUSALS: dict[ApprovalRefusal, Callable[[_F], str]] = {
    ApprovalRefusal.NO_GITHUB_ACCESS: lambda f: (
        "approvals are verified through GitHub's API and this run has no GitHub access "
        "(GITHUB_TOKEN and GITHUB_REPOSITORY)"
    ),
    ApprovalRefusal.ENTRY_WITHOUT_PROPOSAL: lambda f: (
        f"the entries for {f.joined('users')} were written before approvals were verified (they "
        "name no proposal or manifest)"
    ),
    ApprovalRefusal.NO_MERGED_PULL_REQUEST: lambda f: (
        f"no pull request from {f.s('branch')} was ever merged; an approval is keyrotor's merged "
        f"pull request, never a file pushed to {f.s('base')}"
    ),
    ApprovalRefusal.CONTENT_DIFFERS: lambda f: (
        "it differs from the file of every merged keyrotor pull request (the newest is "
        f"#{f.s('pull')}); it was changed outside a pull request"
    ),
    ApprovalRefusal.NOT_MERGED: lambda f: (
        f"it is the file of pull request #{f.s('pull')}, which is not merged; it was copied to "
        f"{f.s('base')} outside the pull request"
    ),
    ApprovalRefusal.NOT_OPENED_BY_KEYROTOR: lambda f: (
        f"pull request #{f.s('pull')} was opened by {f.s('author')}, not by keyrotor"
    ),
    ApprovalRefusal.SUPERSEDED: lambda f: (
        f"it is the file of pull request #{f.s('pull')}, but the newer #{f.s('newer_pull')} was "
        "merged since; an older proposal was copied back"
    ),
    ApprovalRefusal.HEAD_NOT_KEYROTORS: lambda f: (
        f"pull request #{f.s('pull')} was merged at commit {f.s('head')[:12]}, which keyrotor "
        "did not push (someone else pushed to its branch); close such a pull request to get a "
        "fresh one"
    ),
    ApprovalRefusal.CHANGES_OTHER_FILES: lambda f: (
        f"pull request #{f.s('pull')} also changes {f.joined('files')}; an approval changes "
        f"{approvals_path(f.s('policy'))} only"
    ),
    ApprovalRefusal.PROPOSAL_DIFFERS: lambda f: (
        f"the entries for {f.joined('users')} name another proposal than the one keyrotor pushed "
        f"in pull request #{f.s('pull')}"
    ),
    ApprovalRefusal.NO_REVIEW_BY_A_PERSON: lambda f: (
        f"nobody but a bot approved or merged pull request #{f.s('pull')}; the policy needs a "
        "person's approval"
    ),
    ApprovalRefusal.MANIFEST_CHANGED: lambda f: (
        f"the policy's manifest changed after pull request #{f.s('pull')} approved the rotation "
        f"for {f.joined('users')}"
    ),
}


def _guardrail_violated(f: _F) -> str:
    sentence = violation_text(
        Rule(f.s("rule")),
        path=f.s("path"),
        guardrail=f.s("guardrail"),
        guardrail_at=f.s("guardrail_at"),
        subject=f.s("subject"),
        limit=f.s("limit"),
    )
    return f"{f.s('where')}: refused, nothing is read or done for this policy: {sentence}"


def _guardrail_excluded(f: _F) -> str:
    reason = ExclusionReason(f.s("exclusion"))
    if reason is ExclusionReason.ACCOUNT_NOT_ALLOWED:
        why = f"account {f.s('account')} is not in accounts"
    elif reason is ExclusionReason.DENIED_NAME:
        why = f"user {f.s('user')} is in users.denyNames"
    elif reason is ExclusionReason.DENIED_TAG:
        why = f"the user carries the protecting tag {f.s('tag')} (users.denyTags)"
    else:
        why = f"path {f.s('user_path')} is outside users.pathPrefixes ({f.joined('prefixes')})"
    return f"{f.s('user')}: excluded by the guardrails, never touched: {why}"


def _max_changes(f: _F) -> str:
    key = f" (key {f.s('key')})" if f.has("key") else ""
    return (
        f"{f.s('step')}{key} waits for the next run: this run already makes the "
        f"maxChangesPerRun of {f.s('max_changes')} changes, to older keys first"
    )


def _approval_refused(f: _F) -> str:
    why = _REFUSALS[ApprovalRefusal(f.s("refusal"))](f)
    return f"{approvals_path(f.s('policy'))} on {f.s('base')} is not an approval: {why}"


def verified_approval(policy: str, pull: int, proposal: str, approvers: tuple[str, ...]) -> str:
    """The sentence for an approvals file GitHub's API showed to be an approval."""
    who = ", ".join(approvers) or "nobody (no review required)"
    return (
        f"{approvals_path(policy)} is keyrotor's pull request #{pull} (proposal {proposal}), "
        f"approved by {who}"
    )


_RENDER: dict[Reason, Callable[[_F], str]] = {
    # actions
    Reason.ROTATION_AGE: lambda f: (
        f"key {f.s('key')} reached rotation age {f.dur('rotate_at_age')} on {f.day('rotate_at')}"
        + (f"; key is {f.dur('age')} old" if f.has("age") else "")
    ),
    Reason.NEW_KEY_IN_USE: lambda f: (
        f"new key {f.s('new')} is in use and every check passed: {f.joined('passed', '; ')}"
    ),
    Reason.OVERDUE_FORCED: lambda f: (
        f"OVERDUE: {f.s('key')} is older than maxKeyAge {f.dur('max_key_age')} and onOverdue is "
        "deactivate, so it is deactivated although these checks have not passed: "
        + f.joined("waiting", "; ")
    ),
    Reason.GRACE_ENDED: lambda f: f"grace period of {f.dur('delete_after')} ended",
    Reason.CHECK_FAILED: lambda f: "rolling back: " + f.joined("failed", "; "),
    Reason.OLD_KEY_ACTIVE_AGAIN: lambda f: (
        f"rolling back: old key {f.s('key')} is active again during the grace period (an "
        "interrupted rollback, or a person reactivated it)"
    ),
    Reason.ORPHAN_UNSTORED: lambda f: (
        f"key {f.s('key')} was created by an interrupted run and reached no target: its secret "
        "is lost, so delete it and create another"
    ),
    Reason.ORPHAN_PARTLY_STORED: lambda f: (
        f"key {f.s('key')} was created by an interrupted run and reached {f.s('held')} of "
        f"{f.s('total')} targets: copy it to the rest"
    ),
    Reason.RESUMED: lambda f: f"rotation resumed: store new key {f.s('key')} in every target again",
    # situations
    Reason.KEY_CURRENT: lambda f: f"key {f.s('key')} is current",
    Reason.NO_KEY: lambda f: f"{f.s('user')} has no access key: nothing to rotate",
    Reason.KEY_OVERDUE: lambda f: (
        f"active key {f.s('key')} is {f.dur('age')} old; maxKeyAge is {f.dur('max_key_age')}"
    ),
    Reason.NEEDS_APPROVAL: lambda f: (
        f"key {f.s('key')} reached rotation age {f.dur('rotate_at_age')} on "
        f"{f.day('rotate_at')}; policy {f.s('policy')} needs an approved pull request"
    ),
    Reason.STALE_APPROVAL: lambda f: (
        f"stale approval refused: it was for key {f.s('approved_key')} with keys "
        f"{f.s('approved_digest')}, but IAM now shows {f.s('digest')} for {f.s('key')}; a fresh "
        "pull request asks again"
    ),
    Reason.STEP_NEEDS_APPROVAL: lambda f: (
        f"{f.s('step')} of {f.s('key')} needs an approved pull request"
    ),
    Reason.SUSPENDED: lambda f: (
        f"policy {f.s('policy')} is suspended"
        + (f"; {f.s('step')} is due" if f.has("step") else "")
    ),
    Reason.TARGETS_UNWRITABLE: lambda f: (
        "a key is created only when every target can take it: " + f.joined("problems", "; ")
    ),
    Reason.TARGETS_UNREADABLE: lambda f: f.joined("problems", "; "),
    Reason.AWAITING_CHECKS: _awaiting_checks,
    Reason.DEACTIVATE_AFTER: lambda f: (
        f"new key {f.s('new')} is stored; deactivateAfter: not before {f.at('earliest')}"
    ),
    Reason.GRACE_PERIOD: lambda f: (
        f"old key {f.s('key')} deactivated; grace period until {f.at('delete_at')}"
    ),
    Reason.OUTSIDE_WINDOW: lambda f: f"{f.s('step')} of {f.s('key')} is due but {_windows(f)}",
    Reason.NOT_READ_LIVE: lambda f: (
        f"{f.s('user')}'s keys are known from the credential report only: no step is taken "
        "until they are read live"
    ),
    Reason.CREATION_IN_FLIGHT: lambda f: (
        f"another run recorded at {f.at('at')} that it is creating a key for {f.s('user')}: "
        "this run waits rather than race it"
    ),
    Reason.REPAIRING: lambda f: "repairing an interrupted key creation",
    Reason.ROLLED_BACK: _rolled_back,
    Reason.HELD_FOR_PERSON: lambda f: (
        f"{f.s('cause')}. Once the cause is fixed, run `keyrotor resume --policy "
        f"{f.s('policy')} --user {f.s('user')}`"
    ),
    Reason.USER_MISSING: _user_missing,
    Reason.ONLY_KEY_INACTIVE: lambda f: (
        f"the only access key of {f.s('user')}, {f.s('key')}, is inactive: nothing works with "
        "it. Reactivate it or delete it; keyrotor will not rotate an inactive key"
    ),
    Reason.NO_WORKING_KEY: lambda f: (
        f"new key {_gone(f, 'new')} and old key {f.s('old')} is "
        f"inactive: {f.s('user')} has no working key. Reactivate {f.s('old')} now (aws iam "
        f"update-access-key --user-name {f.s('user')} --access-key-id {f.s('old')} --status "
        "Active); keyrotor then starts a fresh rotation"
    ),
    Reason.TWO_UNMANAGED_KEYS: lambda f: (
        f"{f.s('user')} has two access keys ({f.joined('keys')}) and keyrotor manages neither; "
        "it adopts a user with exactly one key. Delete the unused one (see `aws iam "
        "get-access-key-last-used`), then keyrotor adopts the other"
    ),
    Reason.FOREIGN_KEY: lambda f: (
        f"access key {f.s('key')} of {f.s('user')} (created {f.day('created')}) was not created "
        "by keyrotor. keyrotor will not create a third key or touch a key it does not own: "
        f"delete {f.s('key')} if it is unused, or exclude {f.s('user')} from policy "
        f"{f.s('policy')}"
    ),
    Reason.NEW_KEY_INACTIVE: lambda f: (
        f"new key {f.s('key')} of {f.s('user')} is inactive (deactivated outside keyrotor). "
        "Reactivate it to continue the rotation, or delete it to start over"
    ),
    Reason.TARGET_OVERWRITTEN: _target_overwritten,
    Reason.CANNOT_OBSERVE: lambda f: f"cannot observe policy {f.s('policy')}: {f.s('error')}",
    Reason.DESELECTED: _deselected,
    Reason.GUARDRAIL_VIOLATED: _guardrail_violated,
    Reason.GUARDRAIL_EXCLUDED: _guardrail_excluded,
    Reason.MAX_CHANGES_PER_RUN: _max_changes,
    Reason.ADOPTED: lambda f: (
        f"record in IAM that keyrotor manages {f.joined('keys')} of {f.s('user')} "
        "(the keyrotor.dev/keys tag)"
    ),
    Reason.TARGETS_NOT_RECORDED: lambda f: (
        f"{f.joined('targets')}: written before keyrotor recorded which key it writes: record "
        "the key id and version it holds (tags), so plan can tell without reading the secret"
    ),
    Reason.TARGET_MOVED: lambda f: (
        f"{f.s('target')} was written since keyrotor wrote it (its current version is not the "
        "one keyrotor recorded)"
    ),
    Reason.TARGET_UNRECORDED: lambda f: (
        f"{f.s('target')} is not yet recorded (written before keyrotor tagged what it writes): "
        "plan cannot tell which key it holds without reading the secret; the next apply "
        "records it"
    ),
    Reason.STATUS_CONTRADICTS_AWS: lambda f: (
        f"status names key {f.s('key')} of {f.s('user')} as keyrotor's, but IAM's tags do not: "
        "keyrotor changes nothing on the strength of a status file. Restore status/ from git "
        "history, or delete the user's status file to have its keys looked at afresh"
    ),
    Reason.UNVERIFIED_MIGRATION: lambda f: (
        f"a status file of an earlier keyrotor says a rotation of {f.s('user')} is in progress "
        f"({f.joined('keys')}), but the targets do not bear it out: keyrotor adopts neither key. "
        "Finish or undo the rotation by hand, then keyrotor adopts the user's one key"
    ),
    Reason.ORPHAN_RECORDED: lambda f: (
        f"key {f.s('key')}, created by an interrupted run and stored in every target, is "
        "recorded now"
    ),
    Reason.OLD_KEY_DELETED: lambda f: f"old key {_gone(f)}",
    Reason.KEY_DELETED: lambda f: f"key {_gone(f)}",
    Reason.NEW_KEY_DELETED: lambda f: (
        f"new key {_gone(f)}; targets may hold a key that no longer works"
    ),
    Reason.APPROVAL_REFUSED: _approval_refused,
    Reason.APPROVAL_UNVERIFIED: lambda f: (
        f"{approvals_path(f.s('policy'))} was not verified, so nothing in it counts in this run: "
        f"{f.s('error')}"
    ),
    Reason.AWAITING_RESUME: lambda f: (
        f"rotation rolled back: {f.s('before')}. Fix the cause, then run `keyrotor resume "
        f"--policy {f.s('policy')} --user {f.s('user')}`"
    ),
    Reason.DELETE_AFTER: lambda f: (
        f"deleteAfter: {f.s('key')} is deleted after {f.at('delete_at')}"
    ),
    Reason.RESUMED_BY_PERSON: lambda f: f"resumed by a person; {f.s('before')}",
    Reason.ACTION_FAILED: lambda f: f"{f.s('step')} failed: {f.s('error')}",
    # gates
    Reason.NEW_KEY_USED: lambda f: f"new key {f.s('key')} used at {f.at('used')}",
    Reason.NEW_KEY_NOT_USED: lambda f: (
        f"new key {f.s('key')} not yet used by the application ("
        + (f"last use recorded {f.at('used')}" if f.has("used") else "no use recorded")
        + f"; a use must be recorded after {f.at('threshold')} to count)"
    ),
    Reason.OLD_KEY_IDLE: lambda f: f"old key {f.s('key')} idle for {f.dur('idle_for')}",
    Reason.OLD_KEY_BUSY: lambda f: (
        f"old key {f.s('key')} was last used {f.at('used')}; it must be idle for "
        f"{f.dur('idle_for')} (until {f.at('until')})"
    ),
    Reason.CHECK_NOT_RUN: lambda f: f"{f.s('check')} check has not run",
    Reason.CHECK_REPORTED: lambda f: f.s("detail"),
}


def render(reason: Reason, facts: Facts) -> str:
    """The sentence for `reason` with `facts`; raises KeyError if a fact it needs is missing."""
    return _RENDER[reason](_F(facts))


def target_problem(target: str, error: str) -> str:
    return f"{target}: {error}"


def unreadable_target(target: str, error: str) -> str:
    return f"cannot read {target}: {error}"


def target_holds(target: str, key_id: str | None, *, other: bool = False, user: str = "") -> str:
    """What a target holds, naming only a key id IAM reported for the user."""
    if other:
        return f"{target} holds a value that is not {user}'s key"
    return f"{target} holds {key_id or 'nothing'}"


def failed_check(check: str, message: str) -> str:
    """One failed gate, as listed in a rollback's reason."""
    return f"{check} check failed: {message}"


def plural(count: int, one: str, many: str | None = None) -> str:
    """`1 key`, `2 keys`: for summaries."""
    return _plural(count, one, many)
