"""The `command` check: exit status, timeout and cleanup, where and as whom it runs, its
environment, masked output, and a check that tampers with keyrotor's repository.

Checks run in a copy of the repository; when the tests run as root they run as `nobody`, so
what a check writes for a test to read goes to `out`, a directory every user can reach.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from controller.checks.command import (
    MESSAGE_CHARS,
    OUTPUT_CHARS,
    OUTPUT_LINES,
    CheckTamperError,
    CommandOutcome,
    check_environment,
    redact_secrets,
    run_command_check,
)
from controller.checks.workspace import (
    CheckUserError,
    RepositorySeal,
    check_user,
    copy_tracked_files,
)
from controller.policy import CommandCheck
from controller.secret import AccessKeySecret
from tests.support.checks import git_repo, public_dir, python_for_checks, tree, wait_dead

PY = python_for_checks()
NOBODY = pwd.getpwnam("nobody").pw_uid
ROOT = os.geteuid() == 0
LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="needs Linux (prctl, /proc)")
NEW_KEY = AccessKeySecret("AKIANEWKEY0000000001", "newSecret/abcdefghijklmnopqrstuvwxyz+0123")
KEYROTOR_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "LANG": "C.UTF-8",
    "AWS_ACCESS_KEY_ID": "AKIAKEYROTOR00000001",
    "AWS_SECRET_ACCESS_KEY": "keyrotorOwnSecret",
    "AWS_SESSION_TOKEN": "keyrotorSessionToken",
    "AWS_PROFILE": "admin",
    "AWS_CONFIG_FILE": "/root/.aws/config",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token",
    "GITHUB_TOKEN": "ghs_keyrotor",
    "ACTIONS_RUNTIME_TOKEN": "actionsRuntimeToken",
    "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock",
    "HTTPS_PROXY": "http://user:pass@proxy:3128",
    "PYTHONPATH": "/somewhere",
    "HOME": "/root",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
    "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:5001",
}


@pytest.fixture
def out() -> Iterator[Path]:
    path = public_dir("keyrotor-test-out-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def repo() -> Iterator[Path]:
    """keyrotor's repository, where any user could reach it (as a CI checkout is)."""
    base = public_dir("keyrotor-test-repo-", 0o755)
    yield git_repo(base / "policies", {"README.md": "policies\n"})
    shutil.rmtree(base, ignore_errors=True)


def python(code: str, timeout: float = 10, with_new_key: bool = False) -> CommandCheck:
    return CommandCheck(
        run=(PY, "-c", code), timeout=timedelta(seconds=timeout), with_new_key=with_new_key
    )


def outcome(check: CommandCheck, repo: Path, **kwargs: object) -> CommandOutcome:
    options: dict[str, object] = {"new_key": NEW_KEY, "secrets": (), "env": KEYROTOR_ENV}
    options.update(kwargs)
    result = run_command_check(check, repo=repo, kill_grace=0.1, **options)  # type: ignore[arg-type]
    assert result.result.check == "command"
    assert "\n" not in result.result.message and len(result.result.message) <= MESSAGE_CHARS
    return result


def run(check: CommandCheck, repo: Path, **kwargs: object) -> tuple[bool, str]:
    result = outcome(check, repo, **kwargs).result
    return result.passed, result.message


def writes(out: Path, what: str) -> str:
    """Python that writes `what` (an expression) as JSON to `out`/result.json."""
    return (
        f"import json, os, sys; open({str(out / 'result.json')!r}, 'w').write(json.dumps({what}))"
    )


def result(out: Path) -> object:
    return json.loads((out / "result.json").read_text())


# --- exit status -------------------------------------------------------------------------------


def test_exit_0_passes(repo: Path) -> None:
    passed, message = run(python("print('fine')"), repo)
    assert passed
    assert message.startswith(f"{PY} -c 'print('\"'\"'fine'\"'\"')' exited 0 after ")


def test_a_nonzero_exit_fails_with_the_code_and_the_output_in_order(repo: Path) -> None:
    code = (
        "import sys\n"
        "print('to stdout', flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "print('again stdout', flush=True)\n"
        "sys.exit(3)"
    )
    passed, message = run(python(code), repo)
    assert not passed
    assert " exited with code 3 after " in message
    assert message.endswith("; output: to stdout | to stderr | again stdout")


