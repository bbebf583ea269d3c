"""One way to open a Redis client, for every role: URLs with passwords and TLS, retries through
short outages, and one-line errors for long ones and for a refused password.

URLs: ``redis://[[USER]:PASSWORD@]HOST:PORT/DB``, ``rediss://...`` (TLS; certificate options as
query parameters, e.g. ``?ssl_ca_certs=/path/ca.pem``) and ``unix://[:PASSWORD@]/path?db=N``, as
redis-py's ``from_url`` reads them; characters such as ``@ : /`` in a password are percent-encoded.
``redact_url`` shows a URL with its password replaced by ``***``: only redacted URLs go into logs,
error messages and saved configs.

What a retry guarantees (``open_client``): a command that fails with a ConnectionError or
TimeoutError (Redis restarting, a network blip, a server still loading its append-only file) is sent
again on a new connection, with exponential backoff, until it succeeds or Redis has been unreachable
for ``outage_s``; then ``RedisUnavailable`` (one line: the redacted URL, how long, what to do). A
resent command may have run once already (its reply was lost), so it runs at least once, not exactly
once. That is safe for every command the pipeline sends:
  - XADD of a request (samplers, clients): a duplicate request is executed twice, but a worker
    publishes at most one result per sample id (coderl/streams.py ``_PUBLISH_ONCE``), and the
    learner's buffer drops a result of a sample it already holds (``dropped/duplicate``);
  - the publish script, XACK, XDEL, SET, DEL: running them twice has the effect of running them once;
  - XREADGROUP ``>``: entries delivered on the lost connection stay pending for the consumer without
    being seen; ``reconnections(client)`` tells a reader that it must read its pending entries again
    (coderl/rollouts.py RolloutReader does; executor workers reclaim them after ``claim_idle_ms``).
A refused password (WRONGPASS, NOAUTH) is never retried: ``RedisAuthError`` at once, one line.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

__all__ = [
    "DEFAULT_OUTAGE_S",
    "RedisAuthError",
    "RedisUnavailable",
    "auth_error",
    "open_client",
    "reconnections",
    "redact_url",
    "redis_failure",
    "unavailable_error",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_OUTAGE_S = 120.0
"""how long a role keeps retrying an unreachable Redis before the run stops (execution.redis_outage_s,
a worker's redis_outage_s, CODERL_REDIS_OUTAGE_S)"""
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.05, 2.0
"""first retry after about 0.1 s, then doubling, never more than 2 s apart"""
HEALTH_CHECK_S = 10
"""a connection idle this long is checked with PING before it is used again"""
HINT = "start Redis again (or fix the URL), then continue the run with `coderl train --resume ...`"
PASSWORD_WHERE = (
    "put the password of Redis's requirepass in the URL, redis://:PASSWORD@HOST:PORT/DB "
    "(execution.redis_url, --redis-url or CODERL_REDIS_URL; the compose stack reads it from "
    "CODERL_REDIS_PASSWORD_FILE)"
)
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError, socket.timeout)


class RedisUnavailable(redis.RedisError):
    """Redis was unreachable for longer than the configured outage limit. The message is one line.
    Not a ConnectionError, so no retry loop (redis-py's or a caller's) retries it again."""


class RedisAuthError(redis.RedisError):
    """Redis refused the password (or needs one). The message is one line; never retried."""


# -- URLs --------------------------------------------------------------------------------------------

_SECRET_QUERY_KEYS = {"password", "ssl_password"}


def redact_url(url: str) -> str:
    """``url`` with any password (in the user info or a ``password=`` query parameter) as ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:***@{host}" if has_password else f"{user}@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            hidden = [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs]
            query = urlencode(hidden, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not a URL at all: hide everything between // and @
        return re.sub(r"//[^/]*@", "//***@", url)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:300]


def unavailable_error(
    url: str, seconds: float, error: BaseException | None, hint: str = HINT
) -> RedisUnavailable:
    last = f"; last error {type(error).__name__}: {_one_line(error)}" if error is not None else ""
    return RedisUnavailable(f"Redis at {redact_url(url)} unreachable for {seconds:.0f} s{last}: {hint}")


def auth_error(url: str, error: BaseException) -> RedisAuthError:
    return RedisAuthError(
        f"Redis at {redact_url(url)} refused the password ({_one_line(error)}): {PASSWORD_WHERE}"
    )


def redis_failure(error: BaseException) -> RedisUnavailable | RedisAuthError | None:
    """The ``RedisUnavailable`` or ``RedisAuthError`` behind ``error``, if any: itself, its
    ``__cause__``/``__context__`` chain, or the ``cause`` of an error that wraps one (a Ray task
    error raised in another process)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen or len(seen) > 20:
            continue
        seen.add(id(current))
        if isinstance(current, (RedisUnavailable, RedisAuthError)):
            return current
        cause = getattr(current, "cause", None)
        todo += [cause if isinstance(cause, BaseException) else None, current.__cause__, current.__context__]
    return None


