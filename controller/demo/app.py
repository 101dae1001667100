"""The simulated application: a few instances per IAM user that use the rotated credentials.

Each instance reads its credentials from Secrets Manager (AWSCURRENT) on its own refresh interval
and makes signed calls (sts GetCallerIdentity) with them through the sandbox, whose auth layer
refuses an Inactive or deleted key as AWS does. A call that fails is counted; the instance then
re-reads its credentials and retries once, as a well-behaved client would.

Simulating every call of 100 days would take minutes, so the simulation has two speeds. An
instance that holds a key other than the one its target serves (keyrotor just stored a new one,
or the instance never refreshes) runs on its own schedule, to the quarter hour (IAM's LastUsedDate
granularity): that is when a call can fail. Any other instance could only repeat what it did
before, so it makes one call per interval between two keyrotor runs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import botocore.config

from controller.aws import AWS_ERRORS, describe_error
from controller.demo.scenario import CALL_MINUTES, REFRESH_MINUTES, DemoUser, Straggler
from controller.sandbox import Sandbox
from controller.secret import AccessKeySecret

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sts import STSClient

#: Every application event happens on this grid: one sandbox clock move serves all of them.
QUANTUM = timedelta(minutes=15)
#: When, in an interval at normal speed, each instance makes its one call.
QUIET_CALL_AFTER = timedelta(hours=1)

_NO_RETRY = botocore.config.Config(
    retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=15
)


@dataclass
class Instance:
    name: str
    user: str
    secret_id: str
    refresh_every: timedelta
    refresh_offset: timedelta
    call_every: timedelta
    call_offset: timedelta
    refreshes: bool = True
    creds: AccessKeySecret | None = None
    calls: int = 0
    failed: int = 0

    @property
    def key_id(self) -> str | None:
        return self.creds.access_key_id if self.creds else None


@dataclass(frozen=True)
class CallFailure:
    at: datetime
    instance: str
    key_id: str
    error: str
    recovered: bool


@dataclass(frozen=True)
class _Op:
    at: datetime
    order: int  # refresh (0) before call (1) at the same instant
    index: int
    kind: str


@dataclass
class Application:
    aws: Sandbox
    start: datetime
    instances: list[Instance] = field(default_factory=list)
    #: The key id each user's target serves, as far as the demo has seen keyrotor store it.
    served: dict[str, str] = field(default_factory=dict)
    failures: list[CallFailure] = field(default_factory=list)
    #: Every secret the application read: the leak test looks for them in output and Git.
    secrets_seen: set[str] = field(default_factory=set, repr=False)
    _sts: dict[str, STSClient] = field(default_factory=dict, repr=False)
    _secrets: SecretsManagerClient | None = field(default=None, repr=False)
    _iam: IAMClient | None = field(default=None, repr=False)
    _arns: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        aws: Sandbox,
        users: Sequence[DemoUser],
        *,
        seed: int,
        start: datetime,
        straggler: Straggler | None,
    ) -> Application:
        return cls(aws, start, instances=schedule(users, seed=seed, straggler=straggler))

    # --- queries -----------------------------------------------------------------------------

    @property
    def calls(self) -> int:
        return sum(i.calls for i in self.instances)

    @property
    def failed(self) -> int:
        return sum(i.failed for i in self.instances)

    def stale(self, inst: Instance) -> bool:
        """The instance holds a key other than the one its target serves."""
        return inst.key_id != self.served.get(inst.user)

    def instance(self, name: str) -> Instance:
        return next(i for i in self.instances if i.name == name)

    def users(self) -> list[str]:
        return list(dict.fromkeys(i.user for i in self.instances))

    # --- running -----------------------------------------------------------------------------

    def boot(self, at: datetime) -> None:
        """Every instance starts: reads its credentials and makes a first call."""
        self.aws.set_clock(at)
        for inst in self.instances:
            self._refresh(inst)
            self.served[inst.user] = inst.key_id or ""
            self._call(inst, at)

    def run(self, begin: datetime, end: datetime) -> list[CallFailure]:
        """Everything the instances do after `begin` up to and including `end`."""
        ops: list[_Op] = []
        for index, inst in enumerate(self.instances):
            if self.stale(inst):
                if inst.refreshes:
                    ops += [
                        _Op(t, 0, index, "refresh")
                        for t in self._grid(inst.refresh_every, inst.refresh_offset, begin, end)
                    ]
                ops += [
                    _Op(t, 1, index, "call")
                    for t in self._grid(inst.call_every, inst.call_offset, begin, end)
                ]
            elif begin + QUIET_CALL_AFTER <= end:
                ops.append(_Op(begin + QUIET_CALL_AFTER, 1, index, "call"))
        failures: list[CallFailure] = []
        clock: datetime | None = None
        for op in sorted(ops, key=lambda o: (o.at, o.order, o.index)):
            if op.at != clock:
                self.aws.set_clock(op.at)
                clock = op.at
            inst = self.instances[op.index]
            if op.kind == "refresh":
                self._refresh(inst)
            elif failure := self._call(inst, op.at):
                failures.append(failure)
        return failures

    def restart(self, name: str, at: datetime, refresh_every: timedelta) -> None:
        """An operator restarts an instance with a config that refreshes its credentials."""
        inst = self.instance(name)
        self.aws.set_clock(at)
        inst.refreshes = True
        inst.refresh_every = refresh_every
        inst.refresh_offset = (at - self.start) % refresh_every
        self._refresh(inst)

    def close(self) -> None:
        for client in self._sts.values():
            client.close()
        self._sts.clear()
        for admin in (self._secrets, self._iam):
            if admin is not None:
                admin.close()
        self._secrets = self._iam = None

    # --- one instance ------------------------------------------------------------------------

    def _grid(
        self, every: timedelta, offset: timedelta, begin: datetime, end: datetime
    ) -> Iterator[datetime]:
        """Instants start + offset + k*every in (begin, end]."""
        first = self.start + offset
        if first <= begin:
            first += every * ((begin - first) // every + 1)
        while first <= end:
            yield first
            first += every

    def _refresh(self, inst: Instance) -> None:
        if self._secrets is None:
            self._secrets = self.aws.client("secretsmanager")
        value = self._secrets.get_secret_value(SecretId=inst.secret_id, VersionStage="AWSCURRENT")
        doc: dict[str, Any] = json.loads(value["SecretString"])
        inst.creds = AccessKeySecret(str(doc["AccessKeyId"]), str(doc["SecretAccessKey"]))
        self.secrets_seen.add(inst.creds.secret_access_key)

    def _call(self, inst: Instance, at: datetime) -> CallFailure | None:
        error = self._signed_call(inst)
        if error is None:
            return None
        key_id = inst.key_id or "-"
        recovered = False
        if inst.refreshes:
            self._refresh(inst)
            recovered = self._signed_call(inst) is None
        failure = CallFailure(at, inst.name, key_id, error, recovered)
        self.failures.append(failure)
        return failure

    def _signed_call(self, inst: Instance) -> str | None:
        """One sts GetCallerIdentity with the instance's credentials: None, or what went wrong."""
        inst.calls += 1
        creds = inst.creds
        assert creds is not None
        try:
            arn = self._client(creds).get_caller_identity()["Arn"]
        except AWS_ERRORS as exc:
            inst.failed += 1
            return describe_error(exc)
        expected = self._arn(inst.user)
        if arn != expected:
            inst.failed += 1
            return f"authenticated as {arn}, not {expected}"
        return None

    def _client(self, creds: AccessKeySecret) -> STSClient:
        client = self._sts.get(creds.access_key_id)
        if client is None:
            client = self.aws.client(
                "sts", creds.access_key_id, creds.secret_access_key, config=_NO_RETRY
            )
            self._sts[creds.access_key_id] = client
        return client

    def _arn(self, user: str) -> str:
        if user not in self._arns:
            if self._iam is None:
                self._iam = self.aws.client("iam")
            self._arns[user] = self._iam.get_user(UserName=user)["User"]["Arn"]
        return self._arns[user]


def schedule(
    users: Sequence[DemoUser], *, seed: int, straggler: Straggler | None = None
) -> list[Instance]:
    """The application's instances, with random (seeded) refresh and call intervals and offsets."""
    rng = random.Random(seed)
    instances = []
    for user in users:
        for number in range(1, user.instances + 1):
            refresh = _quanta(rng, *REFRESH_MINUTES)
            call = _quanta(rng, *CALL_MINUTES)
            name = f"{user.name}/{number}"
            instances.append(
                Instance(
                    name,
                    user.name,
                    user.secret_id,
                    refresh_every=refresh,
                    refresh_offset=QUANTUM * rng.randrange(refresh // QUANTUM),
                    call_every=call,
                    call_offset=QUANTUM * rng.randrange(call // QUANTUM),
                    refreshes=straggler is None or straggler.instance != name,
                )
            )
    return instances


def _quanta(rng: random.Random, low_minutes: int, high_minutes: int) -> timedelta:
    """A random multiple of QUANTUM between the bounds, inclusive."""
    quantum = int(QUANTUM.total_seconds() // 60)
    return QUANTUM * rng.randint(low_minutes // quantum, high_minutes // quantum)
