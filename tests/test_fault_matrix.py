"""Every AWS call of a rotation step, met by every fault, and every push, crashed: later runs
converge and the safety rules hold after each run (issue 12).

A case seeds a user keyrotor adopted, carries the rotation to the step under test, and runs that
step once with one fault injected: at the `nth` request of one mutating AWS call (through the
fault proxy, with keyrotor's own retries as configured, or with none at all), or as a crash at a
push (the run's hook). Scheduled runs, each in a fresh clone, then carry the rotation to its end.
After every run:

- no run created more than one key, and none asked IAM for a third (keys a failed step made
  and could not store are deleted, and a later run makes the new key again);
- no target holds a key that is deleted or inactive, and the user keeps an active key;
- the remote's history only grows, and each step a run reports carries its `Keyrotor-Step`
  trailer in it;

and at the end the old key is gone, the new one active and held by every target, and history
names each step of the rotation: all within a fixed number of runs.

The whole matrix is `@pytest.mark.faults` (`make test-faults`); SAMPLE runs in `make test`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from controller.aws import DEFAULT_MAX_ATTEMPTS, AwsSessions
from controller.context import RunContext
from controller.executor import ApplyResult
from controller.plan import ActionKind
from controller.sandbox.config import DEFAULT_START as T0
from controller.service import apply_once
from tests.support.faultproxy import (
    MATRIX_FAULTS,
    Fault,
    FaultPoint,
    FaultProxy,
    fault_points,
    run_fault_proxy,
)
from tests.support.world import USER, World, advance

CREATE_AT = advance(T0, days=80)
DEACTIVATE_AT = advance(T0, days=81, hours=3)
DELETE_AT = advance(T0, days=88, hours=4)
PHASES = {"create": CREATE_AT, "deactivate": DEACTIVATE_AT, "delete": DELETE_AT}

#: The mutating AWS calls of each step, in the order a clean run makes them
#: (`test_the_points_are_every_mutating_call_a_rotation_makes` keeps this list honest).
CALLS: dict[str, list[FaultPoint]] = {
    "create": [
        FaultPoint("iam", "TagUser", 1),  # the intent
        FaultPoint("iam", "CreateAccessKey", 1),
        FaultPoint("secretsmanager", "PutSecretValue", 1),
        FaultPoint("secretsmanager", "CreateSecret", 1),
        FaultPoint("secretsmanager", "TagResource", 1),
        FaultPoint("ssm", "PutParameter", 1),
        FaultPoint("ssm", "AddTagsToResource", 1),
        FaultPoint("iam", "TagUser", 2),  # the keys now owned
    ],
    "deactivate": [FaultPoint("iam", "UpdateAccessKey", 1)],
    "delete": [FaultPoint("iam", "DeleteAccessKey", 1), FaultPoint("iam", "TagUser", 1)],
}
PUSHES: dict[str, list[str]] = {
    "create": ["push:intent", "push:status"],
    "deactivate": ["push:status"],
    "delete": ["push:status"],
}

#: Attempts per call: keyrotor's default (its retries absorb what they may), or one (every
#: fault fails the call, and the run must leave a state the next run can carry on from).
RETRIES = {"retries": None, "no-retries": 1}

#: Runs after the faulted one, as (days, minutes) after it; the application uses what it is
#: given an hour after each. Converging takes at most these.
SCHEDULE = ((0, 30), (1, 30), (2, 30), (9, 30), (10, 30))

READS = ("Get", "List", "Describe", "Generate", "AssumeRole")


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in keyrotor may catch it, as nothing catches SIGKILL."""


@dataclass(frozen=True)
class Case:
    phase: str
    fault: Fault | None = None  # None: a crash at `push`
    point: FaultPoint | None = None
    push: str = ""
    attempts: int | None = None

    def __str__(self) -> str:
        if self.fault is None:
            return f"{self.phase}-crash-at-{self.push}"
        retries = "no-retries" if self.attempts == 1 else "retries"
        return f"{self.phase}-{self.point}-{self.fault.value}-{retries}"


