"""The local stack is template.yaml: a change to the template changes the emulated world, with no
second edit. Each test provisions from a copy of the template with one change and watches the
emulated poller (running stand-in handlers) or the created resources."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from imshop_push_local.aws_emulator import LocalAws, LocalTuning, MotoServer, provision
from imshop_push_local.event_source import InvocationReport, SqsEventSource
from imshop_push_local.provisioning import TEMPLATE_PATH
from imshop_push_local.stack import event_source_config

HERE = str(Path(__file__).resolve().parent)
LOG_ENV = "FAKE_HANDLER_LOG"  # fake_handlers.LOG_ENV, read by the workers
FAKE_API_URL = "https://imshop.invalid/api/push/secret-token"
# Durations of the template a hundred times shorter: a 5 s batching window becomes 0.05 s.
FAST = LocalTuning(time_scale=0.01)


@pytest.fixture
def moto_endpoint(moto_server: MotoServer) -> str:
    """The run's one emulator: each test provisions its own uniquely named stack in it."""
    return moto_server.endpoint_url


def template_with(tmp_path: Path, *changes: tuple[str, str]) -> Path:
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    for old, new in changes:
        assert text.count(old) == 1, f"the template no longer reads {old!r}"
        text = text.replace(old, new)
    path = tmp_path / "template.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run_poller(aws: LocalAws, handler: str, bodies: list[str], log_path: Path) -> tuple[list[InvocationReport], int]:
    """Publish ``bodies``, poll them with the dispatcher's event source as the template sets it (a
    stand-in handler in place of the dispatcher) and return the reports and the number of workers."""
    function = aws.function
    config = dataclasses.replace(
        event_source_config(function, function.sqs_sources[0], region=aws.region), handler=f"fake_handlers:{handler}"
    )
    sqs = aws.client("sqs")
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
        assert not sqs.send_message_batch(QueueUrl=aws.queue_url, Entries=entries).get("Failed")
    with SqsEventSource(config, env={**aws.env(), LOG_ENV: str(log_path)}, sys_path=[HERE]) as source:
        assert source.drain(timeout=30)
        return source.reports(), len(source.worker_pids())


def test_the_event_sources_batch_size_and_concurrency_come_from_the_template(
    moto_endpoint: str, tmp_path: Path
) -> None:
    bodies = [json.dumps({"n": n}) for n in range(12)]
    deployed = provision(moto_endpoint, api_url=FAKE_API_URL, tuning=FAST)
    reports, workers = run_poller(deployed, "acknowledge_all", bodies, tmp_path / "deployed.jsonl")
    assert max(len(r.message_ids) for r in reports) > 3
    assert workers == 2

    changed = template_with(
        tmp_path,
        ("BatchSize: !Ref BatchSize", "BatchSize: 3"),
        ("MaximumConcurrency: !Ref MaximumConcurrency", "MaximumConcurrency: 3"),
    )
    aws = provision(moto_endpoint, api_url=FAKE_API_URL, template=changed, tuning=FAST)
    reports, workers = run_poller(aws, "acknowledge_all", bodies, tmp_path / "changed.jsonl")
    assert sum(len(r.message_ids) for r in reports) == 12
    assert max(len(r.message_ids) for r in reports) <= 3
    assert workers == 3


def test_without_report_batch_item_failures_the_poller_deletes_the_whole_batch(
    moto_endpoint: str, tmp_path: Path
) -> None:
    changed = template_with(
        tmp_path,
        (
            "            MaximumBatchingWindowInSeconds: !Ref MaximumBatchingWindowInSeconds\n"
            "            FunctionResponseTypes:\n              - ReportBatchItemFailures\n",
            "            MaximumBatchingWindowInSeconds: !Ref MaximumBatchingWindowInSeconds\n",
        ),
    )
    aws = provision(moto_endpoint, api_url=FAKE_API_URL, template=changed, tuning=FAST)

    reports, _ = run_poller(aws, "fail_marked", ["ok", "fail"], tmp_path / "log.jsonl")

    assert [r.failed_ids for r in reports] == [[] for _ in reports]
    assert sum(len(r.message_ids) for r in reports) == 2, "nothing was redelivered"


