"""Prometheus metrics and a health check for jobs that run for hours or days (``--metrics-port``).

    GET /metrics   Prometheus text format (prometheus_client), built at scrape time from providers
    GET /healthz   200 "ok", or 503 with the reason (a job failing, or lag above --max-lag)

One server per (host, port) per process, shared by whoever runs in it: the replicator keeps it
for its whole run, and the driver of each job it runs (backfill, apply) adds that job's figures
to it; any other long job gets it through the one driver (``engine/run.py``).

Invariants:
1. Serving metrics never stops or slows a job: figures are read at scrape time from counters the
   job keeps anyway; a provider that raises is skipped for that scrape.
2. The server binds 127.0.0.1 unless ``--metrics-host`` says otherwise; it serves counts and
   lag, never an item body or a secret.
3. A job's final counts are not lost to the scrape interval: once it ends its counters stay
   served at their last values (its gauges go; ``ddbmigrate_running`` is 0) while the process lives, and ``--metrics-linger`` keeps the
   process (and the server) up that long after the command's work is done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from ..errors import UsageError

PREFIX = "ddbmigrate_"


@dataclass
class Sample:
    """One value of one metric: ``kind`` is "gauge" or "counter" (name without ``_total``)."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    kind: str = "gauge"
    help: str = ""


Provider = Callable[[], List[Sample]]
Health = Callable[[], Optional[str]]  # None when healthy, else why not


