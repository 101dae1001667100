"""The GitHub Actions workflows and the composite actions: actionlint finds nothing, and the
properties that keep them safe hold (a pull request cannot act, reconcile runs one at a time in
the `keyrotor` environment, the action installs from a hashed lock with an isolated pip ...). The
protected-paths script runs against real git repositories.

actionlint comes from the dev extra (the `actionlint` wheel installs it next to the interpreter);
it runs ShellCheck, from the same extra, on every `run:` script.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
PLAN = WORKFLOWS / "keyrotor-plan.yml"
RECONCILE = WORKFLOWS / "keyrotor-reconcile.yml"
REUSABLE = WORKFLOWS / "keyrotor-reusable.yml"
MATRIX = WORKFLOWS / "keyrotor-reconcile-matrix.yml"
ACTION = ROOT / "action.yml"
DOC = ROOT / "docs" / "github-actions.md"
LOCK = ROOT / "requirements" / "action.lock"
PYPROJECT = ROOT / "pyproject.toml"
PROTECTED_PATHS = ROOT / ".github" / "scripts" / "check-protected-paths.sh"
PROTECTED_PATHS_ACTION = ROOT / ".github" / "actions" / "protected-paths" / "action.yml"
ACTION_REF = "<owner>/keyrotor@v0"  # how the copied workflows name the composite action
PROTECTED_PATHS_REF = "<owner>/keyrotor/.github/actions/protected-paths@v0"
BIN = Path(sys.executable).parent


# --- helpers ---------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def content(path: Path) -> str:
    """Everything a workflow says, comments left out."""
    return json.dumps(load(path))


def triggers(doc: dict[Any, Any]) -> dict[str, Any]:
    """The `on:` mapping. PyYAML reads the key `on` as YAML 1.1's boolean True."""
    on = doc["on"] if "on" in doc else doc.get(True)
    assert isinstance(on, dict), f"`on` should be a mapping, got {on!r}"
    return on


