"""StatusRepo against real git: commits, pushes to a bare origin, concurrent runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import git
import pytest

from controller.errors import GitError, PushRejected
from controller.gitops.repo import FALLBACK_EMAIL, FALLBACK_NAME, StatusRepo, redact
from tests.support.gitremote import GitRemote, another_run_wins_every_push

STATUS = "status/payments.yaml"


def run(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.rstrip("\n")


def origin_head(remote: GitRemote) -> str:
    return run(remote.bare, "rev-parse", "refs/heads/main")


def changed_paths(cwd: Path, rev: str) -> list[str]:
    return run(cwd, "diff-tree", "--no-commit-id", "--name-only", "-r", rev).splitlines()


def other_run_commits(remote: GitRemote, tmp_path: Path, rel: str, content: str) -> str:
    """A concurrent run (another clone) commits `rel` and pushes; returns its commit."""
    path = tmp_path / "other"
    if not path.exists():
        remote.second_clone(path).close()
    run(path, "pull", "-q", "--ff-only")
    (path / rel).parent.mkdir(parents=True, exist_ok=True)
    (path / rel).write_text(content)
    run(path, "add", rel)
    run(path, "commit", "-q", "-m", f"other run writes {rel}")
    run(path, "push", "-q")
    return run(path, "rev-parse", "HEAD")


@pytest.fixture
def status_repo(git_remote: GitRemote) -> StatusRepo:
    git_remote.repo.close()
    return StatusRepo.open(git_remote.clone)


# --- opening -------------------------------------------------------------------------------------


def test_open_outside_a_checkout_says_to_run_inside_a_clone(tmp_path: Path) -> None:
    with pytest.raises(GitError, match=r"is not a Git checkout.*inside a clone"):
        StatusRepo.open(tmp_path)


def test_open_from_a_subdirectory_finds_the_work_tree_root(git_remote: GitRemote) -> None:
    sub = git_remote.clone / "manifests"
    sub.mkdir()
    with StatusRepo.open(sub) as repo:
        assert repo.root == git_remote.clone


# --- committing ----------------------------------------------------------------------------------


def test_commit_writes_and_deletes_exactly_the_given_files(status_repo: StatusRepo) -> None:
    root = status_repo.root
    with status_repo:
        status_repo.commit({STATUS: "a: 1\n", "status/old.yaml": "x\n"}, "seed", [], [])
        sha = status_repo.commit({STATUS: "a: 2\n", "status/old.yaml": None}, "update", [], [])
        assert sha == status_repo.head()
    assert sorted(changed_paths(root, "HEAD")) == ["status/old.yaml", STATUS]
    assert (root / STATUS).read_text() == "a: 2\n"
    assert not (root / "status/old.yaml").exists()
    assert run(root, "status", "--porcelain") == ""


def test_commit_leaves_unrelated_dirty_and_staged_files_alone(status_repo: StatusRepo) -> None:
    root = status_repo.root
    (root / "README.md").write_text("staged edit\n")
    run(root, "add", "README.md")
    (root / "README.md").write_text("unstaged edit\n")
    (root / "notes.txt").write_text("untracked\n")
    with status_repo:
        status_repo.commit({STATUS: "a: 1\n"}, "status", [], [])
    assert changed_paths(root, "HEAD") == [STATUS]
    assert run(root, "show", ":README.md") == "staged edit"
    assert (root / "README.md").read_text() == "unstaged edit\n"
    assert run(root, "status", "--porcelain").splitlines() == ["MM README.md", "?? notes.txt"]


def test_commit_that_changes_nothing_makes_no_commit(status_repo: StatusRepo) -> None:
    with status_repo:
        status_repo.commit({STATUS: "a: 1\n", "gone.yaml": None}, "first", [], [])
        before = status_repo.head()
        assert status_repo.commit({STATUS: "a: 1\n", "gone.yaml": None}, "again", [], []) is None
        assert status_repo.head() == before


def test_trailers_are_the_last_paragraph_git_parses(status_repo: StatusRepo) -> None:
    trailers = [
        ("Keyrotor-Policy", "payments"),
        ("Keyrotor-Step", "alice create AKIANEW"),
        ("Keyrotor-Step", "alice deactivate AKIAOLD"),
    ]
    with status_repo:
        status_repo.commit({STATUS: "x\n"}, "rotate alice", ["one line", "two"], trailers)
    message = run(status_repo.root, "log", "-1", "--format=%B")
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert parsed.splitlines() == [f"{key}: {value}" for key, value in trailers]
    assert message.split("\n\n")[:2] == ["rotate alice", "one line\ntwo"]


def test_commit_uses_the_configured_identity(status_repo: StatusRepo) -> None:
    with status_repo:
        status_repo.commit({STATUS: "x\n"}, "status", [], [])
    assert run(status_repo.root, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "Test User <test@example.com>|Test User <test@example.com>"
    )


def test_commit_without_any_identity_falls_back_to_keyrotor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("NAME", "EMAIL"):
        for role in ("AUTHOR", "COMMITTER"):
            monkeypatch.delenv(f"GIT_{role}_{variable}", raising=False)
    monkeypatch.delenv("EMAIL", raising=False)
    git.Repo.init(str(tmp_path / "ci"), initial_branch="main").close()
    assert subprocess.run(["git", "config", "user.name"], cwd=tmp_path / "ci").returncode == 1
    with StatusRepo.open(tmp_path / "ci") as repo:
        repo.commit({STATUS: "x\n"}, "status", [], [])
    expected = f"{FALLBACK_NAME} <{FALLBACK_EMAIL}>"
    assert run(tmp_path / "ci", "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        f"{expected}|{expected}"
    )


def test_first_commit_in_an_empty_repository_has_no_parent(tmp_path: Path) -> None:
    git.Repo.init(str(tmp_path / "new"), initial_branch="main").close()
    with StatusRepo.open(tmp_path / "new") as repo:
        sha = repo.commit({STATUS: "x\n"}, "status", [], [])
        assert sha is not None
        assert repo.head() == sha
    assert run(tmp_path / "new", "rev-list", "--parents", "-1", "HEAD") == sha


def test_commit_refuses_a_path_outside_the_repository(status_repo: StatusRepo) -> None:
    with status_repo, pytest.raises(ValueError, match="relative to the repository root"):
        status_repo.commit({"../escape.yaml": "x\n"}, "status", [], [])
    assert not (status_repo.root.parent / "escape.yaml").exists()


# --- push_intent ---------------------------------------------------------------------------------


def test_push_intent_publishes_the_intent_commit(git_remote: GitRemote) -> None:
    git_remote.repo.close()
    with StatusRepo.open(git_remote.clone) as repo:
        sha = repo.commit({STATUS: "intent\n"}, "intent", [], [])
        repo.push_intent()
    assert origin_head(git_remote) == sha


def test_push_intent_rejected_when_another_run_pushed_first(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    git_remote.repo.close()
    theirs = other_run_commits(git_remote, tmp_path, "status/other.yaml", "theirs\n")
    with StatusRepo.open(git_remote.clone) as repo:
        repo.commit({STATUS: "intent\n"}, "intent", [], [])
        with pytest.raises(
            PushRejected, match=r"another run moved main.*nothing was changed in AWS"
        ):
            repo.push_intent()
    assert origin_head(git_remote) == theirs


def test_rejected_intent_is_dropped_and_the_next_run_proceeds(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    git_remote.repo.close()
    theirs = other_run_commits(git_remote, tmp_path, "status/other.yaml", "theirs\n")
    root = git_remote.clone
    with StatusRepo.open(root) as repo:
        intent = repo.commit({STATUS: "intent\n"}, "intent", [], [])
        with pytest.raises(PushRejected, match="now matches origin/main"):
            repo.push_intent()
    assert run(root, "rev-parse", "HEAD") == theirs
    assert run(root, "branch", "--contains", str(intent)) == ""
    assert not (root / STATUS).exists()
    assert (root / "status/other.yaml").read_text() == "theirs\n"
    assert run(root, "status", "--porcelain") == ""
    with StatusRepo.open(root) as repo:
        again = repo.commit({STATUS: "intent\n"}, "intent", [], [])
        repo.push_intent()
    assert origin_head(git_remote) == again


def test_rejected_intent_keeps_the_users_local_changes(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    git_remote.repo.close()
    other_run_commits(git_remote, tmp_path, "status/other.yaml", "theirs\n")
    root = git_remote.clone
    (root / "policy.yaml").write_text("new policy\n")
    run(root, "add", "policy.yaml")
    (root / "README.md").write_text("edited\n")
    (root / "scratch.txt").write_text("untracked\n")
    with StatusRepo.open(root) as repo:
        repo.commit({STATUS: "intent\n"}, "intent", [], [])
        with pytest.raises(PushRejected):
            repo.push_intent()
    assert run(root, "status", "--porcelain").splitlines() == [
        " M README.md",
        "A  policy.yaml",
        "?? scratch.txt",
    ]
    assert (root / "README.md").read_text() == "edited\n"


# --- push_status ---------------------------------------------------------------------------------


def test_push_status_rebases_over_a_concurrent_commit(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    git_remote.repo.close()
    theirs = other_run_commits(git_remote, tmp_path, "status/other.yaml", "theirs\n")
    with StatusRepo.open(git_remote.clone) as repo:
        repo.commit({STATUS: "done\n"}, "status", [], [("Keyrotor-Policy", "payments")])
        repo.push_status()
        mine = repo.head()
    assert origin_head(git_remote) == mine
    assert run(git_remote.bare, "rev-parse", "main~1") == theirs
    assert run(git_remote.bare, "log", "-1", "--format=%(trailers)", "main") == (
        "Keyrotor-Policy: payments"
    )


def test_push_status_conflict_aborts_the_rebase_and_keeps_the_status(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    git_remote.repo.close()
    theirs = other_run_commits(git_remote, tmp_path, STATUS, "theirs\n")
    root = git_remote.clone
    with StatusRepo.open(root) as repo:
        mine = repo.commit({STATUS: "mine\n"}, "status", [], [])
        with pytest.raises(GitError, match=f"{STATUS}.*rebase was aborted") as caught:
            repo.push_status()
        assert not isinstance(caught.value, PushRejected)
        assert repo.head() == mine
    assert origin_head(git_remote) == theirs
    assert not (root / run(root, "rev-parse", "--git-path", "rebase-merge")).exists()
    assert not (root / run(root, "rev-parse", "--git-path", "rebase-apply")).exists()
    assert (root / STATUS).read_text() == "mine\n"
    assert run(root, "status", "--porcelain") == ""


def test_push_status_gives_up_after_max_attempts(git_remote: GitRemote) -> None:
    git_remote.repo.close()
    sabotage = another_run_wins_every_push(git_remote.bare)
    with StatusRepo.open(git_remote.clone) as repo:
        repo.commit({STATUS: "done\n"}, "status", [], [])
        with pytest.raises(PushRejected, match="rejected 3 times"):
            repo.push_status(max_attempts=3)
    assert sabotage.pushes_seen() == 3


def test_push_status_keeps_unrelated_dirty_files(git_remote: GitRemote, tmp_path: Path) -> None:
    git_remote.repo.close()
    other_run_commits(git_remote, tmp_path, "status/other.yaml", "theirs\n")
    root = git_remote.clone
    (root / "README.md").write_text("edited\n")
    with StatusRepo.open(root) as repo:
        repo.commit({STATUS: "done\n"}, "status", [], [])
        repo.push_status()
    assert (root / "README.md").read_text() == "edited\n"
    assert run(root, "status", "--porcelain") == " M README.md"


# --- without an upstream, and failures -----------------------------------------------------------


def test_pushes_are_no_ops_without_an_upstream(tmp_path: Path) -> None:
    git.Repo.init(str(tmp_path / "local"), initial_branch="main").close()
    with StatusRepo.open(tmp_path / "local") as repo:
        sha = repo.commit({STATUS: "x\n"}, "status", [], [])
        assert not repo.has_upstream()
        repo.push_intent()
        repo.push_status()
        assert repo.head() == sha


def test_has_upstream_for_a_tracking_branch(status_repo: StatusRepo) -> None:
    with status_repo:
        assert status_repo.has_upstream()


def _track(root: Path, url: str) -> None:
    run(root, "remote", "set-url", "origin", url)


def test_push_failure_message_has_no_credentials(status_repo: StatusRepo) -> None:
    _track(status_repo.root, "https://user:s3cr3t-tok@127.0.0.1:9/x.git")
    with status_repo, pytest.raises(GitError) as caught:
        status_repo.push_intent()
    assert not isinstance(caught.value, PushRejected)
    assert "cannot push main to origin/main" in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
    assert "s3cr3t-tok" not in str(caught.value)
    assert "user:" not in str(caught.value)


def test_a_failed_intent_push_drops_the_intent_commit(status_repo: StatusRepo) -> None:
    before = run(status_repo.root, "rev-parse", "HEAD")
    _track(status_repo.root, "file:///nonexistent/repo.git")
    with status_repo:
        status_repo.commit({STATUS: "intent\n"}, "intent", [], [])
        with pytest.raises(GitError, match="Nothing was changed in AWS"):
            status_repo.push_intent()
    assert run(status_repo.root, "rev-parse", "HEAD") == before
    assert not (status_repo.root / STATUS).exists()
    assert run(status_repo.root, "status", "--porcelain") == ""


def test_credentials_in_urls_git_prints_are_stripped(status_repo: StatusRepo) -> None:
    # Recent git redacts its https errors itself; this path makes it echo a URL verbatim.
    _track(status_repo.root, "file:///nonexistent/https://user:s3cr3t-tok@127.0.0.1:9/x.git")
    with status_repo, pytest.raises(GitError) as caught:
        status_repo.push_intent()
    assert "https://127.0.0.1:9/x.git" in str(caught.value)
    assert "s3cr3t-tok" not in str(caught.value)


def test_unreachable_remote_is_a_git_error_not_a_rejection(status_repo: StatusRepo) -> None:
    _track(status_repo.root, "file:///nonexistent/repo.git")
    with status_repo, pytest.raises(GitError, match="cannot push main") as caught:
        status_repo.push_status()
    assert not isinstance(caught.value, PushRejected)


def test_redact_strips_userinfo_from_urls() -> None:
    text = "fatal: unable to access 'https://x-access-token:ghs_abc@github.com/o/r.git/'"
    assert redact(text) == "fatal: unable to access 'https://github.com/o/r.git/'"
