"""The inbound contract: body forms, default idempotency keys, and poison reasons.

A poison reason is what a person reads on the dead-letter message, so the exact wording matters: it must
name the field (with its path) and the rule that was broken.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.validation import validate
from aws_lambda_powertools.utilities.validation.exceptions import SchemaValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from imshop_push.domain.model import NotificationRequest
from imshop_push.domain.parsing import MAX_KEY_BYTES, PoisonMessageError, parse_body, storable_key
from imshop_push.domain.validation import request_schema, validate_request

SQS_ID = "9f1c1b52-5c2e-4a4e-8a3c-3f2d7c0f6a11"
EVENT_ID = "7bf73129-1428-4cd3-a780-95db273d1602"
SNS_ID = "95df01b4-ee98-5cb9-9903-4c221d41eb5e"

MESSAGE = {"title": "Заказ отправлен", "summary": "Заказ 1042 передан в доставку"}
REQUEST: dict[str, Any] = {"userIds": ["79991234567"], "message": MESSAGE}

SCHEMA = request_schema()
TITLE_MAX: int = SCHEMA["properties"]["message"]["properties"]["title"]["maxLength"]
SUMMARY_MAX: int = SCHEMA["properties"]["message"]["properties"]["summary"]["maxLength"]
KEY_MAX: int = SCHEMA["properties"]["idempotencyKey"]["maxLength"]


def eventbridge(detail: Any, *, event_id: Any = EVENT_ID) -> dict[str, Any]:
    """As EventBridge delivers an event to an SQS target without an input transformer."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Bonus reminder",
        "source": "retailer.crm",
        "account": "123456789012",
        "time": "2026-05-01T09:00:00Z",
        "region": "eu-central-1",
        "resources": [],
        "detail": detail,
    }


def sns(message: Any, *, message_id: str = SNS_ID) -> dict[str, Any]:
    """As SNS delivers a notification to an SQS subscription without raw message delivery."""
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": "arn:aws:sns:eu-central-1:123456789012:order-events",
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2026-05-01T09:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.eu-central-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.eu-central-1.amazonaws.com/?Action=Unsubscribe",
    }


def with_fields(**fields: Any) -> dict[str, Any]:
    return {**REQUEST, **fields}


def parse(document: Any) -> Any:
    return parse_body(json.dumps(document), message_id=SQS_ID)


def reason_of(body: str) -> str:
    with pytest.raises(PoisonMessageError) as caught:
        parse_body(body, message_id=SQS_ID)
    assert caught.value.reason == str(caught.value)
    return caught.value.reason


def reason_for(document: Any) -> str:
    return reason_of(json.dumps(document))


# --- body forms and default idempotency keys ----------------------------------------------------------


def test_raw_request_is_parsed_and_keyed_by_the_sqs_message_id() -> None:
    request = parse({**REQUEST, "deeplink": "slug://orders/1042"})

    assert request.message_id == SQS_ID
    assert request.content.title == MESSAGE["title"]
    assert request.content.summary == MESSAGE["summary"]
    assert request.content.deeplink == "slug://orders/1042"
    assert request.recipients == (("userIds", "79991234567"),)
    assert request.expires_at is None
    assert request.idempotency_key == SQS_ID
    assert request.key_is_message_id is True


def test_deeplink_is_none_when_absent() -> None:
    assert parse(REQUEST).content.deeplink is None


def test_idempotency_key_field_wins_over_the_sqs_message_id() -> None:
    request = parse(with_fields(idempotencyKey="order-1042-shipped"))

    assert request.idempotency_key == "order-1042-shipped"
    assert request.key_is_message_id is False


def test_eventbridge_detail_is_the_request_and_the_event_id_is_the_key() -> None:
    request = parse(eventbridge(REQUEST))

    assert request.recipients == (("userIds", "79991234567"),)
    assert request.content.title == MESSAGE["title"]
    assert request.idempotency_key == EVENT_ID
    assert request.key_is_message_id is False


def test_sns_message_is_the_request_and_the_sns_message_id_is_the_key() -> None:
    request = parse(sns(REQUEST))

    assert request.recipients == (("userIds", "79991234567"),)
    assert request.idempotency_key == SNS_ID
    assert request.key_is_message_id is False


