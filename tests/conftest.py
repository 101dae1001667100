"""Shared fixtures: a real Git remote, the embedded AWS, and a guard against the network.

Tests use real parts: GitPython against a bare repository with real pushes, boto3 against a
moto server on a loopback port. Nothing here may reach a non-loopback address.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import git
import pytest

from controller.sandbox import Sandbox, start_sandbox

# --- network guard -----------------------------------------------------------------------------

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths are local
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS: not local


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"test tried to reach non-loopback address {address!r}")
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"test tried to reach non-loopback address {address!r}")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to connect anywhere but loopback."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


# --- git ---------------------------------------------------------------------------------------


@dataclass
class GitRemote:
    """A bare "origin" and a working clone of it with one commit on `main`."""

    bare: Path
    clone: Path
    repo: git.Repo

    def second_clone(self, path: Path) -> git.Repo:
        """Another checkout of the same origin, as a concurrent run would have."""
        repo = git.Repo.clone_from(str(self.bare), str(path), branch="main")
        _identity(repo, "Other Run", "other@example.com")
        return repo


def _identity(repo: git.Repo, name: str, email: str) -> None:
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", name)
        cfg.set_value("user", "email", email)


@pytest.fixture
def git_remote(tmp_path: Path) -> GitRemote:
    bare = tmp_path / "origin.git"
    git.Repo.init(str(bare), bare=True, initial_branch="main")
    clone_path = tmp_path / "work"
    repo = git.Repo.init(str(clone_path), initial_branch="main")
    _identity(repo, "Test User", "test@example.com")
    (clone_path / "README.md").write_text("policies\n")
    repo.index.add(["README.md"])
    repo.index.commit("initial commit")
    repo.create_remote("origin", str(bare))
    repo.git.push("--set-upstream", "origin", "main")
    return GitRemote(bare=bare, clone=clone_path, repo=repo)


@pytest.fixture(autouse=True)
def _isolated_git_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No test reads the developer's ~/.gitconfig (signing, hooks, default branch)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    yield


# --- the embedded AWS --------------------------------------------------------------------------

#: Every test starts with the sandbox clock here, so expectations can be written as dates.
SANDBOX_START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    """One server process for the whole run: starting one costs about half a second."""
    with start_sandbox(SANDBOX_START) as sandbox:
        yield sandbox


@pytest.fixture
def aws(sandbox_server: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """An empty AWS account whose clock reads SANDBOX_START, reachable by plain `boto3.client`.

    The environment carries the sandbox's admin credentials and endpoint, and boto3's default
    session is dropped before and after, because it keeps the credentials it first resolved.
    """
    sandbox_server.reset(SANDBOX_START)
    for name, value in sandbox_server.env(os.environ).items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    yield sandbox_server
