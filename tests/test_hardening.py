"""Process hardening: keyrotor non-dumpable and without core dumps; the secrets it holds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from controller.hardening import SECRET_VARIABLES, secrets_to_mask

# harden_process() cannot be undone for core dumps, so it runs in a process of its own.
HARDEN = (
    "import json, resource\n"
    "from controller.hardening import harden_process, is_dumpable\n"
    "before = is_dumpable()\n"
    "done = harden_process()\n"
    "print(json.dumps({'before': before, 'after': is_dumpable(), 'applied': done.applied,\n"
    "                  'message': done.message, 'core': resource.getrlimit(resource.RLIMIT_CORE)}))"
)


def harden_in_a_process() -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", HARDEN], capture_output=True, text=True, check=True, timeout=30
    )
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_DUMPABLE is Linux's")
def test_harden_process_makes_keyrotor_non_dumpable_without_core_dumps() -> None:
    result = harden_in_a_process()
    assert result["before"] is True and result["after"] is False
    assert result["applied"] is True
    assert result["core"] == [0, 0]
    assert result["message"] == "process hardened: not dumpable, no core dumps"


@pytest.mark.skipif(sys.platform.startswith("linux"), reason="checks the fallback off Linux")
def test_elsewhere_harden_process_says_it_does_not_protect() -> None:
    result = harden_in_a_process()
    assert result["applied"] is False and result["after"] is None
    assert "Linux-only" in str(result["message"]) and result["core"] == [0, 0]


def test_secrets_to_mask_are_the_credential_values_of_the_environment_and_more() -> None:
    environ = {
        "AWS_ACCESS_KEY_ID": "AKIAKEYROTOR",  # a key id is not a secret
        "AWS_SECRET_ACCESS_KEY": "own-secret",
        "AWS_SESSION_TOKEN": "own-token",
        "GITHUB_TOKEN": "ghs_1",
        "GH_TOKEN": "",
        "ACTIONS_RUNTIME_TOKEN": "rt",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc",
        "ACTIONS_RUNNER_DEBUG": "true",  # not a token: masking "true" would garble output
        "HOME": "/root",
    }
    assert secrets_to_mask(environ, "resolved-secret", None, "own-token", "") == (
        "own-secret",
        "own-token",
        "ghs_1",
        "rt",
        "oidc",
        "resolved-secret",
    )
    assert "AWS_ACCESS_KEY_ID" not in SECRET_VARIABLES
