"""What the adapters say about a botocore error: its code or type only. An exception's text may quote a key
(a recipient digest, a user digest) or the item, which must not reach the logs or the domain's errors."""

from __future__ import annotations

from botocore.exceptions import ClientError


def error_code(error: BaseException) -> str:
    """`ConditionalCheckFailedException`, `ProvisionedThroughputExceededException`, … for a ClientError; the
    exception's type name otherwise (a connection error, a timeout)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__
