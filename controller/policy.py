"""The typed form of a RotationPolicy manifest.

The loader (`controller.manifests`) turns YAML into these objects after schema and semantic
validation, so everything downstream may assume a policy is well formed. Each object keeps the
place it came from, so later errors can still point at `path:line`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

API_VERSION = "keyrotor.dev/v1"
KIND = "RotationPolicy"

DEFAULT_ROTATE_BEFORE = timedelta(days=14)
DEFAULT_DEACTIVATE_AFTER = timedelta(days=1)
DEFAULT_DELETE_AFTER = timedelta(days=7)

Approval = Literal["auto", "pull-request"]
OnOverdue = Literal["report", "deactivate"]
WindowKind = Literal["allow", "deny"]


@dataclass(frozen=True)
class Source:
    """Where a policy (or one of its nodes) was written: 1-based line and column."""

    path: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Account:
    """The AWS account a policy acts in; all None means the ambient credentials.

    With `organizational_unit`, a policy manages every account of that unit: the service layer
    expands it into one `Account` per member, with `role_arn` built from `role_name` and the
    member's `account_id`.
    """

    role_arn: str | None = None
    external_id: str | None = None
    region: str | None = None
    organizational_unit: str | None = None
    role_name: str | None = None
    # Known without asking STS: a member of an organizational unit, or the id in `role_arn`.
    account_id: str | None = None

    @property
    def known_id(self) -> str | None:
        if self.account_id:
            return self.account_id
        if self.role_arn:
            parts = self.role_arn.split(":")
            return parts[4] if len(parts) > 4 and parts[4].isdigit() else None
        return None


@dataclass(frozen=True)
class UserSelection:
    """Which IAM users a policy manages: named users and selector matches, less exclusions."""

    names: tuple[str, ...] = ()
    path_prefix: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    has_selector: bool = False

    @property
    def may_select_many(self) -> bool:
        """A selector, or more than one name, can match several users: target names need {user}."""
        return self.has_selector or len(self.names) > 1


@dataclass(frozen=True)
class JsonFields:
    """Field names inside a JSON secret value (defaults match the AWS SDKs' credential JSON)."""

    access_key_id: str = "AccessKeyId"
    secret_access_key: str = "SecretAccessKey"


@dataclass(frozen=True)
class SecretsManagerTarget:
    secret_id: str
    region: str | None = None
    kms_key_id: str | None = None
    fields: JsonFields = field(default_factory=JsonFields)
    type: Literal["aws-secrets-manager"] = "aws-secrets-manager"

    @property
    def name_template(self) -> str:
        return self.secret_id


@dataclass(frozen=True)
class SsmParameterTarget:
    name: str
    region: str | None = None
    kms_key_id: str | None = None
    fields: JsonFields = field(default_factory=JsonFields)
    type: Literal["aws-ssm-parameter"] = "aws-ssm-parameter"

    @property
    def name_template(self) -> str:
        return self.name


@dataclass(frozen=True)
class GithubActionsSecretTarget:
    repository: str
    access_key_id_name: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_name: str = "AWS_SECRET_ACCESS_KEY"
    environment: str | None = None
    type: Literal["github-actions-secret"] = "github-actions-secret"

    @property
    def name_template(self) -> str:
        return f"{self.repository}/{self.environment or ''}/{self.secret_access_key_name}"


Target = SecretsManagerTarget | SsmParameterTarget | GithubActionsSecretTarget


@dataclass(frozen=True)
class NewKeyUsedCheck:
    type: Literal["new-key-used"] = "new-key-used"


@dataclass(frozen=True)
class OldKeyIdleCheck:
    idle_for: timedelta
    type: Literal["old-key-idle"] = "old-key-idle"


@dataclass(frozen=True)
class CommandCheck:
    run: tuple[str, ...]
    timeout: timedelta = timedelta(seconds=60)
    with_new_key: bool = False
    type: Literal["command"] = "command"


@dataclass(frozen=True)
class HttpCheck:
    url: str
    expect_status: int = 200
    timeout: timedelta = timedelta(seconds=10)
    body_contains: str | None = None
    retries: int = 2
    type: Literal["http"] = "http"


Check = NewKeyUsedCheck | OldKeyIdleCheck | CommandCheck | HttpCheck


@dataclass(frozen=True)
class Window:
    """A maintenance window: opens at each fire time of `schedule` (a 5-field cron expression,
    read in `time_zone`, an IANA name) and stays open for `duration` of elapsed time.

    `allow` windows are the only times disruptive steps may run (when there is at least one);
    `deny` windows are times they never run, and win over `allow`. See `controller.windows`.
    """

    kind: WindowKind
    schedule: str
    duration: timedelta
    time_zone: str = "UTC"


@dataclass(frozen=True)
class Policy:
    """One validated RotationPolicy document."""

    name: str
    source: Source
    users: UserSelection
    max_key_age: timedelta
    targets: tuple[Target, ...]
    rotate_before: timedelta = DEFAULT_ROTATE_BEFORE
    deactivate_after: timedelta = DEFAULT_DEACTIVATE_AFTER
    delete_after: timedelta = DEFAULT_DELETE_AFTER
    checks: tuple[Check, ...] = (NewKeyUsedCheck(),)
    account: Account = field(default_factory=Account)
    approval: Approval = "pull-request"
    on_overdue: OnOverdue = "report"
    suspend: bool = False
    # When disruptive steps may run; empty means at any time (see `controller.windows`).
    windows: tuple[Window, ...] = ()
    # Git blob id of the manifest file's content: status records which version was reconciled.
    generation: str = ""
    # Where each node of the manifest was written, keyed by its rendered JSON path
    # (`spec.targets[0].secretId`); filled by the loader. See `position`.
    positions: Mapping[str, Source] = field(default_factory=dict, compare=False, hash=False)

    @property
    def rotate_at_age(self) -> timedelta:
        """Age at which a key becomes due for rotation."""
        return self.max_key_age - self.rotate_before


def position(policy: Policy, path: str) -> Source:
    """Where the node at `path` (`spec.targets[0].secretId`) was written; for a node the manifest
    leaves out (a default), its closest written parent; the policy's own source at worst."""
    probe = path
    while probe:
        found = policy.positions.get(probe)
        if found is not None:
            return found
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return policy.source


def render_template(template: str, *, user: str, policy: str, account: str) -> str:
    """Fill the `{user}`, `{policy}` and `{account}` placeholders of a target name."""
    return (
        template.replace("{user}", user).replace("{policy}", policy).replace("{account}", account)
    )


PLACEHOLDERS = ("{user}", "{policy}", "{account}")
