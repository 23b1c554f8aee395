"""The state store on the DynamoDB state table (partition key `id`, TTL attribute `expiration`).

Claims are conditional writes (one execution owns a request at a time); everything else is written by the
owner, so plain puts suffice and can be batched. Items expire `ttl_seconds` after they were last needed: a
claim renews its request item, and reading a request's earlier attempts renews their items, so the progress
of a request that lives on through re-enqueues and redrives expires only after the request itself can no
longer come back (the TTL is at least the longest gap between two receives of one request).

Every error of the DynamoDB client leaves this module as a `StateStoreError`: the pipeline knows no botocore.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from imshop_push.adapters.aws_errors import error_code, translated
from imshop_push.adapters.dynamodb_batches import MAX_UNPROCESSED_ROUNDS, BatchedTable
from imshop_push.domain.state import (
    CallRecord,
    CallStatus,
    Claim,
    ClaimStatus,
    Settlement,
    StateStoreError,
    call_id,
    unpack_digests,
)
from imshop_push.domain.status_record import Report, SoFar, StatusRecord, to_ms
from imshop_push.domain.threads import map_in_threads

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

__all__ = ["MAX_UNPROCESSED_ROUNDS", "DynamoDBStateStore"]


class DynamoDBStateStore:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        ttl_seconds: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table_name
        self._ttl = ttl_seconds
        self._batches = BatchedTable(client, table_name, sleep=sleep)

    def claim_many(
        self, requests: Sequence[tuple[str, str]], *, attempt_id: str, now: float, lease_until: float
    ) -> dict[str, Claim]:
        """Claims are independent: one that DynamoDB refuses (throttled, or an item it will not take) is that
        request's `UNAVAILABLE`, never the batch's failure."""

        def claim(request: tuple[str, str]) -> tuple[str, Claim]:
            key, fingerprint = request
            try:
                return key, self._claim(key, fingerprint, attempt_id, now, lease_until)
            except (ClientError, BotoCoreError) as e:
                logger.warning("claim refused by DynamoDB: %s", error_code(e))
                return key, Claim(ClaimStatus.UNAVAILABLE)

        return dict(map_in_threads(claim, requests))

    def _claim(self, key: str, fingerprint: str, attempt_id: str, now: float, lease_until: float) -> Claim:
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key={"id": {"S": request_id(key)}},
                UpdateExpression=(
                    "SET fingerprint = :fp, lease_until = :lease, expiration = :exp, done = :no ADD attempts :attempt"
                ),
                ConditionExpression=(
                    "attribute_not_exists(id) OR (fingerprint = :fp AND done = :no AND lease_until <= :now"
                    " AND attribute_not_exists(cancelled))"
                ),
                ExpressionAttributeValues={
                    ":fp": {"S": fingerprint},
                    ":lease": {"N": f"{lease_until:.6f}"},
                    ":exp": {"N": str(int(now) + self._ttl)},
                    ":no": {"BOOL": False},
                    ":now": {"N": f"{now:.6f}"},
                    ":attempt": {"SS": [attempt_id]},
                },
                ReturnValues="ALL_OLD",
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return self._why_not(key, fingerprint)
        old = response.get("Attributes", {})
        return Claim(ClaimStatus.CLAIMED, tuple(old.get("attempts", {}).get("SS", ())), _so_far(old))

    def _why_not(self, key: str, fingerprint: str) -> Claim:
        item = self._client.get_item(
            TableName=self._table, Key={"id": {"S": request_id(key)}}, ConsistentRead=True
        ).get("Item")
        if item is None:  # gone since the condition failed (expired, deleted): nothing to conflict with
            return Claim(ClaimStatus.BUSY)
        if "cancelled" in item and not item.get("done", {}).get("BOOL"):
            return Claim(ClaimStatus.CANCELLED)
        if item.get("fingerprint", {}).get("S") != fingerprint:
            return Claim(ClaimStatus.CONFLICT)
        if item.get("done", {}).get("BOOL"):
            return Claim(ClaimStatus.DUPLICATE)
        return Claim(ClaimStatus.BUSY)

    def start_attempt(self, attempt_id: str, call_count: int, *, now: float) -> None:
        with translated(StateStoreError, "start_attempt"):
            self._put_attempt(attempt_id, call_count, now=now)

    def _put_attempt(self, attempt_id: str, call_count: int, *, now: float) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                "id": {"S": attempt_item_id(attempt_id)},
                "calls": {"N": str(call_count)},
                "expiration": {"N": str(int(now) + self._ttl)},
            },
        )

    def load_calls(self, attempt_ids: Collection[str], *, now: float) -> list[CallRecord]:
        with translated(StateStoreError, "load_calls"):
            return self._load_calls(attempt_ids, now=now)

    def _load_calls(self, attempt_ids: Collection[str], *, now: float) -> list[CallRecord]:
        attempts, calls = read_calls(self._batches, attempt_ids)
        self._renew([*attempts.values(), *calls.values()], now=now)
        return [call_record(item) for item in calls.values()]

    def _renew(self, items: list[dict[str, Any]], *, now: float) -> None:
        """The request that needs these items came back: they live another TTL from now. Only the owner of the
        request's lease writes them, so a put of what was just read loses nothing."""
        expiration = {"N": str(int(now) + self._ttl)}
        self._batches.write([{"PutRequest": {"Item": item | {"expiration": expiration}}} for item in items])

    def mark_call(self, call_id: str, digests: bytes, *, status: CallStatus, now: float) -> None:
        with translated(StateStoreError, "mark_call"):
            self._client.put_item(
                TableName=self._table,
                Item={
                    "id": {"S": call_item_id(call_id)},
                    "status": {"S": status.value},
                    "digests": {"B": digests},
                    "at": {"N": str(to_ms(now))},
                    "expiration": {"N": str(int(now) + self._ttl)},
                },
            )

    def settle(self, settlements: Sequence[Settlement], *, now: float) -> None:
        with translated(StateStoreError, "settle"):
            self._settle(settlements, now=now)

    def _settle(self, settlements: Sequence[Settlement], *, now: float) -> None:
        expiration = {"N": str(int(now) + self._ttl)}
        items: list[dict[str, Any]] = []
        for s in settlements:
            item: dict[str, Any] = {
                "id": {"S": request_id(s.key)},
                "fingerprint": {"S": s.fingerprint},
                "done": {"BOOL": s.done},
                "lease_until": {"N": "0"},
                "expiration": expiration,
            }
            if s.attempts:  # a done request keeps them too: a status lookup reads its calls
                item["attempts"] = {"SS": sorted(set(s.attempts))}
            if s.report is not None:
                item |= _report_attributes(s.report)
            items.append(item)
            if s.record is not None:
                items.append(_status_item(s.record, expiration))
        self._batches.write([{"PutRequest": {"Item": item}} for item in items])
        self._restore_cancel_marks([s.key for s in settlements if not s.done], expiration)

    def _restore_cancel_marks(self, keys: list[str], expiration: dict[str, str]) -> None:
        """A put replaces the whole item, so it may have erased the mark of a cancel that came while this
        execution held the request. A cancel writes its own item before it marks the request's, so reading the
        cancel items after the puts finds every such cancel, and the mark is set again."""
        if not keys:
            return
        cancels = self._batches.get([cancel_id(k) for k in keys])
        self._mark([k for k in keys if cancel_id(k) in cancels], expiration)

    def cancel(self, keys: Collection[str], *, now: float) -> None:
        """The cancel's own item first (no put of a settlement touches it), then the mark on the request's item,
        created when the request has not come yet, that the claim's condition sees with no extra read."""
        expiration = {"N": str(int(now) + self._ttl)}
        with translated(StateStoreError, "cancel"):
            at = {"N": str(to_ms(now))}
            self._batches.write(
                [
                    {"PutRequest": {"Item": {"id": {"S": cancel_id(k)}, "at": at, "expiration": expiration}}}
                    for k in set(keys)
                ]
            )
            self._mark(sorted(set(keys)), expiration)

    def _mark(self, keys: list[str], expiration: dict[str, str]) -> None:
        def mark(key: str) -> None:
            self._client.update_item(
                TableName=self._table,
                Key={"id": {"S": request_id(key)}},
                UpdateExpression="SET cancelled = :yes, expiration = :exp",
                ExpressionAttributeValues={":yes": {"BOOL": True}, ":exp": expiration},
            )

        map_in_threads(mark, keys)

    def cancelled(self, keys: Collection[str], *, now: float) -> set[str]:
        with translated(StateStoreError, "cancelled"):
            found = self._batches.get([cancel_id(k) for k in keys])
        return {k for k in keys if cancel_id(k) in found}

    def record_status(self, records: Sequence[StatusRecord], *, now: float, only_new: bool = False) -> None:
        expiration = {"N": str(int(now) + self._ttl)}
        with translated(StateStoreError, "record_status"):
            if only_new:
                found = self._batches.get([status_id(r.key) for r in records])
                records = [r for r in records if status_id(r.key) not in found]
            self._batches.write([{"PutRequest": {"Item": _status_item(r, expiration)}} for r in records])


