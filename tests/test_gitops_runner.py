"""Hardening of every git command keyrotor runs: no hooks, no fsmonitor, no credentials in the
environment, push credentials only for fetch and push and never in argv (issue 11).

A `git` wrapper put first on PATH records each invocation's argv and environment, then runs the
real git, so the tests see exactly what keyrotor hands to git.
"""

from __future__ import annotations

import base64
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.errors import GitError
from controller.gitops.history import read_history
from controller.gitops.repo import StatusRepo
from controller.gitops.runner import HARDENING, RemoteAuth, open_checkout
from controller.gitops.store import FileUpdate
from tests.support.gitremote import GitRemote, make_remote

REAL_GIT = shutil.which("git") or "git"
NOW = datetime(2026, 3, 1, tzinfo=UTC)
STATUS = "status/payments/111111111111/alice.yaml"
STEP = [("Keyrotor-Policy", "payments"), ("Keyrotor-Step", "alice create AKIANEW")]
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAKEYROTORITSELF",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-of-keyrotor",
    "AWS_SESSION_TOKEN": "aws-session-token-of-keyrotor",
    "GITHUB_TOKEN": "ghs_github_token_value",
    "GH_TOKEN": "gh_token_value",
    "ACTIONS_RUNTIME_TOKEN": "actions-runtime-token",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc-request-token",
}


def run(cwd: Path, *args: str) -> str:
    """The real git, bypassing the recording wrapper."""
    done = subprocess.run([REAL_GIT, *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.rstrip("\n")


def other_run(remote: GitRemote, tmp_path: Path, rel: str) -> None:
    path = tmp_path / "other"
    if not path.exists():
        run(tmp_path, "clone", "-q", str(remote.bare), str(path))
        run(path, "config", "user.email", "other@example.com")
        run(path, "config", "user.name", "Other Run")
    run(path, "pull", "-q")
    (path / rel).parent.mkdir(parents=True, exist_ok=True)
    (path / rel).write_text("theirs\n")
    run(path, "add", rel)
    run(path, "commit", "-q", "-m", f"other run writes {rel}")
    run(path, "push", "-q")


@dataclass(frozen=True)
class Call:
    argv: list[str]
    env: dict[str, str]

    @property
    def command(self) -> str:
        """The git subcommand (the first argument after the `-c` options)."""
        rest = self.argv
        while rest and rest[0] == "-c":
            rest = rest[2:]
        return rest[0] if rest else ""


class Recorder:
    def __init__(self, log: Path) -> None:
        self.log = log

    def calls(self) -> list[Call]:
        found = []
        for entry in sorted(self.log.iterdir(), key=lambda p: int(p.name)):
            argv = (entry / "argv").read_bytes().decode().split("\0")[:-1]
            env = dict(
                line.split("=", 1)
                for line in (entry / "env").read_bytes().decode().split("\0")
                if "=" in line
            )
            found.append(Call(argv, env))
        return found


def record_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Put the recording `git` first on PATH."""
    bindir, log = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    log.mkdir()
    wrapper = bindir / "git"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'd="{log}/$$"\n'
        'mkdir "$d"\n'
        'for a in "$@"; do printf "%s\\0" "$a"; done > "$d/argv"\n'
        f'env -0 > "$d/env"\n'
        f'exec "{REAL_GIT}" "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{Path(REAL_GIT).parent}")
    return Recorder(log)


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return record_git(tmp_path, monkeypatch)


@pytest.fixture
def clone(git_remote: GitRemote) -> Path:
    git_remote.repo.close()
    return git_remote.clone


def every_kind_of_work(remote: GitRemote, clone: Path, tmp_path: Path) -> None:
    """What a run does to the checkout: sync, publish, the older API, rebases, history."""
    other_run(remote, tmp_path, "status/other/1.yaml")
    with StatusRepo.open(clone) as repo:
        repo.commit({STATUS: "unpublished\n"}, "earlier run", [], STEP)
        repo.sync()  # replays the unpublished commit, fast-forwards
        repo.publish([FileUpdate(STATUS, "unpublished\n", "v2\n")], "s", trailers=STEP, when=NOW)
        other_run(remote, tmp_path, "status/other/2.yaml")
        repo.commit({STATUS: "v3\n"}, "older api", [], STEP)
        repo.push_status()  # rejected, rebased, pushed
        other_run(remote, tmp_path, "status/other/3.yaml")
        repo.commit({STATUS: "intent\n"}, "intent", [], STEP)
        with pytest.raises(GitError):
            repo.push_intent()  # rejected: dropped and fast-forwarded
    read_history(clone)


# --- hooks and fsmonitor ------------------------------------------------------------------------


HOOKS = (
    "pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "reference-transaction",
    "pre-push", "post-checkout", "post-merge", "pre-rebase", "post-rewrite", "post-index-change",
    "pre-auto-gc",
)  # fmt: skip


def test_no_hook_of_the_checkout_ever_runs(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "hooks-that-ran"
    configured = tmp_path / "configured-hooks"
    configured.mkdir()
    for directory in (clone / ".git" / "hooks", configured):
        for name in HOOKS:
            (directory / name).write_text(f"#!/bin/sh\necho {name} >> '{marker}'\n")
            (directory / name).chmod(0o755)
    run(clone, "config", "core.hooksPath", str(configured))
    every_kind_of_work(git_remote, clone, tmp_path)
    assert not marker.exists(), marker.read_text()


def test_a_configured_fsmonitor_program_is_never_executed(
    git_remote: GitRemote, clone: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "fsmonitor-ran"
    program = tmp_path / "fsmonitor"
    program.write_text(f"#!/bin/sh\necho ran >> '{marker}'\nexit 1\n")
    program.chmod(0o755)
    run(clone, "config", "core.fsmonitor", str(program))
    every_kind_of_work(git_remote, clone, tmp_path)
    assert not marker.exists()


# --- the environment git sees -------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[Call]:
    """Every git command of one run's kinds of work, made with credentials in the environment."""
    tmp_path = tmp_path_factory.mktemp("recorded")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        for name, value in CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
        remote = make_remote(tmp_path)
        remote.repo.close()
        recorder = record_git(tmp_path, monkeypatch)
        every_kind_of_work(remote, remote.clone, tmp_path)
        return recorder.calls()


def test_every_git_command_starts_with_the_hardening_options(recorded: list[Call]) -> None:
    assert len(recorded) > 50
    assert {tuple(call.argv[: len(HARDENING)]) for call in recorded} == {HARDENING}


def test_git_never_sees_aws_or_github_credentials(recorded: list[Call]) -> None:
    for call in recorded:
        seen = "\n".join([*call.argv, *(f"{k}={v}" for k, v in call.env.items())])
        for name, value in CREDENTIALS.items():
            assert value not in seen, f"{name} reached git {call.command}"


def test_the_ssh_agent_reaches_only_fetch_and_push(recorded: list[Call]) -> None:
    assert {c.command for c in recorded if "SSH_AUTH_SOCK" in c.env} == {"fetch", "push"}


def test_an_inherited_git_dir_or_index_cannot_redirect_keyrotor(
    clone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "decoy"
    run(tmp_path, "init", "-q", "-b", "main", str(decoy))
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(decoy))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "decoy-index"))
    with StatusRepo.open(clone) as repo:
        sha = repo.publish([FileUpdate(STATUS, None, "x\n")], "s", trailers=STEP, when=NOW)
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name)
    assert run(clone, "rev-parse", "HEAD") == sha
    assert run(clone, "status", "--porcelain") == ""
    assert subprocess.run(
        [REAL_GIT, "rev-parse", "HEAD"], cwd=decoy, capture_output=True
    ).returncode
    assert not (tmp_path / "decoy-index").exists()


