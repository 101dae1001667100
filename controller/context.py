"""What a run needs from outside, read once at the edge: the clock, AWS, GitHub and CI.

The CLI builds one `RunContext` from its arguments and the environment; the demo and the tests
build theirs directly. Nothing below the service layer reads `os.environ`.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from controller.aws import AwsSessions
from controller.checks.workspace import DEFAULT_CHECK_USER
from controller.hardening import secrets_to_mask

if TYPE_CHECKING:
    from controller.accounts import Shard
    from controller.github.client import GitHubClient
    from controller.guardrails import Guardrails

Hook = Callable[[str], None]
"""Sees every named step of a run (`before:create_access_key`, `push:intent`, ...); tests raise
from it to crash a run at that point."""

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_BOT_LOGIN = "github-actions[bot]"


@dataclass(frozen=True)
class CiEnvironment:
    """The CI variables keyrotor uses; all empty outside GitHub Actions."""

    github_actions: bool = False
    run_id: str = ""
    repository: str | None = None
    api_url: str = DEFAULT_API_URL
    token: str | None = field(default=None, repr=False)
    # May write Actions secrets of target repositories; falls back to `token`.
    secrets_token: str | None = field(default=None, repr=False)
    bot_login: str = DEFAULT_BOT_LOGIN
    step_summary: Path | None = None
    output: Path | None = None
    # `presence`: the plan workflow, which must never hold a token that may write secrets, only
    # checks that one is configured before a GitHub secret target would be written.
    preflight: Literal["full", "presence"] = "full"

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> CiEnvironment:
        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        return cls(
            github_actions=env.get("GITHUB_ACTIONS") == "true",
            run_id=env.get("GITHUB_RUN_ID", ""),
            repository=env.get("GITHUB_REPOSITORY") or None,
            api_url=(env.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"),
            token=env.get("GITHUB_TOKEN") or None,
            secrets_token=env.get("KEYROTOR_SECRETS_TOKEN") or None,
            bot_login=env.get("KEYROTOR_BOT_LOGIN") or DEFAULT_BOT_LOGIN,
            step_summary=path("GITHUB_STEP_SUMMARY"),
            output=path("GITHUB_OUTPUT"),
            preflight="presence" if env.get("KEYROTOR_GITHUB_PREFLIGHT") == "presence" else "full",
        )

    @property
    def has_github(self) -> bool:
        """Pull requests and issues need a token and the repository they live in."""
        return bool(self.token and self.repository)


def _print(text: str) -> None:
    print(text)


@dataclass
class RunContext:
    """One run of keyrotor: `now` is the time every decision is made at."""

    now: datetime
    sessions: AwsSessions
    ci: CiEnvironment = field(default_factory=CiEnvironment)
    echo: Callable[[str], None] = _print
    hook: Hook | None = None
    push: bool = True
    run_id: str = ""
    # Accounts observed and applied at once (a bounded pool of threads).
    parallel: int = 4
    # List every account's users with their tags, not only where a choice of users needs them.
    list_users: bool = False
    # Only the accounts of this shard of a GitHub Actions matrix (None: every account).
    shard: Shard | None = None
    # The guardrails in force, loaded once at the edge (None: none, and the CLI warned so).
    guardrails: Guardrails | None = None
    # For `command` checks: keyrotor's environment as read at the edge (their environment is
    # built from its allowed variables, and its credentials are masked in their output; None:
    # this process's, for contexts tests build), and the user they run as when keyrotor is root.
    check_env: Mapping[str, str] | None = field(default=None, repr=False)
    check_user: str = DEFAULT_CHECK_USER

    def __post_init__(self) -> None:
        if not self.run_id:
            self.run_id = self.ci.run_id or f"local-{uuid.uuid4().hex[:12]}"

    def github(self, *, for_secrets: bool = False) -> GitHubClient:
        """A client for GitHub's API with the token this use needs."""
        from controller.github.client import GitHubClient

        token = (self.ci.secrets_token or self.ci.token) if for_secrets else self.ci.token
        return GitHubClient(self.ci.api_url, token, self.ci.repository)

    def held_secrets(self, *more: str | None) -> tuple[str, ...]:
        """Every credential this run holds, to mask wherever a check's output goes: those in
        `check_env`, the GitHub tokens, the AWS credentials of its sessions, and `more`."""
        return secrets_to_mask(
            self.check_env or {},
            self.ci.token,
            self.ci.secrets_token,
            *self.sessions.held_secrets(),
            *more,
        )

    def announce_secret(self, secret_value: str) -> None:
        """In GitHub Actions, tell the runner to mask `secret_value` in every later log line.

        This one line necessarily carries the secret; the runner consumes it and never shows it.
        """
        if self.ci.github_actions:
            sys.stdout.write(f"::add-mask::{secret_value}\n")
            sys.stdout.flush()
