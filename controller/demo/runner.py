"""`keyrotor demo`: the whole rotation lifecycle on an embedded AWS and Git, checked as it runs.

The demo starts the sandbox (moto with a movable clock and AWS's refusal of Inactive keys), makes
a bare origin and a clone seeded with the policies in `controller/demo/manifests/`, creates IAM
users whose keys have different ages, and starts a small application per user. It then moves the
clock through about 100 days and, at each step, runs `keyrotor apply` on the clone exactly as a
scheduled job would: the production planner, executor, targets and git code. Between runs the
application instances read their credentials and make signed calls; a call that fails is counted.

It ends with `keyrotor status`, `keyrotor history`, the log of status commits and the application's
tally, and checks itself: every expected transition happened and no application call failed.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from controller.aws import AwsSessions
from controller.context import RunContext
from controller.demo.app import Application, CallFailure
from controller.demo.scenario import (
    AUTO_POLICY,
    CALL_MINUTES,
    REFRESH_MINUTES,
    SCENARIOS,
    START,
    USERS,
    Scenario,
)
from controller.demo.timeline import FAILURE, OPERATOR, PHASE, WAITING, Console, Event
from controller.demo.world import (
    Environ,
    Repos,
    Seeded,
    check_keep,
    demo_environment,
    git,
)
from controller.demo.world import make_repos as _make_repos
from controller.demo.world import seed_users as _seed_users
from controller.durations import format_duration
from controller.errors import KeyrotorError
from controller.executor import ActionResult, ApplyResult
from controller.manifests import load_policies
from controller.plan import ActionKind, FindingKind, Plan, UserPlan
from controller.policy import OldKeyIdleCheck, Policy, SecretsManagerTarget, SsmParameterTarget
from controller.reasons import Reason
from controller.render import user_lines
from controller.sandbox import Sandbox
from controller.service import apply_once, open_workspace, plan_once
from controller.status import Phase, UserStatus
from controller.timefmt import to_iso

HOUR = timedelta(hours=1)
SIX_HOURS = timedelta(hours=6)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
#: keyrotor runs a second after each grid time; IAM's clock reads half a second after it when a
#: key is created. So a key created at one run is a whole number of days old at a later run, and
#: due exactly at the run its rotation age falls on, whatever the run's real duration.
RUN_OFFSET = timedelta(seconds=1)
CREATE_OFFSET = timedelta(milliseconds=500)


@dataclass
class DemoResult:
    """What a demo run saw; `problems` is empty when it passed."""

    scenario: str
    seed: int
    events: list[Event]
    #: Each user's states in order, consecutive repeats collapsed (what `expected` describes).
    states: dict[str, list[str]]
    calls: int
    failed_calls: int
    reconciles: int
    problems: list[str]
    elapsed: float
    kept: Path | None
    #: Every secret access key the demo saw, for the leak test. Never printed.
    secrets: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Abort(Exception):
    """The demo cannot go on (keyrotor apply raised); the reason is in `problems`."""


def run_demo(
    scenario: str = "happy",
    seed: int = 1,
    keep: Path | None = None,
    out: TextIO | None = None,
    *,
    tty: bool | None = None,
) -> DemoResult:
    """Run the demo, writing to `out` (default stdout); see the module docstring."""
    chosen = SCENARIOS[scenario]
    if keep is not None:
        check_keep(keep)
    console = Console(out or sys.stdout, START, tty=tty)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if keep is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="keyrotor-demo-")))
        else:
            base = keep.resolve()
        console.progress("starting the embedded AWS ...")
        aws = stack.enter_context(Sandbox.launch(START))
        env = stack.enter_context(demo_environment(aws))
        repos = _make_repos(base)
        seeded = _seed_users(aws)
        app = Application.build(aws, USERS, seed=seed, start=START, straggler=chosen.straggler)
        stack.callback(app.close)
        _introduce(console, chosen, seed, aws, repos, app)
        sim = _Simulation(chosen, aws, repos, app, console, env)
        app.boot(START - HOUR)
        with contextlib.suppress(_Abort):
            sim.run()
        console.finish()
        end = sim.now
        if not sim.aborted:
            _report(console, repos, end, app)
            sim.problems += _verify(chosen, sim, app, seeded, aws)
        secrets = frozenset(seeded.secrets | app.secrets_seen)
        elapsed = time.monotonic() - started
        _conclude(console, sim, app, elapsed, repos if keep else None, end)
        result = DemoResult(
            scenario=chosen.name,
            seed=seed,
            events=sim.events,
            states=sim.states,
            calls=app.calls,
            failed_calls=app.failed,
            reconciles=sim.reconciles,
            problems=sim.problems,
            elapsed=elapsed,
            kept=repos.work if keep else None,
            secrets=secrets,
        )
    return result


# --- the simulation ------------------------------------------------------------------------------


class _Simulation:
    def __init__(
        self,
        scenario: Scenario,
        aws: Sandbox,
        repos: Repos,
        app: Application,
        console: Console,
        env: Environ,
    ) -> None:
        self.scenario, self.aws, self.repos, self.app = scenario, aws, repos, app
        self.console, self.env = console, env
        self.now = START
        self.end = START + timedelta(days=scenario.days)
        self.events: list[Event] = []
        self.states: dict[str, list[str]] = {}
        self.problems: list[str] = []
        self.statuses: dict[str, UserStatus] = {}
        self.deactivations: dict[str, list[datetime]] = {}
        self.reconciles = 0
        self.aborted = False
        self._waited: set[tuple[str, str | None]] = set()
        self.executor_lines: list[str] = []
        # One set of boto3 clients for every run, made once the sandbox's environment is set.
        self._sessions: AwsSessions | None = None

    # -- the loop --
    def run(self) -> None:
        while True:
            self.reconcile(self.now)
            if self.now >= self.end:
                return
            later = min(self.now + self.step(), self.end)
            self.live(self.now, later)
            self.now = later

    def step(self) -> timedelta:
        """Up to the next moment something is due (on a 6 h grid), at most a week.

        A rotation held by a check is looked at every 6 h for a day, then daily. More runs would
        only repeat the plan: each decision depends on a time recorded in status (rotation age,
        deactivateAfter, deleteAfter, maxKeyAge) or on a check that is looked at as above.
        """
        due: list[datetime] = []
        for st in self.statuses.values():
            if st.phase == Phase.AWAITING_USE and st.next_at and self.run_at >= st.next_at:
                return SIX_HOURS if self.run_at - st.next_at < DAY else DAY
            if st.next_at and st.phase not in (Phase.BLOCKED, Phase.AWAITING_APPROVAL):
                due.append(st.next_at)
            if st.overdue_at:
                due.append(st.overdue_at)
        upcoming = [t for t in due if t > self.run_at]
        if not upcoming:
            return WEEK
        # The first run (at a grid time plus RUN_OFFSET) at or after the earliest due time.
        wait = min(upcoming) - RUN_OFFSET - self.now
        return min(WEEK, max(SIX_HOURS, SIX_HOURS * -(-wait // SIX_HOURS)))

    def live(self, begin: datetime, end: datetime) -> None:
        """The application between two runs, and the operator if the scenario has one."""
        straggler = self.scenario.straggler
        if straggler and begin < straggler.restart_at <= end:
            self._run_app(begin, straggler.restart_at)
            self._operator(straggler.restart_at)
            self._run_app(straggler.restart_at, end)
        else:
            self._run_app(begin, end)

    def _run_app(self, begin: datetime, end: datetime) -> None:
        for failure in self.app.run(begin, end):
            self._failure(failure)

    def _failure(self, failure: CallFailure) -> None:
        after = "refreshed, retry succeeded" if failure.recovered else "retry failed"
        self._emit(
            Event(
                failure.at,
                failure.instance,
                FAILURE,
                "",
                "",
                f"sts GetCallerIdentity with {failure.key_id}: {failure.error} ({after})",
            )
        )

    def _operator(self, at: datetime) -> None:
        straggler = self.scenario.straggler
        assert straggler is not None
        inst = self.app.instance(straggler.instance)
        user = inst.user
        policy = next(u.policy for u in USERS if u.name == user)
        day = (at - START).days
        self.console.line()
        self.console.line(
            f"  Day {day}: {user}'s rotation has waited for days. Why? The operator asks:"
        )
        self.console.line(f"  $ keyrotor plan --policy {policy} --now {to_iso(at)}")
        self._sessions = self._sessions or AwsSessions()
        ctx = RunContext(at, self._sessions)
        shown = plan_once(ctx, open_workspace(self.repos.work, [policy]))
        block = [line for pp in shown.policies for up in pp.users if up.user == user
                 for line in user_lines(up)]  # fmt: skip
        self.console.block("\n".join(block))
        self.console.line(
            f"  The old key is still in use, so an instance never switched: {straggler.instance}"
        )
        self.console.line(
            "  read its credentials once at start. The operator restarts it; keyrotor carries on."
        )
        self.console.line()
        self.app.restart(straggler.instance, at, straggler.refresh_every)
        self._emit(
            Event(
                at,
                straggler.instance,
                OPERATOR,
                "",
                "",
                f"restarted with a config that re-reads its credentials every "
                f"{_hours(straggler.refresh_every)}; it now uses {inst.key_id}",
            )
        )

    # -- one scheduled run --
    @property
    def run_at(self) -> datetime:
        return self.now + RUN_OFFSET

    def reconcile(self, grid: datetime) -> None:
        self.reconciles += 1
        now = grid + RUN_OFFSET
        self.console.progress(
            f"  day {(now - START).days:>3} {now:%H:%M}  keyrotor apply #{self.reconciles}"
            f"  |  application: {self.app.calls} calls, {self.app.failed} failed"
        )
        self.aws.set_clock(now)

        def hook(point: str) -> None:
            if point == "before:create_access_key":
                self.aws.set_clock(grid + CREATE_OFFSET)

        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                self._sessions = self._sessions or AwsSessions()
                ctx = RunContext(now, self._sessions, hook=hook, run_id=f"demo-{self.reconciles}")
                plan, result = apply_once(ctx, self.repos.work)
        except KeyrotorError as exc:
            self.problems.append(f"day {(now - START).days}: keyrotor apply failed: {exc}")
            self.aborted = True
            raise _Abort from None
        self.executor_lines += buffer.getvalue().splitlines()
        self._observe(now, plan, result)

    def _observe(self, now: datetime, plan: Plan, result: ApplyResult) -> None:
        for pp in plan.policies:
            recorded = result.statuses.get((pp.policy.name, pp.account_id))
            for up in pp.users:
                st = recorded.users.get(up.user) if recorded else None
                if st is None:
                    continue
                self._observe_user(now, pp.policy.name, up, st, result)
                self.statuses[up.user] = st

    def _observe_user(
        self, now: datetime, policy: str, up: UserPlan, st: UserStatus, result: ApplyResult
    ) -> None:
        user = up.user
        done = [r for r in result.results if r.action.policy == policy and r.action.user == user]
        for failed in (r for r in done if not r.ok):
            self.problems.append(
                f"day {(now - START).days} {now:%H:%M}: keyrotor's {failed.action.kind} for "
                f"{user} failed: {failed.error}"
            )
        ok = [r for r in done if r.ok]
        for r in ok:
            if r.action.kind in (ActionKind.CREATE_KEY, ActionKind.STORE_KEY) and r.outcome.key_id:
                self.app.served[user] = r.outcome.key_id
            if r.action.kind == ActionKind.DEACTIVATE_KEY:
                self.deactivations.setdefault(user, []).append(now)
        retired = any(
            r.action.kind in (ActionKind.DEACTIVATE_KEY, ActionKind.DELETE_KEY) for r in ok
        )
        overdue = not retired and any(f.kind == FindingKind.OVERDUE for f in up.findings)
        state = str(st.phase) + (" OVERDUE" if overdue else "")
        seen = self.states.setdefault(user, [])
        before = seen[-1] if seen else "-"
        if state != before:
            seen.append(state)
            reason = _reason(now, up, st, ok, overdue and "OVERDUE" not in before)
            self._emit(Event(now, user, PHASE, before, state, reason))
        # A step that is due by time but held by a check: say why, once per rotation.
        if (
            st.phase == Phase.AWAITING_USE
            and not ok
            and st.next_at is not None
            and now >= st.next_at
            and (user, st.new_key) not in self._waited
        ):
            self._waited.add((user, st.new_key))
            waits = [f.message for f in up.findings if f.kind == FindingKind.WAITING]
            self._emit(Event(now, user, WAITING, state, state, "; ".join(waits)))

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        self.console.event(event)


# --- reasons -----------------------------------------------------------------------------------


def _reason(
    now: datetime, up: UserPlan, st: UserStatus, done: Sequence[ActionResult], overdue_new: bool
) -> str:
    parts = []
    adopted = [r.action.key for r in done if r.action.kind == ActionKind.ADOPT_KEY]
    for r in done:
        a = r.action
        if a.kind in (ActionKind.ADOPT_KEY, ActionKind.RECORD_TARGETS):
            continue  # bookkeeping: said once below, not in full
        if a.kind == ActionKind.CREATE_KEY:
            parts.append(f"created {r.outcome.key_id}, stored it in every target: {a.message}")
        elif a.kind == ActionKind.DEACTIVATE_KEY and a.reason == Reason.NEW_KEY_IN_USE:
            passed = a.facts.get("passed")
            why = "; ".join(passed) if isinstance(passed, tuple) else a.message
            parts.append(f"deactivated {a.key}: {why}")
        elif a.kind == ActionKind.DEACTIVATE_KEY:
            parts.append(f"deactivated {a.key}: {a.message}")
        elif a.kind == ActionKind.DELETE_KEY:
            parts.append(f"deleted {a.key}: {a.message}")
        else:
            parts.append(f"{a.kind} {a.key}: {a.message}" if a.key else f"{a.kind}: {a.message}")
    if parts:
        return "; ".join([f"adopted {key}" for key in adopted if key] + parts)
    if overdue_new:
        return next(f.message for f in up.findings if f.kind == FindingKind.OVERDUE)
    if st.phase == Phase.BLOCKED:
        return _first_sentence(st.message)
    if st.phase == Phase.AWAITING_APPROVAL:
        found = [f.message for f in up.findings if f.kind == FindingKind.AWAITING_APPROVAL]
        return found[0] if found else st.message
    if st.phase == Phase.CURRENT and st.old_key_created and st.next_at:
        return (
            f"adopted {st.old_key}, {_days(now - st.old_key_created)} old; "
            f"rotation due {st.next_at:%Y-%m-%d}"
        )
    return st.message


def _first_sentence(text: str) -> str:
    head, dot, _ = text.partition(". ")
    return head + ("." if dot else "")


def _days(delta: timedelta) -> str:
    return f"{delta.days}d"


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g} h"


# --- output --------------------------------------------------------------------------------------


def _introduce(
    console: Console, scenario: Scenario, seed: int, aws: Sandbox, repos: Repos, app: Application
) -> None:
    console.line(
        "keyrotor demo: a whole key rotation on an embedded AWS and Git (no account, no network)"
    )
    console.line(f"Scenario {scenario.name}: {scenario.title}; seed {seed}.")
    console.line()
    rows = [
        ("AWS", f"moto on {aws.endpoint_url}, simulated clock; Inactive keys are refused"),
        ("Git", f"{repos.origin} (bare origin) and its clone {repos.work}"),
    ]
    for i, policy in enumerate(load_policies([repos.work / "manifests"])):
        first, second = _describe(policy)
        rows += [("Policies" if i == 0 else "", first), ("", "  " + second)]
    rows += [("IAM users" if i == 0 else "", f"{u.name:<15} {u.note}") for i, u in enumerate(USERS)]
    rows += [
        (
            "Application",
            f"{len(app.instances)} instances read their credentials from Secrets Manager "
            f"(AWSCURRENT) every {REFRESH_MINUTES[0] // 60}-{REFRESH_MINUTES[1] // 60} h",
        ),
        (
            "",
            f"and call sts GetCallerIdentity with them every "
            f"{CALL_MINUTES[0] // 60}-{CALL_MINUTES[1] // 60} h (simulated call by call while an",
        ),
        (
            "",
            "instance holds a superseded key; otherwise one call between two runs stands for all)",
        ),
        (
            "keyrotor",
            "`keyrotor apply` runs on the clone, as a scheduled job: every 6 h around transitions,",
        ),
        ("", f"daily while a rotation waits, at least weekly otherwise; for {scenario.days} days"),
    ]
    rows += [("Note" if i == 0 else "", n) for i, n in enumerate(scenario.notes)]
    for label, text in rows:
        console.line(f"  {label:<12} {text}")
    console.heading("Timeline (day 0 is 2026-01-01; the first run adopts every user's key)")
    console.timeline_header()


def _describe(policy: Policy) -> tuple[str, str]:
    """Two lines about a policy, from the manifest the demo committed."""
    targets = [
        f"Secrets Manager {t.secret_id}"
        if isinstance(t, SecretsManagerTarget)
        else f"SSM {t.name}"
        if isinstance(t, SsmParameterTarget)
        else t.type
        for t in policy.targets
    ]
    checks = [
        f"old-key-idle {format_duration(c.idle_for)}" if isinstance(c, OldKeyIdleCheck) else c.type
        for c in policy.checks
    ]
    approval = f"approval {policy.approval}" + (
        " (none is given in this demo)" if policy.approval != "auto" else ""
    )
    return (
        f"{policy.name}: {approval}; {' + '.join(targets)}",
        f"maxKeyAge {format_duration(policy.max_key_age)}, rotateBefore "
        f"{format_duration(policy.rotate_before)}, deactivateAfter "
        f"{format_duration(policy.deactivate_after)}, deleteAfter "
        f"{format_duration(policy.delete_after)}; checks {', '.join(checks)}",
    )


def _report(console: Console, repos: Repos, end: datetime, app: Application) -> None:
    work = str(repos.work)
    console.heading(f"$ keyrotor status --now {to_iso(end)}")
    console.block(_cli(["status", "--repo", work, "--now", to_iso(end)]))
    console.heading("$ keyrotor history")
    console.block(_cli(["history", "--repo", work]))
    console.heading("$ git log --oneline -- status/   (the status commits keyrotor pushed)")
    console.block(git(repos.work, "log", "--oneline", "origin/main", "--", "status/"))
    console.heading("Application")
    for user in app.users():
        instances = [i for i in app.instances if i.user == user]
        calls = sum(i.calls for i in instances)
        failed = sum(i.failed for i in instances)
        console.line(
            f"    {user:<15} {len(instances)} instance{'s' if len(instances) != 1 else ' '}"
            f"  {calls:>5} calls  {failed:>3} failed"
        )
    console.line(f"    {'total':<15} {'':11}  {app.calls:>5} calls  {app.failed:>3} failed")


def _conclude(
    console: Console,
    sim: _Simulation,
    app: Application,
    elapsed: float,
    kept: Repos | None,
    end: datetime,
) -> None:
    console.line()
    if kept is not None:
        _write_note(kept, sim.scenario, end)
        console.line(f"Kept the repositories in {kept.work.parent}; see {_NOTE} there:")
        console.line(f"  cd {kept.work}")
        console.line(f"  keyrotor status --now {to_iso(end)}")
        console.line("  keyrotor history")
        console.line()
    if sim.problems:
        console.line("DEMO FAILED:")
        for problem in sim.problems:
            console.line(f"  - {problem}")
        if sim.executor_lines:
            console.line("keyrotor apply said, last:")
            console.block("\n".join(sim.executor_lines[-10:]))
        return
    console.line(
        f"Demo passed in {elapsed:.1f} s: every expected transition happened in "
        f"{sim.reconciles} runs of keyrotor apply, and none of the application's "
        f"{app.calls} calls failed."
    )


_NOTE = "README-demo.txt"


def _write_note(repos: Repos, scenario: Scenario, end: datetime) -> None:
    text = f"""\
