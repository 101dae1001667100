"""The manifest loader: schema and semantic rules, positions of errors, the typed result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

import controller.manifests as manifests_module
from controller import manifests
from controller.durations import parse_duration
from controller.errors import KeyrotorError, ManifestError
from controller.manifests import (
    ManifestPathError,
    discover,
    display_path,
    git_blob_id,
    load_policies,
    load_schema,
    validate_manifests,
)
from controller.policy import (
    DEFAULT_DEACTIVATE_AFTER,
    DEFAULT_DELETE_AFTER,
    DEFAULT_ROTATE_BEFORE,
    Account,
    CommandCheck,
    GithubActionsSecretTarget,
    HttpCheck,
    JsonFields,
    NewKeyUsedCheck,
    OldKeyIdleCheck,
    Policy,
    SecretsManagerTarget,
    Source,
    SsmParameterTarget,
    UserSelection,
    Window,
    position,
)

ROOT = Path(__file__).resolve().parents[1]
BROKEN = Path(__file__).resolve().parent / "broken"
EXAMPLES = ROOT / "manifests" / "examples"
SCHEMA_FILE = ROOT / "schemas" / "rotation-policy.schema.json"

MINIMAL = """\
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: minimal
spec:
  users:
    names: [deploy-bot]
  maxKeyAge: 90d
  targets:
    - {type: aws-secrets-manager, secretId: deploy/aws}
