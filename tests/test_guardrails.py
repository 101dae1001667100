"""Guardrails: the document and its schema, violations of manifests, exclusions of users."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller.errors import Diagnostic
from controller.guardrails import (
    ExclusionReason,
    Guardrails,
    GuardrailsError,
    GuardrailsSourceError,
    Rule,
    check_policy,
    exclusion,
    exclusion_message,
    guardrails_spec,
    load_guardrails,
    read_guardrails,
    violations,
)
from controller.guardrails.loader import load_schema
from controller.manifests import load_policies
from controller.policy import Policy, Source

ROOT = Path(__file__).resolve().parents[1]

ISSUE_EXAMPLE = """\
apiVersion: keyrotor.dev/v1
kind: Guardrails
accounts: ["123456789012"]            # account ids policies may manage
users:
  pathPrefixes: [/ci/, /service/]     # only users under these paths
  denyNames: [break-glass]            # never, even if a manifest names them
  denyTags: {keyrotor.dev/protect: "true"}
targets:
  secretsManager: ["ci/*"]            # name patterns (or ARNs) new keys may be written to
  ssmParameters: ["/ci/*"]
  githubRepositories: ["acme/*"]
checks:
  command: false                      # command checks allowed at all
  required: [new-key-used]            # checks a manifest may not drop
minimums: {maxKeyAge: 30d, deactivateAfter: 1h, deleteAfter: 1d}
maxChangesPerRun: 20                  # creates + deactivations + deletions per run
"""

MINIMAL = """\
apiVersion: keyrotor.dev/v1
kind: Guardrails
"""

POLICY = """\
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: ci
spec:
  users:
    selector: {pathPrefix: /ci/}
  maxKeyAge: 90d
  targets:
    - {type: aws-secrets-manager, secretId: "ci/{user}/aws"}
    - {type: aws-ssm-parameter, name: "/ci/{user}/aws"}
    - {type: github-actions-secret, repository: acme/web, environment: "{user}"}
