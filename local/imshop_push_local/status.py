"""Where is my push? The fate of one request, by its idempotency key, without reading logs.

    python -m imshop_push_local.status --key KEY [--recipient ID] [--json] [--stack-name NAME] [--region R]
    make status KEY=order-123 [RECIPIENT=79990001234] [JSON=1] [STACK=imshop-push-prod]

Which table: `--table-name`, else `STATE_TABLE_NAME` (the function's own variable: with `AWS_ENDPOINT_URL` set
too, any local stack, `make demo`'s included), else the `StateTableName` output of the deployed stack. Read-only
(`imshop_push.adapters.status_dynamodb`). Recipient ids are never printed: the JSON answer has none, the text masks it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from imshop_push.adapters.status_dynamodb import lookup
from imshop_push.domain.masking import mask_recipient
from imshop_push.domain.state import StateStoreError
from imshop_push.domain.status import Answer, Fate, Why
from imshop_push_local.dlq_names import DEFAULT_STACK_NAME, CliError, client, session, stack_output

TABLE_ENV = "STATE_TABLE_NAME"
TABLE_OUTPUT = "StateTableName"
EXIT_ERROR = 2

WHAT_TO_DO = {
    Fate.UNKNOWN: "never received, or older than the state TTL: check the key, then whether the producer sent it",
    Fate.HELD: "waits for its sendAt or the end of the quiet hours: it is sent then, nothing to do",
    Fate.WAITING: "waits for IMSHOP's rate budget: it is sent in its turn, nothing to do",
    Fate.IN_PROGRESS: "being sent now (or retried after a failure): ask again in a minute",
    Fate.SENT: "IMSHOP accepted it for every recipient: ask IMSHOP or check the device's push settings",
    Fate.PARTLY_SENT: "some recipients were reached, the rest never will be (see reason): ask with RECIPIENT=",
    Fate.SUPERSEDED: "a newer request of its collapseKey went out instead: the customer got that one",
    Fate.CANCELLED: "cancelled by the producer: what was not sent is never sent",
    Fate.EXPIRED: "its expiresAt passed before it could be sent: send a new request if it still matters",
    Fate.DEAD_LETTERED: "in the dead-letter queue: fix what the reason says, then `make redrive`",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        answer = _lookup(args)
    except CliError as e:
        return _fail(str(e))
    except NoRegionError:
        return _fail("no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION), or pass --region")
    except NoCredentialsError:
        return _fail("no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    except (StateStoreError, ClientError, BotoCoreError) as e:
        return _fail(f"cannot read the state table: {e}")
    if args.json:
        print(json.dumps(answer.as_json(), ensure_ascii=False))
    else:
        print(describe(answer, args.recipient))
    return 0


def describe(answer: Answer, recipient: str | None) -> str:
    """The answer for a person: the fate, its time in UTC, its counts, and what to do about it."""
    lines = [f"key        {answer.key}", f"fate       {answer.fate.value}"]
    if answer.at is not None:
        lines.append(f"at         {_utc(answer.at)}")
    if answer.calls is not None:
        lines.append(f"calls      {answer.calls}")
    if answer.reached is not None and answer.total is not None:
        lines.append(f"recipients {answer.reached} of {answer.total} reached")
    if answer.reason is not None:
        lines.append(f"reason     {answer.reason}")
    lines.append(f"meaning    {WHAT_TO_DO[answer.fate]}")
    if recipient is not None and answer.recipient is not None:
        r = answer.recipient
        masked = mask_recipient(recipient)
        if r.reached:
            when = f" at {_utc(r.at)}" if r.at is not None else ""
            lines.append(f"recipient  {masked}: reached{when} with its {r.text or 'own'} text")
        else:
            lines.append(f"recipient  {masked}: not reached ({(r.why or Why.NOT_YET).value})")
    return "\n".join(lines)


def _lookup(args: argparse.Namespace) -> Answer:
    aws = session(args.region)
    table = args.table_name or os.environ.get(TABLE_ENV, "").strip()
    if not table:
        hint = f"pass --table-name, set {TABLE_ENV}, or name the deployed stack with --stack-name"
        table = stack_output(aws, args.stack_name, TABLE_OUTPUT, what="state table", hint=hint)
    return lookup(client(aws, "dynamodb"), table, args.key, recipient=args.recipient or None)


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m imshop_push_local.status", description="Where is my push? The fate of one request."
    )
    parser.add_argument("--key", required=True, help="the request's idempotencyKey (or its default key)")
    parser.add_argument("--recipient", help="a userId or installId: was it reached, when, or why not")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--table-name", help=f"the state table (default: ${TABLE_ENV}, else the stack output)")
    parser.add_argument(
        "--stack-name",
        default=DEFAULT_STACK_NAME,
        help=f"stack whose {TABLE_OUTPUT} output names the table otherwise (default: {DEFAULT_STACK_NAME})",
    )
    parser.add_argument("--region", help="AWS region (default: the usual boto3 configuration)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
