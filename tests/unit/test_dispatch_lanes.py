"""The dispatcher knows each record's lane from its queue: bulk calls yield to transactional ones in the shared
limiter, bulk backlog goes back to the bulk queue, and each lane's calls and deferrals are counted apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fakes import FakeBacklog, FakeDeadLetters, FakeImshopClient
from harness import BONUS, QUEUE_ARN, SHIPPED, Harness, body, msg, phones

from imshop_push.adapters.dead_letters_by_lane import DeadLettersByLane
from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.lanes import Lanes
from imshop_push.domain.model import Poison
from imshop_push.entrypoints.config import Settings
from imshop_push.entrypoints.runtime import Runtime

BULK_ARN = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-bulk"


def bulk_msg(message_id: str, text: str) -> InboundMessage:
    return msg(message_id, text)._replace(event_source_arn=BULK_ARN)


def test_bulk_backlog_goes_back_to_the_bulk_queue_and_is_counted_as_bulk() -> None:
    h = Harness(limit=2, bulk_queue_arn=BULK_ARN)
    texts = [body(users=[p], message={"title": f"bonus {n}", "summary": "x"}) for n, p in enumerate(phones(5))]
    results = h.run(*(bulk_msg(f"b{n}", t) for n, t in enumerate(texts)), seconds=20)
    sent = [mid for mid, d in results.items() if d is Disposition.DELIVERED]
    deferred = [mid for mid, d in results.items() if d is Disposition.DEFERRED]
    assert len(sent) == 2
    assert len(deferred) == 3
    assert {d.message.event_source_arn for d in h.backlog.received} == {BULK_ARN}
    assert h.metrics["BulkCalls"] == 2
    assert h.metrics["BulkCallsDeferred"] == 3
    assert h.metrics["BulkDeferredCallMilliseconds"] > 0
    assert h.metrics["TransactionalCalls"] == 0


def test_transactional_calls_are_counted_as_transactional() -> None:
    h = Harness(bulk_queue_arn=BULK_ARN)
    results = h.run(
        msg("t1", body(users=phones(1), message=SHIPPED)), bulk_msg("b1", body(users=phones(1), message=BONUS))
    )
    assert set(results.values()) == {Disposition.DELIVERED}
    assert h.metrics["TransactionalCalls"] == 1
    assert h.metrics["BulkCalls"] == 1


def test_a_merged_call_with_any_transactional_request_is_transactional() -> None:
    h = Harness(bulk_queue_arn=BULK_ARN)
    same = body(users=phones(1), message=SHIPPED)
    other = body(users=phones(1, start=1), message=SHIPPED)
    h.run(msg("t1", same), bulk_msg("b1", other))
    assert len(h.api.calls) == 1
    assert h.metrics["TransactionalCalls"] == 1
    assert h.metrics["BulkCalls"] == 0


def test_without_a_bulk_queue_every_record_is_transactional() -> None:
    h = Harness()
    h.run(msg("t1", body(users=phones(1))), bulk_msg("b1", body(users=phones(1), message=BONUS)))
    assert h.metrics["TransactionalCalls"] == 2
    assert QUEUE_ARN != BULK_ARN


def test_bulk_queue_arn_is_read_once_and_checked() -> None:
    import pytest

    from imshop_push.domain.bearer_key import ConfigError
    from imshop_push.entrypoints.config import Settings

    env = {"IMSHOP_API_URL": "https://imshop.example/push"}
    assert Settings.from_env(env).bulk_queue_arn is None
    assert Settings.from_env({**env, "BULK_QUEUE_ARN": BULK_ARN}).bulk_queue_arn == BULK_ARN
    with pytest.raises(ConfigError, match="BULK_QUEUE_ARN"):
        Settings.from_env({**env, "BULK_QUEUE_ARN": "imshop-push-bulk"})


def test_the_publisher_sends_to_the_lane_it_is_told() -> None:
    from typing import Any, cast

    from imshop_push.producers.publisher import (
        LaneQueues,
        NotificationDraft,
        publish_notification,
        publish_notifications,
    )

    class Sqs:
        def __init__(self) -> None:
            self.urls: list[str] = []

        def send_message(self, **kwargs: Any) -> dict[str, Any]:
            self.urls.append(kwargs["QueueUrl"])
            return {"MessageId": "m"}

        def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
            self.urls.append(kwargs["QueueUrl"])
            return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in kwargs["Entries"]], "Failed": []}

    sqs = Sqs()
    queues = LaneQueues(transactional="https://sqs/requests", bulk="https://sqs/bulk")
    publish_notification(cast(Any, sqs), queues, user_ids=["1"], title="t", summary="s")
    publish_notification(cast(Any, sqs), queues, lane="bulk", user_ids=["1"], title="t", summary="s")
    draft = NotificationDraft(user_ids=["1"], title="t", summary="s")
    publish_notifications(cast(Any, sqs), queues, [draft], lane="bulk")
    publish_notification(cast(Any, sqs), "https://sqs/as-given", lane="bulk", user_ids=["1"], title="t", summary="s")
    assert sqs.urls == ["https://sqs/requests", "https://sqs/bulk", "https://sqs/bulk", "https://sqs/as-given"]


def test_poison_goes_to_its_own_lanes_dead_letter_queue() -> None:
    """What the dispatcher dead-letters itself lands where SQS's redrive policy would put it: a redrive of the
    bulk DLQ then returns campaigns to the bulk lane, not ahead of the order statuses."""
    sinks: dict[str, FakeDeadLetters] = {}

    def dead_letter_sink(_sqs: Callable[[], Any], queue_url: str) -> FakeDeadLetters:
        return sinks.setdefault(queue_url, FakeDeadLetters())

    env = {
        "IMSHOP_API_URL": "https://imshop.example/push/token",
        "DEAD_LETTER_QUEUE_URL": "https://sqs.example/requests-dlq",
        "BULK_QUEUE_ARN": BULK_ARN,
    }

    def dead_lettered(settings: Settings) -> dict[str, list[str]]:
        sinks.clear()
        runtime = Runtime(
            settings,
            metric=lambda _name, _value: None,
            api_client=FakeImshopClient,
            dead_letter_sink=dead_letter_sink,
            backlog_sink=lambda _sqs: FakeBacklog(),
            aws_client=lambda _service: object(),
        )
        runtime.handle([msg("t-bad", "{"), bulk_msg("b-bad", "{"), bulk_msg("b-bad-2", "[]")], remaining_seconds=60)
        return {url: sorted(p.message.message_id for p in sink.received) for url, sink in sinks.items()}

    bulk_dlq = "https://sqs.example/bulk-dlq"
    assert dead_lettered(Settings.from_env({**env, "BULK_DEAD_LETTER_QUEUE_URL": bulk_dlq})) == {
        "https://sqs.example/requests-dlq": ["t-bad"],
        bulk_dlq: ["b-bad", "b-bad-2"],
    }
    # A stack without a bulk DLQ (as before lanes had one) keeps every dead letter in the one it has.
    assert dead_lettered(Settings.from_env(env)) == {"https://sqs.example/requests-dlq": ["b-bad", "b-bad-2", "t-bad"]}
    # And the other way round: no DEAD_LETTER_QUEUE_URL, yet a bulk DLQ; nothing poison is dropped.
    only_bulk = {**env, "DEAD_LETTER_QUEUE_URL": "", "BULK_DEAD_LETTER_QUEUE_URL": bulk_dlq}
    assert dead_lettered(Settings.from_env(only_bulk)) == {bulk_dlq: ["b-bad", "b-bad-2", "t-bad"]}


def test_a_dead_letter_queue_that_refuses_returns_only_its_own_records() -> None:
    transactional, bulk = FakeDeadLetters(), FakeDeadLetters()
    bulk.fail_ids = {"b1"}
    sink = DeadLettersByLane(Lanes(BULK_ARN), transactional=transactional, bulk=bulk)
    poison = [Poison(msg("t1", "{"), "bad"), Poison(bulk_msg("b1", "{"), "bad")]
    assert sink.send(poison) == {"b1"}
    assert [p.message.message_id for p in transactional.received] == ["t1"]
