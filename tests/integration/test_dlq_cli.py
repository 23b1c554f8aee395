"""The DLQ command line against moto server over HTTP: dead letters are listed with their reasons and source ids,
recipients masked, and left in the queue; errors from AWS end in one clear line and exit code 2."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest

from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision
from imshop_push_local.dlq import main
from imshop_push_local.dlq_masking import mask_document, preview_body
from imshop_push_local.dlq_queue import source_queue_arns

FAKE_API_URL = "https://imshop.invalid/api/push/secret-token"
PHONE = "79991234567"
OTHER_PHONE = "79997654321"

SUMMARY_MISSING = json.dumps(
    {"userIds": [PHONE, "79990000001"], "message": {"title": "Заказ №123 передан в доставку"}},
    ensure_ascii=False,
)
TYPO_IN_EVENT = json.dumps(
    {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "Bonus reminder",
        "source": "retailer.crm",
        "account": "123456789012",
        "time": "2099-01-01T09:00:00Z",
        "region": "eu-central-1",
        "resources": [],
        "detail": {"userId": OTHER_PHONE, "message": {"title": "Бонусы сгорают", "summary": "Потратьте до пятницы"}},
    },
    ensure_ascii=False,
)
REASONS = {
    "source-1": "message.summary: is a required property",
    "source-2": "userId: is not an allowed field (did you mean userIds?)",
}


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> LocalAws:
    """A fresh stack, and an environment in which plain boto3 (as the CLI uses it) reaches only moto."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name in {"DEAD_LETTER_QUEUE_URL", "BULK_DEAD_LETTER_QUEUE_URL"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # moto answers unimplemented actions with 500: no retries
    return provision(moto_server.endpoint_url, api_url=FAKE_API_URL, prefix="dlq-cli")


def _dead_letter(aws: LocalAws, body: str, source_id: str, *, extra: dict[str, Any] | None = None) -> None:
    """As imshop_push.adapters.sqs_outbox writes poison: original body and attributes, plus `error` and
    `sourceMessageId`."""
    attributes = {**(extra or {}), **_attributes(source_id)}
    aws.client("sqs").send_message(QueueUrl=aws.dlq_url, MessageBody=body, MessageAttributes=attributes)


def _attributes(source_id: str) -> dict[str, Any]:
    return {
        "error": {"DataType": "String", "StringValue": REASONS[source_id]},
        "sourceMessageId": {"DataType": "String", "StringValue": source_id},
    }


@pytest.fixture
def two_dead_letters(aws: LocalAws) -> LocalAws:
    _dead_letter(aws, SUMMARY_MISSING, "source-1", extra={"tenant": {"DataType": "String", "StringValue": "myshop"}})
    _dead_letter(aws, TYPO_IN_EVENT, "source-2")
    return aws


def _messages_in(aws: LocalAws, queue_url: str) -> int:
    """Count by receiving every message (then letting it go): the count a redrive would move."""
    sqs = aws.client("sqs")
    seen: set[str] = set()
    for _ in range(5):
        response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        seen.update(m["MessageId"] for m in response.get("Messages", []))
    return len(seen)


# --------------------------------------------------------------------------- list


