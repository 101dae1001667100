"""`keyrotor demo`: the whole lifecycle, run in process as a newcomer (and CI) runs it.

The demo starts its own sandbox server and Git repositories; one happy run is shared by most
tests here because a run takes seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import boto3
import pytest

from controller.cli import main
from controller.demo import SCENARIOS, DemoResult, run_demo
from controller.demo.app import Application, schedule
from controller.demo.scenario import START, USERS, Scenario
from controller.demo.timeline import OPERATOR, PHASE, WAITING, Event
from tests.support.network import guarded_connect, guarded_connect_ex

# Each test here starts a sandbox server process of its own and runs a whole demo.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@dataclass(frozen=True)
class Run:
    result: DemoResult
    out: str
    err: str
    kept: Path
    environ_before: dict[str, str]
    environ_after: dict[str, str]
    default_session_kept: bool


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """The conftest network guard, for module-scoped fixtures (it is function-scoped there)."""
    import socket

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guarded_connect)
        mp.setattr(socket.socket, "connect_ex", guarded_connect_ex)
        yield


@pytest.fixture(scope="module")
def happy(tmp_path_factory: pytest.TempPathFactory) -> Run:
    kept = tmp_path_factory.mktemp("demo") / "kept"
    out, err = io.StringIO(), io.StringIO()
    before = dict(os.environ)
    session = boto3.DEFAULT_SESSION
    with _loopback_only(), contextlib.redirect_stderr(err):
        result = run_demo("happy", seed=1, keep=kept, out=out)
    return Run(
        result,
        out.getvalue(),
        err.getvalue(),
        kept,
        before,
        dict(os.environ),
        boto3.DEFAULT_SESSION is session,
    )


def _phases(result: DemoResult, user: str) -> list[Event]:
    return [e for e in result.events if e.user == user and e.kind == PHASE]


def _timeline(out: str) -> list[str]:
    """The timeline lines of the demo's output, key ids (random in every run) masked."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Timeline"))
    end = next(i for i, line in enumerate(lines) if line.startswith("$ keyrotor status"))
    return [re.sub(r"AKIA[A-Z0-9]{16}", "AKIA*", line) for line in lines[start:end] if line]


# --- the happy path ------------------------------------------------------------------------


def test_the_happy_path_passes_and_goes_through_every_expected_transition(happy: Run) -> None:
    result = happy.result
    assert result.ok, result.problems
    assert result.states == {u: list(s) for u, s in SCENARIOS["happy"].expected.items()}
    assert "Demo passed" in happy.out
    assert "DEMO FAILED" not in happy.out


def test_no_application_call_fails_on_the_happy_path(happy: Run) -> None:
    assert happy.result.calls > 100
    assert happy.result.failed_calls == 0
    assert not [e for e in happy.result.events if e.kind not in (PHASE, WAITING)]
    assert re.search(r"total\s+\d+ calls\s+0 failed", happy.out)


def test_old_keys_are_deactivated_a_day_after_storing_once_the_new_key_is_used(
    happy: Run,
) -> None:
    for user in ("web-api", "billing-worker", "report-bot"):
        events = _phases(happy.result, user)
        created = [e.at for e in events if e.after.startswith("AwaitingUse")]
        deactivated = [e for e in events if e.after == "Deactivated"]
        deleted = [e.at for e in events if e.before == "Deactivated"]
        assert len(created) == len(deactivated) == len(deleted) >= 1
        for stored, deact, gone in zip(created, deactivated, deleted, strict=True):
            assert deact.at - stored >= timedelta(days=1)
            assert "new key" in deact.reason and "used at" in deact.reason
            assert "idle for 1d" in deact.reason
            assert gone - deact.at >= timedelta(days=7)


def test_the_timeline_says_why_each_user_is_where_it_is(happy: Run) -> None:
    reasons = {(e.user, e.after): e.reason for e in happy.result.events if e.kind == PHASE}
    assert "not created by keyrotor" in reasons[("legacy-etl", "Blocked")] or (
        "keyrotor manages neither" in reasons[("legacy-etl", "Blocked")]
    )
    assert "needs an approved pull request" in reasons[("deploy-bot", "AwaitingApproval")]
    assert "maxKeyAge is 90d" in reasons[("deploy-bot", "AwaitingApproval OVERDUE")]
    assert "key is 95d old" in reasons[("report-bot", "AwaitingUse OVERDUE")]
    waits = [e for e in happy.result.events if e.kind == WAITING]
    assert waits and all("must be idle for 1d" in e.reason for e in waits)


def test_it_ends_with_status_history_the_status_commits_and_the_tally(happy: Run) -> None:
    out = happy.out
    for heading in (
        "$ keyrotor status --now 2026-04-11T00:00:00Z",
        "$ keyrotor history",
        "$ git log --oneline -- status/",
        "Application",
    ):
        assert heading in out
    assert "AwaitingApproval OVERDUE" in out
    assert "keyrotor(service-bots): create key for web-api" in out
    assert out.count("create-key ") >= 5  # five rotations in the history table


def test_plain_output_has_no_terminal_control_codes(happy: Run) -> None:
    assert "\r" not in happy.out and "\x1b" not in happy.out


def test_the_environment_is_restored(happy: Run) -> None:
    assert happy.environ_after == happy.environ_before
    assert happy.default_session_kept


# --- no secret leaks -------------------------------------------------------------------------


