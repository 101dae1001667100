"""Why keyrotor decided what it decided: reasons as constants, facts as data.

Every action, finding, check result and user status carries a `Reason` and the facts behind it
(key ids, times, durations). English is rendered from them in one place, `controller.messages`;
nothing in keyrotor reads a rendered message back. Machines read the reason's value, which is
part of the JSON plan and of status files, and so an API: values are only ever added.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

FactValue = str | int | bool | datetime | timedelta | tuple[str, ...] | None
Facts = Mapping[str, FactValue]


class Reason(StrEnum):
    # --- why an action is planned ----------------------------------------------------------
    ROTATION_AGE = "rotation-age"  # create-key: the key reached maxKeyAge - rotateBefore
    NEW_KEY_IN_USE = "new-key-in-use"  # deactivate-key: the new key is used, every gate passed
    OVERDUE_FORCED = "overdue-forced"  # deactivate-key: overdue and onOverdue is deactivate
    GRACE_ENDED = "grace-ended"  # delete-key: deleteAfter has passed since deactivation
    CHECK_FAILED = "check-failed"  # reactivate-key: a check failed in the grace period
    OLD_KEY_ACTIVE_AGAIN = "old-key-active-again"  # reactivate-key: finish a rollback
    ORPHAN_UNSTORED = "orphan-unstored"  # delete-orphan-key: an interrupted run's lost key
    ORPHAN_PARTLY_STORED = "orphan-partly-stored"  # store-key: copy it to the other targets
    RESUMED = "resumed"  # store-key: a person resumed a rolled-back rotation

    # --- a user's situation (status and findings) --------------------------------------------
    KEY_CURRENT = "key-current"
    NO_KEY = "no-key"
    KEY_OVERDUE = "key-overdue"
    NEEDS_APPROVAL = "needs-approval"
    STALE_APPROVAL = "stale-approval"
    STEP_NEEDS_APPROVAL = "step-needs-approval"
    SUSPENDED = "suspended"
    TARGETS_UNWRITABLE = "targets-unwritable"
    TARGETS_UNREADABLE = "targets-unreadable"
    AWAITING_CHECKS = "awaiting-checks"  # AwaitingUse: the first failing gate holds the step
    DEACTIVATE_AFTER = "deactivate-after"  # AwaitingUse: not before deactivateAfter
    GRACE_PERIOD = "grace-period"  # Deactivated: deleted after deleteAfter
    DELETE_AFTER = "delete-after"  # the grace period holds the delete
    OUTSIDE_WINDOW = "outside-window"
    NOT_READ_LIVE = "not-read-live"  # decided from the credential report only: no step
    CREATION_IN_FLIGHT = "creation-in-flight"  # another run is creating a key right now
    REPAIRING = "repairing"  # an interrupted key creation is being finished
    ROLLED_BACK = "rolled-back"
    HELD_FOR_PERSON = "held-for-person"  # keyrotor undid its own step; a person resumes
    RESUMED_BY_PERSON = "resumed-by-person"
    AWAITING_RESUME = "awaiting-resume"  # rolled back; a person runs `keyrotor resume`
    USER_MISSING = "user-missing"
    ONLY_KEY_INACTIVE = "only-key-inactive"
    NO_WORKING_KEY = "no-working-key"
    TWO_UNMANAGED_KEYS = "two-unmanaged-keys"
    FOREIGN_KEY = "foreign-key"
    NEW_KEY_INACTIVE = "new-key-inactive"
    TARGET_OVERWRITTEN = "target-overwritten"
    CANNOT_OBSERVE = "cannot-observe"
    DESELECTED = "deselected"
    ADOPTED = "adopted"  # adopt-key: record in IAM that keyrotor manages this key
    TARGETS_NOT_RECORDED = "targets-not-recorded"  # record-targets: tag what they hold
    TARGET_MOVED = "target-moved"
    TARGET_UNRECORDED = "target-unrecorded"
    STATUS_CONTRADICTS_AWS = "status-contradicts-aws"
    UNVERIFIED_MIGRATION = "unverified-migration"
    ORPHAN_RECORDED = "orphan-recorded"
    OLD_KEY_DELETED = "old-key-deleted"
    KEY_DELETED = "key-deleted"
    NEW_KEY_DELETED = "new-key-deleted"
    # The approvals file on the base branch is not an approval; the facts' `refusal` (an
    # `ApprovalRefusal` value) says why (controller/github/approval_verify.py).
    APPROVAL_REFUSED = "approval-refused"
    # GitHub (or git) could not be asked whether the approvals file is an approval: nothing in it
    # counts in this run, and no fresh pull request is proposed.
    APPROVAL_UNVERIFIED = "approval-unverified"
    # --- guardrails (controller/guardrails) ---------------------------------------------------
    # The policy breaks a guardrail (facts: `rule`, a `controller.guardrails.Rule` value, `where`,
    # the manifest's `path:line:column`, `path`, `guardrail`, `guardrail_at`, `subject`, `limit`).
    GUARDRAIL_VIOLATED = "guardrail-violated"
    # A selected user a guardrail excludes (facts: `exclusion`, a
    # `controller.guardrails.ExclusionReason` value, `user`, `account`, `user_path`, `tag`,
    # `prefixes`).
    GUARDRAIL_EXCLUDED = "guardrail-excluded"
    # A due step past `maxChangesPerRun` (facts: `step`, `key`, `max_changes`).
    MAX_CHANGES_PER_RUN = "max-changes-per-run"

    # --- what happened when an action ran (executor) -----------------------------------------
    ACTION_FAILED = "action-failed"

    # --- gates: the result of one check -------------------------------------------------------
    NEW_KEY_USED = "new-key-used"
    NEW_KEY_NOT_USED = "new-key-not-used"
    OLD_KEY_IDLE = "old-key-idle"
    OLD_KEY_BUSY = "old-key-busy"
    CHECK_NOT_RUN = "check-not-run"
    CHECK_REPORTED = "check-reported"  # a command or http check: its runner's own summary


class ApprovalRefusal(StrEnum):
    """Why the approvals file on the base branch is not an approval (`Reason.APPROVAL_REFUSED`)."""

    NO_GITHUB_ACCESS = "no-github-access"
    ENTRY_WITHOUT_PROPOSAL = "entry-without-proposal"
    NO_MERGED_PULL_REQUEST = "no-merged-pull-request"
    CONTENT_DIFFERS = "content-differs-from-pull-request"
    NOT_MERGED = "pull-request-not-merged"
    NOT_OPENED_BY_KEYROTOR = "not-opened-by-keyrotor"
    SUPERSEDED = "superseded-by-a-newer-pull-request"
    HEAD_NOT_KEYROTORS = "head-not-keyrotors"
    CHANGES_OTHER_FILES = "pull-request-changes-other-files"
    PROPOSAL_DIFFERS = "proposal-differs-from-pull-request"
    NO_REVIEW_BY_A_PERSON = "no-review-by-a-person"
    MANIFEST_CHANGED = "manifest-changed-since-approval"
