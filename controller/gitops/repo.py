"""The status repository: the Git checkout keyrotor reads policies from and commits status to.

Every rotation is published in two commits. The *intent* commit says what this run is about to
do and is pushed before anything touches AWS: if the push is rejected, another run moved the
branch first and this run must stop (`PushRejected`). The *status* commit records what happened;
AWS has already changed by then, so `push_status` rebases over concurrent runs and retries rather
than giving up.

Design choices, all in the service of never losing the user's work:

* `commit` builds the commit with plumbing (a temporary index, `commit-tree`, `update-ref`), so it
  commits exactly the given paths whatever else is staged or dirty, runs no hooks, and never
  creates an empty commit. The real index is then brought in line for those paths only.
* A missing identity (GitHub Actions checkouts have none) falls back to
  `keyrotor <keyrotor@users.noreply.github.com>`; a configured one is always used.
* When `push_intent` fails, the unpublished intent commits this object made are dropped (the run
  is abandoned, and a stale intent must never be published by a later push); when it was
  rejected, the branch is also fast-forwarded to the fetched upstream, so the next run starts
  from the latest status. Both moves are two-tree `read-tree -m -u` checkouts, which keep staged
  and unstaged changes to other files and refuse, changing nothing, when they would overwrite
  one; no `reset --hard`, ever.
* `push_status` uses `git rebase --autostash`: unrelated dirty files survive (staged ones come
  back unstaged). A conflict aborts the rebase, so the repository is never left mid-rebase, and
  the status commit stays on the local branch for the user to publish.
* Messages never contain credentials: `user:token@` is stripped from every URL in git's output.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import git

from controller.errors import GitError, PushRejected

FALLBACK_NAME: Final = "keyrotor"
FALLBACK_EMAIL: Final = "keyrotor@users.noreply.github.com"

BeforePush = Callable[[str], None]
"""Called with "intent" or "status" right before each push; tests raise from it to crash a run."""

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")
_TRAILER_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_REJECTION = re.compile(r"\[rejected\]|non-fast-forward|fetch first", re.IGNORECASE)
_NO_PROMPT: Final = {"GIT_TERMINAL_PROMPT": "0"}


def redact(text: str) -> str:
    """Strip `user:password@` from every URL in `text` (`https://u:tok@host/x` -> `https://host/x`)."""
    return _URL_CREDENTIALS.sub(r"\1", text)


def open_repo(path: Path) -> git.Repo:
    """Open the Git work tree containing `path`, or raise a `GitError` saying what to do."""
    not_a_checkout = GitError(
        f"{path} is not a Git checkout: keyrotor keeps status and history in Git; "
        "run it inside a clone of your policy repository"
    )
    if not path.is_dir():
        raise not_a_checkout
    try:
        repo = git.Repo(str(path), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise not_a_checkout from None
    if repo.bare or repo.working_tree_dir is None:
        repo.close()
        raise not_a_checkout
    return repo


def run_git(
    repo: git.Repo, *args: str, env: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    """Run `git ARGS` in `repo`'s work tree: (exit status, stdout, stderr), never raising."""
    status, out, err = repo.git.execute(
        [git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git", *args],
        with_extended_output=True,
        with_exceptions=False,
        env=dict(env) if env else None,
    )
    return int(status), str(out), str(err)


def build_message(subject: str, body: Sequence[str], trailers: Sequence[tuple[str, str]]) -> str:
    """`subject`, a blank line, the body, a blank line, then `Key: value` trailers, in that order.

    The trailers form the last paragraph, which is where `git interpret-trailers` looks for them.
    """
    if not subject.strip() or "\n" in subject:
        raise ValueError(f"a commit subject is one non-empty line, not {subject!r}")
    lines = [line.rstrip() for line in body]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    paragraphs = [subject.strip()]
    if lines:
        paragraphs.append("\n".join(lines))
    if trailers:
        for key, value in trailers:
            if not _TRAILER_KEY.match(key):
                raise ValueError(f"{key!r} is not a trailer key (letters, digits and '-')")
            if not value.strip() or "\n" in value:
                raise ValueError(f"trailer {key} needs a one-line value, not {value!r}")
        paragraphs.append("\n".join(f"{key}: {value.strip()}" for key, value in trailers))
    return "\n\n".join(paragraphs) + "\n"


def _check_rel(rel: str) -> str:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{rel!r} is not a normalized path relative to the repository root")
    if parts[0] == ".git":
        raise ValueError(f"{rel!r} is inside .git")
    return rel


def _summary(stderr: str) -> str:
    """git's own error lines, without the hints, credentials removed."""
    lines = [line.strip() for line in stderr.splitlines()]
    kept = [line for line in lines if line and not line.startswith("hint:")]
    return redact("; ".join(kept)) or "(git printed nothing)"


class _Rejected(Exception):
    """The push was refused because the remote branch moved (non-fast-forward)."""


@dataclass(frozen=True)
class _Upstream:
    branch: str  # local branch name, e.g. main
    remote: str  # remote name, e.g. origin
    merge: str  # the remote's ref, e.g. refs/heads/main
    tracking: str  # our remote-tracking ref, e.g. refs/remotes/origin/main

    @property
    def label(self) -> str:
        return f"{self.remote}/{self.merge.removeprefix('refs/heads/')}"


class StatusRepo:
    """A Git checkout keyrotor commits status to and pushes; use `StatusRepo.open(path)`.

    Close it (or use it as a context manager) to release GitPython's resources.
    """

    def __init__(self, repo: git.Repo, *, before_push: BeforePush | None = None) -> None:
        if repo.working_tree_dir is None:
            raise GitError("a bare repository has no working tree to keep status in")
        self._repo = repo
        self.root = Path(repo.working_tree_dir)
        self._before_push = before_push
        # Commits made by this object and not yet pushed, oldest first, each with its parent.
        self._unpushed: list[tuple[str, str | None]] = []

    @classmethod
    def open(cls, path: Path, *, before_push: BeforePush | None = None) -> StatusRepo:
        return cls(open_repo(path), before_push=before_push)

    def close(self) -> None:
        self._repo.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- running git ---------------------------------------------------------------------------

    def _run(
        self, *args: str, env: Mapping[str, str] | None = None, check: bool = True
    ) -> tuple[int, str, str]:
        status, out, err = run_git(self._repo, *args, env=env)
        if check and status != 0:
            raise GitError(f"git {args[0]} failed in {self.root}: {_summary(err)}")
        return status, out, err

    def _out(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        return self._run(*args, env=env)[1].strip()

    def _rev(self, rev: str) -> str | None:
        status, out, _ = self._run("rev-parse", "-q", "--verify", f"{rev}^{{commit}}", check=False)
        return out.strip() if status == 0 else None

    def _identity_env(self) -> dict[str, str]:
        """GIT_{AUTHOR,COMMITTER}_{NAME,EMAIL} for whatever git config does not provide."""
        pattern = r"^(user|author|committer)\.(name|email)$"
        status, out, _ = self._run("config", "--get-regexp", pattern, check=False)
        config: dict[str, str] = {}
        if status == 0:
            for line in out.splitlines():
                key, _, value = line.partition(" ")
                if value.strip():
                    config[key.lower()] = value.strip()  # later (more local) levels win
        env: dict[str, str] = {}
        for role in ("author", "committer"):
            for field, fallback in (("name", FALLBACK_NAME), ("email", FALLBACK_EMAIL)):
                variable = f"GIT_{role.upper()}_{field.upper()}"
                configured = config.get(f"{role}.{field}") or config.get(f"user.{field}")
                if not configured and not os.environ.get(variable):
                    env[variable] = fallback
        return env

    # --- reading ---------------------------------------------------------------------------------

    def head(self) -> str:
        """The full sha of HEAD."""
        sha = self._rev("HEAD")
        if sha is None:
            raise GitError(f"{self.root} has no commits yet: commit your manifests first")
        return sha

    def read_text(self, rel: str) -> str | None:
        """A file of the working tree as text, or None if it does not exist."""
        try:
            return (self.root / _check_rel(rel)).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    # --- committing ------------------------------------------------------------------------------

    def commit(
        self,
        changes: Mapping[str, str | None],
        subject: str,
        body: Sequence[str] = (),
        trailers: Sequence[tuple[str, str]] = (),
    ) -> str | None:
        """Write `changes` (None deletes) and commit exactly those paths.

        Returns the new commit's sha, or None when the files already had that content (no empty
        commits). Other staged or unstaged changes in the working tree are left as they were.
        """
        paths = [_check_rel(rel) for rel in changes]
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
            unchanged = (
                tree == self._out("rev-parse", f"{parent}^{{tree}}")
                if parent is not None
                else not self._out("ls-tree", tree)
            )
            if unchanged:
                self._run("update-index", "--add", "--remove", "--", *paths)
                return None
            message_file = Path(tmp) / "message"
            message_file.write_text(message, encoding="utf-8")
            parent_args = ["-p", parent] if parent is not None else []
            sha = self._out(
                "commit-tree", tree, *parent_args, "-F", str(message_file),
                env=self._identity_env(),
            )  # fmt: skip
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

    # --- pushing ---------------------------------------------------------------------------------

    def _upstream(self) -> _Upstream | None:
        status, branch, _ = self._run("symbolic-ref", "-q", "--short", "HEAD", check=False)
        branch = branch.strip()
        if status != 0 or not branch:
            return None  # detached HEAD
        _, remote, _ = self._run("config", "--get", f"branch.{branch}.remote", check=False)
        _, merge, _ = self._run("config", "--get", f"branch.{branch}.merge", check=False)
        remote, merge = remote.strip(), merge.strip()
        if not remote or not merge or remote == ".":
            return None
        if not merge.startswith("refs/"):
            merge = f"refs/heads/{merge}"
        short = merge.removeprefix("refs/heads/")
        return _Upstream(branch, remote, merge, f"refs/remotes/{remote}/{short}")

    def has_upstream(self) -> bool:
        """Whether the current branch tracks a remote branch (otherwise pushes are no-ops)."""
        return self._upstream() is not None

    def _push(self, up: _Upstream) -> None:
        status, out, err = self._run(
            "push", "--", up.remote, f"HEAD:{up.merge}", env=_NO_PROMPT, check=False
        )
        if status == 0:
            return
        if _REJECTION.search(err + out) and "[remote rejected]" not in err + out:
            raise _Rejected
        raise GitError(f"cannot push {up.branch} to {up.label}: {_summary(err)}")

    def _fetch(self, up: _Upstream) -> None:
        status, _, err = self._run(
            "fetch", "--no-tags", "--", up.remote, f"+{up.merge}:{up.tracking}",
            env=_NO_PROMPT, check=False,
        )  # fmt: skip
        if status != 0:
            raise GitError(f"cannot fetch {up.label}: {_summary(err)}")

    def _checkout_tree(self, old: str, new: str) -> bool:
        """Move HEAD from `old` to `new` carrying local changes, or change nothing and say False."""
        self._run("update-index", "-q", "--refresh", check=False)
        if self._run("read-tree", "-m", "-u", old, new, check=False)[0] != 0:
            return False
        self._run("update-ref", "-m", "keyrotor: unpublished intent dropped", "HEAD", new, old)
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
        status, out, err = self._run(
            "ls-remote",
            "--heads",
            "--",
            remote,
            f"refs/heads/{branch}",
            env=_NO_PROMPT,
            check=False,
        )
        if status != 0:
            raise GitError(f"cannot list {remote}/{branch}: {_summary(err)}")
        if not out.strip():
            return None
        sha = out.split()[0]
        self._run("fetch", "--no-tags", "--", remote, f"refs/heads/{branch}", env=_NO_PROMPT)
        return sha

    def authors_between(self, base: str, tip: str) -> list[str]:
        """Author emails of the commits on `tip` that `base` lacks, newest first."""
        out = self._out("log", "--format=%ae", f"{base}..{tip}", "--")
        return [line for line in out.splitlines() if line]

    def own_email(self) -> str:
        env = {**os.environ, **self._identity_env()}
        return self._out("var", "GIT_AUTHOR_IDENT", env=env).rsplit("<", 1)[-1].split(">")[0]

    def commit_on(
        self,
        base: str,
        files: Mapping[str, str],
        subject: str,
        body: Sequence[str] = (),
        trailers: Sequence[tuple[str, str]] = (),
    ) -> str:
        """A commit of `files` on top of `base`, made without touching the working tree or HEAD."""
        message = build_message(subject, body, trailers)
        with tempfile.TemporaryDirectory(prefix="keyrotor-") as tmp:
            index_env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._run("read-tree", base, env=index_env)
            for rel, content in files.items():
                blob_file = Path(tmp) / "blob"
                blob_file.write_text(content, encoding="utf-8")
                blob = self._out("hash-object", "-w", "--", str(blob_file))
                self._run(
                    "update-index", "--add", "--cacheinfo", f"100644,{blob},{_check_rel(rel)}",
                    env=index_env,
                )  # fmt: skip
            tree = self._out("write-tree", env=index_env)
            message_file = Path(tmp) / "message"
            message_file.write_text(message, encoding="utf-8")
            return self._out(
                "commit-tree", tree, "-p", base, "-F", str(message_file), env=self._identity_env()
            )

    def push_branch(self, sha: str, branch: str, expected: str | None) -> None:
        """Point the remote's `branch` at `sha`, only if it is still at `expected` (a lease)."""
        remote, _ = self.base_branch()
        lease = f"--force-with-lease=refs/heads/{branch}:{expected or ''}"
        status, out, err = self._run(
            "push", lease, "--", remote, f"{sha}:refs/heads/{branch}", env=_NO_PROMPT, check=False
        )
        if status != 0:
            raise GitError(f"cannot push {branch} to {remote}: {_summary(err or out)}")

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
        if self._before_push is not None:
            self._before_push("intent")
        try:
            self._push(up)
        except _Rejected:
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
        status, _, _ = self._run("merge-base", "--is-ancestor", head, upstream, check=False)
        if status != 0:
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
            if self._before_push is not None:
                self._before_push("status")
            try:
                self._push(up)
            except _Rejected:
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
        raise GitError(f"cannot rebase {up.branch} onto {up.label}: {_summary(err)}")

    def _rebasing(self) -> bool:
        for name in ("rebase-merge", "rebase-apply"):
            path = Path(self._out("rev-parse", "--git-path", name))
            if not path.is_absolute():
                path = self.root / path
            if path.exists():
                return True
        return False
