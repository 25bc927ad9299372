"""Login throttling against password guessing: failed logins counted per account and per address.

Counters live in Redis (one INCR per failure, expiring after the window), so every web process and
every gunicorn worker sees the same count. When Redis is unreachable the check lets logins through
(and logs it): the queue being down must not lock everybody out.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import redis

from shared.config import get_settings

log = logging.getLogger(__name__)
ACCOUNT_LIMIT = 5  # failures per username within the window
ADDRESS_LIMIT = 20  # failures per client address within the window (many accounts from one place)
WINDOW_S = 15 * 60
PREFIX = "maskwatch:login-failures:"

_lock = threading.Lock()
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:
            timeout = get_settings().connect_timeout_s
            _client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=timeout,
                                           socket_connect_timeout=timeout)
        return _client


def reset() -> None:
    """Forget the client (tests that switch settings)."""
    global _client
    with _lock:
        _client = None


def _keys(username: str, address: str | None) -> list[tuple[str, int]]:
    keys = [(f"{PREFIX}user:{username.strip().lower()}", ACCOUNT_LIMIT)]
    if address:
        keys.append((f"{PREFIX}addr:{address}", ADDRESS_LIMIT))
    return keys


def wait_seconds(username: str, address: str | None) -> int:
    """Seconds until this account and address may try again (0: now)."""
    try:
        r = _redis()
        wait = 0
        for key, limit in _keys(username, address):
            count = int(r.get(key) or 0)
            if count >= limit:
                wait = max(wait, int(r.ttl(key)), 1)
        return wait
    except redis.RedisError as e:
        log.warning("login throttling skipped: Redis unreachable (%s)", type(e).__name__)
        return 0


def failed(username: str, address: str | None) -> None:
    """Count one failed login for the account and the address."""
    try:
        pipe = _redis().pipeline()
        for key, _ in _keys(username, address):
            pipe.incr(key)
            pipe.expire(key, WINDOW_S, nx=True)
        pipe.execute()
    except redis.RedisError as e:
        log.warning("failed login not counted: Redis unreachable (%s)", type(e).__name__)


def succeeded(username: str) -> None:
    """A correct password clears the account's count (not the address's)."""
    with contextlib.suppress(redis.RedisError):
        _redis().delete(_keys(username, None)[0][0])
