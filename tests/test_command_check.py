"""The `command` check: exit status, timeout and process-group kill, environment, masked output."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from controller.checks.command import (
    CREDENTIAL_VARIABLES,
    OUTPUT_LINES,
    child_environment,
    redact_secrets,
    run_command_check,
)
from controller.policy import CommandCheck
from controller.secret import AccessKeySecret

PY = sys.executable
NEW_KEY = AccessKeySecret("AKIANEWKEY0000000001", "newSecret/abcdefghijklmnopqrstuvwxyz0123")
KEYROTOR_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "AWS_ACCESS_KEY_ID": "AKIAKEYROTOR00000001",
    "AWS_SECRET_ACCESS_KEY": "keyrotorOwnSecret",
    "AWS_SESSION_TOKEN": "keyrotorSessionToken",
    "AWS_PROFILE": "admin",
    "GITHUB_TOKEN": "ghs_keyrotor",
    "AWS_REGION": "eu-west-1",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
}


def python(code: str, timeout: float = 10, with_new_key: bool = False) -> CommandCheck:
    return CommandCheck(
        run=(PY, "-c", code), timeout=timedelta(seconds=timeout), with_new_key=with_new_key
    )


def run(check: CommandCheck, cwd: Path, **kwargs: object) -> tuple[bool, str]:
    options: dict[str, object] = {"new_key": NEW_KEY, "secrets": (), "env": KEYROTOR_ENV}
    options.update(kwargs)
    result = run_command_check(check, cwd=cwd, kill_grace=0.1, **options)  # type: ignore[arg-type]
    assert result.check == "command"
    return result.passed, result.message


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, left to an init that does not reap, counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pid: int) -> bool:
    deadline = time.monotonic() + 2
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not alive(pid)


# --- exit status -------------------------------------------------------------------------------


def test_exit_0_passes(tmp_path: Path) -> None:
    passed, message = run(python("print('fine')"), tmp_path)
    assert passed
    assert message.startswith(f"{PY} -c 'print('\"'\"'fine'\"'\"')' exited 0 after ")


def test_a_nonzero_exit_fails_with_the_code_and_the_output_in_order(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "print('to stdout', flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "print('again stdout', flush=True)\n"
        "sys.exit(3)"
    )
    passed, message = run(python(code), tmp_path)
    assert not passed
    assert " exited with code 3 after " in message
    assert message.endswith("; output: to stdout | to stderr | again stdout")


def test_no_output_is_said(tmp_path: Path) -> None:
    passed, message = run(python("raise SystemExit(1)"), tmp_path)
    assert not passed and message.endswith("; no output")


def test_a_program_killed_by_a_signal(tmp_path: Path) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    passed, message = run(python(code), tmp_path)
    assert not passed and " was killed by SIGKILL after " in message


def test_only_the_last_lines_are_kept_and_control_characters_dropped(tmp_path: Path) -> None:
    code = "for i in range(1, 31): print(f'\\x1b[31mline {i}\\x1b[0m\\r')"
    passed, message = run(python(code), tmp_path)
    assert passed  # output is only reported on failure
    passed, message = run(python(code + "\nraise SystemExit(1)"), tmp_path)
    shown = message.split("; last output: ", 1)[1].split(" | ")
    assert shown == [f"line {i}" for i in range(31 - OUTPUT_LINES, 31)]


def test_long_output_is_cut_to_its_end(tmp_path: Path) -> None:
    code = "print('x' * 100000 + 'THE END'); raise SystemExit(1)"
    passed, message = run(python(code), tmp_path)
    assert not passed
    output = message.split("; last output: ", 1)[1]
    assert output.endswith("THE END") and len(output) == 2048


# --- timeout -----------------------------------------------------------------------------------


def test_a_timeout_fails_and_kills_the_whole_process_group(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "open('child.pid', 'w').write(str(child.pid))\n"
        "print('waiting', flush=True)\n"
        "time.sleep(30)"
    )
    started = time.monotonic()
    passed, message = run(python(code, timeout=0.5), tmp_path)
    assert time.monotonic() - started < 1.5
    assert not passed
    assert message == (
        f"{PY} -c {shlex.quote(code)} timed out after 0.5s and was killed; output: waiting"
    )
    assert wait_dead(int((tmp_path / "child.pid").read_text()))


def test_a_program_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    started = time.monotonic()
    passed, message = run(python(code, timeout=0.2), tmp_path)
    assert time.monotonic() - started < 1
    assert not passed and "timed out after 0.2s and was killed" in message


def test_what_a_passing_program_leaves_running_is_killed(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "open('child.pid', 'w').write(str(child.pid))"
    )
    passed, _ = run(python(code), tmp_path)
    assert passed
    assert wait_dead(int((tmp_path / "child.pid").read_text()))


# --- starting the program ----------------------------------------------------------------------


def test_runs_in_cwd_and_finds_relative_programs_there(tmp_path: Path) -> None:
    script = tmp_path / "scripts" / "smoke.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\npwd > where.txt\n")
    script.chmod(0o755)
    passed, message = run(CommandCheck(run=("./scripts/smoke.sh",)), tmp_path)
    assert passed, message
    assert (tmp_path / "where.txt").read_text().strip() == str(tmp_path.resolve())


def test_a_missing_program_fails_clearly(tmp_path: Path) -> None:
    passed, message = run(CommandCheck(run=("./nope.sh", "--quick")), tmp_path)
    assert not passed
    assert message == (
        f"cannot run ./nope.sh --quick: program './nope.sh' not found (looked for "
        f"{tmp_path / 'nope.sh'})"
    )
    passed, message = run(CommandCheck(run=("keyrotor-no-such-program",)), tmp_path)
    assert not passed
    assert message == (
        "cannot run keyrotor-no-such-program: program 'keyrotor-no-such-program' not found on PATH"
    )


def test_a_file_that_cannot_be_executed_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "plain.sh").write_text("#!/bin/sh\nexit 0\n")
    passed, message = run(CommandCheck(run=("./plain.sh",)), tmp_path)
    assert not passed
    assert message == "cannot run ./plain.sh: './plain.sh' is not an executable file"
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/nonexistent/interpreter\nexit 0\n")
    bad.chmod(0o755)
    passed, message = run(CommandCheck(run=("./bad.sh",)), tmp_path)
    assert not passed
    assert message == (
        "cannot run ./bad.sh: './bad.sh' exists, but the interpreter on its #! line was not found"
    )


def test_a_missing_directory_fails_clearly(tmp_path: Path) -> None:
    passed, message = run(python("pass"), tmp_path / "gone")
    assert not passed
    assert message.endswith(f": {tmp_path / 'gone'} is not a directory")


# --- environment -------------------------------------------------------------------------------

DUMP_ENV = "import json, os; open('env.json', 'w').write(json.dumps(dict(os.environ)))"


def test_keyrotors_credentials_are_never_passed_on(tmp_path: Path) -> None:
    passed, _ = run(python(DUMP_ENV), tmp_path)
    assert passed
    env = json.loads((tmp_path / "env.json").read_text())
    assert not set(env) & CREDENTIAL_VARIABLES
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"


def test_with_new_key_the_new_key_and_nothing_else(tmp_path: Path) -> None:
    passed, _ = run(python(DUMP_ENV, with_new_key=True), tmp_path)
    assert passed
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["AWS_ACCESS_KEY_ID"] == NEW_KEY.access_key_id
    assert env["AWS_SECRET_ACCESS_KEY"] == NEW_KEY.secret_access_key
    assert not set(env) & (CREDENTIAL_VARIABLES - {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})


def test_the_process_environment_is_filtered_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "keyrotorOwnSecret")
    monkeypatch.setenv("KEYROTOR_TEST_MARKER", "kept")
    passed, _ = run(python(DUMP_ENV), tmp_path, env=None)
    assert passed
    env = json.loads((tmp_path / "env.json").read_text())
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["KEYROTOR_TEST_MARKER"] == "kept"


def test_with_new_key_but_no_secret_fails_without_running(tmp_path: Path) -> None:
    passed, message = run(python(DUMP_ENV, with_new_key=True), tmp_path, new_key=None)
    assert not passed
    assert message.endswith("needs the new key (withNewKey), but its secret is unknown")
    assert not (tmp_path / "env.json").exists()


def test_child_environment() -> None:
    assert child_environment(KEYROTOR_ENV) == {
        "PATH": KEYROTOR_ENV["PATH"],
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
    }


# --- masking -----------------------------------------------------------------------------------


def test_secrets_in_the_output_are_masked(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        f"print('new secret: {NEW_KEY.secret_access_key}', flush=True)\n"
        "print('token=tok-123-456;', 'again', 'tok-123-456', file=sys.stderr)\n"
        "sys.exit(1)"
    )
    passed, message = run(python(code), tmp_path, secrets=["tok-123-456", ""])
    assert not passed
    output = message.split("; output: ", 1)[1]
    assert output == "new secret: *** | token=***; again ***"
    # The command line is shown as written, so it does not hold secrets of its own here.
    assert "tok-123-456" not in output and NEW_KEY.secret_access_key not in output


def test_a_secret_across_the_cut_is_masked(tmp_path: Path) -> None:
    """The output is read from its end; a secret crossing where reading starts is still masked."""
    secret = "S3CRET" * 8  # 48 characters
    # One long line of secrets: masked, it is short enough to be shown whole, so a fragment of
    # the secret that crosses where reading starts would show.
    for count in (170, 171, 172):
        code = f"import sys; sys.stdout.write(' '.join(['{secret}'] * {count})); sys.exit(1)"
        passed, message = run(python(code), tmp_path, secrets=[secret])
        assert not passed
        output = message.split("output: ", 1)[1]
        assert output.startswith("*** *** ***")
        assert "S3" not in output and "ET" not in output, count


def test_redact_secrets() -> None:
    assert redact_secrets(b"a SECRET b SECRET", [b"SECRET"]) == b"a *** b ***"
    assert redact_secrets(b"abcdefgh", [b"abc", b"bcdefg"]) == b"***h"  # overlapping: masked as one
    assert redact_secrets(b"xxSECRETyy", [b"SECRET"], skip=4) == b"***yy"  # starts before skip
    assert redact_secrets(b"SECRETSECRET", [b"SECRET"]) == b"***"
    assert redact_secrets(b"plain", []) == b"plain"
    assert redact_secrets(b"plain", [b""]) == b"plain"