def test_sns_carrying_eventbridge_is_keyed_by_the_innermost_envelope() -> None:
    request = parse(sns(eventbridge(REQUEST)))

    assert request.content.summary == MESSAGE["summary"]
    assert request.idempotency_key == EVENT_ID
    assert request.key_is_message_id is False


@pytest.mark.parametrize(
    "wrap",
    [lambda r: r, eventbridge, sns, lambda r: sns(eventbridge(r))],
    ids=["raw", "eventbridge", "sns", "sns+eventbridge"],
)
def test_idempotency_key_field_wins_over_every_envelope_id(wrap: Any) -> None:
    request = parse(wrap(with_fields(idempotencyKey="bonus-2026-05")))

    assert request.idempotency_key == "bonus-2026-05"
    assert request.key_is_message_id is False


def test_the_same_request_has_the_same_fingerprint_in_every_body_form() -> None:
    fingerprints = {parse(form).fingerprint for form in (REQUEST, eventbridge(REQUEST), sns(REQUEST))}

    assert len(fingerprints) == 1


def test_poison_inside_an_envelope_names_the_request_field_where_it_sits_in_the_body() -> None:
    bad = {"userIds": ["1"], "message": {"title": "t"}}

    assert reason_for(eventbridge(bad)) == "detail.message.summary: is a required property"
    assert reason_for(sns(bad)) == "message.summary: is a required property"  # the Message's own JSON
    assert reason_for(sns(eventbridge(bad))) == "detail.message.summary: is a required property"


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        ({"message": MESSAGE}, "detail.userIds: at least one recipient is required in userIds or installIds"),
        ({**REQUEST, "priority": "high"}, "detail.priority: is not an allowed field"),
        ({**REQUEST, "userIds": "79991234567"}, "detail.userIds: must be an array, got string"),
        ({**REQUEST, "expiresAt": "tomorrow"}, "detail.expiresAt: must be an RFC 3339 timestamp"),
        ({**REQUEST, "expiresAt": "2026-13-01T00:00:00Z"}, "detail.expiresAt: '2026-13-01T00:00:00Z' is not a valid"),
        ({**REQUEST, "message": {**MESSAGE, "summary": "🎁" * 1500}}, "detail.message: title, summary and deeplink"),
        ({**REQUEST, "message": {**MESSAGE, "title": "\ud800"}}, "detail: contains an unpaired UTF-16 surrogate"),
    ],
    ids=["no recipient", "unknown field", "wrong type", "expiry shape", "expiry date", "too big", "surrogate"],
)
def test_every_reason_for_an_eventbridge_detail_names_the_path_inside_detail(
    detail: dict[str, Any], reason: str
) -> None:
    assert reason_for(eventbridge(detail)).startswith(reason)


def test_eventbridge_detail_that_is_not_an_object_is_poison() -> None:
    assert reason_for(eventbridge(["not", "an", "object"])).startswith("detail: must be a JSON object")


def test_sns_message_that_is_not_json_is_poison() -> None:
    assert reason_for(sns("userIds=1")).startswith("Message: is not valid JSON")


def test_sns_message_that_is_not_an_object_is_named_as_the_message() -> None:
    assert reason_for(sns([REQUEST])) == "Message: must be a JSON object, got array"


def test_a_request_serialised_twice_is_named_as_such() -> None:
    twice = json.dumps(REQUEST)

    assert (
        reason_for(twice)
        == "body: must be a JSON object, got string holding JSON (serialised twice?): send the object itself"
    )
    assert reason_for(sns(json.dumps(twice))).startswith("Message: must be a JSON object, got string holding JSON")


@pytest.mark.parametrize(
    "event_id", [None, "", 42, ["a"], {"id": "x"}], ids=["null", "empty", "number", "array", "object"]
)
def test_an_envelope_id_that_is_no_string_is_no_key(event_id: Any) -> None:
    # str(None) == "None" would make every such event one request: the later ones would be dropped as duplicates.
    request = parse(eventbridge(REQUEST, event_id=event_id))

    assert request.idempotency_key == SQS_ID
    assert request.key_is_message_id is True

    assert parse(sns(eventbridge(REQUEST, event_id=event_id))).idempotency_key == SNS_ID  # the outer id holds


