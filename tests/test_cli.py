"""The command-line contract: exit codes, --version, --help, and how failures are reported."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controller import __version__
from controller.cli import EXIT_CHANGES, EXIT_INTERNAL, EXIT_INTERRUPTED, main

COMMANDS = ["validate", "plan", "apply", "reconcile", "status", "history", "resume", "demo"]


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"keyrotor {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: keyrotor {command}" in capsys.readouterr().out


def test_a_bad_flag_is_a_user_error_not_the_changes_pending_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--no-such-flag"])
    assert exc.value.code == 1 != EXIT_CHANGES
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_a_bad_now_says_what_form_is_expected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--now", "yesterday"])
    assert exc.value.code == 1
    assert "is not an ISO-8601 time" in capsys.readouterr().err


def test_a_bug_exits_3_with_a_short_message_and_the_traceback_in_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("boom in status")

    monkeypatch.setattr("controller.commands.status.run", broken)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert main(["status"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error: RuntimeError" in err
    (dump,) = tmp_path.glob("keyrotor-crash-*.txt")
    assert "boom in status" in dump.read_text() and str(dump) in err


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("controller.commands.status.run", interrupted)
    assert main(["status"]) == EXIT_INTERRUPTED


def test_a_missing_manifests_directory_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--repo", str(tmp_path)]) == 1
    assert "manifests does not exist" in capsys.readouterr().err


def test_python_dash_m_controller_is_the_same_program() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controller", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"keyrotor {__version__}"


def test_the_keyrotor_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "keyrotor"
    assert script.exists() or shutil.which("keyrotor")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"keyrotor {__version__}"


def test_the_console_script_and_dash_m_harden_the_process_first(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.metadata

    import controller.cli
    from controller.hardening import Hardening, HardeningError

    (script,) = (
        e for e in importlib.metadata.entry_points(group="console_scripts", name="keyrotor")
    )
    assert script.value == "controller.cli:console_main"
    assert "console_main()" in (Path(controller.cli.__file__).parent / "__main__.py").read_text()
    # Not in this process: it cannot be undone. Off Linux, commands that run checks warn.
    monkeypatch.setattr(controller.cli, "harden_process", lambda: Hardening(False, "not here"))
    monkeypatch.setattr(sys, "argv", ["keyrotor", "plan", "--repo", "/nonexistent"])
    assert controller.cli.console_main() == 1
    assert "keyrotor: warning: not here" in capsys.readouterr().err

    def failing() -> Hardening:
        raise HardeningError("prctl(PR_SET_DUMPABLE, 0) failed")

    monkeypatch.setattr(controller.cli, "harden_process", failing)
    assert controller.cli.console_main() == 1
    assert "keyrotor: prctl(PR_SET_DUMPABLE, 0) failed" in capsys.readouterr().err
