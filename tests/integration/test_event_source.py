"""The emulated Lambda SQS event source against moto server: the SQS semantics the demo and the
integration tests of the dispatcher rely on (event shape, batching, partial batch responses,
visibility timeout, redrive to the DLQ, crashes and timeouts of an execution)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision
from imshop_push_local.event_source import EventSourceConfig, SqsEventSource, interpret_response

HERE = str(Path(__file__).resolve().parent)
LOG_ENV = "FAKE_HANDLER_LOG"  # fake_handlers.LOG_ENV; that module is meant for the workers, not imported here
FAKE_API_URL = "https://imshop.invalid/api/push/secret-token"


@pytest.fixture
def moto_endpoint(moto_server: MotoServer) -> str:
    """The run's one emulator: each test provisions its own uniquely named stack in it."""
    return moto_server.endpoint_url


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "invocations.jsonl"


def _stack(endpoint: str, *, visibility_timeout: int, max_receive_count: int = 5) -> LocalAws:
    return provision(
        endpoint,
        api_url=FAKE_API_URL,
        prefix="es-test",
        visibility_timeout=visibility_timeout,
        max_receive_count=max_receive_count,
    )


def _source(aws: LocalAws, handler: str, log_path: Path, **settings: Any) -> SqsEventSource:
    config = EventSourceConfig(
        queue_url=aws.queue_url,
        queue_arn=aws.queue.arn,
        region=aws.region,
        handler=f"fake_handlers:{handler}",
        **settings,
    )
    return SqsEventSource(config, env={**aws.env(), LOG_ENV: str(log_path)}, sys_path=[HERE])


def _send(aws: LocalAws, bodies: list[str], attributes: dict[str, Any] | None = None) -> list[str]:
    sqs = aws.client("sqs")
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": body, **({"MessageAttributes": attributes} if attributes else {})}
            for i, body in enumerate(bodies[start : start + 10])
        ]
        response = sqs.send_message_batch(QueueUrl=aws.queue_url, Entries=entries)
        assert not response.get("Failed")
        ids += [entry["MessageId"] for entry in sorted(response["Successful"], key=lambda e: int(e["Id"]))]
    return ids


def _receive_all(aws: LocalAws, queue_url: str) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return messages
        messages += batch


def _invocations(log_path: Path) -> list[dict[str, Any]]:
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines() if line]


