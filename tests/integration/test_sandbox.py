"""The IMSHOP sandbox is the referee of the integration tests and the demo; if it were lenient, the
dispatcher's contract and rate-limit bugs would pass unnoticed. These tests talk to it over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from imshop_push_local.sandbox import Fault, ImshopSandbox

MESSAGE = {"title": "Заказ 42", "summary": "Ваш заказ собран"}
VALID = {"userIds": ["79999999999"], "message": MESSAGE, "deeplink": "slug://orders/42"}

MakeSandbox = Callable[..., ImshopSandbox]


@pytest.fixture
def make_sandbox() -> Iterator[MakeSandbox]:
    started: list[ImshopSandbox] = []

    def make(**options: Any) -> ImshopSandbox:
        options.setdefault("rate_limit_requests", 1000)
        sandbox = ImshopSandbox(**options).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox: MakeSandbox) -> ImshopSandbox:
    return make_sandbox()


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    manager = urllib3.PoolManager(retries=False)
    yield manager
    manager.clear()


def post(
    http: urllib3.PoolManager,
    url: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    read_timeout: float = 10.0,
) -> urllib3.BaseHTTPResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.request(
        "POST",
        url,
        body=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        timeout=urllib3.Timeout(connect=10.0, read=read_timeout),
    )


def test_success_is_delivered_and_counted(sandbox: ImshopSandbox, http: urllib3.PoolManager) -> None:
    body = {"userIds": ["79999999999", "u-2"], "installIds": ["iid-1"], "message": MESSAGE}
    before = time.monotonic()

    first = post(http, sandbox.url, body)
    second = post(http, sandbox.url, VALID)

    assert (first.status, first.json()) == (200, {"success": True})
    assert second.status == 200
    assert sandbox.delivered() == {
        ("Заказ 42", "Ваш заказ собран", None, "user", "79999999999"): 1,
        ("Заказ 42", "Ваш заказ собран", None, "user", "u-2"): 1,
        ("Заказ 42", "Ваш заказ собран", None, "install", "iid-1"): 1,
        ("Заказ 42", "Ваш заказ собран", "slug://orders/42", "user", "79999999999"): 1,
    }
    call = sandbox.calls[0]
    assert (call.status, call.delivered, call.fault, call.body) == (200, True, None, body)
    assert call.path == urlsplit(sandbox.url).path
    assert before <= call.arrived_at <= sandbox.calls[1].arrived_at <= time.monotonic()
    assert sandbox.violations == 0


def test_the_same_push_twice_is_delivered_twice(sandbox: ImshopSandbox, http: urllib3.PoolManager) -> None:
    post(http, sandbox.url, VALID)
    post(http, sandbox.url, VALID)

    key = ("Заказ 42", "Ваш заказ собран", "slug://orders/42", "user", "79999999999")
    assert sandbox.delivered()[key] == 2


def test_url_is_a_per_instance_secret(make_sandbox: MakeSandbox) -> None:
    one, other = make_sandbox(), make_sandbox()

    assert one.url.startswith("http://127.0.0.1:")
    assert urlsplit(one.url).path.startswith("/api/push/")
    assert len(urlsplit(one.url).path) > len("/api/push/") + 20
    assert urlsplit(one.url).path != urlsplit(other.url).path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"{not json", "Invalid request payload JSON format", id="not-json"),
        pytest.param(b"", "Invalid request payload JSON format", id="empty"),
        pytest.param([VALID], "Invalid request payload JSON format", id="array"),
        pytest.param(
            {"userIds": "79999999999", "message": MESSAGE},
            'child "userIds" fails because ["userIds" must be an array]',
            id="userIds-not-array",
        ),
        pytest.param(
            {"userIds": [""], "message": MESSAGE},
            'child "userIds" fails because ["userIds" at position 0 fails because ["0" is not allowed to be empty]]',
            id="userIds-empty-string",
        ),
        pytest.param(
            {"installIds": ["iid", 7], "message": MESSAGE},
            'child "installIds" fails because ["installIds" at position 1 fails because ["1" must be a string]]',
            id="installIds-not-string",
        ),
        pytest.param({"userIds": ["1"]}, '"message" is required', id="no-message"),
        pytest.param(
            {"userIds": ["1"], "message": "hi"},
            'child "message" fails because ["message" must be an object]',
            id="message-not-object",
        ),
        pytest.param(
            {"userIds": ["1"], "message": {"summary": "s"}},
            'child "message" fails because ["title" is required]',
            id="no-title",
        ),
        pytest.param(
            {"userIds": ["1"], "message": {"title": "t", "summary": 5}},
            'child "message" fails because ["summary" must be a string]',
            id="summary-not-string",
        ),
        pytest.param(
            {"userIds": ["1"], "message": {"title": "", "summary": "s"}},
            'child "message" fails because ["title" is not allowed to be empty]',
            id="empty-title",
        ),
        pytest.param(
            {"userIds": ["1"], "message": {**MESSAGE, "sound": "default"}},
            'child "message" fails because ["sound" is not allowed]',
            id="unknown-message-key",
        ),
        pytest.param(
            {"userIds": ["1"], "message": MESSAGE, "deeplink": 5},
            'child "deeplink" fails because ["deeplink" must be a string]',
            id="deeplink-not-string",
        ),
        pytest.param(
            {"userIds": ["1"], "message": MESSAGE, "deeplink": None},
            'child "deeplink" fails because ["deeplink" must be a string]',
            id="deeplink-null",
        ),
        pytest.param({"userId": ["1"], "message": MESSAGE}, '"userId" is not allowed', id="unknown-key"),
        pytest.param(
            {"message": MESSAGE},
            '"value" must contain at least one of [userIds, installIds]',
            id="no-recipients",
        ),
        pytest.param(
            {"userIds": [], "installIds": [], "message": MESSAGE},
            '"value" must contain at least one of [userIds, installIds]',
            id="empty-recipients",
        ),
    ],
)
def test_bad_requests_get_the_vendors_joi_messages(
    sandbox: ImshopSandbox, http: urllib3.PoolManager, body: Any, message: str
) -> None:
    response = post(http, sandbox.url, body)

    assert (response.status, response.json()) == (400, {"error": "Bad Request", "message": message})
    assert [(call.status, call.delivered) for call in sandbox.calls] == [(400, False)]
    assert not sandbox.delivered()


def test_recipient_limit_counts_user_and_install_ids_together(
    make_sandbox: MakeSandbox, http: urllib3.PoolManager
) -> None:
    sandbox = make_sandbox(max_recipients=3)

    over = post(http, sandbox.url, {"userIds": ["1", "2"], "installIds": ["a", "b"], "message": MESSAGE})
    at_limit = post(http, sandbox.url, {"userIds": ["1", "2"], "installIds": ["a"], "message": MESSAGE})

    assert (over.status, over.json()["message"]) == (
        400,
        '"userIds" must contain less than or equal to 3 items',
    )
    assert at_limit.status == 200
    assert sum(sandbox.delivered().values()) == 3


def test_wrong_path_method_and_media_type(sandbox: ImshopSandbox, http: urllib3.PoolManager) -> None:
    parts = urlsplit(sandbox.url)
    elsewhere = f"{parts.scheme}://{parts.netloc}/api/push/guessed-token"

    not_found = post(http, elsewhere, VALID)
    wrong_method = http.request("GET", sandbox.url)
    form = post(http, sandbox.url, b"userIds=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    with_charset = post(http, sandbox.url, VALID, headers={"Content-Type": "application/json; charset=utf-8"})

    assert (not_found.status, not_found.json()) == (404, {"error": "Not Found"})
    assert (wrong_method.status, wrong_method.headers["Allow"]) == (405, "POST")
    assert form.status == 415
    assert with_charset.status == 200
    assert [call.status for call in sandbox.calls] == [404, 405, 415, 200]


@pytest.mark.parametrize(
    ("headers", "body_key", "status"),
    [
        pytest.param({}, None, 401, id="no-key"),
        pytest.param({"Authorization": "Bearer wrong"}, None, 401, id="wrong-bearer"),
        pytest.param({"Authorization": "s3cret"}, None, 401, id="no-scheme"),
        pytest.param({}, "wrong", 401, id="wrong-body-key"),
        pytest.param({"Authorization": "Bearer s3cret"}, None, 200, id="bearer"),
        pytest.param({}, "s3cret", 200, id="body-key"),
    ],
)
def test_api_key(
    make_sandbox: MakeSandbox,
    http: urllib3.PoolManager,
    headers: dict[str, str],
    body_key: str | None,
    status: int,
) -> None:
    sandbox = make_sandbox(api_key="s3cret")
    body = VALID if body_key is None else {**VALID, "key": body_key}

    response = post(http, sandbox.url, body, headers=headers)

    assert response.status == status
    if status == 401:
        assert response.json() == {"error": "Unauthorized"}
    assert bool(sandbox.delivered()) is (status == 200)


def test_no_key_configured_accepts_any_caller(sandbox: ImshopSandbox, http: urllib3.PoolManager) -> None:
    assert post(http, sandbox.url, VALID).status == 200


def test_received_call_repr_hides_the_url_token_and_key(make_sandbox: MakeSandbox, http: urllib3.PoolManager) -> None:
    sandbox = make_sandbox(api_key="s3cret")
    post(http, sandbox.url, VALID, headers={"Authorization": "Bearer s3cret"})

    text = repr(sandbox.calls)

    assert urlsplit(sandbox.url).path.rsplit("/", 1)[1] not in text
    assert "s3cret" not in text


class ManualClock:
    """Arrival stamps the test sets: the window's verdicts then do not depend on how fast the
    machine makes the calls."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_sliding_window_rejects_the_call_over_the_limit_until_slots_free(
    make_sandbox: MakeSandbox, http: urllib3.PoolManager
) -> None:
    clock = ManualClock(1000.0)
    sandbox = make_sandbox(rate_limit_requests=3, rate_limit_window_seconds=0.25, clock=clock)

    passed = [post(http, sandbox.url, VALID).status for _ in range(3)]
    clock.now += 0.125  # binary fractions: the arithmetic below is exact
    over = post(http, sandbox.url, VALID)
    retry_after = float(over.headers["Retry-After"])

    assert passed == [200, 200, 200]
    assert (over.status, over.json()) == (429, {"error": "Too Many Requests"})
    assert retry_after == 0.125
    assert sandbox.violations == 1
    assert sum(sandbox.delivered().values()) == 3
    # Retry-After already accounts for the rejected call holding a slot: honouring it is enough.
    clock.now += retry_after
    assert post(http, sandbox.url, VALID).status == 200
    assert sandbox.violations == 1


