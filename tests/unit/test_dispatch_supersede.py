"""Supersede: latest wins per (collapseKey, recipient), in one batch, across batches and executions, while a
request waits in the backlog or for a slot; other requests and other recipients are untouched."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from fakes import WORST_CASE
from harness import BONUS, SHIPPED, Harness, body, msg, requeued_copy
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_clock import T0
from imshop_push.dispatch.dispatcher import Dispatcher, Disposition
from imshop_push.domain.collapse import InProcessVersionStore
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import StoreError
from imshop_push.entrypoints.runtime import invocation_deadline

KEY = "order-123-status"
PAID = {"title": "Заказ оплачен", "summary": "Спасибо"}
DELIVERED_TEXT = {"title": "Заказ доставлен", "summary": "Заберите в пункте выдачи"}
T0_MS = int(T0 * 1000)


def collapsed(
    message_id: str,
    *,
    users: Sequence[str] = ("u1",),
    message: dict[str, str] = SHIPPED,
    created: float | None = None,
    sent_ms: int = T0_MS,
    received_ms: int | None = None,
    collapse_key: str | None = KEY,
    key: str | None = None,
    send_at: float | None = None,
    expires_at: float | None = None,
) -> InboundMessage:
    """A status update as SQS hands it over: SentTimestamp and first receive time in the record's attributes."""
    document = json.loads(body(users=users, message=message, key=key or f"key-{message_id}", expires_at=expires_at))
    if collapse_key is not None:
        document["collapseKey"] = collapse_key
    if created is not None:
        document["createdAt"] = datetime.fromtimestamp(created, UTC).isoformat()
    if send_at is not None:
        document["sendAt"] = datetime.fromtimestamp(send_at, UTC).isoformat()
    return msg(message_id, json.dumps(document, ensure_ascii=False))._replace(
        sent_timestamp_ms=sent_ms, first_received_ms=received_ms if received_ms is not None else sent_ms
    )


def sent_titles(h: Harness, user: str = "u1") -> list[str]:
    return [c.payload["message"]["title"] for c in h.api.calls if ("userIds", user) in c.recipients]


def test_the_newest_in_one_batch_wins_whatever_the_order() -> None:
    h = Harness()

    results = h.run(
        collapsed("newest", message=DELIVERED_TEXT, created=T0 - 10),
        collapsed("oldest", message=PAID, created=T0 - 30),
        collapsed("middle", message=SHIPPED, created=T0 - 20),
    )

    assert sent_titles(h) == [DELIVERED_TEXT["title"]]
    assert results == {
        "newest": Disposition.DELIVERED,
        "oldest": Disposition.SUPERSEDED,
        "middle": Disposition.SUPERSEDED,
    }
    assert h.metrics["RecipientsSuperseded"] == 2


def test_without_created_at_the_first_sent_timestamp_orders_them() -> None:
    h = Harness()

    h.run(collapsed("later", message=SHIPPED, sent_ms=T0_MS + 5), collapsed("earlier", message=PAID))

    assert sent_titles(h) == [SHIPPED["title"]]


def test_created_at_outranks_the_order_sqs_got_them_in() -> None:
    h = Harness()

    h.run(collapsed("made-first", message=PAID, created=T0 - 30, sent_ms=T0_MS + 5), collapsed("made-later"))

    assert sent_titles(h) == [SHIPPED["title"]]


def test_a_stale_request_arriving_after_the_newer_one_was_sent_is_dropped() -> None:
    h = Harness()
    h.run(collapsed("newer", message=SHIPPED, created=T0 - 10))
    h.clock.now += 120

    results = h.run(collapsed("stale", message=PAID, created=T0 - 20))

    assert results == {"stale": Disposition.SUPERSEDED}
    assert sent_titles(h) == [SHIPPED["title"]]
    assert h.metrics["RecipientsSuperseded"] == 1


def test_equal_instants_the_one_first_received_later_wins() -> None:
    batch = Harness()
    batch.run(
        collapsed("received-later", message=SHIPPED, created=T0, received_ms=T0_MS + 2),
        collapsed("received-first", message=PAID, created=T0, received_ms=T0_MS + 1),
    )
    apart = Harness()
    apart.run(collapsed("received-first", message=PAID, created=T0, received_ms=T0_MS + 1))
    apart.clock.now += 120
    apart.run(collapsed("received-later", message=SHIPPED, created=T0, received_ms=T0_MS + 2))

    assert sent_titles(batch) == [SHIPPED["title"]]
    assert sent_titles(apart) == [PAID["title"], SHIPPED["title"]], "the later one is newer: it is sent too"


