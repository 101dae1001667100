"""A fault-injecting reverse proxy between boto3 and the sandbox's moto server.

Point boto3 at `FaultProxy.endpoint_url` (the environment from `FaultProxy.env()`, or a client
from `FaultProxy.client()`) and every AWS request passes through it. The proxy names each request
by service and action, records it, and applies the first rule that selects it:

    with start_fault_proxy(aws) as proxy, proxy.faults(Rule(Fault.CLOSE_AFTER, "CreateAccessKey")):
        ...
    assert proxy.count("CreateAccessKey") == 1

Faults are what a client meets on the way to AWS:

- `THROTTLE`, `ERROR_500`, `ERROR_503`: an error answer in the service's own protocol (the
  query protocol's XML `ErrorResponse`, or the JSON protocol's `{"__type": ...}`); the request
  never reaches moto, as AWS applies no throttled request.
- `CLOSE_BEFORE`: the connection is closed after the request was read, without forwarding it.
- `CLOSE_AFTER`: the request is forwarded, moto applies it and answers, and the connection is
  closed without that answer: the "lost answer" of a request that did take effect.
- `SLOW`: the request is forwarded and applied; the answer is sent after `Rule.delay` seconds,
  waited with the proxy's `sleep` (inject one so that tests do not wait in real time).

The proxy runs in the test process, on threads, so a test's own rules and counters need no
inter-process plumbing; a `keyrotor` subprocess reaches it over loopback like any other client.
"""

from __future__ import annotations

import enum
import http.client
import json
import os
import random
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qsl, urlsplit

from controller.sandbox import (
    Sandbox,
    apply_env,
)
from controller.sandbox.clients import AdminClients

if TYPE_CHECKING:
    import pytest


class Fault(enum.Enum):
    THROTTLE = "throttle"
    ERROR_500 = "500"
    ERROR_503 = "503"
    CLOSE_BEFORE = "close-before"
    CLOSE_AFTER = "close-after"
    SLOW = "slow"


#: The kinds a matrix over a rotation's calls injects at each call (issue 12): refusals AWS
#: applied nothing for, and the two ways a connection drops, before and after AWS applied it.
MATRIX_FAULTS: tuple[Fault, ...] = (
    Fault.THROTTLE,
    Fault.ERROR_500,
    Fault.ERROR_503,
    Fault.CLOSE_BEFORE,
    Fault.CLOSE_AFTER,
)

#: Error answers per fault: (HTTP status, reason, query-protocol code, JSON-protocol code, text).
#: The codes are those AWS documents as common errors; botocore's retry modes know all of them.
_ERROR_ANSWERS: dict[Fault, tuple[int, str, str, str, str]] = {
    Fault.THROTTLE: (400, "Bad Request", "Throttling", "ThrottlingException", "Rate exceeded"),
    Fault.ERROR_500: (
        500,
        "Internal Server Error",
        "InternalFailure",
        "InternalFailure",
        "The request processing has failed because of an unknown error.",
    ),
    Fault.ERROR_503: (
        503,
        "Service Unavailable",
        "ServiceUnavailable",
        "ServiceUnavailable",
        "The request has failed due to a temporary failure of the server.",
    ),
}

#: Request parameters that carry secret values; recorded as REDACTED, never kept.
SECRET_PARAMS = frozenset({"SecretString", "SecretBinary", "Value", "SecretAccessKey"})
REDACTED = "<redacted>"

_SCOPE = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/")
_XML_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
_UPSTREAM_TIMEOUT = 60.0


class FaultProxyError(Exception):
    """The proxy itself failed (a bug in the harness, not a fault it injected)."""