@pytest.mark.parametrize("now", [1000.0, 991.3313991828389])  # (now + 60) - now is 60.000000000000114
def test_retry_after_is_whole_seconds_for_real_windows(
    make_sandbox: MakeSandbox, http: urllib3.PoolManager, now: float
) -> None:
    sandbox = make_sandbox(rate_limit_requests=1, rate_limit_window_seconds=60, clock=ManualClock(now))

    post(http, sandbox.url, VALID)
    over = post(http, sandbox.url, VALID)

    assert (over.status, over.headers["Retry-After"]) == (429, "60")


def test_rejected_calls_count_in_the_window_but_other_paths_do_not(
    make_sandbox: MakeSandbox, http: urllib3.PoolManager
) -> None:
    sandbox = make_sandbox(rate_limit_requests=2, rate_limit_window_seconds=60, api_key="s3cret")
    parts = urlsplit(sandbox.url)
    authorized = {"Authorization": "Bearer s3cret"}

    strays = [post(http, f"{parts.scheme}://{parts.netloc}/x", VALID).status for _ in range(3)]
    unauthorized = [post(http, sandbox.url, VALID).status for _ in range(2)]
    over = post(http, sandbox.url, VALID, headers=authorized)

    assert strays == [404, 404, 404]
    assert unauthorized == [401, 401]
    assert over.status == 429
    assert sandbox.violations == 1


