"""Poison: invalid records and requests IMSHOP refuses go to the DLQ with their reason; the rest
of the batch is sent."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from fakes import SENT
from harness import BONUS, SHIPPED, Harness, body, msg

from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.model import CallOutcome, CallResult


def test_poison_goes_to_the_dlq_with_its_reason_and_the_rest_of_the_batch_is_sent() -> None:
    h = Harness()
    poison_body = json.dumps({"userIds": ["79990000001"], "message": {"title": "t"}})

    results = h.run(msg("bad", poison_body, source="crm"), msg("good", body(users=["79990000002"])))

    assert results == {"bad": Disposition.DEAD_LETTERED, "good": Disposition.DELIVERED}
    [poison] = h.dlq.received
    assert poison.message.message_id == "bad"
    assert poison.message.body == poison_body
    assert poison.message.message_attributes == {"source": {"dataType": "String", "stringValue": "crm"}}
    assert poison.reason == "message.summary: is a required property"
    assert [c.recipients for c in h.api.calls] == [[("userIds", "79990000002")]]
    assert h.metrics["RequestsInvalid"] == 1
    assert h.metrics["DeadLettered"] == 1


def test_a_batch_of_only_poison_makes_no_call() -> None:
    h = Harness()

    results = h.run(msg("a", "not json"), msg("b", "[]"), msg("c", json.dumps({"userId": ["1"], "message": SHIPPED})))

    assert set(results.values()) == {Disposition.DEAD_LETTERED}
    assert h.api.calls == []
    assert [p.reason.split(":")[0] for p in h.dlq.received] == ["body", "body", "userId"]


def test_a_failed_dlq_write_sends_that_record_back_to_sqs() -> None:
    h = Harness()
    h.dlq.fail_ids = {"bad-2"}

    results = h.results(msg("bad-1", "not json"), msg("bad-2", "{}"), msg("good", body(users=["u1"])))

    assert results["bad-1"].disposition is Disposition.DEAD_LETTERED
    assert results["bad-2"].disposition is Disposition.RETRY
    assert results["good"].disposition is Disposition.DELIVERED


def test_without_a_dlq_poison_is_dropped_not_retried() -> None:
    h = Harness(dead_letters=False)

    results = h.run(msg("bad", "not json"), msg("good", body(users=["u1"])))

    assert results == {"bad": Disposition.DEAD_LETTERED, "good": Disposition.DELIVERED}


def test_imshop_400_is_dead_lettered_with_imshops_message_and_not_retried() -> None:
    h = Harness()
    vendor = 'IMSHOP answered 400: Bad Request: child "userIds" fails because ["userIds" must be an array]'
    h.api.script = [CallOutcome(CallResult.REJECTED, vendor, 400)]

    results = h.results(msg("m1", body(users=["u1"])))

    assert results["m1"].disposition is Disposition.DEAD_LETTERED
    assert 'child "userIds" fails' in results["m1"].reason
    [poison] = h.dlq.received
    assert poison.message.message_id == "m1"
    assert 'child "userIds" fails' in poison.reason
    assert len(h.api.calls) == 1
    assert h.metrics["ImshopCallsRejected"] == 1


def test_a_400_on_a_merged_call_is_tried_request_by_request_and_only_the_refused_one_is_poison() -> None:
    h = Harness()

    def imshop(payload: dict[str, Any]) -> CallOutcome:
        if "bad-id" in payload.get("userIds", []):
            return CallOutcome(CallResult.REJECTED, "IMSHOP answered 400: Bad Request", 400)
        return SENT

    h.api.answer = imshop
    results = h.run(
        msg("m1", body(users=["u1", "shared"])),
        msg("m2", body(users=["bad-id", "shared"])),
        msg("m3", body(users=["u3", "shared"])),
        msg("other", body(users=["u4"], message=BONUS)),
    )

    assert results == {
        "m1": Disposition.DELIVERED,
        "m2": Disposition.DEAD_LETTERED,
        "m3": Disposition.DELIVERED,
        "other": Disposition.DELIVERED,
    }
    assert [p.message.message_id for p in h.dlq.received] == ["m2"]
    assert "400" in h.dlq.received[0].reason
    delivered = h.api.delivered()
    accepted = Counter(
        (c.payload["message"]["title"], f, r)
        for c in h.api.calls
        if "bad-id" not in c.payload.get("userIds", [])
        for f, r in c.recipients
    )
    assert accepted[(SHIPPED["title"], "userIds", "shared")] == 1, "a shared recipient is sent once, not per request"
    assert accepted[(SHIPPED["title"], "userIds", "u1")] == 1
    assert accepted[(SHIPPED["title"], "userIds", "u3")] == 1
    assert delivered[(SHIPPED["title"], "userIds", "bad-id")] == 2, "the merged call and the isolated one"


def test_a_400_on_a_single_request_call_dead_letters_it_with_imshops_message() -> None:
    h = Harness()
    h.api.script = [CallOutcome(CallResult.REJECTED, 'IMSHOP answered 400: Bad Request: child "userIds" fails', 400)]

    results = h.run(msg("m1", body(users=["u1"])))

    assert results == {"m1": Disposition.DEAD_LETTERED}
    assert h.dlq.received[0].reason == 'IMSHOP answered 400: Bad Request: child "userIds" fails'
