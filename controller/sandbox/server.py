"""The sandbox server process: moto's WSGI app, a movable clock, and AWS-like key checks.

Run as `python -m controller.sandbox.server --port 0 --start 2026-01-01T00:00:00Z`. It prints
one line, `keyrotor-sandbox ready http://127.0.0.1:PORT`, once it accepts connections, and exits
when its stdin reaches end-of-file, so it cannot outlive the process that launched it.

It is a separate process because freezegun patches `datetime` and `time` for a whole
interpreter: frozen in the test process it would also stop the clock of pytest, botocore's
signer and retry logic. Here only moto sees the sandbox clock, which is what makes IAM's
CreateDate and LastUsedDate controllable from a test.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import freezegun

from controller.sandbox.config import (
    CLOCK_PATH,
    CONTROL_PREFIX,
    READY_MARKER,
    REQUESTS_PATH,
    RESOURCE_SCOPING_PATH,
    SEED_PATH,
    format_instant,
    parse_instant,
)

# Code that must keep real time: the HTTP server's socket timeouts and keep-alive bookkeeping.
# freezegun adds its own defaults (threading, queue, ...) to these.
_REAL_TIME_MODULES = ["werkzeug", "socketserver", "selectors", "http.server", "http.client"]


class MovableClock:
    """A freezegun clock that ticks in real time from whatever instant it was last moved to.

    Ticking (rather than stopped) time keeps timestamps of successive calls distinct and ordered,
    as they are in AWS; tests move it by days, so the real seconds that pass do not matter.
    """

    def __init__(self, start: datetime) -> None:
        self._freezer = freezegun.freeze_time(start, tick=True, ignore=_REAL_TIME_MODULES)
        self._factory: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._factory = self._freezer.start()

    def stop(self) -> None:
        self._freezer.stop()

    def now(self) -> datetime:
        with self._lock:
            frozen: datetime = self._factory()
        return frozen.replace(tzinfo=UTC)

    def move_to(self, instant: datetime) -> datetime:
        with self._lock:
            self._factory.move_to(instant.astimezone(UTC).replace(tzinfo=None))
        return self.now()

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            current: datetime = self._factory()
            self._factory.move_to(current + delta)
        return self.now()


_SCOPE = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/")


class RequestLog:
    """Records every AWS operation the sandbox receives: (service, action, signing key id).

    Tests use it to prove what keyrotor called, e.g. that `plan` makes no mutating call, without
    wrapping keyrotor's own clients in anything.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.entries: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if match:
            self._record(environ, key=match.group(1), service=match.group(2))
        return self.app(environ, start_response)

    def _record(self, environ: WSGIEnvironment, *, key: str, service: str) -> None:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            action = target.rsplit(".", 1)[-1]
        else:
            body = _read_body(environ)
            environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
            form = dict(parse_qsl(body.decode("utf-8", "replace")))
            query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
            action = form.get("Action") or query.get("Action") or environ.get("REQUEST_METHOD", "")
        with self._lock:
            self.entries.append({"service": service, "action": action, "key": key})

    def snapshot(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self.entries)

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()


