"""Real Git remotes for tests: a bare "origin" and a working clone with one commit on `main`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import git


@dataclass
class GitRemote:
    """A bare "origin" and a working clone of it with one commit on `main`."""

    bare: Path
    clone: Path
    repo: git.Repo

    def second_clone(self, path: Path) -> git.Repo:
        """Another checkout of the same origin, as a concurrent run would have."""
        repo = git.Repo.clone_from(str(self.bare), str(path), branch="main")
        set_identity(repo, "Other Run", "other@example.com")
        return repo


def set_identity(repo: git.Repo, name: str, email: str) -> None:
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", name)
        cfg.set_value("user", "email", email)


def make_remote(tmp_path: Path) -> GitRemote:
    bare = tmp_path / "origin.git"
    git.Repo.init(str(bare), bare=True, initial_branch="main")
    clone_path = tmp_path / "work"
    repo = git.Repo.init(str(clone_path), initial_branch="main")
    set_identity(repo, "Test User", "test@example.com")
    (clone_path / "README.md").write_text("policies\n")
    repo.index.add(["README.md"])
    repo.index.commit("initial commit")
    repo.create_remote("origin", str(bare))
    repo.git.push("--set-upstream", "origin", "main")
    return GitRemote(bare=bare, clone=clone_path, repo=repo)


@dataclass
class Sabotage:
    """A remote `update` hook that lets another run's commit land right before each push."""

    state: Path

    def pushes_seen(self) -> int:
        """How many ref updates the remote was asked for."""
        counter = self.state / "count"
        return int(counter.read_text()) if counter.exists() else 0


def another_run_wins_every_push(
    bare: Path, *, times: int | None = None, files: Mapping[str, str] | None = None
) -> Sabotage:
    """Make the bare remote move its branch under each of the next `times` pushes (all if None).

    The remote's own `update` hook commits "another run"'s change (`files`, path -> text; by
    default a new file per push) on top of the branch and moves it, so the push being received
    fails exactly as when two runs race: `cannot lock ref ... is at X but expected Y`. Hooks of
    the remote run in the remote's git, which keyrotor's hardening does not reach.
    """
    state = bare.parent / f"{bare.name}-sabotage"
    state.mkdir(exist_ok=True)
    adds = []
    for number, (path, text) in enumerate((files or {}).items()):
        (state / f"content-{number}").write_text(text)
        adds.append(
            f'blob=$(git hash-object -w "{state}/content-{number}")\n'
            f'GIT_INDEX_FILE="$index" git update-index --add --cacheinfo "100644,$blob,{path}"\n'
        )
    if not adds:
        adds.append(
            'blob=$(echo "run $n" | git hash-object -w --stdin)\n'
            'GIT_INDEX_FILE="$index" git update-index --add --cacheinfo '
            '"100644,$blob,other/run-$n.txt"\n'
        )
    limit = "" if times is None else f'[ "$n" -le {times} ] || exit 0\n'
    hook = bare / "hooks" / "update"
    hook.write_text(
        "#!/bin/sh\n"
        "export GIT_AUTHOR_NAME=other GIT_AUTHOR_EMAIL=other@example.com\n"
        "export GIT_COMMITTER_NAME=other GIT_COMMITTER_EMAIL=other@example.com\n"
        f'n=$(( $(cat "{state}/count" 2>/dev/null || echo 0) + 1 ))\n'
        f'echo "$n" > "{state}/count"\n'
        f"{limit}"
        f'index="{state}/index"\n'
        'GIT_INDEX_FILE="$index" git read-tree "$2"\n'
        + "".join(adds)
        + 'tree=$(GIT_INDEX_FILE="$index" git write-tree)\n'
        'commit=$(echo "another run $n" | git commit-tree "$tree" -p "$2")\n'
        'git update-ref "$1" "$commit" "$2"\n'
    )
    hook.chmod(0o755)
    return Sabotage(state)


def push_commit(
    repo: git.Repo,
    branch: str,
    files: dict[str, str | None],
    message: str = "a change",
    *,
    start: str = "origin/main",
    author: tuple[str, str] | None = None,
) -> str:
    """Commit `files` (text, or None to delete) on top of `start` and push it to `branch` on
    origin, as a person working in `repo` would; returns the commit's sha."""
    repo.git.fetch("origin")
    repo.git.checkout("-B", f"work/{branch}", start)
    root = Path(repo.working_tree_dir or ".")
    for rel, text in files.items():
        if text is None:
            repo.index.remove([rel], working_tree=True)
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
        repo.index.add([rel])
    env = {}
    if author is not None:
        env = {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1]}
    with repo.git.custom_environment(**env):
        repo.git.commit("-m", message)
    repo.git.push("--force", "origin", f"HEAD:refs/heads/{branch}")
    return repo.head.commit.hexsha
