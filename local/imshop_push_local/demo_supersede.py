"""`make demo`'s supersede phase: three status updates of one order arrive together, then a stale one late;
the user's phone shows statuses only in the order they were made, and never an outdated one."""

from __future__ import annotations

from typing import Any

from imshop_push_local.function_output import FunctionOutput
from imshop_push_local.stack import LocalStack

ORDER_KEY = "order-1042-status"
USER = "79001042000"
STATUSES = [  # (title, createdAt): as the order service made them
    ("Заказ 1042 оплачен", "2026-12-01T10:00:00Z"),
    ("Заказ 1042 собран", "2026-12-01T10:05:00Z"),
    ("Заказ 1042 отправлен", "2026-12-01T10:10:00Z"),
]
LATE = ("Заказ 1042 собран", "2026-12-01T10:05:00Z")  # a slow producer's retry of an outdated status


def status(title: str, created_at: str) -> dict[str, Any]:
    return {
        "userIds": [USER],
        "message": {"title": title, "summary": "Подробности в приложении"},
        "collapseKey": ORDER_KEY,
        "createdAt": created_at,
    }


def supersede_phase(stack: LocalStack, output: FunctionOutput, *, number: int) -> list[str]:
    print(
        f"\n{number}) supersede: {len(STATUSES)} status updates of one order (collapseKey {ORDER_KEY!r}),"
        " then an outdated one arriving late"
    )
    stack.publish([status(*s) for s in STATUSES])
    if not stack.source.drain(timeout=60):
        return ["the status updates did not drain within 60 s"]
    stack.publish([status(*LATE)])
    if not stack.source.drain(timeout=60):
        return ["the late status update did not drain within 60 s"]
    shown = [c.body["message"]["title"] for c in stack.sandbox.calls if USER in c.body.get("userIds", [])]
    print(f"   sent to the customer: {', '.join(shown) or 'nothing'}")
    metrics, _ = output.metrics_since_last_read()
    print(f"   RecipientsSuperseded {metrics['RecipientsSuperseded']:g} (updates a newer one made outdated: not sent)")
    made = [title for title, _ in STATUSES]
    problems = []
    if not shown or shown[-1] != made[-1]:
        problems.append("the latest status update was not the last one sent")
    if [made.index(t) for t in shown] != sorted({made.index(t) for t in shown}):
        problems.append(f"an outdated status update was sent after a newer one: {shown}")
    if not metrics["RecipientsSuperseded"]:
        problems.append("no status update was superseded")
    return problems
