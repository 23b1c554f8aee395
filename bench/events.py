"""The SQS events the figures feed the handler: realistic bodies in the three forms producers use."""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from bench.common import CPU_CONTENTS, CPU_RECORDS, LAMBDA_PAYLOAD_LIMIT, MAX_BATCH, SQS_ARN


def _content(n: int) -> dict[str, Any]:
    return {
        "message": {
            "title": f"Заказ {n} передан в доставку",
            "summary": f"Курьер привезёт заказ {n} завтра, между 10:00 и 14:00",
        },
        "deeplink": f"shop://orders/{n}",
    }


def _phone(rng: random.Random) -> str:
    return f"79{rng.randrange(10**9):09d}"


def _wrap(request: dict[str, Any], form: int, n: str) -> str:
    """Body forms in a realistic mix: mostly the request itself, some EventBridge events and SNS notifications."""
    if form == 1:
        return json.dumps(
            {
                "version": "0",
                "id": f"eb-{n}",
                "detail-type": "Order status changed",
                "source": "shop.orders",
                "account": "123456789012",
                "time": "2026-11-26T12:00:00Z",
                "region": "eu-central-1",
                "resources": [],
                "detail": request,
            },
            ensure_ascii=False,
        )
    if form == 2:
        return json.dumps(
            {
                "Type": "Notification",
                "MessageId": f"sns-{n}",
                "TopicArn": "arn:aws:sns:eu-central-1:123456789012:orders",
                "Message": json.dumps(request, ensure_ascii=False),
                "Timestamp": "2026-11-26T12:00:00.000Z",
                "SignatureVersion": "1",
            },
            ensure_ascii=False,
        )
    return json.dumps(request, ensure_ascii=False)


def _record(message_id: str, body: str, receipt_handle_length: int = 300) -> dict[str, Any]:
    """An SQS record as Lambda delivers it (receipt handles are long: they count towards the 6 MB)."""
    return {
        "messageId": message_id,
        "receiptHandle": "AQEB" + "x" * (receipt_handle_length - 4),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1795700000000",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1795700000001",
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": SQS_ARN,
        "awsRegion": "eu-central-1",
    }


def small_requests_event(seed: int, records: int = CPU_RECORDS, contents: int = CPU_CONTENTS) -> dict[str, Any]:
    """Small valid requests: `contents` distinct contents, 1-3 recipients each; 80% plain, 10% EventBridge, 10% SNS."""
    rng = random.Random(seed)
    out = []
    for i in range(records):
        request = {"userIds": [_phone(rng) for _ in range(rng.randint(1, 3))], **_content(rng.randrange(contents))}
        form = 0 if rng.random() < 0.8 else rng.choice((1, 2))
        message_id = f"{seed:04d}-{i:06d}-0000-0000-000000000000"
        out.append(_record(message_id, _wrap(request, form, message_id)))
    return {"Records": out}


def merge_event(seed: int) -> dict[str, Any]:
    """One batch to merge: 12 contents, overlapping recipients (a shared pool), several contents above 1000."""
    rng = random.Random(seed)
    pool = [_phone(rng) for _ in range(6000)]
    installs = [f"iid-{rng.randrange(16**12):012x}" for _ in range(800)]
    out = []
    for i in range(1500):
        n = rng.randrange(12)
        size = rng.choice((1, 2, 5, 20, 60, 200)) if n < 4 else rng.randint(1, 4)
        request: dict[str, Any] = {"userIds": rng.sample(pool, size), **_content(n)}
        if rng.random() < 0.2:
            request["installIds"] = rng.sample(installs, rng.randint(1, 3))
        if not request["userIds"] and not request.get("installIds"):
            request["userIds"] = [pool[0]]
        out.append(_record(f"merge-{seed}-{i:05d}", _wrap(request, 0, "")))
    return {"Records": out}


def _size(document: Any) -> int:
    """Bytes on the wire: Lambda hands the event over as UTF-8 JSON."""
    return len(json.dumps(document, ensure_ascii=False).encode())


def six_mb_event(seed: int, *, recipients: tuple[int, int], contents: int, short: bool = False) -> dict[str, Any]:
    """Records until the next would pass the 6 MB payload limit, at most the 10,000-record batch maximum; a batch
    that reaches 10,000 records first has its receipt handles lengthened (they vary in real life) up to 6 MB."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    size = _size({"Records": []})
    while len(out) < MAX_BATCH:
        n = rng.randrange(contents)
        content = {"message": {"title": f"Заказ {n}", "summary": "Передан в доставку"}} if short else _content(n)
        request = {"userIds": [_phone(rng) for _ in range(rng.randint(*recipients))], **content}
        record = _record(f"{seed:08d}-0000-4000-8000-{len(out):012d}", _wrap(request, 0, ""), 64 if short else 300)
        grown = size + _size(record) + 2
        if grown > LAMBDA_PAYLOAD_LIMIT:
            break
        out.append(record)
        size = grown
    spare = (LAMBDA_PAYLOAD_LIMIT - size) // len(out)
    if len(out) == MAX_BATCH and spare > 0:
        for record in out:
            record["receiptHandle"] += "y" * spare
    return {"Records": out}


def lower_bound_of(event: dict[str, Any]) -> int:
    from imshop_push.domain.parsing import parse_body
    from imshop_push.domain.planning import Delivery, lower_bound

    deliveries = []
    for record in event["Records"]:
        request = parse_body(record["body"], message_id=record["messageId"])
        deliveries.append(Delivery(record["messageId"], request.content, request.recipients))
    return lower_bound(deliveries, max_recipients=1000)
