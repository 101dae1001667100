"""GitStore.sync and GitStore.publish against real git: a bare origin, clones, real pushes.

Status lives one file per user (`status/<policy>/<account>/<user>.yaml`); runs race, fall behind,
lose their network and die between steps, and no run may lose what another published.
"""

from __future__ import annotations

import subprocess
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from controller.errors import GitError, PushRejected
from controller.gitops.repo import StatusRepo
from controller.gitops.store import (
    DetachedHead,
    Diverged,
    FileUpdate,
    GitStore,
    IntentConflict,
    NotPublished,
    WouldOverwrite,
)
from tests.support.gitremote import GitRemote, another_run_wins_every_push

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DIR = "status/payments/111111111111"
A, B, C = f"{DIR}/a.yaml", f"{DIR}/b.yaml", f"{DIR}/c.yaml"
STEP = [("Keyrotor-Policy", "payments"), ("Keyrotor-Step", "c create AKIAC")]
OBSERVED = [("Keyrotor-Policy", "payments")]


def run(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.rstrip("\n")


def remote_text(remote: GitRemote, rel: str) -> str | None:
    done = subprocess.run(
        ["git", "show", f"main:{rel}"], cwd=remote.bare, capture_output=True, text=True
    )
    return done.stdout if done.returncode == 0 else None


def origin_head(remote: GitRemote) -> str:
    return run(remote.bare, "rev-parse", "refs/heads/main")


def other_run(
    remote: GitRemote, tmp_path: Path, files: dict[str, str | None], message: str = "other run"
) -> str:
    """Another checkout (a concurrent run, or a person) commits `files` and pushes."""
    path = tmp_path / "other"
    if not path.exists():
        remote.second_clone(path).close()
    run(path, "pull", "-q", "--ff-only")
    for rel, text in files.items():
        if text is None:
            run(path, "rm", "-q", rel)
            continue
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
        run(path, "add", rel)
    run(path, "commit", "-q", "-m", message)
    run(path, "push", "-q")
    return run(path, "rev-parse", "HEAD")


def seed(remote: GitRemote, tmp_path: Path) -> None:
    """Users a and b have status upstream; the clone has it too."""
    other_run(remote, tmp_path, {A: "a: v1\n", B: "b: v1\n"}, "seed status")
    run(remote.clone, "pull", "-q", "--ff-only")


def unreachable(remote: GitRemote, tmp_path: Path) -> Path:
    """Take the remote away (as a network failure would); returns where it went."""
    away = tmp_path / "away.git"
    remote.bare.rename(away)
    return away


@pytest.fixture
def clone(git_remote: GitRemote) -> Path:
    git_remote.repo.close()
    return git_remote.clone


def publish(root: Path, updates: list[FileUpdate], **kwargs: object) -> str | None:
    trailers = kwargs.pop("trailers", STEP)
    intent = bool(kwargs.pop("intent", False))
    assert not kwargs
    with StatusRepo.open(root) as repo:
        return repo.publish(updates, "status", ["body"], trailers, when=NOW, intent=intent)  # type: ignore[arg-type]


# --- sync: bringing the checkout in step -----------------------------------------------------


def test_sync_fast_forwards_a_clone_that_is_behind(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    theirs = other_run(git_remote, tmp_path, {A: "a: v1\n"})
    with StatusRepo.open(clone) as repo:
        result = repo.sync()
    assert (result.upstream, result.head, result.published) == ("origin/main", theirs, ())
    assert result.fast_forwarded
    assert run(clone, "rev-parse", "HEAD") == theirs
    assert (clone / A).read_text() == "a: v1\n"
    assert run(clone, "status", "--porcelain") == ""


def test_sync_keeps_staged_unstaged_and_untracked_local_changes(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    other_run(git_remote, tmp_path, {A: "a: v1\n"})
    (clone / "policy.yaml").write_text("new policy\n")
    run(clone, "add", "policy.yaml")
    (clone / "README.md").write_text("edited\n")
    (clone / "scratch.txt").write_text("untracked\n")
    with StatusRepo.open(clone) as repo:
        repo.sync()
    assert run(clone, "status", "--porcelain").splitlines() == [
        " M README.md",
        "A  policy.yaml",
        "?? scratch.txt",
    ]


def test_sync_in_step_already_changes_nothing(clone: Path) -> None:
    before = run(clone, "rev-parse", "HEAD")
    with StatusRepo.open(clone) as repo:
        result = repo.sync()
    assert (result.head, result.fast_forwarded, result.published) == (before, False, ())


def test_sync_without_an_upstream_does_nothing(tmp_path: Path) -> None:
    run(tmp_path, "init", "-q", "-b", "main", "local")
    with StatusRepo.open(tmp_path / "local") as repo:
        result = repo.sync()
    assert (result.upstream, result.head) == (None, None)


def test_sync_on_a_detached_head_says_to_check_out_a_branch(clone: Path) -> None:
    run(clone, "checkout", "-q", "--detach")
    with StatusRepo.open(clone) as repo, pytest.raises(DetachedHead, match="git switch"):
        repo.sync()


def test_sync_refuses_a_persons_unpublished_commit_and_changes_nothing(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    theirs = other_run(git_remote, tmp_path, {A: "a: v1\n"})
    (clone / "notes.txt").write_text("mine\n")
    run(clone, "add", "notes.txt")
    run(clone, "commit", "-q", "-m", "a person's note")
    mine = run(clone, "rev-parse", "HEAD")
    with StatusRepo.open(clone) as repo, pytest.raises(Diverged, match=r"neither on origin/main"):
        repo.sync()
    assert run(clone, "rev-parse", "HEAD") == mine
    assert origin_head(git_remote) == theirs


def test_sync_refuses_when_the_fast_forward_would_overwrite_a_local_change(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    other_run(git_remote, tmp_path, {"README.md": "theirs\n"})
    (clone / "README.md").write_text("mine, uncommitted\n")
    before = run(clone, "rev-parse", "HEAD")
    with StatusRepo.open(clone) as repo, pytest.raises(WouldOverwrite, match="Commit or stash"):
        repo.sync()
    assert run(clone, "rev-parse", "HEAD") == before
    assert (clone / "README.md").read_text() == "mine, uncommitted\n"


def test_sync_refuses_when_the_fast_forward_would_overwrite_an_untracked_file(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    other_run(git_remote, tmp_path, {A: "a: theirs\n"})
    (clone / DIR).mkdir(parents=True)
    (clone / A).write_text("a: left here by hand\n")
    with StatusRepo.open(clone) as repo, pytest.raises(WouldOverwrite):
        repo.sync()
    assert (clone / A).read_text() == "a: left here by hand\n"


def test_sync_that_refuses_does_not_publish_unpublished_commits_either(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    with StatusRepo.open(clone) as repo:
        kept = repo.commit({C: "c: new\n"}, "status", [], STEP)
    theirs = other_run(git_remote, tmp_path, {"README.md": "theirs\n"})
    (clone / "README.md").write_text("mine, uncommitted\n")
    with StatusRepo.open(clone) as repo, pytest.raises(WouldOverwrite):
        repo.sync()
    assert origin_head(git_remote) == theirs
    assert run(clone, "rev-parse", "HEAD") == kept


# --- sync: publishing what earlier runs could not ---------------------------------------------


def test_sync_publishes_an_unpublished_keyrotor_commit_as_it_is(
    git_remote: GitRemote, clone: Path
) -> None:
    with StatusRepo.open(clone) as repo:
        kept = repo.commit({C: "c: new\n"}, "status", [], STEP)
        result = repo.sync()
    assert kept is not None
    assert result.published == (kept,)
    assert origin_head(git_remote) == kept


def test_a_status_commit_whose_push_failed_is_published_by_the_next_sync(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    away = unreachable(git_remote, tmp_path)
    with pytest.raises(NotPublished, match="next keyrotor run here publishes it") as caught:
        publish(clone, [FileUpdate(C, None, "c: new\n")])
    kept = caught.value.sha
    assert kept is not None
    assert run(clone, "rev-parse", "HEAD") == kept
    away.rename(git_remote.bare)
    with StatusRepo.open(clone) as repo:
        result = repo.sync()  # the next run has nothing new of its own to commit
    assert result.published == (kept,)
    assert remote_text(git_remote, C) == "c: new\n"


def test_a_push_the_remote_refuses_is_not_retried_and_keeps_the_commit_locally(
    git_remote: GitRemote, clone: Path
) -> None:
    before = origin_head(git_remote)
    hook = git_remote.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho x >> \"$0.count\"\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(NotPublished, match="protected branch") as caught:
        publish(clone, [FileUpdate(C, None, "c: new\n")])
    assert (git_remote.bare / "hooks" / "pre-receive.count").read_text() == "x\n"
    assert origin_head(git_remote) == before
    assert caught.value.sha == run(clone, "rev-parse", "HEAD")
    assert run(clone, "show", f"HEAD:{C}") == "c: new"
    assert run(clone, "rev-parse", "HEAD~1") == before


def test_sync_replays_unpublished_commits_on_a_moved_upstream_file_by_file(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    with StatusRepo.open(clone) as repo:
        body = ["c: key AKIAC is 91 days old \N{EM DASH} overdue"]
        kept = repo.commit({A: "a: mine\n", C: "c: mine\n"}, "rotate c", body, STEP)
    other_run(git_remote, tmp_path, {A: "a: theirs\n", B: "b: theirs\n"})
    with StatusRepo.open(clone) as repo:
        result = repo.sync()
    assert remote_text(git_remote, A) == "a: theirs\n"  # the upstream changed a: it wins
    assert remote_text(git_remote, B) == "b: theirs\n"
    assert remote_text(git_remote, C) == "c: mine\n"
    assert len(result.published) == 1
    assert kept is not None
    fields = "%B|%an|%ae|%ad|%cn|%cd"
    assert run(git_remote.bare, "log", "-1", f"--format={fields}", "main") == run(
        clone, "log", "-1", f"--format={fields}", kept
    )
    assert run(clone, "rev-parse", "HEAD") == origin_head(git_remote)
    assert run(clone, "status", "--porcelain") == ""


def test_a_replayed_step_is_kept_in_history_even_when_the_upstream_won_every_file(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    with StatusRepo.open(clone) as repo:
        repo.commit({A: "a: mine\n"}, "rotate a", [], STEP)
    other_run(git_remote, tmp_path, {A: "a: theirs\n"})
    with StatusRepo.open(clone) as repo:
        (published,) = repo.sync().published
    assert remote_text(git_remote, A) == "a: theirs\n"
    assert run(git_remote.bare, "log", "-1", "--format=%(trailers:key=Keyrotor-Step)", "main") == (
        "Keyrotor-Step: c create AKIAC"
    )
    assert origin_head(git_remote) == published


def test_a_replayed_observation_that_changes_nothing_is_dropped(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    with StatusRepo.open(clone) as repo:
        repo.commit({A: "a: mine\n"}, "observe a", [], OBSERVED)
    theirs = other_run(git_remote, tmp_path, {A: "a: theirs\n"})
    with StatusRepo.open(clone) as repo:
        assert repo.sync().published == ()
    assert origin_head(git_remote) == theirs
    assert run(clone, "rev-parse", "HEAD") == theirs


def test_a_commit_pushed_by_a_run_that_died_before_moving_its_branch_is_not_published_twice(
    git_remote: GitRemote, clone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StatusRepo.open(clone) as repo:
        kept = repo.commit({C: "c: mine\n"}, "rotate c", [], STEP)
    other_run(git_remote, tmp_path, {B: "b: theirs\n"})

    def die(*args: object) -> None:
        raise KeyboardInterrupt  # the run is killed right after its push

    with monkeypatch.context() as patched:
        patched.setattr(GitStore, "_follow", die)
        with StatusRepo.open(clone) as repo, pytest.raises(KeyboardInterrupt):
            repo.sync()
    pushed = origin_head(git_remote)
    assert run(git_remote.bare, "log", "-1", "--format=%s", "main") == "rotate c"
    assert run(clone, "rev-parse", "HEAD") == kept
    with StatusRepo.open(clone) as repo:
        result = repo.sync()
    assert result.published == ()
    assert origin_head(git_remote) == pushed
    assert run(clone, "rev-parse", "HEAD") == pushed


def test_sync_tries_again_when_another_push_wins_the_race(
    git_remote: GitRemote, clone: Path
) -> None:
    with StatusRepo.open(clone) as repo:
        repo.commit({C: "c: mine\n"}, "rotate c", [], STEP)
    sabotage = another_run_wins_every_push(git_remote.bare, times=1)
    with StatusRepo.open(clone) as repo:
        (published,) = repo.sync().published
    assert sabotage.pushes_seen() == 2
    assert origin_head(git_remote) == published
    assert remote_text(git_remote, "other/run-1.txt") == "run 1\n"
    assert remote_text(git_remote, C) == "c: mine\n"


# --- publish: per-file updates on the latest upstream -----------------------------------------


def test_publish_commits_on_the_latest_upstream_and_pushes(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    theirs = other_run(git_remote, tmp_path, {B: "b: v1\n"})
    sha = publish(clone, [FileUpdate(C, None, "c: new\n")])
    assert sha == origin_head(git_remote)
    assert run(git_remote.bare, "rev-parse", "main~1") == theirs
    assert run(clone, "rev-parse", "HEAD") == sha
    assert (clone / B).read_text() == "b: v1\n"
    assert (clone / C).read_text() == "c: new\n"
    assert run(clone, "status", "--porcelain") == ""


def test_a_behind_clone_publishing_one_user_keeps_what_another_run_published(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    behind = tmp_path / "behind"
    git_remote.second_clone(behind).close()  # made before the other run's push
    other_run(git_remote, tmp_path, {A: "a: v2 by the other run\n", B: "b: v2 by the other run\n"})
    with StatusRepo.open(behind) as repo:
        planned = {path: text for path, text in repo.read_files("status").items()}
        repo.publish(
            [
                FileUpdate(A, planned[A], "a: v1, observed again\n"),  # observation only
                FileUpdate(C, None, "c: created\n"),
            ],
            "rotate c",
            trailers=STEP,
            when=NOW,
        )
    assert remote_text(git_remote, A) == "a: v2 by the other run\n"
    assert remote_text(git_remote, B) == "b: v2 by the other run\n"
    assert remote_text(git_remote, C) == "c: created\n"


def test_publish_replays_a_step_on_the_remotes_latest_record(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    other_run(git_remote, tmp_path, {A: "a: v2\n"})
    seen: list[str | None] = []

    def add_step(latest: str | None) -> str | None:
        seen.append(latest)
        return f"{latest}step: deactivate\n"

    publish(clone, [FileUpdate(A, "a: v1\n", "a: v1\nstep: deactivate\n", add_step)])
    assert seen == ["a: v2\n"]
    assert remote_text(git_remote, A) == "a: v2\nstep: deactivate\n"


def test_publish_takes_the_new_text_when_the_upstream_still_has_the_base(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)

    def never(latest: str | None) -> str | None:
        raise AssertionError("rebase is only for a file the upstream changed")

    publish(clone, [FileUpdate(A, "a: v1\n", "a: v2\n", never)])
    assert remote_text(git_remote, A) == "a: v2\n"


def test_publish_deletes_a_file_whose_new_text_is_none(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    publish(clone, [FileUpdate(A, "a: v1\n", None)])
    assert remote_text(git_remote, A) is None
    assert not (clone / A).exists()
    assert run(clone, "status", "--porcelain") == ""


def test_publish_dates_the_commit_at_when(clone: Path) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    with StatusRepo.open(clone) as repo:
        repo.publish([FileUpdate(C, None, "c\n")], "status", when=when)
    assert run(clone, "log", "-1", "--format=%aI|%cI") == (
        "2026-01-02T03:04:05-05:00|2026-01-02T03:04:05-05:00"
    )


def test_publish_refuses_a_time_without_a_zone(clone: Path) -> None:
    with StatusRepo.open(clone) as repo, pytest.raises(ValueError, match="no time zone"):
        repo.publish([FileUpdate(C, None, "c\n")], "status", when=datetime(2026, 1, 1))


def test_publish_with_nothing_to_change_or_record_makes_no_commit(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    before = origin_head(git_remote)
    assert publish(clone, [FileUpdate(A, "a: v1\n", "a: v1\n")], trailers=OBSERVED) is None
    assert origin_head(git_remote) == before


def test_publish_records_a_step_even_when_it_changes_no_file(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    before = origin_head(git_remote)
    sha = publish(clone, [FileUpdate(A, "a: v1\n", "a: v1\n")])
    assert sha == origin_head(git_remote)
    assert run(git_remote.bare, "rev-parse", "main~1") == before
    assert run(git_remote.bare, "diff-tree", "--name-only", "-r", "--no-commit-id", "main") == ""


def test_publish_keeps_unrelated_local_changes(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    other_run(git_remote, tmp_path, {B: "b: theirs\n"})
    (clone / "policy.yaml").write_text("new policy\n")
    run(clone, "add", "policy.yaml")
    (clone / "README.md").write_text("edited\n")
    (clone / "scratch.txt").write_text("untracked\n")
    publish(clone, [FileUpdate(C, None, "c: new\n")])
    assert run(clone, "status", "--porcelain").splitlines() == [
        " M README.md",
        "A  policy.yaml",
        "?? scratch.txt",
    ]
    assert run(clone, "show", "HEAD:README.md") == "policies"


def test_publish_rebuilds_on_a_push_that_won_the_race_and_replays_the_step(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    sabotage = another_run_wins_every_push(git_remote.bare, times=2, files={A: "a: raced\n"})
    publish(
        clone,
        [FileUpdate(A, "a: v1\n", "a: v1\nstep\n", lambda latest: f"{latest}step\n")],
    )
    assert sabotage.pushes_seen() == 3
    assert remote_text(git_remote, A) == "a: raced\nstep\n"
    assert run(clone, "rev-parse", "HEAD") == origin_head(git_remote)


def test_publish_pauses_between_attempts_only_with_an_injected_sleep(
    git_remote: GitRemote, clone: Path
) -> None:
    another_run_wins_every_push(git_remote.bare, times=2)
    pauses: list[float] = []
    with StatusRepo.open(clone, sleep=pauses.append) as repo:
        repo.publish([FileUpdate(C, None, "c\n")], "status", trailers=STEP, when=NOW)
    assert len(pauses) == 2
    assert 0 < pauses[0] < pauses[1]


def test_publish_losing_every_race_keeps_the_commit_for_the_next_run(
    git_remote: GitRemote, clone: Path
) -> None:
    hook = git_remote.bare / "hooks" / "update"
    another_run_wins_every_push(git_remote.bare)
    with StatusRepo.open(clone, attempts=3) as repo, pytest.raises(NotPublished) as caught:
        repo.publish([FileUpdate(C, None, "c: new\n")], "status", trailers=STEP, when=NOW)
    assert "rejected 3 times" in str(caught.value)
    assert not isinstance(caught.value, PushRejected)
    assert run(clone, "rev-parse", "HEAD") == caught.value.sha
    hook.unlink()
    with StatusRepo.open(clone) as repo:
        repo.sync()
    assert remote_text(git_remote, C) == "c: new\n"


def test_publish_publishes_earlier_unpublished_commits_first(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    with StatusRepo.open(clone) as repo:
        repo.commit({B: "b: earlier run\n"}, "earlier", [], STEP)
    other_run(git_remote, tmp_path, {"README.md": "theirs\n"})
    publish(clone, [FileUpdate(C, None, "c: new\n")])
    assert remote_text(git_remote, B) == "b: earlier run\n"
    assert remote_text(git_remote, C) == "c: new\n"
    assert run(git_remote.bare, "log", "--format=%s", "-3", "main").splitlines() == [
        "status",
        "earlier",
        "other run",
    ]


def test_publish_leaves_the_local_branch_where_following_would_overwrite_a_change(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    other_run(git_remote, tmp_path, {"README.md": "theirs\n"})
    (clone / "README.md").write_text("mine, uncommitted\n")
    before = run(clone, "rev-parse", "HEAD")
    sha = publish(clone, [FileUpdate(C, None, "c: new\n")])
    assert sha == origin_head(git_remote)
    assert run(clone, "rev-parse", "HEAD") == before
    assert (clone / "README.md").read_text() == "mine, uncommitted\n"
    with StatusRepo.open(clone) as repo, pytest.raises(WouldOverwrite):
        repo.sync()


def test_publish_on_a_branch_with_a_persons_commit_keeps_the_status_locally(
    git_remote: GitRemote, clone: Path
) -> None:
    before = origin_head(git_remote)
    (clone / "notes.txt").write_text("mine\n")
    run(clone, "add", "notes.txt")
    run(clone, "commit", "-q", "-m", "a person's note")
    with pytest.raises(Diverged, match=r"status commit \w+ is kept") as caught:
        publish(clone, [FileUpdate(C, None, "c: new\n")])
    assert "neither on origin/main" in str(caught.value)
    assert origin_head(git_remote) == before
    assert run(clone, "show", f"HEAD:{C}") == "c: new"


def test_publish_without_an_upstream_commits_locally(tmp_path: Path) -> None:
    root = tmp_path / "local"
    run(tmp_path, "init", "-q", "-b", "main", "local")
    sha = publish(root, [FileUpdate(C, None, "c: new\n")])
    assert sha == run(root, "rev-parse", "HEAD")
    assert (root / C).read_text() == "c: new\n"
    assert run(root, "status", "--porcelain") == ""


def test_publish_on_a_detached_head_is_refused(clone: Path) -> None:
    run(clone, "checkout", "-q", "--detach")
    with pytest.raises(DetachedHead):
        publish(clone, [FileUpdate(C, None, "c\n")])


def test_publish_refuses_the_same_path_twice_and_paths_outside(clone: Path) -> None:
    with pytest.raises(ValueError, match="twice"):
        publish(clone, [FileUpdate(C, None, "1\n"), FileUpdate(C, None, "2\n")])
    with pytest.raises(ValueError, match="relative to the repository root"):
        publish(clone, [FileUpdate("../escape.yaml", None, "x\n")])


def test_a_shallow_clone_as_ci_makes_syncs_and_publishes(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    shallow = tmp_path / "ci"
    run(tmp_path, "clone", "-q", "--depth", "1", f"file://{git_remote.bare}", str(shallow))
    other_run(git_remote, tmp_path, {A: "a: v2\n"})
    with StatusRepo.open(shallow) as repo:
        repo.sync()
        sha = repo.publish([FileUpdate(C, None, "c: new\n")], "s", trailers=STEP, when=NOW)
    assert sha == origin_head(git_remote)
    assert remote_text(git_remote, A) == "a: v2\n"
    assert remote_text(git_remote, C) == "c: new\n"


def test_read_files_gives_the_committed_texts_not_the_work_tree(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    (clone / A).write_text("a: dirty\n")
    with StatusRepo.open(clone) as repo:
        assert repo.read_files("status") == {A: "a: v1\n", B: "b: v1\n"}
        assert repo.read_files("status/nothing-here") == {}


# --- intents ------------------------------------------------------------------------------------


def intent(root: Path, updates: list[FileUpdate]) -> str | None:
    return publish(
        root, updates, intent=True, trailers=[("Keyrotor-Intent", "a create replaces AKIAA")]
    )


def test_an_intent_is_pushed_over_an_unrelated_upstream_move(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    other_run(git_remote, tmp_path, {B: "b: v2\n"})
    sha = intent(clone, [FileUpdate(A, "a: v1\n", "a: intent\n")])
    assert sha == origin_head(git_remote)
    assert remote_text(git_remote, B) == "b: v2\n"


def test_an_intent_on_a_user_another_run_changed_is_refused_naming_the_file(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    theirs = other_run(git_remote, tmp_path, {A: "a: the other run's intent\n"})
    with pytest.raises(IntentConflict, match=r"nothing was changed in AWS") as caught:
        intent(clone, [FileUpdate(A, "a: v1\n", "a: intent\n")])
    assert caught.value.paths == (A,)
    assert origin_head(git_remote) == theirs
    assert run(clone, "rev-parse", "HEAD") == theirs  # in step: the next run starts from here
    assert run(clone, "status", "--porcelain") == ""


def test_an_intent_retries_the_race_and_still_checks_its_users(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    another_run_wins_every_push(git_remote.bare, times=1, files={A: "a: raced\n"})
    with pytest.raises(IntentConflict):
        intent(clone, [FileUpdate(A, "a: v1\n", "a: intent\n")])
    assert remote_text(git_remote, A) == "a: raced\n"


def test_the_next_run_after_a_rejected_intent_succeeds_on_the_same_checkout(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    with StatusRepo.open(clone) as repo:  # an earlier run's status push failed
        repo.commit({B: "b: deactivated\n"}, "status", [], STEP)
    other_run(git_remote, tmp_path, {A: "a: another run acts on a\n"})
    with pytest.raises(IntentConflict):
        intent(clone, [FileUpdate(A, "a: v1\n", "a: intent\n")])
    with StatusRepo.open(clone) as repo:  # the next run, nobody helping
        repo.sync()
        planned = repo.read_files("status")
        repo.publish(
            [FileUpdate(A, planned[A], "a: intent\n")],
            "intent",
            trailers=[("Keyrotor-Intent", "a create replaces AKIAA")],
            when=NOW,
            intent=True,
        )
    assert remote_text(git_remote, A) == "a: intent\n"
    assert remote_text(git_remote, B) == "b: deactivated\n"


def test_an_intent_that_cannot_be_pushed_leaves_nothing_behind(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    before = run(clone, "rev-parse", "HEAD")
    unreachable(git_remote, tmp_path)
    with pytest.raises(GitError, match="nothing was changed in AWS") as caught:
        intent(clone, [FileUpdate(A, None, "a: intent\n")])
    assert not isinstance(caught.value, NotPublished)
    assert run(clone, "rev-parse", "HEAD") == before
    assert not (clone / A).exists()


def test_an_intent_losing_every_race_is_push_rejected_and_kept_nowhere(
    git_remote: GitRemote, clone: Path
) -> None:
    before = run(clone, "rev-parse", "HEAD")
    another_run_wins_every_push(git_remote.bare)
    with StatusRepo.open(clone, attempts=2) as repo, pytest.raises(PushRejected) as caught:
        repo.publish([FileUpdate(A, None, "a: intent\n")], "intent", when=NOW, intent=True)
    assert "nothing was changed in AWS" in str(caught.value)
    assert run(clone, "rev-parse", "HEAD") == before


def test_an_intent_is_committed_even_when_its_files_are_unchanged(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    seed(git_remote, tmp_path)
    sha = intent(clone, [FileUpdate(A, "a: v1\n", "a: v1\n")])
    assert sha == origin_head(git_remote)


# --- runs racing for real -----------------------------------------------------------------------


def test_two_runs_publishing_at_the_same_moment_both_land(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    second = tmp_path / "second"
    git_remote.second_clone(second).close()
    errors: list[BaseException] = []
    rounds = 6

    def run_publishes(root: Path, user: str, start: threading.Barrier) -> None:
        try:
            with StatusRepo.open(root) as repo:
                for number in range(rounds):
                    start.wait()
                    path = f"{DIR}/{user}-{number}.yaml"
                    repo.publish([FileUpdate(path, None, "x\n")], "s", trailers=STEP, when=NOW)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
            start.abort()

    start = threading.Barrier(2)
    threads = [
        threading.Thread(target=run_publishes, args=(root, user, start))
        for root, user in ((clone, "u"), (second, "v"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    landed = run(git_remote.bare, "ls-tree", "--name-only", f"main:{DIR}").splitlines()
    assert sorted(landed) == sorted(f"{u}-{n}.yaml" for u in "uv" for n in range(rounds))
