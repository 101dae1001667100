"""`StatusRepo`: the status repository, as the commands open it.

It is a `GitStore` (`store.py`: `sync`, `publish`, `read_files`: the API new code uses) plus

* the approval pull requests' side branches: `base_branch`, `fetch_branch`, `commit_on`,
  `push_branch`;
* the older whole-commit API, kept until the executor and `resume` move to `publish`:
  `commit` (commits exactly the given paths with plumbing: no hooks, other staged or dirty files
  left alone, no empty commit), `push_intent` (publishes the intent before anything touches AWS;
  when rejected, the unpublished intent commits this object made are dropped and the branch is
  fast-forwarded, so the next run starts from the latest status) and `push_status` (rebases
  over concurrent runs with `git rebase --autostash` and retries; a conflict aborts the rebase
  and keeps the status commit on the local branch). Both moves of the branch are two-tree
  `read-tree -m -u` checkouts, which keep local changes and refuse, changing nothing, when they
  would overwrite one; no `reset --hard`, ever. `push_status` rebases snapshots that may be
  stale; `publish` does not, which is why it replaces them.

Every git command runs through `controller.gitops.runner` (no hooks, no fsmonitor, a minimal
environment without AWS or GitHub credentials). Messages never contain credentials.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from controller.errors import GitError, PushRejected
from controller.gitops.runner import Checkout, open_checkout, redact, run_git
from controller.gitops.store import (
    DEFAULT_ATTEMPTS,
    FALLBACK_EMAIL,
    FALLBACK_NAME,
    GitStore,
    _Race,
    _Upstream,
    build_message,
    check_rel,
)

__all__ = [
    "FALLBACK_EMAIL",
    "FALLBACK_NAME",
    "Checkout",
    "StatusRepo",
    "build_message",
    "open_repo",
    "redact",
    "run_git",
]

open_repo = open_checkout
"""The Git work tree containing a path (`GitError` with advice when there is none)."""


class StatusRepo(GitStore):
    """A Git checkout keyrotor commits status to and pushes; use `StatusRepo.open(path)`."""

    def __init__(
        self,
        checkout: Checkout,
        *,
        push_token: str | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(checkout, push_token=push_token, attempts=attempts, sleep=sleep)
        # Commits made by `commit` and not yet pushed, oldest first, each with its parent.
        self._unpushed: list[tuple[str, str | None]] = []

    # --- the upstream (None when detached or not tracking) ---------------------------------------

    def _upstream(self) -> _Upstream | None:
        status, branch, _ = self._run("symbolic-ref", "-q", "--short", "HEAD", check=False)
        branch = branch.strip()
        if status != 0 or not branch:
            return None  # detached HEAD
        return self._upstream_of(branch)

    def has_upstream(self) -> bool:
        """Whether the current branch tracks a remote branch (otherwise pushes are no-ops)."""
        return self._upstream() is not None

    # --- committing (older API) ------------------------------------------------------------------

    def commit(
        self,
        changes: Mapping[str, str | None],
        subject: str,
        body: Sequence[str] = (),
        trailers: Sequence[tuple[str, str]] = (),
        *,
        when: datetime | None = None,
    ) -> str | None:
        """Write `changes` (None deletes) and commit exactly those paths on HEAD.

        Returns the new commit's sha, or None when the files already had that content (no empty
        commits). Other staged or unstaged changes in the working tree are left as they were.
        The commit is dated `when` if given (else now).
        """
        paths = [check_rel(rel) for rel in changes]
        message = build_message(subject, body, trailers)
        if not paths:
            return None
        for rel, content in changes.items():
            self._write(rel, content)

        parent = self._rev("HEAD")
        with tempfile.TemporaryDirectory(prefix="keyrotor-") as tmp:
            index_env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent is None:
                self._run("read-tree", "--empty", env=index_env)
            else:
                self._run("read-tree", parent, env=index_env)
            self._run("update-index", "--add", "--remove", "--", *paths, env=index_env)
            tree = self._out("write-tree", env=index_env)
        if tree == self._tree_of(parent):
            self._run("update-index", "--add", "--remove", "--", *paths)
            return None
        sha = self._commit_tree(tree, parent, message, self._commit_env(when))
        # The index first: should moving HEAD fail, the change is merely staged, not lost.
        self._run("update-index", "--add", "--remove", "--", *paths)
        self._run("update-ref", "-m", f"keyrotor: {subject.strip()}", "HEAD", sha, parent or "")
        self._unpushed.append((sha, parent))
        return sha

    def _write(self, rel: str, content: str | None) -> None:
        target = self.root / rel
        if content is None:
            target.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crash never leaves a half-written status file.
        temporary = target.with_name(f".{target.name}.keyrotor-tmp")
        temporary.write_bytes(content.encode("utf-8"))
        os.replace(temporary, target)

    def _checkout_tree(self, old: str, new: str) -> bool:
        """Move HEAD from `old` to `new` carrying local changes, or change nothing and say False."""
        if not self._can_follow(old, new)[0]:
            return False
        self._follow(old, new, "unpublished intent dropped")
        return True

    # --- side branches (approval pull requests) --------------------------------------------------

    def base_branch(self) -> tuple[str, str]:
        """(remote, branch name) of the upstream, e.g. ("origin", "main"); GitError without one."""
        up = self._upstream()
        if up is None:
            raise GitError(f"{self.root} has no upstream branch: approval pull requests need one")
        return up.remote, up.merge.removeprefix("refs/heads/")

    def fetch_branch(self, branch: str) -> str | None:
        """The remote's `branch` as it is now (None when it does not exist there)."""
        remote, _ = self.base_branch()
        env = self._network_env(remote, push=False)
        status, out, err = self._run(
            "ls-remote", "--heads", "--", remote, f"refs/heads/{branch}",
            env=env, check=False, network=True,
        )  # fmt: skip
        if status != 0:
            raise GitError(f"cannot list {remote}/{branch}: {self._summary(err)}")
        if not out.strip():
            return None
        sha = out.split()[0]
        status, _, err = self._run(
            "fetch", "--no-tags", "--no-write-fetch-head", "--", remote, f"refs/heads/{branch}",
            env=env, check=False, network=True,
        )  # fmt: skip
        if status != 0:
            raise GitError(f"cannot fetch {remote}/{branch}: {self._summary(err)}")
        return sha

    def commit_on(
        self,
        base: str,
        files: Mapping[str, str],
        subject: str,
        body: Sequence[str] = (),
        trailers: Sequence[tuple[str, str]] = (),
        *,
        when: datetime | None = None,
    ) -> str:
        """A commit of `files` on top of `base`, made without touching the working tree or HEAD."""
        message = build_message(subject, body, trailers)
        paths = [check_rel(rel) for rel in files]
        blobs = self._write_blobs(list(files.values()))
        tree = self._tree(base, dict(zip(paths, blobs, strict=True)))
        return self._commit_tree(tree, base, message, self._commit_env(when))

    def push_branch(self, sha: str, branch: str, expected: str | None) -> None:
        """Point the remote's `branch` at `sha`, only if it is still at `expected` (a lease)."""
        remote, _ = self.base_branch()
        lease = f"--force-with-lease=refs/heads/{branch}:{expected or ''}"
        status, out, err = self._run(
            "push", lease, "--", remote, f"{sha}:refs/heads/{branch}",
            env=self._network_env(remote, push=True), check=False, network=True,
        )  # fmt: skip
        if status != 0:
            raise GitError(f"cannot push {branch} to {remote}: {self._summary(err or out)}")

    # --- pushing (older API) ---------------------------------------------------------------------

    def push_intent(self) -> None:
        """Publish the intent commit before anything touches AWS.

        Raises `PushRejected` if another run moved the branch: the intent commits this object
        made are dropped (a later push must never publish an intent nobody acted on) and the
        branch is fast-forwarded to the fetched upstream, local changes kept, so the next run
        starts from the latest status. Any other push failure raises `GitError`, and the intent
        commits are dropped too.
        """
        up = self._upstream()
        if up is None:
            return
        try:
            self._push(up, "HEAD")
        except _Race:
            outcome = self._drop_intent()
            if outcome is None:
                try:
                    self._fetch(up)
                    outcome = self._fast_forward(up)
                except GitError as exc:
                    outcome = f"The intent commit was dropped, but {exc}"
            raise PushRejected(
                f"push rejected: another run moved {up.branch} on {up.remote} since this checkout "
                f"was made; this run's intent was not published and nothing was changed in AWS. "
                f"{outcome}"
            ) from None
        except GitError as exc:
            had_intent = bool(self._unpushed)
            note = self._drop_intent() or (
                "The unpublished intent commit was dropped." if had_intent else ""
            )
            raise GitError(f"{exc}\nNothing was changed in AWS. {note}".rstrip()) from None
        self._unpushed.clear()

    def _drop_intent(self) -> str | None:
        """Take back the unpublished commits this object made; None when done (or none made).

        Otherwise a sentence saying why they were left in place.
        """
        if not self._unpushed:
            return None
        head = self._rev("HEAD")
        base = self._unpushed[0][1]
        if head != self._unpushed[-1][0] or base is None:
            return (
                "The unpublished intent commit could not be dropped automatically (the branch "
                "moved meanwhile, or it is the first commit): drop it before running again."
            )
        assert head is not None
        if not self._checkout_tree(head, base):
            return (
                "The unpublished intent commit could not be dropped without overwriting local "
                "changes: drop it (`git reset --keep HEAD~1`) before running again."
            )
        self._unpushed.clear()
        return None

    def _fast_forward(self, up: _Upstream) -> str:
        """Fast-forward the branch to the fetched upstream if possible; say what happened."""
        head, upstream = self._rev("HEAD"), self._rev(up.tracking)
        if head is None or upstream is None:
            return f"Update {up.branch} from {up.label}, then run keyrotor again."
        if not self._is_ancestor(head, upstream):
            return (
                f"{up.branch} has local commits that are not on {up.label}: "
                f"run `git pull --rebase`, then keyrotor again."
            )
        if not self._checkout_tree(head, upstream):
            return (
                f"{up.branch} could not be fast-forwarded to {up.label} without overwriting local "
                f"changes: commit or stash them, run `git pull`, then keyrotor again."
            )
        return f"{up.branch} now matches {up.label}: run keyrotor again."

    def push_status(self, max_attempts: int = 5) -> None:
        """Publish the status commits; on a concurrent push, rebase over it and retry.

        Raises `PushRejected` after `max_attempts` rejected pushes, or `GitError` if the rebase
        conflicts (the rebase is aborted; the status commits stay on the local branch).
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        up = self._upstream()
        if up is None:
            return
        for attempt in range(1, max_attempts + 1):
            try:
                self._push(up, "HEAD")
            except _Race:
                if attempt == max_attempts:
                    break
                self._fetch(up)
                self._rebase(up)
            else:
                self._unpushed.clear()
                return
        raise PushRejected(
            f"push rejected {max_attempts} times: other runs kept moving {up.branch} on "
            f"{up.remote}. AWS has been changed and the status commit is kept on the local "
            f"{up.branch}: run `git pull --rebase && git push` to publish it."
        )

    def _rebase(self, up: _Upstream) -> None:
        env = {**self._identity_env(), "GIT_EDITOR": ":", "GIT_SEQUENCE_EDITOR": ":"}
        status, _, err = self._run(
            "rebase", "--autostash", "--no-verify", up.tracking, env=env, check=False
        )
        self._unpushed.clear()  # rebased commits have new ids
        if status == 0:
            return
        conflicted = self._out("diff", "--name-only", "--diff-filter=U").split()
        if self._rebasing():
            self._run("rebase", "--abort", env=env, check=False)
        if conflicted:
            raise GitError(
                f"cannot publish status: another run pushed changes to {', '.join(conflicted)} "
                f"on {up.label}, and so did this run. The rebase was aborted; this run's status "
                f"commit is kept, unpushed, on the local {up.branch}. AWS has already been "
                f"changed, so do not discard it: run `git pull --rebase`, resolve the conflict, "
                f"and push."
            )
        raise GitError(f"cannot rebase {up.branch} onto {up.label}: {self._summary(err)}")

    def _rebasing(self) -> bool:
        for name in ("rebase-merge", "rebase-apply"):
            path = Path(self._out("rev-parse", "--git-path", name))
            if not path.is_absolute():
                path = self.root / path
            if path.exists():
                return True
        return False
