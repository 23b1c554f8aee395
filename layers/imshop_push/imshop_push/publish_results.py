"""What SQS made of a publication, draft by draft: queued (with its message id) or refused (with why)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imshop_push.drafts import NotificationDraft

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import SendMessageBatchResultTypeDef


class PublishError(RuntimeError):
    """A SendMessageBatch call failed as a whole, after boto3's own retries.

    Earlier calls may have queued messages already. Publishing everything again would push those twice (unless
    the drafts carry idempotency keys), so `result` tells which drafts were queued and which were not: republish
    `[f.draft for f in result.failed]`.
    """

    def __init__(self, result: PublishResult) -> None:
        super().__init__(
            f"SendMessageBatch failed: {len(result.successful)} message(s) queued, {len(result.failed)} not queued"
        )
        self.result = result


@dataclass(frozen=True, slots=True)
class PublishedMessage:
    index: int
    """Position of the draft in the `requests` passed to `publish_notifications`."""
    message_id: str


@dataclass(frozen=True, slots=True)
class FailedMessage:
    index: int
    draft: NotificationDraft
    code: str
    """SQS's error code, e.g. `InvalidParameterValue`, `InternalError`."""
    message: str
    sender_fault: bool
    """True: SQS will refuse this entry again as it is. False: not the entry's fault (SQS's side, or the whole call
    failed); it was retried where that made sense, and publishing it again may succeed."""
    attempts: int


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What SQS accepted and what it refused, each in the order of the drafts."""

    successful: tuple[PublishedMessage, ...]
    failed: tuple[FailedMessage, ...]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def message_ids(self) -> list[str]:
        return [p.message_id for p in self.successful]


class Tally:
    """What SQS has answered so far, draft by draft: a later attempt's answer replaces an earlier failure."""

    def __init__(self, drafts: Sequence[NotificationDraft]) -> None:
        self._drafts = drafts
        self._successful: dict[int, PublishedMessage] = {}
        self._failed: dict[int, FailedMessage] = {}

    def record(self, response: SendMessageBatchResultTypeDef, attempt: int) -> list[int]:
        """Returns the drafts worth another attempt: refused on SQS's side, not for what they are."""
        for ok in response.get("Successful", []):
            index = int(ok["Id"])
            self._successful[index] = PublishedMessage(index, ok["MessageId"])
            self._failed.pop(index, None)
        retry = []
        for error in response.get("Failed", []):
            index = int(error["Id"])
            self._failed[index] = FailedMessage(
                index=index,
                draft=self._drafts[index],
                code=error["Code"],
                message=error.get("Message", ""),
                sender_fault=error["SenderFault"],
                attempts=attempt,
            )
            if not error["SenderFault"]:
                retry.append(index)
        return retry

    def fail_all(self, indexes: list[int], error: Exception, attempt: int) -> None:
        for index in indexes:
            self._failed[index] = FailedMessage(
                index=index,
                draft=self._drafts[index],
                code=error_code(error),
                message=str(error),
                sender_fault=False,
                attempts=attempt,
            )

    def result(self) -> PublishResult:
        return PublishResult(
            successful=tuple(self._successful[i] for i in sorted(self._successful)),
            failed=tuple(self._failed[i] for i in sorted(self._failed)),
        )


def error_code(error: Exception) -> str:
    """botocore's ClientError carries SQS's code; anything else (network, credentials) is named by its type."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str) and code:
            return code
    return type(error).__name__