type Items = dict[str, dict[str, Any]]


def read_calls(batches: BatchedTable, attempt_ids: Collection[str]) -> tuple[Items, Items]:
    """The items of these attempts and of the calls they recorded, by id. Reads only."""
    attempts = batches.get([attempt_item_id(a) for a in attempt_ids])
    ids = [
        call_item_id(call_id(attempt_id, index))
        for attempt_id in attempt_ids
        for index in range(int(attempts.get(attempt_item_id(attempt_id), {}).get("calls", {}).get("N", "0")))
    ]
    return attempts, batches.get(ids)


def call_record(item: dict[str, Any]) -> CallRecord:
    at = item.get("at", {}).get("N")
    return CallRecord(
        item["id"]["S"].removeprefix("call#").rpartition("#")[0],
        CallStatus(item["status"]["S"]),
        unpack_digests(item["digests"]["B"]),
        int(at) if at is not None else None,
        item.get("text", {}).get("S", "own"),
    )


def _so_far(old: dict[str, Any]) -> SoFar | None:
    """None when no settlement was written before (the item was absent, held only a cancel's mark, or a claim
    whose execution died): the next settlement is the request's first."""
    if "outcome" not in old:
        return None
    return SoFar(int(old.get("calls", {}).get("N", "0")), number(old, "last_sent"), number(old, "waiting_since"))


