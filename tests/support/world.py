"""A small world for end-to-end rotation tests: the sandbox AWS, a policy repo, an application.

Everything is real: keyrotor runs through its CLI entry point (or its executor, where a test
injects a crash), against the moto server over HTTP and a Git clone that pushes to a bare remote.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import git
from botocore.exceptions import ClientError

from controller.aws import AwsSessions
from controller.cli import main
from controller.context import Hook, RunContext
from controller.executor import ApplyResult
from controller.plan import Plan
from controller.sandbox import Sandbox
from controller.service import apply_once

USER = "deploy-bot"
POLICY = "ci-deployers"
SECRET_ID = f"ci/{USER}/aws"
PARAMETER = f"/ci/{USER}/aws"
READ_ONLY = {
    "GetUser", "ListUsers", "ListUserTags", "ListAccessKeys", "GetAccessKeyLastUsed",
    "GetCallerIdentity", "GetSecretValue", "GetParameter", "DescribeSecret",
    "DescribeParameters", "ListTagsForResource", "ListSecretVersionIds", "GetParameterHistory",
    "GetAccountAuthorizationDetails", "GenerateCredentialReport", "GetCredentialReport",
    "AssumeRole",
}  # fmt: skip

MANIFEST = f"""\
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: {POLICY}
spec:
  users:
    names: [{USER}]
  maxKeyAge: 90d
  rotateBefore: 14d
  deactivateAfter: 1d
  deleteAfter: 7d
  targets:
    - type: aws-secrets-manager
      secretId: "ci/{{user}}/aws"
    - type: aws-ssm-parameter
      name: "/ci/{{user}}/aws"
  approval: auto
"""


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclass
class World:
    aws: Sandbox
    bare: Path
    clone: Path
    tmp: Path
    secrets: list[str] = field(default_factory=list)
    clones: int = 0

    # -- setup --
    def seed_policy(self, manifest: str = MANIFEST, name: str = "ci.yaml") -> None:
        with git.Repo(self.clone) as repo:
            repo.git.pull("--ff-only", "origin", "main")  # runs may have pushed status since
            (self.clone / "manifests").mkdir(exist_ok=True)
            (self.clone / "manifests" / name).write_text(textwrap.dedent(manifest))
            repo.index.add([f"manifests/{name}"])
            repo.index.commit(f"add policy {name}")
            repo.git.push("origin", "main")

    def seed_user(self, name: str = USER, at: datetime | None = None) -> str:
        if at is not None:
            self.aws.set_clock(at)
        pair = self.aws.create_user_with_key(name)
        self.secrets.append(pair.secret_access_key)
        return pair.access_key_id

    def fresh_clone(self) -> Path:
        """A new checkout of origin, as each scheduled CI run has."""
        self.clones += 1
        path = self.tmp / f"run-{self.clones}"
        with git.Repo.clone_from(str(self.bare), str(path), branch="main"):
            pass
        return path

    # -- running keyrotor --
    def cli(self, *args: str, now: datetime, repo: Path | None = None) -> int:
        self.aws.set_clock(now)
        return main([*args, "--repo", str(repo or self.clone), "--now", iso(now)])

    def context(self, now: datetime, *, hook: Hook | None = None) -> RunContext:
        """A run at `now`, outside CI, printing nothing."""
        return RunContext(now, AwsSessions(), hook=hook, echo=lambda _: None)

    def apply(
        self, repo: Path, now: datetime, *, hook: Hook | None = None
    ) -> tuple[Plan, ApplyResult]:
        """`keyrotor apply` in `repo` through the service layer, so a test can crash it."""
        self.aws.set_clock(now)
        return apply_once(self.context(now, hook=hook), repo)

    def pull(self) -> None:
        with git.Repo(self.clone) as repo:
            repo.git.pull("--ff-only", "origin", "main")

    # -- observing --
    def iam_keys(self, user: str = USER) -> dict[str, str]:
        metas = self.aws.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {m["AccessKeyId"]: m["Status"] for m in metas}

    def secret_value(self) -> dict[str, str] | None:
        try:
            raw = self.aws.client("secretsmanager").get_secret_value(
                SecretId=SECRET_ID, VersionStage="AWSCURRENT"
            )["SecretString"]
        except ClientError:
            return None
        value: dict[str, str] = json.loads(raw)
        self.remember(value["SecretAccessKey"])
        return value

    def parameter_value(self) -> dict[str, str] | None:
        try:
            raw = self.aws.client("ssm").get_parameter(Name=PARAMETER, WithDecryption=True)[
                "Parameter"
            ]["Value"]
        except ClientError:
            return None
        value: dict[str, str] = json.loads(raw)
        self.remember(value["SecretAccessKey"])
        return value

    def remember(self, secret: str) -> None:
        if secret not in self.secrets:
            self.secrets.append(secret)

    def held_key_ids(self) -> set[str]:
        return {v["AccessKeyId"] for v in (self.secret_value(), self.parameter_value()) if v}

    def application_call(self, creds: dict[str, str] | None = None) -> str:
        """The application: read credentials from Secrets Manager, make a signed call."""
        creds = creds or self.secret_value()
        assert creds is not None, "no credentials stored yet"
        sts = self.aws.client("sts", creds["AccessKeyId"], creds["SecretAccessKey"])
        return str(sts.get_caller_identity()["Arn"])

    def status_doc(self, repo: Path | None = None, user: str = USER) -> str:
        """The status file of `user` (one per user: status/<policy>/<account>/<user>.yaml)."""
        (path,) = ((repo or self.clone) / "status" / POLICY).glob(f"*/{user}.yaml")
        return path.read_text()

    def mutating_calls(self) -> list[str]:
        return [
            f"{c.service} {c.action}"
            for c in self.aws.requests()
            if c.action not in READ_ONLY and c.key != "AKIDSANDBOXADMIN-test"
        ]

    def git_objects(self) -> Iterator[bytes]:
        for repo in (
            self.bare,
            self.clone,
            *(self.tmp / f"run-{i}" for i in range(1, self.clones + 1)),
        ):
            out = subprocess.run(
                ["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
                check=True,
                capture_output=True,
            ).stdout
            yield out


def advance(start: datetime, **delta: float) -> datetime:
    return start + timedelta(**delta)
