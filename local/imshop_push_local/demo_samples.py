"""`make demo`'s first phase: the sample events of `events/` (valid requests in all three body forms, and
poison) through the real handler, each call IMSHOP received shown, the poison dead-lettered with its reason.

The same files are `make invoke`'s samples, so the demo starts from what a reader can open and edit.
"""

from __future__ import annotations

import json
import time
from typing import Any

from imshop_push.domain.masking import mask_recipients
from imshop_push.domain.parsing import PoisonMessageError, parse_body
from imshop_push_local.demo_checks import exactly_once, print_metrics, recipients
from imshop_push_local.function_output import FunctionOutput
from imshop_push_local.invoke import EVENTS_DIR, sample_events
from imshop_push_local.stack import REPO_ROOT, LocalStack


def sample_events_phase(stack: LocalStack, output: FunctionOutput, *, number: int) -> list[str]:
    bodies, expected_valid, expected_poison = _sample_bodies()
    print(f"\n{number}) sample events ({len(bodies)} messages from {EVENTS_DIR.relative_to(REPO_ROOT)}/*.json)")
    ids = stack.publish(bodies)
    started = time.monotonic()
    if not stack.source.drain(timeout=60):
        return ["sample events did not drain within 60 s"]
    _print_calls(stack, started)
    reports = [r for r in stack.source.reports() if r.message_ids]
    failed = sum(len(r.failed_ids) for r in reports)
    print(f"   invocations: {len(reports)}; records returned to SQS for retry: {failed}")
    dead = stack.dead_letters()
    print(f"   dead-letter queue: {len(dead)} message(s)")
    for message in dead:
        attributes = message.get("MessageAttributes", {})
        source = attributes.get("sourceMessageId", {}).get("StringValue", "?")
        reason = attributes.get("error", {}).get("StringValue", "?")
        print(f"     - {source[:8]}…  {reason}")
    print_metrics(output)
    problems = []
    poison_ids = {ids[i] for i in expected_poison}
    dead_ids = {m.get("MessageAttributes", {}).get("sourceMessageId", {}).get("StringValue") for m in dead}
    if dead_ids != poison_ids:
        problems.append(f"dead letters {len(dead_ids)} != poison {len(poison_ids)}")
    problems += exactly_once(stack, expected_valid)
    return problems


def _sample_bodies() -> tuple[list[str], list[dict[str, Any]], list[int]]:
    """Every record body of the sample events; the valid ones as requests (to check exactly-once against),
    and the positions of the poison (to check the dead-letter queue against)."""
    bodies: list[str] = []
    valid: list[dict[str, Any]] = []
    poison: list[int] = []
    for path in sample_events():
        document = json.loads(path.read_text(encoding="utf-8"))
        for record in document.get("Records", []) if isinstance(document, dict) else []:
            body = record["body"]
            try:
                request = parse_body(body, message_id=record["messageId"])
            except PoisonMessageError:
                poison.append(len(bodies))
            else:
                valid.append(
                    {
                        "userIds": [rid for field, rid in request.recipients if field == "userIds"],
                        "installIds": [rid for field, rid in request.recipients if field == "installIds"],
                        "message": {"title": request.content.title, "summary": request.content.summary},
                        "deeplink": request.content.deeplink,
                    }
                )
            bodies.append(body)
    return bodies, valid, poison


def _print_calls(stack: LocalStack, started: float) -> None:
    calls = stack.sandbox.calls
    print(f"   IMSHOP received {len(calls)} call(s):")
    for number, call in enumerate(calls, 1):
        body = call.body if isinstance(call.body, dict) else {}
        message = body.get("message", {})
        ids = [*body.get("userIds", []), *body.get("installIds", [])]
        print(
            f"     #{number} {call.status} {message.get('title', '?')!r}"
            f" -> {recipients(body)} recipient(s) {mask_recipients(ids)}"
            + (f" deeplink={body['deeplink']}" if "deeplink" in body else "")
        )
