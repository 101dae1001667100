"""The demo's world: its process environment, a Git origin and clone, and the IAM users.

Nothing here touches the developer's AWS or Git configuration: boto3 is pointed at the sandbox and
git reads no global or system config, both for the demo's duration only.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import boto3

from controller.demo.scenario import START, USERS, DemoUser, manifests
from controller.errors import KeyrotorError
from controller.sandbox import Sandbox

OPERATOR = ("Demo Operator", "operator@example.com")
#: Where `git` must not look while the demo runs (the developer's hooks, signing, templates).
_GIT_ENV: dict[str, str | None] = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_DIR": None,
    "GIT_WORK_TREE": None,
    "GIT_INDEX_FILE": None,
    "GIT_AUTHOR_DATE": None,
    "GIT_COMMITTER_DATE": None,
}


class Environ:
    """Changes to os.environ that `restore` undoes exactly (set, changed or unset alike)."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, changes: Mapping[str, str | None]) -> None:
        for name, value in changes.items():
            if name not in self._saved:
                self._saved[name] = os.environ.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


@contextmanager
def demo_environment(aws: Sandbox) -> Iterator[Environ]:
    """boto3 signs as the sandbox admin and talks to the sandbox; git is isolated. Undone after."""
    env = Environ()
    saved_session = boto3.DEFAULT_SESSION
    try:
        env.set({**aws.env(os.environ), **_GIT_ENV})
        boto3.DEFAULT_SESSION = None  # it caches the credentials it first resolved
        yield env
    finally:
        env.restore()
        boto3.DEFAULT_SESSION = saved_session


def git_date(at: datetime) -> str:
    """A commit date git takes as-is: seconds since the epoch and a zone."""
    return f"@{int(at.timestamp())} +0000"


def git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run git; its error (no secret can be in it) becomes a KeyrotorError."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except FileNotFoundError:
        raise KeyrotorError("keyrotor demo needs git: install it and try again") from None
    if result.returncode != 0:
        raise KeyrotorError(f"git {args[0]} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Repos:
    origin: Path
    work: Path


def check_keep(base: Path) -> None:
    """`--keep DIR` must be a directory (or not exist yet) without the demo's repositories."""
    if base.exists() and not base.is_dir():
        raise KeyrotorError(f"--keep {base}: not a directory")
    for name in ("origin.git", "work"):
        if (base / name).exists():
            raise KeyrotorError(
                f"--keep {base}: {name} already exists there; give an empty or new directory"
            )


def make_repos(base: Path) -> Repos:
    """A bare origin and a clone whose first commit holds the demo's policies."""
    check_keep(base)
    origin, work = base / "origin.git", base / "work"
    base.mkdir(parents=True, exist_ok=True)
    git(base, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    git(base, "init", "--quiet", "--initial-branch=main", str(work))
    (work / "manifests").mkdir()
    for manifest in manifests():
        (work / "manifests" / manifest.name).write_text(manifest.read_text(encoding="utf-8"))
    name, email = OPERATOR
    identity = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        "GIT_AUTHOR_DATE": git_date(START),
        "GIT_COMMITTER_DATE": git_date(START),
    }
    git(work, "add", "manifests")
    git(work, "commit", "--quiet", "-m", "Add rotation policies", env=identity)
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "--quiet", "--set-upstream", "origin", "main")
    return Repos(origin, work)


@dataclass
class Seeded:
    """What the operator set up before keyrotor ran: key ids, and secrets for the leak test."""

    keys: dict[str, list[str]] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set, repr=False)


def seed_users(aws: Sandbox, users: tuple[DemoUser, ...] = USERS) -> Seeded:
    """IAM users whose keys have the ages the scenario wants, and the targets holding them.

    The sandbox clock is set back to create each key, so IAM's CreateDate gives it its age.
    """
    seeded = Seeded()
    iam, secrets, ssm = aws.client("iam"), aws.client("secretsmanager"), aws.client("ssm")
    try:
        for user in users:
            aws.set_clock(START - user.key_age)
            pair = aws.create_user_with_key(user.name)
            seeded.keys[user.name] = [pair.access_key_id]
            seeded.secrets.add(pair.secret_access_key)
            value = json.dumps(
                {"AccessKeyId": pair.access_key_id, "SecretAccessKey": pair.secret_access_key}
            )
            secrets.create_secret(Name=user.secret_id, SecretString=value)
            if user.parameter:
                ssm.put_parameter(Name=user.parameter, Value=value, Type="SecureString")
            if user.foreign_key_age is not None:
                aws.set_clock(START - user.foreign_key_age)
                foreign = iam.create_access_key(UserName=user.name)["AccessKey"]
                seeded.keys[user.name].append(foreign["AccessKeyId"])
                seeded.secrets.add(foreign["SecretAccessKey"])
    finally:
        for client in (iam, secrets, ssm):
            client.close()
    aws.set_clock(START)
    return seeded