# --- poison: the body -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["not json", "{", "", "{'userIds': ['1']}"])
def test_body_that_is_not_json_is_poison(body: str) -> None:
    assert reason_of(body).startswith("body: is not valid JSON")


@pytest.mark.parametrize(
    ("body", "kind"),
    [("[]", "array"), ('[{"userIds": ["1"]}]', "array"), ('"hello"', "string"), ("null", "null"), ("42", "number")],
)
def test_body_that_is_not_an_object_is_poison(body: str, kind: str) -> None:
    assert reason_of(body) == f"body: must be a JSON object, got {kind}"


# --- poison: schema reasons name the field and the rule -------------------------------------------------

SCHEMA_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("missing message", {"userIds": ["1"]}, "message: is a required property"),
    ("missing title", {"userIds": ["1"], "message": {"summary": "s"}}, "message.title: is a required property"),
    ("missing summary", {"userIds": ["1"], "message": {"title": "t"}}, "message.summary: is a required property"),
    (
        "userId typo",
        {"userId": ["1"], "message": MESSAGE},
        "userId: is not an allowed field (did you mean userIds?)",
    ),
    (
        "installId typo",
        {"installId": ["1"], "message": MESSAGE},
        "installId: is not an allowed field (did you mean installIds?)",
    ),
    ("userIds not an array", {"userIds": "79991234567", "message": MESSAGE}, "userIds: must be an array, got string"),
    (
        "userIds item not a string",
        {"userIds": [79991234567], "message": MESSAGE},
        "userIds[0]: must be a string, got number",
    ),
    ("installIds null", {"installIds": None, "message": MESSAGE}, "installIds: must be an array, got null"),
    ("message not an object", {"userIds": ["1"], "message": "hi"}, "message: must be an object, got string"),
    (
        "title not a string",
        {"userIds": ["1"], "message": {"title": 5, "summary": "s"}},
        "message.title: must be a string, got number",
    ),
    ("empty userId", {"userIds": [""], "message": MESSAGE}, "userIds[0]: must not be empty"),
    ("empty userId later", {"userIds": ["1", "2", ""], "message": MESSAGE}, "userIds[2]: must not be empty"),
    ("empty installId", {"installIds": ["iid-1", ""], "message": MESSAGE}, "installIds[1]: must not be empty"),
    ("empty title", {"userIds": ["1"], "message": {"title": "", "summary": "s"}}, "message.title: must not be empty"),
    (
        "empty summary",
        {"userIds": ["1"], "message": {"title": "t", "summary": ""}},
        "message.summary: must not be empty",
    ),
    ("deeplink null", {**REQUEST, "deeplink": None}, "deeplink: must be a string, got null"),
    ("deeplink empty", {**REQUEST, "deeplink": ""}, "deeplink: must not be empty"),
    ("deeplink with space", {**REQUEST, "deeplink": "slug://browse me"}, "deeplink: must not contain whitespace"),
    ("deeplink with tab", {**REQUEST, "deeplink": "slug://browse\t"}, "deeplink: must not contain whitespace"),
    ("deeplink with newline", {**REQUEST, "deeplink": "slug://a\nb"}, "deeplink: must not contain whitespace"),
    ("idempotencyKey empty", {**REQUEST, "idempotencyKey": ""}, "idempotencyKey: must not be empty"),
    ("idempotencyKey number", {**REQUEST, "idempotencyKey": 7}, "idempotencyKey: must be a string, got number"),
    ("expiresAt number", {**REQUEST, "expiresAt": 1767225600}, "expiresAt: must be a string, got number"),
]


@pytest.mark.parametrize(("document", "reason"), [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES])
def test_schema_violation_reason_names_field_and_rule(document: dict[str, Any], reason: str) -> None:
    assert reason_for(document) == reason


def test_unknown_field_inside_message_is_rejected_naming_its_path() -> None:
    reason = reason_for({"userIds": ["1"], "message": {**MESSAGE, "body": "text"}})

    assert reason.startswith("message.body: is not an allowed field")


def test_unknown_field_without_a_close_match_lists_the_allowed_fields() -> None:
    reason = reason_for({**REQUEST, "priority": "high"})

    assert reason.startswith("priority: is not an allowed field")
    for allowed in ("userIds", "installIds", "message", "deeplink", "idempotencyKey", "expiresAt"):
        assert allowed in reason


