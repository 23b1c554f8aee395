"""`make demo`'s last phase: support asks where three pushes are, and `make status` answers from the state table.

A push sent to two customers (asked for one of them), an order status a newer one superseded, and a push
cancelled before it came: the lookups are the library function `make status` runs, printed as it prints them
(recipient ids masked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imshop_push.adapters.status_dynamodb import lookup
from imshop_push.domain.masking import mask_recipient
from imshop_push_local.demo_schedule import rfc3339
from imshop_push_local.stack import LocalStack, StackSettings
from imshop_push_local.status import describe

CUSTOMER, NEIGHBOUR = "79990000201", "79990000202"


def push(title: str, users: list[str], **extensions: Any) -> dict[str, Any]:
    return {"userIds": users, "message": {"title": title, "summary": "demo: where is my push?"}, **extensions}


def status_phase(
    *, output_path: Path | None = None, settings: StackSettings | None = None, number: int = 7
) -> list[str]:
    """Returns the problems seen (empty: every lookup answered what happened)."""
    print(f"\n{number}) where is my push? support looks three requests up by key (make status, read-only)")
    problems: list[str] = []
    with LocalStack(settings or StackSettings()) as stack:
        stack.start_consumers(output_path=output_path)
        stack.publish([{"cancel": {"idempotencyKey": "order-301-ready"}}])
        stack.source.drain(timeout=30)
        newer = push("Заказ 302 отправлен", [CUSTOMER], idempotencyKey="order-302-shipped", collapseKey="order-302")
        stack.publish(
            [
                push("Заказ 300 доставлен", [CUSTOMER, NEIGHBOUR], idempotencyKey="order-300-delivered"),
                push("Заказ 301 готов", [CUSTOMER], idempotencyKey="order-301-ready"),
                {**newer, "createdAt": rfc3339(1_800_000_060)},
            ]
        )
        stack.source.drain(timeout=30)
        older = push("Заказ 302 оплачен", [CUSTOMER], idempotencyKey="order-302-paid", collapseKey="order-302")
        stack.publish([{**older, "createdAt": rfc3339(1_800_000_000)}])  # arrives late: the newer one won
        stack.source.drain(timeout=30)
        table, dynamodb = stack.aws.table_name, stack.aws.client("dynamodb")
        for key, recipient, expected in (
            ("order-300-delivered", CUSTOMER, "sent"),
            ("order-302-paid", None, "superseded"),
            ("order-301-ready", None, "cancelled"),
        ):
            answer = lookup(dynamodb, table, key, recipient=recipient)
            shown = f" RECIPIENT={mask_recipient(recipient)}" if recipient is not None else ""
            print(f"  $ make status KEY={key}{shown}")
            print("\n".join(f"    {line}" for line in describe(answer, recipient).splitlines()))
            if answer.fate != expected:
                problems.append(f"status: {key} is {answer.fate}, expected {expected}")
    return problems


if __name__ == "__main__":
    raise SystemExit(1 if status_phase() else 0)
