"""Helpers for tests of `command` checks: repositories, directories a check can reach, and
whether a process a check started is still running."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, left to an init that does not reap, counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pid: int, within: float = 2.0) -> bool:
    """Whether `pid` is gone within `within` seconds (killing and reaping take a moment)."""
    deadline = time.monotonic() + within
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not alive(pid)


def runnable_by_anyone(path: str) -> bool:
    """Whether every user may run `path`: each directory on its way, and it, are o+x."""
    real = Path(os.path.realpath(path))
    return all(os.stat(p).st_mode & 0o001 for p in [*reversed(real.parents), real])


def python_for_checks() -> str:
    """A Python interpreter a check can run also as `nobody` (the test's may be in /root)."""
    for candidate in (sys.executable, shutil.which("python3") or "", "/usr/bin/python3"):
        if candidate and runnable_by_anyone(candidate):
            return candidate
    raise RuntimeError("no Python interpreter every user may run")


def public_dir(prefix: str, mode: int = 0o777) -> Path:
    """A temporary directory in the system's temp directory that every user can reach.

    A check may run as `nobody` (keyrotor as root), which cannot enter pytest's `tmp_path`.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(mode)
    return path


def git_repo(path: Path, files: dict[str, str], *, executable: tuple[str, ...] = ()) -> Path:
    """A Git repository at `path` with `files` committed (those in `executable` mode 755)."""
    run = ["git", "-C", str(path), "-c", "user.name=Test", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for rel, text in files.items():
        file = path / rel
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        if rel in executable:
            file.chmod(0o755)
    if files:
        subprocess.run([*run, "add", "--", *files], check=True)
        subprocess.run([*run, "commit", "-qm", "policies"], check=True)
    return path


def tree(path: Path) -> dict[str, str]:
    """Every file under `path`, `.git` included, by mode and content: to see nothing changed."""
    files = {}
    for entry in sorted(path.rglob("*")):
        if entry.is_symlink():
            files[str(entry.relative_to(path))] = f"link {os.readlink(entry)}"
        elif entry.is_file():
            digest = hashlib.sha256(entry.read_bytes()).hexdigest()
            files[str(entry.relative_to(path))] = f"{entry.stat().st_mode:o} {digest}"
    return files
