"""keyrotor's commit messages: subjects, bodies and the trailer vocabulary `history` reads back.

The trailers are an API (documented in the README): tools may search history with `git log
--format='%(trailers:key=Keyrotor-Step)'`. Keys are only ever added, never renamed.

- `Keyrotor-Policy: <policy>`: every commit keyrotor makes for a policy (the first one names it).
- `Keyrotor-User: <user>`: each user whose keys a commit changed.
- `Keyrotor-Key: <key id>`: each key a commit's steps concern.
- `Keyrotor-Step: <user> <action> <key id>`: one per step carried out (`create-key`,
  `deactivate-key`, `delete-key`, `reactivate-key`, `store-key`, `delete-orphan-key`,
  `adopt-key`, `record-targets`), plus `resume` (a person's `keyrotor resume`), `propose` (an
  approval pull request's commit) and `approve` (in the commit that starts a rotation a
  verified approval allowed: the old key whose rotation was approved; the commit's
  `Keyrotor-Approved-By` trailers say by whom). A step found done in IAM that no commit
  recorded (its run stopped before its status commit) is recorded by the next status commit,
  with a body line that says so.
- `Keyrotor-Intent: <user> create-key replaces <key id>`: recorded before CreateAccessKey.
- `Keyrotor-Approved-By: <login> (#<pull request>)`: a person GitHub's API showed merged or
  approved keyrotor's pull request, on every status commit whose steps that approval allowed.
- `Keyrotor-Run: <run id>`: the run that made the commit (GitHub's run id in Actions).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from controller.plan import Action, ActionKind, Outcome
from controller.reasons import Reason

POLICY: Final = "Keyrotor-Policy"
USER: Final = "Keyrotor-User"
KEY: Final = "Keyrotor-Key"
STEP: Final = "Keyrotor-Step"
INTENT: Final = "Keyrotor-Intent"
APPROVED_BY: Final = "Keyrotor-Approved-By"
RUN: Final = "Keyrotor-Run"

RESUME_STEP: Final = "resume"
PROPOSE_STEP: Final = "propose"
APPROVE_STEP: Final = "approve"

_APPROVED_BY = re.compile(r"(\S+) \(#(\d+)\)")

Trailers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CommitMessage:
    subject: str
    body: tuple[str, ...] = ()
    trailers: Trailers = ()


@dataclass(frozen=True)
class Step:
    """One `Keyrotor-Step` trailer: `user`'s key `key` had `action` done to it."""

    user: str
    action: str
    key: str

    def trailer(self) -> tuple[str, str]:
        return (STEP, f"{self.user} {self.action} {self.key}")


def parse_step(value: str) -> Step | None:
    """A `Keyrotor-Step` value; None for one that is not three words."""
    words = value.split()
    return Step(*words) if len(words) == 3 else None


def approved_by(login: str, pull: int) -> str:
    """A `Keyrotor-Approved-By` value."""
    return f"{login} (#{pull})"


def parse_approved_by(value: str) -> tuple[str, int] | None:
    """(login, pull request) from a `Keyrotor-Approved-By` value; None if it is not one."""
    match = _APPROVED_BY.fullmatch(value.strip())
    return (match.group(1), int(match.group(2))) if match else None


def _phrase(action: Action) -> str:
    if action.kind == ActionKind.DEACTIVATE_KEY and action.reason == Reason.OVERDUE_FORCED:
        return f"deactivate OVERDUE old key of {action.user}"
    return {
        ActionKind.CREATE_KEY: f"create key for {action.user}",
        ActionKind.STORE_KEY: f"finish storing key for {action.user}",
        ActionKind.DELETE_ORPHAN: f"delete orphan key of {action.user}",
        ActionKind.DEACTIVATE_KEY: f"deactivate old key of {action.user}",
        ActionKind.DELETE_KEY: f"delete old key of {action.user}",
        ActionKind.REACTIVATE_KEY: f"roll back {action.user}",
        ActionKind.ADOPT_KEY: f"record keys of {action.user} in IAM",
        ActionKind.RECORD_TARGETS: f"record the targets of {action.user}",
    }[action.kind]


