"""Which dead-letter queue the DLQ commands mean, and how they say what went wrong.

The queue is named by `--dlq-url` / `--dlq-arn`, else `DEAD_LETTER_QUEUE_URL` (the function's own variable),
else the outputs of the deployed stack (`--stack-name`, default `imshop-push`). Each lane has its own DLQ:
`--lane bulk` reads `BULK_DEAD_LETTER_QUEUE_URL` and the stack's `BulkDeadLetterQueue*` outputs instead.
boto3 resolves credentials, region and `AWS_ENDPOINT_URL` as usual, so the same commands work against a local
emulator.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_sqs import SQSClient

DEFAULT_STACK_NAME = "imshop-push"
DLQ_URL_ENV = "DEAD_LETTER_QUEUE_URL"
_QUEUE_HOST = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")
_HTML_TAG = re.compile(r"<[^>]+>")


class CliError(Exception):
    """Something the person at the terminal can fix; printed as one line, exit code 2."""


@dataclass(frozen=True, slots=True)
class LaneDlq:
    """Where a lane's DLQ is named when no URL or ARN is passed: the function's variable, the stack's outputs."""

    url_env: str
    url_output: str
    arn_output: str


LANE_DLQS = {
    "transactional": LaneDlq(DLQ_URL_ENV, "DeadLetterQueueUrl", "DeadLetterQueueArn"),
    "bulk": LaneDlq("BULK_DEAD_LETTER_QUEUE_URL", "BulkDeadLetterQueueUrl", "BulkDeadLetterQueueArn"),
}


def session(region: str | None) -> boto3.session.Session:
    return boto3.session.Session(region_name=region) if region else boto3.session.Session()


def client(aws: boto3.session.Session, service: str, *, hint: str | None = None) -> Any:
    """A client in the configured region, else in the region the queue's URL or ARN names."""
    region = aws.region_name or (region_of(hint) if hint else None)
    if region is None:
        raise NoRegionError
    return aws.client(service, region_name=region)  # type: ignore[call-overload]


def region_of(url_or_arn: str) -> str | None:
    if url_or_arn.startswith("arn:"):
        parts = url_or_arn.split(":")
        return parts[3] if len(parts) == 6 and parts[3] else None
    match = _QUEUE_HOST.match(url_or_arn)
    return match.group(1) if match else None


def dlq_url(args: argparse.Namespace, aws: boto3.session.Session) -> str:
    if args.dlq_url:
        return str(args.dlq_url)
    lane = LANE_DLQS[args.lane]
    from_env = os.environ.get(lane.url_env, "").strip()
    if from_env:
        return from_env
    return _stack_output(aws, args.stack_name, lane.url_output, lane.url_env)


def dlq_arn(args: argparse.Namespace, aws: boto3.session.Session) -> str:
    if args.dlq_arn:
        return str(args.dlq_arn)
    lane = LANE_DLQS[args.lane]
    if args.dlq_url or os.environ.get(lane.url_env, "").strip():
        url = dlq_url(args, aws)
        sqs: SQSClient = client(aws, "sqs", hint=url)
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]).get("Attributes", {})
        return attributes["QueueArn"]
    return _stack_output(aws, args.stack_name, lane.arn_output, lane.url_env)


def queue_url_of(sqs: SQSClient, arn: str) -> str:
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or not parts[5]:
        raise CliError(f"not an SQS queue ARN: {arn!r} (expected arn:aws:sqs:REGION:ACCOUNT:NAME)")
    return sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]


def _stack_output(aws: boto3.session.Session, stack_name: str, output: str, url_env: str) -> str:
    """The last resort: a deployed stack names its own DLQ, so an operator needs no URL to hand."""
    hint = f"pass --dlq-url (or --dlq-arn), set {url_env}, or name the deployed stack with --stack-name"
    return stack_output(aws, stack_name, output, what="dead-letter queue", hint=hint)


def stack_output(aws: boto3.session.Session, stack_name: str, output: str, *, what: str, hint: str) -> str:
    """An output of the deployed stack, or a CliError that says what was looked for and what to do instead."""
    cloudformation: CloudFormationClient = client(aws, "cloudformation")
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as e:
        raise CliError(
            f"no {what} named, and stack {stack_name!r} cannot be read ({describe_client_error(e)}): {hint}"
        ) from None
    except NoCredentialsError:
        raise CliError(f"no {what} named, and no AWS credentials to look up stack {stack_name!r}: {hint}") from None
    for candidate in stacks:
        for item in candidate.get("Outputs", []):
            if item.get("OutputKey") == output and item.get("OutputValue"):
                return item["OutputValue"]
    raise CliError(f"no {what} named, and stack {stack_name!r} has no output {output}: {hint}")


def describe_client_error(error: ClientError) -> str:
    """`Code: message (Operation)` in one line; an emulator's HTML error page is reduced to its text."""
    details = error.response.get("Error", {})
    code = details.get("Code") or "Unknown"
    message = " ".join(_HTML_TAG.sub(" ", details.get("Message") or "").split())
    if len(message) > 300:
        message = message[:299] + "…"
    operation = error.operation_name
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    label = f"HTTP {status}" if code == str(status) else code
    return f"{label} from {operation}: {message}" if message else f"{label} from {operation}"
