"""Rotation history read back from commit trailers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import git
import pytest

from controller.errors import GitError
from controller.gitops import history
from controller.gitops.history import (
    HistoryEntry,
    format_history_text,
    history_to_json,
    read_history,
)
from controller.gitops.repo import StatusRepo, run_git
from controller.gitops.runner import Checkout
from tests.support.gitremote import GitRemote


def record(
    root: Path,
    policy: str | None,
    steps: list[str],
    *,
    body: list[str] | None = None,
    when: datetime | None = None,
    approved_by: list[str] | None = None,
) -> str:
    """Commit one status change carrying `Keyrotor-Policy` (if given), `Keyrotor-Step`s and
    `Keyrotor-Approved-By`s."""
    trailers = [("Keyrotor-Policy", policy)] if policy else []
    trailers += [("Keyrotor-Step", step) for step in steps]
    trailers += [("Keyrotor-Approved-By", who) for who in approved_by or []]
    with StatusRepo.open(root) as repo:
        counter = len(repo.read_files("status").get("status/counter", ""))
        sha = repo.commit(
            {"status/counter": "x" * (counter + 1)},
            f"{policy}: {len(steps)} steps",
            body or [],
            trailers,
            when=when,
        )
    assert sha is not None
    return sha


@pytest.fixture
def root(git_remote: GitRemote) -> Path:
    git_remote.repo.close()
    return git_remote.clone


def test_entries_are_newest_first_one_per_step(root: Path) -> None:
    first = record(root, "payments", ["alice create AKIA1"])
    second = record(root, "billing", ["bob create AKIA2", "bob deactivate AKIA0"])
    entries = read_history(root)
    assert [(e.commit, e.policy, e.user, e.action, e.key) for e in entries] == [
        (second, "billing", "bob", "create", "AKIA2"),
        (second, "billing", "bob", "deactivate", "AKIA0"),
        (first, "payments", "alice", "create", "AKIA1"),
    ]


def test_entry_carries_author_subject_and_committer_time(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = datetime(2026, 5, 1, 12, 34, 56, tzinfo=timezone(timedelta(hours=2)))
    record(root, "payments", ["alice create AKIA1"], when=at)
    (entry,) = read_history(root)
    assert entry.author == "Test User <test@example.com>"
    assert entry.subject == "payments: 1 steps"
    assert entry.time == datetime(2026, 5, 1, 10, 34, 56, tzinfo=UTC)
    assert entry.time.utcoffset() == timedelta(hours=2)


def test_filters_by_user_and_by_policy(root: Path) -> None:
    record(root, "payments", ["alice create AKIA1", "bob create AKIA2"])
    record(root, "billing", ["alice delete AKIA3"])
    assert [e.key for e in read_history(root, users=["alice"])] == ["AKIA3", "AKIA1"]
    assert [e.key for e in read_history(root, policies=["payments"])] == ["AKIA1", "AKIA2"]
    assert [e.key for e in read_history(root, users=["bob"], policies=["billing"])] == []


def test_a_trailer_lookalike_in_the_body_is_not_history(root: Path) -> None:
    record(
        root,
        "payments",
        ["alice create AKIA1"],
        body=["Keyrotor-Step: mallory delete AKIAFAKE", "was not done"],
    )
    assert [e.user for e in read_history(root)] == ["alice"]


def test_commits_without_a_policy_trailer_are_ignored(root: Path) -> None:
    record(root, None, ["alice create AKIA1"])
    record(root, "payments", ["bob create AKIA2"], body=["mentions Keyrotor-Policy: payments"])
    record(root, "payments", [])
    assert [e.user for e in read_history(root)] == ["bob"]


def test_malformed_steps_are_skipped(root: Path) -> None:
    record(root, "payments", ["alice create", "bob create AKIA2", "carol create AKIA3 extra"])
    assert [e.user for e in read_history(root)] == ["bob"]


def test_history_of_another_ref(root: Path) -> None:
    old = record(root, "payments", ["alice create AKIA1"])
    record(root, "payments", ["alice delete AKIA0"])
    assert [e.commit for e in read_history(root, ref=old)] == [old]


def test_a_repository_without_commits_has_no_history(tmp_path: Path) -> None:
    git.Repo.init(str(tmp_path), initial_branch="main").close()
    assert read_history(tmp_path) == []


def test_an_unknown_ref_is_a_git_error(root: Path) -> None:
    with pytest.raises(GitError, match="cannot read history of nope"):
        read_history(root, ref="nope")


def test_a_ref_that_looks_like_an_option_is_taken_as_a_ref(root: Path) -> None:
    with pytest.raises(GitError, match="cannot read history of --output"):
        read_history(root, ref=f"--output={root / 'written'}")
    assert not (root / "written").exists()


def test_outside_a_checkout_is_a_git_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not a Git checkout"):
        read_history(tmp_path)


def test_reads_history_without_a_git_call_per_commit(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        record(root, "payments", [f"alice create AKIA{n}"])
    commands: list[str] = []

    def counting(repo: Checkout, *args: str, **kwargs: Any) -> tuple[int, str, str]:
        commands.append(args[0])
        return run_git(repo, *args, **kwargs)

    monkeypatch.setattr(history, "run_git", counting)
    assert len(read_history(root)) == 3
    assert commands.count("log") == 1
    assert set(commands) <= {"log", "rev-parse"}


ENTRY = HistoryEntry(
    commit="0123456789abcdef0123456789abcdef01234567",
    time=datetime(2026, 5, 1, 12, 34, 56, tzinfo=timezone(timedelta(hours=2))),
    author="Test User <test@example.com>",
    policy="payments",
    user="alice",
    action="create",
    key="AKIAEXAMPLE",
    subject="payments: rotate alice",
)


def test_json_shape_with_utc_z_times() -> None:
    assert history_to_json([ENTRY]) == {
        "entries": [
            {
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "time": "2026-05-01T10:34:56Z",
                "author": "Test User <test@example.com>",
                "policy": "payments",
                "user": "alice",
                "action": "create",
                "key": "AKIAEXAMPLE",
            }
        ]
    }


def test_text_table_has_utc_minutes_and_short_commits() -> None:
    lines = format_history_text([ENTRY]).splitlines()
    assert lines[0].split() == [
        "TIME",
        "(UTC)",
        "POLICY",
        "USER",
        "ACTION",
        "KEY",
        "COMMIT",
        "AUTHOR",
    ]
    assert lines[1].split() == [
        "2026-05-01",
        "10:34",
        "payments",
        "alice",
        "create",
        "AKIAEXAMPLE",
        "0123456",
        "Test",
        "User",
        "<test@example.com>",
    ]
    assert lines[0].index("POLICY") == lines[1].index("payments")


def test_text_without_entries_says_so() -> None:
    assert format_history_text([]) == "No rotation history."


SECOND = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def test_an_approve_step_is_credited_to_each_verified_approver_not_the_commit_author(
    root: Path,
) -> None:
    sha = record(
        root,
        "payments",
        ["alice create-key AKIANEW", "alice approve AKIAOLD"],
        approved_by=["carol (#7)", "dave (#7)"],
    )
    assert [(e.commit, e.action, e.key, e.author) for e in read_history(root)] == [
        (sha, "create-key", "AKIANEW", "Test User <test@example.com>"),
        (sha, "approve", "AKIAOLD", "carol"),
        (sha, "approve", "AKIAOLD", "dave"),
    ]


def test_an_approve_step_without_a_verified_approver_is_not_history(root: Path) -> None:
    record(root, "payments", ["alice approve AKIAOLD"], approved_by=["not a login"])
    record(root, "payments", ["bob approve AKIAOLD"])
    assert read_history(root) == []


def test_merging_a_proposal_by_hand_is_not_an_approval(root: Path) -> None:
    """Who merged is whatever the merge commit's author says: history never credits it."""
    with git.Repo(root) as repo:
        repo.git.checkout("-b", "keyrotor/payments")
        record(root, "payments", ["alice propose AKIA0"])
        repo.git.checkout("main")
        repo.git.merge(
            "--no-ff", "keyrotor/payments", "-m", "Merge pull request #1",
            env={"GIT_AUTHOR_NAME": "Alice Reviewer", "GIT_AUTHOR_EMAIL": "alice@example.com"},
        )  # fmt: skip
    assert [e.action for e in read_history(root)] == ["propose"]


def test_steps_within_one_second_are_newest_commit_first(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2026-05-01T10:00:00Z")
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2026-05-01T10:00:00Z")
    with git.Repo(root) as repo:
        repo.git.checkout("-b", "keyrotor/payments")
        record(root, "payments", ["alice propose AKIA0"], when=SECOND)
        repo.git.checkout("main")
        repo.git.merge("--no-ff", "keyrotor/payments", "-m", "Merge pull request #1")
    record(root, "payments", ["alice create-key AKIA1", "alice approve AKIA0"], when=SECOND,
           approved_by=["carol (#1)"])  # fmt: skip
    for n in range(2, 4):
        record(root, "payments", [f"alice step{n} AKIA{n}"], when=SECOND)
    assert [e.action for e in read_history(root)] == [
        "step3", "step2", "create-key", "approve", "propose"
    ]  # fmt: skip
