"""The hot path's credentials: botocore's chain, read once and cached until shortly before expiry.

Why not ask botocore on every request: botocore's refreshable credentials refresh whenever
less than 15 minutes are left (10 minutes: mandatory). A ``credential_process`` (or any source)
that hands out credentials valid for less than that is then run on *every* signed request -
a process start per BatchWriteItem. :class:`CredentialCache` keeps the frozen credentials until
``expiry - margin``, the margin being 10 minutes for long-lived credentials (botocore's
mandatory window) and a quarter of the lifetime for short-lived ones, so a 5-minute credential
is fetched again after about 4 minutes, not 300 times a second.

When DynamoDB refuses credentials whose stated expiry is still ahead (``ExpiredTokenException``
after an early revocation or a skewed clock, ``UnrecognizedClientException`` after a key
rotation), the client calls :meth:`CredentialCache.refresh`: the whole chain is loaded again
(env, files, process, SSO, assumed role), once for all threads that saw the same credentials
fail. Invariant: ``refresh`` returns True only when the credentials now served differ from the
refused ones; the same credentials are never retried as if they were new.

Every credential value that passes through here is registered with :mod:`ddbmigrate.logs`, so
redaction knows secrets that never were in the environment (profiles, processes, SSO).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from ..logs import register_secrets

# botocore's mandatory refresh window: never serve credentials closer to their expiry than this.
MAX_MARGIN = 600.0
# The shortest time a fetched credential is kept, even one that says it has already expired:
# a source that returns stale credentials must not be run for every request.
MIN_KEEP = 1.0


def _expiry(source: Any) -> Optional[float]:
    # botocore keeps a RefreshableCredentials' expiry in ``_expiry_time`` (an aware datetime);
    # static credentials have none.
    exp = getattr(source, "_expiry_time", None)
    try:
        return float(exp.timestamp()) if exp is not None else None
    except (AttributeError, TypeError, ValueError, OverflowError):
        return None


def _same(a: Any, b: Any) -> bool:
    return bool(a.access_key == b.access_key and a.secret_key == b.secret_key and a.token == b.token)


class CredentialCache:
    """Frozen credentials from a botocore ``Credentials`` object, cached until their refresh point.

    ``reload`` builds a fresh botocore credentials object (the whole chain again); it is used by
    :meth:`refresh` after the service refused the current ones. ``clock`` is wall-clock seconds
    (expiry times are absolute)."""

    def __init__(self, source: Any, reload: Optional[Callable[[], Any]] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._source = source
        self._reload = reload
        self._clock = clock
        self._lock = threading.Lock()
        self._frozen: Any = None
        self._refresh_at = 0.0
        self.refreshes = 0  # forced refreshes (after a refusal), for reports and tests

    @property
    def expiry(self) -> Optional[float]:
        """The stated expiry (epoch seconds) of the credentials served now, if any."""
        return _expiry(self._source)

    def get_frozen_credentials(self) -> Any:
        frozen = self._frozen
        if frozen is not None and self._clock() < self._refresh_at:
            return frozen
        with self._lock:
            if self._frozen is None or self._clock() >= self._refresh_at:
                self._load()
            return self._frozen

    def _load(self) -> None:
        frozen = self._source.get_frozen_credentials()  # botocore refreshes here when it is due
        now = self._clock()
        exp = _expiry(self._source)
        if exp is None:
            refresh_at = float("inf")  # static: only a refusal makes us look again
        else:
            left = exp - now
            refresh_at = max(now + MIN_KEEP, exp - min(MAX_MARGIN, max(left, 0.0) / 4))
        register_secrets((frozen.access_key, frozen.secret_key, frozen.token))
        self._frozen, self._refresh_at = frozen, refresh_at

    def refresh(self, refused: Any) -> bool:
        """After the service refused ``refused`` (frozen credentials): load fresh ones.

        True when the credentials served from now on differ from ``refused`` (fresh ones, or
        another thread's refresh already replaced them); False when the chain hands out the same
        credentials again, so retrying cannot help."""
        with self._lock:
            current = self._frozen
            if current is not None and not _same(current, refused):
                return True
            if self._reload is not None:
                try:
                    source = self._reload()
                except Exception:  # a failing chain means "no fresh credentials", said by the caller
                    source = None
                if source is not None:
                    self._source = source
            self._refresh_at = 0.0
            self._load()
            fresh = not _same(self._frozen, refused)
            if fresh:
                self.refreshes += 1
            return fresh