"""


def _cases() -> list[str]:
    return sorted(p.name for p in BROKEN.iterdir() if p.suffix != ".expected")


def _load(tmp_path: Path, text: str, name: str = "policy.yaml") -> list[Policy]:
    path = tmp_path / name
    path.write_text(text)
    return load_policies([path])


def _problems(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "policy.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    _, problems = validate_manifests([path])
    return [f"{d.line}:{d.column}: {d.message}" for d in problems]


@pytest.fixture
def in_broken(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(BROKEN)
    yield


# --- the corpus of broken manifests ------------------------------------------------------------


def test_the_corpus_covers_every_rule() -> None:
    assert len(_cases()) >= 20
    for case in _cases():
        assert (BROKEN / f"{Path(case).stem}.expected").is_file(), case


@pytest.mark.parametrize("case", _cases())
def test_broken_manifest_reports_exactly(case: str, in_broken: None) -> None:
    expected = (BROKEN / f"{Path(case).stem}.expected").read_text().splitlines()
    policies, problems = validate_manifests([Path(case)])
    assert [str(d) for d in problems] == expected
    assert expected, "every broken case reports at least one problem"
    problem_lines = {(d.path, d.line) for d in problems}
    assert all((p.source.path, p.source.line) not in problem_lines for p in policies)


def test_load_policies_raises_every_problem_of_every_file(in_broken: None) -> None:
    with pytest.raises(ManifestError) as caught:
        load_policies([Path("errors-in-several-files"), Path("bad-enum.yaml")])
    paths = [d.path for d in caught.value.diagnostics]
    assert paths == [
        "bad-enum.yaml",
        "bad-enum.yaml",
        "errors-in-several-files/a.yaml",
        "errors-in-several-files/b.yaml",
        "errors-in-several-files/nested/c.yaml",
    ]
    assert str(caught.value).splitlines()[0].startswith("bad-enum.yaml:11:13: spec.approval:")


def test_valid_documents_are_returned_beside_the_problems(in_broken: None) -> None:
    policies, problems = validate_manifests([Path("errors-in-several-files")])
    assert [p.name for p in policies] == ["fine"]
    assert len(problems) == 3


# --- YAML details ------------------------------------------------------------------------------


def test_anchors_and_merge_keys_are_resolved(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "  targets:\n    - {type: aws-secrets-manager, secretId: deploy/aws}\n",
        "  targets:\n"
        "    - &sm {type: aws-secrets-manager, secretId: deploy/aws, region: eu-west-1}\n"
        "    - <<: *sm\n"
        "      secretId: deploy/aws-copy\n",
    )
    [policy] = _load(tmp_path, text)
    assert policy.targets == (
        SecretsManagerTarget(secret_id="deploy/aws", region="eu-west-1"),
        SecretsManagerTarget(secret_id="deploy/aws-copy", region="eu-west-1"),
    )


def test_yaml_1_1_booleans_are_text(tmp_path: Path) -> None:
    text = MINIMAL.replace("  targets:", "  suspend: on\n  targets:")
    assert _problems(tmp_path, text) == [
        "9:12: spec.suspend: expected true or false, got the string 'on'"
    ]


def test_a_trailing_newline_does_not_pass_a_pattern(tmp_path: Path) -> None:
    text = MINIMAL.replace("  maxKeyAge: 90d\n", "  maxKeyAge: |\n    90d\n")
    assert _problems(tmp_path, text) == [
        "8:14: spec.maxKeyAge: '90d\\n' is not a duration; write a whole number and a unit "
        "(s, m, h, d or w), e.g. 90d"
    ]


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    data = MINIMAL.replace("deploy/aws", "d\xe9ploy").encode("latin-1")
    assert _problems(tmp_path, data) == ["10:1: the file is not UTF-8 text"]


def test_control_characters_and_deep_nesting_are_reported(tmp_path: Path) -> None:
    assert _problems(tmp_path, "a: b\x00\n") == [
        "1:5: the file contains the control character U+0000, which YAML does not allow"
    ]
    assert _problems(tmp_path, "a: " + "[" * 1000 + "]" * 1000 + "\n") == [
        "1:1: the YAML is nested too deeply"
    ]


def test_a_lone_separator_is_an_empty_file(tmp_path: Path) -> None:
    assert _problems(tmp_path, "---\n") == [
        "1:1: the file is empty; a manifest holds one or more RotationPolicy documents"
    ]


def test_a_syntax_error_keeps_the_documents_before_it(tmp_path: Path) -> None:
    text = MINIMAL + "---\n" + MINIMAL.replace("minimal", "second").replace("[deploy-bot]", "[x")
    assert _problems(tmp_path, text)[0].startswith("19:12: invalid YAML: expected ',' or ']'")
    assert _problems(tmp_path, text)[1:] == []


def test_non_string_keys_are_reported(tmp_path: Path) -> None:
    text = MINIMAL.replace("  maxKeyAge: 90d\n", "  maxKeyAge: 90d\n  ? [a, b]\n  : c\n")
    assert _problems(tmp_path, text) == ["9:5: spec: a key must be a plain name, not a list"]


def test_a_recursive_alias_is_reported(tmp_path: Path) -> None:
    text = MINIMAL.replace("  targets:", "  extra: &loop\n    - *loop\n  targets:")
    problems = _problems(tmp_path, text)
    assert "9:10: spec.extra[0]: an alias refers to a node that contains it" in problems


def test_an_alias_bomb_fails_fast_at_the_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    levels = ['  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, 9):
        levels.append(f"  l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 9) + "]")
    text = MINIMAL.replace("spec:\n", "spec:\n" + "\n".join(levels) + "\n", 1)
    assert len(text.encode()) < 1000  # 9**9 = 387 million values once expanded
    built = 0
    build = manifests_module._Document.build

    def counting(self: object, *args: object) -> object:
        nonlocal built
        built += 1
        return build(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(manifests_module._Document, "build", counting)
    problems = _problems(tmp_path, text)
    # The work is bounded by the limit, not by the expansion: a few milliseconds, on any machine.
    assert built <= 2 * manifests_module.MAX_ALIASED_VALUES
    assert problems == [
        "10:12: too many aliases: they expand to more than 10000 values; write the values out "
        "instead of nesting aliases"
    ]


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    text = MINIMAL.replace("names: [deploy-bot]", "names: &n [deploy-bot]").replace(
        "  targets:", "  x-unused: *n\n  targets:"
    )
    assert "too many aliases" not in " ".join(_problems(tmp_path, text))


# --- files that are refused unread -------------------------------------------------------------

SECRET_LOOKING = "apiVersion: {password: hunter2-not-for-output}\n"


def test_a_symlinked_manifest_is_refused_without_printing_its_content(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text(SECRET_LOOKING)
    manifests_dir = tmp_path / "repo" / "manifests"
    manifests_dir.mkdir(parents=True)
    (manifests_dir / "link.yaml").symlink_to(outside)

    policies, problems = validate_manifests([manifests_dir])

    assert policies == []
    assert [d.message for d in problems] == [
        "refused: the file is a symbolic link; keyrotor reads only regular files in the "
        "repository, so replace the link with the file itself"
    ]
    assert problems[0].path.endswith("manifests/link.yaml")
    assert "hunter2" not in str(problems)


def test_a_symlinked_directory_under_manifests_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "p.yaml").write_text(SECRET_LOOKING)
    manifests_dir = tmp_path / "repo" / "manifests"
    manifests_dir.mkdir(parents=True)
    (manifests_dir / "team").symlink_to(outside, target_is_directory=True)

    _, problems = validate_manifests([manifests_dir])

    assert [d.message.split(";")[0] for d in problems] == [
        "refused: the directory is a symbolic link"
    ]
    assert problems[0].path.endswith("manifests/team")


def test_a_manifest_outside_the_repository_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "manifests").mkdir(parents=True)
    outside = tmp_path / "outside.yaml"
    outside.write_text(SECRET_LOOKING)

    _, problems = validate_manifests([outside], root=repo)

    assert [d.message for d in problems] == [
        "refused: the file is outside the repository (" + str(repo) + ")"
    ]
    assert "hunter2" not in str(problems)


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * (manifests.MAX_MANIFEST_BYTES) + b"\n")
    _, problems = validate_manifests([path])
    assert [d.message for d in problems] == [
        f"refused: the file is larger than {manifests.MAX_MANIFEST_BYTES // 1024} KiB"
    ]


# --- the typed result --------------------------------------------------------------------------


def test_defaults_are_applied(tmp_path: Path) -> None:
    [policy] = _load(tmp_path, MINIMAL)
    assert policy.name == "minimal"
    assert policy.max_key_age == timedelta(days=90)
    assert policy.rotate_before == DEFAULT_ROTATE_BEFORE == timedelta(days=14)
    assert policy.deactivate_after == DEFAULT_DEACTIVATE_AFTER == timedelta(days=1)
    assert policy.delete_after == DEFAULT_DELETE_AFTER == timedelta(days=7)
    assert policy.rotate_at_age == timedelta(days=76)
    assert policy.checks == (NewKeyUsedCheck(),)
    assert policy.account == Account()
    assert policy.approval == "pull-request"
    assert policy.on_overdue == "report"
    assert policy.suspend is False
    assert policy.windows == ()
    assert policy.users.names == ("deploy-bot",)
    assert not policy.users.has_selector
    assert not policy.users.may_select_many
    assert policy.targets == (SecretsManagerTarget(secret_id="deploy/aws"),)
    assert policy.targets[0].fields == JsonFields("AccessKeyId", "SecretAccessKey")


def test_schema_defaults_match_the_model() -> None:
    """The defaults editors show (schema) are the defaults the controller applies (policy.py)."""
    schema = load_schema()
    spec = schema["properties"]["spec"]["properties"]
    defs = schema["$defs"]
    policy = Policy(
        name="x",
        source=Source("x"),
        users=UserSelection(),
        max_key_age=timedelta(1),
        targets=(),
    )
    parse = parse_duration
    assert parse(spec["rotateBefore"]["default"]) == policy.rotate_before
    assert parse(spec["deactivateAfter"]["default"]) == policy.deactivate_after
    assert parse(spec["deleteAfter"]["default"]) == policy.delete_after
    assert spec["approval"]["default"] == policy.approval
    assert spec["onOverdue"]["default"] == policy.on_overdue
    assert spec["suspend"]["default"] == policy.suspend
    assert spec["checks"]["default"] == [{"type": "new-key-used"}]
    command = CommandCheck(run=("x",))
    assert parse(defs["commandCheck"]["properties"]["timeout"]["default"]) == command.timeout
    assert defs["commandCheck"]["properties"]["withNewKey"]["default"] == command.with_new_key
    http = HttpCheck(url="https://x")
    http_props = defs["httpCheck"]["properties"]
    assert parse(http_props["timeout"]["default"]) == http.timeout
    assert http_props["expectStatus"]["default"] == http.expect_status
    assert http_props["retries"]["default"] == http.retries
    github = GithubActionsSecretTarget(repository="a/b")
    names = defs["githubActionsSecretTarget"]["properties"]["names"]["properties"]
    assert names["accessKeyId"]["default"] == github.access_key_id_name
    assert names["secretAccessKey"]["default"] == github.secret_access_key_name
    window = Window("allow", "0 2 * * *", timedelta(hours=1))
    assert defs["window"]["properties"]["timeZone"]["default"] == window.time_zone
    fields = defs["jsonFields"]["properties"]
    assert fields["accessKeyId"]["default"] == JsonFields().access_key_id
    assert fields["secretAccessKey"]["default"] == JsonFields().secret_access_key


def test_targets_and_checks_map_to_their_dataclasses(tmp_path: Path) -> None:
    text = """\
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: everything
spec:
  account: {roleArn: "arn:aws:iam::123456789012:role/keyrotor", externalId: abc,
            region: us-east-1}
  users:
    names: [deploy-bot]
    selector: {pathPrefix: /ci/, tags: {keyrotor: enabled}}
    exclude: [break-glass]
  maxKeyAge: 2w
  rotateBefore: 72h
  deactivateAfter: 30m
  deleteAfter: 90s
  targets:
    - {type: aws-secrets-manager, secretId: "ci/{user}/aws", region: eu-west-1,
       kmsKeyId: alias/k, fields: {accessKeyId: id}}
    - {type: aws-ssm-parameter, name: "/ci/{user}/aws", fields: {secretAccessKey: s}}
    - {type: github-actions-secret, repository: acme/web, environment: "{user}",
       names: {accessKeyId: ID, secretAccessKey: SECRET}}
    - {type: github-actions-secret, repository: "acme/{user}"}
  checks:
    - {type: new-key-used}
    - {type: old-key-idle, for: 24h}
    - {type: command, run: [./smoke.sh, -q], timeout: 2m, withNewKey: true}
    - {type: command, run: [./other.sh]}
    - {type: http, url: "https://app.example.com/healthz", expectStatus: 204, timeout: 5s,
       bodyContains: ok, retries: 0}
    - {type: http, url: "http://localhost:8080/"}
  approval: auto
  onOverdue: deactivate
  suspend: true