def steps(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, job in doc["jobs"].items():
        for step in job.get("steps", []):
            yield name, step


def keyrotor_commands(doc: dict[str, Any]) -> list[str]:
    """Every keyrotor command line a workflow runs: in `run:` scripts and as the action's args."""
    found = []
    for _, step in steps(doc):
        found += re.findall(r"\bkeyrotor\s+([a-z]+)", step.get("run", ""))
        if str(step.get("uses", "")).startswith(ACTION_REF.split("@")[0]):
            found += str(step.get("with", {}).get("args", "")).split()[:1]
    return found


def actionlint(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    exe = BIN / "actionlint"
    shellcheck = BIN / "shellcheck"
    if not exe.exists() or not shellcheck.exists():
        pytest.fail(f"actionlint or shellcheck missing in {BIN}: pip install -e '.[dev]'")
    return subprocess.run(
        [str(exe), "-no-color", "-oneline", f"-shellcheck={shellcheck}", "-pyflakes=", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def local_action_project(tmp_path: Path, edit: dict[str, str] | None = None) -> Path:
    """The copied workflows beside action.yml, using it as `./`: actionlint then checks every
    `with:` input and `outputs` reference against the action's metadata. (An empty .git marks
    the project root for actionlint.)"""
    (tmp_path / ".git").mkdir()
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / "action.yml").write_text(ACTION.read_text())
    sub_action = tmp_path / PROTECTED_PATHS_ACTION.relative_to(ROOT)
    sub_action.parent.mkdir(parents=True)
    sub_action.write_text(PROTECTED_PATHS_ACTION.read_text())
    for path in (PLAN, RECONCILE, MATRIX):
        text = path.read_text().replace(PROTECTED_PATHS_REF, "./.github/actions/protected-paths")
        text = text.replace(ACTION_REF, "./")
        for old, new in (edit or {}).items():
            text = text.replace(old, new)
        (tmp_path / ".github" / "workflows" / path.name).write_text(text)
    return tmp_path


def locked() -> dict[str, tuple[Version, list[str]]]:
    """The lock file's pins: canonical name -> (version, hashes)."""
    text = LOCK.read_text().replace("\\\n", " ")
    pins: dict[str, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(
            r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)\s*", line
        )
        assert match, f"not a pin with hashes: {line!r}"
        name, version, hashes = match.groups()
        pins[canonicalize_name(name)] = (Version(version), hashes.split())
    return pins


# --- actionlint ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.y*ml")), ids=lambda p: p.name)
def test_actionlint_finds_nothing_in_the_workflow(path: Path) -> None:
    result = actionlint(str(path.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_copied_workflows_use_only_inputs_and_outputs_the_action_has(tmp_path: Path) -> None:
    result = actionlint(cwd=local_action_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_does_see_a_wrong_input_of_the_local_action(tmp_path: Path) -> None:
    """So that the test above is not vacuous."""
    project = local_action_project(
        tmp_path, {"args: reconcile": "arguments: reconcile", "bot-login:": "bot:"}
    )
    result = actionlint(cwd=project)
    assert result.returncode == 1
    assert 'input "arguments" is not defined in action "keyrotor"' in result.stdout
    assert 'input "bot" is not defined in action "keyrotor protected paths"' in result.stdout


@pytest.mark.parametrize(
    "action_file", [ACTION, PROTECTED_PATHS_ACTION], ids=lambda p: str(p.relative_to(ROOT))
)
def test_actionlint_and_shellcheck_find_nothing_in_the_composite_actions_steps(
    tmp_path: Path, action_file: Path
) -> None:
    """actionlint lints workflows, not action metadata: lint the action's steps as the steps
    of a callable workflow whose inputs are the action's."""
    action = load(action_file)
    workflow = {
        "on": {
            "workflow_call": {
                "inputs": {
                    name: {"type": "string", "required": False, "default": spec.get("default", "")}
                    for name, spec in action["inputs"].items()
                }
            }
        },
        "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": action["runs"]["steps"]}},
    }
    path = tmp_path / ".github" / "workflows" / "composite.yml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    result = actionlint(str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", sorted((ROOT / ".github" / "scripts").glob("*.sh")))
def test_shellcheck_finds_nothing_in_the_scripts(script: Path) -> None:
    result = subprocess.run(
        [str(BIN / "shellcheck"), str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_nothing_in_the_documented_workflows(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    workflows = [b for b in blocks if b.startswith("name:")]
    assert len(workflows) >= 2
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    for i, text in enumerate(workflows):
        (folder / f"doc-{i}.yml").write_text(text)
    result = actionlint(*sorted(str(p) for p in folder.iterdir()), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def documented_policies() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)
    return [json.loads(block) for block in blocks]


def test_the_documented_iam_policies_are_json_policy_documents() -> None:
    policies = documented_policies()
    assert len(policies) >= 4  # at least two trust policies, two permission policies
    for policy in policies:
        assert policy["Version"] == "2012-10-17"
        assert isinstance(policy["Statement"], list) and policy["Statement"]


def test_the_documented_plan_role_reads_no_secret_value() -> None:
    """Anyone who may push a branch can use the plan role (issue 10): metadata only."""
    (plan,) = [
        p
        for p in documented_policies()
        if any(s.get("Sid", "") == "PlanReadAccount" for s in p["Statement"])
    ]
    actions = {
        a
        for s in plan["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert all(s["Effect"] == "Allow" for s in plan["Statement"])
    assert not any("*" in a for a in actions), "no wildcard can grant a read of a value"
    (guardrails,) = [s for s in plan["Statement"] if s["Sid"] == "ReadGuardrails"]
    assert guardrails["Action"] == "ssm:GetParameter"
    assert guardrails["Resource"].endswith(":parameter/keyrotor/guardrails"), "that one only"
    others = [s for s in plan["Statement"] if s is not guardrails]
    actions = {
        a for s in others for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions.isdisjoint(
        {
            "secretsmanager:GetSecretValue",
            "secretsmanager:BatchGetSecretValue",
            "ssm:GetParameter",
            "ssm:GetParameters",
            "ssm:GetParametersByPath",
            "ssm:GetParameterHistory",
            "kms:Decrypt",
        }
    )


def test_the_documented_trust_policies_bind_plan_to_pull_requests_reconcile_to_the_env() -> None:
    subjects = [
        s["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]
        for p in documented_policies()
        for s in p["Statement"]
        if s.get("Action") == "sts:AssumeRoleWithWebIdentity"
    ]
    assert subjects == [
        "repo:OWNER/POLICY-REPO:pull_request",
        "repo:OWNER/POLICY-REPO:environment:keyrotor",
    ]


@pytest.mark.parametrize(
    ("doc", "base"),
    [
        (DOC, DOC.parent),
        (ROOT / "SECURITY.md", ROOT),
        (ROOT / "docs" / "threat-model.md", ROOT / "docs"),
        (ROOT / "docs" / "guardrails.md", ROOT / "docs"),
        (ROOT / "README.md", ROOT),
    ],
    ids=lambda p: p.name if isinstance(p, Path) else "",
)
def test_the_security_documents_link_only_to_files_that_exist(doc: Path, base: Path) -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text())
    local = [link for link in links if "://" not in link]
    assert local
    missing = [link for link in local if not (base / link).exists()]
    assert not missing


def test_security_md_says_how_to_report_a_vulnerability_privately() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    assert "## Reporting a vulnerability" in text
    assert "Report a vulnerability" in text and "Do not open a public issue" in text


# --- every workflow --------------------------------------------------------------------------


def pinned(uses: str) -> bool:
    """`owner/repo[/path]@ref` with a version tag (`v7`, `v7.1.0`) or a full commit SHA; or a
    local action (`./path`)."""
    if uses.startswith("./"):
        return True
    tag_or_sha = r"v\d+(\.\d+){0,2}|[0-9a-f]{40}"
    return re.fullmatch(rf"[\w<>.-]+/[\w.-]+(/[\w.-]+)*@({tag_or_sha})", uses) is not None


@pytest.mark.parametrize(
    ("uses", "ok"),
    [
        ("actions/checkout@v7", True),
        ("actions/checkout@v7.0.1", True),
        ("actions/checkout@" + "0123456789abcdef" * 2 + "01234567", True),
        ("<owner>/keyrotor/.github/actions/protected-paths@v0", True),
        ("./.keyrotor-action", True),
        ("actions/checkout@main", False),
        ("actions/checkout@0123abc", False),
        ("actions/checkout", False),
    ],
)
def test_an_action_is_pinned_by_a_version_tag_or_a_full_commit_sha(uses: str, ok: bool) -> None:
    assert pinned(uses) is ok


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_actions_are_pinned_and_permissions_start_empty(path: Path) -> None:
    doc = load(path)
    assert doc["permissions"] == {}, "each job asks for exactly what it needs"
    for job_name, job in doc["jobs"].items():
        assert "permissions" in job, job_name
        if "uses" not in job:  # a job that calls a reusable workflow has no timeout of its own
            assert "timeout-minutes" in job, job_name
    for _, step in steps(doc):
        if "uses" in step:
            assert pinned(step["uses"]), step["uses"]


@pytest.mark.parametrize("path", [ACTION, PROTECTED_PATHS_ACTION], ids=lambda p: p.name)
def test_the_actions_pin_the_actions_they_use(path: Path) -> None:
    for step in load(path)["runs"]["steps"]:
        if "uses" in step:
            assert pinned(step["uses"]), step["uses"]


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("keyrotor-*.yml")), ids=lambda p: p.name)
def test_aws_sessions_are_named_for_the_run(path: Path) -> None:
    """So CloudTrail shows which run made each call (keyrotor names its own sessions alike)."""
    for _, step in steps(load(path)):
        if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@"):
            assert step["with"]["role-session-name"] == "keyrotor-${{ github.run_id }}"


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_no_checkout_keeps_git_credentials(path: Path) -> None:
    """keyrotor hands GITHUB_TOKEN to git for its own push and fetch only."""
    checkouts = [
        s for _, s in steps(load(path)) if s.get("uses", "").startswith("actions/checkout@")
    ]
    assert checkouts
    assert all(s.get("with", {}).get("persist-credentials") is False for s in checkouts)


@pytest.mark.parametrize("path", [PLAN, RECONCILE, MATRIX], ids=lambda p: p.name)
def test_the_copied_workflows_run_keyrotor_through_the_composite_action(path: Path) -> None:
    doc = load(path)
    assert any(step.get("uses") == ACTION_REF for _, step in steps(doc))
    assert "pip install" not in content(path), "the policy repository has no keyrotor source"


# --- the plan workflow -----------------------------------------------------------------------


def test_plan_runs_on_every_pull_request_never_pull_request_target() -> None:
    """Not only those that change manifests/: the protected-paths job must see all of them."""
    on = triggers(load(PLAN))
    assert set(on) == {"pull_request"}
    assert on["pull_request"] is None, "no paths, branches or types filter"
    assert "pull_request_target" not in content(PLAN)


def test_plan_fails_a_persons_pull_request_that_changes_status_or_approvals() -> None:
    job = load(PLAN)["jobs"]["protected-paths"]
    assert "if" not in job, "forks included"
    assert job["permissions"] == {"contents": "read"}
    checkout, check = job["steps"]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"] == {"fetch-depth": 2, "persist-credentials": False}
    assert check == {
        "uses": PROTECTED_PATHS_REF,
        "with": {"bot-login": "${{ vars.KEYROTOR_BOT_LOGIN || 'github-actions[bot]' }}"},
    }


def test_plan_never_writes_contents_and_keeps_no_git_credentials() -> None:
    doc = load(PLAN)
    for job in doc["jobs"].values():
        assert job["permissions"].get("contents") == "read"
        writes = {k for k, v in job["permissions"].items() if v == "write"}
        assert writes <= {"id-token", "pull-requests"}
    checkouts = [s for _, s in steps(doc) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts and all(s["with"]["persist-credentials"] is False for s in checkouts)


def test_plan_only_validates_and_plans_never_applies_reconciles_or_resumes() -> None:
    commands = keyrotor_commands(load(PLAN))
    assert sorted(set(commands)) == ["plan", "validate"]
    assert not re.search(r"\b(apply|reconcile|resume)\b", content(PLAN))


def test_validate_runs_for_every_pull_request_forks_included() -> None:
    job = load(PLAN)["jobs"]["validate"]
    assert "if" not in job
    assert set(job["permissions"]) == {"contents"}
    assert [s["with"]["args"] for s in job["steps"] if s.get("uses") == ACTION_REF] == ["validate"]


def test_aws_and_the_comment_are_skipped_for_pull_requests_from_forks() -> None:
    doc = load(PLAN)
    aws_jobs = {
        name
        for name, step in steps(doc)
        if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    }
    assert aws_jobs == {"plan"}
    job = doc["jobs"]["plan"]
    condition = " ".join(job["if"].split())
    assert "!github.event.pull_request.head.repo.fork" in condition
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert "always()" not in condition, "always() would run it even when cancelled"


def test_plan_assumes_the_read_only_role() -> None:
    roles = [
        s["with"]["role-to-assume"]
        for _, s in steps(load(PLAN))
        if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    ]
    assert roles == ["${{ vars.KEYROTOR_PLAN_ROLE_ARN }}"]
    assert "KEYROTOR_GITHUB_TOKEN" not in content(PLAN)
    assert "KEYROTOR_SECRETS_TOKEN" not in content(PLAN)
    assert "environment" not in load(PLAN)["jobs"]["plan"], "no environment secrets either"


def test_the_plan_comment_is_found_by_its_marker_and_updated_in_place() -> None:
    (post,) = [s for _, s in steps(load(PLAN)) if "gh api" in s.get("run", "")]
    script = post["run"]
    assert "<!-- keyrotor-plan -->" in script
    assert "startswith" in script and "github-actions[bot]" in script
    assert "--method PATCH" in script and "--method POST" in script
    assert post["env"]["GH_TOKEN"] == "${{ github.token }}"


# --- the reconcile workflow ------------------------------------------------------------------


def test_reconcile_runs_hourly_on_pushes_to_main_and_by_hand_with_a_resume_input() -> None:
    on = triggers(load(RECONCILE))
    assert set(on) == {"schedule", "push", "workflow_dispatch"}
    ((cron,),) = [tuple(entry.values()) for entry in on["schedule"]]
    minute, *rest = cron.split()
    assert minute.isdigit() and 0 <= int(minute) < 60 and rest == ["*", "*", "*", "*"]
    assert on["push"] == {"branches": ["main"], "paths": ["manifests/**", "approvals/**"]}
    resume = on["workflow_dispatch"]["inputs"]["resume"]
    assert resume["required"] is False and resume["default"] == ""


def test_reconcile_runs_one_at_a_time_and_is_never_cancelled() -> None:
    assert load(RECONCILE)["concurrency"] == {
        "group": "keyrotor-reconcile",
        "cancel-in-progress": False,
    }


def test_reconcile_has_exactly_the_permissions_it_needs() -> None:
    (job,) = load(RECONCILE)["jobs"].values()
    assert job["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
        "issues": "write",
        "id-token": "write",
    }


def environment(job: dict[str, Any]) -> str | None:
    """A job's environment: `environment: NAME` or `environment: {name: NAME, ...}`."""
    value = job.get("environment")
    return str(value["name"]) if isinstance(value, dict) else value


def test_reconcile_runs_in_the_keyrotor_environment_on_the_default_branch_only() -> None:
    """The environment's deployment branch rule and the role's trust policy (subject
    `environment:keyrotor`) are the boundary; the `if` skips the job elsewhere."""
    (job,) = load(RECONCILE)["jobs"].values()
    assert environment(job) == "keyrotor"
    assert "github.event.repository.default_branch" in job["if"]


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_the_secrets_token_reaches_only_jobs_in_the_keyrotor_environment(path: Path) -> None:
    """An environment secret, never a repository secret: a workflow on any branch can read
    those. (A job outside the environment would get the repository secret of that name.)"""
    for name, job in load(path)["jobs"].items():
        if "KEYROTOR_SECRETS_TOKEN" in json.dumps(job):
            assert environment(job) == "keyrotor", name
    assert "KEYROTOR_GITHUB_TOKEN" not in content(path), "the former repository secret"


def test_reconcile_checks_out_all_history_and_sets_a_git_identity() -> None:
    doc = load(RECONCILE)
    (checkout,) = [s for _, s in steps(doc) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"] == {"fetch-depth": 0, "persist-credentials": False}
    scripts = "\n".join(s.get("run", "") for _, s in steps(doc))
    assert "git config user.name" in scripts and "git config user.email" in scripts


def test_reconcile_resumes_first_then_reconciles_with_the_secrets_token() -> None:
    doc = load(RECONCILE)
    (job,) = doc["jobs"].values()
    assert keyrotor_commands(doc) == ["resume", "reconcile"]
    resume = next(
        s for s in job["steps"] if str(s.get("with", {}).get("args", "")).startswith("resume")
    )
    assert resume["if"] == "inputs.resume != ''"
    assert resume["env"] == {"GITHUB_TOKEN": "${{ github.token }}"}, "pushes; no secrets token"
    reconcile = next(s for s in job["steps"] if s.get("id") == "reconcile")
    assert reconcile["env"] == {
        "GITHUB_TOKEN": "${{ github.token }}",
        "KEYROTOR_SECRETS_TOKEN": "${{ secrets.KEYROTOR_SECRETS_TOKEN }}",
        "KEYROTOR_GUARDRAILS": "ssm:/keyrotor/guardrails",
        "KEYROTOR_BOT_LOGIN": "${{ vars.KEYROTOR_BOT_LOGIN || 'github-actions[bot]' }}",
    }
    assert job["outputs"]["changes_present"] == "${{ steps.reconcile.outputs.changes_present }}"
    roles = [
        s["with"]["role-to-assume"] for s in job["steps"] if "role-to-assume" in s.get("with", {})
    ]
    assert roles == ["${{ vars.KEYROTOR_ROLE_ARN }}"]


# --- the matrix workflow: one reconcile job per shard of the accounts -------------------------


def test_the_matrix_workflow_triggers_and_queues_like_the_reconcile_workflow() -> None:
    """One group for both, so they never overlap while a repository switches between them."""
    matrix, reconcile = load(MATRIX), load(RECONCILE)
    assert triggers(matrix) == triggers(reconcile)
    assert matrix["concurrency"] == reconcile["concurrency"]


def test_the_matrix_lists_the_shards_then_reconciles_each_in_its_own_job() -> None:
    doc = load(MATRIX)
    accounts, reconcile = doc["jobs"]["accounts"], doc["jobs"]["reconcile"]
    assert keyrotor_commands(doc) == ["resume", "accounts", "reconcile"]
    listing = next(s for s in accounts["steps"] if s.get("name") == "keyrotor accounts")
    assert re.fullmatch(r"accounts --format json --shards \d+", listing["with"]["args"])
    assert accounts["outputs"]["shards"] == "${{ steps.shards.outputs.shards }}"
    assert reconcile["needs"] == "accounts"
    assert reconcile["if"] == "needs.accounts.outputs.shards != '[]'"
    assert reconcile["strategy"] == {
        "fail-fast": False,  # a cancelled shard might stop in the middle of a rotation
        "matrix": {"shard": "${{ fromJSON(needs.accounts.outputs.shards) }}"},
    }
    (run,) = [s for s in reconcile["steps"] if s.get("uses") == ACTION_REF]
    assert run["with"]["args"] == "reconcile --shard ${{ matrix.shard }}"
    single = load(RECONCILE)["jobs"]["reconcile"]["steps"]
    assert run["env"] == next(s for s in single if s.get("id") == "reconcile")["env"]


def test_both_matrix_jobs_run_in_the_keyrotor_environment_on_the_default_branch() -> None:
    jobs = load(MATRIX)["jobs"]
    assert {name: environment(job) for name, job in jobs.items()} == {
        "accounts": "keyrotor",
        "reconcile": "keyrotor",
    }
    assert "github.event.repository.default_branch" in jobs["accounts"]["if"]
    assert jobs["reconcile"]["permissions"] == load(RECONCILE)["jobs"]["reconcile"]["permissions"]


def test_the_matrix_gets_the_shards_of_keyrotor_accounts(tmp_path: Path) -> None:
    (step,) = [s for s in load(MATRIX)["jobs"]["accounts"]["steps"] if s.get("id") == "shards"]
    listing = tmp_path / "accounts.json"
    listing.write_text(
        json.dumps(
            {
                "accounts": [{"account": "123456789012", "policies": ["ci-deployers"]}],
                "shards": ["1/4", "3/4"],
            },
            indent=2,
        )
    )
    output = tmp_path / "github-output"
    subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env={"PATH": "/usr/bin:/bin", "ACCOUNTS_FILE": str(listing), "GITHUB_OUTPUT": str(output)},
        check=True,
        timeout=30,
    )
    assert output.read_text() == 'shards=["1/4","3/4"]\n'


# --- the reusable workflow and the composite action ------------------------------------------


def test_the_reusable_workflow_is_callable_with_the_documented_interface() -> None:
    doc = load(REUSABLE)
    call = triggers(doc)["workflow_call"]
    assert set(triggers(doc)) == {"workflow_call"}
    assert {"role-arn", "python-version", "keyrotor-ref", "resume", "args"} <= set(call["inputs"])
    assert call["inputs"]["role-arn"]["required"] is True
    assert set(call["secrets"]) == {"KEYROTOR_SECRETS_TOKEN"}, "filled from the environment"
    assert "changes_present" in call["outputs"]
    (job,) = doc["jobs"].values()
    assert environment(job) == "keyrotor"
    keyrotor = next(s for s in job["steps"] if s.get("name") == "Check out keyrotor")
    assert keyrotor["with"]["repository"] == (
        "${{ inputs.keyrotor-repository || job.workflow_repository }}"
    )
    assert keyrotor["with"]["ref"] == "${{ inputs.keyrotor-ref || job.workflow_sha }}"
    install = next(s for s in job["steps"] if s.get("name") == "Install keyrotor")
    assert install["uses"] == "./" + keyrotor["with"]["path"], "the hashed install of the action"
    run = next(s for s in job["steps"] if s.get("id") == "keyrotor")
    assert run["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    assert run["env"]["KEYROTOR_SECRETS_TOKEN"] == "${{ secrets.KEYROTOR_SECRETS_TOKEN }}"
    assert call["inputs"]["guardrails"]["default"] == "ssm:/keyrotor/guardrails"
    assert run["env"]["KEYROTOR_GUARDRAILS"] == "${{ inputs.guardrails }}"
    assert job["concurrency"]["cancel-in-progress"] is False
    assert job["concurrency"]["group"] != "keyrotor-reconcile", "would deadlock with the caller's"
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0


def test_the_action_is_composite_and_installs_keyrotor_from_its_own_checkout() -> None:
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"args", "output-file", "python-version"}
    assert action["outputs"]["changes_present"]["value"] == (
        "${{ steps.run.outputs.changes_present }}"
    )
    run_steps = [s for s in action["runs"]["steps"] if "run" in s]
    assert all(s["shell"] == "bash" for s in run_steps), "composite run steps need a shell"
    install = next(s for s in run_steps if "pip install" in s["run"])
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    # Inputs reach scripts through the environment only, never spliced into the script.
    assert not any("${{" in s["run"] for s in run_steps)


def test_the_action_splits_args_without_a_shell_and_keeps_workflow_commands_out_of_the_file(
    tmp_path: Path,
) -> None:
    """Run the action's script with a stand-in `keyrotor` that echoes its arguments and prints
    an ::add-mask:: line, as keyrotor does for each secret under GitHub Actions."""
    (script,) = [s["run"] for s in load(ACTION)["runs"]["steps"] if s.get("id") == "run"]
    fake = tmp_path / "bin" / "keyrotor"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/sh\necho "::add-mask::s3cr3t"\nfor a in "$@"; do echo "arg=$a"; done\nexit 2\n'
    )
    fake.chmod(0o755)
    out = tmp_path / "plan.md"
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env={
            "PATH": f"{fake.parent}:/usr/bin:/bin",
            "KEYROTOR_ARGS": "plan  --format markdown $HOME *\n",
            "OUTPUT_FILE": str(out),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, "keyrotor's exit code is the step's"
    assert out.read_text().splitlines() == [
        "arg=plan",
        "arg=--format",
        "arg=markdown",
        "arg=$HOME",
        "arg=*",
    ]
    assert "::add-mask::s3cr3t" in result.stdout.splitlines()


# --- the hashed lock file of the action's installation ---------------------------------------


def test_the_lock_pins_every_runtime_dependency_and_build_requirement_of_keyrotor() -> None:
    """`make lock` regenerates it; this keeps pyproject.toml and the lock from drifting apart."""
    project = tomllib.loads(PYPROJECT.read_text())
    wanted = [
        Requirement(r)
        for r in project["project"]["dependencies"] + project["build-system"]["requires"]
    ]
    pins = locked()
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in {LOCK.name}: run `make lock`"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{LOCK.name} pins {name}=={version}, which {requirement} excludes: run `make lock`"
        )


def test_every_pin_of_the_lock_is_exact_and_has_hashes() -> None:
    pins = locked()
    assert len(pins) > 10, "the lock holds the dependencies of the dependencies as well"
    assert all(hashes for _, hashes in pins.values())


# --- the action's installation cannot be hijacked by the checkout ----------------------------


def action_step(name: str) -> dict[str, Any]:
    action_steps: list[dict[str, Any]] = load(ACTION)["runs"]["steps"]
    (step,) = [s for s in action_steps if s.get("name") == name]
    return step


def test_isolated_python_imports_no_pip_py_from_the_working_directory_or_pythonpath(
    tmp_path: Path,
) -> None:
    """Why the action runs `python -I -m pip`: a plain `python -m pip` in a checkout that holds a
    `pip.py` runs that file instead of pip."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "pip.py").write_text("print('the checkout ran')\n")

    def pip_version(*flags: str, cwd: Path, env: dict[str, str]) -> str:
        return subprocess.run(
            [sys.executable, *flags, "-m", "pip", "--version"],
            cwd=cwd,
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    assert pip_version(cwd=checkout, env={}) == "the checkout ran\n"
    assert pip_version(cwd=tmp_path, env={"PYTHONPATH": str(checkout)}) == "the checkout ran\n"
    assert pip_version("-I", cwd=checkout, env={}).startswith("pip ")
    assert pip_version("-I", cwd=tmp_path, env={"PYTHONPATH": str(checkout)}).startswith("pip ")


def test_the_action_installs_with_isolated_pip_from_outside_the_workspace(tmp_path: Path) -> None:
    """Run the action's install script with a stand-in `python` that records where and how it
    is called, in a workspace whose checkout holds a `pip.py`."""
    script = action_step("Install keyrotor")["run"]
    workspace, action_path, temp, shims = (tmp_path / d for d in ("ws", "action", "tmp", "bin"))
    for folder in (workspace, action_path, temp, shims):
        folder.mkdir()
    (workspace / "pip.py").write_text("raise SystemExit('the checkout ran')\n")
    calls = tmp_path / "calls"
    (shims / "python").write_text(f'#!/bin/sh\nprintf "%s|%s\\n" "$PWD" "$*" >> {calls}\n')
    (shims / "keyrotor").write_text("#!/bin/sh\necho keyrotor 0.0\n")
    for shim in shims.iterdir():
        shim.chmod(0o755)
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env={
            "PATH": f"{shims}:/usr/bin:/bin",
            "ACTION_PATH": str(action_path),
            "GITHUB_WORKSPACE": str(workspace),
            "RUNNER_TEMP": str(temp),
            "GITHUB_ENV": str(tmp_path / "github-env"),
        },
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    invocations = [line.split("|", 1) for line in calls.read_text().splitlines()]
    assert [argv.split()[:4] for _, argv in invocations] == [["-I", "-m", "pip", "install"]] * 2
    assert not any(Path(cwd).is_relative_to(workspace) for cwd, _ in invocations)
    (_, dependencies), (_, keyrotor) = invocations
    assert "--require-hashes" in dependencies.split()
    assert f"-r {action_path}/requirements/action.lock" in dependencies
    assert keyrotor.endswith(f" {action_path}")
    assert {"--no-index", "--no-deps"} <= set(keyrotor.split()), "nothing unhashed is fetched"
    assert (tmp_path / "github-env").read_text() == f"KEYROTOR_INSTALLED_FROM={action_path}\n"


def test_every_pip_of_the_action_is_isolated_and_hashed() -> None:
    action_scripts = "\n".join(s.get("run", "") for s in load(ACTION)["runs"]["steps"])
    pips = re.findall(r"^(.*)\bpip install", action_scripts, flags=re.M)
    assert pips and all(prefix.strip() == "python -I -m" for prefix in pips), pips
    assert "--require-hashes" in action_scripts
    assert LOCK.exists()


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("keyrotor-*.yml")), ids=lambda p: p.name)
def test_the_workflows_install_keyrotor_only_through_the_action(path: Path) -> None:
    assert "pip install" not in content(path)


# --- only keyrotor changes status/ and approvals/ (the plan workflow's protected-paths job) -----

BOT = "github-actions[bot]"
GIT_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/nonexistent",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "a",
    "GIT_AUTHOR_EMAIL": "a@example.com",
    "GIT_COMMITTER_NAME": "a",
    "GIT_COMMITTER_EMAIL": "a@example.com",
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True)


def commit(repo: Path, files: dict[str, str | None], message: str) -> None:
    """Write (or, for None, delete) files and commit them."""
    for name, text in files.items():
        path = repo / name
        if text is None:
            git(repo, "rm", "-q", name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)


def pull_request_checkout(tmp_path: Path, change: dict[str, str | None]) -> Path:
    """A repository checked out as actions/checkout does for a pull request: the merge commit of
    the pull request's branch onto the base branch (which got a status commit meanwhile)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(
        repo,
        {
            "manifests/ci.yaml": "kind: RotationPolicy\n",
            "status/ci/123456789012/deploy-bot.yaml": "phase: Current\n",
            "status/ci/123456789012/backup-bot.yaml": "phase: Current\n",
            "approvals/ci.yaml": "approved: []\n",
        },
        "initial",
    )
    git(repo, "checkout", "-q", "-b", "pr")
    commit(repo, change, "the pull request's change")
    git(repo, "checkout", "-q", "main")
    commit(repo, {"status/ci/123456789012/backup-bot.yaml": "phase: Due\n"}, "keyrotor")
    git(repo, "checkout", "-q", "--detach", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge pr into main", "pr")
    return repo


def check_protected_paths(
    repo: Path, author: str, sender: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(PROTECTED_PATHS)],
        cwd=repo,
        env={**GIT_ENV, "PR_AUTHOR": author, "PR_SENDER": sender or author, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("path", ["status/ci/123456789012/deploy-bot.yaml", "approvals/ci.yaml"])
def test_a_persons_pull_request_that_changes_status_or_approvals_fails(
    tmp_path: Path, path: str
) -> None:
    repo = pull_request_checkout(tmp_path, {path: "phase: Current  # edited by hand\n"})
    result = check_protected_paths(repo, author="alice")
    assert result.returncode == 1
    assert result.stdout.startswith(f"::error file={path}::{path} is written by keyrotor only")


def test_a_persons_pull_request_that_adds_a_file_under_status_fails(tmp_path: Path) -> None:
    repo = pull_request_checkout(tmp_path, {"status/ci/123456789012/new-bot.yaml": "x: 1\n"})
    assert check_protected_paths(repo, author="alice").returncode == 1


def test_a_persons_pull_request_that_moves_a_file_out_of_approvals_fails(tmp_path: Path) -> None:
    repo = pull_request_checkout(
        tmp_path, {"approvals/ci.yaml": None, "manifests/approvals-ci.yaml": "approved: []\n"}
    )
    result = check_protected_paths(repo, author="alice")
    assert result.returncode == 1
    assert "file=approvals/ci.yaml::" in result.stdout


def test_a_persons_pull_request_that_changes_only_manifests_passes(tmp_path: Path) -> None:
    """Although the base branch got a status commit since the pull request's branch was cut."""
    repo = pull_request_checkout(tmp_path, {"manifests/ci.yaml": "kind: RotationPolicy # v2\n"})
    result = check_protected_paths(repo, author="alice")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "::error" not in result.stdout


@pytest.mark.parametrize("bot", [BOT, "keyrotor-app[bot]"])
def test_keyrotors_own_pull_request_may_change_approvals(tmp_path: Path, bot: str) -> None:
    repo = pull_request_checkout(tmp_path, {"approvals/ci.yaml": "approved: [deploy-bot]\n"})
    env = {} if bot == BOT else {"KEYROTOR_BOT_LOGIN": bot}
    result = check_protected_paths(repo, author=bot, **env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_pull_request_by_another_bot_that_changes_approvals_fails(tmp_path: Path) -> None:
    repo = pull_request_checkout(tmp_path, {"approvals/ci.yaml": "approved: [deploy-bot]\n"})
    result = check_protected_paths(repo, author="dependabot[bot]")
    assert result.returncode == 1


def test_a_person_pushing_to_keyrotors_pull_request_fails(tmp_path: Path) -> None:
    """On `synchronize` the sender is who pushed: the branch is keyrotor's, the commit is not."""
    repo = pull_request_checkout(tmp_path, {"approvals/ci.yaml": "approved: [everyone]\n"})
    result = check_protected_paths(repo, author=BOT, sender="mallory")
    assert result.returncode == 1
    assert f"{BOT} (opened) and mallory (pushed)" in result.stdout


def test_a_file_name_with_a_line_break_cannot_inject_a_workflow_command(tmp_path: Path) -> None:
    repo = pull_request_checkout(tmp_path, {"status/x\n::add-mask::y": "z\n"})
    result = check_protected_paths(repo, author="alice")
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("::error file=status/x%0A%3A%3Aadd-mask%3A%3Ay::status/x%0A::add-mask")


def test_the_check_fails_closed_without_the_authors_login(tmp_path: Path) -> None:
    repo = pull_request_checkout(tmp_path, {"manifests/ci.yaml": "kind: RotationPolicy # v2\n"})
    result = check_protected_paths(repo, author="")
    assert result.returncode != 0
    assert "PR_AUTHOR" in result.stderr


def test_the_protected_paths_action_runs_the_script_with_the_events_logins() -> None:
    action = load(PROTECTED_PATHS_ACTION)
    assert action["runs"]["using"] == "composite"
    assert action["inputs"]["bot-login"]["default"] == BOT
    (step,) = action["runs"]["steps"]
    assert step["env"] == {
        "PR_AUTHOR": "${{ github.event.pull_request.user.login }}",
        "PR_SENDER": "${{ github.event.sender.login }}",
        "KEYROTOR_BOT_LOGIN": "${{ inputs.bot-login }}",
    }
    script = step["run"].replace("$GITHUB_ACTION_PATH", str(PROTECTED_PATHS_ACTION.parent))
    assert Path(script.split('"')[1]).resolve() == PROTECTED_PATHS
