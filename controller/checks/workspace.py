"""Where a `command` check runs: a throw-away copy of the repository, as which user, and a seal.

The copy. A check never runs in the work tree keyrotor commits from: it runs in a temporary
directory holding the files in Git's index (`git ls-files`: what is tracked, plus what was
`git add`ed), with their content from the work tree, so a local, uncommitted change to a
check script is what runs. Untracked and ignored files (a `.env`, credentials another CI step
wrote into the workspace) are not copied, nor is `.git`: nothing the check writes there, a
hook or a config, is ever seen by keyrotor's own git. Symbolic links are copied as links, and
a path that leads through a link, or that is not a regular file or a link (a submodule, a
FIFO), is skipped, so the copy never holds a file from outside the repository. The copy and an
empty home directory sit in one temporary directory, owned by the user the check runs as, and
removed when it ends.

The user. When keyrotor runs as root, the check runs as `run_as` (default `nobody`; a name or a
numeric uid, never uid 0) with that user's primary group and no supplementary groups. Switching
from uid 0 drops every capability. Otherwise the check runs as keyrotor's own user.

The seal. A check running as keyrotor's own user can write keyrotor's repository by its path.
`RepositorySeal` records what keyrotor's git would act on (every git config value with its
origin, the refs, HEAD, the index entries, the hooks directory) before the check, and
`changes()` says what differs afterwards.

keyrotor's own git commands here run with `-c core.hooksPath=/dev/null -c core.fsmonitor=false`
and an environment without credentials.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from controller.errors import KeyrotorError

__all__ = [
    "DEFAULT_CHECK_USER",
    "GIT_SAFE",
    "CheckRepositoryError",
    "CheckUser",
    "CheckUserError",
    "RepositorySeal",
    "check_user",
    "copy_tracked_files",
    "git_environment",
    "scratch",
]

DEFAULT_CHECK_USER = "nobody"
#: Options for every git command keyrotor runs here: no hooks, no fsmonitor program.
GIT_SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
#: What keyrotor's own git commands here see of its environment: no credentials.
GIT_VARIABLES = (
    "PATH",
    "HOME",
    "XDG_CONFIG_HOME",
    "LANG",
    "LC_ALL",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_NOSYSTEM",
)
_GIT_TIMEOUT = 60.0


class CheckUserError(KeyrotorError):
    """The user a check should run as does not exist, or is root."""


class CheckRepositoryError(KeyrotorError):
    """The repository a check should run in cannot be listed or copied."""


@dataclass(frozen=True)
class CheckUser:
    """The uid and gid a check runs as; `name` for messages."""

    name: str
    uid: int
    gid: int


def check_user(run_as: str = DEFAULT_CHECK_USER, *, euid: int | None = None) -> CheckUser | None:
    """The user a check runs as when keyrotor is root (`euid` 0), or None: it stays as it is."""
    if (os.geteuid() if euid is None else euid) != 0:
        return None
    try:
        entry = pwd.getpwuid(int(run_as)) if run_as.isdigit() else pwd.getpwnam(run_as)
        user = CheckUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    except KeyError:
        if not run_as.isdigit():
            raise CheckUserError(
                f"checks run as user {run_as!r} when keyrotor runs as root, but there is no such "
                "user; create it (an unprivileged user of its own is best) or name another"
            ) from None
        user = CheckUser(run_as, int(run_as), int(run_as))
    if user.uid == 0:
        raise CheckUserError(
            f"checks never run as root, and user {run_as!r} is uid 0; name an unprivileged user"
        )
    return user


def git_environment(base: Mapping[str, str]) -> dict[str, str]:
    """`base` reduced to what git needs to find its config (`GIT_VARIABLES`)."""
    return {name: base[name] for name in GIT_VARIABLES if name in base}


def _git(repo: Path, env: Mapping[str, str], *args: str, ok: Container[int] = (0,)) -> bytes:
    try:
        done = subprocess.run(
            ["git", *GIT_SAFE, "-C", str(repo), *args],
            env=git_environment(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CheckRepositoryError(f"cannot run git in {repo}: {exc}") from exc
    if done.returncode not in ok:
        said = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise CheckRepositoryError(
            f"git {args[0]} failed in {repo}: {said[-1] if said else f'exit {done.returncode}'}"
        )
    return done.stdout


@contextlib.contextmanager
def scratch(user: CheckUser | None) -> Iterator[tuple[Path, Path]]:
    """A temporary (copy, home) pair of empty directories owned by `user`, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="keyrotor-check-"))
    try:
        copy, home = base / "repo", base / "home"
        copy.mkdir()
        home.mkdir()
        if user is not None:
            for path in (base, copy, home):
                os.chown(path, user.uid, user.gid)
        yield copy, home
    finally:
        _remove(base)


