"""Look into the dead-letter queue and send its messages back, without the AWS console.

    python -m imshop_push_local.dlq list [--lane bulk] [--dlq-url URL] [--max N] [--json]
    python -m imshop_push_local.dlq redrive [--lane bulk] [--dlq-arn ARN] [--destination-arn ARN] [--max-per-second N]
    python -m imshop_push_local.dlq status [--lane bulk] [--dlq-arn ARN]

A poison request waits in the DLQ for a person to read why (`error`), fix the producer, and redrive. `list`
never deletes: it receives with a visibility timeout of 0, so every message stays available to the next
reader and to a redrive. Recipient ids are often phone numbers, so bodies are shown with them masked.

The queue is named by `--dlq-url` / `--dlq-arn`, else `DEAD_LETTER_QUEUE_URL` (the function's own variable),
else the outputs of the deployed stack (`--stack-name`, default `imshop-push`). Each lane has its own DLQ:
`--lane bulk` reads `BULK_DEAD_LETTER_QUEUE_URL` and the stack's `BulkDeadLetterQueue*` outputs instead.
boto3 resolves credentials, region and `AWS_ENDPOINT_URL` as usual, so the same commands work against a local
emulator.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from imshop_push.masking import mask_recipient
from imshop_push.sqs_copies import REASON_ATTRIBUTE, SOURCE_ID_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

DEFAULT_STACK_NAME = "imshop-push"
DLQ_URL_ENV = "DEAD_LETTER_QUEUE_URL"
DLQ_URL_OUTPUT = "DeadLetterQueueUrl"
DLQ_ARN_OUTPUT = "DeadLetterQueueArn"


@dataclass(frozen=True, slots=True)
class LaneDlq:
    """Where a lane's DLQ is named when no URL or ARN is passed: the function's variable, the stack's outputs."""

    url_env: str
    url_output: str
    arn_output: str


LANE_DLQS = {
    "transactional": LaneDlq(DLQ_URL_ENV, DLQ_URL_OUTPUT, DLQ_ARN_OUTPUT),
    "bulk": LaneDlq("BULK_DEAD_LETTER_QUEUE_URL", "BulkDeadLetterQueueUrl", "BulkDeadLetterQueueArn"),
}
DEFAULT_MAX = 100
DEFAULT_PREVIEW_CHARS = 240
IDLE_ROUNDS = 3
"""Rounds in a row that bring no message not seen yet before `list` concludes it has seen the queue: with a
visibility timeout of 0 the same messages come back, and SQS samples its servers, so one round proves little."""
MAX_MOVE_RATE = 500  # SQS's cap for MaxNumberOfMessagesPerSecond
EXIT_ERROR = 2

# Keys whose values are recipients (and the typos of them a poison message may carry, e.g. `userId`).
_RECIPIENT_KEY = re.compile(r"user|install|iid|phone|recipient", re.IGNORECASE)
# Anything that looks like a phone number in free text: titles, reasons echoing IMSHOP's 400 answer, non-JSON.
_DIGIT_RUN = re.compile(r"\d{7,}")
_QUEUE_HOST = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")
_HTML_TAG = re.compile(r"<[^>]+>")


