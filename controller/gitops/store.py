"""Status in Git without lost updates: fetch first, per-file updates, compare-and-swap pushes.

`GitStore` is the status repository as the service layer uses it (`StatusRepo` in `repo.py`
extends it with the older whole-commit API and the approval side branches):

``store.sync() -> SyncResult``
    Run first by `apply` and `reconcile`, before anything is read. Fetches the upstream of the
    current branch and brings the checkout in step with it:

    * unpublished keyrotor commits on the local branch (commits whose trailers name a
      `Keyrotor-Policy`: a run whose push failed, or `--no-push`) are published first. If the
      upstream moved, each is replayed onto it file by file: a file the upstream did not change
      since the commit's parent takes the commit's version; a file the upstream changed keeps the
      upstream's version (the planner re-derives state from AWS), and the commit, with its
      message, trailers, author and dates, is kept all the same so history keeps the step. A
      replayed commit that would change nothing and records no step is dropped. A local commit
      whose author, committer, their dates and message are already upstream (a run pushed it,
      then died before moving its branch) is not published twice;
    * then the branch is fast-forwarded, keeping staged and unstaged local changes (two-tree
      `read-tree -m -u`, never `reset --hard`).

    It refuses, changing nothing (nothing pushed, no ref or file moved), with `Diverged` when the
    branch has commits that are neither upstream nor keyrotor's (or no history in common), and
    with `WouldOverwrite` when the fast-forward would overwrite a local change (tracked or
    untracked). A branch without upstream: nothing to do (`SyncResult.upstream` is None).
    A detached HEAD: `DetachedHead` (keyrotor must know which branch to publish to).

``store.publish(updates, subject, body, trailers, *, when, intent=False) -> str | None``
    Commits `updates` (a sequence of `FileUpdate`) on top of the freshly fetched upstream and
    pushes that commit with a plain, non-force push (compare-and-swap: it lands only on the
    commit it was built on). Each file's new text is decided against the upstream's text:

    * upstream's text == `update.base` (the text the caller planned from; None = absent):
      `update.new` (None deletes the file);
    * otherwise, with `update.rebase`: `rebase(upstream's text)` (a step replayed on the
      latest record; it must be a pure function: it may be called once per attempt);
    * otherwise (an observation only): the upstream's text stays.

    The commit is made with plumbing (a temporary index and `commit-tree`: no hooks, the real
    index untouched); its author and committer dates are `when` (the run's `--now`), its
    identity the configured one or `keyrotor <keyrotor@users.noreply.github.com>`. A commit whose
    files all end up as the upstream has them is still made when a trailer records a step or an
    intent (`Keyrotor-Step`, `Keyrotor-Intent`): every AWS mutation has its trailer in history.
    Otherwise no empty commit is made and publish returns None.

    A rejected push (another run pushed first: non-fast-forward, `fetch first`, or the remote's
    `cannot lock ref` / `failed to update ref` when two pushes race) fetches and rebuilds, up to
    `attempts` times, calling `sleep` between attempts only if one was given. After success the
    local branch is moved to the pushed commit and the index and work tree follow for the files
    that changed, keeping unrelated local changes; should that overwrite a local change, the
    local branch is left where it was (the next `sync` says what to do) and publish still
    returns the pushed commit. Unpublished keyrotor commits found on the local branch are
    published first, exactly as `sync` does.

    When the fetch or push fails for another reason (network, permission, a protected branch)
    or the rejected attempts run out, the commit is kept on the local branch as an unpublished
    keyrotor commit, which the next run's `sync` publishes, and `NotPublished` says so (its
    `sha` is the kept commit). When the branch has a person's commit (diverged), the commit is
    kept on it the same way and `Diverged` says so. Without an upstream, publish commits
    locally and pushes nothing.

    Callers pass the texts they planned from (`read_files` after `sync`) and do not write the
    files themselves: publish updates the work tree (a file dirty in the work tree would keep
    the local branch from following).

    With `intent=True` (the commit made before CreateAccessKey) nothing is ever kept locally on
    failure: if the upstream changed any update's file since its `base` (`rebase` is not used),
    it raises `IntentConflict` naming the paths (another run is acting on those users), after
    bringing the local branch in step with the upstream as `sync` does, so the next run on this
    checkout starts from the latest status without a person. An upstream move that touches none
    of the files does not stop an intent: it is rebuilt on top and pushed again. Any other
    failure raises a `GitError` (`PushRejected` once the attempts run out) saying nothing was
    changed in AWS.

``store.read_files(prefix, rev="HEAD") -> dict[str, str]``
    Every file under `prefix` as committed at `rev` (three git commands, however many files):
    the texts to plan from and to pass back as `FileUpdate.base`.

Every git command runs through `controller.gitops.runner` (no hooks, no fsmonitor, a minimal
environment; push credentials only for fetch and push). Messages never contain credentials.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Final, NoReturn, Self

from controller.errors import GitError, PushRejected
from controller.gitops.runner import (
    Checkout,
    RemoteAuth,
    open_checkout,
    run_git,
    run_git_bytes,
    summary,
)

FALLBACK_NAME: Final = "keyrotor"
FALLBACK_EMAIL: Final = "keyrotor@users.noreply.github.com"

POLICY_TRAILER: Final = "Keyrotor-Policy"
"""Marks a commit as keyrotor's: `sync` publishes such commits; any other local commit diverges."""
STEP_TRAILER: Final = "Keyrotor-Step"
INTENT_TRAILER: Final = "Keyrotor-Intent"
RECORDING_TRAILERS: Final = frozenset({STEP_TRAILER, INTENT_TRAILER})
"""A commit with one of these is made even when it changes no file."""

