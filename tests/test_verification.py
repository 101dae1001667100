"""Step 4 of a rotation, proven with a running application: no downtime on the happy path, a
straggler keeps the old key alive (old-key-idle) or is rescued by a rollback (http check).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import git
import pytest

from controller.cli import main
from controller.sandbox.config import DEFAULT_START as T0
from tests.support.app_fleet import Fleet, Instance
from tests.support.world import POLICY, SECRET_ID, USER, World, advance

DUE = advance(T0, days=80)
HOUR = timedelta(hours=1)


def manifest(checks: str = "", extra: str = "") -> str:
    return f"""\
apiVersion: keyrotor.dev/v1
kind: RotationPolicy
metadata:
  name: {POLICY}
spec:
  users:
    names: [{USER}]
  maxKeyAge: 90d
  targets:
    - type: aws-secrets-manager
      secretId: "ci/{{user}}/aws"
  approval: auto
{checks}{extra}"""


def seed(world: World, text: str | None) -> str:
    """A user whose key the application already reads from Secrets Manager (and a policy)."""
    if text is not None:
        world.seed_policy(text)
    old = world.seed_user(at=T0)
    world.aws.client("secretsmanager").create_secret(
        Name=SECRET_ID,
        SecretString=json.dumps({"AccessKeyId": old, "SecretAccessKey": world.secrets[0]}),
    )
    return old


def fleet(world: World, *refresh_hours: float | None) -> Fleet:
    instances = [
        Instance(f"app-{n}", timedelta(hours=h) if h is not None else None)
        for n, h in enumerate(refresh_hours)
    ]
    app = Fleet(world.aws, SECRET_ID, instances)
    app.boot(advance(DUE, minutes=-30))
    return app


def live(world: World, app: Fleet, start: datetime, days: float, *, every: float = 6) -> None:
    """The application runs while keyrotor reconciles every `every` hours, as a schedule would."""
    at = start
    end = start + timedelta(days=days)
    while at < end:
        world.cli("apply", now=at)
        app.run(at + timedelta(minutes=10), at + timedelta(hours=every), step=timedelta(hours=2))
        at += timedelta(hours=every)


@pytest.mark.slow
def test_a_full_rotation_under_load_has_no_failed_call(world: World) -> None:
    old = seed(world, manifest())
    app = fleet(world, 1, 3, 5)
    live(world, app, DUE, days=9)
    (new,) = world.iam_keys()
    assert new != old and world.held_key_ids() == {new}
    assert app.calls > 100 and app.failed == 0


@pytest.mark.slow  # many runs: make test-slow
def test_old_key_idle_never_deactivates_while_a_straggler_uses_the_old_key(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    old = seed(
        world,
        manifest("  checks:\n    - {type: new-key-used}\n    - {type: old-key-idle, for: 12h}\n"),
    )
    app = fleet(world, 2, None)
    live(world, app, DUE, days=4)
    assert world.iam_keys()[old] == "Active"
    assert app.failed == 0
    capsys.readouterr()
    world.cli("plan", now=advance(DUE, days=4))
    assert f"old key {old} was last used" in capsys.readouterr().out


class Health:
    """The application's health endpoint: failing while any instance's last call failed."""

    def __init__(self, app: Fleet) -> None:
        self.app = app
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = all(i.last_ok for i in health.app.instances)
                self.send_response(200 if ok else 503)
                self.end_headers()
                self.wfile.write(b"ok" if ok else b"an instance is failing")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def health_of() -> Iterator[list[Health]]:
    made: list[Health] = []
    yield made
    for h in made:
        h.close()


def test_a_failing_http_check_after_deactivation_rolls_back_and_the_straggler_recovers(
    world: World, health_of: list[Health], capsys: pytest.CaptureFixture[str]
) -> None:
    old = seed(world, None)  # the policy needs the health endpoint's URL: written below
    app = fleet(world, 2, None)
    health = Health(app)
    health_of.append(health)
    world.seed_policy(
        manifest(
            f"  checks:\n    - {{type: new-key-used}}\n"
            f"    - {{type: http, url: '{health.url}', retries: 0, timeout: 2s}}\n"
        )
    )
    # Create, then deactivate once the refreshing instance uses the new key.
    at = DUE
    while world.iam_keys().get(old) != "Inactive":
        assert at < advance(DUE, days=4), "the old key was never deactivated"
        world.cli("apply", now=at)
        app.run(at + timedelta(minutes=10), at + timedelta(hours=6), step=timedelta(hours=2))
        at += timedelta(hours=6)
    straggler = app.instances[1]
    app.run(at, at + HOUR, step=HOUR)  # the straggler's next call fails: the outage begins
    assert not straggler.last_ok
    capsys.readouterr()
    world.cli("apply", now=at + 2 * HOUR)  # one reconcile later
    assert world.iam_keys()[old] == "Active"
    assert "phase: RolledBack" in world.status_doc()
    failures_before = len(straggler.failures)
    app.run(at + 3 * HOUR, at + 9 * HOUR, step=2 * HOUR)
    assert straggler.last_ok and len(straggler.failures) == failures_before
    with git.Repo(world.clone) as repo:
        assert repo.head.commit.summary == f"keyrotor({POLICY}): roll back {USER}"
    assert world.secret_value() == {"AccessKeyId": old, "SecretAccessKey": world.secrets[0]}


def test_on_overdue_deactivate_deactivates_the_overdue_key_and_says_so(world: World) -> None:
    old = seed(world, manifest(extra="  onOverdue: deactivate\n"))
    world.cli("apply", now=advance(T0, days=89, hours=12))  # the rotation started late
    assert len(world.iam_keys()) == 2
    world.cli("apply", now=advance(T0, days=90, hours=6))  # overdue; new key never used
    assert world.iam_keys()[old] == "Active", "deactivateAfter still applies"
    world.cli("apply", now=advance(T0, days=90, hours=13))
    assert world.iam_keys()[old] == "Inactive"
    with git.Repo(world.clone) as repo:
        assert "OVERDUE" in repo.head.commit.message


def test_a_check_that_prints_the_secret_has_it_scrubbed_everywhere(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    script = "import os, sys; print('key is', os.environ['AWS_SECRET_ACCESS_KEY']); sys.exit(3)"
    seed(
        world,
        manifest(
            "  checks:\n    - {type: new-key-used}\n"
            f'    - {{type: command, run: [python3, -c, "{script}"], withNewKey: true}}\n'
        ),
    )
    world.cli("apply", now=DUE)
    world.aws.set_clock(advance(DUE, hours=2))
    world.application_call()
    world.cli("apply", now=advance(DUE, days=2))
    doc = world.status_doc()
    assert "key is ***" in doc
    out = capsys.readouterr()
    for secret in world.secrets:
        assert secret not in doc and secret not in out.out and secret not in out.err


@pytest.mark.slow  # many runs: make test-slow
def test_a_person_resumes_a_rolled_back_rotation_and_it_completes(
    world: World, health_of: list[Health], capsys: pytest.CaptureFixture[str]
) -> None:
    old = seed(world, None)
    app = fleet(world, 2)
    health = Health(app)
    health_of.append(health)
    world.seed_policy(
        manifest(
            "  checks:\n    - {type: new-key-used}\n"
            f"    - {{type: http, url: '{health.url}', retries: 0, timeout: 2s}}\n"
        )
    )
    world.cli("apply", now=DUE)
    (new,) = set(world.iam_keys()) - {old}
    app.run(advance(DUE, hours=2), advance(DUE, hours=5), step=HOUR)
    world.cli("apply", now=advance(DUE, days=1, hours=1))
    assert world.iam_keys()[old] == "Inactive"
    app.instances[0].last_ok = False  # the application reports trouble
    world.cli("apply", now=advance(DUE, days=1, hours=2))
    assert "phase: RolledBack" in world.status_doc()
    assert world.held_key_ids() == {old}

    app.instances[0].last_ok = True  # a person fixed the cause
    assert main(["resume", "--repo", str(world.clone), "--policy", POLICY, "--user", USER,
                 "--now", advance(DUE, days=2).isoformat()]) == 0  # fmt: skip
    world.cli("apply", now=advance(DUE, days=2, hours=1))
    assert world.held_key_ids() == {new}
    assert "phase: AwaitingUse" in world.status_doc()
    live(world, app, advance(DUE, days=2, hours=2), days=9, every=12)
    assert world.iam_keys() == {new: "Active"}
    capsys.readouterr()
    main(["history", "--repo", str(world.clone), "--user", USER])
    actions = [line.split()[4] for line in capsys.readouterr().out.splitlines()[1:]]
    assert actions == [
        "delete-key", "deactivate-key", "store-key", "resume", "reactivate-key",
        "deactivate-key", "adopt-key", "create-key",
    ]  # fmt: skip