class CliError(Exception):
    """Something the person at the terminal can fix; printed as one line, exit code 2."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    source_message_id: str | None
    reason: str | None
    sent_at: str | None
    receive_count: int | None
    other_attributes: list[str]
    body_preview: str


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.command(args)
    except CliError as e:
        _fail(str(e))
        return EXIT_ERROR
    except ClientError as e:
        _fail(f"AWS answered an error: {describe_client_error(e)}")
        return EXIT_ERROR
    except NoRegionError:
        _fail("no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION), or pass --region")
        return EXIT_ERROR
    except NoCredentialsError:
        _fail("no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        return EXIT_ERROR
    except BotoCoreError as e:
        _fail(f"cannot reach AWS: {e}")
        return EXIT_ERROR
    return result


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m imshop_push_local.dlq",
        description="Inspect and redrive the imshop-push dead-letter queue.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", help="AWS region (default: the usual boto3 configuration, or the queue's)")
    common.add_argument(
        "--stack-name",
        default=DEFAULT_STACK_NAME,
        help=f"stack whose outputs name the DLQ when nothing else does (default: {DEFAULT_STACK_NAME})",
    )
    common.add_argument("--dlq-url", help=f"the dead-letter queue URL (default: ${DLQ_URL_ENV}, else the stack output)")
    common.add_argument(
        "--lane",
        choices=sorted(LANE_DLQS),
        default="transactional",
        help="whose DLQ, when --dlq-url/--dlq-arn do not name one (default: transactional; bulk: "
        f"${LANE_DLQS['bulk'].url_env}, else the stack output)",
    )
    commands = parser.add_subparsers(required=True, metavar="{list,redrive,status}")

    listing = commands.add_parser(
        "list",
        parents=[common],
        help="list dead-lettered messages with their reasons (does not delete them)",
        description="List dead-lettered messages without deleting them. Each listing counts as a receive in "
        "ApproximateReceiveCount.",
    )
    listing.add_argument("--max", type=_positive_int, default=DEFAULT_MAX, help=f"at most N (default {DEFAULT_MAX})")
    listing.add_argument("--json", action="store_true", help="print a JSON array instead of text")
    listing.add_argument(
        "--preview-chars", type=_positive_int, default=DEFAULT_PREVIEW_CHARS, help="body preview length"
    )
    listing.set_defaults(command=_list)

    redrive = commands.add_parser(
        "redrive",
        parents=[common],
        help="move dead-lettered messages back to a queue (an asynchronous SQS message move task)",
        description="Start an SQS message move task from the DLQ. Fix what the listed reasons say first: "
        "a request that is still invalid is dead-lettered again.",
    )
    redrive.add_argument("--dlq-arn", default="", help="the DLQ's ARN (default: from --dlq-url or the stack)")
    redrive.add_argument(
        "--destination-arn",
        default="",
        help="queue to move the messages to (default: the queue whose redrive policy names this DLQ, if it is "
        "the only one; else each message's original source queue, as SQS decides)",
    )
    redrive.add_argument(
        "--max-per-second",
        type=_move_rate,
        help=f"messages moved per second, 1-{MAX_MOVE_RATE} (default: SQS picks the rate)",
    )
    redrive.set_defaults(command=_redrive)

    status = commands.add_parser("status", parents=[common], help="show the DLQ's recent message move tasks")
    status.add_argument("--dlq-arn", default="", help="the DLQ's ARN (default: from --dlq-url or the stack)")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(command=_status)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _move_rate(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_MOVE_RATE:
        raise argparse.ArgumentTypeError(f"SQS moves at most {MAX_MOVE_RATE} messages per second, got {value}")
    return value


# --------------------------------------------------------------------------- commands


def _list(args: argparse.Namespace) -> int:
    session = _session(args.region)
    url = _dlq_url(args, session)
    sqs: SQSClient = _client(session, "sqs", hint=url)
    approximate = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    in_queue = approximate.get("Attributes", {}).get("ApproximateNumberOfMessages", "?")
    letters = [to_dead_letter(m, preview_chars=args.preview_chars) for m in peek(sqs, url, limit=args.max)]
    if args.json:
        print(json.dumps([_json_entry(letter) for letter in letters], ensure_ascii=False, indent=2))
        return 0
    print(f"Dead-letter queue {url}")
    print(f"{len(letters)} message(s) listed, about {in_queue} in the queue; none was deleted.")
    for n, letter in enumerate(letters, start=1):
        print()
        print(f"[{n}] source message id  {letter.source_message_id or '(not recorded)'}")
        print(f"    reason             {letter.reason or '(not recorded: retried until maxReceiveCount?)'}")
        print(f"    sent               {letter.sent_at or '?'}")
        print(f"    receive count      {letter.receive_count if letter.receive_count is not None else '?'}")
        if letter.other_attributes:
            print(f"    other attributes   {', '.join(letter.other_attributes)}")
        print(f"    DLQ message id     {letter.message_id}")
        print(f"    body               {letter.body_preview}")
    return 0


def _redrive(args: argparse.Namespace) -> int:
    session = _session(args.region)
    arn = _dlq_arn(args, session)
    sqs: SQSClient = _client(session, "sqs", hint=arn)
    destination = args.destination_arn or _single_source_queue_arn(sqs, arn)
    request: dict[str, Any] = {"SourceArn": arn}
    if destination:
        request["DestinationArn"] = destination
    if args.max_per_second:
        request["MaxNumberOfMessagesPerSecond"] = args.max_per_second
    response = sqs.start_message_move_task(**request)
    print(f"Redrive started from {arn}")
    target = destination or "each message's original source queue"
    print(f"  to          {target}")
    print(f"  task handle {response['TaskHandle']}")
    print(f"Follow it with: python -m imshop_push_local.dlq status --dlq-arn {arn}")
    return 0


def _status(args: argparse.Namespace) -> int:
    session = _session(args.region)
    arn = _dlq_arn(args, session)
    sqs: SQSClient = _client(session, "sqs", hint=arn)
    tasks = sqs.list_message_move_tasks(SourceArn=arn, MaxResults=10).get("Results", [])
    if args.json:
        print(json.dumps(tasks, ensure_ascii=False, indent=2, default=str))
        return 0
    if not tasks:
        print(f"No message move task has run from {arn}.")
        return 0
    for task in tasks:
        started = _from_millis(task.get("StartedTimestamp"))
        moved = task.get("ApproximateNumberOfMessagesMoved", "?")
        total = task.get("ApproximateNumberOfMessagesToMove", "?")
        print(f"{task.get('Status', '?'):<12} started {started or '?'}  moved {moved} of {total}")
        if task.get("DestinationArn"):
            print(f"             to {task['DestinationArn']}")
        if task.get("TaskHandle"):
            print(f"             task handle {task['TaskHandle']}")
        if task.get("FailureReason"):
            print(f"             failure: {task['FailureReason']}")
    return 0


# --------------------------------------------------------------------------- reading the queue


def peek(sqs: SQSClient, queue_url: str, *, limit: int) -> list[MessageTypeDef]:
    """Receive without consuming: visibility timeout 0, several rounds, deduplicated by MessageId.

    Long polling (1 s) asks every SQS server, so an empty answer means an empty queue; short polling could
    answer nothing from a queue that holds messages.
    """
    seen: dict[str, MessageTypeDef] = {}
    idle = 0
    max_rounds = 3 * (limit // 10 + 1) + IDLE_ROUNDS
    for _ in range(max_rounds):
        if len(seen) >= limit or idle >= IDLE_ROUNDS:
            break
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        new = [m for m in messages if m["MessageId"] not in seen]
        for message in new:
            seen[message["MessageId"]] = message
        idle = 0 if new else idle + 1
    return list(seen.values())[:limit]


def to_dead_letter(message: MessageTypeDef, *, preview_chars: int = DEFAULT_PREVIEW_CHARS) -> DeadLetter:
    attributes = message.get("MessageAttributes", {})
    system = message.get("Attributes", {})
    receive_count = system.get("ApproximateReceiveCount")
    reason = _string_attribute(message, REASON_ATTRIBUTE)
    return DeadLetter(
        message_id=message["MessageId"],
        source_message_id=_string_attribute(message, SOURCE_ID_ATTRIBUTE),
        reason=mask_text(reason) if reason is not None else None,
        sent_at=_from_millis(system.get("SentTimestamp")),
        receive_count=int(receive_count) if receive_count and receive_count.isdigit() else None,
        other_attributes=sorted(name for name in attributes if name not in {REASON_ATTRIBUTE, SOURCE_ID_ATTRIBUTE}),
        body_preview=preview_body(message.get("Body", ""), preview_chars),
    )


def _string_attribute(message: MessageTypeDef, name: str) -> str | None:
    attribute = message.get("MessageAttributes", {}).get(name)
    return attribute.get("StringValue") if attribute is not None else None


def preview_body(body: str, limit: int = DEFAULT_PREVIEW_CHARS) -> str:
    """One line, at most `limit` characters, recipients masked; masking happens before truncation, so a cut
    never leaves part of an id unmasked."""
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        text = mask_text(" ".join(body.split()))
    else:
        text = json.dumps(mask_document(document), ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def mask_document(value: Any, key: str | None = None) -> Any:
    """Mask recipients anywhere in a body: request, EventBridge `detail`, or SNS `Message` holding JSON text."""
    if isinstance(value, dict):
        return {k: mask_document(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_document(item, key) for item in value]
    if key is not None and _RECIPIENT_KEY.search(key) and isinstance(value, (str, int, float)):
        return mask_recipient(str(value)) if not isinstance(value, bool) else value
    if isinstance(value, str):
        stripped = value.lstrip()
        if stripped.startswith(("{", "[")):
            try:
                nested = json.loads(value)
            except json.JSONDecodeError:
                return mask_text(value)
            return json.dumps(mask_document(nested), ensure_ascii=False, separators=(",", ":"))
        return mask_text(value)
    return value


def mask_text(text: str) -> str:
    return _DIGIT_RUN.sub(lambda m: mask_recipient(m.group()), text)


def _json_entry(letter: DeadLetter) -> dict[str, Any]:
    fields = asdict(letter)
    return {
        "messageId": fields["message_id"],
        "sourceMessageId": fields["source_message_id"],
        "reason": fields["reason"],
        "sentAt": fields["sent_at"],
        "receiveCount": fields["receive_count"],
        "otherAttributes": fields["other_attributes"],
        "bodyPreview": fields["body_preview"],
    }


def _from_millis(value: str | int | None) -> str | None:
    try:
        millis = int(value) if value is not None else None
    except ValueError:
        return None
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- naming the queue


def _session(region: str | None) -> boto3.session.Session:
    return boto3.session.Session(region_name=region) if region else boto3.session.Session()


def _client(session: boto3.session.Session, service: str, *, hint: str | None = None) -> Any:
    """A client in the configured region, else in the region the queue's URL or ARN names."""
    region = session.region_name or (_region_of(hint) if hint else None)
    if region is None:
        raise NoRegionError
    return session.client(service, region_name=region)  # type: ignore[call-overload]