keyrotor demo ({scenario.name} scenario): the repositories it left behind.

  origin.git/  the bare "origin" every keyrotor run pushed its status commits to
  work/        the clone keyrotor ran in: manifests/ (the policies) and status/ (its records)

The embedded AWS is gone, so `keyrotor plan` and `keyrotor apply` cannot run here. These read
Git only (the demo ended at {to_iso(end)}, so pass that as --now for the key ages of that day):

  cd work
  keyrotor status --now {to_iso(end)}
  keyrotor history
  keyrotor history --user billing-worker --format json
  git log --stat -- status/
"""
    (repos.work.parent / _NOTE).write_text(text)


# --- checks --------------------------------------------------------------------------------------


def _verify(
    scenario: Scenario, sim: _Simulation, app: Application, seeded: Seeded, aws: Sandbox
) -> list[str]:
    problems: list[str] = []
    for user, expected in scenario.expected.items():
        seen = tuple(sim.states.get(user, ()))
        if seen != expected:
            problems.append(
                f"{user}: expected the states {' -> '.join(expected)}, "
                f"but saw {' -> '.join(seen) or 'none'}"
            )
    if app.failed:
        failure = app.failures[0]
        problems.append(
            f"{app.failed} application call(s) failed; the first: {failure.instance} at day "
            f"{(failure.at - START).days} {failure.at:%H:%M} with {failure.key_id}: "
            f"{failure.error}"
        )
    iam = aws.client("iam")
    secrets = aws.client("secretsmanager")
    try:
        for demo_user in USERS:
            name = demo_user.name
            keys = {
                m["AccessKeyId"]: m["Status"]
                for m in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
            }
            if demo_user.policy == AUTO_POLICY and demo_user.foreign_key_age is None:
                raw = secrets.get_secret_value(
                    SecretId=demo_user.secret_id, VersionStage="AWSCURRENT"
                )
                served = json.loads(raw["SecretString"])["AccessKeyId"]
                if keys != {served: "Active"}:
                    problems.append(
                        f"{name}: expected one active key, the one {demo_user.secret_id} holds "
                        f"({served}); IAM shows {keys}"
                    )
            elif keys != dict.fromkeys(seeded.keys[name], "Active"):
                problems.append(
                    f"{name}: keyrotor must not have touched its keys "
                    f"{seeded.keys[name]}; IAM shows {keys}"
                )
    finally:
        iam.close()
        secrets.close()
    straggler = scenario.straggler
    if straggler is not None:
        user = app.instance(straggler.instance).user
        deactivated = sim.deactivations.get(user, [])
        if not deactivated or deactivated[0] <= straggler.restart_at:
            problems.append(
                f"{user}: its old key must stay active while {straggler.instance} uses it "
                f"(until {to_iso(straggler.restart_at)}); deactivations: "
                f"{', '.join(map(to_iso, deactivated)) or 'none'}"
            )
        if not any(e.kind == WAITING and e.user == user for e in sim.events):
            problems.append(f"{user}: the plan never said why the rotation waits")
    return problems


# --- running keyrotor's own commands -------------------------------------------------------------


def _cli(argv: list[str]) -> str:
    """A keyrotor command, in process, its output captured (it prints key ids, never secrets)."""
    from controller.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(argv)
    if code not in (0, 2):
        buffer.write(f"(keyrotor {argv[0]} exited {code})\n")
    return buffer.getvalue()