# --- push credentials ---------------------------------------------------------------------------


@dataclass
class FakeForge:
    """An HTTP server that records the Authorization headers git sends, and refuses access."""

    url: str
    authorizations: list[list[str]]


@pytest.fixture
def forge() -> Iterator[FakeForge]:
    seen: list[list[str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get_all("Authorization") or [])
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeForge(f"http://127.0.0.1:{server.server_port}/acme/policies.git", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


TOKEN = "ghs_push_token_for_keyrotor"


def basic(token: str) -> str:
    return "basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()


def test_the_push_token_is_sent_as_one_authorization_header(clone: Path, forge: FakeForge) -> None:
    run(clone, "remote", "set-url", "origin", forge.url)
    # What actions/checkout persists: keyrotor's header must replace it, not be sent beside it.
    host = forge.url.split("/acme")[0]
    run(clone, "config", f"http.{host}/.extraheader", f"AUTHORIZATION: {basic('persisted')}")
    with StatusRepo.open(clone, push_token=TOKEN) as repo, pytest.raises(GitError) as caught:
        repo.sync()
    assert forge.authorizations
    assert all(headers == [basic(TOKEN)] for headers in forge.authorizations)
    assert TOKEN not in str(caught.value)
    assert basic(TOKEN).removeprefix("basic ") not in str(caught.value)


def test_the_push_token_is_never_in_argv_and_only_for_fetch_and_push(
    clone: Path, forge: FakeForge, recorder: Recorder
) -> None:
    run(clone, "remote", "set-url", "origin", forge.url)
    with StatusRepo.open(clone, push_token=TOKEN) as repo, pytest.raises(GitError):
        repo.publish([FileUpdate(STATUS, None, "x\n")], "s", trailers=STEP, when=NOW)
    calls = recorder.calls()
    encoded = basic(TOKEN).removeprefix("basic ")
    assert not [c for c in calls if any(TOKEN in a or encoded in a for a in c.argv)]
    with_token = {c.command for c in calls if any(encoded in v for v in c.env.values())}
    assert with_token == {"fetch"}


def test_the_push_token_is_not_sent_to_another_host(clone: Path, forge: FakeForge) -> None:
    auth = RemoteAuth(TOKEN)
    assert auth.env_for(forge.url)["GIT_CONFIG_KEY_1"] == (
        f"http.{forge.url.split('/acme')[0]}/.extraheader"
    )
    assert auth.env_for(str(clone)) == {}
    assert auth.env_for("git@github.com:acme/policies.git") == {}


def test_a_remote_auth_never_shows_its_token() -> None:
    assert TOKEN not in repr(RemoteAuth(TOKEN))
    assert TOKEN not in str(RemoteAuth(TOKEN))


# --- opening ------------------------------------------------------------------------------------


def test_a_bare_repository_is_not_a_checkout(git_remote: GitRemote) -> None:
    git_remote.repo.close()
    with pytest.raises(GitError, match="is not a Git checkout"):
        open_checkout(git_remote.bare)