def _region_of(url_or_arn: str) -> str | None:
    if url_or_arn.startswith("arn:"):
        parts = url_or_arn.split(":")
        return parts[3] if len(parts) == 6 and parts[3] else None
    match = _QUEUE_HOST.match(url_or_arn)
    return match.group(1) if match else None


def _dlq_url(args: argparse.Namespace, session: boto3.session.Session) -> str:
    if args.dlq_url:
        return str(args.dlq_url)
    lane = LANE_DLQS[args.lane]
    from_env = os.environ.get(lane.url_env, "").strip()
    if from_env:
        return from_env
    return _stack_output(session, args.stack_name, lane.url_output, lane.url_env)


def _dlq_arn(args: argparse.Namespace, session: boto3.session.Session) -> str:
    if args.dlq_arn:
        return str(args.dlq_arn)
    lane = LANE_DLQS[args.lane]
    if args.dlq_url or os.environ.get(lane.url_env, "").strip():
        url = _dlq_url(args, session)
        sqs: SQSClient = _client(session, "sqs", hint=url)
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]).get("Attributes", {})
        return attributes["QueueArn"]
    return _stack_output(session, args.stack_name, lane.arn_output, lane.url_env)


def _stack_output(session: boto3.session.Session, stack_name: str, output: str, url_env: str) -> str:
    """The last resort: a deployed stack names its own DLQ, so an operator needs no URL to hand."""
    hint = f"pass --dlq-url (or --dlq-arn), set {url_env}, or name the deployed stack with --stack-name"
    cloudformation: CloudFormationClient = _client(session, "cloudformation")
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as e:
        raise CliError(
            f"no dead-letter queue named, and stack {stack_name!r} cannot be read ({describe_client_error(e)}): {hint}"
        ) from None
    except NoCredentialsError:
        raise CliError(
            f"no dead-letter queue named, and no AWS credentials to look up stack {stack_name!r}: {hint}"
        ) from None
    for candidate in stacks:
        for item in candidate.get("Outputs", []):
            if item.get("OutputKey") == output and item.get("OutputValue"):
                return item["OutputValue"]
    raise CliError(f"no dead-letter queue named, and stack {stack_name!r} has no output {output}: {hint}")


def _single_source_queue_arn(sqs: SQSClient, dlq_arn: str) -> str:
    """The queue whose redrive policy points at this DLQ, when there is exactly one.

    Naming it explicitly matters here: the dispatcher moves poison with SendMessage, and SQS records an
    "original source queue" only for messages it dead-lettered itself through the redrive policy.
    """
    parts = dlq_arn.split(":")
    if len(parts) != 6:
        raise CliError(f"not an SQS queue ARN: {dlq_arn!r} (expected arn:aws:sqs:REGION:ACCOUNT:NAME)")
    try:
        url = sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
        sources = sqs.list_dead_letter_source_queues(QueueUrl=url).get("queueUrls", [])
        if len(sources) != 1:
            return ""
        attributes = sqs.get_queue_attributes(QueueUrl=sources[0], AttributeNames=["QueueArn"])
    except ClientError:
        return ""  # let StartMessageMoveTask decide, and report its own answer
    return attributes.get("Attributes", {}).get("QueueArn", "")


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


if __name__ == "__main__":
    sys.exit(main())
