"""The github-actions-secret target: write-only, two sealed secrets per write."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest

from controller.aws import AwsSessions
from controller.errors import TargetError
from controller.github import GitHubClient
from controller.policy import GithubActionsSecretTarget, Policy, Source, UserSelection
from controller.secret import AccessKeySecret
from controller.targets import TargetServices, bind, reading
from controller.targets.github import GithubActionsSecret
from tests.support.github_standin import GitHubStandIn

SECRET = AccessKeySecret("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def render(text: str) -> str:
    return text.replace("{user}", "alice").replace("{policy}", "ci").replace("{account}", "1234")


def target(github: GitHubStandIn, spec: GithubActionsSecretTarget) -> GithubActionsSecret:
    return GithubActionsSecret(spec, render, lambda: GitHubClient(github.url, github.token))


def test_description_names_repository_environment_and_secret() -> None:
    spec = GithubActionsSecretTarget(
        repository="acme/{user}-web",
        environment="prod",
        secret_access_key_name="AWS_SECRET_ACCESS_KEY_{policy}",
    )
    bound = GithubActionsSecret(spec, render)
    assert bound.description == (
        "github-actions-secret acme/alice-web environment prod AWS_SECRET_ACCESS_KEY_ci"
    )
    plain = GithubActionsSecret(GithubActionsSecretTarget(repository="acme/web"), render)
    assert plain.description == "github-actions-secret acme/web AWS_SECRET_ACCESS_KEY"


def test_is_write_only() -> None:
    bound = GithubActionsSecret(GithubActionsSecretTarget(repository="acme/web"), render)
    assert bound.readable is False
    with pytest.raises(TargetError, match="write-only"):
        bound.read()
    assert reading(bound).readable is False


def test_write_stores_both_halves_of_the_key(github: GitHubStandIn) -> None:
    spec = GithubActionsSecretTarget(
        repository="acme/{user}",
        access_key_id_name="{user}_KEY_ID",
        secret_access_key_name="{user}_SECRET",
    )
    target(github, spec).write(SECRET)
    assert github.secret("acme/alice", "alice_KEY_ID") == SECRET.access_key_id
    assert github.secret("acme/alice", "ALICE_SECRET") == SECRET.secret_access_key
    # One public-key fetch serves both PUTs.
    assert [r.method for r in github.requests] == ["GET", "PUT", "PUT"]


def test_write_to_an_environment(github: GitHubStandIn) -> None:
    github.add_environment("acme/web", "prod")
    spec = GithubActionsSecretTarget(repository="acme/web", environment="prod")
    target(github, spec).write(SECRET)
    assert github.secret("acme/web", "AWS_ACCESS_KEY_ID", "prod") == SECRET.access_key_id
    assert github.secret("acme/web", "AWS_SECRET_ACCESS_KEY", "prod") == SECRET.secret_access_key
    assert github.secret("acme/web", "AWS_ACCESS_KEY_ID") is None


def test_rewrite_replaces_the_values(github: GitHubStandIn) -> None:
    bound = target(github, GithubActionsSecretTarget(repository="acme/web"))
    bound.write(SECRET)
    bound.write(AccessKeySecret("AKIANEWKEY0000000000", "new-secret"))
    assert github.secret("acme/web", "AWS_ACCESS_KEY_ID") == "AKIANEWKEY0000000000"
    assert github.secret("acme/web", "AWS_SECRET_ACCESS_KEY") == "new-secret"
    assert github.secret_writes("acme/web", "AWS_SECRET_ACCESS_KEY") == 2


def test_failure_is_a_target_error_without_the_secret(github: GitHubStandIn) -> None:
    spec = GithubActionsSecretTarget(repository="acme/web", environment="missing")
    with pytest.raises(TargetError) as caught:
        target(github, spec).write(SECRET)
    message = str(caught.value)
    assert message.startswith("cannot write github-actions-secret acme/web environment missing")
    assert "404" in message
    assert SECRET.secret_access_key not in message


def test_bind_makes_a_client_from_the_services_only_on_first_write(
    github: GitHubStandIn,
) -> None:
    spec = GithubActionsSecretTarget(repository="acme/{user}")
    policy = Policy(
        name="ci",
        source=Source("policies/ci.yaml"),
        users=UserSelection(names=("alice",)),
        max_key_age=timedelta(days=90),
        targets=(spec,),
    )
    sessions = AwsSessions(boto3.Session(region_name="us-east-1"))
    factory = lambda: GitHubClient(github.url, github.token)  # noqa: E731
    bound = bind(spec, policy, "alice", "123456789012", TargetServices(sessions, factory))
    assert bound.description == "github-actions-secret acme/alice AWS_SECRET_ACCESS_KEY"
    assert github.requests == []  # binding alone talks to nobody
    bound.write(SECRET)
    assert github.secret("acme/alice", "AWS_SECRET_ACCESS_KEY") == SECRET.secret_access_key


def test_without_a_token_preflight_says_so_and_write_refuses() -> None:
    bound = GithubActionsSecret(GithubActionsSecretTarget(repository="acme/web"), render)
    problem = bound.preflight()
    assert problem is not None and "no GitHub token is set" in problem
    with pytest.raises(TargetError, match="no GitHub token is set"):
        bound.write(SECRET)


def test_preflight_passes_when_the_token_may_use_the_secrets(github: GitHubStandIn) -> None:
    assert target(github, GithubActionsSecretTarget(repository="acme/web")).preflight() is None


def test_preflight_reports_a_token_github_refuses_before_any_key_exists(
    github: GitHubStandIn,
) -> None:
    spec = GithubActionsSecretTarget(repository="acme/web")
    bound = GithubActionsSecret(spec, render, lambda: GitHubClient(github.url, "ghs_wrong"))
    problem = bound.preflight()
    assert problem is not None and problem.startswith("cannot use github-actions-secret acme/web")
    assert "401" in problem and "ghs_wrong" not in problem
    assert reading(bound).error == problem


def test_the_plan_workflow_checks_only_that_a_token_is_set(github: GitHubStandIn) -> None:
    spec = GithubActionsSecretTarget(repository="acme/web")
    bound = GithubActionsSecret(
        spec, render, lambda: GitHubClient(github.url, "ghs_wrong"), preflight_mode="presence"
    )
    assert bound.preflight() is None
    assert github.requests == []