def test_list_shows_reasons_and_source_ids_masks_recipients_and_deletes_nothing(
    two_dead_letters: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws = two_dead_letters

    assert main(["list", "--dlq-url", aws.dlq_url]) == 0

    out = capsys.readouterr().out
    assert "2 message(s) listed" in out
    for source_id, reason in REASONS.items():
        assert source_id in out
        assert reason in out
    assert PHONE not in out
    assert OTHER_PHONE not in out
    assert "79*******67" in out  # masked, still recognisable for a support ticket
    assert "79*******21" in out  # inside EventBridge's detail, under the typo `userId`
    assert "Заказ №123 передан в доставку" in out
    assert "other attributes   tenant" in out
    assert _messages_in(aws, aws.dlq_url) == 2


def test_list_as_json(two_dead_letters: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    aws = two_dead_letters

    assert main(["list", "--dlq-url", aws.dlq_url, "--json"]) == 0

    out = capsys.readouterr().out
    assert PHONE not in out
    entries = json.loads(out)
    assert {e["sourceMessageId"]: e["reason"] for e in entries} == REASONS
    for entry in entries:
        assert entry["receiveCount"] >= 1
        assert entry["sentAt"].endswith("Z")
        assert entry["messageId"]
    by_source = {e["sourceMessageId"]: e for e in entries}
    assert by_source["source-1"]["otherAttributes"] == ["tenant"]
    assert json.loads(by_source["source-1"]["bodyPreview"])["userIds"] == ["79*******67", "79*******01"]
    assert _messages_in(aws, aws.dlq_url) == 2


def test_list_stops_at_max(two_dead_letters: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--dlq-url", two_dead_letters.dlq_url, "--max", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_list_of_an_empty_dlq(aws: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--dlq-url", aws.dlq_url]) == 0
    assert "0 message(s) listed" in capsys.readouterr().out


def test_the_dlq_url_defaults_to_the_functions_variable(
    two_dead_letters: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", two_dead_letters.dlq_url)
    assert main(["list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_the_dlq_url_falls_back_to_the_stack_output(
    two_dead_letters: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws = two_dead_letters
    stack_name = f"dlq-cli-{uuid.uuid4().hex[:8]}"
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"DeadLetterQueueUrl": {"Value": aws.dlq_url}},
    }
    aws.client("cloudformation").create_stack(StackName=stack_name, TemplateBody=json.dumps(template))

    assert main(["list", "--stack-name", stack_name, "--json"]) == 0
    assert {e["sourceMessageId"] for e in json.loads(capsys.readouterr().out)} == set(REASONS)


def test_the_bulk_lanes_dlq_is_named_by_its_own_variable_or_stack_output(
    two_dead_letters: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make dlq LANE=bulk`: the bulk DLQ, never the transactional one the other variable names."""
    aws = two_dead_letters
    bulk_dlq = aws.bulk_dead_letter_queue.url
    aws.client("sqs").send_message(QueueUrl=bulk_dlq, MessageBody="{", MessageAttributes=_attributes("source-1"))
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", aws.dlq_url)
    monkeypatch.setenv("BULK_DEAD_LETTER_QUEUE_URL", bulk_dlq)
    assert main(["list", "--lane", "bulk", "--json"]) == 0
    assert [e["sourceMessageId"] for e in json.loads(capsys.readouterr().out)] == ["source-1"]

    monkeypatch.delenv("BULK_DEAD_LETTER_QUEUE_URL")
    stack_name = f"dlq-cli-{uuid.uuid4().hex[:8]}"
    outputs = {"BulkDeadLetterQueueUrl": {"Value": bulk_dlq}, "DeadLetterQueueUrl": {"Value": aws.dlq_url}}
    template = {"Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}}, "Outputs": outputs}
    aws.client("cloudformation").create_stack(StackName=stack_name, TemplateBody=json.dumps(template))
    assert main(["list", "--lane", "bulk", "--stack-name", stack_name, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_nothing_naming_the_dlq_is_a_clear_error(aws: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--stack-name", "no-such-stack"]) == 2
    err = capsys.readouterr().err
    assert "error: no dead-letter queue named" in err
    assert "no-such-stack" in err
    assert "--dlq-url" in err
    assert "DEAD_LETTER_QUEUE_URL" in err


def test_a_queue_that_does_not_exist_is_a_clear_error(aws: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    missing = aws.dlq_url.rsplit("/", 1)[0] + "/no-such-dlq"
    assert main(["list", "--dlq-url", missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: AWS answered an error:")
    assert "GetQueueAttributes" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- redrive and status


def test_redrive_reports_the_services_error_and_exits_2(
    two_dead_letters: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws = two_dead_letters
    # moto does not implement StartMessageMoveTask: whatever it answers is an error, and must read as one.
    code = main(
        ["redrive", "--dlq-arn", aws.dead_letter_queue.arn, "--destination-arn", aws.queue.arn, "--max-per-second", "5"]
    )

    captured = capsys.readouterr()
    assert code == 2
    assert "error: AWS answered an error:" in captured.err
    assert "StartMessageMoveTask" in captured.err
    assert "<html" not in captured.err
    assert "task handle" not in captured.out
    assert _messages_in(aws, aws.dlq_url) == 2


def test_redrive_resolves_the_dlq_arn_when_the_makefile_passes_none(
    two_dead_letters: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", two_dead_letters.dlq_url)
    assert main(["redrive", "--dlq-arn", ""]) == 2  # `make redrive` without DLQ_ARN
    err = capsys.readouterr().err
    assert "StartMessageMoveTask" in err  # it got as far as asking SQS, with the ARN it resolved


def test_status_reports_the_services_error_and_exits_2(
    two_dead_letters: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--dlq-arn", two_dead_letters.dead_letter_queue.arn]) == 2
    err = capsys.readouterr().err
    assert "error: AWS answered an error:" in err
    assert "ListMessageMoveTasks" in err


def test_an_out_of_range_move_rate_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["redrive", "--dlq-arn", "arn:aws:sqs:eu-central-1:123456789012:dlq", "--max-per-second", "501"])
    assert caught.value.code == 2
    assert "at most 500" in capsys.readouterr().err


# --------------------------------------------------------------------------- masking


@pytest.mark.parametrize(
    "body",
    [
        f"not json at all, call {PHONE}",
        json.dumps({"Type": "Notification", "MessageId": "m", "Message": json.dumps({"installIds": [PHONE]})}),
        json.dumps({"userIds": [int(PHONE)], "message": {"title": "t", "summary": "s"}}),
        json.dumps({"phone": PHONE, "note": f"перезвонить {PHONE}"}, ensure_ascii=False),
    ],
)
def test_no_preview_shows_a_full_phone_number(body: str) -> None:
    preview = preview_body(body, 10_000)
    assert PHONE not in preview
    assert "79*******67" in preview


def test_masking_happens_before_truncation() -> None:
    preview = preview_body(json.dumps({"userIds": [PHONE] * 50}), 30)
    assert len(preview) == 30
    assert "7999" not in preview


def test_masking_leaves_content_readable() -> None:
    document = {"userIds": [PHONE], "message": {"title": "Скидка 20%", "summary": "До 31.12"}, "deeplink": "a://b"}
    assert mask_document(document) == {
        "userIds": ["79*******67"],
        "message": {"title": "Скидка 20%", "summary": "До 31.12"},
        "deeplink": "a://b",
    }


def test_each_dlqs_source_queue_is_its_own_lanes_queue(aws: LocalAws) -> None:
    """What redrive names as destination: the dispatcher dead-letters with SendMessage, so SQS knows no "original
    source" for those messages."""
    sqs = aws.client("sqs")
    assert source_queue_arns(sqs, aws.dead_letter_queue.url) == [aws.queue.arn]
    assert source_queue_arns(sqs, aws.bulk_dead_letter_queue.url) == [aws.bulk_queue.arn]


# --------------------------------------------------------------------------- what listing may read, and how often


def _receive_counts(aws: LocalAws, queue_url: str) -> dict[str, int]:
    """Each message's receives before this look (which receives each once more, then lets it go)."""
    sqs = aws.client("sqs")
    found: dict[str, Any] = {}
    for _ in range(3):
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30, MessageSystemAttributeNames=["All"]
        )
        found.update((m["MessageId"], m) for m in response.get("Messages", []))
    for message in found.values():
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return {i: int(m["Attributes"]["ApproximateReceiveCount"]) - 1 for i, m in found.items()}


def test_listing_receives_each_dead_letter_once_and_leaves_it_visible(
    two_dead_letters: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    aws = two_dead_letters
    for listing in (1, 2):
        assert main(["list", "--dlq-url", aws.dlq_url, "--json"]) == 0
        assert [e["receiveCount"] for e in json.loads(capsys.readouterr().out)] == [listing, listing]
    assert set(_receive_counts(aws, aws.dlq_url).values()) == {2}
    assert _messages_in(aws, aws.dlq_url) == 2


def test_listing_refuses_a_request_queue_and_receives_nothing_from_it(
    aws: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pointed at the request queue, listings would push a live request past maxReceiveCount into the DLQ."""
    aws.client("sqs").send_message(QueueUrl=aws.queue_url, MessageBody=SUMMARY_MISSING)
    codes = [main(["list", "--dlq-url", aws.queue_url]) for _ in range(2)]
    codes.append(main(["list", "--dlq-url", aws.queue_url, "--force"]))

    assert _messages_in(aws, aws.dlq_url) == 0
    assert list(_receive_counts(aws, aws.queue_url).values()) == [0]
    assert codes == [2, 2, 2]
    err = capsys.readouterr().err
    assert "has a redrive policy of its own (maxReceiveCount 5)" in err
    assert "Traceback" not in err


def test_listing_refuses_a_queue_no_redrive_policy_names_unless_forced(
    aws: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    sqs = aws.client("sqs")
    orphan = sqs.create_queue(QueueName=f"dlq-cli-orphan-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=orphan, MessageBody="{", MessageAttributes=_attributes("source-1"))

    assert main(["list", "--dlq-url", orphan]) == 2
    assert "is not a dead-letter queue: no queue names it in its redrive policy" in capsys.readouterr().err
    assert list(_receive_counts(aws, orphan).values()) == [0]

    assert main(["list", "--dlq-url", orphan, "--force", "--json"]) == 0
    assert [e["sourceMessageId"] for e in json.loads(capsys.readouterr().out)] == ["source-1"]


def test_a_dead_letter_nested_beyond_the_json_decoders_stack_is_listed(
    two_dead_letters: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dispatcher dead-letters such a body as the contract says; the listing shows it with the others."""
    aws = two_dead_letters
    deep = "[" * 100_000 + json.dumps(PHONE) + "]" * 100_000
    aws.client("sqs").send_message(
        QueueUrl=aws.dlq_url,
        MessageBody=deep,
        MessageAttributes={
            "error": {"DataType": "String", "StringValue": "body: JSON nested too deeply"},
            "sourceMessageId": {"DataType": "String", "StringValue": "source-deep"},
        },
    )
    assert main(["list", "--dlq-url", aws.dlq_url]) == 0
    out = capsys.readouterr().out
    assert "3 message(s) listed" in out
    assert "source-deep" in out
    assert PHONE not in out


# --------------------------------------------------------------------------- where redrive may send


def _move_tasks_requested(moto_server: MotoServer) -> int:
    return sum(
        n for (_, _, operation), n in moto_server.requests.snapshot().items() if operation == "StartMessageMoveTask"
    )


def test_redrive_refuses_a_destination_that_does_not_feed_the_dlq(
    two_dead_letters: LocalAws, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bulk poison moved into the transactional queue would compete with order statuses."""
    aws = two_dead_letters
    before = _move_tasks_requested(moto_server)
    code = main(["redrive", "--dlq-arn", aws.bulk_dead_letter_queue.arn, "--destination-arn", aws.queue.arn])

    err = capsys.readouterr().err
    assert code == 2
    assert f"{aws.queue.arn} does not feed {aws.bulk_dead_letter_queue.arn}" in err
    assert aws.bulk_queue.arn in err  # the destination it would accept
    assert _move_tasks_requested(moto_server) == before


def test_redrive_refuses_a_queue_that_is_not_a_dlq(
    two_dead_letters: LocalAws, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _move_tasks_requested(moto_server)
    assert main(["redrive", "--dlq-arn", two_dead_letters.queue.arn]) == 2
    assert "is not a dead-letter queue" in capsys.readouterr().err
    assert _move_tasks_requested(moto_server) == before


def test_redrive_to_the_dlqs_own_source_queue_is_asked_of_sqs(
    two_dead_letters: LocalAws, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    aws = two_dead_letters
    before = _move_tasks_requested(moto_server)
    assert main(["redrive", "--dlq-arn", aws.bulk_dead_letter_queue.arn, "--destination-arn", aws.bulk_queue.arn]) == 2
    assert "StartMessageMoveTask" in capsys.readouterr().err  # moto's answer: not implemented
    assert _move_tasks_requested(moto_server) == before + 1


def test_access_denied_listing_the_source_queues_is_a_clear_error(
    two_dead_letters: LocalAws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator whose role lacks sqs:ListDeadLetterSourceQueues learns so, instead of a redrive to wherever."""
    from moto.core.authorization import enable_iam_authentication

    aws = two_dead_letters
    iam = aws.client("iam")
    user = f"dlq-operator-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    allowed = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:StartMessageMoveTask", "sqs:ReceiveMessage"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": allowed, "Resource": "*"}]}
    iam.put_user_policy(UserName=user, PolicyName="dlq", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])

    with enable_iam_authentication():
        redrive = main(["redrive", "--dlq-arn", aws.dead_letter_queue.arn])
        redrive_err = capsys.readouterr().err
        listing = main(["list", "--dlq-url", aws.dlq_url])
        listing_err = capsys.readouterr().err

    for code, err in ((redrive, redrive_err), (listing, listing_err)):
        assert code == 2
        assert "AccessDenied" in err
        assert "sqs:ListDeadLetterSourceQueues" in err
        assert "StartMessageMoveTask" not in err