def done_line(action: Action, outcome: Outcome) -> str:
    """What a step did, for the commit body and the command's output."""
    if action.kind == ActionKind.CREATE_KEY:
        return (
            f"created {outcome.key_id} for {action.user} and stored it in every target "
            f"(replaces {action.replaces})"
        )
    return f"{action.kind} {action.key or outcome.key_id} of {action.user}: {action.message}"


def step_key(action: Action, outcome: Outcome) -> str:
    return outcome.key_id or action.key or ""


def steps_commit(
    policy: str,
    done: Sequence[tuple[Action, Outcome]],
    failed: Sequence[tuple[Action, str]],
    changed_users: Sequence[str],
    run: str,
    approvers: Sequence[str] = (),
    approved: Sequence[tuple[str, str]] = (),
    found: Sequence[Step] = (),
) -> CommitMessage:
    """The status commit of one policy in one run.

    `approvers` are `Keyrotor-Approved-By` values (`approved_by`) of the verified approval that
    allowed these steps; `approved` are (user, old key) of the rotations it starts here, recorded
    as `approve` steps after the steps themselves. `found` are steps IAM shows done that no
    commit recorded (`lifecycle.found_steps`): recorded here, each with its `Keyrotor-Step`.
    """
    phrases = [_phrase(a) for a, _ in done] + [f"record {s.action} of {s.user}" for s in found]
    phrases = phrases or [_bookkeeping(changed_users)]
    body = [f"{a.user}: {done_line(a, o)}" for a, o in done]
    body += [f"{a.user}: {a.kind} FAILED: {error}" for a, error in failed]
    body += [
        f"{s.user}: {s.action} {s.key} found done in IAM, not yet recorded (the run that took "
        "it stopped before its status commit)"
        for s in found
    ]
    steps = [Step(a.user, str(a.kind), step_key(a, o)) for a, o in done] + list(found)
    trailers: list[tuple[str, str]] = [(POLICY, policy)]
    trailers += [(USER, u) for u in dict.fromkeys(s.user for s in steps)]
    trailers += [(KEY, k) for k in dict.fromkeys(s.key for s in steps) if k]
    trailers += [s.trailer() for s in steps]
    trailers += [Step(user, APPROVE_STEP, key).trailer() for user, key in approved]
    trailers += [(APPROVED_BY, who) for who in dict.fromkeys(approvers)]
    trailers.append((RUN, run))
    return CommitMessage(
        f"keyrotor({policy}): {', '.join(phrases)}",
        tuple(body) or (f"Status of {len(changed_users)} user(s) recorded; no key changed.",),
        tuple(trailers),
    )


def _bookkeeping(changed: Sequence[str]) -> str:
    """Subject of a commit that records observations only (a check result, an adopted key)."""
    if not changed:
        return "record status"
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"record status of {shown}"


def intent_commit(policy: str, creates: Sequence[Action], run: str) -> CommitMessage:
    users = ", ".join(a.user for a in creates)
    return CommitMessage(
        f"keyrotor({policy}): about to create a key for {users}",
        (
            "Recorded before CreateAccessKey: if this run dies after creating a key, the next",
            "run recognises the key as its own (created after this commit) and finishes or",
            "removes it. No key exists yet for this step.",
        ),
        (
            (POLICY, policy),
            *((USER, a.user) for a in creates),
            *((INTENT, f"{a.user} {a.kind} replaces {a.replaces}") for a in creates),
            (RUN, run),
        ),
    )


def resume_commit(policy: str, user: str, key: str, cause: str, run: str) -> CommitMessage:
    return CommitMessage(
        f"keyrotor({policy}): resume rotation of {user}",
        (f"{user}: resumed by a person after: {cause}",),
        (
            (POLICY, policy),
            (USER, user),
            Step(user, RESUME_STEP, key).trailer(),
            (RUN, run),
        ),
    )


def propose_commit(policy: str, proposals: Sequence[tuple[str, str, str]]) -> CommitMessage:
    """An approval pull request's commit; `proposals` are (user, old key, keys digest)."""
    ordered = sorted(proposals)
    return CommitMessage(
        f"keyrotor({policy}): propose key rotation for {', '.join(u for u, _, _ in ordered)}",
        tuple(f"{u}: rotate {key} (keys {digest})" for u, key, digest in ordered),
        ((POLICY, policy), *(Step(u, PROPOSE_STEP, key).trailer() for u, key, _ in ordered)),
    )
