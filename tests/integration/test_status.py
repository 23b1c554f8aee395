"""Where is my push, for real: each fate is reached by the real dispatcher over the emulated event source, then
looked up the way `make status ... JSON=1` does (the same command, in its own process, pointed at the local
stack by the function's environment). The lookup writes nothing and never prints a recipient id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from imshop_push.adapters.state_dynamodb import DynamoDBStateStore
from imshop_push.domain.state import ClaimStatus, Settlement
from imshop_push.domain.status_record import Outcome, Report, SoFar
from imshop_push_local.aws_emulator import MotoServer, provision
from imshop_push_local.demo_schedule import rfc3339
from imshop_push_local.sandbox.models import Fault
from imshop_push_local.stack import REPO_ROOT, LocalStack, StackSettings

USER, OTHER, STRANGER = "79990005001", "79990005002", "79990005999"


@pytest.fixture
def stack(request: pytest.FixtureRequest, moto_server: MotoServer) -> Iterator[LocalStack]:
    marker = request.node.get_closest_marker("stack")
    with LocalStack(StackSettings(**(marker.kwargs if marker else {})), moto=moto_server) as s:
        yield s


def push(title: str, users: list[str], **extra: Any) -> dict[str, Any]:
    return {"userIds": users, "message": {"title": title, "summary": "Статус"}, **extra}


def status_command(stack: LocalStack, key: str, recipient: str | None = None, *, as_json: bool = True) -> str:
    """`make status KEY=... [RECIPIENT=...] [JSON=1]` runs this command; the function's environment names the
    local stack's table and endpoint, with nothing of the developer's AWS settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | stack.function_env()
    env["PYTHONPATH"] = os.pathsep.join(str(REPO_ROOT / p) for p in ("layers/imshop_push", "local"))
    command = [sys.executable, "-m", "imshop_push_local.status", "--key", key]
    command += ["--recipient", recipient] if recipient is not None else []
    command += ["--json"] if as_json else []
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for rid in (USER, OTHER, STRANGER):
        assert rid not in result.stdout + result.stderr, "a recipient id is never printed in full"
    return result.stdout


def status(stack: LocalStack, key: str, recipient: str | None = None) -> dict[str, Any]:
    out = status_command(stack, key, recipient)
    assert out.count("\n") == 1, "exactly one JSON object, on one line"
    answer: dict[str, Any] = json.loads(out)
    assert all(value is not None for value in answer.values()), "fields without a value are left out"
    return answer