def test_the_stack_is_named_resolved_and_time_scaled_as_the_template_says(moto_endpoint: str) -> None:
    aws = provision(moto_endpoint, api_url=FAKE_API_URL, api_key="k", tuning=LocalTuning(time_scale=1 / 30))

    assert aws.queue.name == f"{aws.stack_name}-requests"
    assert aws.dead_letter_queue.name == f"{aws.stack_name}-requests-dlq"
    attributes = aws.client("sqs").get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "19"  # 570 s / 30
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": aws.dead_letter_queue.arn,
        "maxReceiveCount": 5,
    }
    ttl = aws.client("dynamodb").describe_time_to_live(TableName=aws.table_name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expiration")
    env = aws.function.environment
    assert env["DEAD_LETTER_QUEUE_URL"] == aws.dlq_url
    assert env["IMSHOP_API_KEY_PARAMETER"] == aws.api_key_parameter, "HasApiKey holds: the key's name is passed"
    assert env["RATE_LIMIT_WINDOW_SECONDS"] == "2"  # 60 s / 30
    assert aws.function.timeout_seconds == 3.0  # Globals: 90 s / 30
    mapping = aws.function.sqs_sources[0]
    assert (mapping.batch_size, mapping.concurrency, mapping.report_batch_item_failures) == (100, 2, True)
    assert aws.client("ssm").get_parameter(Name=aws.api_url_parameter, WithDecryption=True)["Parameter"]["Value"] == (
        FAKE_API_URL
    )
    keyless = provision(moto_endpoint, api_url=FAKE_API_URL)
    assert keyless.function.environment["IMSHOP_API_KEY_PARAMETER"] == ""


ADDED_RESOURCES = """
  LaneQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DeadLetterQueue.Arn
        maxReceiveCount: 2

  OnlyWithAlarmEmail:
    Type: AWS::SQS::Queue
    Condition: HasAlarmEmail

  ArchiveTable:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub ${AWS::StackName}-archive
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}

  # ---------------------------------------------------------------- state
"""


def test_a_queue_and_a_table_added_to_the_template_exist_locally(moto_endpoint: str, tmp_path: Path) -> None:
    changed = template_with(
        tmp_path,
        ("\n  # ---------------------------------------------------------------- state\n", ADDED_RESOURCES),
        (
            "          STATE_TABLE_NAME: !Ref StateTable\n",
            "          STATE_TABLE_NAME: !Ref StateTable\n"
            "          LANE_QUEUE_URL: !Ref LaneQueue\n"
            "          ARCHIVE_TABLE_ARN: !GetAtt ArchiveTable.Arn\n",
        ),
    )
    aws = provision(moto_endpoint, api_url=FAKE_API_URL, template=changed)

    assert set(aws.queues) == {"NotificationQueue", "DeadLetterQueue", "BulkQueue", "BulkDeadLetterQueue", "LaneQueue"}
    lane = aws.queues["LaneQueue"]
    assert aws.function.environment["LANE_QUEUE_URL"] == lane.url
    attributes = aws.client("sqs").get_queue_attributes(QueueUrl=lane.url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": aws.dead_letter_queue.arn,
        "maxReceiveCount": 2,
    }
    assert aws.tables["ArchiveTable"] == f"{aws.stack_name}-archive"
    table: dict[str, Any] = aws.client("dynamodb").describe_table(TableName=f"{aws.stack_name}-archive")["Table"]
    assert [k["KeyType"] for k in table["KeySchema"]] == ["HASH", "RANGE"]
    assert aws.function.environment["ARCHIVE_TABLE_ARN"].endswith(f":table/{aws.stack_name}-archive")
