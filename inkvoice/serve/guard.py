"""What keeps the service from being an oracle and leaves a trace: limits on verification, and the audit log.

A verifier that answers without end lets anyone refine a forgery until it passes; each
client, and each writer whoever asks, may therefore be verified only so often (token
buckets: a burst up to the limit, then one more every hour / limit). Every enrolment,
removal and verification, allowed or not, is appended to the audit log as one JSON line.
"""

import json
import logging
import math
import os
import threading
import time
from datetime import datetime, timezone

from inkvoice.core.errors import ParameterError

#: Verifications one client (one address) may ask for per hour; 0 sets no limit.
DEFAULT_CLIENT_LIMIT = 120
#: Verifications of one writer per hour, from all clients together; 0 sets no limit.
DEFAULT_WRITER_LIMIT = 60
# The period the limits are counted over, in seconds.
LIMIT_PERIOD = 3600.0
# Buckets kept at most per kind; a full one is the same as none, so the fullest go first.
_MAX_BUCKETS = 100_000
_log = logging.getLogger("inkvoice.serve")


class TooManyRequests(Exception):
    """Over a limit: ``retry_after`` is the number of seconds until one more request is allowed."""

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class RateLimit:
    """At most ``per_period`` events per key per ``period`` seconds (a token bucket per key).

    ``per_period`` 0 allows everything. ``clock`` returns seconds (monotonic); tests pass their own.
    """

    def __init__(self, per_period, period=LIMIT_PERIOD, clock=time.monotonic):
        if per_period < 0:
            raise ParameterError(f"a limit must be 0 (none) or a positive number of requests; got {per_period}")
        self.capacity = float(per_period)
        self.rate = self.capacity / period
        self.clock = clock
        self._buckets = {}  # key -> (tokens, time)
        self._lock = threading.Lock()

    def wait(self, key):
        """Seconds until ``key`` may have one more event (0: now)."""
        if not self.capacity:
            return 0.0
        with self._lock:
            tokens = self._tokens(key, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, key):
        """Count one event of ``key`` (the caller checked :meth:`wait` first)."""
        if not self.capacity:
            return
        with self._lock:
            now = self.clock()
            self._buckets[key] = (self._tokens(key, now) - 1, now)
            if len(self._buckets) > _MAX_BUCKETS:
                self._forget_full(now)

    def _tokens(self, key, now):
        tokens, then = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - then) * self.rate)

    def _forget_full(self, now):
        for key in [key for key in self._buckets if self._tokens(key, now) >= self.capacity]:
            del self._buckets[key]


class VerificationLimits:
    """The two limits on verification: per client address and per writer."""

    def __init__(self, per_client=DEFAULT_CLIENT_LIMIT, per_writer=DEFAULT_WRITER_LIMIT, period=LIMIT_PERIOD,
                 clock=time.monotonic):
        self.per_client = RateLimit(per_client, period, clock)
        self.per_writer = RateLimit(per_writer, period, clock)
        self.period = period

    def check(self, client, writer):
        """Count one verification of ``writer`` asked by ``client``, or raise TooManyRequests (nothing counted)."""
        client_wait = self.per_client.wait(client)
        writer_wait = self.per_writer.wait(writer)
        if client_wait or writer_wait:
            hours = self.period / 3600
            per = "an hour" if hours == 1 else f"{self.period:g} s"
            if client_wait >= writer_wait:
                message = (f"too many verifications from this client (at most {self.per_client.capacity:g} "
                           f"in {per})")
            else:
                message = f"too many verifications of writer {writer!r} (at most {self.per_writer.capacity:g} in {per})"
            seconds = max(1, math.ceil(max(client_wait, writer_wait)))
            raise TooManyRequests(f"{message}; try again in {seconds} s", seconds)
        self.per_client.take(client)
        self.per_writer.take(writer)


class AuditLog:
    """Appends one JSON line per enrolment, removal and verification to ``path``.

    Each line holds ``time`` (UTC, ISO 8601), ``client`` (its address), ``writer``, ``action``
    (enrol, remove or verify), ``status`` (the HTTP status of the answer), ``verdict`` and
    ``score`` (for a verification answered; null otherwise), the references added or
    removed, and ``error`` for a request refused. The file is opened for appending only,
    so several servers may share one; each line is written in one call.

    Raises
    ------
    ParameterError
        The file cannot be opened for appending (checked when the server starts).
    """

    def __init__(self, path):
        self.path = str(path)
        try:
            self._handle = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as error:
            raise ParameterError(f"cannot write the audit log {self.path}: {error.strerror or error}") from None
        self._lock = threading.Lock()

    def record(self, client, writer, action, status, verdict=None, score=None, references=None, error=None):
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "client": client,
                 "writer": writer, "action": action, "status": int(status), "verdict": verdict,
                 "score": None if score is None else round(float(score), 4)}
        if references is not None:
            entry["references"] = int(references)
        if error is not None:
            entry["error"] = str(error)
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
        try:
            with self._lock:
                os.write(self._handle, line)
        except OSError as failure:
            _log.error("the audit log %s cannot be written (%s): %s", self.path, failure, line.decode().strip())

    def close(self):
        os.close(self._handle)