MATRIX = [
    Case(phase, fault, point, attempts=attempts)
    for phase, points in CALLS.items()
    for point in points
    for fault in MATRIX_FAULTS
    for attempts in RETRIES.values()
] + [Case(phase, push=push) for phase, pushes in PUSHES.items() for push in pushes]

#: The cases `make test` runs (the rest run in `make test-faults`): a lost CreateAccessKey
#: answer, and a crash before the status push (the next run records the step it finds done).
SAMPLE = [
    Case("create", Fault.CLOSE_AFTER, FaultPoint("iam", "CreateAccessKey", 1)),
    Case("create", push="push:status"),
]
assert all(case in MATRIX for case in SAMPLE)


@pytest.fixture
def proxy(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """keyrotor's AWS requests go through the fault proxy; the test's own observations do not."""
    yield from run_fault_proxy(world.aws, monkeypatch)


class Rotation:
    """One user's rotation, run by run, checked after each."""

    def __init__(self, world: World, proxy: FaultProxy) -> None:
        self.world = world
        self.proxy = proxy
        self.runs = 0
        self.seen = 0  # the proxy's calls of earlier runs
        self.history: list[str] = []
        world.seed_policy()
        world.seed_user(at=T0)
        result = self.run(advance(T0, days=1))
        assert [r.action.kind for r in result.results] == [ActionKind.ADOPT_KEY]
        (self.old,) = world.iam_keys()

    def run(self, now: datetime, *, attempts: int | None = None, crash_at: str = "") -> ApplyResult:
        """One scheduled run in a fresh clone: it may fail (a fault) or crash at `crash_at`."""
        self.runs += 1
        self.world.aws.set_clock(now)
        sessions = AwsSessions(
            sleep=lambda _: None, adaptive=False, max_attempts=attempts or DEFAULT_MAX_ATTEMPTS
        )

        def hook(point: str) -> None:
            if point == crash_at:
                raise SimulatedCrash(point)

        ctx = RunContext(now, sessions, hook=hook, echo=lambda _: None)
        result = ApplyResult()
        try:
            _, result = apply_once(ctx, self.world.fresh_clone())
        except SimulatedCrash:
            assert crash_at, "only a crash the test asked for"
        else:
            assert not crash_at, f"the run never reached {crash_at}"
        self.check(result, ctx.run_id)
        return result

    def use_new_key(self, at: datetime) -> None:
        if self.world.held_key_ids():
            self.world.aws.set_clock(at)
            self.world.application_call()

    # -- the invariants, after every run --
    def check(self, result: ApplyResult, run_id: str) -> None:
        keys = self.world.iam_keys()
        this_run = self.proxy.calls()[self.seen :]
        self.seen += len(this_run)
        created = [c for c in this_run if c.action == "CreateAccessKey" and c.status == 200]
        assert len(created) <= 1, f"a run created more than one key: {created}"
        assert not self.proxy.answered("LimitExceeded"), "a third key was asked for"
        assert len(keys) <= 2, keys
        assert "Active" in keys.values(), f"the user has no working key: {keys}"
        for held in self.world.held_key_ids():
            assert keys.get(held) == "Active", f"a target holds {held}, which is {keys.get(held)}"
        history = self.remote_log("%H")
        kept = history[len(history) - len(self.history) :]
        assert kept == self.history, "the remote's history was rewritten or lost a commit"
        self.history = history
        if result.results and not result.errors:
            runs = self.remote_log("%(trailers:key=Keyrotor-Run,valueonly)")
            assert run_id in runs, f"run {run_id}'s status commit is not in the remote"
            steps = self.steps()
            for done in (r for r in result.results if r.ok):
                kind = str(done.action.kind)
                assert any(s.split()[:2] == [USER, kind] for s in steps), (kind, steps)

    def remote_log(self, fmt: str) -> list[str]:
        out = subprocess.run(
            ["git", "-C", str(self.world.bare), "log", f"--format={fmt}", "main"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def steps(self) -> list[str]:
        return self.remote_log("%(trailers:key=Keyrotor-Step,valueonly)")

    # -- the rotation --
    def reach(self, phase: str) -> None:
        """Carry the rotation, faultless, to just before `phase`'s step."""
        if phase in ("deactivate", "delete"):
            self.clean(CREATE_AT)
            self.use_new_key(advance(CREATE_AT, hours=2))
        if phase == "delete":
            self.clean(DEACTIVATE_AT)

    def clean(self, now: datetime) -> None:
        result = self.run(now)
        assert result.results and not result.failed and not result.errors

    def finish(self, start: datetime) -> list[str]:
        """Converge; the steps history lacks at the end."""
        for days, minutes in SCHEDULE:
            now = advance(start, days=days, minutes=minutes)
            self.run(now)
            self.use_new_key(advance(now, hours=1))
        keys = self.world.iam_keys()
        assert list(keys.values()) == ["Active"], f"not converged in {len(SCHEDULE)} runs: {keys}"
        (new,) = keys
        assert new != self.old
        assert self.world.held_key_ids() == {new}
        assert self.world.application_call().endswith(f":user/{USER}")
        steps = self.steps()
        # The new key's step: `create-key`, or `store-key` when the run that created it failed
        # before every target held it and a later run stored it.
        missing = []
        if not {f"{USER} create-key {new}", f"{USER} store-key {new}"} & set(steps):
            missing.append(f"a step naming the new key {new}")
        for step in (f"deactivate-key {self.old}", f"delete-key {self.old}"):
            if f"{USER} {step}" not in steps:
                missing.append(step)
        return missing


def converge_after(world: World, proxy: FaultProxy, case: Case) -> None:
    rotation = Rotation(world, proxy)
    rotation.reach(case.phase)
    at = PHASES[case.phase]
    if case.fault is None:
        rotation.run(at, crash_at=case.push)
    else:
        assert case.point is not None
        rule = case.point.rule(case.fault)
        with proxy.faults(rule):
            rotation.run(at, attempts=case.attempts)
        assert proxy.fired(rule) == 1, f"{case.point} was never reached"
    missing = rotation.finish(advance(at, minutes=5))
    assert not missing, f"history lacks {missing}: {rotation.steps()}"


@pytest.mark.parametrize("case", SAMPLE, ids=str)
def test_a_fault_at_a_sample_point_converges_safely(
    world: World, proxy: FaultProxy, case: Case
) -> None:
    converge_after(world, proxy, case)


@pytest.mark.faults
@pytest.mark.parametrize("case", MATRIX, ids=str)
def test_a_fault_at_any_point_of_a_rotation_converges_safely(
    world: World, proxy: FaultProxy, case: Case
) -> None:
    converge_after(world, proxy, case)


def test_the_points_are_every_mutating_call_and_push_a_rotation_makes(
    world: World, proxy: FaultProxy
) -> None:
    rotation = Rotation(world, proxy)
    seen: dict[str, tuple[list[FaultPoint], list[str]]] = {}
    for phase, at in PHASES.items():
        pushes: list[str] = []
        proxy.clear_calls()
        world.aws.set_clock(at)
        ctx = RunContext(at, AwsSessions(), hook=pushes.append, echo=lambda _: None)
        apply_once(ctx, world.fresh_clone())
        mutating = [
            point
            for point in _points(proxy)
            if not point.action.startswith(READS) and point.service != "sts"
        ]
        seen[phase] = (mutating, [p for p in pushes if p.startswith("push:")])
        rotation.use_new_key(advance(at, hours=1))
    assert seen == {phase: (CALLS[phase], PUSHES[phase]) for phase in PHASES}


def _points(proxy: FaultProxy) -> list[FaultPoint]:
    return fault_points(proxy.calls())