def test_recipients_the_newer_request_does_not_cover_still_get_the_older_one() -> None:
    h = Harness()

    results = h.run(
        collapsed("older", message=PAID, users=["u1", "u2"], created=T0 - 20),
        collapsed("newer", message=SHIPPED, users=["u1"], created=T0 - 10),
    )

    assert results == {"older": Disposition.DELIVERED, "newer": Disposition.DELIVERED}
    assert sent_titles(h, "u1") == [SHIPPED["title"]]
    assert sent_titles(h, "u2") == [PAID["title"]]


def test_other_collapse_keys_and_requests_without_one_are_untouched_and_still_merged() -> None:
    h = Harness()

    results = h.run(
        collapsed("older", message=PAID, users=["u1"], created=T0 - 20),
        collapsed("plain", message=PAID, users=["u1", "u2"], collapse_key=None),
        collapsed("other-key", message=PAID, users=["u3"], created=T0 - 30, collapse_key="order-9-status"),
        collapsed("newer", message=SHIPPED, users=["u1"], created=T0 - 10),
    )

    assert results["older"] is Disposition.SUPERSEDED
    paid_calls = [c for c in h.api.calls if c.payload["message"] == PAID]
    assert len(paid_calls) == 1, "equal content still travels in one call"
    assert sorted(paid_calls[0].payload["userIds"]) == ["u1", "u2", "u3"], "u1 is still wanted by another request"
    assert sent_titles(h, "u1") == [PAID["title"], SHIPPED["title"]] or sent_titles(h, "u1") == [
        SHIPPED["title"],
        PAID["title"],
    ]


def test_a_newer_request_arriving_while_the_older_waits_in_the_backlog_wins() -> None:
    h = Harness(limit=1)
    h.run(msg("filler", body(users=["u9"], message=BONUS)))  # the window's only slot
    older = collapsed("older", message=PAID)  # no createdAt: its first SentTimestamp, kept by its copies
    h.run(older, seconds=20)
    [waiting] = h.backlog.received
    h.clock.now += 5
    h.run(collapsed("newer", message=SHIPPED, sent_ms=T0_MS + 5_000), seconds=20)
    h.clock.now += 120

    copy = requeued_copy(waiting, "older/copy")._replace(sent_timestamp_ms=T0_MS + 6_000)  # sent after the newer
    results = h.run(copy)

    assert results == {"older/copy": Disposition.SUPERSEDED}
    assert PAID["title"] not in sent_titles(h)


def test_a_newer_request_received_elsewhere_while_the_older_waits_for_a_slot_wins() -> None:
    h = Harness(limit=1)
    versions = InProcessVersionStore()
    other = execution(h, versions)
    newer = collapsed("newer", message=SHIPPED, sent_ms=T0_MS + 1_000)
    seen: dict[str, Disposition] = {}

    def another_execution_receives_the_newer_one(seconds: float) -> None:
        if not seen:
            seen.update(invoke(h, other, [newer], seconds=10))  # no slot either: it waits in the backlog
        h.clock.sleep(seconds)

    this = execution(h, versions, sleep=another_execution_receives_the_newer_one)
    h.run(msg("filler", body(users=["u9"], message=BONUS)))

    results = invoke(h, this, [collapsed("older", message=PAID)], seconds=90)

    assert seen == {"newer": Disposition.DEFERRED}
    assert results == {"older": Disposition.SUPERSEDED}
    assert PAID["title"] not in sent_titles(h)
    assert h.metrics["RecipientsSuperseded"] == 1


def test_a_superseded_request_is_done_a_duplicate_of_it_is_not_sent() -> None:
    h = Harness()
    h.run(collapsed("newer", message=SHIPPED, created=T0 - 10), collapsed("older", message=PAID, created=T0 - 20))

    again = h.run(collapsed("older-again", message=PAID, created=T0 - 20, key="key-older"))

    assert again == {"older-again": Disposition.DUPLICATE}
    assert sent_titles(h) == [SHIPPED["title"]]