class ControlRoutes:
    """WSGI middleware serving `/_sandbox/clock` (and `requests`, `resource-scoping`); everything
    else goes to the wrapped app.

    `GET` answers `{"now": ISO}`. `POST` takes `{"now": ISO}` to jump to an instant or
    `{"advance_seconds": N}` to move relative to the server's own clock, which a client cannot
    do exactly with read-then-set (the clock ticks in between). Both directions are allowed:
    whether time may run backwards is for each test to decide.
    """

    def __init__(self, app: WSGIApplication, clock: MovableClock, log: RequestLog) -> None:
        self.app = app
        self.clock = clock
        self.log = log

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path == "/moto-api/reset":
            self.log.clear()
        if not path.startswith(CONTROL_PREFIX):
            return self.app(environ, start_response)
        if path == REQUESTS_PATH:
            if environ.get("REQUEST_METHOD") == "DELETE":
                self.log.clear()
            return _json(start_response, "200 OK", {"requests": self.log.snapshot()})
        if path == RESOURCE_SCOPING_PATH:
            return self._scoping(environ, start_response)
        if path == SEED_PATH and environ.get("REQUEST_METHOD") == "POST":
            return _seed(environ, start_response)
        if path != CLOCK_PATH:
            return _json(start_response, "404 Not Found", {"error": f"no such route {path}"})
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "GET":
            return _json(start_response, "200 OK", {"now": format_instant(self.clock.now())})
        if method != "POST":
            return _json(start_response, "405 Method Not Allowed", {"error": method})
        try:
            request = json.loads(_read_body(environ) or b"{}")
            if "now" in request:
                now = self.clock.move_to(parse_instant(str(request["now"])))
            elif "advance_seconds" in request:
                now = self.clock.advance(timedelta(seconds=float(request["advance_seconds"])))
            else:
                raise ValueError('expected {"now": ISO-8601} or {"advance_seconds": N}')
        except (ValueError, TypeError) as exc:
            return _json(start_response, "400 Bad Request", {"error": str(exc)})
        return _json(start_response, "200 OK", {"now": format_instant(now)})

    def _scoping(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        """`GET` answers `{"enabled": bool}`; `POST {"enabled": bool}` switches it."""
        from controller.sandbox import scoping

        if environ.get("REQUEST_METHOD") == "POST":
            try:
                request = json.loads(_read_body(environ) or b"{}")
                wanted = request["enabled"]
                if not isinstance(wanted, bool):
                    raise TypeError("enabled must be true or false")
            except (ValueError, TypeError, KeyError) as exc:
                return _json(start_response, "400 Bad Request", {"error": str(exc)})
            scoping.set_enabled(wanted)
        return _json(start_response, "200 OK", {"enabled": scoping.enabled()})


def _seed(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    from moto.core.exceptions import ServiceException

    from controller.sandbox.seeding import seed

    try:
        created = seed(json.loads(_read_body(environ) or b"{}"))
    except (ValueError, TypeError, KeyError, ServiceException) as exc:
        return _json(start_response, "400 Bad Request", {"error": f"{type(exc).__name__}: {exc}"})
    return _json(start_response, "200 OK", created)


def _read_body(environ: WSGIEnvironment) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body: bytes = environ["wsgi.input"].read(length) if length > 0 else b""
    return body


def _json(start_response: StartResponse, status: str, payload: object) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def build_app(clock: MovableClock) -> WSGIApplication:
    """moto behind the key checks, behind the control routes (which are never signed)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from controller.sandbox import iam_fidelity, scoping
    from controller.sandbox.auth import AccessKeyAuth

    scoping.install()
    iam_fidelity.install(clock.now)
    moto_app: WSGIApplication = DomainDispatcherApplication(create_backend_app)
    log = RequestLog(AccessKeyAuth(moto_app))
    return ControlRoutes(log, clock, log)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m controller.sandbox.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--start",
        type=parse_instant,
        required=True,
        metavar="ISO-8601",
        help="the sandbox clock's first instant, with a zone",
    )
    return parser.parse_args(argv)


def _shut_down_at_eof(server: Any) -> None:
    """The launcher holds our stdin open; EOF means it stopped us, exited, or was killed."""
    stdin = sys.stdin.buffer
    while stdin.read(4096):
        pass
    server.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    # Imported here, not at module level, so `--help` and argument errors stay instant.
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    clock = MovableClock(args.start)
    app = build_app(clock)
    # Request lines would bury the output of the code under test.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server(
        args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    clock.start()
    try:
        print(f"{READY_MARKER} http://{args.host}:{server.port}", flush=True)
        # From here on stdout is the launcher's problem no more: moto prints diagnostics with
        # print(), and the launcher closes its end of the pipe once it has read the ready line.
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        threading.Thread(target=_shut_down_at_eof, args=(server,), daemon=True).start()
        server.serve_forever()
    finally:
        server.server_close()
        clock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
