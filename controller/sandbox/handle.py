"""The launcher's side of the sandbox: start the server process, drive its clock, stop it.

This module does not import moto or freezegun; they are loaded in the server process only.
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import subprocess
import sys
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from controller.errors import KeyrotorError
from controller.sandbox.clients import AdminClients
from controller.sandbox.config import (
    ADMIN_ACCESS_KEY_ID,
    ADMIN_SECRET_ACCESS_KEY,
    CLOCK_PATH,
    DEFAULT_START,
    READY_MARKER,
    REGION,
    REQUESTS_PATH,
    RESET_AUTH_PATH,
    RESOURCE_SCOPING_PATH,
    SEED_PATH,
    format_instant,
    parse_instant,
)

if TYPE_CHECKING:
    pass

#: Variables that would make boto3 sign with something other than the sandbox's credentials,
#: send requests elsewhere, or wait on a metadata service that is not there.
ENV_VARS_TO_CLEAR: tuple[str, ...] = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_CA_BUNDLE",
)

_STARTUP_TIMEOUT = 20.0
_STOP_TIMEOUT = 5.0


class SandboxError(KeyrotorError):
    """The embedded AWS could not be started or did not accept a control request."""


@dataclass(frozen=True)
class AccessKeyPair:
    user_name: str
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class SeededUser:
    """A user `Sandbox.seed_users` created; `access_key_id` None when it was given no key."""

    name: str
    access_key_id: str | None
    created: datetime | None


@dataclass(frozen=True)
class UserSeed:
    """What `Sandbox.seed_users` creates for one user.

    `key_created` gives the user one active key with that CreateDate (None: no key); `own_key`
    records that key in the `keyrotor.dev/keys` tag as if keyrotor had adopted it; `secret_id`
    stores the key in a new Secrets Manager secret of that name.
    """

    name: str
    path: str = "/"
    tags: Mapping[str, str] | None = None
    key_created: datetime | None = None
    own_key: bool = False
    secret_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "tags": dict(self.tags or {}),
            "key_created": format_instant(self.key_created) if self.key_created else None,
            "own_key": self.own_key,
            "secret_id": self.secret_id,
        }


#: moto's account for requests signed with credentials it did not issue (the harness's own).
DEFAULT_ACCOUNT_ID = "123456789012"

_SEED_BATCH = 2000


@dataclass(frozen=True)
class RecordedCall:
    """One AWS operation the sandbox received: `iam CreateAccessKey` signed with `key`."""

    service: str
    action: str
    key: str

    def __str__(self) -> str:
        return f"{self.service} {self.action}"


class Sandbox(AdminClients):
    """A running sandbox server. Create with `Sandbox.launch()` or `start_sandbox()`.

    The clock methods return and accept time-zone-aware datetimes only: the server's clock is
    UTC, and a naive value would silently mean something else on a developer's laptop.
    """

    def __init__(self, process: subprocess.Popen[bytes], endpoint_url: str, start: datetime):
        self._process = process
        self._endpoint_url = endpoint_url
        parts = urlsplit(endpoint_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self.start = start
        # A sandbox nobody stopped must not keep a server running after the interpreter exits.
        self._finalizer = weakref.finalize(self, _stop_process, process)

    @classmethod
    def launch(cls, start: datetime = DEFAULT_START, *, timeout: float = _STARTUP_TIMEOUT) -> Self:
        """Start the server process and return once it accepts connections.

        Readiness is the server's own ready line, not a connect-retry loop: it is printed after
        the socket is listening, so the first request cannot race the bind.
        """
        command = [
            sys.executable,
            "-m",
            "controller.sandbox.server",
            "--port",
            "0",
            "--start",
            format_instant(start),
        ]
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=apply_env(_child_env(), os.environ),
        )
        try:
            endpoint_url = _await_ready(process, timeout)
        except BaseException:
            _stop_process(process)
            raise
        return cls(process, endpoint_url, start)

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        return self._endpoint_url

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        """Close the server's stdin (its signal to exit) and reap it. Safe to call twice."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- state ---------------------------------------------------------------------------------

    def reset(self, start: datetime | None = None) -> None:
        """Forget every resource (moto's own reset) and put the clock back to `start`.

        `start` defaults to the instant the sandbox was launched with. IAM authorization is
        turned off too, so a test that left it on cannot break the next one.
        """
        self.set_iam_enforcement(False)
        self._request("POST", "/moto-api/reset")
        self.set_clock(self.start if start is None else start)

    def now(self) -> datetime:
        return parse_instant(self._clock("GET")["now"])

    def set_clock(self, instant: datetime) -> datetime:
        """Jump the clock to `instant`; it keeps ticking in real time from there."""
        return parse_instant(self._clock("POST", {"now": format_instant(instant)})["now"])

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock by `delta` (server-side, so no real time is lost in between)."""
        reply = self._clock("POST", {"advance_seconds": delta.total_seconds()})
        return parse_instant(reply["now"])

    def requests(self) -> list[RecordedCall]:
        """Every AWS operation received since the last reset or `clear_requests`, in order."""
        reply = json.loads(self._request("GET", REQUESTS_PATH))
        return [RecordedCall(**entry) for entry in reply["requests"]]

    def clear_requests(self) -> None:
        self._request("DELETE", REQUESTS_PATH)

    # --- IAM authorization -------------------------------------------------------------------

    def set_iam_enforcement(self, enforced: bool) -> None:
        """Turn moto's IAM authorization on (every caller but the admin identity needs a policy
        that allows the call on the resource's ARN) or off (the default). It is one switch for
        the whole server: prefer `iam_enforced()`, which always turns it off again."""
        self._request("POST", RESET_AUTH_PATH, raw=b"0" if enforced else b"inf")
        self._request("POST", RESOURCE_SCOPING_PATH, {"enabled": enforced})

    @contextmanager
    def iam_enforced(self) -> Iterator[Self]:
        """`with aws.iam_enforced():` IAM authorization with resource scoping, then off again."""
        self.set_iam_enforcement(True)
        try:
            yield self
        finally:
            self.set_iam_enforcement(False)

    def iam_enforcement(self) -> bool:
        """Whether resource scoping is on (it is switched together with enforcement)."""
        return bool(json.loads(self._request("GET", RESOURCE_SCOPING_PATH))["enabled"])

    # --- clients -------------------------------------------------------------------------------

    def env(self, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
        """Environment changes that point boto3 (in this process or a child) at the sandbox.

        A value of None means "unset". `environ` is consulted for the service-specific
        `AWS_ENDPOINT_URL_<SERVICE>` variables, which would override `AWS_ENDPOINT_URL`.
        The config and credentials files are replaced by the empty file so that a developer's
        `~/.aws` cannot change where or how requests go.
        """
        changes: dict[str, str | None] = dict.fromkeys(ENV_VARS_TO_CLEAR)
        for name in environ or {}:
            if name.startswith("AWS_ENDPOINT_URL_"):
                changes[name] = None
        changes.update(
            {
                "AWS_ENDPOINT_URL": self._endpoint_url,
                "AWS_ACCESS_KEY_ID": ADMIN_ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET_ACCESS_KEY,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        return changes

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A complete environment for a subprocess (e.g. the `keyrotor` CLI) using the sandbox."""
        base = os.environ if base is None else base
        return apply_env(self.env(base), base)

    def create_user_with_key(self, user_name: str, *, path: str = "/") -> AccessKeyPair:
        """Seed a user that has one active key, as the starting point of most rotations."""
        iam = self.client("iam")
        iam.create_user(UserName=user_name, Path=path)
        key = iam.create_access_key(UserName=user_name)["AccessKey"]
        return AccessKeyPair(user_name, key["AccessKeyId"], key["SecretAccessKey"])

    def seed_users(
        self, users: Iterable[UserSeed], *, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> list[SeededUser]:
        """Create many users straight in moto's backend, bypassing the API (and the request log).

        Thousands of users take a second or two this way rather than minutes through IAM's API.
        """
        created: list[SeededUser] = []
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            reply = json.loads(
                self._request("POST", SEED_PATH, {"account_id": account_id, "users": batch})
            )
            for entry in reply["users"]:
                at = entry["created"]
                created.append(
                    SeededUser(
                        entry["name"], entry["access_key_id"], parse_instant(at) if at else None
                    )
                )
            batch.clear()

        for user in users:
            batch.append(user.to_json())
            if len(batch) >= _SEED_BATCH:
                flush()
        if batch:
            flush()
        return created

    # --- transport -----------------------------------------------------------------------------

    def _clock(self, method: str, payload: dict[str, Any] | None = None) -> dict[str, str]:
        reply: dict[str, str] = json.loads(self._request(method, CLOCK_PATH, payload))
        return reply

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        raw: bytes | None = None,
    ) -> bytes:
        if not self.running:
            raise SandboxError(f"the sandbox server (pid {self.pid}) is not running")
        body = raw if payload is None else json.dumps(payload).encode()
        connection = http.client.HTTPConnection(self._host, self._port, timeout=30)
        try:
            connection.request(
                method, path, body=body, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status >= 300:
            raise SandboxError(
                f"{method} {path} answered {response.status}: {data.decode(errors='replace')}"
            )
        return data


@contextmanager
def start_sandbox(start: datetime = DEFAULT_START) -> Iterator[Sandbox]:
    """`with start_sandbox() as aws:` — the server is stopped however the block ends."""
    sandbox = Sandbox.launch(start)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def apply_env(changes: Mapping[str, str | None], base: Mapping[str, str]) -> dict[str, str]:
    """`base` with `changes` applied, where None deletes a variable."""
    result = dict(base)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def _child_env() -> dict[str, str | None]:
    # The server needs no AWS configuration, and botocore inside moto raises ProfileNotFound
    # for an AWS_PROFILE that names no profile (moto issue 5469).
    changes: dict[str, str | None] = dict.fromkeys(ENV_VARS_TO_CLEAR)
    changes["MOTO_ACCOUNT_ID"] = None
    return changes


def _await_ready(process: subprocess.Popen[bytes], timeout: float) -> str:
    """Read the server's stdout up to its ready line; return the URL the line announces."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise SandboxError(f"the sandbox server did not start within {timeout:g} s")
            raw = process.stdout.readline()
            if not raw:  # end of file: the server is exiting without having been ready
                with suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=max(remaining, 0.1))
                raise SandboxError(
                    f"the sandbox server exited (status {process.returncode}) before it was"
                    f" ready; its output: {' / '.join(seen) or '(none)'}"
                )
            line = raw.decode(errors="replace").strip()
            if line.startswith(READY_MARKER):
                process.stdout.close()
                return line[len(READY_MARKER) :].strip()
            if line:
                seen.append(line)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """Ask the server to exit by closing its stdin; kill it if it does not within a few seconds."""
    for stream in (process.stdin, process.stdout):
        if stream is not None and not stream.closed:
            with suppress(BrokenPipeError):
                stream.close()
    try:
        process.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
