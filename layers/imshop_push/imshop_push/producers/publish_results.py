"""What SQS made of a publication, draft by draft: queued (with its message id) or refused (with why)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imshop_push.producers.drafts import NotificationDraft

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
    idempotency_key: str | None = None
    """The request's key: the draft's own, or the one the helper gave it (what `cancel_notification` takes)."""


@dataclass(frozen=True, slots=True)
class FailedMessage:
    index: int
    draft: NotificationDraft
    """The draft as it was sent, with the key (and createdAt) the helper gave it: publishing it again is a
    duplicate of whatever of it SQS did store, never a second push."""
    code: str
    """SQS's error code, e.g. `InvalidParameterValue`, `InternalError`; `NotSent` for a draft no call carried
    because an earlier call of the publication failed as a whole."""
    message: str
    sender_fault: bool
    """True: SQS will refuse this entry (or its call) again as it is: no such queue, no permission. False: not
    the entry's fault (SQS's side, the network, or never sent); it was retried where that made sense, and
    publishing it again may succeed."""
    attempts: int
    """How many times a call carried it."""


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
            self._successful[index] = PublishedMessage(index, ok["MessageId"], self._drafts[index].idempotency_key)
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

    def fail_call(self, indexes: list[int], error: Exception, attempt: int) -> None:
        """The drafts of a call that failed as a whole: the call's error is theirs."""
        for index in indexes:
            self._failed[index] = FailedMessage(
                index=index,
                draft=self._drafts[index],
                code=error_code(error),
                message=str(error),
                sender_fault=is_sender_fault(error),
                attempts=attempt,
            )

    def not_sent(self, indexes: list[int], error: Exception, attempt: int) -> None:
        """Drafts no call carried in this attempt, because an earlier call failed as a whole. One an earlier
        attempt carried keeps what SQS answered then."""
        for index in indexes:
            if index not in self._failed:
                self._failed[index] = FailedMessage(
                    index=index,
                    draft=self._drafts[index],
                    code="NotSent",
                    message=f"not sent: an earlier SendMessageBatch call failed ({error_code(error)})",
                    sender_fault=False,
                    attempts=attempt - 1,
                )

    def result(self) -> PublishResult:
        return PublishResult(
            successful=tuple(self._successful[i] for i in sorted(self._successful)),
            failed=tuple(self._failed[i] for i in sorted(self._failed)),
        )


_THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "RequestThrottled", "RequestThrottledException"})
_CLIENT_ERROR_STATUSES = range(400, 500)


def is_sender_fault(error: Exception) -> bool:
    """SQS answered the call with a 4xx that is not throttling: the same call fails again (no such queue, no
    permission, a request SQS refuses). No answer at all (the network) is nobody's fault of the entry."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status in _CLIENT_ERROR_STATUSES and error_code(error) not in _THROTTLING_CODES


def error_code(error: Exception) -> str:
    """botocore's ClientError carries SQS's code; anything else (network, credentials) is named by its type."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str) and code:
            return code
    return type(error).__name__
