"""In-process fakes of the pipeline's ports: the IMSHOP API, the state store, the rate limiter, the DLQ and
the backlog. Shared by the dispatcher's tests and the handler's; each records what it was given.

The stores fail the way their DynamoDB adapters do: with the store's own error (`StateStoreError`,
`RateLimiterError`), never botocore's.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from fake_clock import FakeClock
from imshop_push.domain.history import HistoryEntry, HistoryStoreError, decode_kept, encode_kept, history_copy_body
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.lanes import Lane
from imshop_push.domain.model import CallOutcome, CallResult, Deferral, Poison
from imshop_push.domain.pending import InProcessPendingPool, PendingCopy
from imshop_push.domain.rate_limit import Denied, InProcessRateLimiter, Permit, RateLimiterError, WindowPolicy
from imshop_push.domain.state import CallRecord, CallStatus, Claim, InProcessStateStore, Settlement, StateStoreError

WORST_CASE = 13.0
SENT = CallOutcome(CallResult.SENT, "success", 200)


# --- IMSHOP ---------------------------------------------------------------------------------------------


@dataclass
class SentCall:
    at: float
    payload: dict[str, Any]

    @property
    def recipients(self) -> list[tuple[str, str]]:
        return [("userIds", u) for u in self.payload.get("userIds", [])] + [
            ("installIds", i) for i in self.payload.get("installIds", [])
        ]


class ExecutionCrashError(Exception):
    """The execution dies mid-call (Lambda timeout, out of memory): the dispatcher never sees an answer."""


class FakeImshop:
    """Records every call; answers from a script (one outcome per call, then SENT), taking `duration` seconds."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.script: list[CallOutcome | Exception] = []
        self.answer: Callable[[dict[str, Any]], CallOutcome] | None = None
        self.duration = 0.0
        self.calls: list[SentCall] = []

    @property
    def worst_case_seconds(self) -> float:
        return WORST_CASE

    def send(self, payload: dict[str, object]) -> CallOutcome:
        self.calls.append(SentCall(self.clock(), json.loads(json.dumps(payload))))
        self.clock.now += self.duration
        if self.script:
            outcome = self.script.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return self.answer(payload) if self.answer else SENT

    def delivered(self) -> Counter[tuple[str, str, str]]:
        """(title, field, id) per recipient over the calls IMSHOP accepted... or may have accepted."""
        return Counter((c.payload["message"]["title"], f, r) for c in self.calls for f, r in c.recipients)


class FakeImshopClient:
    """Stands in for `ImshopClient` (same constructor) behind the handler: answers by title, so one batch can
    hold every outcome."""

    instances: list[FakeImshopClient] = []  # noqa: RUF012 - every client made, reset by the tests that read it

    def __init__(self, url: str, *, api_key: str | None, connect_timeout_seconds: float, read_timeout_seconds: float):
        self.url = url
        self.api_key = api_key
        self.payloads: list[dict[str, Any]] = []
        self.worst_case_seconds = connect_timeout_seconds + read_timeout_seconds
        FakeImshopClient.instances.append(self)

    def send(self, payload: dict[str, Any]) -> CallOutcome:
        self.payloads.append(payload)
        title = payload["message"]["title"]
        if "FAIL" in title:
            return CallOutcome(CallResult.FAILED, "IMSHOP answered 503: no error text", 503)
        if "REJECT" in title:
            return CallOutcome(
                CallResult.REJECTED,
                'IMSHOP answered 400: Bad Request: child "userIds" fails because ["userIds" must be an array]',
                400,
            )
        return CallOutcome(CallResult.SENT, "success", 200)


# --- SQS: the DLQ and the backlog -----------------------------------------------------------------------


class RecordingSink[T: (Poison, Deferral)]:
    """Takes what it is given, except the message ids in `fail_ids`, which it reports as not written."""

    def __init__(self, received: list[T] | None = None) -> None:
        self.received: list[T] = [] if received is None else received
        self.fail_ids: set[str] = set()

    def take(self, items: Sequence[T]) -> set[str]:
        self.received += [item for item in items if item.message.message_id not in self.fail_ids]
        return {item.message.message_id for item in items} & self.fail_ids


class FakeDeadLetters(RecordingSink[Poison]):
    def send(self, poison: Sequence[Poison]) -> set[str]:
        return self.take(poison)