@dataclass(frozen=True)
class Rule:
    """Which requests get which fault. Every field left out matches anything.

    `nth` picks the n-th request (1-based) this rule's service/action/where select, counted from
    when the rule was installed; without it every selected request is a candidate. `limit` caps
    how many times the rule fires. `probability` fires on that share of candidates, drawn from the
    proxy's seeded generator. A tuple of faults picks one per firing from the same generator.
    `where` compares request parameters exactly, e.g. `{"UserName": "deploy-bot"}`.
    """

    fault: Fault | tuple[Fault, ...]
    action: str | None = None
    service: str | None = None
    nth: int | None = None
    limit: int | None = None
    probability: float = 1.0
    delay: float = 0.0
    where: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.nth is not None and self.nth < 1:
            raise ValueError(f"nth counts from 1, got {self.nth}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {self.probability}")
        if isinstance(self.fault, tuple) and not self.fault:
            raise ValueError("give at least one fault")

    def selects(self, call: _Request) -> bool:
        return (
            (self.service is None or self.service == call.service)
            and (self.action is None or self.action == call.action)
            and all(call.params.get(name) == value for name, value in self.where.items())
        )


@dataclass(frozen=True)
class ProxiedCall:
    """One AWS request the proxy received, and what became of it.

    `params` are the request's parameters (query-protocol form fields as strings, JSON-protocol
    members as decoded), secret values replaced by REDACTED. `forwarded` says moto received it;
    `status` and `error` are moto's answer (None when not forwarded), whether or not the client
    was given that answer.
    """

    service: str
    action: str
    key: str
    params: Mapping[str, object]
    fault: Fault | None
    forwarded: bool
    status: int | None
    error: str | None
    rule: Rule | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        fault = f" [{self.fault.value}]" if self.fault else ""
        answer = f" -> {self.status}" if self.status is not None else ""
        error = f" {self.error}" if self.error else ""
        return f"{self.service} {self.action}{fault}{answer}{error}"


@dataclass(frozen=True)
class _Request:
    service: str
    action: str
    key: str
    params: Mapping[str, object]
    json_protocol: bool
    content_type: str