def _remove(path: Path) -> None:
    """Remove a tree the check may have made hard to remove (read-only directories)."""

    def unblock(function: object, failed: str, exc_info: object) -> None:
        parent = os.path.dirname(failed)
        with contextlib.suppress(OSError):
            os.chmod(parent, stat.S_IRWXU)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, stat.S_IRWXU)
                shutil.rmtree(failed, ignore_errors=True)
            else:
                os.unlink(failed)

    shutil.rmtree(path, onerror=unblock)


def _inside(root: Path, rel: str) -> bool:
    """Whether `rel` names an entry under `root` reached through directories only (no link)."""
    parts = Path(rel).parts
    if not parts or any(part in ("", ".", "..") for part in parts) or Path(rel).is_absolute():
        return False
    current = root
    for part in parts[:-1]:
        current = current / part
        try:
            if not stat.S_ISDIR(current.lstat().st_mode):
                return False
        except OSError:
            return False
    return True


def copy_tracked_files(
    repo: Path, dest: Path, env: Mapping[str, str], user: CheckUser | None
) -> int:
    """Copy the files in `repo`'s index, as they are in its work tree, into `dest`; how many.

    Regular files keep their permission bits, links are copied as links; anything else, and
    a missing file, is skipped. With `user`, everything copied is owned by that user.
    """
    listed = _git(repo, env, "ls-files", "-z", "--cached")
    root = Path(os.path.realpath(repo))
    copied = 0
    for raw in listed.split(b"\0"):
        if not raw:
            continue
        rel = os.fsdecode(raw)
        if not _inside(root, rel):
            continue
        source, target = root / rel, dest / rel
        try:
            mode = source.lstat().st_mode
        except OSError:
            continue  # deleted in the work tree
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            continue
        _make_parents(dest, Path(rel).parent, user)
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(source), target)
        else:
            shutil.copyfile(source, target, follow_symlinks=False)
            os.chmod(target, stat.S_IMODE(mode) & 0o777)
        if user is not None:
            os.chown(target, user.uid, user.gid, follow_symlinks=False)
        copied += 1
    return copied


def _make_parents(dest: Path, rel: Path, user: CheckUser | None) -> None:
    current = dest
    for part in rel.parts:
        current = current / part
        if not current.is_dir():
            current.mkdir()
            if user is not None:
                os.chown(current, user.uid, user.gid)


@dataclass(frozen=True)
class RepositorySeal:
    """What keyrotor's git would act on in `repo`, to compare after a check ran."""

    repo: Path
    parts: Mapping[str, bytes]

    @classmethod
    def take(cls, repo: Path, env: Mapping[str, str]) -> RepositorySeal:
        common = Path(os.fsdecode(_git(repo, env, "rev-parse", "--git-common-dir").strip()))
        parts = {
            "git config": _git(repo, env, "config", "--list", "--show-origin", "-z"),
            "refs": _git(repo, env, "for-each-ref", "--format=%(objectname) %(refname)"),
            "HEAD": _git(repo, env, "symbolic-ref", "-q", "HEAD", ok=(0, 1))
            + _git(repo, env, "rev-parse", "-q", "--verify", "HEAD", ok=(0, 1)),
            "index": _git(repo, env, "ls-files", "-z", "--stage"),
            "hooks": _digest_tree((common if common.is_absolute() else repo / common) / "hooks"),
        }
        return cls(repo, parts)

    def changes(self, env: Mapping[str, str]) -> Sequence[str]:
        """What differs now from when the seal was taken (names of `parts`), in order."""
        now = RepositorySeal.take(self.repo, env)
        return [name for name, value in self.parts.items() if now.parts.get(name) != value]


def _digest_tree(path: Path) -> bytes:
    """Names, modes and contents of every file under `path` (nothing if it does not exist)."""
    lines = []
    if path.is_dir():
        for entry in sorted(path.rglob("*")):
            info = entry.lstat()
            digest = ""
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(entry.read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                digest = os.readlink(entry)
            lines.append(f"{entry.relative_to(path)} {info.st_mode:o} {digest}")
    return "\n".join(lines).encode()