def test_no_output_is_said(repo: Path) -> None:
    passed, message = run(python("raise SystemExit(1)"), repo)
    assert not passed and message.endswith("; no output")


def test_a_program_killed_by_a_signal(repo: Path) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    passed, message = run(python(code), repo)
    assert not passed and " was killed by SIGKILL after " in message


def test_the_message_is_one_short_line_and_the_log_gets_the_last_lines(repo: Path) -> None:
    code = "for i in range(1, 31): print(f'\\x1b[31mline {i}\\x1b[0m\\r')"
    assert run(python(code), repo)[0]  # output is only reported on failure
    failed = outcome(python(code + "\nraise SystemExit(1)"), repo)
    assert failed.output.split(" | ") == [f"line {i}" for i in range(31 - OUTPUT_LINES, 31)]
    assert failed.result.message.endswith(" | line 29 | line 30")
    assert "; last output: …" in failed.result.message


def test_long_output_is_cut_to_its_end(repo: Path) -> None:
    code = "print('x' * 100000 + 'THE END'); raise SystemExit(1)"
    failed = outcome(python(code), repo)
    assert failed.output.endswith("THE END") and len(failed.output) == OUTPUT_CHARS
    assert failed.result.message.endswith("xxxxTHE END")
    assert len(failed.result.message) == MESSAGE_CHARS


def test_a_long_command_line_is_shortened_in_the_message(repo: Path) -> None:
    code = "raise SystemExit(1)  # " + "a very long comment " * 20
    passed, message = run(python(code), repo)
    assert not passed
    assert "… exited with code 1 after " in message and message.endswith("; no output")


# --- timeout and what the program leaves running -----------------------------------------------


def test_a_timeout_fails_and_kills_the_whole_process_group(repo: Path, out: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        f"open({str(out / 'child.pid')!r}, 'w').write(str(child.pid))\n"
        "print('waiting', flush=True)\n"
        "time.sleep(30)"
    )
    started = time.monotonic()
    passed, message = run(python(code, timeout=0.5), repo)
    assert time.monotonic() - started < 2
    assert not passed
    assert message.endswith(" timed out after 0.5s and was killed; output: waiting")
    assert wait_dead(int((out / "child.pid").read_text()))


def test_a_program_that_ignores_sigterm_is_killed(repo: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    started = time.monotonic()
    passed, message = run(python(code, timeout=0.2), repo)
    assert time.monotonic() - started < 1.5
    assert not passed and "timed out after 0.2s and was killed" in message


def test_what_a_passing_program_leaves_running_is_killed(repo: Path, out: Path) -> None:
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        f"open({str(out / 'child.pid')!r}, 'w').write(str(child.pid))"
    )
    passed, _ = run(python(code), repo)
    assert passed
    assert wait_dead(int((out / "child.pid").read_text()))


LEAVE_A_DAEMON = (
    "import os, subprocess, sys, time\n"
    "if os.fork() == 0:\n"  # a double fork into a session of its own: a daemon
    "    os.setsid()\n"
    "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'],\n"
    "                             start_new_session=True)\n"
    "    open({pid!r}, 'w').write(str(child.pid))\n"
    "    os._exit(0)\n"
    "os.wait()\n"
)


@linux_only
def test_a_process_left_in_a_session_of_its_own_is_killed(repo: Path, out: Path) -> None:
    passed, _ = run(python(LEAVE_A_DAEMON.format(pid=str(out / "daemon.pid"))), repo)
    assert passed
    assert wait_dead(int((out / "daemon.pid").read_text()))


@linux_only
def test_a_process_a_timed_out_program_hid_in_a_new_session_is_killed(
    repo: Path, out: Path
) -> None:
    code = LEAVE_A_DAEMON.format(pid=str(out / "daemon.pid")) + "time.sleep(30)"
    passed, message = run(python(code, timeout=0.5), repo)
    assert not passed and "timed out" in message
    assert wait_dead(int((out / "daemon.pid").read_text()))


