"""`make demo`, send time: a push scheduled a few seconds ahead arrives at its time, a bulk push inside the
quiet hours is held until they end, and a push cancelled before it was even queued is never sent.

Quiet hours are wall-clock minutes (HH:MM), which no time scale shortens: this phase runs its own local stack
whose quiet hours (in UTC) end at the next minute boundary at least a few seconds away, so it waits up to
about a minute for them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from imshop_push_local.stack import LocalStack, StackSettings

QUIET_TIMEZONE = "UTC"
SCHEDULE_AHEAD_SECONDS = 4.0


def quiet_window_ending_soon(now: float, *, min_wait: float = 8.0) -> tuple[str, float]:
    """QUIET_HOURS (UTC) that hold `now` and end at the first minute boundary at least `min_wait` seconds
    away, and that end as an epoch instant."""
    end = (int(now) // 60 + 1) * 60
    if end - now < min_wait:
        end += 60
    start = end - 120

    def hhmm(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%H:%M")

    return f"{hhmm(start)}-{hhmm(end)}", float(end)


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wall_clock() -> Callable[[float], float]:
    """The sandbox stamps arrivals with time.monotonic: this maps them to epoch seconds."""
    offset = time.time() - time.monotonic()
    return lambda monotonic: monotonic + offset


def push(title: str, user: str, **extensions: str) -> dict[str, object]:
    return {"userIds": [user], "message": {"title": title, "summary": "demo: send time"}, **extensions}


def wait_for_titles(stack: LocalStack, titles: set[str], deadline: float) -> bool:
    while time.time() < deadline:
        if titles <= {c.body["message"]["title"] for c in stack.sandbox.calls}:
            return True
        time.sleep(0.2)
    return False


def schedule_phase(
    *, output_path: Path | None = None, settings: StackSettings | None = None, number: int = 5
) -> list[str]:
    """Returns the problems seen (empty: the phase showed what it should)."""
    print(f"\n{number}) send time: a scheduled push, a bulk push in the quiet hours, a cancelled push")
    quiet_hours, quiet_end = quiet_window_ending_soon(time.time())
    base = settings or StackSettings()
    stack_settings = dataclasses.replace(base, quiet_hours=quiet_hours, quiet_hours_timezone=QUIET_TIMEZONE)
    problems: list[str] = []
    with LocalStack(stack_settings) as stack:
        wall = wall_clock()
        stack.start_consumers(output_path=output_path)
        window = stack.sandbox.rate_limit_window_seconds
        print(f"  quiet hours {quiet_hours} {QUIET_TIMEZONE} (bulk lane only; they end at {rfc3339(quiet_end)})")
        stack.publish([{"cancel": {"idempotencyKey": "demo-cancelled"}}])
        stack.source.drain(timeout=30)  # the cancel is recorded before its request is even queued
        send_at = time.time() + SCHEDULE_AHEAD_SECONDS
        stack.publish([push("Запланировано", "79990000101", sendAt=rfc3339(send_at))])
        stack.publish([push("Отменено", "79990000102", idempotencyKey="demo-cancelled")])
        stack.publish([push("Ночная рассылка", "79990000103")], queue_url=stack.aws.bulk_queue.url)
        stack.publish([push("Заказ готов", "79990000104")])
        print(f"  published: a push for {rfc3339(send_at)}, a cancelled one (cancel first), a bulk one, an order one")
        if not wait_for_titles(stack, {"Запланировано", "Ночная рассылка", "Заказ готов"}, quiet_end + 30):
            problems.append("send time: not every expected push arrived")
        arrived = {c.body["message"]["title"]: wall(c.arrived_at) for c in stack.sandbox.calls}
        for title, due in (("Заказ готов", None), ("Запланировано", send_at), ("Ночная рассылка", quiet_end)):
            if title in arrived:
                late = f"{arrived[title] - due:+.2f} s from its due time" if due else "at once (transactional)"
                print(f"  {title!r} arrived at {rfc3339(arrived[title])}, {late}")
                if due is not None and arrived[title] < due:
                    problems.append(f"send time: {title!r} arrived before it was due")
        if "Отменено" in arrived:
            problems.append("send time: the cancelled push was sent")
        else:
            print("  'Отменено' never sent: its cancel came first")
        if stack.sandbox.violations:
            problems.append("send time: the sandbox saw a call over the limit")
        print(f"  (precision target: within one batching window + one rate window ({window:g} s) of the due time)")
    return problems


if __name__ == "__main__":
    raise SystemExit(1 if schedule_phase() else 0)