def _deliveries(log_path: Path) -> dict[str, list[dict[str, Any]]]:
    """message id -> each delivery of it (the record plus when and where it was handled)."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for invocation in _invocations(log_path):
        for record in invocation["records"]:
            by_id.setdefault(record["messageId"], []).append(
                {**record, "at": invocation["at"], "pid": invocation["pid"]}
            )
    return by_id


def _wait_until(condition: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_delivers_every_message_as_a_lambda_sqs_event_in_bounded_batches(moto_endpoint: str, log_path: Path) -> None:
    aws = _stack(moto_endpoint, visibility_timeout=30)
    attributes = {
        "kind": {"DataType": "String", "StringValue": "order-status"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01imshop"},
        "count": {"DataType": "Number", "StringValue": "42"},
    }
    bodies = [json.dumps({"n": n}) for n in range(10)]
    sent = _send(aws, bodies, attributes)

    with _source(aws, "acknowledge_all", log_path, batch_size=4, concurrency=2) as source:
        assert source.drain(timeout=15)
        reports = source.reports()
        pids = [pid for pid in source.worker_pids() if pid is not None]
    assert pids
    assert not any(_alive(pid) for pid in pids), "stop() left worker processes behind"

    invocations = _invocations(log_path)
    deliveries = _deliveries(log_path)
    assert set(deliveries) == set(sent)
    assert all(1 <= len(inv["records"]) <= 4 for inv in invocations)
    assert max(len(inv["records"]) for inv in invocations) > 1, "messages were never batched"
    assert {min(d["attributes"]["ApproximateReceiveCount"] for d in ds) for ds in deliveries.values()} == {"1"}

    record = deliveries[sent[0]][0]
    assert list(record)[:10] == [
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfMessageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    ]
    assert record["body"] == bodies[0]
    assert record["md5OfBody"] == hashlib.md5(bodies[0].encode()).hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == aws.queue.arn
    assert record["awsRegion"] == "eu-central-1"
    assert {"ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(
        record["attributes"]
    )
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "order-status", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "blob": {
            "binaryValue": base64.b64encode(b"\x00\x01imshop").decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
        "count": {"stringValue": "42", "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
    }

    invocation = invocations[0]
    assert invocation["endpoint_at_import"] == aws.endpoint_url, "env must be set before the handler is imported"
    assert invocation["function_name"] == "imshop-push-send-notifications"
    assert invocation["function_version"] == "$LATEST"
    assert invocation["invoked_function_arn"] == (
        "arn:aws:lambda:eu-central-1:123456789012:function:imshop-push-send-notifications"
    )
    assert invocation["memory_limit_in_mb"] == 256
    assert invocation["log_group_name"] == "/aws/lambda/imshop-push-send-notifications"
    assert "[$LATEST]" in invocation["log_stream_name"]
    assert 0 < invocation["remaining_ms"] <= 5000

    assert sorted(i for r in reports for i in r.message_ids) == sorted(sent)
    assert all(r.error is None and r.failed_ids == [] for r in reports)
    assert len({r.request_id for r in reports}) == len(reports)


def test_failed_records_return_after_the_visibility_timeout_then_sqs_moves_them_to_the_dlq(
    moto_endpoint: str, log_path: Path
) -> None:
    # Long enough that the acknowledged records are deleted before they could return, on any machine.
    visibility_timeout = 2
    aws = _stack(moto_endpoint, visibility_timeout=visibility_timeout, max_receive_count=2)
    succeeding = _send(aws, ["ok-1", "ok-2", "ok-3"])
    failing = _send(aws, ["fail-1", "fail-2"])

    with _source(aws, "fail_marked", log_path, concurrency=1, batching_window_seconds=0) as source:
        assert source.drain(timeout=15)
        reports = source.reports()

    deliveries = _deliveries(log_path)
    for message_id in succeeding:
        assert [d["attributes"]["ApproximateReceiveCount"] for d in deliveries[message_id]] == ["1"]
    for message_id in failing:
        first, second = deliveries[message_id]
        assert (first["attributes"]["ApproximateReceiveCount"], second["attributes"]["ApproximateReceiveCount"]) == (
            "1",
            "2",
        )
        assert second["at"] - first["at"] >= visibility_timeout - 0.1, "redelivered before the visibility timeout"
        assert second["receiptHandle"] != first["receiptHandle"]

    dead = _receive_all(aws, aws.dlq_url)
    assert sorted(m["Body"] for m in dead) == ["fail-1", "fail-2"]
    assert sorted(m["MessageId"] for m in dead) == sorted(failing)
    assert _receive_all(aws, aws.queue_url) == []

    assert all(r.error is None for r in reports)
    assert sorted(i for r in reports for i in r.failed_ids) == sorted(failing * 2)


@pytest.mark.parametrize(
    ("handler", "error"),
    [("raise_error", "RuntimeError: simulated function error"), ("name_unknown_item", "malformed response")],
)
def test_a_function_error_or_malformed_response_fails_the_whole_batch(
    moto_endpoint: str, log_path: Path, handler: str, error: str
) -> None:
    aws = _stack(moto_endpoint, visibility_timeout=1, max_receive_count=2)
    sent = _send(aws, ["a", "b", "c"])

    with _source(aws, handler, log_path, concurrency=1) as source:
        assert source.drain(timeout=15)
        reports = source.reports()

    assert reports
    for report in reports:
        assert report.error is not None
        assert report.error.startswith(error)
        assert report.failed_ids == report.message_ids
    deliveries = _deliveries(log_path)
    assert {i: [d["attributes"]["ApproximateReceiveCount"] for d in ds] for i, ds in deliveries.items()} == {
        i: ["1", "2"] for i in sent
    }
    assert sorted(m["MessageId"] for m in _receive_all(aws, aws.dlq_url)) == sorted(sent)


def test_a_killed_worker_is_restarted_cold_and_its_batch_returns_only_after_the_visibility_timeout(
    moto_endpoint: str, log_path: Path
) -> None:
    visibility_timeout = 2
    aws = _stack(moto_endpoint, visibility_timeout=visibility_timeout)
    with _source(
        aws,
        "hang_once",
        log_path,
        concurrency=1,
        batching_window_seconds=0,
        function_timeout_seconds=30,
    ) as source:
        [message_id] = _send(aws, ["hang"])
        _wait_until(lambda: len(_invocations(log_path)) == 1, timeout=15)
        [old_pid] = source.worker_pids()
        source.kill_worker(0)
        [new_pid] = source.worker_pids()
        assert new_pid is not None
        assert new_pid != old_pid
        assert source.drain(timeout=15)
        reports = source.reports()

    invocations = _invocations(log_path)
    assert len(invocations) == 2, (invocations, reports)
    first, second = invocations
    assert (first["pid"], second["pid"]) == (old_pid, new_pid)
    assert second["imported_at"] > first["imported_at"], "the replacement must import the handler afresh"
    first_record, second_record = first["records"][0], second["records"][0]
    assert first_record["messageId"] == second_record["messageId"] == message_id
    counts = [
        first_record["attributes"]["ApproximateReceiveCount"],
        second_record["attributes"]["ApproximateReceiveCount"],
    ]
    assert counts == ["1", "2"], invocations
    received_at = int(first_record["attributes"]["ApproximateFirstReceiveTimestamp"]) / 1000
    assert second["at"] - received_at >= visibility_timeout - 0.05, "in-flight batch came back too early"

    crashed, redelivered = reports
    assert crashed.error is not None
    assert "killed" in crashed.error
    assert crashed.failed_ids == [message_id]
    assert redelivered.error is None
    assert redelivered.failed_ids == []


def test_an_invocation_past_its_timeout_is_ended_and_its_batch_retried(moto_endpoint: str, log_path: Path) -> None:
    aws = _stack(moto_endpoint, visibility_timeout=3)
    [message_id] = _send(aws, ["hang"])

    with _source(
        aws,
        "hang_once",
        log_path,
        concurrency=1,
        batching_window_seconds=0,
        function_timeout_seconds=0.5,
    ) as source:
        assert source.drain(timeout=15)
        reports = source.reports()

    timed_out, retried = reports
    assert timed_out.error == "Task timed out after 0.50 seconds"
    assert timed_out.failed_ids == [message_id]
    assert timed_out.duration_s >= 1.5
    assert retried.error is None
    assert retried.message_ids == [message_id]
    first, second = _invocations(log_path)
    assert first["pid"] != second["pid"]


def test_drain_reports_a_backlog_nobody_consumes(moto_endpoint: str, log_path: Path) -> None:
    aws = _stack(moto_endpoint, visibility_timeout=30)
    _send(aws, ["waiting"])
    source = _source(aws, "acknowledge_all", log_path)  # never started
    assert source.drain(timeout=0.2) is False
    source.stop()


@pytest.mark.parametrize(
    ("result", "failed", "is_error"),
    [
        (None, [], False),
        ({}, [], False),
        ({"batchItemFailures": []}, [], False),
        ({"batchItemFailures": None}, [], False),
        ({"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "b"}]}, ["b"], False),
        ({"batchItemFailures": [{"itemIdentifier": "z"}]}, ["a", "b"], True),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, ["a", "b"], True),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, ["a", "b"], True),
        ({"batchItemFailures": [{"id": "a"}]}, ["a", "b"], True),
        ({"batchItemFailures": "a"}, ["a", "b"], True),
        ("ok", ["a", "b"], True),
        ({"batchItemFailures": [], "when": object()}, ["a", "b"], True),
    ],
)
def test_batch_responses_are_judged_as_lambda_judges_them(result: Any, failed: list[str], is_error: bool) -> None:
    failed_ids, error = interpret_response(result, ["a", "b"])
    assert failed_ids == failed
    assert (error is not None) == is_error
