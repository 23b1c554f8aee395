"""The history on its DynamoDB table (partition `user`, sort `id`, local index `newest` on `updatedOn`, TTL
attribute `expiration`); `imshop_push.domain.history` says why the keys are these.

The dispatcher writes with BatchWriteItem (25 entries a request, in parallel, unprocessed items retried), except
entries of a collapseKey: each is one UpdateItem (in parallel too), conditional on the stored collapse version
being older, which keeps `createdOn` and removes `readOn` and the optional fields the new content lacks. Entries
it keeps for later go to the state table (`history#<token>`, compressed, with the state TTL): a table no
producer writes to, and not the history table, which may be the one refusing. The webhook reads with one Query
and marks with one conditional UpdateItem per id. Every error of the client leaves this module as a
`HistoryStoreError`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from imshop_push.adapters.aws_errors import error_code
from imshop_push.adapters.dynamodb_batches import BatchedTable
from imshop_push.domain.history import (
    ENTRY_KEY,
    EXPIRATION,
    KEPT_ITEM_MAX_BYTES,
    NEWEST_INDEX,
    UPDATED_ON,
    USER_KEY,
    HistoryEntry,
    HistoryStoreError,
    decode_kept,
    encode_kept,
    expiration,
    user_key,
)
from imshop_push.domain.state import StateStoreError
from imshop_push.domain.threads import map_in_threads

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

_OPTIONAL = (("text", "text"), ("deepLink", "deep_link"), ("url", "url"), ("promocode", "promocode"))
VERSION = "collapseVersion"


KEPT_PREFIX = "history#"
KEPT_ENTRIES = "entries"


class DynamoDBHistoryWriter:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        retention_days: int,
        kept_table: str | None = None,
        kept_ttl_seconds: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`kept_table`: the state table, where entries not written yet are kept for the state TTL (None: they
        cannot be kept, `keep` refuses)."""
        self._client = client
        self._table = table_name
        self._batches = BatchedTable(client, table_name)
        self._retention_days = retention_days
        self._kept_table = kept_table
        self._kept_ttl = kept_ttl_seconds
        self._clock = clock

    def keep(self, entries: Sequence[HistoryEntry]) -> str:
        if self._kept_table is None:
            raise HistoryStoreError("no state table to keep history entries in")
        data = encode_kept(entries)
        if len(data) > KEPT_ITEM_MAX_BYTES:
            raise HistoryStoreError(f"kept history entries too large for one item ({len(data)} bytes)")
        token = uuid.uuid4().hex
        try:
            self._client.put_item(
                TableName=self._kept_table,
                Item={
                    "id": {"S": KEPT_PREFIX + token},
                    KEPT_ENTRIES: {"B": data},
                    EXPIRATION: {"N": str(int(self._clock()) + self._kept_ttl)},
                },
            )
        except (ClientError, BotoCoreError) as e:
            raise HistoryStoreError(f"keeping history entries refused: {error_code(e)}") from None
        return token

    def kept(self, token: str) -> list[HistoryEntry] | None:
        if self._kept_table is None:
            return None
        try:
            item = self._client.get_item(
                TableName=self._kept_table, Key={"id": {"S": KEPT_PREFIX + token}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise HistoryStoreError(f"reading kept history entries refused: {error_code(e)}") from None
        if item is None or KEPT_ENTRIES not in item:
            return None
        return decode_kept(item[KEPT_ENTRIES]["B"])

    def forget(self, token: str) -> None:
        """A BatchWriteItem delete: the role may write the state table in batches but not DeleteItem."""
        if self._kept_table is None:
            return
        try:
            key = {"id": {"S": KEPT_PREFIX + token}}
            BatchedTable(self._client, self._kept_table).write([{"DeleteRequest": {"Key": key}}])
        except (StateStoreError, ClientError, BotoCoreError) as e:
            raise HistoryStoreError(f"forgetting kept history entries refused: {error_code(e)}") from None

    def put(self, entries: Sequence[HistoryEntry]) -> None:
        """All or, as far as the caller can tell, nothing: a chunk refused after retries fails the whole put (a
        retry of it is harmless: the same entries again, and a collapsed one of an equal version is left as is)."""
        plain = [{"PutRequest": {"Item": self._item(e)}} for e in entries if e.version is None]
        collapsed = [e for e in entries if e.version is not None]
        try:
            self._batches.write(plain)
            map_in_threads(self._replace, collapsed)
        except (StateStoreError, ClientError, BotoCoreError) as e:
            raise HistoryStoreError(f"history write refused: {error_code(e)}") from None

    def _replace(self, entry: HistoryEntry) -> None:
        """The user's entry of the collapseKey takes the entry's content unless it holds this or a newer version."""
        names = {"#v": VERSION, "#c": "createdOn", "#u": UPDATED_ON, "#e": EXPIRATION, "#t": "title", "#r": "readOn"}
        values: dict[str, Any] = {
            ":v": {"S": entry.version},
            ":c": {"N": str(entry.created_on)},
            ":u": {"N": str(entry.updated_on)},
            ":e": {"N": str(expiration(entry.updated_on, self._retention_days))},
            ":t": {"S": entry.title},
        }
        sets = ["#v = :v", "#c = if_not_exists(#c, :c)", "#u = :u", "#e = :e", "#t = :t"]
        removes = ["#r"]
        for n, (attribute, field) in enumerate(_OPTIONAL):
            names[f"#o{n}"] = attribute
            value = getattr(entry, field)
            if value is None:
                removes.append(f"#o{n}")
            else:
                sets.append(f"#o{n} = :o{n}")
                values[f":o{n}"] = {"S": value}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={USER_KEY: {"S": user_key(entry.user_id)}, ENTRY_KEY: {"S": entry.id}},
                UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
                ConditionExpression="attribute_not_exists(#v) OR #v < :v",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as e:
            if error_code(e) != "ConditionalCheckFailedException":
                raise
            # this version or a newer one of the collapseKey is there already: nothing to change

    def _item(self, entry: HistoryEntry) -> dict[str, Any]:
        item: dict[str, Any] = {
            USER_KEY: {"S": user_key(entry.user_id)},
            ENTRY_KEY: {"S": entry.id},
            "title": {"S": entry.title},
            "createdOn": {"N": str(entry.created_on)},
            UPDATED_ON: {"N": str(entry.updated_on)},
            EXPIRATION: {"N": str(expiration(entry.updated_on, self._retention_days))},
        }
        for attribute, field in _OPTIONAL:
            value = getattr(entry, field)
            if value is not None:
                item[attribute] = {"S": value}
        return item


class DynamoDBHistoryReader:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def newest(self, user_id: str, *, limit: int, not_before_ms: int) -> list[HistoryEntry]:
        """Entries the TTL has not removed yet but that are past retention are left out by the key condition."""
        try:
            response = self._client.query(
                TableName=self._table,
                IndexName=NEWEST_INDEX,
                KeyConditionExpression="#u = :u AND #t >= :t",
                ExpressionAttributeNames={"#u": USER_KEY, "#t": UPDATED_ON},
                ExpressionAttributeValues={":u": {"S": user_key(user_id)}, ":t": {"N": str(not_before_ms)}},
                ScanIndexForward=False,
                Limit=limit,
            )
        except (ClientError, BotoCoreError) as e:
            raise HistoryStoreError(f"history read refused: {error_code(e)}") from None
        return [_entry(user_id, item) for item in response.get("Items", [])]

    def mark_read(self, user_id: str, ids: Sequence[str], *, read_on_ms: int) -> int:
        marked = 0
        for entry in ids:
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key={USER_KEY: {"S": user_key(user_id)}, ENTRY_KEY: {"S": entry}},
                    UpdateExpression="SET readOn = :r",
                    ConditionExpression="attribute_exists(#i)",
                    ExpressionAttributeNames={"#i": ENTRY_KEY},
                    ExpressionAttributeValues={":r": {"N": str(read_on_ms)}},
                )
            except ClientError as e:
                if error_code(e) == "ConditionalCheckFailedException":
                    continue  # not this user's entry (or gone): ignored
                raise HistoryStoreError(f"read mark refused: {error_code(e)}") from None
            except BotoCoreError as e:
                raise HistoryStoreError(f"read mark refused: {error_code(e)}") from None
            marked += 1
        return marked


def _entry(user_id: str, item: dict[str, Any]) -> HistoryEntry:
    text: Callable[[str], str | None] = lambda name: item[name]["S"] if name in item else None  # noqa: E731
    return HistoryEntry(
        user_id=user_id,
        id=item[ENTRY_KEY]["S"],
        title=item["title"]["S"],
        created_on=int(item["createdOn"]["N"]),
        updated_on=int(item[UPDATED_ON]["N"]),
        text=text("text"),
        deep_link=text("deepLink"),
        url=text("url"),
        promocode=text("promocode"),
        version=text(VERSION),
    )