@pytest.mark.parametrize(
    "document",
    [
        {"message": MESSAGE},
        {"userIds": [], "message": MESSAGE},
        {"installIds": [], "message": MESSAGE},
        {"userIds": [], "installIds": [], "message": MESSAGE},
    ],
    ids=["both absent", "userIds empty", "installIds empty", "both empty"],
)
def test_no_recipient_at_all_is_poison(document: dict[str, Any]) -> None:
    reason = reason_for(document)

    assert reason.startswith("userIds:")
    assert "installIds" in reason
    assert "at least one recipient" in reason


def test_an_empty_array_is_fine_while_the_other_has_a_recipient() -> None:
    assert parse({"userIds": [], "installIds": ["iid-1"], "message": MESSAGE}).recipients == (("installIds", "iid-1"),)
    assert parse({"userIds": ["u-1"], "installIds": [], "message": MESSAGE}).recipients == (("userIds", "u-1"),)


def test_bounds_are_the_documented_ones() -> None:
    # The documented bounds: title + summary + deeplink stay under the 4 KB APNs/FCM payload.
    assert (TITLE_MAX, SUMMARY_MAX, KEY_MAX) == (200, 1500, 256)


@pytest.mark.parametrize(("field", "bound"), [("title", TITLE_MAX), ("summary", SUMMARY_MAX)])
def test_title_and_summary_up_to_the_bound_are_accepted_in_characters_not_bytes(field: str, bound: int) -> None:
    message = {**MESSAGE, field: "ж" * bound}  # 2 bytes each in UTF-8: the bound counts characters

    assert getattr(parse({"userIds": ["1"], "message": message}).content, field) == "ж" * bound


@pytest.mark.parametrize(("field", "bound"), [("title", TITLE_MAX), ("summary", SUMMARY_MAX)])
def test_title_and_summary_over_the_bound_are_poison(field: str, bound: int) -> None:
    message = {**MESSAGE, field: "x" * (bound + 1)}

    assert reason_for({"userIds": ["1"], "message": message}) == f"message.{field}: must be at most {bound} characters"


def test_idempotency_key_up_to_256_is_accepted_and_over_is_poison() -> None:
    assert parse(with_fields(idempotencyKey="k" * KEY_MAX)).idempotency_key == "k" * KEY_MAX
    assert reason_for(with_fields(idempotencyKey="k" * (KEY_MAX + 1))) == (
        f"idempotencyKey: must be at most {KEY_MAX} characters"
    )


# --- expiresAt ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        ("2026-12-01T18:00:00Z", datetime(2026, 12, 1, 18, 0, tzinfo=UTC)),
        ("2026-12-01T21:00:00+03:00", datetime(2026, 12, 1, 18, 0, tzinfo=UTC)),
        ("2026-12-01T18:00:00.250Z", datetime(2026, 12, 1, 18, 0, 0, 250000, tzinfo=UTC)),
        ("2026-12-01T13:00:00-05:00", datetime(2026, 12, 1, 18, 0, tzinfo=UTC)),
    ],
)
def test_rfc3339_expiry_is_parsed_to_the_right_instant(value: str, instant: datetime) -> None:
    assert parse(with_fields(expiresAt=value)).expires_at == instant


def test_rfc3339_allows_lower_case_t_and_z() -> None:
    # RFC 3339 section 5.6: "T" and "Z" may alternatively be lower case. A valid request must not be
    # dead-lettered for it.
    assert parse(with_fields(expiresAt="2026-12-01t18:00:00z")).expires_at == datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "tomorrow",
        "2026-12-01T18:00:00",  # no time zone: which 18:00?
        "2026-12-01",  # a date, no time
        "2026-12-01 18:00",  # no zone, no T
        "1767225600",  # epoch seconds as a string
        "18:00:00Z",
    ],
)
def test_expiry_that_is_not_rfc3339_or_has_no_zone_is_poison(value: str) -> None:
    reason = reason_for(with_fields(expiresAt=value))

    assert reason.startswith("expiresAt: must be an RFC 3339 timestamp with a time zone")