# --- where the program runs --------------------------------------------------------------------

LOOK_AROUND = (
    "import os\nfiles = sorted(os.path.join(d, f)[2:] for d, _, fs in os.walk('.') for f in fs)\n"
)


def test_it_runs_in_a_copy_of_the_tracked_files(repo: Path, out: Path) -> None:
    (repo / "scripts").mkdir()
    (repo / "scripts" / "added.sh").write_text("#!/bin/sh\n")  # added, not committed
    (repo / "untracked.env").write_text("SECRET=1\n")
    (repo / ".gitignore").write_text("ignored/\n")
    (repo / "ignored").mkdir()
    (repo / "ignored" / "cache").write_text("x\n")
    (repo / "README.md").write_text("changed locally\n")
    subprocess.run(["git", "-C", str(repo), "add", "scripts/added.sh"], check=True)
    code = LOOK_AROUND + writes(
        out, "{'cwd': os.getcwd(), 'files': files, 'readme': open('README.md').read()}"
    )
    passed, message = run(python(code), repo)
    assert passed, message
    seen = result(out)
    assert isinstance(seen, dict)
    assert Path(seen["cwd"]).resolve() != repo.resolve()
    assert seen["files"] == ["README.md", "scripts/added.sh"]  # no .git, .gitignore untracked
    assert seen["readme"] == "changed locally\n"  # the work tree's content, not the commit's
    assert not Path(seen["cwd"]).exists(), "the copy is removed"


def test_relative_programs_are_found_in_the_copy(repo: Path, out: Path) -> None:
    script = repo / "scripts" / "smoke.sh"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\npwd > {out / 'where.txt'}\n")
    script.chmod(0o755)
    subprocess.run(["git", "-C", str(repo), "add", "scripts"], check=True)
    passed, message = run(CommandCheck(run=("./scripts/smoke.sh",)), repo)
    assert passed, message
    assert (out / "where.txt").read_text().strip().endswith("/repo")


def test_what_the_program_writes_stays_out_of_the_repository(repo: Path) -> None:
    before = tree(repo)
    code = (
        "import os\n"
        "os.makedirs('.git/hooks')\n"
        "open('.git/hooks/pre-commit', 'w').write('#!/bin/sh\\ntouch /tmp/hook-ran\\n')\n"
        "os.chmod('.git/hooks/pre-commit', 0o755)\n"
        "open('README.md', 'w').write('overwritten')\n"
        "os.makedirs('status'); open('status/p.yaml', 'w').write('planted')\n"
        "os.chmod('.', 0o500)\n"  # and make the copy hard to remove
    )
    passed, message = run(python(code), repo)
    assert passed, message
    assert tree(repo) == before


def test_a_tracked_symlink_is_copied_as_a_link(repo: Path, out: Path) -> None:
    (repo / "link").symlink_to("/etc/hostname")
    subprocess.run(["git", "-C", str(repo), "add", "link"], check=True)
    passed, message = run(python(writes(out, "os.readlink('link')")), repo)
    assert passed, message
    assert result(out) == "/etc/hostname"


