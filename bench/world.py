"""The benchmark's world: the sandbox AWS with two accounts of seeded users and a policy repo.

Account A (moto's default account, the ambient credentials) holds N users under `/bench/`;
account B (reached by AssumeRole, as a policy's `account.roleArn` does) holds N/10. Every user
has one active key, recorded in its `keyrotor.dev/keys` tag as keyrotor records the keys it
adopted, and a Secrets Manager secret (the policy's one target) holding that key.

Key ages are chosen so that at `start` nothing is due, and a week later exactly the `rotating`
cohort (1% of users) is: keys are 10 days old at `start`, the cohort's 70 days, and a policy
with `maxKeyAge: 90d` and `rotateBefore: 14d` rotates at 76 days.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from controller.sandbox import DEFAULT_ACCOUNT_ID, Sandbox, SeededUser, UserSeed

START = datetime(2026, 6, 1, tzinfo=UTC)
ROTATION_AT = START + timedelta(days=7)
FRESH_AGE = timedelta(days=10)
COHORT_AGE = timedelta(days=70)
ROTATE_AT_AGE = timedelta(days=90 - 14)

PATH = "/bench/"
# Each policy writes its own secrets ({policy}): two policies may never share a target, and the
# ambient account of the first could be the second's.
SECRET_TEMPLATE = "bench/{policy}/{user}/aws"
ACCOUNT_B = "222222222222"
ROLE_B = f"arn:aws:iam::{ACCOUNT_B}:role/keyrotor-bench"


@dataclass(frozen=True)
class Account:
    label: str
    account_id: str
    policy: str
    role_arn: str | None
    users: tuple[SeededUser, ...]
    rotating: frozenset[str]


@dataclass
class BenchWorld:
    sandbox: Sandbox
    n: int
    root: Path
    accounts: tuple[Account, ...] = ()
    repo: Path = field(default_factory=Path)

    @property
    def user_count(self) -> int:
        return sum(len(a.users) for a in self.accounts)

    @property
    def rotating_count(self) -> int:
        return sum(len(a.rotating) for a in self.accounts)


_base: boto3.Session | None = None


def clients(account: Account) -> tuple[Any, Any]:
    """(sts, iam) clients of `account`, assuming its role as keyrotor's sessions would.

    Built from one boto3 session per process, which caches the service models, as keyrotor's
    `AwsSessions` does for one run.
    """
    global _base
    base = _base = _base or boto3.Session()
    if account.role_arn is None:
        return base.client("sts"), base.client("iam")
    creds = base.client("sts").assume_role(
        RoleArn=account.role_arn, RoleSessionName="keyrotor-bench"
    )["Credentials"]
    key, secret, token = creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    return (
        base.client(
            "sts", aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token
        ),
        base.client(
            "iam", aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token
        ),
    )


def build(sandbox: Sandbox, n: int, root: Path) -> BenchWorld:
    """Reset the sandbox, seed both accounts, and create the policy repository."""
    sandbox.reset(START)
    world = BenchWorld(sandbox, n, root)
    world.accounts = (
        _seed(sandbox, "A", DEFAULT_ACCOUNT_ID, "bench-a", None, n),
        _seed(sandbox, "B", ACCOUNT_B, "bench-b", ROLE_B, max(10, n // 10)),
    )
    world.repo = _policy_repo(root, world.accounts)
    return world


def _seed(
    sandbox: Sandbox, label: str, account_id: str, policy: str, role: str | None, count: int
) -> Account:
    names = [f"{label.lower()}-user-{i:05d}" for i in range(count)]
    rotating = frozenset(names[::100][: max(1, count // 100)])

    def seeds() -> Iterator[UserSeed]:
        for name in names:
            age = COHORT_AGE if name in rotating else FRESH_AGE
            yield UserSeed(
                name,
                path=PATH,
                key_created=START - age,
                own_key=True,
                secret_id=SECRET_TEMPLATE.format(policy=policy, user=name),
            )

    users = tuple(sandbox.seed_users(seeds(), account_id=account_id))
    return Account(label, account_id, policy, role, users, rotating)


def manifest(account: Account) -> str:
    role = f"  account:\n    roleArn: {account.role_arn}\n" if account.role_arn else ""
    return (
        "apiVersion: keyrotor.dev/v1\n"
        "kind: RotationPolicy\n"
        "metadata:\n"
        f"  name: {account.policy}\n"
        "spec:\n"
        f"{role}"
        "  users:\n"
        "    selector:\n"
        f"      pathPrefix: {PATH}\n"
        "  maxKeyAge: 90d\n"
        "  rotateBefore: 14d\n"
        "  targets:\n"
        "    - type: aws-secrets-manager\n"
        f'      secretId: "{SECRET_TEMPLATE}"\n'
        "  approval: auto\n"
    )


def _policy_repo(root: Path, accounts: tuple[Account, ...]) -> Path:
    bare, clone = root / "origin.git", root / "policies"
    git("init", "-q", "--bare", "--initial-branch=main", str(bare))
    git("init", "-q", "--initial-branch=main", str(clone))
    (clone / "manifests").mkdir()
    for account in accounts:
        (clone / "manifests" / f"{account.policy}.yaml").write_text(manifest(account))
    git("-C", str(clone), "add", "manifests")
    git("-C", str(clone), "commit", "-q", "-m", "bench policies")
    git("-C", str(clone), "remote", "add", "origin", str(bare))
    git("-C", str(clone), "push", "-q", "--set-upstream", "origin", "main")
    return clone


def git(*args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "keyrotor bench",
        "GIT_AUTHOR_EMAIL": "bench@keyrotor.invalid",
        "GIT_COMMITTER_NAME": "keyrotor bench",
        "GIT_COMMITTER_EMAIL": "bench@keyrotor.invalid",
    }
    subprocess.run(["git", *args], check=True, env=env)