@pytest.mark.parametrize(
    "value",
    [
        "20261201T180000Z",  # ISO 8601 basic format
        "2026-W49-2T18:00:00Z",  # ISO 8601 week date
        "2026-12-01T18Z",  # no minutes
        "2026-12-01T18:00:00+0300",  # offset without a colon
    ],
)
def test_iso8601_forms_outside_rfc3339_are_poison(value: str) -> None:
    reason = reason_for(with_fields(expiresAt=value))

    assert reason.startswith("expiresAt: must be an RFC 3339 timestamp")


# --- recipients -----------------------------------------------------------------------------------------


def test_recipients_are_deduplicated_preserving_first_seen_order() -> None:
    request = parse({"userIds": ["b", "a", "b", "c", "a"], "installIds": ["i2", "i1", "i2"], "message": MESSAGE})

    assert request.recipients == (
        ("userIds", "b"),
        ("userIds", "a"),
        ("userIds", "c"),
        ("installIds", "i2"),
        ("installIds", "i1"),
    )


def test_a_user_id_and_an_install_id_with_the_same_text_are_two_recipients() -> None:
    request = parse({"userIds": ["same"], "installIds": ["same"], "message": MESSAGE})

    assert request.recipients == (("userIds", "same"), ("installIds", "same"))


recipient_ids = st.lists(st.text(alphabet="abc123", min_size=1, max_size=3), max_size=12)


@given(user_ids=recipient_ids, install_ids=recipient_ids)
def test_recipients_are_the_ordered_union_of_both_fields(user_ids: list[str], install_ids: list[str]) -> None:
    document = {"userIds": user_ids, "installIds": install_ids, "message": MESSAGE}
    expected = [("userIds", u) for u in dict.fromkeys(user_ids)] + [
        ("installIds", i) for i in dict.fromkeys(install_ids)
    ]
    if not expected:
        assert reason_for(document).startswith("userIds:")
        return

    assert list(parse(document).recipients) == expected


# --- fingerprint ----------------------------------------------------------------------------------------


def test_fingerprint_ignores_the_extensions() -> None:
    plain = parse(REQUEST).fingerprint

    assert parse(with_fields(idempotencyKey="k-1")).fingerprint == plain
    assert parse(with_fields(expiresAt="2026-12-01T18:00:00Z")).fingerprint == plain
    assert parse(with_fields(idempotencyKey="k-2", expiresAt="2027-01-01T00:00:00+03:00")).fingerprint == plain


def test_fingerprint_ignores_json_key_order() -> None:
    reordered = json.dumps(
        {"message": {"summary": MESSAGE["summary"], "title": MESSAGE["title"]}, "userIds": ["79991234567"]}
    )

    assert parse_body(reordered, message_id=SQS_ID).fingerprint == parse(REQUEST).fingerprint


@pytest.mark.parametrize(
    "changed",
    [
        with_fields(userIds=["79991234567", "79990000000"]),
        with_fields(userIds=["79990000000"]),
        {"installIds": ["79991234567"], "message": MESSAGE},
        with_fields(message={**MESSAGE, "title": "Заказ доставлен"}),
        with_fields(message={**MESSAGE, "summary": "Другой текст"}),
        with_fields(deeplink="slug://orders/1042"),
    ],
    ids=["recipient added", "recipient changed", "userId became installId", "title", "summary", "deeplink"],
)
def test_fingerprint_changes_with_recipients_or_content(changed: dict[str, Any]) -> None:
    assert parse(changed).fingerprint != parse(REQUEST).fingerprint


@given(
    users=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8),
    installs=st.lists(st.text(min_size=1, max_size=12), max_size=4),
    data=st.data(),
)
def test_fingerprint_treats_recipients_as_a_set(users: list[str], installs: list[str], data: st.DataObject) -> None:
    """A producer's retry from another process may list the same set in another order, or name one twice."""
    given_order = {"userIds": users, "installIds": installs, "message": MESSAGE}
    shuffled_users = data.draw(st.permutations(users + data.draw(st.lists(st.sampled_from(users), max_size=3))))
    shuffled_installs = data.draw(st.permutations(installs + installs[:1]))
    other_order = {"userIds": shuffled_users, "installIds": shuffled_installs, "message": MESSAGE}

    assert parse(other_order).fingerprint == parse(given_order).fingerprint
    if len(set(users)) > 1:
        fewer = [u for u in users if u != users[0]]
        assert parse({**given_order, "userIds": fewer}).fingerprint != parse(given_order).fingerprint


