"""A simulated application: instances that read credentials from Secrets Manager on their own
refresh interval and make signed calls with them through the sandbox.

A call is `sts:GetCallerIdentity` signed with the instance's current credentials; the sandbox
refuses an inactive or deleted key as AWS does, so a failed call is a real outage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from botocore.exceptions import ClientError

from controller.sandbox import Sandbox


@dataclass
class Instance:
    name: str
    refresh_every: timedelta | None  # None: a straggler that never re-reads its credentials
    creds: dict[str, str] | None = None
    refreshed_at: datetime | None = None
    calls: int = 0
    failures: list[datetime] = field(default_factory=list)
    last_ok: bool = True


@dataclass
class Fleet:
    aws: Sandbox
    secret_id: str
    instances: list[Instance]

    def _read(self) -> dict[str, str]:
        value = self.aws.client("secretsmanager").get_secret_value(
            SecretId=self.secret_id, VersionStage="AWSCURRENT"
        )["SecretString"]
        creds: dict[str, str] = json.loads(value)
        return creds

    def boot(self, at: datetime) -> None:
        self.aws.set_clock(at)
        for inst in self.instances:
            inst.creds, inst.refreshed_at = self._read(), at

    def run(self, start: datetime, end: datetime, step: timedelta) -> None:
        """Every instance calls once per `step`, refreshing first when its interval is up."""
        at = start
        while at < end:
            self.aws.set_clock(at)
            for inst in self.instances:
                due = inst.refresh_every is not None and inst.refreshed_at is not None
                if due and at - inst.refreshed_at >= inst.refresh_every:  # type: ignore[operator]
                    inst.creds, inst.refreshed_at = self._read(), at
                self._call(inst, at)
            at += step

    def _call(self, inst: Instance, at: datetime) -> None:
        assert inst.creds is not None
        sts = self.aws.client("sts", inst.creds["AccessKeyId"], inst.creds["SecretAccessKey"])
        inst.calls += 1
        try:
            sts.get_caller_identity()
            inst.last_ok = True
        except ClientError:
            inst.failures.append(at)
            inst.last_ok = False

    @property
    def failed(self) -> int:
        return sum(len(i.failures) for i in self.instances)

    @property
    def calls(self) -> int:
        return sum(i.calls for i in self.instances)
