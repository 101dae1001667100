"""Fixtures: a real Git remote, the embedded AWS, the GitHub stand-in, one rotation world, and a
guard against the network. The helpers behind them live in `tests/support/`.

Tests use real parts: GitPython against a bare repository with real pushes, boto3 against a
moto server on a loopback port. Nothing here may reach a non-loopback address.

Tests that use the embedded AWS or the GitHub stand-in are marked `e2e` automatically, so
`pytest -m "not e2e"` runs the fast unit tests alone.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from controller.sandbox import Sandbox, start_sandbox
from tests.support.github_standin import GitHubStandIn, run_standin
from tests.support.gitremote import GitRemote, make_remote
from tests.support.network import guarded_connect, guarded_connect_ex
from tests.support.world import World

#: Fixtures that make a test end-to-end: it talks to a server process over loopback.
E2E_FIXTURES = frozenset({"sandbox_server", "aws", "world", "github"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to connect anywhere but loopback."""
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)


@pytest.fixture(autouse=True)
def _isolated_git_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No test reads the developer's ~/.gitconfig (signing, hooks, default branch)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    yield


@pytest.fixture
def git_remote(tmp_path: Path) -> GitRemote:
    return make_remote(tmp_path)


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


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    """The GitHub stand-in: every request and response checked against GitHub's OpenAPI."""
    yield from run_standin()


@pytest.fixture
def world(aws: Sandbox, tmp_path: Path, git_remote: GitRemote) -> World:
    """The embedded AWS, a policy repository (bare origin and a clone) and nothing seeded yet."""
    return World(aws=aws, bare=git_remote.bare, clone=git_remote.clone, tmp=tmp_path)
