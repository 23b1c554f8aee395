"""The pending pool on its DynamoDB table: partition `group`, sort `key` (the request's idempotency key), TTL
attribute `expiration`. A group's requests are read with strongly consistent Queries (so a request pooled
before a wake was disarmed is read by that wake); its armed wake, and where the next take starts, are the item
with the reserved sort key `WAKE_KEY`.

A request's item holds its copy in parts, each as DynamoDB holds it: the body a plain string, the message
attributes a map. Nothing is escaped, so an item is never much larger than the message SQS accepted (at most
256 KiB, where the item may hold 400 KB); one JSON text would double a body full of `"` or `\\`.

Every error of the DynamoDB client leaves this module as a `StateStoreError`: the pipeline knows no botocore.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from imshop_push.adapters.aws_errors import error_code, translated
from imshop_push.adapters.dynamodb_batches import DynamoDBStore
from imshop_push.domain.pending import GroupState, PendingCopy, decode_legacy_copy, new_token
from imshop_push.domain.state import StateStoreError
from imshop_push.domain.threads import map_in_threads

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

WAKE_KEY = "\x00wake"
"""Sorts before every idempotency key (which never holds a control character: `storable_key`)."""

logger = logging.getLogger(__name__)


class DynamoDBPendingPool(DynamoDBStore):
    shared = True

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        ttl_seconds: int,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, table_name, ttl_seconds=ttl_seconds, sleep=sleep)
        self._clock = clock

    def put(self, group: str, copies: Sequence[PendingCopy], *, now: float) -> None:
        expiration = {"N": str(int(now) + self._ttl)}
        writes = [{"PutRequest": {"Item": {**item_of(group, c), "expiration": expiration}}} for c in copies]
        with translated(StateStoreError, "pending pool put"):
            self._batches.write(writes)

    def take(self, group: str, *, limit: int) -> list[PendingCopy]:
        with translated(StateStoreError, "pending pool take"):
            control = self._control(group)
            after = control["after"]["S"] if control and "after" in control else None
            if after is None:
                items = self._query(group, "#k > :lo", {":lo": {"S": WAKE_KEY}}, limit)
            else:
                items = self._query(group, "#k > :lo", {":lo": {"S": after}}, limit)
                bounds = {":lo": {"S": WAKE_KEY}, ":hi": {"S": after}}
                items += self._query(group, "#k BETWEEN :lo AND :hi", bounds, limit - len(items), skip=WAKE_KEY)
        if len(items) >= limit:
            self._start_next_take_after(group, items[-1]["key"]["S"])
        return [copy_of(item) for item in items]

    def remove(self, group: str, keys: Collection[str]) -> None:
        writes = [{"DeleteRequest": {"Key": {"group": {"S": group}, "key": {"S": k}}}} for k in keys]
        with translated(StateStoreError, "pending pool remove"):
            self._batches.write(writes)

    def arm(self, group: str, *, wake_at: float, stale_before: float, now: float) -> str | None:
        token = new_token()
        try:
            with translated(StateStoreError, "pending pool arm"):
                self._client.update_item(
                    TableName=self._table,
                    Key=self._wake_key(group),
                    UpdateExpression="SET wake_at = :at, writer = :token, wake_token = :token, expiration = :exp",
                    ConditionExpression="attribute_not_exists(wake_at) OR wake_at < :stale OR wake_at > :at",
                    ExpressionAttributeValues={
                        ":at": {"N": f"{wake_at:.3f}"},
                        ":stale": {"N": f"{stale_before:.3f}"},
                        ":token": {"S": token},
                        ":exp": {"N": str(int(now) + self._ttl)},
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except StateStoreError as e:
            cause = e.__cause__
            if not (isinstance(cause, ClientError) and _condition_failed(e)):
                raise
            armed = cast("dict[str, Any]", cause.response).get("Item")
            # A wake no later than this one is armed and live: trusted once written, else one of our own.
            return None if armed and "writer" not in armed else token
        return token

    def written(self, group: str, token: str) -> None:
        self._if_armed_by(group, token, "REMOVE writer", "pending pool written")

    def abandon(self, group: str, token: str) -> None:
        self._if_armed_by(group, token, "REMOVE wake_at, writer, wake_token", "pending pool abandon")

    def armed(self, group: str) -> float | None:
        return self.state(group).wake_at

    def state(self, group: str) -> GroupState:
        with translated(StateStoreError, "pending pool state"):
            item = self._control(group) or {}
        wake_at = float(item["wake_at"]["N"]) if "wake_at" in item and "writer" not in item else None
        arriving = float(item["arriving_until"]["N"]) if "arriving_until" in item else None
        return GroupState(wake_at, arriving)

    def announce(self, groups: Collection[str], *, until: float, now: float) -> None:
        def one(group: str) -> None:
            self._client.update_item(
                TableName=self._table,
                Key=self._wake_key(group),
                UpdateExpression="SET arriving_until = :until, expiration = if_not_exists(expiration, :exp)",
                ExpressionAttributeValues={":until": {"N": f"{until:.3f}"}, ":exp": {"N": str(int(now) + self._ttl)}},
            )

        with translated(StateStoreError, "pending pool announce"):
            map_in_threads(one, list(groups))

    def disarm(self, group: str, token: str | None = None, *, if_armed: bool = False) -> bool:
        """Keeps where the next take starts (the item's other attribute)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._wake_key(group),
            "UpdateExpression": "REMOVE wake_at, writer, wake_token",
            "ConditionExpression": "attribute_exists(wake_at)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if token is not None:  # not when a newer wake, written, holds the group
            request["ConditionExpression"] += (
                " AND (attribute_not_exists(wake_token) OR wake_token = :token OR attribute_exists(writer))"
            )
            request["ExpressionAttributeValues"] = {":token": {"S": token}}
        try:
            with translated(StateStoreError, "pending pool disarm"):
                self._client.update_item(**request)
        except StateStoreError as e:
            if not _condition_failed(e):
                raise
            cause = cast("ClientError", e.__cause__)
            armed = cast("dict[str, Any]", cause.response).get("Item")
            return not if_armed and (not armed or "wake_at" not in armed)  # none was armed
        return True

    def _if_armed_by(self, group: str, token: str, update: str, what: str) -> None:
        try:
            with translated(StateStoreError, what):
                self._client.update_item(
                    TableName=self._table,
                    Key=self._wake_key(group),
                    UpdateExpression=update,
                    ConditionExpression="writer = :token",
                    ExpressionAttributeValues={":token": {"S": token}},
                )
        except StateStoreError as e:
            if not _condition_failed(e):
                raise  # else the wake was received, or another replaced it: nothing of ours to change

    def _control(self, group: str) -> Mapping[str, Any] | None:
        response = self._client.get_item(TableName=self._table, Key=self._wake_key(group), ConsistentRead=True)
        return response.get("Item")

    def _query(
        self, group: str, condition: str, bounds: dict[str, Any], limit: int, *, skip: str | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while len(items) < limit:
            query: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": f"#g = :g AND {condition}",
                "ExpressionAttributeNames": {"#g": "group", "#k": "key"},
                "ExpressionAttributeValues": {":g": {"S": group}, **bounds},
                "ConsistentRead": True,
                "Limit": limit - len(items) + (1 if skip is not None else 0),
            }
            if start is not None:
                query["ExclusiveStartKey"] = start
            response = self._client.query(**query)
            items += [i for i in response.get("Items", []) if i["key"]["S"] != skip]
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        return items[:limit]

    def _start_next_take_after(self, group: str, key: str) -> None:
        """Rotation is fairness, not safety: a cursor not written only lets this take's keys go first again."""
        try:
            with translated(StateStoreError, "pending pool cursor"):
                self._client.update_item(
                    TableName=self._table,
                    Key=self._wake_key(group),
                    UpdateExpression="SET #after = :after, expiration = :exp",
                    ExpressionAttributeNames={"#after": "after"},
                    ExpressionAttributeValues={
                        ":after": {"S": key},
                        ":exp": {"N": str(int(self._clock()) + self._ttl)},
                    },
                )
        except StateStoreError:
            logger.warning("cannot record where the next take of a pending group starts", exc_info=True)

    @staticmethod
    def _wake_key(group: str) -> dict[str, Any]:
        return {"group": {"S": group}, "key": {"S": WAKE_KEY}}


def item_of(group: str, copy: PendingCopy) -> dict[str, Any]:
    item: dict[str, Any] = {
        "group": {"S": group},
        "key": {"S": copy.key},
        "body": {"S": copy.body},
        "attributes": {"M": {name: {"M": _attribute_item(value)} for name, value in copy.attributes.items()}},
        "arn": {"S": copy.event_source_arn},
    }
    if copy.sent_timestamp_ms is not None:
        item["sent"] = {"N": str(copy.sent_timestamp_ms)}
    return item


def copy_of(item: Mapping[str, Any]) -> PendingCopy:
    key = item["key"]["S"]
    if "body" not in item:
        return decode_legacy_copy(key, item["copy"]["S"])
    attributes = {name: _attribute_of(value["M"]) for name, value in item["attributes"]["M"].items()}
    sent = int(item["sent"]["N"]) if "sent" in item else None
    return PendingCopy(key, item["body"]["S"], attributes, item["arn"]["S"], sent)


def _attribute_item(value: Mapping[str, Any]) -> dict[str, Any]:
    """A message attribute as SendMessage takes it, field by field: text as S, bytes as B."""
    return {field: {"B": v} if isinstance(v, bytes) else {"S": str(v)} for field, v in value.items()}


def _attribute_of(item: Mapping[str, Any]) -> dict[str, Any]:
    return {field: v["B"] if "B" in v else v["S"] for field, v in item.items()}


def _condition_failed(error: StateStoreError) -> bool:
    cause = error.__cause__
    return isinstance(cause, ClientError) and error_code(cause) == "ConditionalCheckFailedException"
