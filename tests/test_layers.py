"""The pure core imports no I/O library: the planner is a function of its inputs alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = [
    "controller.planner",
    "controller.lifecycle",
    "controller.render",
    "controller.commits",
    "controller.messages",
]
IO_LIBRARIES = ["boto3", "botocore", "git", "httpx", "moto", "controller.sandbox"]


@pytest.mark.parametrize("module", PURE)
def test_a_core_module_loads_no_io_library(module: str) -> None:
    probe = f"import sys, {module}; print(sorted(m for m in {IO_LIBRARIES!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert loaded == "[]"


def test_the_layer_contracts_hold() -> None:
    """import-linter checks the contracts in pyproject.toml ([tool.importlinter])."""
    result = subprocess.run(
        [sys.executable, "-m", "importlinter.cli", "--no-cache"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
