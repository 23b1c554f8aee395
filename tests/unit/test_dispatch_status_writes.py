"""What a status lookup needs costs one extra item write per request in its whole life, however often it comes
back: held over many hops, deferred over many receives, expired or dead-lettered before any claim; and what the
settlements record answers the lookup."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fakes import SENT
from harness import BONUS, SHIPPED, Harness, body, drain, msg, phones, requeued_copy
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_clock import T0
from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import CallOutcome, CallResult
from imshop_push.domain.status import StoredRequest, answer
from imshop_push.domain.status_record import Outcome, member_digests, to_ms


def later(seconds: float, **fields: object) -> str:
    document = json.loads(body(users=["u1"], **fields))  # type: ignore[arg-type]
    document["sendAt"] = datetime.fromtimestamp(T0 + seconds, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(document)


def hold_until_due(h: Harness, message: InboundMessage) -> dict[str, Disposition]:
    """Each held copy when SQS hands it back, until it is no longer held."""
    for hop in range(200):
        before = len(h.backlog.received)
        results = h.run(message)
        if results != {message.message_id: Disposition.HELD}:
            return results
        (copy,) = h.backlog.received[before:]
        h.clock.now += copy.delay_seconds
        message = requeued_copy(copy, f"held/{hop}")
    raise AssertionError("still held")


@settings(max_examples=15, deadline=None)
@given(requests=st.integers(1, 6), recipients=st.integers(1, 5))
def test_requests_deferred_over_many_receives_write_one_status_item_each(requests: int, recipients: int) -> None:
    h = Harness(limit=1, window=60.0)
    texts = [{"title": f"Заказ {n}", "summary": "s"} for n in range(requests)]
    messages = [msg(f"m{n}", body(users=phones(recipients, n * 10), message=t)) for n, t in enumerate(texts)]

    drain(h, messages, seconds=30.0, rounds=60)

    assert len(h.api.calls) == requests
    assert h.state.status_writes == requests
    for n in range(requests):
        kept = h.state.status[f"m{n}"]
        assert kept.total == recipients
        assert kept.members == member_digests(f"m{n}", [("userIds", p) for p in phones(recipients, n * 10)])


def test_a_request_held_over_many_hops_writes_its_status_item_once() -> None:
    h = Harness()
    results = hold_until_due(h, msg("m", later(3 * 3600 + 0.5, key="k")))  # 12 hops of 15 minutes
    assert list(results.values()) == [Disposition.DELIVERED]
    assert len(h.backlog.received) == 12
    assert h.state.status_writes == 1
    assert h.state.status["k"].held_until_ms == round((T0 + 3 * 3600 + 0.5) * 1000)


def test_expired_or_dead_lettered_before_any_claim_writes_one_item_and_not_again_if_it_had_one() -> None:
    h = Harness()
    past = T0 - 1
    h.run(msg("e", body(users=["u1"], key="expired", expires_at=past)), msg("p", '{"idempotencyKey": "poison"}'))
    assert h.state.status_writes == 2
    assert h.state.status["expired"].expired
    assert h.state.status["poison"].dead_letter is not None

    h.run(msg("w", later(3600, key="held-then-expired", expires_at=T0 + 1800)))
    assert h.state.status_writes == 3
    h.clock.now += 3600
    h.run(msg("w2", later(3600, key="held-then-expired", expires_at=T0 + 1800)))
    assert h.state.status_writes == 3, "its status item already says when it expires"


def test_a_key_reused_with_other_content_leaves_the_status_of_the_request_that_owns_it() -> None:
    h = Harness()
    h.run(msg("a", body(users=["u1"], key="k", message=SHIPPED)))
    h.run(msg("b", body(users=["u1"], key="k", message=BONUS)))
    assert h.state.status_writes == 1
    assert h.state.status["k"].dead_letter is None


def test_a_first_attempt_that_never_settled_leaves_the_status_item_to_the_next_settlement() -> None:
    h = Harness()
    h.state.failing.add("settle")
    assert h.run(msg("m", body(users=["u1"], key="k"))) == {"m": Disposition.RETRY}
    assert h.state.status_writes == 0
    h.state.failing.clear()
    h.clock.now += 120  # the lease of the execution that could not settle is over

    assert h.run(msg("m", body(users=["u1"], key="k"))) == {"m": Disposition.DELIVERED}
    assert len(h.api.calls) == 1, "delivered by the first attempt"
    assert h.state.status_writes == 1
    assert h.state.status["k"].total == 1


def test_what_the_settlement_records_answers_a_request_refused_after_part_of_it_was_sent() -> None:
    h = Harness(max_recipients=1)
    refusal = "IMSHOP answered 400: Bad Request"
    h.api.script = [SENT, CallOutcome(CallResult.REJECTED, refusal, 400)]

    assert h.run(msg("m", body(users=["u1", "u2"], key="k"))) == {"m": Disposition.DEAD_LETTERED}

    report = h.state.reports["k"]
    assert (report.outcome, report.calls, report.reached, report.total, report.reason) == (
        Outcome.DEAD_LETTERED,
        1,
        1,
        2,
        refusal,
    )
    request = StoredRequest(False, 0, ("a",), report)
    found = answer("k", now_ms=to_ms(h.clock()), request=request, cancelled=False, cancelled_at=None, record=None)
    assert found.as_json() == {
        "key": "k",
        "fate": "partly-sent",
        "at": to_ms(h.api.calls[0].at),
        "calls": 1,
        "recipients": {"reached": 1, "total": 2},
        "reason": refusal,
    }