# -- retries -----------------------------------------------------------------------------------------


class _Events:
    """Shared by every connection of one client: retried failures so far, and when a warning was
    last logged (one per outage, not one per attempt)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures = 0
        self.down_since: float | None = None

    def failed(self, url: str, error: BaseException, outage_s: float) -> None:
        with self.lock:
            self.failures += 1
            first = self.down_since is None
            if first:
                self.down_since = time.monotonic()
        if first:
            log.warning(
                "Redis at %s unreachable (%s: %s); retrying for up to %g s",
                redact_url(url), type(error).__name__, _one_line(error), outage_s,
            )  # fmt: skip

    def succeeded(self, url: str) -> None:
        with self.lock:
            since, self.down_since = self.down_since, None
        if since is not None:
            log.warning("Redis at %s reachable again after %.1f s", redact_url(url), time.monotonic() - since)


class OutageRetry(Retry):
    """redis-py's ``Retry`` bounded by time instead of a count: retries transient errors with
    exponential backoff until ``outage_s`` have passed since the first failure of the call, then
    raises ``RedisUnavailable``; turns an AuthenticationError into ``RedisAuthError`` at once.
    redis-py nests retries (a command's retry around a connect's): the inner one raises
    ``RedisUnavailable``, which the outer one does not catch, so the limit holds for the whole call."""

    def __init__(self, url: str, outage_s: float, events: _Events | None = None) -> None:
        super().__init__(ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), -1, _TRANSIENT)
        self.url, self.outage_s = url, outage_s
        self.events = events or _Events()

    def __deepcopy__(self, memo: dict[int, Any]) -> OutageRetry:
        # redis-py deep-copies the retry for each connection: the copies share one event record.
        copy = OutageRetry(self.url, self.outage_s, self.events)
        copy._supported_errors = self._supported_errors
        return copy

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, OutageRetry) and (self.url, self.outage_s) == (other.url, other.outage_s)

    __hash__ = Retry.__hash__

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        failures, first_failure = 0, 0.0
        while True:
            try:
                result = do()
                if failures:
                    self.events.succeeded(self.url)
                return result
            except redis.AuthenticationError as exc:
                raise auth_error(self.url, exc) from None
            except self._supported_errors as exc:
                if is_retryable is not None and not is_retryable(exc):
                    raise
                failures += 1
                now = time.monotonic()
                first_failure = first_failure or now
                if with_failure_count:
                    fail(exc, failures)
                else:
                    fail(exc)
                self.events.failed(self.url, exc, self.outage_s)
                left = self.outage_s - (now - first_failure)
                if left <= 0:
                    raise unavailable_error(self.url, now - first_failure, exc) from None
                time.sleep(min(self._backoff.compute(failures), left))


def open_client(
    url: str,
    outage_s: float = DEFAULT_OUTAGE_S,
    *,
    retry: bool = True,
    socket_timeout: float = 60,
    **kwargs: Any,
) -> redis.Redis:
    """A client for ``url`` (see the module docstring). ``retry=False``: no retries inside redis-py
    (the caller retries whole steps itself and must see every failure, e.g. to re-read a stream);
    such a caller converts errors itself with ``auth_error`` and ``unavailable_error``."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": min(socket_timeout, 5.0),
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_S,
        **kwargs,
    }
    options["retry"] = OutageRetry(url, outage_s) if retry else Retry(NoBackoff(), 0)
    try:
        return redis.Redis.from_url(url, **options)
    except ValueError:  # a malformed URL: redis-py's message may quote it, password included
        expected = "redis://[:PASSWORD@]HOST:PORT/DB"
        raise ValueError(f"invalid Redis URL {redact_url(url)}: expected {expected}") from None


def reconnections(client: redis.Redis) -> int:
    """Retried failures of a client made by ``open_client`` so far (0 for any other client): a
    reader compares it before and after a read to learn that the read was sent again."""
    retry = client.get_retry()
    return retry.events.failures if isinstance(retry, OutageRetry) else 0
