"""What `make dlq` shows of a dead letter: no recipient-looking token of the body, whatever its shape, in the
text or the JSON listing; the known non-recipient fields readable; any depth of nesting listed."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imshop_push_local.dlq_masking import (
    DEEPER,
    FIELD_NAMES,
    RECIPIENT_FIELDS,
    REQUEST_FIELDS,
    mask_document,
    mask_text,
    preview_body,
)
from imshop_push_local.dlq_queue import to_dead_letter

EVERYTHING = 10**7  # a preview limit no body reaches: what is cut cannot leak, what is shown must not


def listed(body: str, reason: str | None = None) -> list[str]:
    """The text and the JSON listing of a dead letter with this body (and reason), as `make dlq` prints them."""
    attributes = {"sourceMessageId": {"DataType": "String", "StringValue": "source-1"}}
    if reason is not None:
        attributes["error"] = {"DataType": "String", "StringValue": reason}
    message: Any = {"MessageId": "m-1", "Body": body, "MessageAttributes": attributes, "Attributes": {}}
    letter = to_dead_letter(message, preview_chars=EVERYTHING)
    return [
        f"{letter.reason} {letter.body_preview}",
        json.dumps([letter.as_json()], ensure_ascii=False, indent=2),
    ]


def assert_hidden(tokens: list[str], outputs: list[str]) -> None:
    for token in tokens:
        digits = "".join(c for c in token if c.isdigit())
        for output in outputs:
            assert token not in output
            if len(digits) >= 7 and not token.isdigit():  # a formatted phone number, in any spelling
                assert digits not in re.sub(r"[\s().+-]", "", output)


# --------------------------------------------------------------------------- the defect's examples

PHONE = "79991234567"


def test_a_phone_number_used_as_an_object_key_is_masked() -> None:
    body = json.dumps({PHONE: {"message": {"title": "t", "summary": "s"}}, "message": {"title": "t", "summary": "s"}})
    assert_hidden([PHONE], listed(body))


def test_an_alphanumeric_id_under_a_key_that_names_no_recipient_is_masked() -> None:
    body = json.dumps({"userIds": [{"id": "cust-7f3a9b"}], "message": {"title": "t", "summary": "s"}})
    outputs = listed(body)
    assert_hidden(["cust-7f3a9b"], outputs)
    assert '"userIds":[{"id":"cu*******9b"}]' in outputs[0]


def test_a_str_dict_body_is_masked_word_by_word_but_its_field_names() -> None:
    body = str({"userIds": ["cust-7f3a9b", "+7 999 123-45-67"], "message": {"title": "Скидка", "summary": "s"}})
    outputs = listed(body, reason="body: is not valid JSON (Expecting property name enclosed in double quotes)")
    assert_hidden(["cust-7f3a9b", "+7 999 123-45-67"], outputs)
    assert "'userIds': ['cu*******9b'" in outputs[0]
    assert "body: is not valid JSON (Expecting property name enclosed in double quotes)" in outputs[0]


def test_a_formatted_phone_number_in_a_title_is_masked_the_title_stays_readable() -> None:
    body = json.dumps(
        {"userIds": ["+7 (999) 123-45-67"], "message": {"title": "Позвоните +7 999 123-45-67", "summary": "До 31.12"}},
        ensure_ascii=False,
    )
    outputs = listed(body)
    assert_hidden(["+7 999 123-45-67", "+7 (999) 123-45-67"], outputs)
    assert '"title":"Позвоните +7************67"' in outputs[0]
    assert '"summary":"До 31.12"' in outputs[0]


def test_a_reason_echoing_a_recipient_is_masked_and_otherwise_kept() -> None:
    outputs = listed("{}", reason="cust-7f3a9b: is not an allowed field (did you mean userIds?)")
    assert_hidden(["cust-7f3a9b"], outputs)
    assert "cu*******9b: is not an allowed field (did you mean userIds?)" in outputs[0]


def test_known_fields_stay_readable_in_every_envelope() -> None:
    request = {
        "userIds": [PHONE],
        "message": {"title": "Заказ №123 передан в доставку", "summary": "Курьер привезёт заказ завтра"},
        "deeplink": "myshop://orders/123",
        "sendAt": "2099-03-01T10:00:00+03:00",
    }
    event = {"version": "0", "id": "e", "detail-type": "Order", "source": "shop", "time": "2026-03-01T09:00:00Z"}
    sns = {
        "Type": "Notification",
        "MessageId": "m",
        "Subject": "Заказ",
        "Message": json.dumps({**event, "detail": request}),
    }
    shown = mask_document(sns)
    inner = json.loads(shown["Message"])
    assert inner["detail-type"] == "Order"
    assert inner["time"] == "2026-03-01T09:00:00Z"
    assert inner["detail"] == {**request, "userIds": ["79*******67"]}
    assert shown["Subject"] == "Заказ"


def test_every_field_of_the_request_schema_is_known_or_a_recipient_field() -> None:
    """A field added to the schema must be classified here, or its values are masked like unknown ones."""
    schema_path = (
        Path(__file__).resolve().parents[2] / "layers/imshop_push/imshop_push/domain/schemas/notification_request.json"
    )
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    for name, spec in schema["properties"].items():
        assert name in REQUEST_FIELDS or name in RECIPIENT_FIELDS
        known = REQUEST_FIELDS.get(name)
        if known is not None and spec.get("type") == "object":
            assert set(spec["properties"]) == set(known.fields or {})


# --------------------------------------------------------------------------- any body

_digits9 = st.text(alphabet=string.digits, min_size=9, max_size=9)
_phone = _digits9.flatmap(
    lambda d: st.sampled_from(
        [
            f"79{d}",
            f"+79{d}",
            f"+7 9{d[:2]} {d[2:5]}-{d[5:7]}-{d[7:]}",
            f"+7 (9{d[:2]}) {d[2:5]}-{d[5:7]}-{d[7:]}",
            f"8-9{d[:2]}-{d[2:5]}-{d[5:7]}-{d[7:]}",
        ]
    )
)
recipient_tokens = st.one_of(
    _phone,
    st.from_regex(r"cust-[0-9a-f]{5}[0-9]", fullmatch=True),
    st.uuids().map(str),
    st.from_regex(r"[A-Za-z]{2,6}[0-9]{4,8}", fullmatch=True),
)
_words = st.text(alphabet="жзийклмнpqstuvwxyz", min_size=1, max_size=8)
_keys = st.one_of(st.sampled_from(sorted(FIELD_NAMES)), _words)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A body of any shape holding recipient tokens anywhere: as values, keys, numbers, inside free text (known
    fields' too), in envelopes, in JSON text inside a string, as `str()` of an object, or not JSON at all."""
    tokens = draw(st.lists(recipient_tokens, min_size=1, max_size=4))
    pool = st.sampled_from(tokens)

    def leaf(token: str) -> st.SearchStrategy[Any]:
        forms: list[st.SearchStrategy[Any]] = [
            st.just(token),
            st.tuples(_words, _words).map(lambda w: f"{w[0]} {token}, {w[1]}"),
        ]
        if token.isdigit():
            forms.append(st.just(int(token)))
        return st.one_of(forms)

    leaves = st.one_of(pool.flatmap(leaf), _words, st.integers(-99, 99), st.booleans(), st.none())
    values = st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(_keys, pool), inner, max_size=4),
            st.dictionaries(st.sampled_from(sorted(REQUEST_FIELDS)), inner, max_size=4),
            st.fixed_dictionaries({"title": inner, "summary": inner}).map(lambda m: {"message": m}),
            inner.map(lambda v: json.dumps(v, ensure_ascii=False)),
        ),
        max_leaves=12,
    )
    value = draw(values)
    if draw(st.booleans()) and draw(st.booleans()):  # any JSON at all: a bare string, number, list, object
        return json.dumps(value, ensure_ascii=False), tokens
    # Every token drawn is in the body somewhere.
    value = {"message": {"title": f"номер {tokens[0]}", "summary": value}, "userIds": tokens, "x": value}
    envelope = draw(st.sampled_from(["request", "eventbridge", "sns", "str", "text", "deep"]))
    if envelope == "eventbridge":
        value = {"version": "0", "id": tokens[-1], "detail-type": "t", "source": "s", "detail": value}
    elif envelope == "sns":
        value = {"Type": "Notification", "MessageId": tokens[-1], "Message": json.dumps(value, ensure_ascii=False)}
    elif envelope == "deep":
        for _ in range(draw(st.integers(10, 400))):
            value = [value] if draw(st.booleans()) else {"a": value}
    if envelope == "str":
        return str(value), tokens
    if envelope == "text":
        return " ".join([*draw(st.lists(_words, max_size=3)), *tokens]), tokens
    return json.dumps(value, ensure_ascii=False), tokens


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bodies(), recipient_tokens)
def test_no_recipient_token_of_any_body_is_listed(body_and_tokens: tuple[str, list[str]], echoed: str) -> None:
    body, tokens = body_and_tokens
    assert_hidden([*tokens, echoed], listed(body, reason=f"{echoed}: IMSHOP answered 400: unknown user {tokens[0]}"))


@given(st.text())
def test_any_text_can_be_masked(text: str) -> None:
    assert isinstance(mask_text(text), str)
    assert isinstance(preview_body(text), str)


# --------------------------------------------------------------------------- any depth


def test_a_body_nested_beyond_the_json_decoders_stack_is_listed() -> None:
    """The dispatcher dead-letters it (`body: JSON nested too deeply`); listing it must not raise."""
    body = "[" * 100_000 + json.dumps(PHONE) + "]" * 100_000
    [text, as_json] = listed(body)
    assert text.startswith("None [[[[")
    assert PHONE not in as_json


def test_a_body_nested_within_the_decoders_stack_shows_its_top_and_hides_the_rest() -> None:
    body = json.dumps({"userIds": [PHONE], "x": 0})
    for _ in range(900):
        body = '{"message": {"title": "t", "summary": ' + body + "}}"
    [text, _] = listed(body)
    assert DEEPER in text
    assert PHONE not in text


def test_an_sns_message_nested_deeply_inside_is_listed() -> None:
    inner = "[" * 50_000 + "]" * 50_000
    body = json.dumps({"Type": "Notification", "MessageId": "m", "Message": inner})
    [text, _] = listed(body)
    assert '"Type":"Notification"' in text