DEFAULT_ATTEMPTS: Final = 5

Rebase = Callable[[str | None], str | None]
"""Replays a step on the upstream's latest text of a file (None: absent); None deletes."""

_TRAILER_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_LITERAL_PATHS: Final = {"GIT_LITERAL_PATHSPECS": "1"}
_RACE_BY_REMOTE = ("failed to update ref", "cannot lock ref", "incorrect old value")


# --- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileUpdate:
    """One file a commit changes, with the text it was planned from (see the module docstring)."""

    path: str
    base: str | None
    new: str | None
    rebase: Rebase | None = None


@dataclass(frozen=True)
class SyncResult:
    """What `sync` did."""

    upstream: str | None
    """e.g. "origin/main"; None when the branch tracks nothing (and nothing was done)."""
    head: str | None
    """HEAD afterwards (None on a branch without commits)."""
    published: tuple[str, ...] = ()
    """The keyrotor commits this sync pushed, as they are upstream now, oldest first."""
    fast_forwarded: bool = False
    """Whether HEAD moved."""


# --- errors -------------------------------------------------------------------------------------


class DetachedHead(GitError):
    """HEAD is not on a branch: keyrotor cannot tell where to publish status."""


class Diverged(GitError):
    """The local branch has commits that are neither upstream nor keyrotor's."""


class WouldOverwrite(GitError):
    """Bringing the branch in step with the upstream would overwrite a local change."""


class NotPublished(GitError):
    """A status commit was made but could not be pushed; it stays on the local branch."""

    def __init__(self, message: str, sha: str | None) -> None:
        super().__init__(message)
        self.sha = sha


class IntentConflict(PushRejected):
    """Another run changed the status of the users this intent is about: stop before AWS."""

    def __init__(self, message: str, paths: Sequence[str]) -> None:
        super().__init__(message)
        self.paths = tuple(paths)


class _Race(Exception):
    """The push lost to another push (the remote branch moved); fetch, rebuild, try again."""


# --- helpers ------------------------------------------------------------------------------------


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


def check_rel(rel: str) -> str:
    """`rel` if it is a normalized path inside the work tree (and not in .git); else ValueError."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{rel!r} is not a normalized path relative to the repository root")
    if parts[0] == ".git":
        raise ValueError(f"{rel!r} is inside .git")
    return rel


def git_date(when: datetime) -> str:
    """`when` as git's raw date (`@<seconds> +hhmm`); a naive datetime is refused."""
    offset = when.utcoffset()
    if offset is None:
        raise ValueError(f"commit time {when!r} has no time zone")
    minutes = int(offset / timedelta(minutes=1))
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"@{int(when.timestamp())} {sign}{hours:02d}{rest:02d}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class _Upstream:
    branch: str  # local branch name, e.g. main
    remote: str  # remote name, e.g. origin
    merge: str  # the remote's ref, e.g. refs/heads/main
    tracking: str  # our remote-tracking ref, e.g. refs/remotes/origin/main

    @property
    def label(self) -> str:
        return f"{self.remote}/{self.merge.removeprefix('refs/heads/')}"


