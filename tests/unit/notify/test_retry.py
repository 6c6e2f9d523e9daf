"""driftloop.notify.retry: which failures are retried, 3 tries in all whatever the mix, and
waits that grow. slack_sdk's WebhookClient runs the handlers; only its one HTTP call is
replaced (no network here: tests/integration/test_notifications.py posts to a real server)."""

from __future__ import annotations

import io
import itertools
from email.message import Message
from urllib.error import HTTPError, URLError

import pytest
from slack_sdk.http_retry import RetryState
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.webhook import WebhookClient
from slack_sdk.webhook.webhook_response import WebhookResponse

from driftloop.notify import retry
from driftloop.notify.retry import (
    TRIES,
    ProportionalJitter,
    is_retryable_status,
    retry_handlers,
)

URL = "http://127.0.0.1:9/hook"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_server_errors_and_rate_limits_are_retried(status):
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413])
def test_other_client_errors_are_not(status):
    assert not is_retryable_status(status)


def _can_retry(handlers, *, status=None, error=None, attempt=0) -> bool:
    state = RetryState(current_attempt=attempt)
    request = HttpRequest(method="POST", url=URL, headers={}, data=b"{}")
    response = None if status is None else HttpResponse(status_code=status, headers={})
    return any(
        h.can_retry(state=state, request=request, response=response, error=error) for h in handlers
    )


def test_handlers_decide_by_failure_and_stop_after_the_last_try():
    handlers = retry_handlers()
    refused = URLError(ConnectionRefusedError(111, "Connection refused"))
    assert _can_retry(handlers, error=refused)
    assert _can_retry(handlers, error=TimeoutError("read timed out"))
    assert _can_retry(handlers, error=ConnectionResetError())
    assert _can_retry(handlers, status=503)
    assert _can_retry(handlers, status=429)
    assert not _can_retry(handlers, status=404)
    assert not _can_retry(handlers, error=ValueError("not a network error"))
    # an HTTP 4xx arrives as HTTPError (a URLError) with a response: not a connection error
    http_404 = HTTPError(URL, 404, "Not Found", Message(), io.BytesIO(b""))
    assert not _can_retry(handlers, status=404, error=http_404)
    # the third try was the last
    assert _can_retry(handlers, status=500, attempt=TRIES - 2)
    assert not _can_retry(handlers, status=500, attempt=TRIES - 1)
    assert not _can_retry(handlers, error=refused, attempt=TRIES - 1)


def test_each_wait_is_longer_than_the_one_before():
    (calculator,) = {
        id(h.interval_calculator): h.interval_calculator for h in retry_handlers()
    }.values()
    for _ in range(200):  # whatever the jitter draws
        waits = [calculator.calculate_sleep_duration(attempt) for attempt in range(TRIES)]
        assert waits[0] >= retry.BACKOFF_S
        assert all(later > earlier for earlier, later in itertools.pairwise(waits))


def test_jitter_fraction_is_bounded():
    with pytest.raises(ValueError, match="jitter fraction"):
        ProportionalJitter(1.0)
    assert ProportionalJitter(0.0).recalculate(2.0) == 2.0


def test_bad_settings_fail():
    with pytest.raises(ValueError, match="tries"):
        retry_handlers(tries=0)
    with pytest.raises(ValueError, match="backoff_s"):
        retry_handlers(backoff_s=-1)


class _Receiver:
    """Stands in for the network under WebhookClient: answers from a script, records waits."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def __call__(self, url, req):
        self.calls += 1
        outcome = self.script.pop(0) if self.script else 200
        if isinstance(outcome, Exception):
            raise outcome
        if outcome != 200:
            headers = Message()
            headers["Retry-After"] = "0"
            raise HTTPError(url, outcome, "error", headers, io.BytesIO(b"error"))
        return WebhookResponse(url=url, status_code=200, body="ok", headers={})


@pytest.fixture
def client(monkeypatch):
    sleeps: list[float] = []
    # both handlers wait with time.sleep (the module's attribute): recorded, not slept
    monkeypatch.setattr("time.sleep", sleeps.append)

    def make(script):
        receiver = _Receiver(script)
        webhook = WebhookClient(URL, retry_handlers=retry_handlers())
        monkeypatch.setattr(webhook, "_perform_http_request_internal", receiver)
        return webhook, receiver

    make.sleeps = sleeps
    return make


def test_three_tries_in_all_then_the_last_answer(client):
    webhook, receiver = client([500, 503, 502, 200])
    response = webhook.send(text="hi")
    assert receiver.calls == 3
    assert response.status_code == 502
    assert len(client.sleeps) == 2
    assert client.sleeps[1] > client.sleeps[0]


def test_a_mix_of_failures_shares_the_three_tries(client):
    refused = URLError(ConnectionRefusedError(111, "Connection refused"))
    webhook, receiver = client([refused, 429, refused, 200])
    with pytest.raises(URLError):
        webhook.send(text="hi")
    assert receiver.calls == 3


def test_delivered_on_the_third_try(client):
    webhook, receiver = client([500, TimeoutError("read timed out"), 200])
    assert webhook.send(text="hi").status_code == 200
    assert receiver.calls == 3


def test_a_client_error_is_not_retried(client):
    webhook, receiver = client([404, 200])
    assert webhook.send(text="hi").status_code == 404
    assert receiver.calls == 1
    assert client.sleeps == []
