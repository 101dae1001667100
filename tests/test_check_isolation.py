"""A hostile `command` check finds none of keyrotor's credentials and leaves nothing behind.

Each test starts a stand-in for keyrotor (`tests/support/check_parent.py`) as a process of its
own, holding made-up credentials in its environment and in memory, and has it run the spy
(`tests/support/spy_check.py`) as a check of a real Git repository. The spy reads its own
environment and every ancestor's /proc/PID/environ, memory and open files, plants hooks in
`.git/hooks/`, and leaves a process behind. The test then looks for every credential in
everything the spy could write, and checks that the repository is unchanged and no hook runs.

Who runs keyrotor matters. As root (here, and in many CI containers) keyrotor runs the check
as `nobody`: the root tests run the stand-in as root. A check running as keyrotor's own user
is the case harden_process() is for: the same-user tests run the stand-in as an ordinary user
(as root, `setpriv --reuid=nobody`, so neither process holds CAP_SYS_PTRACE, CAP_SYS_ADMIN or
CAP_PERFMON, which would let a check read any process whatever keyrotor does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.checks import public_dir, python_for_checks, tree, wait_dead

SUPPORT = Path(__file__).parent / "support"
NOBODY = 65534

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="process hardening and /proc are Linux-only; elsewhere keyrotor says it is not hardened",
)
pytestmark = linux_only


@dataclass
class Keyrotor:
    """How the stand-in for keyrotor is started: a command prefix, its Python, its environment."""

    prefix: list[str]
    python: str
    env: dict[str, str]


def as_root() -> Keyrotor:
    if os.geteuid() != 0:
        pytest.skip("only root can run a check as another user; run the tests as root to see it")
    return Keyrotor([], sys.executable, {})


def as_an_ordinary_user(base: Path) -> Keyrotor:
    """keyrotor as an unprivileged user, which then owns the repository, as a CI checkout."""
    if os.geteuid() != 0:
        return Keyrotor([], sys.executable, {})
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run keyrotor as an ordinary user here")
    home = base / "home"
    home.mkdir()
    repo = base / "policies"
    for path in [base, home, repo, *repo.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    here = Path(__file__).resolve().parents[1]
    site = sysconfig.get_paths()["purelib"]  # keyrotor's dependencies, for another Python
    return Keyrotor(
        [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"],
        python_for_checks(),
        {"PYTHONPATH": f"{here}{os.pathsep}{site}", "HOME": str(home)},
    )


@dataclass
class Setup:
    base: Path
    repo: Path
    bare: Path
    loot: Path

    def snapshot(self) -> dict[str, str]:
        return tree(self.repo)

    def run(self, keyrotor: Keyrotor, *options: str, guess: bool = False) -> Any:
        argv = [python_for_checks(), "scripts/spy.py", str(self.loot)]
        if guess:
            argv.append(str(self.repo))
        command = [
            *keyrotor.prefix,
            keyrotor.python,
            str(SUPPORT / "check_parent.py"),
            *options,
            str(self.repo),
            "--",
            *argv,
        ]
        env = {**os.environ, **keyrotor.env}
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def found(self) -> list[dict[str, Any]]:
        reports = sorted(self.loot.glob("found-*.json"))
        assert reports, "the spy ran and reported"
        return [json.loads(p.read_text()) for p in reports]

    def everything_the_check_wrote(self) -> list[tuple[str, bytes]]:
        return [(str(p), p.read_bytes()) for p in sorted(self.loot.rglob("*")) if p.is_file()]

    def commit_and_push(self) -> None:
        """What keyrotor does next in the repository, with hooks as git runs them by default."""
        (self.repo / "status.yaml").write_text("phase: Current\n")
        git = ["git", "-c", "safe.directory=*", "-C", str(self.repo)]
        subprocess.run([*git, "add", "status.yaml"], check=True, capture_output=True)
        subprocess.run([*git, "commit", "-qm", "status"], check=True, capture_output=True)
        subprocess.run([*git, "push", "-q", "origin", "main"], check=True, capture_output=True)


@pytest.fixture
def setup() -> Iterator[Setup]:
    base = public_dir("keyrotor-isolation-", 0o755)
    loot = public_dir("keyrotor-loot-", 0o777)
    repo, bare = base / "policies", base / "origin.git"
    git = ["git", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run([*git, "init", "-q", str(repo)], check=True)
    (repo / "scripts").mkdir()
    shutil.copy(SUPPORT / "spy_check.py", repo / "scripts" / "spy.py")
    (repo / "manifests").mkdir()
    (repo / "manifests" / "p.yaml").write_text("kind: RotationPolicy\n")
    (repo / "untracked-notes.txt").write_text("not in git\n")
    run = ["git", "-C", str(repo)]
    subprocess.run([*run, "config", "user.name", "Test User"], check=True)
    subprocess.run([*run, "config", "user.email", "test@example.com"], check=True)
    subprocess.run([*run, "add", "scripts", "manifests"], check=True)
    subprocess.run([*run, "commit", "-qm", "policies"], check=True)
    subprocess.run([*run, "remote", "add", "origin", str(bare)], check=True)
    yield Setup(base=base, repo=repo, bare=bare, loot=loot)
    for path in (base, loot):
        shutil.rmtree(path, ignore_errors=True)


def leaks(setup: Setup, outcome: dict[str, Any], values: list[str]) -> list[str]:
    """Where any of `values` shows: in what the check wrote, or in keyrotor's outcome."""
    places = [*setup.everything_the_check_wrote()]
    places.append(("message", outcome["message"].encode()))
    places.append(("output", outcome["output"].encode()))
    places.append(("tamper", outcome.get("tamper", "").encode()))
    return [
        f"{secret[:12]}... in {where}"
        for secret in values
        for where, data in places
        if secret.encode() in data
    ]


