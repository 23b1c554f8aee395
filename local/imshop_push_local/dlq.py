"""Look into the dead-letter queue and send its messages back, without the AWS console.

    python -m imshop_push_local.dlq list [--lane bulk] [--dlq-url URL] [--max N] [--json] [--force]
    python -m imshop_push_local.dlq redrive [--lane bulk] [--dlq-arn ARN] [--destination-arn ARN] [--max-per-second N]
    python -m imshop_push_local.dlq status [--lane bulk] [--dlq-arn ARN]

A poison request waits in the DLQ for a person to read why (`error`), fix the producer, and redrive. `list`
never deletes, and reads only dead-letter queues (`dlq_queue`); recipient ids are often phone numbers, so
bodies are shown masked (`dlq_masking`). `redrive` moves messages only back to a queue that feeds this DLQ.
Which queue is meant, when none is named: `dlq_names`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from imshop_push_local.dlq_masking import DEFAULT_PREVIEW_CHARS
from imshop_push_local.dlq_names import (
    DEFAULT_STACK_NAME,
    DLQ_URL_ENV,
    LANE_DLQS,
    CliError,
    client,
    describe_client_error,
    dlq_arn,
    dlq_url,
    session,
)
from imshop_push_local.dlq_queue import (
    from_millis,
    peek,
    redrive_destination,
    require_listable,
    to_dead_letter,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

DEFAULT_MAX = 100
MAX_MOVE_RATE = 500  # SQS's cap for MaxNumberOfMessagesPerSecond
EXIT_ERROR = 2


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
        description="List dead-lettered messages without deleting them. Each listing receives each message it "
        "shows once (ApproximateReceiveCount), so it reads only a dead-letter queue: one that a queue's redrive "
        "policy names and that has no maxReceiveCount of its own.",
    )
    listing.add_argument("--max", type=_positive_int, default=DEFAULT_MAX, help=f"at most N (default {DEFAULT_MAX})")
    listing.add_argument("--json", action="store_true", help="print a JSON array instead of text")
    listing.add_argument(
        "--preview-chars", type=_positive_int, default=DEFAULT_PREVIEW_CHARS, help="body preview length"
    )
    listing.add_argument(
        "--force",
        action="store_true",
        help="read a queue no redrive policy names (a dead-letter queue whose source queue is gone); a queue with "
        "a redrive policy of its own is refused even so",
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
        help="queue to move the messages to, one whose redrive policy names this DLQ (default: that queue, if it "
        "is the only one; else each message's original source queue, as SQS decides)",
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
    aws = session(args.region)
    url = dlq_url(args, aws)
    sqs: SQSClient = client(aws, "sqs", hint=url)
    require_listable(sqs, url, force=args.force)
    approximate = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    in_queue = approximate.get("Attributes", {}).get("ApproximateNumberOfMessages", "?")
    letters = [to_dead_letter(m, preview_chars=args.preview_chars) for m in peek(sqs, url, limit=args.max)]
    if args.json:
        print(json.dumps([letter.as_json() for letter in letters], ensure_ascii=False, indent=2))
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
    aws = session(args.region)
    arn = dlq_arn(args, aws)
    sqs: SQSClient = client(aws, "sqs", hint=arn)
    destination = redrive_destination(sqs, arn, args.destination_arn)
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
    aws = session(args.region)
    arn = dlq_arn(args, aws)
    sqs: SQSClient = client(aws, "sqs", hint=arn)
    tasks = sqs.list_message_move_tasks(SourceArn=arn, MaxResults=10).get("Results", [])
    if args.json:
        print(json.dumps(tasks, ensure_ascii=False, indent=2, default=str))
        return 0
    if not tasks:
        print(f"No message move task has run from {arn}.")
        return 0
    for task in tasks:
        started = from_millis(task.get("StartedTimestamp"))
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


if __name__ == "__main__":
    sys.exit(main())
