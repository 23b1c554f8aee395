"""The status lookup on the DynamoDB state table: read the items `status.py` needs, and nothing else.

Read-only by construction: this module calls BatchGetItem only (no put, update or delete, not even the renewal
of expirations a dispatcher's own read of its calls does), so support can run it with a role that may only read.

    from imshop_push.adapters.status_dynamodb import lookup
    answer = lookup(boto3.client("dynamodb"), "<StateTableName output>", "order-123", recipient="79990001234")
    answer.as_json()  # {"key": "order-123", "fate": "sent", "at": ..., "recipient": {"reached": true, ...}}
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from imshop_push.adapters.aws_errors import translated
from imshop_push.adapters.dynamodb_batches import BatchedTable
from imshop_push.adapters.state_dynamodb import (
    Items,
    call_record,
    cancel_id,
    number,
    read_calls,
    request_id,
    status_id,
)
from imshop_push.domain.model import Content
from imshop_push.domain.parsing import storable_key
from imshop_push.domain.state import CallRecord, StateStoreError
from imshop_push.domain.status import Answer, StoredRequest, answer
from imshop_push.domain.status_record import Outcome, Report, StatusRecord, to_ms

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SNAPSHOT_ROUNDS = 5


def lookup(
    client: DynamoDBClient, table_name: str, key: str, *, recipient: str | None = None, now: float | None = None
) -> Answer:
    """The fate of the request with idempotency key `key` (as the producer gave it, or its default: the envelope
    id or the SQS message id), and with `recipient` (a userId or an installId) that recipient's. Raises
    StateStoreError when the table cannot be read."""
    stored = storable_key(key)
    batches = BatchedTable(client, table_name)
    with translated(StateStoreError, "status lookup"):
        items, calls = _snapshot(batches, stored, with_calls=recipient is not None)
    request = _request(items.get(request_id(stored)))
    cancel = items.get(cancel_id(stored))
    return answer(
        key,
        now_ms=to_ms(time.time() if now is None else now),
        request=request,
        cancelled=cancel is not None,
        cancelled_at=number(cancel, "at") if cancel is not None else None,
        record=_record(stored, items.get(status_id(stored))),
        calls=calls,
        recipient=recipient,
    )


def _snapshot(batches: BatchedTable, key: str, *, with_calls: bool) -> tuple[Items, list[CallRecord]]:
    """The request's items and its calls as of one moment: the calls are read after the request's item, and the
    item again after them; if it changed (claimed again, settled), all is read again. A request's item changes
    at each claim and settlement, so an item unchanged around the read of the calls means no execution took the
    request meanwhile: the calls agree with the fate (a call confirmed meanwhile belongs to an in-progress one)."""
    ids = [request_id(key), cancel_id(key), status_id(key)]
    items = batches.get(ids)
    for _ in range(SNAPSHOT_ROUNDS):
        request = items.get(request_id(key))
        if not with_calls or request is None or "attempts" not in request:
            return items, []
        _, call_items = read_calls(batches, request["attempts"]["SS"])
        again = batches.get(ids)
        if again.get(request_id(key)) == request:
            return again, [call_record(item) for item in call_items.values()]
        items = again
    raise StateStoreError("the request kept changing while it was looked up: ask again")


def _request(item: dict[str, Any] | None) -> StoredRequest | None:
    if item is None or "fingerprint" not in item:  # absent, or only a cancel's mark: never claimed
        return None
    report = None
    if "outcome" in item:
        report = Report(
            Outcome(item["outcome"]["S"]),
            number(item, "at") or 0,
            number(item, "calls") or 0,
            number(item, "reached") or 0,
            number(item, "total") or 0,
            number(item, "last_sent"),
            number(item, "waiting_since"),
            number(item, "expires_at"),
            item.get("reason", {}).get("S"),
        )
    lease = float(item.get("lease_until", {}).get("N", "0"))
    return StoredRequest(
        bool(item.get("done", {}).get("BOOL")), to_ms(lease), tuple(item.get("attempts", {}).get("SS", ())), report
    )


def _record(key: str, item: dict[str, Any] | None) -> StatusRecord | None:
    if item is None:
        return None
    text = [part.get("S") for part in item.get("text", {}).get("L", ())]
    content = Content(text[0] or "", text[1] or "", text[2]) if len(text) == 3 else None
    return StatusRecord(
        key,
        number(item, "at") or 0,
        content,
        item.get("members", {}).get("B", b""),
        number(item, "total") or 0,
        number(item, "expires_at"),
        number(item, "held_until"),
        bool(item.get("expired", {}).get("BOOL")),
        item.get("dead_letter", {}).get("S"),
    )