def make_status(stack: LocalStack, *variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAKE"))} | stack.function_env()
    return subprocess.run(
        ["make", "--no-print-directory", "-s", "status", *variables],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def until_fate(
    stack: LocalStack, keys: list[str], fate: str, *, recipient: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    """The first answer of one of `keys` with this fate (the last answer, when none came in time)."""
    deadline = time.time() + timeout
    while True:
        for key in keys:
            answer = status(stack, key, recipient)
            if answer["fate"] == fate or time.time() > deadline:
                return answer
        time.sleep(0.2)


def table_items(stack: LocalStack) -> list[dict[str, Any]]:
    dynamodb = stack.aws.client("dynamodb")
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=stack.aws.table_name, ConsistentRead=True):
        items.extend(page["Items"])
    return sorted(items, key=lambda item: item["id"]["S"])


def sent_at_ms(stack: LocalStack, title: str) -> int:
    """When the IMSHOP call of this title was confirmed, within the call's own duration."""
    [call] = [c for c in stack.sandbox.calls if c.body["message"]["title"] == title]
    return round((call.arrived_at + time.time() - time.monotonic()) * 1000)


@pytest.mark.stack(concurrency=1)
def test_every_final_fate_is_answered_by_key_and_by_recipient(stack: LocalStack) -> None:
    stack.start_consumers()
    started_ms = round(time.time() * 1000)
    stack.publish(
        [
            push("Отправлен", [USER, OTHER], idempotencyKey="order-1-sent"),
            {"cancel": {"idempotencyKey": "order-2-cancelled"}},
            push("Просрочен", [USER], idempotencyKey="order-3-expired", expiresAt="2020-01-01T00:00:00Z"),
            {"idempotencyKey": "order-4-poison", "userIds": [USER]},  # no message: never valid
            push("Новый статус", [USER], idempotencyKey="order-5-new", collapseKey="order-5", createdAt=rfc3339(2e9)),
        ]
    )
    [no_key] = stack.publish(["not json at all"])  # no key of its own: found under its SQS message id
    assert stack.source.drain(timeout=60)
    stack.publish(
        [
            push("Отменён", [USER], idempotencyKey="order-2-cancelled"),  # after its cancel: never sent
            push("Старый", [USER], idempotencyKey="order-5-old", collapseKey="order-5", createdAt=rfc3339(1e9)),
            push(
                "Старый-2",
                [USER, OTHER],
                idempotencyKey="order-5-older",
                collapseKey="order-5",
                createdAt="2001-01-01T00:00:00Z",
            ),
        ]
    )
    assert stack.source.drain(timeout=60)
    finished_ms = round(time.time() * 1000)
    dead = {m["MessageAttributes"]["sourceMessageId"]["StringValue"]: m for m in stack.dead_letters()}
    reasons = {m.get("MessageAttributes", {}).get("error", {}).get("StringValue") for m in dead.values()}

    before = table_items(stack)
    sent = status(stack, "order-1-sent")
    assert sent == {
        "key": "order-1-sent",
        "fate": "sent",
        "at": sent["at"],
        "calls": 1,
        "recipients": {"reached": 2, "total": 2},
    }
    assert started_ms <= sent["at"] <= finished_ms
    reached = status(stack, "order-1-sent", USER)["recipient"]
    assert reached == {"reached": True, "at": reached["at"], "text": "own"}
    assert abs(reached["at"] - sent_at_ms(stack, "Отправлен")) < 5_000
    assert status(stack, "order-1-sent", STRANGER)["recipient"] == {"reached": False, "why": "not-a-recipient"}

    cancelled = status(stack, "order-2-cancelled", USER)
    assert cancelled["fate"] == "cancelled"
    assert started_ms <= cancelled["at"] <= finished_ms
    assert cancelled["recipient"] == {"reached": False, "why": "cancelled"}

    expired = status(stack, "order-3-expired", USER)
    assert expired["fate"] == "expired"
    assert started_ms <= expired["at"] <= finished_ms
    assert expired["recipient"] == {"reached": False, "why": "expired"}
    assert status(stack, "order-3-expired", STRANGER)["recipient"]["why"] == "not-a-recipient"

    poison = status(stack, "order-4-poison", USER)
    assert poison["fate"] == "dead-lettered"
    assert poison["reason"] in reasons, "the reason the dead letter carries"
    assert poison["recipient"] == {"reached": False, "why": "dead-lettered"}
    keyless = status(stack, no_key)
    assert keyless["fate"] == "dead-lettered"
    assert keyless["reason"] == dead[no_key]["MessageAttributes"]["error"]["StringValue"]

    superseded = status(stack, "order-5-old", USER)
    assert superseded["fate"] == "superseded"
    assert started_ms <= superseded["at"] <= finished_ms
    assert superseded["recipients"] == {"reached": 0, "total": 1}
    assert superseded["recipient"] == {"reached": False, "why": "superseded"}
    partly = status(stack, "order-5-older", USER)
    assert partly["fate"] == "partly-sent"
    assert partly["reason"] == "superseded"
    assert partly["recipients"] == {"reached": 1, "total": 2}
    assert partly["recipient"] == {"reached": False, "why": "superseded"}
    assert status(stack, "order-5-older", OTHER)["recipient"]["reached"] is True

    assert status(stack, "order-6-never-sent") == {"key": "order-6-never-sent", "fate": "unknown"}
    assert status(stack, "order-6-never-sent", USER) == {"key": "order-6-never-sent", "fate": "unknown"}
    text = status_command(stack, "order-1-sent", USER, as_json=False)
    assert "fate       sent" in text
    assert "79*******01: reached" in text
    through_make = make_status(stack, "KEY=order-1-sent", f"RECIPIENT={USER}", "JSON=1")
    assert through_make.returncode == 0, through_make.stderr
    assert json.loads(through_make.stdout) == status(stack, "order-1-sent", USER)
    assert USER not in through_make.stdout + through_make.stderr
    assert table_items(stack) == before, "a lookup writes nothing"


# One call per 15 s, and a visibility timeout longer than the test: what waits, waits long enough to be seen
# by a lookup in a process of its own on a busy machine, and the hung call's request is not retried meanwhile.
@pytest.mark.stack(
    concurrency=1,
    rate_limit_requests=1,
    rate_limit_window_seconds=15.0,
    function_timeout_seconds=3.0,
    visibility_timeout_seconds=120,
)
def test_live_fates_held_in_progress_and_waiting_and_a_recipient_not_yet_reached(stack: LocalStack) -> None:
    stack.start_consumers()
    send_at_ms = round((time.time() + 90) * 1000)
    stack.publish([push("Запланирован", [USER], idempotencyKey="order-7-held", sendAt=rfc3339(send_at_ms / 1000))])
    held = until_fate(stack, ["order-7-held"], "held", recipient=USER)
    assert held == {
        "key": "order-7-held",
        "fate": "held",
        "at": send_at_ms,
        "recipients": {"reached": 0, "total": 1},
        "recipient": {"reached": False, "why": "not-yet"},
    }
    assert status(stack, "order-7-held", STRANGER)["recipient"]["why"] == "not-a-recipient"

    stack.sandbox.inject(Fault.HANG)  # never answered: in progress, then back to SQS after the visibility timeout
    stack.publish([push("Первый", [USER], idempotencyKey="order-8-first")])
    assert stack.sandbox.wait_for_calls(1, timeout=30)
    first = until_fate(stack, ["order-8-first"], "in-progress", recipient=USER)
    assert first["fate"] == "in-progress"
    assert first["recipient"] == {"reached": False, "why": "not-yet"}
    stack.sandbox.release_hung()

    waiting_from_ms = round(time.time() * 1000)
    # The window's one call went to the hung request: both wait for budget, the second a window longer.
    stack.publish(
        [push("Второй", [OTHER], idempotencyKey="order-9-a"), push("Третий", [OTHER], idempotencyKey="order-9-b")]
    )
    waiting = until_fate(stack, ["order-9-a", "order-9-b"], "waiting", recipient=OTHER)
    assert waiting["fate"] == "waiting"
    assert waiting["at"] >= waiting_from_ms
    assert waiting["recipients"] == {"reached": 0, "total": 1}
    assert waiting["recipient"] == {"reached": False, "why": "not-yet"}, "fate and recipient of one moment"


def test_a_claim_reads_back_what_the_last_settlement_recorded_and_none_before_the_first(
    moto_server: MotoServer,
) -> None:
    aws = provision(moto_server.endpoint_url, api_url="http://127.0.0.1:9/unused")
    store = DynamoDBStateStore(aws.client("dynamodb"), aws.table_name, ttl_seconds=3600)
    now = time.time()

    first = store.claim_many([("k", "fp")], attempt_id="a1", now=now, lease_until=now + 1)["k"]
    assert (first.status, first.so_far) == (ClaimStatus.CLAIMED, None)
    again = store.claim_many([("k", "fp")], attempt_id="a2", now=now + 2, lease_until=now + 3)["k"]
    assert again.so_far is None, "the first execution died before settling: nothing was recorded yet"
    report = Report(Outcome.WAITING, 1, calls=2, reached=5, total=9, last_sent_ms=7, waiting_since_ms=8)
    store.settle([Settlement("k", "fp", False, ("a1", "a2"), report)], now=now + 4)
    later = store.claim_many([("k", "fp")], attempt_id="a3", now=now + 5, lease_until=now + 6)["k"]
    assert later.so_far == SoFar(calls=2, last_sent_ms=7, waiting_since_ms=8)