"""


def _guardrails(text: str = ISSUE_EXAMPLE) -> Guardrails:
    return load_guardrails(text, path="guardrails.yaml")


def _policy(tmp_path: Path, text: str = POLICY, **replace: str) -> Policy:
    for old, new in replace.items():
        assert old.replace("_", " ") in text or old in text, old
        text = text.replace(old, new)
    path = tmp_path / "manifests" / "p.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    (policy,) = load_policies([path])
    return policy


def _edit(tmp_path: Path, old: str, new: str) -> Policy:
    assert old in POLICY, old
    return _policy(tmp_path, POLICY.replace(old, new))


def _problems(text: str) -> list[str]:
    with pytest.raises(GuardrailsError) as caught:
        _guardrails(text)
    return [str(d) for d in caught.value.diagnostics]


# --- the document ------------------------------------------------------------------------------


def test_the_issue_example_loads_into_typed_values() -> None:
    g = _guardrails()
    assert g.accounts == ("123456789012",)
    assert g.users.path_prefixes == ("/ci/", "/service/")
    assert g.users.deny_names == ("break-glass",)
    assert dict(g.users.deny_tags) == {"keyrotor.dev/protect": "true"}
    assert g.targets.secrets_manager == ("ci/*",)
    assert g.targets.github_repositories == ("acme/*",)
    assert g.checks.command is False and g.checks.required == ("new-key-used",)
    assert g.minimums.max_key_age == timedelta(days=30)
    assert g.minimums.deactivate_after == timedelta(hours=1)
    assert g.minimums.delete_after == timedelta(days=1)
    assert g.max_changes_per_run == 20
    assert g.where("checks.command") == Source("guardrails.yaml", 13, 12)


def test_every_section_is_optional_and_restricts_nothing() -> None:
    g = _guardrails(MINIMAL)
    assert g.accounts is None and g.users.path_prefixes is None and g.approval is None
    assert g.targets.secrets_manager is None and g.max_changes_per_run is None
    assert g.checks.command and g.checks.http and g.checks.required == ()


def test_schema_errors_are_path_line_column() -> None:
    text = MINIMAL + "users:\n  pathPrefix: /ci/\nmaxChangesPerRun: -1\naccounts: [12345]\n"
    assert _problems(text) == [
        "guardrails.yaml:4:3: users: unknown property 'pathPrefix'; did you mean 'pathPrefixes'?",
        "guardrails.yaml:5:19: maxChangesPerRun: -1 is out of range; expected at least 0",
        "guardrails.yaml:6:12: accounts[0]: 12345 is not an AWS account id; write the 12 digits "
        "in quotes, e.g. '123456789012'",
    ]


def test_a_pattern_with_braces_is_not_a_name_pattern() -> None:
    assert _problems(MINIMAL + "targets: {secretsManager: ['ci/{user}']}\n") == [
        "guardrails.yaml:3:28: targets.secretsManager[0]: 'ci/{user}' is not a name pattern; "
        "write a name or ARN in which '*' matches any text, without spaces, '?' or braces, "
        "e.g. ci/*"
    ]


def test_the_wrong_kind_and_two_documents_are_refused() -> None:
    assert _problems("apiVersion: keyrotor.dev/v1\nkind: RotationPolicy\n") == [
        "guardrails.yaml:2:7: kind: unknown kind 'RotationPolicy'; supported: Guardrails"
    ]
    assert _problems(MINIMAL + "---\n" + MINIMAL) == [
        "guardrails.yaml:3:1: a guardrails file holds exactly one document"
    ]


def test_the_shipped_schema_is_the_canonical_one() -> None:
    assert (ROOT / "controller" / "schemas" / "guardrails.schema.json").read_text() == (
        ROOT / "schemas" / "guardrails.schema.json"
    ).read_text()
    assert load_schema()["$id"] == "https://keyrotor.dev/schemas/guardrails.schema.json"


# --- where the document comes from -------------------------------------------------------------


def test_the_option_wins_over_the_environment_variable() -> None:
    environ = {"KEYROTOR_GUARDRAILS": "ssm:/keyrotor/guardrails"}
    assert guardrails_spec("g.yaml", environ) == "g.yaml"
    assert guardrails_spec(None, environ) == "ssm:/keyrotor/guardrails"
    assert guardrails_spec(None, {}) is None


def test_an_ssm_parameter_is_read_with_the_injected_reader() -> None:
    asked: list[str] = []

    def read(name: str) -> str:
        asked.append(name)
        return ISSUE_EXAMPLE

    g = read_guardrails("ssm:/keyrotor/guardrails", read_parameter=read)
    assert asked == ["/keyrotor/guardrails"]
    assert g.source == Source("ssm:/keyrotor/guardrails", 1, 1)


def test_a_bad_parameter_value_names_the_parameter() -> None:
    with pytest.raises(GuardrailsError) as caught:
        read_guardrails("ssm:/g", read_parameter=lambda _: MINIMAL + "bogus: 1\n")
    assert str(caught.value).startswith("ssm:/g:3:1: unknown property 'bogus'")


def test_a_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(GuardrailsSourceError, match="cannot read the guardrails"):
        read_guardrails(str(tmp_path / "nope.yaml"))


# --- violations --------------------------------------------------------------------------------


def test_a_policy_within_the_guardrails_has_no_violation(tmp_path: Path) -> None:
    assert check_policy(_policy(tmp_path), _guardrails(), ambient_account_id="123456789012") == []


def test_a_named_denied_user_is_a_violation_at_the_name(tmp_path: Path) -> None:
    policy = _edit(tmp_path, "selector: {pathPrefix: /ci/}", "names: [deploy-bot, Break-Glass]")
    path = str(tmp_path / "manifests" / "p.yaml")
    assert check_policy(policy, _guardrails()) == [
        Diagnostic(
            path,
            7,
            25,
            "spec.users.names[1]: user 'Break-Glass' may never be managed by keyrotor "
            "(guardrail users.denyNames at guardrails.yaml:6:14)",
        )
    ]


def test_a_target_outside_the_allowed_patterns_is_a_violation(tmp_path: Path) -> None:
    policy = _edit(tmp_path, 'secretId: "ci/{user}/aws"', 'secretId: "{user}/aws"')
    (problem,) = check_policy(policy, _guardrails())
    assert (problem.line, problem.column) == (10, 45)
    assert problem.message == (
        "spec.targets[0].secretId: '{user}/aws' can name a target outside the allowed patterns "
        "(ci/*) (guardrail targets.secretsManager at guardrails.yaml:9:19)"
    )


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ('name: "/ci/{user}/aws"', 'name: "/{user}/aws"', Rule.TARGET_NOT_ALLOWED),
        ("repository: acme/web", "repository: other/web", Rule.TARGET_NOT_ALLOWED),
        ("maxKeyAge: 90d", "maxKeyAge: 90d\n  deleteAfter: 1h", Rule.BELOW_MINIMUM),
        ("maxKeyAge: 90d", "maxKeyAge: 20d\n  rotateBefore: 5d", Rule.BELOW_MINIMUM),
        (
            "maxKeyAge: 90d",
            "maxKeyAge: 90d\n  checks: [{type: command, run: [./x]}, {type: new-key-used}]",
            Rule.CHECK_FORBIDDEN,
        ),
        ("maxKeyAge: 90d", "maxKeyAge: 90d\n  checks: [{type: http, url: 'http://x'}]", None),
        ("pathPrefix: /ci/", "pathPrefix: /admin/", Rule.SELECTOR_OUTSIDE_PATHS),
    ],
)
def test_each_guardrail_is_enforced(tmp_path: Path, old: str, new: str, rule: Rule | None) -> None:
    found = violations(_edit(tmp_path, old, new), _guardrails())
    if rule is None:  # an http check alone drops the required new-key-used
        assert [v.rule for v in found] == [Rule.CHECK_REQUIRED]
    else:
        assert [v.rule for v in found] == [rule]


def test_a_selector_reaching_beyond_the_paths_is_not_a_violation(tmp_path: Path) -> None:
    # `/` also covers /ci/: the users outside are excluded one by one, not the policy refused.
    assert violations(_edit(tmp_path, "pathPrefix: /ci/", "pathPrefix: /"), _guardrails()) == []


def test_an_arn_pattern_judges_region_and_account(tmp_path: Path) -> None:
    g = _guardrails(
        MINIMAL + "targets:\n  secretsManager: ['arn:aws:secretsmanager:eu-west-1:*:secret:ci/*']\n"
    )
    inside = _edit(
        tmp_path, 'secretId: "ci/{user}/aws"', 'secretId: "ci/{user}/aws", region: eu-west-1'
    )
    assert violations(inside, g) == []
    elsewhere = _edit(
        tmp_path, 'secretId: "ci/{user}/aws"', 'secretId: "ci/{user}/aws", region: us-east-1'
    )
    assert [v.rule for v in violations(elsewhere, g)] == [Rule.TARGET_NOT_ALLOWED]
    # Without a region the ambient one decides; offline it is unknown, so not proven allowed.
    unknown = _policy(tmp_path)
    assert [v.rule for v in violations(unknown, g)] == [Rule.TARGET_NOT_ALLOWED]
    assert violations(unknown, g, ambient_region="eu-west-1") == []


def test_with_new_key_and_http_and_approval_can_be_forbidden(tmp_path: Path) -> None:
    g = _guardrails(
        MINIMAL + "checks: {commandWithNewKey: false, http: false}\napproval: [pull-request]\n"
    )
    policy = _edit(
        tmp_path,
        "maxKeyAge: 90d",
        "maxKeyAge: 90d\n  approval: auto\n  checks:\n"
        "    - {type: command, run: [./x], withNewKey: true}\n"
        "    - {type: http, url: 'https://x'}",
    )
    found = violations(policy, g)
    assert [(v.rule, v.path) for v in found] == [
        (Rule.APPROVAL_NOT_ALLOWED, "spec.approval"),
        (Rule.CHECK_FORBIDDEN, "spec.checks[0].withNewKey"),
        (Rule.CHECK_FORBIDDEN, "spec.checks[1]"),
    ]


def test_a_maximum_key_age_is_enforced(tmp_path: Path) -> None:
    g = _guardrails(MINIMAL + "maximums: {maxKeyAge: 60d}\n")
    (problem,) = check_policy(_policy(tmp_path), g)
    assert problem.message == (
        "spec.maxKeyAge: 90d is longer than the maximum, 60d "
        "(guardrail maximums.maxKeyAge at guardrails.yaml:3:23)"
    )


def test_accounts_default_to_the_ambient_account(tmp_path: Path) -> None:
    role = "arn:aws:iam::210987654321:role/keyrotor"
    policy = _edit(tmp_path, "spec:\n", f"spec:\n  account: {{roleArn: '{role}'}}\n")
    assert violations(policy, _guardrails(MINIMAL)) == []  # offline: the ambient is unknown
    found = violations(policy, _guardrails(MINIMAL), ambient_account_id="123456789012")
    assert [(v.rule, v.path) for v in found] == [(Rule.ACCOUNT_NOT_ALLOWED, "spec.account.roleArn")]
    assert [v.rule for v in violations(policy, _guardrails())] == [Rule.ACCOUNT_NOT_ALLOWED]


# --- exclusions --------------------------------------------------------------------------------


def _excluded(
    g: Guardrails,
    *,
    name: str = "deploy-bot",
    path: str = "/ci/",
    tags: dict[str, str] | None = None,
    account: str = "123456789012",
) -> ExclusionReason | None:
    return exclusion(g, account_id=account, user_name=name, path=path, tags=tags or {})


def test_a_user_inside_every_guardrail_is_not_excluded() -> None:
    assert _excluded(_guardrails()) is None
    assert _excluded(_guardrails(MINIMAL), path="/admin/") is None


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"path": "/admin/"}, ExclusionReason.PATH_NOT_ALLOWED),
        ({"path": "/cider/"}, ExclusionReason.PATH_NOT_ALLOWED),
        ({"name": "BREAK-GLASS"}, ExclusionReason.DENIED_NAME),
        ({"tags": {"keyrotor.dev/protect": "true"}}, ExclusionReason.DENIED_TAG),
        ({"account": "210987654321"}, ExclusionReason.ACCOUNT_NOT_ALLOWED),
    ],
)
def test_each_exclusion_has_its_reason(kwargs: dict[str, object], reason: ExclusionReason) -> None:
    assert _excluded(_guardrails(), **kwargs) is reason  # type: ignore[arg-type]


def test_a_protecting_tag_with_another_value_does_not_exclude() -> None:
    assert _excluded(_guardrails(), tags={"keyrotor.dev/protect": "false"}) is None


def test_an_exclusion_says_which_guardrail_excludes_the_user() -> None:
    g = _guardrails()
    tags = {"keyrotor.dev/protect": "true"}
    message = exclusion_message(
        ExclusionReason.DENIED_TAG,
        g,
        account_id="123456789012",
        user_name="root-ish",
        path="/ci/",
        tags=tags,
    )
    assert message == (
        "excluded by the guardrails: the user carries the protecting tag keyrotor.dev/protect=true"
    )


def test_the_schema_is_valid_2020_12_and_closes_every_object() -> None:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

    schema = load_schema()
    Draft202012Validator.check_schema(schema)

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, where
                for name, child in node["properties"].items():
                    assert "description" in child, f"{where}.{name}"
            for key, child in node.items():
                walk(child, f"{where}.{key}")

    walk(schema, "$")