class _Collector:
    def __init__(self, server: MetricsServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        families: Dict[Tuple[str, str], Tuple[str, List[Sample]]] = {}
        for provider in self.server.providers():
            try:
                samples = provider()
            except Exception:  # invariant 1: a torn read skips this provider for one scrape
                continue
            for s in samples:
                families.setdefault((s.name, s.kind), (s.help, []))[1].append(s)
        for (name, kind), (help_text, samples) in sorted(families.items()):
            label_names = sorted({k for s in samples for k in s.labels})
            fam: Any
            if kind == "counter":
                fam = CounterMetricFamily(PREFIX + name, help_text or name, labels=label_names)
            else:
                fam = GaugeMetricFamily(PREFIX + name, help_text or name, labels=label_names)
            seen = set()
            for s in samples:
                values = tuple(str(s.labels.get(k, "")) for k in label_names)
                if values in seen:
                    continue  # two providers with the same series: the first one wins
                seen.add(values)
                fam.add_metric(list(values), float(s.value))
            yield fam


class MetricsServer:
    """The HTTP server of one (host, port); see the module docstring."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._providers: Dict[int, Tuple[Provider, Optional[Health]]] = {}
        self._final: Dict[int, List[Sample]] = {}  # the last figures of providers removed
        self._next = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self.started = time.time()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body = generate_latest(server.registry)
                    self._send(200, body, CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    why = server.unhealthy()
                    self._send(503 if why else 200, (f"unhealthy: {why}\n" if why else "ok\n").encode(),
                               "text/plain; charset=utf-8")
                else:
                    self._send(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes are not the job's log

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise UsageError(f"--metrics-port {port}: cannot listen on {host}:{port}: {e.strerror or e}") from None
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        self.users = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add(self, provider: Provider, health: Optional[Health] = None) -> Callable[[], None]:
        """Serve ``provider``'s samples (and count its health); returns the function that removes it."""
        with self._lock:
            key = self._next
            self._next += 1
            self._providers[key] = (provider, health)

        def remove() -> None:
            # Its counters stay served at their last values (a live provider's same series win):
            # a job's final counts must not vanish before a scraper has seen them (invariant 3).
            # Not its gauges: a lag or a rate says what is happening now, and nothing is.
            try:
                last = [x for x in provider() if x.kind == "counter"]
            except Exception:
                last = []
            with self._lock:
                self._providers.pop(key, None)
                self._final[key] = last

        return remove

    def providers(self) -> List[Provider]:
        with self._lock:
            # Newest first: of two ended jobs under one label, the later one's totals are served.
            finals = [(lambda last=last: last) for last in reversed(list(self._final.values()))]
            return [p for p, _ in self._providers.values()] + [self._own] + finals

    def _own(self) -> List[Sample]:
        why = self.unhealthy()
        with self._lock:
            running = 1.0 if self._providers else 0.0
        return [Sample("healthy", 0.0 if why else 1.0, help="1 while /healthz answers 200"),
                Sample("running", running, help="1 while a job runs; 0 once it has ended (its final figures "
                                                 "stay served until the process exits, see --metrics-linger)"),
                Sample("process_uptime_seconds", round(time.time() - self.started, 1),
                       help="seconds since the metrics server started")]

    def unhealthy(self) -> Optional[str]:
        with self._lock:
            checks = [h for _, h in self._providers.values() if h is not None]
        for h in checks:
            try:
                why = h()
            except Exception as e:  # a health check that cannot tell is not a healthy answer
                why = f"health check failed: {type(e).__name__}"
            if why:
                return why
        return None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


_servers: Dict[Tuple[str, int], MetricsServer] = {}
_servers_lock = threading.Lock()
_linger = 0.0
_lingering: Dict[MetricsServer, float] = {}  # released servers kept serving -> until (monotonic)


def set_linger(seconds: float) -> None:
    """Keep a released server serving its final figures this long (``--metrics-linger``): a job
    shorter than the scrape interval, or its last seconds, would otherwise never be scraped.
    The wait is :func:`wait_lingering`'s, at the end of the command."""
    global _linger
    _linger = max(0.0, float(seconds))


def acquire(host: str, port: int) -> MetricsServer:
    """The process's server for (host, port), started on first use; :func:`release` when done."""
    with _servers_lock:
        s = _servers.get((host, port))
        if s is None:
            # One released and lingering on that address serves again (it holds the port).
            s = next((x for x in _lingering if (x.host, x.port) == (host, port)), None)
            if s is not None:
                del _lingering[s]
            else:
                s = MetricsServer(host, port)
            _servers[(host, s.port)] = s
            if port == 0:
                _servers[(host, 0)] = s
        s.users += 1
        return s


def release(server: MetricsServer) -> None:
    with _servers_lock:
        server.users -= 1
        if server.users > 0:
            return
        for k in [k for k, v in _servers.items() if v is server]:
            del _servers[k]
        if _linger > 0:
            _lingering[server] = time.monotonic() + _linger
            return
    server.close()


def wait_lingering(say: Callable[[str], None] = lambda text: None) -> None:
    """Serve the released servers' final figures until their linger ends (Ctrl-C ends it at
    once), then close them. Returns at once when none lingers."""
    with _servers_lock:
        waiting = sorted(_lingering.items(), key=lambda kv: kv[1])
        _lingering.clear()
    try:
        for server, until in waiting:
            left = until - time.monotonic()
            if left > 0:
                say(f"metrics: the final figures stay on {server.url}/metrics for {left:.0f} s (--metrics-linger)")
                time.sleep(left)
    except KeyboardInterrupt:
        pass
    finally:
        for server, _ in waiting:
            server.close()


class Stall:
    """'Failing' for a health check: retries keep coming and nothing is written for ``after`` seconds.

    Written means acknowledged by the target: records settling (``done``) or, when the caller
    counts them, writes acknowledged (``acked``). Under a write limit a chunk settles only once
    every one of its writes is acknowledged, a minute apart at a few WCU/s while its writes land
    all along: judged by ``done`` alone, a job writing steadily would be called failing.
    """

    def __init__(self, after: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.after = after
        self.clock = clock
        self._done: Optional[float] = None
        self._acked: Optional[float] = None
        self._retries: Optional[float] = None
        self._progress_at = clock()
        self._retry_at: Optional[float] = None

    def observe(self, done: float, retries: float, acked: Optional[float] = None) -> Optional[str]:
        now = self.clock()
        if self._done is None or done != self._done or (acked is not None and acked != self._acked):
            self._progress_at = now
        if self._retries is not None and retries > self._retries:
            self._retry_at = now
        self._done, self._retries = done, retries
        if acked is not None:
            self._acked = acked
        if self._retry_at is not None and self._retry_at >= self._progress_at and now - self._progress_at >= self.after:
            return f"failing: requests are being retried and nothing was written for {now - self._progress_at:.0f} s"
        return None


# What the client retries, by cause (aws/client.py: throttle, 5xx, connection, credentials;
# sinks: UnprocessedItems).
RETRY_CAUSES = ("throttle", "unprocessed", "5xx", "connection", "credentials")


def job_samples(job: str, counters: Mapping[str, int], stats: Mapping[str, Any],
                limits: Mapping[str, Mapping[str, Any]], dead_reasons: Mapping[str, int]) -> List[Sample]:
    """The figures every job has, as samples labelled with the job's kind."""
    out = [Sample("job_running", 1.0, {"job": job}, help="1 while the job runs")]
    for k, v in sorted(counters.items()):
        out.append(Sample("records", float(v), {"job": job, "counter": k}, "counter",
                          "records by what happened to them (read, written, deleted, dead_lettered, ...)"))
    # Every cause from the start, at 0: a rate() over a family that appears only with its first
    # retry has nothing to compare it with.
    retries = {c: 0 for c in RETRY_CAUSES}
    retries.update(stats.get("retries") or {})
    for cause, n in sorted(retries.items()):
        out.append(Sample("retries", float(n), {"job": job, "cause": str(cause)}, "counter", "retries by cause"))
    for reason, n in sorted(dead_reasons.items()):
        out.append(Sample("dead_lettered", float(n), {"job": job, "reason": str(reason)}, "counter",
                          "records dead-lettered, by reason"))
    for name, d in sorted(limits.items()):
        out.append(Sample("rate_limit", float(d.get("current") or 0), {"job": job, "limit": name}, "gauge",
                          "current rate limit (units per second)"))
        out.append(Sample("throttle_events", float(d.get("throttle_events") or 0), {"job": job, "limit": name},
                          "counter", "times the rate limit was lowered after throttling"))
    return out


__all__ = ["MetricsServer", "Sample", "Stall", "acquire", "job_samples", "release"]