@dataclass
class _RuleState:
    rule: Rule
    selected: int = 0
    fired: int = 0


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class FaultProxy(AdminClients):
    """A reverse proxy on a loopback port in front of `upstream` (the sandbox's URL).

    `seed` seeds the generator behind `Rule.probability` and fault tuples. `sleep` waits out a
    SLOW fault's delay; by default it is a real wait that `stop()` interrupts.
    """

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        sleep: Callable[[float], object] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self._upstream = (parts.hostname, parts.port or 80)
        self._rng = random.Random(seed)
        self._stopping = threading.Event()
        self._sleep: Callable[[float], object] = sleep or self._stopping.wait
        self._lock = threading.Lock()
        self._rules: list[_RuleState] = []
        self._calls: list[ProxiedCall] = []
        self._connections: set[socket.socket] = set()
        self._errors: list[BaseException] = []
        self._accepted = 0
        self._server = _Server((host, 0), _Handler, self)
        self._thread: threading.Thread | None = None
        self._stopped = False

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fault-proxy",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every open connection, wait for the handlers. Safe twice."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is None and self._errors:
            raise FaultProxyError(f"the fault proxy failed: {self._errors[0]!r}") from (
                self._errors[0]
            )

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions the proxy's own code raised (not client disconnects): harness bugs."""
        with self._lock:
            return list(self._errors)

    @property
    def connections(self) -> int:
        """How many client connections the proxy has accepted (keep-alive reuses one)."""
        with self._lock:
            return self._accepted

    # --- rules ---------------------------------------------------------------------------------

    def add(self, *rules: Rule) -> None:
        """Install rules after those already installed; each counts from now."""
        with self._lock:
            self._rules.extend(_RuleState(rule) for rule in rules)

    def set_rules(self, *rules: Rule) -> None:
        """Replace every rule (and its counters)."""
        with self._lock:
            self._rules = [_RuleState(rule) for rule in rules]

    def clear_rules(self) -> None:
        self.set_rules()

    @contextmanager
    def faults(self, *rules: Rule) -> Iterator[None]:
        """Rules in force for the `with` block only; the rules installed before are kept."""
        states = [_RuleState(rule) for rule in rules]
        with self._lock:
            self._rules.extend(states)
        try:
            yield
        finally:
            with self._lock:
                self._rules = [s for s in self._rules if all(s is not t for t in states)]

    def fired(self, rule: Rule) -> int:
        """How many recorded requests `rule` (the very object installed) gave its fault."""
        return sum(1 for call in self.calls() if call.rule is rule)

    # --- what was seen -------------------------------------------------------------------------

    def calls(
        self, action: str | None = None, *, service: str | None = None, **where: object
    ) -> list[ProxiedCall]:
        """The recorded AWS requests in arrival order, optionally only the matching ones."""
        with self._lock:
            calls = list(self._calls)
        return [
            c
            for c in calls
            if (action is None or c.action == action)
            and (service is None or c.service == service)
            and all(c.params.get(name) == value for name, value in where.items())
        ]

    def count(
        self, action: str | None = None, *, service: str | None = None, **where: object
    ) -> int:
        return len(self.calls(action, service=service, **where))

    def secret_value_reads(self) -> list[ProxiedCall]:
        """Requests whose answer carries a secret value: GetSecretValue (and its batch form),
        GetParameter(s)/GetParametersByPath with WithDecryption, and GetParameterHistory (which
        returns SecureString values decrypted whatever WithDecryption says, in moto as in AWS).
        """
        return [c for c in self.calls() if _reads_secret_value(c)]

    def answered(self, error: str) -> list[ProxiedCall]:
        """The requests moto answered with error code `error`, e.g. `LimitExceeded`."""
        return [c for c in self.calls() if c.error == error]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    # --- clients -------------------------------------------------------------------------------

    def env(
        self, sandbox: Sandbox, environ: Mapping[str, str] | None = None
    ) -> dict[str, str | None]:
        """`sandbox.env()` with AWS_ENDPOINT_URL pointing at this proxy."""
        changes = sandbox.env(os.environ if environ is None else environ)
        changes["AWS_ENDPOINT_URL"] = self.endpoint_url
        return changes

    def environ(self, sandbox: Sandbox, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A complete environment for a subprocess (e.g. `keyrotor apply`) that goes through
        the proxy."""
        base = os.environ if base is None else base
        return apply_env(self.env(sandbox, base), base)

    # --- the handler's side --------------------------------------------------------------------

    def _register(self, connection: socket.socket) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            self._connections.add(connection)
            self._accepted += 1
            return True

    def _unregister(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            self._errors.append(error)

    def _decide(self, request: _Request) -> Rule | None:
        """Advance every selecting rule's counter; the first eligible rule fires."""
        chosen: Rule | None = None
        with self._lock:
            for state in self._rules:
                rule = state.rule
                if not rule.selects(request):
                    continue
                state.selected += 1
                if chosen is not None:
                    continue
                if rule.nth is not None and state.selected != rule.nth:
                    continue
                if rule.limit is not None and state.fired >= rule.limit:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                state.fired += 1
                chosen = rule
        return chosen

    def _pick(self, rule: Rule) -> Fault:
        if isinstance(rule.fault, Fault):
            return rule.fault
        with self._lock:
            return self._rng.choice(rule.fault)

    def _record(
        self, request: _Request, rule: Rule | None, fault: Fault | None, answer: _Answer | None
    ) -> None:
        call = ProxiedCall(
            service=request.service,
            action=request.action,
            key=request.key,
            params=request.params,
            fault=fault,
            forwarded=answer is not None,
            status=None if answer is None else answer.status,
            error=None if answer is None else _error_code(answer),
            rule=rule,
        )
        with self._lock:
            self._calls.append(call)

    def _forward(
        self, method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> _Answer:
        """One request to moto on a connection of its own, read to the end."""
        upstream = http.client.HTTPConnection(*self._upstream, timeout=_UPSTREAM_TIMEOUT)
        try:
            forwarded = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP}
            forwarded["Connection"] = "close"
            upstream.request(method, path, body=body or None, headers=forwarded)
            response = upstream.getresponse()
            data = response.read()
            return _Answer(response.status, response.reason, response.getheaders(), data)
        finally:
            upstream.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the handler threads
    block_on_close = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], proxy: FaultProxy
    ) -> None:
        self.proxy = proxy
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, ConnectionError | TimeoutError):
            self.proxy._failed(error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects
    server: _Server

    def setup(self) -> None:
        super().setup()
        if not self.server.proxy._register(self.connection):
            self.close_connection = True

    def finish(self) -> None:
        self.server.proxy._unregister(self.connection)
        with suppress(OSError):
            super().finish()

    def handle_one_request(self) -> None:
        if self.server.proxy._stopping.is_set():
            self.close_connection = True
            return
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines would bury the output of the code under test

    def _proxy(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = _identify(self.path, self.headers, body)
        rule = proxy._decide(request) if request is not None else None
        fault = proxy._pick(rule) if rule is not None else None
        assert request is not None or fault is None

        if fault in _ERROR_ANSWERS:
            assert request is not None and fault is not None
            proxy._record(request, rule, fault, None)
            self._send(_error_answer(fault, request))
            return
        if fault is Fault.CLOSE_BEFORE:
            assert request is not None
            proxy._record(request, rule, fault, None)
            self.close_connection = True
            return
        try:
            answer = proxy._forward(self.command, self.path, self.headers.items(), body)
        except OSError:
            if request is not None:
                proxy._record(request, rule, fault, None)
            self._send(_Answer(502, "Bad Gateway", [("Content-Type", "text/plain")], b""))
            return
        if request is not None:
            proxy._record(request, rule, fault, answer)
        if fault is Fault.CLOSE_AFTER:
            self.close_connection = True
            return
        if fault is Fault.SLOW:
            assert rule is not None
            proxy._sleep(rule.delay)
            if proxy._stopping.is_set():  # a stopping proxy answers nothing more
                self.close_connection = True
                return
        self._send(answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _proxy

    def _send(self, answer: _Answer) -> None:
        try:
            self.send_response_only(answer.status, answer.reason)
            for name, value in answer.headers:
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:
            # The client gave up (a read timeout during a SLOW answer): nothing to tell it.
            self.close_connection = True


def _identify(path: str, headers: Any, body: bytes) -> _Request | None:
    """Service, action and parameters of an AWS request; None for anything else (moto's API)."""
    scope = _SCOPE.search(headers.get("Authorization", ""))
    key, service = (scope.group(1), scope.group(2)) if scope else ("", "")
    content_type = headers.get("Content-Type", "")
    target = headers.get("X-Amz-Target", "")
    if target:
        params: dict[str, object] = {}
        with suppress(ValueError, UnicodeDecodeError):
            decoded = json.loads(body or b"{}")
            if isinstance(decoded, dict):
                params = decoded
        action = target.rsplit(".", 1)[-1]
        return _Request(service, action, key, _redact(params), True, content_type)
    query = urlsplit(path).query
    fields = dict(parse_qsl(query, keep_blank_values=True))
    if "x-www-form-urlencoded" in content_type:
        fields.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    action = fields.pop("Action", "")
    if not action:
        return None
    fields.pop("Version", None)
    return _Request(service, action, key, _redact(dict(fields)), False, content_type)


_SECRET_READS = frozenset(
    {
        ("secretsmanager", "GetSecretValue"),
        ("secretsmanager", "BatchGetSecretValue"),
        ("ssm", "GetParameterHistory"),
    }
)
_DECRYPTING_READS = frozenset({"GetParameter", "GetParameters", "GetParametersByPath"})


def _reads_secret_value(call: ProxiedCall) -> bool:
    if (call.service, call.action) in _SECRET_READS:
        return True
    return (
        call.service == "ssm"
        and call.action in _DECRYPTING_READS
        and call.params.get("WithDecryption") is True
    )


def _redact(params: dict[str, object]) -> dict[str, object]:
    return {k: (REDACTED if k in SECRET_PARAMS else v) for k, v in params.items()}


def _error_answer(fault: Fault, request: _Request) -> _Answer:
    status, reason, query_code, json_code, message = _ERROR_ANSWERS[fault]
    request_id = str(uuid.uuid4())
    if request.json_protocol:
        body = json.dumps({"__type": json_code, "message": message}).encode()
        content_type = request.content_type or "application/x-amz-json-1.1"
    else:
        body = (
            "<ErrorResponse><Error><Type>"
            + ("Sender" if status < 500 else "Receiver")
            + f"</Type><Code>{query_code}</Code><Message>{message}</Message></Error>"
            + f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        content_type = "text/xml"
    headers = [("Content-Type", content_type), ("x-amzn-RequestId", request_id)]
    return _Answer(status, reason, headers, body)


def _error_code(answer: _Answer) -> str | None:
    if answer.status < 400:
        return None
    match = _XML_CODE.search(answer.body)
    if match:
        return match.group(1).decode("utf-8", "replace")
    with suppress(ValueError, UnicodeDecodeError):
        decoded = json.loads(answer.body)
        if isinstance(decoded, dict) and isinstance(decoded.get("__type"), str):
            return str(decoded["__type"]).rsplit("#", 1)[-1]
    return None


@contextmanager
def start_fault_proxy(
    upstream: Sandbox | str, *, seed: int = 0, sleep: Callable[[float], object] | None = None
) -> Iterator[FaultProxy]:
    """`with start_fault_proxy(aws) as proxy:`; stopped however the block ends.

    For a fixture that points keyrotor (in-process or a subprocess) at the proxy:

        @pytest.fixture
        def faults(aws, monkeypatch):
            with start_fault_proxy(aws) as proxy:
                monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint_url)
                yield proxy
    """
    url = upstream.endpoint_url if isinstance(upstream, Sandbox) else upstream
    with FaultProxy(url, seed=seed, sleep=sleep) as proxy:
        yield proxy


def run_fault_proxy(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch | None = None,
    *,
    seed: int = 0,
    sleep: Callable[[float], object] | None = None,
) -> Iterator[FaultProxy]:
    """The body of a pytest fixture: a running proxy in front of `sandbox`, AWS_ENDPOINT_URL
    pointing at it when `monkeypatch` is given; the teardown fails if the proxy itself failed.

        @pytest.fixture
        def faults(aws, monkeypatch):
            yield from run_fault_proxy(aws, monkeypatch)
    """
    proxy = FaultProxy(sandbox.endpoint_url, seed=seed, sleep=sleep)
    with proxy:
        if monkeypatch is not None:
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint_url)
        yield proxy


@dataclass(frozen=True)
class FaultPoint:
    """The `nth` request for `service` `action` of a recorded run: one place to inject a fault."""

    service: str
    action: str
    nth: int

    def rule(self, fault: Fault, **options: Any) -> Rule:
        """A rule for `fault` at exactly this point of a run that repeats the recorded one."""
        return Rule(fault, self.action, service=self.service, nth=self.nth, **options)

    def __str__(self) -> str:
        return f"{self.service}:{self.action}#{self.nth}"


def fault_points(
    calls: Sequence[ProxiedCall], *, only: Callable[[ProxiedCall], bool] | None = None
) -> list[FaultPoint]:
    """Every request of a clean run as a point for a fault matrix, in order.

    Record a clean run (from `clear_calls()` on), then for each point and each of
    MATRIX_FAULTS: reset the world, install `point.rule(fault)` and repeat the run (the rule
    counts from its installation, as `nth` here counts from the first recorded call). `only`
    keeps some calls, e.g. `lambda c: not c.action.startswith(("Get", "List", "Describe"))`.
    """
    seen: dict[tuple[str, str], int] = {}
    points: list[FaultPoint] = []
    for call in calls:
        key = (call.service, call.action)
        seen[key] = seen.get(key, 0) + 1
        if only is None or only(call):
            points.append(FaultPoint(call.service, call.action, seen[key]))
    return points
