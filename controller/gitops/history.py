"""Rotation history, read back from the trailers of the status repository's commits.

Each commit keyrotor makes for a policy carries `Keyrotor-Policy: <name>` and one
`Keyrotor-Step: <user> <action> <key-id>` trailer per step. Trailers are parsed by git itself
(`%(trailers)` in one `git log`), so only the trailer block counts: a body line that merely looks
like a trailer is not history. A commit's first `Keyrotor-Policy` trailer names its policy; a step
that is not three words is skipped.

An `approve` step is credited to the people its commit's `Keyrotor-Approved-By` trailers name
(one entry each): the logins GitHub's API showed merged or approved keyrotor's pull request,
never a commit's author, which whoever commits can set. An `approve` step without them is not
history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from controller import commits
from controller.errors import GitError
from controller.gitops.runner import Checkout, open_checkout, redact, run_git
from controller.timefmt import to_iso

POLICY_TRAILER: Final = commits.POLICY
STEP_TRAILER: Final = commits.STEP
APPROVED_BY_TRAILER: Final = commits.APPROVED_BY

_FIELD = "\x1f"
_VALUE = "\x1e"
_FORMAT = "%x1f".join(
    [
        "%H",
        "%cI",
        "%an <%ae>",
        "%s",
        f"%(trailers:key={POLICY_TRAILER},valueonly,unfold,separator=%x1e)",
        f"%(trailers:key={STEP_TRAILER},valueonly,unfold,separator=%x1e)",
        f"%(trailers:key={APPROVED_BY_TRAILER},valueonly,unfold,separator=%x1e)",
    ]
)


@dataclass(frozen=True)
class HistoryEntry:
    """One step of one rotation: `user`'s key `key` had `action` done to it under `policy`."""

    commit: str
    time: datetime
    author: str
    policy: str
    user: str
    action: str
    key: str
    subject: str


def read_history(
    root: Path,
    *,
    users: Sequence[str] = (),
    policies: Sequence[str] = (),
    ref: str = "HEAD",
) -> list[HistoryEntry]:
    """Every step recorded in the history of `ref`, newest commit first, optionally filtered.

    A branch without commits has no history. Note that a shallow clone only sees the commits it
    fetched.
    """
    repo = open_checkout(root)
    if ref == "HEAD" and run_git(repo, "rev-parse", "-q", "--verify", "HEAD^{commit}")[0]:
        return []
    status, out, err = _log(repo, ref)
    if status != 0:
        raise GitError(f"cannot read history of {ref} in {root}: {redact(err.strip())}")
    # Newest first, in git's --date-order (a child before its parents even within one second);
    # the steps of one commit keep their order.
    return _entries(out, set(users), set(policies))


def _log(repo: Checkout, *revisions: str) -> tuple[int, str, str]:
    return run_git(
        repo, "log", "-z", "--date-order", "--no-show-signature", "--no-color",
        "--regexp-ignore-case", "--fixed-strings", f"--grep={POLICY_TRAILER}",
        f"--format={_FORMAT}", "--end-of-options", *revisions, "--",
    )  # fmt: skip


def _entries(out: str, wanted_users: set[str], wanted_policies: set[str]) -> list[HistoryEntry]:
    entries: list[HistoryEntry] = []
    for record in out.split("\0"):
        fields = record.strip("\n").split(_FIELD)
        if len(fields) != 7:
            continue
        sha, committed, author, subject, policy_values, step_values, approver_values = fields
        policy = next((v.strip() for v in policy_values.split(_VALUE) if v.strip()), "")
        if not policy or (wanted_policies and policy not in wanted_policies):
            continue
        time = datetime.fromisoformat(committed)
        approvers = [
            found[0]
            for value in approver_values.split(_VALUE)
            if (found := commits.parse_approved_by(value)) is not None
        ]
        for value in step_values.split(_VALUE):
            step = commits.parse_step(value)
            if step is None or (wanted_users and step.user not in wanted_users):
                continue
            who = (
                list(dict.fromkeys(approvers)) if step.action == commits.APPROVE_STEP else [author]
            )
            entries += [
                HistoryEntry(sha, time, name, policy, step.user, step.action, step.key, subject)
                for name in who
            ]
    return entries


_COLUMNS: Final = ("TIME (UTC)", "POLICY", "USER", "ACTION", "KEY", "COMMIT", "AUTHOR")


def format_history_text(entries: Sequence[HistoryEntry]) -> str:
    """A table for people, one line per step; no trailing newline."""
    if not entries:
        return "No rotation history."
    rows = [_COLUMNS] + [
        (
            e.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            e.policy,
            e.user,
            e.action,
            e.key,
            e.commit[:7],
            e.author,
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def history_to_json(entries: Sequence[HistoryEntry]) -> dict[str, Any]:
    """`{"entries": [...]}` for machines, times as ISO-8601 UTC with a `Z`."""
    return {
        "entries": [
            {
                "commit": e.commit,
                "time": to_iso(e.time),
                "author": e.author,
                "policy": e.policy,
                "user": e.user,
                "action": e.action,
                "key": e.key,
            }
            for e in entries
        ]
    }
