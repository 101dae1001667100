"""The benchmark still runs end to end (at a size that takes seconds), so it cannot rot unseen
while keyrotor's entry points change under it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from bench.__main__ import main
from bench.table import BEGIN, END, write_readme

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def restored_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The benchmark points the process's SDK environment at its own sandbox."""
    saved = dict(os.environ)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.usefixtures("restored_environment")
def test_a_small_benchmark_meets_the_call_limits_and_writes_its_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmark\n\nintro\n\n{BEGIN}\nold\n{END}\n\noutro\n")

    assert main(["--sizes", "20", "--readme", str(readme)]) == 0

    text = readme.read_text()
    assert "intro" in text and "outro" in text and "old" not in text
    assert "| 20 (30) | keyrotor plan: no-op |" in text
    assert "FAIL" not in text
    assert "PASS  N=20 keyrotor reader alone: report cached: 3 IAM calls in account A" in text


def test_writing_the_table_into_a_readme_without_markers_appends_it(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmark\n")

    write_readme(readme, "| table |\n", ["PASS  something"])

    assert readme.read_text() == (
        f"# Benchmark\n\n{BEGIN}\n| table |\n\nAgainst issue 13's targets:\n\n"
        f"    PASS  something\n{END}\n"
    )