class UnavailableVersions(InProcessVersionStore):
    def record(self, versions: object, *, now: float) -> set[str]:
        raise StoreError("throttled")


def test_when_the_versions_cannot_be_recorded_the_request_goes_back_to_sqs_unsent() -> None:
    h = Harness()

    results = invoke(h, execution(h, UnavailableVersions()), [collapsed("m1")], seconds=90)

    assert results == {"m1": Disposition.RETRY}
    assert h.api.calls == []


@settings(max_examples=60, deadline=None)
@given(
    st.permutations(range(5)),
    st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=5),
    st.booleans(),
)
def test_never_an_older_status_after_a_newer_one_and_the_newest_always_arrives(
    arrival: list[int], batch_sizes: list[int], tight: bool
) -> None:
    """Five versions of one order's status arrive in any order and batching, with or without budget to spare:
    the user sees statuses only in the order they were made, and always the last one."""
    h = Harness(limit=1 if tight else 10)
    titles = [f"status {n}" for n in range(5)]
    pending = [
        collapsed(f"v{n}", message={"title": titles[n], "summary": "s"}, created=T0 - 100 + n, sent_ms=T0_MS + i)
        for i, n in enumerate(arrival)
    ]
    round_ = 0
    while pending:
        size = batch_sizes[round_ % len(batch_sizes)]
        batch, pending = pending[:size], pending[size:]
        before = len(h.backlog.received)
        h.run(*batch, seconds=20)
        pending += [requeued_copy(d, f"{d.message.message_id}/{round_}") for d in h.backlog.received[before:]]
        h.clock.now += 61
        round_ += 1
        assert round_ < 60, "the backlog never drained"
    shown = [int(t.split()[1]) for t in sent_titles(h)]
    assert shown == sorted(shown)
    assert shown[-1] == 4
    assert Counter(shown).most_common(1)[0][1] == 1


# --- helpers ------------------------------------------------------------------------------------------------


def execution(
    h: Harness, versions: InProcessVersionStore, *, sleep: Callable[[float], None] | None = None
) -> Dispatcher:
    """Another execution environment: the same IMSHOP, limiter, state table and versions, its own process."""
    return h.execution(sleep=sleep or h.clock.sleep, versions=versions)


def invoke(
    h: Harness, dispatcher: Dispatcher, messages: list[InboundMessage], *, seconds: float
) -> dict[str, Disposition]:
    now = h.clock()
    deadline = invocation_deadline(now + seconds, seconds, records=len(messages), worst_case_call_seconds=WORST_CASE)
    return {mid: r.disposition for mid, r in dispatcher.dispatch(messages, deadline=deadline).items()}


def test_a_producer_retry_of_the_same_request_does_not_supersede_it() -> None:
    """Same idempotency key, sent again without createdAt: a later SentTimestamp, but the same request. Were it
    taken as newer, the first copy would settle the key as done, and the retry would be skipped as a duplicate:
    nobody would get it."""
    h = Harness(limit=1)
    h.run(msg("filler", body(users=["u9"], message=BONUS)))
    h.run(collapsed("first", key="order-7-paid"), seconds=20)
    h.clock.now += 5
    h.run(collapsed("retry", key="order-7-paid", sent_ms=T0_MS + 5_000), seconds=20)
    first_copy, retry_copy = (requeued_copy(d, f"{d.message.message_id}/copy") for d in h.backlog.received)
    h.clock.now += 120

    h.run(first_copy)
    h.clock.now += 120
    h.run(retry_copy)

    assert sent_titles(h) == [SHIPPED["title"]]
    assert h.metrics["RecipientsSuperseded"] == 0


# --- a held request takes part from when it is received -------------------------------------------------------


def follow_held(h: Harness, message: InboundMessage, *, hops: int = 10) -> Disposition:
    """Run a held request, then each copy when SQS hands it back, until it is no longer held."""
    for hop in range(hops):
        before = len(h.backlog.received)
        disposition = h.run(message)[message.message_id]
        if disposition is not Disposition.HELD:
            return disposition
        (copy,) = h.backlog.received[before:]
        h.clock.now += copy.delay_seconds
        message = requeued_copy(copy, f"{message.message_id.split('/')[0]}/{hop}")
    raise AssertionError("still held")


