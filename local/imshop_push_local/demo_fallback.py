"""`make demo`, fallback text: an evening peak of personal order statuses, each with the same fallback, reaches
IMSHOP in a few calls, and each user's in-app history keeps the status of their own order.

Its own local stack (as the send-time phase): the peak arrives with the whole rate window to itself, so the
first calls go out in their own texts (a free slot is never spent on the shorter text) and the rest, whose turn
would come more than AFTER_SECONDS after they were sent, are switched and share the fallback's calls.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from imshop_push.domain.masking import mask_recipient
from imshop_push_local.stack import LocalStack, StackSettings

PEAK = 120
AFTER_SECONDS = 1  # half the demo's 2 s window, as 30 s would be of the vendor's minute
FUNCTION_TIMEOUT_SECONDS = 8.0
"""A wake claims each switched request it takes before its call: on a busy machine the emulated DynamoDB needs
seconds for a hundred, more than the demo's time-scaled timeout leaves (production: 90 s, a 60 s window)."""
FALLBACK = {"title": "Статус заказа изменился", "summary": "Подробности в приложении"}


def _status(n: int) -> dict[str, Any]:
    return {
        "userIds": [_user(n)],
        "message": {"title": f"Заказ {5000 + n} передан в доставку", "summary": f"Курьер привезёт заказ {5000 + n}"},
        "deeplink": f"shop://orders/{5000 + n}",
        "idempotencyKey": f"order-{5000 + n}-shipped",
        "fallback": {"message": FALLBACK, "deeplink": "shop://orders", "afterSeconds": AFTER_SECONDS},
    }


def _user(n: int) -> str:
    return f"7997{n:07d}"


def fallback_phase(
    *, output_path: Path | None = None, settings: StackSettings | None = None, number: int = 7
) -> list[str]:
    """Returns the problems seen (empty: the phase showed what it should)."""
    print(f"\n{number}) fallback text: a peak of {PEAK} personal order statuses, afterSeconds {AFTER_SECONDS}")
    problems: list[str] = []
    base = settings or StackSettings(history=True)  # the personal texts go to the history
    roomy = dataclasses.replace(
        base,
        function_timeout_seconds=FUNCTION_TIMEOUT_SECONDS,
        visibility_timeout_seconds=int(5 * FUNCTION_TIMEOUT_SECONDS),
    )
    with LocalStack(roomy) as stack:
        stack.start_consumers(output_path=output_path)
        limit, window = stack.sandbox.rate_limit_requests, stack.sandbox.rate_limit_window_seconds
        started = time.monotonic()
        stack.publish([_status(n) for n in range(PEAK)])
        if not stack.source.drain(timeout=120):
            return ["fallback: the peak did not drain within 120 s"]
        took = time.monotonic() - started
        calls = [c for c in stack.sandbox.calls if c.delivered]
        shared = [c for c in calls if c.body["message"]["title"] == FALLBACK["title"]]
        reached = Counter(u for c in calls for u in c.body.get("userIds", []))
        fallen_back = sum(len(c.body.get("userIds", [])) for c in shared)
        last = max((c.arrived_at for c in shared), default=started) - started
        print(
            f"   {len(calls)} calls, drained in {took:.1f} s: {len(calls) - len(shared)} in their own text,"
            f" {len(shared)} of the fallback for {fallen_back} users (recipients per call:"
            f" {' '.join(str(len(c.body.get('userIds', []))) for c in shared)}), the last {last:.1f} s after the"
            " peak was published"
        )
        print(
            f"   without a fallback: {PEAK} calls, {math.ceil(PEAK / limit) * window:g} s at {limit} per {window:g} s"
        )
        webhook = stack.start_history(output_path=output_path)
        print(f"   the history webhook ({webhook}) for two users the fallback reached:")
        users = [u for c in shared[:1] for u in c.body.get("userIds", [])[:2]]
        for user in users:
            answer = stack.history("/history", {"userId": user})
            entries = answer.json().get("history", []) if answer.status == 200 else []
            for entry in entries:
                print(
                    f"     {mask_recipient(user)}: {entry['title']!r} · {entry.get('text')!r} · {entry.get('deepLink')}"
                )
            if [e["title"] for e in entries] == [FALLBACK["title"]] or not entries:
                problems.append("fallback: the history of a user reached by the fallback lacks their own status")
        if reached != Counter(_user(n) for n in range(PEAK)):
            problems.append("fallback: not every user got exactly one push")
        if len(shared) > math.ceil(fallen_back / 1000) + 2:
            problems.append(f"fallback: {len(shared)} calls of the fallback for {fallen_back} users")
        if not shared:
            problems.append("fallback: no request was switched at the peak")
        if stack.sandbox.violations:
            problems.append("fallback: the sandbox saw a call over the limit")
    return problems


if __name__ == "__main__":
    raise SystemExit(1 if fallback_phase() else 0)