def test_no_secret_reaches_the_output_or_the_kept_repositories(happy: Run) -> None:
    secrets = happy.result.secrets
    # Two keys per seeded user but deploy-bot (one), and five new keys keyrotor created.
    assert len(secrets) >= len(USERS) + 1 + 5
    for text in (happy.out, happy.err, repr(happy.result)):
        assert not [s for s in secrets if s in text]
    blobs = [
        subprocess.run(
            ["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
            check=True,
            capture_output=True,
        ).stdout
        for repo in (happy.kept / "origin.git", happy.kept / "work")
    ]
    files = [p.read_bytes() for p in happy.kept.rglob("*") if p.is_file()]
    assert len(blobs[0]) > 1000
    for blob in blobs + files:
        assert not [s for s in secrets if s.encode() in blob]


def test_kept_repositories_answer_status_and_history(
    happy: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    note = (happy.kept / "README-demo.txt").read_text()
    assert "keyrotor history" in note and "keyrotor status --now 2026-04-11T00:00:00Z" in note
    assert f"cd {happy.kept / 'work'}" in happy.out
    capsys.readouterr()
    assert main(["history", "--repo", str(happy.kept / "work"), "--format", "json"]) == 0
    entries = json.loads(capsys.readouterr().out)["entries"]
    steps = {(e["user"], e["action"]) for e in entries}
    assert ("web-api", "delete-key") in steps
    assert entries[-1]["time"] == "2026-01-01T00:00:01Z"  # commits carry the simulated time
    assert main(["status", "--repo", str(happy.kept / "work"), "--format", "json"]) == 0


# --- reproducibility -------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_timeline_through_the_cli(
    happy: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["demo", "--seed", "1"]) == 0
    again = capsys.readouterr().out
    assert _timeline(again) == _timeline(happy.out)
    assert len(_timeline(again)) > 20


def test_the_seed_chooses_the_application_schedule() -> None:
    def plan_of(seed: int) -> list[tuple[timedelta, ...]]:
        return [
            (i.refresh_every, i.refresh_offset, i.call_every, i.call_offset)
            for i in schedule(USERS, seed=seed)
        ]

    assert plan_of(1) == plan_of(1)
    assert plan_of(1) != plan_of(2)
    for inst in schedule(USERS, seed=3):
        assert timedelta(hours=1) <= inst.refresh_every <= timedelta(hours=6)
        assert timedelta(hours=1) <= inst.call_every <= timedelta(hours=2)


# --- the straggler ---------------------------------------------------------------------------


def test_a_straggler_holds_deactivation_until_it_is_restarted(
    capfd: pytest.CaptureFixture[str],
) -> None:
    result = run_demo("straggler", seed=5)
    out, err = capfd.readouterr()  # file descriptors: the sandbox server's stderr too
    assert result.ok, result.problems
    assert result.failed_calls == 0
    straggler = SCENARIOS["straggler"].straggler
    assert straggler is not None
    events = [e for e in result.events if e.user.startswith("billing-worker")]
    created = next(e for e in events if e.after == "AwaitingUse")
    waiting = next(e for e in events if e.kind == WAITING)
    overdue = next(e for e in events if e.after == "AwaitingUse OVERDUE")
    restart = next(e for e in events if e.kind == OPERATOR)
    deactivated = next(e for e in events if e.after == "Deactivated")
    assert created.at < waiting.at < overdue.at < restart.at < deactivated.at
    assert restart.at == straggler.restart_at
    # The plan says why it waits: the old key is in use.
    assert "last used" in waiting.reason and "must be idle for 1d" in waiting.reason
    assert deactivated.at - restart.at >= timedelta(days=1)
    assert "$ keyrotor plan --policy service-bots" in out
    assert ". waiting: old key" in out
    assert len(result.secrets) >= 8
    assert not [s for s in result.secrets if s in out or s in err]


# --- the demo checks itself ------------------------------------------------------------------


def _short(monkeypatch: pytest.MonkeyPatch) -> None:
    """The happy scenario cut to two days; it still expects the whole timeline, so it fails."""
    short: Scenario = replace(SCENARIOS["happy"], days=2)
    monkeypatch.setitem(SCENARIOS, "happy", short)


def test_a_failed_call_or_a_missing_transition_fails_the_demo_with_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cut to two days, and someone deactivates legacy-etl's key behind keyrotor's back."""
    short: Scenario = replace(SCENARIOS["happy"], days=2)
    monkeypatch.setitem(SCENARIOS, "happy", short)
    boot = Application.boot

    def boot_then_break(self: Application, at: datetime) -> None:
        boot(self, at)
        key = self.instance("legacy-etl/1").key_id
        iam = self.aws.client("iam")
        iam.update_access_key(UserName="legacy-etl", AccessKeyId=str(key), Status="Inactive")
        iam.close()

    monkeypatch.setattr(Application, "boot", boot_then_break)
    assert main(["demo"]) == 1
    out = capsys.readouterr().out
    assert "Demo passed" not in out
    explanation = out[out.index("DEMO FAILED") :]
    assert "web-api: expected the states Current -> AwaitingUse -> Deactivated -> Current" in (
        explanation
    )
    assert "but saw Current" in explanation
    assert "application call(s) failed; the first: legacy-etl/1" in explanation
    assert "CALL FAILED" in out and "InvalidClientTokenId" in out


def test_the_scenario_flag_is_offered(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--scenario {happy,straggler}" in capsys.readouterr().out


def test_keep_refuses_a_directory_holding_a_previous_demo(
    happy: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--keep", str(happy.kept)]) == 1
    assert "already exists there" in capsys.readouterr().err


def test_day_zero_is_the_sandbox_start() -> None:
    assert START.isoformat() == "2026-01-01T00:00:00+00:00"