def assert_nothing_left_behind(setup: Setup, before: dict[str, str]) -> None:
    (report,) = setup.found()
    assert not report["cwd_had_git"], "the check ran without a .git of its own"
    assert Path(report["cwd"]).resolve() != setup.repo.resolve()
    assert not Path(report["cwd"]).exists(), "the copy the check ran in is removed"
    assert "scripts/spy.py" in report["cwd_files"]
    assert "untracked-notes.txt" not in report["cwd_files"]
    assert setup.snapshot() == before, "the real repository is unchanged"
    assert wait_dead(report["left_behind"]), "a process the check left behind is killed"
    setup.commit_and_push()
    assert not list(setup.loot.glob("hook-ran*")), "no hook the check planted ran"


# --- the check runs as keyrotor's own user -----------------------------------------------------


def test_a_same_user_check_finds_none_of_keyrotors_credentials(setup: Setup) -> None:
    keyrotor = as_an_ordinary_user(setup.base)
    before = setup.snapshot()
    outcome = setup.run(keyrotor)
    assert not outcome["passed"]
    (report,) = setup.found()
    assert report["uid"] == (NOBODY if keyrotor.prefix else os.geteuid()), "keyrotor's own user"
    assert leaks(setup, outcome, [*outcome["keyrotor_secrets"].values()]) == []
    assert leaks(setup, outcome, [outcome["new_key_secret"]]) == []
    assert_nothing_left_behind(setup, before)


def test_a_same_user_check_with_the_new_key_has_it_and_nothing_else(setup: Setup) -> None:
    outcome = setup.run(as_an_ordinary_user(setup.base), "--with-new-key")
    (report,) = setup.found()
    assert report["env"]["AWS_SECRET_ACCESS_KEY"] == outcome["new_key_secret"]
    assert leaks(setup, outcome, [*outcome["keyrotor_secrets"].values()]) == []
    assert outcome["new_key_secret"] not in outcome["message"] + outcome["output"]


def test_the_spy_finds_the_credentials_of_a_parent_that_is_not_hardened(setup: Setup) -> None:
    """The spy works: without harden_process, a same-user check reads keyrotor's environment."""
    outcome = setup.run(as_an_ordinary_user(setup.base), "--no-harden")
    secret = outcome["keyrotor_secrets"]["AWS_SECRET_ACCESS_KEY"]
    assert any(secret.encode() in data for _, data in setup.everything_the_check_wrote())


def test_a_same_user_check_that_writes_keyrotors_repository_stops_keyrotor(setup: Setup) -> None:
    """As keyrotor's own user the check can write the real repository, found by its path."""
    outcome = setup.run(as_an_ordinary_user(setup.base), guess=True)
    (report,) = setup.found()
    assert set(report["real_repo_hooks"].values()) <= {"planted", "changed"}
    assert "changed keyrotor's repository" in outcome["tamper"]
    assert "(git config, hooks)" in outcome["tamper"]
    assert leaks(setup, outcome, [*outcome["keyrotor_secrets"].values()]) == []


# --- keyrotor runs as root ---------------------------------------------------------------------


def test_as_root_a_check_runs_as_nobody_without_capabilities(setup: Setup) -> None:
    keyrotor = as_root()
    before = setup.snapshot()
    outcome = setup.run(keyrotor, guess=True)
    (report,) = setup.found()
    assert report["uid"] == NOBODY
    status = dict(line.split(":\t", 1) for line in report["status"].splitlines() if ":\t" in line)
    for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(status[caps], 16) == 0, caps
    assert status["Groups"].strip() == ""
    assert status["NoNewPrivs"] == "1"
    assert all(v.startswith("<denied") for v in report["real_repo_hooks"].values())
    assert leaks(setup, outcome, [*outcome["keyrotor_secrets"].values()]) == []
    assert leaks(setup, outcome, [outcome["new_key_secret"]]) == []
    assert_nothing_left_behind(setup, before)


def test_as_root_even_an_unhardened_parent_is_out_of_a_checks_reach(setup: Setup) -> None:
    """Another uid without capabilities cannot read root's processes, dumpable or not."""
    outcome = setup.run(as_root(), "--no-harden")
    assert leaks(setup, outcome, [*outcome["keyrotor_secrets"].values()]) == []