@dataclass(frozen=True)
class _Ident:
    name: str
    email: str
    date: str  # raw: "<seconds> <+hhmm>"


@dataclass(frozen=True)
class _LocalCommit:
    sha: str
    parents: tuple[str, ...]
    author: _Ident
    committer: _Ident
    message: str
    keyrotors: bool  # has a Keyrotor-Policy trailer
    records: bool  # has a Keyrotor-Step or Keyrotor-Intent trailer

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return (self.author.name, self.author.email, self.author.date, self.message)

    def env(self) -> dict[str, str]:
        """The environment that makes `commit-tree` reproduce this commit's people and dates."""
        return {
            "GIT_AUTHOR_NAME": self.author.name,
            "GIT_AUTHOR_EMAIL": self.author.email,
            "GIT_AUTHOR_DATE": f"@{self.author.date}",
            "GIT_COMMITTER_NAME": self.committer.name,
            "GIT_COMMITTER_EMAIL": self.committer.email,
            "GIT_COMMITTER_DATE": f"@{self.committer.date}",
        }


_FIELD = "\x1f"
_VALUE = "\x1e"
_LOG_FORMAT = "%x1f".join(
    [
        "%H",
        "%P",
        "%an",
        "%ae",
        "%ad",
        "%cn",
        "%ce",
        "%cd",
        f"%(trailers:key={POLICY_TRAILER},valueonly,separator=%x1e)",
        f"%(trailers:key={STEP_TRAILER},valueonly,separator=%x1e)",
        f"%(trailers:key={INTENT_TRAILER},valueonly,separator=%x1e)",
        "%B",
    ]
)


# --- the store ----------------------------------------------------------------------------------


