"""`keyrotor validate`: exit codes, text, JSON and GitHub Actions output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "manifests" / "examples"
BROKEN = Path(__file__).resolve().parent / "broken"
SEVERAL = BROKEN / "errors-in-several-files"

SEVERAL_ERRORS = [
    "errors-in-several-files/a.yaml:8:14: spec.maxKeyAge: 90 is not a duration; write a whole "
    "number and a unit (s, m, h, d or w), e.g. 90d",
    "errors-in-several-files/b.yaml:10:45: spec.targets[0].secretId: unknown placeholder "
    "'{usr}'; use {user}, {policy} or {account}",
    "errors-in-several-files/nested/c.yaml:6:10: spec.users: expected a mapping, got a list",
]


@pytest.fixture(autouse=True)
def _not_in_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


@pytest.fixture(autouse=True)
def _no_aws(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Validation is offline: any attempt to build or call an AWS client fails the test."""
    import boto3
    import botocore.client

    calls: list[Any] = []

    def forbidden(*args: Any, **kwargs: Any) -> None:
        calls.append((args, kwargs))
        raise AssertionError("keyrotor validate must not call AWS")

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", forbidden)
    monkeypatch.setattr(boto3, "client", forbidden)
    monkeypatch.setattr(boto3.session.Session, "client", forbidden)
    return calls


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_each_example_is_valid(example: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLES / example)]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("in 1 file are valid\n") or out == "1 policy in 1 file is valid\n"
    assert err == ""


def test_default_path_is_the_repos_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--repo", str(ROOT)]) == 0
    assert capsys.readouterr().out == "4 policies in 3 files are valid\n"


def test_all_errors_of_several_files_in_one_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, _no_aws: list[Any]
) -> None:
    monkeypatch.chdir(BROKEN)
    assert main(["validate", "errors-in-several-files"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [*SEVERAL_ERRORS, "found 3 errors in 3 of 4 files"]
    assert _no_aws == []


def test_json_when_invalid(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BROKEN)
    assert main(["validate", "--format", "json", "errors-in-several-files"]) == 1
    out, err = capsys.readouterr()
    assert err == ""
    report = json.loads(out)
    assert report["valid"] is False
    assert report["policies"] == ["fine"]
    assert report["errors"][0] == {
        "path": "errors-in-several-files/a.yaml",
        "line": 8,
        "column": 14,
        "message": "spec.maxKeyAge: 90 is not a duration; write a whole number and a unit "
        "(s, m, h, d or w), e.g. 90d",
    }
    assert [f"{e['path']}:{e['line']}:{e['column']}: {e['message']}" for e in report["errors"]] == (
        SEVERAL_ERRORS
    )


def test_json_when_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--format", "json", str(EXAMPLES)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"valid", "policies", "errors"}
    assert report["valid"] is True
    assert report["errors"] == []
    assert sorted(report["policies"]) == [
        "ci-deployers",
        "metrics-export",
        "nightly-backup",
        "service-bots",
    ]


def test_github_actions_annotations(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BROKEN)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert main(["validate", "errors-in-several-files", "user-in-two-policies"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "::error file=errors-in-several-files/a.yaml,line=8,col=14::spec.maxKeyAge: 90 is not a "
        "duration; write a whole number and a unit (s, m, h, d or w), e.g. 90d",
        "::error file=errors-in-several-files/b.yaml,line=10,col=45::spec.targets[0].secretId: "
        "unknown placeholder '{usr}'; use {user}, {policy} or {account}",
        "::error file=errors-in-several-files/nested/c.yaml,line=6,col=10::spec.users: expected "
        "a mapping, got a list",
        "::error file=user-in-two-policies/b.yml,line=8,col=9::spec.users.names[0]: user "
        "'report-bot' is already managed by policy 'deployers' (user-in-two-policies/a.yaml:7:25);"
        " a user may be named by one policy only",
    ]
    assert len(err.splitlines()) == 5


def test_no_annotations_outside_github_actions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BROKEN)
    monkeypatch.setenv("GITHUB_ACTIONS", "false")
    assert main(["validate", "bad-enum.yaml"]) == 1
    assert capsys.readouterr().out == ""


def test_json_output_stays_pure_json_in_github_actions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BROKEN)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert main(["validate", "--format", "json", "bad-enum.yaml"]) == 1
    assert len(json.loads(capsys.readouterr().out)["errors"]) == 2


def test_annotation_escapes_newlines_and_separators() -> None:
    from controller.commands.validate import github_annotation
    from controller.errors import Diagnostic

    line = github_annotation(Diagnostic("a,b:c.yaml", 1, 2, "100% bad\nreally"))
    assert line == "::error file=a%2Cb%3Ac.yaml,line=1,col=2::100%25 bad%0Areally"


def test_a_missing_path_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["validate", "manifests/nope.yaml"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "keyrotor: manifests/nope.yaml: no such file or directory\n")

    assert main(["validate", "--format", "json", "manifests/nope.yaml"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["errors"] == [
        {
            "path": "manifests/nope.yaml",
            "line": 0,
            "column": 0,
            "message": "no such file or directory",
        }
    ]


def test_a_repo_without_manifests_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--repo", str(tmp_path)]) == 1
    assert "manifests: no such file or directory" in capsys.readouterr().err


def test_an_empty_manifests_directory_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "manifests").mkdir()
    assert main(["validate", "--repo", str(tmp_path)]) == 0
    assert "no manifest files found" in capsys.readouterr().out


def test_python_dash_m_controller_validate() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "controller", "validate", "--format", "json", str(EXAMPLES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["valid"] is True

    broken = subprocess.run(
        [sys.executable, "-m", "controller", "validate", str(SEVERAL)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert broken.returncode == 1
    assert broken.stderr.splitlines()[-1] == "found 3 errors in 3 of 4 files"


def test_guardrails_violations_are_reported_at_the_manifest_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    guardrails = tmp_path / "guardrails.yaml"
    guardrails.write_text(
        "apiVersion: keyrotor.dev/v1\nkind: Guardrails\nchecks: {command: false}\n"
    )
    assert main(["validate", "--repo", str(ROOT), "--guardrails", str(guardrails)]) == 1
    err = capsys.readouterr().err
    assert (
        "manifests/examples/ci-deployers.yaml:32:7: spec.checks[1]: command checks are not "
        f"allowed (guardrail checks.command at {guardrails}:3:19)"
    ) in err


def test_invalid_guardrails_are_reported_in_their_own_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    guardrails = tmp_path / "guardrails.yaml"
    guardrails.write_text("apiVersion: keyrotor.dev/v1\nkind: Guardrails\nchecks: {cmd: false}\n")
    assert main(["validate", "--repo", str(ROOT), "--guardrails", str(guardrails)]) == 1
    err = capsys.readouterr().err
    assert f"{guardrails}:3:10: checks: unknown property 'cmd'" in err
    assert err.endswith("found 1 error in 1 of 4 files\n")  # the manifests and the guardrails
