"""What the adapters say about a botocore error: its code or type only. An exception's text may quote a key
(a recipient digest, a user digest) or the item, which must not reach the logs or the domain's errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError


def error_code(error: BaseException) -> str:
    """`ConditionalCheckFailedException`, `ProvisionedThroughputExceededException`, … for a ClientError; the
    exception's type name otherwise (a connection error, a timeout)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


@contextmanager
def translated(error: type[Exception], what: str) -> Iterator[None]:
    """The boundary of an adapter: what its client raises becomes the store's own `error`, naming `what` was
    refused and the code, never the text."""
    try:
        yield
    except (ClientError, BotoCoreError) as e:
        raise error(f"DynamoDB refused {what}: {error_code(e)}") from e