class FakeBacklog(RecordingSink[Deferral]):
    def __init__(self, received: list[Deferral] | None = None) -> None:
        super().__init__(received)
        self.wakes: list[tuple[str, str, int]] = []  # (queue ARN, group, delay seconds)
        self.wake_tokens: list[str | None] = []  # each wake's token, by position
        self.fail_wakes = False
        self.history_copies: list[InboundMessage] = []  # as SQS would hand them to a later invocation
        self.fail_history_copies = False
        self.while_writing_wake: Callable[[str, str, int], bool] | None = None
        """Runs while a wake's SendMessage is on its way (other executions may act meanwhile); False fails it."""

    def requeue(self, deferrals: Sequence[Deferral]) -> set[str]:
        return self.take(deferrals)

    def wake(self, event_source_arn: str, group: str, delay_seconds: int, token: str | None = None) -> bool:
        if self.while_writing_wake is not None and not self.while_writing_wake(event_source_arn, group, delay_seconds):
            return False
        if self.fail_wakes:
            return False
        self.wakes.append((event_source_arn, group, delay_seconds))
        self.wake_tokens.append(token)
        return True

    def write_wakes(self, wakes: Sequence[tuple[str, str, int]], tokens: Sequence[str | None] = ()) -> set[int]:
        return {
            n
            for n, (arn, group, delay) in enumerate(wakes)
            if not self.wake(arn, group, delay, tokens[n] if n < len(tokens) else None)
        }

    def history_copy(self, event_source_arn: str, token: str) -> bool:
        if self.fail_history_copies:
            return False
        self.history_copies.append(InboundMessage(f"history-copy-{token}", history_copy_body(token), event_source_arn))
        return True


class FlakyPendingPool(InProcessPendingPool):
    """The in-process pool; `fail` names operations that raise the store's error, as the adapter does."""

    def __init__(self, *, shared: bool = True) -> None:
        super().__init__(shared=shared)
        self.fail: set[str] = set()
        self.takes = 0
        self.after_announce: Callable[[], None] | None = None  # runs once, after the next announce (others act)

    def announce(self, groups: Collection[str], *, until: float, now: float) -> None:
        super().announce(groups, until=until, now=now)
        hook, self.after_announce = self.after_announce, None
        if hook is not None:
            hook()

    def put(self, group: str, copies: Sequence[PendingCopy], *, now: float) -> None:
        self._maybe_fail("put")
        super().put(group, copies, now=now)

    def take(self, group: str, *, limit: int) -> list[PendingCopy]:
        self._maybe_fail("take")
        self.takes += 1
        return super().take(group, limit=limit)

    def remove(self, group: str, keys: Collection[str]) -> None:
        self._maybe_fail("remove")
        super().remove(group, keys)

    def _maybe_fail(self, operation: str) -> None:
        if operation in self.fail:
            raise unavailable(operation)


# --- the stores -----------------------------------------------------------------------------------------


def unavailable(operation: str) -> StateStoreError:
    return StateStoreError(f"DynamoDB refused {operation}: ProvisionedThroughputExceededException")