class GitStore:
    """The status repository: sync with the upstream, publish per-file updates.

    Open with `GitStore.open(path)` (or `StatusRepo.open`); `push_token` authenticates fetches
    and pushes over HTTPS (read it once from the CI environment); `attempts` bounds the pushes
    tried when other runs keep winning; `sleep`, if given, is called between them.
    """

    def __init__(
        self,
        checkout: Checkout,
        *,
        push_token: str | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._checkout = checkout
        self.root = checkout.root
        self._auth = RemoteAuth(push_token) if push_token else None
        self._attempts = attempts
        self._sleep = sleep
        self._object_format: str | None = None

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        push_token: str | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], None] | None = None,
    ) -> Self:
        return cls(open_checkout(path), push_token=push_token, attempts=attempts, sleep=sleep)

    def close(self) -> None:
        """Nothing to release (kept so callers can use the store as a context manager)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- running git -----------------------------------------------------------------------------

    @property
    def _secrets(self) -> tuple[str, ...]:
        return self._auth.secrets if self._auth else ()

    def _run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        check: bool = True,
        network: bool = False,
    ) -> tuple[int, str, str]:
        status, out, err = run_git(self._checkout, *args, env=env, input=input, network=network)
        if check and status != 0:
            raise GitError(f"git {args[0]} failed in {self.root}: {self._summary(err)}")
        return status, out, err

    def _out(
        self, *args: str, env: Mapping[str, str] | None = None, input: str | None = None
    ) -> str:
        return self._run(*args, env=env, input=input)[1].strip()

    def _summary(self, stderr: str) -> str:
        return summary(stderr, self._secrets)

    def _rev(self, rev: str) -> str | None:
        status, out, _ = self._run("rev-parse", "-q", "--verify", f"{rev}^{{commit}}", check=False)
        return out.strip() if status == 0 else None

    def _is_ancestor(self, older: str, newer: str) -> bool:
        return self._run("merge-base", "--is-ancestor", older, newer, check=False)[0] == 0

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

    def _commit_env(self, when: datetime | None) -> dict[str, str]:
        env = self._identity_env()
        if when is not None:
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = git_date(when)
        return env

    # --- reading ---------------------------------------------------------------------------------

    def head(self) -> str:
        """The full sha of HEAD."""
        sha = self._rev("HEAD")
        if sha is None:
            raise GitError(f"{self.root} has no commits yet: commit your manifests first")
        return sha

    def read_files(self, prefix: str, rev: str = "HEAD") -> dict[str, str]:
        """Every file under the directory `prefix` as committed at `rev` ({} when none)."""
        if self._rev(rev) is None:
            return {}
        blobs = self._blobs_under(rev, [check_rel(prefix.rstrip("/"))])
        return dict(zip(blobs, self._read_blobs(list(blobs.values())), strict=True))

    def _blobs_under(self, rev: str, paths: Sequence[str]) -> dict[str, str]:
        """path -> blob id of every file at or under `paths` in `rev`."""
        found: dict[str, str] = {}
        for start in range(0, len(paths), 500):
            chunk = paths[start : start + 500]
            out = self._out(
                "ls-tree", "-r", "-z", "--full-tree", rev, "--", *chunk, env=_LITERAL_PATHS
            )
            for entry in out.split("\0"):
                meta, _, path = entry.partition("\t")
                fields = meta.split()
                if len(fields) == 3 and fields[1] == "blob":
                    found[path] = fields[2]
        return found

    def _blobs_at(self, rev: str | None, paths: Iterable[str]) -> dict[str, str]:
        """path -> blob id of each of `paths` that is a file in `rev`."""
        wanted = sorted(set(paths))
        if rev is None or not wanted:
            return {}
        return {p: b for p, b in self._blobs_under(rev, wanted).items() if p in set(wanted)}

    def _read_blobs(self, blobs: Sequence[str]) -> list[str]:
        if not blobs:
            return []
        status, out, err = self._run_bytes("cat-file", "--batch", input="\n".join(blobs) + "\n")
        if status != 0:
            raise GitError(f"cannot read files in {self.root}: {self._summary(err)}")
        texts: list[str] = []
        at = 0
        for _ in blobs:
            header_end = out.index(b"\n", at)
            size = int(out[at:header_end].split()[2])
            start = header_end + 1
            texts.append(out[start : start + size].decode("utf-8", "replace"))
            at = start + size + 1
        return texts

    def _run_bytes(self, *args: str, input: str) -> tuple[int, bytes, str]:
        status, out, err = run_git_bytes(self._checkout, *args, input=input.encode("utf-8"))
        return status, out, err.decode("utf-8", "replace")

    def _blob_id(self, text: str | None) -> str | None:
        """The id git gives a blob of `text` (without writing it)."""
        if text is None:
            return None
        data = text.encode("utf-8")
        return hashlib.new(self._format(), b"blob %d\0" % len(data) + data).hexdigest()

    def _format(self) -> str:
        """The repository's object format: "sha1" or "sha256"."""
        if self._object_format is None:
            fmt = self._run("rev-parse", "--show-object-format", check=False)[1].strip()
            self._object_format = fmt or "sha1"
        return self._object_format

    def _write_blobs(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        with tempfile.TemporaryDirectory(prefix="keyrotor-") as tmp:
            files = []
            for number, text in enumerate(texts):
                file = Path(tmp) / str(number)
                file.write_bytes(text.encode("utf-8"))
                files.append(str(file))
            out = self._out(
                "hash-object", "-w", "--no-filters", "--stdin-paths", input="\n".join(files) + "\n"
            )
        return out.split()

    # --- building commits ------------------------------------------------------------------------

    def _tree(self, parent: str | None, files: Mapping[str, str | None]) -> str:
        """The tree of `parent` with `files` (path -> blob id, None removes) applied."""
        with tempfile.TemporaryDirectory(prefix="keyrotor-") as tmp:
            index_env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent is None:
                self._run("read-tree", "--empty", env=index_env)
            else:
                self._run("read-tree", parent, env=index_env)
            if files:
                zero = "0" * hashlib.new(self._format()).digest_size * 2
                lines = [
                    f"100644 {blob}\t{path}" if blob else f"0 {zero}\t{path}"
                    for path, blob in files.items()
                ]
                self._run(
                    "update-index", "-z", "--index-info",
                    env=index_env, input="\0".join(lines) + "\0",
                )  # fmt: skip
            return self._out("write-tree", env=index_env)

    def _tree_of(self, commit: str | None) -> str:
        if commit is None:
            return self._out("mktree", input="")
        return self._out("rev-parse", f"{commit}^{{tree}}")

    def _commit_tree(
        self, tree: str, parent: str | None, message: str, env: Mapping[str, str]
    ) -> str:
        parent_args = ["-p", parent] if parent is not None else []
        with tempfile.TemporaryDirectory(prefix="keyrotor-") as tmp:
            message_file = Path(tmp) / "message"
            message_file.write_bytes(message.encode("utf-8"))
            return self._out("commit-tree", tree, *parent_args, "-F", str(message_file), env=env)

    def _resolve(
        self, updates: Sequence[FileUpdate], at: str | None, *, intent: bool
    ) -> tuple[dict[str, str | None], list[str]]:
        """(path -> blob id or None) to apply on `at`, and the paths an intent conflicts on."""
        current = self._blobs_at(at, (u.path for u in updates))
        decided: dict[str, str | None] = {}
        conflicts: list[str] = []
        for update in updates:
            now = current.get(update.path)
            if now == self._blob_id(update.base):
                decided[update.path] = update.new
            elif intent:
                conflicts.append(update.path)
            elif update.rebase is not None:
                text = self._read_blobs([now])[0] if now is not None else None
                decided[update.path] = update.rebase(text)
            # else: an observation only; the upstream's text stays.
        wanted = {
            path: text for path, text in decided.items() if self._blob_id(text) != current.get(path)
        }
        to_write = [text for text in wanted.values() if text is not None]
        written = iter(self._write_blobs(to_write))
        files = {path: next(written) if text is not None else None for path, text in wanted.items()}
        return files, conflicts

    def _new_commit(
        self,
        parent: str | None,
        files: Mapping[str, str | None],
        message: str,
        env: Mapping[str, str],
        records: bool,
    ) -> str | None:
        tree = self._tree(parent, files)
        if tree == self._tree_of(parent) and not records:
            return None
        return self._commit_tree(tree, parent, message, env)

    # --- the branch and its upstream -------------------------------------------------------------

    def _branch(self) -> str:
        status, out, _ = self._run("symbolic-ref", "-q", "HEAD", check=False)
        ref = out.strip()
        if status != 0 or not ref.startswith("refs/heads/"):
            raise DetachedHead(
                f"HEAD is detached in {self.root}: keyrotor publishes status to a branch; "
                "check out the branch it should publish to (`git switch main`) and run it again"
            )
        return ref.removeprefix("refs/heads/")

    def _upstream_of(self, branch: str) -> _Upstream | None:
        prefix = f"branch.{branch}."
        pattern = "^" + re.escape(prefix) + "(remote|merge)$"
        _, out, _ = self._run("config", "-z", "--get-regexp", pattern, check=False)
        values = dict(entry.partition("\n")[::2] for entry in out.split("\0") if entry)
        remote = values.get(f"{prefix}remote", "").strip()
        merge = values.get(f"{prefix}merge", "").strip()
        if not remote or not merge or remote == ".":
            return None
        if not merge.startswith("refs/"):
            merge = f"refs/heads/{merge}"
        short = merge.removeprefix("refs/heads/")
        return _Upstream(branch, remote, merge, f"refs/remotes/{remote}/{short}")

    def _network_env(self, remote: str, *, push: bool) -> dict[str, str]:
        if self._auth is None:
            return {}
        args = ["remote", "get-url", *(["--push"] if push else []), "--", remote]
        status, url, _ = self._run(*args, check=False)
        return self._auth.env_for(url.strip()) if status == 0 else {}

    def _fetch(self, up: _Upstream) -> str:
        """Fetch the upstream branch; its commit."""
        status, _, err = self._run(
            "fetch", "--no-tags", "--no-write-fetch-head", "--", up.remote,
            f"+{up.merge}:{up.tracking}",
            env=self._network_env(up.remote, push=False), check=False, network=True,
        )  # fmt: skip
        tip = self._rev(up.tracking) if status == 0 else None
        if tip is None:
            raise GitError(f"cannot fetch {up.label}: {self._summary(err)}")
        return tip

    def _push(self, up: _Upstream, rev: str) -> None:
        """A plain (compare-and-swap) push of `rev` to the upstream; `_Race` when it lost."""
        status, out, err = self._run(
            "push", "--porcelain", "--", up.remote, f"{rev}:{up.merge}",
            env=self._network_env(up.remote, push=True), check=False, network=True,
        )  # fmt: skip
        if status == 0:
            return
        for line in out.splitlines():
            fields = line.split("\t")
            if len(fields) < 3 or fields[0] != "!":
                continue
            outcome = fields[2]
            if outcome.startswith("[rejected]") or (
                outcome.startswith("[remote rejected]")
                and any(reason in outcome for reason in _RACE_BY_REMOTE)
            ):
                raise _Race
        raise GitError(f"cannot push {up.branch} to {up.label}: {self._summary(err or out)}")

    def _pause(self, attempt: int) -> None:
        if self._sleep is not None:
            self._sleep(min(0.1 * 2 ** (attempt - 1), 2.0))

    def _unpublished(self, up: _Upstream, head: str | None, upstream: str) -> list[_LocalCommit]:
        """The local commits the upstream lacks, oldest first; `Diverged` if any is not ours."""
        if head is None or head == upstream:
            return []
        status, base, _ = self._run("merge-base", head, upstream, check=False)
        if status != 0:
            raise Diverged(
                f"{up.branch} and {up.label} have no history in common: keyrotor will not "
                f"publish to {up.label} from here; clone the policy repository again"
            )
        commits = self._log(f"{upstream}..{head}", reverse=True)
        foreign = [c for c in commits if not c.keyrotors or len(c.parents) != 1]
        if foreign:
            shown = ", ".join(c.sha[:12] for c in foreign[:5])
            raise Diverged(
                f"{up.branch} has {_plural(len(foreign), 'local commit')} that "
                f"{'is' if len(foreign) == 1 else 'are'} neither on {up.label} nor keyrotor's "
                f"({shown}): keyrotor changed nothing. Publish or drop "
                f"{'it' if len(foreign) == 1 else 'them'} (`git pull --rebase && git push`, or "
                f"`git reset --keep {up.label}`), then run keyrotor again"
            )
        if base.strip() != upstream:
            published = {c.identity for c in self._log(f"{base.strip()}..{upstream}")}
            commits = [c for c in commits if c.identity not in published]
        return commits

    def _log(self, revisions: str, *, reverse: bool = False) -> list[_LocalCommit]:
        args = ["log", "-z", "--date=raw", "--no-show-signature", f"--format={_LOG_FORMAT}"]
        out = self._run(*args, *(["--reverse"] if reverse else []), revisions, "--")[1]
        commits: list[_LocalCommit] = []
        for record in out.split("\0"):
            fields = record.lstrip("\n").split(_FIELD)
            if len(fields) != 12:
                continue
            sha, parents, an, ae, ad, cn, ce, cd, policy, steps, intents, message = fields
            commits.append(
                _LocalCommit(
                    sha=sha,
                    parents=tuple(parents.split()),
                    author=_Ident(an, ae, ad),
                    committer=_Ident(cn, ce, cd),
                    message=message,
                    keyrotors=any(v.strip() for v in policy.split(_VALUE)),
                    records=any(v.strip() for v in (steps + _VALUE + intents).split(_VALUE)),
                )
            )
        return commits

    def _replay(self, commit: _LocalCommit, onto: str) -> str:
        """`commit` rebuilt on `onto`, file by file; `onto` itself when it would be empty."""
        parent = commit.parents[0]
        out = self._out("diff-tree", "-r", "-z", "--no-renames", "--name-only", parent, commit.sha)
        paths = [p for p in out.split("\0") if p]
        before = self._blobs_at(parent, paths)
        after = self._blobs_at(commit.sha, paths)
        there = self._blobs_at(onto, paths)
        files = {p: after.get(p) for p in paths if there.get(p) == before.get(p)}
        tree = self._tree(onto, files)
        if tree == self._tree_of(onto) and not commit.records:
            return onto
        return self._commit_tree(tree, onto, commit.message, commit.env())

    def _stack(self, local: Sequence[_LocalCommit], head: str | None, upstream: str) -> str:
        """The commit to push: the upstream with the unpublished keyrotor commits on top."""
        if not local:
            return upstream
        if head is not None and self._is_ancestor(upstream, head):
            return head  # nothing to replay: publish the local commits as they are
        tip = upstream
        for commit in local:
            tip = self._replay(commit, tip)
        return tip

    # --- moving the local branch -----------------------------------------------------------------

    def _can_follow(self, old: str | None, new: str) -> tuple[bool, str]:
        if old == new:
            return True, ""
        self._run("update-index", "-q", "--refresh", check=False)
        status, _, err = self._run(
            "read-tree", "-m", "-u", "-n", old or self._tree_of(None), new, check=False
        )
        return status == 0, self._summary(err)

    def _follow(self, old: str | None, new: str, why: str) -> None:
        """Move the branch from `old` to `new`, the index and work tree too, keeping changes."""
        if old == new:
            return
        self._run("read-tree", "-m", "-u", old or self._tree_of(None), new)
        self._run("update-ref", "-m", f"keyrotor: {why}", "HEAD", new, old or "")

    # --- sync ------------------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        """Publish unpublished keyrotor commits, then fast-forward (see the module docstring)."""
        up = self._upstream_of(self._branch())
        if up is None:
            return SyncResult(upstream=None, head=self._rev("HEAD"))
        for attempt in range(1, self._attempts + 1):
            upstream = self._fetch(up)
            head = self._rev("HEAD")
            local = self._unpublished(up, head, upstream)
            tip = self._stack(local, head, upstream)
            ok, why = self._can_follow(head, tip)
            if not ok:
                raise WouldOverwrite(
                    f"{up.branch} cannot be brought in step with {up.label} without overwriting "
                    f"local changes ({why}): keyrotor changed nothing. Commit or stash them, "
                    f"then run keyrotor again"
                )
            if tip != upstream:
                try:
                    self._push(up, tip)
                except _Race:
                    self._pause(attempt)
                    continue
                except GitError as exc:
                    raise GitError(
                        f"{exc}. {_plural(len(local), 'unpublished keyrotor commit')} stay on "
                        f"the local {up.branch}; nothing was changed in AWS."
                    ) from None
            self._follow(head, tip, f"in step with {up.label}")
            published = self._log(f"{upstream}..{tip}", reverse=True) if tip != upstream else []
            return SyncResult(
                upstream=up.label,
                head=tip,
                published=tuple(c.sha for c in published),
                fast_forwarded=head != tip,
            )
        raise PushRejected(
            f"other runs kept moving {up.label} ({_plural(self._attempts, 'attempt')}): the "
            f"unpublished keyrotor commits stay on the local {up.branch}; nothing was changed "
            "in AWS. Run keyrotor again."
        )

    # --- publish ---------------------------------------------------------------------------------

    def publish(
        self,
        updates: Sequence[FileUpdate],
        subject: str,
        body: Sequence[str] = (),
        trailers: Sequence[tuple[str, str]] = (),
        *,
        when: datetime,
        intent: bool = False,
        push: bool = True,
    ) -> str | None:
        """Commit `updates` on the latest upstream and push it (see the module docstring).

        Returns the commit's sha, or None when nothing needed committing. With `push=False`
        (`--no-push`) the commit is made on the local branch only, like one whose push failed:
        the next run's `sync` publishes it.
        """
        message = build_message(subject, body, trailers)
        paths = [check_rel(u.path) for u in updates]
        if len(set(paths)) != len(paths):
            raise ValueError(f"a path appears twice among the updates: {sorted(paths)}")
        records = intent or any(key in RECORDING_TRAILERS for key, _ in trailers)
        env = self._commit_env(when)
        up = self._upstream_of(self._branch())
        if up is None or not push:
            return self._commit_locally(updates, message, env, records, intent=intent)
        what = "intent" if intent else "status commit"
        for attempt in range(1, self._attempts + 1):
            try:
                upstream = self._fetch(up)
            except GitError as exc:
                self._not_published(up, updates, message, env, records, intent, str(exc))
            head = self._rev("HEAD")
            try:
                tip = self._stack(self._unpublished(up, head, upstream), head, upstream)
            except Diverged as exc:
                if intent:
                    raise
                sha = self._commit_locally(updates, message, env, records, intent=False)
                raise Diverged(f"{exc}. This run's status commit {sha} is kept on it.") from None
            files, conflicts = self._resolve(updates, tip, intent=intent)
            if conflicts:
                raise IntentConflict(self._conflict_message(up, conflicts), conflicts)
            new = self._new_commit(tip, files, message, env, records)
            final = new or tip
            follows, _ = self._can_follow(head, final)
            if final != upstream:
                try:
                    self._push(up, final)
                except _Race:
                    self._pause(attempt)
                    continue
                except GitError as exc:
                    if intent:
                        raise GitError(
                            f"{exc}. The intent was not published; nothing was changed in AWS."
                        ) from None
                    if follows:
                        self._follow(head, final, f"unpublished {what}")
                        kept = new
                    else:
                        kept = self._commit_locally(updates, message, env, records)
                    raise NotPublished(self._kept_message(up, kept, str(exc)), kept) from None
            if follows:
                self._follow(head, final, f"published {what}")
            return new
        if intent:
            raise PushRejected(
                f"push rejected {_plural(self._attempts, 'time')}: other runs kept moving "
                f"{up.label}; this run's intent was not published and nothing was changed in AWS. "
                "Run keyrotor again."
            )
        kept = self._commit_locally(updates, message, env, records)
        reason = f"push rejected {_plural(self._attempts, 'time')}: other runs kept moving it"
        raise NotPublished(self._kept_message(up, kept, reason), kept)

    def _not_published(
        self,
        up: _Upstream,
        updates: Sequence[FileUpdate],
        message: str,
        env: Mapping[str, str],
        records: bool,
        intent: bool,
        reason: str,
    ) -> NoReturn:
        if intent:
            raise GitError(f"{reason}. The intent was not published; nothing was changed in AWS.")
        kept = self._commit_locally(updates, message, env, records)
        raise NotPublished(self._kept_message(up, kept, reason), kept)

    @staticmethod
    def _kept_message(up: _Upstream, kept: str | None, reason: str) -> str:
        if kept is None:
            return f"{reason}. This run had no new status to record."
        return (
            f"{reason}. The status commit {kept[:12]} is kept on the local {up.branch}: "
            f"the next keyrotor run here publishes it before anything else "
            f"(or publish it yourself with `git pull --rebase && git push`)."
        )

    def _conflict_message(self, up: _Upstream, paths: Sequence[str]) -> str:
        try:
            self.sync()
            note = f"{up.branch} now matches {up.label}; the next run starts from there."
        except GitError as exc:
            note = f"The checkout could not be brought in step: {exc}"
        return (
            f"another run changed {', '.join(paths)} on {up.label} since this run read it: it is "
            f"acting on the same users, so this run's intent was not published and nothing was "
            f"changed in AWS. {note}"
        )

    def _commit_locally(
        self,
        updates: Sequence[FileUpdate],
        message: str,
        env: Mapping[str, str],
        records: bool,
        *,
        intent: bool = False,
    ) -> str | None:
        """Commit on the local HEAD and move the branch there (no push)."""
        head = self._rev("HEAD")
        files, conflicts = self._resolve(updates, head, intent=intent)
        if conflicts:
            raise IntentConflict(
                f"{', '.join(conflicts)} changed since this run read the status: the intent was "
                "not recorded and nothing was changed in AWS; run keyrotor again",
                conflicts,
            )
        new = self._new_commit(head, files, message, env, records)
        if new is None:
            return None
        ok, why = self._can_follow(head, new)
        if not ok:
            raise GitError(
                f"the status commit {new} was made, but the branch cannot be moved to it without "
                f"overwriting local changes ({why}): commit or stash them, then run "
                f"`git merge --ff-only {new}`"
            )
        self._follow(head, new, "status")
        return new
