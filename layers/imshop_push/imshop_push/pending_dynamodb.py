"""The pending pool on its DynamoDB table: partition `group`, sort `key` (the request's idempotency key), TTL
attribute `expiration`. A group's requests are one Query (strongly consistent, so a request pooled before a
wake was disarmed is read by that wake); its armed wake is the item with the reserved sort key `WAKE_KEY`.

Every error of the DynamoDB client leaves this module as a `StateStoreError`: the pipeline knows no botocore.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from imshop_push.aws_errors import error_code, translated
from imshop_push.dynamodb_batches import BatchedTable
from imshop_push.pending import PendingCopy, decode_copy, encode_copy
from imshop_push.state import StateStoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

WAKE_KEY = "\x00wake"
"""Sorts before every idempotency key (which never holds a control character: `storable_key`)."""


class DynamoDBPendingPool:
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

    def put(self, group: str, copies: Sequence[PendingCopy], *, now: float) -> None:
        expiration = {"N": str(int(now) + self._ttl)}
        writes = [
            {
                "PutRequest": {
                    "Item": {
                        "group": {"S": group},
                        "key": {"S": c.key},
                        "copy": {"S": encode_copy(c)},
                        "expiration": expiration,
                    }
                }
            }
            for c in copies
        ]
        with translated(StateStoreError, "pending pool put"):
            self._batches.write(writes)

    def take(self, group: str, *, limit: int) -> list[PendingCopy]:
        copies: list[PendingCopy] = []
        start: dict[str, Any] | None = None
        with translated(StateStoreError, "pending pool take"):
            while len(copies) < limit:
                query: dict[str, Any] = {
                    "TableName": self._table,
                    "KeyConditionExpression": "#g = :g AND #k > :wake",
                    "ExpressionAttributeNames": {"#g": "group", "#k": "key"},
                    "ExpressionAttributeValues": {":g": {"S": group}, ":wake": {"S": WAKE_KEY}},
                    "ConsistentRead": True,
                    "Limit": limit - len(copies),
                }
                if start is not None:
                    query["ExclusiveStartKey"] = start
                response = self._client.query(**query)
                copies += [decode_copy(i["key"]["S"], i["copy"]["S"]) for i in response.get("Items", [])]
                start = response.get("LastEvaluatedKey")
                if not start:
                    break
        return copies

    def remove(self, group: str, keys: Collection[str]) -> None:
        writes = [{"DeleteRequest": {"Key": {"group": {"S": group}, "key": {"S": k}}}} for k in keys]
        with translated(StateStoreError, "pending pool remove"):
            self._batches.write(writes)

    def arm(self, group: str, *, wake_at: float, stale_before: float, now: float) -> bool:
        try:
            with translated(StateStoreError, "pending pool arm"):
                self._client.update_item(
                    TableName=self._table,
                    Key={"group": {"S": group}, "key": {"S": WAKE_KEY}},
                    UpdateExpression="SET wake_at = :at, expiration = :exp",
                    ConditionExpression="attribute_not_exists(wake_at) OR wake_at < :stale OR wake_at > :at",
                    ExpressionAttributeValues={
                        ":at": {"N": f"{wake_at:.3f}"},
                        ":stale": {"N": f"{stale_before:.3f}"},
                        ":exp": {"N": str(int(now) + self._ttl)},
                    },
                )
        except StateStoreError as e:
            if isinstance(e.__cause__, ClientError) and error_code(e.__cause__) == "ConditionalCheckFailedException":
                return False  # a wake no later than this one is armed and live
            raise
        return True

    def armed(self, group: str) -> float | None:
        with translated(StateStoreError, "pending pool armed"):
            item = self._client.get_item(
                TableName=self._table,
                Key={"group": {"S": group}, "key": {"S": WAKE_KEY}},
                ConsistentRead=True,
            ).get("Item")
        return float(item["wake_at"]["N"]) if item and "wake_at" in item else None

    def disarm(self, group: str) -> None:
        with translated(StateStoreError, "pending pool disarm"):
            self._client.delete_item(TableName=self._table, Key={"group": {"S": group}, "key": {"S": WAKE_KEY}})
