"""The `http` check against a server on 127.0.0.1; and the runner of command and http checks."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from controller.checks import CheckResult
from controller.checks.http import backoff, run_http_check
from controller.checks.runner import external_check_indexes, run_external_checks
from controller.policy import (
    CommandCheck,
    HttpCheck,
    NewKeyUsedCheck,
    OldKeyIdleCheck,
    Policy,
    SecretsManagerTarget,
    Source,
    UserSelection,
)
from controller.secret import AccessKeySecret
from tests.support.checks import git_repo, python_for_checks


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class Server:
    """Answers each GET with the next planned reply (the last one once the plan runs out)."""

    def __init__(self) -> None:
        self.plan: list[Reply] = [Reply()]
        self.paths: list[str] = []
        self.user_agents: list[str] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                server.user_agents.append(self.headers.get("User-Agent", ""))
                reply = server.plan.pop(0) if len(server.plan) > 1 else server.plan[0]
                if reply.delay:
                    server.release.wait(reply.delay)
                    return  # the client gave up: answer nothing
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = False
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def url(self, path: str = "/healthz") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()  # joins the handler threads
        self.thread.join()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    running = Server()
    running.thread.start()
    yield running
    running.close()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def check(url: str, **kwargs: object) -> HttpCheck:
    return HttpCheck(url=url, **kwargs)  # type: ignore[arg-type]


def test_the_expected_status_passes(server: Server) -> None:
    sleeps = Sleeps()
    result = run_http_check(check(server.url()), sleep=sleeps)
    assert result == CheckResult("http", True, f"GET {server.url()} answered 200 OK")
    assert server.paths == ["/healthz"]
    assert server.user_agents[0].startswith("keyrotor/")
    assert sleeps == []


def test_a_wrong_status_fails_after_the_retries(server: Server) -> None:
    server.plan = [Reply(503, b"down")]
    sleeps = Sleeps()
    result = run_http_check(check(server.url(), retries=2), sleep=sleeps)
    assert result == CheckResult(
        "http",
        False,
        f"GET {server.url()} answered 503 Service Unavailable, expected 200 (attempt 3 of 3)",
    )
    assert len(server.paths) == 3
    assert sleeps == [1.0, 2.0]


def test_redirects_are_not_followed(server: Server) -> None:
    server.plan = [Reply(302, b"", headers={"Location": "/login"})]
    result = run_http_check(check(server.url(), expect_status=302, retries=0), sleep=Sleeps())
    assert result.passed and "answered 302 Found" in result.message
    assert server.paths == ["/healthz"]


def test_the_body_must_contain_the_text(server: Server) -> None:
    server.plan = [Reply(200, b'{"status": "degraded"}')]
    result = run_http_check(check(server.url(), body_contains='"ok"', retries=0), sleep=Sleeps())
    assert result == CheckResult(
        "http",
        False,
        f"GET {server.url()} answered 200 OK, but the body does not contain '\"ok\"'",
    )
    server.plan = [Reply(200, b'{"status": "ok"}')]
    result = run_http_check(check(server.url(), body_contains='"ok"'), sleep=Sleeps())
    assert result == CheckResult(
        "http", True, f"GET {server.url()} answered 200 OK containing '\"ok\"'"
    )


def test_retries_until_it_passes(server: Server) -> None:
    server.plan = [Reply(502), Reply(200, b"starting"), Reply(200, b"ready")]
    sleeps = Sleeps()
    result = run_http_check(check(server.url(), body_contains="ready", retries=3), sleep=sleeps)
    assert result == CheckResult(
        "http", True, f"GET {server.url()} answered 200 OK containing 'ready' (attempt 3 of 4)"
    )
    assert sleeps == [1.0, 2.0]


def test_a_slow_server_times_out(server: Server) -> None:
    server.plan = [Reply(delay=5)]
    result = run_http_check(
        check(server.url(), timeout=timedelta(seconds=0.2), retries=0), sleep=Sleeps()
    )
    assert result == CheckResult("http", False, f"GET {server.url()} timed out after 0.2s")


def test_a_refused_connection_fails(server: Server) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/healthz"
    sleeps = Sleeps()
    result = run_http_check(check(url, retries=1), sleep=sleeps)
    assert not result.passed
    assert result.message.startswith(f"GET {url} failed: cannot connect (")
    assert result.message.endswith(" (attempt 2 of 2)")
    assert sleeps == [1.0]


def test_backoff_doubles_up_to_30_seconds() -> None:
    assert [backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


# --- the runner --------------------------------------------------------------------------------


def test_the_runner_runs_command_and_http_checks_by_index(server: Server, tmp_path: Path) -> None:
    server.plan = [Reply(500)]
    py = python_for_checks()
    policy = Policy(
        name="p",
        source=Source("p.yaml"),
        users=UserSelection(names=("u",)),
        max_key_age=timedelta(days=90),
        targets=(SecretsManagerTarget("s"),),
        checks=(
            NewKeyUsedCheck(),
            CommandCheck(run=(py, "-c", "print('hello')")),
            OldKeyIdleCheck(timedelta(hours=1)),
            HttpCheck(url=server.url(), retries=0),
            CommandCheck(run=(py, "-c", "print('the secret'); raise SystemExit(2)")),
        ),
    )
    repo = git_repo(tmp_path / "policies", {})
    assert external_check_indexes(policy) == [1, 3, 4]
    key = AccessKeySecret("AKIANEW", "secret")
    logged: list[tuple[int, str]] = []
    results = run_external_checks(
        policy,
        cwd=repo,
        new_key=key,
        secrets=(),
        sleep=Sleeps(),
        on_output=lambda index, outcome: logged.append((index, outcome.output)),
    )
    assert sorted(results) == [1, 3, 4]
    assert [results[i].passed for i in (1, 3, 4)] == [True, False, False]
    assert results[3].check == "http" and results[4].check == "command"
    assert logged == [(1, "hello"), (4, "the ***")]
    only = run_external_checks(
        policy, index_filter={3}, cwd=repo, new_key=key, secrets=(), sleep=Sleeps()
    )
    assert list(only) == [3]
