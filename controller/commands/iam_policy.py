"""`keyrotor iam-policy`: the least-privilege IAM policy for the manifests (and guardrails).

Prints the identity policy for keyrotor's `apply` (default) or `plan` role and, with
`--trust github:OWNER/REPO`, the trust policy that lets that repository's workflow assume it.
The manifests are checked against the guardrails first: a violation is printed as
`path:line:column: message` and the command exits 1 without printing a policy.

The ambient account and region come from `--account-id` / `--region`, else from the AWS
environment (`sts:GetCallerIdentity`, the SDK's region); guardrails named `ssm:NAME` are read
from SSM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, cast

from controller.errors import KeyrotorError, ManifestError
from controller.guardrails import (
    Guardrails,
    check_policy,
    guardrails_spec,
    iam_policy,
    read_guardrails,
    trust_policy,
)
from controller.guardrails.iam import Role
from controller.guardrails.loader import SSM_PREFIX
from controller.manifests import load_policies

TRUST_PREFIX = "github:"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=".", help="Git checkout holding manifests/ (default: .)")
    parser.add_argument(
        "--policy", action="append", default=[], metavar="NAME", help="only this policy"
    )
    parser.add_argument("--role", choices=("apply", "plan"), default="apply")
    parser.add_argument(
        "--guardrails",
        metavar="FILE|ssm:NAME",
        help="the guardrails (default: $KEYROTOR_GUARDRAILS; none if unset)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--trust",
        metavar="github:OWNER/REPO",
        help="also print the trust policy for GitHub Actions of this repository",
    )
    parser.add_argument("--account-id", metavar="ID", help="the ambient AWS account id")
    parser.add_argument("--region", metavar="REGION", help="the ambient AWS region")
    parser.add_argument("--partition", default="aws", help="the AWS partition (default: aws)")


def _ambient(args: argparse.Namespace) -> tuple[str, str]:
    account, region = args.account_id, args.region
    if account is None or region is None:
        import boto3

        session = boto3.session.Session()
        region = region or session.region_name
        if account is None:
            account = session.client("sts", region_name=region).get_caller_identity()["Account"]
    if not region:
        raise KeyrotorError("no AWS region: pass --region or set AWS_REGION")
    return cast(str, account), cast(str, region)


def _guardrails(spec: str | None, region: str) -> Guardrails | None:
    if spec is None:
        return None
    if spec.startswith(SSM_PREFIX):
        import boto3

        from controller.guardrails.source import ssm_reader

        return read_guardrails(spec, read_parameter=ssm_reader(boto3.client("ssm", region)))
    return read_guardrails(spec)


def run(args: argparse.Namespace) -> int:
    root = Path(args.repo)
    policies = load_policies([root / "manifests"], root=root)
    if args.policy:
        unknown = sorted(set(args.policy) - {p.name for p in policies})
        if unknown:
            raise KeyrotorError(f"no policy named {', '.join(unknown)} in {root / 'manifests'}")
        policies = [p for p in policies if p.name in args.policy]
    trust_repository = None
    if args.trust is not None:
        if not args.trust.startswith(TRUST_PREFIX):
            raise KeyrotorError(f"--trust {args.trust!r}: write github:OWNER/REPO")
        trust_repository = args.trust[len(TRUST_PREFIX) :]
    account, region = _ambient(args)
    spec = guardrails_spec(args.guardrails, os.environ)
    guardrails = _guardrails(spec, region)
    if guardrails is not None:
        problems = [
            d
            for p in policies
            for d in check_policy(
                p,
                guardrails,
                ambient_account_id=account,
                ambient_region=region,
                partition=args.partition,
            )
        ]
        if problems:
            raise ManifestError(problems)
    role = cast(Role, args.role)
    document = iam_policy(
        policies,
        guardrails,
        role=role,
        account_id=account,
        region=region,
        partition=args.partition,
        guardrails_parameter=spec[len(SSM_PREFIX) :]
        if spec and spec.startswith(SSM_PREFIX)
        else None,
    )
    trust: dict[str, Any] | None = None
    if trust_repository is not None:
        try:
            trust = trust_policy(
                trust_repository, role=role, account_id=account, partition=args.partition
            )
        except ValueError as exc:
            raise KeyrotorError(f"--trust: {exc}") from exc
    if args.format == "json":
        print(json.dumps({"role": role, "policy": document, "trustPolicy": trust}, indent=2))
        return 0
    where = f"account {account}, region {region}"
    guarded = f"guardrails {guardrails.source.path}" if guardrails else "no guardrails"
    print(f"# IAM policy for keyrotor's {role} role ({where}; {guarded})")
    print(json.dumps(document, indent=2))
    if trust is not None:
        print()
        print(f"# Trust policy: GitHub Actions of {trust_repository} may assume the {role} role")
        print(json.dumps(trust, indent=2))
    if guardrails is None:
        print(
            "# warning: without guardrails, the manifests alone decide which users are reachable",
            file=sys.stderr,
        )
    return 0
