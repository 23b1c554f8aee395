"""The newest version per (collapseKey, recipient) in the state table: one item per slot (`collapse#<digest>`).

One item per slot rather than one per collapseKey: a key may cover any number of recipients (an item is
capped at 400 KB), and two requests of one key for different recipients never contend for one item. A write
is conditional on the stored version being no newer, so of two executions recording at once the newer
version stays whatever their order; an equal version is the same request and renews the item's TTL. Items
expire with the rest of the state (the TTL outlives any request that could still come back).

Every error of the DynamoDB client leaves this module as a `StateStoreError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from imshop_push.adapters.aws_errors import error_code
from imshop_push.adapters.dynamodb_batches import BatchedTable
from imshop_push.domain.collapse import supersedes
from imshop_push.domain.state import StateStoreError
from imshop_push.domain.threads import map_in_threads

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)


class DynamoDBVersionStore:
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

    def record(self, versions: Mapping[str, str], *, now: float) -> set[str]:
        expiration = str(int(now) + self._ttl)

        def write(slot: str) -> str | None:
            given = versions[slot]
            return slot if not self._write(slot, given, expiration) and supersedes(self._stored(slot), given) else None

        try:
            results = map_in_threads(write, list(versions))
        except (ClientError, BotoCoreError) as e:
            raise StateStoreError(f"DynamoDB refused a collapseKey version: {error_code(e)}") from e
        return {slot for slot in results if slot is not None}

    def _write(self, slot: str, version: str, expiration: str) -> bool:
        """False when a newer version is stored."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"id": {"S": _slot_id(slot)}},
                UpdateExpression="SET version = :v, expiration = :exp",
                ConditionExpression="attribute_not_exists(version) OR version <= :v",
                ExpressionAttributeValues={":v": {"S": version}, ":exp": {"N": expiration}},
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def _stored(self, slot: str) -> str:
        """The version a refused write met (only newer ones refuse): whose it is tells a retry from a newer one."""
        item = self._client.get_item(TableName=self._table, Key={"id": {"S": _slot_id(slot)}}, ConsistentRead=True)
        return str(item.get("Item", {}).get("version", {}).get("S", ""))

    def newer(self, versions: Mapping[str, str], *, now: float) -> set[str]:
        try:
            items = self._batches.get([_slot_id(slot) for slot in versions])
        except (ClientError, BotoCoreError) as e:
            raise StateStoreError(f"DynamoDB refused reading collapseKey versions: {error_code(e)}") from e
        newer = set()
        for slot, given in versions.items():
            stored = items.get(_slot_id(slot), {}).get("version", {}).get("S")
            if stored is not None and supersedes(stored, given):
                newer.add(slot)
        return newer


def _slot_id(slot: str) -> str:
    return f"collapse#{slot}"
