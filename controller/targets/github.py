"""GitHub Actions secrets: a write-only target.

GitHub never returns a secret's value (only its name and dates), so this target cannot tell
which key it holds: it is bound with `readable = False`, `read()` raises, and what it holds is
known only from keyrotor's own record of what it wrote.

`write` seals both halves of the key to the repository's (or the environment's) public key and
PUTs them as two secrets, the access key id first. The two PUTs are not atomic: if the second
fails, the target holds a mismatched pair and `write` raises, and a later `write` of the same
key repairs it (a PUT replaces a value).

The GitHub client is made on first use by the factory the service layer gives (None when no
token is configured). Its token needs permission to write Actions secrets in the target
repository (a fine-grained token or GitHub App with "Secrets: write", given to keyrotor as
KEYROTOR_SECRETS_TOKEN); the GITHUB_TOKEN that Actions provides to a workflow cannot write
secrets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from controller.errors import TargetError
from controller.github.client import GitHubClient, GitHubError
from controller.policy import GithubActionsSecretTarget
from controller.secret import AccessKeySecret

WRITE_ONLY = "GitHub Actions secrets are write-only: GitHub never returns a secret's value"


class GithubActionsSecret:
    readable = False

    def __init__(
        self,
        spec: GithubActionsSecretTarget,
        render: Callable[[str], str],
        client_factory: Callable[[], GitHubClient] | None = None,
        preflight_mode: Literal["full", "presence"] = "full",
    ) -> None:
        self.spec = spec
        self.repository = render(spec.repository)
        self.environment = render(spec.environment) if spec.environment else None
        self.access_key_id_name = render(spec.access_key_id_name)
        self.secret_access_key_name = render(spec.secret_access_key_name)
        self._client_factory = client_factory
        self._preflight_mode = preflight_mode
        env = f" environment {self.environment}" if self.environment else ""
        self.description = (
            f"github-actions-secret {self.repository}{env} {self.secret_access_key_name}"
        )

    def read(self) -> AccessKeySecret | None:
        """Always raises: there is nothing to read back (see the module's doc)."""
        raise TargetError(f"cannot read {self.description}: {WRITE_ONLY}")

    def find(self, key_id: str) -> AccessKeySecret | None:
        """Nothing can be found in a write-only target: rollback restores it from another one."""
        return None

    def preflight(self) -> str | None:
        """Why a write would certainly fail, checked before any key is created.

        Reading the public key needs the same "Secrets" permission as writing a secret, which
        the GITHUB_TOKEN that Actions gives a workflow lacks: better to learn that now than after
        CreateAccessKey. (A token that may read but not write still passes; `write` then fails
        and the next run finishes storing the key from a readable target.)
        """
        if self._client_factory is None:
            return (
                "no GitHub token is set (KEYROTOR_SECRETS_TOKEN or GITHUB_TOKEN): keyrotor needs "
                f"a token that may write Actions secrets of {self.repository}"
            )
        if self._preflight_mode == "presence":
            return None  # the plan workflow: it must never hold the token that may write secrets
        try:
            with self._client_factory() as client:
                client.public_key(self.environment, repo=self.repository)
        except GitHubError as exc:
            return f"cannot use {self.description}: {exc}"
        return None

    def write(self, secret: AccessKeySecret) -> None:
        if self._client_factory is None:
            raise TargetError(f"cannot write {self.description}: no GitHub token is set")
        try:
            with self._client_factory() as client:
                key = client.public_key(self.environment, repo=self.repository)
                for name, value in (
                    (self.access_key_id_name, secret.access_key_id),
                    (self.secret_access_key_name, secret.secret_access_key),
                ):
                    client.put_secret(name, value, self.environment, repo=self.repository, key=key)
        except GitHubError as exc:
            raise TargetError(f"cannot write {self.description}: {exc}") from None