def test_a_fingerprint_of_sorted_unique_recipients_is_what_it_was_before_recipients_were_a_set() -> None:
    """Stored fingerprints of such requests (every single-recipient one) stay valid across the deploy."""
    document = {"userIds": ["79990000001", "79991234567"], "installIds": ["iid-1"], "message": MESSAGE}
    encoded = json.dumps(
        [MESSAGE["title"], MESSAGE["summary"], None, document["userIds"], document["installIds"]],
        ensure_ascii=False,
        separators=(",", ":"),
    )

    assert parse(document).fingerprint == hashlib.blake2b(encoded.encode(), digest_size=20).hexdigest()


@given(
    key=st.text(min_size=1, max_size=40),
    expires=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
        lambda d: d.isoformat()
    ),
)
def test_fingerprint_is_invariant_under_any_extension_values(key: str, expires: str) -> None:
    assert parse(with_fields(idempotencyKey=key, expiresAt=expires)).fingerprint == parse(REQUEST).fingerprint


# --- validate_request is Powertools' validate(), compiled once ------------------------------------------

INVALID_FOR_POWERTOOLS: list[Any] = [
    {"userIds": ["1"], "message": {"title": "t"}},
    {"userId": ["1"], "message": MESSAGE},
    {"userIds": [""], "message": MESSAGE},
    {"userIds": [1], "message": MESSAGE},
    {**REQUEST, "deeplink": "a b"},
    {**REQUEST, "deeplink": None},
    {"userIds": ["1"], "message": {"title": "x" * (TITLE_MAX + 1), "summary": "s"}},
    ["not", "an", "object"],
]


@pytest.mark.parametrize("data", INVALID_FOR_POWERTOOLS)
def test_validate_request_raises_what_powertools_validate_raises(data: Any) -> None:
    with pytest.raises(SchemaValidationError) as ours:
        validate_request(data)
    with pytest.raises(SchemaValidationError) as theirs:
        validate(event=data, schema=request_schema())

    for attribute in ("message", "validation_message", "name", "path", "value", "rule", "rule_definition"):
        assert getattr(ours.value, attribute) == getattr(theirs.value, attribute), attribute
    assert str(ours.value) == str(theirs.value)


def test_validate_request_accepts_what_powertools_accepts() -> None:
    document = {
        **REQUEST,
        "installIds": ["iid-1"],
        "deeplink": "slug://browse",
        "idempotencyKey": "k",
        "expiresAt": "x",
    }

    validate_request(document)
    validate(event=document, schema=request_schema())


def test_content_that_would_not_fit_a_push_is_poison_even_within_the_character_bounds() -> None:
    # 4-byte emoji: 1500 characters of summary alone are 6000 bytes, past the 4 KB APNs/FCM payload.
    message = {**MESSAGE, "summary": "🎁" * 1500}

    reason = reason_for({"userIds": ["1"], "message": message})

    assert reason.startswith("message: title, summary and deeplink together are ")
    assert "at most 3500 fit a push" in reason


# --- whatever a body holds, it is a request or poison: never an exception that fails the batch ----------

DEEP = 10_000  # ~10 KB of brackets: json.loads raises RecursionError, not JSONDecodeError


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


DEEP_BODIES: dict[str, str] = {
    "arrays": nested(DEEP),
    "unclosed arrays": "[" * DEEP,
    "objects": nested(DEEP, '{"a":', "}").replace('{"a":}', '{"a":1}'),
    "in a request field": json.dumps({**REQUEST, "userIds": ["x"]}).replace('["x"]', nested(DEEP)),
    "in an unknown field": json.dumps({**REQUEST, "extra": 0}).replace('"extra": 0', '"extra": ' + nested(900)),
    "in eventbridge detail": json.dumps(eventbridge(0)).replace('"detail": 0', '"detail": ' + nested(DEEP)),
    "in eventbridge resources": json.dumps(eventbridge(REQUEST)).replace(
        '"resources": []', '"resources": ' + nested(DEEP)
    ),
    "in the sns message": json.dumps(sns(nested(DEEP))),
    "in the sns message id": json.dumps(sns(REQUEST)).replace(f'"{SNS_ID}"', nested(DEEP)),
}


