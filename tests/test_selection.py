"""Which users a policy manages: its names, plus users its selector matches by path prefix and
tags, less its exclusions (read from IAM's paged listing, not one call per user)."""

from __future__ import annotations

import json
import textwrap

import pytest

from controller.cli import main
from controller.sandbox.config import DEFAULT_START as T0
from controller.sandbox.handle import UserSeed
from tests.support.world import World, advance

MANIFEST = textwrap.dedent(
    """\
    apiVersion: keyrotor.dev/v1
    kind: RotationPolicy
    metadata:
      name: team-a
    spec:
      users:
        names: [named-elsewhere]
        selector: {pathPrefix: /svc/, tags: {team: a}}
        exclude: [svc-excluded]
      maxKeyAge: 90d
      targets:
        - {type: aws-secrets-manager, secretId: "team-a/{user}"}
      approval: auto
    """
)


def test_names_and_a_selector_by_path_and_tags_less_exclusions(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.seed_policy(MANIFEST)
    created = advance(T0, days=-1)
    world.aws.seed_users(
        [
            UserSeed("svc-match", path="/svc/", tags={"team": "a"}, key_created=created),
            UserSeed("svc-deeper", path="/svc/eu/", tags={"team": "a"}, key_created=created),
            UserSeed("svc-other-team", path="/svc/", tags={"team": "b"}, key_created=created),
            UserSeed("svc-untagged", path="/svc/", key_created=created),
            UserSeed("svc-excluded", path="/svc/", tags={"team": "a"}, key_created=created),
            UserSeed("ops-match", path="/ops/", tags={"team": "a"}, key_created=created),
            UserSeed("named-elsewhere", path="/humans/", key_created=created),
        ]
    )
    capsys.readouterr()
    assert main(
        ["plan", "--repo", str(world.clone), "--format", "json", "--now", T0.isoformat()]
    ) in (0, 2)
    document = json.loads(capsys.readouterr().out)
    users = sorted({a["user"] for a in document["actions"]})
    assert users == ["named-elsewhere", "svc-deeper", "svc-match"]
