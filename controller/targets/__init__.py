"""Where a new key is written: Secrets Manager, SSM Parameter Store, GitHub Actions secrets.

A bound target is one target of a policy, its name rendered for one user. Readable targets are
also where keyrotor learns which key an application will pick up next, which is what lets it
refuse to deactivate or delete a key that a target still holds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from controller.aws import AwsSessions
from controller.errors import TargetError
from controller.inventory import TargetReading
from controller.policy import (
    GithubActionsSecretTarget,
    Policy,
    SecretsManagerTarget,
    SsmParameterTarget,
    Target,
    render_template,
)
from controller.secret import AccessKeySecret
from controller.targets.metadata import TargetMetadata

if TYPE_CHECKING:
    from controller.github.client import GitHubClient


@dataclass(frozen=True)
class TargetServices:
    """What binding a target needs: AWS sessions, and a GitHub client for Actions secrets
    (None when no token may write them) with the preflight mode (see `GithubActionsSecret`)."""

    sessions: AwsSessions
    github: Callable[[], GitHubClient] | None = None
    preflight: Literal["full", "presence"] = "full"


class BoundTarget(Protocol):
    description: str
    readable: bool

    def read(self) -> AccessKeySecret | None:
        """The credentials the target holds now, None when it holds none; raises TargetError."""
        ...

    def write(self, secret: AccessKeySecret) -> None:
        """Make `secret` what the target serves from now on; raises TargetError."""
        ...

    def find(self, key_id: str) -> AccessKeySecret | None:
        """The secret of `key_id` if the target holds it now or kept it in its history.

        This is how a rollback restores the old key and a resumed rotation the new one.
        """
        ...


class ReadableTarget(BoundTarget, Protocol):
    """A target whose metadata says which key keyrotor wrote to it (see `targets.metadata`)."""

    def describe(self) -> TargetMetadata:
        """The recorded key id and version, and the current version; raises TargetError."""
        ...

    def record(self, key_id: str) -> None:
        """Record that the current version holds `key_id` (metadata only); raises TargetError."""
        ...


def bind(
    target: Target, policy: Policy, user: str, account_id: str, services: TargetServices
) -> BoundTarget:
    def render(text: str) -> str:
        return render_template(text, user=user, policy=policy.name, account=account_id)

    if isinstance(target, SecretsManagerTarget):
        from controller.targets.secretsmanager import SecretsManagerSecret

        return SecretsManagerSecret(
            target,
            render(target.secret_id),
            user,
            services.sessions.secretsmanager(policy.account, target.region),
        )
    if isinstance(target, SsmParameterTarget):
        from controller.targets.ssm import SsmParameter

        return SsmParameter(
            target,
            render(target.name),
            user,
            services.sessions.ssm(policy.account, target.region),
        )
    if isinstance(target, GithubActionsSecretTarget):
        from controller.targets.github import GithubActionsSecret

        return GithubActionsSecret(target, render, services.github, services.preflight)
    raise AssertionError(f"unknown target {target!r}")


def bind_all(
    policy: Policy, user: str, account_id: str, services: TargetServices
) -> list[BoundTarget]:
    """The user's targets, readable ones first: if a run dies while writing them, a target that
    can be read back holds the new key, so the next run can finish the job instead of losing it."""
    bound = [bind(t, policy, user, account_id, services) for t in policy.targets]
    return sorted(bound, key=lambda b: not b.readable)


def find_secret(targets: Iterable[BoundTarget], key_id: str) -> AccessKeySecret | None:
    """The secret of `key_id` from any readable target, current value or history.

    The caller announces it to the CI log masker (`RunContext.announce_secret`) at once.
    """
    for target in targets:
        if target.readable and (secret := target.find(key_id)) is not None:
            return secret
    return None


def reading(
    target: BoundTarget, *, user_keys: Collection[str] = (), values: bool = False
) -> TargetReading:
    """Which of the user's keys `target` holds.

    From its metadata alone unless `values` (apply, whose role may read the secret value) and
    the metadata is missing or out of date. A key id that is not one of `user_keys` (the keys
    IAM lists for the user) is never passed on: the target then holds `OTHER`.
    """
    from controller.inventory import Holding

    if not target.readable:
        preflight = getattr(target, "preflight", None)
        problem = preflight() if preflight else None
        return TargetReading(target.description, None, readable=False, error=problem)
    describe = getattr(target, "describe", None)
    try:
        meta = describe() if describe is not None else None
        if meta is not None and not meta.exists:
            return TargetReading(target.description, holding=Holding.NOTHING)
        if meta is not None and meta.recorded and not meta.moved:
            return _holding(target.description, meta.key_id, user_keys)
        moved = meta is not None and meta.moved
        if not values:
            state = Holding.MOVED if moved else Holding.UNRECORDED
            return TargetReading(target.description, holding=state, recorded=False, moved=moved)
        held = target.read()
    except TargetError as exc:
        return TargetReading(target.description, None, error=str(exc))
    found = _holding(target.description, held.access_key_id if held else None, user_keys)
    return TargetReading(
        found.target, found.key_id, holding=found.holding, recorded=False, moved=moved
    )


def _holding(description: str, key_id: str | None, user_keys: Collection[str]) -> TargetReading:
    from controller.inventory import Holding

    if key_id is None:
        return TargetReading(description, holding=Holding.NOTHING)
    if key_id in user_keys:
        return TargetReading(description, key_id)
    return TargetReading(description, holding=Holding.OTHER)