def test_a_held_newer_request_supersedes_an_older_one_that_arrives_while_it_waits() -> None:
    h = Harness()
    newer = collapsed("newer", message=SHIPPED, created=T0 - 10, send_at=T0 + 1800)
    assert h.run(newer) == {"newer": Disposition.HELD}
    h.clock.now += 5

    older = h.run(collapsed("older", message=PAID, created=T0 - 20))
    h.clock.now = T0 + 1800 - h.backlog.received[0].delay_seconds  # the copy comes back when SQS hands it over
    held = follow_held(h, requeued_copy(h.backlog.received[0], "newer/0"))

    assert older == {"older": Disposition.SUPERSEDED}
    assert held is Disposition.DELIVERED
    assert sent_titles(h) == [SHIPPED["title"]], "one push: the newest, at its sendAt"
    assert h.api.calls[0].at == T0 + 1800
    assert h.metrics["RecipientsSuperseded"] == 1


def test_a_held_newer_request_in_the_same_batch_as_an_older_one_supersedes_it() -> None:
    h = Harness()

    results = h.run(
        collapsed("older", message=PAID, users=["u1", "u2"], created=T0 - 20),
        collapsed("newer", message=SHIPPED, users=["u1"], created=T0 - 10, send_at=T0 + 60),
    )

    assert results == {"older": Disposition.DELIVERED, "newer": Disposition.HELD}
    assert sent_titles(h, "u1") == [], "u1 waits for the newer one"
    assert sent_titles(h, "u2") == [PAID["title"]], "a recipient the newer one does not have still gets the older"


def test_an_older_request_held_is_dropped_when_due_if_a_newer_one_came_meanwhile() -> None:
    h = Harness()
    assert h.run(collapsed("older", message=PAID, created=T0 - 20, send_at=T0 + 60)) == {"older": Disposition.HELD}
    h.clock.now += 5

    assert h.run(collapsed("newer", message=SHIPPED, created=T0 - 10)) == {"newer": Disposition.DELIVERED}
    h.clock.now = T0 + 60
    held = follow_held(h, requeued_copy(h.backlog.received[0], "older/0"))

    assert held is Disposition.SUPERSEDED
    assert sent_titles(h) == [SHIPPED["title"]]


def test_a_redelivered_held_request_is_the_same_version_and_still_supersedes() -> None:
    """SQS hands the original over again (its held copy already written): held again, the same version; an
    older request is still dropped, and the newer one is sent once."""
    h = Harness()
    newer = collapsed("newer", message=SHIPPED, created=None, sent_ms=T0_MS, send_at=T0 + 120)
    assert h.run(newer) == {"newer": Disposition.HELD}
    h.clock.now += 30
    assert h.run(newer) == {"newer": Disposition.HELD}, "the same SQS message again"
    assert h.run(collapsed("older", message=PAID, sent_ms=T0_MS - 1_000)) == {"older": Disposition.SUPERSEDED}
    first, second = h.backlog.received
    h.clock.now = T0 + 120

    assert h.run(requeued_copy(first, "newer/0")) == {"newer/0": Disposition.DELIVERED}
    assert h.run(requeued_copy(second, "newer/1")) == {"newer/1": Disposition.DUPLICATE}
    assert sent_titles(h) == [SHIPPED["title"]]


def test_a_held_request_whose_versions_cannot_be_recorded_goes_back_to_sqs_unheld() -> None:
    h = Harness()

    results = invoke(h, execution(h, UnavailableVersions()), [collapsed("m1", send_at=T0 + 60, created=T0)], seconds=90)

    assert results == {"m1": Disposition.RETRY}, "held unrecorded, an older request could be sent meanwhile"
    assert h.backlog.received == []


def test_a_newer_held_request_cancelled_or_expired_afterwards_still_outranks_the_older_one() -> None:
    """Latest wins orders a key's requests; it does not bring an older one back when the newer one is withdrawn
    after it was received (as for a newer one waiting for budget)."""
    for withdraw in ("cancel", "expire"):
        h = Harness()
        expires = T0 + 600 if withdraw == "expire" else None
        newer = collapsed("newer", message=SHIPPED, created=T0 - 10, send_at=T0 + 1800, expires_at=expires)
        assert h.run(newer) == {"newer": Disposition.HELD}
        if withdraw == "cancel":
            h.state.cancel(["key-newer"], now=h.clock())
        h.clock.now = T0 + 900

        assert h.run(collapsed("older", message=PAID, created=T0 - 20)) == {"older": Disposition.SUPERSEDED}
        h.clock.now = T0 + 1800
        assert follow_held(h, requeued_copy(h.backlog.received[0], "newer/0")) in {
            Disposition.CANCELLED,
            Disposition.EXPIRED,
        }
        assert h.api.calls == [], withdraw