def test_faults_apply_in_order_to_calls_that_pass_every_check(
    sandbox: ImshopSandbox, http: urllib3.PoolManager
) -> None:
    sandbox.inject(Fault.SERVER_ERROR, Fault.SUCCESS_FALSE, Fault.RATE_LIMITED)

    invalid = post(http, sandbox.url, {"message": MESSAGE})
    server_error = post(http, sandbox.url, VALID)
    success_false = post(http, sandbox.url, VALID)
    throttled = post(http, sandbox.url, VALID)
    normal = post(http, sandbox.url, VALID)

    assert invalid.status == 400
    assert (server_error.status, server_error.json()) == (500, {"error": "Internal Server Error"})
    assert (success_false.status, success_false.json()) == (
        200,
        {"success": False, "error": "Integration is unavailable"},
    )
    assert (throttled.status, throttled.json()) == (429, {"error": "Too Many Requests"})
    assert float(throttled.headers["Retry-After"]) > 0
    assert normal.status == 200
    assert [(call.fault, call.delivered) for call in sandbox.calls] == [
        (None, False),
        (Fault.SERVER_ERROR, False),
        (Fault.SUCCESS_FALSE, False),
        (Fault.RATE_LIMITED, False),
        (None, True),
    ]
    assert sum(sandbox.delivered().values()) == 1
    assert sandbox.violations == 0


