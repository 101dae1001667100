"""GitHub Actions secrets: write-only (GitHub never returns a secret's value).

Writing them needs the GitHub client and sealed-box encryption, which are not in this release.
Until then a policy with such a target is reported as blocked before any key is created, so a
rotation never starts that could not finish.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.errors import TargetError
from controller.policy import GithubActionsSecretTarget
from controller.secret import AccessKeySecret

NOT_SUPPORTED = "github-actions-secret targets are not supported by this version of keyrotor yet"


class GithubActionsSecret:
    # Reported as readable so that `read`'s error surfaces as an unreadable target, which holds
    # back key creation; the real client makes this write-only.
    readable = True

    def __init__(self, spec: GithubActionsSecretTarget, render: Callable[[str], str]) -> None:
        env = f" environment {render(spec.environment)}" if spec.environment else ""
        self.description = (
            f"github-actions-secret {render(spec.repository)}{env} "
            f"{render(spec.secret_access_key_name)}"
        )

    def read(self) -> AccessKeySecret | None:
        raise TargetError(NOT_SUPPORTED)

    def write(self, secret: AccessKeySecret) -> None:
        raise TargetError(NOT_SUPPORTED)