def test_a_tracked_path_that_now_leads_through_a_link_is_not_copied(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "d").mkdir()
    (repo / "d" / "notes.txt").write_text("tracked\n")
    subprocess.run(["git", "-C", str(repo), "add", "d"], check=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("a file outside the repository\n")
    shutil.rmtree(repo / "d")
    (repo / "d").symlink_to(outside)  # git still lists d/notes.txt
    copy = tmp_path / "copy"
    copy.mkdir()
    assert copy_tracked_files(repo, copy, os.environ, None) == 1  # README.md only
    assert sorted(p.name for p in copy.iterdir()) == ["README.md"]


def test_a_missing_program_fails_clearly(repo: Path) -> None:
    passed, message = run(CommandCheck(run=("./nope.sh", "--quick")), repo)
    assert not passed
    assert message == (
        "cannot run ./nope.sh --quick: program './nope.sh' not found in the repository"
    )
    passed, message = run(CommandCheck(run=("keyrotor-no-such-program",)), repo)
    assert not passed
    assert message == (
        "cannot run keyrotor-no-such-program: program 'keyrotor-no-such-program' not found on PATH"
    )


def test_an_untracked_program_is_named_as_such(repo: Path) -> None:
    (repo / "smoke.sh").write_text("#!/bin/sh\nexit 0\n")
    (repo / "smoke.sh").chmod(0o755)
    passed, message = run(CommandCheck(run=("./smoke.sh",)), repo)
    assert not passed
    assert message == (
        "cannot run ./smoke.sh: program './smoke.sh' is not tracked by git; checks run in a "
        "copy of the tracked files: git add it"
    )


def test_a_file_that_cannot_be_executed_fails_clearly(repo: Path) -> None:
    (repo / "plain.sh").write_text("#!/bin/sh\nexit 0\n")
    bad = repo / "bad.sh"
    bad.write_text("#!/nonexistent/interpreter\nexit 0\n")
    bad.chmod(0o755)
    subprocess.run(["git", "-C", str(repo), "add", "plain.sh", "bad.sh"], check=True)
    passed, message = run(CommandCheck(run=("./plain.sh",)), repo)
    assert not passed
    assert message.startswith("cannot run ./plain.sh: './plain.sh' is not an executable file")
    passed, message = run(CommandCheck(run=("./bad.sh",)), repo)
    assert not passed
    assert message == (
        "cannot run ./bad.sh: './bad.sh' exists, but the interpreter on its #! line was not found"
    )


def test_a_missing_directory_fails_clearly(tmp_path: Path) -> None:
    passed, message = run(python("pass"), tmp_path / "gone")
    assert not passed
    assert message.endswith(f": {tmp_path / 'gone'} is not a directory")


def test_a_directory_that_is_not_a_git_repository_fails_clearly(tmp_path: Path) -> None:
    passed, message = run(python("pass"), tmp_path)
    assert not passed
    assert message.startswith(f"cannot run {PY} -c pass: git ")
    assert "not a git repository" in message


# --- as whom -----------------------------------------------------------------------------------

SELF = (
    "import os\n"
    "status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
    "home = os.environ['HOME']\n"
)
SELF_REPORT = (
    "{'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),"
    " 'caps': {k: int(status[k], 16) for k in ('CapInh', 'CapPrm', 'CapEff', 'CapAmb')},"
    " 'nnp': status['NoNewPrivs'].strip(), 'home': home, 'home_files': os.listdir(home),"
    " 'home_mine': os.stat(home).st_uid == os.getuid(),"
    " 'cwd_mine': os.stat('.').st_uid == os.getuid()}"
)


@linux_only
def test_the_program_cannot_gain_privileges_through_setuid_programs(repo: Path, out: Path) -> None:
    passed, message = run(python(SELF + writes(out, SELF_REPORT)), repo)
    assert passed, message
    seen = result(out)
    assert isinstance(seen, dict) and seen["nnp"] == "1"


@linux_only
@pytest.mark.skipif(not ROOT, reason="only root can run a check as another user")
def test_as_root_the_program_runs_as_nobody_without_capabilities_or_groups(
    repo: Path, out: Path
) -> None:
    passed, message = run(python(SELF + writes(out, SELF_REPORT)), repo)
    assert passed, message
    seen = result(out)
    assert isinstance(seen, dict)
    assert (seen["uid"], seen["groups"]) == (NOBODY, [])
    assert seen["caps"] == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapAmb": 0}
    assert seen["home_mine"] and seen["cwd_mine"] and seen["home_files"] == []


@pytest.mark.skipif(not ROOT, reason="only root can run a check as another user")
def test_as_root_the_user_can_be_named(repo: Path, out: Path) -> None:
    daemon = pwd.getpwnam("daemon")
    passed, message = run(python(writes(out, "os.getuid()")), repo, run_as="daemon")
    assert passed, message
    assert result(out) == daemon.pw_uid


def test_as_root_a_missing_user_or_root_is_refused(repo: Path) -> None:
    with pytest.raises(CheckUserError, match="no such user"):
        check_user("keyrotor-no-such-user", euid=0)
    with pytest.raises(CheckUserError, match="never run as root"):
        check_user("root", euid=0)
    with pytest.raises(CheckUserError, match="never run as root"):
        check_user("0", euid=0)
    assert check_user("keyrotor-no-such-user", euid=1000) is None, "not root: no switch"
    if ROOT:
        passed, message = run(python("pass"), repo, run_as="keyrotor-no-such-user")
        assert not passed and "there is no such user" in message


# --- environment -------------------------------------------------------------------------------

DUMP_ENV = "dict(os.environ)"


def test_the_environment_is_an_allow_list(repo: Path, out: Path) -> None:
    passed, message = run(python(writes(out, DUMP_ENV)), repo)
    assert passed, message
    env = result(out)
    assert isinstance(env, dict)
    assert env["HOME"] != KEYROTOR_ENV["HOME"]
    env.pop("HOME")
    env.pop("LC_CTYPE", None)  # Python sets it for itself in a C locale
    assert env == {
        "PATH": KEYROTOR_ENV["PATH"],
        "LANG": "C.UTF-8",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:5001",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def test_with_new_key_the_new_key_and_nothing_else(repo: Path, out: Path) -> None:
    passed, _ = run(python(writes(out, DUMP_ENV), with_new_key=True), repo)
    assert passed
    env = result(out)
    assert isinstance(env, dict)
    assert env["AWS_ACCESS_KEY_ID"] == NEW_KEY.access_key_id
    assert env["AWS_SECRET_ACCESS_KEY"] == NEW_KEY.secret_access_key
    assert "AWS_SESSION_TOKEN" not in env and "AWS_PROFILE" not in env


def test_the_process_environment_is_the_default(
    repo: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "keyrotorOwnSecret")
    monkeypatch.setenv("AWS_REGION", "ap-south-2")
    monkeypatch.setenv("KEYROTOR_TEST_MARKER", "not for checks")
    passed, _ = run(python(writes(out, DUMP_ENV)), repo, env=None)
    assert passed
    env = result(out)
    assert isinstance(env, dict)
    assert env["AWS_REGION"] == "ap-south-2"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "KEYROTOR_TEST_MARKER" not in env


def test_with_new_key_but_no_secret_fails_without_running(repo: Path, out: Path) -> None:
    check = python(writes(out, DUMP_ENV), with_new_key=True)
    passed, message = run(check, repo, new_key=None)
    assert not passed
    assert message.endswith("it needs the new key (withNewKey), but its secret is unknown")
    assert not (out / "result.json").exists()


def test_check_environment(tmp_path: Path) -> None:
    assert check_environment(KEYROTOR_ENV, home=tmp_path, new_key=NEW_KEY) == {
        "PATH": KEYROTOR_ENV["PATH"],
        "LANG": "C.UTF-8",
        "HOME": str(tmp_path),
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:5001",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": NEW_KEY.access_key_id,
        "AWS_SECRET_ACCESS_KEY": NEW_KEY.secret_access_key,
    }


# --- masking -----------------------------------------------------------------------------------


def test_every_secret_keyrotor_holds_is_masked(repo: Path) -> None:
    new = NEW_KEY.secret_access_key
    printed = [
        f"new: {new}",
        "json: " + new.replace("/", "\\/"),
        f"url: {quote(new, safe='')}",
        "own: keyrotorOwnSecret keyrotorSessionToken",  # from keyrotor's environment
        "tokens: ghs_keyrotor actionsRuntimeToken tok-123-456",
    ]
    code = "import sys\n" + "".join(f"print({line!r})\n" for line in printed) + "sys.exit(1)"
    failed = outcome(python(code), repo, secrets=["tok-123-456", ""])
    assert failed.output == "new: *** | json: *** | url: *** | own: *** *** | tokens: *** *** ***"
    assert failed.result.message.endswith(failed.output)


def test_a_secret_in_the_command_line_is_masked(repo: Path) -> None:
    passed, message = run(python("raise SystemExit(1)  # keyrotorOwnSecret"), repo)
    assert not passed and "keyrotorOwnSecret" not in message and "# ***" in message


def test_a_secret_across_the_cut_is_masked(repo: Path) -> None:
    """The output is read from its end; a secret crossing where reading starts is still masked."""
    secret = "S3CRET" * 8  # 48 characters
    # One long line of secrets: masked, it is short enough to be shown whole, so a fragment of
    # the secret that crosses where reading starts would show.
    for count in (170, 171, 172):
        code = f"import sys; sys.stdout.write(' '.join(['{secret}'] * {count})); sys.exit(1)"
        failed = outcome(python(code), repo, secrets=[secret])
        assert not failed.result.passed
        assert failed.output.startswith("*** *** ***")
        assert "S3" not in failed.output and "ET" not in failed.output, count


def test_redact_secrets() -> None:
    assert redact_secrets(b"a SECRET b SECRET", [b"SECRET"]) == b"a *** b ***"
    assert redact_secrets(b"abcdefgh", [b"abc", b"bcdefg"]) == b"***h"  # overlapping: one
    assert redact_secrets(b"xxSECRETyy", [b"SECRET"], skip=4) == b"***yy"  # starts before skip
    assert redact_secrets(b"SECRETSECRET", [b"SECRET"]) == b"***"
    assert redact_secrets(b"plain", []) == b"plain"
    assert redact_secrets(b"plain", [b""]) == b"plain"


# --- a check that tampers with keyrotor's repository -------------------------------------------


def open_to_the_check(repo: Path, *paths: str) -> None:
    """Let the check write these (a check as keyrotor's own user can write them anyway)."""
    for rel in paths:
        (repo / rel).chmod(0o777 if (repo / rel).is_dir() else 0o666)


def test_a_check_that_changes_keyrotors_git_config_stops_the_run(repo: Path) -> None:
    open_to_the_check(repo, ".git", ".git/config")
    config = repo / ".git" / "config"
    code = (
        f"open({str(config)!r}, 'a').write('[url \"https://evil.example/\"]\\n"
        "\\tpushInsteadOf = https://github.com/\\n')"
    )
    with pytest.raises(CheckTamperError, match=r"changed keyrotor's repository .*\(git config\)"):
        run(python(code), repo)


def test_a_check_that_plants_a_hook_in_keyrotors_repository_stops_the_run(repo: Path) -> None:
    open_to_the_check(repo, ".git", ".git/hooks")
    hook = repo / ".git" / "hooks" / "pre-push"
    code = (
        f"import os; open({str(hook)!r}, 'w').write('#!/bin/sh\\n'); os.chmod({str(hook)!r}, 0o755)"
    )
    with pytest.raises(CheckTamperError, match=r"\(hooks\)"):
        run(python(code), repo)


KILL_PARENT = (
    "import os, signal, sys\n"
    "try:\n"
    "    os.kill(os.getppid(), signal.SIGKILL)\n"
    "except PermissionError:\n"
    "    sys.exit('may not signal the supervisor')\n"
)


@pytest.mark.skipif(ROOT, reason="as root the check runs as another user: see the next test")
def test_a_check_that_kills_its_supervisor_stops_the_run(repo: Path) -> None:
    with pytest.raises(CheckTamperError, match=r"supervisor of check .* ended"):
        run(python(KILL_PARENT), repo)


@pytest.mark.skipif(not ROOT, reason="only as root does the check run as another user")
def test_as_root_a_check_cannot_signal_its_supervisor(repo: Path) -> None:
    passed, message = run(python(KILL_PARENT), repo)
    assert not passed and message.endswith("output: may not signal the supervisor")


def test_the_seal_sees_content_not_stat_data(repo: Path) -> None:
    """git refreshing the index (as `git status` does) changes nothing; staging a file does."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]}
    seal = RepositorySeal.take(repo, env)
    index = (repo / ".git" / "index").read_bytes()
    os.utime(repo / "README.md", (1, 1))
    subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], check=True)
    assert (repo / ".git" / "index").read_bytes() != index, "git rewrote the index"
    assert seal.changes(env) == []
    (repo / "README.md").write_text("staged\n")
    subprocess.run(["git", "-C", str(repo), "add", "README.md"], check=True)
    assert seal.changes(env) == ["index"]