def test_slow_delivers_but_answers_after_slow_seconds(make_sandbox: MakeSandbox, http: urllib3.PoolManager) -> None:
    sandbox = make_sandbox(slow_seconds=0.3)
    sandbox.inject(Fault.SLOW, Fault.SLOW)

    with pytest.raises(ReadTimeoutError):
        post(http, sandbox.url, VALID, read_timeout=0.1)
    started = time.monotonic()
    patient = post(http, sandbox.url, VALID, read_timeout=30.0)
    elapsed = time.monotonic() - started

    assert (patient.status, patient.json()) == (200, {"success": True})
    assert elapsed >= 0.3
    assert [(call.fault, call.delivered, call.status) for call in sandbox.calls] == [(Fault.SLOW, True, 200)] * 2
    assert sum(sandbox.delivered().values()) == 2


def test_drop_delivers_and_closes_without_an_answer(sandbox: ImshopSandbox, http: urllib3.PoolManager) -> None:
    sandbox.inject(Fault.DROP)

    with pytest.raises(ProtocolError):
        post(http, sandbox.url, VALID)

    assert [(call.fault, call.delivered, call.status) for call in sandbox.calls] == [(Fault.DROP, True, 0)]
    assert sum(sandbox.delivered().values()) == 1
    assert post(http, sandbox.url, VALID).status == 200


def test_hang_holds_the_call_undelivered_until_released(sandbox: ImshopSandbox, http: urllib3.PoolManager) -> None:
    sandbox.inject(Fault.HANG)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(post, http, sandbox.url, VALID, read_timeout=60.0)
        assert sandbox.wait_for_calls(1, timeout=30.0)
        assert not pending.done()
        assert not sandbox.delivered()

        sandbox.release_hung()

        assert isinstance(pending.exception(timeout=30.0), ProtocolError)
    assert [(call.fault, call.delivered, call.status) for call in sandbox.calls] == [(Fault.HANG, False, 0)]
    assert not sandbox.delivered()


def test_stop_is_quick_with_hung_and_slow_calls_in_flight(make_sandbox: MakeSandbox, http: urllib3.PoolManager) -> None:
    sandbox = make_sandbox(slow_seconds=30.0)
    sandbox.inject(Fault.HANG, Fault.SLOW)

    with ThreadPoolExecutor(max_workers=2) as pool:
        hung = pool.submit(post, http, sandbox.url, VALID, read_timeout=60.0)
        assert sandbox.wait_for_calls(1, timeout=30.0)
        slow = pool.submit(post, http, sandbox.url, VALID, read_timeout=60.0)
        assert sandbox.wait_for_calls(2, timeout=30.0)
        started = time.monotonic()

        sandbox.stop()

        # Far below the 30 s SLOW and the endless HANG, far above any pause of a busy machine.
        assert time.monotonic() - started < 10.0
        assert isinstance(hung.exception(timeout=10.0), ProtocolError)
        assert isinstance(slow.exception(timeout=10.0), ProtocolError)


def test_stop_closes_idle_keep_alive_connections(sandbox: ImshopSandbox, http: urllib3.PoolManager) -> None:
    assert post(http, sandbox.url, VALID).status == 200

    sandbox.stop()

    with pytest.raises((ProtocolError, urllib3.exceptions.NewConnectionError)):
        post(http, sandbox.url, VALID)
    assert len(sandbox.calls) == 1


def test_wait_for_calls_times_out_without_calls(sandbox: ImshopSandbox) -> None:
    assert sandbox.wait_for_calls(1, timeout=0.05) is False
    assert sandbox.wait_for_calls(0, timeout=0.0) is True


def test_reset_forgets_calls_faults_and_window(make_sandbox: MakeSandbox, http: urllib3.PoolManager) -> None:
    sandbox = make_sandbox(rate_limit_requests=1, rate_limit_window_seconds=60)
    post(http, sandbox.url, VALID)
    assert post(http, sandbox.url, VALID).status == 429
    sandbox.inject(Fault.SERVER_ERROR)

    sandbox.reset()

    assert (sandbox.calls, sandbox.violations) == ([], 0)
    assert post(http, sandbox.url, VALID).status == 200
    assert sandbox.calls[0].fault is None