def number(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name, {}).get("N")
    return int(value) if value is not None else None


def _report_attributes(report: Report) -> dict[str, Any]:
    item: dict[str, Any] = {
        "outcome": {"S": report.outcome.value},
        "at": {"N": str(report.at_ms)},
        "calls": {"N": str(report.calls)},
        "reached": {"N": str(report.reached)},
        "total": {"N": str(report.total)},
    }
    for name, value in (
        ("last_sent", report.last_sent_ms),
        ("waiting_since", report.waiting_since_ms),
        ("expires_at", report.expires_at_ms),
    ):
        if value is not None:
            item[name] = {"N": str(value)}
    if report.reason:
        item["reason"] = {"S": report.reason}
    return item


def _status_item(record: StatusRecord, expiration: dict[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": {"S": status_id(record.key)},
        "at": {"N": str(record.at_ms)},
        "total": {"N": str(record.total)},
        "expiration": expiration,
    }
    if record.members:
        item["members"] = {"B": record.members}
    if record.content is not None:
        title, summary, deeplink = record.content
        link = {"S": deeplink} if deeplink is not None else {"NULL": True}
        item["text"] = {"L": [{"S": title}, {"S": summary}, link]}
    for name, value in (("expires_at", record.expires_at_ms), ("held_until", record.held_until_ms)):
        if value is not None:
            item[name] = {"N": str(value)}
    if record.expired:
        item["expired"] = {"BOOL": True}
    if record.dead_letter is not None:
        item["dead_letter"] = {"S": record.dead_letter}
    return item


def request_id(key: str) -> str:
    return f"request#{key}"


def status_id(key: str) -> str:
    return f"status#{key}"


def cancel_id(key: str) -> str:
    return f"cancel#{key}"


def attempt_item_id(attempt_id: str) -> str:
    return f"attempt#{attempt_id}"


def call_item_id(call: str) -> str:
    return f"call#{call}"
