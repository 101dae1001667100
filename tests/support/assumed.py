"""Clients of another account of the embedded AWS, reached the way keyrotor reaches it: by
assuming a role there (moto then answers for that account)."""

from __future__ import annotations

from typing import Any

import boto3

from controller.sandbox import REGION, Sandbox


def iam_in(aws: Sandbox, account: str) -> Any:
    creds = aws.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/keyrotor", RoleSessionName="test"
    )["Credentials"]
    return boto3.client(
        "iam",
        endpoint_url=aws.endpoint_url,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