def test_a_held_request_cancelled_before_it_came_takes_no_part() -> None:
    """As at the claim: a request whose cancel was recorded first is dropped on arrival and supersedes nothing."""
    h = Harness()
    h.state.cancel(["key-newer"], now=h.clock())

    held = h.run(collapsed("newer", message=SHIPPED, created=T0 - 10, send_at=T0 + 1800))
    older = h.run(collapsed("older", message=PAID, created=T0 - 20))

    assert held == {"newer": Disposition.CANCELLED}
    assert older == {"older": Disposition.DELIVERED}
    assert sent_titles(h) == [PAID["title"]]
    assert h.metrics["RequestsCancelled"] == 1


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, 1, 45, 900, 1800]),  # sendAt this far after its arrival; None: due at once
            st.integers(0, 1000),  # seconds after the previous arrival
            st.sampled_from([("u1",), ("u2",), ("u1", "u2")]),
        ),
        min_size=2,
        max_size=5,
    ),
    st.permutations(range(5)),
    st.booleans(),
)
def test_held_and_immediate_requests_of_one_key_in_any_interleaving_only_the_latest_reaches_each_recipient(
    requests: list[tuple[int | None, int, tuple[str, ...]]], made: list[int], tight: bool
) -> None:
    """Requests of one collapseKey arrive one by one, some held for a sendAt, some due at once, with or without
    budget to spare; their createdAt order is any permutation of their arrival order. For each recipient: no
    request is sent once a newer one of the key was received (held or not), each is sent at most once, and the
    newest one for that recipient always arrives."""
    h = Harness(limit=1 if tight else 10)
    created_rank = sorted(range(len(requests)), key=lambda i: made[i])  # i-th arrival is the rank-th made
    rank = {arrival: position for position, arrival in enumerate(created_rank)}
    queue: list[tuple[float, int, InboundMessage]] = []  # (when SQS hands it over, arrival, message)
    at = T0
    for i, (send_after, gap, users) in enumerate(requests):
        at += gap
        send_at = at + send_after if send_after is not None else None
        text = {"title": f"status {rank[i]}", "summary": "s"}
        queue.append(
            (at, i, collapsed(f"r{i}", message=text, users=users, created=T0 - 100 + rank[i], send_at=send_at))
        )
    received_by: dict[int, int] = {}  # request -> the invocation that first received it
    sent_by: list[tuple[int, str, str]] = []  # (invocation, title, user)
    invocation = 0
    while queue:
        queue.sort(key=lambda item: item[:2])
        when, i, message = queue.pop(0)
        h.clock.now = max(h.clock.now, when)
        received_by.setdefault(i, invocation)
        before_calls, before_copies = len(h.api.calls), len(h.backlog.received)
        h.run(message, seconds=20)
        sent_by += [
            (invocation, c.payload["message"]["title"], u)
            for c in h.api.calls[before_calls:]
            for u in c.payload["userIds"]
        ]
        for n, copy in enumerate(h.backlog.received[before_copies:]):
            queue.append((h.clock.now + copy.delay_seconds, i, requeued_copy(copy, f"r{i}/{invocation}/{n}")))
        invocation += 1
        assert invocation < 200, "never settled"

    for user in ("u1", "u2"):
        shown = [(inv, int(title.split()[1])) for inv, title, u in sent_by if u == user]
        ranks = [r for _, r in shown]
        assert ranks == sorted(set(ranks)), f"{user}: an older status after a newer one, or one twice: {ranks}"
        wanted = [rank[i] for i, (_, _, users) in enumerate(requests) if user in users]
        if wanted:
            assert ranks[-1:] == [max(wanted)], f"{user}: the newest status never arrived: {ranks}"
        for inv, r in shown:
            newer_seen = [rank[i] for i, first in received_by.items() if rank[i] > r and first < inv]
            newer_for_user = [n for n in newer_seen if user in requests[created_rank[n]][2]]
            assert not newer_for_user, f"{user}: status {r} sent after newer {newer_for_user} was received"