@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
def test_deeply_nested_json_is_poison_with_a_reason(body: str) -> None:
    reason = reason_of(body)

    assert reason.startswith("body: JSON nested too deeply") or reason.startswith("extra: is not an allowed field")


def test_nesting_a_few_hundred_levels_deep_still_gets_the_schema_reason() -> None:
    body = json.dumps({**REQUEST, "userIds": ["x"]}).replace('["x"]', nested(300))

    assert reason_of(body) == "userIds[0]: must be a string, got array"


# A leaf that stands for JSON nested thousands of levels deep: json.dumps cannot build it, so `as_body` splices the
# brackets into the text (also inside an SNS Message string, where they need no escaping).
deep_leaves = st.integers(min_value=1, max_value=20_000).map(lambda depth: f"@@deep {depth}@@")
DEEP_LEAF = re.compile(r'\\?"@@deep (\d+)@@\\?"')
json_leaves = (
    deep_leaves
    | st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
)
json_trees = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=16,
)
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "userIds": st.lists(texts, max_size=3) | json_trees,
        "installIds": st.lists(texts, max_size=3) | json_trees,
        "message": st.fixed_dictionaries({"title": texts, "summary": texts}) | json_trees,
        "deeplink": texts | json_trees,
        "idempotencyKey": texts | json_trees,
        "expiresAt": st.sampled_from(["2026-12-01T18:00:00Z", "2026-02-30T00:00:00Z", "9999-12-31T23:59:59-23:59"])
        | texts,
        "priority": json_trees,
    },
)
documents = request_like | json_trees
deep_bodies = st.builds(
    lambda depth, opener, closer: opener * depth + closer * depth,
    st.integers(min_value=1, max_value=30_000),
    st.sampled_from(["[", '{"a":', '{"message":', "[{}, "]),
    st.sampled_from(["]", "}", ""]),
)


def as_body(document: Any, form: str) -> str:
    if form == "eventbridge":
        document = eventbridge(document)
    elif form == "sns":
        document = sns(document)
    elif form == "sns+eventbridge":
        document = sns(eventbridge(document))
    return to_json(document)


def to_json(document: Any) -> str:
    return DEEP_LEAF.sub(lambda match: nested(int(match[1])), json.dumps(document))


def parses_or_is_poison(body: str, key_attribute: str | None = None) -> None:
    outcome: NotificationRequest | PoisonMessageError
    try:
        outcome = parse_body(body, message_id=SQS_ID, key_attribute=key_attribute)
    except PoisonMessageError as e:
        outcome = e
    if isinstance(outcome, PoisonMessageError):
        assert outcome.reason
    else:
        assert isinstance(outcome, NotificationRequest)
        assert storable_key(outcome.idempotency_key) == outcome.idempotency_key


# A busy machine must not fail a property test: none of these properties is about time.
UNTIMED = settings(deadline=None)


@UNTIMED
@given(body=st.one_of(st.text(st.characters(codec=None, exclude_categories=())), documents.map(to_json), deep_bodies))
def test_any_text_body_is_a_request_or_poison(body: str) -> None:
    parses_or_is_poison(body)


@UNTIMED
@given(
    document=documents,
    form=st.sampled_from(["raw", "eventbridge", "sns", "sns+eventbridge"]),
    key_attribute=st.none() | texts,
)
def test_any_json_tree_in_any_envelope_is_a_request_or_poison(
    document: Any, form: str, key_attribute: str | None
) -> None:
    parses_or_is_poison(as_body(document, form), key_attribute)


@UNTIMED
@given(
    envelope=st.one_of(
        st.builds(lambda i, d: eventbridge(d, event_id=i), json_trees, documents),
        st.builds(lambda i, m: {**sns(REQUEST), "MessageId": i, "Message": m}, json_trees, json_trees),
        st.dictionaries(
            st.sampled_from(
                [
                    "Type",
                    "MessageId",
                    "Message",
                    "TopicArn",
                    "Subject",
                    "id",
                    "source",
                    "detail-type",
                    "detail",
                    "Records",
                    "requestContext",
                    "responseContext",
                    "Event",
                    "AlarmName",
                    "NewStateValue",
                ]
            ),
            json_trees,
        ),
    )
)
def test_any_envelope_fields_are_a_request_or_poison(envelope: dict[str, Any]) -> None:
    parses_or_is_poison(to_json(envelope))


