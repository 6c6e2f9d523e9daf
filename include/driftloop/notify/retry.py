"""How a notification rides out a webhook's bad moment: slack_sdk's retry handlers, 3 tries in
all, with exponential backoff.

slack_sdk's ``WebhookClient`` retries a request itself when one of its handlers says so; the
handlers share one count of attempts, so ``max_retry_count = tries - 1`` on each gives
``tries`` requests in all, whatever mix of failures they meet. Retried: connection errors
(refused, reset, timed out: the request may never have arrived) and HTTP 5xx and 429 (the
receiver is down, overloaded or rate-limiting: the same body may succeed later). Not retried:
any other 4xx — a revoked or mistyped webhook, a body the receiver refuses — which no retry
changes. The built-in handlers retry only 500/503 and 429 separately, with a jitter of up to
a whole second that can make the second wait shorter than the first; the waits here double
and their jitter is a fraction of the wait, so each wait is longer than the one before.
"""

from __future__ import annotations

import random
import time
from http.client import RemoteDisconnected
from urllib.error import URLError

from slack_sdk.http_retry import (
    BackoffRetryIntervalCalculator,
    ConnectionErrorRetryHandler,
    Jitter,
    RetryHandler,
)

#: requests in all (the first and two retries)
TRIES = 3
#: the first wait in seconds; then 2x, 4x … (plus up to JITTER of each)
BACKOFF_S = 1.0
#: random extra of a wait, as a fraction of it (< 1: a doubled wait is always longer)
JITTER = 0.25
#: the longest a 429's Retry-After is honoured for; longer, the backoff wait applies
MAX_RETRY_AFTER_S = 30.0
#: errors of a request that may not have reached the receiver: worth another try
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    URLError,  # refused, DNS, connect timeout (urllib wraps them); HTTPError is excluded below
    ConnectionError,
    RemoteDisconnected,
    TimeoutError,  # a read timeout
)


def is_retryable_status(status: int) -> bool:
    """An HTTP status worth another try: 5xx (the receiver failed) or 429 (rate-limited)."""
    return status >= 500 or status == 429


class ProportionalJitter(Jitter):
    """Adds up to ``fraction`` of the wait: with waits that double, each is longer than the
    last (slack_sdk's ``RandomJitter`` adds up to a second whatever the wait)."""

    def __init__(self, fraction: float = JITTER):
        if not 0 <= fraction < 1:
            raise ValueError(f"jitter fraction must be in [0, 1), got {fraction}")
        self.fraction = fraction

    def recalculate(self, duration: float) -> float:
        return duration * (1 + self.fraction * random.random())


class StatusRetryHandler(RetryHandler):
    """Retries a response whose status :func:`is_retryable_status`; a 429's ``Retry-After``
    (seconds, up to :data:`MAX_RETRY_AFTER_S`) is waited for when longer than the backoff."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return response is not None and is_retryable_status(response.status_code)

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        state.next_attempt_requested = True
        wait = self.interval_calculator.calculate_sleep_duration(state.current_attempt)
        if response is not None and response.status_code == 429:
            wait = max(wait, _retry_after(response.headers))
        time.sleep(wait)
        state.increment_current_attempt()


def _retry_after(headers) -> float:
    for name, values in (headers or {}).items():
        if name.lower() == "retry-after":
            value = values[0] if isinstance(values, list | tuple) and values else values
            try:
                return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
            except (TypeError, ValueError):  # an HTTP date: the backoff wait applies
                return 0.0
    return 0.0


def retry_handlers(tries: int = TRIES, backoff_s: float = BACKOFF_S) -> list[RetryHandler]:
    """The handlers of a ``WebhookClient`` (``SlackWebhookHook(retry_handlers=...)``):
    ``tries`` requests in all, waits of ``backoff_s``, 2×, 4× … between them."""
    if tries < 1:
        raise ValueError(f"tries must be >= 1, got {tries}")
    if backoff_s < 0:
        raise ValueError(f"backoff_s must be >= 0, got {backoff_s}")
    interval = BackoffRetryIntervalCalculator(backoff_factor=backoff_s, jitter=ProportionalJitter())
    return [
        ConnectionErrorRetryHandler(
            max_retry_count=tries - 1,
            interval_calculator=interval,
            error_types=list(CONNECTION_ERRORS),
        ),
        StatusRetryHandler(max_retry_count=tries - 1, interval_calculator=interval),
    ]
