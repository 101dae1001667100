"""The one way keyrotor runs git: hardened options, a minimal environment, credentials redacted.

Every git command keyrotor runs goes through `run_git` (or `run_git_bytes`), which

* puts `-c core.hooksPath=/dev/null -c core.fsmonitor=false` first, so no hook in `.git/hooks`
  (pre-commit, post-commit, reference-transaction, pre-push, ...) and no fsmonitor program a
  checkout's config names is ever executed by keyrotor;
* runs git with a minimal environment built from an allowlist (`PATH`, `HOME`, the git config
  location variables, identity variables, `TMPDIR`, ...), with `LC_ALL=C` and
  `GIT_TERMINAL_PROMPT=0`. AWS credentials, `GITHUB_TOKEN`, `GH_TOKEN`, `ACTIONS_*` tokens and
  anything else not on the list never reach git or the programs git starts. Inherited
  `GIT_DIR`, `GIT_INDEX_FILE`, `GIT_CONFIG_PARAMETERS`/`GIT_CONFIG_COUNT`, `GIT_TRACE*` and the
  like are dropped too, so the caller's environment cannot redirect or trace keyrotor's git;
* adds what a network command needs only to network commands (`network=True`: fetch, push,
  ls-remote): `SSH_AUTH_SOCK`, `GIT_SSH_COMMAND`, `GIT_ASKPASS`, proxy and CA variables, and the
  push credentials, if any, as an HTTP header scoped to the remote's host (`remote_auth`).

Push credentials work as `actions/checkout` persists them: `http.<scheme>://<host>/.extraheader`
set to `AUTHORIZATION: basic base64(x-access-token:<token>)`. keyrotor passes it through
`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` (never argv, which other processes can
read in /proc), to the one fetch or push command, preceded by an empty value of the same key,
which makes git forget any header a checkout persisted for that host (two `Authorization`
headers make GitHub answer 400). A credential helper that reads `GH_TOKEN` from the environment
does not see it: give the token to `StatusRepo.open(push_token=...)` instead.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from controller.errors import GitError

HARDENING: Final = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
"""The options every git command keyrotor runs starts with."""

_KEPT: Final = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "TMPDIR",
        "XDG_CONFIG_HOME",
        "EMAIL",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_CEILING_DIRECTORIES",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
    }
)
"""Variables every git command keeps (all of them configuration or identity, none a secret)."""

_KEPT_FOR_NETWORK: Final = frozenset(
    {
        "SSH_AUTH_SOCK",
        "SSH_ASKPASS",
        "GIT_ASKPASS",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_SSH_VARIANT",
        "GIT_PROXY_COMMAND",
        "GIT_SSL_CAINFO",
        "GIT_SSL_CAPATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
    }
)
"""Variables only fetch, push and ls-remote keep: how to reach and authenticate to the remote."""

_FIXED: Final = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Strip `user:password@` from every URL in `text`, and replace each of `secrets` by `***`."""
    text = _URL_CREDENTIALS.sub(r"\1", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True, repr=False)
class RemoteAuth:
    """A token to authenticate fetches and pushes over HTTPS (GitHub's `x-access-token` form)."""

    token: str

    def __repr__(self) -> str:
        return "RemoteAuth(token=***)"

    @property
    def header(self) -> str:
        userpass = base64.b64encode(f"x-access-token:{self.token}".encode()).decode("ascii")
        return f"AUTHORIZATION: basic {userpass}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every form of the token that must never appear in a message."""
        return (self.token, self.header.removeprefix("AUTHORIZATION: basic "))

    def env_for(self, url: str) -> dict[str, str]:
        """The `GIT_CONFIG_*` variables that send the header to `url`'s host, and only there."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return {}
        key = f"http.{parts.scheme.lower()}://{parts.netloc.rpartition('@')[2]}/.extraheader"
        return {
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": key,
            "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": key,
            "GIT_CONFIG_VALUE_1": self.header,
        }


def git_environment(
    *, network: bool = False, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a git command runs with, built from the allowlists above."""
    kept = _KEPT | _KEPT_FOR_NETWORK if network else _KEPT
    env = {name: value for name, value in os.environ.items() if name in kept}
    env.update(_FIXED)
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class Checkout:
    """A Git work tree keyrotor works in (`root` is its top-level directory)."""

    root: Path


def run_git_bytes(
    where: Checkout | Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    network: bool = False,
) -> tuple[int, bytes, bytes]:
    """Run hardened `git ARGS` in `where`: (exit status, stdout, stderr), never raising.

    `env` adds variables to the minimal environment (an index file, an identity, credentials);
    `network` marks a fetch, push or ls-remote, which may also see the SSH and proxy variables.
    """
    cwd = where.root if isinstance(where, Checkout) else where
    try:
        done = subprocess.run(
            ["git", *HARDENING, *args],
            cwd=cwd,
            env=git_environment(network=network, extra=env),
            input=input,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitError(
            f"cannot run git in {cwd}: {exc.strerror}; install git and put it on PATH"
        ) from None
    return done.returncode, done.stdout, done.stderr


def run_git(
    where: Checkout | Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    network: bool = False,
) -> tuple[int, str, str]:
    """`run_git_bytes` with text in and out (UTF-8; undecodable bytes replaced)."""
    status, out, err = run_git_bytes(
        where,
        *args,
        env=env,
        input=None if input is None else input.encode("utf-8"),
        network=network,
    )
    return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def summary(stderr: str, secrets: Iterable[str] = ()) -> str:
    """git's own error lines, without the hints, credentials removed."""
    lines = [line.strip() for line in stderr.splitlines()]
    kept = [line for line in lines if line and not line.startswith("hint:")]
    return redact("; ".join(kept), secrets) or "(git printed nothing)"


def open_checkout(path: Path) -> Checkout:
    """The Git work tree containing `path`, or a `GitError` saying what to do."""
    advice = (
        f"{path} is not a Git checkout: keyrotor keeps status and history in Git; "
        "run it inside a clone of your policy repository"
    )
    if not path.is_dir():
        raise GitError(advice)
    status, out, err = run_git(path, "rev-parse", "--is-bare-repository", "--show-toplevel")
    lines = out.splitlines()
    if status != 0:
        raise GitError(f"{advice} ({summary(err)})")
    if len(lines) != 2 or lines[0] != "false":
        raise GitError(advice)
    return Checkout(Path(lines[1]))
