"""The state store on the DynamoDB state table (partition key `id`, TTL attribute `expiration`).

Claims are conditional writes (one execution owns a request at a time); everything else is written by the
owner, so plain puts suffice and can be batched. Items expire `ttl_seconds` after they were last needed: a
claim renews its request item, and reading a request's earlier attempts renews their items, so the progress
of a request that lives on through re-enqueues and redrives expires only after the request itself can no
longer come back (the TTL is at least the longest gap between two receives of one request).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

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

logger = logging.getLogger(__name__)

CLAIM_THREADS = 8
WRITE_THREADS = 8
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
        """Claims are independent: one that DynamoDB refuses (throttled, or an item it will not take) is that
        request's `UNAVAILABLE`, never the batch's failure."""

        def claim(request: tuple[str, str]) -> tuple[str, Claim]:
            key, fingerprint = request
            try:
                return key, self._claim(key, fingerprint, attempt_id, now, lease_until)
            except (ClientError, BotoCoreError) as e:
                logger.warning("claim refused by DynamoDB: %s", _error_code(e))
                return key, Claim(ClaimStatus.UNAVAILABLE)

        if len(requests) <= 1:
            return dict(map(claim, requests))
        with ThreadPoolExecutor(max_workers=min(CLAIM_THREADS, len(requests))) as pool:
            return dict(pool.map(claim, requests))

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
        ).get("Item")
        if item is None:  # gone since the condition failed (expired, deleted): nothing to conflict with
            return Claim(ClaimStatus.BUSY)
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

    def load_calls(self, attempt_ids: Collection[str], *, now: float) -> list[CallRecord]:
        attempts = self._batch_get([_attempt_id(a) for a in attempt_ids])
        ids = [
            _call_id(call_id(attempt_id, index))
            for attempt_id in attempt_ids
            for index in range(int(attempts.get(_attempt_id(attempt_id), {}).get("calls", {}).get("N", "0")))
        ]
        calls = self._batch_get(ids)
        self._renew([*attempts.values(), *calls.values()], now=now)
        return [
            CallRecord(
                item["id"]["S"].removeprefix("call#").rpartition("#")[0],
                CallStatus(item["status"]["S"]),
                unpack_digests(item["digests"]["B"]),
            )
            for item in calls.values()
        ]

    def _renew(self, items: list[dict[str, Any]], *, now: float) -> None:
        """The request that needs these items came back: they live another TTL from now. Only the owner of the
        request's lease writes them, so a put of what was just read loses nothing."""
        expiration = {"N": str(int(now) + self._ttl)}
        self._batch_writes([{"PutRequest": {"Item": item | {"expiration": expiration}}} for item in items])

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
        self._batch_writes([{"PutRequest": {"Item": item}} for item in items])

    def _batch_writes(self, writes: list[dict[str, Any]]) -> None:
        """In parallel: settling a 10,000-record batch is 400 BatchWriteItem calls, which must fit the finishing
        reserve after the last IMSHOP call."""
        chunks = list(_chunks(writes, BATCH_WRITE_LIMIT))
        if len(chunks) <= 1:
            for chunk in chunks:
                self._batch_write(list(chunk))
            return
        with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(chunks))) as pool:
            for _ in pool.map(lambda chunk: self._batch_write(list(chunk)), chunks):
                pass

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


def _error_code(error: ClientError | BotoCoreError) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__
