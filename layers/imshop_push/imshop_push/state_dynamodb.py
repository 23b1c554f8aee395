"""The state store on the DynamoDB state table (partition key `id`, TTL attribute `expiration`).

Claims are conditional writes (one execution owns a request at a time); everything else is written by the
owner, so plain puts suffice and can be batched. Items expire after the longest time SQS can keep a
message, so a redelivery always finds its request's state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from imshop_push.state import (
    CallRecord,
    CallStatus,
    Claim,
    ClaimStatus,
    Settlement,
    StateStoreError,
    call_id,
    unpack_digests,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CLAIM_THREADS = 8
BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
MAX_UNPROCESSED_ROUNDS = 8
BACKOFF_BASE_SECONDS = 0.05  # doubled each round: ~6 s in all before giving up


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
        self._sleep = sleep

    def claim_many(
        self, requests: Sequence[tuple[str, str]], *, attempt_id: str, now: float, lease_until: float
    ) -> dict[str, Claim]:
        if len(requests) <= 1:
            return {key: self._claim(key, fp, attempt_id, now, lease_until) for key, fp in requests}
        with ThreadPoolExecutor(max_workers=min(CLAIM_THREADS, len(requests))) as pool:
            results = pool.map(lambda r: (r[0], self._claim(r[0], r[1], attempt_id, now, lease_until)), requests)
            return dict(results)

    def _claim(self, key: str, fingerprint: str, attempt_id: str, now: float, lease_until: float) -> Claim:
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key={"id": {"S": _request_id(key)}},
                UpdateExpression=(
                    "SET fingerprint = :fp, lease_until = :lease, expiration = :exp, done = :no ADD attempts :attempt"
                ),
                ConditionExpression=(
                    "attribute_not_exists(id) OR (fingerprint = :fp AND done = :no AND lease_until <= :now)"
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
        return Claim(ClaimStatus.CLAIMED, tuple(old.get("attempts", {}).get("SS", ())))

    def _why_not(self, key: str, fingerprint: str) -> Claim:
        item = self._client.get_item(
            TableName=self._table, Key={"id": {"S": _request_id(key)}}, ConsistentRead=True
        ).get("Item", {})
        if item.get("fingerprint", {}).get("S") != fingerprint:
            return Claim(ClaimStatus.CONFLICT)
        if item.get("done", {}).get("BOOL"):
            return Claim(ClaimStatus.DUPLICATE)
        return Claim(ClaimStatus.BUSY)

    def start_attempt(self, attempt_id: str, call_count: int, *, now: float) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                "id": {"S": _attempt_id(attempt_id)},
                "calls": {"N": str(call_count)},
                "expiration": {"N": str(int(now) + self._ttl)},
            },
        )

    def load_calls(self, attempt_ids: Collection[str]) -> list[CallRecord]:
        attempts = self._batch_get([_attempt_id(a) for a in attempt_ids])
        ids = [
            _call_id(call_id(attempt_id, index))
            for attempt_id in attempt_ids
            for index in range(int(attempts.get(_attempt_id(attempt_id), {}).get("calls", {}).get("N", "0")))
        ]
        return [
            CallRecord(
                item["id"]["S"].removeprefix("call#").rpartition("#")[0],
                CallStatus(item["status"]["S"]),
                unpack_digests(item["digests"]["B"]),
            )
            for item in self._batch_get(ids).values()
        ]

    def mark_call(self, call_id: str, digests: bytes, *, status: CallStatus, now: float) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                "id": {"S": _call_id(call_id)},
                "status": {"S": status.value},
                "digests": {"B": digests},
                "expiration": {"N": str(int(now) + self._ttl)},
            },
        )

    def settle(self, settlements: Sequence[Settlement], *, now: float) -> None:
        expiration = {"N": str(int(now) + self._ttl)}
        items: list[dict[str, Any]] = []
        for s in settlements:
            item: dict[str, Any] = {
                "id": {"S": _request_id(s.key)},
                "fingerprint": {"S": s.fingerprint},
                "done": {"BOOL": s.done},
                "lease_until": {"N": "0"},
                "expiration": expiration,
            }
            if not s.done and s.attempts:
                item["attempts"] = {"SS": sorted(set(s.attempts))}
            items.append(item)
        for chunk in _chunks(items, BATCH_WRITE_LIMIT):
            self._batch_write([{"PutRequest": {"Item": item}} for item in chunk])

    def _batch_get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(sorted(set(ids)), BATCH_GET_LIMIT):
            request: dict[str, Any] = {self._table: {"Keys": [{"id": {"S": i}} for i in chunk], "ConsistentRead": True}}
            for round_ in range(MAX_UNPROCESSED_ROUNDS):
                if round_:
                    self._sleep(BACKOFF_BASE_SECONDS * 2**round_)
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    found[item["id"]["S"]] = item
                request = dict(response.get("UnprocessedKeys") or {})
                if not request:
                    break
            else:
                raise StateStoreError("DynamoDB kept returning unprocessed keys (throttled)")
        return found

    def _batch_write(self, writes: list[dict[str, Any]]) -> None:
        request: dict[str, Any] = {self._table: writes}
        for round_ in range(MAX_UNPROCESSED_ROUNDS):
            if round_:
                self._sleep(BACKOFF_BASE_SECONDS * 2**round_)
            response = self._client.batch_write_item(RequestItems=request)
            request = dict(response.get("UnprocessedItems") or {})
            if not request:
                return
        raise StateStoreError("DynamoDB kept returning unprocessed items (throttled)")


def _chunks[T](items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _request_id(key: str) -> str:
    return f"request#{key}"


def _attempt_id(attempt_id: str) -> str:
    return f"attempt#{attempt_id}"


def _call_id(call: str) -> str:
    return f"call#{call}"
