"""Batched reads and writes of one DynamoDB table, retried while DynamoDB hands items back unprocessed.

Unprocessed items are DynamoDB's way of throttling a batch call: they are sent again with a growing backoff,
and a batch that still does not go through raises `StateStoreError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from imshop_push.domain.state import StateStoreError
from imshop_push.domain.threads import map_in_threads

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
MAX_UNPROCESSED_ROUNDS = 8
BACKOFF_BASE_SECONDS = 0.05  # doubled each round: ~6 s in all before giving up


class BatchedTable:
    def __init__(self, client: DynamoDBClient, table_name: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._table = table_name
        self._sleep = sleep

    def write(self, writes: list[dict[str, Any]]) -> None:
        """In parallel: settling a 10,000-record batch is 400 BatchWriteItem calls, which must fit the finishing
        reserve after the last IMSHOP call."""
        map_in_threads(lambda chunk: self._write_chunk(list(chunk)), list(_chunks(writes, BATCH_WRITE_LIMIT)))

    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """In parallel too: settling reads the cancel items of every unfinished request of the batch."""
        found: dict[str, dict[str, Any]] = {}
        for part in map_in_threads(
            lambda chunk: self._get_chunk(list(chunk)), list(_chunks(sorted(set(ids)), BATCH_GET_LIMIT))
        ):
            found |= part
        return found

    def _get_chunk(self, chunk: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        request: dict[str, Any] = {self._table: {"Keys": [{"id": {"S": i}} for i in chunk], "ConsistentRead": True}}
        for round_ in range(MAX_UNPROCESSED_ROUNDS):
            if round_:
                self._sleep(BACKOFF_BASE_SECONDS * 2**round_)
            response = self._client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(self._table, []):
                found[item["id"]["S"]] = item
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                return found
        raise StateStoreError("DynamoDB kept returning unprocessed keys (throttled)")

    def _write_chunk(self, writes: list[dict[str, Any]]) -> None:
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