"""
    [policy] = _load(tmp_path, text)
    assert policy.account == Account("arn:aws:iam::123456789012:role/keyrotor", "abc", "us-east-1")
    assert policy.users.names == ("deploy-bot",)
    assert policy.users.path_prefix == "/ci/"
    assert dict(policy.users.tags) == {"keyrotor": "enabled"}
    assert policy.users.exclude == ("break-glass",)
    assert policy.users.has_selector and policy.users.may_select_many
    assert (policy.max_key_age, policy.rotate_before) == (timedelta(weeks=2), timedelta(hours=72))
    assert (policy.deactivate_after, policy.delete_after) == (
        timedelta(minutes=30),
        timedelta(seconds=90),
    )
    assert policy.targets == (
        SecretsManagerTarget("ci/{user}/aws", "eu-west-1", "alias/k", JsonFields("id")),
        SsmParameterTarget("/ci/{user}/aws", fields=JsonFields(secret_access_key="s")),
        GithubActionsSecretTarget("acme/web", "ID", "SECRET", environment="{user}"),
        GithubActionsSecretTarget("acme/{user}"),
    )
    assert policy.checks == (
        NewKeyUsedCheck(),
        OldKeyIdleCheck(idle_for=timedelta(hours=24)),
        CommandCheck(run=("./smoke.sh", "-q"), timeout=timedelta(minutes=2), with_new_key=True),
        CommandCheck(run=("./other.sh",)),
        HttpCheck("https://app.example.com/healthz", 204, timedelta(seconds=5), "ok", 0),
        HttpCheck("http://localhost:8080/"),
    )
    assert (policy.approval, policy.on_overdue, policy.suspend) == ("auto", "deactivate", True)


def test_windows_map_to_their_dataclass(tmp_path: Path) -> None:
    text = MINIMAL + (
        "  windows:\n"
        "    - {kind: allow, schedule: '30 2 * * 1-5', duration: 2h, timeZone: Europe/Berlin}\n"
        "    - {kind: deny, schedule: '0 0 24 12 *', duration: 3d}\n"
        "    - {kind: allow, schedule: '*/15 * * * sun', duration: 90s, timeZone: Etc/UTC}\n"
    )
    [policy] = _load(tmp_path, text)
    assert policy.windows == (
        Window("allow", "30 2 * * 1-5", timedelta(hours=2), "Europe/Berlin"),
        Window("deny", "0 0 24 12 *", timedelta(days=3), "UTC"),
        Window("allow", "*/15 * * * sun", timedelta(seconds=90), "Etc/UTC"),
    )


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("0 24 * * *", "invalid hour '24'; use values 0-23"),
        ("0 2 * 13 *", "invalid month '13'; use values 1-12 or JAN-DEC"),
        ("0 2 0 * *", "invalid day-of-month '0'; use values 1-31 or L"),
        ("5-1 2 * * *", "invalid minute '5-1'; use values 0-59"),
        ("0 0 31 4,6 *", "no month it names has that day of the month, so it never fires"),
    ],
)
def test_cron_schedules_are_checked_by_the_cron_parser(
    tmp_path: Path, schedule: str, problem: str
) -> None:
    text = MINIMAL + f"  windows:\n    - {{kind: allow, schedule: '{schedule}', duration: 1h}}\n"
    [message] = _problems(tmp_path, text)
    assert message.startswith(
        f"12:31: spec.windows[0].schedule: {schedule!r} is not a valid cron schedule: {problem}"
    )


def test_localtime_is_not_a_time_zone(tmp_path: Path) -> None:
    text = MINIMAL + (
        "  windows:\n"
        "    - {kind: allow, schedule: '0 2 * * *', duration: 1h, timeZone: localtime}\n"
    )
    assert _problems(tmp_path, text) == [
        "12:68: spec.windows[0].timeZone: unknown time zone 'localtime'; use an IANA name such as "
        "Europe/Berlin, America/New_York or UTC"
    ]


def test_source_and_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("policies").mkdir()
    text = (
        "# leading comment\n"
        + MINIMAL
        + "---\n"
        + MINIMAL.replace("minimal", "second")
        .replace("deploy-bot", "report-bot")
        .replace("deploy/aws", "report/aws")
    )
    Path("policies/p.yaml").write_text(text)
    first, second = load_policies([tmp_path / "policies"])
    assert first.source == Source("policies/p.yaml", 2, 1)
    assert second.source == Source("policies/p.yaml", 13, 1)
    assert first.generation == second.generation == git_blob_id(text.encode())


def test_git_blob_id_matches_git() -> None:
    # `git hash-object` of an empty file and of "hello\n".
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


# --- the examples ------------------------------------------------------------------------------


def test_examples_load() -> None:
    policies = load_policies([EXAMPLES])
    by_name = {p.name: p for p in policies}
    assert sorted(by_name) == ["ci-deployers", "metrics-export", "nightly-backup", "service-bots"]
    assert by_name["service-bots"].approval == "auto"
    assert by_name["service-bots"].users.names == ("deploy-bot", "report-bot")
    assert {t.type for t in by_name["service-bots"].targets} == {
        "aws-secrets-manager",
        "aws-ssm-parameter",
    }
    assert by_name["ci-deployers"].approval == "pull-request"
    assert by_name["ci-deployers"].users.has_selector
    assert any(t.type == "github-actions-secret" for t in by_name["ci-deployers"].targets)
    assert by_name["nightly-backup"].source.path == by_name["metrics-export"].source.path
    assert [w.kind for w in by_name["service-bots"].windows] == ["allow", "deny"]


# --- discovery and paths -----------------------------------------------------------------------


def test_discover_finds_yaml_recursively_and_sorted(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yml", "sub/c.yaml", "sub/d.txt", ".hidden/e.yaml", "sub/.f.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    explicit = tmp_path / "sub" / "d.txt"
    found = discover([tmp_path, explicit, tmp_path / "b.yaml"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.yml",
        "b.yaml",
        "sub/c.yaml",
        "sub/d.txt",
    ]


def test_discover_rejects_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestPathError) as caught:
        discover([tmp_path / "nope"])
    assert isinstance(caught.value, KeyrotorError)
    assert str(caught.value).endswith("nope: no such file or directory")


def test_display_path_is_relative_to_the_cwd_only_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in").mkdir()
    monkeypatch.chdir(tmp_path / "in")
    assert display_path(tmp_path / "in" / "a.yaml") == "a.yaml"
    assert display_path(tmp_path / "out.yaml") == str(tmp_path / "out.yaml")
    assert display_path(Path("../out.yaml")) == "../out.yaml"


# --- the schema --------------------------------------------------------------------------------


def _subschemas(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _subschemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _subschemas(value, f"{where}/{index}")


def test_schema_is_valid_2020_12_with_an_id() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == manifests.SCHEMA_ID


def test_schema_describes_every_property_and_closes_every_object() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    for where, node in _subschemas(schema):
        if "/if" in where:
            continue  # discriminator conditions, not shapes
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description"), f"{where}/properties/{name} has no description"
        if "properties" in node and "allOf" not in node:
            assert node.get("additionalProperties") is False, f"{where} is open"


def test_packaged_schema_is_the_canonical_one() -> None:
    packaged = ROOT / "controller" / "schemas" / "rotation-policy.schema.json"
    assert packaged.is_symlink()
    assert packaged.resolve() == SCHEMA_FILE.resolve()
    assert load_schema() == json.loads(SCHEMA_FILE.read_text())


def test_examples_satisfy_the_schema_alone() -> None:
    """What editors and check-jsonschema see: the plain schema accepts every example document."""
    import yaml

    validator = Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert list(validator.iter_errors(document)) == [], path


def test_a_policy_knows_where_each_of_its_fields_was_written(tmp_path: Path) -> None:
    (policy,) = _load(tmp_path, MINIMAL)
    assert policy.positions["spec.targets[0].secretId"] == Source(
        str(tmp_path / "policy.yaml"), 10, 45
    )
    assert position(policy, "spec.users.names[0]") == Source(str(tmp_path / "policy.yaml"), 7, 13)
    # A field left to its default: its closest written parent.
    assert position(policy, "spec.checks[0]") == Source(str(tmp_path / "policy.yaml"), 6, 3)
    assert position(policy, "nowhere") == policy.source
