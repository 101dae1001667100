"""Real Git remotes for tests: a bare "origin" and a working clone with one commit on `main`."""

from __future__ import annotations

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
