"""Figure 7: the in-app history. Read latency of the webhook's one Query (p50/p99 over a table of 100,000 entries
in moto) vs a GetItem of one entry in the same table and run; and the write cost of one confirmed call to 1,000
users, in DynamoDB requests, vs one PutItem per recipient.

moto answers from memory, so the latencies are this machine's cost of the request, not DynamoDB's: a regression
guard, and a check that a read stays one request whatever the table holds. moto answers every Query by sorting the
whole table (DynamoDB reads one partition), so its latency grows with the table: about 1.1 s a read at 100,000
entries on a 2-core machine (the DynamoDB lock of the local emulator keeps reads in series). The table holds
HISTORY_BENCH_ENTRIES entries, 100,000 by default (about 75 s with seeding); a smaller number makes a quick run.
"""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imshop_push_local.aws_emulator import MotoServer

from bench.common import Console, Figure

ENTRIES = int(os.environ.get("HISTORY_BENCH_ENTRIES", "100000"))
USERS = max(1, ENTRIES // 50)  # 50 entries each on average; the users read below hold a full page and more
HEAVY_USERS = 10
HEAVY_ENTRIES = 300  # per heavy user: more than HISTORY_MAX_ITEMS, so the Query must stop at the limit
READS = 30
RECIPIENTS = 1_000


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _entries(now_ms: int) -> list[Any]:
    from imshop_push.domain.history import HistoryEntry

    rng = random.Random(7)
    entries = [
        HistoryEntry(f"heavy-{u}", f"{u:04d}-{n:04d}", "Заказ отправлен", now_ms - n, now_ms - n, text="x" * 60)
        for u in range(HEAVY_USERS)
        for n in range(HEAVY_ENTRIES)
    ]
    while len(entries) < ENTRIES:
        n = len(entries)
        when = now_ms - rng.randrange(86_400_000)
        entries.append(HistoryEntry(f"user-{rng.randrange(USERS)}", f"e{n}", "Бонусы", when, when, text="y" * 60))
    return entries


class _RequestCount:
    def __init__(self, client: Any) -> None:
        self.by_operation: dict[str, int] = {}
        client.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.by_operation[model.name] = self.by_operation.get(model.name, 0) + 1


def history_figures(console: Console, moto: MotoServer) -> list[Figure]:
    from imshop_push.adapters.history_dynamodb import DynamoDBHistoryReader, DynamoDBHistoryWriter
    from imshop_push_local.aws_emulator import LocalTuning, provision

    aws = provision(
        moto.endpoint_url,
        api_url="http://127.0.0.1:9/unused",
        tuning=LocalTuning(parameters={"NotificationHistory": "Enabled"}),
    )
    table = aws.function.environment["HISTORY_TABLE_NAME"]
    client = aws.client("dynamodb")
    writer = DynamoDBHistoryWriter(client, table, retention_days=90)
    now_ms = int(time.time() * 1000)
    console.progress(f"history: seeding {ENTRIES:,} entries with BatchWriteItem")
    started = time.monotonic()
    writer.put(_entries(now_ms))
    seeded = time.monotonic() - started

    reader = DynamoDBHistoryReader(client, table)
    count = _RequestCount(client)
    reads: list[float] = []
    gets: list[float] = []
    console.progress(f"history: {READS} reads of {HEAVY_USERS} users' newest 100, and as many GetItems")
    for n in range(READS + 3):
        user = f"heavy-{n % HEAVY_USERS}"
        started = time.perf_counter()
        page = reader.newest(user, limit=100, not_before_ms=now_ms - 90 * 86_400_000)
        read = time.perf_counter() - started
        started = time.perf_counter()
        client.get_item(TableName=table, Key=_key(user, f"{n % HEAVY_USERS:04d}-0000"))
        got = time.perf_counter() - started
        if len(page) != 100:
            raise RuntimeError(f"a read returned {len(page)} entries, not 100")
        if n >= 3:  # the first ones warm the connection pool
            reads.append(read)
            gets.append(got)
    queries_per_read = count.by_operation.get("Query", 0) / (READS + 3)
    return [_read_figure(reads, gets, queries_per_read, seeded), _write_figure(client, table)]


def _key(user: str, entry: str) -> dict[str, Any]:
    from imshop_push.domain.history import user_key

    return {"user": {"S": user_key(user)}, "id": {"S": entry}}


def _read_figure(reads: list[float], gets: list[float], queries_per_read: float, seeded: float) -> Figure:
    p50, p99 = _percentile(reads, 0.5) * 1000, _percentile(reads, 0.99) * 1000
    get50, get99 = _percentile(gets, 0.5) * 1000, _percentile(gets, 0.99) * 1000
    ratio = p50 / get50
    return Figure(
        name=f"history read ({ENTRIES:,} entries)",
        value=p50,
        value_text=f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
        baseline_text=f"GetItem p50 {get50:.1f} ms, p99 {get99:.1f} ms",
        ratio=ratio,
        target="1 Query a read",
        passed=queries_per_read == 1,
        why=f"{queries_per_read:g} Query per read (moto sorts the whole table per Query: {ratio:.0f}x a GetItem)",
        details=[
            f"{READS} reads of the newest 100 of users holding {HEAVY_ENTRIES} entries, in a table of {ENTRIES:,}"
            f" ({USERS:,} users); {queries_per_read:g} DynamoDB request (Query) per read",
            f"seeding {ENTRIES:,} entries took {seeded:.1f} s ({-(-ENTRIES // 25):,} BatchWriteItem requests)",
        ],
    )


class _Confirming:
    """IMSHOP confirming every call at once: the figure is what the dispatcher writes after it."""

    worst_case_seconds = 1.0

    def send(self, payload: dict[str, object]) -> Any:
        from imshop_push.domain.model import CallOutcome, CallResult

        return CallOutcome(CallResult.SENT, "success", 200)


class _NoBacklog:
    def requeue(self, deferrals: Any) -> set[str]:
        return set()

    def wake(self, event_source_arn: str, group: str, delay_seconds: int, token: str | None = None) -> bool:
        return True

    def write_wakes(self, wakes: Any, tokens: Any = ()) -> set[int]:
        return set()

    def history_copy(self, event_source_arn: str, token: str) -> bool:
        return True


def _write_figure(client: Any, table: str) -> Figure:
    """One request to 1,000 users through the real pipeline (in-process state, IMSHOP confirming), the history
    written to moto: the DynamoDB requests that cost, counted on the client."""
    import json

    from imshop_push.adapters.history_dynamodb import DynamoDBHistoryWriter
    from imshop_push.dispatch.pipeline import Dispatcher
    from imshop_push.domain.inbound import InboundMessage
    from imshop_push.domain.model import Deadline
    from imshop_push.domain.rate_limit import PRE_CALL_ALLOWANCE_SECONDS, InProcessRateLimiter, WindowPolicy
    from imshop_push.domain.state import InProcessStateStore

    metrics: dict[str, int] = {}
    dispatcher = Dispatcher(
        api=_Confirming(),
        limiter=InProcessRateLimiter(  # as Runtime builds it: on a real clock a call starts a little after its permit
            WindowPolicy(10, 60.0, 0.0, 1.0 + PRE_CALL_ALLOWANCE_SECONDS, PRE_CALL_ALLOWANCE_SECONDS)
        ),
        state=InProcessStateStore(),
        dead_letters=None,
        backlog=_NoBacklog(),
        metric=lambda name, value: metrics.__setitem__(name, metrics.get(name, 0) + value),
        max_recipients=RECIPIENTS,
        rate_limit_requests=10,
        rate_limit_window_seconds=60.0,
        history=DynamoDBHistoryWriter(client, table, retention_days=90),
    )
    body = {
        "userIds": [f"7990{n:07d}" for n in range(RECIPIENTS)],
        "message": {"title": "Бонусы сгорают", "summary": "Потратьте бонусы до конца недели"},
        "idempotencyKey": "bench-history-write",
    }
    count = _RequestCount(client)
    now = time.time()
    dispatcher.dispatch([InboundMessage("m1", json.dumps(body))], deadline=Deadline(now + 60, now + 30))
    requests = sum(count.by_operation.values())
    written = metrics.get("HistoryEntriesWritten", 0)
    expected = -(-RECIPIENTS // 25)
    return Figure(
        name="history write cost",
        value=requests,
        value_text=f"{requests} requests / {RECIPIENTS:,} recipients",
        baseline_text=f"{RECIPIENTS:,} (a PutItem each)",
        ratio=requests / RECIPIENTS,
        target=f"= {expected} (BatchWriteItem of 25)",
        passed=requests == expected and written == RECIPIENTS,
        why=f"{requests} requests ({count.by_operation}) for {written} entries written",
        details=[f"one confirmed call to {RECIPIENTS:,} users: {count.by_operation}, {written:,} entries written"],
    )
