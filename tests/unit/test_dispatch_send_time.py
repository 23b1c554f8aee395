"""Send time: a request is not sent before its sendAt, at any horizon, and bulk requests wait out the quiet
hours. Held requests go back to the queue as new messages (fresh receive counts), unclaimed, and expire while
held like any other. The clock is T0 = 2027-01-15 08:00:00Z (11:00 in Moscow)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from harness import BONUS, Harness, body, msg, requeued_copy

from fake_clock import T0
from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Deferral
from imshop_push.domain.send_time import QuietHours, SendTime, parse_window
from imshop_push.domain.state import ClaimStatus

BULK_ARN = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-bulk"
TTL = 14 * 24 * 3600


def scheduled(send_at: str | float, **fields: object) -> str:
    document = json.loads(body(users=["u1"], **fields))  # type: ignore[arg-type]
    if not isinstance(send_at, str):
        send_at = datetime.fromtimestamp(send_at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    document["sendAt"] = send_at
    return json.dumps(document)


def quiet(hours: str, zone: str = "Europe/Moscow") -> SendTime:
    window = parse_window(hours)
    assert window is not None
    return SendTime(TTL, QuietHours(*window, ZoneInfo(zone)))


def bulk(message_id: str, text: str) -> InboundMessage:
    return msg(message_id, text)._replace(event_source_arn=BULK_ARN)


def follow(h: Harness, message: InboundMessage, *, hops: int = 10) -> list[Deferral]:
    """Run the message, then each held copy when SQS would hand it back, until it is no longer held."""
    copies: list[Deferral] = []
    for hop in range(hops):
        before = len(h.backlog.received)
        if h.run(message) != {message.message_id: Disposition.HELD}:
            return copies
        (copy,) = h.backlog.received[before:]
        copies.append(copy)
        h.clock.now += copy.delay_seconds
        message = requeued_copy(copy, f"{message.message_id.split('/')[0]}/{hop}")
    raise AssertionError("still held")


def test_a_request_due_later_is_held_unclaimed_and_comes_back_when_due() -> None:
    h = Harness()

    assert h.run(msg("m", scheduled(T0 + 120.25, key="k"))) == {"m": Disposition.HELD}

    (copy,) = h.backlog.received
    assert copy.delay_seconds == 120, "SQS delays are whole seconds: the rest is waited out when it is back"
    assert h.api.calls == []
    probe = h.state.claim_many([("k", "other content")], attempt_id="probe", now=T0, lease_until=T0)
    assert probe["k"].status is ClaimStatus.CLAIMED, "a held request holds no claim (and writes no progress)"
    assert h.metrics["RequestsHeld"] == 1


def test_sent_at_its_send_at_not_before() -> None:
    h = Harness()

    copies = follow(h, msg("m", scheduled(T0 + 120.25)))

    assert [c.delay_seconds for c in copies] == [120]
    (call,) = h.api.calls
    assert call.at == T0 + 120.25, "to the millisecond: the last quarter second is waited out in the execution"


def test_a_horizon_beyond_sqs_delay_is_chained_in_hops_of_at_most_fifteen_minutes() -> None:
    h = Harness()
    due = T0 + 2 * 3600 + 0.5

    copies = follow(h, msg("m", scheduled(due)))

    assert [c.delay_seconds for c in copies] == [900] * 8
    assert all(c.message.receive_count == 1 for c in copies), "each hop is a new message: never towards the DLQ"
    (call,) = h.api.calls
    assert call.at == due


def test_a_copy_back_early_is_held_again_and_never_sent_early() -> None:
    h = Harness()
    assert h.run(msg("m", scheduled(T0 + 60))) == {"m": Disposition.HELD}

    h.clock.now += 58.5
    assert h.run(requeued_copy(h.backlog.received[0], "m/0")) == {"m/0": Disposition.HELD}
    assert h.backlog.received[1].delay_seconds == 1
    assert h.api.calls == []
    h.clock.now += 1
    assert h.run(requeued_copy(h.backlog.received[1], "m/1")) == {"m/1": Disposition.DELIVERED}
    assert h.api.calls[0].at == T0 + 60


def test_a_past_or_present_send_at_is_sent_at_once() -> None:
    h = Harness()

    results = h.run(msg("past", scheduled("2020-01-01T00:00:00+03:00")), msg("now", scheduled(T0, message=BONUS)))

    assert results == {"past": Disposition.DELIVERED, "now": Disposition.DELIVERED}
    assert h.backlog.received == []


def test_the_held_copy_carries_a_message_id_key_and_stays_the_same_request() -> None:
    h = Harness()
    message = msg("m", scheduled(T0 + 10))

    follow(h, message)

    copy = h.backlog.received[0]
    assert (copy.idempotency_key, copy.key_is_message_id) == ("m", True)
    assert h.run(message) == {"m": Disposition.DUPLICATE}, "the original redelivered is the same request"
    assert len(h.api.calls) == 1


def test_send_at_without_an_offset_is_poison_naming_it() -> None:
    h = Harness()

    results = h.results(msg("m", scheduled("2027-01-15T10:00:00")))

    assert results["m"].disposition is Disposition.DEAD_LETTERED
    assert results["m"].reason.startswith("sendAt: must be an RFC 3339 timestamp with a time zone")


def test_send_at_beyond_the_state_ttl_is_poison_naming_it() -> None:
    h = Harness(send_time=SendTime(max_ahead_seconds=3600))

    results = h.results(msg("far", scheduled(T0 + 3600.001)), msg("edge", scheduled(T0 + 3600, message=BONUS)))

    assert results["far"].disposition is Disposition.DEAD_LETTERED
    assert results["far"].reason.startswith("sendAt: is more than 3600 s ahead (the state TTL")
    assert results["edge"].disposition is Disposition.HELD


def test_a_request_that_expires_while_held_is_dropped_when_it_comes_back() -> None:
    h = Harness()

    follow(h, msg("m", scheduled(T0 + 600, expires_at=T0 + 300)))

    assert h.api.calls == []
    assert h.metrics["RequestsExpired"] == 1


def test_bulk_requests_inside_quiet_hours_are_held_until_they_end_and_transactional_ones_are_not() -> None:
    h = Harness(bulk_queue_arn=BULK_ARN, send_time=quiet("10:00-12:00"))  # 11:00 in Moscow now

    assert h.run(bulk("b", body(users=["u1"], message=BONUS)), msg("t", body(users=["u2"]))) == {
        "b": Disposition.HELD,
        "t": Disposition.DELIVERED,
    }
    assert h.backlog.received[0].delay_seconds == 900
    h.clock.now += 900

    follow(h, requeued_copy(h.backlog.received[0], "b/0"))

    bulk_call = h.api.calls[1]
    assert bulk_call.payload["message"]["title"] == BONUS["title"]
    assert bulk_call.at == T0 + 3600


def test_quiet_hours_wrap_midnight_and_end_exclusive() -> None:
    h = Harness(bulk_queue_arn=BULK_ARN, send_time=quiet("22:00-08:00", "UTC"))  # T0 is 08:00 UTC: just ended

    assert h.run(bulk("after", body(users=["u1"]))) == {"after": Disposition.DELIVERED}

    h.clock.now = T0 - 10 * 3600  # 22:00 UTC the day before: start inclusive
    assert h.run(bulk("night", body(users=["u2"], message=BONUS))) == {"night": Disposition.HELD}
    assert h.backlog.received[-1].delay_seconds == 900


def test_quiet_hours_are_local_time_of_their_zone() -> None:
    utc = Harness(bulk_queue_arn=BULK_ARN, send_time=quiet("10:00-12:00", "UTC"))
    moscow = Harness(bulk_queue_arn=BULK_ARN, send_time=quiet("10:00-12:00", "Europe/Moscow"))

    assert utc.run(bulk("b", body(users=["u1"]))) == {"b": Disposition.DELIVERED}
    assert moscow.run(bulk("b", body(users=["u1"]))) == {"b": Disposition.HELD}


def test_a_bulk_send_at_inside_quiet_hours_waits_for_their_end() -> None:
    h = Harness(bulk_queue_arn=BULK_ARN, send_time=quiet("11:20-11:40"))  # sendAt 11:30 in Moscow

    copies = follow(h, bulk("b", scheduled(T0 + 1800)))

    assert sum(c.delay_seconds for c in copies) == 2400
    assert h.api.calls[0].at == T0 + 2400


def test_a_bulk_request_expires_while_held_for_quiet_hours() -> None:
    h = Harness(bulk_queue_arn=BULK_ARN, send_time=quiet("10:00-12:00"))

    follow(h, bulk("b", body(users=["u1"], expires_at=T0 + 1000)))

    assert h.api.calls == []
    assert h.metrics["RequestsExpired"] == 1


def test_a_held_request_that_cannot_be_re_enqueued_goes_back_to_sqs() -> None:
    h = Harness()
    h.backlog.fail_ids = {"m"}

    assert h.run(msg("m", scheduled(T0 + 60, key="k"))) == {"m": Disposition.RETRY}
    assert h.api.calls == []


def test_less_than_a_second_ahead_is_waited_out_in_the_execution_not_re_enqueued() -> None:
    h = Harness()

    assert h.run(msg("m", scheduled(T0 + 0.4)), msg("now", body(users=["u2"], message=BONUS))) == {
        "m": Disposition.DELIVERED,
        "now": Disposition.DELIVERED,
    }
    assert h.backlog.received == []
    assert min(c.at for c in h.api.calls) == T0 + 0.4