class FlakyStateStore(InProcessStateStore):
    """The in-process store, with operations that can be told to fail as the DynamoDB adapter fails: with the
    store's own error, into which it translates every error of its client."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()
        self.mark_sent_failures = 0  # how many "sent" records to refuse before taking them again
        self.clock: FakeClock | None = None
        self.seconds_per_claim = 0.0  # a slow table: each claim moves `clock` on
        self.while_claiming: Callable[..., None] | None = None  # runs before each claim_many (other executions)

    def _maybe_fail(self, operation: str) -> None:
        if operation in self.failing:
            raise unavailable(operation)

    def claim_many(
        self, requests: Sequence[tuple[str, str]], *, attempt_id: str, now: float, lease_until: float
    ) -> dict[str, Claim]:
        self._maybe_fail("claim_many")
        if self.while_claiming is not None:
            self.while_claiming(requests)
        if self.clock is not None:
            self.clock.now += self.seconds_per_claim * len(requests)
        return super().claim_many(requests, attempt_id=attempt_id, now=now, lease_until=lease_until)

    def start_attempt(self, attempt_id: str, call_count: int, *, now: float) -> None:
        self._maybe_fail("start_attempt")
        super().start_attempt(attempt_id, call_count, now=now)

    def load_calls(self, attempt_ids: Collection[str], *, now: float) -> list[CallRecord]:
        self._maybe_fail("load_calls")
        return super().load_calls(attempt_ids, now=now)

    def mark_call(self, call_id: str, digests: bytes, *, status: CallStatus, now: float) -> None:
        if status is CallStatus.SENT and self.mark_sent_failures:
            self.mark_sent_failures -= 1
            raise unavailable("mark_call")
        if status is CallStatus.PENDING:
            self._maybe_fail("mark_call")
        super().mark_call(call_id, digests, status=status, now=now)

    def settle(self, settlements: Sequence[Settlement], *, now: float) -> None:
        self._maybe_fail("settle")
        super().settle(settlements, now=now)


class FlakyLimiter(InProcessRateLimiter):
    """The shared limiter whose store (DynamoDB) can fail on acquire or on release."""

    def __init__(self, policy: WindowPolicy) -> None:
        super().__init__(policy)
        self.fail_acquire = False
        self.fail_release = False

    def try_acquire(self, now: float, lane: Lane = Lane.TRANSACTIONAL, waiter: str | None = None) -> Permit | Denied:
        if self.fail_acquire:
            raise RateLimiterError("DynamoDB refused UpdateItem: ProvisionedThroughputExceededException")
        return super().try_acquire(now, lane, waiter)

    def release(self, permit: Permit, finished_at: float) -> None:
        if self.fail_release:
            raise RateLimiterError("DynamoDB refused UpdateItem: ProvisionedThroughputExceededException")
        super().release(permit, finished_at)


# --- the in-app history ---------------------------------------------------------------------------------


class FakeHistory:
    """The history table in memory, as both functions see it: entries by (user id, entry id), read marks apart;
    an entry with a collapse version replaces its stored one in place only if that one is older.
    `failures` puts in a row fail as the adapter fails (with the store's own error); each takes `duration`."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.entries: dict[tuple[str, str], HistoryEntry] = {}
        self.read_on: dict[tuple[str, str], int] = {}
        self.puts: list[list[HistoryEntry]] = []
        self.failures = 0
        self.duration = 0.0
        self.unavailable = False
        self.queries: list[tuple[str, int, int]] = []
        self.written = 0  # entries taken by `put`, each time it took them
        self.kept_entries: dict[str, list[HistoryEntry]] = {}  # by token: what the state table keeps for later
        self.forgotten: set[str] = set()
        self.keep_unavailable = False

    def put(self, entries: Sequence[HistoryEntry]) -> None:
        if self.clock is not None:
            self.clock.now += self.duration
        if self.failures:
            self.failures -= 1
            raise HistoryStoreError("history write refused: ProvisionedThroughputExceededException")
        self.written += len(entries)
        self.puts.append(list(entries))
        for entry in entries:
            key = (entry.user_id, entry.id)
            stored = self.entries.get(key)
            if entry.version is None or stored is None or stored.version is None:
                self.entries[key] = entry
            elif stored.version < entry.version:  # the table's conditional update: keeps createdOn, drops readOn
                self.entries[key] = entry._replace(created_on=stored.created_on)
                self.read_on.pop(key, None)

    def keep(self, entries: Sequence[HistoryEntry]) -> str:
        if self.keep_unavailable:
            raise HistoryStoreError("keeping history entries refused: InternalServerError")
        token = uuid.uuid4().hex  # random, as the adapter's (keep runs in threads)
        self.kept_entries[token] = decode_kept(encode_kept(entries))  # what the table would hand back
        return token

    def kept(self, token: str) -> list[HistoryEntry] | None:
        if self.keep_unavailable:
            raise HistoryStoreError("reading kept history entries refused: InternalServerError")
        return self.kept_entries.get(token)

    def forget(self, token: str) -> None:
        if self.kept_entries.pop(token, None) is not None:
            self.forgotten.add(token)

    def of(self, user_id: str) -> list[HistoryEntry]:
        return [e for (user, _), e in self.entries.items() if user == user_id]

    def newest(self, user_id: str, *, limit: int, not_before_ms: int) -> list[HistoryEntry]:
        if self.unavailable:
            raise HistoryStoreError("history read refused: InternalServerError")
        self.queries.append((user_id, limit, not_before_ms))
        mine = [e for e in self.of(user_id) if e.updated_on >= not_before_ms]
        return sorted(mine, key=lambda e: e.updated_on, reverse=True)[:limit]

    def mark_read(self, user_id: str, ids: Sequence[str], *, read_on_ms: int) -> int:
        if self.unavailable:
            raise HistoryStoreError("read mark refused: InternalServerError")
        known = [i for i in ids if (user_id, i) in self.entries]
        self.read_on.update({(user_id, i): read_on_ms for i in known})
        return len(known)
