"""What `make invoke` prints after the invocation: the answer Lambda would get, what IMSHOP received (recipients
masked), what was dead-lettered and why, and what the function put back on its queues (deferred or held copies,
which `make invoke` leaves there: one invocation, no poller)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from imshop_push.domain.masking import mask_recipients
from imshop_push_local.dlq_queue import DeadLetter
from imshop_push_local.invoke_once import Invocation
from imshop_push_local.sandbox.models import ReceivedCall


@dataclass
class Outcome:
    invocation: Invocation
    calls: list[ReceivedCall]
    dead_letters: dict[str, list[DeadLetter]]
    """By DLQ name (both lanes')."""
    queued: dict[str, int]
    """Messages on each request queue after the invocation, by queue name."""
    metrics: dict[str, float] = field(default_factory=dict)


def print_outcome(outcome: Outcome, *, out: TextIO, output_path: Path) -> None:
    invocation = outcome.invocation
    print(f"\nPartial batch response ({invocation.duration_s:.1f} s):", file=out)
    if invocation.error is not None:
        print(f"  function error: {invocation.error}", file=out)
    else:
        print(_indented(json.dumps(invocation.response, ensure_ascii=False, indent=2)), file=out)
    back = len(invocation.failed_ids)
    print(f"  {back} of {len(invocation.message_ids)} record(s) go back to SQS for a retry", file=out)

    print(f"\nIMSHOP received {len(outcome.calls)} call(s):", file=out)
    for number, call in enumerate(outcome.calls, 1):
        print(f"  #{number} {_describe_call(call)}", file=out)

    dead = sum(len(letters) for letters in outcome.dead_letters.values())
    print(f"\nDead-lettered: {dead} message(s)", file=out)
    for queue, letters in outcome.dead_letters.items():
        for letter in letters:
            print(f"  {queue}: source message {letter.source_message_id or '?'}", file=out)
            print(f"    reason  {letter.reason or '(none recorded)'}", file=out)
            print(f"    body    {letter.body_preview}", file=out)

    waiting = {name: n for name, n in outcome.queued.items() if n}
    if waiting:
        listed = ", ".join(f"{n} on {name}" for name, n in waiting.items())
        print(f"\nPut back on the queues (deferred or held copies, not consumed here): {listed}", file=out)
    shown = " · ".join(f"{name} {value:g}" for name, value in sorted(outcome.metrics.items()))
    print(f"\nMetrics: {shown or 'none'}", file=out)
    print(f"The function's logs and EMF metrics: {output_path}", file=out)


def _describe_call(call: ReceivedCall) -> str:
    body: dict[str, Any] = call.body if isinstance(call.body, dict) else {}
    message = body.get("message") if isinstance(body.get("message"), dict) else {}
    ids = [str(i) for field_name in ("userIds", "installIds") for i in body.get(field_name) or []]
    deeplink = f" deeplink={body['deeplink']}" if "deeplink" in body else ""
    title = message.get("title", "?") if isinstance(message, dict) else "?"
    return f"HTTP {call.status} {title!r} -> {len(ids)} recipient(s) {mask_recipients(ids)}{deeplink}"


def _indented(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
