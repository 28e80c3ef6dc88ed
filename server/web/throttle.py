"""Login throttling: at most ``LOGIN_MAX_FAILURES`` failed logins per username and address per window.

A failed password for a (username, client address) pair is remembered for
``LOGIN_WINDOW_SECONDS`` (default 5 failures in 15 minutes); once the limit is reached, further
attempts for that pair are refused with 429 until the oldest failure ages out, whether the
password is right or not.  A successful login clears the pair's failures.  Kept in the
memory of the server process (``nearmiss serve`` runs one process with threads); a restart
forgets it.  Failed and refused logins are also written to the audit log by the login view.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

from flask import Flask, current_app

DEFAULT_MAX_FAILURES = 5
DEFAULT_WINDOW_SECONDS = 15 * 60
MAX_KEYS = 10_000  # pairs remembered at most; the oldest are forgotten first


class LoginThrottle:
    def __init__(self, max_failures: int = DEFAULT_MAX_FAILURES, window_s: float = DEFAULT_WINDOW_SECONDS,
                 clock=time.monotonic) -> None:  # noqa: ANN001
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(username: str, address: str | None) -> tuple[str, str]:
        return (username.strip().casefold()[:200], address or "unknown")

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, username: str, address: str | None) -> int:
        """Seconds until this pair may try again (0: it may try now)."""
        key = self.key(username, address)
        with self._lock:
            now = self.clock()
            times = self._recent(key, now)
            if len(times) < self.max_failures:
                return 0
            return max(1, int(times[-self.max_failures] + self.window_s - now + 0.999))

    def failed(self, username: str, address: str | None) -> int:
        """Remember a failure; returns the failures in the window so far."""
        key = self.key(username, address)
        with self._lock:
            now = self.clock()
            times = self._recent(key, now)
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
            while len(self._failures) > MAX_KEYS:
                self._failures.popitem(last=False)
            return len(times)

    def succeeded(self, username: str, address: str | None) -> None:
        with self._lock:
            self._failures.pop(self.key(username, address), None)


def throttle_for(app: Flask | None = None) -> LoginThrottle:
    app = app or current_app
    throttle = app.extensions.get("nearmiss_login_throttle")
    if throttle is None:
        throttle = app.extensions.setdefault("nearmiss_login_throttle", LoginThrottle(
            int(app.config.get("LOGIN_MAX_FAILURES", DEFAULT_MAX_FAILURES)),
            float(app.config.get("LOGIN_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS))))
    return throttle
