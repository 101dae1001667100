"""A hostile `command` check in a real `keyrotor apply` finds none of keyrotor's credentials.

`tests/test_check_isolation.py` tests the pieces with a stand-in for keyrotor; here the CLI
itself (`python -m controller apply`, as its own process) runs the spy
(`tests/support/spy_check.py`) as a manifest's check at the point a rotation deactivates the old
key. keyrotor holds the sandbox admin's AWS secret key, a GitHub token and a secrets token, and
reads the new key's secret from its target. The spy reads its own environment, every ancestor's
/proc/PID/environ, memory and open files, and plants hooks in `.git/hooks/` of its working
directory (and, given its path, of keyrotor's checkout).

keyrotor runs as an ordinary user, as a CI job does, so the check runs as that same user: what
`harden_process()` is for. (When the tests run as root, keyrotor is started as `nobody` with
`setpriv`, without capabilities; the test process stays out of the check's reach. Otherwise
the test process is an ancestor of the same user, and its own memory, which holds every secret
the test made, is not looked at.)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.sandbox.config import DEFAULT_START as T0
from tests.support.checks import public_dir, python_for_checks
from tests.support.world import MANIFEST, World, advance, iso

SUPPORT = Path(__file__).parent / "support"
HERE = Path(__file__).resolve().parents[1]
NOBODY = 65534
CREATE_AT = advance(T0, days=80)
CHECK_AT = advance(T0, days=81, hours=3)

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self"), reason="the spy reads /proc; process hardening is Linux's"
)


def ancestors_of(pid: int) -> set[int]:
    found = set()
    while pid > 1:
        found.add(pid)
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return found


@dataclass
class Run:
    base: Path
    repo: Path
    origin: Path
    loot: Path
    prefix: list[str]
    env: dict[str, str]
    held: dict[str, str]

    def apply(self, world: World) -> subprocess.CompletedProcess[str]:
        world.aws.set_clock(CHECK_AT)
        argv = ["-m", "controller", "apply", "--repo", str(self.repo), "--now", iso(CHECK_AT)]
        return subprocess.run(
            [*self.prefix, python_for_checks(), *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def loot_files(self) -> list[tuple[str, bytes]]:
        """Everything the spy wrote, but for what it read of the test process and its parents,
        which are not keyrotor (and hold every secret this test made, in memory)."""
        harness = ancestors_of(os.getpid())
        files = []
        for path in sorted(self.loot.rglob("*")):
            if not path.is_file():
                continue
            if path.name.startswith("mem-") and int(path.stem.rsplit("-", 1)[1]) in harness:
                continue
            data = path.read_bytes()
            if path.name.startswith("found-"):
                report = json.loads(data)
                report = {
                    k: v for k, v in report.items() if k.split("/")[0] not in map(str, harness)
                }
                data = json.dumps(report).encode()
            files.append((str(path), data))
        return files

    def reports(self) -> list[dict[str, Any]]:
        found = [json.loads(p.read_text()) for p in sorted(self.loot.glob("found-*.json"))]
        assert found, "the spy ran and reported"
        return found

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(self.origin), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(repo), *args], check=True, capture_output=True
    )


@pytest.fixture
def rotating(world: World) -> Iterator[World]:
    """A rotation whose new key was created a day ago: the next run deactivates the old key."""
    world.seed_policy()
    world.seed_user(at=T0)
    assert world.cli("apply", now=CREATE_AT) == 0
    yield world


def start(world: World, *, guess_repo: bool) -> Run:
    """keyrotor's checkout (where every user can reach it), a spy check in its manifest, and
    the environment of a CI job: AWS credentials and GitHub tokens."""
    base = public_dir("keyrotor-wiring-", 0o755)
    loot = public_dir("keyrotor-wiring-loot-", 0o777)
    origin, repo, home = base / "origin.git", base / "policies", base / "home"
    subprocess.run(["git", "clone", "-q", "--bare", str(world.bare), str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(repo)], check=True)
    home.mkdir()
    (repo / "scripts").mkdir()
    shutil.copy(SUPPORT / "spy_check.py", repo / "scripts" / "spy.py")
    run = [python_for_checks(), "scripts/spy.py", str(loot), *([str(repo)] if guess_repo else [])]
    manifest = MANIFEST + f"  checks:\n    - {{type: command, run: {json.dumps(run)}}}\n"
    (repo / "manifests" / "ci.yaml").write_text(manifest)
    git(repo, "add", "scripts", "manifests")
    git(repo, "-c", "user.name=Test", "-c", "user.email=t@example.com", "commit", "-qm", "spy")
    git(repo, "push", "-q", "origin", "main")
    held = {
        "AWS_SECRET_ACCESS_KEY": world.aws.environ()["AWS_SECRET_ACCESS_KEY"],
        "GITHUB_TOKEN": f"ghs_{secrets.token_hex(18)}",
        "KEYROTOR_SECRETS_TOKEN": f"github_pat_{secrets.token_hex(20)}",
    }
    env = {**world.aws.environ(), **held, "HOME": str(home)}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), sysconfig.get_paths()["purelib"]])
    env["GIT_CONFIG_GLOBAL"] = str(home / ".gitconfig")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = keyrotor\n\temail = keyrotor@example.com\n[safe]\n\tdirectory = *\n"
    )
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to run keyrotor as an ordinary user here")
        for path in [base, *base.rglob("*")]:
            os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return Run(base, repo, origin, loot, prefix, env, held)


@pytest.fixture
def cleanup() -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for run in runs:
        shutil.rmtree(run.base, ignore_errors=True)
        shutil.rmtree(run.loot, ignore_errors=True)


def leaks(places: list[tuple[str, bytes]], values: dict[str, str]) -> list[str]:
    return [
        f"{name} in {where}"
        for name, value in values.items()
        for where, data in places
        if value.encode() in data
    ]


def test_a_check_in_a_real_apply_finds_no_credential_and_no_hook_runs(
    rotating: World, cleanup: list[Run]
) -> None:
    run = start(rotating, guess_repo=False)
    cleanup.append(run)
    done = run.apply(rotating)
    new_key = rotating.secret_value()
    assert new_key is not None
    held = {**run.held, "new key": new_key["SecretAccessKey"]}

    (report,) = run.reports()
    assert report["uid"] == (NOBODY if run.prefix else os.geteuid()), "keyrotor's own user"
    assert set(report["hooks"].values()) == {"planted", "changed"}
    assert leaks(run.loot_files(), held) == [], "the check found none of keyrotor's secrets"
    assert done.returncode == 0, done.stderr
    assert not list(run.loot.glob("hook-ran*")), "no hook the check planted ran"

    status = run.git("show", "main:status/ci-deployers/123456789012/deploy-bot.yaml")
    (command,) = (c for c in yaml.safe_load(status)["checks"] if c["check"] == "command")
    assert command["state"] == "failed"
    assert "exited with code 1" in command["message"] and len(command["message"]) <= 200
    log = run.git("log", "-p", "--all")
    output = [("log", log.encode()), ("stdout", done.stdout.encode())]
    output.append(("stderr", done.stderr.encode()))
    assert leaks(output, held) == []
    logged = [line for line in done.stdout.splitlines() if ": check 1 output: " in line]
    assert len(logged) == 1, "the run's log has the masked output tail"
    tail = logged[0].split(": check 1 output: ", 1)[1]
    assert len(tail) > 1000 and tail[:200] not in status, "status has only a short message"


def test_a_check_that_writes_keyrotors_checkout_stops_the_run_before_git(
    rotating: World, cleanup: list[Run]
) -> None:
    run = start(rotating, guess_repo=True)
    cleanup.append(run)
    before = run.git("for-each-ref")
    done = run.apply(rotating)

    (report,) = run.reports()
    assert set(report["real_repo_hooks"].values()) == {"planted", "changed"}
    assert done.returncode == 1, done.stdout + done.stderr
    assert "changed keyrotor's repository" in done.stderr
    assert "nothing was committed or pushed" in done.stderr
    assert run.git("for-each-ref") == before, "nothing was pushed"
    assert not list(run.loot.glob("hook-ran*")), "no hook the check planted ran"
    new_key = rotating.secret_value()
    assert new_key is not None
    held = {**run.held, "new key": new_key["SecretAccessKey"]}
    assert leaks([*run.loot_files(), ("stderr", done.stderr.encode())], held) == []


def test_a_tampering_check_stops_the_run_before_any_git_command(
    rotating: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import controller.checks.runner
    import controller.gitops.store
    from controller.checks.command import CheckTamperError

    rotating.seed_policy(MANIFEST + "  checks:\n    - {type: command, run: [./x]}\n")
    calls: list[tuple[str, ...]] = []
    checked: list[int] = []
    for name in ("run_git", "run_git_bytes"):
        real = getattr(controller.gitops.store, name)

        def recording(checkout: object, *args: str, _real: object = real, **kw: object) -> object:
            calls.append(args)
            return _real(checkout, *args, **kw)  # type: ignore[operator]

        monkeypatch.setattr(controller.gitops.store, name, recording)

    def tampering(*args: object, **kwargs: object) -> object:
        checked.append(len(calls))
        raise CheckTamperError("the check ./x changed keyrotor's repository")

    monkeypatch.setattr(controller.checks.runner, "run_external_checks", tampering)
    capsys.readouterr()
    assert rotating.cli("apply", now=CHECK_AT) == 1
    assert checked and calls[checked[0] :] == [], "no git command after the check"
    err = capsys.readouterr().err
    assert "ci-deployers/deploy-bot: the check ./x changed keyrotor's repository" in err
    assert "nothing was committed or pushed" in err


def test_what_checks_get_is_read_once_at_the_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from controller.commands import run_context

    monkeypatch.setenv("KEYROTOR_CHECK_USER", "checker")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_token-for-this-test")
    monkeypatch.setenv("KEYROTOR_SECRETS_TOKEN", "github_pat_for-this-test")
    ctx = run_context(argparse.Namespace())
    monkeypatch.setenv("KEYROTOR_LATER", "after the edge")
    assert ctx.check_user == "checker"
    assert ctx.check_env is not None and "KEYROTOR_LATER" not in ctx.check_env
    held = ctx.held_secrets()
    assert "ghs_token-for-this-test" in held and "github_pat_for-this-test" in held
    monkeypatch.delenv("KEYROTOR_CHECK_USER")
    assert run_context(argparse.Namespace()).check_user == "nobody"


def test_the_sessions_say_which_secrets_they_resolved() -> None:
    from controller.aws import AwsSessions, new_session

    base = new_session(
        aws_access_key_id="AKIAKEYROTOR00000001",
        aws_secret_access_key="resolved-secret-key",
        aws_session_token="resolved-session-token",
    )
    held = AwsSessions(base).held_secrets()
    assert held == ("resolved-secret-key", "resolved-session-token")