# --- idempotency keys: whatever a producer sends is storable -------------------------------------------

DYNAMODB_MAX_PARTITION_KEY_BYTES = 2048
SQS_ATTRIBUTE_CHARACTERS = re.compile("[\\t\\n\\r\\x20-\\ud7ff\\ue000-\\ufffd\\U00010000-\\U0010ffff]*")


def assert_storable(key: str) -> None:
    data = key.encode("utf-8")  # raises for a lone surrogate, which neither DynamoDB nor SQS can hold
    assert 0 < len(data) <= MAX_KEY_BYTES
    assert len(f"request#{key}".encode()) <= DYNAMODB_MAX_PARTITION_KEY_BYTES
    assert SQS_ATTRIBUTE_CHARACTERS.fullmatch(key)


any_keys = st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=3000) | st.builds(
    lambda c, n: c * n, st.sampled_from(["k", "ж", "日", "🎁", "\ud800", "\x00", "\ufffe"]), st.integers(1, 3000)
)


@UNTIMED
@given(key=any_keys)
def test_every_key_has_a_storable_form(key: str) -> None:
    assert_storable(storable_key(key))


@UNTIMED
@given(key=any_keys)
def test_a_stored_key_is_its_own_stored_form(key: str) -> None:
    # The dispatcher carries the stored key as an attribute on copies it writes back; they must stay the request.
    stored = storable_key(key)

    assert storable_key(stored) == stored
    assert storable_key(key) == stored  # stable


@UNTIMED
@given(a=any_keys, b=any_keys)
def test_different_keys_share_a_stored_form_only_when_one_is_that_form(a: str, b: str) -> None:
    if a != b and storable_key(a) == storable_key(b):
        assert storable_key(a) in (a, b)


@pytest.mark.parametrize(
    "key",
    ["order-1042-shipped", "k" * MAX_KEY_BYTES, "заказ-1042", "ж" * (MAX_KEY_BYTES // 2), "🎁" * 256, "a b\tc"],
    ids=["ascii", "ascii at the bound", "cyrillic", "cyrillic at the bound", "emoji at the schema bound", "tab"],
)
def test_a_key_that_fits_is_stored_as_given(key: str) -> None:
    assert storable_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "k" * (MAX_KEY_BYTES + 1),
        "ж" * (MAX_KEY_BYTES // 2 + 1),
        "k" * 100_000,
        "bad\x00key",
        "\ufffe",
        "lone \ud800",
        "sha256:not-a-digest",
        "sha256:" + "A" * 64,
    ],
    ids=["ascii over", "cyrillic over", "huge", "NUL", "U+FFFE", "surrogate", "prefix", "prefix upper-case"],
)
def test_a_key_that_does_not_fit_is_stored_hashed(key: str) -> None:
    stored = storable_key(key)

    assert re.fullmatch("sha256:[0-9a-f]{64}", stored)
    assert stored == "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


LONG = "x" * 5000


@pytest.mark.parametrize(
    ("body", "key_attribute"),
    [
        (eventbridge(REQUEST, event_id=LONG), None),
        (sns(REQUEST, message_id=LONG), None),
        (sns(eventbridge(REQUEST, event_id=LONG)), None),
        (REQUEST, LONG),
        (with_fields(idempotencyKey="🎁" * 256), None),
        (with_fields(idempotencyKey="bad\x00key"), None),
    ],
    ids=["eventbridge id", "sns message id", "sns+eventbridge id", "key attribute", "4-byte key", "NUL in key"],
)
def test_every_key_source_yields_a_storable_key(body: dict[str, Any], key_attribute: str | None) -> None:
    request = parse_body(json.dumps(body), message_id=SQS_ID, key_attribute=key_attribute)

    assert_storable(request.idempotency_key)
    assert request.key_is_message_id is False


def test_a_copy_carrying_its_stored_key_as_an_attribute_is_the_same_request() -> None:
    original = parse_body(json.dumps(REQUEST), message_id=SQS_ID, key_attribute=LONG)
    copy = parse_body(json.dumps(REQUEST), message_id="new-id", key_attribute=original.idempotency_key)

    assert copy.idempotency_key == original.idempotency_key
